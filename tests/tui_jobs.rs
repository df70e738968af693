//! The job layer against the real engine on the parity fixture models:
//! opening, statistics (latest wins), saving TOML and mergekit YAML, a
//! merge with progress events, ZipIt! accuracy.

#![cfg(feature = "tui")]

use crossbeam_channel::{unbounded, Receiver};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use smelt::model::{write_small, Dtype};
use smelt::recipe::Recipe;
use smelt::tui::jobs::Jobs;
use smelt::tui::state::{App, MergeState, Target, Ticket};
use smelt::tui::update::{update, Effect, JobError, Msg, SaveRequest};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models")
}

fn recv(rx: &Receiver<Msg>) -> Msg {
    rx.recv_timeout(Duration::from_secs(120))
        .expect("a message from a job")
}

fn opened_app(jobs: &Jobs) -> App {
    let m = models();
    let r = Recipe::for_models(
        vec![m.join("ft0"), m.join("ft1"), m.join("ft2")],
        Some(m.join("base")),
    );
    let mut app = App::new(PathBuf::from("/tmp"), PathBuf::from("/tmp"));
    let l = jobs.load_now(r, None, None).expect("fixtures open");
    app.load(&l.recipe, &l.infos, l.layers);
    app
}

#[test]
fn statistics_arrive_for_what_was_asked() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = opened_app(&jobs);
    assert_eq!(app.doc.slots.len(), 4);
    assert_eq!(app.doc.layers.len(), 6, "embeddings, 4 layers, head");
    let Some(Effect::Analyze {
        recipe,
        reference,
        targets,
    }) = smelt::tui::update::initial_analysis(&app)
    else {
        panic!("nothing to analyse");
    };
    jobs.handle(Effect::Analyze {
        recipe,
        reference,
        targets: targets.clone(),
    });
    let mut left = targets.len();
    while left > 0 {
        let Msg::Analysis {
            key,
            target,
            result,
        } = recv(&rx)
        else {
            continue;
        };
        assert!(targets.iter().any(|(t, k)| *t == target && *k == key));
        let rep = result.expect("statistics");
        assert_eq!(rep.stats.agree.len(), 4, "3 inputs");
        assert_eq!(rep.stats.agree.iter().sum::<u64>(), rep.stats.params);
        update(
            &mut app,
            Msg::Analysis {
                key,
                target,
                result: Ok(rep),
            },
        );
        left -= 1;
    }
    assert!(app.wanted_targets().is_empty(), "everything current");
}

/// A model with one big tensor (so its statistics take a while and get a
/// sampled preview first) and a small one.
fn big_family(dir: &Path) -> Vec<PathBuf> {
    let rows = 2048;
    let cols = 4096;
    let mut out = Vec::new();
    for (i, name) in ["base", "a", "b", "c"].iter().enumerate() {
        let mut rng = smelt::mlp::Rng::new(i as u64 + 1);
        let mut noise =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range_f32(-0.5, 0.5)).collect() };
        let p = dir.join(name);
        write_small(
            &p,
            &[
                (
                    "model.layers.0.mlp.up_proj.weight".into(),
                    vec![rows, cols],
                    noise(rows * cols),
                ),
                (
                    "model.layers.0.input_layernorm.weight".into(),
                    vec![cols],
                    noise(cols),
                ),
                (
                    "model.layers.1.input_layernorm.weight".into(),
                    vec![cols],
                    noise(cols),
                ),
                ("model.norm.weight".into(), vec![cols], noise(cols)),
            ],
            Dtype::BF16,
            &[],
        )
        .unwrap();
        out.push(p);
    }
    out
}

