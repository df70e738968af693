//! The native recipe format (TOML): reading with line numbers, writing.
//!
//! The shape, every key optional unless marked:
//!
//! ```toml
//! method = "ties"               # required: a method name (`smelt recipe methods`)
//! base = "../models/base"       # the base model, for methods that take one
//! seed = 7                      # dare_*/della* only: seed of their random draws
//!                               # (not written: 0); an error on other methods
//! out_dtype = "bfloat16"        # float32 | bfloat16 | float16 | float64; default: the base's
//! calibration = "digits.csv"    # zipit/permute: calibration inputs
//!
//! [parameters]                  # method-wide values; per-model names here apply to every model
//! normalize = true
//!
//! [[models]]                    # one per input model besides the base
//! path = "../models/ft0"        # required
//! [models.parameters]
//! weight = 1.0                  # a number or a boolean,
//! density = [0.2, 0.8]          # a gradient across the layers,
//! # or filters: weight = [{ filter = "mlp", value = 0.5 }, { value = 0.2 }]
//!
//! [[slices]]                    # optional: build the output from layer ranges
//! base = "../models/base"       # optional per-slice base
//! [[slices.sources]]
//! model = "../models/ft0"
//! layer_range = [0, 3]          # half-open, as in mergekit
//!
//! [[overrides]]                 # tuning of some tensors, applied last, later ones win;
//!                               # not together with [[slices]]
//! layers = [3, 5]               # exactly one of: layers = [first, last] (inclusive),
//!                               # layers = 4, group = "embeddings" | "head"
//! [overrides.parameters]
//! lambda = 1.2
//! [[overrides.models]]
//! model = 1                     # 0-based index into [[models]]
//! [overrides.models.parameters]
//! density = 0.4
//! ```

use super::node::{Kind, Node};
use super::util::{
    dtype_name, parse_dtype, parse_params, relative_to, resolve_path, unknown_key_msg, Diag,
};
use super::{ModelEntry, Override, OverrideScope, Recipe, Slice, SliceSource, Value};
use crate::merge::Method;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Top-level keys of a native recipe.
pub(crate) const TOP_KEYS: &[&str] = &[
    "method",
    "base",
    "seed",
    "out_dtype",
    "calibration",
    "tokenizer_source",
    "tokenizer",
    "chat_template",
    "parameters",
    "models",
    "slices",
    "overrides",
];
const MODEL_KEYS: &[&str] = &["path", "parameters"];
const SLICE_KEYS: &[&str] = &["sources", "base", "parameters"];
const SOURCE_KEYS: &[&str] = &["model", "layer_range", "parameters"];
const OVERRIDE_KEYS: &[&str] = &["layers", "group", "parameters", "models"];
const OVERRIDE_MODEL_KEYS: &[&str] = &["model", "parameters"];

pub(crate) fn entries<'a>(
    node: &'a Node,
    at: &str,
    diag: &mut Diag,
) -> &'a [(String, usize, Node)] {
    match &node.kind {
        Kind::Map(e) => e,
        _ => {
            diag.err(
                node.line,
                format!("`{at}` must be a table, found {}", node.type_name()),
            );
            &[]
        }
    }
}

pub(crate) fn list<'a>(node: &'a Node, at: &str, diag: &mut Diag) -> &'a [Node] {
    match &node.kind {
        Kind::List(items) => items,
        _ => {
            diag.err(
                node.line,
                format!("`{at}` must be a list, found {}", node.type_name()),
            );
            &[]
        }
    }
}

pub(crate) fn string(node: &Node, at: &str, diag: &mut Diag) -> Option<String> {
    match node.as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            diag.err(
                node.line,
                format!("`{at}` must be a string, found {}", node.type_name()),
            );
            None
        }
    }
}

pub(crate) fn uint(node: &Node, at: &str, diag: &mut Diag) -> Option<u64> {
    match node.kind {
        Kind::Int(i) if i >= 0 => Some(i as u64),
        _ => {
            diag.err(
                node.line,
                format!(
                    "`{at}` must be a whole number ≥ 0, found {}",
                    describe(node)
                ),
            );
            None
        }
    }
}

fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Int(i) => i.to_string(),
        Kind::Float(x) => x.to_string(),
        _ => node.type_name().to_string(),
    }
}

/// `[a, b]` of whole numbers.
pub(crate) fn pair(node: &Node, at: &str, diag: &mut Diag) -> Option<(usize, usize)> {
    let items = list(node, at, diag);
    if items.len() != 2 {
        if matches!(node.kind, Kind::List(_)) {
            diag.err(
                node.line,
                format!("`{at}` must have two entries, [start, end]"),
            );
        }
        return None;
    }
    let a = uint(&items[0], at, diag)?;
    let b = uint(&items[1], at, diag)?;
    Some((a as usize, b as usize))
}

/// Parse a method name, with a did-you-mean on failure.
pub(crate) fn method(node: &Node, key: &str, diag: &mut Diag) -> Option<Method> {
    let name = string(node, key, diag)?;
    match Method::from_name(&name) {
        Some(m) => Some(m),
        None => {
            let names: Vec<&str> = Method::all().map(Method::name).collect();
            diag.err(node.line, unknown_key_msg("method", &name, &names));
            None
        }
    }
}

/// Set the tokenizer settings, refusing both `tokenizer_source` and a
/// `tokenizer` table (as mergekit does).
pub(crate) fn set_tokenizer(
    r: &mut Recipe,
    spec: Option<super::TokenizerSpec>,
    line: usize,
    diag: &mut Diag,
) {
    if spec.is_some() && r.tokenizer.is_some() {
        diag.err(
            line,
            "`tokenizer_source` and `tokenizer` are both set: keep one (`tokenizer.source` replaces `tokenizer_source`)",
        );
        return;
    }
    if spec.is_some() {
        diag.mark("tokenizer", line);
    }
    r.tokenizer = spec;
}

/// Build a recipe from a parsed native document; paths resolved against
/// `dir`. `None` when something essential (the method) is missing.
pub(crate) fn from_node(root: &Node, dir: &Path, diag: &mut Diag) -> Option<Recipe> {
    let mut method_v = None;
    let mut r = Recipe::new(Method::Linear, None, Vec::new());
    let mut saw_method = false;
    for (key, line, v) in entries(root, "recipe", diag) {
        diag.mark(key, *line);
        match key.as_str() {
            "method" => {
                saw_method = true;
                method_v = method(v, "method", diag);
            }
            "base" => r.base = string(v, "base", diag).map(|s| resolve_path(dir, &s)),
            "seed" => r.seed = uint(v, "seed", diag),
            "out_dtype" => {
                if let Some(s) = string(v, "out_dtype", diag) {
                    match parse_dtype(&s) {
                        Ok(d) => r.out_dtype = Some(d),
                        Err(m) => diag.err(v.line, m),
                    }
                }
            }
            "calibration" => {
                r.calibration = string(v, "calibration", diag).map(|s| resolve_path(dir, &s))
            }
            "tokenizer_source" => {
                set_tokenizer(&mut r, super::vocab::read_source(v, dir, diag), *line, diag)
            }
            "tokenizer" => {
                set_tokenizer(&mut r, super::vocab::read_block(v, dir, diag), *line, diag)
            }
            "chat_template" => r.chat_template = super::vocab::read_chat_template(v, diag),
            "parameters" => r.params = parse_params(v, "parameters", diag),
            "models" => {
                for (i, m) in list(v, "models", diag).iter().enumerate() {
                    let at = format!("models[{i}]");
                    diag.mark(&at, m.line);
                    let mut entry = ModelEntry {
                        path: PathBuf::new(),
                        params: BTreeMap::new(),
                    };
                    let mut has_path = false;
                    for (k, l, x) in entries(m, &at, diag) {
                        diag.mark(&format!("{at}.{k}"), *l);
                        match k.as_str() {
                            "path" => {
                                if let Some(s) = string(x, "path", diag) {
                                    entry.path = resolve_path(dir, &s);
                                    has_path = true;
                                }
                            }
                            "parameters" => {
                                entry.params = parse_params(x, &format!("{at}.parameters"), diag)
                            }
                            other => diag
                                .err(*l, unknown_key_msg("key in [[models]]", other, MODEL_KEYS)),
                        }
                    }
                    if !has_path {
                        diag.err(m.line, format!("{at}: a model needs `path`"));
                    }
                    r.models.push(entry);
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
                        diag.mark(&format!("{at}.{k}"), *l);
                        match k.as_str() {
                            "base" => {
                                slice.base = string(x, "base", diag).map(|p| resolve_path(dir, &p))
                            }
                            "parameters" => {
                                slice.params = parse_params(x, &format!("{at}.parameters"), diag)
                            }
                            "sources" => {
                                for (j, src) in list(x, "sources", diag).iter().enumerate() {
                                    let sat = format!("{at}.sources[{j}]");
                                    if let Some(ss) = source(src, &sat, dir, "model", diag) {
                                        slice.sources.push(ss);
                                    }
                                }
                            }
                            other => diag
                                .err(*l, unknown_key_msg("key in [[slices]]", other, SLICE_KEYS)),
                        }
                    }
                    r.slices.push(slice);
                }
            }
            "overrides" => {
                for (i, o) in list(v, "overrides", diag).iter().enumerate() {
                    let at = format!("overrides[{i}]");
                    diag.mark(&at, o.line);
                    if let Some(ov) = override_entry(o, &at, diag) {
                        r.overrides.push(ov);
                    }
                }
            }
            other => diag.err(*line, unknown_key_msg("key", other, TOP_KEYS)),
        }
    }
    if !saw_method {
        diag.err(1, "missing `method` (e.g. method = \"ties\")");
    }
    r.method = method_v?;
    Some(r)
}

