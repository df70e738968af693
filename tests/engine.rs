//! The engine under interruption: a cancel flag, a killed process. Either
//! way no output folder appears, inputs are untouched, and the next run
//! cleans up what a killed run left. Nothing here races a clock: the
//! interrupted merges are of inputs far too big to finish before the
//! interruption that their first progress report triggers.

mod sparse;

use smelt::engine::{self, EngineError, Event, Options};
use smelt::merge::Method;
use smelt::model::{write_small, Dtype};
use smelt::plan::Plan;
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A base and two fine-tunes, each one tensor of `n` floats.
fn family(dir: &Path, n: usize) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (k, name) in ["base", "ft0", "ft1"].iter().enumerate() {
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + k * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let p = dir.join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        write_small(
            &p.join("model.safetensors"),
            &[(
                "model.layers.0.mlp.weight".to_string(),
                vec![n / 1024, 1024],
                data,
            )],
            Dtype::F32,
            &[],
        )
        .expect("write model");
        paths.push(p);
    }
    paths
}

fn ties(paths: &[PathBuf]) -> Recipe {
    let mut r = Recipe::new(Method::Ties, Some(paths[0].clone()), paths[1..].to_vec());
    for m in &mut r.models {
        m.params.insert("weight".into(), Value::Number(0.5));
        m.params.insert("density".into(), Value::Number(0.3));
    }
    r
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A base and two fine-tunes of 1 GiB sparse tensors.
fn sparse_family(dir: &Path, tensors: usize) -> Vec<PathBuf> {
    sparse::family(dir, tensors, sparse::GIB, sparse::up_proj)
}

/// Cancelling when the merge reports it has started stops it and leaves
/// nothing. The inputs take many seconds to merge, so the cancel always
/// arrives during the run; how quickly it is honoured is not timed here.
#[test]
fn cancel_stops_the_run_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = sparse_family(dir.path(), 4);
    let plan = Plan::build(&ties(&paths)).expect("plan");
    let out = dir.path().join("out");
    let cancel = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut opts = Options::new(&out);
    opts.threads = Some(2);
    let result = std::thread::scope(|s| {
        let cancel = &cancel;
        let watcher = s.spawn(move || {
            // Cancel as soon as the merge reports it is under way.
            for ev in rx.iter() {
                if matches!(ev, Event::Started { .. }) {
                    cancel.store(true, Ordering::Relaxed);
                    return true;
                }
            }
            false
        });
        let r = engine::run(&plan, &opts, &tx, cancel);
        drop(tx);
        assert!(watcher.join().expect("watcher"), "Started was not sent");
        r
    });
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert_eq!(entries(dir.path()), vec!["base", "ft0", "ft1"]);
}

/// Start `smelt merge r.toml --out out` in `dir` and return it once it
/// reports the merge under way (its partial folder exists then), with the
/// rest of its error output still to read.
fn start_merge(
    dir: &Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["merge", "r.toml", "--out", "out"])
        .current_dir(dir)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        match err.read_line(&mut line) {
            Ok(n) if n > 0 => {
                if line.starts_with("merging ") {
                    return (child, err);
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("smelt ended before the merge started");
            }
        }
    }
}

/// A sparse model's size, modification time and header: enough to see
/// it was not written to, without reading its gigabytes of hole.
fn stamp(model: &Path) -> (u64, std::time::SystemTime, Vec<u8>) {
    use std::io::Read;
    let f = model.join("model.safetensors");
    let meta = std::fs::metadata(&f).expect("stat");
    let mut head = Vec::new();
    std::fs::File::open(&f)
        .expect("open")
        .take(4096)
        .read_to_end(&mut head)
        .expect("read");
    (meta.len(), meta.modified().expect("mtime"), head)
}

#[test]
fn a_killed_merge_leaves_no_output_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = sparse_family(dir.path(), 4);
    ties(&paths)
        .save(&dir.path().join("r.toml"))
        .expect("save recipe");
    let before: Vec<_> = paths.iter().map(|p| stamp(p)).collect();
    // Kill the process outright while it merges.
    let (mut child, _err) = start_merge(dir.path());
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(
        !dir.path().join("out").exists(),
        "a killed merge published an output"
    );
    assert!(
        entries(dir.path())
            .iter()
            .any(|e| e.starts_with("out.partial-")),
        "the killed merge left no partial folder: {:?}",
        entries(dir.path())
    );
    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(&stamp(p), b, "input changed");
    }
    // The next run, of a small recipe to the same output, succeeds and
    // removes the dead run's partial folder and lock file.
    let small = family(&dir.path().join("small"), 1 << 12);
    ties(&small)
        .save(&dir.path().join("small.toml"))
        .expect("save recipe");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["merge", "small.toml", "--out", "out", "-q"])
        .current_dir(dir.path())
        .output()
        .expect("rerun");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        entries(dir.path()),
        vec!["base", "ft0", "ft1", "out", "r.toml", "small", "small.toml"]
    );
}

#[test]
fn progress_counts_every_pass_and_never_overshoots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = family(dir.path(), 1 << 23);
    let plan = Plan::build(&ties(&paths)).expect("plan");
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut opts = Options::new(dir.path().join("out"));
    opts.threads = Some(1);
    engine::run(&plan, &opts, &tx, &AtomicBool::new(false)).expect("merge");
    drop(tx);
    let input = plan.input_bytes();
    let mut last_done = 0;
    let mut saw_pass_counted = false;
    let mut progress = 0;
    let mut last = None;
    for ev in rx.iter() {
        match ev {
            Event::Started { bytes_total, .. } => assert_eq!(bytes_total, input),
            Event::Progress {
                bytes_done,
                bytes_total,
                tensors_done,
                ..
            } => {
                progress += 1;
                last = Some((tensors_done, bytes_done, bytes_total));
                assert!(bytes_done <= bytes_total, "{bytes_done} > {bytes_total}");
                assert!(bytes_done >= last_done, "progress went backwards");
                last_done = bytes_done;
                // TIES reads the tensor once to select, once to merge: the
                // selection pass is part of the total.
                saw_pass_counted |= bytes_total > input;
            }
            Event::Finished(_) => {}
        }
    }
    assert!(progress > 0, "no progress event");
    // The last one, sent however fast the run, has every count complete.
    let (tensors, done, total) = last.expect("a progress event");
    assert_eq!(tensors, plan.jobs.len());
    assert_eq!(done, total, "every byte counted was read");
    assert!(saw_pass_counted, "the selection pass was not counted");
}

/// The model card names local models by absolute path, also when the
/// recipe names them relative to where the merge runs (as the workbench's
/// may): the same card from the CLI and the workbench.
#[test]
fn the_model_card_names_local_models_absolutely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = std::path::PathBuf::from;
    // Relative to the test's working folder, the crate root.
    assert_eq!(std::env::current_dir().unwrap(), root);
    let recipe = smelt::recipe::Recipe::for_models(
        vec![rel("sample_models/llama-synthetic/ft-broad")],
        Some(rel("sample_models/llama-synthetic/base")),
    );
    let plan = Plan::build(&recipe).expect("plan");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let out = dir.path().join("out");
    engine::run(&plan, &Options::new(&out), &tx, &AtomicBool::new(false)).expect("merge");
    let card = std::fs::read_to_string(out.join("README.md")).expect("card");
    let base = root.join("sample_models/llama-synthetic/base");
    assert!(
        card.contains(&format!("base_model: {}\n", base.display())),
        "{card}"
    );
    let ft = root.join("sample_models/llama-synthetic/ft-broad");
    assert!(card.contains(&format!("- `{}`", ft.display())), "{card}");
}
