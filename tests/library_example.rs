//! `examples/library.rs` does what it says: its `merge` (the example's
//! whole body, included here as written) writes the same model as
//! `smelt merge` of the same recipe, and passes refusals on as errors.

#[path = "../examples/library.rs"]
mod library;

use std::path::Path;
use std::process::Command;

fn recipe() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/recipes/llama-ties.toml")
}

/// The tensor files of an output folder, by name.
fn shards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_example_merges_as_the_cli_does() {
    let d = tempfile::tempdir().unwrap();
    let (lib, cli) = (d.path().join("lib"), d.path().join("cli"));
    let summary = library::merge(&recipe(), &lib).expect("the example's merge");
    assert_eq!(summary.out, lib);
    assert_eq!(summary.tensors, 39);
    let o = Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["merge", "--quiet", "--out"])
        .arg(&cli)
        .arg(recipe())
        .output()
        .expect("run smelt");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (shards(&lib), shards(&cli));
    assert!(!a.is_empty());
    assert!(a == b, "the library and the CLI wrote different tensors");
}

#[test]
fn the_example_passes_refusals_on() {
    let d = tempfile::tempdir().unwrap();
    // The output exists (and Options::new does not force).
    let e = library::merge(&recipe(), d.path()).expect_err("an existing output");
    assert!(e.to_string().contains("exists"), "{e}");
    let e = library::merge(&d.path().join("no-such.toml"), &d.path().join("o"))
        .expect_err("a missing recipe");
    assert!(e.to_string().contains("no-such.toml"), "{e}");
}
