//! Drawing: a pure function of the state (and theme) onto a ratatui frame.
//!
//! Colour never carries meaning alone: the cursor row is reverse video and
//! a marker, the focused panel has a marker in its title and a heavier
//! border, the worst layers carry a `!`, overrides a `*`.

use super::keys::HELP;
use super::state::*;
use super::theme::Theme;
use crate::analysis::Stats;
use crate::model::Group;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};
use ratatui::Frame;

pub const MIN_W: u16 = 80;
pub const MIN_H: u16 = 24;

const ASCII_BORDER: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};
const ASCII_FOCUS: border::Set = border::Set {
    top_left: "#",
    top_right: "#",
    bottom_left: "#",
    bottom_right: "#",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "=",
    horizontal_bottom: "=",
};

/// Where each panel goes; shared with mouse handling.
pub struct Areas {
    pub title: Rect,
    pub models: Rect,
    pub layers: Rect,
    pub params: Rect,
    pub agreement: Rect,
    pub status: Rect,
    pub footer: Rect,
}

pub fn areas(app: &App, area: Rect) -> Areas {
    let [title, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    // The left column holds names; the right one grows with the width so
    // histogram bars and the per-model table get the extra space.
    let left_w = (area.width * 2 / 5).clamp(36, 64);
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_w), Constraint::Min(0)]).areas(body);
    let models_h = (app.slots.len() as u16 + 2).clamp(4, (left.height / 3).max(4));
    let [models, layers] =
        Layout::vertical([Constraint::Length(models_h), Constraint::Min(0)]).areas(left);
    let params_h = (app.param_rows().len() as u16 + 2).clamp(4, (right.height * 2 / 5).max(5));
    let status_h = if right.height >= 30 { 6 } else { 5 };
    let [params, agreement, status] = Layout::vertical([
        Constraint::Length(params_h),
        Constraint::Min(0),
        Constraint::Length(status_h),
    ])
    .areas(right);
    Areas {
        title,
        models,
        layers,
        params,
        agreement,
        status,
        footer,
    }
}

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme) {
    let area = f.area();
    if area.width < MIN_W || area.height < MIN_H {
        let msg = format!(
            "Terminal is {}x{}: enlarge to at least {MIN_W}x{MIN_H} (q quits)",
            area.width, area.height
        );
        let y = area.height / 2;
        f.render_widget(
            Paragraph::new(msg)
                .style(theme.fg(theme.warn))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            Rect::new(0, y, area.width, area.height - y),
        );
        return;
    }
    let a = areas(app, area);
    draw_title(f, app, theme, a.title);
    draw_models(f, app, theme, a.models);
    draw_layers(f, app, theme, a.layers);
    draw_params(f, app, theme, a.params);
    draw_agreement(f, app, theme, a.agreement);
    draw_status(f, app, theme, a.status);
    draw_footer(f, app, theme, a.footer);
    match &app.modal {
        Some(Modal::Help) => draw_help(f, app, theme, area),
        Some(Modal::ConfirmQuit) => draw_confirm(f, app, theme, area),
        Some(Modal::Input(i)) => draw_input(f, app, theme, area, i),
        None => {}
    }
    if app.ascii {
        asciify(f.buffer_mut());
    }
}

/// Replace every non-ASCII glyph left on screen with an ASCII stand-in, so
/// ASCII mode covers separators, arrows and names alike.
fn asciify(buf: &mut ratatui::buffer::Buffer) {
    for cell in buf.content.iter_mut() {
        let sym = cell.symbol();
        if sym.is_ascii() {
            continue;
        }
        let r = match sym {
            "·" => ".",
            "…" => "~",
            "‖" | "│" | "┃" => "|",
            "─" | "━" => "-",
            "←" => "<",
            "→" => ">",
            "↑" => "^",
            "↓" => "v",
            "▶" | "▸" => ">",
            "▾" => "v",
            "✔" => "+",
            "✘" => "x",
            "τ" => "t",
            "█" | "▏" | "▎" | "▍" | "▌" | "▋" | "▊" | "▉" => "#",
            "" => "",
            _ => "?",
        };
        cell.set_symbol(r);
    }
}

fn panel<'a>(app: &App, theme: &Theme, title: &'a str, p: Option<Panel>) -> Block<'a> {
    let focused = p.is_some_and(|p| p == app.focus) && app.modal.is_none();
    let marker = if focused {
        if app.ascii {
            "> "
        } else {
            "▶ "
        }
    } else {
        ""
    };
    let title_style = if focused {
        theme.fg(theme.focus).add_modifier(Modifier::BOLD)
    } else {
        theme.fg(theme.title)
    };
    let mut b = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.fg(if focused { theme.focus } else { theme.border }))
        .title(Line::from(vec![Span::styled(
            format!(" {marker}{title} "),
            title_style,
        )]));
    b = if app.ascii {
        b.border_set(if focused { ASCII_FOCUS } else { ASCII_BORDER })
    } else {
        b.border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
    };
    b
}

