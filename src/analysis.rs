//! Interference statistics: how much task vectors agree, layer by layer.
//!
//! CONTRACT (skeleton). The TUI's sign-agreement panel and `smelt analyze`
//! both call [`analyze_tensor`] / [`analyze_group`].

use crate::merge::TensorParams;
use crate::model::{Group, Model};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Statistics over a set of parameters (one tensor or one layer group) for
/// `n` task vectors (each model minus the base, trimmed at its density and
/// scaled by its weight).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Parameters covered.
    pub params: u64,
    /// `agree[k]`: parameters where exactly `k` of the (kept, non-zero)
    /// task vectors have the elected sign; `len == n + 1`.
    pub agree: Vec<u64>,
    /// Parameters where at least one kept task vector opposes the elected
    /// sign.
    pub conflicts: u64,
    /// Per model: parameters kept after trimming.
    pub kept: Vec<u64>,
    /// Per model: share of the task vector's L2 norm² kept after trimming.
    pub norm_kept: Vec<f64>,
    /// Per model: L2 norm of the untrimmed task vector.
    pub norms: Vec<f64>,
    /// Pairwise cosine of the untrimmed task vectors (`n x n`).
    pub cosines: Vec<Vec<f64>>,
    /// Per model: parameters tied at the trim cut-off magnitude.
    pub tied: Vec<u64>,
}

impl Stats {
    pub fn conflict_share(&self) -> f64 {
        if self.params == 0 {
            0.0
        } else {
            self.conflicts as f64 / self.params as f64
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

/// Statistics for one tensor. `params` supplies each model's `density` and
/// `weight` (missing: 1.0). Checks `cancel` between chunks.
pub fn analyze_tensor(
    base: &Model,
    models: &[Arc<Model>],
    tensor: &str,
    params: &TensorParams,
    cancel: &AtomicBool,
) -> Result<Stats, AnalysisError> {
    let _ = (base, models, tensor, params, cancel);
    todo!()
}

/// Statistics summed over every mergeable tensor of a layer group;
/// `params_for` gives each tensor's parameters.
pub fn analyze_group(
    base: &Model,
    models: &[Arc<Model>],
    group: Group,
    params_for: &dyn Fn(&str) -> TensorParams,
    cancel: &AtomicBool,
) -> Result<Stats, AnalysisError> {
    let _ = (base, models, group, params_for, cancel);
    todo!()
}
