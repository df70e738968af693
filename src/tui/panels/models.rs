//! The Models panel: every loaded model, its role and its own values.
//! `b` makes the selected model the base, `e` excludes or includes it, `x`
//! removes it (all undoable), `←`/`→` change its weight at the selected
//! layer's scope.

use crate::merge::BaseRule;
use crate::tui::keys::Action;
use crate::tui::state::*;
use crate::tui::theme::Theme;
use crate::tui::widgets::{marks, pad, panel, row_style, scroll};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Apply a key's action to the Models panel.
pub fn on_action(app: &mut App, a: Action) {
    let i = app.view.model_cursor;
    let Some(slot) = app.doc.slots.get(i) else {
        if app.doc.slice_models().is_empty() {
            app.say(Level::Info, "no models: a adds one, o opens a recipe");
        } else {
            app.say(
                Level::Info,
                "this model comes from the recipe's slices: edit them in the file",
            );
        }
        return;
    };
    let name = slot.info.name.clone();
    let role = slot.role;
    match a {
        Action::Dec | Action::Inc => adjust_weight(app, i, if a == Action::Inc { 1 } else { -1 }),
        Action::SetBase => {
            if role == Role::Base {
                app.say(Level::Info, format!("{name} is already the base"));
                return;
            }
            app.edit(&format!("make {name} the base"), |d| {
                d.set_role(i, Role::Base)
            });
            let how = if app.doc.method.spec().base == BaseRule::None {
                format!(
                    "{name} is the reference now: {} takes no base, so it only anchors the statistics",
                    app.doc.method.name()
                )
            } else {
                format!("{name} is the base now")
            };
            app.say(Level::Info, format!("{how} · u undoes"));
        }
        Action::Exclude => {
            let (to, verb) = if role == Role::Excluded {
                (Role::Input, "included")
            } else {
                (Role::Excluded, "excluded")
            };
            app.edit(&format!("{verb} {name}"), |d| d.set_role(i, to));
            app.say(Level::Info, format!("{name} {verb} · u undoes"));
        }
        Action::RemoveModel => {
            app.edit(&format!("remove {name}"), |d| d.remove_model(i));
            app.say(Level::Info, format!("removed {name} · u brings it back"));
        }
        Action::Clear => app.say(
            Level::Info,
            "Del removes values in Parameters and overrides in Layers; x removes a model",
        ),
        Action::Enter | Action::Toggle => app.say(
            Level::Info,
            "b: base · e: exclude/include · x: remove · ←/→: weight",
        ),
        _ => app.say(
            Level::Info,
            "Tab to Layers to pick layers (v ranges, z zip depth)",
        ),
    }
}

/// `←`/`→` on a model: its weight at the selected scope(s).
fn adjust_weight(app: &mut App, i: usize, dir: i32) {
    let spec = app.doc.method.spec();
    let Some(ws) = spec.per_model.iter().find(|p| p.name == "weight") else {
        app.say(
            Level::Info,
            format!("{} takes no per-model weight", spec.name),
        );
        return;
    };
    if app.doc.slots[i].role != Role::Input {
        app.say(
            Level::Info,
            "weights belong to input models (e includes one)",
        );
        return;
    }
    let row = ParamRow::Model {
        slot: i,
        name: "weight".into(),
    };
    super::params::step_row(app, &row, ws, dir);
}

/// Added by the job layer: the model fits, and is not loaded yet.
pub fn added(app: &mut App, info: ModelInfo, layers: Vec<LayerRow>) {
    let name = info.name.clone();
    let role = app.edit(&format!("add {name}"), |d| d.add_model(info, layers));
    app.view.model_cursor = app.doc.slots.len().saturating_sub(1);
    let what = match role {
        Role::Base => "the base".to_string(),
        _ if app
            .doc
            .method
            .spec()
            .per_model
            .iter()
            .any(|p| p.name == "weight") =>
        {
            "an input, weight 1".to_string()
        }
        _ => "an input".to_string(),
    };
    app.say(Level::Info, format!("added {name} as {what} · u undoes"));
}

/// A model's role as the Models panel labels it, four columns wide
/// (`ref` for a base the method does not take).
pub fn role_label(app: &App, r: Role) -> &'static str {
    match r {
        Role::Base if app.doc.method.spec().base == BaseRule::None => "ref ",
        Role::Base => "base",
        Role::Input => "in  ",
        Role::Excluded => "excl",
    }
}

