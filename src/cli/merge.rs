//! `smelt merge`: run a recipe headless, with a progress bar on a terminal
//! and plain lines otherwise, and a one-line summary at the end.
//!
//! The output's lock is taken before planning, so a second merge to the
//! same output stops at once. SIGINT, SIGTERM and SIGHUP cancel the merge:
//! the engine stops, its partial folder is removed, and smelt exits with
//! 128 + the signal (130, 143, 129). A second signal while the first is
//! being handled exits at once (the partial folder left behind is removed
//! by the next merge to that output).

pub(crate) mod multi;
pub(crate) use multi::{plan_error, problems};
mod progress;

use super::{CliError, CliResult};
use smelt::engine::{self, Options};
use smelt::model::OutputLock;
use smelt::plan::Plan;
use smelt::recipe::Recipe;
use smelt::units::bytes;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signals that cancel a merge.
const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// Set `cancel` and record the signal on SIGINT, SIGTERM or SIGHUP; on a
/// second one, exit at once with 128 + that signal.
pub(super) fn on_stop_signals(cancel: &Arc<AtomicBool>, which: &Arc<AtomicUsize>) {
    for sig in STOP_SIGNALS {
        // Registered first, so it sees the flag as the previous signal
        // left it: only a repeated signal ends the process.
        let _ =
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(cancel));
        let _ = signal_hook::flag::register_usize(sig, Arc::clone(which), sig as usize);
        let _ = signal_hook::flag::register(sig, Arc::clone(cancel));
    }
}

/// The error for a cancelled merge: exit 128 + the signal (SIGINT's 130
/// when none was recorded).
pub(super) fn cancelled(signal: usize) -> CliError {
    let (code, name) = match signal as i32 {
        signal_hook::consts::SIGTERM => (143, "SIGTERM"),
        signal_hook::consts::SIGHUP => (129, "SIGHUP"),
        _ => (130, "interrupted"),
    };
    CliError {
        message: format!("cancelled ({name}); nothing was written"),
        code,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    recipe_path: &Path,
    out: PathBuf,
    force: bool,
    threads: Option<usize>,
    shard_size: u64,
    quiet: bool,
    sync: bool,
    allow_nonfinite: bool,
    doc: Option<&str>,
) -> CliResult {
    let opts = Options {
        out,
        force,
        threads,
        shard_size,
        sync,
        allow_nonfinite,
        origin: None,
    };
    // A multi-document (mergekit-multi) file runs document by document.
    if let Some(m) = smelt::recipe::MultiRecipe::load(recipe_path).map_err(multi::problems)? {
        return multi::run(&m, doc, opts, quiet);
    }
    if let Some(d) = doc {
        return Err(CliError::input(format!(
            "{}: --doc {d}: the file has one document; --doc chooses among the \
             documents of a multi-document file",
            recipe_path.display()
        )));
    }
    let recipe = Recipe::load(recipe_path)?;
    // Where the output may go, before anything slow, so a refused output
    // costs nothing.
    let inputs = smelt::plan::recipe_paths(&recipe);
    smelt::model::check_destination(&opts.out, &inputs, force)?;
    // The output's lock before downloading or planning (which opens every
    // model), so a busy output costs nothing more.
    let _lock = OutputLock::acquire(&opts.out)?;
    // Hub models not in the cache are downloaded next, before the stop
    // signals are taken over: Ctrl-C ends a download at once, and the
    // next run resumes the partial file.
    super::fetch::hub_models(&inputs, quiet)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    on_stop_signals(&cancel, &signal);
    let plan = Plan::build(&recipe).map_err(|e| super::named(recipe_path, e))?;
    if cancel.load(Ordering::Relaxed) {
        return Err(cancelled(signal.load(Ordering::Relaxed)));
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let tty = std::io::stderr().is_terminal();
    let summary = std::thread::scope(|scope| {
        let printer = scope.spawn(move || {
            if !quiet {
                progress::print(&rx, tty);
            }
        });
        let r = engine::run(&plan, &opts, &tx, &cancel);
        drop(tx);
        let _ = printer.join();
        r
    })
    .map_err(|e| match e {
        engine::EngineError::Cancelled => cancelled(signal.load(Ordering::Relaxed)),
        e => e.into(),
    })?;
    super::emit(&format!(
        "merged {} tensors ({}): {} read, {} written in {:.2} s ({:.2} GB/s) -> {}\n",
        summary.tensors,
        recipe.method.name(),
        bytes(summary.bytes_read),
        bytes(summary.bytes_written),
        summary.elapsed.as_secs_f64(),
        summary.gb_per_s(),
        summary.out.display()
    ))
}
