//! A plan: for each output tensor, which inputs feed it and how.
//!
//! Planning reads headers only. It is where a recipe meets real files, so
//! it is where shape mismatches and missing tensors are found, before a
//! single byte is written.

use crate::merge::{BaseRule, Method, TensorParams};
use crate::model::arch::{self, LayerOrigin};
use crate::model::{Group, Model, OutputTensor, TensorInfo};
use crate::recipe::{ModelEntry, Problem, Recipe};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tensor of one input model.
#[derive(Clone, Debug)]
pub struct Source {
    /// Index into [`Plan::models`].
    pub model: usize,
    /// The tensor's name in that model.
    pub tensor: String,
}

/// How one output tensor is made.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// Run `method` over the sources.
    Merge {
        /// The method, for this tensor (slices may differ).
        method: Method,
        /// The base model's tensor, when the method has a base.
        base: Option<Source>,
        /// The other models' tensors, in recipe order.
        sources: Vec<Source>,
        /// The method's parameters resolved for this tensor.
        params: TensorParams,
    },
    /// Copy through (non-float tensors, passthrough, MLP heads). A `scale`
    /// multiplies the values (passthrough's `scale` parameter); the copy
    /// converts when the output dtype differs from the source's.
    Copy {
        /// The tensor copied.
        source: Source,
        /// A factor applied to every value, if any.
        scale: Option<f32>,
    },
}

/// One output tensor and how it is made: the unit of work the engine
/// hands to its threads.
#[derive(Clone, Debug)]
pub struct Job {
    /// The tensor as it will be written.
    pub out: OutputTensor,
    /// Merged or copied, from what.
    pub kind: JobKind,
    /// For a vocabulary tensor under a recipe's tokenizer settings: per
    /// input ([`Job::inputs`] order), where each row of its tensor,
    /// permuted into the output vocabulary, comes from. `None`: inputs
    /// are read as they are.
    pub vocab: Option<Arc<Vec<Vec<crate::tokenizer::Fill>>>>,
}

impl Job {
    /// Every input tensor this job reads.
    pub fn inputs(&self) -> Vec<&Source> {
        match &self.kind {
            JobKind::Merge { base, sources, .. } => base.iter().chain(sources.iter()).collect(),
            JobKind::Copy { source, .. } => vec![source],
        }
    }
}

/// A recipe checked against the models' headers, ready to run.
pub struct Plan {
    /// The recipe the plan was built from.
    pub recipe: Recipe,
    /// Every distinct model the recipe names, opened (headers only).
    pub models: Vec<Arc<Model>>,
    /// Index of the base (or first) model: its config and files are copied.
    pub config_model: usize,
    /// One job per output tensor, in output order.
    pub jobs: Vec<Job>,
    /// Layers in the output (the config's layer count, see `model::arch`).
    pub out_layers: usize,
    /// The output's `config.json`, when the config model has one: as it is
    /// for whole-model merges; for slices, with the layer count and the
    /// per-layer lists of the output's layers (`model::arch::sliced_config`).
    pub config: Option<serde_json::Value>,
    /// Tokenizer files written instead of the config model's (the recipe
    /// sets `tokenizer_source`, `tokenizer` or `chat_template`); empty:
    /// the config model's are copied.
    pub tokenizer_files: Vec<(String, Vec<u8>)>,
}

/// Why a recipe cannot be planned against its models.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A model could not be opened or read.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The recipe itself is wrong.
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    /// The models do not fit together (shapes, missing tensors, layer
    /// counts).
    #[error("{0}")]
    Mismatch(String),
    /// Problems of the recipe, each at its recipe location (see
    /// [`Problem`]; [`crate::recipe::locate`] finds their lines): what
    /// [`Recipe::problems`] finds, the rules that need the models' layer
    /// count, slice ranges past a model's layers, and parameter values
    /// that the merge of some tensor would refuse.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Problems(Vec<Problem>),
    /// The tokenizers cannot be combined as the recipe asks.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
}

type Result<T> = std::result::Result<T, PlanError>;

