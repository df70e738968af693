//! The `smelt` binary as a user runs it: merges, exit codes, and that bad
//! input is refused with a message naming the culprit and nothing left
//! behind.

mod common;

use common::{fixtures, smelt, text};

use std::path::{Path, PathBuf};

/// A scratch copy of the fixture models, plus a recipe over them.
fn scratch(recipe_toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for m in ["base", "ft0", "ft1", "ft2"] {
        let to = dir.path().join("models").join(m);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in ["model.safetensors", "config.json", "generation_config.json"] {
            std::fs::copy(fixtures().join("models").join(m).join(f), to.join(f)).expect("copy");
        }
    }
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, recipe_toml).expect("write recipe");
    (dir, recipe)
}

const TIES: &str = r#"method = "ties"
base = "models/base"

[parameters]
normalize = true

[[models]]
path = "models/ft0"
parameters = { weight = 1.0, density = 0.5 }

[[models]]
path = "models/ft1"
parameters = { weight = 0.5, density = 0.3 }
"#;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn merge_writes_a_complete_model_and_a_summary() {
    let (dir, recipe) = scratch(TIES);
    let o = smelt(
        &["merge", recipe.to_str().unwrap_or_default(), "--out", "out"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("merged") && stdout.contains("GB/s"),
        "{stdout}"
    );
    let out = dir.path().join("out");
    for f in [
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "smelt-recipe.toml",
        "README.md",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap_or_default();
    assert!(
        card.contains("ties") && card.contains("models/ft0"),
        "{card}"
    );
    // Nothing but the output appeared next to it.
    assert_eq!(listing(dir.path()), vec!["models", "out", "r.toml"]);
}

#[test]
fn saved_recipe_reproduces_the_same_bytes() {
    let (dir, recipe) = scratch(TIES);
    let o = smelt(
        &["merge", recipe.to_str().unwrap_or_default(), "--out", "a"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = smelt(
        &[
            "merge",
            "a/smelt-recipe.toml",
            "--out",
            "b",
            "--threads",
            "1",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let a = std::fs::read(dir.path().join("a/model.safetensors")).unwrap_or_default();
    let b = std::fs::read(dir.path().join("b/model.safetensors")).unwrap_or_default();
    assert!(!a.is_empty());
    assert!(a == b, "rerunning the saved recipe changed the output");
}

#[test]
fn existing_output_is_refused_without_force_and_replaced_with_it() {
    let (dir, recipe) = scratch(TIES);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("keep.txt"), "mine").expect("write");
    let r = recipe.to_str().unwrap_or_default();
    let o = smelt(&["merge", r, "--out", "out"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("out"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap_or_default(),
        "mine"
    );
    // --force too: keep.txt is not a file a merge writes.
    let o = smelt(&["merge", r, "--out", "out", "--force"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("keep.txt"), "{}", text(&o));
    assert_eq!(listing(&out), vec!["keep.txt"]);
    // Into an empty folder, then over that smelt output: both fine.
    std::fs::remove_file(out.join("keep.txt")).expect("rm");
    for _ in 0..2 {
        let o = smelt(&["merge", r, "--out", "out", "--force"], dir.path());
        assert!(o.status.success(), "{}", text(&o));
        assert!(out.join("model.safetensors").is_file());
        assert!(out.join("smelt-recipe.toml").is_file());
        assert_eq!(listing(dir.path()), vec!["models", "out", "r.toml"]);
    }
}

#[test]
fn output_inside_an_input_is_refused() {
    let (dir, recipe) = scratch(TIES);
    let before = listing(&dir.path().join("models/ft0"));
    let o = smelt(
        &[
            "merge",
            recipe.to_str().unwrap_or_default(),
            "--out",
            "models/ft0/merged",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("ft0"), "{}", text(&o));
    assert_eq!(listing(&dir.path().join("models/ft0")), before);
    assert_eq!(
        listing(&dir.path().join("models")),
        vec!["base", "ft0", "ft1", "ft2"]
    );
}

#[test]
fn truncated_input_is_named_and_nothing_is_written() {
    let (dir, recipe) = scratch(TIES);
    let f = dir.path().join("models/ft1/model.safetensors");
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).expect("truncate");
    let o = smelt(
        &["merge", recipe.to_str().unwrap_or_default(), "--out", "out"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("ft1"), "{}", text(&o));
    assert_eq!(listing(dir.path()), vec!["models", "r.toml"]);
}

/// Rewrite `model` without tensor `without`, or with `reshape` applied.
fn rewrite(model: &Path, without: Option<&str>, reshape: Option<&str>) {
    let m = smelt::model::Model::open(model).expect("open");
    let mut tensors = Vec::new();
    for t in m.tensors() {
        if Some(t.name.as_str()) == without {
            continue;
        }
        let mut data = m.read_all_f32(&t.name).expect("read");
        let mut shape = t.shape.clone();
        if Some(t.name.as_str()) == reshape {
            data.truncate(data.len() / 2);
            shape[0] /= 2;
        }
        tensors.push((t.name.clone(), shape, data));
    }
    drop(m);
    smelt::model::write_small(
        &model.join("model.safetensors"),
        &tensors,
        smelt::model::Dtype::F32,
        &[],
    )
    .expect("write");
}

#[test]
fn missing_tensor_is_named_by_recipe_check_and_merge() {
    let (dir, recipe) = scratch(TIES);
    rewrite(
        &dir.path().join("models/ft1"),
        Some("model.layers.2.mlp.up_proj.weight"),
        None,
    );
    let r = recipe.to_str().unwrap_or_default();
    for args in [vec!["recipe", "check", r], vec!["merge", r, "--out", "out"]] {
        let o = smelt(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("model.layers.2.mlp.up_proj.weight") && t.contains("ft1"),
            "{t}"
        );
    }
    assert_eq!(listing(dir.path()), vec!["models", "r.toml"]);
}

#[test]
fn shape_mismatch_is_named() {
    let (dir, recipe) = scratch(TIES);
    rewrite(
        &dir.path().join("models/ft0"),
        None,
        Some("model.layers.1.self_attn.q_proj.weight"),
    );
    let o = smelt(
        &["recipe", "check", recipe.to_str().unwrap_or_default()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("model.layers.1.self_attn.q_proj.weight") && t.contains("shape"),
        "{t}"
    );
}

#[test]
fn recipe_check_accepts_a_good_recipe() {
    let (dir, recipe) = scratch(TIES);
    let o = smelt(
        &["recipe", "check", recipe.to_str().unwrap_or_default()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ok"), "{}", text(&o));
}

#[test]
fn unknown_method_names_the_line() {
    let (dir, recipe) = scratch(&TIES.replace("method = \"ties\"", "method = \"tiez\""));
    let o = smelt(
        &["recipe", "check", recipe.to_str().unwrap_or_default()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("r.toml:1") && t.contains("tiez") && t.contains("ties"),
        "{t}"
    );
}

#[test]
fn exported_mergekit_yaml_merges_to_the_same_bytes() {
    let (dir, recipe) = scratch(TIES);
    let r = recipe.to_str().unwrap_or_default();
    let o = smelt(
        &[
            "recipe", "export", r, "--format", "mergekit", "--out", "r.yml",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let yaml = std::fs::read_to_string(dir.path().join("r.yml")).unwrap_or_default();
    assert!(yaml.contains("merge_method: ties"), "{yaml}");
    let o = smelt(&["merge", r, "--out", "a"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let o = smelt(&["merge", "r.yml", "--out", "b"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let a = std::fs::read(dir.path().join("a/model.safetensors")).unwrap_or_default();
    let b = std::fs::read(dir.path().join("b/model.safetensors")).unwrap_or_default();
    assert!(!a.is_empty() && a == b);
}

#[test]
fn small_shards_make_an_index_and_read_back_the_same() {
    let (dir, recipe) = scratch(TIES);
    let r = recipe.to_str().unwrap_or_default();
    let o = smelt(&["merge", r, "--out", "one"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let o = smelt(
        &["merge", r, "--out", "many", "--shard-size", "200KB"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let many = dir.path().join("many");
    assert!(many.join("model.safetensors.index.json").is_file());
    let shards = listing(&many)
        .into_iter()
        .filter(|f| f.ends_with(".safetensors"))
        .count();
    assert!(shards >= 3, "{shards} shards");
    let a = smelt::model::Model::open(&dir.path().join("one")).expect("open one");
    let b = smelt::model::Model::open(&many).expect("open many");
    assert_eq!(a.tensors().len(), b.tensors().len());
    for t in a.tensors() {
        assert_eq!(
            a.read_all_f32(&t.name).ok(),
            b.read_all_f32(&t.name).ok(),
            "{}",
            t.name
        );
    }
}

#[test]
fn inspect_lists_layers_and_tensors() {
    let o = smelt(&["inspect", "models/base"], &fixtures());
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("model.layers.3.mlp.down_proj.weight"), "{t}");
    let o = smelt(&["inspect", "models/base", "--json"], &fixtures());
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v.is_object());
}

#[test]
fn analyze_reports_every_layer() {
    let o = smelt(
        &[
            "analyze",
            "models/base",
            "models/ft0",
            "models/ft1",
            "models/ft2",
            "--density",
            "0.3",
            "--json",
        ],
        &fixtures(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    // embeddings, 4 layers, head
    assert_eq!(groups.len(), 6, "{v}");
    let total = &v["total"];
    let params = total["params"].as_u64().unwrap_or(0);
    let kept: u64 = total["kept"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|x| x.as_u64()).sum());
    // Three task vectors trimmed to 30% each.
    let share = kept as f64 / (3 * params) as f64;
    assert!((share - 0.3).abs() < 0.01, "kept share {share}");
    let agree: u64 = total["agree"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|x| x.as_u64()).sum());
    assert_eq!(agree, params);
}

#[test]
fn analyze_text_follows_the_method_in_80_columns() {
    let models = ["models/base", "models/ft0", "models/ft1", "models/ft2"];
    let mut kept = Vec::new();
    for (method, says) in [
        ("ties", "largest `density` share"),
        ("dare_linear", "none elected"),
        ("della", "DELLA"),
        ("task_arithmetic", "no trimming"),
    ] {
        let mut args = vec!["analyze"];
        args.extend(models);
        args.extend(["--method", method, "--density", "0.3"]);
        let o = smelt(&args, &fixtures());
        assert!(o.status.success(), "{}", text(&o));
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(t.contains(says), "{method}: {t}");
        for line in t.lines() {
            assert!(line.chars().count() <= 80, "{method}: {line}");
        }
        let total = t
            .lines()
            .find(|l| l.starts_with("total"))
            .unwrap_or("")
            .to_string();
        kept.push(total);
    }
    // Different selections, different numbers.
    assert_ne!(kept[0], kept[1]);
    assert_ne!(kept[1], kept[2]);
}

/// Started from a pipe or a cron job, the workbench says it needs a
/// terminal and where to go instead (exit 2), and touches no terminal.
#[cfg(feature = "tui")]
#[test]
fn the_workbench_without_a_terminal_says_so() {
    let d = tempfile::tempdir().unwrap();
    for args in [&[][..], &["tui"][..], &["--theme", "light"][..]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(args)
            .current_dir(d.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run smelt");
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains("needs a terminal")
                && t.contains("smelt merge")
                && t.contains("smelt analyze"),
            "{args:?}: {t}"
        );
        assert!(!t.contains("os error"), "{t}");
        assert!(!t.contains('\x1b'), "no escape codes to a pipe: {t:?}");
    }
}

/// `--base` with a recipe (which names its own base) is refused rather
/// than ignored.
#[cfg(feature = "tui")]
#[test]
fn the_workbench_refuses_a_base_beside_a_recipe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models");
    let recipe = root.join("recipes/llama-ties.toml");
    let base = root.join("llama-synthetic/base");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .arg("tui")
        .arg(&recipe)
        .arg("--base")
        .arg(&base)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run smelt");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("names its own base") && t.contains("--base"),
        "{t}"
    );
}

/// Models with nothing in common: `analyze` says so and fails, rather
/// than printing a table of zeros.
#[test]
fn analyze_of_models_with_nothing_in_common_fails() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = smelt(
        &[
            "analyze",
            "sample_models/llama-synthetic/base",
            "sample_models/digits-tasks/ft-0-2",
            "--layers-only",
        ],
        root,
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("nothing to compare") && t.contains("no tensor"),
        "{t}"
    );
}

/// A recipe naming a model that is not there: every command says which
/// recipe named it.
#[test]
fn a_missing_model_is_named_with_its_recipe() {
    let (dir, recipe) = scratch(
        "method = \"ties\"\nbase = \"models/base\"\n[[models]]\npath = \"models/gone\"\nparameters = { weight = 1.0 }\n",
    );
    let r = recipe.to_str().unwrap();
    for args in [
        &["recipe", "check", r][..],
        &["merge", r, "--out", "o"][..],
        &["analyze", r][..],
    ] {
        let o = smelt(args, dir.path());
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains("r.toml") && t.contains("gone"), "{args:?}: {t}");
    }
}
