//! Recipes: what to merge and how. Native form is TOML; mergekit YAML is
//! read and written too.
//!
//! The engine, the CLI and the workbench all go through this module:
//! [`Recipe::load`] (every problem with its line), [`Recipe::problems`]
//! (the same checks on a recipe in memory, each with its location),
//! [`Recipe::resolve`] (each tensor's parameters, as mergekit computes
//! them), [`Recipe::with_method`] (switching method without leaving values
//! nothing reads), and the writers (TOML, TOML over a file keeping its
//! comments, mergekit YAML exact or refused).

mod check;
pub use check::number_problems;
mod mergekit;
pub mod multi;
pub(crate) mod node;
mod preserve;
mod resolve;
mod switch;
mod toml;
pub(crate) mod util;
mod vocab;

pub use vocab::{TokenRef, TokenSource, TokenSpec, TokenizerSpec, VocabSource};

pub use util::{dtype_name, parse_dtype};

/// Whether a path names a mergekit YAML recipe (`.yml`, `.yaml`, any
/// case): the one test every reader and writer of recipes uses.
pub fn is_yaml_path(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}

/// Whether a path names a recipe file (TOML or mergekit YAML, any case).
pub fn is_recipe_path(p: &Path) -> bool {
    is_yaml_path(p)
        || p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}

pub use multi::MultiRecipe;

pub use switch::{Added, Dropped, Switched, Table};

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

/// What an override applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideScope {
    /// Layers `first ..= last` (inclusive; TOML `layers = [first, last]`
    /// or `layers = n`).
    Layers(usize, usize),
    /// The tensors before the first layer ([`Group::Pre`]: embeddings);
    /// TOML `group = "embeddings"`.
    Embeddings,
    /// The tensors after the last layer ([`Group::Post`]: final norm,
    /// `lm_head`); TOML `group = "head"`.
    Head,
}

impl OverrideScope {
    /// Whether a tensor of `group` is in scope.
    pub fn covers(self, group: Group) -> bool {
        match (self, group) {
            (OverrideScope::Layers(a, b), Group::Layer(n)) => a <= n && n <= b,
            (OverrideScope::Embeddings, Group::Pre) | (OverrideScope::Head, Group::Post) => true,
            _ => false,
        }
    }

    /// Gradient position of a tensor of `group` inside the scope: across
    /// the layer range (0 for a one-layer range), 0 for the groups.
    pub fn position(self, group: Group) -> f64 {
        match (self, group) {
            (OverrideScope::Layers(lo, hi), Group::Layer(n)) if hi > lo => {
                n.saturating_sub(lo) as f64 / (hi - lo) as f64
            }
            _ => 0.0,
        }
    }

    /// The TOML `group` name of a group scope.
    pub fn group_name(self) -> Option<&'static str> {
        match self {
            OverrideScope::Layers(..) => None,
            OverrideScope::Embeddings => Some("embeddings"),
            OverrideScope::Head => Some("head"),
        }
    }
}

impl std::fmt::Display for OverrideScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverrideScope::Layers(a, b) if a == b => write!(f, "layer {a}"),
            OverrideScope::Layers(a, b) => write!(f, "layers {a}-{b}"),
            OverrideScope::Embeddings => f.write_str("embeddings"),
            OverrideScope::Head => f.write_str("norm / head"),
        }
    }
}

/// An override: for the tensors in `scope`, these values replace the
/// recipe's. Written by the TUI when a user tunes one layer, a range, or
/// the embeddings or norm/head group.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The layers or group it applies to.
    pub scope: OverrideScope,
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
    /// Overrides (per layer range or group), applied in order (later ones
    /// win).
    pub overrides: Vec<Override>,
    /// Output dtype; `None` keeps the base's (the first model's) dtype.
    pub out_dtype: Option<Dtype>,
    /// Seed for the methods that draw random numbers
    /// ([`Method::draws_random`]); `None` when the recipe does not set one
    /// (the engine then uses 0). Set on any other method it is an error.
    pub seed: Option<u64>,
    /// Calibration data for zipit/permute (CSV of the digits format).
    pub calibration: Option<PathBuf>,
    /// mergekit's `tokenizer_source` / `tokenizer:` block: the output
    /// vocabulary, and embedding rows permuted into it (see
    /// [`crate::tokenizer`]). `None`: the config model's tokenizer files
    /// are copied and every model must have the same vocabulary.
    pub tokenizer: Option<TokenizerSpec>,
    /// mergekit's `chat_template`: `auto`, a built-in name or a Jinja
    /// template, written with the output's tokenizer.
    pub chat_template: Option<String>,
}

