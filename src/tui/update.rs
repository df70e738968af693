//! `update(state, msg) -> effects`: every change to the state happens here.
//!
//! Nothing in this file touches the terminal or the engine; what must happen
//! outside (open a model, run a merge, compute statistics, write a file) is
//! returned as an [`Effect`] for the event loop to hand to the job layer.
//! That keeps the whole UI logic testable with synthetic key events.

use super::keys::{action, Action};
use super::state::*;
use super::view;
use crate::analysis::Stats;
use crate::engine::{Event, Summary};
use crate::recipe::{Recipe, Value};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything that can happen to the UI.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// The terminal's new width and height.
    Resize(u16, u16),
    /// A statistics result from the analysis worker, with the key of the
    /// inputs it was computed from.
    Analysis {
        key: String,
        target: Target,
        result: Result<Stats, String>,
    },
    /// A quick estimate from sampled rows of a big tensor, before the exact
    /// result.
    Preview {
        key: String,
        target: Target,
        stats: Stats,
    },
    /// An engine event from the merge worker, with time since it started.
    Merge {
        event: Event,
        elapsed: Duration,
    },
    MergeDone(Result<Summary, String>),
    /// A recipe (and its models) has been opened.
    Loaded(Result<Loaded, String>),
    /// A model added with `a` has been opened.
    ModelAdded(Result<(ModelInfo, Vec<LayerRow>), String>),
    /// The recipe was written to the path (the recipe as written).
    Saved(Result<(PathBuf, Recipe), String>),
    /// Accuracy of the merge written to `out` (`None`: not an MLP, nothing
    /// to evaluate).
    Accuracy {
        out: PathBuf,
        result: Option<Accuracy>,
    },
}

/// The result of opening a recipe.
#[derive(Debug)]
pub struct Loaded {
    pub recipe: Recipe,
    pub path: Option<PathBuf>,
    pub infos: Vec<ModelInfo>,
    pub layers: Vec<LayerRow>,
}

/// Work for the outside world.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Compute statistics for `targets` (in order, each with its key) under
    /// `recipe`; replaces any analysis still running.
    Analyze {
        recipe: Recipe,
        targets: Vec<(Target, String)>,
    },
    StartMerge {
        recipe: Recipe,
        out: PathBuf,
    },
    CancelMerge,
    Save {
        recipe: Recipe,
        path: PathBuf,
    },
    Open(PathBuf),
    AddModel(PathBuf),
    /// Evaluate the merge output in `out` if it is an MLP, beside each
    /// input (path, name) evaluated alone.
    Evaluate {
        out: PathBuf,
        inputs: Vec<(PathBuf, String)>,
    },
    /// Clear and repaint the whole terminal (Ctrl-L).
    Repaint,
}