impl Plan {
    /// Open the recipe's models (headers only) and build the plan.
    pub fn build(recipe: &Recipe) -> Result<Plan> {
        let mut models = Vec::new();
        for path in recipe_paths(recipe) {
            models.push(Arc::new(Model::open(&path)?));
        }
        Plan::with_models(recipe, models)
    }

    /// Build from models already open (the TUI keeps them open). Every path
    /// the recipe names must be among `models` (matched by path).
    pub fn with_models(recipe: &Recipe, models: Vec<Arc<Model>>) -> Result<Plan> {
        let problems = recipe.problems();
        if !problems.is_empty() {
            return Err(PlanError::Problems(problems));
        }
        let mut planner = Planner {
            recipe,
            models,
            jobs: Vec::new(),
            seen: BTreeMap::new(),
            head_config: None,
            vocab: None,
            origins: Vec::new(),
        };
        if let Some(spec) = &recipe.tokenizer {
            let paths: Vec<PathBuf> = planner
                .models
                .iter()
                .map(|m| m.path().to_path_buf())
                .collect();
            let base = match &recipe.base {
                Some(b) => Some(planner.index_of(b)?),
                None => None,
            };
            planner.vocab = Some(crate::tokenizer::Vocabulary::build(
                spec,
                &paths,
                base,
                recipe.chat_template.as_deref(),
            )?);
        }
        let out_layers;
        let config_model;
        if matches!(recipe.method, Method::Zipit | Method::Permute) {
            // Feature matching works on whole MLPs, not tensor by tensor:
            // the engine hands it to `zip`. The plan only opens the models.
            config_model = match &recipe.base {
                Some(b) => planner.index_of(b)?,
                None => planner.index_of(first_model(recipe)?)?,
            };
            // Only smelt MLPs can be zipped: say so now, not mid-merge.
            for m in &planner.models {
                crate::mlp::MlpModel::from_model(m).map_err(|e| {
                    PlanError::Mismatch(format!(
                        "{} matches features of smelt MLP checkpoints only: {e}",
                        recipe.method.name()
                    ))
                })?;
            }
            out_layers = planner.models[config_model].num_layers();
        } else if recipe.slices.is_empty() {
            config_model = match &recipe.base {
                Some(b) => planner.index_of(b)?,
                None => planner.index_of(first_model(recipe)?)?,
            };
            out_layers = planner.plan_whole()?;
        } else {
            let first = recipe.slices[0]
                .sources
                .first()
                .map(|s| s.model.clone())
                .ok_or_else(|| {
                    PlanError::Problems(vec![Problem {
                        at: "slices[0]".into(),
                        msg: "a slice needs at least one source".into(),
                    }])
                })?;
            config_model = match &recipe.base {
                Some(b) => planner.index_of(b)?,
                None => planner.index_of(&first)?,
            };
            out_layers = planner.plan_slices()?;
        }
        // The rules that need the layer count (overrides past the last
        // layer, zip depth), now that the models are open.
        if recipe.slices.is_empty() {
            let n = if matches!(recipe.method, Method::Zipit | Method::Permute) {
                planner
                    .models
                    .iter()
                    .map(|m| m.num_layers())
                    .min()
                    .unwrap_or(0)
            } else {
                out_layers
            };
            let problems = recipe.problems_for_layers(n);
            if !problems.is_empty() {
                return Err(PlanError::Problems(problems));
            }
        }
        // Every value as the merge will read it, tensor by tensor: what
        // the merge of a tensor would refuse (a zero weight sum under
        // `normalize` at some layer of a gradient, DELLA's epsilon past
        // its density) is refused now, before anything is written.
        for job in &planner.jobs {
            if let JobKind::Merge {
                method,
                params,
                sources,
                ..
            } = &job.kind
            {
                let numel: usize = job.out.shape.iter().product();
                if let Err(e) = crate::merge::kernel(*method, params, numel, sources.len()) {
                    return Err(PlanError::Problems(vec![Problem {
                        at: "parameters".into(),
                        msg: format!("tensor `{}`: {e}", job.out.name),
                    }]));
                }
            }
        }
        let head_config = planner.head_config.take();
        // Whole-model merges keep the config as it is; slices set the layer
        // count under the architecture's own key and slice its per-layer
        // lists (`model::arch`).
        let config_src = planner.models[config_model].config();
        let config = match config_src {
            Some(c) if !recipe.slices.is_empty() => {
                let origins: Vec<LayerOrigin<'_>> = planner
                    .origins
                    .iter()
                    .map(|&(m, layer)| LayerOrigin {
                        config: planner.models[m].config(),
                        layer,
                    })
                    .collect();
                let out = arch::sliced_config(c, &origins).map_err(|e| {
                    PlanError::Mismatch(format!(
                        "{}: {e}",
                        planner.models[config_model].path().display()
                    ))
                })?;
                Some(out)
            }
            other => other.cloned(),
        };
        // The output vocabulary's size, padding included (mergekit).
        let vocab_rows = planner.vocab.as_ref().map(|v| v.rows);
        let config = config.map(|mut c| {
            if let (Some(rows), Some(obj)) = (vocab_rows, c.as_object_mut()) {
                obj.insert("vocab_size".into(), serde_json::json!(rows));
            }
            c
        });
        let tokenizer_files = match (&planner.vocab, &recipe.chat_template) {
            (Some(v), _) => v.files.clone(),
            (None, Some(chat)) => {
                let paths: Vec<PathBuf> = planner
                    .models
                    .iter()
                    .map(|m| m.path().to_path_buf())
                    .collect();
                crate::tokenizer::template_only_files(
                    planner.models[config_model].path(),
                    &paths,
                    chat,
                )?
            }
            (None, None) => Vec::new(),
        };
        let config = head_config.or(config);
        Ok(Plan {
            recipe: recipe.clone(),
            models: planner.models,
            config_model,
            jobs: planner.jobs,
            out_layers,
            config,
            tokenizer_files,
        })
    }

