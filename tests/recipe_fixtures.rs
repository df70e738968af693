//! Every mergekit fixture recipe loads, and resolves to the values mergekit's
//! semantics give (gradients over layers, filters, fall-through, defaults).

use smelt::merge::{Method, ParamValue, TensorParams};
use smelt::model::Group;
use smelt::recipe::Recipe;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit")
}

fn load(name: &str) -> Recipe {
    let path = fixtures().join("recipes").join(format!("{name}.yml"));
    match Recipe::load(&path) {
        Ok(r) => r,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn f(tp: &TensorParams, model: usize, name: &str) -> f64 {
    tp.models[model]
        .get(name)
        .unwrap_or_else(|| panic!("model {model} has no {name} for {}", tp.tensor))
        .as_f64()
}

fn g(tp: &TensorParams, name: &str) -> ParamValue {
    tp.global
        .get(name)
        .unwrap_or_else(|| panic!("no global {name} for {}", tp.tensor))
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

const MLP: &str = "model.layers.1.mlp.down_proj.weight";
const ATTN: &str = "model.layers.1.self_attn.q_proj.weight";

#[test]
fn every_fixture_loads_and_passes_check() {
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures().join("recipes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yml") {
            continue;
        }
        let r = Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.check().is_empty(), "{}: {:?}", path.display(), r.check());
        n += 1;
    }
    assert_eq!(n, 21);
}

#[test]
fn paths_resolve_against_the_recipe_folder() {
    let r = load("ties");
    let models = fixtures().join("models");
    assert_eq!(r.base.as_deref(), Some(models.join("base").as_path()));
    let paths: Vec<_> = r.models.iter().map(|m| m.path.clone()).collect();
    assert_eq!(
        paths,
        vec![models.join("ft0"), models.join("ft1"), models.join("ft2")]
    );
    for p in &paths {
        assert!(p.join("model.safetensors").is_file(), "{}", p.display());
    }
}

#[test]
fn ties_gradient_and_filters() {
    let r = load("ties");
    assert_eq!(r.method, Method::Ties);
    let at = |layer: usize, name: &str| r.resolve(name, Group::Layer(layer), 4);
    // ft1: density = [0.2, 0.8] across 4 layers: t = layer / 3.
    close(f(&at(0, MLP), 1, "density"), 0.2);
    close(f(&at(1, MLP), 1, "density"), 0.4);
    close(f(&at(2, MLP), 1, "density"), 0.6);
    close(f(&at(3, MLP), 1, "density"), 0.8);
    // ft2: weight filter, first match wins.
    close(f(&at(1, MLP), 2, "weight"), 0.5);
    close(f(&at(1, ATTN), 2, "weight"), 0.2);
    close(f(&at(1, ATTN), 2, "density"), 0.5);
    // ft0 scalars, global normalize and the spec's default lambda.
    let tp = at(2, ATTN);
    close(f(&tp, 0, "weight"), 1.0);
    close(f(&tp, 0, "density"), 0.3);
    close(f(&tp, 1, "weight"), 0.7);
    assert_eq!(g(&tp, "normalize"), ParamValue::Bool(true));
    close(g(&tp, "lambda").as_f64(), 1.0);
    assert_eq!(tp.models.len(), 3);
    assert_eq!(tp.tensor, ATTN);
    // Embeddings and the head take the gradient's first value.
    close(
        f(
            &r.resolve("model.embed_tokens.weight", Group::Pre, 4),
            1,
            "density",
        ),
        0.2,
    );
    close(
        f(&r.resolve("lm_head.weight", Group::Post, 4), 1, "density"),
        0.2,
    );
    close(
        f(&r.resolve("lm_head.weight", Group::Post, 4), 2, "weight"),
        0.2,
    );
}

#[test]
fn task_arithmetic_gradient_matches_the_mergekit_output() {
    // The weights below were recovered from outputs/task_arithmetic by least
    // squares against (out - base) / lambda; pre/post tensors get 0.0.
    let r = load("task_arithmetic");
    close(
        g(&r.resolve(MLP, Group::Layer(1), 4), "lambda").as_f64(),
        0.9,
    );
    close(
        f(&r.resolve(MLP, Group::Layer(1), 4), 2, "weight"),
        1.0 / 3.0,
    );
    close(f(&r.resolve(MLP, Group::Layer(3), 4), 2, "weight"), 1.0);
    close(
        f(&r.resolve("model.norm.weight", Group::Post, 4), 2, "weight"),
        0.0,
    );
    close(
        f(
            &r.resolve("model.embed_tokens.weight", Group::Pre, 4),
            2,
            "weight",
        ),
        0.0,
    );
    assert_eq!(
        g(&r.resolve(MLP, Group::Layer(1), 4), "normalize"),
        ParamValue::Bool(false)
    );
}

#[test]
fn slerp_base_listed_among_models_is_the_base_only() {
    let r = load("slerp");
    assert_eq!(r.models.len(), 1);
    assert!(r.models[0].path.ends_with("ft1"));
    assert!(r.base.as_ref().is_some_and(|b| b.ends_with("ft0")));
    let t = |name: &str, group: Group| g(&r.resolve(name, group, 4), "t").as_f64();
    // Layer 1 of 4: t = 1/3 over five points: scaled = 4/3.
    close(t(ATTN, Group::Layer(1)), 0.5 * (2.0 / 3.0) + 0.3 / 3.0);
    close(t(MLP, Group::Layer(1)), 0.5 * (2.0 / 3.0) + 0.7 / 3.0);
    close(
        t("model.layers.0.self_attn.o_proj.weight", Group::Layer(0)),
        0.0,
    );
    close(t("model.layers.3.mlp.up_proj.weight", Group::Layer(3)), 0.0);
    close(
        t("model.layers.3.input_layernorm.weight", Group::Layer(3)),
        0.5,
    );
    close(t("model.embed_tokens.weight", Group::Pre), 0.5);
}

#[test]
fn other_fixtures_resolve() {
    let r = load("nearswap");
    assert_eq!(r.models.len(), 1);
    close(g(&r.resolve(MLP, Group::Layer(1), 4), "t").as_f64(), 0.001);

    let r = load("karcher");
    let tp = r.resolve(MLP, Group::Layer(1), 4);
    close(g(&tp, "max_iter").as_f64(), 10.0);
    close(g(&tp, "tol").as_f64(), 1e-5);
    assert_eq!(tp.models.len(), 3);

    let r = load("sce");
    close(
        g(&r.resolve(MLP, Group::Layer(0), 4), "select_topk").as_f64(),
        0.5,
    );

    let r = load("linear");
    let tp = r.resolve(MLP, Group::Layer(0), 4);
    close(f(&tp, 0, "weight"), 0.5);
    close(f(&tp, 2, "weight"), 0.2);
    assert_eq!(g(&tp, "normalize"), ParamValue::Bool(true));

    let r = load("breadcrumbs_ties");
    let tp = r.resolve(MLP, Group::Layer(0), 4);
    close(f(&tp, 1, "gamma"), 0.02);
    close(f(&tp, 0, "density"), 0.8);

    let r = load("ties_nonorm");
    let tp = r.resolve(MLP, Group::Layer(0), 4);
    close(g(&tp, "lambda").as_f64(), 1.2);
    assert_eq!(g(&tp, "normalize"), ParamValue::Bool(false));
}

#[test]
fn passthrough_slices() {
    let r = load("passthrough");
    assert!(r.models.is_empty());
    assert_eq!(r.slices.len(), 2);
    assert_eq!(r.slices[1].sources[0].layer_range, (1, 4));
    assert_eq!(r.sliced_layers(), 6);
    assert_eq!(r.slice_at(2), Some((0, 2)));
    assert_eq!(r.slice_at(3), Some((1, 0)));
    assert_eq!(r.slice_at(6), None);
    let tp = r.resolve("model.layers.4.mlp.up_proj.weight", Group::Layer(4), 6);
    assert_eq!(tp.models.len(), 1);
    close(f(&tp, 0, "scale"), 1.0);
}

#[test]
fn seed_comes_from_the_recipe() {
    let mut r = load("ties");
    r.method = smelt::merge::Method::DareTies;
    r.seed = Some(42);
    assert_eq!(r.resolve(MLP, Group::Layer(0), 4).seed, 42);
}

/// mergekit writes the output in `dtype` when `out_dtype` is absent; so
/// does smelt (it computes in f32 either way).
#[test]
fn dtype_sets_the_output_dtype_when_out_dtype_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        Recipe::load(&p).unwrap_or_else(|e| panic!("{e}"))
    };
    let head = "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n";
    let r = write("a.yml", &format!("{head}dtype: bfloat16\n"));
    assert_eq!(r.out_dtype, Some(smelt::model::Dtype::BF16));
    let r = write(
        "b.yml",
        &format!("{head}dtype: bfloat16\nout_dtype: float16\n"),
    );
    assert_eq!(r.out_dtype, Some(smelt::model::Dtype::F16));
    let r = write("c.yml", head);
    assert_eq!(r.out_dtype, None);
    let e = Recipe::load(&{
        let p = dir.path().join("d.yml");
        std::fs::write(&p, format!("{head}dtype: [1]\n")).unwrap();
        p
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("`dtype` must be a string"), "{e}");
}
