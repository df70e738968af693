//! The workbench's update logic driven by key events, without a terminal.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use smelt::analysis::Stats;
use smelt::engine::{Event, Summary};
use smelt::merge::Method;
use smelt::model::Group;
use smelt::recipe::{OverrideScope, Value};
use smelt::tui::demo::{demo_app, fake_stats};
use smelt::tui::state::*;
use smelt::tui::update::{complete_path, update, Effect, Msg};
use std::path::PathBuf;
use std::time::Duration;

fn press(app: &mut App, c: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}
fn ch(app: &mut App, c: char) -> Vec<Effect> {
    press(app, KeyCode::Char(c))
}
fn typ(app: &mut App, s: &str) {
    for c in s.chars() {
        ch(app, c);
    }
}
/// Move the Layers cursor onto `layer N` (rows: all, embeddings, layer 0..).
fn to_layer(app: &mut App, n: usize) -> Vec<Effect> {
    app.focus = Panel::Layers;
    press(app, KeyCode::Home);
    let mut fx = Vec::new();
    for _ in 0..n + 2 {
        fx = press(app, KeyCode::Down);
    }
    fx
}
fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(x)) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn tab_cycles_panels_and_cursor_clamps() {
    let mut app = demo_app();
    assert_eq!(app.focus, Panel::Layers);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Panel::Params);
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Panel::Models);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, Panel::Agreement);
    app.focus = Panel::Models;
    for _ in 0..10 {
        ch(&mut app, 'j');
    }
    assert_eq!(app.model_cursor, 3, "clamped to the last of 4 models");
    ch(&mut app, 'k');
    assert_eq!(app.model_cursor, 2);
}

