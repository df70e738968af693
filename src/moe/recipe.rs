//! The `mergekit-moe` YAML recipe, read with line numbers.
//!
//! mergekit 0.1.5's `MoEMergeConfig` accepts `base_model`, `experts`
//! (each `source_model`, `positive_prompts`, `negative_prompts`,
//! `noise_scale`, `residual_scale`), `gate_mode`, `dtype`,
//! `experts_per_token`, `shared_experts` (entries as `experts`) and
//! `architecture`. pydantic drops any other key without a word; smelt
//! refuses it, naming the key and its line, so a recipe never means
//! something other than what it says. `tokenizer_source`, `tokenizer` and
//! `chat_template` get a pointed message: mergekit-moe has none of them
//! (it always saves the base model's tokenizer).

use super::MoeError;
use crate::model::Dtype;
use crate::recipe::node::{self, Kind, Node};
use std::path::{Path, PathBuf};

/// How the router (gate) weights are made: mergekit's `gate_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateMode {
    /// Normal draws (mergekit: `torch.randn`), seeded.
    Random,
    /// Uniform draws in `[-1/sqrt(hidden), 1/sqrt(hidden)]` (torch's
    /// `nn.Linear` initialisation), seeded.
    UniformRandom,
    /// The normalised sum of the base model's token embeddings of each
    /// expert's prompts, the same for every layer.
    CheapEmbed,
    /// Hidden states of the base model on the prompts (`hidden`,
    /// `hidden_avg`, `hidden_last`): needs a forward pass, which smelt
    /// does not have; refused when the recipe is read.
    Hidden,
}

impl GateMode {
    /// The recipe's spelling.
    pub fn name(self) -> &'static str {
        match self {
            GateMode::Random => "random",
            GateMode::UniformRandom => "uniform_random",
            GateMode::CheapEmbed => "cheap_embed",
            GateMode::Hidden => "hidden",
        }
    }
    /// Whether the gates are random draws.
    pub fn is_random(self) -> bool {
        matches!(self, GateMode::Random | GateMode::UniformRandom)
    }
}

/// A model named in the recipe.
#[derive(Clone, Debug)]
pub struct ModelRef {
    /// As written.
    pub written: String,
    /// Resolved against the recipe's folder (or a hub name, as written).
    pub path: PathBuf,
    /// The recipe line it is on.
    pub line: usize,
}

/// One entry of `experts` or `shared_experts`.
#[derive(Clone, Debug)]
pub struct Expert {
    /// `source_model`.
    pub source: ModelRef,
    /// `positive_prompts` (empty when absent).
    pub positive: Vec<String>,
    /// `negative_prompts` (empty when absent).
    pub negative: Vec<String>,
    /// `noise_scale`: seeded normal noise of this standard deviation added
    /// to the expert's MLP weights.
    pub noise_scale: Option<f64>,
    /// `residual_scale`: the expert's `down_proj` multiplied by this.
    pub residual_scale: Option<f64>,
    /// The line the entry starts on.
    pub line: usize,
}

/// A `mergekit-moe` recipe.
#[derive(Clone, Debug)]
pub struct MoeRecipe {
    /// The recipe file.
    pub path: PathBuf,
    /// `base_model`: attention, norms and embeddings come from it, and its
    /// config and tokenizer.
    pub base: ModelRef,
    /// `experts`, in order (expert `i` is `experts.i` in the output).
    pub experts: Vec<Expert>,
    /// `shared_experts` (Qwen2-MoE takes exactly one).
    pub shared_experts: Vec<Expert>,
    /// `gate_mode` (mergekit's default is `hidden`).
    pub gate_mode: GateMode,
    /// Line of `gate_mode` (0 when absent).
    pub gate_mode_line: usize,
    /// `dtype`, when given.
    pub dtype: Option<Dtype>,
    /// `experts_per_token` (default 2).
    pub experts_per_token: usize,
    /// `architecture`: a prefix of an output architecture's name
    /// (`Mixtral`, `Qwen MoE`, `Qwen3 MoE`), case-insensitive.
    pub architecture: Option<String>,
    /// Line of `architecture`.
    pub architecture_line: usize,
}

fn bad(path: &Path, line: usize, msg: impl Into<String>) -> MoeError {
    MoeError::Recipe {
        path: path.to_path_buf(),
        line,
        msg: msg.into(),
    }
}

const TOP_KEYS: &[&str] = &[
    "base_model",
    "experts",
    "gate_mode",
    "dtype",
    "experts_per_token",
    "shared_experts",
    "architecture",
];
const EXPERT_KEYS: &[&str] = &[
    "source_model",
    "positive_prompts",
    "negative_prompts",
    "noise_scale",
    "residual_scale",
];

