//! LoRA adapters as inputs: `model+adapter`, mergekit's syntax, where the
//! adapter is a PEFT folder (`adapter_config.json` and
//! `adapter_model.safetensors`).
//!
//! Nothing merged is written anywhere: the adapter is opened beside the
//! model, and each tensor it touches becomes *virtual*, its values computed
//! per read window as `W + scale · B·A` (rows of the window only: at most
//! the window's rows of one factor and the whole of the other, which is
//! `rank` × a row). Then, as PEFT's `merge_and_unload` followed by
//! `save_pretrained` does, the sum is rounded to the base tensor's dtype:
//! mergekit 0.1.5 merges a LoRA that way into a copy of the model before
//! merging, so a bf16 base stays bf16.
//!
//! What PEFT writes, and what each piece means here (read from PEFT's
//! source and from adapters it saved):
//! - `base_model.model.<module>.lora_A.weight` (`r × in`) and
//!   `.lora_B.weight` (`out × r`): a delta `B·A` for `<module>.weight`
//!   (`out × in`). With `fan_in_fan_out` (GPT-2's Conv1D, whose weight is
//!   `in × out`) the delta is `(B·A)ᵀ`.
//! - `base_model.model.<module>.lora_embedding_A` (`r × vocab`) and
//!   `lora_embedding_B` (`dim × r`): an embedding's delta, always
//!   `(B·A)ᵀ` (`vocab × dim`).
//! - any other `base_model.model.<name>` (`modules_to_save`), or
//!   `<module>.base_layer.weight` (PEFT saves an adapted embedding's base
//!   weight): replaces the model's tensor `<name>` whole; a LoRA delta on
//!   the same module is added on top.
//! - `base_model.model.<module>.lora_B.bias` (`out`), with `lora_bias:
//!   true`: a delta `scale · b` for `<module>.bias`, as PEFT's merge adds
//!   it (without `lora_bias`, PEFT would leave such a tensor unread, so it
//!   is refused rather than guessed at).
//! - scale = `lora_alpha / r`, or `lora_alpha / sqrt(r)` with `use_rslora`;
//!   `rank_pattern` and `alpha_pattern` override `r` and `lora_alpha` for
//!   the modules whose names they match (PEFT's rule: the first key `k`
//!   for which the regex `(.*\.)?(k)$` matches the whole module name).
//!
//! Settings that would change the result and are not implemented (DoRA,
//! layer replication, other PEFT types, ...) are refused with the key
//! named; none is ignored.

use super::reader::{Model, TensorInfo};
use super::{ModelError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The adapter's configuration file in a PEFT folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter's weights in a PEFT folder.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The prefix PEFT puts before every module name it saves.
const PEFT_PREFIX: &str = "base_model.model.";

/// Split a model reference at mergekit's `+`: `model+adapter` gives the two
/// halves, anything else `None`. A reference with more than one `+` is not
/// split (mergekit refuses it; opening it then fails, naming it).
///
/// Callers decide first whether the whole reference is an existing path
/// (`a+b` may be a folder's real name, which then wins).
pub fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let (model, adapter) = reference.split_once('+')?;
    if adapter.contains('+') || model.is_empty() || adapter.is_empty() {
        return None;
    }
    Some((model, adapter))
}

/// One half of a reference, as written, as a local folder: the path
/// itself, or for a hub name (`org/name[@rev]`) its snapshot folder in the
/// Hugging Face cache ([`super::source`]); a hub name not cached is an
/// error naming it and the cache.
pub fn locate(written: &str) -> Result<PathBuf> {
    let p = PathBuf::from(written);
    Ok(super::source::for_open(&p)?.unwrap_or(p))
}

/// Whether `path` is a PEFT adapter folder (has `adapter_config.json`).
pub fn is_adapter(path: &Path) -> bool {
    path.join(ADAPTER_CONFIG).is_file()
}

