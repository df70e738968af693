//! Limits the engine keeps whatever a recipe or its caller asks: a cancel
//! reaches Karcher's iterations, and the thread count is capped.

use smelt::engine::{self, EngineError, Event, Options};
use smelt::merge::Method;
use smelt::model::{write_small, Dtype};
use smelt::plan::Plan;
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Three small models of one tensor each.
fn models(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|k| {
            let data: Vec<f32> = (0..64)
                .map(|i| ((i * 37 + k * 11) % 17) as f32 - 8.0)
                .collect();
            let p = dir.join(format!("m{k}"));
            std::fs::create_dir_all(&p).expect("mkdir");
            write_small(
                &p.join("model.safetensors"),
                &[("model.layers.0.mlp.weight".to_string(), vec![4, 16], data)],
                Dtype::F32,
                &[],
            )
            .expect("write");
            p
        })
        .collect()
}

#[test]
fn karcher_with_endless_iterations_is_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Recipe::new(Method::Karcher, None, models(dir.path()));
    r.params
        .insert("max_iter".into(), Value::Number(1_000_000_000_000.0));
    r.params.insert("tol".into(), Value::Number(0.0));
    let plan = Plan::build(&r).expect("plan");
    let out = dir.path().join("out");
    let mut opts = Options::new(&out);
    opts.threads = Some(1);
    let cancel = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    let result = std::thread::scope(|s| {
        let cancel = &cancel;
        s.spawn(move || {
            // The first progress event comes while the only tensor is
            // still iterating: cancel then.
            for ev in rx.iter() {
                if matches!(ev, Event::Progress { .. }) {
                    cancel.store(true, Ordering::Relaxed);
                    return;
                }
            }
        });
        let r = engine::run(&plan, &opts, &tx, cancel);
        drop(tx);
        r
    });
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert!(!out.exists());
}

#[test]
fn thread_counts_past_the_cap_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = models(dir.path());
    let plan = Plan::build(&Recipe::new(Method::Linear, None, paths.clone()).with_weights())
        .expect("plan");
    let cap = engine::max_threads();
    assert!((1..=1024).contains(&cap), "{cap}");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let run = |threads: usize, out: &str| {
        let mut opts = Options::new(dir.path().join(out));
        opts.threads = Some(threads);
        opts.sync = false;
        engine::run(&plan, &opts, &tx, &AtomicBool::new(false))
    };
    for asked in [cap + 1, 100_000] {
        match run(asked, "too-many") {
            Err(e @ EngineError::Input(_)) => {
                let text = e.to_string();
                assert!(
                    text.contains(&asked.to_string()) && text.contains(&format!("at most {cap}")),
                    "{text}"
                );
            }
            other => panic!("{asked} threads: {other:?}"),
        }
        assert!(!dir.path().join("too-many").exists());
    }
    run(cap, "at-cap").expect("the cap itself is allowed");
}

trait WithWeights {
    fn with_weights(self) -> Self;
}

impl WithWeights for Recipe {
    fn with_weights(mut self) -> Recipe {
        for m in &mut self.models {
            m.params.insert("weight".into(), Value::Number(1.0));
        }
        self
    }
}