#[test]
fn moving_to_a_layer_requests_its_statistics_first() {
    let mut app = demo_app();
    let fx = to_layer(&mut app, 3);
    assert_eq!(app.current_target(), Some(Target::Group(Group::Layer(3))));
    // Groups already have current stats: nothing to ask for on a move.
    assert!(fx.is_empty(), "{fx:?}");
    // Expanding asks for the layer's tensors (for their gauges).
    let fx = press(&mut app, KeyCode::Enter);
    let names: Vec<Target> = app.layers[4]
        .tensors
        .iter()
        .map(|t| Target::Tensor(t.name.clone()))
        .collect();
    assert_eq!(app.layers[4].group, Group::Layer(3));
    let keyed: Vec<(Target, String)> = names
        .iter()
        .map(|t| (t.clone(), app.stats_key(t)))
        .collect();
    assert!(
        matches!(&fx[..], [Effect::Analyze { targets, .. }] if *targets == keyed),
        "{fx:?}"
    );
    // Moving onto the second tensor puts it first.
    press(&mut app, KeyCode::Down);
    let fx = press(&mut app, KeyCode::Down);
    match &fx[..] {
        [Effect::Analyze { targets, .. }] => {
            assert_eq!(targets[0].0, names[1]);
            assert_eq!(targets.len(), names.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn density_on_a_layer_writes_an_override_for_that_layer_only() {
    let mut app = demo_app();
    to_layer(&mut app, 3);
    let gen0 = app.gen;
    let fx = press(&mut app, KeyCode::Left);
    assert!(app.gen > gen0);
    // Only the edited layer's inputs changed: only it is asked for, under
    // its new key.
    match &fx[..] {
        [Effect::Analyze { targets, recipe }] => {
            let t = Target::Group(Group::Layer(3));
            assert_eq!(targets, &vec![(t.clone(), app.stats_key(&t))]);
            assert_eq!(recipe, &app.to_recipe());
        }
        other => panic!("{other:?}"),
    }
    let r = app.to_recipe();
    assert_eq!(r.overrides.len(), 1);
    let o = &r.overrides[0];
    assert_eq!(o.scope, OverrideScope::Layers(3, 3));
    assert_eq!(o.models.len(), 3, "every input's density");
    for k in 0..3 {
        assert!((num(o.models[&k].get("density")) - 0.45).abs() < 1e-12);
    }
    // The recipe's own values are untouched.
    for m in &r.models {
        assert_eq!(num(m.params.get("density")), 0.5);
    }
    assert!(app.has_override(app.current_group().unwrap()));
}

#[test]
fn a_range_of_layers_becomes_one_override() {
    let mut app = demo_app();
    to_layer(&mut app, 2);
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.edit_scope(), Some((2, 4)));
    ch(&mut app, '+');
    let r = app.to_recipe();
    assert_eq!(r.overrides.len(), 1, "{:?}", r.overrides);
    assert_eq!(r.overrides[0].scope, OverrideScope::Layers(2, 4));
    assert!((num(r.overrides[0].models[&0].get("density")) - 0.55).abs() < 1e-12);
    // Clearing the override on the middle layer splits the range.
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Up);
    app.focus = Panel::Params;
    let row = app
        .param_rows()
        .iter()
        .position(|r| {
            matches!(
                r,
                ParamRow::PerModel {
                    name: "density",
                    ..
                }
            )
        })
        .unwrap();
    app.param_cursor = row;
    press(&mut app, KeyCode::Delete);
    let r = app.to_recipe();
    let ranges: Vec<_> = r.overrides.iter().map(|o| o.scope).collect();
    assert_eq!(
        ranges,
        [(2, 2), (3, 3), (4, 4)].map(|(a, b)| OverrideScope::Layers(a, b)),
        "layer 3 differs now"
    );
    assert!(!r.overrides[1].models.contains_key(&0));
    // Backspace on a layer row drops all of that layer's overrides.
    app.focus = Panel::Layers;
    press(&mut app, KeyCode::Backspace);
    let ranges: Vec<_> = app.to_recipe().overrides.iter().map(|o| o.scope).collect();
    assert_eq!(
        ranges,
        [(2, 2), (4, 4)].map(|(a, b)| OverrideScope::Layers(a, b))
    );
}

#[test]
fn params_panel_edits_global_or_layer_values_by_scope() {
    let mut app = demo_app();
    app.focus = Panel::Params;
    let lambda = app
        .param_rows()
        .iter()
        .position(|r| *r == ParamRow::Global("lambda"))
        .unwrap();
    app.param_cursor = lambda;
    press(&mut app, KeyCode::Right);
    assert_eq!(num(app.global.get("lambda")), 1.05);
    // Type a value for layer 5's lambda.
    to_layer(&mut app, 5);
    app.focus = Panel::Params;
    app.param_cursor = lambda;
    press(&mut app, KeyCode::Enter);
    assert!(matches!(app.modal, Some(Modal::Input(_))));
    press(&mut app, KeyCode::End);
    for _ in 0..10 {
        press(&mut app, KeyCode::Backspace);
    }
    typ(&mut app, "0.7");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.modal, None);
    assert_eq!(num(app.overrides[&5].params.get("lambda")), 0.7);
    assert_eq!(num(app.global.get("lambda")), 1.05);
    // Nonsense is refused and the prompt stays open with an error.
    press(&mut app, KeyCode::Enter);
    typ(&mut app, "x");
    press(&mut app, KeyCode::Enter);
    assert!(matches!(app.modal, Some(Modal::Input(_))));
    assert!(matches!(app.message, Some((Level::Error, _))));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.modal, None);
    assert_eq!(num(app.overrides[&5].params.get("lambda")), 0.7);
}

#[test]
fn density_is_kept_in_range() {
    let mut app = demo_app();
    to_layer(&mut app, 0);
    for _ in 0..40 {
        press(&mut app, KeyCode::Left);
    }
    let d = num(app.overrides[&0].models[&1].get("density"));
    assert!(d > 0.0 && d <= 0.05, "{d}");
    for _ in 0..40 {
        press(&mut app, KeyCode::Right);
    }
    assert_eq!(num(app.overrides[&0].models[&1].get("density")), 1.0);
}

