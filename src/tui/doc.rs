//! The recipe being edited, as the workbench holds it.
//!
//! A [`Doc`] is everything an undo step restores: the method, every loaded
//! model with its role and own values, recipe-wide values, per-layer and
//! per-group overrides, the recipe fields the workbench does not edit, the
//! layer table, and the values a method switch set aside. It is plain data
//! (cloning it is the undo snapshot) and knows nothing of the terminal.
//!
//! [`Doc::to_recipe`] is exactly what `r` runs and `s` saves. Every check
//! of it goes through [`Recipe::problems`], the code `smelt recipe check`
//! runs, and [`Doc::problems`] places each problem on the row it concerns.

use crate::merge::{BaseRule, Method, ParamSpec, ParamValue};
use crate::model::{Dtype, Group};
use crate::recipe::{Dropped, ModelEntry, Override, OverrideScope, Recipe, Slice, Table, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A loaded model, as the UI shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The model's name (its folder's).
    pub name: String,
    /// Its path as the recipe gives it.
    pub path: PathBuf,
    /// Most common dtype of its tensors (`"BF16"`).
    pub dtype: String,
    /// Elements over every tensor.
    pub params: u64,
    /// Shard files.
    pub shards: usize,
    /// Layers the catalogue found.
    pub layers: usize,
}

impl ModelInfo {
    /// A summary for a model that could not be read (never shown for long:
    /// opening a recipe reads every model first).
    pub fn unknown(path: &Path) -> ModelInfo {
        ModelInfo {
            name: display_name(path),
            path: path.to_path_buf(),
            dtype: "?".into(),
            params: 0,
            shards: 0,
            layers: 0,
        }
    }
}

/// The name a model is shown by: its folder's (or file's) name.
pub fn display_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
}

/// One tensor row under an expanded layer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRow {
    /// The tensor's full name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype's name.
    pub dtype: String,
}

/// A layer group of the models (they all share it: a model that does not
/// fit is refused).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRow {
    /// Which group.
    pub group: Group,
    /// Elements over its tensors.
    pub params: u64,
    /// Its tensors, shown when the group is expanded.
    pub tensors: Vec<TensorRow>,
}

/// What a model does in the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The base: task vectors are taken against it. For a method that takes
    /// no base it stays loaded as the *reference* of the statistics and is
    /// not merged (shown as `ref`), so switching back restores it.
    Base,
    /// Merged into the output.
    Input,
    /// Loaded but left out of the recipe.
    Excluded,
}

/// A loaded model and what it does in the recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// What the Models panel shows of it.
    pub info: ModelInfo,
    /// Base, input or left out.
    pub role: Role,
    /// The model's own recipe values (weight, density, ...).
    pub params: BTreeMap<String, Value>,
}

/// Where an override applies: one numbered layer, or a pre/post group.
/// Ordered as the Layers panel lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The embeddings (`pre`).
    Embeddings,
    /// A numbered layer.
    Layer(usize),
    /// The final norm and head (`post`).
    Head,
}

impl Scope {
    /// The scope of a layer group.
    pub fn of(g: Group) -> Scope {
        match g {
            Group::Pre => Scope::Embeddings,
            Group::Layer(n) => Scope::Layer(n),
            Group::Post => Scope::Head,
        }
    }
    /// The layer group of a scope.
    pub fn group(self) -> Group {
        match self {
            Scope::Embeddings => Group::Pre,
            Scope::Layer(n) => Group::Layer(n),
            Scope::Head => Group::Post,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.group().fmt(f)
    }
}

/// The values one scope overrides: method-wide names, and per model (by
/// path, so removing or reordering models never moves a value to another
/// model).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerOverride {
    /// Method-wide values for the scope.
    pub params: BTreeMap<String, Value>,
    /// Per-model values for the scope, by model path.
    pub models: BTreeMap<PathBuf, BTreeMap<String, Value>>,
}

impl LayerOverride {
    /// Whether the override sets nothing.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.models.values().all(BTreeMap::is_empty)
    }
}

/// Where a value sits in the document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// The recipe's own `[parameters]`.
    Global,
    /// A model's own parameters.
    Model(PathBuf),
    /// A scope's method-wide values.
    Scope(Scope),
    /// A scope's values for one model.
    ScopeModel(Scope, PathBuf),
}

/// A value a method switch set aside, restored when a method that takes it
/// comes back.
#[derive(Clone, Debug, PartialEq)]
pub struct Stashed {
    /// Where it was.
    pub place: Place,
    /// The parameter's name.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// One value a method switch moved: its name and value as shown.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    /// The parameter's name.
    pub name: String,
    /// Its value, formatted.
    pub value: String,
}

/// What a method switch did, for the status line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SwitchNote {
    /// Values set aside.
    pub dropped: Vec<Moved>,
    /// Values set aside earlier and now back.
    pub restored: Vec<Moved>,
    /// Required values that were missing, with mergekit's defaults.
    pub added: Vec<Moved>,
    /// A base chosen for a method that needs one.
    pub base: Option<String>,
}

