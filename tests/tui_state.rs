//! The workbench's update logic driven by key and job events, without a
//! terminal: every flow of the workbench as a user goes through it, down
//! to the recipe it leaves.

#![cfg(feature = "tui")]

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use smelt::analysis::{Report, Stats};
use smelt::engine::{Event, Summary};
use smelt::merge::Method;
use smelt::model::Group;
use smelt::recipe::{OverrideScope, Value};
use smelt::tui::demo::{demo_app, demo_report, demo_zip_app, fake_stats};
use smelt::tui::doc::fmt_num;
use smelt::tui::input::complete_path;
use smelt::tui::state::*;
use smelt::tui::update::{update, Effect, JobError, Msg, SavedFile};
use std::path::PathBuf;
use std::time::Duration;

fn key(app: &mut App, k: KeyEvent) -> Vec<Effect> {
    update(app, Msg::Key(k))
}
fn press(app: &mut App, c: KeyCode) -> Vec<Effect> {
    key(app, KeyEvent::new(c, KeyModifiers::NONE))
}
fn ctrl(app: &mut App, c: char) -> Vec<Effect> {
    key(app, KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}
fn ch(app: &mut App, c: char) -> Vec<Effect> {
    press(app, KeyCode::Char(c))
}
fn typ(app: &mut App, s: &str) {
    for c in s.chars() {
        ch(app, c);
    }
}
fn focus(app: &mut App, p: Panel) {
    app.view.focus = Some(p);
}
/// Move the Layers cursor onto `layer N` (rows: all, embeddings, layer 0..).
fn to_layer(app: &mut App, n: usize) -> Vec<Effect> {
    focus(app, Panel::Layers);
    press(app, KeyCode::Home);
    let mut fx = Vec::new();
    for _ in 0..n + 2 {
        fx = press(app, KeyCode::Down);
    }
    fx
}
/// The Parameters row for `name` (per model: the first input's).
fn to_row(app: &mut App, want: &ParamRow) {
    focus(app, Panel::Params);
    let i = app
        .param_rows()
        .iter()
        .position(|r| r == want)
        .unwrap_or_else(|| panic!("no row {want:?} in {:?}", app.param_rows()));
    app.view.param_cursor = i;
}
fn global(n: &str) -> ParamRow {
    ParamRow::Global(n.into())
}
fn model_row(slot: usize, n: &str) -> ParamRow {
    ParamRow::Model {
        slot,
        name: n.into(),
    }
}
fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(x)) => *x,
        other => panic!("not a number: {other:?}"),
    }
}
fn prompt(app: &App) -> &Prompt {
    match &app.modal {
        Some(Modal::Prompt(p)) => p,
        other => panic!("no prompt: {other:?}"),
    }
}
fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    let theme = smelt::tui::theme::Theme::default();
    t.draw(|f| smelt::tui::view::draw(f, app, &theme)).unwrap();
    format!("{}", t.backend())
}
fn report(s: Stats) -> Report {
    Report {
        stats: s,
        skipped: Vec::new(),
    }
}

/// Deliver the analysis worker's `result` for `t`, keyed to the state
/// now (a current result).
fn analysed(app: &mut App, t: Target, result: Result<Report, JobError>) {
    let key = app.stats_key(&t);
    update(
        app,
        Msg::Analysis {
            key,
            target: t,
            result,
        },
    );
}

fn summary(out: &str) -> Summary {
    Summary {
        out: PathBuf::from(out),
        tensors: 5,
        bytes_written: 10,
        bytes_read: 20,
        elapsed: Duration::from_secs(1),
    }
}
/// Start a merge from `r` + Enter; the merge's ticket.
/// A merge started and finished (into `/o`, by its summary), working in
/// a fresh folder: its ticket.
fn merged(app: &mut App) -> Ticket {
    app.work_dir = tempfile::tempdir().unwrap().keep();
    let ticket = start_merge(app);
    update(
        app,
        Msg::MergeDone {
            ticket,
            result: Ok(summary("/o")),
        },
    );
    ticket
}

fn start_merge(app: &mut App) -> Ticket {
    ch(app, 'r');
    let fx = press(app, KeyCode::Enter);
    match &fx[..] {
        [Effect::StartMerge { ticket, .. }] => *ticket,
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- panels

#[test]
fn tab_cycles_panels_and_cursor_clamps() {
    let mut app = demo_app();
    assert_eq!(app.focus(), Panel::Layers);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus(), Panel::Params);
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus(), Panel::Models);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus(), Panel::Agreement);
    focus(&mut app, Panel::Models);
    for _ in 0..10 {
        ch(&mut app, 'j');
    }
    assert_eq!(app.view.model_cursor, 3, "clamped to the last of 4 models");
    ch(&mut app, 'k');
    assert_eq!(app.view.model_cursor, 2);
    // The compact layout adds Status to the ring.
    update(&mut app, Msg::Resize(60, 20));
    focus(&mut app, Panel::Agreement);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus(), Panel::Status);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus(), Panel::Models);
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
    let names: Vec<Target> = app.doc.layers[4]
        .tensors
        .iter()
        .map(|t| Target::Tensor(t.name.clone()))
        .collect();
    let keyed: Vec<(Target, StatsKey)> = names
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
    let fx = press(&mut app, KeyCode::Left);
    // Only the edited layer's inputs changed: only it is asked for (and
    // the recipe is checked against the models).
    assert!(fx.iter().any(|e| matches!(e, Effect::Check { .. })));
    let fx: Vec<Effect> = fx
        .into_iter()
        .filter(|e| !matches!(e, Effect::Check { .. }))
        .collect();
    match &fx[..] {
        [Effect::Analyze {
            targets, recipe, ..
        }] => {
            let t = Target::Group(Group::Layer(3));
            assert_eq!(targets, &vec![(t.clone(), app.stats_key(&t))]);
            assert_eq!(recipe, &app.doc.to_recipe());
        }
        other => panic!("{other:?}"),
    }
    let r = app.doc.to_recipe();
    assert_eq!(r.overrides.len(), 1);
    let o = &r.overrides[0];
    assert_eq!(o.scope, OverrideScope::Layers(3, 3));
    assert_eq!(o.models.len(), 3, "every input's density");
    for k in 0..3 {
        assert!((num(o.models[&k].get("density")) - 0.45).abs() < 1e-12);
    }
    for m in &r.models {
        assert_eq!(num(m.params.get("density")), 0.5, "recipe values untouched");
    }
    assert!(app.doc.has_override(Scope::Layer(3)));
}

/// Issue 12.1: a group row edits that group alone.
#[test]
fn density_on_the_embeddings_or_head_row_overrides_that_group_only() {
    let mut app = demo_app();
    focus(&mut app, Panel::Layers);
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Down); // embeddings
    press(&mut app, KeyCode::Right);
    let r = app.doc.to_recipe();
    assert_eq!(r.overrides.len(), 1, "{:?}", r.overrides);
    assert_eq!(r.overrides[0].scope, OverrideScope::Embeddings);
    for m in &r.models {
        assert_eq!(num(m.params.get("density")), 0.5, "other layers keep 0.5");
    }
    press(&mut app, KeyCode::End); // norm / head
    press(&mut app, KeyCode::Left);
    let scopes: Vec<_> = app
        .doc
        .to_recipe()
        .overrides
        .iter()
        .map(|o| o.scope)
        .collect();
    assert_eq!(scopes, [OverrideScope::Embeddings, OverrideScope::Head]);
    assert!(screen(&app, 120, 40).contains("Parameters · norm / head"));
    // The models panel shows the selected scope's value, marked.
    assert!(screen(&app, 120, 40).contains("d0.45*"));
}

/// Issue 12.2: a range moves each layer from its own value.
#[test]
fn a_range_moves_each_layer_from_its_own_value() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left); // layer 1 at 0.45
    press(&mut app, KeyCode::Up); // layer 0
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    assert_eq!(
        app.edit_scopes(),
        Some(vec![Scope::Layer(0), Scope::Layer(1), Scope::Layer(2)])
    );
    press(&mut app, KeyCode::Right);
    let slot = app.doc.input_slots()[0];
    let at = |app: &App, l| {
        num(app
            .doc
            .value_at("density", Some(slot), Some(Scope::Layer(l)))
            .value
            .as_ref())
    };
    assert_eq!((at(&app, 0), at(&app, 1), at(&app, 2)), (0.55, 0.5, 0.55));
    // Both panels show the range's lowest and highest, not its first
    // layer's value alone.
    let s = screen(&app, 120, 40);
    assert!(s.contains("d0.5..0.55"), "Models panel:\n{s}");
    assert!(
        s.lines()
            .any(|l| l.contains("density ·") && l.contains("0.5..0.55")),
        "Parameters panel:\n{s}"
    );
    // One undo step undoes the whole range.
    ch(&mut app, 'u');
    assert_eq!((at(&app, 0), at(&app, 1), at(&app, 2)), (0.5, 0.45, 0.5));
    // A typed value sets every layer of the range, and says so.
    to_row(&mut app, &model_row(slot, "density"));
    press(&mut app, KeyCode::Enter);
    ctrl(&mut app, 'u');
    typ(&mut app, "0.2");
    press(&mut app, KeyCode::Enter);
    assert_eq!((at(&app, 0), at(&app, 1), at(&app, 2)), (0.2, 0.2, 0.2));
    assert!(
        matches!(&app.message, Some((_, m)) if m.contains("3 layers")),
        "{:?}",
        app.message
    );
}