#[test]
fn stale_results_are_never_current() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    let t = Target::Group(Group::Layer(1));
    let other = Target::Group(Group::Layer(2));
    let old_key = app.stats_key(&t);
    press(&mut app, KeyCode::Left);
    let new_key = app.stats_key(&t);
    assert_ne!(old_key, new_key);
    // What was there is now stale; other layers stay current.
    assert!(matches!(app.stats_for(&t), Some((_, false))));
    assert!(matches!(app.stats_for(&other), Some((_, true))));
    let fresh = fake_stats(100, 1, 0.45);
    let msg = |key: &str, s: Stats| Msg::Analysis {
        key: key.to_string(),
        target: t.clone(),
        result: Ok(s),
    };
    update(&mut app, msg(&new_key, fresh.clone()));
    let shown = |app: &App| app.stats_for(&t).map(|(s, c)| (s.clone().unwrap(), c));
    assert_eq!(shown(&app), Some((fresh.clone(), true)));
    // A late result for the old parameters does not replace the new one.
    update(&mut app, msg(&old_key, Stats::default()));
    assert_eq!(shown(&app), Some((fresh.clone(), true)));
    // Back to the old density: the fresh result is stale, an old-key
    // result is current again (same inputs, same numbers).
    press(&mut app, KeyCode::Right);
    assert_eq!(app.stats_key(&t), old_key);
    assert_eq!(shown(&app), Some((fresh, false)));
    update(&mut app, msg(&old_key, Stats::default()));
    assert_eq!(shown(&app), Some((Stats::default(), true)));
}

#[test]
fn m_changes_method_and_asks_for_new_statistics() {
    let mut app = demo_app();
    let fx = ch(&mut app, 'm');
    assert_eq!(app.method, Method::DareTies);
    assert!(
        matches!(&fx[..], [Effect::Analyze { recipe, .. }] if recipe.method == Method::DareTies)
    );
    app.focus = Panel::Params;
    app.param_cursor = 0;
    press(&mut app, KeyCode::Left);
    assert_eq!(app.method, Method::Ties);
}

#[test]
fn run_asks_for_a_folder_then_starts_and_cancels() {
    let mut app = demo_app();
    assert!(ch(&mut app, 'r').is_empty());
    let Some(Modal::Input(i)) = &app.modal else {
        panic!("no prompt")
    };
    assert_eq!(i.kind, InputKind::OutputFolder);
    assert_eq!(
        PathBuf::from(&i.text),
        PathBuf::from("/demo/work/llama-synthetic-ties")
    );
    let fx = press(&mut app, KeyCode::Enter);
    match &fx[..] {
        [Effect::StartMerge { recipe, out }] => {
            assert_eq!(recipe, &app.to_recipe());
            assert_eq!(out, &PathBuf::from("/demo/work/llama-synthetic-ties"));
        }
        other => panic!("{other:?}"),
    }
    assert!(app.merge_running());
    assert!(ch(&mut app, 'r').is_empty(), "no second merge");
    update(
        &mut app,
        Msg::Merge {
            event: Event::Progress {
                tensor: "t".into(),
                tensors_done: 3,
                bytes_done: 50,
                bytes_total: 100,
            },
            elapsed: Duration::from_secs(1),
        },
    );
    assert!(matches!(
        app.merge,
        MergeState::Running {
            tensors_done: 3,
            bytes_done: 50,
            ..
        }
    ));
    assert_eq!(ch(&mut app, 'c'), vec![Effect::CancelMerge]);
    assert!(matches!(
        app.merge,
        MergeState::Running {
            cancelling: true,
            ..
        }
    ));
    update(&mut app, Msg::MergeDone(Err("cancelled".into())));
    assert!(matches!(app.merge, MergeState::Failed(_)));
}

#[test]
fn run_refuses_an_impossible_recipe() {
    let mut app = demo_app();
    // slerp takes exactly one input model; the demo has three.
    while app.method != Method::Slerp {
        ch(&mut app, 'm');
    }
    assert!(ch(&mut app, 'r').is_empty());
    assert_eq!(app.modal, None);
    assert!(matches!(&app.message, Some((Level::Error, m)) if m.contains("at most 1")));
}

#[test]
fn quit_asks_while_a_merge_runs() {
    let mut app = demo_app();
    ch(&mut app, 'r');
    press(&mut app, KeyCode::Enter);
    ch(&mut app, 'q');
    assert_eq!(app.modal, Some(Modal::ConfirmQuit));
    assert!(!app.quit);
    ch(&mut app, 'n');
    assert!(!app.quit && app.modal.is_none());
    ch(&mut app, 'q');
    assert_eq!(ch(&mut app, 'y'), vec![Effect::CancelMerge]);
    assert!(app.quit);

    let mut idle = demo_app();
    ch(&mut idle, 'q');
    assert!(idle.quit);
}