    /// Bytes of input read to run the plan once (one pass over every input
    /// tensor that a job reads).
    pub fn input_bytes(&self) -> u64 {
        self.jobs
            .iter()
            .flat_map(|j| j.inputs())
            .map(|s| self.info(s).map_or(0, |t| t.nbytes() as u64))
            .sum()
    }

    /// Bytes of output tensor data.
    pub fn output_bytes(&self) -> u64 {
        self.jobs
            .iter()
            .map(|j| j.out.dtype.nbytes(&j.out.shape).unwrap_or(0) as u64)
            .sum()
    }

    /// The header entry behind a source.
    pub fn info(&self, s: &Source) -> Option<&TensorInfo> {
        self.models.get(s.model)?.tensor(&s.tensor)
    }

    /// The paths of [`Plan::models`], in order (a `model+adapter` gives
    /// both of its paths).
    pub fn model_paths(&self) -> Vec<PathBuf> {
        self.models.iter().flat_map(|m| m.source_paths()).collect()
    }
}

/// Every distinct model path a recipe names, base first.
pub fn recipe_paths(recipe: &Recipe) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: &Path| {
        if !out.iter().any(|q| same_path(q, p)) {
            out.push(p.to_path_buf());
        }
    };
    if let Some(b) = &recipe.base {
        push(b);
    }
    for m in &recipe.models {
        push(&m.path);
    }
    for s in &recipe.slices {
        if let Some(b) = &s.base {
            push(b);
        }
        for src in &s.sources {
            push(&src.model);
        }
    }
    out
}

fn first_model(recipe: &Recipe) -> Result<&Path> {
    recipe
        .models
        .first()
        .map(|m| m.path.as_path())
        .ok_or_else(|| PlanError::Mismatch("the recipe names no models".into()))
}

/// Paths equal as written, or as canonicalized when both exist.
pub fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