/// Latest wins: once the worker is busy with a request (its big tensor's
/// preview has arrived, the exact figures are being computed), a new
/// request stops it: the next result is the new request's, and the old
/// big tensor's exact result never comes. Without cancelling, the worker
/// would finish the old request first.
#[test]
fn a_new_request_cancels_the_one_running() {
    let d = tempfile::tempdir().unwrap();
    let paths = big_family(d.path());
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let recipe = Recipe::for_models(paths[1..].to_vec(), Some(paths[0].clone()));
    let big = Target::Tensor("model.layers.0.mlp.up_proj.weight".into());
    let small = Target::Tensor("model.norm.weight".into());
    let key = smelt::tui::state::StatsKey;
    jobs.handle(Effect::Analyze {
        recipe: recipe.clone(),
        reference: paths[0].clone(),
        targets: vec![
            (big.clone(), key(1)),
            (
                Target::Tensor("model.layers.0.input_layernorm.weight".into()),
                key(2),
            ),
            (
                Target::Tensor("model.layers.1.input_layernorm.weight".into()),
                key(3),
            ),
        ],
    });
    loop {
        match recv(&rx) {
            Msg::Preview { target, .. } if target == big => break,
            Msg::Analysis { target, .. } => panic!("{target:?} before the big tensor's preview"),
            _ => {}
        }
    }
    jobs.handle(Effect::Analyze {
        recipe,
        reference: paths[0].clone(),
        targets: vec![(small.clone(), key(9))],
    });
    loop {
        if let Msg::Analysis { target, key: k, .. } = recv(&rx) {
            assert_eq!(
                (target, k),
                (small, key(9)),
                "the running request was not cancelled"
            );
            break;
        }
    }
}

#[test]
fn open_save_as_toml_and_yaml_and_reopen() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/recipes/ties.yml");
    jobs.handle(Effect::Open {
        ticket: Ticket(1),
        path: fixture.clone(),
        data_dir: std::env::temp_dir().join("smelt-no-data"),
    });
    let Msg::Opened {
        result: Ok(l),
        ticket,
        ..
    } = recv(&rx)
    else {
        panic!("not opened")
    };
    assert_eq!(ticket, Ticket(1));
    let mut app = App::new(PathBuf::from("/tmp"), PathBuf::from("/tmp"));
    app.load(&l.recipe, &l.infos, l.layers);
    let want = Recipe::load(&fixture).unwrap();
    assert_eq!(
        app.doc.to_recipe(),
        want,
        "the screen holds exactly the recipe"
    );

    let d = tempfile::tempdir().unwrap();
    for name in ["deep/r.toml", "r.yaml"] {
        let path = d.path().join(name);
        jobs.handle(Effect::Save {
            ticket: Ticket(2),
            request: SaveRequest {
                recipe: app.doc.to_recipe(),
                path: path.clone(),
                over: None,
                force: false,
                n_layers: app.doc.n_layers(),
                multi: None,
            },
        });
        let Msg::Saved {
            result: Ok(s),
            path: p,
            ..
        } = recv(&rx)
        else {
            panic!("not saved")
        };
        assert_eq!(p, path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), s.text);
        let back = Recipe::load(&path).unwrap();
        assert_eq!(back.method, want.method);
        assert_eq!(back.models.len(), want.models.len());
        assert_eq!(back.params, want.params);
    }
    // Saving somewhere impossible reports the path.
    jobs.handle(Effect::Save {
        ticket: Ticket(3),
        request: SaveRequest {
            recipe: app.doc.to_recipe(),
            path: PathBuf::from("/proc/nope/r.toml"),
            over: None,
            force: false,
            n_layers: 4,
            multi: None,
        },
    });
    let Msg::Saved { result: Err(e), .. } = recv(&rx) else {
        panic!("saved into /proc?")
    };
    assert!(e.to_string().contains("/proc/nope"), "{e}");
}

