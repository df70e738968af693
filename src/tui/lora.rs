//! `L` on the Models panel: extract a LoRA from the selected model (a
//! fine-tune) against the recipe's base, in the background, like a merge.
//!
//! Two prompts ask for the rank (the CLI's default prefilled) and for a
//! new output folder (`<model>-lora-r<rank>` in the work folder); the job
//! layer runs [`crate::extract::run`] with the CLI's other defaults. One
//! background job at a time: an extraction is refused while a merge runs
//! and a merge while an extraction runs, each saying why. `c` cancels it
//! (nothing is written); the end is reported on the status line with the
//! overall relative error and the output folder. An existing folder is
//! never written over: the prompt refuses it, as the merge prompt does.

use super::state::*;
use super::update::{check_new_folder, prompt_for, Effect};
use crate::extract::{Event, Report};
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

/// The rank prompt's Enter: a whole number of 1 or more opens the folder
/// prompt; anything else is refused (prompt and status line).
pub fn submit_rank(app: &mut App, model: PathBuf, text: &str) -> Result<(), String> {
    let rank = match text.trim().parse::<usize>() {
        Ok(r) if r > 0 => r,
        _ => {
            let e = format!(
                "`{}` is not a rank: type a whole number of 1 or more",
                crate::text::Escaped(text.trim())
            );
            app.say(Level::Error, e.clone());
            return Err(e);
        }
    };
    let out = default_out(app, &model, rank);
    let p = prompt_for(
        app,
        Purpose::ExtractOut { model, rank },
        out.display().to_string(),
    );
    app.modal = Some(Modal::Prompt(p));
    Ok(())
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
/// job; otherwise the reason is returned for the prompt to show.
pub fn submit_out(
    app: &mut App,
    model: PathBuf,
    rank: usize,
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
            "extracting a rank-{rank} LoRA of {} into {}",
            display_name(&model),
            out.display()
        ),
    );
    fx.push(Effect::StartExtract {
        ticket,
        model,
        base,
        out,
        rank,
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
