//! Whole-screen snapshots of the workbench, drawn with ratatui's
//! TestBackend from hand-filled state (no engine, no files), so they are
//! deterministic. Each snapshot holds the symbols and, under every row, a
//! style mask (`R` reverse video, `d` dimmed, `B` bold, `u` underlined,
//! `.` none), so the selection's reverse video and the dimming of stale
//! figures are checked as well as the text. Review changes with
//! `cargo insta review`.

#![cfg(feature = "tui")]

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Modifier;
use ratatui::Terminal;
use smelt::engine::{Event, Summary};
use smelt::tui::demo::{demo_app, demo_app_of, demo_report, demo_zip_app, fill_stats};
use smelt::tui::state::{Accuracy, AccuracyState, App, Panel, Ticket};
use smelt::tui::theme::Theme;
use smelt::tui::update::{update, Effect, JobError, Msg};
use smelt::tui::view::draw;
use std::path::PathBuf;
use std::time::Duration;

fn buffer(app: &App, theme: &Theme, w: u16, h: u16) -> ratatui::buffer::Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app, theme)).unwrap();
    t.backend().buffer().clone()
}

/// The screen's text with a style mask under each row.
fn styled(app: &App, theme: &Theme, w: u16, h: u16) -> String {
    let buf = buffer(app, theme, w, h);
    let mut out = String::new();
    for y in 0..h {
        let mut text = String::new();
        let mut mask = String::new();
        for x in 0..w {
            let c = &buf[(x, y)];
            text.push_str(c.symbol());
            let m = c.modifier;
            mask.push(if m.contains(Modifier::REVERSED) {
                'R'
            } else if m.contains(Modifier::DIM) {
                'd'
            } else if m.contains(Modifier::BOLD) {
                'B'
            } else if m.contains(Modifier::UNDERLINED) {
                'u'
            } else {
                '.'
            });
        }
        out.push_str(text.trim_end());
        out.push('\n');
        out.push_str(mask.trim_end_matches('.'));
        out.push('\n');
    }
    out
}

fn key(app: &mut App, c: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

/// Snapshot `app` at 80x24 and 120x40 (default theme) under `name`.
fn both(name: &str, app: &App) {
    let t = Theme::default();
    insta::assert_snapshot!(format!("{name}_80x24"), styled(app, &t, 80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), styled(app, &t, 120, 40));
}

#[test]
fn startup() {
    let app = demo_app();
    both("startup", &app);
    insta::assert_snapshot!("startup_mono_80x23", styled(&app, &Theme::mono(), 80, 23));
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
    fill_stats(&mut app);
    both("method_change", &app);
}

/// A density change on layer 3: its figures are stale (dimmed, marked)
/// until the new ones arrive; the override is marked.
#[test]
fn per_layer_override_and_stale_figures() {
    let mut app = demo_app();
    for _ in 0..5 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Left);
    insta::assert_snapshot!("stale_80x24", styled(&app, &Theme::default(), 80, 24));
    fill_stats(&mut app);
    key(&mut app, KeyCode::Tab);
    for _ in 0..6 {
        key(&mut app, KeyCode::Down);
    }
    both("override", &app);
}

fn running(app: &mut App) -> Ticket {
    app.work_dir = tempfile::tempdir().unwrap().keep();
    key(app, KeyCode::Char('r'));
    let fx = key(app, KeyCode::Enter);
    let Some(Effect::StartMerge { ticket, .. }) = fx.into_iter().next() else {
        panic!("no merge")
    };
    app.message = None;
    for (event, ms) in [
        (
            Event::Started {
                tensors: 75,
                bytes_total: 40_000_000,
            },
            10,
        ),
        (
            Event::Progress {
                tensor: "model.layers.4.mlp.up_proj.weight".into(),
                tensors_done: 31,
                bytes_done: 16_000_000,
                bytes_total: 40_000_000,
            },
            2000,
        ),
    ] {
        update(
            app,
            Msg::Merge {
                ticket,
                event,
                elapsed: Duration::from_millis(ms),
            },
        );
    }
    ticket
}

/// Paths under a fresh temp dir vary: show them as `/tmp/X`.
fn stable(s: String, app: &App) -> String {
    s.replace(&app.work_dir.display().to_string(), "/tmp/X")
}

#[test]
fn running_merge() {
    let mut app = demo_app();
    running(&mut app);
    let t = Theme::default();
    insta::assert_snapshot!("running_80x24", stable(styled(&app, &t, 80, 24), &app));
}

