//! smelt as a library: load a recipe, plan it, run it with progress
//! events and a cancel flag, as the CLI and the workbench do.
//!
//! ```sh
//! cargo run --example library [RECIPE [OUT]]
//! ```
//!
//! RECIPE defaults to the bundled `sample_models/recipes/llama-ties.toml`,
//! OUT to a fresh folder under the temporary directory; OUT must not exist.

use smelt::engine::{self, Event, Options, Summary};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Merge the recipe at `recipe` into `out`, printing a few progress events.
pub fn merge(recipe: &Path, out: &Path) -> anyhow::Result<Summary> {
    let recipe = smelt::recipe::Recipe::load(recipe)?;
    let plan = smelt::plan::Plan::build(&recipe)?;
    // Another thread (a Ctrl-C handler, a UI) may set this to stop the
    // merge; the engine then removes what it wrote and returns Cancelled.
    let cancel = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::scope(|s| {
        s.spawn(move || {
            for (i, event) in rx.iter().enumerate() {
                match event {
                    Event::Started { tensors, .. } => println!("started: {tensors} tensors"),
                    Event::Progress {
                        tensor,
                        bytes_done,
                        bytes_total,
                        ..
                    } if i <= 3 => {
                        println!("{bytes_done}/{bytes_total} bytes, at {tensor}")
                    }
                    Event::Finished(summary) => println!("finished: {}", summary.out.display()),
                    Event::Progress { .. } => {}
                }
            }
        });
        let result = engine::run(&plan, &Options::new(out), &tx, &cancel);
        drop(tx); // ends the printing thread's loop
        result
    })
    .map_err(Into::into)
}

#[allow(dead_code)] // The tests include this file for `merge` alone.
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe = args
        .next()
        .unwrap_or_else(|| root.join("sample_models/recipes/llama-ties.toml"));
    let out = args.next().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("smelt-library-example-{}", std::process::id()))
    });
    let summary = merge(&recipe, &out)?;
    println!(
        "{} tensors, {} bytes written",
        summary.tensors, summary.bytes_written
    );
    Ok(())
}
