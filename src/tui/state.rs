//! The workbench's state: plain data, no terminal, no engine handles.
//!
//! Everything the views draw comes from here, and everything the user does
//! changes it only through [`super::update::update`]. Models appear as
//! [`ModelInfo`] summaries (the open `Model`s live in the job layer), so the
//! state can be built by hand in tests and snapshots.

use crate::analysis::Stats;
use crate::engine::Summary;
use crate::eval::EvalReport;
use crate::merge::{Method, ParamKind, ParamSpec, ParamValue};
use crate::model::{Dtype, Group};
use crate::recipe::{ModelEntry, Override, OverrideScope, Recipe, Slice, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// A loaded model, as the UI shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    /// Most common dtype of its tensors (`"BF16"`).
    pub dtype: String,
    pub params: u64,
    pub shards: usize,
    pub layers: usize,
}

/// One tensor row under an expanded layer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRow {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// A layer group of the (base or first) model.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRow {
    pub group: Group,
    pub params: u64,
    pub tensors: Vec<TensorRow>,
}

/// What a model does in the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Base,
    Input,
    /// Loaded but left out of the recipe.
    Excluded,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelSlot {
    pub info: ModelInfo,
    pub role: Role,
    /// The model's own recipe parameters (weight, density, ...).
    pub params: BTreeMap<String, Value>,
}

pub use crate::analysis::Target;

/// Per-layer overrides as the UI keeps them: one entry per layer, per-model
/// values keyed by slot index. Turned into [`Override`] ranges on export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerOverride {
    pub params: BTreeMap<String, Value>,
    pub models: BTreeMap<usize, BTreeMap<String, Value>>,
}

impl LayerOverride {
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.models.values().all(BTreeMap::is_empty)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Models,
    Layers,
    Params,
    Agreement,
}

impl Panel {
    pub const ALL: [Panel; 4] = [
        Panel::Models,
        Panel::Layers,
        Panel::Params,
        Panel::Agreement,
    ];
    pub fn next(self) -> Panel {
        let i = Panel::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Panel::ALL[(i + 1) % Panel::ALL.len()]
    }
    pub fn prev(self) -> Panel {
        let i = Panel::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Panel::ALL[(i + Panel::ALL.len() - 1) % Panel::ALL.len()]
    }
}

/// The background merge, as the status panel shows it.
#[derive(Clone, Debug)]
pub enum MergeState {
    Idle,
    Running {
        out: PathBuf,
        tensors: usize,
        tensors_done: usize,
        bytes_done: u64,
        bytes_total: u64,
        current: String,
        elapsed: Duration,
        cancelling: bool,
    },
    Done(Summary),
    Failed(String),
}

impl MergeState {
    /// A merge into `out` that has just been started: nothing reported yet.
    pub fn started(out: PathBuf) -> MergeState {
        MergeState::Running {
            out,
            tensors: 0,
            tensors_done: 0,
            bytes_done: 0,
            bytes_total: 0,
            current: String::new(),
            elapsed: Duration::ZERO,
            cancelling: false,
        }
    }
}

/// Accuracy of a merged MLP beside each input's own, on the test split.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// The merge output the report is about.
    pub out: PathBuf,
    pub merged: Result<EvalReport, String>,
    /// Each input model (by name) evaluated alone.
    pub inputs: Vec<(String, Result<EvalReport, String>)>,
}

/// Evaluation after a merge (MLP outputs only).
#[derive(Clone, Debug, PartialEq)]
pub enum AccuracyState {
    None,
    /// Evaluating the output in this folder.
    Running(PathBuf),
    Done(Accuracy),
}

/// Global parameters that never take per-layer overrides (the engine reads
/// them from the recipe's own values only).
pub const GLOBAL_ONLY: &[&str] = &["depth"];

/// What a text prompt is for.
#[derive(Clone, Debug, PartialEq)]
pub enum InputKind {
    /// Output folder for `r`.
    OutputFolder,
    SaveRecipe,
    OpenRecipe,
    AddModel,
    /// A new value for the focused parameter row.
    Value(ParamRow),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub kind: InputKind,
    pub text: String,
    /// Cursor position in chars.
    pub cursor: usize,
    /// Candidates from the last Tab, shown under the prompt.
    pub completions: Vec<String>,
}

