//! `L` on the Models panel: extract a LoRA from the selected model (a
//! fine-tune) against the recipe's base, in the background, like a merge.
//!
//! Two prompts ask for the rank (the CLI's default prefilled), followed by
//! any of `smelt extract-lora`'s factoring options as on its command line
//! (`64 --sv-epsilon 0.01 --embed-lora -e lm_head`), and for a new output
//! folder (`<model>-lora-r<rank>` in the work folder); the job layer runs
//! [`crate::extract::run`] with those settings. One
//! background job at a time: an extraction is refused while a merge runs
//! and a merge while an extraction runs, each saying why. `c` cancels it
//! (nothing is written); the end is reported on the status line with the
//! overall relative error and the output folder. An existing folder is
//! never written over: the prompt refuses it, as the merge prompt does.

use super::state::*;
use super::update::{check_new_folder, prompt_for, Effect};
use crate::extract::{Event, Options, Report};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The rank the prompt offers: `smelt extract-lora`'s default.
pub fn default_rank() -> usize {
    crate::extract::Options::new("", "", "").max_rank
}

/// `L`: check a fine-tune and a base are there and nothing runs, then
/// ask for the rank. Refusals go to the status line.
pub fn ask_rank(app: &mut App) {
    if app.focus() != Panel::Models {
        app.say(
            Level::Info,
            "L extracts a LoRA from the model selected in Models (Tab there first)",
        );
        return;
    }
    if let Some(why) = busy(app) {
        app.say(Level::Warn, why);
        return;
    }
    let model = match selected_fine_tune(app) {
        Ok(m) => m,
        Err(e) => return app.say(Level::Error, e),
    };
    let p = prompt_for(
        app,
        Purpose::ExtractRank { model },
        default_rank().to_string(),
    );
    app.modal = Some(Modal::Prompt(p));
}

/// Why no extraction can start now, if one cannot.
fn busy(app: &App) -> Option<&'static str> {
    if app.extract_running() {
        Some("a LoRA extraction is already running (c cancels it)")
    } else if app.merge_running() {
        Some("a merge is running: wait for it, or c cancels it, before extracting a LoRA")
    } else {
        None
    }
}

/// The selected model, when it is not the base and there is a base.
fn selected_fine_tune(app: &App) -> Result<PathBuf, String> {
    let Some(slot) = app.doc.slots.get(app.view.model_cursor) else {
        return Err("no model selected: a LoRA is extracted from the selected model".into());
    };
    let Some(b) = app.doc.base_slot() else {
        return Err(
            "no base model: a LoRA is extracted against the base (select it in Models, press b)"
                .into(),
        );
    };
    if b == app.view.model_cursor {
        return Err(format!(
            "{} is the base: select a fine-tune to extract a LoRA from",
            slot.info.name
        ));
    }
    Ok(slot.info.path.clone())
}

/// The rank prompt's Enter: a rank of 1 or more, and any options after
/// it (see [`settings`]), open the folder prompt; anything else is refused
/// (prompt and status line).
pub fn submit_rank(app: &mut App, model: PathBuf, text: &str) -> Result<(), String> {
    let mut opts = Options::new(model.to_string_lossy(), "", "");
    if let Err(e) = settings(text, &mut opts) {
        app.say(Level::Error, e.clone());
        return Err(e);
    }
    let out = default_out(app, &model, opts.max_rank);
    let p = prompt_for(
        app,
        Purpose::ExtractOut {
            model,
            opts: Box::new(opts),
        },
        out.display().to_string(),
    );
    app.modal = Some(Modal::Prompt(p));
    Ok(())
}

/// The `smelt extract-lora` options the rank prompt takes, each with
/// whether it takes a value (the model, base, output and run options have
/// prompts or keys of their own). A test holds this list to the CLI's.
pub const OPTIONS: &[(&str, bool)] = &[
    ("--max-rank", true),
    ("--sv-epsilon", true),
    ("--distribute-scale", false),
    ("--no-distribute-scale", false),
    ("--embed-lora", false),
    ("--no-embed-lora", false),
    ("--save-module", true),
    ("--include-regex", true),
    ("--exclude-regex", true),
    ("--skip-undecomposable", false),
];

/// Read the rank prompt's text into `o`: a rank (a whole number of 1 or
/// more, alone or as `--max-rank N`; the default when left out) and any
/// of [`OPTIONS`], split as a
/// shell splits words (quote a regex with spaces), `--name=value` or
/// `--name value`, `-i`/`-e` for the regexes. Settings not named keep
/// their defaults. The regexes are checked here, so a typo is refused at
/// the prompt, not after the models are read.
pub fn settings(text: &str, o: &mut Options) -> Result<(), String> {
    let words = shlex::split(text).ok_or_else(|| {
        format!(
            "`{}`: a quote is not closed",
            crate::text::Escaped(text.trim())
        )
    })?;
    let mut rank = None;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        // A word that is a number (`-3` too) is meant as the rank.
        if !w.starts_with('-') || w.parse::<f64>().is_ok() {
            if rank.is_some() {
                return Err(format!(
                    "`{}`: the rank is given already; options start with --",
                    crate::text::Escaped(&w)
                ));
            }
            rank = Some(parse_rank(&w)?);
            continue;
        }
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (w.clone(), None),
        };
        let name = match name.as_str() {
            "-i" => "--include-regex".to_string(),
            "-e" => "--exclude-regex".to_string(),
            _ => name,
        };
        let Some(&(_, takes)) = OPTIONS.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "`{}` is not an extract-lora option here (try --sv-epsilon X, --embed-lora, -i/-e REGEX, --save-module M, --skip-undecomposable, --no-distribute-scale)",
                crate::text::Escaped(&name)
            ));
        };
        let value = if takes {
            match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => return Err(format!("{name} needs a value")),
            }
        } else if inline.is_some() {
            return Err(format!("{name} takes no value"));
        } else {
            String::new()
        };
        match name.as_str() {
            "--max-rank" => rank = Some(parse_rank(&value)?),
            "--sv-epsilon" => {
                o.sv_epsilon = match value.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => x,
                    _ => {
                        return Err(format!(
                            "--sv-epsilon `{}`: give a number of 0 or more",
                            crate::text::Escaped(&value)
                        ))
                    }
                }
            }
            "--distribute-scale" => o.distribute_scale = true,
            "--no-distribute-scale" => o.distribute_scale = false,
            "--embed-lora" => o.embed_lora = true,
            "--no-embed-lora" => o.embed_lora = false,
            "--skip-undecomposable" => o.skip_undecomposable = true,
            "--save-module" => o.modules_to_save.push(value),
            regex => {
                if let Err(e) = regex::Regex::new(&value) {
                    return Err(format!(
                        "{regex} `{}`: {}",
                        crate::text::Escaped(&value),
                        e.to_string().lines().last().unwrap_or("not a regex")
                    ));
                }
                if regex == "--include-regex" {
                    o.include.push(value);
                } else {
                    o.exclude.push(value);
                }
            }
        }
    }
    if let Some(r) = rank {
        o.max_rank = r;
    }
    Ok(())
}