/// One problem [`Recipe::problems`] finds: where it is and what.
///
/// `at` is a recipe location, stable across versions so that a front end
/// can place the problem on the row it concerns:
/// - `method`, `base`, `seed`, `out_dtype`, `calibration`, `models`,
///   `slices`, `parameters`: the top-level key (or, for a missing thing,
///   the place it belongs to);
/// - `parameters.NAME`: a method-wide value;
/// - `models[i]`, `models[i].path`, `models[i].parameters.NAME`: model `i`
///   of [`Recipe::models`] (0-based);
/// - `slices[i]`, `slices[i].base`, `slices[i].parameters.NAME`,
///   `slices[i].sources[j]`, `slices[i].sources[j].layer_range`,
///   `slices[i].sources[j].parameters.NAME`;
/// - `overrides[i]`, `overrides[i].layers`, `overrides[i].parameters.NAME`,
///   `overrides[i].models.M`, `overrides[i].models.M.NAME`: override `i`,
///   and its values for model `M` (an index into `models`).
///
/// `msg` is one sentence saying what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: a path into the recipe, as listed above.
    pub at: String,
    /// What is wrong and how to fix it.
    pub msg: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.msg)
    }
}

/// Problems found after loading (the plan's, see
/// [`crate::plan::PlanError::Problems`]) placed in the recipe file at
/// `path` whose text is `text`: each becomes `path:line: at: msg`, at the
/// line of its location (or of the nearest enclosing one, else of the
/// method), as [`Recipe::parse_all`] reports its own.
pub fn locate(text: &str, path: &Path, problems: &[Problem]) -> Vec<RecipeError> {
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
    let dir = folder_of(path);
    let mut diag = util::Diag::default();
    let parsed = if yaml {
        node::parse_yaml(text)
    } else {
        node::parse_toml(text)
    };
    if let Ok(root) = parsed {
        if yaml {
            mergekit::from_node(&root, dir, &mut diag);
        } else {
            toml::from_node(&root, dir, &mut diag);
        }
    }
    let method_line = diag.line_of("method");
    problems
        .iter()
        .map(|p| RecipeError::At {
            path: path.to_path_buf(),
            line: match diag.line_of(&p.at) {
                0 => method_line,
                l => l,
            },
            msg: p.to_string(),
        })
        .collect()
}

