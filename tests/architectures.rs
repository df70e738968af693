//! Twelve Hugging Face architectures, as tiny random-init models
//! (`tests/fixtures/arch/<arch>/{a,b}`, made by `tests/fixtures/arch/make.py`
//! with transformers): linear, TIES, SLERP and a passthrough that changes
//! the layer count (layers 0-3 of `a` then 1-4 of `b`: 8 layers from 5)
//! each give the input's tensors (passthrough: renumbered, each from the
//! slice it belongs to), a config whose layer count and per-layer lists
//! agree with the tensors, and the input's tokenizer and preprocessor
//! files. `tests/fixtures/arch/load_check.py` loads the same outputs in
//! transformers (run by hand; CI has no Python).

use serde_json::Value;
use smelt::engine::{self, Options};
use smelt::model::arch::{layer_count, PER_LAYER_LISTS};
use smelt::model::{classify, Group, Model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

const ARCHS: [&str; 12] = [
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "mixtral", "gpt2", "gpt_neox", "bert",
    "vit", "clip",
];

/// Layers of every fixture model.
const LAYERS: usize = 5;

/// The passthrough's slices: `a`'s layers 0..4, then `b`'s 1..5.
const SLICES: [(&str, usize, usize); 2] = [("a", 0, 4), ("b", 1, 5)];

fn fixture(arch: &str, v: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arch")
        .join(arch)
        .join(v)
}

fn recipes(arch: &str) -> Vec<(&'static str, String)> {
    let a = fixture(arch, "a").display().to_string();
    let b = fixture(arch, "b").display().to_string();
    vec![
        (
            "linear",
            format!(
                "merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n  \
                 - model: {b}\n    parameters: {{weight: 0.5}}\ndtype: float32\n"
            ),
        ),
        (
            "ties",
            format!(
                "merge_method: ties\nbase_model: {a}\nmodels:\n  - model: {b}\n    \
                 parameters: {{weight: 1.0, density: 0.5}}\ndtype: float32\n"
            ),
        ),
        (
            "slerp",
            format!(
                "merge_method: slerp\nbase_model: {a}\nmodels:\n  - model: {a}\n  - model: {b}\n\
                 parameters: {{t: 0.3}}\ndtype: float32\n"
            ),
        ),
        (
            "passthrough",
            format!(
                "merge_method: passthrough\nslices:\n  - sources:\n      - {{model: {a}, layer_range: [{}, {}]}}\n  \
                 - sources:\n      - {{model: {b}, layer_range: [{}, {}]}}\ndtype: float32\n",
                SLICES[0].1, SLICES[0].2, SLICES[1].1, SLICES[1].2
            ),
        ),
    ]
}

/// Merge `yaml` into `dir/out`; returns the output folder.
fn merge(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let r = dir.join(format!("{name}.yml"));
    std::fs::write(&r, yaml).unwrap();
    let recipe = smelt::recipe::Recipe::load(&r).unwrap_or_else(|e| panic!("{name}: {e}"));
    let plan = smelt::plan::Plan::build(&recipe).unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = dir.join(name);
    let mut opts = Options::new(&out);
    opts.sync = false;
    let (tx, _rx) = crossbeam_channel::unbounded();
    engine::run(&plan, &opts, &tx, &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    out
}

fn config(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

fn shapes(m: &Model) -> BTreeMap<String, Vec<usize>> {
    m.tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

/// `name` with its layer index replaced by `layer`.
fn at_layer(name: &str, layer: usize) -> String {
    classify(name).renamed(layer)
}

/// The configs (top level, or each tower) that hold a layer count.
fn towers(c: &Value) -> Vec<&Value> {
    match (c.get("text_config"), c.get("vision_config")) {
        (Some(t), Some(v)) if c["model_type"] == "clip" => vec![t, v],
        _ => vec![c],
    }
}

/// The config agrees with the output's tensors: the layer count (in every
/// tower), every per-layer list, and no layer-count key that the input did
/// not have.
fn check_config(arch: &str, what: &str, input: &Value, out: &Value, layers: usize) {
    assert_eq!(layer_count(out), Some(layers), "{arch} {what}: layer count");
    let (ti, to) = (towers(input), towers(out));
    assert_eq!(ti.len(), to.len());
    for (i, o) in ti.iter().zip(&to) {
        let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(keys(i), keys(o), "{arch} {what}: config keys changed");
        let counts: Vec<u64> = ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]
            .iter()
            .filter_map(|k| o.get(*k)?.as_u64())
            .collect();
        assert_eq!(counts, [layers as u64], "{arch} {what}: layer-count keys");
        for k in PER_LAYER_LISTS {
            if let Some(l) = o.get(k) {
                assert_eq!(l.as_array().unwrap().len(), layers, "{arch} {what}: {k}");
            }
        }
    }
}

/// Every tokenizer / preprocessor file of the input is in the output, as is.
fn check_side_files(arch: &str, what: &str, input: &Path, out: &Path) {
    let mut n = 0;
    for e in std::fs::read_dir(input).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "config.json" || name.ends_with(".safetensors") {
            continue;
        }
        let copied = std::fs::read(out.join(&name))
            .unwrap_or_else(|e| panic!("{arch} {what}: {name} not copied: {e}"));
        assert_eq!(copied, std::fs::read(&p).unwrap(), "{arch} {what}: {name}");
        n += 1;
    }
    assert!(n >= 1, "{arch}: the fixture has no tokenizer files");
}

fn check_arch(arch: &str) {
    let d = tempfile::tempdir().unwrap();
    let (pa, pb) = (fixture(arch, "a"), fixture(arch, "b"));
    let (a, b) = (Model::open(&pa).unwrap(), Model::open(&pb).unwrap());
    assert_eq!(a.num_layers(), LAYERS, "{arch}");
    assert_eq!(a.catalogue_layers(), LAYERS, "{arch}");
    let ca = config(&pa);
    for (what, yaml) in recipes(arch) {
        let out = merge(d.path(), what, &yaml);
        let m = Model::open(&out).unwrap();
        let co = config(&out);
        check_side_files(arch, what, &pa, &out);
        if what != "passthrough" {
            assert_eq!(shapes(&m), shapes(&a), "{arch} {what}: tensors");
            assert_eq!(co, ca, "{arch} {what}: config changed");
            check_config(arch, what, &ca, &co, LAYERS);
            continue;
        }
        let n_out: usize = SLICES.iter().map(|s| s.2 - s.1).sum();
        // Expected: every tensor of `a`, its layers renumbered over the
        // slices; each output tensor's bytes from the model its slice reads
        // (embeddings from the first slice, norm / head from the last).
        let mut want: BTreeMap<String, (String, &Model, String)> = BTreeMap::new();
        for t in a.tensors() {
            match t.place.group {
                Group::Pre => {
                    want.insert(t.name.clone(), ("pre".into(), &a, t.name.clone()));
                }
                Group::Post => {
                    want.insert(t.name.clone(), ("post".into(), &b, t.name.clone()));
                }
                Group::Layer(0) => {
                    let mut j = 0;
                    for (v, lo, hi) in SLICES {
                        let src = if v == "a" { &a } else { &b };
                        for l in lo..hi {
                            want.insert(
                                at_layer(&t.name, j),
                                (format!("layer {j}"), src, at_layer(&t.name, l)),
                            );
                            j += 1;
                        }
                    }
                }
                Group::Layer(_) => {}
            }
        }
        let got: Vec<String> = shapes(&m).into_keys().collect();
        let want_names: Vec<String> = want.keys().cloned().collect();
        assert_eq!(got, want_names, "{arch} passthrough: tensor names");
        assert_eq!(m.catalogue_layers(), n_out, "{arch} passthrough: layers");
        for (name, (why, src, src_name)) in &want {
            let o = m.tensor(name).unwrap();
            let s = src.tensor(src_name).unwrap();
            assert_eq!(o.shape, s.shape, "{arch}: {name}");
            assert!(
                m.raw(o) == src.raw(s),
                "{arch} passthrough: {name} ({why}) is not {src_name} of {}",
                src.path().display()
            );
        }
        check_config(arch, what, &ca, &co, n_out);
        // Per-layer lists: each output layer's entry from its source layer.
        let cb = config(&pb);
        for ((ti, tb), to) in towers(&ca).iter().zip(towers(&cb)).zip(towers(&co)) {
            for k in PER_LAYER_LISTS {
                let Some(l) = to.get(k) else { continue };
                let mut expect = Vec::new();
                for (v, lo, hi) in SLICES {
                    let src = if v == "a" { ti } else { tb };
                    expect.extend_from_slice(&src[k].as_array().unwrap()[lo..hi]);
                }
                assert_eq!(l.as_array().unwrap(), &expect, "{arch}: {k}");
            }
        }
    }
}

macro_rules! arch_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            check_arch(stringify!($name));
        }
    )*};
}