/// Saving over the opened file keeps its comments, and refuses (until
/// forced) when the file changed on disk since it was read.
#[test]
fn saving_over_the_opened_recipe_keeps_comments_and_notices_changes() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let d = tempfile::tempdir().unwrap();
    let m = models();
    let path = d.path().join("r.toml");
    let text = format!(
        "# my notes on this merge\nmethod = \"ties\"\nbase = \"{}\"  # the base\n\n\
         [[models]]\npath = \"{}\"\nparameters = {{ weight = 1.0, density = 0.5 }}\n",
        m.join("base").display(),
        m.join("ft0").display()
    );
    std::fs::write(&path, &text).unwrap();
    let mut r = Recipe::load(&path).unwrap();
    r.models[0]
        .params
        .insert("density".into(), smelt::recipe::Value::Number(0.3));
    let save = |jobs: &mut Jobs, force: bool| {
        jobs.handle(Effect::Save {
            ticket: Ticket(1),
            request: SaveRequest {
                recipe: r.clone(),
                path: path.clone(),
                over: Some(text.clone()),
                force,
                n_layers: 4,
                multi: None,
            },
        });
        match recv(&rx) {
            Msg::Saved { result, .. } => result,
            other => panic!("{other:?}"),
        }
    };
    save(&mut jobs, false).expect("saved");
    let now = std::fs::read_to_string(&path).unwrap();
    assert!(
        now.contains("# my notes on this merge") && now.contains("# the base"),
        "{now}"
    );
    assert_eq!(Recipe::load(&path).unwrap(), r);
    // Someone else edits the file: the next save stops and says so.
    std::fs::write(&path, format!("{now}\n# edited elsewhere\n")).unwrap();
    assert_eq!(save(&mut jobs, false).unwrap_err(), JobError::ChangedOnDisk);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("edited elsewhere"));
    save(&mut jobs, true).expect("forced");
}

#[test]
fn merge_reports_progress_and_a_summary() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = opened_app(&jobs);
    let d = tempfile::tempdir().unwrap();
    app.work_dir = d.path().to_path_buf();
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE)),
    );
    let fx = update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    let out = match &fx[..] {
        [Effect::StartMerge { out, .. }] => out.clone(),
        other => panic!("{other:?}"),
    };
    for e in fx {
        jobs.handle(e);
    }
    let mut events = 0;
    loop {
        match recv(&rx) {
            m @ Msg::Merge { .. } => {
                events += 1;
                update(&mut app, m);
            }
            m @ Msg::MergeDone { .. } => {
                update(&mut app, m);
                break;
            }
            _ => {}
        }
    }
    assert!(events > 0);
    let MergeState::Done { summary, .. } = &app.merge else {
        panic!("{:?}", app.merge)
    };
    assert_eq!(summary.out, out);
    assert!(out.join("model.safetensors").is_file());
    // A second run into the same folder is refused, with the path named.
    jobs.handle(Effect::StartMerge {
        ticket: Ticket(77),
        recipe: app.doc.to_recipe(),
        out: out.clone(),
        force: false,
        origin: None,
    });
    let err = loop {
        if let Msg::MergeDone { result, .. } = recv(&rx) {
            break result.expect_err("output exists");
        }
    };
    assert!(matches!(err, JobError::Input(_)), "{err:?}");
    assert!(err.to_string().contains(out.to_str().unwrap()), "{err}");
}

#[test]
fn a_cancelled_merge_is_cancelled_not_failed_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let paths = big_family(d.path());
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let recipe = Recipe::for_models(paths[1..].to_vec(), Some(paths[0].clone()));
    let out = d.path().join("out");
    jobs.handle(Effect::StartMerge {
        ticket: Ticket(5),
        recipe,
        out: out.clone(),
        force: false,
        origin: None,
    });
    jobs.handle(Effect::CancelMerge);
    let r = loop {
        if let Msg::MergeDone { result, ticket } = recv(&rx) {
            assert_eq!(ticket, Ticket(5));
            break result;
        }
    };
    // Cancelled before it could finish, or finished first: never a failure.
    match r {
        Err(JobError::Cancelled) => assert!(!out.exists()),
        Ok(_) => assert!(out.join("model.safetensors").is_file()),
        Err(e) => panic!("{e:?}"),
    }
    let litter: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".partial"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}