/// Marker and style for a list row.
fn row_style(app: &App, theme: &Theme, p: Panel, selected: bool) -> (&'static str, Style) {
    if !selected {
        return ("  ", theme.text());
    }
    let m = if app.ascii { "> " } else { "▶ " };
    if app.focus == p && app.modal.is_none() {
        (m, theme.selected())
    } else {
        (m, theme.text().add_modifier(Modifier::BOLD))
    }
}

/// First row to show so that `cursor` is visible in `h` rows.
pub fn scroll(cursor: usize, h: usize) -> usize {
    if h == 0 || cursor < h {
        0
    } else {
        cursor + 1 - h
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n > w {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        if w > 0 {
            t.push('~');
        }
        t
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

fn rpad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else {
        format!("{}{s}", " ".repeat(w - n))
    }
}

/// A horizontal bar of `frac` of `w` cells, eighth-cell resolution in
/// Unicode, `#` in ASCII; the rest filled with `empty`.
fn bar(frac: f64, w: usize, ascii: bool) -> (String, String) {
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if ascii {
        let n = (frac * w as f64).round() as usize;
        return ("#".repeat(n), ".".repeat(w - n));
    }
    let eighths = (frac * w as f64 * 8.0).round() as usize;
    let full = eighths / 8;
    let rem = eighths % 8;
    let mut s = "█".repeat(full);
    let mut used = full;
    if rem > 0 && used < w {
        s.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][rem - 1]);
        used += 1;
    }
    (s, "·".repeat(w.saturating_sub(used)))
}

fn draw_title(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let sep = if app.ascii { " | " } else { " │ " };
    let base = app
        .base_slot()
        .map_or_else(|| "none".to_string(), |i| app.slots[i].info.name.clone());
    let mut spans = vec![
        Span::styled(" smelt", theme.fg(theme.title).add_modifier(Modifier::BOLD)),
        Span::styled(sep, theme.dim()),
        Span::styled("method ", theme.dim()),
        Span::styled(
            app.method.name(),
            theme.fg(theme.accent).add_modifier(Modifier::BOLD),
        ),
        Span::styled(sep, theme.dim()),
        Span::styled(format!("base {base}"), theme.text()),
        Span::styled(sep, theme.dim()),
        Span::styled(format!("{} inputs", app.input_slots().len()), theme.text()),
    ];
    if let Some(p) = &app.recipe_path {
        // The whole path when it fits, else the file name.
        let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        let full = p.display().to_string();
        let shown = if used + 3 + full.chars().count() + 20 <= r.width as usize {
            full
        } else {
            p.file_name()
                .map_or(full, |n| n.to_string_lossy().into_owned())
        };
        spans.push(Span::styled(sep, theme.dim()));
        spans.push(Span::styled(shown, theme.dim()));
    }
    if app.modified() && !app.slots.is_empty() {
        spans.push(Span::styled(sep, theme.dim()));
        spans.push(Span::styled("modified", theme.fg(theme.warn)));
    }
    let help = " ? help ";
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let gap = (r.width as usize).saturating_sub(used + help.len());
    spans.push(Span::raw(" ".repeat(gap)));
    spans.push(Span::styled(help, theme.dim()));
    f.render_widget(Paragraph::new(Line::from(spans)), r);
}