/// One virtual tensor: what the adapter does to the model's tensor.
#[derive(Clone, Debug)]
pub(crate) struct Patch {
    /// An adapter tensor that replaces the model's values whole.
    pub(crate) replace: Option<TensorInfo>,
    /// A low-rank delta added on top.
    pub(crate) delta: Option<Delta>,
    /// A bias delta (`lora_B.bias`) added on top.
    pub(crate) shift: Option<Shift>,
}

/// A bias delta `scale · b` (PEFT's `lora_bias`).
#[derive(Clone, Debug)]
pub(crate) struct Shift {
    /// `lora_B.bias`: `out`.
    pub(crate) b: TensorInfo,
    /// The module's scale (as its weight delta's).
    pub(crate) scale: f32,
}

/// A low-rank delta `scale · B·A` (or its transpose).
#[derive(Clone, Debug)]
pub(crate) struct Delta {
    /// `lora_A`: `rank × in` (`rank × rows` when transposed).
    pub(crate) a: TensorInfo,
    /// `lora_B`: `out × rank` (`cols × rank` when transposed).
    pub(crate) b: TensorInfo,
    /// The rank (rows of A).
    pub(crate) rank: usize,
    /// The scale the product is multiplied by.
    pub(crate) scale: f32,
    /// Whether the delta is `(B·A)ᵀ` (embeddings, `fan_in_fan_out`).
    pub(crate) transposed: bool,
    /// `lora_alpha` in effect for this module (for reports).
    pub(crate) alpha: f64,
}

/// A PEFT LoRA adapter, opened: its settings and, per model tensor it
/// changes, how. Tensor data is read on demand, like a model's.
pub struct Adapter {
    path: PathBuf,
    weights: Model,
    settings: Settings,
    patches: BTreeMap<String, Patch>,
}

/// The settings of `adapter_config.json` that matter for applying it.
#[derive(Clone, Debug)]
struct Settings {
    r: usize,
    alpha: f64,
    rslora: bool,
    fan_in_fan_out: bool,
    rank_pattern: Vec<(String, usize)>,
    alpha_pattern: Vec<(String, f64)>,
    target_modules: Vec<String>,
    modules_to_save: Vec<String>,
    lora_bias: bool,
}

/// A row of [`Adapter::targets`]: one changed tensor.
#[derive(Clone, Debug)]
pub struct Target {
    /// The model tensor's name (`model.layers.0.self_attn.q_proj.weight`).
    pub tensor: String,
    /// `lora` (low-rank delta), `replace` (`modules_to_save`),
    /// `replace+lora`, or `bias` (a `lora_B.bias` delta).
    pub kind: &'static str,
    /// The delta's rank (0 for a pure replacement).
    pub rank: usize,
    /// `lora_alpha` in effect (0 for a pure replacement).
    pub alpha: f64,
    /// The scale applied to `B·A` (0 for a pure replacement).
    pub scale: f64,
}