/// Apply `msg` to `app`; returns what must happen outside. Any analysis
/// the new state needs is requested at the end, so every path that changes
/// parameters or selection gets fresh statistics.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut fx = Vec::new();
    let before = (app.gen, app.current_target(), app.expanded.clone());
    match msg {
        Msg::Key(k) => on_key(app, k, &mut fx),
        Msg::Mouse(m) => on_mouse(app, m),
        Msg::Resize(w, h) => {
            app.size = (w, h);
            app.dirty = true;
        }
        Msg::Analysis {
            key,
            target,
            result,
        } => {
            // A result for other inputs than the current ones is kept only
            // while nothing current is held, and is shown as stale (the
            // views compare keys); it never replaces a current one.
            let now = app.stats_key(&target);
            let have_current = app.stats.get(&target).is_some_and(|(k, _)| *k == now);
            if key == now || !have_current {
                app.stats.insert(target, (key, result));
                app.dirty = true;
            }
        }
        Msg::Preview { key, target, stats } => {
            if key == app.stats_key(&target) {
                app.previews.insert(target, (key, stats));
                app.dirty = true;
            }
        }
        Msg::Merge { event, elapsed } => on_merge_event(app, event, elapsed),
        Msg::MergeDone(r) => {
            match r {
                Ok(s) => {
                    app.say(Level::Info, format!("merge written to {}", s.out.display()));
                    app.accuracy = AccuracyState::Running(s.out.clone());
                    fx.push(Effect::Evaluate {
                        out: s.out.clone(),
                        inputs: app
                            .input_slots()
                            .into_iter()
                            .map(|i| {
                                (
                                    app.slots[i].info.path.clone(),
                                    app.slots[i].info.name.clone(),
                                )
                            })
                            .collect(),
                    });
                    app.merge = MergeState::Done(s);
                }
                Err(e) => {
                    app.say(Level::Error, format!("merge failed: {e}"));
                    app.merge = MergeState::Failed(e);
                }
            }
            app.dirty = true;
        }
        Msg::Loaded(Ok(l)) => {
            app.load_recipe(&l.recipe, l.infos, l.layers);
            app.recipe_path = l.path.clone();
            let what = l
                .path
                .map_or_else(|| "models".to_string(), |p| p.display().to_string());
            app.say(Level::Info, format!("opened {what}"));
        }
        Msg::Loaded(Err(e)) | Msg::ModelAdded(Err(e)) => app.say(Level::Error, e),
        Msg::ModelAdded(Ok((info, layers))) => {
            let role =
                if app.slots.is_empty() && app.method.spec().base != crate::merge::BaseRule::None {
                    Role::Base
                } else {
                    Role::Input
                };
            app.say(
                Level::Info,
                format!("added {} as {}", info.name, role_name(role)),
            );
            app.slots.push(ModelSlot {
                info,
                role,
                params: Default::default(),
            });
            if app.layers.is_empty() {
                app.layers = layers;
            }
            app.params_changed();
        }
        Msg::Saved(Ok((p, r))) => {
            app.say(Level::Info, format!("recipe saved to {}", p.display()));
            app.recipe_path = Some(p);
            app.saved = Some(r);
        }
        Msg::Saved(Err(e)) => app.say(Level::Error, format!("save failed: {e}")),
        Msg::Accuracy { out, result } => {
            // Only for the output being evaluated now (a rerun supersedes).
            if app.accuracy == AccuracyState::Running(out) {
                app.accuracy = result.map_or(AccuracyState::None, AccuracyState::Done);
                app.dirty = true;
            }
        }
    }
    let after = (app.gen, app.current_target(), app.expanded.clone());
    if before != after && app.analysis_blocked().is_none() {
        let targets = app.wanted_targets();
        if !targets.is_empty() {
            fx.push(Effect::Analyze {
                recipe: app.to_recipe(),
                targets,
            });
        }
    }
    fx
}

/// The request to send at startup (or after loading): everything missing.
pub fn initial_analysis(app: &App) -> Option<Effect> {
    if app.analysis_blocked().is_some() {
        return None;
    }
    let targets = app.wanted_targets();
    (!targets.is_empty()).then(|| Effect::Analyze {
        recipe: app.to_recipe(),
        targets,
    })
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Base => "base",
        Role::Input => "input",
        Role::Excluded => "excluded",
    }
}

fn on_merge_event(app: &mut App, event: Event, elapsed: Duration) {
    let MergeState::Running {
        tensors: t,
        tensors_done: td,
        bytes_done: bd,
        bytes_total: bt,
        current: cur,
        elapsed: el,
        ..
    } = &mut app.merge
    else {
        return;
    };
    *el = elapsed;
    match event {
        Event::Started {
            tensors,
            bytes_total,
        } => {
            *t = tensors;
            *bt = bytes_total;
        }
        Event::Progress {
            tensor,
            tensors_done,
            bytes_done,
            bytes_total,
        } => {
            *cur = tensor;
            *td = tensors_done;
            *bd = bytes_done;
            *bt = bytes_total;
        }
        // The worker's final result (MergeDone) carries the summary too; the
        // event only marks the bar full.
        Event::Finished(s) => {
            *td = s.tensors;
            *bd = *bt;
        }
    }
    app.dirty = true;
}

