//! `smelt moe`: build a mixture-of-experts model from a mergekit-moe
//! recipe. Ctrl-C, SIGTERM and SIGHUP cancel it (the partial output is
//! removed); the output's lock is taken first, so a second build to the
//! same folder stops at once.

use super::{CliError, CliResult};
use smelt::model::OutputLock;
use smelt::moe::{self, MoeError, MoeRecipe, Options};
use smelt::units::bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl From<MoeError> for CliError {
    fn from(e: MoeError) -> Self {
        match e {
            MoeError::Cancelled => CliError {
                message: "cancelled; nothing was written".into(),
                code: 130,
            },
            e if e.is_environment() => CliError::internal(e),
            e => CliError::input(e),
        }
    }
}

/// What `smelt moe` was given.
pub struct Args {
    pub recipe: PathBuf,
    pub out: PathBuf,
    pub force: bool,
    pub seed: u64,
    pub shard_size: u64,
    pub quiet: bool,
    pub sync: bool,
    pub allow_all_same: bool,
}

pub fn run(a: Args) -> CliResult {
    let recipe = MoeRecipe::load(&a.recipe)?;
    let inputs: Vec<PathBuf> = recipe.models().iter().map(|m| m.path.clone()).collect();
    smelt::model::check_destination(&a.out, &inputs, a.force)?;
    let _lock = OutputLock::acquire(&a.out)?;
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ =
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&cancel));
        let _ = signal_hook::flag::register(sig, Arc::clone(&cancel));
    }
    let opts = Options {
        out: a.out,
        force: a.force,
        seed: a.seed,
        shard_size: a.shard_size,
        sync: a.sync,
        allow_all_same: a.allow_all_same,
    };
    let quiet = a.quiet;
    let last = std::sync::Mutex::new(0u64);
    let progress = |p: moe::Progress| {
        if quiet || p.total == 0 {
            return;
        }
        // A line per 10% at most, so a pipe or log gets a few lines.
        let tenth = p.done * 10 / p.total;
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if tenth > *l {
            *l = tenth;
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "moe: {} of {} written",
                bytes(p.done),
                bytes(p.total)
            );
        }
    };
    let s = moe::build(&recipe, &opts, &progress, &cancel)?;
    if cancel.load(Ordering::Relaxed) {
        return Err(MoeError::Cancelled.into());
    }
    super::emit(&format!(
        "built {} with {} experts ({} gates): {} tensors, {} -> {}\n",
        s.arch.name(),
        s.experts,
        recipe.gate_mode.name(),
        s.tensors,
        bytes(s.bytes),
        show(&s.out)
    ))
}

fn show(p: &Path) -> String {
    p.display().to_string()
}
