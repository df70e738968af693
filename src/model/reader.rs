//! Opening a model: headers only, data memory-mapped.

use super::{Dtype, LayerRef, Result};
use std::path::{Path, PathBuf};

/// One tensor's header entry.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Index into [`Model::shard_paths`].
    pub shard: usize,
    /// Byte range of the data inside the shard's mmap (absolute, i.e. after
    /// the 8-byte length and the JSON header).
    pub start: usize,
    pub end: usize,
    /// Its layer/group.
    pub place: LayerRef,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn nbytes(&self) -> usize {
        self.end - self.start
    }
}

/// A checkpoint: a folder with `model.safetensors` or a sharded
/// `model.safetensors.index.json`, or one `.safetensors` file. Opening reads
/// and validates headers and maps the files; no tensor data is read.
pub struct Model {
    _private: (),
}

impl Model {
    pub fn open(path: &Path) -> Result<Model> {
        let _ = path;
        todo!()
    }
    /// The path given to `open`.
    pub fn path(&self) -> &Path {
        todo!()
    }
    /// A short display name (folder or file stem).
    pub fn name(&self) -> &str {
        todo!()
    }
    /// Tensors in a stable order: by group (pre, layer 0.., post), then name.
    pub fn tensors(&self) -> &[TensorInfo] {
        todo!()
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let _ = name;
        todo!()
    }
    pub fn shard_paths(&self) -> &[PathBuf] {
        todo!()
    }
    /// Parsed `config.json`, when the folder has one.
    pub fn config(&self) -> Option<&serde_json::Value> {
        todo!()
    }
    /// `num_hidden_layers` from config, else the catalogue's layer count.
    pub fn num_layers(&self) -> usize {
        todo!()
    }
    pub fn num_params(&self) -> u64 {
        todo!()
    }
    /// The mapped bytes of a tensor.
    pub fn raw(&self, t: &TensorInfo) -> &[u8] {
        let _ = t;
        todo!()
    }
    /// Elements `[start, start + out.len())` of tensor `t` (flat, row-major)
    /// converted to f32. Errors for non-mergeable dtypes.
    pub fn read_f32(&self, t: &TensorInfo, start: usize, out: &mut [f32]) -> Result<()> {
        let _ = (t, start, out);
        todo!()
    }
    /// Drop the mapped pages of bytes `[start, end)` of `t` from this
    /// process's resident set (MADV_DONTNEED; the page cache keeps them).
    /// The engine calls it after each chunk so that resident memory does not
    /// grow with model size. A hint only: errors are ignored.
    pub fn release(&self, t: &TensorInfo, start: usize, end: usize) {
        let _ = (t, start, end);
    }
    /// A whole tensor as f32 (for small models and tests).
    pub fn read_all_f32(&self, name: &str) -> Result<Vec<f32>> {
        let _ = name;
        todo!()
    }
}
