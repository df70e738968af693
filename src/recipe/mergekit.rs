//! mergekit YAML: import (`load` on `.yml`/`.yaml`) and export.
//!
//! Keys mergekit's `MergeConfiguration` accepts, and what happens to them:
//! - `merge_method`, `base_model`, `models[].model`, `models[].parameters`,
//!   `parameters`, `slices[].sources[].{model, layer_range, parameters}`,
//!   `slices[].base_model`, `slices[].parameters`, `out_dtype`: kept.
//! - `dtype` (the compute dtype): ignored; smelt always computes in f32 and
//!   writes `dtype: float32` on export so mergekit computes the same way.
//! - `tokenizer_source`, `tokenizer` (`source`, `tokens`,
//!   `pad_to_multiple_of`), `chat_template`: kept (see [`crate::tokenizer`]);
//!   `model:PATH` is read as PATH and written as PATH, as mergekit 0.1.5
//!   reads it.
//! - `slices[].residual_weight`: ignored; mergekit itself never reads it.
//! - `name`: ignored here; in a multi-document file it names the document
//!   (see [`super::multi`]).
//! - `modules`: rejected (multi-module merges are not supported).
//! - `smelt`: smelt's own extension, `{seed, calibration}`; pydantic (and so
//!   mergekit) ignores keys it does not know, so exported files stay valid.
//!
//! Any other key is an error, with a did-you-mean.

use super::node::{Kind, Node};
use super::toml::{entries, list, method, source, string, uint};
use super::util::{
    absolute, dtype_name, parse_dtype, parse_params, relative_to, resolve_path, unknown_key_msg,
    Diag,
};
use super::{check::same, ModelEntry, Recipe, RecipeError, Slice, Value};
use crate::merge::{BaseRule, Method, ParamKind, ParamValue};
use crate::model::{Dtype, Group};
use serde_yaml_ng::{Mapping, Value as Y};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TOP_KEYS: &[&str] = &[
    "merge_method",
    "base_model",
    "models",
    "slices",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "tokenizer",
    "chat_template",
    "name",
    "modules",
    "smelt",
];
const MODEL_KEYS: &[&str] = &["model", "parameters"];
const SLICE_KEYS: &[&str] = &["sources", "base_model", "parameters", "residual_weight"];
const SMELT_KEYS: &[&str] = &["seed", "calibration"];

/// Build a recipe from a parsed mergekit document.
pub(crate) fn from_node(root: &Node, dir: &Path, diag: &mut Diag) -> Option<Recipe> {
    let mut r = Recipe::new(Method::Linear, None, Vec::new());
    let mut method_v = None;
    let mut saw_method = false;
    let mut compute_dtype = None;
    let mut base_line = 0;
    // Model entries with the line of each, before the base is taken out.
    let mut models: Vec<(ModelEntry, usize, String)> = Vec::new();
    let top = entries(root, "recipe", diag);
    // A mergekit-moe recipe (`experts`, no `merge_method`) is not a merge:
    // said once, rather than as a list of unknown keys.
    let has = |k: &str| {
        top.iter()
            .find(|(key, ..)| key == k)
            .map(|(_, line, _)| *line)
    };
    if let (Some(line), None) = (has("experts"), has("merge_method")) {
        diag.err(
            line,
            "this is a mergekit-moe recipe (it lists `experts`), not a merge: build it with \
             `smelt moe RECIPE --out OUT`",
        );
        return None;
    }
    for (key, line, v) in top {
        match key.as_str() {
            "merge_method" => {
                diag.mark("method", *line);
                saw_method = true;
                method_v = method(v, "merge_method", diag);
            }
            "base_model" => {
                diag.mark("base", *line);
                base_line = *line;
                r.base = string(v, "base_model", diag).map(|s| resolve_path(dir, &s));
            }
            "parameters" => r.params = parse_params(v, "parameters", diag),
            "out_dtype" => {
                diag.mark("out_dtype", *line);
                r.out_dtype = out_dtype(v, "out_dtype", diag);
            }
            "tokenizer_source" => super::toml::set_tokenizer(
                &mut r,
                super::vocab::read_source(v, dir, diag),
                *line,
                diag,
            ),
            "tokenizer" => super::toml::set_tokenizer(
                &mut r,
                super::vocab::read_block(v, dir, diag),
                *line,
                diag,
            ),
            "chat_template" => {
                diag.mark("chat_template", *line);
                r.chat_template = super::vocab::read_chat_template(v, diag)
            }
            // mergekit's compute dtype. smelt always computes in f32 (see
            // README, "Coming from mergekit"); what the key also decides
            // in mergekit, the output dtype when `out_dtype` is absent, it
            // decides here too.
            "dtype" => {
                compute_dtype = out_dtype(v, "dtype", diag);
            }
            "name" => {}
            "modules" => diag.err(
                *line,
                "`modules` (multi-module merges) is not supported by smelt",
            ),
            "smelt" => smelt_table(v, dir, &mut r, diag),
            "models" => {
                diag.mark("models", *line);
                for (j, m) in list(v, "models", diag).iter().enumerate() {
                    if let Some(entry) = model_entry(j, m, dir, diag) {
                        models.push(entry);
                    }
                }
            }
            "slices" => {
                for (i, sl) in list(v, "slices", diag).iter().enumerate() {
                    r.slices.push(slice(i, sl, dir, diag));
                }
            }
            other => diag.err(*line, unknown_key_msg("mergekit key", other, TOP_KEYS)),
        }
    }
    if r.out_dtype.is_none() {
        r.out_dtype = compute_dtype;
    }
    if !saw_method {
        diag.err(1, "missing `merge_method`");
    }
    let m = method_v?;
    r.method = m;

    place_models(&mut r, models, base_line, diag);
    Some(r)
}

