//! Seeded recipe fuzzing: what `recipe check` accepts, the merge accepts.
//!
//! 500 mutations (half mergekit YAML, half smelt TOML) of the fixture
//! recipes in tests/fixtures/mergekit: keys renamed or dropped, values
//! replaced by numbers at and past their bounds, by other types, nested
//! into gradients and filters; methods swapped, parameters added, layer
//! ranges and override layers moved. For each, `recipe check` (the
//! library's `Recipe::parse_all` then `Plan::build`, as the CLI does) must
//! pass exactly when the merge (`engine::run` in this process, into a
//! temporary folder) ends without a bad-input error, and nothing may
//! panic. The run is deterministic (fixed seed, one thread).

use serde_json::{json, Value as J};
use smelt::engine::{self, EngineError, Options};
use smelt::plan::Plan;
use smelt::recipe::Recipe;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

const CASES: usize = 500;

mod common;
use common::Rng;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit")
}

/// Numbers at and past the bounds of every parameter.
const NUMBERS: &[f64] = &[
    0.0, 1.0, -1.0, 0.5, 0.9, 0.1, 2.0, -5.0, 1.000_001, -0.000_001, 1e-9, 3.0, 10.0, 3.4e38,
    3.5e38, 1e39, -1e39, 1e308, -1e308, 4.0, 20.0,
];

const PARAM_NAMES: &[&str] = &[
    "weight",
    "density",
    "gamma",
    "epsilon",
    "lambda",
    "normalize",
    "rescale",
    "int8_mask",
    "t",
    "nuslerp_flatten",
    "nuslerp_row_wise",
    "normalize_weights",
    "eps",
    "max_iter",
    "tol",
    "filter_wise",
    "select_topk",
    "scale",
    "depth",
    "alpha",
    "beta",
    "seed",
    "wieght",
];

const METHODS: &[&str] = &[
    "linear",
    "task_arithmetic",
    "ties",
    "dare_ties",
    "dare_linear",
    "breadcrumbs",
    "breadcrumbs_ties",
    "della",
    "della_linear",
    "slerp",
    "nuslerp",
    "multislerp",
    "karcher",
    "model_stock",
    "sce",
    "nearswap",
    "passthrough",
    "zipit",
    "permute",
    "frobnicate",
];

/// Every path to a node of `v` (keys and indices).
fn paths(v: &J, at: &mut Vec<J>, out: &mut Vec<Vec<J>>) {
    out.push(at.clone());
    match v {
        J::Object(m) => {
            for (k, c) in m {
                at.push(J::String(k.clone()));
                paths(c, at, out);
                at.pop();
            }
        }
        J::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(json!(i));
                paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// The node at `path` (which `paths` found, so it exists until a mutation
/// before it changed the tree; then `None`).
fn node<'a>(v: &'a mut J, path: &[J]) -> Option<&'a mut J> {
    path.iter().try_fold(v, |n, k| match k {
        J::String(s) => n.get_mut(s.as_str()),
        _ => n.get_mut(k.as_u64().unwrap_or(0) as usize),
    })
}

