//! Tokenizer settings (`tokenizer_source`, `tokenizer:`, `chat_template`)
//! against mergekit 0.1.5: each fixture recipe under
//! tests/fixtures/tokenizer/recipes runs through load → plan → engine, and
//! the output must match what mergekit wrote (tests/fixtures/tokenizer/
//! mergekit/<name>): every tensor to float32 rounding, the same vocabulary
//! (token → id, added tokens with their settings, special tokens), the
//! same chat template and `vocab_size`. The inputs are three tiny Llama
//! models whose vocabularies differ (see tests/fixtures/tokenizer/make.py).

use serde_json::Value;
use smelt::engine::{self, Options};
use smelt::model::Model;
use smelt::plan::Plan;
use smelt::recipe::Recipe;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Merge `recipe` into a fresh folder; returns (tempdir, output path).
fn merge(recipe: &Recipe) -> (tempfile::TempDir, PathBuf) {
    let plan = Plan::build(recipe).unwrap_or_else(|e| panic!("plan: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let mut opts = Options::new(&out);
    opts.threads = Some(2);
    engine::run(&plan, &opts, &tx, &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{e}"));
    (dir, out)
}

/// Token → id (model vocabulary and added tokens) of a tokenizer.json.
fn vocab(t: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some(m) = t["model"]["vocab"].as_object() {
        for (k, v) in m {
            out.insert(k.clone(), v.as_u64().expect("id"));
        }
    }
    for e in t["added_tokens"].as_array().expect("added_tokens") {
        out.insert(
            e["content"].as_str().expect("content").to_string(),
            e["id"].as_u64().expect("id"),
        );
    }
    out
}

/// The special-token keys of a tokenizer_config.json.
fn specials(c: &Value) -> BTreeMap<String, Value> {
    c.as_object()
        .expect("object")
        .iter()
        .filter(|(k, _)| k.ends_with("_token") || *k == "additional_special_tokens")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn check(name: &str) {
    let recipe = Recipe::load(&fixtures().join(format!("recipes/{name}.yml")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let (_dir, out) = merge(&recipe);
    let theirs_dir = fixtures().join(format!("mergekit/{name}"));

    // Tensors.
    let ours = Model::open(&out).expect("our output opens");
    let theirs = Model::open(&theirs_dir).expect("fixture opens");
    let mut names: Vec<&str> = ours.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<&str> = theirs.tensors().iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want, "{name}: tensor names differ");
    let mut worst = 0f64;
    for t in theirs.tensors() {
        assert_eq!(
            ours.tensor(&t.name).map(|x| x.shape.clone()),
            Some(t.shape.clone()),
            "{name}: shape of {}",
            t.name
        );
        let a = ours.read_all_f32(&t.name).expect("read ours");
        let b = theirs.read_all_f32(&t.name).expect("read theirs");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let err = f64::from((x - y).abs());
            let tol = 1e-5 * f64::from(y.abs()) + 1e-6;
            assert!(
                err <= tol,
                "{name}: tensor `{}` element {i} (row {}): smelt {x} vs mergekit {y}",
                t.name,
                i / t.shape.get(1).copied().unwrap_or(1)
            );
            worst = worst.max(err);
        }
    }
    eprintln!("{name}: worst absolute difference {worst:.2e}");

    // Vocabulary, added tokens, special tokens.
    let ot = json(&out.join("tokenizer.json"));
    let tt = json(&theirs_dir.join("tokenizer.json"));
    assert_eq!(vocab(&ot), vocab(&tt), "{name}: vocabularies differ");
    assert_eq!(
        ot["added_tokens"], tt["added_tokens"],
        "{name}: added tokens differ"
    );
    for key in [
        "model",
        "pre_tokenizer",
        "normalizer",
        "decoder",
        "post_processor",
    ] {
        assert_eq!(ot[key], tt[key], "{name}: tokenizer.json `{key}` differs");
    }
    let oc = json(&out.join("tokenizer_config.json"));
    let tc = json(&theirs_dir.join("tokenizer_config.json"));
    assert_eq!(
        specials(&oc),
        specials(&tc),
        "{name}: special tokens differ"
    );
    assert_eq!(oc["tokenizer_class"], tc["tokenizer_class"]);

    // Chat template.
    let read = |d: &Path| std::fs::read_to_string(d.join("chat_template.jinja")).ok();
    assert_eq!(
        read(&out),
        read(&theirs_dir),
        "{name}: chat templates differ"
    );

    // config.json's vocab_size follows the output vocabulary.
    assert_eq!(
        json(&out.join("config.json"))["vocab_size"],
        json(&theirs_dir.join("config.json"))["vocab_size"],
        "{name}: vocab_size"
    );
}

#[test]
fn base_vocabulary_matches_mergekit() {
    check("base");
}

#[test]
fn union_ties_matches_mergekit() {
    check("union");
}

#[test]
fn union_without_base_averages_and_writes_chatml() {
    check("union_nobase");
}

#[test]
fn model_source_and_auto_template_match_mergekit() {
    check("model_c");
}

#[test]
fn explicit_tokens_and_padding_match_mergekit() {
    check("tokens");
}

#[test]
fn sliced_slerp_with_base_vocabulary_matches_mergekit() {
    check("slerp_base");
}
