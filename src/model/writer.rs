//! Writing a model: shards laid out up front, filled from any thread,
//! published by one rename.
//!
//! Because every output tensor's name, dtype and shape are known before any
//! data exists, each shard's header and each tensor's byte range can be
//! fixed at creation. The shard files are then created at their final size
//! and workers `pwrite` their chunks straight to the right offsets, in any
//! order and from any number of threads, with no coordination and no
//! buffering of whole tensors. Nothing appears at the destination until
//! [`Writer::finish`] renames the completed folder into place, so an
//! interrupted merge never leaves a half-written model where a good one is
//! expected.
//!
//! While it runs, a writer holds the output's lock ([`OutputLock`]) and a
//! lock on its partial folder; the rules for where an output may go and
//! what `force` may replace are in `outpath`. Small files (index, config,
//! model card, recipe, copied tokenizer files) go through
//! [`crate::fsutil::write_atomic_with`].

use super::header::{self, OutEntry};
use super::outpath::{
    check_destination, check_parent, create_partial, foreign_names, is_plain_name, is_side_file,
    remove_smelt_folder, remove_stale_partials, sibling, Claim, OutputLock,
};
use super::reader::{INDEX_FILE, SINGLE_FILE};
use super::{dtype, Dtype, ModelError, Result};
use crate::fsutil::{sync_dir, write_atomic_with};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One tensor of the output, known before any data is written.
#[derive(Clone, Debug)]
pub struct OutputTensor {
    /// The tensor's name in the output.
    pub name: String,
    /// The dtype it is written as.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl OutputTensor {
    /// Elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How a [`Writer`] shards and publishes the output.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Maximum bytes per shard (default 5 GB, decimal as HF does).
    pub shard_size: u64,
    /// Replace an existing output folder, if it is empty or a smelt output
    /// with nothing foreign in it (see `outpath`).
    pub force: bool,
    /// Folders the output must not be inside (the inputs).
    pub inputs: Vec<PathBuf>,
    /// `__metadata__` for every shard header.
    pub metadata: Vec<(String, String)>,
    /// fsync the files before publishing, so a power loss right after the
    /// rename cannot leave a published folder with missing data. Costs the
    /// time to write the whole output to disk at the end of a merge.
    pub sync: bool,
}

/// Hugging Face's default `max_shard_size` ("5GB", decimal): the one
/// default of every front end (the CLI's `--shard-size`, the workbench,
/// [`crate::engine::Options::new`]), so a recipe gives the same files
/// whichever runs it.
pub const DEFAULT_SHARD_SIZE: u64 = 5_000_000_000;

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            shard_size: DEFAULT_SHARD_SIZE,
            force: false,
            inputs: Vec::new(),
            metadata: Vec::new(),
            sync: true,
        }
    }
}

/// Where a tensor's bytes go.
#[derive(Clone, Copy, Debug)]
struct Slot {
    shard: usize,
    /// Absolute offset of the tensor's first byte in the shard file.
    offset: u64,
    nbytes: u64,
}

struct Shard {
    name: String,
    file: File,
}

/// Bytes converted per `pwrite` on the converting path: bounded, so a
/// write never allocates a tensor-sized buffer.
const WRITE_BUF: usize = 64 * 1024;

/// With `sync`, how many bytes written between early flushes.
const FLUSH_EVERY: u64 = 8 << 20;

/// Starts writing data to the disk while the merge still runs, so the fsync
/// before publishing waits only for the last few megabytes instead of the
/// whole output (on this machine's disk, 574 MB/s, that fsync alone was
/// 0.3-0.6 s for a 338 MB output). A thread of its own calls `fdatasync`
/// on the shards whenever [`FLUSH_EVERY`] more bytes have been written;
/// workers only post a note, never wait. Its first error is kept for
/// [`Writer::finish`], since the kernel reports a writeback error once.
struct Flusher {
    note: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The first failure, with the shard it concerns.
    error: std::sync::Arc<std::sync::Mutex<Option<(PathBuf, std::io::Error)>>>,
    written: std::sync::atomic::AtomicU64,
}

