//! Small multi-layer perceptrons in smelt's own checkpoint format
//! (`model_type: "smelt-mlp"`): loading, saving, a batched forward pass,
//! deterministic training, the digits data, and the trunk/head layout that
//! merging uses.
//!
//! # Format
//! A folder with `model.safetensors` and `config.json`:
//!
//! ```json
//! {"model_type": "smelt-mlp", "activation": "relu", "input_scale": 0.0625,
//!  "heads": [{"classes": [0, 1, 2, 3, 4]}]}
//! ```
//!
//! Inputs are multiplied by `input_scale`; `classes[j]` is the label that
//! output `j` of that head stands for. Tensors are `layers.{i}.weight`
//! `[out, in]` and `layers.{i}.bias` `[out]`. With no `heads.*` tensors the
//! model has one head and is a plain chain: ReLU after every layer but the
//! last. A multi-head model has a shared trunk `layers.{i}.*` (ReLU after
//! every trunk layer) and per head `heads.{h}.layers.{j}.*` (ReLU after all
//! but the head's last layer), every head reading the trunk's output (the
//! input itself when the trunk is empty).
//!
//! In memory a plain model is an empty trunk and one head holding all the
//! layers; [`MlpModel::save`] writes that back in the plain form, so a file
//! round-trips to the same tensor names. (A file with an empty trunk and one
//! `heads.0.*` head is saved back in the plain form: same function, different
//! names.)

mod data;
mod layout;
mod rng;
mod train;

pub use data::{Dataset, Samples, Split};
pub use layout::{head_layout, HeadLayout, HeadTensor};
pub use rng::{splitmix64, Rng};
pub use train::{init_layer, train_chain, TrainConfig};

use crate::model::{Dtype, Model, ModelError, OutputTensor, Writer, WriterOptions};
use ndarray::{Array, Array2, ArrayView2, Zip};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `model_type` string in `config.json`.
pub const MODEL_TYPE: &str = "smelt-mlp";

/// What can go wrong with an MLP checkpoint or its data. Every variant names
/// the file and, where there is one, the tensor or line.
#[derive(Debug, thiserror::Error)]
pub enum MlpError {
    /// The checkpoint's files could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// `config.json` missing or malformed.
    #[error("{path}: config.json: {msg}")]
    Config {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor is missing, misnamed or has the wrong shape.
    #[error("{path}: tensor `{tensor}`: {msg}")]
    Tensor {
        /// The checkpoint folder.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A data file problem (line is 1-based; 0 when not about a line).
    #[error("{path}:{line}: {msg}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// The 1-based line, 0 when not about a line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Models that cannot be combined or evaluated together.
    #[error("{0}")]
    Incompatible(String),
}

/// An MLP result.
pub type Result<T> = std::result::Result<T, MlpError>;

/// One dense layer: `y = W x + b`, `W` stored row-major `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Inputs per row.
    pub n_in: usize,
    /// Outputs per row.
    pub n_out: usize,
    /// `n_out x n_in`, row-major.
    pub weight: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
}

impl Layer {
    /// A layer of zeros (to fill in by hand or by training).
    pub fn zeros(n_in: usize, n_out: usize) -> Layer {
        Layer {
            n_in,
            n_out,
            weight: vec![0.0; n_in * n_out],
            bias: vec![0.0; n_out],
        }
    }