arch_tests!(llama, mistral, qwen2, qwen3, gemma2, phi3, mixtral, gpt2, gpt_neox, bert, vit, clip);

#[test]
fn every_fixture_is_tested() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = ARCHS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// Gemma2 alternates sliding and full attention: the passthrough's
/// `layer_types` must follow the layers it took (the bug transformers
/// caught: `num_hidden_layers (8) must be equal to the number of
/// layer_types (5)`).
#[test]
fn gemma2_layer_types_follow_the_slices() {
    let d = tempfile::tempdir().unwrap();
    let yaml = recipes("gemma2").pop().unwrap().1;
    let out = merge(d.path(), "passthrough", &yaml);
    let c = config(&out);
    let s = "sliding_attention";
    let f = "full_attention";
    assert_eq!(c["num_hidden_layers"], 8);
    assert_eq!(
        c["layer_types"],
        serde_json::json!([s, f, s, f, f, s, f, s])
    );
}

/// GPT-2 counts layers in `n_layer`: that key is updated, none is added.
#[test]
fn gpt2_n_layer_updated_not_duplicated() {
    let d = tempfile::tempdir().unwrap();
    let yaml = recipes("gpt2").pop().unwrap().1;
    let c = config(&merge(d.path(), "passthrough", &yaml));
    assert_eq!(c["n_layer"], 8);
    assert!(c.get("num_hidden_layers").is_none(), "{c}");
}