#[test]
fn finished_merge() {
    let mut app = demo_app();
    let ticket = running(&mut app);
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Ok(Summary {
                out: PathBuf::from("/demo/work/llama-synthetic-ties"),
                tensors: 75,
                bytes_written: 10_000_000,
                bytes_read: 40_000_000,
                elapsed: Duration::from_millis(4200),
            }),
        },
    );
    app.message = None;
    insta::assert_snapshot!("finished_80x24", styled(&app, &Theme::default(), 80, 24));
}

#[test]
fn failed_and_cancelled_merges() {
    let mut app = demo_app();
    let ticket = running(&mut app);
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Err(JobError::Input(
                "/demo/sample_models/llama-synthetic/ft-math: tensor `model.layers.2.mlp.up_proj.weight`: shape [688, 256] differs from the base's [256, 688]".into(),
            )),
        },
    );
    insta::assert_snapshot!(
        "error_80x24",
        stable(styled(&app, &Theme::default(), 80, 24), &app)
    );
    let mut app = demo_app();
    let ticket = running(&mut app);
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Err(JobError::Cancelled),
        },
    );
    insta::assert_snapshot!(
        "cancelled_80x24",
        stable(styled(&app, &Theme::default(), 80, 24), &app)
    );
}

/// 80x23 is an 80x24 tmux window with its status bar: the full layout.
/// Below it, down to 40x12, one panel at a time; below that, a message.
#[test]
fn layouts_by_size() {
    let mut app = demo_app();
    insta::assert_snapshot!("full_80x23", styled(&app, &Theme::default(), 80, 23));
    update(&mut app, Msg::Resize(40, 12));
    insta::assert_snapshot!("compact_40x12", styled(&app, &Theme::default(), 40, 12));
    key(&mut app, KeyCode::Tab);
    insta::assert_snapshot!(
        "compact_params_40x12",
        styled(&app, &Theme::default(), 40, 12)
    );
    insta::assert_snapshot!("too_small_39x11", styled(&app, &Theme::default(), 39, 11));
}

#[test]
fn dialogs() {
    // r refused: the problems.
    let mut app = demo_app();
    app.view.focus = Some(Panel::Params);
    for _ in 0..7 {
        key(&mut app, KeyCode::Right); // ties -> ... -> slerp
    }
    key(&mut app, KeyCode::Char('r'));
    insta::assert_snapshot!("problems_80x24", styled(&app, &Theme::default(), 80, 24));
    // q with unsaved changes.
    let mut app = demo_app();
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Char('q'));
    insta::assert_snapshot!("quit_dirty_80x24", styled(&app, &Theme::default(), 80, 24));
    // s: the path it will write.
    let mut app = demo_app();
    key(&mut app, KeyCode::Char('s'));
    insta::assert_snapshot!("save_prompt_80x24", styled(&app, &Theme::default(), 80, 24));
}

#[test]
fn ascii_expanded() {
    let mut app = demo_app();
    app.ascii = true;
    for _ in 0..3 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!(
        "ascii_expanded_80x24",
        styled(&app, &Theme::default(), 80, 24)
    );
}

