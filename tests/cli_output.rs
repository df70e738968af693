//! What `smelt merge` and `smelt recipe export` may write over, and how they
//! fail when they cannot write: nothing smelt did not write is replaced or
//! deleted, bad input exits 2 naming the path, an environment failure (a
//! read-only folder, a full disk) exits 1 naming the path.

mod common;

use common::{fixtures, smelt, text};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch copy of the fixture models, plus `r.toml` over them.
fn scratch(recipe_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for m in ["base", "ft0", "ft1"] {
        let to = dir.path().join("models").join(m);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in ["model.safetensors", "config.json", "generation_config.json"] {
            std::fs::copy(fixtures().join("models").join(m).join(f), to.join(f)).expect("copy");
        }
    }
    std::fs::write(dir.path().join("r.toml"), recipe_toml).expect("write recipe");
    dir
}

const TASK: &str = r#"method = "task_arithmetic"
base = "models/base"

[[models]]
path = "models/ft0"
parameters = { weight = 0.5 }

[[models]]
path = "models/ft1"
parameters = { weight = 0.5 }
"#;

/// Every file under `dir` with its bytes: to check nothing changed.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
            if p.is_dir() && !p.is_symlink() {
                out.insert(rel, None);
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).ok());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `merge --force` into a folder holding a file smelt did not write (a
/// thesis): refused, exit 2, naming the file; nothing changes.
#[test]
fn force_refuses_a_folder_with_files_smelt_did_not_write() {
    let dir = scratch(TASK);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("thesis.tex"), "\\chapter{One}").expect("write");
    // Even with a recipe in it, as if smelt had written the rest.
    std::fs::write(out.join("smelt-recipe.toml"), TASK).expect("write");
    let before = tree(dir.path());
    let o = smelt(&["merge", "r.toml", "--out", "out", "--force"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("thesis.tex") && msg.contains("out"), "{msg}");
    assert_eq!(tree(dir.path()), before);
}

/// `merge --force` over a file: refused (a file is never replaced by a
/// folder).
#[test]
fn force_refuses_to_replace_a_file() {
    let dir = scratch(TASK);
    std::fs::write(dir.path().join("out"), "my notes").expect("write");
    let before = tree(dir.path());
    let o = smelt(&["merge", "r.toml", "--out", "out", "--force"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a file"), "{}", text(&o));
    assert_eq!(tree(dir.path()), before);
}

/// A downloaded model folder has only names a merge also writes, but no
/// smelt recipe: `--force` does not replace it.
#[test]
fn force_refuses_a_model_folder_smelt_did_not_write() {
    let dir = scratch(TASK);
    let o = smelt(
        &["merge", "r.toml", "--out", "models/copy", "--force"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(dir.path().join("models/copy/smelt-recipe.toml")).expect("rm");
    let before = tree(dir.path());
    let o = smelt(
        &["merge", "r.toml", "--out", "models/copy", "--force"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("smelt-recipe.toml"), "{}", text(&o));
    assert_eq!(tree(dir.path()), before);
}

/// `recipe export --out` never writes inside the folder of a model the
/// recipe reads, with or without `--force`, whether the model is named as
/// a folder or as a file.
#[test]
fn export_never_writes_inside_a_model_folder() {
    let by_file = TASK.replace(
        "base = \"models/base\"",
        "base = \"models/base/model.safetensors\"",
    );
    for recipe in [TASK, &by_file] {
        let dir = scratch(recipe);
        let before = tree(dir.path());
        for target in [
            "models/ft0/model.safetensors",
            "models/ft0/recipe.yml",
            "models/ft1/../ft0/config.json",
            "models/base/recipe.yml",
        ] {
            for force in [false, true] {
                let mut args = vec!["recipe", "export", "r.toml", "--out", target];
                if force {
                    args.push("--force");
                }
                let o = smelt(&args, dir.path());
                assert_eq!(o.status.code(), Some(2), "{target}: {}", text(&o));
                let msg = text(&o);
                assert!(
                    msg.contains(target) && msg.contains("inside the folder of model"),
                    "{msg}"
                );
                assert_eq!(tree(dir.path()), before, "{target} --force={force}");
            }
        }
        // Beside the models it is written.
        let o = smelt(
            &["recipe", "export", "r.toml", "--out", "r.yml"],
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
    }
}

/// An input named as a file protects its folder: a merge into
/// `models/base/newout` is refused as it is for `base = "models/base"`.
#[test]
fn merge_into_the_folder_of_an_input_named_as_a_file_is_refused() {
    let recipe = TASK.replace(
        "base = \"models/base\"",
        "base = \"models/base/model.safetensors\"",
    );
    let dir = scratch(&recipe);
    let before = tree(dir.path());
    let o = smelt(
        &["merge", "r.toml", "--out", "models/base/newout"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("models/base/newout") && msg.contains("inside the folder of input"),
        "{msg}"
    );
    assert_eq!(tree(dir.path()), before);
}

/// A read-only output folder is the environment's failure: exit 1, naming
/// the folder, nothing left. Root writes into a mode 555 folder anyway, so
/// a probe decides which branch is checked, and the test says which.
#[test]
fn read_only_output_folder_exits_1() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch(TASK);
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let writable = std::fs::write(ro.join("probe"), "").is_ok();
    let merge = smelt(&["merge", "r.toml", "--out", "ro/out"], dir.path());
    let export = smelt(
        &["recipe", "export", "r.toml", "--out", "ro/r.yml"],
        dir.path(),
    );
    if writable {
        eprintln!(
            "read_only_output_folder: a mode 555 folder is writable here (running as root); \
             checked that both commands write there instead"
        );
        assert!(merge.status.success(), "{}", text(&merge));
        assert!(export.status.success(), "{}", text(&export));
    } else {
        eprintln!("read_only_output_folder: checking the refusals (exit 1)");
        for o in [&merge, &export] {
            assert_eq!(o.status.code(), Some(1), "{}", text(o));
            assert!(text(o).contains("ro"), "{}", text(o));
        }
        assert_eq!(std::fs::read_dir(&ro).expect("ls").count(), 0);
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A folder nobody can write, root included: procfs. Exit 1.
#[test]
fn output_in_proc_exits_1() {
    if !Path::new("/proc/self").exists() {
        eprintln!("output_in_proc: no /proc here; not checked");
        return;
    }
    let dir = scratch(TASK);
    let o = smelt(&["merge", "r.toml", "--out", "/proc/smelt-out"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("/proc"), "{}", text(&o));
}

/// Run `script` (sh) in new user and mount namespaces, where a tmpfs can be
/// mounted without privileges. `None` where that is not possible here.
fn in_namespace(dir: &Path, script: &str) -> Option<Output> {
    let probe = Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=4k tmpfs \"$1\"",
            "sh",
        ])
        .arg(dir)
        .output()
        .ok()?;
    if !probe.status.success() {
        return None;
    }
    Command::new("unshare")
        .args(["-Urm", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_smelt"))
        .current_dir(dir)
        .output()
        .ok()
}

/// A full disk and a read-only file system, for real: a tiny tmpfs and a
/// read-only one as the output's folder (mounted in a user namespace;
/// skipped, and said so, where there are none). Exit 1, naming the
/// output; nothing left on the small disk.
#[test]
fn full_and_read_only_file_systems_exit_1() {
    let dir = scratch(TASK);
    std::fs::create_dir(dir.path().join("small")).expect("mkdir");
    // 64 KiB: room for the folder and the small files, not for the
    // 700 KB model.
    let script = "mount -t tmpfs -o size=64k tmpfs small || exit 99
\"$1\" merge r.toml --out small/out -q; echo \"rc=$?\"
ls -A small; echo end
\"$1\" recipe export r.toml --out small/r.yml; echo \"rc=$?\"
mount -o remount,ro small || exit 99
\"$1\" merge r.toml --out small/out2 -q; echo \"rc=$?\"
\"$1\" recipe export r.toml --out small/r2.yml; echo \"rc=$?\"";
    let Some(o) = in_namespace(dir.path(), script) else {
        eprintln!("full_and_read_only_file_systems: no user namespaces here; not checked");
        return;
    };
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let codes: Vec<&str> = out.lines().filter(|l| l.starts_with("rc=")).collect();
    assert_eq!(codes, ["rc=1", "rc=0", "rc=1", "rc=1"], "{out}{err}");
    // The full disk: named, and nothing left behind (the export after it,
    // small, fits).
    let listed: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("rc="))
        .skip(1)
        .take_while(|l| *l != "end")
        .collect();
    assert!(listed.is_empty(), "left on the full disk: {listed:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].contains("small/out") && lines[0].contains("No space left"),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("small/out2") && l.contains("not writable")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("small/r2.yml") && l.contains("Read-only")),
        "{err}"
    );
}

/// Deeply nested YAML is refused at once (no timing here: a test that
/// took 26 s before now returns in a moment), naming the file and line.
#[test]
fn deeply_nested_yaml_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 100_000;
    let deep = format!(
        "merge_method: linear\nmodels: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    std::fs::write(dir.path().join("deep.yml"), deep).expect("write");
    let o = smelt(&["recipe", "check", "deep.yml"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("deep.yml:2:") && msg.contains("nested more than 64 levels"),
        "{msg}"
    );
}
