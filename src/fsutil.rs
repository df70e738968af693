//! Writing files whole or not at all.
//!
//! Every file smelt writes outside a merge's output folder (recipes,
//! exported recipes) goes through [`write_atomic`]: the bytes go to a
//! temporary file in the same folder, are flushed to disk, and the file is
//! renamed over the target, so a crash or a full disk never leaves a
//! half-written file, and a reader never sees one.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically (same-folder temporary file, fsync,
/// rename). The temporary file is removed if anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
}