#[test]
fn del_removes_one_value_or_a_scope_s_overrides() {
    let mut app = demo_app();
    to_layer(&mut app, 2);
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    ch(&mut app, '+');
    let ranges = |app: &App| {
        app.doc
            .to_recipe()
            .overrides
            .iter()
            .map(|o| o.scope)
            .collect::<Vec<_>>()
    };
    assert_eq!(ranges(&app), [OverrideScope::Layers(2, 4)]);
    // Del on one model's density at layer 3 only.
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Up);
    let slot = app.doc.input_slots()[0];
    to_row(&mut app, &model_row(slot, "density"));
    press(&mut app, KeyCode::Delete);
    // That model's density runs over 2 and 4 now; the others' still over
    // 2-4, saved once.
    assert_eq!(
        ranges(&app),
        [(2, 2), (2, 4), (4, 4)].map(|(a, b)| OverrideScope::Layers(a, b)),
        "layer 3 differs now"
    );
    let r = app.doc.to_recipe();
    let k = app
        .doc
        .input_slots()
        .iter()
        .position(|&s| s == slot)
        .unwrap();
    assert!(r.overrides[1].models.keys().all(|&m| m != k), "{r:?}");
    assert!(!r.overrides[1].models.is_empty(), "{r:?}");
    // Backspace in Layers drops all of layer 3's overrides.
    focus(&mut app, Panel::Layers);
    press(&mut app, KeyCode::Backspace);
    assert_eq!(ranges(&app), [2, 4].map(|l| OverrideScope::Layers(l, l)));
    // Backspace in Models removes nothing.
    let before = app.doc.clone();
    focus(&mut app, Panel::Models);
    press(&mut app, KeyCode::Backspace);
    assert_eq!(app.doc, before);
    assert!(matches!(&app.message, Some((_, m)) if m.contains("x removes")));
}

/// A range edit with a one-layer edit inside it saves as two overrides,
/// the range's value once over the range, not three tables each repeating
/// it; read back, the recipe is the same.
#[test]
fn overlapping_edits_save_as_runs_of_each_value() {
    let mut app = demo_app();
    let (s0, s1) = (app.doc.input_slots()[0], app.doc.input_slots()[1]);
    to_layer(&mut app, 0);
    ch(&mut app, 'v');
    for _ in 0..3 {
        press(&mut app, KeyCode::Down);
    }
    let set = |app: &mut App, slot, v: &str| {
        to_row(app, &model_row(slot, "density"));
        press(app, KeyCode::Enter);
        ctrl(app, 'u');
        typ(app, v);
        press(app, KeyCode::Enter);
    };
    set(&mut app, s0, "0.3");
    focus(&mut app, Panel::Layers);
    ch(&mut app, 'v');
    to_layer(&mut app, 2);
    set(&mut app, s1, "0.7");
    let r = app.doc.to_recipe();
    let scopes: Vec<_> = r.overrides.iter().map(|o| o.scope).collect();
    assert_eq!(
        scopes,
        [OverrideScope::Layers(0, 3), OverrideScope::Layers(2, 2)],
        "{r:?}"
    );
    assert_eq!(r.overrides[0].models.len(), 1, "{r:?}");
    assert_eq!(r.overrides[1].models.len(), 1, "{r:?}");
    let infos: Vec<_> = app.doc.slots.iter().map(|s| s.info.clone()).collect();
    let back = smelt::tui::doc::Doc::from_recipe(&r, &infos, app.doc.layers.clone());
    assert_eq!(back.to_recipe(), r);
    for l in 0..4 {
        let at = |slot| {
            num(back
                .value_at("density", Some(slot), Some(Scope::Layer(l)))
                .value
                .as_ref())
        };
        assert_eq!(at(s0), 0.3, "layer {l}");
        assert_eq!(at(s1) == 0.7, l == 2, "layer {l}: {}", at(s1));
    }
    let text = r.to_toml(std::path::Path::new("."));
    assert_eq!(text.matches("[[overrides]]").count(), 2, "{text}");
}

/// A gradient's range widens the values in the Models panel: at 80
/// columns the sizes give way before the names, values line up in
/// columns, and no name is cut below eight characters.
#[test]
fn names_stay_readable_beside_a_gradient() {
    let mut app = demo_app();
    let s0 = app.doc.input_slots()[0];
    app.doc.slots[s0]
        .params
        .insert("density".into(), Value::Gradient(vec![0.123, 0.876]));
    let shot = screen(&app, 80, 24);
    let rows: Vec<&str> = shot.lines().filter(|l| l.contains("  in   ")).collect();
    assert_eq!(rows.len(), 3, "{shot}");
    let cols: Vec<usize> = rows
        .iter()
        .map(|l| l.find(" w1").expect("a weight") - l.find("  in   ").unwrap())
        .collect();
    assert!(
        cols.iter().all(|&c| c == cols[0]),
        "values aligned:\n{shot}"
    );
    assert!(rows[0].contains("d0.123..0.876"), "{shot}");
    for (l, slot) in rows.iter().zip(app.doc.input_slots()) {
        let name = &app.doc.slots[slot].info.name;
        let shown: String = name.chars().take(7).collect();
        assert!(l.contains(&shown), "{name} cut short:\n{shot}");
    }
    // In Parameters, a long list takes room from its own row's name only.
    app.doc.slots[s0].params.insert(
        "density".into(),
        Value::Gradient(vec![0.123, 0.3, 0.55, 0.876]),
    );
    to_row(&mut app, &model_row(s0, "density"));
    let shot = screen(&app, 80, 24);
    let name = app.doc.slots[s0].info.name.clone();
    assert!(shot.contains("[0.123,0.3,0.55,0.876]"), "{shot}");
    assert!(
        shot.contains(&format!("weight · {name} ")),
        "weight row cut:\n{shot}"
    );
    // Wide enough, the sizes come back.
    let shot = screen(&app, 200, 60);
    assert!(
        shot.lines()
            .filter(|l| l.contains("  in   "))
            .all(|l| l.contains("6.1M")),
        "{shot}"
    );
}

#[test]
fn params_panel_edits_global_or_layer_values_by_scope() {
    let mut app = demo_app();
    to_row(&mut app, &global("lambda"));
    press(&mut app, KeyCode::Right);
    assert_eq!(num(app.doc.global.get("lambda")), 1.05);
    // Type a value for layer 5's lambda.
    to_layer(&mut app, 5);
    to_row(&mut app, &global("lambda"));
    press(&mut app, KeyCode::Enter);
    assert!(prompt(&app).input.title.contains("layer 5"));
    ctrl(&mut app, 'u');
    typ(&mut app, "0.7");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.modal, None);
    assert_eq!(
        num(app.doc.overrides[&Scope::Layer(5)].params.get("lambda")),
        0.7
    );
    assert_eq!(num(app.doc.global.get("lambda")), 1.05);
    // Nonsense: the prompt stays open with the text and the error, which
    // goes once the text is fixed.
    press(&mut app, KeyCode::Enter);
    ctrl(&mut app, 'u');
    typ(&mut app, "x");
    assert!(prompt(&app).input.error.is_some(), "checked as typed");
    press(&mut app, KeyCode::Enter);
    assert_eq!(prompt(&app).input.text, "x");
    assert!(prompt(&app)
        .input
        .error
        .as_deref()
        .unwrap()
        .contains("number"));
    press(&mut app, KeyCode::Backspace);
    // A value f32 cannot hold is refused as typed, as the recipe check
    // would refuse it (not accepted, then listed as a problem).
    typ(&mut app, "1e39");
    assert!(
        prompt(&app)
            .input
            .error
            .as_deref()
            .is_some_and(|e| e.contains("beyond what f32 holds")),
        "{:?}",
        prompt(&app).input.error
    );
    ctrl(&mut app, 'u');
    typ(&mut app, "0.9");
    assert_eq!(prompt(&app).input.error, None);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.modal, None);
    assert_eq!(
        num(app.doc.overrides[&Scope::Layer(5)].params.get("lambda")),
        0.7
    );
}

/// Issue 12.3: Enter and Space flip booleans.
#[test]
fn enter_and_space_flip_booleans() {
    let mut app = demo_app();
    to_row(&mut app, &global("normalize"));
    let get = |app: &App| app.doc.value_at("normalize", None, None).value;
    assert_eq!(get(&app), Some(Value::Bool(true)));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.modal, None, "no text prompt for a boolean");
    assert_eq!(get(&app), Some(Value::Bool(false)));
    ch(&mut app, ' ');
    assert_eq!(get(&app), Some(Value::Bool(true)));
}

#[test]
fn density_is_kept_in_range() {
    let mut app = demo_app();
    to_layer(&mut app, 0);
    let slot = app.doc.input_slots()[1];
    let d = |app: &App| {
        num(app
            .doc
            .value_at("density", Some(slot), Some(Scope::Layer(0)))
            .value
            .as_ref())
    };
    for _ in 0..40 {
        press(&mut app, KeyCode::Left);
    }
    assert!(d(&app) > 0.0 && d(&app) <= 0.05, "{}", d(&app));
    for _ in 0..40 {
        press(&mut app, KeyCode::Right);
    }
    assert_eq!(d(&app), 1.0);
}

