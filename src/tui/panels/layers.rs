//! The Layers panel: all layers, the embeddings, every layer, the norm and
//! head, each with a gauge of its sign-conflict share; Enter lists a
//! layer's tensors. The selected row is the scope of edits everywhere:
//! `←`/`→` here move every input's density there (each from its own value
//! on a `v` range), `z` sets the zip depth, Del removes the row's
//! overrides.

use crate::model::Group;
use crate::tui::keys::Action;
use crate::tui::state::*;
use crate::tui::theme::Theme;
use crate::tui::widgets::{bar, marks, pad, panel, row_style, scroll};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Apply a key's action to the Layers panel.
pub fn on_action(app: &mut App, a: Action) {
    match a {
        Action::Enter | Action::Toggle => expand(app),
        Action::Dec | Action::Inc => density(app, if a == Action::Inc { 1 } else { -1 }),
        Action::RangeMark => range_mark(app),
        Action::ZipDepth => zip_depth(app),
        Action::Clear => clear(app),
        Action::SetBase | Action::Exclude | Action::RemoveModel => app.say(
            Level::Info,
            "select a model in the Models panel first (Tab)",
        ),
        _ => {}
    }
}

fn expand(app: &mut App) {
    match app.current_line() {
        LayerLine::Group(g) => {
            if !app.view.expanded.remove(&g) {
                app.view.expanded.insert(g);
            }
        }
        LayerLine::Tensor(g, _) => {
            app.view.expanded.remove(&g);
            // Back onto the group row that just collapsed.
            if let Some(i) = app
                .layer_lines()
                .iter()
                .position(|l| *l == LayerLine::Group(g))
            {
                app.view.layer_cursor = i;
            }
        }
        LayerLine::All => {}
    }
    app.dirty = true;
}

/// Density of every input at the selected scope(s).
fn density(app: &mut App, dir: i32) {
    let spec = app.doc.method.spec();
    let Some(ds) = spec.per_model.iter().find(|p| p.name == "density") else {
        app.say(
            Level::Info,
            format!("{} has no density; tune it in Parameters (Tab)", spec.name),
        );
        return;
    };
    let scopes: Vec<Option<Scope>> = match app.edit_scopes() {
        None => vec![None],
        Some(v) => v.into_iter().map(Some).collect(),
    };
    let mut writes = Vec::new();
    for slot in app.doc.input_slots() {
        let row = ParamRow::Model {
            slot,
            name: "density".into(),
        };
        for s in &scopes {
            let v = match super::params::stepped(app, &row, ds, *s, dir) {
                Ok(v) => v,
                Err(e) => {
                    app.say(Level::Warn, e);
                    return;
                }
            };
            if let Some(p) = app.place_of(&row, *s) {
                writes.push((p, v));
            }
        }
    }
    if writes.is_empty() {
        app.say(Level::Info, "no input models (e includes one)");
        return;
    }
    let at = match scopes.as_slice() {
        [None] => "every layer".to_string(),
        [Some(s)] => s.to_string(),
        [Some(a), .., Some(b)] => format!("{a} to {b}"),
        _ => String::new(),
    };
    app.edit(&format!("density at {at}"), |d| {
        for (p, v) in writes {
            d.set(&p, "density", v);
        }
    });
    if matches!(app.current_line(), LayerLine::Tensor(..)) {
        app.say(
            Level::Info,
            format!("density set for {at}, all its tensors (a tensor takes no values of its own)"),
        );
    }
}

fn range_mark(app: &mut App) {
    match app
        .current_group()
        .and_then(|g| app.doc.layers.get(g))
        .map(|l| l.group)
    {
        Some(Group::Layer(l)) => {
            if app.view.range_anchor.take().is_some() {
                app.say(Level::Info, "range cleared");
            } else {
                app.view.range_anchor = Some(l);
                app.say(
                    Level::Info,
                    format!("range from layer {l}: move to extend it, then edit; v again drops it"),
                );
            }
        }
        _ => app.say(
            Level::Warn,
            "ranges are made of numbered layers: move to one first",
        ),
    }
}

fn clear(app: &mut App) {
    let Some(scopes) = app.edit_scopes() else {
        app.say(
            Level::Info,
            "select a layer or group to clear its overrides (Del in Parameters removes one value)",
        );
        return;
    };
    let what = match scopes.as_slice() {
        [s] => s.to_string(),
        [a, .., b] => format!("{a} to {b}"),
        [] => String::new(),
    };
    let any = app.edit(&format!("clear overrides of {what}"), |d| {
        let mut any = false;
        for s in &scopes {
            any |= d.overrides.remove(s).is_some_and(|o| !o.is_empty());
        }
        any
    });
    if any {
        app.say(
            Level::Info,
            format!("overrides of {what} removed · u undoes"),
        );
    } else {
        app.say(Level::Info, format!("{what} has no overrides"));
    }
}

