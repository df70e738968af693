//! The Parameters panel: the method, and every value the recipe holds at
//! the selected scope (the whole recipe, a layer, a group, or a range of
//! layers): method-wide values, each model's values, `seed`, and the
//! fields the workbench does not edit. Each can be changed (`←`/`→`,
//! Enter, Space for booleans) and removed (Del), and each edit is one undo
//! step.

use crate::merge::{Method, ParamKind, ParamSpec};
use crate::recipe::Value;
use crate::tui::keys::Action;
use crate::tui::state::*;
use crate::tui::theme::Theme;
use crate::tui::update::prompt_for;
use crate::tui::widgets::{marks, pad, panel, row_style, rpad, scroll};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Apply a key's action to the Parameters panel.
pub fn on_action(app: &mut App, a: Action) {
    let rows = app.param_rows();
    let Some(row) = rows.get(app.view.param_cursor).cloned() else {
        return;
    };
    match (a, &row) {
        (Action::Dec | Action::Inc, ParamRow::Method) => {
            let cur = app.doc.method;
            let m = if a == Action::Inc {
                cur.next()
            } else {
                Method::all().find(|m| m.next() == cur).unwrap_or(cur)
            };
            switch_method(app, m);
        }
        (Action::Enter, ParamRow::Method) => switch_method(app, app.doc.method.next()),
        (Action::Dec | Action::Inc, ParamRow::Seed) => {
            let s = app.doc.seed.unwrap_or(0);
            let next = if a == Action::Inc {
                s.saturating_add(1)
            } else {
                s.saturating_sub(1)
            };
            app.edit(&format!("seed {next}"), |d| d.seed = Some(next));
        }
        (Action::Enter, ParamRow::Seed) => {
            let text = app.doc.seed.unwrap_or(0).to_string();
            let p = prompt_for(
                app,
                Purpose::Value {
                    row: row.clone(),
                    scopes: None,
                },
                text,
            );
            app.modal = Some(Modal::Prompt(p));
        }
        (Action::Dec | Action::Inc | Action::Enter, ParamRow::OutDtype) => {
            let i = OUT_DTYPES
                .iter()
                .position(|d| *d == app.doc.out_dtype)
                .unwrap_or(0);
            let n = OUT_DTYPES.len();
            let next = OUT_DTYPES[if a == Action::Dec {
                (i + n - 1) % n
            } else {
                (i + 1) % n
            }];
            let name = next
                .and_then(crate::recipe::dtype_name)
                .unwrap_or("the base's");
            app.edit(&format!("out_dtype {name}"), |d| d.out_dtype = next);
        }
        (Action::Clear, _) => clear_row(app, &row),
        (Action::Dec | Action::Inc | Action::Enter | Action::Toggle, ParamRow::Global(_))
        | (Action::Dec | Action::Inc | Action::Enter | Action::Toggle, ParamRow::Model { .. }) => {
            let Some(spec) = app.param_spec(&row) else {
                app.say(
                    Level::Warn,
                    format!(
                        "{} does not take this value: Del removes it",
                        app.doc.method.name()
                    ),
                );
                return;
            };
            let boolean = spec.kind == ParamKind::Bool;
            match a {
                Action::Dec | Action::Inc => {
                    step_row(app, &row, spec, if a == Action::Inc { 1 } else { -1 })
                }
                Action::Enter | Action::Toggle if boolean => step_row(app, &row, spec, 1),
                Action::Toggle => app.say(Level::Info, "Space flips booleans; Enter types a value"),
                _ => {
                    let l = app.row_value(&row, app.shown_scope());
                    // Name filters cannot be typed: start empty (a number
                    // or a list replaces them).
                    let text = match &l.value {
                        Some(Value::Filtered(_)) | None => String::new(),
                        Some(v) => fmt_value(v),
                    };
                    let p = prompt_for(
                        app,
                        Purpose::Value {
                            row: row.clone(),
                            scopes: app.edit_scopes(),
                        },
                        text,
                    );
                    app.modal = Some(Modal::Prompt(p));
                }
            }
        }
        (_, ParamRow::Calibration | ParamRow::Slices) => app.say(
            Level::Info,
            "this field comes from the recipe file; Del removes it (u undoes)",
        ),
        (Action::RangeMark | Action::ZipDepth, _) => app.say(
            Level::Info,
            "Tab to Layers: v marks ranges, z sets the zip depth",
        ),
        _ => {}
    }
}

