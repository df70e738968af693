//! Opening a model: headers only, data memory-mapped.
//!
//! Opening parses and validates every shard's header and the index, and
//! maps each shard; no tensor data is touched, so opening a multi-gigabyte
//! sharded checkpoint takes milliseconds.
//!
//! Tensor data is read with positioned reads (`pread`) into the caller's
//! chunk, not through the map. Faulting mapped pages in and dropping them
//! again (so that resident memory does not grow with model size) costs
//! page-table work and cross-core TLB flushes on every chunk: reading a
//! 1.35 GB family through the map took 0.22-0.26 s on two cores, with
//! `pread` 0.14 s, about what `cat` takes. The map stays for header parsing
//! and for [`Model::raw`].

use super::header::{self, Header};
use super::lora::{self, Adapter};
use super::{classify, dtype, Dtype, Group, LayerRef, ModelError, Result};
use memmap2::Mmap;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

thread_local! {
    /// Raw bytes of the chunk being converted, per thread: grown to the
    /// largest chunk read, reused for every read after.
    static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// One tensor's header entry.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its dtype.
    pub dtype: Dtype,
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Index into [`Model::shard_paths`].
    pub shard: usize,
    /// Byte range of the data inside the shard's mmap (absolute, i.e. after
    /// the 8-byte length and the JSON header).
    pub start: usize,
    /// One past the data's last byte.
    pub end: usize,
    /// Its layer/group.
    pub place: LayerRef,
}

impl TensorInfo {
    /// Elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes of data.
    pub fn nbytes(&self) -> usize {
        self.end - self.start
    }
}

/// The single-file name in a model folder.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The shard index in a sharded model folder.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The single-file PyTorch checkpoint in a model folder.
pub const TORCH_FILE: &str = "pytorch_model.bin";
/// The shard index of a sharded PyTorch checkpoint.
pub const TORCH_INDEX_FILE: &str = "pytorch_model.bin.index.json";
/// The model configuration next to the weights.
pub const CONFIG_FILE: &str = "config.json";

