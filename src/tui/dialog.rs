//! Overlays: the confirmation dialogs (leaving with unsaved changes or a
//! running merge, writing over a file), the list of problems `r` refuses
//! with, and the help.
//!
//! Dialogs are drawn from the live state, not from a copy taken when they
//! opened: a merge that ends while "Quit?" is open changes what it says.

use super::keys::{panel_help, GLOBAL, LEGEND};
use super::state::*;
use super::theme::Theme;
use super::update::{open_save, proceed, prompt_for, save, Effect};
use super::widgets::{centered, modal_block, pad};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// A key in an open confirmation dialog.
pub fn on_key(app: &mut App, c: Confirm, k: KeyEvent, fx: &mut Vec<Effect>) {
    // Ctrl-L repaints and leaves the question open.
    if k.code == KeyCode::Char('l')
        && k.modifiers
            .contains(ratatui::crossterm::event::KeyModifiers::CONTROL)
    {
        fx.push(Effect::Repaint);
        app.modal = Some(Modal::Confirm(c));
        return;
    }
    let key = match k.code {
        KeyCode::Char(c) => Some(c.to_ascii_lowercase()),
        _ => None,
    };
    match c {
        Confirm::Leave { then } => {
            if app.modified() {
                match key {
                    Some('s') => match app.recipe_path.clone() {
                        // Over the opened file (its comments kept).
                        Some(p) if !app.sample => save(app, p, Some(then), false, fx),
                        _ => open_save(app, Some(then)),
                    },
                    Some('d') => {
                        if then == Then::Quit {
                            app.say(Level::Info, "changes discarded");
                        }
                        proceed(app, then, fx);
                    }
                    _ => app.say(Level::Info, "nothing discarded"),
                }
            } else {
                match key {
                    Some('y') => proceed(app, then, fx),
                    _ => app.say(Level::Info, "still here"),
                }
            }
        }
        Confirm::Build { target, steps } => {
            if key == Some('y') || k.code == KeyCode::Enter {
                super::multi::start_builds(app, target, steps, fx);
            } else {
                app.say(Level::Info, "nothing built; still on this document");
            }
        }
        Confirm::Replace { path, .. } => {
            if key == Some('y') {
                super::update::merge_into(app, path, true, fx);
            } else {
                let p = prompt_for(app, Purpose::OutputFolder, path.display().to_string());
                app.modal = Some(Modal::Prompt(p));
                app.say(Level::Info, "nothing replaced; pick another folder");
            }
        }
        Confirm::Overwrite { path, why, then } => {
            if key == Some('y') {
                save(app, path, then, why == Overwrite::ChangedOnDisk, fx);
            } else {
                let p = prompt_for(app, Purpose::Save { then }, path.display().to_string());
                app.modal = Some(Modal::Prompt(p));
                app.say(Level::Info, "not written; pick another name");
            }
        }
    }
}

fn key_span<'a>(theme: &Theme, k: &str) -> Span<'a> {
    Span::styled(
        k.to_string(),
        theme.fg(theme.accent).add_modifier(Modifier::BOLD),
    )
}

