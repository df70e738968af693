//! Writing a model: shards laid out up front, filled from any thread,
//! published by one rename.

use super::{Dtype, Result};
use std::path::{Path, PathBuf};

/// One tensor of the output, known before any data is written.
#[derive(Clone, Debug)]
pub struct OutputTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Maximum bytes per shard (default 5 GB, decimal as HF does).
    pub shard_size: u64,
    /// Replace an existing output folder.
    pub force: bool,
    /// Folders the output must not be inside (the inputs).
    pub inputs: Vec<PathBuf>,
    /// `__metadata__` for every shard header.
    pub metadata: Vec<(String, String)>,
}

/// An output folder being written. Data goes into `OUT.partial-<pid>-<n>`
/// next to `OUT`; [`Writer::finish`] writes the index and renames it into
/// place. Dropping an unfinished writer removes the partial folder.
pub struct Writer {
    _private: (),
}

impl Writer {
    /// Check the destination, create the partial folder and the shard files
    /// at their final sizes with their headers.
    pub fn create(out: &Path, tensors: Vec<OutputTensor>, opts: &WriterOptions) -> Result<Writer> {
        let _ = (out, tensors, opts);
        todo!()
    }
    /// The output tensors, in the order given to `create`.
    pub fn tensors(&self) -> &[OutputTensor] {
        todo!()
    }
    /// Write elements `[start, start + data.len())` of tensor `index`,
    /// converting to its dtype. Safe to call from many threads at once.
    pub fn write_f32(&self, index: usize, start: usize, data: &[f32]) -> Result<()> {
        let _ = (index, start, data);
        todo!()
    }
    /// Write raw bytes at `byte_offset` inside tensor `index`'s data.
    pub fn write_raw(&self, index: usize, byte_offset: usize, bytes: &[u8]) -> Result<()> {
        let _ = (index, byte_offset, bytes);
        todo!()
    }
    /// Add a small file (config.json, README.md, the recipe) to the output.
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let _ = (name, bytes);
        todo!()
    }
    /// Copy a file from an input folder into the output.
    pub fn copy_file(&self, from: &Path) -> Result<()> {
        let _ = from;
        todo!()
    }
    /// Sync, write `model.safetensors.index.json` when sharded, rename the
    /// partial folder to the destination (replacing it under `force`).
    pub fn finish(self) -> Result<PathBuf> {
        todo!()
    }
}

/// Write a small model (a single `model.safetensors`) atomically: tensors are
/// `(name, shape, data)` stored as `dtype`. For MLP checkpoints and tests.
pub fn write_small(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: Dtype,
    metadata: &[(String, String)],
) -> Result<()> {
    let _ = (path, tensors, dtype, metadata);
    todo!()
}