#[test]
fn gradients_show_their_value_at_the_selected_layer() {
    let mut app = demo_app();
    app.doc.global.insert(
        "lambda".into(),
        smelt::recipe::Value::Gradient(vec![0.0, 1.0]),
    );
    app.refresh();
    let screen = |app: &App| {
        let buf = buffer(app, &Theme::default(), 120, 40);
        (0..40)
            .map(|y| {
                (0..120)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(screen(&app).contains("[0,1]"));
    // Rows: all layers, embeddings, layer 0..7; layer 7 is the last layer.
    for _ in 0..9 {
        key(&mut app, KeyCode::Down);
    }
    assert_eq!(lambda_value(&screen(&app)), "≈1");
    key(&mut app, KeyCode::Home);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    assert_eq!(lambda_value(&screen(&app)), "≈0");
}

/// With five inputs at 80 columns, the per-model line and the cosines
/// take as many lines as they need, each pair whole (a line the panel
/// wrapped would cut a pair and throw its scrolling off), all reachable by
/// scrolling; and the Parameters values stay in one column.
#[test]
fn five_inputs_fit_an_80_column_screen() {
    let mut app = demo_app_of(&["ft-a", "ft-b", "ft-c", "ft-d", "ft-e"]);
    app.doc.global.insert(
        "lambda".into(),
        smelt::recipe::Value::Gradient(vec![0.25, 1.0, 0.5, 0.75]),
    );
    app.refresh();
    fill_stats(&mut app);
    app.view.focus = Some(Panel::Agreement);
    let mut seen = String::new();
    for _ in 0..12 {
        let buf = buffer(&app, &Theme::default(), 80, 24);
        for y in 0..24 {
            let line: String = (0..80).map(|x| buf[(x, y)].symbol().to_string()).collect();
            seen.push_str(&line);
            seen.push('\n');
        }
        key(&mut app, KeyCode::Down);
    }
    for i in 1..=5 {
        for j in i + 1..=5 {
            let pair = format!("{i}-{j} ");
            let whole = seen.lines().any(|l| {
                l.split(&pair)
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('+') || rest.starts_with('-'))
            });
            assert!(whole, "pair {i}-{j} not shown whole:\n{seen}");
        }
    }
    let kept = seen
        .lines()
        .find(|l| l.contains("kept 50%"))
        .expect("kept line");
    assert_eq!(kept.matches('%').count(), 5 + 1, "{kept}");
    let energy = seen
        .lines()
        .find(|l| l.contains("energy "))
        .expect("energy line");
    assert!(energy.matches('%').count() >= 5, "{energy}");
    // The Parameters panel: every value ends in the same column, the
    // gradient's included.
    app.view.focus = Some(Panel::Params);
    let buf = buffer(&app, &Theme::default(), 80, 24);
    let rows: Vec<String> = (0..24)
        .map(|y| (0..80).map(|x| buf[(x, y)].symbol().to_string()).collect())
        .collect();
    let ends: Vec<usize> = ["normalize", "lambda", "weight · ft-a"]
        .iter()
        .map(|label| {
            let row = rows.iter().find(|r| r.contains(label)).expect("row");
            let panel = row
                .split(['│', '┃'])
                .filter(|p| !p.is_empty())
                .nth(1)
                .expect("panel");
            panel.trim_end().chars().count()
        })
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] == w[1]),
        "{ends:?}\n{}",
        rows.join("\n")
    );
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
    use ratatui::style::Color;
    let app = demo_app();
    let buf = buffer(&app, &Theme::mono(), 80, 24);
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
    assert!(buf[(10, y)].modifier.contains(Modifier::REVERSED));
    for c in buf.content.iter() {
        assert!(c.fg == Color::Reset && c.bg == Color::Reset, "{c:?}");
    }
}

/// ZipIt! on the digits-zip pair: zip depth 2 set with `z` on layer 1, an
/// alpha override on layer 0, and a finished merge with its accuracy beside
/// each input's own.
#[test]
fn zipit_depth_and_accuracy() {
    let mut app = demo_zip_app();
    key(&mut app, KeyCode::Down); // layer 0
    app.view.focus = Some(Panel::Params);
    app.view.param_cursor = 2; // method, depth, alpha
    key(&mut app, KeyCode::Left);
    app.view.focus = Some(Panel::Layers);
    key(&mut app, KeyCode::Down); // layer 1
    key(&mut app, KeyCode::Char('z'));
    let ticket = running(&mut app);
    let out = PathBuf::from("/demo/work/digits-zip-zipit");
    update(
        &mut app,
        Msg::MergeDone {
            ticket,
            result: Ok(Summary {
                out: out.clone(),
                tensors: 10,
                bytes_written: 170_000,
                bytes_read: 337_000,
                elapsed: Duration::from_millis(420),
            }),
        },
    );
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
    app.message = None;
    both("zipit_depth", &app);
}

/// Names are data: a model or tensor named with escape sequences draws as
/// text, and no control character reaches the terminal (ratatui's buffer
/// drops them; the workbench writes nothing to the terminal but through
/// it, and this guards both).
#[test]
fn names_cannot_drive_the_terminal() {
    let mut app = demo_app();
    let evil = "\u{1b}]0;PWNED\u{7}\u{1b}[2J";
    app.doc.slots[1].info.name = format!("ft{evil}");
    app.doc.layers[1].tensors[0].name = format!("model.layers.0.{evil}.weight");
    app.view.expanded.insert(1);
    app.refresh();
    app.message = Some((smelt::tui::state::Level::Error, format!("bad {evil}")));
    for theme in [Theme::default(), Theme::mono()] {
        let buf = buffer(&app, &theme, 120, 40);
        let all: String = buf.content.iter().map(|c| c.symbol()).collect();
        assert!(
            !all.chars().any(char::is_control),
            "a control character is drawn"
        );
        assert!(all.contains("PWNED"), "the name is shown, as text");
    }
}
