//! `smelt merge`: run a recipe headless, with a progress bar on a terminal
//! and plain lines otherwise, and a one-line summary at the end.

use super::CliResult;
use smelt::engine::{self, Event, Options};
use smelt::plan::Plan;
use smelt::recipe::Recipe;
use smelt::units::bytes;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
) -> CliResult {
    let recipe = Recipe::load(recipe_path)?;
    let plan = Plan::build(&recipe).map_err(|e| super::named(recipe_path, e))?;
    let opts = Options {
        out,
        force,
        threads,
        shard_size,
        sync,
        allow_nonfinite,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        // Ctrl-C cancels: the engine stops and removes its partial output.
        let cancel = Arc::clone(&cancel);
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::Relaxed));
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let tty = std::io::stderr().is_terminal();
    let summary = std::thread::scope(|scope| {
        let printer = scope.spawn(move || {
            if !quiet {
                print_progress(&rx, tty);
            }
        });
        let r = engine::run(&plan, &opts, &tx, &cancel);
        drop(tx);
        let _ = printer.join();
        r
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

/// Draw progress until the channel closes: a redrawn bar on a terminal, a
/// line every few seconds otherwise (logs stay readable).
fn print_progress(rx: &crossbeam_channel::Receiver<Event>, tty: bool) {
    let start = Instant::now();
    let mut last_line = Instant::now();
    let mut err = std::io::stderr();
    for ev in rx.iter() {
        match ev {
            Event::Started {
                tensors,
                bytes_total,
            } => {
                if !tty {
                    let _ = writeln!(
                        err,
                        "merging {tensors} tensors, {} to read",
                        bytes(bytes_total)
                    );
                }
            }
            Event::Progress {
                tensor,
                tensors_done,
                bytes_done,
                bytes_total,
            } => {
                let frac = if bytes_total == 0 {
                    1.0
                } else {
                    bytes_done as f64 / bytes_total as f64
                };
                let elapsed = start.elapsed().as_secs_f64();
                let eta = if frac > 0.0 {
                    elapsed * (1.0 - frac) / frac
                } else {
                    0.0
                };
                if tty {
                    let width = 30;
                    let filled = ((frac * width as f64) as usize).min(width);
                    let name: String = tensor
                        .chars()
                        .rev()
                        .take(32)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    let _ = write!(
                        err,
                        "\r\x1b[K[{}{}] {:>5.1}% {:>4} tensors  ETA {:>4.0}s  {}",
                        "#".repeat(filled),
                        "-".repeat(width - filled),
                        frac * 100.0,
                        tensors_done,
                        eta,
                        name
                    );
                    let _ = err.flush();
                } else if last_line.elapsed() >= Duration::from_secs(2) {
                    last_line = Instant::now();
                    let _ = writeln!(
                        err,
                        "{:5.1}%  {tensors_done} tensors  {}/{}  ETA {eta:.0}s",
                        frac * 100.0,
                        bytes(bytes_done),
                        bytes(bytes_total)
                    );
                }
            }
            Event::Finished(_) => {}
        }
    }
    if tty {
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}
