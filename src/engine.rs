//! Running a plan: stream tensors in chunks on rayon, merge, write.
//!
//! CONTRACT (skeleton).

use crate::plan::Plan;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What a running merge reports.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        tensors: usize,
        bytes_total: u64,
    },
    /// Periodic: bytes of input processed so far, and a tensor being worked on.
    Progress {
        tensor: String,
        tensors_done: usize,
        bytes_done: u64,
        bytes_total: u64,
    },
    Finished(Summary),
}

#[derive(Clone, Debug)]
pub struct Summary {
    pub out: PathBuf,
    pub tensors: usize,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub elapsed: Duration,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub out: PathBuf,
    pub force: bool,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Maximum bytes per shard.
    pub shard_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

/// Run `plan`, writing to `opts.out`. Events go to `progress`; setting
/// `cancel` stops the run within a fraction of a second and leaves nothing
/// behind.
pub fn run(
    plan: &Plan,
    opts: &Options,
    progress: &crossbeam_channel::Sender<Event>,
    cancel: &AtomicBool,
) -> Result<Summary, EngineError> {
    let _ = (plan, opts, progress, cancel);
    todo!()
}