impl Input {
    pub fn new(kind: InputKind, text: String) -> Input {
        let cursor = text.chars().count();
        Input {
            kind,
            text,
            cursor,
            completions: Vec::new(),
        }
    }
    pub fn title(&self) -> String {
        match &self.kind {
            InputKind::OutputFolder => "Run merge into folder".into(),
            InputKind::SaveRecipe => "Save recipe to (.toml, or .yaml for mergekit)".into(),
            InputKind::OpenRecipe => "Open recipe".into(),
            InputKind::AddModel => "Add model (folder or .safetensors)".into(),
            InputKind::Value(_) => "New value".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Modal {
    Help,
    ConfirmQuit,
    Input(Input),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// One editable row of the Parameters panel.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamRow {
    Method,
    Global(&'static str),
    /// A per-model parameter of slot `slot`.
    PerModel {
        slot: usize,
        name: &'static str,
    },
}

/// One row of the Layers panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerLine {
    /// The whole model: edits go to the recipe's own values.
    All,
    Group(usize),
    Tensor(usize, usize),
}

/// The whole UI state.
#[derive(Clone, Debug)]
pub struct App {
    pub method: Method,
    pub slots: Vec<ModelSlot>,
    /// Recipe-wide parameters.
    pub global: BTreeMap<String, Value>,
    /// Per-layer overrides, by layer index.
    pub overrides: BTreeMap<usize, LayerOverride>,
    /// Recipe fields the UI does not edit but must keep.
    pub slices: Vec<Slice>,
    /// Overrides of the embeddings / head groups, as loaded (model keys
    /// are slot indices, like [`LayerOverride::models`]).
    pub group_overrides: Vec<Override>,
    pub out_dtype: Option<Dtype>,
    pub seed: Option<u64>,
    pub calibration: Option<PathBuf>,
    /// Layer groups of the base (or first) model.
    pub layers: Vec<LayerRow>,
    pub expanded: BTreeSet<usize>,
    pub focus: Panel,
    pub model_cursor: usize,
    pub layer_cursor: usize,
    pub param_cursor: usize,
    /// First layer of a range selection (`v`), by layer index.
    pub range_anchor: Option<usize>,
    /// Bumped on every change to the recipe (triggers new requests).
    pub gen: u64,
    /// Latest statistics per target, with the key of the inputs they were
    /// computed from (see [`App::stats_key`]).
    pub stats: HashMap<Target, (String, Result<Stats, String>)>,
    /// Sampled estimates for big tensors, shown until the exact result for
    /// the same key arrives.
    pub previews: HashMap<Target, (String, Stats)>,
    pub merge: MergeState,
    /// Accuracy of the last merge's output, when it is an MLP.
    pub accuracy: AccuracyState,
    pub modal: Option<Modal>,
    pub message: Option<(Level, String)>,
    /// Where the recipe was loaded from or last saved to.
    pub recipe_path: Option<PathBuf>,
    /// The recipe as last loaded or saved, to mark unsaved changes.
    pub saved: Option<Recipe>,
    /// Default folder for saved recipes (user data dir or SMELT_DATA_DIR).
    pub data_dir: PathBuf,
    /// Folder that default output paths are made in.
    pub work_dir: PathBuf,
    pub ascii: bool,
    /// Terminal size, for mapping mouse clicks to panels.
    pub size: (u16, u16),
    pub dirty: bool,
    pub quit: bool,
}

impl App {
    pub fn new(data_dir: PathBuf, work_dir: PathBuf) -> App {
        App {
            method: Method::Ties,
            slots: Vec::new(),
            global: BTreeMap::new(),
            overrides: BTreeMap::new(),
            slices: Vec::new(),
            group_overrides: Vec::new(),
            out_dtype: None,
            seed: None,
            calibration: None,
            layers: Vec::new(),
            expanded: BTreeSet::new(),
            focus: Panel::Layers,
            model_cursor: 0,
            layer_cursor: 0,
            param_cursor: 0,
            range_anchor: None,
            gen: 0,
            stats: HashMap::new(),
            previews: HashMap::new(),
            merge: MergeState::Idle,
            accuracy: AccuracyState::None,
            modal: None,
            message: None,
            recipe_path: None,
            saved: None,
            data_dir,
            work_dir,
            ascii: false,
            size: (80, 24),
            dirty: true,
            quit: false,
        }
    }

    pub fn base_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.role == Role::Base)
    }
    pub fn input_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].role == Role::Input)
            .collect()
    }

    /// Install a recipe and its models' summaries (`infos[i]` for each path
    /// the recipe names, base first when it has one) and the layer table.
    pub fn load_recipe(&mut self, recipe: &Recipe, infos: Vec<ModelInfo>, layers: Vec<LayerRow>) {
        self.method = recipe.method;
        self.global = recipe.params.clone();
        self.slices = recipe.slices.clone();
        self.out_dtype = recipe.out_dtype;
        self.seed = recipe.seed;
        self.calibration = recipe.calibration.clone();
        let info_for = |p: &PathBuf| {
            infos
                .iter()
                .find(|i| &i.path == p)
                .cloned()
                .unwrap_or_else(|| ModelInfo {
                    name: p
                        .file_name()
                        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
                    path: p.clone(),
                    dtype: "?".into(),
                    params: 0,
                    shards: 0,
                    layers: 0,
                })
        };
        self.slots.clear();
        if let Some(b) = &recipe.base {
            self.slots.push(ModelSlot {
                info: info_for(b),
                role: Role::Base,
                params: BTreeMap::new(),
            });
        }
        let offset = self.slots.len();
        for m in &recipe.models {
            self.slots.push(ModelSlot {
                info: info_for(&m.path),
                role: Role::Input,
                params: m.params.clone(),
            });
        }
        self.overrides.clear();
        self.group_overrides.clear();
        for o in &recipe.overrides {
            // Group overrides (embeddings, head) are kept, not edited.
            let OverrideScope::Layers(lo, hi) = o.scope else {
                self.group_overrides.push(Override {
                    scope: o.scope,
                    params: o.params.clone(),
                    models: o
                        .models
                        .iter()
                        .map(|(mi, p)| (mi + offset, p.clone()))
                        .collect(),
                });
                continue;
            };
            for l in lo..=hi {
                let e = self.overrides.entry(l).or_default();
                e.params.extend(o.params.clone());
                for (mi, p) in &o.models {
                    e.models.entry(mi + offset).or_default().extend(p.clone());
                }
            }
        }
        self.layers = layers;
        self.expanded.clear();
        self.layer_cursor = 0;
        self.model_cursor = 0;
        self.param_cursor = 0;
        self.range_anchor = None;
        self.stats.clear();
        self.previews.clear();
        self.saved = Some(self.to_recipe());
        self.gen += 1;
        self.dirty = true;
    }

    /// The recipe this state stands for: exactly what `r` runs and `s` saves.
    pub fn to_recipe(&self) -> Recipe {
        let base = self.base_slot().map(|i| self.slots[i].info.path.clone());
        let inputs = self.input_slots();
        let mut r = Recipe::new(self.method, base, Vec::new());
        r.models = inputs
            .iter()
            .map(|&i| ModelEntry {
                path: self.slots[i].info.path.clone(),
                params: self.slots[i].params.clone(),
            })
            .collect();
        r.params = self.global.clone();
        r.slices = self.slices.clone();
        r.out_dtype = self.out_dtype;
        r.seed = self.seed;
        r.calibration = self.calibration.clone();
        // Per-layer entries, remapped to recipe model indices, coalesced into
        // ranges of consecutive layers with identical values.
        let mut out: Vec<Override> = Vec::new();
        for (&l, o) in &self.overrides {
            let mut models = BTreeMap::new();
            for (slot, p) in &o.models {
                if let Some(k) = inputs.iter().position(|i| i == slot) {
                    if !p.is_empty() {
                        models.insert(k, p.clone());
                    }
                }
            }
            if o.params.is_empty() && models.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(Override {
                    scope: OverrideScope::Layers(_, hi),
                    params,
                    models: m,
                }) if *hi + 1 == l && *params == o.params && *m == models => {
                    *hi = l;
                }
                _ => out.push(Override {
                    scope: OverrideScope::Layers(l, l),
                    params: o.params.clone(),
                    models,
                }),
            }
        }
        for o in &self.group_overrides {
            let models: BTreeMap<usize, BTreeMap<String, Value>> = o
                .models
                .iter()
                .filter_map(|(slot, p)| {
                    let k = inputs.iter().position(|i| i == slot)?;
                    (!p.is_empty()).then(|| (k, p.clone()))
                })
                .collect();
            if !o.params.is_empty() || !models.is_empty() {
                out.push(Override {
                    scope: o.scope,
                    params: o.params.clone(),
                    models,
                });
            }
        }
        r.overrides = out;
        r
    }

    /// Rows of the Layers panel in display order.
    pub fn layer_lines(&self) -> Vec<LayerLine> {
        let mut v = vec![LayerLine::All];
        for (gi, l) in self.layers.iter().enumerate() {
            v.push(LayerLine::Group(gi));
            if self.expanded.contains(&gi) {
                v.extend((0..l.tensors.len()).map(|ti| LayerLine::Tensor(gi, ti)));
            }
        }
        v
    }

    pub fn current_line(&self) -> LayerLine {
        let lines = self.layer_lines();
        lines
            .get(self.layer_cursor)
            .copied()
            .unwrap_or(LayerLine::All)
    }

    /// The group the cursor is on (a tensor's group for tensor rows).
    pub fn current_group(&self) -> Option<usize> {
        match self.current_line() {
            LayerLine::All => None,
            LayerLine::Group(g) | LayerLine::Tensor(g, _) => Some(g),
        }
    }

    /// What the Sign agreement panel shows.
    pub fn current_target(&self) -> Option<Target> {
        match self.current_line() {
            LayerLine::All => None,
            LayerLine::Group(g) => self.layers.get(g).map(|l| Target::Group(l.group)),
            LayerLine::Tensor(g, t) => self
                .layers
                .get(g)
                .and_then(|l| l.tensors.get(t))
                .map(|t| Target::Tensor(t.name.clone())),
        }
    }

    /// Which layers an edit applies to: `None` for the recipe's own values
    /// (the "All layers" row, or embeddings/head, which overrides cannot
    /// address), else an inclusive range of layer indices.
    pub fn edit_scope(&self) -> Option<(usize, usize)> {
        let g = self.current_group()?;
        let Group::Layer(l) = self.layers.get(g)?.group else {
            return None;
        };
        match self.range_anchor {
            Some(a) => Some((a.min(l), a.max(l))),
            None => Some((l, l)),
        }
    }

    /// Rows of the Parameters panel for the current method and models.
    pub fn param_rows(&self) -> Vec<ParamRow> {
        let spec = self.method.spec();
        let mut rows = vec![ParamRow::Method];
        rows.extend(spec.global.iter().map(|p| ParamRow::Global(p.name)));
        for slot in self.input_slots() {
            rows.extend(
                spec.per_model
                    .iter()
                    .map(|p| ParamRow::PerModel { slot, name: p.name }),
            );
        }
        rows
    }

    pub fn param_spec(&self, row: &ParamRow) -> Option<&'static ParamSpec> {
        let spec = self.method.spec();
        match row {
            ParamRow::Method => None,
            ParamRow::Global(n) => spec.global.iter().find(|p| p.name == *n),
            ParamRow::PerModel { name, .. } => spec.per_model.iter().find(|p| p.name == *name),
        }
    }

    /// The value a row has at the current edit scope, and whether it comes
    /// from a per-layer override. `None`: not set and no default (required).
    pub fn param_value(&self, row: &ParamRow) -> (Option<Value>, bool) {
        self.value_at(row, self.edit_scope().map(|(lo, _)| lo))
    }

    /// A row's value at layer `layer` (`None`: the recipe's own value).
    pub fn value_at(&self, row: &ParamRow, layer: Option<usize>) -> (Option<Value>, bool) {
        let layer = layer.filter(|_| !is_global_only(row));
        let over = layer.and_then(|l| self.overrides.get(&l));
        let (from_over, own) = match row {
            ParamRow::Method => return (None, false),
            ParamRow::Global(n) => (
                over.and_then(|o| o.params.get(*n)).cloned(),
                self.global.get(*n).cloned(),
            ),
            ParamRow::PerModel { slot, name } => (
                over.and_then(|o| o.models.get(slot))
                    .and_then(|m| m.get(*name))
                    .cloned(),
                self.slots
                    .get(*slot)
                    .and_then(|s| s.params.get(*name))
                    .or_else(|| self.global.get(*name))
                    .cloned(),
            ),
        };
        if let Some(v) = from_over {
            return (Some(v), true);
        }
        if let Some(v) = own {
            return (Some(v), false);
        }
        let default = self
            .param_spec(row)
            .and_then(|s| s.default)
            .map(|d| match d {
                ParamValue::Bool(b) => Value::Bool(b),
                ParamValue::Float(x) => Value::Number(x),
            });
        (default, false)
    }

    /// Set a row's value at the current edit scope.
    pub fn set_param(&mut self, row: &ParamRow, v: Value) {
        let scope = self.edit_scope().filter(|_| !is_global_only(row));
        match scope {
            None => match row {
                ParamRow::Method => {}
                ParamRow::Global(n) => {
                    self.global.insert((*n).to_string(), v);
                }
                ParamRow::PerModel { slot, name } => {
                    if let Some(s) = self.slots.get_mut(*slot) {
                        s.params.insert((*name).to_string(), v);
                    }
                }
            },
            Some((lo, hi)) => {
                for l in lo..=hi {
                    let o = self.overrides.entry(l).or_default();
                    match row {
                        ParamRow::Method => {}
                        ParamRow::Global(n) => {
                            o.params.insert((*n).to_string(), v.clone());
                        }
                        ParamRow::PerModel { slot, name } => {
                            o.models
                                .entry(*slot)
                                .or_default()
                                .insert((*name).to_string(), v.clone());
                        }
                    }
                }
            }
        }
        self.params_changed();
    }

    /// Remove the current scope's overrides of `row`.
    pub fn clear_override(&mut self, row: &ParamRow) -> bool {
        let Some((lo, hi)) = self.edit_scope() else {
            return false;
        };
        let mut any = false;
        for l in lo..=hi {
            if let Some(o) = self.overrides.get_mut(&l) {
                any |= match row {
                    ParamRow::Method => false,
                    ParamRow::Global(n) => o.params.remove(*n).is_some(),
                    ParamRow::PerModel { slot, name } => o
                        .models
                        .get_mut(slot)
                        .and_then(|m| m.remove(*name))
                        .is_some(),
                };
                if o.is_empty() {
                    self.overrides.remove(&l);
                }
            }
        }
        if any {
            self.params_changed();
        }
        any
    }

    /// Whether the method zips layers into a shared trunk (`depth` applies).
    pub fn zips(&self) -> bool {
        matches!(self.method, Method::Zipit | Method::Permute)
    }

    /// Layers that can be zipped: every layer but the last (the classifier,
    /// which stays per model).
    pub fn zip_max(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l.group, Group::Layer(_)))
            .count()
            .saturating_sub(1)
    }

    /// The zip depth as written in the recipe (-1: every hidden layer).
    pub fn zip_depth(&self) -> i64 {
        match self.global.get("depth") {
            Some(Value::Number(x)) => *x as i64,
            _ => -1,
        }
    }

    /// How many layers form the shared trunk.
    pub fn zip_depth_eff(&self) -> usize {
        usize::try_from(self.zip_depth()).unwrap_or_else(|_| self.zip_max())
    }

    /// Whether layer `l` is zipped into the shared trunk.
    pub fn zipped(&self, l: usize) -> bool {
        l < self.zip_depth_eff()
    }

    /// Set the zip depth (-1: every hidden layer).
    pub fn set_zip_depth(&mut self, d: i64) {
        self.global.insert("depth".into(), Value::Number(d as f64));
        self.params_changed();
    }

    /// Layers with overrides past the zipped trunk: the engine refuses
    /// those (per-layer alpha/beta only exist where layers are zipped).
    pub fn overrides_past_zip(&self) -> Vec<usize> {
        let limit = self.zip_depth_eff().max(1);
        self.overrides
            .iter()
            .filter(|(l, o)| **l >= limit && !o.is_empty())
            .map(|(l, _)| *l)
            .collect()
    }

    /// Whether a layer group has overrides of its own.
    pub fn has_override(&self, g: usize) -> bool {
        match self.layers.get(g).map(|l| l.group) {
            Some(Group::Layer(l)) => self.overrides.get(&l).is_some_and(|o| !o.is_empty()),
            _ => false,
        }
    }

    /// Statistics changed meaning: older results become stale.
    pub fn params_changed(&mut self) {
        self.gen += 1;
        self.dirty = true;
    }

    /// A preview for the target's current inputs, if one is held.
    pub fn preview_for(&self, t: &Target) -> Option<&Stats> {
        self.previews
            .get(t)
            .filter(|(k, _)| *k == self.stats_key(t))
            .map(|(_, s)| s)
    }

    /// What a target's statistics depend on: the method, the models, and
    /// each input's density and weight as written for the target's layer
    /// (overrides, own values, gradients and filters as given: equal text
    /// resolves equally). Results computed under another key are stale, so
    /// changing one layer recomputes that layer only, and going back to
    /// earlier values makes earlier results current again.
    pub fn stats_key(&self, t: &Target) -> String {
        let group = match t {
            Target::Group(g) => Some(*g),
            Target::Tensor(n) => self
                .layers
                .iter()
                .find(|l| l.tensors.iter().any(|x| &x.name == n))
                .map(|l| l.group),
        };
        let layer = match group {
            Some(Group::Layer(l)) => Some(l),
            _ => None,
        };
        let base = self.base_slot().map(|i| &self.slots[i].info.path);
        let inputs: Vec<_> = self
            .input_slots()
            .into_iter()
            .map(|slot| {
                let d = self
                    .value_at(
                        &ParamRow::PerModel {
                            slot,
                            name: "density",
                        },
                        layer,
                    )
                    .0;
                let w = self
                    .value_at(
                        &ParamRow::PerModel {
                            slot,
                            name: "weight",
                        },
                        layer,
                    )
                    .0;
                (&self.slots[slot].info.path, d, w)
            })
            .collect();
        format!("{}|{base:?}|{inputs:?}", self.method.name())
    }

    /// Statistics for a target, and whether they are current.
    pub fn stats_for(&self, t: &Target) -> Option<(&Result<Stats, String>, bool)> {
        self.stats.get(t).map(|(k, s)| (s, *k == self.stats_key(t)))
    }

    /// Targets whose statistics are missing or stale, with their current
    /// keys: the selected one first, then every layer group (for the
    /// gauges), then the tensors of expanded layers.
    pub fn wanted_targets(&self) -> Vec<(Target, String)> {
        let mut v: Vec<(Target, String)> = Vec::new();
        let stale = |t: &Target| {
            let key = self.stats_key(t);
            self.stats
                .get(t)
                .is_none_or(|(k, _)| *k != key)
                .then_some(key)
        };
        let mut all: Vec<Target> = self.current_target().into_iter().collect();
        all.extend(self.layers.iter().map(|l| Target::Group(l.group)));
        // Tensors of expanded layers, for their rows' gauges.
        for &g in &self.expanded {
            for tr in self.layers.get(g).map_or(&[][..], |l| &l.tensors[..]) {
                all.push(Target::Tensor(tr.name.clone()));
            }
        }
        for t in all {
            if v.iter().any(|(x, _)| *x == t) {
                continue;
            }
            if let Some(key) = stale(&t) {
                v.push((t, key));
            }
        }
        v
    }

    /// Whether analysis can run at all (it needs a base and an input).
    pub fn analysis_blocked(&self) -> Option<&'static str> {
        if self.zips() && self.base_slot().is_none() {
            Some("no base model, so no task vectors to compare: ZipIt! and permute match features instead")
        } else if self.base_slot().is_none() {
            Some("no base model: task vectors need one (select a model, press b)")
        } else if self.input_slots().is_empty() {
            Some("no input models to compare")
        } else {
            None
        }
    }

    pub fn say(&mut self, level: Level, msg: impl Into<String>) {
        self.message = Some((level, msg.into()));
        self.dirty = true;
    }

    /// Whether the recipe differs from the one last opened or saved.
    pub fn modified(&self) -> bool {
        self.saved.as_ref().is_none_or(|r| *r != self.to_recipe())
    }

    pub fn merge_running(&self) -> bool {
        matches!(self.merge, MergeState::Running { .. })
    }

    /// A family name for default file names: the base's (or first model's)
    /// parent folder, e.g. `llama-synthetic`.
    pub fn family(&self) -> String {
        let slot = self
            .base_slot()
            .or(if self.slots.is_empty() { None } else { Some(0) });
        slot.and_then(|i| {
            let p = &self.slots[i].info.path;
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|s| !s.is_empty() && s != ".")
        .unwrap_or_else(|| "merge".into())
    }
}