/// A random number, kept finite-runtime for Karcher (its iterations are
/// bounded by the recipe, not the fuzzer's patience).
fn number(rng: &mut Rng, key: &str) -> J {
    let x = *rng.pick(NUMBERS);
    let x = if key == "max_iter" && x > 1e4 { 1e4 } else { x };
    if x.fract() == 0.0 && x.abs() < 1e15 && rng.below(2) == 0 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// A random value for a parameter named `key`.
fn value(rng: &mut Rng, key: &str) -> J {
    match rng.below(9) {
        0 => json!(rng.below(2) == 0),
        1 => json!("x"),
        2 => json!([number(rng, key), number(rng, key)]),
        3 => json!([{"filter": "mlp", "value": number(rng, key)}, {"value": number(rng, key)}]),
        4 => json!([{"filter": "self_attn", "value": number(rng, key)}]),
        5 => json!({"value": number(rng, key)}),
        6 => json!([]),
        _ => number(rng, key),
    }
}

fn last_key(path: &[J]) -> String {
    path.iter()
        .rev()
        .find_map(|k| k.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One mutation of the recipe tree `v`.
fn mutate(rng: &mut Rng, v: &mut J, models: &[String], toml: bool) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    let key = last_key(&path);
    let method_key = if toml { "method" } else { "merge_method" };
    match rng.below(12) {
        // A value replaced: numbers at and past bounds, other types.
        0..=2 => {
            if !path.is_empty() {
                let x = value(rng, &key);
                if let Some(n) = node(v, &path) {
                    *n = x;
                }
            }
        }
        // A key dropped.
        3 => {
            if let Some((last, parent)) = path.split_last() {
                match (node(v, parent), last) {
                    (Some(J::Object(m)), J::String(k)) => {
                        m.remove(k);
                    }
                    (Some(J::Array(a)), J::Number(i)) => {
                        let i = i.as_u64().unwrap_or(0) as usize;
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        // A key renamed to another parameter name (or a typo).
        4 => {
            if let Some((J::String(k), parent)) = path.split_last() {
                if let Some(J::Object(m)) = node(v, parent) {
                    if let Some(x) = m.remove(k) {
                        m.insert(rng.pick(PARAM_NAMES).to_string(), x);
                    }
                }
            }
        }
        // Another method.
        5 => v[method_key] = json!(rng.pick(METHODS)),
        // A parameter added, method-wide or to a model.
        6 | 7 => {
            let name = rng.pick(PARAM_NAMES).to_string();
            let x = value(rng, &name);
            let n = v["models"].as_array().map_or(0, Vec::len);
            let i = rng.below(n.max(1));
            if n > 0 && rng.below(2) == 0 && v["models"][i].is_object() {
                let m = &mut v["models"][i];
                if !m["parameters"].is_object() {
                    m["parameters"] = json!({});
                }
                m["parameters"][name] = x;
            } else {
                if !v["parameters"].is_object() {
                    v["parameters"] = json!({});
                }
                v["parameters"][name] = x;
            }
        }
        // Layer ranges: slices moved past the models' 4 layers, overrides.
        8 => {
            let a = rng.below(6) as i64 - 1;
            let b = a + rng.below(6) as i64 - 1;
            if toml {
                let name = *rng.pick(&["weight", "density", "t", "epsilon", "gamma"]);
                let x = number(rng, name);
                v["overrides"] = json!([{ "layers": [a, b], "parameters": { name: x } }]);
            } else {
                let m = rng.pick(models).clone();
                v["slices"] = json!([{ "sources": [{ "model": m, "layer_range": [a, b] }] }]);
            }
        }
        // A model swapped for another fixture model, or one that is not
        // there.
        9 => {
            let n = v["models"].as_array().map_or(0, Vec::len);
            let i = rng.below(n.max(1));
            if n > 0 && v["models"][i].is_object() {
                let m = if rng.below(4) == 0 {
                    "/nonexistent/model".to_string()
                } else {
                    rng.pick(models).clone()
                };
                let field = if toml { "path" } else { "model" };
                v["models"][i][field] = json!(m);
            }
        }
        // Nesting changed: a table where a value was, or a value wrapped.
        10 => {
            let wrap_in_table = rng.below(2) == 0;
            if let Some(n) = node(v, &path).filter(|_| !path.is_empty()) {
                *n = if wrap_in_table {
                    json!({ "value": n.clone() })
                } else {
                    json!([n.clone()])
                };
            }
        }
        // Seed and dtype.
        _ => {
            if rng.below(2) == 0 {
                let seed = rng
                    .pick(&[json!(7), json!(-1), json!(1.5), json!("s")])
                    .clone();
                if toml {
                    v["seed"] = seed;
                } else {
                    v["smelt"] = json!({ "seed": seed });
                }
            } else {
                v["out_dtype"] = json!(rng.pick(&["float16", "bfloat16", "int8", "float64"]));
            }
        }
    }
}

/// JSON to TOML text (nulls, which TOML lacks, become strings).
fn to_toml(v: &J) -> Option<String> {
    fn conv(v: &J) -> toml::Value {
        match v {
            J::Null => toml::Value::String("null".into()),
            J::Bool(b) => toml::Value::Boolean(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => toml::Value::Integer(i),
                None => toml::Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            J::String(s) => toml::Value::String(s.clone()),
            J::Array(a) => toml::Value::Array(a.iter().map(conv).collect()),
            J::Object(m) => {
                toml::Value::Table(m.iter().map(|(k, x)| (k.clone(), conv(x))).collect())
            }
        }
    }
    match conv(v) {
        t @ toml::Value::Table(_) => toml::to_string(&t).ok(),
        _ => None,
    }
}

/// What the merge of an accepted recipe did.
enum Outcome {
    Merged,
    BadInput(String),
    Internal(String),
}

fn run_merge(plan: &Plan, out: &Path) -> Outcome {
    let mut opts = Options::new(out);
    opts.threads = Some(1);
    opts.sync = false;
    let (tx, _rx) = crossbeam_channel::unbounded();
    match engine::run(plan, &opts, &tx, &AtomicBool::new(false)) {
        Ok(_) => Outcome::Merged,
        Err(e @ EngineError::Other(_)) => Outcome::Internal(e.to_string()),
        Err(e @ EngineError::Cancelled) => Outcome::Internal(e.to_string()),
        Err(e) => Outcome::BadInput(e.to_string()),
    }
}

#[test]
fn recipe_check_passes_exactly_when_the_merge_does() {
    let fx = fixtures();
    let models_dir = fx.join("models");
    let models: Vec<String> = ["base", "ft0", "ft1", "ft2"]
        .iter()
        .map(|m| models_dir.join(m).display().to_string())
        .collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    // The fixture recipes as trees, paths made absolute: YAML as mergekit
    // writes it, TOML as smelt writes it.
    let mut seeds: Vec<(J, bool)> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(fx.join("recipes"))
        .expect("recipes")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for p in &names {
        let text = std::fs::read_to_string(p)
            .expect("read")
            .replace("../models/", &format!("{}/", models_dir.display()));
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
        seeds.push((serde_json::to_value(&y).expect("json"), false));
        let r = Recipe::parse_all(&text, &tmp.path().join("seed.yml")).expect("fixture recipe");
        let t: toml::Value = toml::from_str(&r.to_toml(tmp.path())).expect("toml");
        seeds.push((serde_json::to_value(&t).expect("json"), true));
    }

    let mut rng = Rng(0x5eed_2024);
    let (mut accepted, mut refused, mut merged) = (0, 0, 0);
    let mut disagreements = Vec::new();
    let mut formats = [0usize; 2];
    for case in 0..CASES {
        let (seed, toml) = seeds[case % seeds.len()].clone();
        let mut tree = seed;
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut tree, &models, toml);
        }
        let (text, file) = if toml {
            match to_toml(&tree) {
                Some(t) => (t, tmp.path().join(format!("r{case}.toml"))),
                None => continue,
            }
        } else {
            (
                serde_yaml_ng::to_string(&tree).expect("yaml text"),
                tmp.path().join(format!("r{case}.yml")),
            )
        };
        formats[usize::from(toml)] += 1;
        let result = std::panic::catch_unwind(|| {
            let checked = Recipe::parse_all(&text, &file)
                .map_err(|e| {
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .and_then(|r| Plan::build(&r).map_err(|e| e.to_string()));
            match checked {
                Err(e) => (false, None, e),
                Ok(plan) => {
                    let out = tmp.path().join(format!("out{case}"));
                    let o = run_merge(&plan, &out);
                    let _ = std::fs::remove_dir_all(&out);
                    (true, Some(o), String::new())
                }
            }
        });
        match result {
            Err(_) => disagreements.push(format!("case {case}: panicked on\n{text}")),
            Ok((false, _, _)) => refused += 1,
            Ok((true, Some(Outcome::Merged), _)) => {
                accepted += 1;
                merged += 1;
            }
            Ok((true, Some(Outcome::BadInput(e)), _)) => {
                accepted += 1;
                disagreements.push(format!(
                    "case {case}: check passed, merge refused it: {e}\n{text}"
                ));
            }
            Ok((true, Some(Outcome::Internal(e)), _)) => {
                accepted += 1;
                disagreements.push(format!("case {case}: internal error: {e}\n{text}"));
            }
            Ok((true, None, _)) => unreachable!(),
        }
    }
    eprintln!(
        "fuzz_recipe: {} cases ({} YAML, {} TOML): {accepted} accepted by check ({merged} merged), {refused} refused, {} disagreements",
        formats[0] + formats[1],
        formats[0],
        formats[1],
        disagreements.len()
    );
    assert!(formats[0] + formats[1] >= CASES * 9 / 10, "{formats:?}");
    // Both sides must be exercised for the property to mean anything
    // (about one mutation in ten survives the check; at least 25 here).
    assert!(
        accepted >= CASES / 20 && refused >= CASES / 10,
        "{accepted} / {refused}"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}
