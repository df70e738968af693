//! Mixture-of-experts models assembled from dense models, as
//! `mergekit-moe` 0.1.5 builds them, from the same YAML recipe
//! ([`MoeRecipe`]).
//!
//! The base model gives the attention, norms, embeddings, LM head, config
//! and tokenizer; each expert gives its MLP (`gate_proj`, `up_proj`,
//! `down_proj`) to every layer; the routers come from the prompts
//! (`cheap_embed`) or seeded random draws ([`gates`]). The output
//! architecture is Mixtral, Qwen MoE (Qwen2-MoE) or Qwen3 MoE ([`arch`]).
//!
//! [`build`] plans every output tensor from the headers, then streams
//! each one through in bounded chunks (copied, stacked per expert, scaled
//! by `residual_scale`) into the atomic sharded writer: the output appears
//! whole or not at all, never over an existing folder without `force`, with
//! progress reported and a cancel flag checked between chunks.

pub mod arch;
pub mod gates;
pub mod recipe;

pub use arch::OutArch;
pub use recipe::{Expert, GateMode, ModelRef, MoeRecipe};

use crate::merge::rng::Stream;
use crate::model::{self, Dtype, Model, ModelError, OutputTensor, Writer, WriterOptions};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What can go wrong building a MoE model.
#[derive(Debug, thiserror::Error)]
pub enum MoeError {
    /// The recipe is at fault, at this line (0: the whole file).
    #[error("{}{}: {msg}", path.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
    Recipe {
        /// The recipe file.
        path: PathBuf,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The recipe file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A model does not fit the recipe (a missing tensor, a shape that
    /// differs, a missing tokenizer, an architecture that cannot be built).
    #[error("{0}")]
    Model(String),
    /// Reading an input or writing the output failed.
    #[error(transparent)]
    Io2(#[from] ModelError),
    /// Cancelled through the cancel flag; nothing was written.
    #[error("cancelled; nothing was written")]
    Cancelled,
}

impl MoeError {
    /// Whether the environment rather than the input is at fault (a full
    /// disk, a busy output).
    pub fn is_environment(&self) -> bool {
        match self {
            MoeError::Io2(e) => e.is_environment(),
            MoeError::Io { source, .. } => crate::fsutil::is_environment(source),
            _ => false,
        }
    }
}

/// How to build.
#[derive(Clone, Debug)]
pub struct Options {
    /// The output folder.
    pub out: PathBuf,
    /// Replace an existing smelt output there.
    pub force: bool,
    /// Seed of `random`/`uniform_random` gates and `noise_scale`.
    pub seed: u64,
    /// Maximum bytes per shard.
    pub shard_size: u64,
    /// fsync before publishing.
    pub sync: bool,
    /// Build even when every expert is the same model (mergekit's
    /// `--i-understand-this-is-not-useful-without-training`).
    pub allow_all_same: bool,
}

impl Options {
    /// Defaults for an output folder: seed 0, 5 GB shards, synced.
    pub fn new(out: impl Into<PathBuf>) -> Options {
        Options {
            out: out.into(),
            force: false,
            seed: 0,
            shard_size: model::DEFAULT_SHARD_SIZE,
            sync: true,
            allow_all_same: false,
        }
    }
}

/// Progress of a build: bytes of tensor data written of the total.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Bytes written so far.
    pub done: u64,
    /// Bytes to write.
    pub total: u64,
}

/// What a finished build wrote.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The output folder.
    pub out: PathBuf,
    /// The architecture built.
    pub arch: OutArch,
    /// Output tensors.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
    /// Experts per layer.
    pub experts: usize,
}

/// One source of an output tensor's elements, in order.
enum Part {
    /// A tensor of an input model, scaled and noised as its expert says.
    Tensor {
        model: usize,
        name: String,
        scale: Option<f32>,
        noise: Option<f32>,
    },
    /// `n` zeros.
    Zeros(usize),
    /// Computed values (the gates).
    Values(Vec<f32>),
}

struct Job {
    out: OutputTensor,
    parts: Vec<Part>,
}

fn model_err(msg: impl Into<String>) -> MoeError {
    MoeError::Model(msg.into())
}

/// Elements per chunk read and written.
const CHUNK: usize = 1 << 18;

/// The inputs opened, indexed as the recipe lists them: 0 the base, then
/// the experts, then the shared experts.
struct Inputs {
    models: Vec<Model>,
}

impl Inputs {
    fn open(r: &MoeRecipe) -> Result<Inputs, MoeError> {
        let mut models = Vec::new();
        for m in r.models() {
            let opened = Model::open(&m.path).map_err(|e| {
                model_err(format!(
                    "{}:{}: model `{}`: {e}",
                    r.path.display(),
                    m.line,
                    m.written
                ))
            })?;
            models.push(opened);
        }
        Ok(Inputs { models })
    }
}

fn config_usize(
    cfg: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    who: &Path,
) -> Result<usize, MoeError> {
    cfg.get(key)
        .and_then(serde_json::Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| model_err(format!("{}: config.json has no {key}", who.display())))
}

/// Pick the output architecture as mergekit does: those whose name starts
/// with `architecture` (any case), that take these models; Mixtral first.
fn select_arch(r: &MoeRecipe, types: &[String]) -> Result<OutArch, MoeError> {
    let wanted = r.architecture.as_deref().map(str::to_lowercase);
    let named: Vec<OutArch> = arch::ALL
        .into_iter()
        .filter(|a| {
            wanted
                .as_deref()
                .is_none_or(|w| a.name().to_lowercase().starts_with(w))
        })
        .collect();
    if named.is_empty() {
        let w = r.architecture.as_deref().unwrap_or_default();
        let msg = format!(
            "architecture `{w}` names no output architecture (Mixtral, DeepSeek MoE, Qwen MoE, \
             Qwen3 MoE)"
        );
        return Err(MoeError::Recipe {
            path: r.path.clone(),
            line: r.architecture_line,
            msg,
        });
    }
    let shared_prompts = r.shared_experts.iter().any(|e| !e.positive.is_empty());
    if shared_prompts && r.shared_experts.iter().any(|e| e.positive.is_empty()) {
        return Err(model_err(format!(
            "{}: give prompts to every shared expert or to none",
            r.path.display()
        )));
    }
    let mut why = Vec::new();
    for a in &named {
        match a.refuses(
            types,
            r.shared_experts.len(),
            shared_prompts,
            r.gate_mode.is_random(),
        ) {
            None => return Ok(*a),
            Some(w) => why.push(w),
        }
    }
    Err(model_err(format!(
        "{}: no output architecture can be built from these models: {}",
        r.path.display(),
        why.join("; ")
    )))
}

/// Build the MoE model `r` describes into `opts.out`. `progress` is called
/// from worker threads as data is written; `cancel` stops the build
/// between chunks (the partial output is removed).
pub fn build(
    r: &MoeRecipe,
    opts: &Options,
    progress: &(dyn Fn(Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<Summary, MoeError> {
    // The destination first: a refused output costs nothing.
    let input_paths: Vec<PathBuf> = r.models().iter().map(|m| m.path.clone()).collect();
    model::check_destination(&opts.out, &input_paths, opts.force)?;
    if r.gate_mode != GateMode::Random && !opts.allow_all_same {
        let first = &r.experts[0].source.path;
        if r.experts.len() > 1 && r.experts[1..].iter().all(|e| &e.source.path == first) {
            return Err(MoeError::Recipe {
                path: r.path.clone(),
                line: r.experts[0].line,
                msg: "every expert is the same model: the MoE would compute exactly what \
                      that model does at a higher cost (pass \
                      --i-understand-this-is-not-useful-without-training to build it \
                      anyway, e.g. to train it)"
                    .into(),
            });
        }
    }
    let inputs = Inputs::open(r)?;
    let models = &inputs.models;
    let base = &models[0];
    let base_cfg = base
        .config()
        .and_then(serde_json::Value::as_object)
        .cloned()
        .ok_or_else(|| {
            model_err(format!(
                "{}: the base model has no config.json",
                base.path().display()
            ))
        })?;
    let mut types = Vec::new();
    for m in models {
        let t = m
            .config()
            .and_then(|c| c.get("model_type"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                model_err(format!(
                    "{}: config.json has no model_type",
                    m.path().display()
                ))
            })?;
        types.push(t.to_string());
    }
    let out_arch = select_arch(r, &types)?;
    let bp = base.path();
    let layers = config_usize(&base_cfg, "num_hidden_layers", bp)?;
    let hidden = config_usize(&base_cfg, "hidden_size", bp)?;
    let heads = config_usize(&base_cfg, "num_attention_heads", bp)?;
    let kv_heads = base_cfg
        .get("num_key_value_heads")
        .and_then(serde_json::Value::as_u64)
        .map_or(heads, |v| v as usize);
    // The output dtype: the recipe's, else the base config's; without
    // either, each tensor keeps its own (and the gates are f32).
    let cfg_dtype = base_cfg
        .get("dtype")
        .or_else(|| base_cfg.get("torch_dtype"))
        .and_then(serde_json::Value::as_str)
        .and_then(|s| crate::recipe::parse_dtype(s).ok());
    let out_dtype = r.dtype.or(cfg_dtype);

    // Gates first (cheap, and cheap_embed is where prompts can fail). As
    // mergekit: shared experts get gates when they have prompts or the
    // gates are random (DeepSeek MoE's shared expert has neither prompts
    // nor a gate).
    let shared_gated =
        r.gate_mode.is_random() || r.shared_experts.iter().any(|e| !e.positive.is_empty());
    let gate_experts: Vec<&Expert> = r
        .experts
        .iter()
        .chain(r.shared_experts.iter().filter(|_| shared_gated))
        .collect();
    let gates = match r.gate_mode {
        GateMode::Random | GateMode::UniformRandom => gates::random(
            opts.seed,
            layers,
            gate_experts.len(),
            hidden,
            r.gate_mode == GateMode::UniformRandom,
        ),
        GateMode::CheapEmbed => {
            let vocab = config_usize(&base_cfg, "vocab_size", bp)?;
            let tok = gates::PromptTokenizer::load(base.local_path())?;
            gates::cheap_embed(base, &tok, &gate_experts, layers, vocab, hidden)?
        }
        GateMode::Hidden => {
            return Err(MoeError::Recipe {
                path: r.path.clone(),
                line: r.gate_mode_line,
                msg: "gate_mode hidden needs a forward pass of the base model, which smelt \
                      cannot run yet; use cheap_embed or random"
                    .into(),
            })
        }
    };

    let jobs = plan(
        r, out_arch, models, layers, hidden, heads, kv_heads, out_dtype, &gates,
    )?;
    let config = out_arch.config(
        &base_cfg,
        &r.models()[0].written,
        (r.experts.len(), r.shared_experts.len()),
        r.experts_per_token,
        out_dtype.and_then(crate::recipe::dtype_name),
    );
    if cancel.load(Ordering::Relaxed) {
        return Err(MoeError::Cancelled);
    }

    let wopts = WriterOptions {
        shard_size: opts.shard_size,
        force: opts.force,
        inputs: input_paths,
        metadata: vec![("format".into(), "pt".into())],
        sync: opts.sync,
    };
    let writer = Writer::create(
        &opts.out,
        jobs.iter().map(|j| j.out.clone()).collect(),
        &wopts,
    )?;
    let total: u64 = jobs
        .iter()
        .map(|j| j.out.dtype.nbytes(&j.out.shape).unwrap_or(0) as u64)
        .sum();
    let done = AtomicU64::new(0);
    progress(Progress { done: 0, total });
    jobs.par_iter().enumerate().try_for_each(|(index, job)| {
        write_job(models, &writer, index, job, opts.seed, cancel)?;
        let n = job.out.dtype.nbytes(&job.out.shape).unwrap_or(0) as u64;
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(Progress { done: d, total });
        Ok::<(), MoeError>(())
    })?;
    let mut text = serde_json::to_vec_pretty(&config).unwrap_or_default();
    text.push(b'\n');
    writer.add_file(model::CONFIG_FILE, &text)?;
    for f in model::COPIED_FILES {
        let p = base.local_path().join(f);
        if p.is_file() {
            writer.copy_file(&p)?;
        }
    }
    let recipe_text = std::fs::read(&r.path).map_err(|e| MoeError::Io {
        path: r.path.clone(),
        source: e,
    })?;
    writer.add_file(model::MOE_RECIPE_FILE, &recipe_text)?;
    if cancel.load(Ordering::Relaxed) {
        return Err(MoeError::Cancelled);
    }
    let out = writer.finish()?;
    Ok(Summary {
        out,
        arch: out_arch,
        tensors: jobs.len(),
        bytes: total,
        experts: r.experts.len(),
    })
}

/// Every output tensor and where its elements come from.
#[allow(clippy::too_many_arguments)]
fn plan(
    r: &MoeRecipe,
    out_arch: OutArch,
    models: &[Model],
    layers: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    out_dtype: Option<Dtype>,
    gates: &gates::Gates,
) -> Result<Vec<Job>, MoeError> {
    let base = &models[0];
    let mut jobs = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let dtype_of = |d: Dtype| out_dtype.unwrap_or(d);
    let copy = |jobs: &mut Vec<Job>, name: &str, out_name: String| -> bool {
        match base.tensor(name) {
            Some(t) => {
                jobs.push(Job {
                    out: OutputTensor {
                        name: out_name,
                        dtype: dtype_of(t.dtype),
                        shape: t.shape.clone(),
                    },
                    parts: vec![Part::Tensor {
                        model: 0,
                        name: name.to_string(),
                        scale: None,
                        noise: None,
                    }],
                });
                true
            }
            None => false,
        }
    };
    let missing = |m: usize, name: &str| {
        let which = if m == 0 {
            "the base model".to_string()
        } else {
            format!("model `{}`", r.models()[m].written)
        };
        model_err(format!(
            "{}: {which} ({}) has no tensor {name}",
            r.path.display(),
            models[m].path().display()
        ))
    };
    let embed = "model.embed_tokens.weight";
    if !copy(&mut jobs, embed, embed.into()) {
        return Err(missing(0, embed));
    }
    taken.insert(embed.to_string());
    for l in 0..layers {
        for (suffix, zeros) in out_arch.layer_tensors() {
            let name = format!("model.layers.{l}.{suffix}");
            if !copy(&mut jobs, &name, name.clone()) {
                if !*zeros {
                    return Err(missing(0, &name));
                }
                // Qwen MoE's attention biases: zeros of heads * (hidden /
                // heads), as mergekit makes them.
                let n = if suffix.starts_with("self_attn.q") {
                    heads
                } else {
                    kv_heads
                } * (hidden / heads.max(1));
                jobs.push(Job {
                    out: OutputTensor {
                        name: name.clone(),
                        dtype: out_dtype.unwrap_or(Dtype::F32),
                        shape: vec![n],
                    },
                    parts: vec![Part::Zeros(n)],
                });
            }
            taken.insert(name);
        }
    }
    for name in ["model.norm.weight", "lm_head.weight"] {
        if !copy(&mut jobs, name, name.into()) && name != "lm_head.weight" {
            return Err(missing(0, name));
        }
        taken.insert(name.to_string());
    }
    // A base tensor that is neither copied nor replaced by the experts
    // would be dropped (mergekit drops it silently): refused.
    for t in base.tensors() {
        let mlp = t.name.contains(".mlp.");
        if !taken.contains(&t.name) && !mlp && !t.name.ends_with("rotary_emb.inv_freq") {
            return Err(model_err(format!(
                "{}: the base model's tensor {} has no place in a {} model (mergekit would \
                 drop it); use a base of the architecture {} is built from",
                base.path().display(),
                t.name,
                out_arch.name(),
                out_arch.name()
            )));
        }
    }

    // The experts' MLPs.
    let n_exp = r.experts.len();
    let expert_models = |shared: bool| -> Vec<(usize, &Expert)> {
        if shared {
            r.shared_experts
                .iter()
                .enumerate()
                .map(|(i, e)| (1 + n_exp + i, e))
                .collect()
        } else {
            r.experts
                .iter()
                .enumerate()
                .map(|(i, e)| (1 + i, e))
                .collect()
        }
    };
    let part = |m: usize, e: &Expert, name: &str, residual: bool| -> Result<Part, MoeError> {
        if models[m].tensor(name).is_none() {
            return Err(missing(m, name));
        }
        Ok(Part::Tensor {
            model: m,
            name: name.to_string(),
            scale: if residual {
                e.residual_scale.map(|s| s as f32)
            } else {
                None
            },
            noise: e.noise_scale.map(|s| s as f32),
        })
    };
    let info = |m: usize, name: &str| -> Result<&model::TensorInfo, MoeError> {
        models[m].tensor(name).ok_or_else(|| missing(m, name))
    };
    for l in 0..layers {
        let pre = format!("model.layers.{l}.mlp");
        let projs = ["gate_proj", "up_proj", "down_proj"];
        // Every expert's three tensors, with shapes checked against the
        // first expert's.
        let all: Vec<(usize, &Expert)> = expert_models(false)
            .into_iter()
            .chain(expert_models(true))
            .collect();
        let (m0, _) = all[0];
        for p in projs {
            let name = format!("{pre}.{p}.weight");
            let first = info(m0, &name)?;
            for &(m, _) in &all[1..] {
                let t = info(m, &name)?;
                if t.shape != first.shape {
                    return Err(model_err(format!(
                        "{name}: model `{}` has shape {:?}, model `{}` {:?}: every expert's \
                         MLP must have the same shape",
                        r.models()[m0].written,
                        first.shape,
                        r.models()[m].written,
                        t.shape
                    )));
                }
            }
            if first.shape.len() != 2 {
                return Err(model_err(format!(
                    "{name} in `{}` is {:?}, not a matrix",
                    r.models()[m0].written,
                    first.shape
                )));
            }
        }
        if out_arch.stacks_experts() {
            let g = info(m0, &format!("{pre}.gate_proj.weight"))?.clone();
            let d = info(m0, &format!("{pre}.down_proj.weight"))?.clone();
            let mut gate_up = Vec::new();
            let mut down = Vec::new();
            for (m, e) in expert_models(false) {
                gate_up.push(part(m, e, &format!("{pre}.gate_proj.weight"), false)?);
                gate_up.push(part(m, e, &format!("{pre}.up_proj.weight"), false)?);
                down.push(part(m, e, &format!("{pre}.down_proj.weight"), true)?);
            }
            jobs.push(Job {
                out: OutputTensor {
                    name: format!("{pre}.experts.gate_up_proj"),
                    dtype: dtype_of(g.dtype),
                    shape: vec![n_exp, 2 * g.shape[0], g.shape[1]],
                },
                parts: gate_up,
            });
            jobs.push(Job {
                out: OutputTensor {
                    name: format!("{pre}.experts.down_proj"),
                    dtype: dtype_of(d.dtype),
                    shape: vec![n_exp, d.shape[0], d.shape[1]],
                },
                parts: down,
            });
        } else {
            let numbered = expert_models(false)
                .into_iter()
                .enumerate()
                .map(|(i, x)| (Some(i), x));
            let shared = expert_models(true).into_iter().map(|x| (None, x));
            for (i, (m, e)) in numbered.chain(shared) {
                for p in projs {
                    let src = format!("{pre}.{p}.weight");
                    let t = info(m, &src)?;
                    let out_name = match i {
                        Some(i) => format!("{pre}.experts.{i}.{p}.weight"),
                        None => format!("{pre}.{}.{p}.weight", out_arch.shared_expert()),
                    };
                    jobs.push(Job {
                        out: OutputTensor {
                            name: out_name,
                            dtype: dtype_of(t.dtype),
                            shape: t.shape.clone(),
                        },
                        parts: vec![part(m, e, &src, p == "down_proj")?],
                    });
                }
            }
        }
    }
    // The routers.
    let gate_dtype = out_dtype.unwrap_or(Dtype::F32);
    for (l, g) in gates.iter().enumerate() {
        jobs.push(Job {
            out: OutputTensor {
                name: format!("model.layers.{l}.mlp.gate.weight"),
                dtype: gate_dtype,
                shape: vec![n_exp, hidden],
            },
            parts: vec![Part::Values(g[..n_exp * hidden].to_vec())],
        });
        let n_shared = r.shared_experts.len();
        if out_arch.gates_shared_experts() && n_shared > 0 {
            jobs.push(Job {
                out: OutputTensor {
                    name: format!("model.layers.{l}.mlp.shared_expert_gate.weight"),
                    dtype: gate_dtype,
                    shape: vec![n_shared, hidden],
                },
                parts: vec![Part::Values(g[n_exp * hidden..].to_vec())],
            });
        }
    }
    Ok(jobs)
}

/// Stream one output tensor's parts into the writer, chunk by chunk.
fn write_job(
    models: &[Model],
    writer: &Writer,
    index: usize,
    job: &Job,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<(), MoeError> {
    let out_dt = job.out.dtype;
    let mut at = 0usize; // elements written so far
    let mut buf = Vec::new();
    for (pi, part) in job.parts.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(MoeError::Cancelled);
        }
        match part {
            Part::Values(v) => {
                writer.write_f32(index, at, v)?;
                at += v.len();
            }
            Part::Zeros(n) => {
                let zeros = vec![0f32; (*n).min(CHUNK)];
                let mut k = 0;
                while k < *n {
                    let len = (*n - k).min(CHUNK);
                    writer.write_f32(index, at + k, &zeros[..len])?;
                    k += len;
                }
                at += n;
            }
            Part::Tensor {
                model,
                name,
                scale,
                noise,
            } => {
                let m = &models[*model];
                let t = m.tensor(name).ok_or_else(|| {
                    model_err(format!("{}: no tensor {name}", m.path().display()))
                })?;
                let n = t.numel();
                // Same dtype, nothing changed: the bytes as they are.
                if t.dtype == out_dt && scale.is_none() && noise.is_none() && m.adapter().is_none()
                {
                    let size = out_dt.size();
                    let mut raw = vec![0u8; CHUNK.min(n.max(1)) * size];
                    let mut k = 0;
                    while k < n {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(MoeError::Cancelled);
                        }
                        let len = (n - k).min(CHUNK);
                        let bytes = &mut raw[..len * size];
                        m.read_raw(t, k * size, bytes)?;
                        writer.write_raw(index, (at + k) * size, bytes)?;
                        k += len;
                    }
                    at += n;
                    continue;
                }
                if !t.dtype.is_mergeable() || !out_dt.is_mergeable() {
                    return Err(model_err(format!(
                        "{}: tensor {name} is {}, which cannot be converted to {out_dt}",
                        m.path().display(),
                        t.dtype
                    )));
                }
                let stream = Stream::new(seed, &format!("moe.noise.{}", job.out.name), pi);
                buf.resize(CHUNK.min(n.max(1)), 0f32);
                let mut k = 0;
                while k < n {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(MoeError::Cancelled);
                    }
                    let len = (n - k).min(CHUNK);
                    let chunk = &mut buf[..len];
                    m.read_f32(t, k, chunk)?;
                    // mergekit computes in the input's dtype: each step is
                    // rounded to it.
                    let round = |x: &mut [f32]| -> Result<(), MoeError> {
                        if t.dtype != Dtype::F32 && t.dtype != Dtype::F64 {
                            let mut b = vec![0u8; x.len() * t.dtype.size()];
                            model::from_f32(t.dtype, x, &mut b)?;
                            model::to_f32(t.dtype, &b, x);
                        }
                        Ok(())
                    };
                    if let Some(s) = noise {
                        for (j, x) in chunk.iter_mut().enumerate() {
                            *x += gates::normal(&stream, k + j) * s;
                        }
                        round(chunk)?;
                    }
                    if let Some(s) = scale {
                        for x in chunk.iter_mut() {
                            *x *= s;
                        }
                        round(chunk)?;
                    }
                    writer.write_f32(index, at + k, chunk)?;
                    k += len;
                }
                at += n;
            }
        }
    }
    Ok(())
}