fn is_global_only(row: &ParamRow) -> bool {
    matches!(row, ParamRow::Global(n) if GLOBAL_ONLY.contains(n))
}

/// Format a value for display.
pub fn fmt_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(x) => fmt_num(*x),
        Value::Gradient(g) => format!(
            "[{}]",
            g.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(",")
        ),
        Value::Filtered(_) => "filtered".into(),
    }
}

pub fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.0e}")
    } else {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0');
        s.trim_end_matches('.').to_string()
    }
}

/// The step `←`/`→` changes a parameter by.
pub fn step_for(spec: &ParamSpec) -> f64 {
    match (spec.kind, spec.name) {
        (ParamKind::Int, _) => 1.0,
        (_, "gamma") => 0.01,
        (_, "epsilon") => 0.01,
        _ => 0.05,
    }
}

/// `v` moved by `dir` steps and kept inside the parameter's range. Values
/// are rounded to 4 decimals so repeated steps save as `0.3`, not
/// `0.30000000000000004`.
pub fn adjust(spec: &ParamSpec, v: Option<&Value>, dir: i32) -> Value {
    if spec.kind == ParamKind::Bool {
        let cur = match v {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(x)) => *x != 0.0,
            _ => false,
        };
        return Value::Bool(!cur);
    }
    let cur = match v {
        Some(Value::Number(x)) => *x,
        Some(Value::Gradient(g)) => g.first().copied().unwrap_or(0.0),
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        _ => match spec.name {
            "weight" => 1.0,
            "t" => 0.5,
            _ => 0.0,
        },
    };
    // Multiplicative for tiny tolerances (eps, tol): additive steps would
    // jump straight past them.
    let mut x = if matches!(spec.name, "eps" | "tol") {
        if dir > 0 {
            cur * 10.0
        } else {
            cur / 10.0
        }
    } else {
        cur + f64::from(dir) * step_for(spec)
    };
    if let Some((lo, lo_inc, hi, hi_inc)) = spec.range {
        let step = step_for(spec);
        let min = if lo_inc { lo } else { lo + step.min(0.01) };
        let max = if hi_inc { hi } else { hi - step.min(0.01) };
        x = x.clamp(min, max);
    }
    if spec.name == "t" {
        x = x.clamp(0.0, 1.0);
    }
    if spec.name == "depth" {
        // -1 already means every hidden layer.
        x = x.max(-1.0);
    }
    if !matches!(spec.name, "eps" | "tol") {
        x = (x * 1e4).round() / 1e4;
    }
    Value::Number(x)
}