fn bad(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl Adapter {
    /// Open a PEFT adapter folder: read and check `adapter_config.json`,
    /// open `adapter_model.safetensors` (headers only) and pair its
    /// tensors up. Nothing is checked against a model yet: see
    /// [`Model::with_adapter`].
    pub fn open(path: &Path) -> Result<Adapter> {
        let meta = std::fs::metadata(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ModelError::NotCheckpoint {
                path: path.to_path_buf(),
                why: format!(
                    "an adapter is a PEFT folder with {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"
                ),
            });
        }
        let cfg_path = path.join(ADAPTER_CONFIG);
        if !cfg_path.is_file() {
            return Err(ModelError::NotCheckpoint {
                path: path.to_path_buf(),
                why: format!("not a LoRA adapter: no {ADAPTER_CONFIG} in this folder"),
            });
        }
        let text = std::fs::read(&cfg_path).map_err(|source| ModelError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let cfg: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| bad(&cfg_path, format!("not valid JSON: {e}")))?;
        let settings = Settings::parse(&cfg_path, &cfg)?;
        let wpath = path.join(ADAPTER_WEIGHTS);
        if !wpath.is_file() {
            let why = if path.join("adapter_model.bin").is_file() {
                format!("{ADAPTER_WEIGHTS} is missing; adapter_model.bin (pickle) is not read")
            } else {
                format!("{ADAPTER_WEIGHTS} is missing")
            };
            return Err(bad(path, why));
        }
        let weights = Model::open(&wpath)?;
        let patches = pair_up(&wpath, &weights, &settings)?;
        if patches.is_empty() {
            return Err(bad(&wpath, "holds no LoRA tensors"));
        }
        Ok(Adapter {
            path: path.to_path_buf(),
            weights,
            settings,
            patches,
        })
    }

    /// The adapter folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// `r` from the config (modules may override it with `rank_pattern`).
    pub fn rank(&self) -> usize {
        self.settings.r
    }
    /// `lora_alpha` from the config (modules may override it with
    /// `alpha_pattern`).
    pub fn alpha(&self) -> f64 {
        self.settings.alpha
    }
    /// Whether rsLoRA scaling (`alpha / sqrt(r)`) is on.
    pub fn rslora(&self) -> bool {
        self.settings.rslora
    }
    /// Whether `fan_in_fan_out` is set (GPT-2's Conv1D).
    pub fn fan_in_fan_out(&self) -> bool {
        self.settings.fan_in_fan_out
    }
    /// `target_modules` as the config lists them.
    pub fn target_modules(&self) -> &[String] {
        &self.settings.target_modules
    }
    /// `modules_to_save` as the config lists them.
    pub fn modules_to_save(&self) -> &[String] {
        &self.settings.modules_to_save
    }
    /// Every model tensor the adapter changes, by name.
    pub fn targets(&self) -> Vec<Target> {
        self.patches
            .iter()
            .map(|(name, p)| {
                let kind = match (&p.replace, &p.delta, &p.shift) {
                    (Some(_), Some(_), _) => "replace+lora",
                    (Some(_), None, _) => "replace",
                    (None, None, Some(_)) => "bias",
                    _ => "lora",
                };
                let (rank, alpha, scale) = p
                    .delta
                    .as_ref()
                    .map_or((0, 0.0, 0.0), |d| (d.rank, d.alpha, f64::from(d.scale)));
                let scale = p.shift.as_ref().map_or(scale, |b| f64::from(b.scale));
                Target {
                    tensor: name.clone(),
                    kind,
                    rank,
                    alpha,
                    scale,
                }
            })
            .collect()
    }

    /// Check every patch against `model`'s tensors (each target exists, is
    /// a float tensor, and the factors' or replacement's shapes fit it).
    pub(crate) fn check(&self, model: &Model) -> Result<()> {
        let wpath = self.weights.path();
        for (name, p) in &self.patches {
            let Some(t) = model.tensor(name) else {
                let from = p
                    .delta
                    .as_ref()
                    .map(|d| &d.a.name)
                    .or(p.replace.as_ref().map(|r| &r.name))
                    .or(p.shift.as_ref().map(|b| &b.b.name))
                    .cloned()
                    .unwrap_or_default();
                // PEFT's words for a bias without a bias to add it to.
                let why = if p.shift.is_some() {
                    " (PEFT cannot merge a LoRA bias into a layer without one either)"
                } else {
                    ""
                };
                return Err(ModelError::Tensor {
                    path: wpath.to_path_buf(),
                    tensor: from,
                    msg: format!(
                        "targets `{name}`, which the model {} does not have{why}",
                        model.path().display()
                    ),
                });
            };
            let err = |msg: String| ModelError::Tensor {
                path: wpath.to_path_buf(),
                tensor: name.clone(),
                msg,
            };
            if !t.dtype.is_mergeable() {
                return Err(err(format!(
                    "the model's tensor is {}, not a float type",
                    t.dtype
                )));
            }
            if let Some(r) = &p.replace {
                if r.shape != t.shape {
                    return Err(err(format!(
                        "adapter tensor `{}` has shape {:?}, the model's {:?}",
                        r.name, r.shape, t.shape
                    )));
                }
            }
            if let Some(b) = &p.shift {
                if b.b.shape != t.shape {
                    return Err(err(format!(
                        "LoRA bias `{}` has shape {:?}, the model's bias {:?}",
                        b.b.name, b.b.shape, t.shape
                    )));
                }
            }
            if let Some(d) = &p.delta {
                let [rows, cols] = t.shape[..] else {
                    return Err(err(format!(
                        "a LoRA target must be a matrix; the model's has shape {:?}",
                        t.shape
                    )));
                };
                let (a_cols, b_rows) = if d.transposed {
                    (rows, cols)
                } else {
                    (cols, rows)
                };
                if d.a.shape != [d.rank, a_cols] || d.b.shape != [b_rows, d.rank] {
                    return Err(err(format!(
                        "LoRA factors A {:?} and B {:?} do not fit the model's shape {:?}{}",
                        d.a.shape,
                        d.b.shape,
                        t.shape,
                        if d.transposed {
                            " (as fan_in_fan_out / embedding: expected A [r, rows], B [cols, r])"
                        } else {
                            " (expected A [r, cols], B [rows, r])"
                        }
                    )));
                }
            }
        }
        Ok(())
    }

    /// The patch for a model tensor, if the adapter changes it.
    pub(crate) fn patch(&self, name: &str) -> Option<&Patch> {
        self.patches.get(name)
    }

    /// Elements `[start, start + out.len())` of the adapted tensor `t`
    /// (whose base values are read by `base`), in f32 before rounding to
    /// `t`'s dtype.
    pub(crate) fn apply(
        &self,
        t: &TensorInfo,
        p: &Patch,
        start: usize,
        out: &mut [f32],
        base: impl FnOnce(&mut [f32]) -> Result<()>,
    ) -> Result<()> {
        match &p.replace {
            Some(r) => self.weights.read_f32(r, start, out)?,
            None => base(out)?,
        }
        if let Some(b) = &p.shift {
            let mut add = vec![0f32; out.len()];
            self.weights.read_f32(&b.b, start, &mut add)?;
            for (o, x) in out.iter_mut().zip(&add) {
                *o += x * b.scale;
            }
        }
        let Some(d) = &p.delta else {
            return Ok(());
        };
        if out.is_empty() {
            return Ok(());
        }
        let cols = t.shape[1];
        let rank = d.rank;
        let end = start + out.len();
        let (r0, r1) = (start / cols, (end - 1) / cols + 1);
        let nrows = r1 - r0;
        // Both orientations as delta[r, c] = Σk coef[r, k] · basis[k, c],
        // for the window's rows r only.
        let mut coef = vec![0f32; nrows * rank];
        let mut basis = vec![0f32; rank * cols];
        if !d.transposed {
            // coef = the window's rows of B, basis = A.
            self.weights.read_f32(&d.b, r0 * rank, &mut coef)?;
            self.weights.read_f32(&d.a, 0, &mut basis)?;
        } else {
            // delta[r, c] = Σk A[k, r] · B[c, k]: coef = the window's
            // columns of A (rank pieces), basis = Bᵀ.
            let rows = t.shape[0];
            let mut piece = vec![0f32; nrows];
            for k in 0..rank {
                self.weights.read_f32(&d.a, k * rows + r0, &mut piece)?;
                for (r, v) in piece.iter().enumerate() {
                    coef[r * rank + k] = *v;
                }
            }
            let mut b = vec![0f32; cols * rank];
            self.weights.read_f32(&d.b, 0, &mut b)?;
            for (c, row) in b.chunks_exact(rank).enumerate() {
                for (k, v) in row.iter().enumerate() {
                    basis[k * cols + c] = *v;
                }
            }
        }
        // Row by row: each element sums its rank products in k order (as
        // a dot product would), the sum then scaled and added.
        let mut acc = vec![0f32; cols];
        let mut at = 0;
        while at < out.len() {
            let flat = start + at;
            let (r, c0) = (flat / cols, flat % cols);
            let n = (cols - c0).min(out.len() - at);
            let acc = &mut acc[..n];
            acc.fill(0.0);
            let cr = &coef[(r - r0) * rank..(r - r0 + 1) * rank];
            for (k, &ck) in cr.iter().enumerate() {
                let row = &basis[k * cols + c0..k * cols + c0 + n];
                for (x, &y) in acc.iter_mut().zip(row) {
                    *x += ck * y;
                }
            }
            for (o, x) in out[at..at + n].iter_mut().zip(acc.iter()) {
                *o += x * d.scale;
            }
            at += n;
        }
        Ok(())
    }
}

