//! LoRA extraction: from a fine-tune and its base, a PEFT adapter that
//! approximates the fine-tune (`smelt extract-lora`, mergekit's
//! `mergekit-extract-lora`).
//!
//! Per linear module the task vector `Δ = fine-tune − base` is factored by
//! a thin SVD `Δ = U·S·Vᵀ` and cut to rank `r`: `A = √S·Vᵀ[:r]`,
//! `B = U[:, :r]·√S` (or `A = S·Vᵀ[:r]`, `B = U[:, :r]` without
//! `distribute_scale`), so that `B·A` is the best rank-`r` approximation
//! of `Δ`. `lora_alpha = r`, so PEFT's scale is 1. Which modules are
//! factored, which are saved whole (`modules_to_save`) and which are
//! skipped follows mergekit 0.1.5's `extract_lora.py`:
//! - embeddings (input and output) go to `modules_to_save` unless
//!   `embed_lora`; with it the input embedding is factored transposed
//!   (`lora_embedding_A`/`_B`) and the output head like a linear layer;
//! - a module named in `modules_to_save` (full name or last component) is
//!   saved whole from the fine-tune;
//! - modules passing the include/exclude regexes (searched in the module
//!   name, as Python's `re.search`) are factored when their weight is a
//!   matrix; other weights (norms) cannot be factored and are saved whole,
//!   their last component added to `modules_to_save` (or skipped with
//!   `skip_undecomposable`);
//! - a factored module's bias is saved as `lora_B.bias`, the bias delta.
//!
//! mergekit sees module *types* through transformers; smelt sees tensor
//! names and shapes. A matrix `*.weight` is taken for a linear layer, a
//! vector for a norm, and embeddings are known by name (the vocabulary
//! tensors of [`crate::tokenizer::VOCAB_TENSORS`], and any module whose
//! last name component holds `embed`, `wte` or `wpe`). GPT-2-style models
//! (`Conv1D`, weights stored transposed) are refused rather than guessed.
//!
//! Memory: one module at a time (its two input matrices, Δ, and the SVD's
//! factors) plus the adapter being built, which is kept in memory in its
//! final dtype until the ranks are all known (with `sv_epsilon` they
//! depend on the data); tensors saved whole are streamed from the
//! fine-tune into the output in chunks.
//!
//! The output folder appears whole or not at all ([`crate::model::Writer`])
//! and is never written over without `force`.

use crate::model::{self, Dtype, Model, ModelError, OutputLock, OutputTensor, TensorInfo};
use faer::Mat;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to extract and where to write it.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The fine-tune, as written: a folder or file, a hub name, or
    /// `model+adapter`.
    pub model: String,
    /// Its base, written the same ways.
    pub base: String,
    /// The adapter folder to write.
    pub out: PathBuf,
    /// The largest rank of any module (mergekit's `--max-rank`, default
    /// 128).
    pub max_rank: usize,
    /// Singular values at or below this are dropped (`--sv-epsilon`; 0
    /// keeps them all).
    pub sv_epsilon: f64,
    /// Split the singular values between A and B as `√S` each (default);
    /// otherwise A carries `S`.
    pub distribute_scale: bool,
    /// Factor the embeddings too, instead of saving them whole.
    pub embed_lora: bool,
    /// Modules saved whole (full name or last component).
    pub modules_to_save: Vec<String>,
    /// Only modules matching one of these regexes are factored (all when
    /// empty).
    pub include: Vec<String>,
    /// Modules matching one of these regexes are neither factored nor
    /// saved (unless named in `modules_to_save`).
    pub exclude: Vec<String>,
    /// Skip modules that cannot be factored (norms) instead of saving them
    /// whole.
    pub skip_undecomposable: bool,
    /// Replace an existing output folder, if it is empty or one smelt
    /// wrote.
    pub force: bool,
    /// fsync the output before publishing it.
    pub sync: bool,
}