impl Flusher {
    fn start(files: Vec<(PathBuf, File)>) -> Flusher {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let keep = error.clone();
        let thread = std::thread::Builder::new()
            .name("smelt-flush".into())
            .spawn(move || {
                for () in rx.iter() {
                    for (path, f) in &files {
                        if let Err(e) = f.sync_data() {
                            if let Ok(mut slot) = keep.lock() {
                                slot.get_or_insert((path.clone(), e));
                            }
                        }
                    }
                }
            })
            .ok();
        Flusher {
            note: thread.is_some().then_some(tx),
            thread,
            error,
            written: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Count `n` more bytes written; past each [`FLUSH_EVERY`], ask for a
    /// flush (a note already pending covers this one too).
    fn wrote(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let before = self.written.fetch_add(n, Ordering::Relaxed);
        if before / FLUSH_EVERY != (before + n) / FLUSH_EVERY {
            if let Some(tx) = &self.note {
                let _ = tx.try_send(());
            }
        }
    }

    /// Stop the thread (after its current flush) and hand back its first
    /// error.
    fn stop(&mut self) -> Option<(PathBuf, std::io::Error)> {
        self.note = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An output folder being written. Data goes into `OUT.partial-<pid>-<n>`
/// next to `OUT`; [`Writer::finish`] writes the index and renames it into
/// place. Dropping an unfinished writer removes the partial folder.
pub struct Writer {
    out: PathBuf,
    partial: PathBuf,
    tensors: Vec<OutputTensor>,
    slots: Vec<Slot>,
    shards: Vec<Shard>,
    force: bool,
    sync: bool,
    inputs: Vec<PathBuf>,
    /// Set once the partial folder has been renamed (or must otherwise not
    /// be removed on drop).
    published: bool,
    /// Early writeback, with `sync`.
    flusher: Option<Flusher>,
    /// The handle holding the lock on `partial` (none where the file
    /// system has no locks): other merges leave a locked partial alone.
    partial_lock: Option<File>,
    /// The output's lock, held until the writer is gone.
    _claim: Claim,
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A failure writing the output file `path` (named as in the finished
/// output): the environment's fault, not the input's.
fn write_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn out_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Output {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Split tensors into shards greedily in order: a shard is closed when the
/// next tensor would take it past `shard_size` (a tensor larger than that
/// gets a shard of its own). Returns, per shard, the tensor indices.
fn assign_shards(sizes: &[u64], shard_size: u64) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut used = 0u64;
    for (i, &n) in sizes.iter().enumerate() {
        let cur = shards.len() - 1;
        if !shards[cur].is_empty() && used.saturating_add(n) > shard_size {
            shards.push(Vec::new());
            used = 0;
        }
        let cur = shards.len() - 1;
        shards[cur].push(i);
        used += n;
    }
    shards
}

/// `model-00001-of-00003.safetensors`, as transformers names shards.
#[cfg(test)]
fn shard_name(i: usize, n: usize) -> String {
    shard_name_as(i, n, SINGLE_FILE)
}

/// [`shard_name`], with `single` as the name of an output of one file.
fn shard_name_as(i: usize, n: usize, single: &str) -> String {
    if n == 1 {
        single.to_string()
    } else {
        format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
    }
}

impl Writer {
    /// Check the destination, create the partial folder and the shard files
    /// at their final sizes with their headers.
    pub fn create(out: &Path, tensors: Vec<OutputTensor>, opts: &WriterOptions) -> Result<Writer> {
        Self::create_as(out, tensors, opts, SINGLE_FILE)
    }

    /// [`Writer::create`] for a PEFT adapter folder: the tensors go into one
    /// file, `adapter_model.safetensors` (`opts.shard_size` is not used).
    pub fn create_adapter(
        out: &Path,
        tensors: Vec<OutputTensor>,
        opts: &WriterOptions,
    ) -> Result<Writer> {
        let one_file = WriterOptions {
            shard_size: u64::MAX,
            ..opts.clone()
        };
        Self::create_as(out, tensors, &one_file, super::lora::ADAPTER_WEIGHTS)
    }

    fn create_as(
        out: &Path,
        tensors: Vec<OutputTensor>,
        opts: &WriterOptions,
        single: &str,
    ) -> Result<Writer> {
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut names = std::collections::HashSet::new();
        for t in &tensors {
            if !names.insert(t.name.as_str()) {
                return Err(out_err(out, format!("tensor `{}` is listed twice", t.name)));
            }
            let n = t
                .dtype
                .nbytes(&t.shape)
                .map(|n| n as u64)
                .ok_or_else(|| out_err(out, format!("tensor `{}`: shape too large", t.name)))?;
            sizes.push(n);
        }
        check_destination(out, &opts.inputs, opts.force)?;
        check_parent(out)?;
        let claim = OutputLock::claim(out)?;
        // Under the lock: the output may have been written meanwhile.
        check_destination(out, &opts.inputs, opts.force)?;
        remove_stale_partials(out);
        let (partial, partial_lock) = create_partial(out)?;
        claim.lock().note_partial(&partial);
        // From here on, an early return drops `w`, which removes `partial`.
        let mut w = Writer {
            out: out.to_path_buf(),
            partial,
            tensors: Vec::new(),
            slots: vec![
                Slot {
                    shard: 0,
                    offset: 0,
                    nbytes: 0
                };
                tensors.len()
            ],
            shards: Vec::new(),
            force: opts.force,
            sync: opts.sync,
            inputs: opts.inputs.clone(),
            published: false,
            flusher: None,
            partial_lock,
            _claim: claim,
        };

        let groups = assign_shards(&sizes, opts.shard_size);
        for (si, members) in groups.iter().enumerate() {
            let mut entries = Vec::with_capacity(members.len());
            let mut pos = 0u64;
            for &ti in members {
                let t = &tensors[ti];
                entries.push(OutEntry {
                    name: &t.name,
                    dtype: t.dtype,
                    shape: &t.shape,
                    start: pos,
                    end: pos + sizes[ti],
                });
                pos += sizes[ti];
            }
            let head = header::build(&entries, &opts.metadata);
            for (&ti, e) in members.iter().zip(&entries) {
                w.slots[ti] = Slot {
                    shard: si,
                    offset: head.len() as u64 + e.start,
                    nbytes: e.end - e.start,
                };
            }
            let name = shard_name_as(si, groups.len(), single);
            let path = w.partial.join(&name);
            let shown = w.out.join(&name);
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| write_err(&shown, e))?;
            file.set_len(head.len() as u64 + pos)
                .map_err(|e| write_err(&shown, e))?;
            file.write_all_at(&head, 0)
                .map_err(|e| write_err(&shown, e))?;
            w.shards.push(Shard { name, file });
        }
        w.tensors = tensors;
        if w.sync {
            // A shard that cannot be duplicated is simply flushed at the end.
            let files = w.shards.iter().filter_map(|s| {
                let f = s.file.try_clone().ok()?;
                Some((w.out.join(&s.name), f))
            });
            w.flusher = Some(Flusher::start(files.collect()));
        }
        Ok(w)
    }
    /// The output tensors, in the order given to `create`.
    pub fn tensors(&self) -> &[OutputTensor] {
        &self.tensors
    }
    /// The destination folder.
    pub fn out(&self) -> &Path {
        &self.out
    }
    /// The scratch folder being filled (renamed to [`Writer::out`] by
    /// `finish`).
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }
    /// The shard file names, in order.
    pub fn shard_names(&self) -> Vec<&str> {
        self.shards.iter().map(|s| s.name.as_str()).collect()
    }

    fn tensor_err(&self, index: usize, msg: String) -> ModelError {
        ModelError::Tensor {
            path: self.out.clone(),
            tensor: self
                .tensors
                .get(index)
                .map_or_else(|| format!("#{index}"), |t| t.name.clone()),
            msg,
        }
    }

    /// The slot of tensor `index` if bytes `[byte_offset, +len)` fit in it.
    fn slot_for(&self, index: usize, byte_offset: u64, len: u64) -> Result<Slot> {
        let slot = *self
            .slots
            .get(index)
            .ok_or_else(|| self.tensor_err(index, "no such output tensor".into()))?;
        match byte_offset.checked_add(len) {
            Some(end) if end <= slot.nbytes => Ok(slot),
            _ => Err(self.tensor_err(
                index,
                format!(
                    "write of bytes {byte_offset}..{} past its {} bytes",
                    byte_offset.saturating_add(len),
                    slot.nbytes
                ),
            )),
        }
    }

    fn pwrite(&self, slot: Slot, byte_offset: u64, bytes: &[u8]) -> Result<()> {
        let shard = &self.shards[slot.shard];
        shard
            .file
            .write_all_at(bytes, slot.offset + byte_offset)
            .map_err(|e| write_err(&self.out.join(&shard.name), e))?;
        if let Some(f) = &self.flusher {
            f.wrote(bytes.len() as u64);
        }
        Ok(())
    }

    /// Write elements `[start, start + data.len())` of tensor `index`,
    /// converting to its dtype. Safe to call from many threads at once.
    pub fn write_f32(&self, index: usize, start: usize, data: &[f32]) -> Result<()> {
        let Some(t) = self.tensors.get(index) else {
            return Err(self.tensor_err(index, "no such output tensor".into()));
        };
        let dt = t.dtype;
        if !dt.is_mergeable() {
            return Err(self.tensor_err(
                index,
                format!("dtype {dt} is not a float type; write it with write_raw"),
            ));
        }
        let size = dt.size() as u64;
        let offset = start as u64 * size;
        let slot = self.slot_for(index, offset, data.len() as u64 * size)?;
        // F32 on a little-endian machine needs no conversion: one pwrite.
        if dt == Dtype::F32 && cfg!(target_endian = "little") {
            return self.pwrite(slot, offset, bytemuck::cast_slice(data));
        }
        let mut buf = [0u8; WRITE_BUF];
        let per = WRITE_BUF / dt.size();
        for (k, chunk) in data.chunks(per).enumerate() {
            let bytes = &mut buf[..chunk.len() * dt.size()];
            dtype::from_f32(dt, chunk, bytes)?;
            self.pwrite(slot, offset + (k * per) as u64 * size, bytes)?;
        }
        Ok(())
    }
    /// Write raw bytes at `byte_offset` inside tensor `index`'s data.
    pub fn write_raw(&self, index: usize, byte_offset: usize, bytes: &[u8]) -> Result<()> {
        let slot = self.slot_for(index, byte_offset as u64, bytes.len() as u64)?;
        self.pwrite(slot, byte_offset as u64, bytes)
    }
    /// Add a small file to the output: `config.json`, `README.md`,
    /// `smelt-recipe.toml` or one of [`super::COPIED_FILES`] (only files a
    /// merge writes, so that `force` can tell a smelt output from a folder
    /// with the user's files in it).
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.check_extra_name(name)?;
        write_atomic_with(&self.partial.join(name), self.sync, |f| f.write_all(bytes))
            .map_err(|e| write_err(&self.out.join(name), e))
    }
    /// Copy a file from an input folder into the output (under the same
    /// name, which must be one [`Writer::add_file`] accepts).
    pub fn copy_file(&self, from: &Path) -> Result<()> {
        let name = from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| out_err(from, "not a file name"))?;
        self.check_extra_name(&name)?;
        let mut src = File::open(from).map_err(|e| io_err(from, e))?;
        let mut read_failed = None;
        write_atomic_with(&self.partial.join(&name), self.sync, |f| {
            let mut buf = vec![0u8; WRITE_BUF];
            loop {
                let n = match std::io::Read::read(&mut src, &mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        read_failed = Some(e.kind());
                        return Err(e);
                    }
                };
                f.write_all(&buf[..n])?;
            }
        })
        .map_err(|e| match read_failed {
            Some(_) => io_err(from, e),
            None => write_err(&self.out.join(&name), e),
        })
    }

    fn check_extra_name(&self, name: &str) -> Result<()> {
        if !is_plain_name(name) {
            return Err(out_err(
                &self.out,
                format!("`{name}` is not a plain file name"),
            ));
        }
        if name == INDEX_FILE || self.shards.iter().any(|s| s.name == name) {
            return Err(out_err(
                &self.out,
                format!("`{name}` would overwrite the model's weights"),
            ));
        }
        if !is_side_file(name) {
            return Err(out_err(
                &self.out,
                format!(
                    "`{name}` is not a file a smelt output holds (config.json, README.md, \
                     smelt-recipe.toml, tokenizer and generation files)"
                ),
            ));
        }
        Ok(())
    }

    /// The index transformers reads: total tensor bytes and, for each
    /// tensor, its shard (keys sorted, as transformers writes them).
    fn index_json(&self) -> Vec<u8> {
        let total: u64 = self.slots.iter().map(|s| s.nbytes).sum();
        let mut names: Vec<(&str, usize)> = self
            .tensors
            .iter()
            .zip(&self.slots)
            .map(|(t, s)| (t.name.as_str(), s.shard))
            .collect();
        names.sort_unstable();
        let mut map = serde_json::Map::new();
        for (n, s) in names {
            map.insert(
                n.to_string(),
                serde_json::Value::String(self.shards[s].name.clone()),
            );
        }
        let v = serde_json::json!({
            "metadata": { "total_size": total },
            "weight_map": map,
        });
        let mut text = serde_json::to_vec_pretty(&v).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// Sync, write `model.safetensors.index.json` when sharded, rename the
    /// partial folder to the destination (replacing it under `force`), and
    /// (with `sync`) flush the parent folder so the rename is on disk.
    ///
    /// Under `force` the old output is first renamed aside, the new one
    /// renamed into place, then the old one's smelt files deleted one by
    /// one and its folder removed, so at every moment one complete model
    /// sits at the destination or beside it, and a file that appeared in
    /// the old output meanwhile is never deleted.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some((path, e)) = self.flusher.as_mut().and_then(Flusher::stop) {
            return Err(write_err(&path, e));
        }
        if self.sync {
            for s in &self.shards {
                s.file
                    .sync_all()
                    .map_err(|e| write_err(&self.out.join(&s.name), e))?;
            }
        }
        if self.shards.len() > 1 {
            let index = self.index_json();
            write_atomic_with(&self.partial.join(INDEX_FILE), self.sync, |f| {
                f.write_all(&index)
            })
            .map_err(|e| write_err(&self.out.join(INDEX_FILE), e))?;
        }
        if self.sync {
            sync_dir(&self.partial).map_err(|e| write_err(&self.out, e))?;
        }

        // The destination may have appeared (or an input moved) since
        // `create`: check again right before publishing.
        check_destination(&self.out, &self.inputs, self.force)?;
        let out = self.out.clone();
        if out.symlink_metadata().is_ok() {
            let old = loop {
                let o = sibling(&out, "old");
                if o.symlink_metadata().is_err() {
                    break o;
                }
            };
            std::fs::rename(&out, &old).map_err(|e| write_err(&out, e))?;
            if let Err(e) = std::fs::rename(&self.partial, &out) {
                // Put the previous output back; the partial folder is
                // removed on drop.
                let _ = std::fs::rename(&old, &out);
                return Err(write_err(&out, e));
            }
            self.published = true;
            if let Err(e) = remove_smelt_folder(&old) {
                let left = foreign_names(&old);
                let why = if left.is_empty() {
                    crate::fsutil::reason(&e)
                } else {
                    format!("it holds files smelt did not write: {}", left.join(", "))
                };
                return Err(out_err(
                    &old,
                    format!(
                        "the new output is in place at {}, but the replaced one, moved here, \
                         was not deleted: {why}",
                        out.display()
                    ),
                ));
            }
        } else {
            std::fs::rename(&self.partial, &out).map_err(|e| write_err(&out, e))?;
            self.published = true;
        }
        if self.sync {
            let parent = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(p) => p,
                None => Path::new("."),
            };
            sync_dir(parent).map_err(|e| write_err(&out, e))?;
        }
        Ok(out)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.flusher = None;
        if !self.published {
            // Only what the writer put there: anything else keeps the
            // folder in place.
            self.shards.clear();
            let _ = remove_smelt_folder(&self.partial);
        }
        // Unlocked only once the folder is gone (or published).
        self.partial_lock = None;
    }
}