/// A slice source; `model_key` is `model` in both formats.
pub(crate) fn source(
    node: &Node,
    at: &str,
    dir: &Path,
    model_key: &str,
    diag: &mut Diag,
) -> Option<SliceSource> {
    diag.mark(at, node.line);
    let mut model = None;
    let mut range = None;
    let mut params = BTreeMap::new();
    for (k, l, x) in entries(node, at, diag) {
        diag.mark(&format!("{at}.{k}"), *l);
        match k.as_str() {
            k if k == model_key => model = string(x, k, diag).map(|s| resolve_path(dir, &s)),
            "layer_range" => range = pair(x, "layer_range", diag),
            "parameters" => params = parse_params(x, &format!("{at}.parameters"), diag),
            other => diag.err(
                *l,
                unknown_key_msg("key in a slice source", other, SOURCE_KEYS),
            ),
        }
    }
    if model.is_none() {
        diag.err(
            node.line,
            format!("{at}: a slice source needs `{model_key}`"),
        );
    }
    if range.is_none() {
        diag.err(
            node.line,
            format!("{at}: a slice source needs `layer_range = [start, end]`"),
        );
    }
    Some(SliceSource {
        model: model?,
        layer_range: range?,
        params,
    })
}

/// The `group` names of an override, and the scope each stands for.
pub(crate) const GROUP_NAMES: &[(&str, OverrideScope)] = &[
    ("embeddings", OverrideScope::Embeddings),
    ("head", OverrideScope::Head),
];