/// `out_dtype`: a dtype name, or null for none.
fn out_dtype(v: &Node, key: &str, diag: &mut Diag) -> Option<Dtype> {
    if let Some(s) = v.as_str() {
        match parse_dtype(s) {
            Ok(d) => return Some(d),
            Err(m) => diag.err(v.line, m),
        }
    } else if !matches!(v.kind, Kind::Null) {
        diag.err(v.line, format!("`{key}` must be a string"));
    }
    None
}

/// smelt's own table (`smelt: {seed, calibration}`), which mergekit
/// ignores.
fn smelt_table(v: &Node, dir: &Path, r: &mut Recipe, diag: &mut Diag) {
    for (k, l, x) in entries(v, "smelt", diag) {
        match k.as_str() {
            "seed" => {
                diag.mark("seed", *l);
                r.seed = uint(x, "seed", diag);
            }
            "calibration" => {
                diag.mark("calibration", *l);
                r.calibration = string(x, "calibration", diag).map(|s| resolve_path(dir, &s));
            }
            other => diag.err(*l, unknown_key_msg("key in `smelt`", other, SMELT_KEYS)),
        }
    }
}

/// Entry `j` of `models`, with its line and its scratch location key
/// (`models#j`), or `None` (reported) when it names no model.
fn model_entry(
    j: usize,
    m: &Node,
    dir: &Path,
    diag: &mut Diag,
) -> Option<(ModelEntry, usize, String)> {
    let mut entry = ModelEntry {
        path: PathBuf::new(),
        params: BTreeMap::new(),
    };
    let mut found = false;
    // Parse into a scratch diag keyed by the YAML index; the
    // lines are re-keyed once the base is taken out.
    let at = format!("models#{j}");
    for (k, l, x) in entries(m, &format!("models[{j}]"), diag) {
        diag.mark(&format!("{at}.{k}"), *l);
        match k.as_str() {
            "model" => {
                if let Some(s) = string(x, "model", diag) {
                    entry.path = resolve_path(dir, &s);
                    found = true;
                }
            }
            "parameters" => entry.params = parse_params(x, &format!("{at}.parameters"), diag),
            other => diag.err(
                *l,
                unknown_key_msg("key in a `models` entry", other, MODEL_KEYS),
            ),
        }
    }
    if found {
        Some((entry, m.line, at))
    } else {
        diag.err(m.line, format!("models[{j}]: needs `model`"));
        None
    }
}

/// Slice `i` of `slices`.
fn slice(i: usize, node: &Node, dir: &Path, diag: &mut Diag) -> Slice {
    let at = format!("slices[{i}]");
    diag.mark(&at, node.line);
    let mut slice = Slice {
        sources: Vec::new(),
        base: None,
        params: BTreeMap::new(),
    };
    for (k, l, x) in entries(node, &at, diag) {
        match k.as_str() {
            "base_model" => {
                diag.mark(&format!("{at}.base"), *l);
                slice.base = string(x, "base_model", diag).map(|p| resolve_path(dir, &p));
            }
            "parameters" => slice.params = parse_params(x, &format!("{at}.parameters"), diag),
            "residual_weight" => {}
            "sources" => {
                diag.mark(&format!("{at}.sources"), *l);
                for (j, src) in list(x, "sources", diag).iter().enumerate() {
                    let sat = format!("{at}.sources[{j}]");
                    if let Some(ss) = source(src, &sat, dir, "model", diag) {
                        slice.sources.push(ss);
                    }
                }
            }
            other => diag.err(*l, unknown_key_msg("key in a slice", other, SLICE_KEYS)),
        }
    }
    slice
}

/// Put the parsed model entries into `r`: the base taken out of them
/// (or, for a method without a base, added to them), each location
/// re-keyed from its YAML index to its index in the recipe.
fn place_models(
    r: &mut Recipe,
    mut models: Vec<(ModelEntry, usize, String)>,
    base_line: usize,
    diag: &mut Diag,
) {
    // mergekit lists the base among `models` or not, as the author likes;
    // smelt keeps it only as `base`. Methods without a base treat
    // `base_model` as one more input, as mergekit does.
    let base_rule = r.method.spec().base;
    if let Some(b) = r.base.clone() {
        if base_rule == BaseRule::None {
            if !models.iter().any(|(e, _, _)| same(&e.path, &b)) {
                models.push((
                    ModelEntry {
                        path: b,
                        params: BTreeMap::new(),
                    },
                    base_line,
                    "base".to_string(),
                ));
            }
            r.base = None;
        } else {
            models.retain(|(e, _, _)| !same(&e.path, &b));
        }
    }
    for (i, (entry, line, key)) in models.into_iter().enumerate() {
        let at = format!("models[{i}]");
        diag.mark(&at, line);
        let moved: Vec<(String, usize)> = diag
            .lines
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{key}.")))
            .map(|(k, l)| (format!("{at}{}", &k[key.len()..]), *l))
            .collect();
        for (k, l) in moved {
            diag.mark(&k, l);
        }
        if key != "base" {
            diag.mark(&format!("{at}.path"), diag.line_of(&format!("{key}.model")));
        }
        r.models.push(entry);
    }
}

// ---------------------------------------------------------------- writing