/// Write a small model (a single `model.safetensors`) atomically: tensors are
/// `(name, shape, data)` stored as `dtype`. For MLP checkpoints and tests.
///
/// `path` ending in `.safetensors` is the file to write; any other path is a
/// folder (created if needed) that receives `model.safetensors`. The file is
/// written under a temporary name in the same folder and renamed over the
/// target, so readers see the old file or the new one, never a mix.
pub fn write_small(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: Dtype,
    metadata: &[(String, String)],
) -> Result<()> {
    let file = if path.extension().is_some_and(|e| e == "safetensors") {
        path.to_path_buf()
    } else {
        std::fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
        path.join(SINGLE_FILE)
    };
    if !dtype.is_mergeable() {
        return Err(out_err(&file, format!("cannot store f32 data as {dtype}")));
    }
    let size = dtype.size() as u64;
    let mut entries = Vec::with_capacity(tensors.len());
    let mut pos = 0u64;
    for (name, shape, data) in tensors {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(data.len()) {
            return Err(ModelError::Tensor {
                path: file.clone(),
                tensor: name.clone(),
                msg: format!("shape {shape:?} does not match {} values", data.len()),
            });
        }
        let n = data.len() as u64 * size;
        entries.push(OutEntry {
            name,
            dtype,
            shape,
            start: pos,
            end: pos + n,
        });
        pos += n;
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = tensors.iter().find(|t| !seen.insert(t.0.as_str())) {
        return Err(out_err(
            &file,
            format!("tensor `{}` is listed twice", dup.0),
        ));
    }
    let head = header::build(&entries, metadata);

    write_atomic_with(&file, true, |f| {
        let mut w = std::io::BufWriter::new(f);
        w.write_all(&head)?;
        let mut buf = vec![0u8; WRITE_BUF];
        let per = WRITE_BUF / dtype.size();
        for (_, _, data) in tensors {
            for chunk in data.chunks(per) {
                let bytes = &mut buf[..chunk.len() * dtype.size()];
                dtype::from_f32(dtype, chunk, bytes).map_err(std::io::Error::other)?;
                w.write_all(bytes)?;
            }
        }
        w.flush()
    })
    .map_err(|e| write_err(&file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_sharding() {
        assert_eq!(assign_shards(&[4, 4, 4], 8), vec![vec![0, 1], vec![2]]);
        // A tensor larger than the limit gets a shard of its own.
        assert_eq!(
            assign_shards(&[2, 20, 2, 2], 8),
            vec![vec![0], vec![1], vec![2, 3]]
        );
        assert_eq!(assign_shards(&[], 8), vec![Vec::<usize>::new()]);
        assert_eq!(assign_shards(&[0, 0, 8], 8), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn shard_names_match_transformers() {
        assert_eq!(shard_name(0, 1), "model.safetensors");
        assert_eq!(shard_name(1, 3), "model-00002-of-00003.safetensors");
    }
}
