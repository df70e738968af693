//! What a checkpoint holds, as data: `smelt inspect` renders it as a
//! table for people (in the CLI) or JSON for scripts.
//!
//! The report is built from headers only (no tensor data is read), so it is
//! instant even on large sharded checkpoints.

use super::{Group, Model};
use serde::Serialize;

/// One shard file.
#[derive(Clone, Debug, Serialize)]
pub struct ShardRow {
    /// The shard's file name.
    pub file: String,
    /// Its size on disk, header included.
    pub bytes: u64,
    /// Tensors stored in it.
    pub tensors: usize,
}

/// One group of the catalogue: `pre`, `layer N` or `post`.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRow {
    /// `pre`, `layer N` or `post`.
    pub group: String,
    /// The layer index, for layer groups.
    pub layer: Option<usize>,
    /// Tensors in the group.
    pub tensors: usize,
    /// Their elements.
    pub params: u64,
    /// Their bytes of data.
    pub bytes: u64,
}

/// One tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorRow {
    /// The tensor's name.
    pub name: String,
    /// Its dtype's name (`F32`, `BF16`, ...).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements.
    pub params: u64,
    /// Its bytes of data.
    pub bytes: u64,
    /// Index into [`Report::shards`].
    pub shard: usize,
    /// Its group's label, as in [`GroupRow::group`].
    pub group: String,
}

/// What `smelt inspect MODEL` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The model's path as given.
    pub path: String,
    /// The model's name (its folder's).
    pub name: String,
    /// `architectures[0]` of config.json.
    pub architecture: Option<String>,
    /// `num_hidden_layers` of config.json (or its equivalents).
    pub num_hidden_layers: Option<usize>,
    /// Layers found by the catalogue from tensor names.
    pub catalogue_layers: usize,
    /// Elements over every tensor.
    pub num_params: u64,
    /// Bytes of tensor data (excluding headers).
    pub data_bytes: u64,
    /// The safetensors `__metadata__` of the (first) shard.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Every shard file.
    pub shards: Vec<ShardRow>,
    /// The catalogue's groups, in model order.
    pub groups: Vec<GroupRow>,
    /// Every tensor, in the model's order.
    pub tensors: Vec<TensorRow>,
}

impl Report {
    /// The report of `model`, from its headers alone.
    pub fn new(model: &Model) -> Report {
        let sizes = model.shard_sizes();
        let mut shards: Vec<ShardRow> = model
            .shard_paths()
            .iter()
            .zip(sizes)
            .map(|(p, bytes)| ShardRow {
                file: p
                    .file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
                bytes,
                tensors: 0,
            })
            .collect();
        let mut groups: Vec<(Group, GroupRow)> = Vec::new();
        let mut tensors = Vec::with_capacity(model.tensors().len());
        for t in model.tensors() {
            let params = t.numel() as u64;
            let bytes = t.nbytes() as u64;
            if let Some(s) = shards.get_mut(t.shard) {
                s.tensors += 1;
            }
            // Tensors come sorted by group, so a group is always the last
            // one pushed or a new one.
            match groups.last_mut() {
                Some((g, row)) if *g == t.place.group => {
                    row.tensors += 1;
                    row.params += params;
                    row.bytes += bytes;
                }
                _ => groups.push((
                    t.place.group,
                    GroupRow {
                        group: t.place.group.to_string(),
                        layer: match t.place.group {
                            Group::Layer(n) => Some(n),
                            _ => None,
                        },
                        tensors: 1,
                        params,
                        bytes,
                    },
                )),
            }
            tensors.push(TensorRow {
                name: t.name.clone(),
                dtype: t.dtype.name().to_string(),
                shape: t.shape.clone(),
                params,
                bytes,
                shard: t.shard,
                group: t.place.group.to_string(),
            });
        }
        let num_hidden_layers = model.config_layers();
        Report {
            path: model.path().display().to_string(),
            name: model.name().to_string(),
            architecture: model.architecture().map(str::to_string),
            num_hidden_layers,
            catalogue_layers: model.catalogue_layers(),
            num_params: model.num_params(),
            data_bytes: tensors.iter().map(|t| t.bytes).sum(),
            metadata: model.metadata().clone(),
            shards,
            groups: groups.into_iter().map(|(_, r)| r).collect(),
            tensors,
        }
    }
}

/// One tensor a LoRA adapter changes.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterTargetRow {
    /// The model tensor's name.
    pub tensor: String,
    /// `lora`, `replace` (`modules_to_save`) or `replace+lora`.
    pub kind: String,
    /// The delta's rank (0 for a replacement).
    pub rank: usize,
    /// `lora_alpha` in effect (0 for a replacement).
    pub alpha: f64,
    /// The scale applied to `B·A` (0 for a replacement).
    pub scale: f64,
}

/// What `smelt inspect ADAPTER` shows for a PEFT LoRA folder.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    /// The adapter folder as given.
    pub path: String,
    /// `r` of adapter_config.json.
    pub rank: usize,
    /// `lora_alpha` of adapter_config.json.
    pub alpha: f64,
    /// `use_rslora`.
    pub rslora: bool,
    /// `fan_in_fan_out`.
    pub fan_in_fan_out: bool,
    /// `target_modules`.
    pub target_modules: Vec<String>,
    /// `modules_to_save`.
    pub modules_to_save: Vec<String>,
    /// Every model tensor changed, by name.
    pub targets: Vec<AdapterTargetRow>,
}

impl AdapterReport {
    /// The report of an opened adapter (headers only).
    pub fn new(a: &super::Adapter) -> AdapterReport {
        AdapterReport {
            path: a.path().display().to_string(),
            rank: a.rank(),
            alpha: a.alpha(),
            rslora: a.rslora(),
            fan_in_fan_out: a.fan_in_fan_out(),
            target_modules: a.target_modules().to_vec(),
            modules_to_save: a.modules_to_save().to_vec(),
            targets: a
                .targets()
                .into_iter()
                .map(|t| AdapterTargetRow {
                    tensor: t.tensor,
                    kind: t.kind.to_string(),
                    rank: t.rank,
                    alpha: t.alpha,
                    scale: t.scale,
                })
                .collect(),
        }
    }
}
