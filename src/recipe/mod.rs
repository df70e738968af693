//! Recipes: what to merge and how. Native form is TOML; mergekit YAML is
//! read and written too.
//!
//! CONTRACT (skeleton): the types and functions below are what the engine,
//! the CLI and the TUI use. Bodies marked `todo!` belong to the recipe work.

mod check;
mod mergekit;
mod node;
mod resolve;
mod toml;
mod util;

use crate::merge::{Method, TensorParams};
use crate::model::{Dtype, Group};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parameter as written in a recipe.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `true` / `false` (`normalize`, `rescale`, ...).
    Bool(bool),
    /// One number for every tensor (TOML integers are read as numbers too).
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
    /// This model's parameters (`weight`, `density`, ...); names the method
    /// does not take per model are rejected by `check`.
    pub params: BTreeMap<String, Value>,
}

/// A per-layer override: for tensors of layers `layers.0 ..= layers.1`,
/// these values replace the recipe's. Written by the TUI when a user tunes
/// one layer or a range.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Override {
    /// Inclusive layer range.
    pub layers: (usize, usize),
    /// Values for every model (per-model names) and method-wide ones.
    pub params: BTreeMap<String, Value>,
    /// Per-model values, keyed by the model's index in `models`.
    pub models: BTreeMap<usize, BTreeMap<String, Value>>,
}

/// One input of a slice (mergekit `slices[].sources[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceSource {
    /// The model the layers come from (resolved like `ModelEntry::path`).
    pub model: PathBuf,
    /// Half-open `[start, end)` layer range, as mergekit writes it.
    pub layer_range: (usize, usize),
    /// This source's own parameters (first in mergekit's lookup order).
    pub params: BTreeMap<String, Value>,
}

/// A slice of the output: its sources' layer ranges (all the same length)
/// are merged into consecutive output layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// The inputs; a source that is the base is the base, not a model.
    pub sources: Vec<SliceSource>,
    /// This slice's base, if it differs from the recipe's.
    pub base: Option<PathBuf>,
    /// Values for this slice, looked up before the recipe's `params`.
    pub params: BTreeMap<String, Value>,
}

/// A whole recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The merge method; its spec says what else the recipe needs.
    pub method: Method,
    /// The base model (task vectors are taken against it), where the
    /// method uses one. Never repeated in `models`.
    pub base: Option<PathBuf>,
    /// The models merged (besides the base), in order: per-model parameter
    /// lists (`TensorParams::models`) follow this order.
    pub models: Vec<ModelEntry>,
    /// Method-wide parameters.
    pub params: BTreeMap<String, Value>,
    /// Empty: merge whole models. Otherwise the output is these slices.
    pub slices: Vec<Slice>,
    /// Per-layer overrides, applied in order (later ones win).
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
    /// Paths inside are resolved against the file's folder. Validates, and
    /// returns the first problem (by line); [`Recipe::load_all`] gives all.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        Recipe::load_all(path).map_err(|mut errs| errs.swap_remove(0))
    }

    /// Like [`Recipe::load`], but on failure every problem found (syntax,
    /// unknown keys, and everything [`Recipe::check`] reports), each with
    /// its line, in line order. Never an empty list.
    pub fn load_all(path: &Path) -> Result<Recipe, Vec<RecipeError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![RecipeError::Io {
                path: path.to_path_buf(),
                source,
            }]
        })?;
        Recipe::parse_all(&text, path)
    }

    /// Parse recipe text as if read from `path` (the extension picks the
    /// format; relative paths inside resolve against `path`'s folder).
    pub fn parse_all(text: &str, path: &Path) -> Result<Recipe, Vec<RecipeError>> {
        let dir = path.parent().unwrap_or(Path::new(""));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
        let at = |line: usize, msg: String| RecipeError::At {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let parsed = if yaml {
            node::parse_yaml(text)
        } else {
            node::parse_toml(text)
        };
        let root = parsed.map_err(|(line, msg)| vec![at(line, msg)])?;
        let mut diag = util::Diag::default();
        let recipe = if yaml {
            mergekit::from_node(&root, dir, &mut diag)
        } else {
            toml::from_node(&root, dir, &mut diag)
        };
        let mut problems = std::mem::take(&mut diag.problems);
        if let Some(r) = &recipe {
            // Problems about something missing point at the nearest
            // thing present, else at the method line.
            let method_line = diag.line_of("method");
            for p in check::check(r) {
                let line = match diag.line_of(&p.at) {
                    0 => method_line,
                    l => l,
                };
                problems.push((line, format!("{}: {}", p.at, p.msg)));
            }
        }
        if problems.is_empty() {
            if let Some(r) = recipe {
                return Ok(r);
            }
            problems.push((0, "not a recipe".to_string()));
        }
        problems.sort_by_key(|(line, _)| *line);
        Err(problems
            .into_iter()
            .map(|(line, msg)| at(line, msg))
            .collect())
    }

    /// Write as TOML, paths relative to the folder of `path`, atomically
    /// (a temporary file in the same folder, then a rename), so a crash
    /// never leaves a half-written recipe.
    pub fn save(&self, path: &Path) -> Result<(), RecipeError> {
        use std::io::Write as _;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let io = |source| RecipeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = self.to_toml(dir);
        let name = path
            .file_name()
            .map_or_else(|| "recipe".into(), |n| n.to_string_lossy().to_string());
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// TOML text, with paths written relative to `dir`.
    pub fn to_toml(&self, dir: &Path) -> String {
        toml::write(self, dir)
    }

    /// mergekit YAML text, with paths written relative to `dir`. Per-layer
    /// overrides become per-layer gradients; their layer count is read from
    /// the base's (or first model's) `config.json`
    /// (see [`Recipe::to_mergekit_yaml_layers`] to give it instead).
    pub fn to_mergekit_yaml(&self, dir: &Path) -> Result<String, RecipeError> {
        mergekit::write(self, dir, None)
    }

    /// [`Recipe::to_mergekit_yaml`] for models with `n_layers` layers.
    pub fn to_mergekit_yaml_layers(
        &self,
        dir: &Path,
        n_layers: usize,
    ) -> Result<String, RecipeError> {
        mergekit::write(self, dir, Some(n_layers))
    }

    /// Static checks (no files read): method needs, counts, parameter names
    /// and ranges. Returns every problem found, each starting with the
    /// recipe location it concerns (`models[1].parameters.density: ...`).
    pub fn check(&self) -> Vec<String> {
        check::check(self)
            .into_iter()
            .map(|p| format!("{}: {}", p.at, p.msg))
            .collect()
    }

    /// Parameters for one output tensor of layer group `group` in an output
    /// with `n_layers` layers, defaults filled in, overrides applied.
    /// `TensorParams.models` is aligned with `self.models`; in a sliced
    /// recipe, with the non-base sources of the slice the tensor comes from.
    pub fn resolve(&self, tensor: &str, group: Group, n_layers: usize) -> TensorParams {
        self.resolve_impl(tensor, group, n_layers)
    }
}
