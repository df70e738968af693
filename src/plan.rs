//! A plan: for each output tensor, which inputs feed it and how.
//!
//! CONTRACT (skeleton).

use crate::merge::{Method, TensorParams};
use crate::model::{Model, OutputTensor};
use crate::recipe::Recipe;
use std::path::PathBuf;
use std::sync::Arc;

/// A tensor of one input model.
#[derive(Clone, Debug)]
pub struct Source {
    /// Index into [`Plan::models`].
    pub model: usize,
    pub tensor: String,
}

/// How one output tensor is made.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// Run `method` over the sources.
    Merge {
        method: Method,
        base: Option<Source>,
        sources: Vec<Source>,
        params: TensorParams,
    },
    /// Copy bytes through (non-float tensors, passthrough, single inputs).
    Copy { source: Source, scale: Option<f32> },
}

#[derive(Clone, Debug)]
pub struct Job {
    pub out: OutputTensor,
    pub kind: JobKind,
}

/// A recipe checked against the models' headers, ready to run.
pub struct Plan {
    pub recipe: Recipe,
    /// Every distinct model the recipe names, opened (headers only).
    pub models: Vec<Arc<Model>>,
    /// Index of the base (or first) model: its config and files are copied.
    pub config_model: usize,
    pub jobs: Vec<Job>,
    /// Layers in the output (for `num_hidden_layers`).
    pub out_layers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    #[error("{0}")]
    Mismatch(String),
}

impl Plan {
    /// Open the recipe's models and build the plan.
    pub fn build(recipe: &Recipe) -> Result<Plan, PlanError> {
        let _ = recipe;
        todo!()
    }
    /// Build from models already open (the TUI keeps them open).
    pub fn with_models(recipe: &Recipe, models: Vec<Arc<Model>>) -> Result<Plan, PlanError> {
        let _ = (recipe, models);
        todo!()
    }
    /// Bytes of input read to run the plan once.
    pub fn input_bytes(&self) -> u64 {
        todo!()
    }
    pub fn model_paths(&self) -> Vec<PathBuf> {
        self.models.iter().map(|m| m.path().to_path_buf()).collect()
    }
}