// ---------------------------------------------------------------- statistics

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
    assert!(matches!(app.stats_for(&t), Some((_, false))));
    assert!(matches!(app.stats_for(&other), Some((_, true))));
    let fresh = report(fake_stats(100, 1, 0.45));
    let msg = |key: StatsKey, s: Report| Msg::Analysis {
        key,
        target: t.clone(),
        result: Ok(s),
    };
    update(&mut app, msg(new_key, fresh.clone()));
    let shown = |app: &App| app.stats_for(&t).map(|(s, c)| (s.clone().unwrap(), c));
    assert_eq!(shown(&app), Some((fresh.clone(), true)));
    // A late result for the old parameters does not replace the new one.
    update(&mut app, msg(old_key, Report::default()));
    assert_eq!(shown(&app), Some((fresh.clone(), true)));
    // Back to the old density: earlier results are current again.
    press(&mut app, KeyCode::Right);
    assert_eq!(app.stats_key(&t), old_key);
    assert_eq!(shown(&app), Some((fresh, false)));
    update(&mut app, msg(old_key, Report::default()));
    assert_eq!(shown(&app), Some((Report::default(), true)));
}

/// The key covers every parameter the statistics depend on: gamma,
/// epsilon and the seed too, not just density and weight.
#[test]
fn keys_follow_every_parameter_of_the_method() {
    let mut app = demo_app();
    let t = Target::Group(Group::Layer(2));
    panel_method(&mut app, Method::Breadcrumbs);
    let k0 = app.stats_key(&t);
    let slot = app.doc.input_slots()[0];
    to_row(&mut app, &model_row(slot, "gamma"));
    press(&mut app, KeyCode::Right);
    assert_ne!(app.stats_key(&t), k0, "gamma changes the statistics");
    panel_method(&mut app, Method::DareTies);
    let k1 = app.stats_key(&t);
    to_row(&mut app, &ParamRow::Seed);
    press(&mut app, KeyCode::Right);
    assert_ne!(app.stats_key(&t), k1, "the seed changes the draws");
}

fn panel_method(app: &mut App, m: Method) {
    focus(app, Panel::Params);
    app.view.param_cursor = 0;
    while app.doc.method != m {
        press(app, KeyCode::Right);
    }
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
    update(
        &mut app,
        Msg::Preview {
            key: StatsKey(key.0 ^ 1),
            target: t.clone(),
            stats: est.clone(),
        },
    );
    assert_eq!(
        app.preview_for(&t),
        None,
        "a preview for other inputs is dropped"
    );
    update(
        &mut app,
        Msg::Preview {
            key,
            target: t.clone(),
            stats: est.clone(),
        },
    );
    assert_eq!(app.preview_for(&t), Some(&est));
    assert!(screen(&app, 120, 40).contains("PREVIEW"));
    update(
        &mut app,
        Msg::Analysis {
            key,
            target: t.clone(),
            result: Ok(report(fake_stats(10, 2, 0.5))),
        },
    );
    let s = screen(&app, 120, 40);
    assert!(!s.contains("PREVIEW") && s.contains("[current]"), "{s}");
    focus(&mut app, Panel::Layers);
    press(&mut app, KeyCode::Left);
    assert_eq!(app.preview_for(&t), None);
}

/// The whole-model view finishes even when a layer fails, and names it.
#[test]
fn all_layers_completes_over_failed_layers_and_names_them() {
    let mut app = demo_app();
    let head = Target::Group(Group::Post);
    analysed(
        &mut app,
        head,
        Err(JobError::Input("lm_head.weight: shapes differ".into())),
    );
    let s = screen(&app, 120, 40);
    assert!(s.contains("[current]"), "{s}");
    assert!(!s.contains("computing"), "{s}");
    assert!(s.contains("shapes differ"), "{s}");
}

/// The panel says what the method does: dare_ties is not ties.
#[test]
fn the_agreement_panel_names_each_method_s_selection() {
    let mut app = demo_app();
    let ties = screen(&app, 120, 40);
    assert!(ties.contains("largest magnitudes"), "{ties}");
    panel_method(&mut app, Method::DareTies);
    let dare = screen(&app, 120, 40);
    assert!(dare.contains("random"), "{dare}");
    panel_method(&mut app, Method::DareLinear);
    let s = screen(&app, 120, 40);
    assert!(s.contains("no sign election"), "{s}");
    // (SLERP takes one input beside the base: with the demo's three the
    // panel says it cannot merge them; linear trims nothing either.)
    panel_method(&mut app, Method::Linear);
    let s = screen(&app, 120, 40);
    assert!(s.contains("no trimming"), "{s}");
}

// ---------------------------------------------------------------- methods

/// Every method reached from the sample's TIES recipe leaves a recipe
/// whose only problems, if any, are about how many models it takes (the
/// user decides which to exclude): no hidden values, no missing ones.
#[test]
fn every_method_switch_leaves_a_runnable_recipe() {
    let mut app = demo_app();
    for _ in 0..Method::all().count() {
        ch(&mut app, 'm');
        let m = app.doc.method;
        if matches!(m, Method::Zipit | Method::Permute) {
            continue; // MLP-only; the demo family is Llama-shaped
        }
        for p in &app.problems {
            assert!(
                p.text.contains("model"),
                "{}: unexpected problem {}",
                m.name(),
                p.text
            );
            assert!(!p.text.contains("parameter"), "{}: {}", m.name(), p.text);
        }
        let r = app.doc.to_recipe();
        let spec = m.spec();
        for e in &r.models {
            for k in e.params.keys() {
                assert!(
                    spec.per_model.iter().any(|p| p.name == k),
                    "{}: models keep `{k}`",
                    m.name()
                );
            }
        }
        if m.spec().base == smelt::merge::BaseRule::None {
            assert_eq!(r.base, None, "{}: no base", m.name());
        } else {
            assert!(r.base.is_some(), "{}: a base", m.name());
        }
    }
    assert_eq!(app.doc.method, Method::Ties, "all the way round");
}

#[test]
fn linear_and_back_restores_density_and_the_base() {
    let mut app = demo_app();
    panel_method(&mut app, Method::Linear);
    let r = app.doc.to_recipe();
    assert_eq!(r.base, None, "linear takes no base");
    assert!(r.models.iter().all(|m| !m.params.contains_key("density")));
    assert!(app.problems.is_empty(), "{:?}", app.problems);
    let (_, msg) = app.message.clone().unwrap();
    assert!(
        msg.contains("set aside") || msg.contains("method linear"),
        "{msg}"
    );
    // The base stays loaded as the statistics' reference.
    assert!(screen(&app, 120, 40).contains("ref "));
    // Without a base in the recipe the output takes the first model's
    // dtype, as the plan decides.
    to_row(&mut app, &ParamRow::OutDtype);
    assert!(screen(&app, 120, 40).contains("the first model's"));
    assert!(app.analysis_blocked().is_none());
    // r asks for a folder: the recipe runs.
    ch(&mut app, 'r');
    assert!(matches!(app.modal, Some(Modal::Prompt(_))));
    press(&mut app, KeyCode::Esc);
    // Back to ties by the method row: density and base come back.
    panel_method(&mut app, Method::Ties);
    let back = app.doc.to_recipe();
    assert!(back.base.is_some());
    assert!(back
        .models
        .iter()
        .all(|m| num(m.params.get("density")) == 0.5));
    let (_, msg) = app.message.clone().unwrap();
    assert!(msg.contains("back density ×3 (0.5)"), "{msg}");
}

