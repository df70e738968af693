//! The job layer against the real engine on the parity fixture models:
//! opening, statistics (latest wins), saving TOML and mergekit YAML, and a
//! merge with progress events.

use crossbeam_channel::{unbounded, Receiver};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use smelt::recipe::Recipe;
use smelt::tui::jobs::{recipe_for_models, Jobs};
use smelt::tui::state::{App, MergeState};
use smelt::tui::update::{update, Effect, Msg};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models")
}

fn recv(rx: &Receiver<Msg>) -> Msg {
    rx.recv_timeout(Duration::from_secs(60))
        .expect("a message from a job")
}

fn opened_app(jobs: &Jobs) -> App {
    let m = models();
    let r = recipe_for_models(
        vec![m.join("ft0"), m.join("ft1"), m.join("ft2")],
        Some(m.join("base")),
    );
    let mut app = App::new(PathBuf::from("/tmp"), PathBuf::from("/tmp"));
    let loaded = jobs.load_now(r, None);
    update(&mut app, Msg::Loaded(loaded));
    app
}

#[test]
fn statistics_arrive_for_what_was_asked_latest_wins() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = opened_app(&jobs);
    assert_eq!(app.slots.len(), 4);
    assert_eq!(app.layers.len(), 6, "embeddings, 4 layers, head");
    let Some(Effect::Analyze { recipe, targets }) = smelt::tui::update::initial_analysis(&app)
    else {
        panic!("nothing to analyse");
    };
    // Ask, then immediately ask again for a single target: the first request
    // is dropped or cancelled; every result that arrives is for a requested
    // key, and the last request is answered.
    jobs.handle(Effect::Analyze {
        recipe: recipe.clone(),
        targets: targets.clone(),
    });
    let one = vec![targets[1].clone()];
    jobs.handle(Effect::Analyze {
        recipe,
        targets: one.clone(),
    });
    loop {
        let Msg::Analysis {
            key,
            target,
            result,
        } = recv(&rx)
        else {
            panic!("unexpected message");
        };
        assert!(targets.iter().any(|(t, k)| *t == target && *k == key));
        let stats = result.expect("statistics");
        assert_eq!(stats.agree.len(), 4, "3 inputs");
        assert_eq!(stats.agree.iter().sum::<u64>(), stats.params);
        update(
            &mut app,
            Msg::Analysis {
                key,
                target: target.clone(),
                result: Ok(stats),
            },
        );
        if target == one[0].0 {
            break;
        }
    }
    assert!(matches!(app.stats_for(&one[0].0), Some((Ok(_), true))));
}

#[test]
fn open_save_as_toml_and_yaml_and_reopen() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/recipes/ties.yml");
    jobs.handle(Effect::Open(fixture.clone()));
    let Msg::Loaded(Ok(l)) = recv(&rx) else {
        panic!("not opened")
    };
    let mut app = App::new(PathBuf::from("/tmp"), PathBuf::from("/tmp"));
    update(&mut app, Msg::Loaded(Ok(l)));
    let want = Recipe::load(&fixture).unwrap();
    assert_eq!(app.to_recipe(), want, "the screen holds exactly the recipe");

    let d = tempfile::tempdir().unwrap();
    for name in ["deep/r.toml", "r.yaml"] {
        let path = d.path().join(name);
        jobs.handle(Effect::Save {
            recipe: app.to_recipe(),
            path: path.clone(),
        });
        let Msg::Saved(Ok((p, _))) = recv(&rx) else {
            panic!("not saved")
        };
        assert_eq!(p, path);
        let back = Recipe::load(&path).unwrap();
        assert_eq!(back.method, want.method);
        assert_eq!(back.models.len(), want.models.len());
        assert_eq!(back.params, want.params);
        if name.ends_with(".yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("merge_method"), "{text}");
        }
    }
    // Saving somewhere impossible reports the path.
    jobs.handle(Effect::Save {
        recipe: app.to_recipe(),
        path: PathBuf::from("/proc/nope/r.toml"),
    });
    let Msg::Saved(Err(e)) = recv(&rx) else {
        panic!("saved into /proc?")
    };
    assert!(e.contains("/proc/nope"), "{e}");
}