fn on_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    if k.kind == ratatui::crossterm::event::KeyEventKind::Release {
        return;
    }
    app.dirty = true;
    match app.modal.take() {
        Some(Modal::Help) => {
            // Any key closes help; `q` closes help rather than quitting.
            return;
        }
        Some(Modal::ConfirmQuit) => {
            match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    fx.push(Effect::CancelMerge);
                    app.quit = true;
                }
                _ => app.say(Level::Info, "still running"),
            }
            return;
        }
        Some(Modal::Input(input)) => {
            on_input_key(app, input, k, fx);
            return;
        }
        None => {}
    }
    let Some(a) = action(&k) else {
        return;
    };
    app.message = None;
    match a {
        Action::Help => app.modal = Some(Modal::Help),
        Action::Quit => {
            if app.merge_running() {
                app.modal = Some(Modal::ConfirmQuit);
            } else {
                app.quit = true;
            }
        }
        Action::NextPanel => app.focus = app.focus.next(),
        Action::PrevPanel => app.focus = app.focus.prev(),
        Action::Up => move_cursor(app, -1),
        Action::Down => move_cursor(app, 1),
        Action::PageUp => move_cursor(app, -10),
        Action::PageDown => move_cursor(app, 10),
        Action::Home => move_cursor(app, -100_000),
        Action::End => move_cursor(app, 100_000),
        Action::Dec => adjust_focused(app, -1),
        Action::Inc => adjust_focused(app, 1),
        Action::Enter => enter(app),
        Action::NextMethod => next_method(app),
        Action::Run => {
            if app.merge_running() {
                app.say(Level::Warn, "a merge is already running (c cancels it)");
            } else if let Some(problem) = run_blocker(app) {
                app.say(Level::Error, problem);
            } else {
                let d = default_out(app);
                app.modal = Some(Modal::Input(Input::new(
                    InputKind::OutputFolder,
                    d.display().to_string(),
                )));
            }
        }
        Action::Cancel => {
            if let MergeState::Running { cancelling, .. } = &mut app.merge {
                *cancelling = true;
                fx.push(Effect::CancelMerge);
                app.say(Level::Info, "cancelling...");
            } else {
                app.say(Level::Info, "no merge is running");
            }
        }
        Action::Save => {
            let d = app.recipe_path.clone().unwrap_or_else(|| {
                app.data_dir.join("recipes").join(format!(
                    "{}-{}.toml",
                    app.family(),
                    app.method.name()
                ))
            });
            app.modal = Some(Modal::Input(Input::new(
                InputKind::SaveRecipe,
                d.display().to_string(),
            )));
        }
        Action::Open => {
            let d = app
                .recipe_path
                .clone()
                .unwrap_or_else(|| app.data_dir.join("recipes").join(""));
            app.modal = Some(Modal::Input(Input::new(
                InputKind::OpenRecipe,
                d.display().to_string(),
            )));
        }
        Action::Redraw => fx.push(Effect::Repaint),
        Action::AddModel => {
            let d = app
                .slots
                .last()
                .and_then(|s| s.info.path.parent())
                .map_or_else(
                    || format!("{}/", app.work_dir.display()),
                    |p| format!("{}/", p.display()),
                );
            app.modal = Some(Modal::Input(Input::new(InputKind::AddModel, d)));
        }
        Action::Remove => {
            if app.focus == Panel::Models {
                remove_model(app);
            } else if app.focus == Panel::Layers {
                match app.edit_scope() {
                    Some((lo, hi)) => {
                        let before = app.overrides.len();
                        app.overrides.retain(|l, _| *l < lo || *l > hi);
                        if app.overrides.len() == before {
                            app.say(Level::Info, "no overrides here");
                        } else {
                            app.say(
                                Level::Info,
                                format!("overrides of layers {lo}-{hi} removed"),
                            );
                            app.params_changed();
                        }
                    }
                    None => app.say(Level::Info, "select a layer to clear its overrides"),
                }
            } else if app.focus == Panel::Params {
                let rows = app.param_rows();
                if let Some(r) = rows.get(app.param_cursor) {
                    if app.clear_override(r) {
                        app.say(Level::Info, "override removed");
                    } else {
                        app.say(Level::Info, "no override here to remove");
                    }
                }
            }
        }
        Action::SetBase => set_role(app, Role::Base),
        Action::Exclude => {
            let cur = app.slots.get(app.model_cursor).map(|s| s.role);
            set_role(
                app,
                if cur == Some(Role::Excluded) {
                    Role::Input
                } else {
                    Role::Excluded
                },
            );
        }
        Action::ZipDepth => zip_depth(app),
        Action::RangeMark => match app
            .current_group()
            .and_then(|g| app.layers.get(g))
            .map(|l| l.group)
        {
            Some(crate::model::Group::Layer(l)) => {
                if app.range_anchor.is_some() {
                    app.range_anchor = None;
                    app.say(Level::Info, "range cleared");
                } else {
                    app.range_anchor = Some(l);
                    app.say(
                        Level::Info,
                        format!("range from layer {l}: move, then edit values"),
                    );
                }
            }
            _ => app.say(
                Level::Warn,
                "ranges are made of layers: move to a layer first",
            ),
        },
    }
}