/// Every switch, from every method to the next: the message fits the
/// footer at 80 columns, and no value is reported both back from the
/// stash and added as a default.
#[test]
fn method_switch_messages_fit_and_agree() {
    let mut app = demo_app();
    for _ in 0..2 * Method::all().count() {
        focus(&mut app, Panel::Params);
        app.view.param_cursor = 0;
        press(&mut app, KeyCode::Right);
        let (_, msg) = app.message.clone().unwrap();
        assert!(msg.chars().count() <= 77, "{msg}");
        let part = |lead: &str| -> Vec<String> {
            msg.split(" · ")
                .find_map(|p| p.strip_prefix(lead))
                .map(|p| {
                    p.split(", ")
                        .map(|x| x.split_whitespace().next().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (back, added) = (part("back "), part("added "));
        assert!(!back.iter().any(|n| added.contains(n)), "{msg}");
    }
}

#[test]
fn slerp_with_three_inputs_shows_the_problem_and_r_lists_it() {
    let mut app = demo_app();
    panel_method(&mut app, Method::Slerp);
    assert_eq!(app.problems.len(), 1, "{:?}", app.problems);
    assert!(app.has_problem(&Spot::Models));
    let s = screen(&app, 120, 40);
    assert!(s.contains("1 problem"), "header count\n{s}");
    assert!(ch(&mut app, 'r').is_empty());
    assert_eq!(
        app.modal,
        Some(Modal::Problems),
        "refused before any prompt"
    );
    assert!(screen(&app, 120, 40).contains("exactly 2 models"));
    press(&mut app, KeyCode::Esc);
    // Excluding two inputs fixes it.
    focus(&mut app, Panel::Models);
    app.view.model_cursor = 2;
    ch(&mut app, 'e');
    app.view.model_cursor = 3;
    ch(&mut app, 'e');
    assert!(app.problems.is_empty(), "{:?}", app.problems);
}

#[test]
fn seed_is_a_recipe_value_of_random_methods() {
    let mut app = demo_app();
    assert!(
        !app.param_rows().contains(&ParamRow::Seed),
        "ties draws nothing"
    );
    panel_method(&mut app, Method::DareTies);
    to_row(&mut app, &ParamRow::Seed);
    press(&mut app, KeyCode::Enter);
    ctrl(&mut app, 'u');
    typ(&mut app, "7");
    press(&mut app, KeyCode::Enter);
    let r = app.doc.to_recipe();
    assert_eq!(r.seed, Some(7));
    assert!(!r.params.contains_key("seed"), "never a parameter");
    assert!(app.problems.is_empty(), "{:?}", app.problems);
    // Switching to ties sets it aside, back to dare_ties restores it.
    panel_method(&mut app, Method::Ties);
    assert_eq!(app.doc.to_recipe().seed, None);
    panel_method(&mut app, Method::DareTies);
    assert_eq!(app.doc.to_recipe().seed, Some(7));
}

// ---------------------------------------------------------------- undo

#[test]
fn undo_and_redo_cover_every_edit_kind() {
    let mut app = demo_app();
    let start = app.doc.clone();
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left); // override
    to_row(&mut app, &global("lambda"));
    press(&mut app, KeyCode::Right); // parameter
    let before_switch = app.doc.method.name();
    ch(&mut app, 'm'); // method switch
    ch(&mut app, 'u');
    assert!(
        matches!(&app.message, Some((_, m)) if m.starts_with(&format!("undo: method back to {before_switch}"))),
        "{:?}",
        app.message
    );
    ctrl(&mut app, 'r');
    focus(&mut app, Panel::Models);
    app.view.model_cursor = 1;
    ch(&mut app, 'e'); // exclude
    app.view.model_cursor = 2;
    ch(&mut app, 'b'); // base
    app.view.model_cursor = 3;
    ch(&mut app, 'x'); // remove
    assert!(matches!(&app.message, Some((_, m)) if m.contains("removed") && m.contains("u ")));
    let end = app.doc.clone();
    for _ in 0..6 {
        ch(&mut app, 'u');
    }
    assert_eq!(app.doc, start);
    ch(&mut app, 'u');
    assert!(matches!(&app.message, Some((_, m)) if m.contains("nothing to undo")));
    for _ in 0..6 {
        ctrl(&mut app, 'r');
    }
    assert_eq!(app.doc, end);
}

#[test]
fn undo_keeps_at_least_a_hundred_steps() {
    let mut app = demo_app();
    to_row(&mut app, &global("lambda"));
    for _ in 0..150 {
        press(&mut app, KeyCode::Right);
    }
    let lambda = |app: &App| num(app.doc.global.get("lambda"));
    assert!((lambda(&app) - 8.5).abs() < 1e-9, "{}", lambda(&app));
    for _ in 0..120 {
        ch(&mut app, 'u');
        // Each undo names the value now, not the one undone.
        let now = format!("undo: lambda back to {} ·", fmt_num(lambda(&app)));
        assert!(
            matches!(&app.message, Some((_, m)) if m.starts_with(&now)),
            "{now}: {:?}",
            app.message
        );
    }
    assert!((lambda(&app) - 2.5).abs() < 1e-9, "{}", lambda(&app));
    ctrl(&mut app, 'r');
    assert!(
        matches!(&app.message, Some((_, m)) if m.starts_with("redo: lambda is 2.55")),
        "{:?}",
        app.message
    );
}

// ---------------------------------------------------------------- models

#[test]
fn roles_and_exclusion_shape_the_recipe() {
    let mut app = demo_app();
    to_layer(&mut app, 2);
    press(&mut app, KeyCode::Left); // overrides for the three inputs
    focus(&mut app, Panel::Models);
    app.view.model_cursor = 2; // ft-math
    ch(&mut app, 'e');
    let r = app.doc.to_recipe();
    let names: Vec<_> = r
        .models
        .iter()
        .map(|m| m.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["ft-code", "ft-chat"]);
    assert_eq!(
        r.overrides[0].models.keys().copied().collect::<Vec<_>>(),
        vec![0, 1],
        "override keys follow the recipe's model indices"
    );
    ch(&mut app, 'e');
    ch(&mut app, 'b');
    let r = app.doc.to_recipe();
    assert!(r.base.as_ref().unwrap().ends_with("ft-math"));
    assert_eq!(r.models.len(), 3, "the old base is an input now");
    // Removing a model drops its overrides, keeps the others'.
    app.view.model_cursor = 1;
    let gone = app.doc.slots[1].info.path.clone();
    ch(&mut app, 'x');
    assert_eq!(app.doc.slots.len(), 3);
    assert!(!app.doc.overrides[&Scope::Layer(2)]
        .models
        .contains_key(&gone));
}

#[test]
fn adding_models_gives_weight_one_and_refuses_repeats() {
    let d = tempfile::tempdir().unwrap();
    let newm = d.path().join("ft-new");
    std::fs::create_dir(&newm).unwrap();
    let mut app = demo_app();
    ch(&mut app, 'a');
    ctrl(&mut app, 'u');
    typ(&mut app, newm.to_str().unwrap());
    let fx = press(&mut app, KeyCode::Enter);
    let ticket = match &fx[..] {
        [Effect::AddModel { ticket, path, fits }] => {
            assert_eq!(path, &newm);
            assert!(
                fits.as_ref().unwrap().ends_with("base"),
                "checked against the base"
            );
            *ticket
        }
        other => panic!("{other:?}"),
    };
    let info = ModelInfo {
        name: "ft-new".into(),
        path: newm.clone(),
        dtype: "BF16".into(),
        params: 1,
        shards: 1,
        layers: 8,
    };
    update(
        &mut app,
        Msg::ModelAdded {
            ticket,
            path: newm.clone(),
            result: Ok((info, Vec::new())),
        },
    );
    let r = app.doc.to_recipe();
    let added = r.models.iter().find(|m| m.path == newm).expect("added");
    assert_eq!(added.params.get("weight"), Some(&Value::Number(1.0)));
    assert!(app.problems.is_empty(), "{:?}", app.problems);
    // The same model again: refused in the prompt, text kept.
    ch(&mut app, 'a');
    ctrl(&mut app, 'u');
    typ(&mut app, newm.to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    let p = prompt(&app);
    assert!(p.input.error.as_deref().unwrap().contains("already loaded"));
    assert_eq!(p.input.text, newm.to_str().unwrap());
    press(&mut app, KeyCode::Esc);
    // A model that does not fit: the job's error reopens the prompt.
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    ch(&mut app, 'a');
    ctrl(&mut app, 'u');
    typ(&mut app, other.to_str().unwrap());
    let ticket = match &press(&mut app, KeyCode::Enter)[..] {
        [Effect::AddModel { ticket, .. }] => *ticket,
        other => panic!("{other:?}"),
    };
    update(
        &mut app,
        Msg::ModelAdded {
            ticket,
            path: other.clone(),
            result: Err(JobError::Input(
                "does not fit: `model.embed_tokens.weight` is [96, 64] here, [1000, 256] in base"
                    .into(),
            )),
        },
    );
    let p = prompt(&app);
    assert!(p.input.error.as_deref().unwrap().contains("embed_tokens"));
    assert_eq!(p.input.text, other.to_str().unwrap());
}

/// Issue 12.7: completions list candidates one per line, loaded marked.
#[test]
fn path_completion_lists_candidates_and_marks_loaded_models() {
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
    // Through the prompt, with `alpha` loaded.
    let mut app = demo_app();
    app.doc.slots[1].info.path = d.path().join("alpha");
    ch(&mut app, 'a');
    ctrl(&mut app, 'u');
    typ(&mut app, &format!("{base}al"));
    press(&mut app, KeyCode::Tab);
    let p = prompt(&app);
    assert_eq!(p.input.completions.len(), 2);
    assert!(p.input.completions[0].loaded && !p.input.completions[1].loaded);
    let s = screen(&app, 80, 24);
    let listed: Vec<&str> = s.lines().filter(|l| l.contains("alp")).collect();
    assert!(
        listed.len() >= 3,
        "the text and one line per candidate\n{s}"
    );
    assert!(s.contains("alpha/  (loaded)"), "{s}");
}

// ---------------------------------------------------------------- merge

#[test]
fn run_asks_for_a_folder_then_starts_and_cancels() {
    let mut app = demo_app();
    assert!(ch(&mut app, 'r').is_empty());
    let p = prompt(&app);
    assert_eq!(p.purpose, Purpose::OutputFolder);
    assert_eq!(
        PathBuf::from(&p.input.text),
        PathBuf::from("/demo/work/llama-synthetic-ties")
    );
    // /demo does not exist: said in the prompt, naming the folder.
    let fx = press(&mut app, KeyCode::Enter);
    assert!(fx.is_empty());
    assert!(prompt(&app)
        .input
        .error
        .as_deref()
        .unwrap()
        .contains("/demo/work"));
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    ctrl(&mut app, 'u');
    typ(&mut app, out.to_str().unwrap());
    let fx = press(&mut app, KeyCode::Enter);
    let ticket = match &fx[..] {
        [Effect::StartMerge {
            recipe,
            out: o,
            ticket,
            force,
            ..
        }] => {
            assert!(!force, "a new folder is never forced");
            assert_eq!(recipe, &app.doc.to_recipe());
            assert_eq!(o, &out);
            *ticket
        }
        other => panic!("{other:?}"),
    };
    assert!(app.merge_running());
    assert!(ch(&mut app, 'r').is_empty(), "no second merge");
    update(
        &mut app,
        Msg::Merge {
            ticket,
            event: Event::Progress {
                tensor: "t".into(),
                tensors_done: 3,
                bytes_done: 50,
                bytes_total: 100,
            },
            elapsed: Duration::from_secs(1),
        },
    );
    assert!(
        matches!(&app.merge, MergeState::Running { progress, .. } if progress.bytes_done == 50)
    );
    assert_eq!(ch(&mut app, 'c'), vec![Effect::CancelMerge]);
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Err(JobError::Cancelled),
        },
    );
    assert!(matches!(app.merge, MergeState::Cancelled { .. }));
    let s = screen(&app, 80, 24);
    assert!(s.contains("cancelled") && !s.contains("FAILED"), "{s}");
}

#[test]
fn a_result_stays_labelled_with_its_recipe() {
    let mut app = demo_app();
    let ticket = merged(&mut app);
    assert!(!screen(&app, 80, 24).contains("earlier recipe"));
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left);
    assert!(screen(&app, 80, 24).contains("earlier recipe"));
    // A result of another (older) merge is dropped.
    update(
        &mut app,
        Msg::MergeDone {
            ticket: Ticket(ticket.0 + 100),
            result: Err(JobError::Input("x".into())),
        },
    );
    assert!(matches!(app.merge, MergeState::Done { .. }));
}

/// With a range selected, Parameters edits every layer of it and Sign
/// agreement shows the cursor's layer: its title says which of the range.
#[test]
fn a_range_s_agreement_title_names_the_cursor_s_layer() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    let s = screen(&app, 80, 24);
    assert!(s.contains("layers 1-3 (range)"), "{s}");
    assert!(s.contains("Sign agreement · layer 3 of range 1-3"), "{s}");
}

