//! Recipes through the `smelt` binary: the seed reaches the random methods
//! (and only from where it belongs), and mergekit export is exact or
//! refused.

mod common;

use common::{fixtures, smelt, text};

use std::path::Path;
use std::process::Command;

/// A temp folder with the fixture models in `models/`.
fn scratch() -> tempfile::TempDir {
    common::fixture_models(&["base", "ft0", "ft1", "ft2"])
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write recipe");
}

/// Merge `recipe` (in `dir`) into `dir/out`; the merged tensors' bytes.
fn merge(dir: &Path, recipe: &str, out: &str) -> Vec<u8> {
    let o = smelt(&["merge", recipe, "--out", out], dir);
    assert!(o.status.success(), "{recipe}: {}", text(&o));
    std::fs::read(dir.join(out).join("model.safetensors")).expect("merged file")
}

fn dare(seed_line: &str, params_extra: &str) -> String {
    format!(
        r#"method = "dare_ties"
base = "models/base"
{seed_line}

[parameters]
{params_extra}

[[models]]
path = "models/ft0"
parameters = {{ weight = 1.0, density = 0.5 }}

[[models]]
path = "models/ft1"
parameters = {{ weight = 0.5, density = 0.4 }}
"#
    )
}

#[test]
fn dare_seed_changes_the_draws_and_repeats_them() {
    let dir = scratch();
    let d = dir.path();
    write(d, "s7.toml", &dare("seed = 7", ""));
    write(d, "s0.toml", &dare("seed = 0", ""));
    write(d, "none.toml", &dare("", ""));
    let a = merge(d, "s7.toml", "a");
    let b = merge(d, "s7.toml", "b");
    let c = merge(d, "s0.toml", "c");
    let n = merge(d, "none.toml", "n");
    assert!(!a.is_empty());
    assert!(a == b, "the same seed twice gave different bytes");
    assert!(a != c, "seeds 7 and 0 gave the same bytes");
    // No seed written is seed 0.
    assert!(c == n);
}

/// `check` and `merge` both refuse `seed` as a parameter, naming the line
/// and where the seed goes; nothing is written.
#[test]
fn seed_as_a_parameter_is_refused_at_its_line() {
    let dir = scratch();
    let d = dir.path();
    // Line 6: `seed = 7.0` under [parameters].
    write(d, "r.toml", &dare("", "seed = 7.0"));
    for args in [
        vec!["recipe", "check", "r.toml"],
        vec!["merge", "r.toml", "--out", "out"],
    ] {
        let o = smelt(&args, d);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains("r.toml:6:") && t.contains("parameters.seed") && t.contains("top-level"),
            "{args:?}: {t}"
        );
    }
    assert!(!d.join("out").exists());
    // Per model too, in YAML, where `smelt: {seed: N}` is the place.
    write(
        d,
        "r.yml",
        "merge_method: dare_ties\nbase_model: models/base\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1.0, seed: 3}\n",
    );
    let o = smelt(&["recipe", "check", "r.yml"], d);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("r.yml:5:") && t.contains("smelt: {seed: N}"),
        "{t}"
    );
}

#[test]
fn seed_on_a_method_without_draws_is_refused() {
    let dir = scratch();
    let d = dir.path();
    let ties = dare("seed = 3", "").replace("dare_ties", "ties");
    write(d, "r.toml", &ties);
    let o = smelt(&["recipe", "check", "r.toml"], d);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("r.toml:3:") && t.contains("ties draws no random numbers; remove `seed`"),
        "{t}"
    );
}

/// Overrides on layers 0-2 and on the embeddings and head groups: the
/// exported YAML merges to exactly the TOML's bytes (before, mergekit's
/// "pre/post tensors take the first value" gave embed_tokens, norm and
/// lm_head layer 0's values).
const OVERRIDDEN: &str = r#"# TIES with tuned early layers and groups.
method = "ties"
base = "models/base"

[parameters]
normalize = true

[[models]]
path = "models/ft0"
parameters = { weight = 1.0, density = 0.3 }

[[models]]
path = "models/ft1"
parameters = { weight = 0.7, density = [0.2, 0.8] }

[[overrides]]
layers = [0, 2]
[overrides.parameters]
density = 0.35
lambda = 1.3

[[overrides]]
group = "embeddings"
[[overrides.models]]
model = 1
[overrides.models.parameters]
weight = 0.2

[[overrides]]
group = "head"
[overrides.parameters]
lambda = 0.6
"#;

