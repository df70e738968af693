//! `smelt extract-lora`: a PEFT adapter approximating a fine-tune, from the
//! fine-tune and its base (see [`smelt::extract`]). Prints each module's
//! rank and relative reconstruction error, then the overall error.
//!
//! SIGINT, SIGTERM and SIGHUP cancel as in `smelt merge`: nothing is
//! written, exit 128 + the signal.

use super::{CliError, CliResult};
use smelt::extract::{self, Event, ExtractError, Options};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

impl From<ExtractError> for CliError {
    fn from(e: ExtractError) -> Self {
        match e {
            ExtractError::Model(m) => m.into(),
            e if e.is_environment() => CliError::internal(e),
            e => CliError::input(e),
        }
    }
}

/// Run an extraction; `json` prints the report as JSON instead of a table.
pub fn run(o: &Options, quiet: bool, json: bool) -> CliResult {
    // Hub names are fetched first, before the stop signals are taken over
    // (Ctrl-C ends a download at once, as in `smelt merge`). The output is
    // checked first so that a refused output costs nothing.
    let inputs = [PathBuf::from(&o.model), PathBuf::from(&o.base)];
    smelt::model::check_destination(&o.out, &inputs, o.force)?;
    super::fetch::hub_models(&inputs, quiet)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    super::merge::on_stop_signals(&cancel, &signal);
    let tty = std::io::stderr().is_terminal();
    let mut err = std::io::stderr();
    let mut progress = |ev: Event| {
        if quiet {
            return;
        }
        // Progress goes to stderr; a closed stderr is no reason to stop.
        let _ = match ev {
            Event::Started { modules, saved } => writeln!(
                err,
                "extracting {modules} modules, saving {saved} tensors whole"
            ),
            Event::Module {
                name, done, total, ..
            } if tty => write!(
                err,
                "\r\x1b[2K[{done}/{total}] {}",
                smelt::text::escape(&name)
            ),
            Event::Module { .. } => Ok(()),
            Event::Writing if tty => write!(err, "\r\x1b[2K"),
            Event::Writing => Ok(()),
        };
    };
    let report = extract::run(o, &mut progress, &cancel).map_err(|e| match e {
        ExtractError::Cancelled => super::merge::cancelled(signal.load(Ordering::Relaxed)),
        e => e.into(),
    })?;
    for w in &report.warnings {
        let _ = writeln!(err, "smelt: warning: {}", smelt::text::escape_lines(w));
    }
    if json {
        let v = serde_json::json!({
            "out": report.out,
            "r": report.rank,
            "relative_error": report.error,
            "modules_to_save": report.modules_to_save,
            "saved": report.saved,
            "warnings": report.warnings,
            "modules": report.modules.iter().map(|m| serde_json::json!({
                "module": m.name,
                "rank": m.rank,
                "embedding": m.embedding,
                "relative_error": m.error,
            })).collect::<Vec<_>>(),
        });
        return super::emit(&format!("{v:#}\n"));
    }
    let width = report
        .modules
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut text = format!("{:<width$}  {:>4}  {:>9}\n", "module", "rank", "rel.error");
    for m in &report.modules {
        text.push_str(&format!(
            "{:<width$}  {:>4}  {:>9.6}\n",
            smelt::text::escape(&m.name),
            m.rank,
            m.error
        ));
    }
    text.push_str(&format!(
        "extracted {} modules (r = {}, {} tensors saved whole): relative error {:.6} in {:.2} s -> {}\n",
        report.modules.len(),
        report.rank,
        report.saved.len(),
        report.error,
        report.elapsed.as_secs_f64(),
        report.out.display()
    ));
    super::emit(&text)
}

/// `smelt extract-lora`'s arguments: mergekit-extract-lora's options that
/// change the result, under the same names. Its other options (devices,
/// caches, remote code, ...) do not apply; clap refuses them as unknown.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The fine-tune: a folder, a safetensors or .bin file, a hub name
    /// (org/name[@revision]) or model+adapter.
    #[arg(long)]
    model: String,
    /// Its base, given the same ways.
    #[arg(long)]
    base_model: String,
    /// The adapter folder to write (must not exist unless --force; never
    /// inside a model's folder).
    #[arg(long, short = 'o', visible_alias = "out")]
    out_path: PathBuf,
    /// Largest rank of any module.
    #[arg(long, default_value_t = 128)]
    max_rank: usize,
    /// Drop singular values at or below this.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    sv_epsilon: f64,
    /// Split the singular values evenly between A and B (the default).
    #[arg(long, overrides_with = "no_distribute_scale")]
    distribute_scale: bool,
    /// Put the singular values in A only.
    #[arg(long)]
    no_distribute_scale: bool,
    /// Factor the embeddings too, instead of saving them whole.
    #[arg(long, overrides_with = "no_embed_lora")]
    embed_lora: bool,
    /// Save embeddings whole in modules_to_save (the default).
    #[arg(long)]
    no_embed_lora: bool,
    /// Save this module whole (full name or last component); repeatable.
    #[arg(long = "save-module", value_name = "MODULE")]
    modules_to_save: Vec<String>,
    /// Factor only modules matching this regex (searched in the module
    /// name); repeatable.
    #[arg(long = "include-regex", short = 'i', value_name = "REGEX")]
    include: Vec<String>,
    /// Leave out modules matching this regex; repeatable.
    #[arg(long = "exclude-regex", short = 'e', value_name = "REGEX")]
    exclude: Vec<String>,
    /// Skip modules that cannot be factored (norms) instead of saving them
    /// whole.
    #[arg(long)]
    skip_undecomposable: bool,
    /// Replace an existing output folder, if it is empty or one smelt wrote.
    #[arg(long)]
    force: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Do not flush the output to disk (no fsync).
    #[arg(long)]
    no_sync: bool,
}

impl Args {
    /// Run the extraction these arguments describe.
    pub fn run(self) -> CliResult {
        let o = Options {
            model: self.model,
            base: self.base_model,
            out: self.out_path,
            max_rank: self.max_rank,
            sv_epsilon: self.sv_epsilon,
            distribute_scale: !self.no_distribute_scale || self.distribute_scale,
            embed_lora: self.embed_lora && !self.no_embed_lora,
            modules_to_save: self.modules_to_save,
            include: self.include,
            exclude: self.exclude,
            skip_undecomposable: self.skip_undecomposable,
            force: self.force,
            sync: !self.no_sync,
        };
        run(&o, self.quiet, self.json)
    }
}
