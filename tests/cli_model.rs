//! The `smelt` binary on model paths and output folders that are not what
//! the user meant: the message names the user's path and says what is
//! wrong with it, and the exit code is 2 (bad input).

mod common;

use common::smelt;

use std::path::Path;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_a_readme_says_it_is_not_a_checkpoint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = smelt(&["inspect", "README.md"], root);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.starts_with(
            "smelt: README.md: not a safetensors checkpoint: header length larger than the file"
        ),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn inspect_a_folder_of_models_points_into_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = smelt(&["inspect", "sample_models/llama-synthetic"], root);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("sample_models/llama-synthetic: not a safetensors checkpoint")
            && e.contains("base"),
        "{e}"
    );
}

/// `smelt merge R --out OUT` where OUT cannot be made: exit `code` (2 for
/// bad input, 1 where the environment refuses), one line naming OUT and
/// its parent, never the scratch folder, nothing written.
fn merge_refuses(out: &str, cwd: &Path, code: i32) -> String {
    let recipe =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/recipes/llama-ties.toml");
    let o = smelt(
        &["merge", recipe.to_str().expect("utf-8 path"), "--out", out],
        cwd,
    );
    assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!("smelt: cannot create {out}: ")),
        "{e}"
    );
    assert!(!e.contains(".partial-"), "{e}");
    e
}

#[test]
fn merge_into_missing_parent_names_it() {
    let d = tempfile::tempdir().expect("tempdir");
    let e = merge_refuses("nope/merged", d.path(), 2);
    assert!(e.contains("its parent folder nope does not exist"), "{e}");
    assert!(!d.path().join("nope").exists());
}

#[test]
fn merge_into_proc_names_proc() {
    // A folder that accepts no new entries, even for root: the
    // environment refuses, so exit 1.
    let d = tempfile::tempdir().expect("tempdir");
    let e = merge_refuses("/proc/x", d.path(), 1);
    assert!(e.contains("its parent /proc is not writable"), "{e}");
}

/// A model written as a path (`../gone/base`, from a recipe in `t/`) is
/// missing locally, said so: though it cleans to what reads as a hub name
/// (`gone/base`), it is not looked up on the hub.
#[test]
fn a_missing_relative_path_is_not_a_hub_name() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("t")).unwrap();
    std::fs::write(
        d.path().join("t/r.toml"),
        "method = \"task_arithmetic\"\nbase = \"../gone/base\"\n\n[[models]]\n\
         path = \"../gone/ft\"\nparameters = { weight = 1.0 }\n",
    )
    .unwrap();
    let o = smelt(&["merge", "t/r.toml", "--out", "o"], d.path());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("./gone/base") && e.contains("No such file"),
        "{e}"
    );
    assert!(!e.contains("huggingface") && !e.contains("hub"), "{e}");
    assert!(!d.path().join("o").exists());
}