#[test]
fn help_opens_and_any_key_closes_it() {
    let mut app = demo_app();
    ch(&mut app, '?');
    assert_eq!(app.modal, Some(Modal::Help));
    ch(&mut app, 'q');
    assert_eq!(app.modal, None);
    assert!(!app.quit, "q closes help, it does not quit");
}

#[test]
fn save_defaults_to_the_data_dir_and_open_emits_a_load() {
    let mut app = demo_app();
    ch(&mut app, 's');
    let Some(Modal::Input(i)) = &app.modal else {
        panic!()
    };
    assert_eq!(
        PathBuf::from(&i.text),
        PathBuf::from("/demo/data/recipes/llama-synthetic-ties.toml")
    );
    let fx = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(&fx[..], [Effect::Save { path, recipe }] if path.ends_with("llama-synthetic-ties.toml") && recipe == &app.to_recipe())
    );
    assert!(!app.modified(), "as opened");
    ch(&mut app, '?');
    ch(&mut app, 'x');
    app.focus = Panel::Layers;
    press(&mut app, KeyCode::Right);
    assert!(app.modified());
    let r = app.to_recipe();
    update(&mut app, Msg::Saved(Ok((PathBuf::from("/x/r.toml"), r))));
    assert!(!app.modified());
    assert_eq!(app.recipe_path, Some(PathBuf::from("/x/r.toml")));
    ch(&mut app, 'o');
    let fx = press(&mut app, KeyCode::Enter);
    assert_eq!(fx, vec![Effect::Open(PathBuf::from("/x/r.toml"))]);
    ch(&mut app, 'm');
    assert!(app.modified(), "an edit after saving shows");
}

#[test]
fn ctrl_l_repaints() {
    let mut app = demo_app();
    let fx = update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL)),
    );
    assert_eq!(fx, vec![Effect::Repaint]);
}

#[test]
fn roles_and_exclusion_shape_the_recipe() {
    let mut app = demo_app();
    to_layer(&mut app, 2);
    press(&mut app, KeyCode::Left); // overrides for slots 1, 2, 3
    app.focus = Panel::Models;
    app.model_cursor = 2; // ft-math
    ch(&mut app, 'e');
    let r = app.to_recipe();
    let names: Vec<_> = r
        .models
        .iter()
        .map(|m| m.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["ft-code", "ft-chat"]);
    // Override model keys follow the recipe's model indices.
    assert_eq!(
        r.overrides[0].models.keys().copied().collect::<Vec<_>>(),
        vec![0, 1]
    );
    ch(&mut app, 'e');
    ch(&mut app, 'b');
    let r = app.to_recipe();
    assert!(r.base.as_ref().unwrap().ends_with("ft-math"));
    assert_eq!(r.models.len(), 3, "the old base is an input now");
    // Removing a model drops its overrides and shifts the rest.
    app.model_cursor = 1;
    ch(&mut app, 'x');
    assert_eq!(app.slots.len(), 3);
    assert!(app.overrides[&2].models.keys().all(|k| *k < 3));
}

#[test]
fn a_recipe_round_trips_through_the_state() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Left);
    ch(&mut app, 'm');
    let r = app.to_recipe();
    let mut other = App::new(PathBuf::from("/d"), PathBuf::from("/w"));
    other.load_recipe(
        &r,
        app.slots.iter().map(|s| s.info.clone()).collect(),
        app.layers.clone(),
    );
    assert_eq!(other.to_recipe(), r);
    assert_eq!(other.overrides, app.overrides);
}

