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
    pub file: String,
    pub bytes: u64,
    pub tensors: usize,
}

/// One group of the catalogue: `pre`, `layer N` or `post`.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRow {
    pub group: String,
    /// The layer index, for layer groups.
    pub layer: Option<usize>,
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
}

/// One tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorRow {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub params: u64,
    pub bytes: u64,
    /// Index into [`Report::shards`].
    pub shard: usize,
    pub group: String,
}

/// What `smelt inspect MODEL` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub path: String,
    pub name: String,
    /// `architectures[0]` of config.json.
    pub architecture: Option<String>,
    /// `num_hidden_layers` of config.json (or its equivalents).
    pub num_hidden_layers: Option<usize>,
    /// Layers found by the catalogue from tensor names.
    pub catalogue_layers: usize,
    pub num_params: u64,
    /// Bytes of tensor data (excluding headers).
    pub data_bytes: u64,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub shards: Vec<ShardRow>,
    pub groups: Vec<GroupRow>,
    pub tensors: Vec<TensorRow>,
}

impl Report {
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