/// Draw a yes/no question over the panels.
pub fn draw_confirm(f: &mut Frame, app: &App, theme: &Theme, area: Rect, c: &Confirm) {
    let mut lines: Vec<Line> = Vec::new();
    let title;
    match c {
        Confirm::Leave { then } => {
            title = match then {
                Then::Quit => "Quit?",
                Then::Open => "Open another recipe?",
            };
            if app.modified() {
                let what = app.recipe_path.as_ref().map_or_else(
                    || "The recipe has unsaved changes (it was never saved).".to_string(),
                    |p| format!("Unsaved changes to {}.", p.display()),
                );
                lines.push(Line::styled(what, theme.text()));
            }
            match (&app.merge, then) {
                (MergeState::Running { out, .. }, Then::Quit) => lines.push(Line::styled(
                    format!(
                        "The merge into {} is running: quitting cancels it.",
                        out.display()
                    ),
                    theme.fg(theme.warn),
                )),
                (MergeState::Done { .. }, Then::Quit) if !app.modified() => {
                    lines.push(Line::styled("The merge has finished.", theme.text()))
                }
                _ => {}
            }
            if let (Some(j), Then::Quit) = (&app.extract, then) {
                lines.push(Line::styled(
                    format!(
                        "The LoRA extraction into {} is running: quitting cancels it.",
                        j.out.display()
                    ),
                    theme.fg(theme.warn),
                ));
            }
            lines.push(Line::raw(""));
            if app.modified() {
                lines.push(Line::from(vec![
                    key_span(theme, "s"),
                    Span::styled(" save · ", theme.text()),
                    key_span(theme, "d"),
                    Span::styled(" discard · ", theme.text()),
                    key_span(theme, "Esc"),
                    Span::styled(" cancel", theme.text()),
                ]));
            } else {
                lines.push(Line::from(vec![
                    key_span(theme, "y"),
                    Span::styled(
                        match then {
                            Then::Quit => " quit · ",
                            Then::Open => " open · ",
                        },
                        theme.text(),
                    ),
                    key_span(theme, "Esc"),
                    Span::styled(" cancel", theme.text()),
                ]));
            }
        }
        Confirm::Build { target, steps } => {
            title = "Build first?";
            lines.extend(super::multi::build_lines(app, theme, *target, steps));
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                key_span(theme, "y"),
                Span::styled(" or ", theme.text()),
                key_span(theme, "Enter"),
                Span::styled(
                    if steps.len() == 1 {
                        " builds it (c cancels) · "
                    } else {
                        " builds them (c cancels) · "
                    },
                    theme.text(),
                ),
                key_span(theme, "Esc"),
                Span::styled(" stays", theme.text()),
            ]));
        }
        Confirm::Replace { path, empty } => {
            title = "Replace?";
            lines.push(Line::styled(
                format!(
                    "{} {}. The merge writes beside it and replaces it only once it has \
                     finished whole.",
                    path.display(),
                    if *empty {
                        "is an empty folder"
                    } else {
                        "holds an earlier smelt output"
                    }
                ),
                theme.text(),
            ));
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                key_span(theme, "y"),
                Span::styled(" replace it · any other key: another folder", theme.text()),
            ]));
        }
        Confirm::Overwrite { path, why, .. } => {
            title = "Overwrite?";
            lines.push(Line::styled(
                match why {
                    Overwrite::Exists => format!("{} exists.", path.display()),
                    Overwrite::ChangedOnDisk => {
                        format!("{} changed on disk since it was read.", path.display())
                    }
                    // A multi-document file: only the edited documents
                    // are written anew (see `MultiRecipe::with_documents`).
                    Overwrite::RewritesYaml if app.multi.is_some() => format!(
                        "In {}, the edited documents are written afresh as mergekit YAML: comments \
                         inside them go. The other documents, and the comments heading each, are kept.",
                        path.display()
                    ),
                    Overwrite::RewritesYaml => format!(
                        "{} is written afresh as mergekit YAML: its comments and layout go (a .toml keeps them).",
                        path.display()
                    ),
                },
                theme.text(),
            ));
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                key_span(theme, "y"),
                Span::styled(" write over it · any other key: another name", theme.text()),
            ]));
        }
    }
    boxed(f, app, theme, area, title, lines, 72);
}