#[test]
fn path_completion() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("alpha")).unwrap();
    std::fs::write(d.path().join("alpine.txt"), "").unwrap();
    std::fs::write(d.path().join("beta"), "").unwrap();
    let base = format!("{}/", d.path().display());
    let (t, c) = complete_path(&format!("{base}al"));
    assert_eq!(t, format!("{base}alp"));
    assert_eq!(c, vec!["alpha/".to_string(), "alpine.txt".to_string()]);
    let (t, c) = complete_path(&format!("{base}alph"));
    assert_eq!(t, format!("{base}alpha/"));
    assert!(c.is_empty());
    let (t, _) = complete_path(&format!("{base}zzz"));
    assert_eq!(t, format!("{base}zzz"));
    // Through the prompt: `a` opens it, Tab completes.
    let mut app = demo_app();
    ch(&mut app, 'a');
    press(&mut app, KeyCode::End);
    update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    typ(&mut app, &format!("{base}b"));
    press(&mut app, KeyCode::Tab);
    let Some(Modal::Input(i)) = &app.modal else {
        panic!()
    };
    assert_eq!(i.text, format!("{base}beta"));
    let fx = press(&mut app, KeyCode::Enter);
    assert_eq!(fx, vec![Effect::AddModel(d.path().join("beta"))]);
}

#[test]
fn finished_merge_is_reported() {
    let mut app = demo_app();
    ch(&mut app, 'r');
    press(&mut app, KeyCode::Enter);
    let s = Summary {
        out: PathBuf::from("/o"),
        tensors: 5,
        bytes_written: 10,
        bytes_read: 20,
        elapsed: Duration::from_secs(1),
    };
    update(&mut app, Msg::MergeDone(Ok(s)));
    assert!(matches!(&app.merge, MergeState::Done(s) if s.tensors == 5));
    assert!(matches!(&app.message, Some((Level::Info, m)) if m.contains("/o")));
}

#[test]
fn a_click_focuses_the_panel_and_picks_the_row() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut app = demo_app();
    update(&mut app, Msg::Resize(120, 40));
    let click = |x, y| {
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: x,
            row: y,
            modifiers: KeyModifiers::NONE,
        })
    };
    // At 120x40 the Models panel starts on row 1: its rows are 2, 3, ...
    update(&mut app, click(5, 4));
    assert_eq!(app.focus, Panel::Models);
    assert_eq!(app.model_cursor, 2);
    // Layers start under Models (6 rows tall): row 8 is "all layers",
    // row 11 is "layer 1".
    update(&mut app, click(5, 11));
    assert_eq!(app.focus, Panel::Layers);
    assert_eq!(app.current_target(), Some(Target::Group(Group::Layer(1))));
    // Borders and the title bar select nothing.
    update(&mut app, click(5, 0));
    assert_eq!(app.focus, Panel::Layers);
}

#[test]
fn a_preview_shows_until_the_exact_result_arrives() {
    let mut app = demo_app();
    to_layer(&mut app, 0);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Down);
    let t = app.current_target().unwrap();
    let key = app.stats_key(&t);
    let est = fake_stats(10, 1, 0.5);
    // A preview for other inputs is dropped.
    update(
        &mut app,
        Msg::Preview {
            key: "other".into(),
            target: t.clone(),
            stats: est.clone(),
        },
    );
    assert_eq!(app.preview_for(&t), None);
    update(
        &mut app,
        Msg::Preview {
            key: key.clone(),
            target: t.clone(),
            stats: est.clone(),
        },
    );
    assert_eq!(app.preview_for(&t), Some(&est));
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    let theme = smelt::tui::theme::Theme::default();
    term.draw(|f| smelt::tui::view::draw(f, &app, &theme))
        .unwrap();
    assert!(format!("{}", term.backend()).contains("PREVIEW"));
    // The exact result replaces it on screen.
    let exact = fake_stats(10, 2, 0.5);
    update(
        &mut app,
        Msg::Analysis {
            key,
            target: t.clone(),
            result: Ok(exact),
        },
    );
    term.draw(|f| smelt::tui::view::draw(f, &app, &theme))
        .unwrap();
    let s = format!("{}", term.backend());
    assert!(!s.contains("PREVIEW") && s.contains("[current]"), "{s}");
    // A density change makes the preview stale too.
    app.focus = Panel::Layers;
    press(&mut app, KeyCode::Left);
    assert_eq!(app.preview_for(&t), None);
}

// ZipIt! depth from the Layers panel.

use smelt::tui::demo::{demo_report, demo_zip_app};

/// Rows of the MLP's Layers panel: all, layer 0, layer 1, ...
fn zip_to(app: &mut App, row: usize) {
    app.focus = Panel::Layers;
    press(app, KeyCode::Home);
    for _ in 0..row {
        press(app, KeyCode::Down);
    }
}
fn depth(app: &App) -> f64 {
    num(app.to_recipe().params.get("depth"))
}