/// `z`: make the selected layer the last one zipped into the shared trunk
/// (zipit and permute). "All layers" zips every hidden layer (-1);
/// embeddings zip nothing (0, the ensemble); on the layer that already
/// ends the trunk it steps back one, so depth 0 is reachable on models
/// without embeddings. The classifier (last layer) always stays per model.
fn zip_depth(app: &mut App) {
    if !app.doc.zips() {
        app.say(
            Level::Info,
            format!(
                "z sets the zip depth of zipit and permute; {} has none (m changes method)",
                app.doc.method.name()
            ),
        );
        return;
    }
    let max = app.doc.zip_max();
    let group = app
        .current_group()
        .and_then(|g| app.doc.layers.get(g))
        .map(|l| l.group);
    let (d, why) = match group {
        None | Some(Group::Post) => (-1, String::new()),
        Some(Group::Pre) => (0, String::new()),
        Some(Group::Layer(l)) if l >= max => (
            -1,
            format!("layer {l} is the classifier and stays per model; "),
        ),
        Some(Group::Layer(l)) => {
            if app.doc.zip_depth_eff() == l + 1 {
                (l as i64, String::new())
            } else {
                (l as i64 + 1, String::new())
            }
        }
    };
    app.edit(&format!("zip depth {d}"), |doc| {
        doc.global
            .insert("depth".into(), crate::recipe::Value::Number(d as f64));
    });
    let what = match d {
        -1 => format!(
            "depth -1: every hidden layer zipped (0-{})",
            max.saturating_sub(1)
        ),
        0 => "depth 0: nothing zipped (the ensemble)".to_string(),
        1 => "depth 1: layer 0 zipped, the rest per model".to_string(),
        k => format!("depth {k}: layers 0-{} zipped, the rest per model", k - 1),
    };
    let n = app.problems.len();
    if n == 0 {
        app.say(Level::Info, format!("{why}{what}"));
    } else {
        app.say(
            Level::Warn,
            format!(
                "{why}{what}; {n} problem{} (r lists them)",
                if n == 1 { "" } else { "s" }
            ),
        );
    }
}