/// `z`: make the selected layer the last one zipped into the shared trunk
/// (zipit and permute). "All layers" zips every hidden layer (-1),
/// embeddings zip nothing (0, the ensemble); on the layer that already ends
/// the trunk it steps back one, so depth 0 is reachable on models without
/// embeddings. The classifier (last layer) always stays per model.
fn zip_depth(app: &mut App) {
    if !app.zips() {
        app.say(
            Level::Info,
            format!(
                "z sets the zip depth of zipit and permute; {} has none (m changes method)",
                app.method.name()
            ),
        );
        return;
    }
    let max = app.zip_max();
    let group = app
        .current_group()
        .and_then(|g| app.layers.get(g))
        .map(|l| l.group);
    let (d, why) = match group {
        None => (-1, String::new()),
        Some(crate::model::Group::Pre) => (0, String::new()),
        Some(crate::model::Group::Post) => (-1, String::new()),
        Some(crate::model::Group::Layer(l)) if l >= max => (
            -1,
            format!("layer {l} is the classifier and stays per model; "),
        ),
        Some(crate::model::Group::Layer(l)) => {
            if app.zip_depth_eff() == l + 1 {
                (l as i64, String::new())
            } else {
                (l as i64 + 1, String::new())
            }
        }
    };
    app.set_zip_depth(d);
    let what = match d {
        -1 => format!(
            "depth -1: every hidden layer zipped (0-{})",
            max.saturating_sub(1)
        ),
        0 => "depth 0: nothing zipped (the ensemble)".to_string(),
        1 => "depth 1: layer 0 zipped, the rest per model".to_string(),
        k => format!("depth {k}: layers 0-{} zipped, the rest per model", k - 1),
    };
    let past = app.overrides_past_zip();
    if past.is_empty() {
        app.say(Level::Info, format!("{why}{what}"));
    } else {
        let ls = past
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        app.say(
            Level::Warn,
            format!("{why}{what}; layer {ls} overrides lie past it and the merge refuses them (Del clears)"),
        );
    }
}

/// Mouse (only with `--mouse`): the wheel moves, a click focuses a panel
/// and selects the row under the pointer.
fn on_mouse(app: &mut App, m: MouseEvent) {
    if app.modal.is_some() {
        return;
    }
    match m.kind {
        MouseEventKind::ScrollUp => move_cursor(app, -1),
        MouseEventKind::ScrollDown => move_cursor(app, 1),
        MouseEventKind::Down(MouseButton::Left) => click(app, m.column, m.row),
        _ => return,
    }
    app.dirty = true;
}

fn click(app: &mut App, x: u16, y: u16) {
    let (w, h) = app.size;
    if w < view::MIN_W || h < view::MIN_H {
        return;
    }
    let a = view::areas(app, Rect::new(0, 0, w, h));
    let p = Position::new(x, y);
    let (panel, r) = if a.models.contains(p) {
        (Panel::Models, a.models)
    } else if a.layers.contains(p) {
        (Panel::Layers, a.layers)
    } else if a.params.contains(p) {
        (Panel::Params, a.params)
    } else if a.agreement.contains(p) {
        (Panel::Agreement, a.agreement)
    } else {
        return;
    };
    app.focus = panel;
    // Rows start inside the border; the view scrolls to keep the cursor in
    // sight the same way, so the row under the pointer is top + offset.
    let inner_h = r.height.saturating_sub(2) as usize;
    if y <= r.y || y >= r.bottom().saturating_sub(1) {
        return;
    }
    let off = (y - r.y - 1) as usize;
    let (cur, len) = match panel {
        Panel::Models => (app.model_cursor, app.slots.len()),
        Panel::Layers => (app.layer_cursor, app.layer_lines().len()),
        Panel::Params => (app.param_cursor, app.param_rows().len()),
        Panel::Agreement => return,
    };
    let row = view::scroll(cur, inner_h) + off;
    if row < len {
        move_cursor(app, row as i64 - cur as i64);
    }
}