/// GPT-NeoX's `embed_out` is the output head (from the last slice) and
/// CLIP's `pre_layrnorm` comes before the layers (from the first).
#[test]
fn head_and_pre_norm_come_from_the_right_slice() {
    assert_eq!(classify("embed_out.weight").group, Group::Post);
    assert_eq!(
        classify("vision_model.pre_layrnorm.weight").group,
        Group::Pre
    );
    let d = tempfile::tempdir().unwrap();
    for (arch, name, from) in [
        ("gpt_neox", "embed_out.weight", "b"),
        ("gpt_neox", "gpt_neox.embed_in.weight", "a"),
        ("clip", "vision_model.pre_layrnorm.weight", "a"),
        ("clip", "vision_model.post_layernorm.weight", "b"),
    ] {
        let yaml = recipes(arch).pop().unwrap().1;
        let out = d.path().join(arch);
        if !out.exists() {
            merge(d.path(), arch, &yaml);
        }
        let m = Model::open(&out).unwrap();
        let src = Model::open(&fixture(arch, from)).unwrap();
        let other = Model::open(&fixture(arch, if from == "a" { "b" } else { "a" })).unwrap();
        let o = m.raw(m.tensor(name).unwrap());
        assert!(o == src.raw(src.tensor(name).unwrap()), "{arch}: {name}");
        assert!(
            o != other.raw(other.tensor(name).unwrap()),
            "{arch}: {name}"
        );
    }
}

/// A two-tower model whose towers differ in depth: slices would take the
/// same layers of both, so a passthrough is refused (exit 2), naming the
/// model and both counts, and nothing is written.
#[test]
fn towers_of_different_depth_are_refused_for_slices() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("two-tower");
    let t = |n: &str| (n.to_string(), vec![2], vec![0.5f32, 1.0]);
    let tensors = vec![
        t("text_model.embeddings.token_embedding.weight"),
        t("text_model.encoder.layers.0.mlp.fc1.weight"),
        t("text_model.encoder.layers.1.mlp.fc1.weight"),
        t("text_model.encoder.layers.2.mlp.fc1.weight"),
        t("vision_model.encoder.layers.0.mlp.fc1.weight"),
        t("vision_model.encoder.layers.1.mlp.fc1.weight"),
        t("text_model.final_layer_norm.weight"),
    ];
    smelt::model::write_small(&m, &tensors, smelt::model::Dtype::F32, &[]).unwrap();
    let cfg = serde_json::json!({"model_type": "clip", "architectures": ["CLIPModel"],
        "text_config": {"num_hidden_layers": 3}, "vision_config": {"num_hidden_layers": 2}});
    std::fs::write(m.join("config.json"), cfg.to_string()).unwrap();
    let yaml = "merge_method: passthrough\nslices:\n  - sources:\n      - {model: two-tower, layer_range: [0, 2]}\n  \
                - sources:\n      - {model: two-tower, layer_range: [1, 3]}\n";
    std::fs::write(d.path().join("r.yml"), yaml).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["merge", "--quiet", "--out", "out", "r.yml"])
        .current_dir(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("two-tower"), "{err}");
    assert!(
        err.contains("text_config.num_hidden_layers = 3")
            && err.contains("vision_config.num_hidden_layers = 2"),
        "{err}"
    );
    assert!(!d.path().join("out").exists());
}

