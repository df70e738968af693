//! Whole-screen snapshots of the workbench at 80x24 and 120x40, drawn with
//! ratatui's TestBackend from hand-filled state (no engine, no files), so
//! they are deterministic. Review changes with `cargo insta review`.

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use smelt::engine::{Event, Summary};
use smelt::tui::demo::{demo_app, fill_stats};
use smelt::tui::state::{App, MergeState};
use smelt::tui::theme::Theme;
use smelt::tui::update::{update, Msg};
use smelt::tui::view::draw;
use std::path::PathBuf;
use std::time::Duration;

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app, &Theme::default())).unwrap();
    format!("{}", t.backend())
}

fn key(app: &mut App, c: KeyCode) {
    update(app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
}

/// Snapshot `app` at both sizes under `name`.
fn both(name: &str, app: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), screen(app, 120, 40));
}

#[test]
fn startup() {
    let app = demo_app();
    both("startup", &app);
}

#[test]
fn help_overlay() {
    let mut app = demo_app();
    key(&mut app, KeyCode::Char('?'));
    both("help", &app);
}

#[test]
fn method_change() {
    let mut app = demo_app();
    key(&mut app, KeyCode::Char('m'));
    // The new method's statistics arrive from the worker.
    fill_stats(&mut app);
    both("method_change", &app);
}

#[test]
fn per_layer_override() {
    let mut app = demo_app();
    // Down to layer 3 (rows: all, embeddings, layer 0..), lower density there.
    for _ in 0..5 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Left);
    fill_stats(&mut app);
    key(&mut app, KeyCode::Tab);
    // Onto "density · ft-code" (method, 4 globals, weight, density).
    for _ in 0..6 {
        key(&mut app, KeyCode::Down);
    }
    both("override", &app);
}

fn running(app: &mut App) {
    app.merge = MergeState::started(PathBuf::from("/demo/work/llama-synthetic-ties"));
    update(
        app,
        Msg::Merge {
            event: Event::Started {
                tensors: 75,
                bytes_total: 40_000_000,
            },
            elapsed: Duration::from_millis(10),
        },
    );
    update(
        app,
        Msg::Merge {
            event: Event::Progress {
                tensor: "model.layers.4.mlp.up_proj.weight".into(),
                tensors_done: 31,
                bytes_done: 16_000_000,
                bytes_total: 40_000_000,
            },
            elapsed: Duration::from_millis(2000),
        },
    );
}

#[test]
fn running_merge() {
    let mut app = demo_app();
    running(&mut app);
    both("running", &app);
}

#[test]
fn finished_merge() {
    let mut app = demo_app();
    running(&mut app);
    update(
        &mut app,
        Msg::MergeDone(Ok(Summary {
            out: PathBuf::from("/demo/work/llama-synthetic-ties"),
            tensors: 75,
            bytes_written: 10_000_000,
            bytes_read: 40_000_000,
            elapsed: Duration::from_millis(4200),
        })),
    );
    both("finished", &app);
}

#[test]
fn error() {
    let mut app = demo_app();
    running(&mut app);
    update(
        &mut app,
        Msg::MergeDone(Err(
            "/demo/sample_models/llama-synthetic/ft-math: tensor `model.layers.2.mlp.up_proj.weight`: shape [688, 256] differs from the base's [256, 688]".into(),
        )),
    );
    both("error", &app);
}

#[test]
fn too_small_and_ascii() {
    let app = demo_app();
    insta::assert_snapshot!("too_small_60x20", screen(&app, 60, 20));
    let mut app = demo_app();
    app.ascii = true;
    for _ in 0..3 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!("ascii_expanded_80x24", screen(&app, 80, 24));
}

#[test]
fn gradients_show_their_value_at_the_selected_layer() {
    let mut app = demo_app();
    app.global.insert(
        "lambda".into(),
        smelt::recipe::Value::Gradient(vec![0.0, 1.0]),
    );
    let all = screen(&app, 120, 40);
    assert!(all.contains("[0,1]"), "{all}");
    // Rows: all layers, embeddings, layer 0..7; layer 7 is the last layer.
    for _ in 0..9 {
        key(&mut app, KeyCode::Down);
    }
    assert_eq!(lambda_value(&screen(&app, 120, 40)), "~1");
    key(&mut app, KeyCode::Home);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(lambda_value(&screen(&app, 120, 40)), "~0");
}

/// The value shown on the Parameters panel's lambda row.
fn lambda_value(s: &str) -> String {
    let line = s.lines().find(|l| l.contains("lambda")).unwrap_or_default();
    let after = line.split("lambda").nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn selection_is_visible_without_colour() {
    use ratatui::style::{Color, Modifier};
    let app = demo_app();
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| draw(f, &app, &Theme::mono())).unwrap();
    let buf = t.backend().buffer().clone();
    // The cursor row ("all layers") in the focused Layers panel.
    let y = (0..24)
        .find(|&y| {
            (0..40)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .contains("all layers")
        })
        .expect("cursor row drawn");
    let row: String = (0..36).map(|x| buf[(x, y)].symbol().to_string()).collect();
    assert!(row.contains('▶'), "{row}");
    let cell = &buf[(10, y)];
    assert!(cell.modifier.contains(Modifier::REVERSED), "{cell:?}");
    // No colour anywhere in mono.
    for c in buf.content.iter() {
        assert!(c.fg == Color::Reset && c.bg == Color::Reset, "{c:?}");
    }
}

/// ZipIt! on the digits-zip pair: zip depth 2 set with `z` on layer 1, an
/// alpha override on layer 0, and a finished merge with its accuracy beside
/// each input's own.
#[test]
fn zipit_depth_and_accuracy() {
    use smelt::tui::demo::{demo_report, demo_zip_app};
    use smelt::tui::state::{Accuracy, AccuracyState, Panel};
    let mut app = demo_zip_app();
    app.focus = Panel::Layers;
    key(&mut app, KeyCode::Down); // layer 0
                                  // alpha 0.45 on layer 0 (Parameters: method, depth, alpha, beta).
    app.focus = Panel::Params;
    app.param_cursor = 2;
    key(&mut app, KeyCode::Left);
    app.focus = Panel::Layers;
    key(&mut app, KeyCode::Down); // layer 1
    key(&mut app, KeyCode::Char('z'));
    let out = PathBuf::from("/demo/work/digits-zip-zipit");
    app.merge = MergeState::Done(Summary {
        out: out.clone(),
        tensors: 10,
        bytes_written: 170_000,
        bytes_read: 337_000,
        elapsed: Duration::from_millis(420),
    });
    app.accuracy = AccuracyState::Done(Accuracy {
        out,
        merged: Ok(demo_report(
            "merged",
            &[(&[0, 1, 2, 3, 4], 0.961), (&[5, 6, 7, 8, 9], 0.944)],
            0.842,
        )),
        inputs: vec![
            (
                "digits-0-4".into(),
                Ok(demo_report("a", &[(&[0, 1, 2, 3, 4], 0.994)], 0.994)),
            ),
            (
                "digits-5-9".into(),
                Ok(demo_report("b", &[(&[5, 6, 7, 8, 9], 0.978)], 0.978)),
            ),
        ],
    });
    both("zipit_depth", &app);
}