/// `r` into a folder holding an earlier smelt output asks before replacing
/// it (as `smelt merge --force` would); y merges with the replacement
/// allowed, any other key goes back to the prompt. A folder holding
/// anything else is refused in the prompt.
#[test]
fn running_into_an_earlier_output_asks_to_replace_it() {
    let mut app = demo_app();
    let d = tempfile::tempdir().unwrap();
    app.work_dir = d.path().to_path_buf();
    let old = d.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("smelt-recipe.toml"), "method = \"linear\"\n").unwrap();
    std::fs::write(old.join("model.safetensors"), b"").unwrap();
    let mine = d.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    let run_into = |app: &mut App, p: &std::path::Path| {
        ch(app, 'r');
        ctrl(app, 'u');
        typ(app, p.to_str().unwrap());
        press(app, KeyCode::Enter)
    };
    let fx = run_into(&mut app, &mine);
    assert!(fx.is_empty(), "{fx:?}");
    assert!(
        matches!(&app.modal, Some(Modal::Prompt(_))),
        "{:?}",
        app.modal
    );
    press(&mut app, KeyCode::Esc);

    let fx = run_into(&mut app, &old);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Replace {
            path: old.clone(),
            empty: false
        }))
    );
    assert!(screen(&app, 80, 24).contains("earlier smelt output"));
    ch(&mut app, 'n');
    assert!(
        matches!(&app.modal, Some(Modal::Prompt(_))),
        "{:?}",
        app.modal
    );
    let fx = press(&mut app, KeyCode::Enter);
    assert!(fx.is_empty());
    let fx = ch(&mut app, 'y');
    match &fx[..] {
        [Effect::StartMerge { out, force, .. }] => assert!(*force && out == &old),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// A failure with a long message, then an edit: "(earlier recipe)" is
/// still on screen at 80x24 (it followed the message, which took every
/// line of the panel).
#[test]
fn a_failure_stays_labelled_with_its_recipe() {
    let mut app = demo_app();
    app.work_dir = tempfile::tempdir().unwrap().keep();
    let ticket = start_merge(&mut app);
    let long = "cannot create /sys/kernel/smelt-out: its parent /sys/kernel is not writable \
                (and a good deal more said about why)";
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Err(JobError::Input(long.into())),
        },
    );
    assert!(screen(&app, 80, 24).contains("FAILED"));
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left);
    let s = screen(&app, 80, 24);
    assert!(s.contains("FAILED (earlier recipe)"), "{s}");
}

/// `o` on another recipe: the last merge's end (its folder, its accuracy
/// table) is not shown as if it were the new recipe's.
#[test]
fn opening_another_recipe_starts_status_over() {
    let mut app = demo_app();
    merged(&mut app);
    assert!(matches!(app.merge, MergeState::Done { .. }));
    let (tx, _rx) = crossbeam_channel::unbounded();
    let jobs = smelt::tui::jobs::Jobs::new(tx);
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_models/recipes/llama-ties.toml");
    let l = jobs
        .open_now(
            &file,
            std::fs::read_to_string(&file).unwrap(),
            &app.data_dir,
        )
        .expect("the sample opens");
    smelt::tui::update::opened(&mut app, l);
    assert!(matches!(app.merge, MergeState::Idle));
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("ready: r runs the merge") && !s.contains("done"),
        "{s}"
    );
}

#[test]
fn a_finished_merge_asks_for_accuracy_and_fits_80_columns() {
    let mut app = demo_zip_app();
    app.work_dir = tempfile::tempdir().unwrap().keep();
    let ticket = start_merge(&mut app);
    let out = match &app.merge {
        MergeState::Running { out, .. } => out.clone(),
        _ => unreachable!(),
    };
    let mut s = summary(out.to_str().unwrap());
    s.tensors = 8;
    let fx = update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Ok(s),
        },
    );
    let Some(Effect::Evaluate { out: o, inputs }) = fx.into_iter().next() else {
        panic!("no evaluation asked for");
    };
    assert_eq!(o, out);
    assert_eq!(inputs[0].1, "digits-0-4");
    let acc = |o: &PathBuf| Accuracy {
        out: o.clone(),
        merged: Ok(demo_report(
            "m",
            &[(&[0, 1, 2, 3, 4], 0.971), (&[5, 6, 7, 8, 9], 0.953)],
            0.842,
        )),
        inputs: vec![
            (
                "digits-0-4".into(),
                Ok(demo_report("a", &[(&[0, 1, 2, 3, 4], 0.99)], 0.5)),
            ),
            (
                "digits-5-9".into(),
                Ok(demo_report("b", &[(&[5, 6, 7, 8, 9], 0.987)], 0.5)),
            ),
        ],
    };
    let other = PathBuf::from("/elsewhere");
    update(
        &mut app,
        Msg::Accuracy {
            out: other.clone(),
            result: Some(acc(&other)),
        },
    );
    assert_eq!(
        app.accuracy,
        AccuracyState::Running(out.clone()),
        "not ours"
    );
    update(
        &mut app,
        Msg::Accuracy {
            out: out.clone(),
            result: Some(acc(&out)),
        },
    );
    // Issue 12.5: every figure visible at 80x23.
    let s = screen(&app, 80, 23);
    for fig in ["97.1%", "95.3%", "84.2%", "99.0%", "98.7%", "joint"] {
        assert!(s.contains(fig), "{fig} missing at 80x23\n{s}");
    }
}

// ---------------------------------------------------------------- leaving

#[test]
fn quit_with_unsaved_changes_asks_save_discard_or_cancel() {
    let mut app = demo_app();
    ch(&mut app, 'q');
    assert_eq!(app.exit, Some(Exit::User), "nothing to lose: quits");
    let mut app = demo_app();
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left);
    ch(&mut app, 'q');
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Leave { then: Then::Quit }))
    );
    assert!(screen(&app, 80, 24).contains("Unsaved changes"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.exit, None);
    ctrl(&mut app, 'c');
    assert!(
        matches!(app.modal, Some(Modal::Confirm(_))),
        "Ctrl-C asks too"
    );
    ch(&mut app, 'd');
    assert_eq!(app.exit, Some(Exit::User));
}

#[test]
fn save_from_the_quit_dialog_writes_over_the_opened_file_then_quits() {
    let mut app = demo_app();
    app.saved_text = Some("# mine\nmethod = \"ties\"\n".into());
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left);
    ch(&mut app, 'q');
    let fx = ch(&mut app, 's');
    let (ticket, req) = match &fx[..] {
        [Effect::Save { ticket, request }] => (*ticket, request.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(Some(&req.path), app.recipe_path.as_ref());
    assert_eq!(
        req.over.as_deref(),
        Some("# mine\nmethod = \"ties\"\n"),
        "comments kept"
    );
    assert_eq!(app.exit, None, "not before the file is written");
    update(
        &mut app,
        Msg::Saved {
            ticket,
            path: req.path.clone(),
            result: Ok(SavedFile {
                recipe: req.recipe.clone(),
                text: "x".into(),
            }),
        },
    );
    assert!(!app.modified());
    assert_eq!(app.exit, Some(Exit::User));
}

#[test]
fn the_quit_dialog_follows_a_merge_that_ends() {
    let mut app = demo_app();
    app.work_dir = tempfile::tempdir().unwrap().keep();
    let ticket = start_merge(&mut app);
    ch(&mut app, 'q');
    let s = screen(&app, 80, 24);
    assert!(s.contains("quitting cancels it"), "{s}");
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Ok(summary("/o")),
        },
    );
    let s = screen(&app, 80, 24);
    assert!(
        !s.contains("quitting cancels it") && s.contains("has finished"),
        "{s}"
    );
    assert!(ch(&mut app, 'y').is_empty());
    assert_eq!(app.exit, Some(Exit::User));
}

#[test]
fn open_with_unsaved_changes_asks_first() {
    let mut app = demo_app();
    ch(&mut app, 'm');
    ch(&mut app, 'o');
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Leave { then: Then::Open }))
    );
    ch(&mut app, 'd');
    assert_eq!(prompt(&app).purpose, Purpose::Open);
    // A model folder is named as one, with the key that adds it.
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/llama-synthetic/base");
    ctrl(&mut app, 'u');
    typ(&mut app, model.to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    let e = prompt(&app).input.error.clone().unwrap_or_default();
    assert!(
        e.contains("a model folder, not a recipe (a adds a model)"),
        "{e}"
    );
}