impl Options {
    /// mergekit's defaults for `model` over `base`, written to `out`.
    pub fn new(model: impl Into<String>, base: impl Into<String>, out: impl Into<PathBuf>) -> Self {
        Options {
            model: model.into(),
            base: base.into(),
            out: out.into(),
            max_rank: 128,
            sv_epsilon: 0.0,
            distribute_scale: true,
            embed_lora: false,
            modules_to_save: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            skip_undecomposable: false,
            force: false,
            sync: true,
        }
    }
}

/// Progress of an extraction, sent to the caller's callback.
#[derive(Clone, Debug)]
pub enum Event {
    /// The models are open and the work is planned.
    Started {
        /// Modules to factor.
        modules: usize,
        /// Tensors to save whole.
        saved: usize,
    },
    /// A module was factored.
    Module {
        /// The module (`model.layers.0.self_attn.q_proj`).
        name: String,
        /// Modules factored so far.
        done: usize,
        /// Modules to factor.
        total: usize,
        /// Its rank.
        rank: usize,
        /// Its relative reconstruction error.
        error: f64,
    },
    /// Every module is factored; the adapter is being written.
    Writing,
}

/// How one module was extracted.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleReport {
    /// The module's name (its weight's name without `.weight`).
    pub name: String,
    /// The rank kept.
    pub rank: usize,
    /// Whether it was factored as an embedding (`lora_embedding_*`).
    pub embedding: bool,
    /// `‖Δ‖_F`, the task vector's Frobenius norm.
    pub norm: f64,
    /// `‖Δ − B·A‖_F / ‖Δ‖_F` with `A`, `B` as written (rounded to the
    /// output dtype); 0 when `Δ` is zero.
    pub error: f64,
}

/// What an extraction did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The published adapter folder.
    pub out: PathBuf,
    /// The factored modules, in the fine-tune's tensor order.
    pub modules: Vec<ModuleReport>,
    /// Model tensors saved whole (`modules_to_save`).
    pub saved: Vec<String>,
    /// `modules_to_save` as written to the config.
    pub modules_to_save: Vec<String>,
    /// `r` of the config: the largest rank kept.
    pub rank: usize,
    /// Relative reconstruction error over every factored module:
    /// `√(Σ‖Δ − B·A‖²) / √(Σ‖Δ‖²)`.
    pub error: f64,
    /// Things the user should know (settings changed, modules skipped).
    pub warnings: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why an extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Reading a model or writing the adapter failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The options are wrong (a rank of 0, a bad regex, ...).
    #[error("{0}")]
    Options(String),
    /// The models do not fit together, or a tensor cannot be extracted.
    #[error(
        "{}: tensor `{}`: {}",
        crate::text::path(path),
        crate::text::Escaped(tensor),
        crate::text::Escaped(msg)
    )]
    Tensor {
        /// The model file at fault.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        msg: String,
    },
    /// The cancel flag was set; nothing was written.
    #[error("cancelled; nothing was written")]
    Cancelled,
}

impl ExtractError {
    /// Whether the environment is at fault (exit 1) rather than the input
    /// (exit 2).
    pub fn is_environment(&self) -> bool {
        matches!(self, ExtractError::Model(m) if m.is_environment())
    }
}

type Result<T> = std::result::Result<T, ExtractError>;

/// What happens to one module of the fine-tune.
#[derive(Clone, Debug)]
enum Action {
    /// Factor its weight (transposed for an embedding); its bias, if any,
    /// becomes `lora_B.bias`.
    Factor {
        weight: Box<TensorInfo>,
        bias: Option<Box<TensorInfo>>,
        embedding: bool,
    },
    /// Save its tensors whole from the fine-tune.
    Save(Vec<TensorInfo>),
}

/// A module: a name and what is done with it.
#[derive(Clone, Debug)]
struct Planned {
    name: String,
    action: Action,
}

/// The PEFT prefix of every adapter tensor.
const PREFIX: &str = "base_model.model.";

/// Vocabulary tensors that are output heads (linear layers), not
/// embeddings.
fn is_head(weight: &str) -> bool {
    crate::tokenizer::is_vocab_tensor(weight) && !is_embedding_name(weight)
}