/// Why `r` cannot start, if it cannot.
fn run_blocker(app: &App) -> Option<String> {
    let spec = app.method.spec();
    let n = app.input_slots().len();
    if app.slots.is_empty() {
        return Some("no models loaded (a adds one)".into());
    }
    if spec.base == crate::merge::BaseRule::Required && app.base_slot().is_none() {
        return Some(format!("{} needs a base model (b sets one)", spec.name));
    }
    if n < spec.min_models {
        return Some(format!(
            "{} needs at least {} input models, has {n}",
            spec.name, spec.min_models
        ));
    }
    // Overrides nothing would read (past the last layer, past the zipped
    // ones): the recipe's own rules (`Recipe::problems_for_layers`).
    let n_layers = app
        .layers
        .iter()
        .filter(|l| matches!(l.group, crate::model::Group::Layer(_)))
        .count();
    let recipe = app.to_recipe();
    let problems = if n_layers > 0 {
        recipe.problems_for_layers(n_layers)
    } else {
        recipe.problems()
    };
    if let Some(p) = problems.iter().find(|p| p.at.starts_with("overrides")) {
        let hint = if app.zips() {
            " (Del clears, z zips deeper)"
        } else {
            " (Del clears)"
        };
        return Some(format!("{p}{hint}"));
    }
    if let Some(max) = spec.max_models {
        if n > max {
            return Some(format!(
                "{} takes at most {max} input models, has {n} (e excludes one)",
                spec.name
            ));
        }
    }
    None
}

/// `<work_dir>/<family>-<method>`, numbered if that exists.
pub fn default_out(app: &App) -> PathBuf {
    let stem = format!("{}-{}", app.family(), app.method.name());
    let mut p = app.work_dir.join(&stem);
    let mut i = 2;
    while p.exists() {
        p = app.work_dir.join(format!("{stem}-{i}"));
        i += 1;
    }
    p
}

fn move_cursor(app: &mut App, d: i64) {
    let (cur, len) = match app.focus {
        Panel::Models => (&mut app.model_cursor, app.slots.len()),
        Panel::Layers => {
            let n = app.layer_lines().len();
            (&mut app.layer_cursor, n)
        }
        Panel::Params => {
            let n = app.param_rows().len();
            (&mut app.param_cursor, n)
        }
        Panel::Agreement => return,
    };
    if len == 0 {
        *cur = 0;
        return;
    }
    *cur = (*cur as i64 + d).clamp(0, len as i64 - 1) as usize;
}

fn next_method(app: &mut App) {
    set_method(app, app.method.next());
}

fn set_method(app: &mut App, m: crate::merge::Method) {
    app.method = m;
    app.param_cursor = app
        .param_cursor
        .min(app.param_rows().len().saturating_sub(1));
    let spec = app.method.spec();
    let mut note = format!("method: {} ({})", spec.name, spec.doc);
    if let Some(p) = run_blocker(app) {
        note = format!("{note}; {p}");
    }
    app.say(Level::Info, note);
    app.params_changed();
}

fn adjust_focused(app: &mut App, dir: i32) {
    match app.focus {
        Panel::Params => {
            let rows = app.param_rows();
            let Some(row) = rows.get(app.param_cursor).cloned() else {
                return;
            };
            if row == ParamRow::Method {
                let m = if dir > 0 {
                    app.method.next()
                } else {
                    let cur = app.method;
                    crate::merge::Method::all()
                        .find(|m| m.next() == cur)
                        .unwrap_or(cur)
                };
                set_method(app, m);
                return;
            }
            let Some(spec) = app.param_spec(&row) else {
                return;
            };
            let (cur, _) = app.param_value(&row);
            let v = adjust(spec, cur.as_ref(), dir);
            app.set_param(&row, v);
        }
        Panel::Layers => {
            // Density of every input at this scope: the one knob people turn
            // most while watching the histogram.
            let spec = app.method.spec();
            let Some(ds) = spec.per_model.iter().find(|p| p.name == "density") else {
                app.say(
                    Level::Info,
                    format!("{} has no density; tune in Parameters (Tab)", spec.name),
                );
                return;
            };
            for slot in app.input_slots() {
                let row = ParamRow::PerModel {
                    slot,
                    name: "density",
                };
                let (cur, _) = app.param_value(&row);
                let v = adjust(ds, cur.as_ref(), dir);
                app.set_param(&row, v);
            }
        }
        Panel::Models => {
            // Weight of the selected model at the current scope.
            let slot = app.model_cursor;
            let spec = app.method.spec();
            match (
                app.slots.get(slot).map(|s| s.role),
                spec.per_model.iter().find(|p| p.name == "weight"),
            ) {
                (Some(Role::Input), Some(ws)) => {
                    let row = ParamRow::PerModel {
                        slot,
                        name: "weight",
                    };
                    let (cur, _) = app.param_value(&row);
                    let v = adjust(ws, cur.as_ref(), dir);
                    app.set_param(&row, v);
                }
                _ => app.say(
                    Level::Info,
                    "weights apply to input models of methods that take them",
                ),
            }
        }
        Panel::Agreement => {}
    }
}