/// Switch method, translating the recipe, and say what moved.
pub fn switch_method(app: &mut App, m: Method) {
    let from = app.doc.method;
    if m == from {
        return;
    }
    let note = app.edit(&format!("method {} → {}", from.name(), m.name()), |d| {
        d.switch_method(m)
    });
    // In full when it fits the footer at 80 columns; else the moved
    // values by name only (the Parameters panel shows them).
    let n = app.problems.len();
    let line = |short: bool| {
        let sum = |v: &[crate::tui::doc::Moved]| {
            if short {
                crate::tui::doc::summarize_names(v)
            } else {
                summarize(v)
            }
        };
        let mut parts = vec![if short {
            m.name().to_string()
        } else {
            format!("method {}", m.name())
        }];
        if !note.dropped.is_empty() {
            parts.push(format!("set aside {}", sum(&note.dropped)));
        }
        if !note.restored.is_empty() {
            parts.push(format!("back {}", sum(&note.restored)));
        }
        if !note.added.is_empty() {
            parts.push(format!("added {}", sum(&note.added)));
        }
        if let Some(b) = &note.base {
            parts.push(format!("base {b}"));
        }
        if n > 0 {
            parts.push(format!(
                "{n} problem{}{}",
                if n == 1 { "" } else { "s" },
                if short { "" } else { " (r lists)" }
            ));
        }
        parts.push("u undoes".into());
        parts.join(" · ")
    };
    const FOOTER: usize = 77;
    let full = line(false);
    let short = line(true);
    let text = if full.chars().count() <= FOOTER {
        full
    } else if short.chars().count() <= FOOTER {
        short
    } else {
        // Counts only.
        let count = |what: &str, v: &[crate::tui::doc::Moved]| {
            (!v.is_empty()).then(|| format!("{} {what}", v.len()))
        };
        let mut parts = vec![m.name().to_string()];
        parts.extend(count("set aside", &note.dropped));
        parts.extend(count("back", &note.restored));
        parts.extend(count("added", &note.added));
        if n > 0 {
            parts.push(format!("{n} problem{}", if n == 1 { "" } else { "s" }));
        }
        parts.push("u undoes".into());
        parts.join(" · ")
    };
    app.view.param_cursor = 0;
    app.say(if n > 0 { Level::Warn } else { Level::Info }, text);
}

/// Move a value one step at each selected scope, each from its own
/// current value (a range keeps its layers' differences).
pub fn step_row(app: &mut App, row: &ParamRow, spec: &ParamSpec, dir: i32) {
    let scopes: Vec<Option<Scope>> = match app.edit_scopes() {
        None => vec![None],
        Some(v) => v.into_iter().map(Some).collect(),
    };
    let Some((name, _)) = App::row_param(row) else {
        return;
    };
    let name = name.to_string();
    let mut writes = Vec::new();
    for s in &scopes {
        let v = match stepped(app, row, spec, *s, dir) {
            Ok(v) => v,
            Err(e) => {
                app.say(Level::Warn, e);
                return;
            }
        };
        if let Some(place) = app.place_of(row, *s) {
            if !writes.iter().any(|(p, _)| *p == place) {
                writes.push((place, v));
            }
        }
    }
    let what = describe_edit(app, row, &scopes);
    let shown = writes
        .first()
        .map(|(_, v)| fmt_value(v))
        .unwrap_or_default();
    app.edit(&format!("{what} {shown}"), |d| {
        for (place, v) in writes {
            d.set(&place, &name, v);
        }
    });
}

