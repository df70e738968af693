//! mergekit YAML: import (`load` on `.yml`/`.yaml`) and export.
//!
//! Keys mergekit's `MergeConfiguration` accepts, and what happens to them:
//! - `merge_method`, `base_model`, `models[].model`, `models[].parameters`,
//!   `parameters`, `slices[].sources[].{model, layer_range, parameters}`,
//!   `slices[].base_model`, `slices[].parameters`, `out_dtype`: kept.
//! - `dtype` (the compute dtype): ignored; smelt always computes in f32 and
//!   writes `dtype: float32` on export so mergekit computes the same way.
//! - `tokenizer_source`, `tokenizer`, `chat_template`: ignored; smelt merges
//!   tensors only and copies the config model's tokenizer files unchanged.
//! - `slices[].residual_weight`: ignored; mergekit itself never reads it.
//! - `name`: ignored (a label in multi-document mergekit files).
//! - `modules`: rejected (multi-module merges are not supported).
//! - `smelt`: smelt's own extension, `{seed, calibration}`; pydantic (and so
//!   mergekit) ignores keys it does not know, so exported files stay valid.
//!
//! Any other key is an error, with a did-you-mean.

use super::node::{Kind, Node};
use super::toml::{entries, list, method, source, string, uint};
use super::util::{
    dtype_name, parse_dtype, parse_params, relative_to, resolve_path, unknown_key_msg, Diag,
};
use super::{check::same, ModelEntry, Recipe, RecipeError, Slice, Value};
use crate::merge::{BaseRule, Method, ParamKind, ParamValue};
use crate::model::Group;
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
    let mut base_line = 0;
    // Model entries with the line of each, before the base is taken out.
    let mut models: Vec<(ModelEntry, usize, String)> = Vec::new();
    for (key, line, v) in entries(root, "recipe", diag) {
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
                if let Some(s) = v.as_str() {
                    match parse_dtype(s) {
                        Ok(d) => r.out_dtype = Some(d),
                        Err(m) => diag.err(v.line, m),
                    }
                } else if !matches!(v.kind, Kind::Null) {
                    diag.err(v.line, "`out_dtype` must be a string");
                }
            }
            "dtype" | "tokenizer_source" | "tokenizer" | "chat_template" | "name" => {}
            "modules" => diag.err(
                *line,
                "`modules` (multi-module merges) is not supported by smelt",
            ),
            "smelt" => {
                for (k, l, x) in entries(v, "smelt", diag) {
                    match k.as_str() {
                        "seed" => {
                            diag.mark("seed", *l);
                            r.seed = uint(x, "seed", diag).unwrap_or(0);
                        }
                        "calibration" => {
                            diag.mark("calibration", *l);
                            r.calibration =
                                string(x, "calibration", diag).map(|s| resolve_path(dir, &s));
                        }
                        other => diag.err(*l, unknown_key_msg("key in `smelt`", other, SMELT_KEYS)),
                    }
                }
            }
            "models" => {
                diag.mark("models", *line);
                for (j, m) in list(v, "models", diag).iter().enumerate() {
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
                            "parameters" => {
                                entry.params = parse_params(x, &format!("{at}.parameters"), diag)
                            }
                            other => diag.err(
                                *l,
                                unknown_key_msg("key in a `models` entry", other, MODEL_KEYS),
                            ),
                        }
                    }
                    if found {
                        models.push((entry, m.line, at));
                    } else {
                        diag.err(m.line, format!("models[{j}]: needs `model`"));
                    }
                }
            }
            "slices" => {
                for (i, s) in list(v, "slices", diag).iter().enumerate() {
                    let at = format!("slices[{i}]");
                    diag.mark(&at, s.line);
                    let mut slice = Slice {
                        sources: Vec::new(),
                        base: None,
                        params: BTreeMap::new(),
                    };
                    for (k, l, x) in entries(s, &at, diag) {
                        match k.as_str() {
                            "base_model" => {
                                diag.mark(&format!("{at}.base"), *l);
                                slice.base =
                                    string(x, "base_model", diag).map(|p| resolve_path(dir, &p));
                            }
                            "parameters" => {
                                slice.params = parse_params(x, &format!("{at}.parameters"), diag)
                            }
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
                            other => {
                                diag.err(*l, unknown_key_msg("key in a slice", other, SLICE_KEYS))
                            }
                        }
                    }
                    r.slices.push(slice);
                }
            }
            other => diag.err(*line, unknown_key_msg("mergekit key", other, TOP_KEYS)),
        }
    }
    if !saw_method {
        diag.err(1, "missing `merge_method`");
    }
    let m = method_v?;
    r.method = m;

    // mergekit lists the base among `models` or not, as the author likes;
    // smelt keeps it only as `base`. Methods without a base treat
    // `base_model` as one more input, as mergekit does.
    let base_rule = m.spec().base;
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
    Some(r)
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

/// The number of layers the recipe's models have, read from the base's (or
/// first model's) `config.json`: needed to write overrides as gradients.
pub(crate) fn layers_from_config(r: &Recipe) -> Result<usize, RecipeError> {
    let model = r
        .base
        .as_ref()
        .or(r.models.first().map(|m| &m.path))
        .ok_or_else(|| RecipeError::Invalid("the recipe has no models".into()))?;
    let path = model.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| RecipeError::Io {
        path: path.clone(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| RecipeError::At {
        path: path.clone(),
        line: e.line(),
        msg: e.to_string(),
    })?;
    ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]
        .iter()
        .find_map(|k| json.get(*k).and_then(serde_json::Value::as_u64))
        .map(|n| n as usize)
        .ok_or_else(|| RecipeError::At {
            path,
            line: 0,
            msg: "no `num_hidden_layers`: cannot write per-layer overrides as gradients".into(),
        })
}