fn override_entry(node: &Node, at: &str, diag: &mut Diag) -> Option<Override> {
    let mut ov = Override {
        scope: OverrideScope::Layers(0, 0),
        params: BTreeMap::new(),
        models: BTreeMap::new(),
    };
    let mut layers = None;
    let mut group = None;
    let mut bad_scope = false;
    for (k, l, x) in entries(node, at, diag) {
        diag.mark(&format!("{at}.{k}"), *l);
        match k.as_str() {
            "layers" => {
                layers = match x.kind {
                    Kind::Int(_) => uint(x, "layers", diag).map(|n| (n as usize, n as usize)),
                    _ => pair(x, "layers", diag),
                };
                bad_scope |= layers.is_none();
                if group.is_some() {
                    diag.err(
                        *l,
                        format!("{at}: give either `layers` or `group`, not both"),
                    );
                }
            }
            "group" => {
                let name = string(x, "group", diag);
                group = name.as_deref().and_then(|g| {
                    let found = GROUP_NAMES.iter().find(|(n, _)| *n == g).map(|(_, s)| *s);
                    if found.is_none() {
                        let names: Vec<&str> = GROUP_NAMES.iter().map(|(n, _)| *n).collect();
                        diag.err(*l, unknown_key_msg("group", g, &names));
                    }
                    found
                });
                bad_scope |= group.is_none();
                if layers.is_some() {
                    diag.err(
                        *l,
                        format!("{at}: give either `layers` or `group`, not both"),
                    );
                }
            }
            "parameters" => ov.params = parse_params(x, &format!("{at}.parameters"), diag),
            "models" => {
                for (j, m) in list(x, "models", diag).iter().enumerate() {
                    let mat = format!("{at}.models[{j}]");
                    diag.mark(&mat, m.line);
                    let mut index = None;
                    let mut params = BTreeMap::new();
                    for (mk, ml, mx) in entries(m, &mat, diag) {
                        match mk.as_str() {
                            "model" => index = uint(mx, "model", diag).map(|i| i as usize),
                            "parameters" => {
                                // Lines are keyed by model index (see check).
                                params = parse_params(mx, &format!("{mat}.parameters"), diag);
                            }
                            other => diag.err(
                                *ml,
                                unknown_key_msg(
                                    "key in [[overrides.models]]",
                                    other,
                                    OVERRIDE_MODEL_KEYS,
                                ),
                            ),
                        }
                    }
                    match index {
                        Some(i) => {
                            // check() reports per-model override problems as
                            // `overrides[o].models.<index>`; point those at
                            // this entry.
                            let key = format!("{at}.models.{i}");
                            diag.mark(&key, m.line);
                            for name in params.keys() {
                                let l = diag.line_of(&format!("{mat}.parameters.{name}"));
                                diag.mark(&format!("{key}.{name}"), l);
                            }
                            ov.models.entry(i).or_default().extend(params);
                        }
                        None => diag.err(
                            m.line,
                            format!("{mat}: needs `model = <index into [[models]]>`"),
                        ),
                    }
                }
            }
            other => diag.err(
                *l,
                unknown_key_msg("key in [[overrides]]", other, OVERRIDE_KEYS),
            ),
        }
    }
    match (layers, group) {
        (Some((a, b)), None) => {
            ov.scope = OverrideScope::Layers(a, b);
            Some(ov)
        }
        (None, Some(g)) => {
            ov.scope = g;
            Some(ov)
        }
        (Some(_), Some(_)) => None,
        (None, None) => {
            if !bad_scope {
                diag.err(
                    node.line,
                    format!("{at}: needs `layers = [first, last]` (inclusive) or `group = \"embeddings\"` / `group = \"head\"`"),
                );
            }
            None
        }
    }
}

// ---------------------------------------------------------------- writing

/// A TOML basic string, escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A float that reads back as the same f64 (shortest round-trip form).
pub(crate) fn float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{x:?}")
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