/// A row's value at `scope` moved one step. Recipe-wide, a gradient
/// moves every point and name filters move every entry (their shape is
/// kept); at a layer, a gradient moves from what it gives there, and name
/// filters, which give each tensor its own value, are not flattened into
/// one: that is refused, saying how to set one.
pub fn stepped(
    app: &App,
    row: &ParamRow,
    spec: &ParamSpec,
    scope: Option<Scope>,
    dir: i32,
) -> Result<Value, String> {
    let cur = app.row_value(row, scope).value;
    match (&cur, scope) {
        (Some(Value::Filtered(_)), Some(s)) => Err(format!(
            "{} is set per tensor by name filters: ←/→ would flatten them at {s}; Enter types one value for it, or edit the filters in the recipe",
            app.row_label(row)
        )),
        (Some(Value::Gradient(_)), Some(s)) => {
            let here = resolved_at(app, row, s).map(Value::Number);
            Ok(adjust(spec, here.as_ref().or(cur.as_ref()), dir))
        }
        (Some(v), None) => Ok(step_all(spec, v, dir)),
        (None, _) => Ok(adjust(spec, None, dir)),
        (Some(v), Some(_)) => Ok(adjust(spec, Some(v), dir)),
    }
}

/// Every number of a value moved one step, its shape kept.
fn step_all(spec: &ParamSpec, v: &Value, dir: i32) -> Value {
    let one = |x: f64| match adjust(spec, Some(&Value::Number(x)), dir) {
        Value::Number(y) => y,
        _ => x,
    };
    match v {
        Value::Gradient(xs) => Value::Gradient(xs.iter().map(|x| one(*x)).collect()),
        Value::Filtered(entries) => Value::Filtered(
            entries
                .iter()
                .map(|(f, v)| (f.clone(), step_all(spec, v, dir)))
                .collect(),
        ),
        other => adjust(spec, Some(other), dir),
    }
}

/// What a row's value resolves to at a scope, for its first tensor there
/// (see [`resolve_for`]).
fn resolved_at(app: &App, row: &ParamRow, s: Scope) -> Option<f64> {
    let (slot, name) = row_key(row)?;
    resolve_at_scope(app, s, slot, name)
}

/// What `name` (see [`resolve_for`]) resolves to at scope `s`, for its
/// first tensor there.
fn resolve_at_scope(app: &App, s: Scope, slot: Option<usize>, name: &str) -> Option<f64> {
    let group = s.group();
    let tensor = app
        .doc
        .layers
        .iter()
        .find(|l| l.group == group)?
        .tensors
        .first()?;
    resolve_for(app, &tensor.name, group, slot, name)
}

/// A row's value name, and its model's slot for a per-model value.
fn row_key(row: &ParamRow) -> Option<(Option<usize>, &str)> {
    match row {
        ParamRow::Global(n) => Some((None, n.as_str())),
        ParamRow::Model { slot, name } => Some((Some(*slot), name.as_str())),
        _ => None,
    }
}

/// What `name` (of the model in `slot`, or the recipe's) resolves to for
/// `tensor` of `group`, through the recipe's own resolution, the one the
/// merge uses.
fn resolve_for(
    app: &App,
    tensor: &str,
    group: crate::model::Group,
    slot: Option<usize>,
    name: &str,
) -> Option<f64> {
    let tp = app
        .doc
        .to_recipe()
        .resolve(tensor, group, app.doc.n_layers());
    let v = match slot {
        None => tp.global.get(name),
        Some(slot) => app
            .doc
            .input_slots()
            .iter()
            .position(|x| *x == slot)
            .and_then(|k| tp.models.get(k))
            .and_then(|m| m.get(name)),
    }?;
    Some(v.as_f64())
}

/// Parse typed text for a row.
pub fn parse_row(app: &App, row: &ParamRow, text: &str) -> Result<Value, String> {
    if *row == ParamRow::Seed {
        return parse_seed(text).map(|s| Value::Number(s as f64));
    }
    let spec = app
        .param_spec(row)
        .ok_or_else(|| "this method does not take this value".to_string())?;
    parse_value(spec, text)
}

