//! Where an output may go, what `--force` may replace, the scratch names
//! next to it, and the locks that keep two merges apart.
//!
//! The rules protect inputs and the user's files:
//!
//! - a merge never writes inside an input's folder (it could overwrite a
//!   shard being read); for an input named as a file, its folder is the
//!   one the file is in;
//! - it never replaces an existing output without `force`, and never one
//!   that holds an input;
//! - `force` replaces only an empty folder, or a folder a smelt merge
//!   wrote: one holding [`RECIPE_FILE`] and nothing *foreign*. Foreign is
//!   anything a merge does not write: a merge writes regular files only,
//!   named `model.safetensors` or `model-NNNNN-of-NNNNN.safetensors`
//!   (shards), `model.safetensors.index.json`, `config.json`, `README.md`
//!   (the model card), [`RECIPE_FILE`], and the tokenizer and generation
//!   files in [`COPIED_FILES`]. A file, a link, or a folder holding
//!   anything else is refused, naming what it holds; nothing smelt did not
//!   write is ever deleted.
//!
//! Paths are compared after canonicalization so `./a/../b` and symlinks
//! cannot slip past.
//!
//! Two merges are kept apart by advisory locks (`flock`), which work across
//! processes, containers and PID namespaces sharing a file system:
//!
//! - [`OutputLock`]: the file `OUT.smelt-lock` beside the output, held from
//!   before planning until the merge ends; a second merge to the same
//!   output fails at once, naming the first one's partial folder;
//! - the partial folder `OUT.partial-<pid>-<n>` is locked by the merge
//!   filling it; a partial folder nobody holds was left by a killed merge
//!   and is removed by the next merge to that output.

use super::reader::{CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
use super::{ModelError, Result};
use crate::fsutil;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The recipe a merge saves in its output folder. It marks the folder as
/// smelt's: `--force` replaces only a folder that holds it (or an empty
/// one).
pub const RECIPE_FILE: &str = "smelt-recipe.toml";

/// The record `smelt extract-lora` leaves in the adapter folder it writes
/// (what was extracted, how, and the reconstruction errors). Like
/// [`RECIPE_FILE`], it marks the folder as smelt's for `--force`.
pub const EXTRACT_FILE: &str = "smelt-extract.json";

/// The recipe `smelt moe` saves in its output folder (mergekit-moe's
/// name for it). Like [`RECIPE_FILE`], it marks the folder as smelt's.
pub const MOE_RECIPE_FILE: &str = "mergekit_moe_config.yml";

/// The model card a merge writes.
pub const CARD_FILE: &str = "README.md";

/// Files copied from the base (config) model into the output when present.
pub const COPIED_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    // BERT's WordPiece vocabulary; vision models' image preprocessing.
    "vocab.txt",
    "preprocessor_config.json",
];

/// Whether a file named `name` in an output folder is one a smelt merge
/// writes: a shard, the index, or a side file (see the module docs).
pub fn is_smelt_file(name: &str) -> bool {
    name == SINGLE_FILE
        || name == INDEX_FILE
        || is_shard_name(name)
        || is_side_file(name)
        || name == super::lora::ADAPTER_WEIGHTS
}

/// The small files [`super::Writer::add_file`] and `copy_file` may add.
pub(super) fn is_side_file(name: &str) -> bool {
    name == CONFIG_FILE
        || name == CARD_FILE
        || name == RECIPE_FILE
        || name == EXTRACT_FILE
        || name == super::lora::ADAPTER_CONFIG
        || name == MOE_RECIPE_FILE
        || COPIED_FILES.contains(&name)
}

/// `model-00001-of-00003.safetensors` (at least five digits each).
fn is_shard_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("model-")
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let Some((a, b)) = rest.split_once("-of-") else {
        return false;
    };
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|c| c.is_ascii_digit());
    digits(a) && digits(b)
}

/// A smelt file, or the temporary file of an interrupted atomic write of
/// one (only ever found in a partial folder).
fn is_smelt_entry(name: &str) -> bool {
    is_smelt_file(name) || fsutil::temp_target(name).is_some_and(is_smelt_file)
}

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