/// `density ×3, lambda`: moved values by name only (see [`summarize`]).
pub fn summarize_names(v: &[Moved]) -> String {
    let mut names: Vec<(&str, usize)> = Vec::new();
    for m in v {
        match names.iter_mut().find(|(n, _)| *n == m.name) {
            Some((_, k)) => *k += 1,
            None => names.push((&m.name, 1)),
        }
    }
    names
        .iter()
        .map(|(n, k)| {
            if *k == 1 {
                n.to_string()
            } else {
                format!("{n} ×{k}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `density ×3 (0.3), lambda 1.2`: moved values by name, with the value
/// when all agree.
pub fn summarize(v: &[Moved]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for m in v {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    names
        .iter()
        .map(|n| {
            let vals: Vec<&str> = v
                .iter()
                .filter(|m| m.name == *n)
                .map(|m| m.value.as_str())
                .collect();
            let same = vals.iter().all(|x| *x == vals[0]);
            match (vals.len(), same) {
                (1, _) => format!("{n} {}", vals[0]),
                (k, true) => format!("{n} ×{k} ({})", vals[0]),
                (k, false) => format!("{n} ×{k}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Models whose names (their folders' names) are the same get as many
/// of the folders above as tell them apart, after the name (which stays
/// first, as narrow columns cut the end): `ft-broad (work)`,
/// `ft-broad (llama-synthetic)`. No two rows read alike.
fn distinguish(slots: &mut [Slot]) {
    for i in 0..slots.len() {
        let same: Vec<usize> = (0..slots.len())
            .filter(|&j| slots[j].info.name == slots[i].info.name)
            .collect();
        if same.len() < 2 {
            continue;
        }
        let parts = |j: usize| -> Vec<String> {
            slots[j]
                .info
                .path
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        };
        let all: Vec<Vec<String>> = same.iter().map(|&j| parts(j)).collect();
        let longest = all.iter().map(Vec::len).max().unwrap_or(1);
        // The fewest trailing folders that make every name differ.
        let tail = |p: &[String], k: usize| p[p.len().saturating_sub(k)..].join("/");
        let named = |p: &[String], k: usize| {
            let above = &p[p.len().saturating_sub(k)..p.len().saturating_sub(1)];
            format!(
                "{} ({})",
                p.last().map_or("", String::as_str),
                above.join("/")
            )
        };
        let k = (2..=longest)
            .find(|&k| {
                let names: std::collections::BTreeSet<String> =
                    all.iter().map(|p| tail(p, k)).collect();
                names.len() == all.len()
            })
            .unwrap_or(longest);
        for (&j, p) in same.iter().zip(&all) {
            slots[j].info.name = named(p, k);
        }
    }
}

/// Global parameters that never take per-layer overrides (the engine reads
/// them from the recipe's own values only).
pub const GLOBAL_ONLY: &[&str] = &["depth"];

/// The edited recipe. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// The merge method.
    pub method: Method,
    /// The loaded models, base first.
    pub slots: Vec<Slot>,
    /// Recipe-wide values (`[parameters]`).
    pub global: BTreeMap<String, Value>,
    /// Per-layer (and pre/post) values.
    pub overrides: BTreeMap<Scope, LayerOverride>,
    /// Recipe fields the workbench shows but does not edit.
    pub slices: Vec<Slice>,
    /// Summaries of the models the slices name (shown, not edited).
    pub slice_infos: Vec<ModelInfo>,
    /// The output dtype (`None`: the base's).
    pub out_dtype: Option<Dtype>,
    /// The seed of random methods.
    pub seed: Option<u64>,
    /// Calibration data (zipit and permute).
    pub calibration: Option<PathBuf>,
    /// The recipe's tokenizer settings (kept as loaded, not edited here).
    pub tokenizer: Option<crate::recipe::TokenizerSpec>,
    /// The recipe's chat template (kept as loaded, not edited here).
    pub chat_template: Option<String>,
    /// The models' layer groups.
    pub layers: Vec<LayerRow>,
    /// Values set aside by method switches.
    pub stash: Vec<Stashed>,
    /// The seed a method switch set aside.
    pub stashed_seed: Option<u64>,
    /// The calibration data a method switch set aside.
    pub stashed_calibration: Option<PathBuf>,
}

/// One value that differs between two documents: where (`lambda`,
/// `weight · ft0 at layer 3`) and what it is in the second (None: not set
/// there, so inherited or the default).
#[derive(Clone, Debug, PartialEq)]
pub struct Changed {
    /// The value's name, its model and scope.
    pub label: String,
    /// Its value in the second document.
    pub now: Option<Value>,
}

impl Doc {
    /// The recipe values (recipe-wide, per model, per layer) that differ
    /// from `self` in `to`, in the Parameters panel's order; and the
    /// method, when it differs. What an undo says it brought back.
    pub fn value_changes(&self, to: &Doc) -> Vec<Changed> {
        fn diff(
            out: &mut Vec<Changed>,
            a: Option<&BTreeMap<String, Value>>,
            b: Option<&BTreeMap<String, Value>>,
            label: &dyn Fn(&str) -> String,
        ) {
            let empty = BTreeMap::new();
            let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
            let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for n in names {
                if a.get(n) != b.get(n) {
                    out.push(Changed {
                        label: label(n),
                        now: b.get(n).cloned(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        if self.method != to.method {
            out.push(Changed {
                label: "method".into(),
                now: None,
            });
        }
        let name_of = |p: &Path| {
            to.slots
                .iter()
                .chain(&self.slots)
                .find(|s| s.info.path == p)
                .map_or_else(|| display_name(p), |s| s.info.name.clone())
        };
        diff(&mut out, Some(&self.global), Some(&to.global), &|n| {
            n.to_string()
        });
        let paths: Vec<&PathBuf> = {
            let mut v: Vec<&PathBuf> = to.slots.iter().map(|s| &s.info.path).collect();
            v.extend(
                self.slots
                    .iter()
                    .map(|s| &s.info.path)
                    .filter(|p| !to.slots.iter().any(|s| &s.info.path == *p)),
            );
            v
        };
        fn params_of<'d>(d: &'d Doc, p: &Path) -> Option<&'d BTreeMap<String, Value>> {
            d.slots.iter().find(|s| s.info.path == p).map(|s| &s.params)
        }
        for p in &paths {
            if let (Some(a), Some(b)) = (params_of(self, p), params_of(to, p)) {
                let m = name_of(p);
                diff(&mut out, Some(a), Some(b), &|n| format!("{n} · {m}"));
            }
        }
        let scopes: std::collections::BTreeSet<&Scope> =
            self.overrides.keys().chain(to.overrides.keys()).collect();
        for sc in scopes {
            let (a, b) = (self.overrides.get(sc), to.overrides.get(sc));
            diff(&mut out, a.map(|o| &o.params), b.map(|o| &o.params), &|n| {
                format!("{n} at {sc}")
            });
            let models: std::collections::BTreeSet<&PathBuf> = a
                .iter()
                .chain(b.iter())
                .flat_map(|o| o.models.keys())
                .collect();
            for p in models {
                let m = name_of(p);
                diff(
                    &mut out,
                    a.and_then(|o| o.models.get(p)),
                    b.and_then(|o| o.models.get(p)),
                    &|n| format!("{n} · {m} at {sc}"),
                );
            }
        }
        out
    }
}

impl Default for Doc {
    fn default() -> Doc {
        Doc {
            method: Method::Ties,
            slots: Vec::new(),
            global: BTreeMap::new(),
            overrides: BTreeMap::new(),
            slices: Vec::new(),
            slice_infos: Vec::new(),
            out_dtype: None,
            seed: None,
            calibration: None,
            tokenizer: None,
            chat_template: None,
            layers: Vec::new(),
            stash: Vec::new(),
            stashed_seed: None,
            stashed_calibration: None,
        }
    }
}

impl Doc {
    /// The document for a recipe, given its models' summaries (matched by
    /// path) and the layer table.
    pub fn from_recipe(recipe: &Recipe, infos: &[ModelInfo], layers: Vec<LayerRow>) -> Doc {
        let info_for = |p: &PathBuf| {
            infos
                .iter()
                .find(|i| &i.path == p)
                .cloned()
                .unwrap_or_else(|| ModelInfo::unknown(p))
        };
        let mut slots = Vec::new();
        if let Some(b) = &recipe.base {
            slots.push(Slot {
                info: info_for(b),
                role: Role::Base,
                params: BTreeMap::new(),
            });
        }
        for m in &recipe.models {
            slots.push(Slot {
                info: info_for(&m.path),
                role: Role::Input,
                params: m.params.clone(),
            });
        }
        let mut overrides: BTreeMap<Scope, LayerOverride> = BTreeMap::new();
        for o in &recipe.overrides {
            for scope in scopes_of(o.scope) {
                let e = overrides.entry(scope).or_default();
                e.params.extend(o.params.clone());
                for (mi, p) in &o.models {
                    if let Some(m) = recipe.models.get(*mi) {
                        e.models
                            .entry(m.path.clone())
                            .or_default()
                            .extend(p.clone());
                    }
                }
            }
        }
        distinguish(&mut slots);
        let mut slice_infos: Vec<ModelInfo> = Vec::new();
        for s in &recipe.slices {
            for p in s.base.iter().chain(s.sources.iter().map(|x| &x.model)) {
                if !slots.iter().any(|x| &x.info.path == p)
                    && !slice_infos.iter().any(|x| &x.path == p)
                {
                    slice_infos.push(info_for(p));
                }
            }
        }
        Doc {
            method: recipe.method,
            slots,
            slice_infos,
            global: recipe.params.clone(),
            overrides,
            slices: recipe.slices.clone(),
            out_dtype: recipe.out_dtype,
            seed: recipe.seed,
            calibration: recipe.calibration.clone(),
            tokenizer: recipe.tokenizer.clone(),
            chat_template: recipe.chat_template.clone(),
            layers,
            stash: Vec::new(),
            stashed_seed: None,
            stashed_calibration: None,
        }
    }

    /// The base model's slot, if one is loaded as base.
    pub fn base_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.role == Role::Base)
    }

    /// The base as the recipe has it: none for methods that take none.
    pub fn recipe_base(&self) -> Option<usize> {
        self.base_slot()
            .filter(|_| self.method.spec().base != BaseRule::None)
    }

    /// The slots merged as inputs, in order.
    pub fn input_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].role == Role::Input)
            .collect()
    }

    /// The models the recipe's slices name, beside the slots.
    pub fn slice_models(&self) -> Vec<&ModelInfo> {
        self.slice_infos
            .iter()
            .filter(|i| {
                self.slices.iter().any(|s| {
                    s.base.as_ref() == Some(&i.path) || s.sources.iter().any(|x| x.model == i.path)
                })
            })
            .collect()
    }

    /// Rows of the Models panel: the slots, then the slices' models.
    pub fn model_rows(&self) -> usize {
        self.slots.len() + self.slice_models().len()
    }

    /// The slot of the model at `path`.
    pub fn slot_of(&self, path: &Path) -> Option<usize> {
        self.slots.iter().position(|s| s.info.path == path)
    }

    /// The recipe: exactly what `r` runs and `s` saves.
    pub fn to_recipe(&self) -> Recipe {
        self.recipe_over(&self.input_slots())
    }

    /// The recipe with `members` (slot indices) as its models, in order.
    fn recipe_over(&self, members: &[usize]) -> Recipe {
        let base = self.recipe_base().map(|i| self.slots[i].info.path.clone());
        let mut r = Recipe::new(self.method, base, Vec::new());
        r.models = members
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
        r.tokenizer = self.tokenizer.clone();
        r.chat_template = self.chat_template.clone();
        // Per-scope entries, per-model values mapped to recipe indices.
        // Layer values are written as runs: each value over the longest
        // stretch of consecutive layers that has it, and runs over the
        // same layers share one override. Overrides may overlap (a later
        // one wins value by value, as `Recipe::resolve` reads them; runs
        // of one value never overlap), so a range edit with a one-layer
        // edit inside it saves as two overrides, not three each repeating
        // the range's values.
        let index_of = |p: &PathBuf| members.iter().position(|&i| &self.slots[i].info.path == p);
        type Key = (Option<usize>, String);
        let mut runs: BTreeMap<Key, Vec<(usize, usize, Value)>> = BTreeMap::new();
        let mut ends: Vec<Override> = Vec::new();
        for (&scope, o) in &self.overrides {
            let mut models: BTreeMap<usize, BTreeMap<String, Value>> = BTreeMap::new();
            for (path, p) in &o.models {
                if let Some(k) = index_of(path) {
                    if !p.is_empty() {
                        models.insert(k, p.clone());
                    }
                }
            }
            let recipe_scope = match scope {
                Scope::Embeddings => OverrideScope::Embeddings,
                Scope::Head => OverrideScope::Head,
                Scope::Layer(l) => {
                    let values = o.params.iter().map(|(n, v)| ((None, n), v)).chain(
                        models
                            .iter()
                            .flat_map(|(k, p)| p.iter().map(|(n, v)| ((Some(*k), n), v))),
                    );
                    for ((slot, name), v) in values {
                        let list = runs.entry((slot, name.clone())).or_default();
                        match list.last_mut() {
                            Some((_, hi, last)) if *hi + 1 == l && last == v => *hi = l,
                            _ => list.push((l, l, v.clone())),
                        }
                    }
                    continue;
                }
            };
            if !o.params.is_empty() || !models.is_empty() {
                ends.push(Override {
                    scope: recipe_scope,
                    params: o.params.clone(),
                    models,
                });
            }
        }
        let mut layers: BTreeMap<(usize, usize), Override> = BTreeMap::new();
        for ((slot, name), list) in runs {
            for (lo, hi, v) in list {
                let o = layers.entry((lo, hi)).or_insert_with(|| Override {
                    scope: OverrideScope::Layers(lo, hi),
                    params: BTreeMap::new(),
                    models: BTreeMap::new(),
                });
                match slot {
                    None => o.params.insert(name.clone(), v),
                    Some(k) => o.models.entry(k).or_default().insert(name.clone(), v),
                };
            }
        }
        // The embeddings first and the head last, as the layers lie.
        let (pre, post): (Vec<Override>, Vec<Override>) = ends
            .into_iter()
            .partition(|o| o.scope == OverrideScope::Embeddings);
        let out: Vec<Override> = pre
            .into_iter()
            .chain(layers.into_values())
            .chain(post)
            .collect();
        r.overrides = out;
        r
    }

    /// Number of numbered layers.
    pub fn n_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l.group, Group::Layer(_)))
            .count()
    }

    // ------------------------------------------------------------ values

    /// The spec of a method parameter by name (method-wide or per model).
    pub fn spec_of(&self, name: &str) -> Option<&'static ParamSpec> {
        let spec = self.method.spec();
        spec.global
            .iter()
            .chain(spec.per_model)
            .find(|p| p.name == name)
    }

    /// A value as written at `scope` (`None`: the recipe's own values):
    /// the scope's override, else the model's own value, else the recipe's,
    /// else the method's default. `from` says which applied. `model` is a slot for per-model names.
    pub fn value_at(&self, name: &str, model: Option<usize>, scope: Option<Scope>) -> Lookup {
        let scope = scope.filter(|_| !GLOBAL_ONLY.contains(&name));
        let path = model.and_then(|m| self.slots.get(m)).map(|s| &s.info.path);
        if let Some(o) = scope.and_then(|s| self.overrides.get(&s)) {
            let v = path
                .and_then(|p| o.models.get(p))
                .and_then(|m| m.get(name))
                .or_else(|| o.params.get(name));
            if let Some(v) = v {
                return Lookup {
                    value: Some(v.clone()),
                    from: Source::Override,
                };
            }
        }
        if let Some(v) = model
            .and_then(|m| self.slots.get(m))
            .and_then(|s| s.params.get(name))
        {
            return Lookup {
                value: Some(v.clone()),
                from: Source::Model,
            };
        }
        if let Some(v) = self.global.get(name) {
            return Lookup {
                value: Some(v.clone()),
                from: Source::Recipe,
            };
        }
        let default = self.spec_of(name).and_then(|s| s.default).map(from_param);
        Lookup {
            from: if default.is_some() {
                Source::Default
            } else {
                Source::Missing
            },
            value: default,
        }
    }

    /// Write `v` for `name` at a place (nothing for a model that is not
    /// loaded, or an override of one).
    pub fn set(&mut self, place: &Place, name: &str, v: Value) {
        if let Some(t) = self.table_mut(place) {
            t.insert(name.to_string(), v);
        }
    }

    /// Remove `name` at a place; the value that was there.
    pub fn remove(&mut self, place: &Place, name: &str) -> Option<Value> {
        let v = self.table_mut(place)?.remove(name);
        for o in self.overrides.values_mut() {
            o.models.retain(|_, m| !m.is_empty());
        }
        self.overrides.retain(|_, o| !o.is_empty());
        v
    }

    /// The value of `name` set exactly at `place` (no fallback).
    pub fn get(&self, place: &Place, name: &str) -> Option<&Value> {
        match place {
            Place::Global => self.global.get(name),
            Place::Model(p) => self.slot_of(p).and_then(|i| self.slots[i].params.get(name)),
            Place::Scope(s) => self.overrides.get(s).and_then(|o| o.params.get(name)),
            Place::ScopeModel(s, p) => self
                .overrides
                .get(s)
                .and_then(|o| o.models.get(p))
                .and_then(|m| m.get(name)),
        }
    }

    fn table_mut(&mut self, place: &Place) -> Option<&mut BTreeMap<String, Value>> {
        let loaded = |p: &PathBuf| self.slots.iter().position(|s| &s.info.path == p);
        match place {
            Place::Global => Some(&mut self.global),
            Place::Model(p) => {
                let i = loaded(p)?;
                Some(&mut self.slots[i].params)
            }
            Place::Scope(s) => Some(&mut self.overrides.entry(*s).or_default().params),
            Place::ScopeModel(s, p) => {
                loaded(p)?;
                Some(
                    self.overrides
                        .entry(*s)
                        .or_default()
                        .models
                        .entry(p.clone())
                        .or_default(),
                )
            }
        }
    }

    /// Scopes with values of their own.
    pub fn has_override(&self, s: Scope) -> bool {
        self.overrides.get(&s).is_some_and(|o| !o.is_empty())
    }

    // ------------------------------------------------------------ models

    /// Add a model: the layer table's source if it is the first, the base
    /// if the method needs one and there is none, else an input with
    /// mergekit's usual weight of 1.0.
    pub fn add_model(&mut self, info: ModelInfo, layers: Vec<LayerRow>) -> Role {
        let needs_base = self.method.spec().base == BaseRule::Required;
        let role = if needs_base && self.base_slot().is_none() && self.input_slots().is_empty() {
            Role::Base
        } else {
            Role::Input
        };
        if self.layers.is_empty() {
            self.layers = layers;
        }
        self.slots.push(Slot {
            info,
            role,
            params: BTreeMap::new(),
        });
        if role == Role::Input {
            self.fill_required(self.slots.len() - 1);
        }
        distinguish(&mut self.slots);
        role
    }

    /// Give slot `i` the per-model values the method requires and nothing
    /// else provides, at mergekit's usual value (a weight of 1.0): a model
    /// that becomes an input is never left without one.
    fn fill_required(&mut self, i: usize) {
        let spec = self.method.spec();
        for p in spec.per_model.iter().filter(|p| p.default.is_none()) {
            let given =
                self.global.contains_key(p.name) || self.slots[i].params.contains_key(p.name);
            if !given && p.name == "weight" {
                self.slots[i]
                    .params
                    .insert(p.name.to_string(), Value::Number(1.0));
            }
        }
    }

    /// Remove slot `i` and every value that belongs to it.
    pub fn remove_model(&mut self, i: usize) -> Option<Slot> {
        if i >= self.slots.len() {
            return None;
        }
        let s = self.slots.remove(i);
        for o in self.overrides.values_mut() {
            o.models.remove(&s.info.path);
        }
        self.overrides.retain(|_, o| !o.is_empty());
        self.stash.retain(|x| match &x.place {
            Place::Model(p) | Place::ScopeModel(_, p) => *p != s.info.path,
            _ => true,
        });
        if self.slots.is_empty() {
            self.layers.clear();
        }
        Some(s)
    }

    /// Give slot `i` a role (a new base makes the old one an input). A
    /// model that becomes an input gets the values it needs (a weight).
    pub fn set_role(&mut self, i: usize, role: Role) {
        if i >= self.slots.len() {
            return;
        }
        if role == Role::Base {
            for j in 0..self.slots.len() {
                if self.slots[j].role == Role::Base {
                    self.slots[j].role = Role::Input;
                    self.fill_required(j);
                }
            }
        }
        self.slots[i].role = role;
        if role == Role::Input {
            self.fill_required(i);
        }
    }

    // ------------------------------------------------------------ methods

    /// Switch method, translating the recipe (see [`Recipe::with_method`]):
    /// values the new method takes stay, the rest are set aside in the
    /// stash (and come back with a method that takes them), missing
    /// required values get mergekit's defaults. Every loaded model's values
    /// are translated, excluded ones too. The base stays loaded: a method
    /// without one shows it as the statistics' reference; a method that
    /// needs one and has none gets the model named like a base, if any.
    pub fn switch_method(&mut self, to: Method) -> SwitchNote {
        let mut note = SwitchNote::default();
        // Translate with every non-base model as a member, so excluded
        // models' values follow too.
        let members: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].role != Role::Base)
            .collect();
        let mut before = self.recipe_over(&members);
        // The base is the doc's business (see above), not the translation's.
        before.base = self.base_slot().map(|i| self.slots[i].info.path.clone());
        let switched = before.with_method(to);
        let paths: Vec<PathBuf> = members
            .iter()
            .map(|&i| self.slots[i].info.path.clone())
            .collect();
        let r = &switched.recipe;
        for d in &switched.dropped {
            match d {
                Dropped::Param { table, name, value } => {
                    for place in places(table, r, &before, &paths) {
                        note.dropped.push(Moved {
                            name: name.clone(),
                            value: fmt_value(value),
                        });
                        self.stash
                            .retain(|s| !(s.place == place && s.name == *name));
                        self.stash.push(Stashed {
                            place,
                            name: name.clone(),
                            value: value.clone(),
                        });
                    }
                }
                Dropped::Seed(s) => {
                    note.dropped.push(Moved {
                        name: "seed".into(),
                        value: s.to_string(),
                    });
                    self.stashed_seed = Some(*s);
                }
                Dropped::Calibration(p) => {
                    note.dropped.push(Moved {
                        name: "calibration".into(),
                        value: display_name(p),
                    });
                    self.stashed_calibration = Some(p.clone());
                }
                Dropped::Base(_) => {}
            }
        }
        // Install the translated values.
        self.method = to;
        self.global = r.params.clone();
        for (k, &i) in members.iter().enumerate() {
            if let Some(m) = r.models.get(k) {
                self.slots[i].params = m.params.clone();
            }
        }
        let mut overrides: BTreeMap<Scope, LayerOverride> = BTreeMap::new();
        for o in &r.overrides {
            for scope in scopes_of(o.scope) {
                let e = overrides.entry(scope).or_default();
                e.params.extend(o.params.clone());
                for (k, p) in &o.models {
                    if let Some(path) = paths.get(*k) {
                        e.models.entry(path.clone()).or_default().extend(p.clone());
                    }
                }
            }
        }
        self.overrides = overrides;
        self.slices = r.slices.clone();
        self.seed = r.seed;
        self.calibration = r.calibration.clone();
        let added: Vec<(Place, String, Value)> = switched
            .added
            .iter()
            .flat_map(|a| {
                places(&a.table, r, r, &paths)
                    .into_iter()
                    .map(|p| (p, a.name.clone(), a.value.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Values set aside earlier that this method takes come back,
        // replacing defaults added just now.
        let spec = to.spec();
        let takes = |place: &Place, name: &str| {
            let per_model = spec.per_model.iter().any(|p| p.name == name);
            let global = spec.global.iter().any(|p| p.name == name);
            match place {
                Place::Global | Place::Scope(_) => per_model || global,
                Place::Model(_) | Place::ScopeModel(..) => per_model,
            }
        };
        let mut keep = Vec::new();
        let mut back: Vec<(Place, String)> = Vec::new();
        for s in std::mem::take(&mut self.stash) {
            let alive = match &s.place {
                Place::Model(p) | Place::ScopeModel(_, p) => self.slot_of(p).is_some(),
                _ => true,
            };
            if alive && takes(&s.place, &s.name) {
                note.restored.push(Moved {
                    name: s.name.clone(),
                    value: fmt_value(&s.value),
                });
                back.push((s.place.clone(), s.name.clone()));
                self.set(&s.place, &s.name, s.value);
            } else if alive {
                keep.push(s);
            }
        }
        self.stash = keep;
        for (place, name, v) in added {
            // A value back from the stash is not also "added".
            let restored = back.iter().any(|(p, n)| *p == place && *n == name);
            if !restored && self.get(&place, &name) == Some(&v) {
                note.added.push(Moved {
                    name,
                    value: fmt_value(&v),
                });
            }
        }
        if to.draws_random() && self.seed.is_none() {
            if let Some(s) = self.stashed_seed.take() {
                note.restored.push(Moved {
                    name: "seed".into(),
                    value: s.to_string(),
                });
                self.seed = Some(s);
            }
        }
        if matches!(to, Method::Zipit | Method::Permute) && self.calibration.is_none() {
            if let Some(c) = self.stashed_calibration.take() {
                note.restored.push(Moved {
                    name: "calibration".into(),
                    value: display_name(&c),
                });
                self.calibration = Some(c);
            }
        }
        if spec.base == BaseRule::Required && self.base_slot().is_none() {
            let named = self
                .slots
                .iter()
                .position(|s| s.info.name.to_ascii_lowercase().contains("base"));
            if let Some(i) = named {
                self.slots[i].role = Role::Base;
                note.base = Some(self.slots[i].info.name.clone());
            }
        }
        note
    }

    // ------------------------------------------------------------ zip depth

    /// Whether the method zips layers into a shared trunk (`depth` applies).
    pub fn zips(&self) -> bool {
        matches!(self.method, Method::Zipit | Method::Permute)
    }

    /// Layers that can be zipped: every layer but the last (the classifier,
    /// which stays per model).
    pub fn zip_max(&self) -> usize {
        self.n_layers().saturating_sub(1)
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
}

/// How a looked-up value was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From a layer override.
    Override,
    /// From the model's own values.
    Model,
    /// From the recipe's `[parameters]`.
    Recipe,
    /// The method's default.
    Default,
    /// Required and not set.
    Missing,
}

/// A looked-up value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    /// The value, if any.
    pub value: Option<Value>,
    /// Where it came from.
    pub from: Source,
}

/// The document places a recipe table stands for (`members` are the
/// recipe's models' paths; `r` the recipe the table belongs to, for the
/// scope of an override).
fn places(table: &Table, r: &Recipe, old: &Recipe, members: &[PathBuf]) -> Vec<Place> {
    let override_scope = |i: usize| {
        r.overrides
            .get(i)
            .or_else(|| old.overrides.get(i))
            .map(|o| scopes_of(o.scope))
            .unwrap_or_default()
    };
    match table {
        Table::Global => vec![Place::Global],
        Table::Model(i) => members
            .get(*i)
            .cloned()
            .map(Place::Model)
            .into_iter()
            .collect(),
        Table::Override(i) => override_scope(*i).into_iter().map(Place::Scope).collect(),
        Table::OverrideModel(i, m) => match members.get(*m) {
            Some(p) => override_scope(*i)
                .into_iter()
                .map(|s| Place::ScopeModel(s, p.clone()))
                .collect(),
            None => Vec::new(),
        },
        // Slices are kept as they are read; their values are not stashed.
        Table::Slice(_) | Table::SliceSource(..) => Vec::new(),
    }
}

/// The workbench scopes an override covers.
pub fn scopes_of(s: OverrideScope) -> Vec<Scope> {
    match s {
        OverrideScope::Layers(a, b) => (a..=b).map(Scope::Layer).collect(),
        OverrideScope::Embeddings => vec![Scope::Embeddings],
        OverrideScope::Head => vec![Scope::Head],
    }
}

/// A method default as a recipe value.
pub fn from_param(d: ParamValue) -> Value {
    match d {
        ParamValue::Bool(b) => Value::Bool(b),
        ParamValue::Float(x) => Value::Number(x),
    }
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

/// A value in a few columns (the Models panel): gradients as the range
/// they span (their lowest and highest points: between points they are
/// linear), filters as `[f]`.
pub fn fmt_short(v: &Value) -> String {
    match v {
        Value::Gradient(g) if g.len() > 1 => {
            let lo = g.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{}..{}", fmt_num(lo), fmt_num(hi))
        }
        Value::Filtered(_) => "[f]".into(),
        other => fmt_value(other),
    }
}

/// A number in a few columns: up to three decimals, trailing zeros
/// dropped, exponent notation when very small or very large.
pub fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.0e}")
    } else {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0');
        s.trim_end_matches('.').to_string()
    }
}

/// Where a recipe problem is shown.
#[derive(Clone, Debug, PartialEq)]
pub enum Spot {
    /// The method row (and problems about the recipe as a whole).
    Method,
    /// The base model row.
    Base,
    /// The seed row.
    Seed,
    /// The calibration row.
    Calibration,
    /// The slices row.
    Slices,
    /// The model list as a whole (counts).
    Models,
    /// One model's row.
    Slot(usize),
    /// One value's row.
    Value(Place, String),
    /// A layer or group row.
    Scope(Scope),
}

/// A problem of the recipe, placed on the workbench.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    /// Where the workbench shows it (several rows may).
    pub spots: Vec<Spot>,
    /// The recipe location and message, as `smelt recipe check` says it.
    pub text: String,
}

impl Doc {
    /// Every problem [`Recipe::problems`] finds in [`Doc::to_recipe`], each
    /// with the rows it concerns.
    pub fn problems(&self) -> Vec<Issue> {
        let r = self.to_recipe();
        let inputs = self.input_slots();
        let mut out: Vec<Issue> = Vec::new();
        if self.slots.is_empty() && self.slices.is_empty() {
            out.push(Issue {
                spots: vec![Spot::Models],
                text: "no models loaded (a adds one, o opens a recipe)".into(),
            });
            return out;
        }
        let found = if self.layers.is_empty() {
            r.problems()
        } else {
            r.problems_for_layers(self.n_layers())
        };
        for p in found {
            out.push(Issue {
                spots: self.spots(&p.at, &r, &inputs),
                text: format!("{}: {}", p.at, p.msg),
            });
        }
        out
    }

    fn spots(&self, at: &str, r: &Recipe, inputs: &[usize]) -> Vec<Spot> {
        let (head, rest) = split_at_head(at);
        let index = |h: &str, key: &str| -> Option<usize> {
            h.strip_prefix(key)?
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse()
                .ok()
        };
        let param = |rest: &str| -> Option<String> {
            rest.strip_prefix("parameters.")
                .map(|n| n.split('.').next().unwrap_or(n).to_string())
        };
        match head {
            "method" | "parameters" if rest.is_empty() => return vec![Spot::Method],
            "base" => return vec![Spot::Base],
            "seed" => return vec![Spot::Seed],
            "calibration" => return vec![Spot::Calibration],
            "models" => return vec![Spot::Models],
            "parameters" => {
                return vec![Spot::Value(Place::Global, rest.to_string())];
            }
            _ => {}
        }
        if let Some(i) = index(head, "models") {
            let Some(&slot) = inputs.get(i) else {
                return vec![Spot::Models];
            };
            return match param(rest) {
                Some(n) => vec![
                    Spot::Slot(slot),
                    Spot::Value(Place::Model(self.slots[slot].info.path.clone()), n),
                ],
                None => vec![Spot::Slot(slot)],
            };
        }
        if let Some(i) = index(head, "overrides") {
            let scopes = r
                .overrides
                .get(i)
                .map(|o| scopes_of(o.scope))
                .unwrap_or_default();
            let mut v: Vec<Spot> = scopes.iter().map(|s| Spot::Scope(*s)).collect();
            if let Some(n) = param(rest) {
                v.extend(
                    scopes
                        .iter()
                        .map(|s| Spot::Value(Place::Scope(*s), n.clone())),
                );
            } else if let Some(m) = rest.strip_prefix("models.") {
                let mut it = m.splitn(2, '.');
                let k: Option<usize> = it.next().and_then(|k| k.parse().ok());
                let name = it.next().map(str::to_string);
                if let (Some(k), Some(name)) = (k, name) {
                    if let Some(&slot) = inputs.get(k) {
                        let path = self.slots[slot].info.path.clone();
                        v.extend(scopes.iter().map(|s| {
                            Spot::Value(Place::ScopeModel(*s, path.clone()), name.clone())
                        }));
                    }
                }
            }
            return v;
        }
        if head.starts_with("slices") {
            return vec![Spot::Slices];
        }
        vec![Spot::Method]
    }
}

/// `models[1].parameters.density` → (`models[1]`, `parameters.density`).
fn split_at_head(at: &str) -> (&str, &str) {
    match at.find('.') {
        Some(i) => (&at[..i], &at[i + 1..]),
        None => (at, ""),
    }
}