    /// The weight as an `[out, in]` view.
    pub fn weight_view(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.n_out, self.n_in), &self.weight)
            .expect("a layer's weight holds n_out x n_in values")
    }

    /// `y[b, o] = sum_i x[b, i] W[o, i] + bias[o]` for a batch of `n` rows,
    /// ReLU applied when `relu`.
    pub fn forward(&self, x: &[f32], n: usize, relu: bool) -> Vec<f32> {
        let x = ArrayView2::from_shape((n, self.n_in), x).expect("x holds n x n_in values");
        into_vec(self.forward_batch(x, relu))
    }

    /// [`Layer::forward`] on a batch `[n, in]`: `x Wᵀ + b`, then ReLU when
    /// `relu` (a NaN stays NaN).
    ///
    /// Each output is summed from its bias in input order, not through a
    /// blocked matrix product, whose order follows the kernel matrixmultiply
    /// picks by the CPU's features at run time. With this order (and the
    /// same in training's backward pass) `make_sample_models` gives the
    /// committed models bit for bit on any machine, and evaluation gives the
    /// README's figures exactly; a blocked product moved single test
    /// samples. The layers are a few hundred wide at most.
    pub fn forward_batch(&self, x: ArrayView2<'_, f32>, relu: bool) -> Array2<f32> {
        let w = self.weight_view();
        let mut y = Array2::<f32>::zeros((x.nrows(), self.n_out));
        Zip::from(y.rows_mut())
            .and(x.rows())
            .for_each(|mut yr, xr| {
                Zip::from(&mut yr)
                    .and(w.rows())
                    .and(&self.bias)
                    .for_each(|yo, wr, &b| {
                        let s = wr.iter().zip(xr.iter()).fold(b, |s, (wi, xi)| s + wi * xi);
                        *yo = if relu && s < 0.0 { 0.0 } else { s };
                    });
            });
        y
    }
}

/// The values of `a` in row-major order.
pub(crate) fn into_vec<D: ndarray::Dimension>(a: Array<f32, D>) -> Vec<f32> {
    let len = a.len();
    if a.is_standard_layout() {
        // Contiguous from the logical first element.
        let (mut v, offset) = a.into_raw_vec_and_offset();
        v.drain(..offset.unwrap_or(0).min(v.len()));
        v.truncate(len);
        return v;
    }
    a.iter().copied().collect()
}

/// One output head: its layers (ReLU after all but the last) and the label
/// each output stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// The label each output of the last layer stands for.
    pub classes: Vec<u32>,
    /// The head's layers, applied in order.
    pub layers: Vec<Layer>,
}

/// An MLP checkpoint in memory (small: a few hundred thousand parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct MlpModel {
    /// Multiplies the raw features before the trunk (`input_scale` in
    /// config.json), so data files keep their own units.
    pub input_scale: f32,
    /// Shared layers, ReLU after every one.
    pub trunk: Vec<Layer>,
    /// The output heads, each over the trunk's last activations.
    pub heads: Vec<Head>,
}

impl MlpModel {
    /// Input width.
    pub fn n_in(&self) -> usize {
        self.trunk
            .first()
            .or_else(|| self.heads.first().and_then(|h| h.layers.first()))
            .map_or(0, |l| l.n_in)
    }

    /// Read a checkpoint folder.
    pub fn load(path: &Path) -> Result<MlpModel> {
        let m = Model::open(path)?;
        MlpModel::from_model(&m)
    }

    /// Whether an opened model says it is a smelt MLP.
    pub fn is_mlp(m: &Model) -> bool {
        m.config()
            .and_then(|c| c.get("model_type"))
            .and_then(|t| t.as_str())
            == Some(MODEL_TYPE)
    }

