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
    // A bar redrawn in place on a terminal; otherwise a line every few
    // seconds (a short build writes none), as `smelt merge` does.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pb = (!a.quiet && tty).then(|| {
        let pb =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "moe [{bar:30}] {bytes}/{total_bytes} {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#>-"),
        );
        pb
    });
    let last = std::sync::Mutex::new(std::time::Instant::now());
    let quiet = a.quiet;
    let progress = |p: moe::Progress| {
        if quiet || p.total == 0 {
            return;
        }
        if let Some(pb) = &pb {
            pb.set_length(p.total);
            pb.set_position(p.done);
            return;
        }
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if l.elapsed() >= std::time::Duration::from_secs(2) {
            *l = std::time::Instant::now();
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "moe: {} of {} written",
                bytes(p.done),
                bytes(p.total)
            );
        }
    };
    let built = moe::build(&recipe, &opts, &progress, &cancel);
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let s = built?;
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