#[test]
fn adding_a_model_that_does_not_fit_names_the_tensor() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let m = models();
    let llama =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/llama-synthetic/ft-broad");
    jobs.handle(Effect::AddModel {
        ticket: Ticket(1),
        path: llama.clone(),
        fits: Some(m.join("base")),
    });
    let Msg::ModelAdded { result, .. } = recv(&rx) else {
        panic!()
    };
    let e = result.expect_err("does not fit").to_string();
    assert!(e.contains("does not fit") && e.contains("model."), "{e}");
    jobs.handle(Effect::AddModel {
        ticket: Ticket(2),
        path: m.join("ft2"),
        fits: Some(m.join("base")),
    });
    let Msg::ModelAdded { result, .. } = recv(&rx) else {
        panic!()
    };
    let (info, layers) = result.expect("fits");
    assert_eq!(info.name, "ft2");
    assert_eq!(layers.len(), 6);
}

/// smelt MLPs trained on other classes fit together (their heads differ,
/// and a merge keeps each input's head), as a recipe naming them does:
/// `a` once refused the bundled digits fine-tunes against their base.
#[test]
fn adding_an_mlp_with_another_head_fits() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/digits-tasks");
    for (i, ft) in ["ft-7-9", "ft-3-6"].into_iter().enumerate() {
        jobs.handle(Effect::AddModel {
            ticket: Ticket(i as u64 + 1),
            path: tasks.join(ft),
            fits: Some(tasks.join("base")),
        });
        let Msg::ModelAdded { result, .. } = recv(&rx) else {
            panic!()
        };
        assert_eq!(result.expect("fits").0.name, ft);
    }
    // Not an MLP beside one: refused, naming a tensor.
    jobs.handle(Effect::AddModel {
        ticket: Ticket(3),
        path: Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/llama-synthetic/base"),
        fits: Some(tasks.join("base")),
    });
    let Msg::ModelAdded { result, .. } = recv(&rx) else {
        panic!()
    };
    let e = result.expect_err("does not fit").to_string();
    assert!(e.contains("does not fit"), "{e}");
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
    let l = jobs.load_now(recipe, None, None).unwrap();
    app.load(&l.recipe, &l.infos, l.layers);
    assert_eq!(app.doc.slots.len(), 2);
    assert_eq!(app.doc.layers.len(), 4, "{:?}", app.doc.layers);
    assert!(app.analysis_blocked().is_some(), "no task vectors");
    app.view.focus = Some(Panel::Layers);
    for c in [KeyCode::Down, KeyCode::Down, KeyCode::Char('z')] {
        update(&mut app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
    }
    assert_eq!(app.doc.zip_depth(), 2);
    let d = tempfile::tempdir().unwrap();
    app.work_dir = d.path().to_path_buf();
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE)),
    );
    for e in update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    ) {
        jobs.handle(e);
    }
    let fx = loop {
        match recv(&rx) {
            m @ Msg::MergeDone { .. } => break update(&mut app, m),
            m @ Msg::Merge { .. } => {
                update(&mut app, m);
            }
            _ => {}
        }
    };
    assert!(
        matches!(app.merge, MergeState::Done { .. }),
        "{:?}",
        app.merge
    );
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

/// `.YML` is YAML wherever smelt looks: saved as mergekit YAML, loaded
/// back as YAML.
#[test]
fn yaml_extensions_in_any_case_are_yaml() {
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let app = opened_app(&jobs);
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("x.YML");
    jobs.handle(Effect::Save {
        ticket: Ticket(1),
        request: SaveRequest {
            recipe: app.doc.to_recipe(),
            path: path.clone(),
            over: None,
            force: false,
            n_layers: app.doc.n_layers(),
            multi: None,
        },
    });
    let Msg::Saved { result, .. } = recv(&rx) else {
        panic!()
    };
    let text = result.expect("saved").text;
    assert!(text.contains("merge_method:"), "{text}");
    let back = Recipe::load(&path).expect("read back as YAML");
    let mut want = app.doc.to_recipe();
    // The export names the dtype smelt writes (the base's, f32 here).
    want.out_dtype = Some(smelt::model::Dtype::F32);
    assert_eq!(back, want);
}