#[test]
fn save_shows_its_path_and_asks_before_writing_over_another_file() {
    let d = tempfile::tempdir().unwrap();
    let mut app = demo_app();
    app.data_dir = d.path().to_path_buf();
    app.recipe_path = None;
    ch(&mut app, 's');
    let p = prompt(&app);
    assert_eq!(
        PathBuf::from(&p.input.text),
        d.path().join("recipes/llama-synthetic-ties.toml")
    );
    assert!(screen(&app, 80, 24).contains("llama-synthetic-ties.toml"));
    let other = d.path().join("other.toml");
    std::fs::write(&other, "x").unwrap();
    ctrl(&mut app, 'u');
    typ(&mut app, other.to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(matches!(
        app.modal,
        Some(Modal::Confirm(Confirm::Overwrite {
            why: Overwrite::Exists,
            ..
        }))
    ));
    // n: back to the prompt, path kept.
    ch(&mut app, 'n');
    assert_eq!(prompt(&app).input.text, other.to_str().unwrap());
    press(&mut app, KeyCode::Enter);
    let fx = ch(&mut app, 'y');
    let (ticket, req) = match &fx[..] {
        [Effect::Save { ticket, request }] => (*ticket, request.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(req.path, other);
    // The file changed on disk: asked again, then forced.
    update(
        &mut app,
        Msg::Saved {
            ticket,
            path: other.clone(),
            result: Err(JobError::ChangedOnDisk),
        },
    );
    assert!(matches!(
        app.modal,
        Some(Modal::Confirm(Confirm::Overwrite {
            why: Overwrite::ChangedOnDisk,
            ..
        }))
    ));
    match &ch(&mut app, 'y')[..] {
        [Effect::Save { request, .. }] => assert!(request.force),
        other => panic!("{other:?}"),
    }
    // A failed save reopens the prompt with the error.
    let t = app.tickets.save.unwrap();
    update(
        &mut app,
        Msg::Saved {
            ticket: t,
            path: other.clone(),
            result: Err(JobError::Input("cannot write mergekit YAML: zipit".into())),
        },
    );
    assert!(prompt(&app)
        .input
        .error
        .as_deref()
        .unwrap()
        .contains("zipit"));
}

#[test]
fn stale_job_results_are_dropped() {
    let mut app = demo_app();
    ch(&mut app, 'o');
    ctrl(&mut app, 'u');
    typ(&mut app, "/nonexistent.toml");
    press(&mut app, KeyCode::Enter);
    assert!(prompt(&app)
        .input
        .error
        .as_deref()
        .unwrap()
        .contains("no such recipe"));
    press(&mut app, KeyCode::Esc);
    // An Opened result for a ticket never issued changes nothing.
    let before = app.doc.clone();
    update(
        &mut app,
        Msg::Opened {
            ticket: Ticket(999),
            path: PathBuf::from("/x.toml"),
            result: Err(JobError::Input("late".into())),
        },
    );
    assert_eq!(app.doc, before);
    assert_eq!(app.modal, None);
}

#[test]
fn a_signal_cancels_the_merge_and_ends() {
    let mut app = demo_app();
    app.work_dir = tempfile::tempdir().unwrap().keep();
    start_merge(&mut app);
    let fx = update(&mut app, Msg::Signal(15));
    assert_eq!(fx, vec![Effect::CancelMerge]);
    assert_eq!(app.exit, Some(Exit::Signal(15)));
}

#[test]
fn help_opens_scrolls_and_any_other_key_closes_it() {
    let mut app = demo_app();
    ch(&mut app, '?');
    assert_eq!(app.modal, Some(Modal::Help(0)));
    let s = screen(&app, 80, 23);
    assert!(s.contains("Everywhere") && s.contains("↓ more"), "{s}");
    for _ in 0..30 {
        press(&mut app, KeyCode::Down);
    }
    let s = screen(&app, 80, 23);
    assert!(
        s.contains("text cut to fit") && s.contains("recomputed"),
        "the legend\n{s}"
    );
    ch(&mut app, 'q');
    assert_eq!(app.modal, None);
    assert_eq!(app.exit, None, "q closes help, it does not quit");
}

#[test]
fn ctrl_l_repaints() {
    let mut app = demo_app();
    assert_eq!(ctrl(&mut app, 'l'), vec![Effect::Repaint]);
}

#[test]
fn a_recipe_round_trips_through_the_state() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    ch(&mut app, 'v');
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Left);
    focus(&mut app, Panel::Layers);
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Right); // embeddings
    ch(&mut app, 'm');
    let r = app.doc.to_recipe();
    let mut other = App::new(PathBuf::from("/d"), PathBuf::from("/w"));
    let infos: Vec<ModelInfo> = app.doc.slots.iter().map(|s| s.info.clone()).collect();
    other.load(&r, &infos, app.doc.layers.clone());
    assert_eq!(other.doc.to_recipe(), r);
    assert_eq!(other.doc.overrides, app.doc.overrides);
}

// ---------------------------------------------------------------- mouse

fn mouse(kind: MouseEventKind, x: u16, y: u16) -> Msg {
    Msg::Mouse(MouseEvent {
        kind,
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    })
}

/// Issue 12.4: the wheel scrolls the panel under the pointer; a click
/// selects the row under it.
#[test]
fn the_mouse_acts_on_the_panel_under_the_pointer() {
    let mut app = demo_app();
    update(&mut app, Msg::Resize(120, 40));
    assert_eq!(app.focus(), Panel::Layers);
    // At 120x40 the Models panel's rows start on screen row 2.
    update(&mut app, mouse(MouseEventKind::ScrollDown, 5, 3));
    assert_eq!(app.view.model_cursor, 1, "Models scrolled");
    assert_eq!(app.view.layer_cursor, 0, "not the focused Layers");
    update(
        &mut app,
        mouse(MouseEventKind::Down(MouseButton::Left), 5, 4),
    );
    assert_eq!(app.focus(), Panel::Models);
    assert_eq!(app.view.model_cursor, 2);
    // Layers start under Models (6 rows tall): row 8 is "all layers",
    // row 11 is "layer 1".
    update(
        &mut app,
        mouse(MouseEventKind::Down(MouseButton::Left), 5, 11),
    );
    assert_eq!(app.focus(), Panel::Layers);
    assert_eq!(app.current_target(), Some(Target::Group(Group::Layer(1))));
    update(
        &mut app,
        mouse(MouseEventKind::Down(MouseButton::Left), 5, 0),
    );
    assert_eq!(app.focus(), Panel::Layers, "the title bar selects nothing");
}

// ---------------------------------------------------------------- zipit

/// Rows of the MLP's Layers panel: all, layer 0, layer 1, ...
fn zip_to(app: &mut App, row: usize) {
    focus(app, Panel::Layers);
    press(app, KeyCode::Home);
    for _ in 0..row {
        press(app, KeyCode::Down);
    }
}
fn depth(app: &App) -> f64 {
    num(app.doc.to_recipe().params.get("depth"))
}

#[test]
fn z_makes_the_selected_layer_the_last_zipped_one() {
    let mut app = demo_zip_app();
    assert_eq!(
        app.doc.zip_max(),
        3,
        "3 hidden layers, the 4th is the classifier"
    );
    assert_eq!(depth(&app), -1.0);
    zip_to(&mut app, 2);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 2.0);
    assert!(
        app.doc.to_recipe().overrides.is_empty(),
        "depth is never per layer"
    );
    assert!(app.doc.zipped(1) && !app.doc.zipped(2));
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 1.0);
    zip_to(&mut app, 1);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 0.0);
    zip_to(&mut app, 0);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), -1.0);
    zip_to(&mut app, 4);
    ch(&mut app, 'z');
    assert_eq!(depth(&app), -1.0);
    let (_, msg) = app.message.clone().unwrap();
    assert!(msg.contains("classifier"), "{msg}");
}

#[test]
fn zipit_overrides_past_the_trunk_are_problems_on_their_layer() {
    let mut app = demo_zip_app();
    zip_to(&mut app, 2); // layer 1
    to_row(&mut app, &global("alpha"));
    press(&mut app, KeyCode::Right);
    let r = app.doc.to_recipe();
    assert_eq!(r.overrides[0].scope, OverrideScope::Layers(1, 1));
    assert!(app.problems.is_empty(), "{:?}", app.problems);
    // Zip only layer 0: the alpha on layer 1 lies past the trunk.
    zip_to(&mut app, 1);
    ch(&mut app, 'z');
    ch(&mut app, 'z');
    assert_eq!(depth(&app), 0.0);
    assert!(!app.problems.is_empty());
    assert!(
        app.has_problem(&Spot::Scope(Scope::Layer(1))),
        "{:?}",
        app.problems
    );
    ch(&mut app, 'r');
    assert_eq!(app.modal, Some(Modal::Problems));
    press(&mut app, KeyCode::Esc);
    // Zipping deeper makes it runnable again.
    zip_to(&mut app, 2);
    ch(&mut app, 'z');
    assert!(app.problems.is_empty(), "{:?}", app.problems);
}