#[test]
fn merge_reports_progress_and_a_summary() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = opened_app(&jobs);
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    app.merge = MergeState::started(out.clone());
    jobs.handle(Effect::StartMerge {
        recipe: app.to_recipe(),
        out: out.clone(),
    });
    let mut events = 0;
    loop {
        match recv(&rx) {
            Msg::Merge { event, elapsed } => {
                events += 1;
                update(&mut app, Msg::Merge { event, elapsed });
            }
            Msg::MergeDone(r) => {
                update(&mut app, Msg::MergeDone(r));
                break;
            }
            _ => {}
        }
    }
    assert!(events > 0);
    let MergeState::Done(s) = &app.merge else {
        panic!("{:?}", app.merge)
    };
    assert_eq!(s.out, out);
    assert!(out.join("model.safetensors").is_file());
    // A second run into the same folder is refused, with the path named.
    jobs.handle(Effect::StartMerge {
        recipe: app.to_recipe(),
        out: out.clone(),
    });
    let err = loop {
        if let Msg::MergeDone(r) = recv(&rx) {
            break r.expect_err("output exists");
        }
    };
    assert!(err.contains(out.to_str().unwrap()), "{err}");
}

#[test]
fn a_small_tensor_gets_no_preview_but_its_exact_answer() {
    use smelt::analysis::{Analyzer, Inputs, Target};
    use smelt::model::Model;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let m = models();
    let open = |n: &str| Arc::new(Model::open(&m.join(n)).unwrap());
    let inputs = Inputs {
        reference: open("base"),
        models: ["ft0", "ft1", "ft2"].iter().map(|n| open(n)).collect(),
    };
    let recipe = recipe_for_models(
        vec![m.join("ft0"), m.join("ft1"), m.join("ft2")],
        Some(m.join("base")),
    );
    let name = "model.layers.1.mlp.up_proj.weight";
    let cancel = AtomicBool::new(false);
    let mut an = Analyzer::new(1 << 20);
    assert_eq!(an.preview(&inputs, &recipe, name, &cancel).unwrap(), None);
    let exact = an
        .analyze(&inputs, &recipe, &Target::Tensor(name.into()), &cancel)
        .unwrap();
    assert_eq!(exact.stats.agree.iter().sum::<u64>(), exact.stats.params);
}

/// A zipit merge of the bundled digits-zip pair, run by the real engine,
/// is followed by an accuracy report for the merge and each input.
#[test]
fn a_zipit_merge_of_digits_reports_accuracy() {
    use smelt::tui::state::{AccuracyState, Panel};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models");
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let recipe = Recipe::load(&root.join("recipes/digits-zipit.toml")).expect("sample recipe");
    let mut app = App::new(PathBuf::from("/tmp"), PathBuf::from("/tmp"));
    update(&mut app, Msg::Loaded(jobs.load_now(recipe, None)));
    assert_eq!(app.slots.len(), 2);
    // smelt-mlp tensors `layers.{i}.*`: one group per layer, no embeddings.
    assert_eq!(app.layers.len(), 4, "{:?}", app.layers);
    assert_eq!(app.zip_max(), 3);
    assert!(app.analysis_blocked().is_some(), "no base: no task vectors");
    // Depth 2 from the Layers panel: rows all, layer 0, layer 1.
    app.focus = Panel::Layers;
    for c in [KeyCode::Down, KeyCode::Down, KeyCode::Char('z')] {
        update(&mut app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
    }
    assert_eq!(app.zip_depth(), 2);
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("zipped");
    app.merge = MergeState::started(out.clone());
    jobs.handle(Effect::StartMerge {
        recipe: app.to_recipe(),
        out: out.clone(),
    });
    let fx = loop {
        match recv(&rx) {
            Msg::MergeDone(r) => break update(&mut app, Msg::MergeDone(r)),
            m @ Msg::Merge { .. } => {
                update(&mut app, m);
            }
            _ => {}
        }
    };
    assert!(matches!(app.merge, MergeState::Done(_)), "{:?}", app.merge);
    for e in fx {
        jobs.handle(e);
    }
    loop {
        if let m @ Msg::Accuracy { .. } = recv(&rx) {
            update(&mut app, m);
            break;
        }
    }
    let AccuracyState::Done(acc) = &app.accuracy else {
        panic!("{:?}", app.accuracy)
    };
    let merged = acc.merged.as_ref().expect("merged model evaluates");
    assert_eq!(merged.heads.len(), 2, "one head per input");
    assert!(merged.joint_accuracy > 0.5, "{merged:?}");
    assert_eq!(acc.inputs.len(), 2);
    for (name, r) in &acc.inputs {
        let r = r.as_ref().expect("input evaluates");
        assert!(r.heads[0].accuracy > 0.9, "{name}: {r:?}");
    }
}

/// A merge whose output is not an MLP gets no accuracy report.
#[test]
fn no_accuracy_for_non_mlp_outputs() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let m = models();
    jobs.handle(Effect::Evaluate {
        out: m.join("ft0"),
        inputs: vec![(m.join("ft1"), "ft1".into())],
    });
    loop {
        if let Msg::Accuracy { out, result } = recv(&rx) {
            assert_eq!(out, m.join("ft0"));
            assert!(result.is_none());
            break;
        }
    }
}
