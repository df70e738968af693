//! Recipes: what to merge and how. Native form is TOML; mergekit YAML is
//! read and written too.
//!
//! CONTRACT (skeleton): the types and functions below are what the engine,
//! the CLI and the TUI use. Bodies marked `todo!` belong to the recipe work.

use crate::merge::{Method, TensorParams};
use crate::model::{Dtype, Group};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parameter as written in a recipe.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Number(f64),
    /// A gradient: piecewise-linear across the layers of the slice (mergekit's
    /// list form). Pre/post tensors take the first value.
    Gradient(Vec<f64>),
    /// `{filter, value}` entries matched by tensor-name substring, first match
    /// wins; an entry without a filter matches everything.
    Filtered(Vec<(Option<String>, Value)>),
}

/// One input model and its own parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// As resolved: absolute, or relative to the current directory.
    pub path: PathBuf,
    pub params: BTreeMap<String, Value>,
}

/// A per-layer override: for tensors of layers `layers.0 ..= layers.1`,
/// these values replace the recipe's. Written by the TUI when a user tunes
/// one layer or a range.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Override {
    /// Inclusive layer range.
    pub layers: (usize, usize),
    pub params: BTreeMap<String, Value>,
    /// Per-model values, keyed by the model's index in `models`.
    pub models: BTreeMap<usize, BTreeMap<String, Value>>,
}

/// One input of a slice (mergekit `slices[].sources[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceSource {
    pub model: PathBuf,
    /// Half-open `[start, end)` layer range, as mergekit writes it.
    pub layer_range: (usize, usize),
    pub params: BTreeMap<String, Value>,
}

/// A slice of the output: its sources' layer ranges (all the same length)
/// are merged into consecutive output layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub sources: Vec<SliceSource>,
    pub base: Option<PathBuf>,
    pub params: BTreeMap<String, Value>,
}

/// A whole recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub method: Method,
    pub base: Option<PathBuf>,
    pub models: Vec<ModelEntry>,
    /// Method-wide parameters.
    pub params: BTreeMap<String, Value>,
    /// Empty: merge whole models. Otherwise the output is these slices.
    pub slices: Vec<Slice>,
    pub overrides: Vec<Override>,
    /// Output dtype; `None` keeps the base's (the first model's) dtype.
    pub out_dtype: Option<Dtype>,
    /// Seed for random methods.
    pub seed: u64,
    /// Calibration data for zipit/permute (CSV of the digits format).
    pub calibration: Option<PathBuf>,
}

/// A recipe problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax or semantic problem at a line of the recipe file (line 0 when
    /// unknown).
    #[error("{path}:{line}: {msg}")]
    At {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// A problem in a recipe not read from a file.
    #[error("recipe: {0}")]
    Invalid(String),
}

impl Recipe {
    /// A recipe with defaults: `method` over `models`, no parameters set.
    pub fn new(method: Method, base: Option<PathBuf>, models: Vec<PathBuf>) -> Recipe {
        Recipe {
            method,
            base,
            models: models
                .into_iter()
                .map(|path| ModelEntry {
                    path,
                    params: BTreeMap::new(),
                })
                .collect(),
            params: BTreeMap::new(),
            slices: Vec::new(),
            overrides: Vec::new(),
            out_dtype: None,
            seed: 0,
            calibration: None,
        }
    }

    /// Read a recipe file: `.toml` natively, `.yml`/`.yaml` as mergekit.
    /// Paths inside are resolved against the file's folder. Validates.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let _ = path;
        todo!()
    }
    /// Write as TOML, paths relative to the folder of `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), RecipeError> {
        let _ = path;
        todo!()
    }
    /// TOML text, with paths written relative to `dir`.
    pub fn to_toml(&self, dir: &Path) -> String {
        let _ = dir;
        todo!()
    }
    /// mergekit YAML text, with paths written relative to `dir`.
    pub fn to_mergekit_yaml(&self, dir: &Path) -> Result<String, RecipeError> {
        let _ = dir;
        todo!()
    }
    /// Static checks (no files read): method needs, counts, parameter names
    /// and ranges. Returns every problem found.
    pub fn check(&self) -> Vec<String> {
        todo!()
    }
    /// Parameters for one output tensor of layer group `group` in an output
    /// with `n_layers` layers, defaults filled in, overrides applied.
    /// `models` are indices into `self.models` (the non-base inputs feeding
    /// this tensor, in order).
    pub fn resolve(&self, tensor: &str, group: Group, n_layers: usize) -> TensorParams {
        let _ = (tensor, group, n_layers);
        todo!()
    }
}
