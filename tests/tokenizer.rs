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

/// A recipe of the fixture models from YAML text (paths relative to the
/// recipes folder), or its problems.
fn parse(yaml: &str) -> Result<Recipe, String> {
    let path = fixtures().join("recipes/inline.yml");
    Recipe::parse_all(yaml, &path).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn tokenizer_keys_survive_toml_and_mergekit_export() {
    use smelt::recipe::{TokenRef, TokenSource, VocabSource};
    let path = fixtures().join("recipes/tokens.yml");
    let r = Recipe::load(&path).expect("loads");
    let t = r.tokenizer.as_ref().expect("tokenizer block kept");
    assert_eq!(t.source, VocabSource::Union);
    assert_eq!(t.pad_to_multiple_of, Some(16));
    let names: Vec<&str> = t.tokens.iter().map(|x| x.token.as_str()).collect();
    assert_eq!(names, ["<|im_start|>", "<|im_end|>", "w", "zz", "<tool>"]);
    assert!(matches!(
        &t.tokens[0].source,
        Some(TokenSource::ModelToken { token: TokenRef::Text(s), .. }) if s == "<s>"
    ));
    assert_eq!(t.tokens[2].source, Some(TokenSource::Zero));
    assert!(t.tokens[2].force && t.tokens[3].force && !t.tokens[1].force);
    assert!(matches!(
        &t.tokens[4].source,
        Some(TokenSource::ModelToken {
            token: TokenRef::Id(5),
            ..
        })
    ));
    assert!(r
        .chat_template
        .as_deref()
        .is_some_and(|c| c.contains("m['content']")));

    let dir = fixtures().join("recipes");
    // TOML and back.
    let toml = r.to_toml(&dir);
    assert!(toml.contains("[tokenizer]"), "{toml}");
    let back = Recipe::parse_all(&toml, &dir.join("x.toml")).expect("TOML reads back");
    assert_eq!(back.tokenizer, r.tokenizer);
    assert_eq!(back.chat_template, r.chat_template);
    // mergekit YAML and back.
    let yaml = r.to_mergekit_yaml(&dir).expect("exports");
    assert!(
        yaml.contains("tokenizer:") && yaml.contains("chat_template:"),
        "{yaml}"
    );
    let back = parse(&yaml).expect("YAML reads back");
    assert_eq!(back.tokenizer, r.tokenizer);
    assert_eq!(back.chat_template, r.chat_template);

    // `tokenizer_source` stays `tokenizer_source`; `model:PATH` is a path.
    let r = parse(
        "merge_method: linear\nmodels:\n  - model: ../inputs/a\n    parameters: {weight: 0.5}\n  - model: ../inputs/b\n    parameters: {weight: 0.5}\ntokenizer_source: model:../inputs/c\n",
    )
    .expect("parses");
    let t = r.tokenizer.as_ref().expect("kept");
    assert!(!t.block);
    assert!(matches!(&t.source, VocabSource::Model(p) if p.ends_with("inputs/c")));
    let yaml = r.to_mergekit_yaml(&dir).expect("exports");
    assert!(yaml.contains("tokenizer_source: ../inputs/c"), "{yaml}");
}

#[test]
fn tokenizer_settings_that_cannot_work_are_refused() {
    let head = "merge_method: linear\nmodels:\n  - model: ../inputs/a\n    parameters: {weight: 0.5}\n  - model: ../inputs/b\n    parameters: {weight: 0.5}\n";
    let both = parse(&format!(
        "{head}tokenizer_source: union\ntokenizer:\n  source: base\n"
    ))
    .expect_err("both keys");
    assert!(
        both.contains("`tokenizer_source` and `tokenizer` are both set"),
        "{both}"
    );

    let chat = parse(&format!("{head}chat_template: chatmlx\n")).expect_err("unknown template");
    assert!(
        chat.contains("chatmlx") && chat.contains("chatml"),
        "{chat}"
    );

    let stranger = parse(&format!(
        "{head}tokenizer:\n  source: union\n  tokens:\n    zz:\n      source: ../inputs/c\n"
    ))
    .expect_err("token source outside the recipe");
    assert!(
        stranger.contains("zz") && stranger.contains("not one of the recipe's models"),
        "{stranger}"
    );

    let kind = parse(&format!(
        "{head}tokenizer:\n  tokens:\n    zz:\n      source: {{kind: nothing}}\n"
    ))
    .expect_err("unknown kind");
    assert!(kind.contains("model_token or zero"), "{kind}");

    let key = parse(&format!("{head}tokenizer:\n  pad_to_multiple: 8\n")).expect_err("typo");
    assert!(key.contains("pad_to_multiple_of"), "{key}");
}

#[test]
fn extended_vocabulary_without_tokenizer_source_names_tensor_and_key() {
    // b's embeddings have 42 rows (two added tokens), a's 40.
    let r = parse("merge_method: linear\nmodels:\n  - model: ../inputs/a\n    parameters: {weight: 0.5}\n  - model: ../inputs/b\n    parameters: {weight: 0.5}\n")
        .expect("parses");
    let err = match Plan::build(&r) {
        Ok(_) => panic!("differing vocabularies must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("embed_tokens.weight") || err.contains("lm_head.weight"),
        "{err}"
    );
    assert!(err.contains("tokenizer_source"), "{err}");

    // With `tokenizer_source: base` the same models merge, into a's 40 rows.
    let r = parse(
        "merge_method: linear\nmodels:\n  - model: ../inputs/a\n    parameters: {weight: 0.5}\n  - model: ../inputs/b\n    parameters: {weight: 0.5}\ntokenizer_source: base\n",
    )
    .expect("parses");
    let plan = Plan::build(&r).expect("plans");
    let embed = plan
        .jobs
        .iter()
        .find(|j| j.out.name == "model.embed_tokens.weight")
        .expect("embeddings planned");
    assert_eq!(embed.out.shape, vec![40, 16]);
    assert_eq!(plan.config.as_ref().expect("config")["vocab_size"], 40);
}

#[test]
fn chat_template_alone_is_written_with_the_config_models_tokenizer() {
    let r = parse(
        "merge_method: linear\nmodels:\n  - model: ../inputs/a\n    parameters: {weight: 0.5}\n  - model: ../inputs/c\n    parameters: {weight: 0.5}\nchat_template: chatml\n",
    )
    .expect("parses");
    let (_dir, out) = merge(&r);
    let t = std::fs::read_to_string(out.join("chat_template.jinja")).expect("template written");
    assert!(
        t.starts_with("{% for message in messages %}{{'<|im_start|>'"),
        "{t}"
    );
    assert_eq!(
        vocab(&json(&out.join("tokenizer.json"))),
        vocab(&json(&fixtures().join("inputs/a/tokenizer.json")))
    );
    // Without any tokenizer key the config model's files are copied as
    // they are: a has no template, so none is written.
    let r = parse("merge_method: linear\nmodels:\n  - model: ../inputs/a\n    parameters: {weight: 0.5}\n  - model: ../inputs/c\n    parameters: {weight: 0.5}\n")
        .expect("parses");
    let (_dir, out) = merge(&r);
    assert!(!out.join("chat_template.jinja").exists());
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).expect("copied"),
        std::fs::read(fixtures().join("inputs/a/tokenizer.json")).expect("input")
    );
}