/// Why a key is refused: a pointed reason for keys of other mergekit
/// tools, else the list of keys that are accepted.
fn unknown_key(key: &str, valid: &[&str]) -> String {
    match key {
        "tokenizer_source" | "tokenizer" | "chat_template" => format!(
            "unknown key `{key}`: mergekit-moe 0.1.5 has no `{key}` (it always saves the base \
             model's tokenizer; mergekit drops the key silently, smelt refuses it)"
        ),
        "merge_method" | "models" | "slices" | "parameters" | "base_model_config" => format!(
            "unknown key `{key}`: this is a `smelt merge` (mergekit-yaml) key, not a \
             mergekit-moe one"
        ),
        _ => format!(
            "unknown key `{key}` (mergekit-moe 0.1.5 accepts: {})",
            valid.join(", ")
        ),
    }
}

impl MoeRecipe {
    /// Read and check a recipe file. Paths in it are relative to its
    /// folder.
    pub fn load(path: &Path) -> Result<MoeRecipe, MoeError> {
        let text = std::fs::read_to_string(path).map_err(|e| MoeError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        Self::parse(&text, path, dir)
    }

    /// Read recipe text as if it were the file `path` in folder `dir`.
    pub fn parse(text: &str, path: &Path, dir: &Path) -> Result<MoeRecipe, MoeError> {
        let root = node::parse_yaml(text).map_err(|(line, msg)| bad(path, line, msg))?;
        let Kind::Map(entries) = &root.kind else {
            return Err(bad(
                path,
                root.line,
                format!(
                    "a mergekit-moe recipe is a table of keys, not {}",
                    root.type_name()
                ),
            ));
        };
        let mut base = None;
        let mut experts = None;
        let mut shared = Vec::new();
        let mut gate_mode = (GateMode::Hidden, 0usize);
        let mut dtype = None;
        let mut per_token = 2usize;
        let mut architecture = (None, 0usize);
        for (key, kline, v) in entries {
            let line = if v.line > 0 { v.line } else { *kline };
            match key.as_str() {
                "base_model" => base = Some(model_ref(path, dir, v, *kline)?),
                "experts" => experts = Some(expert_list(path, dir, v, "experts", *kline)?),
                "shared_experts" => {
                    if !matches!(v.kind, Kind::Null) {
                        shared = expert_list(path, dir, v, "shared_experts", *kline)?;
                    }
                }
                "gate_mode" => {
                    let s = string(path, v, "gate_mode", *kline)?;
                    let mode = match s.as_str() {
                        "random" => GateMode::Random,
                        "uniform_random" => GateMode::UniformRandom,
                        "cheap_embed" => GateMode::CheapEmbed,
                        "hidden" | "hidden_avg" | "hidden_last" => GateMode::Hidden,
                        _ => {
                            return Err(bad(
                                path,
                                line,
                                format!(
                                    "gate_mode `{s}` is not one of hidden, hidden_avg, \
                                     hidden_last, cheap_embed, random, uniform_random"
                                ),
                            ))
                        }
                    };
                    gate_mode = (mode, line);
                }
                "dtype" => {
                    if !matches!(v.kind, Kind::Null) {
                        let s = string(path, v, "dtype", *kline)?;
                        dtype = Some(
                            crate::recipe::parse_dtype(&s)
                                .map_err(|m| bad(path, line, format!("dtype: {m}")))?,
                        );
                    }
                }
                "experts_per_token" => {
                    per_token = match v.kind {
                        Kind::Int(i) if i >= 1 => i as usize,
                        Kind::Int(_) => {
                            return Err(bad(path, line, "experts_per_token must be 1 or more"))
                        }
                        _ => {
                            return Err(bad(
                                path,
                                line,
                                format!(
                                    "experts_per_token must be an integer, not {}",
                                    v.type_name()
                                ),
                            ))
                        }
                    }
                }
                "architecture" => {
                    if !matches!(v.kind, Kind::Null) {
                        architecture = (Some(string(path, v, "architecture", *kline)?), line);
                    }
                }
                _ => return Err(bad(path, *kline, unknown_key(key, TOP_KEYS))),
            }
        }
        let Some(base) = base else {
            return Err(bad(path, root.line.max(1), "missing key `base_model`"));
        };
        let Some(experts) = experts else {
            return Err(bad(path, root.line.max(1), "missing key `experts`"));
        };
        let r = MoeRecipe {
            path: path.to_path_buf(),
            base,
            experts,
            shared_experts: shared,
            gate_mode: gate_mode.0,
            gate_mode_line: gate_mode.1,
            dtype,
            experts_per_token: per_token,
            architecture: architecture.0,
            architecture_line: architecture.1,
        };
        r.check()?;
        Ok(r)
    }

    /// mergekit's `is_bad_config` and what smelt cannot do.
    fn check(&self) -> Result<(), MoeError> {
        let path = &self.path;
        if self.gate_mode == GateMode::Hidden {
            let line = self.gate_mode_line;
            let how = if line == 0 {
                "gate_mode is absent, and mergekit's default is `hidden`"
            } else {
                "gate_mode `hidden` (and hidden_avg, hidden_last)"
            };
            return Err(bad(
                path,
                line,
                format!(
                    "{how}: it needs a forward pass of the base model on the prompts, which \
                     smelt cannot run yet; use `cheap_embed` (prompt embeddings) or `random`"
                ),
            ));
        }
        if self.experts.is_empty() {
            return Err(bad(path, 0, "`experts` is empty"));
        }
        if self.experts.len() < self.experts_per_token {
            return Err(bad(
                path,
                self.experts[0].line,
                format!(
                    "{} experts but experts_per_token is {}: there must be at least as many \
                     experts as experts per token",
                    self.experts.len(),
                    self.experts_per_token
                ),
            ));
        }
        if self.gate_mode == GateMode::Random {
            return Ok(());
        }
        // As mergekit: every mode but `random` needs prompts for every
        // expert, even uniform_random, which does not read them.
        for (i, e) in self.experts.iter().enumerate() {
            if e.positive.is_empty() {
                return Err(bad(
                    path,
                    e.line,
                    format!(
                        "expert {i} has no positive_prompts (gate_mode {} needs them for \
                         every expert)",
                        self.gate_mode.name()
                    ),
                ));
            }
        }
        let first = (&self.experts[0].positive, &self.experts[0].negative);
        if self.experts[1..]
            .iter()
            .all(|e| (&e.positive, &e.negative) == first)
        {
            return Err(bad(
                path,
                self.experts[0].line,
                "the positive and negative prompts are the same for every expert, so every \
                 gate would be the same: give each expert prompts of what it should get",
            ));
        }
        Ok(())
    }

    /// Every model the recipe reads: the base, the experts, the shared
    /// experts (with repeats).
    pub fn models(&self) -> Vec<&ModelRef> {
        std::iter::once(&self.base)
            .chain(self.experts.iter().map(|e| &e.source))
            .chain(self.shared_experts.iter().map(|e| &e.source))
            .collect()
    }
}

fn string(path: &Path, v: &Node, key: &str, kline: usize) -> Result<String, MoeError> {
    match &v.kind {
        Kind::Str(s) => Ok(s.clone()),
        _ => Err(bad(
            path,
            if v.line > 0 { v.line } else { kline },
            format!("{key} must be a string, not {}", v.type_name()),
        )),
    }
}

fn model_ref(path: &Path, dir: &Path, v: &Node, kline: usize) -> Result<ModelRef, MoeError> {
    let line = if v.line > 0 { v.line } else { kline };
    match &v.kind {
        Kind::Str(s) if !s.trim().is_empty() => Ok(ModelRef {
            written: s.clone(),
            path: crate::recipe::util::resolve_path(dir, s),
            line,
        }),
        Kind::Str(_) => Err(bad(path, line, "the model name is empty")),
        _ => Err(bad(
            path,
            line,
            format!(
                "a model is written as a path or hub name string (`org/name`, \
                 `path+lora`), not {}",
                v.type_name()
            ),
        )),
    }
}

fn prompts(path: &Path, v: &Node, key: &str, kline: usize) -> Result<Vec<String>, MoeError> {
    match &v.kind {
        Kind::Null => Ok(Vec::new()),
        Kind::List(items) => items.iter().map(|n| string(path, n, key, kline)).collect(),
        _ => Err(bad(
            path,
            if v.line > 0 { v.line } else { kline },
            format!("{key} must be a list of strings, not {}", v.type_name()),
        )),
    }
}

fn number(path: &Path, v: &Node, key: &str, kline: usize) -> Result<Option<f64>, MoeError> {
    match v.kind {
        Kind::Null => Ok(None),
        _ => match v.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(bad(
                path,
                if v.line > 0 { v.line } else { kline },
                format!("{key} must be a finite number, not {}", v.type_name()),
            )),
        },
    }
}