impl Settings {
    fn parse(path: &Path, cfg: &serde_json::Value) -> Result<Settings> {
        let obj = cfg
            .as_object()
            .ok_or_else(|| bad(path, "not a JSON object"))?;
        let key = |k: &str| obj.get(k).filter(|v| !v.is_null());
        if let Some(t) = key("peft_type").and_then(|v| v.as_str()) {
            if t != "LORA" {
                return Err(bad(
                    path,
                    format!("`peft_type` is {t}; only LORA adapters can be applied"),
                ));
            }
        }
        // Keys that change the merged weights and are not implemented:
        // refused rather than ignored.
        let refuse_true = ["use_dora", "use_qalora", "use_bdlora"];
        for k in refuse_true {
            if key(k).and_then(|v| v.as_bool()) == Some(true) {
                return Err(bad(path, format!("`{k}: true` is not supported")));
            }
        }
        if let Some(b) = key("bias").and_then(|v| v.as_str()) {
            if b != "none" {
                return Err(bad(
                    path,
                    format!("`bias: {b}` is not supported (only \"none\")"),
                ));
            }
        }
        for k in [
            "layer_replication",
            "target_parameters",
            "trainable_token_indices",
            "alora_invocation_tokens",
        ] {
            let set = key(k).is_some_and(|v| match v {
                serde_json::Value::Array(a) => !a.is_empty(),
                serde_json::Value::Object(o) => !o.is_empty(),
                _ => true,
            });
            if set {
                return Err(bad(path, format!("`{k}` is not supported")));
            }
        }
        let num = |k: &str| -> Result<Option<f64>> {
            match key(k) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad(path, format!("`{k}` must be a number, found {v}"))),
            }
        };
        let r = num("r")?.unwrap_or(8.0);
        if r < 1.0 || r.fract() != 0.0 {
            return Err(bad(
                path,
                format!("`r` must be a positive integer, found {r}"),
            ));
        }
        let alpha = num("lora_alpha")?.unwrap_or(8.0);
        let flag = |k: &str| key(k).and_then(|v| v.as_bool()).unwrap_or(false);
        let strings = |k: &str| -> Vec<String> {
            match key(k) {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        let pattern = |k: &str| -> Result<Vec<(String, f64)>> {
            let mut out = Vec::new();
            if let Some(v) = key(k) {
                let o = v
                    .as_object()
                    .ok_or_else(|| bad(path, format!("`{k}` must be an object")))?;
                for (pat, n) in o {
                    let n = n.as_f64().ok_or_else(|| {
                        bad(path, format!("`{k}` entry `{pat}` must be a number"))
                    })?;
                    regex::Regex::new(&format!(r"^(.*\.)?({pat})$"))
                        .map_err(|e| bad(path, format!("`{k}` key `{pat}` is not a regex: {e}")))?;
                    out.push((pat.clone(), n));
                }
            }
            Ok(out)
        };
        let rank_pattern = pattern("rank_pattern")?
            .into_iter()
            .map(|(p, n)| {
                if n < 1.0 || n.fract() != 0.0 {
                    Err(bad(
                        path,
                        format!("`rank_pattern` entry `{p}` must be a positive integer"),
                    ))
                } else {
                    Ok((p, n as usize))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Settings {
            r: r as usize,
            alpha,
            rslora: flag("use_rslora"),
            fan_in_fan_out: flag("fan_in_fan_out"),
            rank_pattern,
            alpha_pattern: pattern("alpha_pattern")?,
            target_modules: strings("target_modules"),
            modules_to_save: strings("modules_to_save"),
            lora_bias: flag("lora_bias"),
        })
    }

    /// PEFT's pattern rule: the first key whose regex `(.*\.)?(key)$`
    /// matches the whole module name.
    fn lookup<T: Copy>(pats: &[(String, T)], module: &str) -> Option<T> {
        pats.iter().find_map(|(p, v)| {
            let re = regex::Regex::new(&format!(r"^(.*\.)?({p})$")).ok()?;
            re.is_match(module).then_some(*v)
        })
    }
}

/// Pair the adapter file's tensors up into patches keyed by model tensor.
fn pair_up(wpath: &Path, weights: &Model, s: &Settings) -> Result<BTreeMap<String, Patch>> {
    #[derive(Default)]
    struct Parts {
        a: Option<TensorInfo>,
        b: Option<TensorInfo>,
        embedding: bool,
        replace: Option<TensorInfo>,
        bias: Option<TensorInfo>,
    }
    let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
    let err = |t: &TensorInfo, msg: String| ModelError::Tensor {
        path: wpath.to_path_buf(),
        tensor: t.name.clone(),
        msg,
    };
    for t in weights.tensors() {
        let Some(rest) = t.name.strip_prefix(PEFT_PREFIX) else {
            return Err(err(
                t,
                format!("does not start with `{PEFT_PREFIX}`: not a PEFT adapter tensor"),
            ));
        };
        let lora = [
            (".lora_A.weight", true, false),
            (".lora_B.weight", false, false),
            (".lora_embedding_A", true, true),
            (".lora_embedding_B", false, true),
        ];
        let mut found = false;
        for (suffix, is_a, emb) in lora {
            if let Some(module) = rest.strip_suffix(suffix) {
                let p = parts.entry(format!("{module}.weight")).or_default();
                let slot = if is_a { &mut p.a } else { &mut p.b };
                *slot = Some(t.clone());
                p.embedding |= emb;
                found = true;
                break;
            }
        }
        if found {
            continue;
        }
        if let Some(module) = rest.strip_suffix(".lora_B.bias") {
            if !s.lora_bias {
                return Err(err(
                    t,
                    "is a LoRA bias, but adapter_config.json does not set `lora_bias: true` \
                     (PEFT would leave it unread)"
                        .into(),
                ));
            }
            parts.entry(format!("{module}.bias")).or_default().bias = Some(t.clone());
            continue;
        }
        if [
            ".lora_A.",
            ".lora_B.",
            ".lora_embedding_",
            ".lora_magnitude",
            ".lora_",
        ]
        .iter()
        .any(|m| rest.contains(m))
        {
            return Err(err(
                t,
                "is a LoRA part this version cannot apply (a bias, DoRA magnitude or other)".into(),
            ));
        }
        // A whole tensor: `modules_to_save`, or the base weight PEFT saves
        // with an adapted embedding.
        let target = match rest.rsplit_once(".base_layer.") {
            Some((module, leaf)) => format!("{module}.{leaf}"),
            None => rest.to_string(),
        };
        let p = parts.entry(target).or_default();
        if p.replace.is_some() {
            return Err(err(
                t,
                "replaces a tensor another entry also replaces".into(),
            ));
        }
        p.replace = Some(t.clone());
    }
    let mut out = BTreeMap::new();
    // The scale of a module's delta (PEFT keeps it as a Python float and
    // multiplies an f32 tensor by it: torch rounds it to f32 first).
    let scale_of = |module: &str| {
        let rank = Settings::lookup(&s.rank_pattern, module).unwrap_or(s.r);
        let alpha = Settings::lookup(&s.alpha_pattern, module).unwrap_or(s.alpha);
        let scale = if s.rslora {
            alpha / (rank as f64).sqrt()
        } else {
            alpha / rank as f64
        };
        (rank, alpha, scale)
    };
    for (name, p) in parts {
        let shift = match p.bias {
            Some(b) => {
                if !b.dtype.is_mergeable() || b.shape.len() != 1 {
                    return Err(err(
                        &b,
                        format!(
                            "a LoRA bias must be a float vector; this is {} {:?}",
                            b.dtype, b.shape
                        ),
                    ));
                }
                let module = name.strip_suffix(".bias").unwrap_or(&name);
                Some(Shift {
                    b,
                    scale: scale_of(module).2 as f32,
                })
            }
            None => None,
        };
        let delta = match (p.a, p.b) {
            (None, None) => None,
            (Some(a), Some(b)) => {
                if !a.dtype.is_mergeable() || !b.dtype.is_mergeable() {
                    return Err(err(&a, format!("dtype {} is not a float type", a.dtype)));
                }
                if a.shape.len() != 2 || b.shape.len() != 2 || a.shape[0] != b.shape[1] {
                    return Err(err(
                        &a,
                        format!(
                            "LoRA factors A {:?} and B {:?} do not pair up (A is [r, in], B [out, r])",
                            a.shape, b.shape
                        ),
                    ));
                }
                let module = name.strip_suffix(".weight").unwrap_or(&name);
                let (rank, alpha, scale) = scale_of(module);
                if rank != a.shape[0] {
                    return Err(err(
                        &a,
                        format!(
                            "has rank {} but adapter_config.json gives this module r = {rank}",
                            a.shape[0]
                        ),
                    ));
                }
                Some(Delta {
                    transposed: p.embedding || s.fan_in_fan_out,
                    a,
                    b,
                    rank,
                    // PEFT keeps the scale as a Python float and multiplies
                    // an f32 tensor by it: torch rounds it to f32 first.
                    scale: scale as f32,
                    alpha,
                })
            }
            (Some(x), None) | (None, Some(x)) => {
                return Err(err(&x, "has no matching lora_A / lora_B partner".into()));
            }
        };
        out.insert(
            name,
            Patch {
                replace: p.replace,
                delta,
                shift,
            },
        );
    }
    Ok(out)
}

impl Model {
    /// Open `model+adapter`: the model at `model` with the PEFT adapter at
    /// `adapter` applied to it while reading. Every target the adapter
    /// names must exist in the model with a fitting shape.
    pub fn open_with_adapter(model: &Path, adapter: &Path) -> Result<Model> {
        let m = Model::open(model)?;
        let a = Adapter::open(adapter)?;
        m.with_adapter(a)
    }
}

/// `model+adapter` as one path, as recipes and [`Model::path`] show it.
pub fn join_reference(model: &Path, adapter: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push("+");
    s.push(adapter.as_os_str());
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_one_plus() {
        assert_eq!(split_reference("m+a"), Some(("m", "a")));
        assert_eq!(
            split_reference("../models/base+../adapters/x"),
            Some(("../models/base", "../adapters/x"))
        );
        assert_eq!(split_reference("plain"), None);
        assert_eq!(split_reference("a+b+c"), None);
        assert_eq!(split_reference("+a"), None);
        assert_eq!(split_reference("m+"), None);
    }

    #[test]
    fn patterns_match_like_peft() {
        let pats = vec![
            ("o_proj".to_string(), 2usize),
            ("layers.1.mlp.gate_proj".to_string(), 3),
        ];
        let find = |m: &str| Settings::lookup(&pats, m);
        assert_eq!(find("model.layers.0.self_attn.o_proj"), Some(2));
        assert_eq!(find("o_proj"), Some(2));
        // A suffix that is not a whole dotted component does not match.
        assert_eq!(find("model.layers.0.self_attn.xo_proj"), None);
        assert_eq!(find("model.layers.1.mlp.gate_proj"), Some(3));
        assert_eq!(find("model.layers.11.mlp.gate_proj"), None);
        // The key is a regex, as in PEFT.
        let re = vec![("layers\\.[01]\\.self_attn\\.q_proj".to_string(), 5usize)];
        assert_eq!(
            Settings::lookup(&re, "model.layers.1.self_attn.q_proj"),
            Some(5)
        );
    }
}