fn yaml_value(v: &Value, int: bool) -> Y {
    match v {
        Value::Bool(b) => Y::Bool(*b),
        Value::Number(x) => number(*x, int),
        Value::Gradient(xs) => Y::Sequence(xs.iter().map(|x| number(*x, int)).collect()),
        Value::Filtered(entries) => Y::Sequence(
            entries
                .iter()
                .map(|(f, v)| {
                    let mut m = Mapping::new();
                    if let Some(f) = f {
                        m.insert("filter".into(), Y::String(f.clone()));
                    }
                    m.insert("value".into(), yaml_value(v, int));
                    Y::Mapping(m)
                })
                .collect(),
        ),
    }
}

/// Integer parameters (`max_iter`) must reach mergekit as integers: it uses
/// them in `range()`.
fn number(x: f64, int: bool) -> Y {
    if int && x.fract() == 0.0 && x.abs() < 9.0e15 {
        Y::Number((x as i64).into())
    } else {
        Y::Number(x.into())
    }
}

fn params(method: Method, p: &BTreeMap<String, Value>) -> Y {
    let spec = method.spec();
    let mut m = Mapping::new();
    for (k, v) in p {
        let int = spec
            .global
            .iter()
            .chain(spec.per_model)
            .any(|s| s.name == k && s.kind == ParamKind::Int);
        m.insert(Y::String(k.clone()), yaml_value(v, int));
    }
    Y::Mapping(m)
}

/// The tensors an export is checked on: every tensor name of the model the
/// merge takes its layout from, and its layer count (as the plan uses it).
pub(crate) struct Layout {
    pub names: Vec<String>,
    pub n_layers: usize,
    /// The float dtypes of those tensors (what the merge writes when the
    /// recipe sets no `out_dtype`); empty when not known.
    pub dtypes: Vec<crate::model::Dtype>,
}

/// The layout of the base's (or first model's) headers.
pub(crate) fn layout_of(r: &Recipe) -> Result<Layout, RecipeError> {
    let sliced = r
        .slices
        .first()
        .and_then(|s| s.base.as_ref().or(s.sources.first().map(|x| &x.model)));
    let model = r
        .base
        .as_ref()
        .or(r.models.first().map(|m| &m.path))
        .or(sliced)
        .ok_or_else(|| RecipeError::Invalid("the recipe has no models".into()))?;
    let m = crate::model::Model::open(model).map_err(|e| {
        RecipeError::Invalid(format!(
            "writing for mergekit needs the model's tensor names and dtypes: {e}"
        ))
    })?;
    let mut dtypes: Vec<crate::model::Dtype> = Vec::new();
    for t in m.tensors() {
        if t.dtype.is_mergeable() && !dtypes.contains(&t.dtype) {
            dtypes.push(t.dtype);
        }
    }
    Ok(Layout {
        names: m.tensors().iter().map(|t| t.name.clone()).collect(),
        n_layers: m.num_layers(),
        dtypes,
    })
}

/// A tensor of the layout: its name, group, and where the layer index
/// sits (the prefix up to it, and the block after it).
struct Tensor<'a> {
    name: &'a str,
    group: Group,
    prefix: String,
    block: String,
}

fn tensors(layout: &Layout) -> Vec<Tensor<'_>> {
    layout
        .names
        .iter()
        .map(|n| {
            let place = crate::model::classify(n);
            Tensor {
                name: n,
                group: place.group,
                prefix: place.prefix,
                block: place.block,
            }
        })
        .collect()
}

/// Which parameter table a folded value lives in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Slot {
    Global,
    Model(usize),
}

impl Slot {
    fn get(self, tp: &crate::merge::TensorParams, name: &str) -> Option<ParamValue> {
        match self {
            Slot::Global => tp.global.get(name),
            Slot::Model(i) => tp.models.get(i).and_then(|m| m.get(name)),
        }
    }
    fn at(self, name: &str) -> String {
        match self {
            Slot::Global => format!("parameters.{name}"),
            Slot::Model(i) => format!("models[{i}].parameters.{name}"),
        }
    }
}

fn scalar_value(v: ParamValue) -> Value {
    match v {
        ParamValue::Bool(b) => Value::Bool(b),
        ParamValue::Float(x) => Value::Number(x),
    }
}

/// Gradient position of layer `i` of `n`, as mergekit computes it.
fn position(i: usize, n: usize) -> f64 {
    if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    }
}

/// One column of per-layer values as a value mergekit reads: a scalar
/// where constant; else a list (numbers) or the most common value
/// (booleans, and whole-number parameters, which a list would give
/// fractions between layers), plus the layers that value does not give
/// exactly (they get entries of their own).
fn column_value(col: &[Option<ParamValue>], n: usize, discrete: bool) -> (Value, Vec<usize>) {
    let present: Vec<ParamValue> = col.iter().flatten().copied().collect();
    let Some(&first) = present.first() else {
        return (Value::Number(0.0), Vec::new());
    };
    if present.iter().all(|v| *v == first) {
        return (scalar_value(first), Vec::new());
    }
    if discrete || present.iter().any(|v| matches!(v, ParamValue::Bool(_))) {
        let mut counts: Vec<(ParamValue, usize)> = Vec::new();
        for v in &present {
            match counts.iter_mut().find(|(x, _)| x == v) {
                Some(c) => c.1 += 1,
                None => counts.push((*v, 1)),
            }
        }
        let common = counts
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, c))| (*c, std::cmp::Reverse(*i)))
            .map_or(first, |(_, (v, _))| *v);
        let fixes = (0..col.len())
            .filter(|&i| col[i].is_some_and(|v| v != common))
            .collect();
        return (scalar_value(common), fixes);
    }
    // Holes (layers without such a tensor) take the previous value.
    let mut xs = Vec::with_capacity(col.len());
    let mut last = first.as_f64();
    for v in col {
        if let Some(v) = v {
            last = v.as_f64();
        }
        xs.push(last);
    }
    let fixes = (0..col.len())
        .filter(|&i| {
            col[i].is_some_and(|v| super::resolve::interpolate(&xs, position(i, n)) != v.as_f64())
        })
        .collect();
    (Value::Gradient(xs), fixes)
}

