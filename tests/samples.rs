//! The bundled sample models and recipes, through the real binary: each
//! recipe merges, and MLP merges evaluate as the README says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn smelt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run smelt")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn merge(recipe: &str, out: &Path) {
    ok(&smelt(&[
        "merge",
        recipe,
        "--out",
        out.to_str().unwrap_or_default(),
        "-q",
    ]));
}

fn joint(model: &Path) -> f64 {
    let text = ok(&smelt(&[
        "eval",
        model.to_str().unwrap_or_default(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).expect("eval json");
    v["joint_accuracy"].as_f64().expect("joint_accuracy")
}

#[test]
fn every_sample_recipe_checks_and_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(root().join("sample_models/recipes")).expect("recipes") {
        let p = e.expect("entry").path();
        let rel = p
            .strip_prefix(root())
            .expect("inside the repo")
            .to_string_lossy()
            .into_owned();
        ok(&smelt(&["recipe", "check", &rel]));
        let out = dir.path().join(p.file_stem().unwrap_or_default());
        merge(&rel, &out);
        assert!(out.join("model.safetensors").is_file(), "{rel}");
    }
}

#[test]
fn zipit_through_the_cli_stays_close_to_the_ensemble() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recipe = std::fs::read_to_string(root().join("sample_models/recipes/digits-zipit.toml"))
        .expect("recipe");
    let abs = |s: &str| {
        s.replace(
            "../digits-zip",
            &root().join("sample_models/digits-zip").to_string_lossy(),
        )
    };
    let full = dir.path().join("full.toml");
    std::fs::write(&full, abs(&recipe)).expect("write");
    let ens = dir.path().join("ens.toml");
    std::fs::write(&ens, abs(&recipe).replace("depth = -1", "depth = 0")).expect("write");
    merge(full.to_str().unwrap_or_default(), &dir.path().join("zip"));
    merge(ens.to_str().unwrap_or_default(), &dir.path().join("ens"));
    let (z, e) = (
        joint(&dir.path().join("zip")),
        joint(&dir.path().join("ens")),
    );
    eprintln!("zipit joint {z:.3}, ensemble {e:.3}");
    assert!(e > 0.85, "ensemble {e}");
    assert!(
        z >= e - 0.05,
        "ZipIt! {z} is more than 5 points below the ensemble {e}"
    );
}

#[test]
fn ties_on_digits_tasks_keeps_every_fine_tunes_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ties");
    merge("sample_models/recipes/digits-tasks-ties.toml", &out);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    let heads = cfg["heads"].as_array().cloned().unwrap_or_default();
    assert_eq!(heads.len(), 3, "{cfg}");
    let merged = smelt::model::Model::open(&out).expect("open");
    for (h, ft) in ["ft-0-2", "ft-3-6", "ft-7-9"].iter().enumerate() {
        let src = smelt::model::Model::open(&root().join("sample_models/digits-tasks").join(ft))
            .expect("open fine-tune");
        for part in ["weight", "bias"] {
            let a = merged
                .read_all_f32(&format!("heads.{h}.layers.0.{part}"))
                .expect("head");
            let b = src
                .read_all_f32(&format!("heads.0.layers.0.{part}"))
                .expect("source head");
            assert_eq!(a, b, "head {h} {part} is not {ft}'s own");
        }
    }
    // The trunk is merged: it differs from every input's.
    let base = smelt::model::Model::open(&root().join("sample_models/digits-tasks/base"))
        .expect("open base");
    assert_ne!(
        merged.read_all_f32("layers.0.weight").ok(),
        base.read_all_f32("layers.0.weight").ok()
    );
}

/// The log's "merging N tensors" and "merged N tensors" agree for a zip
/// merge (whose output keeps a head per input: more tensors than an input
/// has).
#[test]
fn a_zip_merge_counts_its_output_tensors_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("zip");
    let o = smelt(&[
        "merge",
        "sample_models/recipes/digits-zipit.toml",
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    ok(&o);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let count = |word: &str| -> usize {
        let at = all
            .find(word)
            .unwrap_or_else(|| panic!("no {word:?} in {all}"));
        all[at + word.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{all}"))
    };
    let n = smelt::model::Model::open(&out)
        .expect("output")
        .tensors()
        .len();
    assert_eq!(count("merging "), n, "{all}");
    assert_eq!(count("merged "), n, "{all}");
}

/// `analyze` of a zip recipe says why there is nothing to analyze, rather
/// than asking for a base.
#[test]
fn analyze_of_a_zip_recipe_says_there_are_no_task_vectors() {
    let o = smelt(&["analyze", "sample_models/recipes/digits-zipit.toml"]);
    let t = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("digits-zipit.toml: zipit") && t.contains("no task vectors"),
        "{t}"
    );
    assert!(!t.contains("needs a base"), "{t}");
}

/// Zip overrides that overlap combine value by value, later ones winning,
/// as every other override does: alpha on layers 0-1 then beta on layer 1
/// merges as alpha on layer 0 and both on layer 1. (An override setting
/// only beta once dropped an earlier one's alpha.)
#[test]
fn overlapping_zip_overrides_combine_value_by_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zip = root().join("sample_models/digits-zip");
    let head = format!(
        "method = \"zipit\"\n[parameters]\ndepth = -1\n\n[[models]]\npath = \"{0}/digits-0-4\"\n\n[[models]]\npath = \"{0}/digits-5-9\"\n",
        zip.display()
    );
    let overlapping = format!(
        "{head}\n[[overrides]]\nlayers = [0, 1]\nparameters = {{ alpha = 0.9 }}\n\n[[overrides]]\nlayers = 1\nparameters = {{ beta = 0.5 }}\n"
    );
    let disjoint = format!(
        "{head}\n[[overrides]]\nlayers = 0\nparameters = {{ alpha = 0.9 }}\n\n[[overrides]]\nlayers = 1\nparameters = {{ alpha = 0.9, beta = 0.5 }}\n"
    );
    let beta_only = format!(
        "{head}\n[[overrides]]\nlayers = 1\nparameters = {{ beta = 0.5 }}\n\n[[overrides]]\nlayers = 0\nparameters = {{ alpha = 0.9 }}\n"
    );
    let mut outs = Vec::new();
    for (name, text) in [("o", &overlapping), ("d", &disjoint), ("b", &beta_only)] {
        let r = dir.path().join(format!("{name}.toml"));
        std::fs::write(&r, text).expect("write");
        let out = dir.path().join(name);
        merge(r.to_str().unwrap_or_default(), &out);
        outs.push(std::fs::read(out.join("model.safetensors")).expect("output"));
    }
    assert!(
        outs[0] == outs[1],
        "overlapping and disjoint overrides differ"
    );
    assert!(outs[0] != outs[2], "layer 1's alpha must change the merge");
}