/// The folder an input lives in, resolved: the input itself when it is a
/// folder, the folder holding it when it is a file (`ft1/model.safetensors`
/// or an index). A path that does not exist counts as a file when it ends
/// in `.safetensors` or `.json`, as a folder otherwise.
fn input_folder(resolved: &Path) -> PathBuf {
    let is_file = match std::fs::metadata(resolved) {
        Ok(m) => !m.is_dir(),
        Err(_) => resolved
            .extension()
            .is_some_and(|e| e == "safetensors" || e == "json"),
    };
    match resolved.parent() {
        Some(p) if is_file => p.to_path_buf(),
        _ => resolved.to_path_buf(),
    }
}

/// The paths an input is read from: itself, or for `model+adapter` (a
/// path that does not exist, with one `+`) both halves.
fn input_parts(input: &Path) -> Vec<PathBuf> {
    if !input.exists() {
        if let Some((m, a)) = super::lora::split_reference(&input.to_string_lossy()) {
            return vec![PathBuf::from(m), PathBuf::from(a)];
        }
    }
    vec![input.to_path_buf()]
}

/// The first of `inputs` whose folder holds `path` (or is `path`), after
/// resolving both. A model named as a file protects the folder it is in,
/// just as a model named as a folder does.
pub fn inside_input<'a>(path: &Path, inputs: &'a [PathBuf]) -> Result<Option<&'a Path>> {
    let resolved = resolve(path)?;
    for input in inputs {
        for part in input_parts(input) {
            if resolved.starts_with(input_folder(&resolve(&part)?)) {
                return Ok(Some(input));
            }
        }
    }
    Ok(None)
}

/// Check that `out` may be written: refuse an existing `out` without
/// `force`, an `out` in an input's folder, and (under `force`) an existing
/// `out` that holds an input or that is not replaceable (empty, or a smelt
/// output holding only what a merge writes). Returns the resolved `out`.
pub fn check_destination(out: &Path, inputs: &[PathBuf], force: bool) -> Result<PathBuf> {
    let resolved = resolve(out)?;
    // `.`, `..` and `/` have no name of their own to rename to or beside.
    if out.file_name().is_none() || resolved.file_name().is_none() {
        return Err(out_err(out, "not a usable output folder name"));
    }
    let existing = out.symlink_metadata().ok();
    if existing.is_some() && !force {
        return Err(out_err(
            out,
            "already exists; choose another output or pass --force to replace it",
        ));
    }
    let parts: Vec<PathBuf> = inputs.iter().flat_map(|i| input_parts(i)).collect();
    for input in &parts {
        let inp = resolve(input)?;
        let folder = input_folder(&inp);
        if resolved.starts_with(&folder) {
            let what = if folder == inp {
                format!("input {}", input.display())
            } else {
                format!("the folder of input {}", input.display())
            };
            return Err(out_err(
                out,
                format!("is inside {what}; write the output somewhere else"),
            ));
        }
        if existing.is_some() && inp.starts_with(&resolved) {
            return Err(out_err(
                out,
                format!(
                    "contains input {}; replacing it would delete that input",
                    input.display()
                ),
            ));
        }
    }
    if let Some(meta) = existing {
        replaceable(out, &meta)?;
    }
    Ok(resolved)
}