#[test]
fn z_makes_the_selected_layer_the_last_zipped_one() {
    let mut app = demo_zip_app();
    assert_eq!(
        app.zip_max(),
        3,
        "3 hidden layers, the 4th is the classifier"
    );
    assert_eq!(depth(&app), -1.0);
    assert!(app.zipped(2) && !app.zipped(3));
    // Layer 1: layers 0-1 zipped, written to the recipe's own parameters.
    zip_to(&mut app, 2);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 2.0);
    assert!(
        app.to_recipe().overrides.is_empty(),
        "depth is never per layer"
    );
    assert!(app.zipped(0) && app.zipped(1) && !app.zipped(2));
    assert!(app.modified());
    // Again on the same layer: one less.
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 1.0);
    // Layer 0 is now the last zipped one: z again gives the ensemble.
    zip_to(&mut app, 1);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 0.0);
    assert!(!app.zipped(0));
    // "All layers": every hidden layer.
    zip_to(&mut app, 0);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), -1.0);
    // The classifier stays per model: zipping "through" it means all.
    // Layer 2 already ends the trunk at -1 (3 hidden layers): one less.
    zip_to(&mut app, 3);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 2.0);
    // Layer 2 no longer zipped: z zips it again.
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 3.0);
    zip_to(&mut app, 4);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), -1.0);
    let (_, msg) = app.message.clone().unwrap();
    assert!(msg.contains("classifier"), "{msg}");
}

#[test]
fn z_on_embeddings_is_the_ensemble_and_permute_takes_it_too() {
    let mut app = demo_app();
    app.method = Method::Permute;
    app.focus = Panel::Layers;
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Down); // embeddings
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 0.0);
    to_layer(&mut app, 4);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 5.0);
}

#[test]
fn z_does_nothing_for_methods_without_depth() {
    let mut app = demo_app();
    let before = app.to_recipe();
    to_layer(&mut app, 2);
    let fx = ch(&mut app, 'z');
    assert_eq!(app.to_recipe(), before);
    assert!(fx.is_empty());
    let (_, msg) = app.message.clone().unwrap();
    assert!(msg.contains("zipit") && msg.contains("ties"), "{msg}");
}

#[test]
fn zipit_params_show_global_depth_and_per_layer_alpha_beta() {
    let mut app = demo_zip_app();
    let rows = app.param_rows();
    for n in ["depth", "alpha", "beta"] {
        assert!(rows.contains(&ParamRow::Global(n)), "{n} in {rows:?}");
    }
    zip_to(&mut app, 2); // layer 1
    app.focus = Panel::Params;
    let alpha = rows
        .iter()
        .position(|r| *r == ParamRow::Global("alpha"))
        .unwrap();
    let depth_row = rows
        .iter()
        .position(|r| *r == ParamRow::Global("depth"))
        .unwrap();
    // alpha at layer 1: an override of that layer only.
    app.param_cursor = alpha;
    press(&mut app, KeyCode::Right);
    let r = app.to_recipe();
    assert_eq!(r.overrides.len(), 1);
    assert_eq!(r.overrides[0].scope, OverrideScope::Layers(1, 1));
    assert_eq!(num(r.overrides[0].params.get("alpha")), 0.55);
    assert_eq!(num(r.params.get("alpha")), 0.5);
    assert_eq!(
        app.param_value(&ParamRow::Global("alpha")),
        (Some(Value::Number(0.55)), true)
    );
    // depth at a layer scope still edits the recipe's own value.
    app.param_cursor = depth_row;
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Left);
    let r = app.to_recipe();
    assert_eq!(num(r.params.get("depth")), -1.0, "clamped at -1? {r:?}");
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    let r = app.to_recipe();
    assert_eq!(num(r.params.get("depth")), 1.0);
    assert!(r.overrides.iter().all(|o| !o.params.contains_key("depth")));
    assert!(!app.param_value(&ParamRow::Global("depth")).1);
    // The alpha override on layer 1 now lies past the trunk: z warns.
    app.focus = Panel::Layers;
    zip_to(&mut app, 1);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 0.0, "layer 0 ended the trunk: one less");
    let (level, msg) = app.message.clone().unwrap();
    assert_eq!(level, Level::Warn, "{msg}");
    assert!(msg.contains("layer 1"), "{msg}");
    // And r refuses to start until it is resolved, saying why.
    let fx = ch(&mut app, 'r');
    assert!(fx.is_empty() && app.modal.is_none());
    let (level, msg) = app.message.clone().unwrap();
    assert_eq!(level, Level::Error, "{msg}");
    assert!(msg.contains("layer 1") && msg.contains("depth 0"), "{msg}");
    // Zipping deeper makes it runnable again.
    zip_to(&mut app, 2);
    ch(&mut app, 'z');
    ch(&mut app, 'r');
    assert!(
        matches!(app.modal, Some(Modal::Input(_))),
        "{:?}",
        app.message
    );
}