#[test]
fn inputs_are_not_modified() {
    let before: Vec<(PathBuf, Vec<u8>)> = ["a", "b", "c"]
        .iter()
        .flat_map(|m| {
            let d = fixtures().join("inputs").join(m);
            std::fs::read_dir(&d)
                .expect("dir")
                .map(|e| {
                    let p = e.expect("entry").path();
                    let b = std::fs::read(&p).expect("read");
                    (p, b)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let r = Recipe::load(&fixtures().join("recipes/tokens.yml")).expect("loads");
    let _ = merge(&r);
    for (p, b) in before {
        assert_eq!(
            std::fs::read(&p).expect("read"),
            b,
            "{} changed",
            p.display()
        );
    }
}

#[test]
fn saving_over_a_toml_recipe_keeps_the_tokenizer_settings() {
    let dir = fixtures().join("recipes");
    let r = Recipe::load(&dir.join("tokens.yml")).expect("loads");
    let original = r.to_toml(&dir);
    // An edit elsewhere, saved over the original text.
    let mut edited = r.clone();
    edited.models[0]
        .params
        .insert("weight".into(), smelt::recipe::Value::Number(0.25));
    let text = edited
        .to_toml_preserving(&original, &dir)
        .expect("saves over");
    let back = Recipe::parse_all(&text, &dir.join("x.toml")).expect("reads back");
    assert_eq!(back.tokenizer, r.tokenizer);
    assert_eq!(back.chat_template, r.chat_template);
    assert_eq!(
        back.models[0].params.get("weight"),
        Some(&smelt::recipe::Value::Number(0.25))
    );
}