/// What `--force` may replace: an empty folder, or a folder holding
/// [`RECIPE_FILE`] and only files a smelt merge writes.
fn replaceable(out: &Path, meta: &std::fs::Metadata) -> Result<()> {
    const RULE: &str = "smelt replaces only an empty folder or a folder a smelt merge wrote";
    if !meta.is_dir() {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_file() {
            "a file"
        } else {
            "not a folder"
        };
        return Err(out_err(
            out,
            format!("is {what}; {RULE}: remove it yourself or choose another output"),
        ));
    }
    let mut foreign = Vec::new();
    let mut any = false;
    let mut marked = false;
    let entries = std::fs::read_dir(out).map_err(|e| ModelError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    for e in entries {
        let e = e.map_err(|e| ModelError::Io {
            path: out.to_path_buf(),
            source: e,
        })?;
        any = true;
        let name = e.file_name();
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        match name.to_str() {
            Some(n) if regular && is_smelt_file(n) => {
                marked |= n == RECIPE_FILE || n == EXTRACT_FILE || n == MOE_RECIPE_FILE
            }
            _ => {
                let mut n = name.to_string_lossy().into_owned();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    n.push('/');
                }
                foreign.push(n);
            }
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        const SHOWN: usize = 6;
        let mut list = foreign
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if foreign.len() > SHOWN {
            list.push_str(&format!(" and {} more", foreign.len() - SHOWN));
        }
        return Err(out_err(
            out,
            format!(
                "holds files a smelt merge does not write ({list}); {RULE}, and never deletes \
                 other files: move them or choose another output"
            ),
        ));
    }
    if any && !marked {
        return Err(out_err(
            out,
            format!(
                "has no {RECIPE_FILE}, so it is not a smelt output; {RULE}: choose another output"
            ),
        ));
    }
    Ok(())
}

/// Remove a folder smelt wrote: its smelt files one by one, then the
/// folder, which fails if anything else is in it (that is left alone).
pub(super) fn remove_smelt_folder(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let smelt = e.file_name().to_str().is_some_and(is_smelt_entry);
        if smelt && e.file_type()?.is_file() {
            std::fs::remove_file(e.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// The entries of `dir` that [`remove_smelt_folder`] leaves alone.
pub(super) fn foreign_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .filter(|e| {
            !(e.file_name().to_str().is_some_and(is_smelt_entry)
                && e.file_type().is_ok_and(|t| t.is_file()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `out`'s parent as given (`None` for a bare name: the current folder),
/// and how to name it in a message.
fn parent_of(out: &Path) -> (&Path, String) {
    match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => (p, p.display().to_string()),
        None => (Path::new("."), "the current folder".into()),
    }
}

fn cannot_create(out: &Path, why: String, environment: bool) -> ModelError {
    ModelError::CannotCreate {
        path: out.to_path_buf(),
        why,
        environment,
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
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(cannot_create(
            out,
            format!("its parent folder {shown} does not exist"),
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(cannot_create(
            out,
            format!("its parent {shown} is not a folder (part of that path is a file)"),
            false,
        )),
        Err(e) => Err(cannot_create(
            out,
            format!("cannot reach its parent {shown} ({})", fsutil::reason(&e)),
            fsutil::is_environment_write(&e),
        )),
    }
}

/// The error for failing to create the scratch folder for `out` (or the
/// lock file, or the first file in it): about `out` and its parent, which
/// is what the user named and can fix, not the scratch name. A parent that
/// cannot be written and a full disk are the environment's fault.
pub(super) fn create_failed(out: &Path, e: &std::io::Error) -> ModelError {
    use std::io::ErrorKind as K;
    let (parent, shown) = parent_of(out);
    let reason = fsutil::reason(e);
    let (why, environment) = match e.kind() {
        // procfs and sysfs refuse new entries with "not found" although
        // the folder exists: that is a parent that cannot be written too.
        K::PermissionDenied | K::ReadOnlyFilesystem => (
            format!("its parent {shown} is not writable ({reason})"),
            true,
        ),
        K::NotFound if parent.is_dir() => (
            format!("its parent {shown} is not writable (it accepts no new folders)"),
            true,
        ),
        K::StorageFull | K::QuotaExceeded => (format!("no space left in {shown} ({reason})"), true),
        _ => (format!("in {shown}: {reason}"), fsutil::is_environment(e)),
    };
    cannot_create(out, why, environment)
}

/// A sibling of `out` named `<name>.<tag>-<pid>-<n>`: unique within this
/// process by the counter; across processes (whose pids may coincide in
/// other PID namespaces) callers create it exclusively and try the next
/// name if it exists.
pub(super) fn sibling(out: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{name}.{tag}-{}-{n}", std::process::id()))
}

/// Whether `file` is `<name>.partial-<pid>-<n>`.
fn is_partial_of(file: &str, name: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix(".partial-"))
    else {
        return false;
    };
    let Some((pid, n)) = rest.split_once('-') else {
        return false;
    };
    pid.parse::<u32>().is_ok() && n.parse::<u64>().is_ok()
}

/// Take the advisory lock on an open file or folder without waiting.
/// `Some(true)`: taken; `Some(false)`: someone holds it; `None`: this file
/// system has no locks (or refused for another reason).
fn try_lock(f: &File) -> Option<bool> {
    match f.try_lock() {
        Ok(()) => Some(true),
        Err(std::fs::TryLockError::WouldBlock) => Some(false),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Create the partial folder for `out` and lock it (the lock shows other
/// smelt processes that the folder is in use). Returns the folder and the
/// handle holding the lock (`None` where the file system has no locks).
pub(super) fn create_partial(out: &Path) -> Result<(PathBuf, Option<File>)> {
    let partial = loop {
        let p = sibling(out, "partial");
        match std::fs::create_dir(&p) {
            Ok(()) => break p,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(create_failed(out, &e)),
        }
    };
    let handle = match File::open(&partial) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir(&partial);
            return Err(create_failed(out, &e));
        }
    };
    let locked = try_lock(&handle) == Some(true);
    Ok((partial, locked.then_some(handle)))
}

/// Remove `OUT.partial-<pid>-<n>` folders left beside `out` by a smelt
/// merge that no longer runs (killed mid-merge: its drop handler never
/// ran). A live merge holds a lock on its partial folder, wherever it runs
/// (another container, another PID namespace), so only folders whose lock
/// can be taken are touched, and of those only the files a merge writes:
/// anything else keeps the folder in place. Called with the output lock
/// held, so no merge to `out` is between creating its partial folder and
/// locking it. Best effort.
pub(super) fn remove_stale_partials(out: &Path) {
    let (parent, _) = parent_of(out);
    let Some(name) = out.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        if !file.to_str().is_some_and(|f| is_partial_of(f, name))
            || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = e.path();
        let Ok(handle) = File::open(&path) else {
            continue;
        };
        if try_lock(&handle) == Some(true) {
            let _ = remove_smelt_folder(&path);
        }
        drop(handle);
    }
}

/// Whether `name` is a plain file name (no separators, not `.`/`..`), so
/// that files added to an output stay inside it.
pub(super) fn is_plain_name(name: &str) -> bool {
    let mut comps = Path::new(name).components();
    matches!(comps.next(), Some(Component::Normal(_))) && comps.next().is_none()
}

// ------------------------------------------------------------ output lock

/// First line of every lock file smelt writes.
const LOCK_MARK: &str = "smelt merge lock";

/// The exclusive right to write one output: an advisory lock (`flock`) on
/// the file `OUT.smelt-lock` beside it, held until dropped. Take it before
/// the work that leads to the output (the CLI takes it before planning), so
/// a second merge to the same output fails at once instead of after a
/// whole merge; [`super::Writer::create`] takes it itself when its process
/// does not hold it already.
///
/// The lock file says which process holds it and, once the merge has
/// started, its partial folder, so the refusal can name it. It is removed
/// when the lock is dropped; one left by a killed merge is simply taken
/// over by the next.
pub struct OutputLock {
    /// The output as the user named it.
    out: PathBuf,
    /// The output resolved: this process holds at most one lock per key.
    key: PathBuf,
    /// `OUT.smelt-lock`.
    path: PathBuf,
    file: File,
    /// Whether the file system gave the lock (or has no locks at all).
    locked: bool,
    /// Taken by a writer (see [`OutputLock::claim`]).
    claimed: AtomicBool,
    /// The partial folder being filled, once there is one.
    partial: Mutex<Option<PathBuf>>,
}

impl std::fmt::Debug for OutputLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputLock")
            .field("out", &self.out)
            .field("path", &self.path)
            .field("locked", &self.locked)
            .finish()
    }
}

/// The output locks this process holds, by resolved output.
static HELD: Mutex<Vec<(PathBuf, Weak<OutputLock>)>> = Mutex::new(Vec::new());

fn busy(out: &Path, who: &str) -> ModelError {
    ModelError::Busy {
        path: out.to_path_buf(),
        msg: format!(
            "another smelt merge is writing this output ({who}); wait for it to end or choose \
             another output"
        ),
    }
}

/// `OUT.smelt-lock` for a resolved output.
fn lock_path(key: &Path) -> PathBuf {
    let name = key
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    key.with_file_name(format!("{name}.smelt-lock"))
}

/// Who holds the lock at `path`, from what it wrote there.
fn holder(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match (field("partial "), field("pid ")) {
        (Some(p), _) => format!("its partial folder is {p}"),
        (None, Some(pid)) => format!(
            "smelt process {pid} is preparing it; its lock is {}",
            path.display()
        ),
        _ => format!("its lock {} is held", path.display()),
    }
}

impl OutputLock {
    /// Take the lock on `out`. Fails at once, naming the other merge's
    /// partial folder, if another merge (in any process, this one
    /// included) holds it; fails like [`super::Writer::create`] if `out`
    /// has no usable name or its parent is missing or cannot be written.
    pub fn acquire(out: &Path) -> Result<Arc<OutputLock>> {
        let key = resolve(out)?;
        if out.file_name().is_none() || key.file_name().is_none() {
            return Err(out_err(out, "not a usable output folder name"));
        }
        check_parent(out)?;
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|(_, w)| w.strong_count() > 0);
        if let Some(other) = held
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return Err(busy(out, &other.in_process()));
        }
        let lock = Arc::new(Self::take(out, key)?);
        held.push((lock.key.clone(), Arc::downgrade(&lock)));
        Ok(lock)
    }

    fn take(out: &Path, key: PathBuf) -> Result<OutputLock> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let path = lock_path(&key);
        loop {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| create_failed(out, &e))?;
            let locked = match try_lock(&file) {
                Some(true) => true,
                Some(false) => return Err(busy(out, &holder(&path))),
                None => false,
            };
            // The previous holder removes the file before letting go of
            // it: if the name no longer leads to the file locked here, take
            // the lock again on the file now there.
            let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let mut old = vec![0u8; LOCK_MARK.len()];
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len > 0 && (file.read_exact_at(&mut old, 0).is_err() || old != LOCK_MARK.as_bytes())
            {
                // Not smelt's: neither written over nor removed.
                return Err(out_err(
                    out,
                    format!(
                        "{} exists and is not a smelt lock file; move it away",
                        path.display()
                    ),
                ));
            }
            let lock = OutputLock {
                out: out.to_path_buf(),
                key,
                path,
                file,
                locked,
                claimed: AtomicBool::new(false),
                partial: Mutex::new(None),
            };
            lock.note(&format!("pid {}\n", std::process::id()));
            return Ok(lock);
        }
    }

    /// Record in the lock file what another merge should be told.
    fn note(&self, what: &str) {
        use std::os::unix::fs::FileExt;
        if !self.locked {
            return;
        }
        let text = format!("{LOCK_MARK}\n{what}");
        let _ = self.file.set_len(0);
        let _ = self.file.write_all_at(text.as_bytes(), 0);
    }

    /// Record the partial folder being filled (named to a merge refused).
    pub(super) fn note_partial(&self, partial: &Path) {
        let shown = resolve(partial).unwrap_or_else(|_| partial.to_path_buf());
        self.note(&format!(
            "pid {}\npartial {}\n",
            std::process::id(),
            shown.display()
        ));
        *self.partial.lock().unwrap_or_else(PoisonError::into_inner) = Some(shown);
    }

    /// Who holds this lock, for a merge in the same process refused.
    fn in_process(&self) -> String {
        match &*self.partial.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(p) => format!("its partial folder is {}", p.display()),
            None => "started by this same smelt process".into(),
        }
    }

    /// The output as named when the lock was taken.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// For a writer: the lock this process already holds on `out`, if no
    /// other writer uses it, or else a new one. Two writers to one output
    /// are refused within a process as across processes.
    pub(super) fn claim(out: &Path) -> Result<Claim> {
        let key = resolve(out)?;
        let existing = {
            let held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
            held.iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, w)| w.upgrade())
        };
        let lock = match existing {
            Some(l) => l,
            None => OutputLock::acquire(out)?,
        };
        if lock.claimed.swap(true, Ordering::AcqRel) {
            return Err(busy(out, &lock.in_process()));
        }
        Ok(Claim(lock))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        // Removed while still held: a process that opened the file and
        // waits for it sees the name gone and starts over (see `take`).
        let ours = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A writer's use of an [`OutputLock`], given back when dropped.
pub(super) struct Claim(Arc<OutputLock>);

impl Claim {
    pub(super) fn lock(&self) -> &OutputLock {
        &self.0
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.claimed.store(false, Ordering::Release);
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