#[test]
fn overridden_recipe_exports_to_the_same_bytes() {
    let dir = scratch();
    let d = dir.path();
    write(d, "saved.toml", OVERRIDDEN);
    let o = smelt(
        &[
            "recipe",
            "export",
            "saved.toml",
            "--format",
            "mergekit",
            "--out",
            "saved.yml",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let yaml = std::fs::read_to_string(d.join("saved.yml")).expect("yaml");
    assert!(!yaml.contains("overrides"), "{yaml}");
    let a = merge(d, "saved.toml", "a");
    let b = merge(d, "saved.yml", "b");
    assert!(!a.is_empty());
    assert!(a == b, "TOML and exported YAML merge differently:\n{yaml}");
    // The group overrides do act: without them the bytes differ.
    let plain = OVERRIDDEN
        .split("\n[[overrides]]\ngroup")
        .next()
        .unwrap_or_default()
        .to_string();
    write(d, "plain.toml", &plain);
    let c = merge(d, "plain.toml", "c");
    assert!(a != c, "the group overrides changed nothing");
}

/// What mergekit cannot say is refused with exit 2, each value named, and
/// no file written.
#[test]
fn unexportable_recipes_are_refused_and_nothing_is_written() {
    let dir = scratch();
    let d = dir.path();
    write(
        d,
        "z.toml",
        "method = \"zipit\"\n\n[[models]]\npath = \"models/ft0\"\n\n[[models]]\npath = \"models/ft1\"\n",
    );
    let o = smelt(
        &[
            "recipe", "export", "z.toml", "--format", "mergekit", "--out", "z.yml",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("zipit"), "{}", text(&o));
    assert!(!d.join("z.yml").exists());

    // Overrides in a sliced recipe: the library names every value.
    let mut r =
        smelt::recipe::Recipe::load(&fixtures().join("recipes/passthrough.yml")).expect("fixture");
    r.overrides.push(smelt::recipe::Override {
        scope: smelt::recipe::OverrideScope::Layers(1, 1),
        params: Default::default(),
        models: [(
            0,
            [("scale".to_string(), smelt::recipe::Value::Number(0.5))].into(),
        )]
        .into(),
    });
    let err = r.to_mergekit_yaml(d).expect_err("refused").to_string();
    assert!(
        err.contains("overrides[0].models.0.scale = 0.5") && err.contains("layer 1"),
        "{err}"
    );
}

/// Rules that need the models' layer count run when the models are
/// opened: `recipe check` and `merge` refuse overrides no tensor reads.
#[test]
fn overrides_past_the_layers_are_refused_once_models_are_open() {
    let dir = scratch();
    let d = dir.path();
    let ties = dare("", "").replace("dare_ties", "ties");
    // The fixture models have 4 layers (0..=3).
    write(
        d,
        "r.toml",
        &format!("{ties}\n[[overrides]]\nlayers = [3, 5]\n[overrides.parameters]\nlambda = 2.0\n"),
    );
    let o = smelt(&["recipe", "check", "r.toml"], d);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(
            "overrides[0].layers: layer 5 is past the last layer: the models have 4 layers (0..=3)"
        ),
        "{t}"
    );

    // zipit at every hidden layer (depth -1) zips layers 0..=2 of these
    // 4-layer MLPs; layer 3 is each model's own classifier.
    let zip = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/digits-zip");
    let z = format!(
        "method = \"zipit\"\n\n[[models]]\npath = \"{}\"\n\n[[models]]\npath = \"{}\"\n\n[[overrides]]\nlayers = 3\n[overrides.parameters]\nalpha = 0.2\n",
        zip.join("digits-0-4").display(),
        zip.join("digits-5-9").display()
    );
    write(d, "z.toml", &z);
    let o = smelt(&["merge", "z.toml", "--out", "zout"], d);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("overrides[0]: layer 3 lies past zip depth 3: only zipped layers (0..=2) take alpha/beta"),
        "{t}"
    );
    assert!(!d.join("zout").exists());
    write(d, "z2.toml", &z.replace("layers = 3", "layers = 2"));
    let o = smelt(&["recipe", "check", "z2.toml"], d);
    assert!(o.status.success(), "{}", text(&o));
}

/// `smelt analyze MODELS...` takes the first model as the base and then
/// `Recipe::for_models`: TIES at density 0.5.
#[test]
fn analyze_on_models_takes_the_first_as_base_at_half_density() {
    let dir = scratch();
    let o = smelt(
        &[
            "analyze",
            "models/base",
            "models/ft0",
            "models/ft1",
            "--json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["method"], "ties", "{v}");
    assert!(
        v["base"]
            .as_str()
            .is_some_and(|b| b.ends_with("models/base")),
        "{v}"
    );
    assert_eq!(v["models"].as_array().map(Vec::len), Some(2), "{v}");
    let total = &v["total"];
    let params = total["params"].as_u64().unwrap_or(0);
    let kept: u64 = total["kept"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|x| x.as_u64()).sum());
    let share = kept as f64 / (2 * params) as f64;
    assert!((share - 0.5).abs() < 0.01, "kept share {share}");
}

/// Without `out_dtype`, smelt writes the base's dtype and mergekit its
/// `dtype` (float32 in an export): the export names the base's dtype, so
/// both write bf16 for a bf16 family.
#[test]
fn export_names_the_output_dtype_smelt_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["recipe", "export", "sample_models/recipes/llama-ties.toml"])
        .current_dir(root)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("out_dtype: bfloat16"), "{t}");
}

/// `recipe export --out` never writes over a file unless `--force`; to
/// standard output, paths are absolute (nobody knows where the text goes).
#[test]
fn export_asks_for_force_over_a_file_and_writes_absolute_paths_to_stdout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("r.yml");
    std::fs::write(&out, "mine").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "recipe",
            "export",
            "sample_models/recipes/llama-ties.toml",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
    assert!(run(&["--force"]).status.success());
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("merge_method"));
    let o = Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args([
            "recipe",
            "export",
            "sample_models/recipes/llama-ties.toml",
            "--format",
            "toml",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    let base = root.join("sample_models/llama-synthetic/base");
    assert!(t.contains(&format!("base = \"{}\"", base.display())), "{t}");
}