fn enter(app: &mut App) {
    match app.focus {
        Panel::Layers => match app.current_line() {
            LayerLine::Group(g) => {
                if !app.expanded.remove(&g) {
                    app.expanded.insert(g);
                }
            }
            LayerLine::Tensor(g, _) => {
                app.expanded.remove(&g);
                // Back onto the group row that just collapsed.
                if let Some(i) = app
                    .layer_lines()
                    .iter()
                    .position(|l| *l == LayerLine::Group(g))
                {
                    app.layer_cursor = i;
                }
            }
            LayerLine::All => {}
        },
        Panel::Params => {
            let rows = app.param_rows();
            match rows.get(app.param_cursor).cloned() {
                Some(ParamRow::Method) => next_method(app),
                Some(row) => {
                    let (cur, _) = app.param_value(&row);
                    let text = cur.as_ref().map(fmt_value).unwrap_or_default();
                    app.modal = Some(Modal::Input(Input::new(InputKind::Value(row), text)));
                }
                None => {}
            }
        }
        Panel::Models => app.say(
            Level::Info,
            "b: base · e: exclude/include · x: remove · a: add · ←/→: weight",
        ),
        Panel::Agreement => {}
    }
}

fn set_role(app: &mut App, role: Role) {
    if app.focus != Panel::Models {
        app.say(
            Level::Info,
            "select a model in the Models panel first (Tab)",
        );
        return;
    }
    let i = app.model_cursor;
    if i >= app.slots.len() {
        return;
    }
    if role == Role::Base {
        for s in &mut app.slots {
            if s.role == Role::Base {
                s.role = Role::Input;
            }
        }
    }
    app.slots[i].role = role;
    let name = app.slots[i].info.name.clone();
    app.say(Level::Info, format!("{name} is now {}", role_name(role)));
    app.params_changed();
}

fn remove_model(app: &mut App) {
    let i = app.model_cursor;
    if i >= app.slots.len() {
        return;
    }
    let s = app.slots.remove(i);
    // Slot indices in overrides shift down past the removed one.
    for o in app.overrides.values_mut() {
        o.models = std::mem::take(&mut o.models)
            .into_iter()
            .filter(|(k, _)| *k != i)
            .map(|(k, v)| (if k > i { k - 1 } else { k }, v))
            .collect();
    }
    app.overrides.retain(|_, o| !o.is_empty());
    for o in &mut app.group_overrides {
        o.models = std::mem::take(&mut o.models)
            .into_iter()
            .filter(|(k, _)| *k != i)
            .map(|(k, v)| (if k > i { k - 1 } else { k }, v))
            .collect();
    }
    app.model_cursor = app.model_cursor.min(app.slots.len().saturating_sub(1));
    app.say(Level::Info, format!("removed {}", s.info.name));
    app.params_changed();
}

