//! Writing files whole or not at all, and telling environment failures
//! from bad input.
//!
//! Every file smelt writes goes through [`write_atomic_with`] (or its
//! byte-slice form [`write_atomic`]): recipes saved by the workbench and by
//! `Recipe::save*`, exported recipes, `write_small` checkpoints, and an
//! output folder's index, config, model card, recipe copy and copied
//! tokenizer files. The bytes go to a fresh temporary sibling, are flushed
//! to disk, the file is renamed over the target, and the folder is flushed
//! so the rename itself survives a power loss. A crash or a full disk never
//! leaves a half-written file, and a reader never sees one. (A merge's
//! shards are the one exception: they are streamed into the partial output
//! folder, which is then published by one rename; see `model::Writer`.)

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Write `bytes` to `path` atomically (same-folder temporary file, fsync,
/// rename, fsync of the folder). The temporary file is removed if anything
/// fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, true, |f| f.write_all(bytes))
}

/// The atomic write: `fill` writes the content into a fresh temporary file
/// beside `path`; then (with `sync`) the file is flushed, it is renamed to
/// `path`, and (with `sync`) the folder is flushed. The temporary file is
/// removed if `fill` or any step fails, and `path` is then untouched.
///
/// Without `sync` the result is still whole or absent for every reader, but
/// a power loss right after may lose it (`smelt merge --no-sync`).
pub fn write_atomic_with(
    path: &Path,
    sync: bool,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = folder_of(path);
    let (tmp, mut f) = create_temp(path)?;
    let result = (|| {
        fill(&mut f)?;
        f.flush()?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The folder a path is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The file a temporary file of [`write_atomic_with`] was to become:
/// `NAME` for `.NAME.tmp-<pid>-<n>`, `None` for any other name. Such files
/// exist only while a write is under way (or after a crash during one).
pub fn temp_target(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    let i = rest.rfind(".tmp-")?;
    let (pid, n) = rest[i + 5..].split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (i > 0 && digits(pid) && digits(n)).then(|| &rest[..i])
}

/// A new temporary file beside `path` (`.NAME.tmp-<pid>-<n>`), created
/// exclusively: an existing file of that name, whoever wrote it, is never
/// opened or replaced.
fn create_temp(path: &Path) -> std::io::Result<(PathBuf, File)> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let dir = folder_of(path);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match File::options().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            // Another process in another PID namespace may have the same
            // pid: try the next number.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Flush a folder's entries (new files, renames) to disk. File systems that
/// cannot sync a folder handle (they say "invalid argument" or "not
/// supported") are taken at their word; any other failure is returned.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let f = File::open(dir)?;
    match f.sync_all() {
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported) => Ok(()),
        r => r,
    }
}

/// Whether an I/O error is the environment's fault rather than the
/// input's: the disk or quota is full, the file system is read-only, the
/// device failed. `smelt` exits 1 for these (2 is for bad input). A
/// permission error is the environment's too when writing an output (see
/// [`is_environment_write`]), but not when reading an input the user named.
pub fn is_environment(e: &std::io::Error) -> bool {
    const EIO: i32 = 5;
    matches!(
        e.kind(),
        ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::FileTooLarge
    ) || e.raw_os_error() == Some(EIO)
}

/// [`is_environment`] for a failure to write an output: a folder that
/// cannot be written (permissions) counts too.
pub fn is_environment_write(e: &std::io::Error) -> bool {
    is_environment(e) || e.kind() == ErrorKind::PermissionDenied
}

/// The reason an I/O error gives, without the `(os error N)` tail.
pub fn reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.toml");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new text").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new text");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary left behind");
    }

    #[test]
    fn a_missing_folder_fails_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/r.toml");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!p.exists());
    }

    /// A failure while filling leaves the old file as it was and no
    /// temporary behind.
    #[test]
    fn a_failed_fill_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.toml");
        std::fs::write(&p, "old").unwrap();
        let e = write_atomic_with(&p, true, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::from(ErrorKind::StorageFull))
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary left behind");
    }

    /// A file that happens to have the temporary's name is neither opened
    /// nor replaced.
    #[test]
    fn an_existing_temporary_name_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.toml");
        let mut taken = Vec::new();
        for n in 0..64 {
            let t = d
                .path()
                .join(format!(".r.toml.tmp-{}-{n}", std::process::id()));
            std::fs::write(&t, "mine").unwrap();
            taken.push(t);
        }
        write_atomic(&p, b"x").unwrap();
        for t in &taken {
            assert_eq!(std::fs::read_to_string(t).unwrap(), "mine");
        }
    }

    #[test]
    fn temporary_names() {
        assert_eq!(temp_target(".config.json.tmp-12-0"), Some("config.json"));
        assert_eq!(temp_target(".a.tmp-b.tmp-1-2"), Some("a.tmp-b"));
        assert_eq!(temp_target("config.json.tmp-12-0"), None);
        assert_eq!(temp_target(".config.json.tmp-12"), None);
        assert_eq!(temp_target(".config.json.tmp-x-1"), None);
        assert_eq!(temp_target("..tmp-1-2"), None);
    }

    /// Disk full, quota, read-only file system and device errors are the
    /// environment's; a missing file or a bad name is not; permissions are
    /// only when writing.
    #[test]
    fn environment_errors() {
        let os = std::io::Error::from_raw_os_error;
        for code in [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EROFS,
            libc::EIO,
            libc::EFBIG,
        ] {
            assert!(is_environment(&os(code)), "{}", os(code));
            assert!(is_environment_write(&os(code)), "{}", os(code));
        }
        for code in [libc::ENOENT, libc::ENAMETOOLONG, libc::EISDIR, libc::EINVAL] {
            assert!(!is_environment(&os(code)), "{}", os(code));
        }
        assert!(!is_environment(&os(libc::EACCES)));
        assert!(is_environment_write(&os(libc::EACCES)));
        assert!(is_environment_write(&os(libc::EPERM)));
    }

    #[test]
    fn reasons_lose_the_os_error_tail() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(reason(&e), "No space left on device");
    }
}