    /// Build from an opened checkpoint, checking every tensor's name and
    /// shape against the config.
    pub fn from_model(m: &Model) -> Result<MlpModel> {
        let path = m.path().to_path_buf();
        let cfg_err = |msg: String| MlpError::Config {
            path: path.clone(),
            msg,
        };
        let cfg = m
            .config()
            .ok_or_else(|| cfg_err("missing (a smelt-mlp folder needs one)".into()))?;
        let (input_scale, classes) = parse_config(cfg).map_err(cfg_err)?;

        // Group tensor names: trunk index -> (weight, bias); head -> index -> ...
        let mut trunk: BTreeMap<usize, [Option<String>; 2]> = BTreeMap::new();
        let mut heads: BTreeMap<usize, BTreeMap<usize, [Option<String>; 2]>> = BTreeMap::new();
        for t in m.tensors() {
            let bad = |msg: &str| MlpError::Tensor {
                path: path.clone(),
                tensor: t.name.clone(),
                msg: msg.to_string(),
            };
            let parts: Vec<&str> = t.name.split('.').collect();
            let (slot, idx, kind) = match parts.as_slice() {
                ["layers", i, k] => (None, *i, *k),
                ["heads", h, "layers", i, k] => (
                    Some(h.parse::<usize>().map_err(|_| bad("bad head index"))?),
                    *i,
                    *k,
                ),
                _ => {
                    return Err(bad(
                        "unexpected name (expected layers.{i}.weight|bias or heads.{h}.layers.{j}.weight|bias)",
                    ))
                }
            };
            let idx: usize = idx.parse().map_err(|_| bad("bad layer index"))?;
            let k = match kind {
                "weight" => 0,
                "bias" => 1,
                _ => return Err(bad("expected `weight` or `bias`")),
            };
            let entry = match slot {
                None => trunk.entry(idx).or_default(),
                Some(h) => heads.entry(h).or_default().entry(idx).or_default(),
            };
            entry[k] = Some(t.name.clone());
        }

        let read_chain = |map: &BTreeMap<usize, [Option<String>; 2]>,
                          prefix: &str,
                          mut n_in: Option<usize>|
         -> Result<Vec<Layer>> {
            let mut layers = Vec::new();
            for (pos, (idx, [w, b])) in map.iter().enumerate() {
                if *idx != pos {
                    return Err(MlpError::Tensor {
                        path: path.clone(),
                        tensor: format!("{prefix}{pos}.weight"),
                        msg: "missing (layer indices must run 0, 1, 2, ...)".into(),
                    });
                }
                let missing = |k: &str| MlpError::Tensor {
                    path: path.clone(),
                    tensor: format!("{prefix}{idx}.{k}"),
                    msg: "missing".into(),
                };
                let w = w.as_ref().ok_or_else(|| missing("weight"))?;
                let b = b.as_ref().ok_or_else(|| missing("bias"))?;
                let layer = read_layer(m, w, b, n_in)?;
                n_in = Some(layer.n_out);
                layers.push(layer);
            }
            Ok(layers)
        };

        let trunk_layers = read_chain(&trunk, "layers.", None)?;
        let mut out_heads = Vec::new();
        if heads.is_empty() {
            if trunk_layers.is_empty() {
                return Err(cfg_err("no layers.* tensors in the model".into()));
            }
            if classes.len() != 1 {
                return Err(cfg_err(format!(
                    "{} heads listed but the model has no heads.* tensors (a plain model has one head)",
                    classes.len()
                )));
            }
            out_heads.push(Head {
                classes: classes[0].clone(),
                layers: trunk_layers,
            });
            let model = MlpModel {
                input_scale,
                trunk: Vec::new(),
                heads: out_heads,
            };
            check_outputs(&model, &path)?;
            return Ok(model);
        }
        if heads.len() != classes.len() {
            return Err(cfg_err(format!(
                "{} heads listed but the model has {} heads.* groups",
                classes.len(),
                heads.len()
            )));
        }
        let trunk_out = trunk_layers.last().map(|l| l.n_out);
        for (pos, (h, map)) in heads.iter().enumerate() {
            if *h != pos {
                return Err(MlpError::Tensor {
                    path: path.clone(),
                    tensor: format!("heads.{pos}.layers.0.weight"),
                    msg: "missing (head indices must run 0, 1, 2, ...)".into(),
                });
            }
            let layers = read_chain(map, &format!("heads.{h}.layers."), trunk_out)?;
            out_heads.push(Head {
                classes: classes[pos].clone(),
                layers,
            });
        }
        let model = MlpModel {
            input_scale,
            trunk: trunk_layers,
            heads: out_heads,
        };
        check_outputs(&model, &path)?;
        Ok(model)
    }