fn draw_models(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let block = panel(app, theme, "Models", Some(Panel::Models));
    let inner = block.inner(r);
    f.render_widget(block, r);
    if app.slots.is_empty() {
        f.render_widget(
            Paragraph::new("no models: a adds one, o opens a recipe").style(theme.dim()),
            inner,
        );
        return;
    }
    let w = inner.width as usize;
    let spec = app.method.spec();
    let has_weight = spec.per_model.iter().any(|p| p.name == "weight");
    let has_density = spec.per_model.iter().any(|p| p.name == "density");
    let wide = w >= 56;
    let h = inner.height as usize;
    let top = scroll(app.model_cursor, h);
    let mut lines = Vec::new();
    for (i, s) in app.slots.iter().enumerate().skip(top).take(h) {
        let (mark, style) = row_style(app, theme, Panel::Models, i == app.model_cursor);
        let role = match s.role {
            Role::Base => "base",
            Role::Input => "in  ",
            Role::Excluded => "excl",
        };
        let mut tail = String::new();
        if s.role == Role::Input {
            let get = |n: &'static str| {
                // Shown at the recipe level; per-layer values are in Params.
                let row = ParamRow::PerModel { slot: i, name: n };
                let v = s.params.get(n).cloned().or_else(|| {
                    app.param_spec(&row)
                        .and_then(|p| p.default)
                        .map(|d| match d {
                            crate::merge::ParamValue::Bool(b) => crate::recipe::Value::Bool(b),
                            crate::merge::ParamValue::Float(x) => crate::recipe::Value::Number(x),
                        })
                });
                v.map_or_else(|| "-".to_string(), |v| fmt_value(&v))
            };
            if has_weight {
                tail.push_str(&format!(" w{}", get("weight")));
            }
            if has_density {
                tail.push_str(&format!(" d{}", get("density")));
            }
        }
        let info = if wide {
            format!(
                "{} {:>6} {}sh",
                pad(&s.info.dtype, 4),
                crate::units::count(s.info.params),
                s.info.shards
            )
        } else {
            format!("{:>6}", crate::units::count(s.info.params))
        };
        let name_w = w.saturating_sub(2 + 5 + info.chars().count() + 1 + tail.chars().count());
        let role_style = match s.role {
            Role::Base => theme.fg(theme.accent),
            Role::Input => theme.text(),
            Role::Excluded => theme.dim().add_modifier(Modifier::CROSSED_OUT),
        };
        let line = Line::from(vec![
            Span::styled(mark, style),
            Span::styled(
                format!("{role} "),
                if i == app.model_cursor {
                    style
                } else {
                    role_style
                },
            ),
            Span::styled(pad(&s.info.name, name_w), style),
            Span::styled(
                format!(" {info}"),
                if i == app.model_cursor {
                    style
                } else {
                    theme.dim()
                },
            ),
            Span::styled(
                tail,
                if i == app.model_cursor {
                    style
                } else {
                    theme.text()
                },
            ),
        ]);
        lines.push(line);
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// Current conflict shares of every group, for ranking the worst.
fn worst_groups(app: &App) -> Vec<usize> {
    let mut v: Vec<(usize, f64)> = app
        .layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match app.stats_for(&Target::Group(l.group)) {
            Some((Ok(s), true)) if s.params > 0 => Some((i, s.conflict_share())),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.into_iter()
        .take(3)
        .filter(|(_, c)| *c > 0.0)
        .map(|(i, _)| i)
        .collect()
}

fn gauge_spans<'a>(app: &App, theme: &Theme, t: &Target, w: usize, worst: bool) -> Vec<Span<'a>> {
    match app.stats_for(t) {
        Some((Ok(s), current)) => {
            let c = s.conflict_share();
            let (fill, rest) = bar(c, w, app.ascii);
            let colour = if worst {
                theme.bad
            } else if c > 0.25 {
                theme.warn
            } else {
                theme.gauge
            };
            let mut st = theme.fg(colour);
            if !current {
                st = st.add_modifier(Modifier::DIM);
            }
            vec![
                Span::styled(fill, st),
                Span::styled(rest, theme.dim()),
                Span::styled(
                    format!("{:>5.1}%{}", c * 100.0, if current { " " } else { "~" }),
                    if current { theme.text() } else { theme.dim() },
                ),
                Span::styled(
                    if worst { "!" } else { " " },
                    theme.fg(theme.bad).add_modifier(Modifier::BOLD),
                ),
            ]
        }
        Some((Err(_), _)) => vec![Span::styled(
            format!("{}  error ", " ".repeat(w)),
            theme.fg(theme.bad),
        )],
        None => vec![Span::styled(
            format!("{}    …   ", " ".repeat(w)),
            theme.dim(),
        )],
    }
}

fn draw_layers(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let title = match app.range_anchor.zip(app.edit_scope()) {
        Some((_, (lo, hi))) => format!("Layers · conflict · range {lo}-{hi}"),
        None if app.zips() => match app.zip_depth_eff() {
            0 => format!("Layers · zip depth {} (none)", app.zip_depth()),
            1 => format!("Layers · zip depth {} (0)", app.zip_depth()),
            k => format!("Layers · zip depth {} (0-{})", app.zip_depth(), k - 1),
        },
        None => "Layers · sign conflict".to_string(),
    };
    let block = panel(app, theme, &title, Some(Panel::Layers));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let lines_all = app.layer_lines();
    let h = inner.height as usize;
    let w = inner.width as usize;
    let top = scroll(app.layer_cursor, h);
    let worst = worst_groups(app);
    let scope = app.edit_scope();
    let gw = if w >= 50 { 12 } else { 8 };
    let show_params = w >= 46;
    let mut out = Vec::new();
    for (i, line) in lines_all.iter().enumerate().skip(top).take(h) {
        let sel = i == app.layer_cursor;
        let (mark, style) = row_style(app, theme, Panel::Layers, sel);
        let mut spans = vec![Span::styled(mark, style)];
        match *line {
            LayerLine::All => {
                spans.push(Span::styled(
                    pad("all layers (recipe values)", w.saturating_sub(2)),
                    style,
                ));
            }
            LayerLine::Group(g) => {
                let l = &app.layers[g];
                let in_range = matches!((scope, l.group), (Some((lo, hi)), Group::Layer(n)) if app.range_anchor.is_some() && n >= lo && n <= hi);
                let ov = app.has_override(g);
                let exp = if app.expanded.contains(&g) {
                    if app.ascii {
                        "v"
                    } else {
                        "▾"
                    }
                } else if app.ascii {
                    ">"
                } else {
                    "▸"
                };
                let label = format!("{exp} {}", l.group);
                let pc = if show_params {
                    format!(" {:>6}", crate::units::count(l.params))
                } else {
                    String::new()
                };
                // zipit / permute: which layers form the shared trunk.
                let zip_tag = app.zips().then(|| match l.group {
                    Group::Layer(n) if app.zipped(n) => {
                        (" zip", theme.fg(theme.good).add_modifier(Modifier::BOLD))
                    }
                    _ => (" own", theme.dim()),
                });
                let zw = if zip_tag.is_some() { 4 } else { 0 };
                let fixed = 2 + 2 + pc.chars().count() + zw + 1 + gw + 8;
                let name_w = w.saturating_sub(fixed);
                spans.push(Span::styled(
                    if in_range {
                        if app.ascii {
                            "|"
                        } else {
                            "┃"
                        }
                    } else {
                        " "
                    },
                    theme.fg(theme.over),
                ));
                spans.push(Span::styled(
                    if ov { "*" } else { " " },
                    theme.fg(theme.over).add_modifier(Modifier::BOLD),
                ));
                spans.push(Span::styled(pad(&label, name_w), style));
                spans.push(Span::styled(pc, if sel { style } else { theme.dim() }));
                if let Some((tag, st)) = zip_tag {
                    spans.push(Span::styled(tag, if sel { style } else { st }));
                }
                spans.push(Span::raw(" "));
                if app.zips() && app.analysis_blocked().is_some() {
                    // No task vectors: no gauge that would wait forever.
                    spans.push(Span::raw(" ".repeat(gw + 8)));
                } else {
                    spans.extend(gauge_spans(
                        app,
                        theme,
                        &Target::Group(l.group),
                        gw,
                        worst.contains(&g),
                    ));
                }
            }
            LayerLine::Tensor(g, t) => {
                let tr = &app.layers[g].tensors[t];
                let short = tr
                    .name
                    .rsplit_once("layers.")
                    .map_or(tr.name.as_str(), |(_, r)| {
                        r.split_once('.').map_or(r, |(_, b)| b)
                    });
                let short = short.strip_suffix(".weight").unwrap_or(short);
                let shape = tr
                    .shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x");
                let target = Target::Tensor(tr.name.clone());
                let wide_gauge = w >= 50;
                let gauge_w = if wide_gauge { gw + 8 } else { 7 };
                let name_w = w.saturating_sub(2 + 4 + 1 + shape.chars().count() + 1 + gauge_w);
                spans.push(Span::styled(format!("    {} ", pad(short, name_w)), style));
                spans.push(Span::styled(format!("{shape} "), theme.dim()));
                if wide_gauge {
                    spans.extend(gauge_spans(app, theme, &target, gw, false));
                } else {
                    spans.push(match app.stats_for(&target) {
                        Some((Ok(st), cur)) => Span::styled(
                            format!(
                                "{:>5.1}%{}",
                                st.conflict_share() * 100.0,
                                if cur { " " } else { "~" }
                            ),
                            if cur { theme.text() } else { theme.dim() },
                        ),
                        _ => Span::styled("   ... ", theme.dim()),
                    });
                }
            }
        }
        out.push(Line::from(spans));
    }
    if app.layers.is_empty() {
        out.push(Line::styled("  (no layers: load models)", theme.dim()));
    }
    f.render_widget(Paragraph::new(out), inner);
}

fn draw_params(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let scope = match app.edit_scope() {
        None => "all layers".to_string(),
        Some((lo, hi)) if lo == hi => format!("layer {lo} override"),
        Some((lo, hi)) => format!("layers {lo}-{hi} override"),
    };
    let title = format!("Parameters · {scope}");
    let block = panel(app, theme, &title, Some(Panel::Params));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let rows = app.param_rows();
    let h = inner.height as usize;
    // Keep names and values close enough to read across on wide screens.
    let w = (inner.width as usize).min(64);
    let top = scroll(app.param_cursor, h);
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate().skip(top).take(h) {
        let sel = i == app.param_cursor;
        let (mark, style) = row_style(app, theme, Panel::Params, sel);
        let (label, value, over) = match row {
            ParamRow::Method => (
                "method".to_string(),
                format!(
                    "{}  ({}/{})",
                    app.method.name(),
                    app.method as usize + 1,
                    crate::merge::Method::all().count()
                ),
                false,
            ),
            ParamRow::Global(n) => {
                let (v, o) = app.param_value(row);
                (n.to_string(), shown_value(app, row, v.as_ref()), o)
            }
            ParamRow::PerModel { slot, name } => {
                let (v, o) = app.param_value(row);
                let m = app.slots.get(*slot).map_or("?", |s| s.info.name.as_str());
                (
                    format!("{name} · {m}"),
                    shown_value(app, row, v.as_ref()),
                    o,
                )
            }
        };
        if *row == ParamRow::Method {
            let lw = 8;
            out.push(Line::from(vec![
                Span::styled(mark, style),
                Span::styled(pad(&label, lw), style),
                Span::styled(
                    pad(&value, w.saturating_sub(2 + lw)),
                    if sel {
                        style
                    } else {
                        theme.fg(theme.accent).add_modifier(Modifier::BOLD)
                    },
                ),
            ]));
            continue;
        }
        let vw = 12.min(w / 3);
        let lw = w.saturating_sub(2 + 2 + vw);
        let vstyle = if sel {
            style
        } else if value == "REQUIRED" {
            theme.fg(theme.bad)
        } else if over {
            theme.fg(theme.over).add_modifier(Modifier::BOLD)
        } else {
            theme.fg(theme.accent)
        };
        out.push(Line::from(vec![
            Span::styled(mark, style),
            Span::styled(pad(&label, lw), style),
            Span::styled(
                if over { "* " } else { "  " },
                theme.fg(theme.over).add_modifier(Modifier::BOLD),
            ),
            Span::styled(rpad(&value, vw), vstyle),
        ]));
    }
    f.render_widget(Paragraph::new(out), inner);
}

/// A value as shown: gradients and name filters, at a layer scope, show
/// what they resolve to there (through the recipe's own resolution, the
/// one the merge uses), marked `~`.
fn shown_value(app: &App, row: &ParamRow, v: Option<&crate::recipe::Value>) -> String {
    use crate::recipe::Value;
    let Some(v) = v else {
        return "REQUIRED".into();
    };
    let (Value::Gradient(_) | Value::Filtered(_), Some((lo, _))) = (v, app.edit_scope()) else {
        return fmt_value(v);
    };
    let n_layers = app
        .layers
        .iter()
        .filter(|l| matches!(l.group, Group::Layer(_)))
        .count();
    // Filters match tensor names: only a selected tensor has one value.
    let name = match (app.current_line(), v) {
        (LayerLine::Tensor(g, t), _) => app.layers.get(g).and_then(|l| l.tensors.get(t)),
        (_, Value::Gradient(_)) => app
            .layers
            .iter()
            .find(|l| l.group == Group::Layer(lo))
            .and_then(|l| l.tensors.first()),
        _ => None,
    };
    let Some(tensor) = name else {
        return fmt_value(v);
    };
    let tp = app
        .to_recipe()
        .resolve(&tensor.name, Group::Layer(lo), n_layers);
    let got = match row {
        ParamRow::Method => None,
        ParamRow::Global(n) => tp.global.get(n),
        ParamRow::PerModel { slot, name } => app
            .input_slots()
            .iter()
            .position(|s| s == slot)
            .and_then(|k| tp.models.get(k))
            .and_then(|m| m.get(name)),
    };
    got.map_or_else(|| fmt_value(v), |x| format!("~{}", fmt_num(x.as_f64())))
}

/// Combine the statistics of several groups (exactly: the engine's
/// `Stats::combine` adds the raw sums behind norms and cosines).
fn sum_stats<'a>(mut it: impl Iterator<Item = &'a Stats>) -> Stats {
    let Some(first) = it.next() else {
        return Stats::default();
    };
    let mut s = first.clone();
    for x in it {
        s.combine(x);
    }
    s
}

fn draw_agreement(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let target = app.current_target();
    let what = match &target {
        None => "all layers".to_string(),
        Some(Target::Group(g)) => g.to_string(),
        Some(Target::Tensor(n)) => {
            let g = app
                .current_group()
                .and_then(|g| app.layers.get(g))
                .map(|l| l.group);
            let short = n
                .rsplit_once("layers.")
                .map_or(n.as_str(), |(_, r)| r.split_once('.').map_or(r, |(_, b)| b));
            match g {
                Some(Group::Layer(l)) => format!("layer {l} · {short}"),
                _ => short.to_string(),
            }
        }
    };
    let title = format!("Sign agreement · {what}");
    let block = panel(app, theme, &title, Some(Panel::Agreement));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let w = inner.width as usize;
    let mut out: Vec<Line> = Vec::new();
    if let Some(why) = app.analysis_blocked() {
        out.push(Line::styled(why, theme.dim()));
        f.render_widget(
            Paragraph::new(out).wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let (stats, state): (Option<Stats>, &str) = match &target {
        None => {
            let cur: Vec<&Stats> = app
                .layers
                .iter()
                .filter_map(|l| match app.stats_for(&Target::Group(l.group)) {
                    Some((Ok(s), true)) => Some(s),
                    _ => None,
                })
                .collect();
            let done = cur.len();
            let all = app.layers.len();
            if done == 0 {
                (None, "computing…")
            } else {
                let label = if done == all {
                    "current"
                } else {
                    "partial · computing…"
                };
                (Some(sum_stats(cur.into_iter())), label)
            }
        }
        Some(t) => match app.stats_for(t) {
            Some((Ok(s), true)) => (Some(s.clone()), "current"),
            _ if app.preview_for(t).is_some() => (
                app.preview_for(t).cloned(),
                "PREVIEW · sampled rows · computing…",
            ),
            Some((Ok(s), false)) => (Some(s.clone()), "STALE · computing…"),
            Some((Err(e), _)) => {
                out.push(Line::styled(format!("error: {e}"), theme.fg(theme.bad)));
                (None, "")
            }
            None => (None, "computing…"),
        },
    };
    let spec = app.method.spec();
    let note = if spec.sign_election {
        format!("{} elects signs", spec.name)
    } else {
        format!("{} elects no sign: raw task vectors", spec.name)
    };
    let state_style = if state == "current" {
        theme.fg(theme.good)
    } else {
        theme.fg(theme.warn).add_modifier(Modifier::BOLD)
    };
    out.push(Line::from(vec![
        Span::styled(format!("[{state}] "), state_style),
        Span::styled(note, theme.dim()),
    ]));
    let Some(s) = stats else {
        f.render_widget(Paragraph::new(out), inner);
        return;
    };
    let n = s.agree.len().saturating_sub(1);
    let total: u64 = s.agree.iter().sum::<u64>().max(1);
    let label_w = 10;
    let bar_w = w.saturating_sub(label_w + 8);
    let stale = state != "current" && !state.starts_with("partial");
    // Tall panels get double-height bars: the histogram is the point.
    let n_models = app.input_slots().len();
    let below = 1 + (n_models + 1) + usize::from(s.cosines.len() > 1);
    let tall = inner.height as usize >= out.len() + 2 * (n + 1) + below;
    for k in (0..=n).rev() {
        let c = s.agree.get(k).copied().unwrap_or(0);
        let frac = c as f64 / total as f64;
        let (fill, rest) = bar(frac, bar_w, app.ascii);
        let label = if k == 0 {
            "0 / none".to_string()
        } else {
            format!("{k}/{n} agree")
        };
        let mut st = theme.fg(if k == n { theme.bar_elected } else { theme.bar });
        if stale {
            st = st.add_modifier(Modifier::DIM);
        }
        out.push(Line::from(vec![
            Span::styled(pad(&label, label_w), theme.text()),
            Span::styled(fill, st),
            Span::styled(rest, theme.dim()),
            Span::styled(format!("{:>6.1}%", frac * 100.0), theme.text()),
        ]));
        if tall {
            let (fill, rest) = bar(frac, bar_w, app.ascii);
            out.push(Line::from(vec![
                Span::raw(" ".repeat(label_w)),
                Span::styled(fill, st),
                Span::styled(rest, theme.dim()),
            ]));
        }
    }
    let pct = |x: u64| {
        if s.params == 0 {
            0.0
        } else {
            x as f64 * 100.0 / s.params as f64
        }
    };
    out.push(Line::from(vec![
        Span::styled("conflict ", theme.dim()),
        Span::styled(
            format!("{:.1}%", s.conflict_share() * 100.0),
            theme.fg(theme.warn).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("  of {} params", crate::units::count(s.params)),
            theme.dim(),
        ),
    ]));
    // Per model: kept share, norm share kept, norm. A table when there is
    // room, else one compact line.
    let names: Vec<String> = app
        .input_slots()
        .iter()
        .map(|&i| app.slots[i].info.name.clone())
        .collect();
    let room = (inner.height as usize).saturating_sub(out.len());
    if room > names.len() && w >= 44 {
        out.push(Line::styled(
            format!(
                "{}{:>8}{:>10}{:>9}",
                pad("model", w.saturating_sub(27).min(24)),
                "kept",
                "norm kept",
                "‖τ‖"
            ),
            theme.dim(),
        ));
        for (i, name) in names.iter().enumerate() {
            let kept = s
                .kept
                .get(i)
                .map_or("-".into(), |k| format!("{:.1}%", pct(*k)));
            let nk = s
                .norm_kept
                .get(i)
                .map_or("-".into(), |k| format!("{:.1}%", k * 100.0));
            let nm = s.norms.get(i).map_or("-".into(), |k| fmt_num(*k));
            out.push(Line::from(Span::styled(
                format!(
                    "{}{kept:>8}{nk:>10}{nm:>9}",
                    pad(name, w.saturating_sub(27).min(24))
                ),
                theme.text(),
            )));
        }
    } else if !s.kept.is_empty() {
        let kept: Vec<String> = s.kept.iter().map(|k| format!("{:.0}%", pct(*k))).collect();
        let nk: Vec<String> = s
            .norm_kept
            .iter()
            .map(|k| format!("{:.0}%", k * 100.0))
            .collect();
        let mut t = format!("kept {}", kept.join(" "));
        if !nk.is_empty() {
            t.push_str(&format!("  norm kept {}", nk.join(" ")));
        }
        out.push(Line::styled(t, theme.text()));
    }
    if s.cosines.len() > 1 {
        let mut parts = Vec::new();
        for i in 0..s.cosines.len() {
            for j in i + 1..s.cosines.len() {
                let c = s.cosines[i].get(j).copied().unwrap_or(f64::NAN);
                parts.push(format!("{}-{} {:+.2}", i + 1, j + 1, c));
            }
        }
        out.push(Line::from(vec![
            Span::styled("cos ", theme.dim()),
            Span::styled(parts.join("  "), theme.text()),
        ]));
    }
    f.render_widget(Paragraph::new(out), inner);
}

fn fmt_dur(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn draw_status(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let block = panel(app, theme, "Status", None);
    let inner = block.inner(r);
    f.render_widget(block, r);
    let w = inner.width as usize;
    let mut out = Vec::new();
    match &app.merge {
        MergeState::Idle => {
            out.push(Line::styled(
                "ready · r runs the merge · s saves the recipe",
                theme.dim(),
            ));
        }
        MergeState::Running {
            out: dir,
            tensors,
            tensors_done,
            bytes_done,
            bytes_total,
            current,
            elapsed,
            cancelling,
        } => {
            let frac = if *bytes_total > 0 {
                *bytes_done as f64 / *bytes_total as f64
            } else {
                0.0
            };
            let tail = format!(" {:>3.0}% {tensors_done}/{tensors}", frac * 100.0);
            let (fill, rest) = bar(frac, w.saturating_sub(tail.chars().count()), app.ascii);
            out.push(Line::from(vec![
                Span::styled(fill, theme.fg(theme.gauge)),
                Span::styled(rest, theme.dim()),
                Span::styled(tail, theme.text().add_modifier(Modifier::BOLD)),
            ]));
            out.push(Line::from(vec![
                Span::styled(
                    if *cancelling {
                        "cancelling · "
                    } else {
                        "merging · "
                    },
                    theme.fg(theme.warn),
                ),
                Span::styled(pad(current, w.saturating_sub(13)), theme.text()),
            ]));
            let secs = elapsed.as_secs_f64();
            let rate = if secs > 0.0 {
                *bytes_done as f64 / secs
            } else {
                0.0
            };
            let eta = if rate > 0.0 && bytes_total > bytes_done {
                fmt_dur(std::time::Duration::from_secs_f64(
                    (bytes_total - bytes_done) as f64 / rate,
                ))
            } else {
                "-".into()
            };
            out.push(Line::styled(
                format!(
                    "{}/s · {} elapsed · ETA {eta} · c cancels · {}",
                    crate::units::bytes(rate as u64),
                    fmt_dur(*elapsed),
                    dir.display()
                ),
                theme.dim(),
            ));
        }
        MergeState::Done(s) => {
            out.push(Line::from(vec![
                Span::styled(
                    if app.ascii { "done " } else { "✔ done " },
                    theme.fg(theme.good).add_modifier(Modifier::BOLD),
                ),
                Span::styled(s.out.display().to_string(), theme.text()),
            ]));
            let acc = accuracy_lines(app, theme);
            // Room for the summary too only when the accuracy leaves it.
            if !acc.is_empty() && 1 + acc.len() >= inner.height as usize {
                out.extend(acc);
                f.render_widget(Paragraph::new(out), inner);
                return;
            }
            out.push(Line::styled(
                format!(
                    "{} tensors · {} written · {} read · {:.2}s",
                    s.tensors,
                    crate::units::bytes(s.bytes_written),
                    crate::units::bytes(s.bytes_read),
                    s.elapsed.as_secs_f64()
                ),
                theme.dim(),
            ));
            out.extend(acc);
        }
        MergeState::Failed(e) => {
            out.push(Line::styled(
                if app.ascii {
                    "FAILED".to_string()
                } else {
                    "✘ FAILED".to_string()
                },
                theme.fg(theme.bad).add_modifier(Modifier::BOLD),
            ));
            out.push(Line::styled(e.clone(), theme.fg(theme.bad)));
        }
    }
    f.render_widget(
        Paragraph::new(out).wrap(ratatui::widgets::Wrap { trim: true }),
        inner,
    );
}

/// Accuracy of the merged MLP beside each input's own, one line each:
/// `merged  0-4 97.1%  5-9 95.3%  joint 84.2%` then `alone   0-4 99.0% ...`.
fn accuracy_lines<'a>(app: &App, theme: &Theme) -> Vec<Line<'a>> {
    use crate::eval::{classes_label, EvalReport};
    let heads = |r: &EvalReport| {
        r.heads
            .iter()
            .map(|h| format!("{} {:.1}%", classes_label(&h.classes), 100.0 * h.accuracy))
            .collect::<Vec<_>>()
    };
    match &app.accuracy {
        // Evaluating takes a moment and most outputs are not MLPs (then
        // nothing comes): no placeholder line.
        AccuracyState::None | AccuracyState::Running(_) => Vec::new(),
        AccuracyState::Done(a) => {
            let mut v = Vec::new();
            match &a.merged {
                Ok(r) => {
                    let mut parts = heads(r);
                    parts.push(format!("joint {:.1}%", 100.0 * r.joint_accuracy));
                    v.push(Line::from(vec![
                        Span::styled(
                            "merged  ",
                            theme.fg(theme.accent).add_modifier(Modifier::BOLD),
                        ),
                        Span::styled(parts.join("  "), theme.text().add_modifier(Modifier::BOLD)),
                    ]));
                }
                Err(e) => v.push(Line::styled(
                    format!("accuracy: cannot evaluate the merge: {e}"),
                    theme.fg(theme.bad),
                )),
            }
            let mut alone = Vec::new();
            let mut errs = Vec::new();
            for (name, r) in &a.inputs {
                match r {
                    Ok(r) => alone.extend(heads(r)),
                    Err(e) => errs.push(format!("{name}: {e}")),
                }
            }
            if !alone.is_empty() {
                v.push(Line::from(vec![
                    Span::styled("alone   ", theme.fg(theme.accent)),
                    Span::styled(alone.join("  "), theme.text()),
                ]));
            }
            if !errs.is_empty() {
                v.push(Line::styled(
                    format!("inputs not evaluated: {}", errs.join("; ")),
                    theme.fg(theme.bad),
                ));
            }
            v
        }
    }
}

fn draw_footer(f: &mut Frame, app: &App, theme: &Theme, r: Rect) {
    let line = match &app.message {
        Some((Level::Error, m)) => Line::styled(
            format!(" ! {m}"),
            theme.fg(theme.bad).add_modifier(Modifier::BOLD),
        ),
        Some((Level::Warn, m)) => Line::styled(format!(" ! {m}"), theme.fg(theme.warn)),
        Some((Level::Info, m)) => Line::styled(format!(" {m}"), theme.text()),
        None => Line::styled(
            " ?:help q:quit Tab:panel ←→:adjust m:method r:run c:cancel s:save o:open",
            theme.dim(),
        ),
    };
    f.render_widget(Paragraph::new(line), r);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn modal_block<'a>(app: &App, theme: &Theme, title: &'a str) -> Block<'a> {
    let b = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.fg(theme.focus))
        .title(Span::styled(
            format!(" {title} "),
            theme.fg(theme.focus).add_modifier(Modifier::BOLD),
        ));
    if app.ascii {
        b.border_set(ASCII_FOCUS)
    } else {
        b.border_type(BorderType::Double)
    }
}

fn draw_help(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let r = centered(area, 66, HELP.len() as u16 + 3);
    f.render_widget(Clear, r);
    let b = modal_block(app, theme, "Keys");
    let inner = b.inner(r);
    f.render_widget(b, r);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, d)| {
            let k = if app.ascii {
                k.replace('↑', "Up")
                    .replace('↓', "Dn")
                    .replace('←', "Lt")
                    .replace('→', "Rt")
            } else {
                k.to_string()
            };
            Line::from(vec![
                Span::styled(
                    format!(" {}", pad(&k, 16)),
                    theme.fg(theme.accent).add_modifier(Modifier::BOLD),
                ),
                Span::styled(d.to_string(), theme.text()),
            ])
        })
        .collect();
    lines.push(Line::styled(" any key closes this help", theme.dim()));
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_confirm(f: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let r = centered(area, 50, 5);
    f.render_widget(Clear, r);
    let b = modal_block(app, theme, "Quit?");
    let inner = b.inner(r);
    f.render_widget(b, r);
    f.render_widget(
        Paragraph::new(vec![
            Line::styled("A merge is running.", theme.text()),
            Line::from(vec![
                Span::styled("y", theme.fg(theme.accent).add_modifier(Modifier::BOLD)),
                Span::styled(" cancel it and quit · any other key: stay", theme.text()),
            ]),
        ]),
        inner,
    );
}

fn draw_input(f: &mut Frame, app: &App, theme: &Theme, area: Rect, i: &Input) {
    let extra = if i.completions.is_empty() {
        0
    } else {
        1 + (i.completions.len() as u16).min(6)
    };
    let w = area.width.saturating_sub(8).min(100);
    let r = centered(area, w, 3 + extra + 1);
    f.render_widget(Clear, r);
    let title = i.title();
    let b = modal_block(app, theme, &title);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let iw = inner.width as usize;
    // Keep the cursor in view on long paths.
    let skip = (i.cursor + 2).saturating_sub(iw);
    let shown: String = i.text.chars().skip(skip).take(iw).collect();
    let mut lines = vec![Line::styled(
        shown,
        theme.text().add_modifier(Modifier::UNDERLINED),
    )];
    lines.push(Line::styled(
        "Enter accept · Esc cancel · Tab complete · Ctrl-U clear",
        theme.dim(),
    ));
    if !i.completions.is_empty() {
        lines.push(Line::styled(
            format!("{} matches:", i.completions.len()),
            theme.dim(),
        ));
        for c in i.completions.iter().take(6) {
            lines.push(Line::styled(format!("  {c}"), theme.text()));
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
    let cx = inner.x + (i.cursor - skip) as u16;
    f.set_cursor_position(Position::new(
        cx.min(inner.right().saturating_sub(1)),
        inner.y,
    ));
}