/// A typed value: the same value at every selected scope ("set").
pub fn set_typed(
    app: &mut App,
    row: &ParamRow,
    scopes: Option<&[Scope]>,
    text: &str,
) -> Result<(), String> {
    if *row == ParamRow::Seed {
        let s = parse_seed(text)?;
        app.edit(&format!("seed {s}"), |d| d.seed = Some(s));
        return Ok(());
    }
    let v = parse_row(app, row, text)?;
    let Some((name, _)) = App::row_param(row) else {
        return Ok(());
    };
    let name = name.to_string();
    let scopes: Vec<Option<Scope>> = match scopes {
        None => vec![None],
        Some(v) => v.iter().copied().map(Some).collect(),
    };
    let places: Vec<Place> = scopes
        .iter()
        .filter_map(|s| app.place_of(row, *s))
        .collect();
    let what = describe_edit(app, row, &scopes);
    let shown = fmt_value(&v);
    app.edit(&format!("set {what} {shown}"), |d| {
        for p in &places {
            d.set(p, &name, v.clone());
        }
    });
    if scopes.len() > 1 {
        app.say(
            Level::Info,
            format!(
                "set {what} to {shown} on {} layers · u undoes",
                scopes.len()
            ),
        );
    }
    Ok(())
}

/// Del on a row: remove its value at the selected scope(s).
fn clear_row(app: &mut App, row: &ParamRow) {
    let done = match row {
        ParamRow::Method => {
            app.say(Level::Info, "the method cannot be removed; m changes it");
            return;
        }
        ParamRow::Seed => app.edit("remove seed", |d| d.seed.take().is_some()),
        ParamRow::OutDtype => app.edit("remove out_dtype", |d| d.out_dtype.take().is_some()),
        ParamRow::Calibration => app.edit("remove calibration", |d| d.calibration.take().is_some()),
        ParamRow::Slices => app.edit("remove slices", |d| {
            !std::mem::take(&mut d.slices).is_empty()
        }),
        _ => {
            let Some((name, _)) = App::row_param(row) else {
                return;
            };
            let name = name.to_string();
            let scopes: Vec<Option<Scope>> = match app.edit_scopes() {
                None => vec![None],
                Some(v) => v.into_iter().map(Some).collect(),
            };
            let places: Vec<Place> = scopes
                .iter()
                .filter_map(|s| app.place_of(row, *s))
                .collect();
            let what = describe_edit(app, row, &scopes);
            app.edit(&format!("remove {what}"), |d| {
                let mut any = false;
                for p in &places {
                    any |= d.remove(p, &name).is_some();
                }
                any
            })
        }
    };
    if done {
        let what = match app.edit_scopes() {
            Some(v) if matches!(row, ParamRow::Global(_) | ParamRow::Model { .. }) => format!(
                "{} at {}",
                app.row_label(row),
                v.first().map_or_else(String::new, |s| s.to_string())
            ),
            _ => app.row_label(row),
        };
        app.say(Level::Info, format!("removed {what} · u undoes"));
    } else {
        app.say(
            Level::Info,
            "nothing set here to remove (the value shown comes from elsewhere)",
        );
    }
}

/// `density · ft-code at layer 3`, for undo steps and messages.
fn describe_edit(app: &App, row: &ParamRow, scopes: &[Option<Scope>]) -> String {
    let base = app.row_label(row);
    match scopes {
        [None] | [] => base,
        [Some(s)] => format!("{base} at {s}"),
        [Some(a), .., Some(b)] => format!("{base} at {a} to {b}"),
        _ => base,
    }
}