fn parse_rank(w: &str) -> Result<usize, String> {
    match w.parse::<usize>() {
        Ok(r) if r > 0 => Ok(r),
        _ => Err(format!(
            "`{}` is not a rank: type a whole number of 1 or more",
            crate::text::Escaped(w)
        )),
    }
}

/// `<model>-lora-r<rank>` in the work folder (where the workbench was
/// started, as a merge's default output is), numbered if that exists:
/// beside the model it could land in the bundled samples' install folder,
/// or in the Hugging Face cache.
pub fn default_out(app: &App, model: &Path, rank: usize) -> PathBuf {
    let folder = if model.is_file() {
        model.parent().unwrap_or(model)
    } else {
        model
    };
    let stem = format!(
        "{}-lora-r{rank}",
        folder
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy())
    );
    super::update::numbered(&app.work_dir, &stem)
}

/// The folder prompt's Enter: a new folder (not inside a model) starts the
/// job with the settings `opts` (from the rank prompt); otherwise the
/// reason is returned for the prompt to show.
pub fn submit_out(
    app: &mut App,
    model: PathBuf,
    mut opts: Options,
    out: PathBuf,
    fx: &mut Vec<Effect>,
) -> Result<(), String> {
    if let Some(why) = busy(app) {
        return Err(why.into());
    }
    let base = app
        .doc
        .base_slot()
        .map(|b| app.doc.slots[b].info.path.clone())
        .ok_or("no base model any more (b makes the selected model the base)")?;
    check_new_folder(
        &out,
        &[model.clone(), base.clone()],
        "adapters go elsewhere",
    )?;
    let ticket = app.tickets.issue();
    app.tickets.extract = Some(ticket);
    app.extract = Some(ExtractJob {
        ticket,
        model: display_name(&model),
        out: out.clone(),
        done: 0,
        total: 0,
        current: "opening the models".into(),
        elapsed: Duration::ZERO,
        cancelling: false,
    });
    app.say(
        Level::Info,
        format!(
            "extracting a rank-{} LoRA of {} into {}",
            opts.max_rank,
            display_name(&model),
            out.display()
        ),
    );
    opts.model = model.to_string_lossy().into_owned();
    opts.base = base.to_string_lossy().into_owned();
    opts.out = out;
    fx.push(Effect::StartExtract {
        ticket,
        opts: Box::new(opts),
    });
    Ok(())
}

/// Progress of the extraction with this ticket (others are dropped).
pub fn on_event(app: &mut App, ticket: Ticket, event: Event, elapsed: Duration) {
    let Some(j) = app.extract.as_mut().filter(|j| j.ticket == ticket) else {
        return;
    };
    j.elapsed = elapsed;
    match event {
        Event::Started { modules, saved } => {
            j.total = modules;
            j.current = format!("{modules} modules to factor, {saved} tensors saved whole");
        }
        Event::Module {
            name,
            done,
            total,
            rank,
            ..
        } => {
            j.done = done;
            j.total = total;
            j.current = format!("{name} (rank {rank})");
        }
        Event::Writing => {
            j.done = j.total;
            j.current = "writing the adapter".into();
        }
    }
    app.dirty = true;
}

/// The extraction with this ticket ended: say how, on the status line.
pub fn done(app: &mut App, ticket: Ticket, result: Result<Report, JobError>) {
    if app.tickets.extract != Some(ticket) {
        return;
    }
    app.tickets.extract = None;
    let Some(job) = app.extract.take() else {
        return;
    };
    match result {
        Ok(r) => {
            let warn = if r.warnings.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} warnings: smelt extract-lora lists them)",
                    r.warnings.len()
                )
            };
            app.say(
                Level::Info,
                format!(
                    "LoRA done, relative error {:.6} -> {}{warn}",
                    r.error,
                    r.out.display(),
                ),
            );
            app.extracted = Some(Extracted {
                model: job.model.clone(),
                out: r.out.clone(),
                error: r.error,
                rank: r.rank,
                modules: r.modules.len(),
                warnings: r.warnings.len(),
            });
        }
        Err(JobError::Cancelled) => app.say(
            Level::Info,
            format!(
                "LoRA extraction cancelled; nothing was written to {}",
                job.out.display()
            ),
        ),
        Err(e) => app.say(Level::Error, format!("LoRA extraction failed: {e}")),
    }
    app.dirty = true;
}
