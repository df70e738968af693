//! Per-layer overrides and fall-through, resolved from a native recipe.

use smelt::model::Group;
use smelt::recipe::Recipe;

const RECIPE: &str = r#"
method = "ties"
base = "../models/base"

[parameters]
density = 0.9                 # per-model names here apply to every model
weight = 0.1

[[models]]
path = "../models/a"
[models.parameters]
weight = [{ filter = "mlp", value = 0.5 }]   # no catch-all: falls through
density = 0.3

[[models]]
path = "../models/b"
[models.parameters]
weight = 1.0

[[overrides]]
layers = [2, 4]
[overrides.parameters]
lambda = [1.0, 2.0]           # a gradient across the override's own range
[[overrides.models]]
model = 1
[overrides.models.parameters]
weight = 0.25

[[overrides]]
layers = 4
[overrides.parameters]
lambda = 3.0                  # later overrides win
"#;

fn load() -> Recipe {
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("recipes");
    std::fs::create_dir_all(&rdir).unwrap();
    let path = rdir.join("r.toml");
    std::fs::write(&path, RECIPE).unwrap();
    let r = Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.base.as_deref(),
        Some(dir.path().join("models/base").as_path())
    );
    r
}

fn get(r: &Recipe, tensor: &str, group: Group, model: Option<usize>, name: &str) -> Option<f64> {
    let tp = r.resolve(tensor, group, 8);
    match model {
        Some(i) => tp.models[i].get(name),
        None => tp.global.get(name),
    }
    .map(|v| v.as_f64())
}

#[test]
fn fall_through_then_overrides() {
    let r = load();
    let mlp = |n: usize| format!("model.layers.{n}.mlp.up_proj.weight");
    let attn = |n: usize| format!("model.layers.{n}.self_attn.v_proj.weight");
    // Model 0: the mlp filter matches; elsewhere no filter matches and the
    // weight falls through to the recipe-wide value, as in mergekit.
    assert_eq!(
        get(&r, &mlp(0), Group::Layer(0), Some(0), "weight"),
        Some(0.5)
    );
    assert_eq!(
        get(&r, &attn(0), Group::Layer(0), Some(0), "weight"),
        Some(0.1)
    );
    // Model-level density beats the global one; model 1 falls back to it.
    assert_eq!(
        get(&r, &mlp(0), Group::Layer(0), Some(0), "density"),
        Some(0.3)
    );
    assert_eq!(
        get(&r, &mlp(0), Group::Layer(0), Some(1), "density"),
        Some(0.9)
    );
    // Overrides: layers 2..=4 only, gradient across that range.
    assert_eq!(get(&r, &mlp(1), Group::Layer(1), None, "lambda"), Some(1.0));
    assert_eq!(get(&r, &mlp(2), Group::Layer(2), None, "lambda"), Some(1.0));
    assert_eq!(get(&r, &mlp(3), Group::Layer(3), None, "lambda"), Some(1.5));
    assert_eq!(get(&r, &mlp(4), Group::Layer(4), None, "lambda"), Some(3.0));
    assert_eq!(get(&r, &mlp(5), Group::Layer(5), None, "lambda"), Some(1.0));
    assert_eq!(
        get(&r, &mlp(3), Group::Layer(3), Some(1), "weight"),
        Some(0.25)
    );
    assert_eq!(
        get(&r, &mlp(3), Group::Layer(3), Some(0), "weight"),
        Some(0.5)
    );
    assert_eq!(
        get(&r, &mlp(6), Group::Layer(6), Some(1), "weight"),
        Some(1.0)
    );
    // Layer overrides never reach pre/post tensors.
    assert_eq!(
        get(&r, "lm_head.weight", Group::Post, Some(1), "weight"),
        Some(1.0)
    );
    assert_eq!(
        get(&r, "lm_head.weight", Group::Post, None, "lambda"),
        Some(1.0)
    );
    // No seed written: the kernels get 0. The spec's defaults.
    let tp = r.resolve(&mlp(0), Group::Layer(0), 8);
    assert_eq!(tp.seed, 0);
    assert_eq!(tp.global.get("normalize").map(|v| v.as_bool()), Some(true));
    assert_eq!(tp.models.len(), 2);
}

#[test]
fn the_missing_catch_all_is_reported_at_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, RECIPE.replace("weight = 0.1\n", "")).unwrap();
    let errs = Recipe::load_all(&path).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let msg = errs[0].to_string();
    assert!(
        msg.contains("r.toml:11:") && msg.contains("no catch-all"),
        "{msg}"
    );
}

/// The full example in docs/recipes.md loads, passes check, and means what
/// the comments there say.
#[test]
fn the_documented_example_is_valid() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/recipes.md")).unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("recipes");
    std::fs::create_dir_all(&rdir).unwrap();
    let path = rdir.join("merge.toml");
    std::fs::write(&path, &doc[start..end]).unwrap();
    let r = Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.models.len(), 3);
    let at = |n: usize| {
        r.resolve(
            &format!("model.layers.{n}.mlp.up_proj.weight"),
            Group::Layer(n),
            8,
        )
    };
    assert_eq!(at(4).global.get("lambda").map(|v| v.as_f64()), Some(1.5));
    assert_eq!(at(3).global.get("lambda").map(|v| v.as_f64()), Some(1.2));
    assert_eq!(at(6).global.get("lambda").map(|v| v.as_f64()), Some(1.0));
    assert_eq!(
        at(5).models[1].get("density").map(|v| v.as_f64()),
        Some(0.6)
    );
    assert_eq!(at(0).models[2].get("weight").map(|v| v.as_f64()), Some(0.5));
    assert_eq!(
        at(0).models[2].get("density").map(|v| v.as_f64()),
        Some(0.5)
    );
}