struct Planner<'a> {
    recipe: &'a Recipe,
    models: Vec<Arc<Model>>,
    jobs: Vec<Job>,
    /// Output names already planned (a name twice is a recipe error).
    seen: BTreeMap<String, ()>,
    /// The output config of a multi-head MLP merge.
    head_config: Option<serde_json::Value>,
    /// The output vocabulary, under tokenizer settings.
    vocab: Option<crate::tokenizer::Vocabulary>,
    /// Slices: for each output layer, the model and layer it comes from
    /// (the slice's reference source), for the output config's per-layer
    /// lists.
    origins: Vec<(usize, usize)>,
}

/// One input of a (possibly sliced) merge.
struct Input {
    model: usize,
    /// The layer this input reads: for slices, the first layer of its range
    /// (then, per tensor, the layer matching the reference's); `KEEP` reads
    /// the tensor of the same name.
    first_layer: usize,
}

/// Read the tensor of the same name (whole models, pre/post tensors).
const KEEP: usize = usize::MAX;

impl Planner<'_> {
    fn index_of(&self, path: &Path) -> Result<usize> {
        self.models
            .iter()
            .position(|m| same_path(m.path(), path))
            .ok_or_else(|| PlanError::Mismatch(format!("{}: model is not loaded", path.display())))
    }

    fn push(&mut self, job: Job) -> Result<()> {
        if self.seen.insert(job.out.name.clone(), ()).is_some() {
            return Err(PlanError::Mismatch(format!(
                "output tensor `{}` would be written twice (overlapping slices?)",
                job.out.name
            )));
        }
        self.jobs.push(job);
        Ok(())
    }

    /// Whole models: every tensor of the reference model, merged across
    /// all inputs. Returns the output's layer count.
    fn plan_whole(&mut self) -> Result<usize> {
        let recipe = self.recipe;
        let base = match &recipe.base {
            Some(b) => Some(self.index_of(b)?),
            None => None,
        };
        let reference = match base {
            Some(b) => b,
            None => self.index_of(first_model(recipe)?)?,
        };
        let n_layers = self.models[reference].num_layers();
        let mut inputs = Vec::new();
        let mut param_rows = Vec::new();
        for (i, e) in recipe.models.iter().enumerate() {
            inputs.push(Input {
                model: self.index_of(&e.path)?,
                first_layer: KEEP,
            });
            param_rows.push(i);
        }
        // smelt MLPs whose heads differ: merge the shared trunk, keep every
        // input's heads as heads of the output (see `mlp::head_layout`).
        let head_inputs: Vec<&Model> = inputs
            .iter()
            .filter(|i| Some(i.model) != base)
            .map(|i| self.models[i.model].as_ref())
            .collect();
        let layout = crate::mlp::head_layout(&head_inputs)
            .map_err(|e| PlanError::Mismatch(e.to_string()))?;
        let tensors: Vec<TensorInfo> = self.models[reference].tensors().to_vec();
        for t in &tensors {
            if let Some(l) = &layout {
                if !l.trunk.contains(&t.name) {
                    continue;
                }
            }
            let group = t.place.group;
            let params = recipe.resolve(&t.name, group, n_layers);
            self.plan_tensor(recipe, t, &t.name, base, &inputs, &param_rows, params)?;
        }
        if let Some(l) = layout {
            // `head_inputs[h.model]` is the model whose head this is.
            let head_models: Vec<usize> = inputs
                .iter()
                .filter(|i| Some(i.model) != base)
                .map(|i| i.model)
                .collect();
            for h in &l.heads {
                let Some(&model) = head_models.get(h.model) else {
                    continue;
                };
                let m = &self.models[model];
                let Some(info) = m.tensor(&h.source) else {
                    return Err(PlanError::Mismatch(format!(
                        "{}: tensor `{}` is missing",
                        m.path().display(),
                        h.source
                    )));
                };
                let out = OutputTensor {
                    name: h.output.clone(),
                    dtype: recipe.out_dtype.unwrap_or(info.dtype),
                    shape: info.shape.clone(),
                };
                let source = Source {
                    model,
                    tensor: h.source.clone(),
                };
                self.push(Job {
                    out,
                    kind: JobKind::Copy {
                        source,
                        scale: None,
                    },
                    vocab: None,
                })?;
            }
            self.head_config = Some(l.config);
        }
        Ok(n_layers)
    }

    /// Plan one output tensor `out_name` whose reference header is `t`.
    /// `inputs[i]` reads the tensor named like `t` but at its own layer.
    #[allow(clippy::too_many_arguments)]
    fn plan_tensor(
        &mut self,
        recipe: &Recipe,
        t: &TensorInfo,
        out_name: &str,
        base: Option<usize>,
        inputs: &[Input],
        param_rows: &[usize],
        params: TensorParams,
    ) -> Result<()> {
        let method = recipe.method;
        let spec = method.spec();
        let src_name = |inp: &Input| -> String { rename_layer(&t.name, t, inp.first_layer) };
        // A vocabulary tensor under tokenizer settings: rows permuted into
        // the output vocabulary, so only the other axes must agree.
        let permuted = self.vocab.is_some()
            && crate::tokenizer::is_vocab_tensor(&t.name)
            && !t.shape.is_empty()
            && t.dtype.is_mergeable();
        let mut shape = t.shape.clone();
        if let (true, Some(v)) = (permuted, &self.vocab) {
            shape[0] = v.rows;
        }
        let out = OutputTensor {
            name: out_name.to_string(),
            dtype: if t.dtype.is_mergeable() {
                recipe.out_dtype.unwrap_or(t.dtype)
            } else {
                t.dtype
            },
            shape,
        };
        // Check every input has the tensor with the same shape.
        let check = |model: usize, name: &str| -> Result<Source> {
            let m = &self.models[model];
            let Some(info) = m.tensor(name) else {
                return Err(PlanError::Mismatch(format!(
                    "{}: tensor `{name}` is missing (the reference model {} has it)",
                    m.path().display(),
                    self.models_path_hint(t)
                )));
            };
            let agree = if permuted {
                info.shape.len() == t.shape.len() && info.shape[1..] == t.shape[1..]
            } else {
                info.shape == t.shape
            };
            if !agree {
                // Rows alone differ in a vocabulary tensor: the
                // vocabularies differ, which tokenizer settings handle.
                let hint = if !permuted
                    && crate::tokenizer::is_vocab_tensor(name)
                    && info.shape.len() == t.shape.len()
                    && info.shape.get(1..) == t.shape.get(1..)
                {
                    "; the models' vocabularies differ: set `tokenizer_source` (base or union) in the recipe to merge them into one vocabulary"
                } else {
                    ""
                };
                return Err(PlanError::Mismatch(format!(
                    "{}: tensor `{name}` has shape {:?}, but {:?} was expected{hint}",
                    m.path().display(),
                    info.shape,
                    t.shape
                )));
            }
            if info.dtype.is_mergeable() != t.dtype.is_mergeable() {
                return Err(PlanError::Mismatch(format!(
                    "{}: tensor `{name}` is {}, which cannot be merged with {}",
                    m.path().display(),
                    info.dtype.name(),
                    t.dtype.name()
                )));
            }
            Ok(Source {
                model,
                tensor: name.to_string(),
            })
        };
        let base_src = match base {
            Some(b) if spec.base != BaseRule::None => Some(check(b, &t.name)?),
            _ => None,
        };
        let mut sources = Vec::new();
        let mut models_params = Vec::new();
        for (inp, row) in inputs.iter().zip(param_rows) {
            // An input that is the base is the base, not a task vector
            // (mergekit lists the base among `models` for slerp & co).
            if spec.base != BaseRule::None && Some(inp.model) == base {
                continue;
            }
            sources.push(check(inp.model, &src_name(inp))?);
            if let Some(p) = params.models.get(*row) {
                models_params.push(p.clone());
            }
        }
        let vocab = match (permuted, &self.vocab) {
            (true, Some(v)) => {
                let inputs: Vec<&Source> = base_src.iter().chain(sources.iter()).collect();
                // Passthrough copies its first model: only it takes part.
                let inputs = if method == Method::Passthrough {
                    inputs
                        .into_iter()
                        .skip(usize::from(base_src.is_some()))
                        .take(1)
                        .collect()
                } else {
                    inputs
                };
                let participants: Vec<usize> = inputs.iter().map(|s| s.model).collect();
                let rows: Vec<usize> = inputs
                    .iter()
                    .map(|s| {
                        self.models[s.model]
                            .tensor(&s.tensor)
                            .map_or(0, |i| i.shape[0])
                    })
                    .collect();
                let recipe_base = match &recipe.base {
                    Some(b) => self.index_of(b).ok(),
                    None => None,
                };
                Some(Arc::new(v.fills(
                    &t.name,
                    &participants,
                    recipe_base,
                    &rows,
                )?))
            }
            _ => None,
        };
        let kind = if !t.dtype.is_mergeable() {
            let source = match (&base_src, sources.first()) {
                (Some(b), _) => b.clone(),
                (None, Some(s)) => s.clone(),
                (None, None) => {
                    return Err(PlanError::Mismatch(format!(
                        "tensor `{}`: no input to copy from",
                        t.name
                    )))
                }
            };
            JobKind::Copy {
                source,
                scale: None,
            }
        } else if method == Method::Passthrough {
            let Some(source) = sources.first().cloned() else {
                return Err(PlanError::Mismatch(format!(
                    "tensor `{}`: passthrough needs one model",
                    t.name
                )));
            };
            let scale = models_params
                .first()
                .map_or(1.0, |p| p.f64_or("scale", 1.0)) as f32;
            JobKind::Copy {
                source,
                scale: (scale != 1.0).then_some(scale),
            }
        } else {
            if sources.is_empty() {
                return Err(PlanError::Mismatch(format!(
                    "tensor `{}`: {} needs at least one model besides the base",
                    t.name,
                    method.name()
                )));
            }
            JobKind::Merge {
                method,
                base: base_src,
                sources,
                params: TensorParams {
                    models: models_params,
                    ..params
                },
            }
        };
        self.push(Job { out, kind, vocab })
    }

    fn models_path_hint(&self, t: &TensorInfo) -> String {
        self.models
            .iter()
            .find(|m| m.tensor(&t.name).is_some())
            .map_or_else(String::new, |m| m.path().display().to_string())
    }

    /// Slices (mergekit `slices:`): each slice's layer ranges become
    /// consecutive output layers; embeddings come from the first slice and
    /// the final norm / head from the last, as mergekit does.
    fn plan_slices(&mut self) -> Result<usize> {
        let recipe = self.recipe;
        if !recipe.overrides.is_empty() {
            // Overrides name output layers; a slice's parameters already
            // vary per layer through gradients, which is what mergekit has.
            return Err(PlanError::Problems(vec![Problem {
                at: "overrides[0]".into(),
                msg: "per-layer overrides are not supported together with slices; use gradients in the slice's parameters".into(),
            }]));
        }
        let mut offset = 0usize;
        let n_slices = recipe.slices.len();
        for (si, slice) in recipe.slices.iter().enumerate() {
            let Some(first) = slice.sources.first() else {
                return Err(PlanError::Problems(vec![Problem {
                    at: format!("slices[{si}]"),
                    msg: "a slice needs at least one source".into(),
                }]));
            };
            let (a, b) = first.layer_range;
            let len = b.saturating_sub(a);
            for (j, s) in slice.sources.iter().enumerate() {
                if s.layer_range.1.saturating_sub(s.layer_range.0) != len {
                    return Err(PlanError::Problems(vec![Problem {
                        at: format!("slices[{si}].sources[{j}].layer_range"),
                        msg: format!(
                            "layer ranges differ in length ({:?} vs {:?})",
                            first.layer_range, s.layer_range
                        ),
                    }]));
                }
            }
            // The slice as a recipe of its own: its sources are the models,
            // its parameters layered over the recipe's.
            let mut sub = recipe.clone();
            sub.slices.clear();
            sub.overrides.clear();
            sub.base = slice.base.clone().or_else(|| recipe.base.clone());
            sub.models = slice
                .sources
                .iter()
                .map(|s| ModelEntry {
                    path: s.model.clone(),
                    params: {
                        let mut p = recipe
                            .models
                            .iter()
                            .find(|m| same_path(&m.path, &s.model))
                            .map(|m| m.params.clone())
                            .unwrap_or_default();
                        p.extend(s.params.clone());
                        p
                    },
                })
                .collect();
            sub.params.extend(slice.params.clone());
            let base = match &sub.base {
                Some(p) => Some(self.index_of(p)?),
                None => None,
            };
            let mut inputs = Vec::new();
            let mut rows = Vec::new();
            for (i, s) in slice.sources.iter().enumerate() {
                inputs.push(Input {
                    model: self.index_of(&s.model)?,
                    first_layer: s.layer_range.0,
                });
                rows.push(i);
            }
            // The reference: the base's layers when the base is a source,
            // else the first source's.
            let ref_input = base
                .and_then(|b| inputs.iter().position(|i| i.model == b))
                .unwrap_or(0);
            let ref_model = inputs[ref_input].model;
            let ref_first = inputs[ref_input].first_layer;
            let tensors: Vec<TensorInfo> = self.models[ref_model].tensors().to_vec();
            let model_layers = self.models[ref_model].num_layers();
            // Every source's range must lie inside its own model.
            for (j, (s, input)) in slice.sources.iter().zip(&inputs).enumerate() {
                let layers = self.models[input.model].num_layers();
                if s.layer_range.1 > layers {
                    return Err(PlanError::Problems(vec![Problem {
                        at: format!("slices[{si}].sources[{j}].layer_range"),
                        msg: format!(
                            "layer_range [{}, {}] is outside {} ({layers} layers: 0..{layers})",
                            s.layer_range.0,
                            s.layer_range.1,
                            self.models[input.model].path().display(),
                        ),
                    }]));
                }
            }
            if ref_first + len > model_layers {
                return Err(PlanError::Problems(vec![Problem {
                    at: format!("slices[{si}]"),
                    msg: format!(
                        "layer_range {:?} is outside {} ({} layers)",
                        (ref_first, ref_first + len),
                        self.models[ref_model].path().display(),
                        model_layers
                    ),
                }]));
            }
            for t in &tensors {
                let (take, out_name, rel_layer) = match t.place.group {
                    Group::Pre => (si == 0, t.name.clone(), None),
                    Group::Post => (si + 1 == n_slices, t.name.clone(), None),
                    Group::Layer(n) if n >= ref_first && n < ref_first + len => {
                        let rel = n - ref_first;
                        (true, rename_layer(&t.name, t, offset + rel), Some(rel))
                    }
                    Group::Layer(_) => (false, String::new(), None),
                };
                if !take {
                    continue;
                }
                // Inputs read their own layer: shift from the reference's.
                let shifted: Vec<Input> = inputs
                    .iter()
                    .map(|i| Input {
                        model: i.model,
                        first_layer: match rel_layer {
                            Some(rel) => i.first_layer + rel,
                            None => KEEP,
                        },
                    })
                    .collect();
                let group = match rel_layer {
                    Some(rel) => Group::Layer(rel),
                    None => t.place.group,
                };
                let params = sub.resolve(&t.name, group, len);
                self.plan_tensor(&sub, t, &out_name, base, &shifted, &rows, params)?;
            }
            self.origins
                .extend((ref_first..ref_first + len).map(|l| (ref_model, l)));
            offset += len;
        }
        Ok(offset)
    }
}

/// `name` (a tensor of layer `t.place`) renamed to layer `layer`.
/// `KEEP` keeps the name.
fn rename_layer(name: &str, t: &TensorInfo, layer: usize) -> String {
    if layer == KEEP || t.place.prefix.is_empty() {
        return name.to_string();
    }
    let prefix = &t.place.prefix;
    let Some(rest) = name.strip_prefix(prefix.as_str()) else {
        return name.to_string();
    };
    // prefix is "…layers.N." : replace N.
    let head = prefix.trim_end_matches('.');
    let stem = head.trim_end_matches(|c: char| c.is_ascii_digit());
    format!("{stem}{layer}.{rest}")
}