/// A checkpoint: a folder with `model.safetensors` or a sharded
/// `model.safetensors.index.json`, or one `.safetensors` file. Opening reads
/// and validates headers and maps the files; no tensor data is read.
pub struct Model {
    path: PathBuf,
    /// Where the files are: `path`, or a hub name's cached snapshot.
    local: PathBuf,
    name: String,
    shards: Vec<PathBuf>,
    files: Vec<File>,
    maps: Vec<Mmap>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    config: Option<serde_json::Value>,
    metadata: BTreeMap<String, String>,
    /// A LoRA adapter applied while reading (`model+adapter`): the tensors
    /// it changes are virtual, computed per read window.
    adapter: Option<Box<Adapter>>,
    /// The model half of `path` (`path` itself without an adapter).
    model_path: PathBuf,
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// What `open` found at the path.
enum Layout {
    Single(PathBuf),
    Sharded(PathBuf),
}

impl Model {
    /// Open a checkpoint: a folder (one `model.safetensors` or shards with
    /// an index) or one `.safetensors` file. Reads and validates the headers
    /// only; the data is read later, in chunks, as a merge asks for it.
    ///
    /// A relative path that does not exist and reads as a hub name
    /// (`org/name[@revision]`) is opened from the local Hugging Face cache
    /// (never downloaded: see [`super::source`]); [`Model::path`] stays the
    /// name, [`Model::local_path`] is the snapshot folder.
    pub fn open(path: &Path) -> Result<Model> {
        if let Some(snapshot) = super::source::for_open(path)? {
            let mut m = Model::open(&snapshot)?;
            m.path = path.to_path_buf();
            m.name = display_name(path);
            return Ok(m);
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            // `model+adapter` (mergekit's syntax), unless a path of that
            // very name exists (checked just above: it does not).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = path.to_string_lossy();
                if let Some((m, a)) = lora::split_reference(&text) {
                    return Model::open_with_adapter(Path::new(m), &lora::locate(a)?);
                }
                if text.matches('+').count() > 1 {
                    return Err(ModelError::NotCheckpoint {
                        path: path.to_path_buf(),
                        why: "does not exist, and has more than one `+` \
                              (a LoRA is written MODEL+ADAPTER)"
                            .into(),
                    });
                }
                return Err(io_err(path, e));
            }
            Err(e) => return Err(io_err(path, e)),
        };
        if !meta.is_dir() {
            regular(path, &meta)?;
        }
        let (layout, folder) = if meta.is_dir() {
            let index = path.join(INDEX_FILE);
            let single = path.join(SINGLE_FILE);
            // mergekit's order: safetensors first, then PyTorch `.bin`.
            let (torch_index, torch) = (path.join(TORCH_INDEX_FILE), path.join(TORCH_FILE));
            let layout = if present(&index)? {
                Layout::Sharded(index)
            } else if present(&single)? {
                Layout::Single(single)
            } else if present(&torch_index)? {
                Layout::Sharded(torch_index)
            } else if present(&torch)? {
                Layout::Single(torch)
            } else {
                return Err(ModelError::NotCheckpoint {
                    path: path.to_path_buf(),
                    why: folder_hint(path),
                });
            };
            (layout, Some(path.to_path_buf()))
        } else if path.to_string_lossy().ends_with(".json") {
            let folder = path.parent().map(Path::to_path_buf);
            (Layout::Sharded(path.to_path_buf()), folder)
        } else {
            // `folder/model.safetensors` is that folder's model, config and
            // all; any other file name is a bare checkpoint whose folder may
            // hold unrelated files.
            let folder = path
                .parent()
                .filter(|_| {
                    path.file_name()
                        .is_some_and(|n| n == SINGLE_FILE || n == TORCH_FILE)
                })
                .map(Path::to_path_buf);
            (Layout::Single(path.to_path_buf()), folder)
        };

        let mut loaded = Loaded::default();
        match layout {
            Layout::Single(file) => loaded.add_shard(file, None)?,
            Layout::Sharded(index) => load_sharded(&index, &mut loaded)?,
        }
        let config = match &folder {
            Some(f) => read_config(&f.join(CONFIG_FILE))?,
            None => None,
        };