/// Draw the Parameters panel.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme, r: Rect, focused: bool) {
    let scope = app.shown_scope();
    let on_tensor = matches!(app.current_line(), LayerLine::Tensor(..));
    let at = match app.edit_scopes().as_deref() {
        None => "all layers".to_string(),
        // A tensor row edits its layer: say so.
        Some([s]) if on_tensor => format!("{s}, all its tensors"),
        Some([s]) => s.to_string(),
        Some(v) => format!("layers {}-{} (range)", first_layer(v), last_layer(v)),
    };
    let block = panel(
        theme,
        app.ascii,
        format!("Parameters · {at}"),
        focused,
        r.width,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let m = marks(app.ascii);
    let rows = app.param_rows();
    let h = inner.height as usize;
    // Keep names and values close enough to read across on wide screens.
    let w = (inner.width as usize).min(64);
    let top = scroll(app.view.param_cursor, h);
    // One value column for the rows in view (values right-aligned in it),
    // as wide as their longest value, but no wider than leaves the longest
    // name whole: a value longer than that (a gradient's list, or
    // `≈0.35 0.2..0.8`) takes the room from its own row's name only.
    let floor = 12.min(w / 3);
    let most = (w / 2).max(floor);
    let texts: Vec<(usize, usize)> = rows
        .iter()
        .skip(top)
        .take(h)
        .filter(|row| **row != ParamRow::Method)
        .map(|row| {
            let (label, value, _) = row_text(app, row, scope);
            (label.chars().count(), value.chars().count())
        })
        .collect();
    let longest_label = texts.iter().map(|t| t.0).max().unwrap_or(0);
    let vw = texts
        .iter()
        .map(|t| t.1)
        .max()
        .unwrap_or(0)
        .min(w.saturating_sub(2 + 2 + 2 + longest_label))
        .max(floor)
        .min(most);
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate().skip(top).take(h) {
        let sel = i == app.view.param_cursor;
        let (mark, style) = row_style(theme, app.ascii, sel, focused);
        let problem = app.row_problem(row).is_some();
        if *row == ParamRow::Method {
            let lw = 8;
            let value = format!(
                "{}  ({}/{})",
                app.doc.method.name(),
                app.doc.method as usize + 1,
                Method::all().count()
            );
            out.push(Line::from(vec![
                Span::styled(mark, style),
                Span::styled(pad("method", lw, app.ascii), style),
                Span::styled(
                    pad(&value, w.saturating_sub(2 + lw + 2), app.ascii),
                    if sel {
                        style
                    } else {
                        theme.fg(theme.accent).add_modifier(Modifier::BOLD)
                    },
                ),
                Span::styled(
                    if problem {
                        format!(" {}", m.problem)
                    } else {
                        "  ".into()
                    },
                    theme.fg(theme.bad).add_modifier(Modifier::BOLD),
                ),
            ]));
            continue;
        }
        let (label, value, from) = row_text(app, row, scope);
        let unknown = matches!(row, ParamRow::Global(_) | ParamRow::Model { .. })
            && app.param_spec(row).is_none();
        let row_vw = value.chars().count().clamp(vw, most.max(vw));
        let lw = w.saturating_sub(2 + 2 + row_vw + 2);
        let vstyle = if sel {
            style
        } else if problem || unknown || value == "REQUIRED" {
            theme.fg(theme.bad).add_modifier(Modifier::BOLD)
        } else if from == Source::Override {
            theme.fg(theme.over).add_modifier(Modifier::BOLD)
        } else if from == Source::Default {
            theme.dim()
        } else {
            theme.fg(theme.accent)
        };
        out.push(Line::from(vec![
            Span::styled(mark, style),
            Span::styled(pad(&label, lw, app.ascii), style),
            Span::styled(
                if from == Source::Override { "* " } else { "  " },
                theme.fg(theme.over).add_modifier(Modifier::BOLD),
            ),
            Span::styled(rpad(&value, row_vw), vstyle),
            Span::styled(
                if problem || unknown {
                    format!(" {}", m.problem)
                } else {
                    "  ".into()
                },
                theme.fg(theme.bad).add_modifier(Modifier::BOLD),
            ),
        ]));
    }
    f.render_widget(Paragraph::new(out), inner);
    let shown = h.min(rows.len().saturating_sub(top));
    crate::tui::widgets::scroll_hint(
        f,
        theme,
        app.ascii,
        r,
        top,
        rows.len().saturating_sub(top + shown),
    );
}

fn first_layer(v: &[Scope]) -> String {
    match v.first() {
        Some(Scope::Layer(l)) => l.to_string(),
        Some(s) => s.to_string(),
        None => String::new(),
    }
}
fn last_layer(v: &[Scope]) -> String {
    match v.last() {
        Some(Scope::Layer(l)) => l.to_string(),
        Some(s) => s.to_string(),
        None => String::new(),
    }
}

