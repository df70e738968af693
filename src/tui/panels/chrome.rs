//! The title line (method, base, inputs, file, unsaved changes, problems)
//! and the footer (the message of the moment, else the focused panel's
//! keys).

use crate::tui::keys::panel_keys;
use crate::tui::state::*;
use crate::tui::theme::Theme;
use crate::tui::widgets::{marks, pad};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Draw the title bar: method, base, inputs, recipe, unsaved mark.
pub fn draw_title(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let sep = if app.ascii { " | " } else { " │ " };
    let m = marks(app.ascii);
    let doc = &app.doc;
    let width = r.width as usize;
    let base = match doc.base_slot() {
        Some(i) if app.takes_base() => format!("base {}", doc.slots[i].info.name),
        Some(i) => format!("ref {}", doc.slots[i].info.name),
        None if app.takes_base() => "no base".into(),
        None => String::new(),
    };
    let n = app.problems.len();
    // What needs attention is never dropped; words shorten when narrow.
    let (modified, problems) = if width >= 70 {
        (
            "modified".to_string(),
            format!("{} {n} problem{}", m.problem, if n == 1 { "" } else { "s" }),
        )
    } else {
        ("[+]".to_string(), format!("{}{n}", m.problem))
    };
    let mut right: Vec<Span> = Vec::new();
    if app.modified() {
        right.push(Span::styled(
            modified,
            theme.fg(theme.warn).add_modifier(Modifier::BOLD),
        ));
    }
    if n > 0 {
        if !right.is_empty() {
            right.push(Span::raw(" "));
        }
        right.push(Span::styled(
            problems,
            theme.fg(theme.bad).add_modifier(Modifier::BOLD),
        ));
    }
    let len = |v: &[Span]| v.iter().map(|s| s.content.chars().count()).sum::<usize>();
    let mut left: Vec<Span> = vec![
        Span::styled(" smelt", theme.fg(theme.title).add_modifier(Modifier::BOLD)),
        Span::styled(sep, theme.dim()),
        Span::styled(
            doc.method.name(),
            theme.fg(theme.accent).add_modifier(Modifier::BOLD),
        ),
    ];
    // Which document of a multi-document file: always shown (cut if
    // need be), edits in one apply to it alone.
    if let Some(d) = super::super::multi::title(app) {
        let room = width.saturating_sub(len(&left) + sep.len() + len(&right) + 1);
        let shown: String = if d.chars().count() <= room {
            d
        } else {
            let cut: String = d.chars().take(room.saturating_sub(1)).collect();
            format!("{cut}{}", m.cut)
        };
        left.push(Span::styled(sep, theme.dim()));
        left.push(Span::styled(
            shown,
            theme.fg(theme.accent).add_modifier(Modifier::BOLD),
        ));
    }
    // Optional parts, each only if it fits: the recipe's file name comes
    // before the base and the input count (the Models panel shows both),
    // so room for it (cut to `FILE_MIN` if long) is kept while they are
    // placed.
    const FILE_MIN: usize = 12;
    let help = " ? help";
    let (full, name) = match &app.recipe_path {
        Some(p) => {
            let full = p.display().to_string();
            let name = p
                .file_name()
                .map_or(full.clone(), |n| n.to_string_lossy().into_owned());
            (full, name)
        }
        None => (String::new(), String::new()),
    };
    let file_room = if name.is_empty() {
        0
    } else {
        sep.len() + name.chars().count().min(FILE_MIN)
    };
    let mut optional: Vec<String> = Vec::new();
    if !base.is_empty() {
        optional.push(base);
    }
    optional.push(format!("{} in", doc.input_slots().len()));
    for part in optional {
        if len(&left) + sep.len() + part.chars().count() + 1 + len(&right) + file_room <= width {
            left.push(Span::styled(sep, theme.dim()));
            left.push(Span::styled(part, theme.text()));
        }
    }
    if !name.is_empty() {
        let room = width.saturating_sub(len(&left) + len(&right) + sep.len() + 1);
        // With the help hint when both fit.
        let room_help = room.saturating_sub(help.len());
        let shown = if full.chars().count() <= room_help {
            Some(full)
        } else if name.chars().count() <= room {
            Some(name)
        } else if room > 8 {
            let cut: String = name.chars().take(room - 1).collect();
            Some(format!("{cut}{}", m.cut))
        } else {
            None
        };
        if let Some(s) = shown {
            left.push(Span::styled(sep, theme.dim()));
            left.push(Span::styled(s, theme.dim()));
        }
    }
    if len(&left) + len(&right) + help.len() < width {
        right.push(Span::styled(help, theme.dim()));
    }
    let gap = width.saturating_sub(len(&left) + len(&right) + 1);
    left.push(Span::raw(" ".repeat(gap.max(1))));
    left.extend(right);
    f.render_widget(Paragraph::new(Line::from(left)), r);
}

/// Draw the key hints of the focused panel.
pub fn draw_footer(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    // A message longer than the line is cut with the cut mark (the whole
    // text is in the Status panel or the dialog that follows).
    let fit = |lead: &str, m: &str| {
        let w = (r.width as usize).saturating_sub(lead.chars().count());
        format!("{lead}{}", pad(m, w, app.ascii).trim_end())
    };
    let line = match &app.message {
        Some((Level::Error, m)) => Line::styled(
            fit(" ! ", m),
            theme.fg(theme.bad).add_modifier(Modifier::BOLD),
        ),
        Some((Level::Warn, m)) => Line::styled(fit(" ! ", m), theme.fg(theme.warn)),
        Some((Level::Info, m)) => Line::styled(fit(" ", m), theme.text()),
        None => {
            // As many of the panel's keys as fit, then undo and help.
            let key = theme.fg(theme.accent).add_modifier(Modifier::BOLD);
            let mut spans = vec![Span::styled(
                format!(" {}: ", app.focus().name()),
                theme.fg(theme.title).add_modifier(Modifier::BOLD),
            )];
            let tail = [("u", "undo"), ("?", "keys")];
            let tail_w: usize = tail
                .iter()
                .map(|(k, d)| k.chars().count() + d.len() + 3)
                .sum();
            let mut used = spans[0].content.chars().count() + tail_w;
            // Only keys that do something for this method.
            let spec = app.doc.method.spec();
            let takes = |n: &str| spec.per_model.iter().any(|p| p.name == n);
            let applies = |d: &str| match d {
                "density" => takes("density"),
                "weight" => takes("weight"),
                "zip" => app.doc.zips(),
                _ => true,
            };
            for (k, d) in panel_keys(app.focus()).iter().filter(|(_, d)| applies(d)) {
                let w = k.chars().count() + d.chars().count() + 3;
                if used + w > r.width as usize {
                    break;
                }
                used += w;
                spans.push(Span::styled(k.to_string(), key));
                spans.push(Span::styled(format!(" {d}  "), theme.dim()));
            }
            for (k, d) in tail {
                spans.push(Span::styled(k.to_string(), key));
                spans.push(Span::styled(format!(" {d}  "), theme.dim()));
            }
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(line), r);
}