    /// `config.json` for this model.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_type": MODEL_TYPE,
            "activation": "relu",
            "input_scale": self.input_scale,
            "heads": self.heads.iter().map(|h| serde_json::json!({"classes": h.classes})).collect::<Vec<_>>(),
        })
    }

    /// The tensors as `(name, shape, data)`, in the on-disk naming (plain
    /// form for an empty trunk with one head).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        let mut push = |prefix: String, l: &Layer| {
            out.push((
                format!("{prefix}weight"),
                vec![l.n_out, l.n_in],
                l.weight.clone(),
            ));
            out.push((format!("{prefix}bias"), vec![l.n_out], l.bias.clone()));
        };
        if self.trunk.is_empty() && self.heads.len() == 1 {
            for (i, l) in self.heads[0].layers.iter().enumerate() {
                push(format!("layers.{i}."), l);
            }
            return out;
        }
        for (i, l) in self.trunk.iter().enumerate() {
            push(format!("layers.{i}."), l);
        }
        for (h, head) in self.heads.iter().enumerate() {
            for (j, l) in head.layers.iter().enumerate() {
                push(format!("heads.{h}.layers.{j}."), l);
            }
        }
        out
    }

    /// Write the checkpoint folder `out` (F32 tensors and `config.json`),
    /// atomically; refuses to replace an existing folder unless `force`,
    /// and then replaces only an empty folder or a smelt merge output (see
    /// `model::WriterOptions::force`).
    pub fn save(&self, out: &Path, force: bool) -> Result<PathBuf> {
        self.save_as(out, force, Dtype::F32, &[])
    }

    /// [`MlpModel::save`] with a dtype and extra files (`README.md`, ...).
    pub fn save_as(
        &self,
        out: &Path,
        force: bool,
        dtype: Dtype,
        files: &[(&str, &[u8])],
    ) -> Result<PathBuf> {
        let opts = WriterOptions {
            shard_size: crate::model::DEFAULT_SHARD_SIZE,
            force,
            inputs: Vec::new(),
            metadata: vec![("format".into(), "pt".into())],
            sync: true,
        };
        self.save_with(out, &opts, dtype, files)
    }

    /// Write with full writer options (the engine passes the input folders
    /// so an output inside an input is refused).
    pub fn save_with(
        &self,
        out: &Path,
        opts: &WriterOptions,
        dtype: Dtype,
        files: &[(&str, &[u8])],
    ) -> Result<PathBuf> {
        let tensors = self.tensors();
        let spec: Vec<OutputTensor> = tensors
            .iter()
            .map(|(name, shape, _)| OutputTensor {
                name: name.clone(),
                dtype,
                shape: shape.clone(),
            })
            .collect();
        let w = Writer::create(out, spec, opts)?;
        for (i, (_, _, data)) in tensors.iter().enumerate() {
            w.write_f32(i, 0, data)?;
        }
        let cfg = serde_json::to_vec_pretty(&self.config_json()).map_err(|e| MlpError::Config {
            path: out.to_path_buf(),
            msg: e.to_string(),
        })?;
        w.add_file("config.json", &cfg)?;
        for (name, bytes) in files {
            w.add_file(name, bytes)?;
        }
        Ok(w.finish()?)
    }

    /// Logits of every head for a batch of `n` raw inputs (row-major,
    /// `n x n_in`, before `input_scale`): one `n x classes` matrix per head.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<Vec<f32>> {
        let mut h: Vec<f32> = x.iter().map(|v| v * self.input_scale).collect();
        for l in &self.trunk {
            h = l.forward(&h, n, true);
        }
        self.heads
            .iter()
            .map(|head| {
                let mut z = h.clone();
                let last = head.layers.len().saturating_sub(1);
                for (j, l) in head.layers.iter().enumerate() {
                    z = l.forward(&z, n, j < last);
                }
                z
            })
            .collect()
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.trunk
            .iter()
            .chain(self.heads.iter().flat_map(|h| h.layers.iter()))
            .map(|l| l.weight.len() + l.bias.len())
            .sum()
    }
}