/// The module a pre/post tensor belongs to (`model.embed_tokens` for
/// `model.embed_tokens.weight`).
fn module_of(name: &str) -> &str {
    name.strip_suffix(".weight")
        .or_else(|| name.strip_suffix(".bias"))
        .unwrap_or(name)
}

/// The layer tensors' wanted values as columns over the layers (at
/// least `n` rows), one per block, blocks with equal columns grouped: the
/// block names of each group and their shared column.
fn layer_columns(
    ts: &[Tensor],
    want: &[Option<ParamValue>],
    n: usize,
) -> Vec<(Vec<String>, Vec<Option<ParamValue>>)> {
    let rows = n.max(
        ts.iter()
            .filter_map(|t| match t.group {
                Group::Layer(l) => Some(l + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0),
    );
    let mut blocks: Vec<(String, Vec<Option<ParamValue>>)> = Vec::new();
    for (t, w) in ts.iter().zip(want) {
        let Group::Layer(l) = t.group else { continue };
        let k = match blocks.iter().position(|(b, _)| *b == t.block) {
            Some(k) => k,
            None => {
                blocks.push((t.block.clone(), vec![None; rows]));
                blocks.len() - 1
            }
        };
        blocks[k].1[l] = *w;
    }
    let mut groups: Vec<(Vec<String>, Vec<Option<ParamValue>>)> = Vec::new();
    for (b, col) in blocks {
        match groups.iter_mut().find(|(_, c)| *c == col) {
            Some(g) => g.0.push(b),
            None => groups.push((vec![b], col)),
        }
    }
    groups
}

/// Entries of their own for the pre/post tensors that `so_far` (read, as
/// mergekit reads a list for them, at its first value) would give another
/// value than they want: by module name when the module holds only
/// tensors wanting the same value, else by the tensor's name.
fn pre_post_entries(
    ts: &[Tensor],
    want: &[Option<ParamValue>],
    so_far: &Value,
) -> Vec<(Option<String>, Value)> {
    let mut front: Vec<(Option<String>, Value)> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for (t, w) in ts.iter().zip(want) {
        if matches!(t.group, Group::Layer(_)) || done.contains(&t.name) {
            continue;
        }
        let Some(w) = *w else { continue };
        if super::resolve::evaluate(so_far, t.name, 0.0) == Some(w) {
            continue;
        }
        // The module's name when it names only tensors that want the
        // same value; else the tensor's own.
        let module = module_of(t.name);
        let shared: Vec<usize> = (0..ts.len())
            .filter(|&k| ts[k].name.contains(module))
            .collect();
        let filter = if shared
            .iter()
            .all(|&k| !matches!(ts[k].group, Group::Layer(_)) && want[k] == Some(w))
        {
            done.extend(shared.iter().map(|&k| ts[k].name));
            module
        } else {
            done.push(t.name);
            t.name
        };
        front.push((Some(filter.to_string()), scalar_value(w)));
    }
    front
}

/// A value giving `want[k]` for tensor `ts[k]` under mergekit's rules
/// (filters by substring, first match; lists across the layers; pre/post
/// tensors at the list's first value). `known` are filters the recipe
/// already uses, tried first as names for groups of tensors.
fn encode(
    ts: &[Tensor],
    want: &[Option<ParamValue>],
    n: usize,
    known: &[String],
    discrete: bool,
) -> Value {
    let groups = layer_columns(ts, want, n);
    // The most common column is the catch-all.
    let catch = (0..groups.len()).max_by_key(|&g| (groups[g].0.len(), std::cmp::Reverse(g)));
    let prefix_of = |l: usize| {
        ts.iter()
            .find(|t| t.group == Group::Layer(l))
            .map(|t| t.prefix.clone())
            .unwrap_or_default()
    };
    let mut entries: Vec<(Option<String>, Value)> = Vec::new();
    for (g, (members, col)) in groups.iter().enumerate() {
        if Some(g) == catch {
            continue;
        }
        let (v, fixes) = column_value(col, n, discrete);
        for l in fixes {
            for b in members {
                if let Some(x) = col[l] {
                    entries.push((Some(format!("{}{b}", prefix_of(l))), scalar_value(x)));
                }
            }
        }
        // A filter the recipe already uses, if it picks exactly these
        // layer tensors; else the blocks by name.
        let exact = known.iter().find(|f| {
            ts.iter()
                .filter(|t| matches!(t.group, Group::Layer(_)))
                .all(|t| t.name.contains(f.as_str()) == members.contains(&t.block))
        });
        match exact {
            Some(f) => entries.push((Some(f.clone()), v)),
            None => {
                for b in members {
                    entries.push((Some(format!(".{b}")), v.clone()));
                }
            }
        }
    }
    let catch_all = match catch {
        Some(g) => {
            let col = &groups[g].1;
            let (v, fixes) = column_value(col, n, discrete);
            for l in fixes {
                if let Some(x) = col[l] {
                    entries.push((Some(prefix_of(l)), scalar_value(x)));
                }
            }
            v
        }
        // No layer tensors: the most common pre/post value.
        None => want
            .iter()
            .flatten()
            .next()
            .copied()
            .map_or(Value::Number(0.0), scalar_value),
    };
    // Pre/post tensors read the list at its first value: those it would
    // give a different value get entries of their own, first.
    let so_far = if entries.is_empty() {
        catch_all.clone()
    } else {
        let mut e = entries.clone();
        e.push((None, catch_all.clone()));
        Value::Filtered(e)
    };
    let mut front = pre_post_entries(ts, want, &so_far);
    front.extend(entries);
    if front.is_empty() {
        catch_all
    } else {
        front.push((None, catch_all));
        Value::Filtered(front)
    }
}

/// The filters a parameter's values use anywhere in `r`, in order.
fn filters_of(r: &Recipe, name: &str, slot: Slot) -> Vec<String> {
    let mut vals: Vec<&Value> = Vec::new();
    if let Slot::Model(i) = slot {
        vals.extend(r.models.get(i).and_then(|m| m.params.get(name)));
    }
    vals.extend(r.params.get(name));
    for o in &r.overrides {
        if let Slot::Model(i) = slot {
            vals.extend(o.models.get(&i).and_then(|m| m.get(name)));
        }
        vals.extend(o.params.get(name));
    }
    let mut fs: Vec<String> = Vec::new();
    for v in vals {
        if let Value::Filtered(e) = v {
            for f in e.iter().filter_map(|(f, _)| f.clone()) {
                if !fs.contains(&f) {
                    fs.push(f);
                }
            }
        }
    }
    fs
}

/// Every (table, parameter) some override sets: a method-wide name set
/// by an override touches every model's value of it when the method
/// takes it per model. Sorted, each once.
fn touched_by_overrides(r: &Recipe) -> Vec<(Slot, &str)> {
    let spec = r.method.spec();
    let mut touched: Vec<(Slot, &str)> = Vec::new();
    for o in &r.overrides {
        for name in o.params.keys() {
            if spec.global.iter().any(|p| p.name == name) {
                touched.push((Slot::Global, name));
            }
            if spec.per_model.iter().any(|p| p.name == name) {
                touched.extend((0..r.models.len()).map(|i| (Slot::Model(i), name.as_str())));
            }
        }
        for (i, p) in &o.models {
            touched.extend(p.keys().map(|k| (Slot::Model(*i), k.as_str())));
        }
    }
    touched.sort_unstable();
    touched.dedup();
    touched
}

/// Fold overrides into values mergekit can read: every parameter an
/// override touches becomes, in its table, a value that gives every tensor
/// of `layout` what the recipe resolves for it (see [`encode`]).
fn fold_overrides(r: &Recipe, layout: &Layout) -> Recipe {
    let spec = r.method.spec();
    let mut out = r.clone();
    out.overrides.clear();
    let touched = touched_by_overrides(r);
    let ts = tensors(layout);
    let resolved: Vec<crate::merge::TensorParams> = ts
        .iter()
        .map(|t| r.resolve_impl(t.name, t.group, layout.n_layers))
        .collect();
    for (slot, name) in touched {
        let want: Vec<Option<ParamValue>> = resolved.iter().map(|tp| slot.get(tp, name)).collect();
        let discrete = spec
            .global
            .iter()
            .chain(spec.per_model)
            .any(|p| p.name == name && p.kind != ParamKind::Float);
        let v = encode(
            &ts,
            &want,
            layout.n_layers,
            &filters_of(r, name, slot),
            discrete,
        );
        match slot {
            Slot::Global => {
                out.params.insert(name.to_string(), v);
            }
            Slot::Model(i) => {
                if let Some(m) = out.models.get_mut(i) {
                    m.params.insert(name.to_string(), v);
                }
            }
        }
    }
    out
}

fn show(v: Option<ParamValue>) -> String {
    match v {
        None => "no value".into(),
        Some(ParamValue::Bool(b)) => b.to_string(),
        Some(ParamValue::Float(x)) => format!("{x}"),
    }
}

/// Everything that differs between `a` (the recipe) and `b` (its export
/// read back), one line per value: parameter, model, layer or tensor,
/// value now and after export.
fn differences(a: &Recipe, b: &Recipe, layout: Option<&Layout>) -> Vec<String> {
    let mut out = top_level_differences(a, b);
    match layout {
        // Without overrides the tables are written as they are: they must
        // read back equal.
        None => table_differences(a, b, &mut out),
        // With them, every tensor must resolve the same.
        Some(layout) => tensor_differences(a, b, layout, &mut out),
    }
    out
}

/// What differs outside the parameter tables: method, base, models,
/// slices, out_dtype, seed, calibration, overrides.
fn top_level_differences(a: &Recipe, b: &Recipe) -> Vec<String> {
    let mut out = Vec::new();
    // Paths are written relative to where the text goes: compare the files
    // they name, whatever folder they were resolved against.
    let same = |x: &Path, y: &Path| absolute(x) == absolute(y);
    let spath = |p: &Path| p.display().to_string();
    if a.method != b.method {
        out.push(format!(
            "method: {} now, {} after export",
            a.method.name(),
            b.method.name()
        ));
    }
    let same_opt = |x: &Option<PathBuf>, y: &Option<PathBuf>| match (x, y) {
        (Some(x), Some(y)) => same(x, y),
        (None, None) => true,
        _ => false,
    };
    if !same_opt(&a.base, &b.base) {
        out.push(format!(
            "base: {} now, {} after export",
            a.base.as_deref().map_or("none".into(), spath),
            b.base.as_deref().map_or("none".into(), spath)
        ));
    }
    if a.models.len() != b.models.len()
        || a.models
            .iter()
            .zip(&b.models)
            .any(|(x, y)| !same(&x.path, &y.path))
    {
        out.push(format!(
            "models: {} now, {} after export",
            a.models.len(),
            b.models.len()
        ));
    }
    let slices_same = a.slices.len() == b.slices.len()
        && a.slices.iter().zip(&b.slices).all(|(x, y)| {
            same_opt(&x.base, &y.base)
                && x.params == y.params
                && x.sources.len() == y.sources.len()
                && x.sources.iter().zip(&y.sources).all(|(s, t)| {
                    same(&s.model, &t.model)
                        && s.layer_range == t.layer_range
                        && s.params == t.params
                })
        });
    if !slices_same {
        out.push("slices: changed by the export".into());
    }
    if a.out_dtype != b.out_dtype {
        out.push(format!(
            "out_dtype: {:?} now, {:?} after export",
            a.out_dtype, b.out_dtype
        ));
    }
    if a.seed != b.seed {
        out.push(format!("seed: {:?} now, {:?} after export", a.seed, b.seed));
    }
    if !same_opt(&a.calibration, &b.calibration) {
        out.push("calibration: changed by the export".into());
    }
    if a.tokenizer != b.tokenizer {
        out.push("tokenizer: changed by the export".into());
    }
    if a.chat_template != b.chat_template {
        out.push("chat_template: changed by the export".into());
    }
    if !b.overrides.is_empty() {
        out.push("overrides: mergekit has none".into());
    }
    out
}

/// The recipe-wide and per-model tables, compared as written.
fn table_differences(a: &Recipe, b: &Recipe, out: &mut Vec<String>) {
    for (k, v) in &a.params {
        if b.params.get(k) != Some(v) {
            out.push(format!("parameters.{k}: changed by the export"));
        }
    }
    for k in b.params.keys().filter(|k| !a.params.contains_key(*k)) {
        out.push(format!("parameters.{k}: added by the export"));
    }
    for (i, (x, y)) in a.models.iter().zip(&b.models).enumerate() {
        if x.params != y.params {
            out.push(format!("models[{i}].parameters: changed by the export"));
        }
    }
}

/// Every value as each tensor of `layout` resolves it, now and after the
/// export; one line per value, group and change, naming the first tensor
/// and how many more.
fn tensor_differences(a: &Recipe, b: &Recipe, layout: &Layout, out: &mut Vec<String>) {
    // (what, group) -> (tensors, first tensor, now, after)
    let mut lost: Vec<(String, Group, usize, String, String, String)> = Vec::new();
    for t in tensors(layout) {
        let x = a.resolve_impl(t.name, t.group, layout.n_layers);
        let y = b.resolve_impl(t.name, t.group, layout.n_layers);
        let spec = a.method.spec();
        let mut slots: Vec<(Slot, &str)> =
            spec.global.iter().map(|p| (Slot::Global, p.name)).collect();
        for i in 0..a.models.len().max(b.models.len()) {
            slots.extend(spec.per_model.iter().map(|p| (Slot::Model(i), p.name)));
        }
        for (slot, name) in slots {
            let (vx, vy) = (slot.get(&x, name), slot.get(&y, name));
            if vx == vy {
                continue;
            }
            let what = slot.at(name);
            let (now, after) = (show(vx), show(vy));
            match lost
                .iter_mut()
                .find(|l| l.0 == what && l.1 == t.group && l.4 == now && l.5 == after)
            {
                Some(l) => l.2 += 1,
                None => lost.push((what, t.group, 1, t.name.to_string(), now, after)),
            }
        }
    }
    for (what, group, count, first, now, after) in lost {
        let more = if count > 1 {
            format!(" and {} more", count - 1)
        } else {
            String::new()
        };
        out.push(format!(
            "{what} at {group} (`{first}`{more}): {now} now, {after} after export"
        ));
    }
}

/// Read exported text as `smelt` reads a YAML file in `dir`, without the
/// checks (an incomplete recipe exports as it is).
fn read_back(text: &str, dir: &Path) -> Result<Recipe, Vec<String>> {
    let root = super::node::parse_yaml(text).map_err(|(line, msg)| {
        vec![format!(
            "the YAML written does not read back: line {line}: {msg}"
        )]
    })?;
    let mut diag = Diag::default();
    let back = from_node(&root, dir, &mut diag);
    match back {
        Some(b) if diag.problems.is_empty() => Ok(b),
        _ => Err(diag
            .problems
            .into_iter()
            .map(|(line, msg)| format!("the YAML written does not read back: line {line}: {msg}"))
            .collect()),
    }
}

/// The recipe as mergekit YAML, paths relative to `dir`, or a refusal
/// naming every value the YAML would not give as the recipe does.
/// `layout` is needed only when the recipe has overrides (read from the
/// base's or first model's headers when `None`).
pub(crate) fn write(
    r: &Recipe,
    dir: &Path,
    layout: Option<&Layout>,
) -> Result<String, RecipeError> {
    let refuse = |lines: Vec<String>| {
        RecipeError::Invalid(format!(
            "cannot be written for mergekit exactly; nothing was written:\n  {}",
            lines.join("\n  ")
        ))
    };
    if matches!(r.method, Method::Zipit | Method::Permute) {
        return Err(RecipeError::Invalid(format!(
            "{} is smelt's own method; mergekit cannot run it",
            r.method.name()
        )));
    }
    if !r.slices.is_empty() && !r.overrides.is_empty() {
        // Overrides name output layers; in slices those come from several
        // models' layers, and smelt does not merge such recipes either.
        let mut lines = Vec::new();
        for (i, o) in r.overrides.iter().enumerate() {
            for (k, v) in &o.params {
                lines.push(format!(
                    "overrides[{i}].parameters.{k} = {} ({}): overrides in a sliced recipe; put the value in the slices' parameters",
                    super::toml::value(v),
                    o.scope
                ));
            }
            for (m, p) in &o.models {
                for (k, v) in p {
                    lines.push(format!(
                        "overrides[{i}].models.{m}.{k} = {} ({}): overrides in a sliced recipe; put the value in the slice sources' parameters",
                        super::toml::value(v),
                        o.scope
                    ));
                }
            }
        }
        if lines.is_empty() {
            lines.push("overrides in a sliced recipe cannot be written for mergekit".into());
        }
        return Err(refuse(lines));
    }
    // The output dtype: without `out_dtype` smelt writes each tensor in
    // the base's dtype, mergekit in `out_dtype` or else `dtype` (float32
    // here): name the base's dtype so both write the same.
    let opened;
    let layout = match layout {
        Some(l) => Some(l),
        None if r.overrides.is_empty() && r.out_dtype.is_some() => None,
        None => {
            opened = layout_of(r)?;
            Some(&opened)
        }
    };
    let mut r_eff = r.clone();
    if r.out_dtype.is_none() {
        match layout.map(|l| l.dtypes.as_slice()) {
            Some([one]) => r_eff.out_dtype = Some(*one),
            Some([]) | None => {}
            Some(several) => {
                return Err(refuse(vec![format!(
                    "out_dtype: the base's tensors are {}; smelt writes each in its own dtype, mergekit writes one: set `out_dtype` in the recipe",
                    several.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
                )]))
            }
        }
    }
    let r = &r_eff;
    let layout = layout.filter(|_| !r.overrides.is_empty());
    if let Some(l) = layout {
        // Overrides no tensor reads would vanish from the YAML unnoticed.
        let unread = super::check::check_layers(r, l.n_layers);
        if !unread.is_empty() {
            return Err(refuse(unread.iter().map(ToString::to_string).collect()));
        }
    }
    let folded = match layout {
        Some(l) => fold_overrides(r, l),
        None => r.clone(),
    };
    let text = emit(&folded, dir)?;
    // Read the text back as `recipe export` readers will, and compare.
    let back = read_back(&text, dir).map_err(refuse)?;
    let lost = differences(r, &back, layout);
    if !lost.is_empty() {
        return Err(refuse(lost));
    }
    // What smelt loads, it must load back from the YAML too.
    if r.check().is_empty() {
        let problems = back.check();
        if !problems.is_empty() {
            return Err(refuse(
                problems
                    .into_iter()
                    .map(|p| format!("the YAML written would not load: {p}"))
                    .collect(),
            ));
        }
    }
    Ok(text)
}

/// The YAML text of a recipe without overrides, paths relative to `dir`.
fn emit(r: &Recipe, dir: &Path) -> Result<String, RecipeError> {
    let path = |p: &Path| Y::String(relative_to(p, dir));
    let mut top = Mapping::new();
    top.insert("merge_method".into(), Y::String(r.method.name().into()));
    if let Some(b) = &r.base {
        top.insert("base_model".into(), path(b));
    }
    if r.slices.is_empty() {
        let models: Vec<Y> = r
            .models
            .iter()
            .map(|m| {
                let mut e = Mapping::new();
                e.insert("model".into(), path(&m.path));
                if !m.params.is_empty() {
                    e.insert("parameters".into(), params(r.method, &m.params));
                }
                Y::Mapping(e)
            })
            .collect();
        top.insert("models".into(), Y::Sequence(models));
    } else {
        let slices: Vec<Y> = r
            .slices
            .iter()
            .map(|s| {
                let mut e = Mapping::new();
                let sources: Vec<Y> = s
                    .sources
                    .iter()
                    .map(|src| {
                        let mut m = Mapping::new();
                        m.insert("model".into(), path(&src.model));
                        m.insert(
                            "layer_range".into(),
                            Y::Sequence(vec![
                                Y::Number((src.layer_range.0 as u64).into()),
                                Y::Number((src.layer_range.1 as u64).into()),
                            ]),
                        );
                        if !src.params.is_empty() {
                            m.insert("parameters".into(), params(r.method, &src.params));
                        }
                        Y::Mapping(m)
                    })
                    .collect();
                e.insert("sources".into(), Y::Sequence(sources));
                if let Some(b) = &s.base {
                    e.insert("base_model".into(), path(b));
                }
                if !s.params.is_empty() {
                    e.insert("parameters".into(), params(r.method, &s.params));
                }
                Y::Mapping(e)
            })
            .collect();
        top.insert("slices".into(), Y::Sequence(slices));
    }
    if !r.params.is_empty() {
        top.insert("parameters".into(), params(r.method, &r.params));
    }
    // smelt computes in f32; ask mergekit to do the same. mergekit then
    // writes f32 unless `out_dtype` says otherwise, so `dtype` goes only
    // with an `out_dtype` (without one, both write the inputs' dtype).
    if let Some(d) = r.out_dtype.and_then(dtype_name) {
        top.insert("dtype".into(), Y::String("float32".into()));
        top.insert("out_dtype".into(), Y::String(d.into()));
    }
    super::vocab::to_yaml(
        r.tokenizer.as_ref(),
        r.chat_template.as_deref(),
        dir,
        &mut top,
    );
    let mut ext = Mapping::new();
    if let Some(seed) = r.seed {
        ext.insert("seed".into(), Y::Number(seed.into()));
    }
    if let Some(c) = &r.calibration {
        ext.insert("calibration".into(), path(c));
    }
    if !ext.is_empty() {
        top.insert("smelt".into(), Y::Mapping(ext));
    }
    let mut text = String::new();
    emit_map(&top, 0, &mut text)?;
    Ok(text)
}

/// A string as a YAML scalar (plain where YAML reads it back as the same
/// string, else quoted).
pub(crate) fn yaml_string(s: &str) -> String {
    scalar(&Y::String(s.to_string()))
        .unwrap_or_else(|_| serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")))
}

/// One scalar as YAML (quoted by serde_yaml_ng where needed; JSON quoting,
/// which YAML reads too, if that would span lines).
fn scalar(v: &Y) -> Result<String, RecipeError> {
    let s = serde_yaml_ng::to_string(v)
        .map_err(|e| RecipeError::Invalid(format!("writing YAML: {e}")))?;
    let s = s.trim_end_matches('\n');
    if s.contains('\n') {
        serde_json::to_string(v).map_err(|e| RecipeError::Invalid(format!("writing YAML: {e}")))
    } else {
        Ok(s.to_string())
    }
}

/// Block mappings, with lists of numbers in flow style (`[0.2, 0.8]`), the
/// way mergekit writes its own configs.
fn emit_map(m: &Mapping, indent: usize, out: &mut String) -> Result<(), RecipeError> {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&pad);
        out.push_str(&scalar(k)?);
        out.push(':');
        match v {
            Y::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                emit_map(inner, indent + 2, out)?;
            }
            Y::Sequence(items)
                if items
                    .iter()
                    .any(|i| matches!(i, Y::Mapping(_) | Y::Sequence(_))) =>
            {
                out.push('\n');
                for item in items {
                    match item {
                        Y::Mapping(inner) if !inner.is_empty() => {
                            // The item's first key goes on the `- ` line.
                            let mut block = String::new();
                            emit_map(inner, indent + 4, &mut block)?;
                            out.push_str(&pad);
                            out.push_str("  - ");
                            out.push_str(&block[indent + 4..]);
                        }
                        other => {
                            out.push_str(&pad);
                            out.push_str("  - ");
                            out.push_str(&flow(other)?);
                            out.push('\n');
                        }
                    }
                }
            }
            other => {
                out.push(' ');
                out.push_str(&flow(other)?);
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn flow(v: &Y) -> Result<String, RecipeError> {
    match v {
        Y::Sequence(items) => {
            let parts: Result<Vec<_>, _> = items.iter().map(flow).collect();
            Ok(format!("[{}]", parts?.join(", ")))
        }
        Y::Mapping(m) => {
            let parts: Result<Vec<_>, RecipeError> = m
                .iter()
                .map(|(k, v)| Ok(format!("{}: {}", scalar(k)?, flow(v)?)))
                .collect();
            Ok(format!("{{{}}}", parts?.join(", ")))
        }
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{Override, OverrideScope};

    fn layout(n: usize) -> Layout {
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for l in 0..n {
            names.push(format!("model.layers.{l}.mlp.up_proj.weight"));
            names.push(format!("model.layers.{l}.self_attn.q_proj.weight"));
        }
        names.push("lm_head.weight".into());
        Layout {
            names,
            n_layers: n,
            dtypes: Vec::new(),
        }
    }

    fn ties() -> Recipe {
        let mut r = Recipe::new(
            Method::Ties,
            Some("/w/base".into()),
            vec!["/w/a".into(), "/w/b".into()],
        );
        for m in &mut r.models {
            m.params.insert("weight".into(), Value::Number(1.0));
            m.params.insert("density".into(), Value::Number(0.3));
        }
        r
    }

    /// The check that guards every export: a value that changes is named
    /// with its parameter, model, group, a tensor, and both values.
    #[test]
    fn differences_name_each_changed_value() {
        let mut a = ties();
        a.overrides.push(Override {
            scope: OverrideScope::Layers(2, 2),
            params: BTreeMap::new(),
            models: BTreeMap::from([(
                1,
                BTreeMap::from([("density".to_string(), Value::Number(0.35))]),
            )]),
        });
        let b = ties();
        let l = layout(4);
        let d = differences(&a, &b, Some(&l));
        assert_eq!(
            d,
            vec![
                "models[1].parameters.density at layer 2 (`model.layers.2.mlp.up_proj.weight` and 1 more): 0.35 now, 0.3 after export"
            ],
            "{d:?}"
        );
        assert!(differences(&b, &b, Some(&l)).is_empty());
    }

    /// At 23 layers, list position 15 is not exact: the fold gives that
    /// layer an entry of its own.
    #[test]
    fn inexact_list_positions_get_entries() {
        let mut r = ties();
        r.overrides.push(Override {
            scope: OverrideScope::Layers(15, 15),
            params: BTreeMap::from([("lambda".to_string(), Value::Number(1.1))]),
            models: BTreeMap::new(),
        });
        let l = layout(23);
        let f = fold_overrides(&r, &l);
        let Some(Value::Filtered(e)) = f.params.get("lambda") else {
            panic!("{:?}", f.params)
        };
        assert!(
            e.iter()
                .any(|(f, v)| f.as_deref() == Some("model.layers.15.") && *v == Value::Number(1.1)),
            "{e:?}"
        );
        assert!(differences(&r, &f, Some(&l)).is_empty());
    }
}
