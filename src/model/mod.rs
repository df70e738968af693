//! Checkpoints on disk: safetensors folders, read lazily through mmap, and
//! written atomically in shards.
//!
//! CONTRACT (skeleton): signatures here are what the rest of the crate codes
//! against. Bodies marked `todo!` are filled in by the `model` work.

mod catalogue;
mod dtype;
mod header;
pub mod inspect;
mod outpath;
mod reader;
mod writer;

pub use catalogue::{classify, Group, LayerRef};
pub use dtype::{from_f32, to_f32, Dtype};
pub use reader::{Model, TensorInfo, CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
pub use writer::{write_small, OutputTensor, Writer, WriterOptions};

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a checkpoint. Every
/// variant names the file (and the tensor, where there is one).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed safetensors file.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A tensor's header entry is wrong (offsets, shape, dtype).
    #[error("{path}: tensor `{tensor}`: {msg}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("{path}: no such tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    /// Refusing to write: output exists, output inside an input, ...
    #[error("{path}: {msg}")]
    Output { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, ModelError>;
