//! The `smelt` binary on model paths and output folders that are not what
//! the user meant: the message names the user's path and says what is
//! wrong with it, and the exit code is 2 (bad input).

use std::path::Path;
use std::process::{Command, Output};

fn smelt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run smelt")
}

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