/// The folder of a recipe file (`.` for a bare name).
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A recipe problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The recipe file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The recipe file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Syntax or semantic problem at a line of the recipe file (line 0 when
    /// unknown).
    #[error("{path}:{line}: {msg}")]
    At {
        /// The recipe file.
        path: PathBuf,
        /// The 1-based line, 0 when unknown.
        line: usize,
        /// What is wrong and how to fix it.
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
            seed: None,
            calibration: None,
            tokenizer: None,
            chat_template: None,
        }
    }

    /// The starting recipe for a list of models, the one rule the CLI
    /// (`smelt tui MODEL...`, `smelt analyze MODEL...`) and the workbench
    /// share: with a base, TIES with `weight = 1.0` and `density = 0.5` for
    /// every model; without one, a linear average with `weight = 1.0` for
    /// every model. Which model is the base is the caller's choice, made
    /// before calling (`base` is never repeated in `models`: a model equal
    /// to it is left out).
    pub fn for_models(models: Vec<PathBuf>, base: Option<PathBuf>) -> Recipe {
        let method = if base.is_some() {
            Method::Ties
        } else {
            Method::Linear
        };
        let models: Vec<PathBuf> = models
            .into_iter()
            .filter(|m| base.as_deref().is_none_or(|b| !check::same(m, b)))
            .collect();
        let mut r = Recipe::new(method, base, models);
        for m in &mut r.models {
            m.params.insert("weight".into(), Value::Number(1.0));
            if method == Method::Ties {
                m.params.insert("density".into(), Value::Number(0.5));
            }
        }
        r
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
        let yaml = is_yaml_path(path);
        let at = |line: usize, msg: String| RecipeError::At {
            path: path.to_path_buf(),
            line,
            msg,
        };
        if yaml && multi::is_multi(text) {
            let second = multi::split_documents(text)[1].0;
            return Err(vec![at(
                second,
                "a second document: this is a multi-document (mergekit-multi) file, which \
                 `smelt merge` and `smelt recipe check` read; here one recipe is needed"
                    .to_string(),
            )]);
        }
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
        self.save_text(path, &self.to_toml(folder_of(path)))
    }

    /// [`Recipe::save`] over a file whose text was `original` (the recipe
    /// as opened): the user's comments, key order and inline tables are
    /// kept (see [`Recipe::to_toml_preserving`]).
    pub fn save_preserving(&self, path: &Path, original: &str) -> Result<(), RecipeError> {
        let text = self.to_toml_preserving(original, folder_of(path))?;
        self.save_text(path, &text)
    }

    fn save_text(&self, path: &Path, text: &str) -> Result<(), RecipeError> {
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| RecipeError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// TOML text for this recipe written over `original` (the TOML text it
    /// was read from, paths relative to `dir`): values that changed are
    /// updated in place, keys and tables that are gone removed, new ones
    /// appended to the table they belong to; comments, key order, and
    /// inline tables such as `parameters = { weight = 1.0 }` are kept, as
    /// are values written differently but meaning the same (`1` for `1.0`).
    /// Reading the result gives this recipe; where the merged text would
    /// not, the plain [`Recipe::to_toml`] text is returned instead. Fails
    /// only when `original` is not TOML.
    pub fn to_toml_preserving(&self, original: &str, dir: &Path) -> Result<String, RecipeError> {
        preserve::write(self, original, dir)
            .map_err(|msg| RecipeError::Invalid(format!("the recipe being saved over: {msg}")))
    }

    /// Call `f` on every path naming a model (base, models, slices'
    /// sources and bases, tokenizer sources).
    pub(crate) fn each_model_path(&mut self, f: &mut dyn FnMut(&mut PathBuf)) {
        if let Some(b) = &mut self.base {
            f(b);
        }
        for m in &mut self.models {
            f(&mut m.path);
        }
        for s in &mut self.slices {
            if let Some(b) = &mut s.base {
                f(b);
            }
            for src in &mut s.sources {
                f(&mut src.model);
            }
        }
        if let Some(t) = &mut self.tokenizer {
            if let VocabSource::Model(p) = &mut t.source {
                f(p);
            }
            for tok in &mut t.tokens {
                match &mut tok.source {
                    Some(TokenSource::Model(p)) => f(p),
                    Some(TokenSource::ModelToken { model, .. }) => f(model),
                    _ => {}
                }
            }
        }
    }

    /// The same recipe with every path absolute (against the working
    /// folder) and cleaned, hub names left as they are: two recipes that
    /// name the same files compare equal this way, however each was
    /// written (`models/x` read from `.`, `../../models/x` read from a
    /// build's folder, `/abs/models/x`).
    pub fn with_absolute_paths(&self) -> Recipe {
        let mut r = self.clone();
        let mut abs = |p: &mut PathBuf| {
            if crate::model::source::hub_name(p).is_none() {
                *p = util::absolute(p);
            }
        };
        r.each_model_path(&mut abs);
        if let Some(c) = &mut r.calibration {
            abs(c);
        }
        r
    }

    /// TOML text, with paths written relative to `dir`.
    pub fn to_toml(&self, dir: &Path) -> String {
        toml::write(self, dir)
    }

    /// mergekit YAML text, with paths written relative to `dir`, exactly
    /// equivalent to the recipe or refused.
    ///
    /// Overrides are folded into what mergekit reads (per-layer lists,
    /// `{filter, value}` entries naming blocks, layers or tensors such as
    /// `model.embed_tokens` and `lm_head`); for that the tensor names are
    /// read from the base's (or first model's) headers. The text is then
    /// read back and compared with the recipe (with overrides: every
    /// parameter of every tensor of that model; without: every table as
    /// written). Any difference is an error naming each value (parameter,
    /// model, layer or tensor, value now and after export), as is what
    /// mergekit cannot say at all (zipit/permute, overrides in a sliced
    /// recipe): nothing differing is ever returned.
    pub fn to_mergekit_yaml(&self, dir: &Path) -> Result<String, RecipeError> {
        mergekit::write(self, dir, None)
    }

    /// [`Recipe::to_mergekit_yaml`] for models whose tensors are `tensors`
    /// (names; groups come from [`crate::model::classify`]) and whose layer
    /// count is `n_layers` ([`crate::model::Model::num_layers`]), instead of
    /// reading the base's headers.
    pub fn to_mergekit_yaml_for(
        &self,
        dir: &Path,
        tensors: &[String],
        n_layers: usize,
    ) -> Result<String, RecipeError> {
        let layout = mergekit::Layout {
            names: tensors.to_vec(),
            n_layers,
            dtypes: Vec::new(),
        };
        mergekit::write(self, dir, Some(&layout))
    }

    /// Static checks (no files read): method needs, counts, parameter names
    /// and ranges, and every value the engine would not read. Returns every
    /// problem found, each starting with the recipe location it concerns
    /// (`models[1].parameters.density: ...`): [`Recipe::problems`] as text.
    pub fn check(&self) -> Vec<String> {
        self.problems().iter().map(ToString::to_string).collect()
    }

    /// Every problem [`Recipe::check`] finds, with its location apart (see
    /// [`Problem`] for the location strings).
    pub fn problems(&self) -> Vec<Problem> {
        check::check(self)
    }

    /// [`Recipe::problems`] plus the rules that need the models' layer count
    /// (`n_layers`, as [`crate::model::Model::num_layers`] gives it for the
    /// reference model): overrides past the last layer, and for
    /// zipit/permute a `depth` past the hidden layers and overrides past the
    /// zipped ones. The plan runs these before a merge.
    pub fn problems_for_layers(&self, n_layers: usize) -> Vec<Problem> {
        let mut out = check::check(self);
        out.extend(check::check_layers(self, n_layers));
        out
    }

    /// Parameters for one output tensor of layer group `group` in an output
    /// with `n_layers` layers, defaults filled in, overrides applied.
    /// `TensorParams.models` is aligned with `self.models`; in a sliced
    /// recipe, with the non-base sources of the slice the tensor comes from.
    pub fn resolve(&self, tensor: &str, group: Group, n_layers: usize) -> TensorParams {
        self.resolve_impl(tensor, group, n_layers)
    }
}
