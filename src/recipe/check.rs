//! Static checks of a recipe against its method's spec: no files are read.
//!
//! Every problem is reported with the recipe location it concerns
//! (`models[1].parameters.density`), which the loaders map to a line.

use super::util::unknown_key_msg;
use super::{OverrideScope, Problem, Recipe, Slice, Value};
use crate::merge::{BaseRule, Method, MethodSpec, ParamKind, ParamSpec};
use std::collections::BTreeMap;
use std::path::Path;

/// Where the seed goes, for messages about a misplaced one.
pub(crate) const SEED_HOME: &str = "the seed is set once for the whole recipe: top-level `seed = N` in TOML, `smelt: {seed: N}` in mergekit YAML";

fn push(out: &mut Vec<Problem>, at: impl Into<String>, msg: impl Into<String>) {
    out.push(Problem {
        at: at.into(),
        msg: msg.into(),
    });
}

/// Names a method-wide table accepts: the globals, plus the per-model names
/// (mergekit falls back from a model's parameters to the global table).
pub(crate) fn global_names(spec: &MethodSpec) -> Vec<&'static str> {
    spec.global
        .iter()
        .chain(spec.per_model)
        .map(|p| p.name)
        .collect()
}

pub(crate) fn model_names(spec: &MethodSpec) -> Vec<&'static str> {
    spec.per_model.iter().map(|p| p.name).collect()
}

fn find(spec: &MethodSpec, name: &str) -> Option<&'static ParamSpec> {
    spec.global
        .iter()
        .chain(spec.per_model)
        .find(|p| p.name == name)
}

fn range_text(r: (f64, bool, f64, bool)) -> String {
    format!(
        "{}{}, {}{}",
        if r.1 { "[" } else { "(" },
        r.0,
        r.2,
        if r.3 { "]" } else { ")" }
    )
}

/// Check one value against its spec: kind, integer-ness, range, for every
/// number a gradient or filter can produce.
fn check_value(p: &ParamSpec, v: &Value, at: &str, out: &mut Vec<Problem>) {
    match v {
        Value::Bool(_) if p.kind != ParamKind::Bool => {
            push(
                out,
                at,
                format!("`{}` takes a number, not a boolean", p.name),
            );
        }
        Value::Bool(_) => {}
        Value::Number(_) | Value::Gradient(_) if p.kind == ParamKind::Bool => {
            push(out, at, format!("`{}` takes true or false", p.name));
        }
        Value::Number(x) => check_number(p, *x, at, out),
        Value::Gradient(xs) if xs.is_empty() => {
            push(
                out,
                at,
                format!("`{}`: an empty list is not a value", p.name),
            );
        }
        Value::Filtered(entries) if entries.is_empty() => {
            push(
                out,
                at,
                format!("`{}`: an empty filter list is not a value", p.name),
            );
        }
        Value::Gradient(xs) if p.kind == ParamKind::Int && xs.iter().any(|x| *x != xs[0]) => {
            push(
                out,
                at,
                format!(
                    "`{}` takes a whole number; a gradient would give fractions between layers",
                    p.name
                ),
            );
        }
        Value::Gradient(xs) => {
            for x in xs {
                check_number(p, *x, at, out);
            }
        }
        Value::Filtered(entries) => {
            for (_, v) in entries {
                check_value(p, v, at, out);
            }
        }
    }
}

fn check_number(p: &ParamSpec, x: f64, at: &str, out: &mut Vec<Problem>) {
    for m in number_problems(p, x) {
        // Huge and tiny numbers in exponent form (`1e39`, not 40 digits).
        let shown = if x != 0.0 && (x.abs() >= 1e9 || x.abs() < 1e-6) {
            format!("{x:e}")
        } else {
            x.to_string()
        };
        push(out, at, format!("`{}` = {shown} {m}", p.name));
    }
}