/// Parse `config.json`: (input_scale, classes per head).
fn parse_config(cfg: &serde_json::Value) -> std::result::Result<(f32, Vec<Vec<u32>>), String> {
    let ty = cfg.get("model_type").and_then(|t| t.as_str());
    if ty != Some(MODEL_TYPE) {
        return Err(format!(
            "model_type is {:?}, expected \"{MODEL_TYPE}\"",
            ty.unwrap_or("(missing)")
        ));
    }
    match cfg.get("activation").map(|a| a.as_str()) {
        None | Some(Some("relu")) => {}
        Some(other) => {
            return Err(format!(
                "activation {:?} not supported (only \"relu\")",
                other.unwrap_or("(not a string)")
            ))
        }
    }
    let input_scale = match cfg.get("input_scale") {
        None => 1.0,
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or("input_scale must be a finite number")? as f32,
    };
    let heads = cfg
        .get("heads")
        .and_then(|h| h.as_array())
        .ok_or("`heads` must be a list of {\"classes\": [...]}")?;
    let mut classes = Vec::new();
    for (i, h) in heads.iter().enumerate() {
        let cl = h
            .get("classes")
            .and_then(|c| c.as_array())
            .ok_or(format!("heads[{i}].classes must be a list"))?;
        let cl: Option<Vec<u32>> = cl
            .iter()
            .map(|c| c.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect();
        let cl = cl.ok_or(format!(
            "heads[{i}].classes must hold non-negative integers"
        ))?;
        if cl.is_empty() {
            return Err(format!("heads[{i}].classes is empty"));
        }
        classes.push(cl);
    }
    if classes.is_empty() {
        return Err("`heads` is empty".into());
    }
    Ok((input_scale, classes))
}

fn read_layer(m: &Model, w: &str, b: &str, n_in: Option<usize>) -> Result<Layer> {
    let path = m.path().to_path_buf();
    let shape = |name: &str| -> Result<Vec<usize>> {
        m.tensor(name)
            .map(|t| t.shape.clone())
            .ok_or_else(|| MlpError::Tensor {
                path: path.clone(),
                tensor: name.into(),
                msg: "missing".into(),
            })
    };
    let ws = shape(w)?;
    let bs = shape(b)?;
    let bad = |t: &str, msg: String| MlpError::Tensor {
        path: path.clone(),
        tensor: t.into(),
        msg,
    };
    if ws.len() != 2 {
        return Err(bad(w, format!("shape {ws:?}: expected [out, in]")));
    }
    if bs != [ws[0]] {
        return Err(bad(b, format!("shape {bs:?}: expected [{}]", ws[0])));
    }
    if let Some(n) = n_in {
        if ws[1] != n {
            return Err(bad(
                w,
                format!(
                    "shape {ws:?}: input width {} but the previous layer gives {n}",
                    ws[1]
                ),
            ));
        }
    }
    let weight = m.read_all_f32(w)?;
    let bias = m.read_all_f32(b)?;
    if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
        return Err(bad(w, "holds NaN or infinite values".into()));
    }
    Ok(Layer {
        n_in: ws[1],
        n_out: ws[0],
        weight,
        bias,
    })
}

fn check_outputs(model: &MlpModel, path: &Path) -> Result<()> {
    let trunk_out = model.trunk.last().map(|l| l.n_out);
    for (h, head) in model.heads.iter().enumerate() {
        let prefix = if model.trunk.is_empty() && model.heads.len() == 1 {
            "layers.".to_string()
        } else {
            format!("heads.{h}.layers.")
        };
        let Some(last) = head.layers.last() else {
            return Err(MlpError::Tensor {
                path: path.to_path_buf(),
                tensor: format!("{prefix}0.weight"),
                msg: "missing: a head needs at least one layer".into(),
            });
        };
        if let (Some(t), Some(first)) = (trunk_out, head.layers.first()) {
            if first.n_in != t {
                return Err(MlpError::Tensor {
                    path: path.to_path_buf(),
                    tensor: format!("{prefix}0.weight"),
                    msg: format!("reads {} inputs but the trunk gives {t}", first.n_in),
                });
            }
        }
        if last.n_out != head.classes.len() {
            return Err(MlpError::Tensor {
                path: path.to_path_buf(),
                tensor: format!("{prefix}{}.weight", head.layers.len() - 1),
                msg: format!(
                    "{} outputs but config.json lists {} classes for head {h}",
                    last.n_out,
                    head.classes.len()
                ),
            });
        }
    }
    // First layers must agree on the input width.
    if model.trunk.is_empty() {
        let widths: Vec<usize> = model
            .heads
            .iter()
            .filter_map(|h| h.layers.first().map(|l| l.n_in))
            .collect();
        if widths.windows(2).any(|w| w[0] != w[1]) {
            return Err(MlpError::Tensor {
                path: path.to_path_buf(),
                tensor: "heads.*.layers.0.weight".into(),
                msg: format!("heads read different input widths {widths:?}"),
            });
        }
    }
    Ok(())
}