/// `lines` in a centred modal box at most `max_w` wide, as tall as they
/// wrap to.
pub(crate) fn boxed(
    f: &mut Frame,
    app: &App,
    theme: &Theme,
    area: Rect,
    title: &str,
    lines: Vec<Line>,
    max_w: u16,
) {
    let w = area.width.saturating_sub(4).min(max_w);
    let inner_w = w.saturating_sub(2).max(1) as usize;
    let h: usize = lines
        .iter()
        .map(|l| l.width().div_ceil(inner_w).max(1))
        .sum();
    let r = centered(area, w, h as u16 + 2);
    super::widgets::clear_modal(f, r, area);
    let b = modal_block(theme, app.ascii, title, r.width);
    let inner = b.inner(r);
    f.render_widget(b, r);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// Draw the recipe's problems (why `r` refused) over the panels.
pub fn draw_problems(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut lines = vec![Line::styled(
        format!(
            "The merge cannot run: {} problem{}. Rows and panels marked {} show where.",
            app.problems.len(),
            if app.problems.len() == 1 { "" } else { "s" },
            super::widgets::marks(app.ascii).problem
        ),
        theme.text().add_modifier(Modifier::BOLD),
    )];
    for i in &app.problems {
        lines.push(Line::styled(format!("- {}", i.text), theme.fg(theme.bad)));
    }
    lines.push(Line::styled("any key closes this", theme.dim()));
    boxed(f, app, theme, area, "Problems", lines, 90);
}

/// `text` in lines of at most `w` characters, broken between words (a
/// word longer than a line is cut).
fn wrap_words(text: &str, w: usize) -> Vec<String> {
    crate::text::wrap(text, w.max(1))
        .into_iter()
        .map(|l| l.chars().take(w.max(1)).collect())
        .collect()
}

/// The help's lines on a screen `area` wide.
fn help_text(app: &App, theme: &Theme, area: Rect) -> Vec<Line<'static>> {
    // Narrow screens: a shorter key column, descriptions cut with the cut
    // mark rather than by the border.
    let iw = area.width.saturating_sub(2).min(84).saturating_sub(2) as usize;
    let kw = if iw < 60 { 10 } else { 15 };
    let dw = iw.saturating_sub(kw + 1);
    // A description longer than its column goes on under itself.
    let entry = |k: &str, d: &str| -> Vec<Line<'static>> {
        let k = if app.ascii {
            k.replace('↑', "Up")
                .replace('↓', "Dn")
                .replace('←', "Lt")
                .replace('→', "Rt")
        } else {
            k.to_string()
        };
        wrap_words(d, dw)
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let key = if i == 0 { k.as_str() } else { "" };
                Line::from(vec![
                    Span::styled(
                        format!(" {}", pad(key, kw, app.ascii)),
                        theme.fg(theme.accent).add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(part, theme.text()),
                ])
            })
            .collect()
    };
    let head = |s: &str| {
        Line::styled(
            s.to_string(),
            theme.fg(theme.title).add_modifier(Modifier::BOLD),
        )
    };
    let mut lines = vec![head("Everywhere")];
    lines.extend(GLOBAL.iter().flat_map(|(k, d)| entry(k, d)));
    // The focused panel's keys first, then the others'.
    let mut panels = vec![app.focus()];
    for p in [Panel::Models, Panel::Layers, Panel::Params] {
        if !panels.contains(&p) {
            panels.push(p);
        }
    }
    for p in panels {
        let keys = panel_help(p);
        if keys.is_empty() {
            continue;
        }
        lines.push(head(&format!("{} panel", p.name())));
        lines.extend(keys.iter().flat_map(|(k, d)| entry(k, d)));
    }
    lines.push(head("Marks"));
    lines.extend(LEGEND.iter().flat_map(|(k, d)| entry(k, d)));
    lines.push(Line::styled(
        " ↑↓ Space g G scroll · other keys close",
        theme.dim(),
    ));
    lines
}

/// The help's top line, scrolled all the way down on a screen `area` big.
pub fn help_max_scroll(app: &App, area: Rect) -> usize {
    let n = help_text(app, &Theme::default(), area).len();
    let h = (n as u16 + 2).min(area.height);
    n.saturating_sub(h.saturating_sub(2) as usize)
}

/// The help: workbench keys, every panel's keys (the focused one's
/// first) and the legend of the marks; it scrolls.
pub fn draw_help(f: &mut Frame, app: &App, theme: &Theme, area: Rect, scroll: usize) {
    let lines = help_text(app, theme, area);
    let w = area.width.saturating_sub(2).min(84);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = centered(area, w, h);
    super::widgets::clear_modal(f, r, area);
    let room = h.saturating_sub(2) as usize;
    let max_scroll = lines.len().saturating_sub(room);
    let top = scroll.min(max_scroll);
    let title = if max_scroll == 0 {
        "Keys".to_string()
    } else if top < max_scroll {
        "Keys · ↓ more (↑↓ scroll)".to_string()
    } else {
        "Keys · ↑ back (↑↓ scroll)".to_string()
    };
    let b = modal_block(theme, app.ascii, &title, r.width);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let shown: Vec<Line> = lines.into_iter().skip(top).take(room).collect();
    f.render_widget(Paragraph::new(shown), inner);
}