/// Parse typed text as a value of a parameter's kind.
pub fn parse_value(spec: &ParamSpec, text: &str) -> Result<Value, String> {
    let t = text.trim();
    match spec.kind {
        ParamKind::Bool => match t {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("{}: expected true or false, got `{t}`", spec.name)),
        },
        _ => {
            let x: f64 = t
                .parse()
                .map_err(|_| format!("{}: expected a number, got `{t}`", spec.name))?;
            if !x.is_finite() {
                return Err(format!("{}: must be finite", spec.name));
            }
            if let Some((lo, lo_inc, hi, hi_inc)) = spec.range {
                let ok = (if lo_inc { x >= lo } else { x > lo })
                    && (if hi_inc { x <= hi } else { x < hi });
                if !ok {
                    return Err(format!(
                        "{}: {x} is outside {}{lo}, {hi}{}",
                        spec.name,
                        if lo_inc { "[" } else { "(" },
                        if hi_inc { "]" } else { ")" }
                    ));
                }
            }
            if spec.name == "depth" && x < -1.0 {
                return Err(format!("depth: -1 (every hidden layer) or more, got `{t}`"));
            }
            if spec.kind == ParamKind::Int && x.fract() != 0.0 {
                return Err(format!("{}: expected a whole number, got `{t}`", spec.name));
            }
            Ok(Value::Number(x))
        }
    }
}