        let Loaded {
            shards,
            files,
            maps,
            mut tensors,
            metadata,
            ..
        } = loaded;
        tensors.sort_by(|a, b| (a.place.group, &a.name).cmp(&(b.place.group, &b.name)));
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Model {
            name: display_name(path),
            path: path.to_path_buf(),
            local: path.to_path_buf(),
            shards,
            files,
            maps,
            tensors,
            by_name,
            config,
            metadata,
            adapter: None,
            model_path: path.to_path_buf(),
        })
    }
    /// This model with `adapter` applied while reading: checks that every
    /// tensor the adapter changes exists here with a fitting shape.
    pub fn with_adapter(mut self, adapter: Adapter) -> Result<Model> {
        if self.adapter.is_some() {
            return Err(ModelError::NotCheckpoint {
                path: self.path.clone(),
                why: "already has a LoRA adapter; one adapter per model".into(),
            });
        }
        adapter.check(&self)?;
        self.path = lora::join_reference(&self.model_path, adapter.path());
        self.name = format!("{}+{}", self.name, display_name(adapter.path()));
        self.adapter = Some(Box::new(adapter));
        Ok(self)
    }
    /// The LoRA adapter applied to this model (`model+adapter`), if any.
    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_deref()
    }
    /// The model's own path: [`Model::path`] without `+adapter`.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }
    /// The files and folders this model is read from: the model's path,
    /// and the adapter folder when there is one (for keeping outputs out
    /// of inputs).
    pub fn source_paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.model_path.clone()];
        if let Some(a) = &self.adapter {
            v.push(a.path().to_path_buf());
        }
        v
    }
    /// The path given to `open`.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Where the model's files are: the path given to `open`, or for a hub
    /// name the snapshot folder in the Hugging Face cache.
    pub fn local_path(&self) -> &Path {
        &self.local
    }
    /// A short display name (folder or file stem).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Tensors in a stable order: by group (pre, layer 0.., post), then name.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// The tensor called `name`, if the model has it.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
    /// Every shard file, in the order [`TensorInfo::shard`] indexes.
    pub fn shard_paths(&self) -> &[PathBuf] {
        &self.shards
    }
    /// Size in bytes of each shard file, in [`Model::shard_paths`] order.
    pub fn shard_sizes(&self) -> Vec<u64> {
        self.maps.iter().map(|m| m.len() as u64).collect()
    }
    /// Parsed `config.json`, when the folder has one.
    pub fn config(&self) -> Option<&serde_json::Value> {
        self.config.as_ref()
    }
    /// `__metadata__` of the shard headers (merged; the first shard wins on a
    /// conflicting key).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// The config's `architectures[0]` (`"LlamaForCausalLM"`), if any.
    pub fn architecture(&self) -> Option<&str> {
        self.config.as_ref()?.get("architectures")?.get(0)?.as_str()
    }
    /// `num_hidden_layers` from config, else the catalogue's layer count.
    ///
    /// Also looks in `text_config` (multimodal wrappers) and at GPT-2's
    /// `n_layer`. The catalogue count is one more than the highest layer
    /// index seen.
    pub fn num_layers(&self) -> usize {
        if let Some(n) = self.config_layers() {
            return n;
        }
        self.catalogue_layers()
    }
    /// One more than the highest layer index among the tensors (0 if none).
    pub fn catalogue_layers(&self) -> usize {
        self.tensors
            .iter()
            .filter_map(|t| match t.place.group {
                Group::Layer(n) => Some(n + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
    /// The layer count config.json states, if any: the architecture's own
    /// key (`n_layer` for GPT-2, `num_hidden_layers`, `num_layers`,
    /// `n_layers`), at the top or in `text_config` (see [`super::arch`]).
    pub fn config_layers(&self) -> Option<usize> {
        super::arch::layer_count(self.config.as_ref()?)
    }
    /// Elements over every tensor.
    pub fn num_params(&self) -> u64 {
        self.tensors.iter().map(|t| t.numel() as u64).sum()
    }
    /// The mapped bytes of a tensor. `t` must come from this model; a
    /// foreign `TensorInfo` whose range does not fit gives an empty slice,
    /// and so does a tensor a LoRA adapter changes (it has no stored bytes:
    /// use [`Model::read_raw`] or [`Model::read_f32`], which apply it).
    pub fn raw(&self, t: &TensorInfo) -> &[u8] {
        if self.patch(t).is_some() {
            return &[];
        }
        self.maps
            .get(t.shard)
            .and_then(|m| m.get(t.start..t.end))
            .unwrap_or(&[])
    }
    /// Elements `[start, start + out.len())` of tensor `t` (flat, row-major)
    /// converted to f32. Errors for non-mergeable dtypes.
    ///
    /// A tensor a LoRA adapter changes is computed here, for the window
    /// only: base (or replacement) plus `scale · B·A`, rounded to the
    /// tensor's dtype as a merged-and-saved model would hold it.
    pub fn read_f32(&self, t: &TensorInfo, start: usize, out: &mut [f32]) -> Result<()> {
        let (Some(a), Some(p)) = (self.adapter.as_deref(), self.patch(t)) else {
            return self.read_f32_stored(t, start, out);
        };
        if start.checked_add(out.len()).is_none_or(|e| e > t.numel()) {
            return Err(ModelError::Tensor {
                path: self.path.clone(),
                tensor: t.name.clone(),
                msg: format!(
                    "read of elements {start}..+{} past its {} elements",
                    out.len(),
                    t.numel()
                ),
            });
        }
        a.apply(t, p, start, out, |o| self.read_f32_stored(t, start, o))?;
        if t.dtype != Dtype::F32 {
            // Round to the stored dtype, a bounded piece at a time.
            const PIECE: usize = 1 << 16;
            let mut bytes = vec![0u8; out.len().min(PIECE) * t.dtype.size()];
            for piece in out.chunks_mut(PIECE) {
                let b = &mut bytes[..piece.len() * t.dtype.size()];
                dtype::from_f32(t.dtype, piece, b)?;
                dtype::to_f32(t.dtype, b, piece);
            }
        }
        Ok(())
    }
    /// The adapter's patch for `t`, when an adapter changes it.
    fn patch(&self, t: &TensorInfo) -> Option<&lora::Patch> {
        self.adapter.as_deref()?.patch(&t.name)
    }
    /// [`Model::read_f32`] of the stored bytes, without any adapter.
    fn read_f32_stored(&self, t: &TensorInfo, start: usize, out: &mut [f32]) -> Result<()> {
        let path = self.shards.get(t.shard).map_or(&self.path, |p| p);
        let err = |msg: String| ModelError::Tensor {
            path: path.clone(),
            tensor: t.name.clone(),
            msg,
        };
        if !t.dtype.is_mergeable() {
            return Err(err(format!(
                "dtype {} is not a float type; it can only be copied",
                t.dtype
            )));
        }
        let numel = t.numel();
        let end = start
            .checked_add(out.len())
            .filter(|&e| e <= numel)
            .ok_or_else(|| {
                err(format!(
                    "read of elements {start}..{} past its {numel} elements",
                    start.saturating_add(out.len())
                ))
            })?;
        let size = t.dtype.size();
        let (lo, hi) = (start * size, end * size);
        if t.dtype == Dtype::F32 && cfg!(target_endian = "little") {
            // The bytes are the values: read straight into `out`.
            return self.read_raw_stored(t, lo, bytemuck::cast_slice_mut(out));
        }
        // Through a per-thread scratch, a bounded piece at a time, so that a
        // whole-tensor read does not leave a tensor-sized buffer behind.
        const PIECE: usize = 1 << 20;
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            // u64 storage keeps the bytes aligned for every element type.
            let words = (hi - lo).min(PIECE).div_ceil(8);
            if scratch.len() < words {
                scratch.resize(words, 0);
            }
            let all = bytemuck::cast_slice_mut::<u64, u8>(&mut scratch[..]);
            let per = PIECE / size;
            for (i, dst) in out.chunks_mut(per).enumerate() {
                let bytes = &mut all[..dst.len() * size];
                self.read_raw_stored(t, lo + i * per * size, bytes)?;
                dtype::to_f32(t.dtype, bytes, dst);
            }
            Ok(())
        })
    }
    /// Bytes `[offset, offset + buf.len())` of tensor `t`'s data, read from
    /// its shard with positioned reads. For a tensor a LoRA adapter
    /// changes, the bytes of the adapted values in the tensor's dtype.
    pub fn read_raw(&self, t: &TensorInfo, offset: usize, buf: &mut [u8]) -> Result<()> {
        if self.patch(t).is_none() {
            return self.read_raw_stored(t, offset, buf);
        }
        let size = t.dtype.size();
        let end = offset.checked_add(buf.len()).filter(|&e| e <= t.nbytes());
        let Some(end) = end else {
            return Err(ModelError::Tensor {
                path: self.path.clone(),
                tensor: t.name.clone(),
                msg: format!("read of bytes {offset}..+{} outside the tensor", buf.len()),
            });
        };
        if buf.is_empty() {
            return Ok(());
        }
        let (e0, e1) = (offset / size, end.div_ceil(size));
        let mut vals = vec![0f32; e1 - e0];
        self.read_f32(t, e0, &mut vals)?;
        let mut bytes = vec![0u8; vals.len() * size];
        dtype::from_f32(t.dtype, &vals, &mut bytes)?;
        let skip = offset - e0 * size;
        buf.copy_from_slice(&bytes[skip..skip + buf.len()]);
        Ok(())
    }
    /// [`Model::read_raw`] of the stored bytes, without any adapter.
    fn read_raw_stored(&self, t: &TensorInfo, offset: usize, buf: &mut [u8]) -> Result<()> {
        let path = self.shards.get(t.shard).map_or(&self.path, |p| p);
        // The range must lie inside the tensor, and the tensor inside this
        // model's shard (a foreign `TensorInfo` could point anywhere).
        let end = offset.checked_add(buf.len()).filter(|&e| e <= t.nbytes());
        let fits = self.maps.get(t.shard).is_some_and(|m| t.end <= m.len());
        let (Some(_), true, Some(file)) = (end, fits, self.files.get(t.shard)) else {
            return Err(ModelError::Tensor {
                path: path.clone(),
                tensor: t.name.clone(),
                msg: format!(
                    "read of bytes {offset}..+{} outside the tensor or not from this model",
                    buf.len()
                ),
            });
        };
        file.read_exact_at(buf, (t.start + offset) as u64)
            .map_err(|e| io_err(path, e))
    }
    /// Tell the kernel that bytes `[offset, offset + len)` of tensor `t`'s
    /// data will be read soon (`POSIX_FADV_WILLNEED`): on a cold page
    /// cache it starts reading them in large requests in the background.
    /// Only a hint: errors are ignored, and nothing happens on systems
    /// without it.
    pub fn will_need(&self, t: &TensorInfo, offset: usize, len: usize) {
        if self.patch(t).is_some_and(|p| p.replace.is_some()) {
            return;
        }
        let Some(file) = self.files.get(t.shard) else {
            return;
        };
        let start = t.start.saturating_add(offset).min(t.end);
        let len = len.min(t.end - start);
        if len > 0 {
            will_need(file, start, len);
        }
    }
    /// A whole tensor as f32 (for small models and tests).
    pub fn read_all_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name).ok_or_else(|| ModelError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })?;
        let mut out = vec![0f32; t.numel()];
        self.read_f32(t, 0, &mut out)?;
        Ok(out)
    }
}