#[test]
fn zipit_without_a_base_says_so_and_asks_for_no_statistics() {
    let mut app = demo_zip_app();
    let why = app.analysis_blocked().expect("blocked");
    assert!(why.contains("no base"), "{why}");
    assert!(smelt::tui::update::initial_analysis(&app).is_none());
    zip_to(&mut app, 2);
    let fx = ch(&mut app, 'z');
    assert!(!fx.iter().any(|e| matches!(e, Effect::Analyze { .. })));
}

#[test]
fn a_finished_merge_asks_for_accuracy_and_shows_only_the_current_one() {
    let mut app = demo_zip_app();
    let out = PathBuf::from("/demo/work/digits-zip-zipit");
    app.merge = MergeState::started(out.clone());
    let fx = update(
        &mut app,
        Msg::MergeDone(Ok(Summary {
            out: out.clone(),
            tensors: 8,
            bytes_written: 1000,
            bytes_read: 2000,
            elapsed: Duration::from_millis(300),
        })),
    );
    let Some(Effect::Evaluate { out: o, inputs }) = fx.into_iter().next() else {
        panic!("no evaluation asked for");
    };
    assert_eq!(o, out);
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].1, "digits-0-4");
    assert_eq!(app.accuracy, AccuracyState::Running(out.clone()));
    let acc = |o: &PathBuf| Accuracy {
        out: o.clone(),
        merged: Ok(demo_report("m", &[(&[0, 1, 2, 3, 4], 0.9)], 0.8)),
        inputs: vec![("digits-0-4".into(), Err("bad file".into()))],
    };
    // A report for another output is ignored.
    let other = PathBuf::from("/elsewhere");
    update(
        &mut app,
        Msg::Accuracy {
            out: other.clone(),
            result: Some(acc(&other)),
        },
    );
    assert_eq!(app.accuracy, AccuracyState::Running(out.clone()));
    update(
        &mut app,
        Msg::Accuracy {
            out: out.clone(),
            result: Some(acc(&out)),
        },
    );
    assert_eq!(app.accuracy, AccuracyState::Done(acc(&out)));
}

/// Group overrides (embeddings, head) the workbench does not edit yet are
/// kept through load and save, their model keys following removals.
#[test]
fn group_overrides_survive_the_state() {
    let app = demo_app();
    let mut r = app.to_recipe();
    let last = r.models.len() - 1;
    r.overrides.push(smelt::recipe::Override {
        scope: OverrideScope::Head,
        params: [("lambda".to_string(), Value::Number(0.5))].into(),
        models: [(last, [("weight".to_string(), Value::Number(0.2))].into())].into(),
    });
    let mut other = App::new(PathBuf::from("/d"), PathBuf::from("/w"));
    other.load_recipe(
        &r,
        app.slots.iter().map(|s| s.info.clone()).collect(),
        app.layers.clone(),
    );
    assert_eq!(other.to_recipe(), r);
    // Removing the first input shifts the head override's model key.
    other.focus = Panel::Models;
    other.model_cursor = other.input_slots()[0];
    ch(&mut other, 'x');
    let after = other.to_recipe();
    let head = after
        .overrides
        .iter()
        .find(|o| o.scope == OverrideScope::Head)
        .expect("kept");
    assert_eq!(head.models.keys().copied().collect::<Vec<_>>(), [last - 1]);
}
