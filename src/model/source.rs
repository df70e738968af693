//! Model references turned into local files, in one place.
//!
//! A reference is what a recipe, the command line or the workbench names:
//! a local folder or file, or a Hugging Face hub name `org/name` or
//! `org/name@revision` (mergekit's syntax). A local path that exists always
//! wins, as in mergekit; otherwise a hub name is looked up in the local
//! Hugging Face cache, laid out as the Python libraries lay it out:
//!
//! ```text
//! <cache>/models--org--name/refs/main                  the commit of `main`
//!                          /snapshots/<commit>/config.json -> ../../blobs/<etag>
//!                          /blobs/<etag>
//! ```
//!
//! The cache is `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`
//! ([`cache_dir`]).
//!
//! Two ways in:
//! - [`super::Model::open`] (and [`cached`]) only ever read the cache: no
//!   network. A hub name that is not cached is a
//!   [`ModelError::NotCached`] naming the folder looked in.
//! - [`locate`] and [`fetch`] download what is missing into that same
//!   cache (so the Python tools share it) with the `hf-hub` crate, only the
//!   files a merge reads ([`needed_files`]), resuming a partial download
//!   (hf-hub keeps it as `blobs/<etag>.part` and asks for the rest with a
//!   `Range` header). `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` are
//!   honoured here: hf-hub 0.4 reads only `HF_HOME` and `HF_ENDPOINT`
//!   itself (and neither `HF_HUB_CACHE` nor `HF_TOKEN` nor
//!   `HF_HUB_OFFLINE`), so smelt passes every setting explicitly.

use super::{ModelError, Result, CONFIG_FILE, COPIED_FILES, INDEX_FILE, SINGLE_FILE};
use std::path::{Path, PathBuf};

/// The index of a sharded PyTorch checkpoint.
pub const BIN_INDEX_FILE: &str = "pytorch_model.bin.index.json";
/// A single-file PyTorch checkpoint.
pub const BIN_FILE: &str = "pytorch_model.bin";
/// A PEFT adapter's configuration.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// A PEFT adapter's weights, in the two formats PEFT writes.
pub const ADAPTER_WEIGHTS: [&str; 2] = ["adapter_model.safetensors", "adapter_model.bin"];

/// The hub every download goes to unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A Hugging Face hub name: `org/name`, optionally `@revision` (a branch,
/// a tag or a commit hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubName {
    /// `org/name`.
    pub repo: String,
    /// The revision after `@`, if one was given (`main` otherwise).
    pub revision: Option<String>,
}

impl HubName {
    /// Parse `org/name` or `org/name@revision`. Both parts of the name are
    /// 1 to 96 characters of letters, digits, `-`, `_` and `.`, neither
    /// starting nor ending with `-` or `.`, without `--` or `..` (the hub's
    /// own rules); the revision is any non-empty text without whitespace.
    /// A bare `name` (the hub's few legacy names) is not taken for a hub
    /// name, so that a single missing folder stays a missing folder.
    pub fn parse(reference: &str) -> Option<HubName> {
        let (repo, revision) = match reference.split_once('@') {
            Some((r, rev)) => {
                if rev.is_empty() || rev.chars().any(char::is_whitespace) {
                    return None;
                }
                (r, Some(rev.to_string()))
            }
            None => (reference, None),
        };
        let (org, name) = repo.split_once('/')?;
        (part_ok(org) && part_ok(name)).then(|| HubName {
            repo: repo.to_string(),
            revision,
        })
    }

