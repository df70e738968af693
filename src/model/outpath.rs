//! Where an output may go, and the scratch names next to it.
//!
//! The rules protect inputs: a merge never writes inside an input folder
//! (it could overwrite a shard being read), never replaces an
//! existing output without `force`, and never replaces a folder that holds
//! an input (with `force`, that would delete the input). Paths are compared
//! after canonicalization so `./a/../b` and symlinks cannot slip past.

use super::{ModelError, Result};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn out_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Output {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// `path` made absolute with symlinks resolved, for a path that may not
/// exist yet: the nearest existing ancestor is canonicalized and the rest
/// appended (with `.` dropped and `..` applied lexically).
pub(super) fn resolve(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| ModelError::Io {
                path: path.to_path_buf(),
                source: e,
            })?
            .join(path)
    };
    let mut base = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            let mut out = c;
            for comp in rest.iter().rev() {
                match comp {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return Ok(out);
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                base = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// Check that `out` may be written: refuse an existing `out` without
/// `force`, an `out` equal to or inside an input, and (under `force`) an
/// existing `out` that contains an input. Returns the resolved `out`.
pub(super) fn check_destination(out: &Path, inputs: &[PathBuf], force: bool) -> Result<PathBuf> {
    let resolved = resolve(out)?;
    // `.`, `..` and `/` have no name of their own to rename to or beside.
    if out.file_name().is_none() || resolved.file_name().is_none() {
        return Err(out_err(out, "not a usable output folder name"));
    }
    let exists = out.symlink_metadata().is_ok();
    if exists && !force {
        return Err(out_err(
            out,
            "already exists; choose another output or pass --force to replace it",
        ));
    }
    for input in inputs {
        let inp = resolve(input)?;
        if resolved.starts_with(&inp) {
            return Err(out_err(
                out,
                format!(
                    "is inside input {}; write the output somewhere else",
                    input.display()
                ),
            ));
        }
        if exists && inp.starts_with(&resolved) {
            return Err(out_err(
                out,
                format!(
                    "contains input {}; replacing it would delete that input",
                    input.display()
                ),
            ));
        }
    }
    Ok(resolved)
}

/// The reason an I/O error gives, without the `(os error N)` tail.
fn reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// `out`'s parent as given (`None` for a bare name: the current folder),
/// and how to name it in a message.
fn parent_of(out: &Path) -> (&Path, String) {
    match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => (p, p.display().to_string()),
        None => (Path::new("."), "the current folder".into()),
    }
}

fn cannot_create(out: &Path, why: String) -> ModelError {
    ModelError::CannotCreate {
        path: out.to_path_buf(),
        why,
    }
}

/// Check that the folder `out` is to go in exists and is a folder. Parents
/// are not created: a mistyped path should not grow a tree of folders.
pub(super) fn check_parent(out: &Path) -> Result<()> {
    let (parent, shown) = parent_of(out);
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(cannot_create(
            out,
            format!("its parent {shown} is not a folder"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(cannot_create(
            out,
            format!("its parent folder {shown} does not exist"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(cannot_create(
            out,
            format!("its parent {shown} is not a folder (part of that path is a file)"),
        )),
        Err(e) => Err(cannot_create(
            out,
            format!("cannot reach its parent {shown} ({})", reason(&e)),
        )),
    }
}

/// The error for failing to create the scratch folder for `out` (or the
/// first file in it): about `out` and its parent, which is what the user
/// named and can fix, not the scratch name.
pub(super) fn create_failed(out: &Path, e: &std::io::Error) -> ModelError {
    use std::io::ErrorKind as K;
    let (parent, shown) = parent_of(out);
    let why = match e.kind() {
        // procfs and sysfs refuse new entries with "not found" although
        // the folder exists: that is a parent that cannot be written too.
        K::PermissionDenied | K::ReadOnlyFilesystem => {
            format!("its parent {shown} is not writable ({})", reason(e))
        }
        K::NotFound if parent.is_dir() => {
            format!("its parent {shown} is not writable (it accepts no new folders)")
        }
        K::StorageFull | K::QuotaExceeded => {
            format!("no space left in {shown} ({})", reason(e))
        }
        _ => format!("in {shown}: {}", reason(e)),
    };
    cannot_create(out, why)
}

/// A fresh sibling of `out` named `<name>.<tag>-<pid>-<n>`: unique within
/// this process by the counter, across processes by the pid.
pub(super) fn sibling(out: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{name}.{tag}-{}-{n}", std::process::id()))
}

/// Remove `OUT.partial-<pid>-<n>` folders left beside `out` by a smelt
/// process that no longer runs (killed mid-merge: its drop handler never
/// ran). Only folders of dead processes are touched, so a merge running
/// elsewhere into the same destination keeps its work. Best effort, and
/// only where `/proc` says which processes are alive.
pub(super) fn remove_stale_partials(out: &Path) {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!("{}.partial-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether `name` is a plain file name (no separators, not `.`/`..`), so
/// that files added to an output stay inside it.
pub(super) fn is_plain_name(name: &str) -> bool {
    let mut comps = Path::new(name).components();
    matches!(comps.next(), Some(Component::Normal(_))) && comps.next().is_none()
}

/// Flush a directory's entries (new files, renames) to disk. Best effort:
/// some file systems do not support syncing a directory handle.
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_handles_missing_tails() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        assert_eq!(
            resolve(&d.path().join("a/b/../c")).unwrap(),
            base.join("a/c")
        );
        assert_eq!(resolve(d.path()).unwrap(), base);
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("config.json"));
        assert!(!is_plain_name("../x"));
        assert!(!is_plain_name("a/b"));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name("/etc/passwd"));
    }
}