/// Shards opened so far, with their tensors.
#[derive(Default)]
struct Loaded {
    shards: Vec<PathBuf>,
    files: Vec<File>,
    maps: Vec<Mmap>,
    tensors: Vec<TensorInfo>,
    /// Tensor name → shard index, to catch duplicates across shards.
    seen: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl Loaded {
    /// Map and validate one shard. With `expected`, every listed tensor
    /// must be in it (the index said so).
    fn add_shard(&mut self, file: PathBuf, expected: Option<&[&str]>) -> Result<()> {
        let f = open_regular(&file)?;
        let len = f.metadata().map_err(|e| io_err(&file, e))?.len();
        let torch = super::torch::is_torch_name(&file);
        let Header { entries, metadata } = if torch {
            Header {
                entries: Vec::new(),
                metadata: BTreeMap::new(),
            }
        } else {
            read_header(&file, &f, len)?
        };
        // SAFETY: the map is read-only. Another process truncating or
        // rewriting the file while it is mapped could change or revoke the
        // bytes under us; that is the accepted contract of every mmap-based
        // checkpoint reader (safetensors, torch), and smelt itself never
        // writes into an input (the writer refuses outputs inside inputs).
        let map = unsafe { Mmap::map(&f) }.map_err(|e| io_err(&file, e))?;
        if map.len() as u64 != len {
            return Err(format_err(&file, "changed size while being opened"));
        }
        // A PyTorch checkpoint's tensors come from its zip directory and
        // pickle, read through the map (only those parts are touched).
        let entries = if torch {
            super::torch::parse(&file, &map)?
        } else {
            entries
        };
        let shard = self.shards.len();
        if let Some(expected) = expected {
            let present: std::collections::HashSet<&str> =
                entries.iter().map(|e| e.name.as_str()).collect();
            if let Some(missing) = expected.iter().find(|n| !present.contains(**n)) {
                return Err(ModelError::MissingTensor {
                    path: file,
                    tensor: missing.to_string(),
                });
            }
        }
        for e in entries {
            if let Some(&other) = self.seen.get(&e.name) {
                return Err(ModelError::Tensor {
                    path: file,
                    tensor: e.name,
                    msg: format!("also present in {}", self.shards[other].display()),
                });
            }
            self.seen.insert(e.name.clone(), shard);
            self.tensors.push(TensorInfo {
                place: classify(&e.name),
                name: e.name,
                dtype: e.dtype,
                shape: e.shape,
                shard,
                start: e.start,
                end: e.end,
            });
        }
        for (k, v) in metadata {
            self.metadata.entry(k).or_insert(v);
        }
        self.shards.push(file);
        self.files.push(f);
        self.maps.push(map);
        Ok(())
    }
}

/// `posix_fadvise(POSIX_FADV_WILLNEED)` on `f`'s bytes `[offset, offset
/// + len)`; its result is ignored.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn will_need(f: &File, offset: usize, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise takes a descriptor and integers and touches
    // no memory of ours; the descriptor belongs to `f`, borrowed for the
    // call, so it is open. The call changes no data, only what the kernel
    // caches.
    let _ = unsafe { libc::posix_fadvise(f.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED) };
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn will_need(_f: &File, _offset: usize, _len: usize) {}

/// Read and validate the header of the open shard `f` (`len` bytes long):
/// only the header's bytes are read.
fn read_header(path: &Path, f: &File, len: u64) -> Result<Header> {
    let mut first8 = [0u8; 8];
    let first8 = if len >= 8 {
        f.read_exact_at(&mut first8, 0)
            .map_err(|e| io_err(path, e))?;
        Some(first8)
    } else {
        None
    };
    let n = header::json_len(path, first8, len)?;
    let mut json = vec![0u8; n];
    f.read_exact_at(&mut json, 8).map_err(|e| io_err(path, e))?;
    header::parse(path, &json, len)
}

/// What kind of file a path is, when it is not a regular file or folder
/// (`None` for those).
fn odd_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() || t.is_dir() {
        None
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

/// Refuse anything but a regular file (or a folder): opening a FIFO for
/// reading would wait for a writer forever, and a device has no end.
fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    match odd_kind(meta) {
        Some(kind) => Err(ModelError::NotCheckpoint {
            path: path.to_path_buf(),
            why: format!("{kind}, not a regular file"),
        }),
        None => Ok(()),
    }
}

/// Whether a regular file is at `path` (following links): `false` when
/// nothing is there, an error when something other than a file is.
fn present(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(false),
        Ok(meta) => regular(path, &meta).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Open a regular file for reading. Checked before opening (a FIFO is
/// never opened), and the open does not block should the path have become
/// a FIFO in between; the file is then checked again.
fn open_regular(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    regular(path, &meta)?;
    if meta.is_dir() {
        return Err(format_err(path, "is a folder, not a file"));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let meta = f.metadata().map_err(|e| io_err(path, e))?;
    regular(path, &meta)?;
    if meta.is_dir() {
        return Err(format_err(path, "is a folder, not a file"));
    }
    Ok(f)
}

/// A whole small file (an index, a config), from a regular file only.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open_regular(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(|e| io_err(path, e))?;
    Ok(out)
}

/// Read the index's `weight_map` and open every shard it names, in order of
/// first appearance.
fn load_sharded(index: &Path, loaded: &mut Loaded) -> Result<()> {
    let text = read_small(index)?;
    // A file under the index's own name is a broken index; any other JSON
    // file (`config.json` named by mistake) is not a checkpoint at all.
    let bad = |msg: String| {
        if index.file_name().is_some_and(|n| n == INDEX_FILE) {
            format_err(index, msg)
        } else {
            ModelError::NotCheckpoint {
                path: index.to_path_buf(),
                why: format!("not a shard index: {msg}"),
            }
        }
    };
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(bad("no `weight_map` object".into()));
    };
    let folder = index.parent().unwrap_or(Path::new("."));
    // Shard file → tensors the index puts there, in first-seen order.
    let mut order: Vec<&str> = Vec::new();
    let mut per_shard: HashMap<&str, Vec<&str>> = HashMap::new();
    for (tensor, file) in map {
        let Some(file) = file.as_str() else {
            return Err(format_err(
                index,
                format!("weight_map entry for `{tensor}` is not a file name"),
            ));
        };
        let list = per_shard.entry(file).or_insert_with(|| {
            order.push(file);
            Vec::new()
        });
        list.push(tensor.as_str());
    }
    if order.is_empty() {
        return Err(format_err(index, "`weight_map` is empty"));
    }
    for file in order {
        // Shards live next to the index; a name reaching elsewhere is
        // either corrupt or hostile.
        let rel = Path::new(file);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format_err(
                index,
                format!("shard name `{file}` is not a plain file name in this folder"),
            ));
        }
        let path = folder.join(rel);
        if !present(&path)? {
            return Err(format_err(
                index,
                format!(
                    "names shard `{file}` (for `{}`), which does not exist",
                    per_shard[file][0]
                ),
            ));
        }
        loaded.add_shard(path, Some(&per_shard[file]))?;
    }
    Ok(())
}