/// What is wrong with `x` as a value of `p` (the words after "`name` =
/// x"): not finite, beyond f32, not whole, out of range. Empty when it
/// is fine. The recipe check and the workbench's value prompts both ask
/// here, so a prompt refuses what the check would.
pub fn number_problems(p: &ParamSpec, x: f64) -> Vec<String> {
    if !x.is_finite() {
        return vec!["is not a finite number".into()];
    }
    // The merge computes in f32: a value it cannot hold would turn every
    // output it touches into an infinity (or NaN).
    if x.abs() > f64::from(f32::MAX) {
        return vec!["is beyond what f32 holds (±3.4e38); the merge would write infinities".into()];
    }
    let mut out = Vec::new();
    if p.kind == ParamKind::Int && x.fract() != 0.0 {
        out.push("must be a whole number".into());
    }
    if let Some(r @ (lo, lo_inc, hi, hi_inc)) = p.range {
        let ok_lo = if lo_inc { x >= lo } else { x > lo };
        let ok_hi = if hi_inc { x <= hi } else { x < hi };
        if !(ok_lo && ok_hi) {
            out.push(format!("is outside {}", range_text(r)));
        }
    }
    out
}

/// A parameter table where `allowed` names are valid.
fn check_table(
    spec: &MethodSpec,
    params: &BTreeMap<String, Value>,
    at: &str,
    allowed: &[&'static str],
    per_model_table: bool,
    out: &mut Vec<Problem>,
) {
    for (name, v) in params {
        let here = format!("{at}.{name}");
        if name == "seed" {
            push(out, here, format!("`seed` is not a parameter; {SEED_HOME}"));
            continue;
        }
        if !allowed.contains(&name.as_str()) {
            let msg = if per_model_table && spec.global.iter().any(|p| p.name == name) {
                format!("`{name}` is a method-wide parameter of {}; set it under `parameters`, not per model", spec.name)
            } else {
                unknown_key_msg(&format!("parameter for {}", spec.name), name, allowed)
            };
            push(out, here, msg);
            continue;
        }
        if let Some(p) = find(spec, name) {
            check_value(p, v, &here, out);
        }
    }
}

/// Whether `v` gives a value for every tensor (no filter list without a
/// catch-all entry).
pub(crate) fn total(v: Option<&Value>) -> bool {
    match v {
        None => false,
        Some(Value::Filtered(e)) => e.iter().any(|(f, _)| f.is_none()),
        Some(_) => true,
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Model-count rule, worded for the whole set of inputs.
fn count_problem(spec: &MethodSpec, has_base: bool, n: usize) -> Option<String> {
    let base_word =
        matches!(spec.base, BaseRule::Required) || (has_base && spec.base == BaseRule::Optional);
    if spec.takes(n) {
        return None;
    }
    let (min, max) = (spec.min_models, spec.max_models);
    let extra = usize::from(base_word);
    let need = match max {
        Some(m) if m == min => format!("exactly {}", plural(min + extra, "model")),
        Some(m) if n > m => format!("at most {}", plural(m + extra, "model")),
        _ => format!("at least {}", plural(min + extra, "model")),
    };
    let how = if base_word {
        format!("`base` and {}", plural(min, "other"))
    } else {
        plural(min, "model")
    };
    let how = match max {
        Some(m) if m == min && base_word => format!("`base` plus {}", plural(m, "other")),
        _ => how,
    };
    Some(format!(
        "{} needs {need} in all ({how}); this recipe has {}",
        spec.name,
        if base_word {
            format!(
                "{} plus {}",
                if has_base { "a base" } else { "no base" },
                plural(n, "other")
            )
        } else {
            plural(n, "model")
        }
    ))
}

pub(crate) fn check(r: &Recipe) -> Vec<Problem> {
    let spec = r.method.spec();
    let mut out = Vec::new();
    let gnames = global_names(spec);
    let mnames = model_names(spec);
    check_base(r, spec, &mut out);
    check_inputs(r, spec, &gnames, &mnames, &mut out);
    check_tables(r, spec, &gnames, &mnames, &mut out);
    check_required(r, spec, &mut out);
    // Values that pass one by one but not together.
    if r.slices.is_empty() {
        check_combinations(r, &mut out);
    }
    check_overrides(r, spec, &gnames, &mnames, &mut out);
    check_seed(r, spec, &mut out);
    check_calibration(r, spec, &mut out);
    check_slice_bases(r, spec, &mut out);
    if zips(r) {
        check_zip_params(r, spec, &mut out);
    }
    out.extend(super::vocab::problems(r));
    out
}

/// Whether the method matches features across whole MLPs (zipit,
/// permute), which changes what overrides and parameters may hold.
fn zips(r: &Recipe) -> bool {
    matches!(r.method, Method::Zipit | Method::Permute)
}

/// The base: required, refused, or named twice.
fn check_base(r: &Recipe, spec: &MethodSpec, out: &mut Vec<Problem>) {
    match (spec.base, &r.base) {
        (BaseRule::Required, None) if r.slices.iter().all(|s| s.base.is_none()) => push(
            out,
            "method",
            format!(
                "{} needs a base model: set `base` (mergekit: `base_model`)",
                spec.name
            ),
        ),
        (BaseRule::None, Some(_)) => push(
            out,
            "base",
            format!(
                "{} takes no base model; list it with the other models instead",
                spec.name
            ),
        ),
        _ => {}
    }
    if let Some(b) = &r.base {
        for (i, m) in r.models.iter().enumerate() {
            if same(&m.path, b) {
                push(
                    out,
                    format!("models[{i}].path"),
                    "this is the base model; name it only as `base`".to_string(),
                );
            }
        }
    }
}

/// The inputs: how many whole models, or each slice.
fn check_inputs(
    r: &Recipe,
    spec: &MethodSpec,
    gnames: &[&'static str],
    mnames: &[&'static str],
    out: &mut Vec<Problem>,
) {
    if r.slices.is_empty() {
        if let Some(msg) = count_problem(spec, r.base.is_some(), r.models.len()) {
            push(
                out,
                if r.models.is_empty() {
                    "method"
                } else {
                    "models"
                },
                msg,
            );
        }
    } else {
        if !r.models.is_empty() {
            push(
                out,
                "slices",
                "a recipe has either [[models]] or [[slices]], not both".to_string(),
            );
        }
        for (i, s) in r.slices.iter().enumerate() {
            check_slice(r, spec, i, s, gnames, mnames, out);
        }
    }
}

/// One slice: its base, its sources' count and layer ranges, its and its
/// sources' parameter tables.
fn check_slice(
    r: &Recipe,
    spec: &MethodSpec,
    i: usize,
    s: &Slice,
    gnames: &[&'static str],
    mnames: &[&'static str],
    out: &mut Vec<Problem>,
) {
    let at = format!("slices[{i}]");
    // Without a base rule, a slice's `base` is no base (and is
    // refused by `check_slice_bases`): every source counts.
    let base = s
        .base
        .as_ref()
        .or(r.base.as_ref())
        .filter(|_| spec.base != BaseRule::None);
    let others = s
        .sources
        .iter()
        .filter(|src| base.is_none_or(|b| !same(&src.model, b)))
        .count();
    if spec.base == BaseRule::Required && base.is_none() {
        push(
            out,
            &at,
            format!("{} needs a base model for this slice", spec.name),
        );
    }
    if s.sources.is_empty() {
        push(out, &at, "a slice needs at least one source".to_string());
    } else if let Some(msg) = count_problem(spec, base.is_some(), others) {
        push(out, &at, msg);
    }
    let len = s
        .sources
        .first()
        .map(|s| s.layer_range.1.saturating_sub(s.layer_range.0));
    for (j, src) in s.sources.iter().enumerate() {
        let sat = format!("{at}.sources[{j}]");
        let (a, b) = src.layer_range;
        if a >= b {
            push(
                out,
                format!("{sat}.layer_range"),
                format!("layer_range [{a}, {b}] is empty (it is half-open: [start, end))"),
            );
        } else if Some(b - a) != len {
            push(
                out,
                format!("{sat}.layer_range"),
                "every source of a slice must span the same number of layers".to_string(),
            );
        }
        check_table(
            spec,
            &src.params,
            &format!("{sat}.parameters"),
            mnames,
            true,
            out,
        );
    }
    check_table(
        spec,
        &s.params,
        &format!("{at}.parameters"),
        gnames,
        false,
        out,
    );
}

/// The recipe's own and each model's parameter table.
fn check_tables(
    r: &Recipe,
    spec: &MethodSpec,
    gnames: &[&'static str],
    mnames: &[&'static str],
    out: &mut Vec<Problem>,
) {
    check_table(spec, &r.params, "parameters", gnames, false, out);
    for (i, m) in r.models.iter().enumerate() {
        check_table(
            spec,
            &m.params,
            &format!("models[{i}].parameters"),
            mnames,
            true,
            out,
        );
    }
}

/// Parameters without a default: set somewhere that covers every tensor.
fn check_required(r: &Recipe, spec: &MethodSpec, out: &mut Vec<Problem>) {
    for p in spec.global.iter().filter(|p| p.default.is_none()) {
        let anywhere = total(r.params.get(p.name))
            || (!r.slices.is_empty() && r.slices.iter().all(|s| total(s.params.get(p.name))));
        if !anywhere {
            push(
                out,
                "parameters",
                format!(
                    "{} needs `{}` under `parameters` ({})",
                    spec.name, p.name, p.doc
                ),
            );
        }
    }
    for p in spec.per_model.iter().filter(|p| p.default.is_none()) {
        if total(r.params.get(p.name)) {
            continue;
        }
        if r.slices.is_empty() {
            for (i, m) in r.models.iter().enumerate() {
                if !total(m.params.get(p.name)) {
                    if m.params.contains_key(p.name) {
                        push(
                            out,
                            format!("models[{i}].parameters.{}", p.name),
                            format!(
                                "`{}` has no catch-all entry (one without `filter`), so tensors no filter matches have no value",
                                p.name
                            ),
                        );
                    } else {
                        push(
                            out,
                            format!("models[{i}]"),
                            format!(
                                "{} needs `{}` for every model ({})",
                                spec.name, p.name, p.doc
                            ),
                        );
                    }
                }
            }
        } else {
            for (i, s) in r.slices.iter().enumerate() {
                if total(s.params.get(p.name)) {
                    continue;
                }
                let base = s.base.as_ref().or(r.base.as_ref());
                for (j, src) in s.sources.iter().enumerate() {
                    if base.is_some_and(|b| same(&src.model, b)) {
                        continue;
                    }
                    if !total(src.params.get(p.name)) {
                        push(
                            out,
                            format!("slices[{i}].sources[{j}]"),
                            format!(
                                "{} needs `{}` for every model ({})",
                                spec.name, p.name, p.doc
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Each override: its layers, its tables, the models it names.
fn check_overrides(
    r: &Recipe,
    spec: &MethodSpec,
    gnames: &[&'static str],
    mnames: &[&'static str],
    out: &mut Vec<Problem>,
) {
    for (i, o) in r.overrides.iter().enumerate() {
        let at = format!("overrides[{i}]");
        if let OverrideScope::Layers(a, b) = o.scope {
            if a > b {
                push(
                    out,
                    format!("{at}.layers"),
                    format!("layers [{a}, {b}]: the first is after the last"),
                );
            }
        }
        if !r.slices.is_empty() {
            push(
                out,
                &at,
                "overrides are not supported together with slices; use gradients or filters in the slices' parameters".to_string(),
            );
        }
        check_table(
            spec,
            &o.params,
            &format!("{at}.parameters"),
            gnames,
            false,
            out,
        );
        for (m, p) in &o.models {
            let mat = format!("{at}.models.{m}");
            if *m >= r.models.len() {
                push(
                    out,
                    &mat,
                    format!(
                        "model {m} does not exist: [[models]] has {} (indices start at 0)",
                        r.models.len()
                    ),
                );
            }
            check_table(spec, p, &mat, mnames, true, out);
        }
        if zips(r) {
            check_zip_override(r, i, out);
        }
    }
}

/// A seed is read only by the methods that draw random numbers.
fn check_seed(r: &Recipe, spec: &MethodSpec, out: &mut Vec<Problem>) {
    if r.seed.is_some() && !r.method.draws_random() {
        push(
            out,
            "seed",
            format!(
                "{} draws no random numbers; remove `seed` (only dare_ties, dare_linear, della and della_linear use one)",
                spec.name
            ),
        );
    }
}

/// Calibration data is read only by zipit and permute (which, without
/// it, match features on the bundled digits training split).
fn check_calibration(r: &Recipe, spec: &MethodSpec, out: &mut Vec<Problem>) {
    if r.calibration.is_some() && !zips(r) {
        push(
            out,
            "calibration",
            format!(
                "`calibration` is used only by zipit and permute, not {}",
                spec.name
            ),
        );
    }
}

/// What the planner does not read of slices: a base the method refuses,
/// parameters on a source that is the slice's base.
fn check_slice_bases(r: &Recipe, spec: &MethodSpec, out: &mut Vec<Problem>) {
    for (i, s) in r.slices.iter().enumerate() {
        let at = format!("slices[{i}]");
        if spec.base == BaseRule::None && s.base.is_some() {
            push(
                out,
                format!("{at}.base"),
                format!(
                    "{} takes no base model; remove this slice's `base`",
                    spec.name
                ),
            );
        }
        if spec.base != BaseRule::None {
            if let Some(b) = s.base.as_ref().or(r.base.as_ref()) {
                for (j, src) in s.sources.iter().enumerate() {
                    if same(&src.model, b) && !src.params.is_empty() {
                        push(
                            out,
                            format!("{at}.sources[{j}].parameters"),
                            "this source is the slice's base, which takes no parameters; remove them".to_string(),
                        );
                    }
                }
            }
        }
    }
}

/// zipit and permute: no slices, and one number for each parameter.
fn check_zip_params(r: &Recipe, spec: &MethodSpec, out: &mut Vec<Problem>) {
    if !r.slices.is_empty() {
        push(
            out,
            "slices",
            format!(
                "{} merges whole models; slices are not supported",
                spec.name
            ),
        );
    }
    // The engine reads one value of each for the whole merge.
    for (name, v) in &r.params {
        let here = format!("parameters.{name}");
        let reported = out.iter().any(|p| p.at == here);
        if !matches!(v, Value::Number(_)) && find(spec, name).is_some() && !reported {
            push(
                out,
                here,
                format!(
                    "{} takes one number for `{name}`{}",
                    spec.name,
                    if name == "depth" {
                        ""
                    } else {
                        "; per-layer values go in [[overrides]]"
                    }
                ),
            );
        }
    }
    if let Some(Value::Number(d)) = r.params.get("depth") {
        if *d < -1.0 {
            push(
                out,
                "parameters.depth",
                format!("`depth` = {d}: give a number of layers ≥ 0, or -1 for every hidden layer"),
            );
        }
    }
}

/// A plain number for model `i`'s `name` (its own, else the method-wide
/// one), with where it is set; `None` for gradients, filters or no value.
fn model_number(r: &Recipe, i: usize, name: &str) -> Option<(f64, String)> {
    match r.models[i].params.get(name) {
        Some(Value::Number(x)) => Some((*x, format!("models[{i}].parameters.{name}"))),
        Some(_) => None,
        None => match r.params.get(name) {
            Some(Value::Number(x)) => Some((*x, format!("parameters.{name}"))),
            _ => None,
        },
    }
}

/// Rules between values of a whole-model recipe, where they are plain
/// numbers (anything else the plan checks tensor by tensor, as the merge
/// would): DELLA's `density +/- epsilon` inside (0, 1), and weights that
/// `normalize` would divide by a zero sum.
fn check_combinations(r: &Recipe, out: &mut Vec<Problem>) {
    let spec = r.method.spec();
    let default = |name: &str| {
        spec.global
            .iter()
            .chain(spec.per_model)
            .find(|p| p.name == name)
            .and_then(|p| p.default)
    };
    if matches!(r.method, Method::Della | Method::DellaLinear) {
        for i in 0..r.models.len() {
            let density = model_number(r, i, "density")
                .or_else(|| default("density").map(|d| (d.as_f64(), format!("models[{i}]"))));
            let set_epsilon = model_number(r, i, "epsilon");
            let epsilon = set_epsilon
                .clone()
                .or_else(|| default("epsilon").map(|e| (e.as_f64(), String::new())));
            let (Some((d, d_at)), Some((e, e_at))) = (density, epsilon) else {
                continue;
            };
            if d > 0.0 && d < 1.0 && (d + e >= 1.0 || d - e <= 0.0) {
                // Point at the epsilon when the recipe sets one.
                let at = if set_epsilon.is_some() { e_at } else { d_at };
                push(
                    out,
                    at,
                    format!(
                        "model {i}: density {d} ± epsilon {e} must stay inside (0, 1) (DELLA keeps entries with probabilities density - epsilon to density + epsilon)"
                    ),
                );
            }
        }
    }
    let normalizer = match r.method {
        Method::Linear => Some("normalize"),
        Method::Multislerp => Some("normalize_weights"),
        _ => None,
    };
    if let Some(flag) = normalizer {
        let on = match r.params.get(flag) {
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => None,
            None => default(flag).map(|v| v.as_bool()),
        };
        let weights: Option<Vec<f64>> = (0..r.models.len())
            .map(|i| model_number(r, i, "weight").map(|(w, _)| w))
            .collect();
        if let (Some(true), Some(ws)) = (on, weights) {
            if !ws.is_empty() && ws.iter().sum::<f64>() == 0.0 {
                push(
                    out,
                    if r.params.contains_key("weight") { "parameters.weight" } else { "models" },
                    format!(
                        "the weights sum to 0, and `{flag}` divides by their sum; change a weight or set `{flag} = false`"
                    ),
                );
            }
        }
    }
}

/// The zip depth a recipe sets: `Some(k)` for k ≥ 0, `None` for -1 (every
/// hidden layer) or no value.
fn zip_depth(r: &Recipe) -> Option<usize> {
    match r.params.get("depth") {
        Some(Value::Number(d)) if *d >= 0.0 => Some(*d as usize),
        _ => None,
    }
}

/// What zipit/permute read of an override: `alpha`/`beta` (zipit), one
/// number each, for zipped layers.
fn check_zip_override(r: &Recipe, i: usize, out: &mut Vec<Problem>) {
    let o = &r.overrides[i];
    let at = format!("overrides[{i}]");
    let name = r.method.name();
    match o.scope {
        OverrideScope::Layers(..) => {}
        g => push(
            out,
            &at,
            format!("{name} zips layers only; an override of the {g} group is not read"),
        ),
    }
    for (k, v) in &o.params {
        if k == "depth" {
            push(
                out,
                format!("{at}.parameters.depth"),
                "`depth` is one value for the whole merge; set it under `parameters`".to_string(),
            );
        } else if !matches!(v, Value::Number(_)) && (k == "alpha" || k == "beta") {
            push(
                out,
                format!("{at}.parameters.{k}"),
                format!("{name} takes one number for `{k}` in an override"),
            );
        }
    }
    if let (OverrideScope::Layers(_, hi), Some(d)) = (o.scope, zip_depth(r)) {
        if hi >= d && !o.params.is_empty() {
            push(out, &at, past_depth(o.scope, d));
        }
    }
}

fn past_depth(scope: OverrideScope, depth: usize) -> String {
    if depth == 0 {
        format!("{scope} is not zipped at depth 0 (the ensemble zips no layer): only zipped layers take alpha/beta; remove the override or raise `depth`")
    } else {
        format!(
            "{scope} lies past zip depth {depth}: only zipped layers (0..={}) take alpha/beta; remove the override or raise `depth`",
            depth - 1
        )
    }
}

/// The rules that need the models' layer count (see
/// [`Recipe::problems_for_layers`]).
pub(crate) fn check_layers(r: &Recipe, n_layers: usize) -> Vec<Problem> {
    let mut out = Vec::new();
    if !r.slices.is_empty() {
        return out;
    }
    let zips = matches!(r.method, Method::Zipit | Method::Permute);
    // The deepest zip: every hidden layer, the classifier stays per model.
    let max_depth = n_layers.saturating_sub(1);
    let depth = if zips {
        match zip_depth(r) {
            Some(d) if d > max_depth => {
                push(
                    &mut out,
                    "parameters.depth",
                    format!(
                        "`depth` = {d} is more than these models' {max_depth} hidden layers (the classifier stays per model)"
                    ),
                );
                None
            }
            Some(_) => None, // checked without the layer count
            None => Some(max_depth),
        }
    } else {
        None
    };
    for (i, o) in r.overrides.iter().enumerate() {
        let OverrideScope::Layers(lo, hi) = o.scope else {
            continue;
        };
        if hi >= n_layers {
            push(
                &mut out,
                format!("overrides[{i}].layers"),
                format!(
                    "{} is past the last layer: the models have {n_layers} layers (0..={})",
                    if lo >= n_layers {
                        o.scope.to_string()
                    } else {
                        format!("layer {hi}")
                    },
                    n_layers.saturating_sub(1)
                ),
            );
        } else if let Some(d) = depth {
            if hi >= d && !o.params.is_empty() {
                push(&mut out, format!("overrides[{i}]"), past_depth(o.scope, d));
            }
        }
    }
    out
}

/// Whether two recipe paths name the same model (lexically; files are not
/// read here).
pub(crate) fn same(a: &Path, b: &Path) -> bool {
    super::util::clean(a) == super::util::clean(b)
}