#[test]
fn zipit_has_no_statistics_and_says_why() {
    let mut app = demo_zip_app();
    let why = app.analysis_blocked().expect("blocked");
    assert!(why.contains("no task vectors"), "{why}");
    assert!(smelt::tui::update::initial_analysis(&app).is_none());
    zip_to(&mut app, 2);
    let fx = ch(&mut app, 'z');
    assert!(!fx.iter().any(|e| matches!(e, Effect::Analyze { .. })));
}

/// A sliced recipe (a frankenmerge) opens: its models are listed from the
/// slices, nothing claims there are none, and r runs it.
#[test]
fn a_sliced_recipe_lists_its_models_and_runs() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mergekit/recipes/passthrough.yml");
    let r = smelt::recipe::Recipe::load(&fixture).unwrap();
    let mut app = App::new(PathBuf::from("/d"), tempfile::tempdir().unwrap().keep());
    app.load(&r, &[], smelt::tui::demo::demo_layers(4));
    assert!(app.problems.is_empty(), "{:?}", app.problems);
    assert_eq!(app.doc.slice_models().len(), 2);
    assert_eq!(app.doc.to_recipe(), r);
    let s = screen(&app, 80, 24);
    assert!(s.contains("slc  ft0") && s.contains("slc  ft1"), "{s}");
    assert!(app.analysis_blocked().unwrap().contains("sliced"));
    focus(&mut app, Panel::Models);
    press(&mut app, KeyCode::Down);
    let before = app.doc.clone();
    ch(&mut app, 'x');
    assert_eq!(app.doc, before, "slices are edited in the file");
    ch(&mut app, 'r');
    assert!(
        matches!(app.modal, Some(Modal::Prompt(_))),
        "{:?}",
        app.modal
    );
}

/// Name filters give each tensor its own value: ←/→ recipe-wide moves
/// every entry (shape kept); at a layer it refuses to flatten them.
#[test]
fn filtered_values_step_entry_by_entry_or_refuse() {
    let mut app = demo_app();
    let slot = app.doc.input_slots()[0];
    let path = app.doc.slots[slot].info.path.clone();
    app.doc.set(
        &Place::Model(path.clone()),
        "weight",
        Value::Filtered(vec![
            (Some("mlp".into()), Value::Number(0.5)),
            (None, Value::Gradient(vec![0.2, 0.4])),
        ]),
    );
    app.refresh();
    focus(&mut app, Panel::Layers);
    press(&mut app, KeyCode::Home);
    to_row(&mut app, &model_row(slot, "weight"));
    press(&mut app, KeyCode::Right);
    assert_eq!(
        app.doc.get(&Place::Model(path.clone()), "weight"),
        Some(&Value::Filtered(vec![
            (Some("mlp".into()), Value::Number(0.55)),
            (None, Value::Gradient(vec![0.25, 0.45])),
        ]))
    );
    let before = app.doc.clone();
    to_layer(&mut app, 2);
    to_row(&mut app, &model_row(slot, "weight"));
    press(&mut app, KeyCode::Right);
    assert_eq!(app.doc, before, "nothing flattened");
    assert!(matches!(&app.message, Some((Level::Warn, m)) if m.contains("filters")));
    assert!(
        screen(&app, 120, 40).contains("w[f]"),
        "filters shown short"
    );
}

/// A gradient shows, on the Models panel as on Parameters, its value at
/// the selected layer, and recipe-wide the range it spans.
#[test]
fn a_gradient_shows_its_value_at_the_layer_on_both_panels() {
    let mut app = demo_app();
    let slot = app.doc.input_slots()[0];
    let path = app.doc.slots[slot].info.path.clone();
    app.doc.set(
        &Place::Model(path),
        "density",
        Value::Gradient(vec![0.2, 0.8, 0.5]),
    );
    app.refresh();
    focus(&mut app, Panel::Layers);
    press(&mut app, KeyCode::Home);
    let s = screen(&app, 120, 40);
    assert!(s.contains("d0.2..0.8"), "the span, not the ends:\n{s}");
    to_layer(&mut app, 2);
    let s = screen(&app, 120, 40);
    let params = s
        .lines()
        .find(|l| l.contains("density ·"))
        .expect("the density row");
    let at = params
        .split('≈')
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("a resolved value")
        .trim_end_matches('│')
        .to_string();
    assert!(
        s.contains(&format!("d≈{at}")),
        "the Models panel shows {at} too:\n{s}"
    );
}

/// A gradient at a layer moves from what it gives there.
#[test]
fn a_gradient_steps_from_its_value_at_the_layer() {
    let mut app = demo_app();
    app.doc
        .global
        .insert("lambda".into(), Value::Gradient(vec![0.0, 1.0]));
    app.refresh();
    to_layer(&mut app, 7); // the last of 8 layers: the gradient gives 1
    to_row(&mut app, &global("lambda"));
    press(&mut app, KeyCode::Left);
    assert_eq!(
        app.doc.overrides[&Scope::Layer(7)].params.get("lambda"),
        Some(&Value::Number(0.95))
    );
}

/// `b` turns the old base into an input with a weight, not a problem.
#[test]
fn a_new_base_leaves_the_old_one_a_weighted_input() {
    let mut app = demo_app();
    focus(&mut app, Panel::Models);
    app.view.model_cursor = 2;
    ch(&mut app, 'b');
    assert!(app.problems.is_empty(), "{:?}", app.problems);
    let r = app.doc.to_recipe();
    assert!(r
        .models
        .iter()
        .all(|m| m.params.get("weight") == Some(&Value::Number(1.0))
            || m.params.contains_key("weight")));
    assert!(r.models[0].params.contains_key("weight"), "{r:?}");
}

/// Problems only the models' headers show (found by a check job) stop r.
#[test]
fn problems_found_against_the_models_stop_the_run() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    let fx = press(&mut app, KeyCode::Left);
    let gen = fx
        .iter()
        .find_map(|e| match e {
            Effect::Check { gen, .. } => Some(*gen),
            _ => None,
        })
        .expect("a check after an edit");
    update(
        &mut app,
        Msg::Checked {
            gen: gen - 1,
            problem: Some("stale".into()),
        },
    );
    assert!(
        app.problems.is_empty(),
        "a check of older values is dropped"
    );
    update(
        &mut app,
        Msg::Checked {
            gen,
            problem: Some("ft-math: tensor `lm_head.weight` has shape [1, 2]".into()),
        },
    );
    assert_eq!(app.problems.len(), 1);
    ch(&mut app, 'r');
    assert_eq!(app.modal, Some(Modal::Problems));
}