/// Draw the Models panel.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme, r: Rect, focused: bool) {
    let n = app.doc.model_rows();
    let title = if app.has_problem(&Spot::Models) || app.has_problem(&Spot::Base) {
        format!("Models {}", marks(app.ascii).problem)
    } else {
        format!("Models · {n}")
    };
    let block = panel(theme, app.ascii, title, focused, r.width);
    let inner = block.inner(r);
    f.render_widget(block, r);
    if app.doc.model_rows() == 0 {
        f.render_widget(
            Paragraph::new("no models: a adds one, o opens a recipe").style(theme.dim()),
            inner,
        );
        return;
    }
    let m = marks(app.ascii);
    let w = inner.width as usize;
    let spec = app.doc.method.spec();
    let shows = |n: &str| spec.per_model.iter().any(|p| p.name == n);
    let wide = w >= 56;
    let h = inner.height as usize;
    let top = scroll(app.view.model_cursor, h);
    let scope = app.shown_scope();
    let rows: Vec<(usize, &Slot)> = app.doc.slots.iter().enumerate().skip(top).take(h).collect();
    // Each row's values (weight, density) as cells, aligned in columns.
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|&(i, s)| {
            if s.role != Role::Input {
                return Vec::new();
            }
            let mut out = Vec::new();
            for (n, short) in [("weight", "w"), ("density", "d")] {
                if shows(n) {
                    let l = app.doc.value_at(n, Some(i), scope);
                    // A gradient at a layer: its value there, as the
                    // Parameters panel shows it.
                    let span = super::params::range_span(app, Some(i), n);
                    let v = match &l.value {
                        None => "?".to_string(),
                        Some(_) if span.is_some() => span
                            .map(|(lo, hi)| format!("{}..{}", fmt_num(lo), fmt_num(hi)))
                            .unwrap_or_default(),
                        Some(v) => super::params::shown_at(app, v, Some(i), n).map_or_else(
                            || fmt_short(v),
                            |x| format!("{}{}", m.resolved, fmt_num(x)),
                        ),
                    };
                    let star = if l.from == Source::Override { "*" } else { "" };
                    out.push(format!("{short}{v}{star}"));
                }
            }
            out
        })
        .collect();
    let problems: Vec<bool> = rows
        .iter()
        .map(|&(i, s)| {
            app.has_problem(&Spot::Slot(i))
                || (s.role == Role::Base && app.has_problem(&Spot::Base))
        })
        .collect();
    let widths: Vec<usize> = (0..cells.iter().map(Vec::len).max().unwrap_or(0))
        .map(|c| {
            cells
                .iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mark_w = if problems.contains(&true) {
        1 + m.problem.chars().count()
    } else {
        0
    };
    let tail_w = widths.iter().map(|w| w + 1).sum::<usize>() + mark_w;
    let infos: Vec<String> = rows
        .iter()
        .map(|(_, s)| {
            if wide {
                format!(
                    "{} {:>6} {:>2}sh",
                    pad(&s.info.dtype, 4, app.ascii),
                    crate::units::count(s.info.params),
                    s.info.shards
                )
            } else {
                format!("{:>6}", crate::units::count(s.info.params))
            }
        })
        .collect();
    let info_w = infos.iter().map(|x| x.chars().count()).max().unwrap_or(0);
    // Room for the names: what the values and sizes leave. The sizes go
    // first when a name would be cut below 12 columns, then the names
    // shrink to 8, and only then are the values cut.
    let avail = w.saturating_sub(2 + 5);
    let longest = rows
        .iter()
        .map(|(_, s)| s.info.name.chars().count())
        .max()
        .unwrap_or(0);
    let (name_w, show_info) = if avail >= longest.min(12) + 1 + info_w + tail_w {
        (avail - 1 - info_w - tail_w, true)
    } else {
        (avail.saturating_sub(tail_w).max(longest.min(8)), false)
    };
    let tail_room = avail.saturating_sub(name_w + if show_info { 1 + info_w } else { 0 });
    let mut lines = Vec::new();
    for (k, &(i, s)) in rows.iter().enumerate() {
        let sel = i == app.view.model_cursor;
        let (mark, style) = row_style(theme, app.ascii, sel, focused);
        let mut tail = String::new();
        for (c, width) in widths.iter().enumerate() {
            let cell = cells[k].get(c).map_or("", String::as_str);
            tail.push(' ');
            tail.push_str(&pad(cell, *width, app.ascii));
        }
        let problem = problems[k];
        if problem {
            tail.push(' ');
            tail.push_str(m.problem);
        }
        let tail = pad(tail.trim_end(), tail_room, app.ascii);
        let role_style = match s.role {
            Role::Base => theme.fg(theme.accent),
            Role::Input => theme.text(),
            Role::Excluded => theme.dim().add_modifier(Modifier::CROSSED_OUT),
        };
        let pick = |st| if sel { style } else { st };
        let info = if show_info {
            format!(" {:>info_w$}", infos[k])
        } else {
            String::new()
        };
        lines.push(Line::from(vec![
            Span::styled(mark, style),
            Span::styled(format!("{} ", role_label(app, s.role)), pick(role_style)),
            Span::styled(pad(&s.info.name, name_w, app.ascii), style),
            Span::styled(info, pick(theme.dim())),
            Span::styled(
                tail,
                pick(if problem {
                    theme.fg(theme.bad)
                } else {
                    theme.text()
                }),
            ),
        ]));
    }
    let n_slots = app.doc.slots.len();
    for (k, info) in app.doc.slice_models().into_iter().enumerate() {
        let i = n_slots + k;
        if i < top || lines.len() >= h {
            continue;
        }
        let sel = i == app.view.model_cursor;
        let (mark, style) = row_style(theme, app.ascii, sel, focused);
        let size = format!(" {:>6}", crate::units::count(info.params));
        let name_w = w.saturating_sub(2 + 5 + size.chars().count());
        lines.push(Line::from(vec![
            Span::styled(mark, style),
            Span::styled("slc  ", if sel { style } else { theme.dim() }),
            Span::styled(pad(&info.name, name_w, app.ascii), style),
            Span::styled(size, if sel { style } else { theme.dim() }),
        ]));
    }
    f.render_widget(Paragraph::new(lines), inner);
    let shown = h.min(app.doc.model_rows().saturating_sub(top));
    crate::tui::widgets::scroll_hint(
        f,
        theme,
        app.ascii,
        r,
        top,
        app.doc.model_rows().saturating_sub(top + shown),
    );
}