/// Every non-layer tensor of every fixture is where the architecture puts
/// it: for the ten mergekit defines, its `pre_weights` / `post_weights`
/// (`mergekit/_data/architectures/*.json`, restricted to the tensors the
/// fixtures have); for ViT and CLIP, which mergekit leaves to inference,
/// transformers' module order (embeddings and CLIP's `pre_layrnorm` before
/// the encoder; final norms, pooler, projections and `logit_scale` after).
#[test]
fn non_layer_tensors_are_placed_as_the_architectures_say() {
    const PLACES: &[(&str, &[&str], &[&str])] = &[
        (
            "llama",
            &["model.embed_tokens.weight"],
            &["model.norm.weight", "lm_head.weight"],
        ),
        (
            "mistral",
            &["model.embed_tokens.weight"],
            &["model.norm.weight", "lm_head.weight"],
        ),
        (
            "qwen2",
            &["model.embed_tokens.weight"],
            &["model.norm.weight", "lm_head.weight"],
        ),
        (
            "qwen3",
            &["model.embed_tokens.weight"],
            &["model.norm.weight", "lm_head.weight"],
        ),
        (
            "gemma2",
            &["model.embed_tokens.weight"],
            &["model.norm.weight", "lm_head.weight"],
        ),
        (
            "phi3",
            &["model.embed_tokens.weight"],
            &["lm_head.weight", "model.norm.weight"],
        ),
        (
            "mixtral",
            &["model.embed_tokens.weight"],
            &["model.norm.weight", "lm_head.weight"],
        ),
        (
            "gpt2",
            &["transformer.wte.weight", "transformer.wpe.weight"],
            &["transformer.ln_f.weight", "transformer.ln_f.bias"],
        ),
        (
            "gpt_neox",
            &["gpt_neox.embed_in.weight"],
            &[
                "gpt_neox.final_layer_norm.bias",
                "gpt_neox.final_layer_norm.weight",
                "embed_out.weight",
            ],
        ),
        (
            "bert",
            &[
                "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight",
                "embeddings.word_embeddings.weight",
                "embeddings.LayerNorm.bias",
                "embeddings.LayerNorm.weight",
            ],
            &["pooler.dense.weight", "pooler.dense.bias"],
        ),
        (
            "vit",
            &[
                "embeddings.cls_token",
                "embeddings.patch_embeddings.projection.bias",
                "embeddings.patch_embeddings.projection.weight",
                "embeddings.position_embeddings",
            ],
            &[
                "layernorm.bias",
                "layernorm.weight",
                "pooler.dense.bias",
                "pooler.dense.weight",
            ],
        ),
        (
            "clip",
            &[
                "text_model.embeddings.position_embedding.weight",
                "text_model.embeddings.token_embedding.weight",
                "vision_model.embeddings.class_embedding",
                "vision_model.embeddings.patch_embedding.weight",
                "vision_model.embeddings.position_embedding.weight",
                "vision_model.pre_layrnorm.bias",
                "vision_model.pre_layrnorm.weight",
            ],
            &[
                "logit_scale",
                "text_model.final_layer_norm.bias",
                "text_model.final_layer_norm.weight",
                "text_projection.weight",
                "vision_model.post_layernorm.bias",
                "vision_model.post_layernorm.weight",
                "visual_projection.weight",
            ],
        ),
    ];
    assert_eq!(PLACES.len(), ARCHS.len());
    for (arch, pre, post) in PLACES {
        let m = Model::open(&fixture(arch, "a")).unwrap();
        let mut non_layer: Vec<&str> = m
            .tensors()
            .iter()
            .filter(|t| !matches!(t.place.group, Group::Layer(_)))
            .map(|t| t.name.as_str())
            .collect();
        non_layer.sort();
        let mut listed: Vec<&str> = pre.iter().chain(post.iter()).copied().collect();
        listed.sort();
        // GPT-2 ties its head to `wte`: the file has no `lm_head.weight`.
        assert_eq!(non_layer, listed, "{arch}: non-layer tensors");
        for name in *pre {
            assert_eq!(
                m.tensor(name).unwrap().place.group,
                Group::Pre,
                "{arch}: {name}"
            );
        }
        for name in *post {
            assert_eq!(
                m.tensor(name).unwrap().place.group,
                Group::Post,
                "{arch}: {name}"
            );
        }
    }
}
