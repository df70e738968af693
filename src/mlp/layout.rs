//! Which tensors of smelt MLPs are a shared trunk (merged by any method) and
//! which are per-model heads (kept, one output head each).
//!
//! Heads of models trained on different classes do not live in the same
//! space: averaging the classifier of a 0-4 model with that of a 5-9 model
//! mixes unrelated outputs. So when MLPs with different heads are merged,
//! the trunk is merged and every input's heads become heads of the output,
//! in input order. This is what makes task-vector methods on
//! `digits-tasks` (each fine-tune has its own head) produce a multi-head
//! model, and what "heads kept" means for weight averaging of `digits-zip`.

use super::{MlpError, MlpModel, Result};
use crate::model::Model;

/// One head tensor copied from an input into the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadTensor {
    /// Index of the input in the `models` slice given to [`head_layout`].
    pub model: usize,
    /// Name in that input.
    pub source: String,
    /// Name in the output (`heads.{k}.layers.{j}.weight|bias`).
    pub output: String,
}

/// How to merge smelt MLPs with per-model heads.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadLayout {
    /// Tensors present in every input under the same name and shape,
    /// merged by the method; the output keeps the name (`layers.{i}.*`).
    /// A base model, if the method has one, has them under the same names.
    pub trunk: Vec<String>,
    /// Tensors copied unchanged from one input each.
    pub heads: Vec<HeadTensor>,
    /// The output's `config.json`: the first input's `input_scale`, every
    /// input's heads in order.
    pub config: serde_json::Value,
}

/// For smelt MLPs, split the tensors into trunk and heads.
///
/// `models` are the inputs that contribute heads: the non-base models of a
/// recipe, in order (a base's own head is not part of the output; its trunk
/// tensors carry the same names as the inputs').
///
/// Returns:
/// - `Ok(None)` when the inputs are not smelt MLPs, or when every input has
///   exactly the same heads (same classes, same tensor names): then there is
///   nothing to keep apart and all tensors merge as usual.
/// - `Ok(Some(layout))` otherwise. For a plain model (no `heads.*` tensors)
///   the trunk is every layer but the last, and the last layer is its head.
///   For a multi-head model the trunk is `layers.*` and each `heads.{h}.*`
///   group is a head. Output head `k` numbers all inputs' heads in order.
/// - `Err` when some inputs are smelt MLPs and others are not, a config is
///   malformed, or the trunks differ in names or shapes.
pub fn head_layout(models: &[&Model]) -> Result<Option<HeadLayout>> {
    let n_mlp = models.iter().filter(|m| MlpModel::is_mlp(m)).count();
    if n_mlp == 0 {
        return Ok(None);
    }
    if n_mlp != models.len() {
        let other = models
            .iter()
            .find(|m| !MlpModel::is_mlp(m))
            .map(|m| m.path().display().to_string())
            .unwrap_or_default();
        return Err(MlpError::Incompatible(format!(
            "{other}: not a smelt-mlp model, but other inputs are; smelt MLPs only merge with each other"
        )));
    }
    // Parse each input into (trunk tensor names, heads as lists of tensor names, classes).
    struct Parsed {
        trunk: Vec<(String, Vec<usize>)>,
        heads: Vec<(Vec<u32>, Vec<String>)>,
        input_scale: serde_json::Value,
    }
    let mut parsed = Vec::new();
    for m in models {
        // Full validation of names and shapes (reads the small tensors).
        let mlp = MlpModel::from_model(m)?;
        let plain = !m.tensors().iter().any(|t| t.name.starts_with("heads."));
        let shape = |name: &str| m.tensor(name).map(|t| t.shape.clone()).unwrap_or_default();
        let layer_names = |prefix: &str, j: usize| {
            vec![format!("{prefix}{j}.weight"), format!("{prefix}{j}.bias")]
        };
        let mut trunk = Vec::new();
        let mut heads = Vec::new();
        if plain {
            let layers = mlp.heads[0].layers.len();
            for j in 0..layers.saturating_sub(1) {
                for n in layer_names("layers.", j) {
                    trunk.push((n.clone(), shape(&n)));
                }
            }
            heads.push((
                mlp.heads[0].classes.clone(),
                layer_names("layers.", layers - 1),
            ));
        } else {
            for j in 0..mlp.trunk.len() {
                for n in layer_names("layers.", j) {
                    trunk.push((n.clone(), shape(&n)));
                }
            }
            for (h, head) in mlp.heads.iter().enumerate() {
                let names = (0..head.layers.len())
                    .flat_map(|j| layer_names(&format!("heads.{h}.layers."), j))
                    .collect();
                heads.push((head.classes.clone(), names));
            }
        }
        let input_scale = m
            .config()
            .and_then(|c| c.get("input_scale").cloned())
            .unwrap_or(serde_json::json!(1.0));
        parsed.push(Parsed {
            trunk,
            heads,
            input_scale,
        });
    }
    let first = &parsed[0];
    let all_same = parsed
        .iter()
        .all(|p| p.heads == first.heads && p.trunk == first.trunk);
    if all_same {
        return Ok(None);
    }
    for (p, m) in parsed.iter().zip(models).skip(1) {
        if p.trunk != first.trunk {
            return Err(MlpError::Incompatible(format!(
                "{}: its trunk ({} tensors) differs in names or shapes from {}'s ({} tensors)",
                m.path().display(),
                p.trunk.len(),
                models[0].path().display(),
                first.trunk.len()
            )));
        }
    }
    let mut heads = Vec::new();
    let mut classes = Vec::new();
    let mut k = 0;
    for (mi, p) in parsed.iter().enumerate() {
        for (cl, names) in &p.heads {
            classes.push(serde_json::json!({ "classes": cl }));
            for (j, pair) in names.chunks(2).enumerate() {
                for (src, kind) in pair.iter().zip(["weight", "bias"]) {
                    heads.push(HeadTensor {
                        model: mi,
                        source: src.clone(),
                        output: format!("heads.{k}.layers.{j}.{kind}"),
                    });
                }
            }
            k += 1;
        }
    }
    Ok(Some(HeadLayout {
        trunk: first.trunk.iter().map(|(n, _)| n.clone()).collect(),
        heads,
        config: serde_json::json!({
            "model_type": super::MODEL_TYPE,
            "activation": "relu",
            "input_scale": first.input_scale,
            "heads": classes,
        }),
    }))
}
