//! Checkpoints on disk: safetensors folders, read lazily (headers mapped,
//! data read a chunk at a time with `pread`), and written atomically in
//! shards.
//!
//! - [`Model::open`] reads and validates headers only and maps the shards;
//!   [`Model::read_f32`] converts any window of a tensor to f32 on demand, so
//!   a merge holds chunks, never whole models.
//! - [`Writer`] lays out every output shard up front and lets any number of
//!   threads fill tensors at their final offsets; [`Writer::finish`]
//!   publishes the folder with one rename.
//! - [`classify`] maps tensor names to layers for per-layer parameters and
//!   statistics; [`Model::layer_groups`] lists a model by those groups;
//!   [`inspect::Report`] summarises a checkpoint.
//! - [`Model::check_compatible`] says whether two models can be merged,
//!   naming the first tensor that does not fit.
//!
//! Module layout: `arch` (config layouts: layer-count keys, per-layer
//! lists, towers), `header` (the safetensors header, parsed and built),
//! `dtype` (conversion), `catalogue`, `compat` (can two models merge),
//! `reader`, `torch` (PyTorch `.bin` checkpoints, read safely), `writer`,
//! `outpath` (output location rules), `inspect`, `lora` (PEFT adapters
//! applied while reading: `model+adapter`), `source` (model references:
//! local paths and hub names, the Hugging Face cache, downloads).

pub mod arch;
mod catalogue;
mod compat;
mod dtype;
mod header;
pub mod inspect;
pub mod lora;
mod outpath;
mod reader;
pub mod source;
mod torch;
mod writer;

pub use catalogue::{classify, Group, LayerGroup, LayerRef, TensorSummary};
pub use compat::{Incompatible, Mismatch};
pub use dtype::{from_f32, to_f32, Dtype};
pub use header::{parse_header, HeaderEntry};
pub use lora::Adapter;
pub use outpath::{
    check_destination, inside_input, is_smelt_file, OutputLock, CARD_FILE, COPIED_FILES,
    EXTRACT_FILE, MOE_RECIPE_FILE, RECIPE_FILE,
};
pub use reader::{
    Model, TensorInfo, CONFIG_FILE, INDEX_FILE, SINGLE_FILE, TORCH_FILE, TORCH_INDEX_FILE,
};
pub use torch::parse as parse_torch;
pub use writer::{write_small, OutputTensor, Writer, WriterOptions, DEFAULT_SHARD_SIZE};

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a checkpoint. Every
/// variant names the file (and the tensor, where there is one).
///
/// The fields hold names and paths as they are; `Display` escapes them
/// ([`crate::text`]), so that a message never carries a file's control
/// characters to the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path_(path))]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a safetensors checkpoint at all (a README, a
    /// folder without weights, a pickle, a named pipe): `why` says briefly
    /// what gave it away.
    #[error("{}: not a safetensors checkpoint: {}", path_(path), esc(why))]
    NotCheckpoint {
        /// The path given.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// The file is a safetensors file, but not a well-formed one.
    #[error("{}: {}", path_(path), esc(msg))]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor's header entry is wrong (offsets, shape, dtype).
    #[error("{}: tensor `{}`: {}", path_(path), esc(tensor), esc(msg))]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor asked for by name is not in the model.
    #[error("{}: no such tensor `{}`", path_(path), esc(tensor))]
    MissingTensor {
        /// The model.
        path: PathBuf,
        /// The name asked for.
        tensor: String,
    },
    /// The output folder cannot be made where the user asked: its parent
    /// is missing, not a folder or not writable. Names the user's folder,
    /// never the scratch folder beside it. `environment`: the parent exists
    /// but cannot be written, or the disk is full (not the user's input).
    #[error("cannot create {}: {}", path_(path), esc(why))]
    CannotCreate {
        /// The output folder asked for.
        path: PathBuf,
        /// Why not.
        why: String,
        /// Whether the environment is at fault (see above).
        environment: bool,
    },
    /// Refusing to write: output exists, output inside an input, ...
    #[error("{}: {}", path_(path), esc(msg))]
    Output {
        /// The output folder or file.
        path: PathBuf,
        /// Why it may not be written.
        msg: String,
    },
    /// Writing the output failed (disk full, read-only, I/O error). `path`
    /// is the file as it will be named in the output.
    #[error("cannot write {}: {}", path_(path), crate::fsutil::reason(source))]
    Write {
        /// The file, as named in the output.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A hub name that is neither a local path nor in the local Hugging
    /// Face cache, and was not downloaded (offline, or a command that only
    /// reads the cache). Names the repository folder looked in.
    #[error(
        "{}: not a local folder, and not in the Hugging Face cache (looked in {}){}",
        esc(model),
        path_(searched),
        not_cached_hint(model, *offline)
    )]
    NotCached {
        /// The hub name as written (`org/name@rev`).
        model: String,
        /// The cache folder of that repository.
        searched: PathBuf,
        /// Whether `HF_HUB_OFFLINE` was set.
        offline: bool,
    },
    /// Finding or downloading a hub model failed.
    #[error("{}: {}", esc(model), esc(msg))]
    Hub {
        /// The hub name as written.
        model: String,
        /// What went wrong.
        msg: String,
        /// The network or the disk is at fault, not the name.
        environment: bool,
    },
    /// Another merge is writing the same output right now.
    #[error("{}: {}", path_(path), esc(msg))]
    Busy {
        /// The output folder.
        path: PathBuf,
        /// Who holds it, as far as known.
        msg: String,
    },
}

impl ModelError {
    /// Whether the environment is at fault (a full disk, a read-only
    /// folder, a failing device, an output in use) rather than the input:
    /// the CLI exits 1 for these, 2 for the rest.
    pub fn is_environment(&self) -> bool {
        match self {
            ModelError::Write { .. } | ModelError::Busy { .. } => true,
            ModelError::CannotCreate { environment, .. } => *environment,
            ModelError::Hub { environment, .. } => *environment,
            ModelError::NotCached { offline, .. } => *offline,
            ModelError::Io { source, .. } => crate::fsutil::is_environment(source),
            _ => false,
        }
    }
}

fn path_(p: &std::path::Path) -> String {
    crate::text::path(p)
}

fn not_cached_hint(model: &str, offline: bool) -> String {
    if offline {
        "; HF_HUB_OFFLINE is set, so it was not downloaded".to_string()
    } else {
        format!(
            "; `smelt download {}` fetches it (`smelt merge` does too)",
            esc(model)
        )
    }
}

fn esc(s: &str) -> crate::text::Escaped<'_> {
    crate::text::Escaped(s)
}

/// A model result.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Models are shared across rayon workers (`Arc<Model>`) and one writer is
/// filled from all of them: keep both thread-safe.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Model>();
    shareable::<Writer>();
};
