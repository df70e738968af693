//! The engine under interruption: a cancel flag, a killed process. Either
//! way no output folder appears, inputs are untouched, and the next run
//! cleans up what a killed run left.

use smelt::engine::{self, EngineError, Event, Options};
use smelt::merge::Method;
use smelt::model::{write_small, Dtype};
use smelt::plan::Plan;
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

#[test]
fn cancel_stops_the_run_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = family(dir.path(), 1 << 23);
    let plan = Plan::build(&ties(&paths)).expect("plan");
    let out = dir.path().join("out");
    let cancel = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut opts = Options::new(&out);
    opts.threads = Some(2);
    let (result, latency) = std::thread::scope(|s| {
        let cancel = &cancel;
        let watcher = s.spawn(move || {
            // Cancel as soon as the merge reports it is under way.
            for ev in rx.iter() {
                if matches!(ev, Event::Started { .. }) {
                    cancel.store(true, Ordering::Relaxed);
                    return Some(Instant::now());
                }
            }
            None
        });
        let r = engine::run(&plan, &opts, &tx, cancel);
        let done = Instant::now();
        drop(tx);
        let asked = watcher.join().expect("watcher").expect("Started was sent");
        (r, done.saturating_duration_since(asked))
    });
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    eprintln!("cancel honoured after {latency:?}");
    assert!(latency < Duration::from_secs(5), "cancel took {latency:?}");
    assert_eq!(entries(dir.path()), vec!["base", "ft0", "ft1"]);
}

#[test]
fn a_killed_merge_leaves_no_output_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = family(dir.path(), 1 << 24);
    let recipe = dir.path().join("r.toml");
    ties(&paths).save(&recipe).expect("save recipe");
    let before: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p.join("model.safetensors")).expect("read"))
        .collect();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["merge", "r.toml", "--out", "out", "-q"])
        .current_dir(dir.path())
        .spawn()
        .expect("spawn");
    // Wait for the partial folder, then kill the process outright.
    let start = Instant::now();
    loop {
        if entries(dir.path())
            .iter()
            .any(|e| e.starts_with("out.partial-"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no partial folder appeared"
        );
        if child.try_wait().expect("try_wait").is_some() {
            panic!("the merge finished before it could be killed; make the model bigger");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(
        !dir.path().join("out").exists(),
        "a killed merge published an output"
    );
    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(p.join("model.safetensors")).expect("read"),
            b,
            "input changed"
        );
    }
    // The next run succeeds and removes the dead run's partial folder.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["merge", "r.toml", "--out", "out", "-q"])
        .current_dir(dir.path())
        .output()
        .expect("rerun");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        entries(dir.path()),
        vec!["base", "ft0", "ft1", "out", "r.toml"]
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
    for ev in rx.iter() {
        match ev {
            Event::Started { bytes_total, .. } => assert_eq!(bytes_total, input),
            Event::Progress {
                bytes_done,
                bytes_total,
                ..
            } => {
                progress += 1;
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
    assert!(
        progress > 0,
        "no progress event during a multi-second merge"
    );
    assert!(saw_pass_counted, "the selection pass was not counted");
}