pub(crate) fn value(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(x) => float(*x),
        Value::Gradient(xs) => format!(
            "[{}]",
            xs.iter().map(|x| float(*x)).collect::<Vec<_>>().join(", ")
        ),
        Value::Filtered(entries) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|(f, v)| match f {
                    Some(f) => format!("{{ filter = {}, value = {} }}", quote(f), value(v)),
                    None => format!("{{ value = {} }}", value(v)),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// A `[header]` table of parameters; `int` says which take whole numbers
/// (written `3`, not `3.0`: values are held as f64).
fn params(out: &mut String, header: &str, p: &BTreeMap<String, Value>, int: &dyn Fn(&str) -> bool) {
    if p.is_empty() {
        return;
    }
    let _ = writeln!(out, "[{header}]");
    for (k, v) in p {
        let text = match v {
            Value::Number(x) if int(k) && x.fract() == 0.0 && x.abs() < 9.0e15 => {
                format!("{}", *x as i64)
            }
            v => value(v),
        };
        let _ = writeln!(out, "{} = {text}", key(k));
    }
}

/// `layers = [a, b]`, `layers = n` or `group = "..."`.
pub(crate) fn scope_line(scope: OverrideScope) -> String {
    match scope {
        OverrideScope::Layers(a, b) if a == b => format!("layers = {a}"),
        OverrideScope::Layers(a, b) => format!("layers = [{a}, {b}]"),
        g => format!("group = {}", quote(g.group_name().unwrap_or_default())),
    }
}

/// The recipe as native TOML, paths relative to `dir`.
pub(crate) fn write(r: &Recipe, dir: &Path) -> String {
    let mut out = String::new();
    let path = |p: &Path| quote(&relative_to(p, dir));
    let spec = r.method.spec();
    let int = |k: &str| {
        spec.global
            .iter()
            .chain(spec.per_model)
            .any(|s| s.name == k && s.kind == crate::merge::ParamKind::Int)
    };
    // A reader of a saved file should not need the docs to know this.
    out.push_str("# smelt recipe; paths are relative to this file's folder.\n");
    let _ = writeln!(out, "method = {}", quote(r.method.name()));
    if let Some(b) = &r.base {
        let _ = writeln!(out, "base = {}", path(b));
    }
    if let Some(seed) = r.seed {
        let _ = writeln!(out, "seed = {seed}");
    }
    if let Some(d) = r.out_dtype.and_then(dtype_name) {
        let _ = writeln!(out, "out_dtype = {}", quote(d));
    }
    if let Some(c) = &r.calibration {
        let _ = writeln!(out, "calibration = {}", path(c));
    }
    out.push_str(&super::vocab::toml_top(
        r.tokenizer.as_ref(),
        r.chat_template.as_deref(),
        dir,
    ));
    if !r.params.is_empty() {
        out.push('\n');
        params(&mut out, "parameters", &r.params, &int);
    }
    for m in &r.models {
        let _ = writeln!(out, "\n[[models]]\npath = {}", path(&m.path));
        params(&mut out, "models.parameters", &m.params, &int);
    }
    for s in &r.slices {
        out.push_str("\n[[slices]]\n");
        if let Some(b) = &s.base {
            let _ = writeln!(out, "base = {}", path(b));
        }
        params(&mut out, "slices.parameters", &s.params, &int);
        for src in &s.sources {
            let _ = writeln!(
                out,
                "[[slices.sources]]\nmodel = {}\nlayer_range = [{}, {}]",
                path(&src.model),
                src.layer_range.0,
                src.layer_range.1
            );
            params(&mut out, "slices.sources.parameters", &src.params, &int);
        }
    }
    for o in &r.overrides {
        out.push_str("\n[[overrides]]\n");
        let _ = writeln!(out, "{}", scope_line(o.scope));
        params(&mut out, "overrides.parameters", &o.params, &int);
        for (i, p) in &o.models {
            let _ = writeln!(out, "[[overrides.models]]\nmodel = {i}");
            params(&mut out, "overrides.models.parameters", p, &int);
        }
    }
    out.push_str(&super::vocab::toml_block(r.tokenizer.as_ref(), dir));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole-number parameters are written as integers (`depth = 3`, not
    /// `3.0`); real ones keep their point; both read back the same.
    #[test]
    fn whole_number_parameters_are_integers() {
        let dir = Path::new("/r");
        let mut r = Recipe::new(
            Method::Zipit,
            None,
            vec![PathBuf::from("/r/a"), PathBuf::from("/r/b")],
        );
        r.params.insert("depth".into(), Value::Number(3.0));
        r.params.insert("alpha".into(), Value::Number(1.0));
        let t = write(&r, dir);
        assert!(
            t.contains("depth = 3\n") && t.contains("alpha = 1.0\n"),
            "{t}"
        );
        let mut k = Recipe::new(
            Method::Karcher,
            None,
            r.models.iter().map(|m| m.path.clone()).collect(),
        );
        k.params.insert("max_iter".into(), Value::Number(20.0));
        let t = write(&k, dir);
        assert!(t.contains("max_iter = 20\n"), "{t}");
        let back = Recipe::parse_all(&t, &dir.join("k.toml")).expect("reads back");
        assert_eq!(back.params.get("max_iter"), Some(&Value::Number(20.0)));
    }
}