#[test]
fn save_and_run_refuse_folders_that_do_not_fit() {
    let d = tempfile::tempdir().unwrap();
    let mut app = demo_app();
    app.data_dir = d.path().join("data");
    app.recipe_path = None;
    ch(&mut app, 's');
    ctrl(&mut app, 'u');
    typ(&mut app, d.path().join("no/such/r.toml").to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(prompt(&app)
        .input
        .error
        .as_deref()
        .unwrap()
        .contains("does not exist"));
    press(&mut app, KeyCode::Esc);
    // The data folder is made as needed.
    ch(&mut app, 's');
    let fx = press(&mut app, KeyCode::Enter);
    assert!(matches!(&fx[..], [Effect::Save { .. }]), "{fx:?}");
    // A merge into an input model's folder is refused in the prompt.
    let model = d.path().join("m");
    std::fs::create_dir(&model).unwrap();
    app.doc.slots[1].info.path = model.clone();
    app.refresh();
    ch(&mut app, 'r');
    ctrl(&mut app, 'u');
    typ(&mut app, model.join("out").to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(prompt(&app)
        .input
        .error
        .as_deref()
        .unwrap()
        .contains("inside the folder of the model"));
    press(&mut app, KeyCode::Esc);
    // A model named as a file protects its folder, for merges and saves:
    // a recipe saved over a model's own files would destroy it.
    std::fs::write(model.join("model.safetensors"), b"x").unwrap();
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    app.doc.slots[1].info.path = model.join("model.safetensors");
    app.refresh();
    ch(&mut app, 'r');
    ctrl(&mut app, 'u');
    typ(&mut app, model.join("out").to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(prompt(&app).input.error.is_some());
    press(&mut app, KeyCode::Esc);
    ch(&mut app, 's');
    ctrl(&mut app, 'u');
    typ(&mut app, model.join("config.json").to_str().unwrap());
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    let e = prompt(&app).input.error.clone().unwrap();
    assert!(e.contains("inside the folder of the model"), "{e}");
    assert_eq!(std::fs::read(model.join("config.json")).unwrap(), b"{}");
}

/// The bundled sample is never offered to be written over.
#[test]
fn the_bundled_sample_saves_to_the_data_folder() {
    let mut app = demo_app();
    app.sample = true;
    to_layer(&mut app, 1);
    press(&mut app, KeyCode::Left);
    ch(&mut app, 's');
    assert!(PathBuf::from(&prompt(&app).input.text).starts_with("/demo/data"));
    press(&mut app, KeyCode::Esc);
    ch(&mut app, 'q');
    ch(&mut app, 's');
    let p = prompt(&app);
    assert!(
        PathBuf::from(&p.input.text).starts_with("/demo/data"),
        "{}",
        p.input.text
    );
}

/// Figures over nothing are not shown as figures.
#[test]
fn a_layer_with_every_tensor_left_out_says_so() {
    let mut app = demo_app();
    to_layer(&mut app, 2);
    let t = Target::Group(Group::Layer(2));
    analysed(
        &mut app,
        t,
        Ok(Report {
            stats: Stats::new(3),
            skipped: vec![smelt::analysis::Skipped {
                tensor: "model.layers.2.mlp.up_proj.weight".into(),
                reason: "shapes differ".into(),
            }],
        }),
    );
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("nothing to compare") && s.contains("shapes differ"),
        "{s}"
    );
    assert!(!s.contains("conflict 0.0%"), "{s}");
    assert!(s.contains("left out†"), "{s}");
}

#[test]
fn adding_model_plus_adapter_is_accepted_when_both_halves_exist() {
    let d = tempfile::tempdir().unwrap();
    let (m, a) = (d.path().join("ft-new"), d.path().join("lora"));
    std::fs::create_dir(&m).unwrap();
    let mut app = demo_app();
    let both = format!("{}+{}", m.display(), a.display());
    // The adapter folder is missing: refused, no job started.
    ch(&mut app, 'a');
    ctrl(&mut app, 'u');
    typ(&mut app, &both);
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    std::fs::create_dir(&a).unwrap();
    ctrl(&mut app, 'u');
    typ(&mut app, &both);
    match &press(&mut app, KeyCode::Enter)[..] {
        [Effect::AddModel { path, .. }] => assert_eq!(path, &std::path::PathBuf::from(&both)),
        other => panic!("{other:?}"),
    }
}

/// Without a trim, the Sign agreement panel names the share of entries a
/// fine-tune changed ("changed"), not a share kept, and no energy kept.
#[test]
fn without_a_trim_the_share_is_of_changed_entries() {
    let mut app = demo_app();
    let s = screen(&app, 120, 50);
    assert!(s.contains("kept ") && s.contains("energy"), "{s}");
    app.doc.method = Method::TaskArithmetic;
    app.refresh();
    let s = screen(&app, 120, 50);
    assert!(
        s.contains("changed ") && !s.contains("kept ") && !s.contains("energy"),
        "{s}"
    );
}

/// Tensors left out for one reason (a recipe the method refuses gives the
/// same for every tensor) are one line, with their count, not a line each.
#[test]
fn tensors_left_out_for_one_reason_are_one_line() {
    let mut app = demo_app();
    to_layer(&mut app, 1);
    let t = Target::Group(Group::Layer(1));
    let why = "fuses the base with exactly one other model, got 3";
    let mut rep = report(fake_stats(100, 1, 0.5));
    rep.skipped = (0..7)
        .map(|k| smelt::analysis::Skipped {
            tensor: format!("model.layers.1.t{k}.weight"),
            reason: why.into(),
        })
        .collect();
    rep.skipped.push(smelt::analysis::Skipped {
        tensor: "model.layers.1.odd.weight".into(),
        reason: "another shape".into(),
    });
    analysed(&mut app, t, Ok(rep));
    let s = screen(&app, 200, 60);
    assert_eq!(s.matches("exactly one other model").count(), 1, "{s}");
    assert!(
        s.contains("(7 tensors, first model.layers.1.t0.weight)"),
        "{s}"
    );
    assert!(
        s.contains("model.layers.1.odd.weight: another shape"),
        "{s}"
    );
    assert!(s.contains("left out of these figures (8)"), "{s}");
}

/// Two models whose folders have the same name are told apart by the
/// folders above them, the name first.
#[test]
fn models_of_the_same_folder_name_read_apart() {
    let r = smelt::recipe::Recipe::for_models(
        vec![
            PathBuf::from("/data/work/ft-broad"),
            PathBuf::from("/data/llama-synthetic/ft-broad"),
            PathBuf::from("/data/other"),
        ],
        None,
    );
    let d = smelt::tui::doc::Doc::from_recipe(&r, &[], Vec::new());
    let names: Vec<&str> = d.slots.iter().map(|s| s.info.name.as_str()).collect();
    assert_eq!(
        names,
        ["ft-broad (work)", "ft-broad (llama-synthetic)", "other"]
    );
}

/// On a narrow screen the help wraps its descriptions rather than cutting
/// them, and scrolls to its end.
#[test]
fn narrow_help_wraps_and_scrolls_to_the_end() {
    let mut app = demo_app();
    app.size = (44, 40);
    ch(&mut app, '?');
    let s = screen(&app, 44, 40);
    assert!(
        s.contains("quit (asks first if work") && s.contains("could be lost)"),
        "{s}"
    );
    for _ in 0..200 {
        press(&mut app, KeyCode::Down);
    }
    let s = screen(&app, 44, 40);
    assert!(s.contains("other keys close"), "{s}");
}

/// A method that cannot merge the recipe's inputs (arcee_fusion takes the
/// base and one other model; the demo has three): no statistics are asked
/// for (each tensor would fail alike, and the panel listed every one),
/// the panel says why, and with one input they come back.
#[test]
fn a_method_that_cannot_take_the_inputs_asks_for_no_statistics() {
    use smelt::merge::Method;
    let mut app = demo_app();
    while app.doc.method != Method::ArceeFusion {
        ch(&mut app, 'm');
    }
    let why = app.analysis_blocked().expect("blocked");
    assert!(why.contains("cannot merge this many"), "{why}");
    assert!(smelt::tui::update::analysis_request(&app).is_none());
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("this method cannot merge") && !s.contains("†"),
        "{s}"
    );
    app.view.focus = Some(Panel::Models);
    app.view.model_cursor = 1;
    ch(&mut app, 'x');
    ch(&mut app, 'x');
    assert_eq!(app.doc.input_slots().len(), 1);
    assert!(app.analysis_blocked().is_none());
    assert!(smelt::tui::update::analysis_request(&app).is_some());
}

/// Status, focused in the compact layout (where Tab reaches it), gives the
/// focus to Sign agreement when the window grows back to the full layout,
/// where Tab never comes to Status.
#[test]
fn growing_out_of_the_compact_layout_leaves_status() {
    let mut app = demo_app();
    update(&mut app, Msg::Resize(40, 12));
    while app.focus() != Panel::Status {
        press(&mut app, KeyCode::Tab);
    }
    update(&mut app, Msg::Resize(80, 23));
    assert_eq!(app.focus(), Panel::Agreement);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus(), Panel::Models, "Tab goes on from there");
}

/// The help pages like a pager: End (or G) shows its last line and one
/// step up leaves it at once (the end is this screen's, not the
/// narrowest's), Space pages on, g and Home go back to the top; other
/// keys close it.
#[test]
fn help_scrolls_to_its_ends_and_pages() {
    let mut app = demo_app();
    app.size = (80, 24);
    ch(&mut app, '?');
    let top = screen(&app, 80, 24);
    assert!(
        top.contains("Everywhere") && !top.contains("other keys close"),
        "{top}"
    );
    for end in [KeyCode::End, KeyCode::Char('G')] {
        press(&mut app, end);
        let s = screen(&app, 80, 24);
        assert!(s.contains("other keys close"), "{s}");
        press(&mut app, KeyCode::Char('k'));
        let s = screen(&app, 80, 24);
        assert!(!s.contains("other keys close"), "one line up: {s}");
        press(&mut app, KeyCode::Char('g'));
        assert_eq!(screen(&app, 80, 24), top);
    }
    ch(&mut app, ' ');
    assert_ne!(screen(&app, 80, 24), top, "Space pages on");
    press(&mut app, KeyCode::Home);
    assert_eq!(screen(&app, 80, 24), top);
    ch(&mut app, 'x');
    assert!(app.modal.is_none());
}

/// What a value prompt says of text that is not a value: the problem, in
/// words, never an empty quote.
#[test]
fn value_prompts_name_what_is_wrong() {
    use smelt::merge::Method;
    use smelt::tui::state::parse_value;
    let density = Method::Ties
        .spec()
        .per_model
        .iter()
        .find(|p| p.name == "density")
        .unwrap();
    let err = |t: &str| parse_value(density, t).unwrap_err();
    assert_eq!(err(""), "density: expected a number");
    assert_eq!(err("[]"), "density: an empty list is not a value");
    assert_eq!(err("[ ]"), "density: an empty list is not a value");
    assert_eq!(
        err("[0.2,,0.5]"),
        "density: a list holds numbers, and its item 2 is empty"
    );
    assert_eq!(err("x"), "density: expected a number, got `x`");
    assert!(parse_value(density, "[0.2, 0.8]").is_ok());
}

/// Layers tied with the rest get no `!`: on a model whose layers all
/// show the same conflict, none is the worst.
#[test]
fn tied_layers_are_not_marked_worst() {
    let mut app = demo_app();
    let groups: Vec<Group> = app.doc.layers.iter().map(|l| l.group).collect();
    for g in groups {
        analysed(
            &mut app,
            Target::Group(g),
            Ok(report(fake_stats(1000, 1, 0.5))),
        );
    }
    let s = screen(&app, 80, 24);
    assert!(
        !s.lines()
            .any(|l| l.contains("▸ layer") && l.contains("% !")),
        "{s}"
    );
}

/// A huge number is echoed as typed, not in its 309 digits.
#[test]
fn a_huge_value_is_refused_as_typed() {
    let mut app = demo_app();
    let slot = app.doc.input_slots()[0];
    to_row(&mut app, &model_row(slot, "weight"));
    press(&mut app, KeyCode::Enter);
    ctrl(&mut app, 'u');
    typ(&mut app, "1e308");
    press(&mut app, KeyCode::Enter);
    let Some(Modal::Prompt(p)) = &app.modal else {
        panic!("the prompt stays: {:?}", app.message)
    };
    let err = p.input.error.clone().unwrap_or_default();
    assert!(
        err.contains("weight: 1e308 is beyond what f32 holds"),
        "{err}"
    );
    assert!(err.len() < 100, "{err}");
}