/// Whether a `*.weight` tensor is an embedding's (see the module docs).
fn is_embedding_name(weight: &str) -> bool {
    let module = weight.strip_suffix(".weight").unwrap_or(weight);
    let last = module.rsplit('.').next().unwrap_or(module);
    last.contains("embed")
        || last == "wte"
        || last == "wpe"
        || last == "shared"
        || last == "word_embeddings"
}

fn last(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn compile(patterns: &[String], flag: &str) -> Result<Vec<regex::Regex>> {
    patterns
        .iter()
        .map(|p| {
            regex::Regex::new(p)
                .map_err(|e| ExtractError::Options(format!("{flag} `{p}` is not a regex: {e}")))
        })
        .collect()
}

/// The dtype of `model − base` as torch promotes it: the common dtype, or
/// F32 (F64 if either is F64) when they differ.
fn promote(a: Dtype, b: Dtype) -> Dtype {
    if a == b {
        a
    } else if a == Dtype::F64 || b == Dtype::F64 {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

fn check_options(o: &Options) -> Result<()> {
    if o.max_rank == 0 {
        return Err(ExtractError::Options(
            "--max-rank must be at least 1, found 0".into(),
        ));
    }
    if !o.sv_epsilon.is_finite() || o.sv_epsilon < 0.0 {
        return Err(ExtractError::Options(format!(
            "--sv-epsilon must be a finite number >= 0, found {}",
            o.sv_epsilon
        )));
    }
    Ok(())
}

/// Decide, module by module, what to do (mergekit's `plan_extraction`).
/// Returns the plan, the final `modules_to_save` and warnings.
fn plan(
    o: &Options,
    model: &Model,
    base: &Model,
) -> Result<(Vec<Planned>, Vec<String>, Vec<String>)> {
    let include = compile(&o.include, "--include-regex")?;
    let exclude = compile(&o.exclude, "--exclude-regex")?;
    let mut warnings = Vec::new();
    if let Some(kind) = model
        .config()
        .and_then(|c| c.get("model_type"))
        .and_then(|v| v.as_str())
    {
        if kind == "gpt2" {
            return Err(ExtractError::Options(format!(
                "{}: model_type gpt2 stores its linear layers transposed (Conv1D), \
                 which extract-lora does not support",
                model.path().display()
            )));
        }
    }
    let mut embed_lora = o.embed_lora;
    if embed_lora {
        // mergekit: a vocabulary that differs forces the embeddings into
        // modules_to_save.
        let rows = |m: &Model| {
            m.tensors()
                .iter()
                .find(|t| is_embedding_name(&t.name) && crate::tokenizer::is_vocab_tensor(&t.name))
                .and_then(|t| t.shape.first().copied())
        };
        if let (Some(a), Some(b)) = (rows(model), rows(base)) {
            if a != b {
                warnings.push(format!(
                    "vocabulary sizes differ (fine-tune {a}, base {b}): embeddings are saved \
                     whole (modules_to_save), not factored"
                ));
                embed_lora = false;
            }
        }
    }
    let mut to_save: Vec<String> = o.modules_to_save.clone();
    let mut planned = Vec::new();
    let mut warned = std::collections::BTreeSet::new();
    for t in model.tensors() {
        let Some(name) = t.name.strip_suffix(".weight") else {
            continue;
        };
        let bias = model.tensor(&format!("{name}.bias")).cloned();
        let key = last(name).to_string();
        let embedding = is_embedding_name(&t.name);
        let excluded = exclude.iter().any(|r| r.is_match(name));
        if !embed_lora && (embedding || is_head(&t.name)) && !excluded && !to_save.contains(&key) {
            to_save.push(key.clone());
        }
        let whole = || {
            let mut v = vec![t.clone()];
            v.extend(bias.clone());
            Action::Save(v)
        };
        if to_save.iter().any(|s| s == name || *s == key) {
            planned.push(Planned {
                name: name.to_string(),
                action: whole(),
            });
            continue;
        }
        let wanted = (include.is_empty() || include.iter().any(|r| r.is_match(name))) && !excluded;
        if !wanted {
            continue;
        }
        if t.shape.len() == 2 && t.dtype.is_mergeable() {
            planned.push(Planned {
                name: name.to_string(),
                action: Action::Factor {
                    weight: Box::new(t.clone()),
                    bias: bias.map(Box::new),
                    embedding,
                },
            });
        } else {
            if warned.insert(key.clone()) {
                warnings.push(format!(
                    "{key}: a {}-D {} weight cannot be factored; {}",
                    t.shape.len(),
                    t.dtype,
                    if o.skip_undecomposable {
                        "skipped"
                    } else {
                        "saved whole"
                    }
                ));
            }
            if !o.skip_undecomposable {
                if !to_save.contains(&key) {
                    to_save.push(key.clone());
                }
                planned.push(Planned {
                    name: name.to_string(),
                    action: whole(),
                });
            }
        }
    }
    // The base must have every factored tensor, in the same shape.
    for p in &planned {
        let Action::Factor { weight, bias, .. } = &p.action else {
            continue;
        };
        for t in std::iter::once(&**weight).chain(bias.as_deref()) {
            let Some(b) = base.tensor(&t.name) else {
                return Err(ExtractError::Tensor {
                    path: base.path().to_path_buf(),
                    tensor: t.name.clone(),
                    msg: format!(
                        "is in the fine-tune {} but not in the base",
                        model.path().display()
                    ),
                });
            };
            if b.shape != t.shape {
                return Err(ExtractError::Tensor {
                    path: base.path().to_path_buf(),
                    tensor: t.name.clone(),
                    msg: format!(
                        "has shape {:?} in the base but {:?} in the fine-tune {}",
                        b.shape,
                        t.shape,
                        model.path().display()
                    ),
                });
            }
            if !b.dtype.is_mergeable() {
                return Err(ExtractError::Tensor {
                    path: base.path().to_path_buf(),
                    tensor: t.name.clone(),
                    msg: format!("is {}, not a float type", b.dtype),
                });
            }
        }
    }
    Ok((planned, to_save, warnings))
}

/// One factored module, ready to write: `A` and `B` (and the bias delta)
/// as bytes of `dtype`.
struct Factors {
    name: String,
    embedding: bool,
    dtype: Dtype,
    rank: usize,
    a_shape: [usize; 2],
    b_shape: [usize; 2],
    a: Vec<u8>,
    b: Vec<u8>,
    bias: Option<(Vec<usize>, Vec<u8>)>,
}

fn to_bytes(dtype: Dtype, v: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; v.len() * dtype.size()];
    model::from_f32(dtype, v, &mut out)?;
    Ok(out)
}

/// `v` rounded to `dtype` and back (what a tensor of that dtype holds).
fn round_trip(dtype: Dtype, v: &mut [f32]) -> Result<()> {
    if dtype == Dtype::F32 || dtype == Dtype::F64 {
        return Ok(());
    }
    let bytes = to_bytes(dtype, v)?;
    model::to_f32(dtype, &bytes, v);
    Ok(())
}

/// A whole tensor of `m` as f32.
fn read(m: &Model, t: &TensorInfo) -> Result<Vec<f32>> {
    let mut v = vec![0f32; t.numel()];
    m.read_f32(t, 0, &mut v)?;
    Ok(v)
}

/// Factor one module (see the module docs). `delta` is `rows × cols`
/// row-major, already transposed for an embedding.
///
/// The SVD is faer's exact thin SVD in f32, as mergekit calls
/// `torch.linalg.svd(Δ.float(), full_matrices=False)` (not the randomized
/// `svd_lowrank`): the same decomposition, so the same numbers up to f32
/// rounding. A randomized range finder would be faster on large matrices
/// at a small, data-dependent cost in accuracy; parity comes first here.
fn factor(
    delta: &[f32],
    rows: usize,
    cols: usize,
    max_rank: usize,
    sv_epsilon: f64,
    distribute: bool,
) -> std::result::Result<(usize, Vec<f32>, Vec<f32>), String> {
    let m = Mat::<f32>::from_fn(rows, cols, |i, j| delta[i * cols + j]);
    let svd = m
        .thin_svd()
        .map_err(|e| format!("the SVD did not converge ({e:?})"))?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let k = s.nrows();
    let mut rank = max_rank.min(k);
    if sv_epsilon > 0.0 {
        let above = (0..k).filter(|&i| f64::from(s[i]) > sv_epsilon).count();
        rank = rank.min(above);
    }
    // A: rank × cols, B: rows × rank.
    let mut a = vec![0f32; rank * cols];
    let mut b = vec![0f32; rows * rank];
    for r in 0..rank {
        let sv = s[r];
        let (sa, sb) = if distribute {
            (sv.sqrt(), sv.sqrt())
        } else {
            (sv, 1.0)
        };
        for c in 0..cols {
            a[r * cols + c] = sa * v[(c, r)];
        }
        for i in 0..rows {
            b[i * rank + r] = u[(i, r)] * sb;
        }
    }
    Ok((rank, a, b))
}

/// `‖exact − B·A‖_F` and `‖exact‖_F`, with `B·A` (`rows × cols`) computed
/// by faer and the sums in f64.
fn residual(
    exact: &[f64],
    a: &[f32],
    b: &[f32],
    rows: usize,
    cols: usize,
    rank: usize,
) -> (f64, f64) {
    let norm = exact.iter().map(|x| x * x).sum::<f64>().sqrt();
    if rank == 0 {
        return (norm, norm);
    }
    let am = Mat::<f32>::from_fn(rank, cols, |i, j| a[i * cols + j]);
    let bm = Mat::<f32>::from_fn(rows, rank, |i, j| b[i * rank + j]);
    let p = &bm * &am;
    let mut err = 0f64;
    for i in 0..rows {
        for j in 0..cols {
            let d = exact[i * cols + j] - f64::from(p[(i, j)]);
            err += d * d;
        }
    }
    (err.sqrt(), norm)
}

fn module_factors(
    o: &Options,
    model: &Model,
    base: &Model,
    name: &str,
    weight: &TensorInfo,
    bias: Option<&TensorInfo>,
    embedding: bool,
) -> Result<(Factors, ModuleReport)> {
    let bt = base
        .tensor(&weight.name)
        .expect("planned against the base")
        .clone();
    let dtype = promote(weight.dtype, bt.dtype);
    let ft = read(model, weight)?;
    let bv = read(base, &bt)?;
    let (r0, c0) = (weight.shape[0], weight.shape[1]);
    // The exact task vector (for the error), and the one mergekit factors:
    // rounded to the promoted dtype, as torch subtracts.
    let exact: Vec<f64> = ft
        .iter()
        .zip(&bv)
        .map(|(f, b)| f64::from(*f) - f64::from(*b))
        .collect();
    let mut delta: Vec<f32> = ft.iter().zip(&bv).map(|(f, b)| f - b).collect();
    drop((ft, bv));
    round_trip(dtype, &mut delta)?;
    let (rows, cols, exact) = if embedding {
        // Δᵀ: dim × vocab.
        let mut t = vec![0f32; delta.len()];
        let mut te = vec![0f64; delta.len()];
        for i in 0..r0 {
            for j in 0..c0 {
                t[j * r0 + i] = delta[i * c0 + j];
                te[j * r0 + i] = exact[i * c0 + j];
            }
        }
        delta = t;
        (c0, r0, te)
    } else {
        (r0, c0, exact)
    };
    if delta.iter().any(|x| !x.is_finite()) {
        return Err(ExtractError::Tensor {
            path: model.path().to_path_buf(),
            tensor: weight.name.clone(),
            msg: "fine-tune minus base holds NaN or infinite values".into(),
        });
    }
    let (rank, mut a, mut b) = factor(
        &delta,
        rows,
        cols,
        o.max_rank,
        o.sv_epsilon,
        o.distribute_scale,
    )
    .map_err(|msg| ExtractError::Tensor {
        path: model.path().to_path_buf(),
        tensor: weight.name.clone(),
        msg,
    })?;
    drop(delta);
    round_trip(dtype, &mut a)?;
    round_trip(dtype, &mut b)?;
    let (err, norm) = residual(&exact, &a, &b, rows, cols, rank);
    let bias = match bias {
        None => None,
        Some(t) => {
            let bb = base.tensor(&t.name).expect("planned against the base");
            let d = promote(t.dtype, bb.dtype);
            let fv = read(model, t)?;
            let bv = read(base, bb)?;
            let delta: Vec<f32> = fv.iter().zip(&bv).map(|(f, b)| f - b).collect();
            Some((t.shape.clone(), to_bytes(d, &delta)?))
        }
    };
    let report = ModuleReport {
        name: name.to_string(),
        rank,
        embedding,
        norm,
        error: if norm > 0.0 { err / norm } else { 0.0 },
    };
    let f = Factors {
        name: name.to_string(),
        embedding,
        dtype,
        rank,
        a_shape: [rank, cols],
        b_shape: [rows, rank],
        a: to_bytes(dtype, &a)?,
        b: to_bytes(dtype, &b)?,
        bias,
    };
    Ok((f, report))
}

/// Extract a LoRA adapter from `o.model` over `o.base` into `o.out`,
/// calling `progress` as it goes and stopping (with nothing written) when
/// `cancel` is set.
///
/// Hub names must already be in the Hugging Face cache (the CLI downloads
/// them first), as for [`Model::open`].
pub fn run(o: &Options, progress: &mut dyn FnMut(Event), cancel: &AtomicBool) -> Result<Report> {
    let started = Instant::now();
    check_options(o)?;
    let inputs = [PathBuf::from(&o.model), PathBuf::from(&o.base)];
    model::check_destination(&o.out, &inputs, o.force)?;
    let _lock = OutputLock::acquire(&o.out)?;
    let model = Model::open(Path::new(&o.model))?;
    let base = Model::open(Path::new(&o.base))?;
    let (planned, modules_to_save, mut warnings) = plan(o, &model, &base)?;
    let total = planned
        .iter()
        .filter(|p| matches!(p.action, Action::Factor { .. }))
        .count();
    if total == 0 {
        return Err(ExtractError::Options(format!(
            "no module of {} is left to factor (check --include-regex, --exclude-regex and \
             --save-module)",
            model.path().display()
        )));
    }
    let saved: Vec<TensorInfo> = planned
        .iter()
        .flat_map(|p| match &p.action {
            Action::Save(v) => v.clone(),
            Action::Factor { .. } => Vec::new(),
        })
        .collect();
    progress(Event::Started {
        modules: total,
        saved: saved.len(),
    });
    let mut factors = Vec::with_capacity(total);
    let mut reports = Vec::with_capacity(total);
    for p in &planned {
        let Action::Factor {
            weight,
            bias,
            embedding,
        } = &p.action
        else {
            continue;
        };
        if cancel.load(Ordering::Relaxed) {
            return Err(ExtractError::Cancelled);
        }
        let (f, r) = module_factors(
            o,
            &model,
            &base,
            &p.name,
            weight,
            bias.as_deref(),
            *embedding,
        )?;
        progress(Event::Module {
            name: p.name.clone(),
            done: reports.len() + 1,
            total,
            rank: r.rank,
            error: r.error,
        });
        factors.push(f);
        reports.push(r);
    }
    let rank = reports.iter().map(|r| r.rank).max().unwrap_or(0);
    if rank == 0 {
        return Err(ExtractError::Options(format!(
            "every singular value is at or below --sv-epsilon {}: nothing to extract",
            o.sv_epsilon
        )));
    }
    let dropped: Vec<&str> = reports
        .iter()
        .filter(|r| r.rank == 0)
        .map(|r| r.name.as_str())
        .collect();
    if !dropped.is_empty() {
        warnings.push(format!(
            "{} module(s) kept no singular value above --sv-epsilon and are left out of the \
             adapter (their delta is zero): {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(ExtractError::Cancelled);
    }
    progress(Event::Writing);
    let (num, den) = reports.iter().fold((0f64, 0f64), |(n, d), r| {
        let e = r.error * r.norm;
        (n + e * e, d + r.norm * r.norm)
    });
    let error = if den > 0.0 { (num / den).sqrt() } else { 0.0 };

    // The output's tensors, then their data.
    let mut tensors = Vec::new();
    let mut has_bias = false;
    for f in factors.iter().filter(|f| f.rank > 0) {
        let (ka, kb) = names(&f.name, f.embedding);
        tensors.push(OutputTensor {
            name: ka,
            dtype: f.dtype,
            shape: f.a_shape.to_vec(),
        });
        tensors.push(OutputTensor {
            name: kb,
            dtype: f.dtype,
            shape: f.b_shape.to_vec(),
        });
        if let Some((shape, _)) = &f.bias {
            has_bias = true;
            tensors.push(OutputTensor {
                name: format!("{PREFIX}{}.lora_B.bias", f.name),
                dtype: f.dtype,
                shape: shape.clone(),
            });
        }
    }
    for t in &saved {
        tensors.push(OutputTensor {
            name: format!("{PREFIX}{}", t.name),
            dtype: t.dtype,
            shape: t.shape.clone(),
        });
    }
    let opts = model::WriterOptions {
        force: o.force,
        inputs: inputs.to_vec(),
        sync: o.sync,
        ..model::WriterOptions::default()
    };
    let writer = model::Writer::create_adapter(&o.out, tensors, &opts)?;
    let mut index = 0;
    for f in factors.iter().filter(|f| f.rank > 0) {
        writer.write_raw(index, 0, &f.a)?;
        writer.write_raw(index + 1, 0, &f.b)?;
        index += 2;
        if let Some((_, bytes)) = &f.bias {
            writer.write_raw(index, 0, bytes)?;
            index += 1;
        }
    }
    drop(factors);
    let mut buf = Vec::new();
    for t in &saved {
        // In chunks of rows, raw bytes (a `model+adapter` fine-tune gives
        // its adapted bytes here too).
        let step = (crate::engine::CHUNK_ELEMS * t.dtype.size()).max(1);
        let mut at = 0;
        while at < t.nbytes() {
            if cancel.load(Ordering::Relaxed) {
                return Err(ExtractError::Cancelled);
            }
            let n = step.min(t.nbytes() - at);
            buf.resize(n, 0);
            model.read_raw(t, at, &mut buf)?;
            writer.write_raw(index, at, &buf)?;
            at += n;
        }
        index += 1;
    }
    let config = adapter_config(o, rank, &reports, &modules_to_save, has_bias);
    writer.add_file(
        model::lora::ADAPTER_CONFIG,
        &serde_json::to_vec_pretty(&config).map_err(|e| ExtractError::Options(e.to_string()))?,
    )?;
    let record = record(o, rank, error, &reports, &modules_to_save, &warnings);
    writer.add_file(
        model::EXTRACT_FILE,
        &serde_json::to_vec_pretty(&record).map_err(|e| ExtractError::Options(e.to_string()))?,
    )?;
    writer.add_file(model::CARD_FILE, card(o, rank, error).as_bytes())?;
    if cancel.load(Ordering::Relaxed) {
        return Err(ExtractError::Cancelled);
    }
    let out = writer.finish()?;
    Ok(Report {
        out,
        modules: reports,
        saved: saved.iter().map(|t| t.name.clone()).collect(),
        modules_to_save,
        rank,
        error,
        warnings,
        elapsed: started.elapsed(),
    })
}

/// The adapter tensor names of a module's A and B, as PEFT saves them.
fn names(module: &str, embedding: bool) -> (String, String) {
    if embedding {
        (
            format!("{PREFIX}{module}.lora_embedding_A"),
            format!("{PREFIX}{module}.lora_embedding_B"),
        )
    } else {
        (
            format!("{PREFIX}{module}.lora_A.weight"),
            format!("{PREFIX}{module}.lora_B.weight"),
        )
    }
}

/// `adapter_config.json` with the keys mergekit writes. A module whose
/// rank differs from `r` gets `rank_pattern` and `alpha_pattern` entries
/// (alpha = rank, so every scale is 1). With bias deltas, `lora_bias` is
/// set so that PEFT applies them (mergekit writes the tensors without it).
fn adapter_config(
    o: &Options,
    rank: usize,
    reports: &[ModuleReport],
    to_save: &[String],
    has_bias: bool,
) -> serde_json::Value {
    let kept = reports.iter().filter(|r| r.rank > 0);
    let mut targets: Vec<String> = kept.clone().map(|r| last(&r.name).to_string()).collect();
    targets.sort();
    targets.dedup();
    let pattern: serde_json::Map<String, serde_json::Value> = kept
        .filter(|r| r.rank != rank)
        .map(|r| (r.name.clone(), r.rank.into()))
        .collect();
    let mut c = serde_json::json!({
        "base_model_name_or_path": o.base,
        "peft_type": "LORA",
        "use_rslora": false,
        "target_modules": targets,
        "modules_to_save": to_save,
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": rank,
        "rank_pattern": pattern.clone(),
        "alpha_pattern": pattern,
        "lora_dropout": 0.0,
        "fan_in_fan_out": false,
        "inference_mode": true,
    });
    if has_bias {
        c["lora_bias"] = true.into();
    }
    c
}

/// `smelt-extract.json`: the extraction's inputs, settings and errors.
fn record(
    o: &Options,
    rank: usize,
    error: f64,
    reports: &[ModuleReport],
    to_save: &[String],
    warnings: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "smelt_version": env!("CARGO_PKG_VERSION"),
        "model": o.model,
        "base": o.base,
        "max_rank": o.max_rank,
        "sv_epsilon": o.sv_epsilon,
        "distribute_scale": o.distribute_scale,
        "embed_lora": o.embed_lora,
        "include_regex": o.include,
        "exclude_regex": o.exclude,
        "skip_undecomposable": o.skip_undecomposable,
        "modules_to_save": to_save,
        "r": rank,
        "relative_error": error,
        "warnings": warnings,
        "modules": reports.iter().map(|r| serde_json::json!({
            "module": r.name,
            "rank": r.rank,
            "embedding": r.embedding,
            "norm": r.norm,
            "relative_error": r.error,
        })).collect::<Vec<_>>(),
    })
}

fn card(o: &Options, rank: usize, error: f64) -> String {
    format!(
        "---\nbase_model: {base}\nlibrary_name: peft\ntags:\n- smelt\n- lora\n---\n\n\
         # LoRA extracted by smelt\n\n\
         A rank-{rank} LoRA adapter extracted with `smelt extract-lora` from `{model}` over \
         `{base}`. Relative reconstruction error of the factored modules: {error:.4}. \
         Per-module ranks and errors are in `{rec}`.\n",
        base = o.base,
        model = o.model,
        rec = model::EXTRACT_FILE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_recovers_a_low_rank_matrix() {
        // Δ = x·yᵀ + 2·p·qᵀ, rank 2, 5 × 4.
        let (rows, cols) = (5, 4);
        let x = [1.0f32, -2.0, 0.5, 3.0, 1.5];
        let y = [0.3f32, 1.0, -1.0, 2.0];
        let p = [0.0f32, 1.0, 1.0, -1.0, 2.0];
        let q = [1.0f32, 0.0, 2.0, -0.5];
        let mut d = vec![0f32; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                d[i * cols + j] = x[i] * y[j] + 2.0 * p[i] * q[j];
            }
        }
        for distribute in [true, false] {
            let (rank, a, b) = factor(&d, rows, cols, 8, 1e-4, distribute).unwrap();
            assert_eq!(rank, 2, "epsilon drops the zero singular values");
            let exact: Vec<f64> = d.iter().map(|&v| f64::from(v)).collect();
            let (err, norm) = residual(&exact, &a, &b, rows, cols, rank);
            assert!(err / norm < 1e-6, "{}", err / norm);
        }
        let (rank, ..) = factor(&d, rows, cols, 1, 0.0, true).unwrap();
        assert_eq!(rank, 1, "max_rank caps the rank");
    }

    #[test]
    fn embeddings_and_heads_by_name() {
        assert!(is_embedding_name("model.embed_tokens.weight"));
        assert!(is_embedding_name("transformer.wte.weight"));
        assert!(!is_embedding_name("lm_head.weight"));
        assert!(is_head("lm_head.weight"));
        assert!(!is_head("model.layers.0.mlp.up_proj.weight"));
    }
}