/// The groups marked `!`: those with the largest current conflict share.
fn worst_groups(app: &App) -> Vec<usize> {
    let mut v: Vec<(usize, f64)> = app
        .doc
        .layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match app.stats_for(&Target::Group(l.group)) {
            Some((Ok(r), true)) if r.stats.params > 0 => Some((i, r.stats.conflict_share())),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Three at most, and a third of those ranked: on a three-layer model,
    // three marks would mark every layer and say nothing.
    let marked = (v.len() / 3).min(3);
    // Only shares that show as more than 0.0% and stand above the first
    // layer left unmarked: layers tied with the rest are not the worst.
    let rest = v.get(marked).map(|x| x.1);
    v.into_iter()
        .take(marked)
        .filter(|(_, c)| *c >= 0.0005 && rest.is_none_or(|r| *c > r))
        .map(|(i, _)| i)
        .collect()
}

/// A gauge of a target's conflict share in `w` cells plus its figure
/// (8 more cells): stale figures are dimmed and marked.
fn gauge_spans<'a>(app: &App, theme: &Theme, t: &Target, w: usize, worst: bool) -> Vec<Span<'a>> {
    let m = marks(app.ascii);
    match app.stats_for(t) {
        Some((Ok(r), current)) if r.stats.params == 0 => vec![Span::styled(
            format!("{}left out{} ", " ".repeat(w.saturating_sub(2)), m.skipped),
            if current {
                theme.fg(theme.bad)
            } else {
                theme.dim()
            },
        )],
        Some((Ok(r), current)) => {
            let c = r.stats.conflict_share();
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
            let skipped = !r.skipped.is_empty();
            vec![
                Span::styled(fill, st),
                Span::styled(rest, theme.dim()),
                Span::styled(
                    format!(
                        "{:>5.1}%{}",
                        c * 100.0,
                        if !current {
                            m.stale
                        } else if skipped {
                            m.skipped
                        } else {
                            " "
                        }
                    ),
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

/// Draw the Layers panel.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme, r: Rect, focused: bool) {
    let doc = &app.doc;
    let title = match app.view.range_anchor.zip(app.edit_scopes()) {
        Some((_, v)) if v.len() > 1 => format!(
            "Layers · range {}-{}",
            v.first().map_or(String::new(), |s| scope_num(*s)),
            v.last().map_or(String::new(), |s| scope_num(*s))
        ),
        _ if doc.zips() => match doc.zip_depth_eff() {
            0 => format!("Layers · zip depth {} (none)", doc.zip_depth()),
            1 => format!("Layers · zip depth {} (0)", doc.zip_depth()),
            k => format!("Layers · zip depth {} (0-{})", doc.zip_depth(), k - 1),
        },
        _ => "Layers · sign conflict".to_string(),
    };
    let block = panel(theme, app.ascii, title, focused, r.width);
    let inner = block.inner(r);
    f.render_widget(block, r);
    let m = marks(app.ascii);
    let lines_all = app.layer_lines();
    let h = inner.height as usize;
    let w = inner.width as usize;
    let top = scroll(app.view.layer_cursor, h);
    let worst = worst_groups(app);
    let scopes = app.edit_scopes().unwrap_or_default();
    let gw = if w >= 50 { 12 } else { 8 };
    let show_params = w >= 46;
    let blocked = app.analysis_blocked().is_some();
    let mut out = Vec::new();
    for (i, line) in lines_all.iter().enumerate().skip(top).take(h) {
        let sel = i == app.view.layer_cursor;
        let (mark, style) = row_style(theme, app.ascii, sel, focused);
        let mut spans = vec![Span::styled(mark, style)];
        match *line {
            LayerLine::All => {
                spans.push(Span::styled(
                    pad("all layers (recipe values)", w.saturating_sub(2), app.ascii),
                    style,
                ));
            }
            LayerLine::Group(g) => {
                let l = &doc.layers[g];
                let scope = Scope::of(l.group);
                let in_range = app.view.range_anchor.is_some() && scopes.contains(&scope);
                let problem = app.has_problem(&Spot::Scope(scope));
                let exp = match (app.view.expanded.contains(&g), app.ascii) {
                    (true, false) => "▾",
                    (true, true) => "v",
                    (false, false) => "▸",
                    (false, true) => ">",
                };
                let label = format!("{exp} {}", l.group);
                let pc = if show_params {
                    format!(" {:>6}", crate::units::count(l.params))
                } else {
                    String::new()
                };
                // zipit / permute: which layers form the shared trunk.
                let zip_tag = doc.zips().then(|| match l.group {
                    Group::Layer(n) if doc.zipped(n) => {
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
                spans.push(if problem {
                    Span::styled(m.problem, theme.fg(theme.bad).add_modifier(Modifier::BOLD))
                } else {
                    Span::styled(
                        if doc.has_override(scope) { "*" } else { " " },
                        theme.fg(theme.over).add_modifier(Modifier::BOLD),
                    )
                });
                spans.push(Span::styled(pad(&label, name_w, app.ascii), style));
                spans.push(Span::styled(pc, if sel { style } else { theme.dim() }));
                if let Some((tag, st)) = zip_tag {
                    spans.push(Span::styled(tag, if sel { style } else { st }));
                }
                spans.push(Span::raw(" "));
                if blocked {
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
                let tr = &doc.layers[g].tensors[t];
                let short = short_name(&tr.name);
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
                spans.push(Span::styled(
                    format!("    {} ", pad(short, name_w, app.ascii)),
                    style,
                ));
                spans.push(Span::styled(format!("{shape} "), theme.dim()));
                if blocked {
                } else if wide_gauge {
                    spans.extend(gauge_spans(app, theme, &target, gw, false));
                } else {
                    spans.push(match app.stats_for(&target) {
                        Some((Ok(st), cur)) => Span::styled(
                            format!(
                                "{:>5.1}%{}",
                                st.stats.conflict_share() * 100.0,
                                if cur { " " } else { m.stale }
                            ),
                            if cur { theme.text() } else { theme.dim() },
                        ),
                        Some((Err(_), _)) => Span::styled(" error ", theme.fg(theme.bad)),
                        None => Span::styled("   …   ", theme.dim()),
                    });
                }
            }
        }
        out.push(Line::from(spans));
    }
    if doc.layers.is_empty() {
        out.push(Line::styled("  (no layers: load models)", theme.dim()));
    }
    f.render_widget(Paragraph::new(out), inner);
    let shown = h.min(lines_all.len().saturating_sub(top));
    crate::tui::widgets::scroll_hint(
        f,
        theme,
        app.ascii,
        r,
        top,
        lines_all.len().saturating_sub(top + shown),
    );
}

fn scope_num(s: Scope) -> String {
    match s {
        Scope::Layer(l) => l.to_string(),
        other => other.to_string(),
    }
}

/// `self_attn.q_proj` for `model.layers.3.self_attn.q_proj.weight`.
pub fn short_name(n: &str) -> &str {
    let s = n
        .rsplit_once("layers.")
        .map_or(n, |(_, r)| r.split_once('.').map_or(r, |(_, b)| b));
    s.strip_suffix(".weight").unwrap_or(s)
}