/// Fold overrides into per-layer gradients mergekit can read: for every
/// parameter an override touches, each filter in play gets a list of
/// `n_layers` values (exact at every layer, since mergekit places list
/// entry `i` of `n` at layer `i`), then a catch-all list.
pub(crate) fn fold_overrides(r: &Recipe, n_layers: usize) -> Result<Recipe, RecipeError> {
    if r.overrides.is_empty() {
        return Ok(r.clone());
    }
    if n_layers == 0 {
        return Err(RecipeError::Invalid(
            "the models have no layers: per-layer overrides cannot be written".into(),
        ));
    }
    if !r.slices.is_empty() {
        return Err(RecipeError::Invalid(
            "per-layer overrides in a sliced recipe cannot be written for mergekit; move the values into the slices' parameters".into(),
        ));
    }
    let spec = r.method.spec();
    let mut out = r.clone();
    out.overrides.clear();
    let mut touched_global: Vec<&str> = Vec::new();
    let mut touched_model: Vec<(usize, &str)> = Vec::new();
    for o in &r.overrides {
        for name in o.params.keys() {
            if spec.global.iter().any(|p| p.name == name) {
                touched_global.push(name);
            }
            if spec.per_model.iter().any(|p| p.name == name) {
                touched_model.extend((0..r.models.len()).map(|i| (i, name.as_str())));
            }
        }
        for (i, p) in &o.models {
            touched_model.extend(p.keys().map(|k| (*i, k.as_str())));
        }
    }
    touched_global.sort_unstable();
    touched_global.dedup();
    touched_model.sort_unstable();
    touched_model.dedup();

    // The filters used for a parameter anywhere, in order of appearance.
    let filters_of = |name: &str, model: Option<usize>| -> Vec<String> {
        let mut vals: Vec<&Value> = Vec::new();
        if let Some(i) = model {
            vals.extend(r.models.get(i).and_then(|m| m.params.get(name)));
        }
        vals.extend(r.params.get(name));
        for o in &r.overrides {
            if let Some(i) = model {
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
    };
    // One parameter's values at every layer for `tensor`: a scalar when
    // constant, else a gradient; `None` when some layer has no value.
    let column = |name: &str,
                  model: Option<usize>,
                  tensor: &str|
     -> Result<Option<Value>, RecipeError> {
        let mut xs = Vec::with_capacity(n_layers);
        for n in 0..n_layers {
            let tp = r.resolve_impl(tensor, Group::Layer(n), n_layers);
            let v = match model {
                Some(i) => tp.models.get(i).and_then(|m| m.get(name)),
                None => tp.global.get(name),
            };
            match v {
                Some(v) => xs.push(v),
                None => return Ok(None),
            }
        }
        let Some(&first) = xs.first() else {
            return Ok(None);
        };
        if xs.iter().all(|x| *x == first) {
            return Ok(Some(match first {
                ParamValue::Bool(b) => Value::Bool(b),
                ParamValue::Float(x) => Value::Number(x),
            }));
        }
        if xs.iter().any(|x| matches!(x, ParamValue::Bool(_))) {
            return Err(RecipeError::Invalid(format!(
                "`{name}`: a boolean that changes from layer to layer cannot be written for mergekit"
            )));
        }
        Ok(Some(Value::Gradient(
            xs.iter().map(|x| x.as_f64()).collect(),
        )))
    };
    let build = |name: &str, model: Option<usize>| -> Result<Option<Value>, RecipeError> {
        let mut entries = Vec::new();
        for f in filters_of(name, model) {
            if let Some(v) = column(name, model, &f)? {
                entries.push((Some(f), v));
            }
        }
        // Tensors no filter matches; without a value there, the entries
        // alone keep mergekit's fall-through.
        let catch_all = column(name, model, "")?;
        Ok(match (entries.is_empty(), catch_all) {
            (true, v) => v,
            (false, Some(v)) => {
                entries.push((None, v));
                Some(Value::Filtered(entries))
            }
            (false, None) => Some(Value::Filtered(entries)),
        })
    };
    for name in touched_global {
        if let Some(v) = build(name, None)? {
            out.params.insert(name.to_string(), v);
        }
    }
    for (i, name) in touched_model {
        if i >= out.models.len() {
            continue;
        }
        if let Some(v) = build(name, Some(i))? {
            out.models[i].params.insert(name.to_string(), v);
        }
    }
    Ok(out)
}

/// The recipe as mergekit YAML, paths relative to `dir`. `n_layers` is
/// needed only when the recipe has per-layer overrides.
pub(crate) fn write(
    r: &Recipe,
    dir: &Path,
    n_layers: Option<usize>,
) -> Result<String, RecipeError> {
    if matches!(r.method, Method::Zipit | Method::Permute) {
        return Err(RecipeError::Invalid(format!(
            "{} is smelt's own method; mergekit cannot run it",
            r.method.name()
        )));
    }
    let r = if r.overrides.is_empty() {
        r.clone()
    } else {
        let n = match n_layers {
            Some(n) => n,
            None => layers_from_config(r)?,
        };
        fold_overrides(r, n)?
    };
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
    // smelt computes in f32; ask mergekit to do the same.
    top.insert("dtype".into(), Y::String("float32".into()));
    if let Some(d) = r.out_dtype.and_then(dtype_name) {
        top.insert("out_dtype".into(), Y::String(d.into()));
    }
    let mut ext = Mapping::new();
    if r.seed != 0 {
        ext.insert("seed".into(), Y::Number(r.seed.into()));
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