/// A row's label, its value as shown, and where the value comes from.
fn row_text(app: &App, row: &ParamRow, scope: Option<Scope>) -> (String, String, Source) {
    let doc = &app.doc;
    match row {
        ParamRow::Method => ("method".into(), doc.method.name().into(), Source::Recipe),
        ParamRow::Seed => match doc.seed {
            Some(s) => ("seed".into(), s.to_string(), Source::Recipe),
            None => ("seed".into(), "0".into(), Source::Default),
        },
        ParamRow::OutDtype => match doc.out_dtype.and_then(crate::recipe::dtype_name) {
            Some(n) => ("out_dtype".into(), n.to_string(), Source::Recipe),
            // As the plan decides: the base's dtype, or without a base
            // the first model's.
            None if doc.recipe_base().is_some() => {
                ("out_dtype".into(), "the base's".into(), Source::Default)
            }
            None => (
                "out_dtype".into(),
                "the first model's".into(),
                Source::Default,
            ),
        },
        ParamRow::Calibration => (
            "calibration".into(),
            doc.calibration
                .as_ref()
                .and_then(|p| p.file_name())
                .map_or("-".into(), |n| n.to_string_lossy().into_owned()),
            Source::Recipe,
        ),
        ParamRow::Slices => (
            "slices (from the file)".into(),
            doc.slices.len().to_string(),
            Source::Recipe,
        ),
        ParamRow::Global(n) => {
            let per_model = doc.method.spec().per_model.iter().any(|p| p.name == n);
            let label = if per_model {
                format!("{n} · every model")
            } else {
                n.clone()
            };
            let l = app.row_value(row, scope);
            (label, shown_value(app, row, l.value.as_ref()), l.from)
        }
        ParamRow::Model { slot, name } => {
            let m = doc.slots.get(*slot).map_or("?", |s| s.info.name.as_str());
            let l = app.row_value(row, scope);
            (
                format!("{name} · {m}"),
                shown_value(app, row, l.value.as_ref()),
                l.from,
            )
        }
    }
}

/// A value as shown: gradients and name filters, at a layer scope, show
/// what they resolve to there (see [`shown_at`]), marked `≈`.
fn shown_value(app: &App, row: &ParamRow, v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "REQUIRED".into();
    };
    if let Some((lo, hi)) = row_key(row).and_then(|(slot, name)| range_span(app, slot, name)) {
        return format!("{}..{}", fmt_num(lo), fmt_num(hi));
    }
    row_key(row)
        .and_then(|(slot, name)| shown_at(app, v, slot, name))
        .map_or_else(
            || fmt_value(v),
            |x| format!("{}{}", marks(app.ascii).resolved, fmt_num(x)),
        )
}

/// Over a range of layers (`v` on the Layers panel) whose values of
/// `name` (of the model in `slot`, or the recipe's) differ: the lowest
/// and the highest (a value shown for the range's first layer alone
/// would hide the others).
pub fn range_span(app: &App, slot: Option<usize>, name: &str) -> Option<(f64, f64)> {
    let scopes = app.edit_scopes().filter(|s| s.len() > 1)?;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in scopes {
        let x = match app.doc.value_at(name, slot, Some(s)).value? {
            Value::Number(x) => x,
            Value::Gradient(_) | Value::Filtered(_) => resolve_at_scope(app, s, slot, name)?,
            Value::Bool(_) => return None,
        };
        lo = lo.min(x);
        hi = hi.max(x);
    }
    (lo < hi).then_some((lo, hi))
}

/// What a gradient or name filter `v` (of `name`, for the model in
/// `slot`, or the recipe's) resolves to at the shown layer scope. None
/// for other values, at "all layers", and for a filter unless one tensor
/// is selected (filters match tensor names).
pub fn shown_at(app: &App, v: &Value, slot: Option<usize>, name: &str) -> Option<f64> {
    let scope = app.shown_scope();
    let (Value::Gradient(_) | Value::Filtered(_), Some(s)) = (v, scope) else {
        return None;
    };
    let group = s.group();
    let tensor = match (app.current_line(), v) {
        (LayerLine::Tensor(g, t), _) => app.doc.layers.get(g).and_then(|l| l.tensors.get(t)),
        (_, Value::Gradient(_)) => app
            .doc
            .layers
            .iter()
            .find(|l| l.group == group)
            .and_then(|l| l.tensors.first()),
        _ => None,
    }?;
    resolve_for(app, &tensor.name, group, slot, name)
}