/// Why the folder `dir` is not a checkpoint, with a pointer to what it
/// holds instead: `.safetensors` files under other names (open one of
/// them), or subfolders that are checkpoints (open one of those).
fn folder_hint(dir: &Path) -> String {
    let missing = format!(
        "no {SINGLE_FILE}, {INDEX_FILE}, {TORCH_FILE} or {TORCH_INDEX_FILE} in this folder"
    );
    let Ok(entries) = std::fs::read_dir(dir) else {
        return missing;
    };
    let (mut files, mut models) = (Vec::new(), Vec::new());
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_file() && name.ends_with(".safetensors") {
            files.push(name);
        } else if p.is_dir()
            && [SINGLE_FILE, INDEX_FILE, TORCH_FILE, TORCH_INDEX_FILE]
                .iter()
                .any(|f| p.join(f).is_file())
        {
            models.push(name);
        }
    }
    let list = |mut v: Vec<String>| {
        v.sort();
        let more = v.len().saturating_sub(3);
        v.truncate(3);
        let mut s = v.join(", ");
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    };
    if !files.is_empty() {
        format!(
            "{missing}; it holds {}: open one of those files",
            list(files)
        )
    } else if !models.is_empty() {
        format!("{missing}; models are in its subfolders {}", list(models))
    } else {
        missing
    }
}

/// Parse `config.json` when present; malformed JSON is an error naming it.
fn read_config(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
        Ok(_) => {}
    }
    let bytes = read_small(path)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format_err(path, format!("not valid JSON: {e}")))
}

/// The folder name for a folder, the file stem for a file (the folder name
/// when the file is the conventional `model.safetensors` or an index).
fn display_name(path: &Path) -> String {
    let is_generic = path.file_name().is_some_and(|n| {
        [SINGLE_FILE, INDEX_FILE, TORCH_FILE, TORCH_INDEX_FILE]
            .iter()
            .any(|g| n == *g)
    });
    let named = if path.is_dir() || is_generic {
        let p = if is_generic {
            path.parent()
        } else {
            Some(path)
        };
        p.and_then(|p| p.canonicalize().ok())
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    } else {
        path.file_stem().map(|n| n.to_string_lossy().into_owned())
    };
    named.unwrap_or_else(|| path.display().to_string())
}