fn expert_list(
    path: &Path,
    dir: &Path,
    v: &Node,
    what: &str,
    kline: usize,
) -> Result<Vec<Expert>, MoeError> {
    let Kind::List(items) = &v.kind else {
        return Err(bad(
            path,
            if v.line > 0 { v.line } else { kline },
            format!("{what} must be a list of experts, not {}", v.type_name()),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Kind::Map(entries) = &item.kind else {
            return Err(bad(
                path,
                item.line,
                format!(
                    "each entry of {what} is a table with source_model, not {}",
                    item.type_name()
                ),
            ));
        };
        let mut source = None;
        let mut e = Expert {
            source: ModelRef {
                written: String::new(),
                path: PathBuf::new(),
                line: item.line,
            },
            positive: Vec::new(),
            negative: Vec::new(),
            noise_scale: None,
            residual_scale: None,
            line: item.line,
        };
        for (key, kl, val) in entries {
            match key.as_str() {
                "source_model" => source = Some(model_ref(path, dir, val, *kl)?),
                "positive_prompts" => e.positive = prompts(path, val, key, *kl)?,
                "negative_prompts" => e.negative = prompts(path, val, key, *kl)?,
                "noise_scale" => e.noise_scale = number(path, val, key, *kl)?,
                "residual_scale" => e.residual_scale = number(path, val, key, *kl)?,
                _ => return Err(bad(path, *kl, unknown_key(key, EXPERT_KEYS))),
            }
        }
        let Some(source) = source else {
            return Err(bad(
                path,
                item.line,
                format!("an entry of {what} has no source_model"),
            ));
        };
        if e.line == 0 {
            e.line = source.line;
        }
        e.source = source;
        out.push(e);
    }
    Ok(out)
}