    /// The revision asked for: the one given, or `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The repository's folder in the cache (`models--org--name`).
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl std::fmt::Display for HubName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revision {
            Some(r) => write!(f, "{}@{r}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

fn part_ok(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !s.is_empty()
        && s.len() <= 96
        && s.chars().all(ok_char)
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("--")
        && !s.contains("..")
}

/// The hub name `path` stands for, relative to the current folder (as
/// [`super::Model::open`] and the recipe writers see a model's path): see
/// [`hub_name_in`].
pub fn hub_name(path: &Path) -> Option<HubName> {
    hub_name_in(None, path.to_str()?)
}

/// The hub name a reference `written` in folder `base` (the current folder
/// when `None`) stands for: a relative path that reads as
/// `org/name[@revision]`, where neither `org/name...` nor the folder `org`
/// exists. An existing path is always itself (a local folder of the same
/// name wins, as in mergekit); and where `org` is a local folder
/// (`models/base`), the name is a path to a missing model there, not a
/// hub name, so that a mistyped local path says so instead of going to the
/// hub.
pub fn hub_name_in(base: Option<&Path>, written: &str) -> Option<HubName> {
    let p = Path::new(written);
    if p.is_absolute() {
        return None;
    }
    let name = HubName::parse(written)?;
    let at = |q: &Path| match base {
        Some(b) => b.join(q),
        None => q.to_path_buf(),
    };
    let org = name.repo.split('/').next().unwrap_or_default();
    let local = at(p).symlink_metadata().is_ok() || at(Path::new(org)).symlink_metadata().is_ok();
    (!local).then_some(name)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `~/x` as the home folder's `x` (the Python libraries expand it too).
fn expand(p: String) -> PathBuf {
    match (p.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface`.
fn hf_home() -> PathBuf {
    if let Some(h) = env("HF_HOME") {
        return expand(h);
    }
    let cache = env("XDG_CACHE_HOME").map_or_else(|| expand("~/.cache".to_string()), PathBuf::from);
    cache.join("huggingface")
}

/// The hub cache, found as the Python libraries find it: `HF_HUB_CACHE`
/// (or its old name `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(c) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return expand(c);
    }
    hf_home().join("hub")
}

/// Whether `HF_HUB_OFFLINE` forbids downloads (`1`, `ON`, `YES`, `TRUE`,
/// any case).
pub fn is_offline() -> bool {
    env("HF_HUB_OFFLINE").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

/// The hub address: `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
pub fn endpoint() -> String {
    env("HF_ENDPOINT").map_or_else(
        || DEFAULT_ENDPOINT.to_string(),
        |e| e.trim_end_matches('/').to_string(),
    )
}

/// The access token: `HF_TOKEN` (or its old name
/// `HUGGING_FACE_HUB_TOKEN`), else the file `HF_TOKEN_PATH` names, else
/// `$HF_HOME/token` (where `huggingface-cli login` leaves it).
fn token() -> Option<String> {
    if let Some(t) = env("HF_TOKEN").or_else(|| env("HUGGING_FACE_HUB_TOKEN")) {
        return Some(t.trim().to_string());
    }
    let file = env("HF_TOKEN_PATH").map_or_else(|| hf_home().join("token"), expand);
    let t = std::fs::read_to_string(file).ok()?;
    Some(t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The commit a revision stands for in a cached repository: `refs/<rev>`,
/// or the revision itself when it is a commit hash with a snapshot.
fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    // A revision never climbs out of refs/ (`refs/pr/1` is fine).
    if revision
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    if let Ok(c) = std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        let c = c.trim();
        if !c.is_empty() && !c.contains(['/', '\\']) && c != "." && c != ".." {
            return Some(c.to_string());
        }
    }
    let is_hash = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    (is_hash && repo_dir.join("snapshots").join(revision).is_dir()).then(|| revision.to_string())
}

/// Whether a snapshot folder holds complete weights smelt can read: a
/// safetensors or PyTorch index with every shard it names, a single
/// `model.safetensors` or `pytorch_model.bin`, or a PEFT adapter. (Links
/// into `blobs/` count only when their blob is there.)
fn has_weights(folder: &Path) -> bool {
    for (index, single) in [(INDEX_FILE, SINGLE_FILE), (BIN_INDEX_FILE, BIN_FILE)] {
        let ix = folder.join(index);
        if ix.is_file() {
            return match index_shards(&ix) {
                Ok(shards) => shards.iter().all(|s| folder.join(s).is_file()),
                Err(_) => false,
            };
        }
        if folder.join(single).is_file() {
            return true;
        }
    }
    folder.join(ADAPTER_CONFIG).is_file()
        && ADAPTER_WEIGHTS.iter().any(|w| folder.join(w).is_file())
}

/// The shard file names an index's `weight_map` names, each once, in
/// order of first appearance. Refuses a name that is not a plain file
/// name in the same folder.
fn index_shards(index: &Path) -> std::result::Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map` object")?;
    let mut out: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .ok_or("a `weight_map` value is not a file name")?;
        let plain = Path::new(f).components().count() == 1
            && !f.is_empty()
            && f != "."
            && f != ".."
            && !f.contains(['/', '\\']);
        if !plain {
            return Err(format!("shard `{f}` is not a file name in the same folder"));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// The snapshot folder of `name` in the hub cache `cache`, when it holds
/// the weights a merge reads. Reads the cache only.
pub fn cached_in(name: &HubName, cache: &Path) -> Option<PathBuf> {
    let repo_dir = cache.join(name.folder_name());
    let commit = cached_commit(&repo_dir, name.revision())?;
    let snap = repo_dir.join("snapshots").join(commit);
    has_weights(&snap).then_some(snap)
}

/// [`cached_in`] the cache [`cache_dir`] finds.
pub fn cached(name: &HubName) -> Option<PathBuf> {
    cached_in(name, &cache_dir())
}

/// The error for a hub name that is not cached (and is not downloaded).
pub fn not_cached(name: &HubName) -> ModelError {
    ModelError::NotCached {
        model: name.to_string(),
        searched: cache_dir().join(name.folder_name()),
        offline: is_offline(),
    }
}

/// For [`super::Model::open`]: where a path's files are when it is a hub
/// name (the cached snapshot), `None` when the path is opened as it is.
/// Never downloads.
pub(crate) fn for_open(path: &Path) -> Result<Option<PathBuf>> {
    let Some(name) = hub_name(path) else {
        return Ok(None);
    };
    match cached(&name) {
        Some(snap) => Ok(Some(snap)),
        None => Err(not_cached(&name)),
    }
}

/// Every `org/name` in the cache `cache` that has a snapshot (for
/// completion), sorted.
pub fn cached_names(cache: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(std::result::Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            let rest = n.strip_prefix("models--")?;
            let (org, name) = rest.split_once("--")?;
            let snaps = std::fs::read_dir(e.path().join("snapshots")).ok()?;
            let any = snaps.filter_map(std::result::Result::ok).next().is_some();
            let hub = format!("{org}/{name}");
            (any && HubName::parse(&hub).is_some()).then_some(hub)
        })
        .collect();
    out.sort();
    out
}

/// What a download reports as it goes.
pub trait DownloadProgress {
    /// A file starts (or resumes): its name and size in bytes. Bytes
    /// already on disk from an earlier, interrupted download are then
    /// reported through [`DownloadProgress::advance`].
    fn file(&mut self, name: &str, size: u64);
    /// `bytes` more of the current file are on disk.
    fn advance(&mut self, bytes: u64);
}

/// No progress reports.
impl DownloadProgress for () {
    fn file(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// hf-hub's progress trait over ours (hf-hub stays out of the public API).
struct Adapter<'a>(&'a mut dyn DownloadProgress);

impl hf_hub::api::Progress for Adapter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.file(filename, size as u64);
    }
    fn update(&mut self, size: usize) {
        self.0.advance(size as u64);
    }
    fn finish(&mut self) {}
}

/// The files of a hub repository a merge reads, from its file list:
/// `config.json`; the weights (`model.safetensors.index.json`, else
/// `model.safetensors`, else `pytorch_model.bin.index.json`, else
/// `pytorch_model.bin`, else a PEFT adapter's config and weights); and the
/// tokenizer and generation files a merge copies ([`COPIED_FILES`]). The
/// shards an index names are added once the index is read. `Err` says
/// that the repository holds no weights smelt reads.
pub fn needed_files(repo_files: &[String]) -> std::result::Result<Vec<String>, String> {
    let has = |f: &str| repo_files.iter().any(|r| r == f);
    let mut out = Vec::new();
    if has(CONFIG_FILE) {
        out.push(CONFIG_FILE.to_string());
    }
    let weights: Vec<&str> = if has(INDEX_FILE) {
        vec![INDEX_FILE]
    } else if has(SINGLE_FILE) {
        vec![SINGLE_FILE]
    } else if has(BIN_INDEX_FILE) {
        vec![BIN_INDEX_FILE]
    } else if has(BIN_FILE) {
        vec![BIN_FILE]
    } else if let (true, Some(w)) = (has(ADAPTER_CONFIG), ADAPTER_WEIGHTS.iter().find(|w| has(w))) {
        vec![ADAPTER_CONFIG, w]
    } else {
        return Err(format!(
            "the repository has none of {INDEX_FILE}, {SINGLE_FILE}, {BIN_INDEX_FILE}, \
             {BIN_FILE} or a PEFT adapter ({ADAPTER_CONFIG} with {})",
            ADAPTER_WEIGHTS.join(" or ")
        ));
    };
    out.extend(weights.iter().map(|w| w.to_string()));
    out.extend(
        COPIED_FILES
            .iter()
            .filter(|f| has(f))
            .map(|f| f.to_string()),
    );
    Ok(out)
}

/// A local folder or file for `reference`: a path that exists (relative
/// ones against `base_dir` when given, else the current folder), else a
/// hub name from the cache, downloaded into it first when missing (unless
/// `HF_HUB_OFFLINE` is set). No progress is shown; see [`locate_with`].
///
/// This is the one function to call for a reference written by a user
/// (`model+adapter` splits first, then locates each part).
pub fn locate(reference: &str, base_dir: Option<&Path>) -> Result<PathBuf> {
    locate_with(reference, base_dir, &mut ())
}

/// [`locate`], reporting a download's progress to `progress`.
pub fn locate_with(
    reference: &str,
    base_dir: Option<&Path>,
    progress: &mut dyn DownloadProgress,
) -> Result<PathBuf> {
    let p = Path::new(reference);
    let local = match base_dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p.to_path_buf(),
    };
    if local.symlink_metadata().is_ok() {
        return Ok(local);
    }
    match hub_name_in(base_dir, reference) {
        Some(name) => fetch(&name, progress),
        None => Err(ModelError::Io {
            path: local,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }),
    }
}

/// The snapshot folder of `name`: from the cache when its weights are
/// there, else downloaded into the cache (only [`needed_files`]; files
/// already in the snapshot are not fetched again, a partial one is
/// resumed). Offline (`HF_HUB_OFFLINE`), a name not cached is
/// [`ModelError::NotCached`].
pub fn fetch(name: &HubName, progress: &mut dyn DownloadProgress) -> Result<PathBuf> {
    let cache = cache_dir();
    if let Some(snap) = cached_in(name, &cache) {
        return Ok(snap);
    }
    if is_offline() {
        return Err(not_cached(name));
    }
    // hf-hub's HTTP client (ureq 2, as hf-hub 0.4 builds it) has no read
    // timeout and hf-hub offers no way to set one, so a connection that
    // stops answering would hang the download forever. The download runs
    // on a thread of its own; this one relays its progress and gives up
    // when nothing at all has come for the stall time (the thread is left
    // to the process's end; the partial file resumes on the next run).
    let stall = stall_time();
    let (tx, rx) = crossbeam_channel::unbounded::<Step>();
    let who = name.clone();
    let worker = std::thread::Builder::new()
        .name("smelt-download".into())
        .spawn(move || {
            let mut relay = Relay(tx.clone());
            let r = download(&who, cache, &mut relay);
            let _ = tx.send(Step::Done(Box::new(r)));
        })
        .map_err(|e| hub_msg(name, format!("cannot start the download: {e}"), true))?;
    loop {
        match rx.recv_timeout(stall) {
            Ok(Step::File(f, size)) => progress.file(&f, size),
            Ok(Step::Advance(n)) => progress.advance(n),
            Ok(Step::Alive) => {}
            Ok(Step::Done(r)) => {
                let _ = worker.join();
                return *r;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                return Err(hub_msg(
                    name,
                    format!(
                        "no data from {} for {} s: the connection stalled; run again (a \
                         partial download resumes; SMELT_HUB_TIMEOUT sets the wait in seconds)",
                        endpoint(),
                        stall.as_secs()
                    ),
                    true,
                ));
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(hub_msg(
                    name,
                    "the download stopped without a result (a bug)".into(),
                    true,
                ));
            }
        }
    }
}

/// How long a download may go without any data before it is given up:
/// `SMELT_HUB_TIMEOUT` seconds (at least 1), else 60.
fn stall_time() -> std::time::Duration {
    let secs = env("SMELT_HUB_TIMEOUT")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s >= 1)
        .unwrap_or(60);
    std::time::Duration::from_secs(secs)
}

/// What the download thread reports.
enum Step {
    /// A file starts: its name and size.
    File(String, u64),
    /// More bytes of it are on disk.
    Advance(u64),
    /// A request was answered (the hub is alive).
    Alive,
    /// The download's result.
    Done(Box<Result<PathBuf>>),
}

/// The download thread's progress, sent to the waiting thread.
struct Relay(crossbeam_channel::Sender<Step>);

impl DownloadProgress for Relay {
    fn file(&mut self, name: &str, size: u64) {
        let _ = self.0.send(Step::File(name.to_string(), size));
    }
    fn advance(&mut self, bytes: u64) {
        let _ = self.0.send(Step::Advance(bytes));
    }
}

impl Relay {
    fn alive(&self) {
        let _ = self.0.send(Step::Alive);
    }
}

/// [`fetch`]'s work: the repository's file list, then every needed file
/// not in the snapshot yet, into `cache`.
fn download(name: &HubName, cache: PathBuf, progress: &mut Relay) -> Result<PathBuf> {
    let endpoint = endpoint();
    let fail = |e: hf_hub::api::sync::ApiError| hub_error(name, &endpoint, e);
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.clone()))
        .with_endpoint(endpoint.clone())
        .with_token(token())
        .with_progress(false)
        .with_user_agent("smelt", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(fail)?;
    let repo = api.repo(hf_hub::Repo::with_revision(
        name.repo.clone(),
        hf_hub::RepoType::Model,
        name.revision().to_string(),
    ));
    let info = repo.info().map_err(fail)?;
    progress.alive();
    let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let mut wanted = needed_files(&files).map_err(|msg| hub_msg(name, msg, false))?;
    if !is_plain_name(&info.sha) {
        return Err(hub_msg(
            name,
            format!("the hub gave a bad commit `{}`", info.sha),
            false,
        ));
    }
    let snap = cache
        .join(name.folder_name())
        .join("snapshots")
        .join(&info.sha);
    let mut i = 0;
    while i < wanted.len() {
        let f = wanted[i].clone();
        i += 1;
        let at = snap.join(&f);
        if !at.is_file() {
            let got = repo
                .download_with_progress(&f, Adapter(&mut *progress))
                .map_err(fail)?;
            progress.alive();
            if got != at {
                return Err(hub_msg(
                    name,
                    format!(
                        "the repository changed while downloading ({} is not in snapshot {}); run again",
                        f, info.sha
                    ),
                    true,
                ));
            }
        }
        if f == INDEX_FILE || f == BIN_INDEX_FILE {
            let shards =
                index_shards(&at).map_err(|m| hub_msg(name, format!("{f}: {m}"), false))?;
            for s in shards {
                if !files.contains(&s) {
                    return Err(hub_msg(
                        name,
                        format!("{f} names shard {s}, which the repository does not have"),
                        false,
                    ));
                }
                if !wanted.contains(&s) {
                    wanted.push(s);
                }
            }
        }
    }
    // A revision that is a commit hash has no ref of its own in the Python
    // layout; hf-hub writes refs/<revision> for it anyway, which is
    // harmless (it holds that same hash).
    if has_weights(&snap) {
        Ok(snap)
    } else {
        Err(hub_msg(
            name,
            format!(
                "downloaded, but {} holds no complete weights",
                snap.display()
            ),
            true,
        ))
    }
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\'])
}

fn hub_msg(name: &HubName, msg: String, environment: bool) -> ModelError {
    ModelError::Hub {
        model: name.to_string(),
        msg,
        environment,
    }
}

/// An hf-hub failure in words, and whose fault it is: a refused or missing
/// repository is the input's (exit 2); an unreachable hub or a failing
/// disk the environment's (exit 1).
fn hub_error(name: &HubName, endpoint: &str, e: hf_hub::api::sync::ApiError) -> ModelError {
    use hf_hub::api::sync::ApiError;
    let (msg, environment) = match e {
        ApiError::RequestError(boxed) => match *boxed {
            ureq::Error::Status(code @ (401 | 403), _) => (
                format!(
                    "{endpoint} refused it (HTTP {code}): it does not exist, or it is gated or \
                     private; set HF_TOKEN to a token that may read it"
                ),
                false,
            ),
            ureq::Error::Status(404, _) => (
                format!(
                    "not found on {endpoint} (HTTP 404): check the name and the revision `{}`",
                    name.revision()
                ),
                false,
            ),
            ureq::Error::Status(code, _) => (format!("{endpoint} answered HTTP {code}"), true),
            ureq::Error::Transport(t) => (
                format!(
                    "cannot reach {endpoint}: {t} (with HF_HUB_OFFLINE=1 only the local cache is used)"
                ),
                true,
            ),
        },
        ApiError::IoError(io) => (
            format!(
                "writing into the cache {}: {io}",
                cache_dir().display()
            ),
            true,
        ),
        other => (format!("download failed: {other}"), true),
    };
    hub_msg(name, msg, environment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names() {
        let n = HubName::parse("org/name").unwrap();
        assert_eq!((n.repo.as_str(), n.revision()), ("org/name", "main"));
        let n = HubName::parse("meta-llama/Llama-3.1-8B@refs/pr/1").unwrap();
        assert_eq!(n.revision(), "refs/pr/1");
        assert_eq!(n.folder_name(), "models--meta-llama--Llama-3.1-8B");
        assert_eq!(n.to_string(), "meta-llama/Llama-3.1-8B@refs/pr/1");
        for bad in [
            "name",
            "a/b/c",
            "/abs/path",
            "./x",
            "../x/y",
            "a/.b",
            "a/b-",
            "a--b/c",
            "a/b@",
            "a/b@x y",
            "org/",
            "/name",
            "models/x.y..z",
        ] {
            assert!(HubName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn files_a_merge_needs() {
        let files: Vec<String> = [
            "README.md",
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tokenizer.json",
            "flax_model.msgpack",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            needed_files(&files).unwrap(),
            ["config.json", "model.safetensors", "tokenizer.json"]
        );
        let bin: Vec<String> = ["config.json", "pytorch_model.bin"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            needed_files(&bin).unwrap(),
            ["config.json", "pytorch_model.bin"]
        );
        let none: Vec<String> = ["README.md".to_string()].to_vec();
        assert!(needed_files(&none)
            .unwrap_err()
            .contains("model.safetensors"));
    }
}