fn on_input_key(app: &mut App, mut input: Input, k: KeyEvent, fx: &mut Vec<Effect>) {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match k.code {
        KeyCode::Esc => {
            app.say(Level::Info, "cancelled");
            return;
        }
        KeyCode::Char('c') if ctrl => return,
        KeyCode::Char('u') if ctrl => {
            input.text.clear();
            input.cursor = 0;
        }
        KeyCode::Enter => {
            submit(app, input, fx);
            return;
        }
        KeyCode::Tab => {
            if matches!(input.kind, InputKind::Value(_) | InputKind::OutputFolder) {
                // Output folders complete too: handy to pick a parent.
                if matches!(input.kind, InputKind::Value(_)) {
                    app.modal = Some(Modal::Input(input));
                    return;
                }
            }
            let (text, cands) = complete_path(&input.text);
            input.cursor = text.chars().count();
            input.text = text;
            input.completions = cands;
        }
        KeyCode::Backspace if input.cursor > 0 => {
            let at = byte_at(&input.text, input.cursor - 1);
            input.text.remove(at);
            input.cursor -= 1;
        }
        KeyCode::Delete if input.cursor < input.text.chars().count() => {
            let at = byte_at(&input.text, input.cursor);
            input.text.remove(at);
        }
        KeyCode::Left => input.cursor = input.cursor.saturating_sub(1),
        KeyCode::Right => input.cursor = (input.cursor + 1).min(input.text.chars().count()),
        KeyCode::Home => input.cursor = 0,
        KeyCode::End => input.cursor = input.text.chars().count(),
        KeyCode::Char(c) if !ctrl => {
            let at = byte_at(&input.text, input.cursor);
            input.text.insert(at, c);
            input.cursor += 1;
            input.completions.clear();
        }
        _ => {}
    }
    app.modal = Some(Modal::Input(input));
}

fn byte_at(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

fn expand_home(text: &str) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/") {
        if let Some(h) = directories::BaseDirs::new() {
            return h.home_dir().join(rest);
        }
    }
    PathBuf::from(text)
}

fn submit(app: &mut App, input: Input, fx: &mut Vec<Effect>) {
    let text = input.text.trim().to_string();
    match input.kind.clone() {
        InputKind::Value(row) => {
            let Some(spec) = app.param_spec(&row) else {
                return;
            };
            match parse_value(spec, &text) {
                Ok(v) => app.set_param(&row, v),
                Err(e) => {
                    app.say(Level::Error, e);
                    app.modal = Some(Modal::Input(input));
                }
            }
        }
        _ if text.is_empty() => app.say(Level::Warn, "no path given"),
        InputKind::OutputFolder => {
            let out = expand_home(&text);
            if out.exists() {
                app.say(
                    Level::Error,
                    format!("{} exists; pick a new folder", out.display()),
                );
                app.modal = Some(Modal::Input(input));
                return;
            }
            app.merge = MergeState::started(out.clone());
            app.accuracy = AccuracyState::None;
            app.say(Level::Info, format!("merging into {}", out.display()));
            fx.push(Effect::StartMerge {
                recipe: app.to_recipe(),
                out,
            });
        }
        InputKind::SaveRecipe => fx.push(Effect::Save {
            recipe: app.to_recipe(),
            path: expand_home(&text),
        }),
        InputKind::OpenRecipe => fx.push(Effect::Open(expand_home(&text))),
        InputKind::AddModel => fx.push(Effect::AddModel(expand_home(&text))),
    }
}

/// Complete a path prefix: the longest common extension of every entry that
/// starts with it (folders get a trailing `/`), and the candidates' names.
pub fn complete_path(text: &str) -> (String, Vec<String>) {
    let path = expand_home(text);
    let (dir, prefix) = if text.ends_with('/') || text.is_empty() {
        (
            if text.is_empty() {
                PathBuf::from(".")
            } else {
                path.clone()
            },
            String::new(),
        )
    } else {
        (
            path.parent().map_or_else(
                || PathBuf::from("."),
                |p| {
                    if p.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        p.to_path_buf()
                    }
                },
            ),
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        )
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return (text.to_string(), Vec::new());
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with(&prefix) || (n.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir()) || e.path().is_dir();
            Some(if is_dir { format!("{n}/") } else { n })
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return (text.to_string(), names);
    }
    let mut common = names[0].clone();
    for n in &names[1..] {
        let l = common
            .chars()
            .zip(n.chars())
            .take_while(|(a, b)| a == b)
            .count();
        common = common.chars().take(l).collect();
    }
    let head = &text[..text.len() - text.rsplit('/').next().map_or(0, str::len)];
    let completed = format!("{head}{common}");
    (completed, if names.len() > 1 { names } else { Vec::new() })
}

/// Whether the path looks like a recipe for mergekit (YAML) rather than TOML.
pub fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

/// Values as they will be saved: for tests and the help text.
pub fn describe(v: &Option<Value>) -> String {
    v.as_ref().map_or_else(|| "required".into(), fmt_value)
}
