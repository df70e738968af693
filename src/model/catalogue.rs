//! The layer catalogue: which layer (or pre/post group) a tensor belongs to.
//!
//! Merges need this for per-layer parameters (gradients across layers,
//! passthrough slices) and the analysis panels group statistics by it. The
//! rule is deliberately name-based and architecture-agnostic: a layer is a
//! segment `layers`, `layer`, `h` or `blocks` followed by a number and then
//! at least one more segment. That covers Llama/Mistral/Qwen/Gemma
//! (`model.layers.N.`), GPT-2 (`transformer.h.N.`), BERT
//! (`encoder.layer.N.`), `blocks.N.`, smelt's MLPs (`layers.N.`) and
//! multimodal wrappers (`model.language_model.layers.N.`).
//!
//! [`Model::layer_groups`] lists a model by these groups, as the
//! workbench's layer table shows it.

use super::{Dtype, Model};

/// Where a tensor sits in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// Embeddings and anything before the first layer.
    Pre,
    /// Transformer block / hidden layer `n`.
    Layer(usize),
    /// Final norm, `lm_head`, classifier heads.
    Post,
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Pre => f.write_str("embeddings"),
            Group::Layer(n) => write!(f, "layer {n}"),
            Group::Post => f.write_str("norm / head"),
        }
    }
}

/// A tensor's place: its group and the block inside the layer
/// (`"self_attn.q_proj.weight"` for `model.layers.3.self_attn.q_proj.weight`).
/// For pre/post tensors the block is the whole name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRef {
    /// Embeddings, a layer, or norm and head.
    pub group: Group,
    /// The name inside the layer; the whole name for pre/post tensors.
    pub block: String,
    /// The name prefix up to and including the layer index
    /// (`"model.layers.3."`), empty for pre/post tensors. Passthrough slices
    /// rename tensors by replacing the index here.
    pub prefix: String,
}

impl LayerRef {
    /// This tensor's name with its layer index replaced by `layer` (for
    /// passthrough slices that stack layers); pre/post names are unchanged.
    pub fn renamed(&self, layer: usize) -> String {
        if self.prefix.is_empty() {
            return self.block.clone();
        }
        // The prefix is "<stem>.<N>.": a marker segment always precedes N, so
        // there is always a stem.
        let stem = self.prefix[..self.prefix.len() - 1]
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or("");
        format!("{stem}.{layer}.{}", self.block)
    }
}

/// One tensor of a [`LayerGroup`]: what the workbench's layer table shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSummary {
    /// The tensor's full name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype in the file.
    pub dtype: Dtype,
}

/// A group of a model's tensors (embeddings, one layer, or norm/head) with
/// its parameter count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerGroup {
    /// Which group.
    pub group: Group,
    /// Elements over all the group's tensors.
    pub params: u64,
    /// The group's tensors, by name.
    pub tensors: Vec<TensorSummary>,
}

impl Model {
    /// The model's tensors by group, in the stable order of
    /// [`Model::tensors`]: embeddings, layers by number, then norm/head;
    /// within a group, by name. Only groups that have tensors appear (a
    /// model without embeddings starts at its first layer). Headers only:
    /// no tensor data is read.
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        let mut groups: Vec<LayerGroup> = Vec::new();
        for t in self.tensors() {
            let g = t.place.group;
            // Tensors come sorted by group: a tensor joins the last group
            // or starts the next.
            if groups.last().is_none_or(|l| l.group != g) {
                groups.push(LayerGroup {
                    group: g,
                    params: 0,
                    tensors: Vec::new(),
                });
            }
            if let Some(l) = groups.last_mut() {
                l.params += t.numel() as u64;
                l.tensors.push(TensorSummary {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    dtype: t.dtype,
                });
            }
        }
        groups
    }
}

/// Segments that, followed by a number, name a layer.
const LAYER_MARKERS: [&str; 4] = ["layers", "layer", "h", "blocks"];

/// Classify a tensor name: `model.layers.N.`, `transformer.h.N.`,
/// `encoder.layer.N.`, `layer.N.`, `blocks.N.`, `layers.N.` (also nested under
/// other prefixes); names before any layer (embeddings) are `Pre`, the rest
/// (final norm, `lm_head`, heads) `Post`.
///
/// Tensors under a `heads.` segment (smelt's multi-head MLPs,
/// `heads.H.layers.J.`) are `Post` even though they contain a layer marker:
/// they are per-task heads on top of the shared trunk, not trunk layers.
pub fn classify(name: &str) -> LayerRef {
    let segs: Vec<&str> = name.split('.').collect();
    let in_heads = segs.first() == Some(&"heads") || name.contains(".heads.");
    if !in_heads {
        // The first marker followed by an index and at least one more segment.
        for i in 0..segs.len().saturating_sub(2) {
            if !LAYER_MARKERS.contains(&segs[i]) {
                continue;
            }
            let Some(n) = parse_index(segs[i + 1]) else {
                continue;
            };
            let prefix_len: usize = segs[..=i + 1].iter().map(|s| s.len() + 1).sum();
            return LayerRef {
                group: Group::Layer(n),
                block: name[prefix_len..].to_string(),
                prefix: name[..prefix_len].to_string(),
            };
        }
    }
    let group = if !in_heads && is_pre(&segs) {
        Group::Pre
    } else {
        Group::Post
    };
    LayerRef {
        group,
        block: name.to_string(),
        prefix: String::new(),
    }
}

/// A plain decimal layer index (no sign, no leading `+`).
fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether a layer-less tensor comes before the layers: embeddings of any
/// kind (token, position, token-type, patch, class), rotary and position
/// tables, and norms applied before the first layer (CLIP's
/// `pre_layrnorm`). GPT-NeoX's `embed_out` is its output head, so it is not
/// an embedding. Checked against the `pre_weights` / `post_weights` of
/// mergekit's architecture definitions (its `_data/architectures/*.json`);
/// the one layout this rule cannot express is old Phi-1's, which numbers
/// its embedding and head as layers.
fn is_pre(segs: &[&str]) -> bool {
    if segs
        .iter()
        .any(|s| matches!(*s, "embed_out" | "output_embeddings"))
    {
        return false;
    }
    segs.iter().any(|s| {
        s.contains("embed")
            || matches!(
                *s,
                "wte"
                    | "wpe"
                    | "rotary_emb"
                    | "rotary_pos_emb"
                    | "relative_pe"
                    | "embeddings"
                    | "pre_layrnorm"
                    | "pre_layernorm"
                    | "ln_pre"
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str) -> (Group, String, String) {
        let r = classify(name);
        (r.group, r.prefix, r.block)
    }

    #[test]
    fn common_architectures() {
        assert_eq!(
            layer("model.layers.3.self_attn.q_proj.weight"),
            (
                Group::Layer(3),
                "model.layers.3.".into(),
                "self_attn.q_proj.weight".into()
            )
        );
        assert_eq!(
            layer("transformer.h.11.attn.c_attn.weight").0,
            Group::Layer(11)
        );
        assert_eq!(
            layer("bert.encoder.layer.7.output.dense.bias").1,
            "bert.encoder.layer.7."
        );
        assert_eq!(
            layer("layer.2.attention.self.query.weight").0,
            Group::Layer(2)
        );
        assert_eq!(layer("blocks.0.mlp.fc1.weight").0, Group::Layer(0));
        assert_eq!(layer("layers.1.weight").0, Group::Layer(1));
        assert_eq!(
            layer("model.language_model.layers.25.mlp.down_proj.weight").1,
            "model.language_model.layers.25."
        );
    }

    #[test]
    fn pre_and_post() {
        for pre in [
            "model.embed_tokens.weight",
            "transformer.wte.weight",
            "transformer.wpe.weight",
            "bert.embeddings.LayerNorm.weight",
            "embeddings.word_embeddings.weight",
            "gpt_neox.embed_in.weight",
            "vision_model.pre_layrnorm.weight",
            "vision_model.embeddings.class_embedding",
            "embeddings.cls_token",
            "transformer.rotary_pos_emb.inv_freq",
            "transformer.relative_pe.slopes",
        ] {
            assert_eq!(classify(pre).group, Group::Pre, "{pre}");
            assert_eq!(classify(pre).prefix, "");
            assert_eq!(classify(pre).block, pre);
        }
        for post in [
            "model.norm.weight",
            "lm_head.weight",
            "transformer.ln_f.bias",
            "bert.pooler.dense.weight",
            "classifier.weight",
            "heads.0.layers.1.weight",
            "model.heads.2.layers.0.bias",
            "embed_out.weight",
            "gpt_neox.final_layer_norm.weight",
            "vision_model.post_layernorm.bias",
            "visual_projection.weight",
            "logit_scale",
        ] {
            assert_eq!(classify(post).group, Group::Post, "{post}");
            assert_eq!(classify(post).prefix, "");
        }
    }

    #[test]
    fn not_layers() {
        // An index must be followed by a block, and be a plain number.
        assert_eq!(classify("layers.3").group, Group::Post);
        assert_eq!(classify("model.layers.x.weight").group, Group::Post);
        assert_eq!(classify("model.layers.-1.weight").group, Group::Post);
        assert_eq!(classify("model.layers_3.weight").group, Group::Post);
    }

    #[test]
    fn ordering_is_numeric() {
        let mut g = vec![Group::Post, Group::Layer(10), Group::Layer(2), Group::Pre];
        g.sort();
        assert_eq!(
            g,
            [Group::Pre, Group::Layer(2), Group::Layer(10), Group::Post]
        );
    }

    #[test]
    fn layer_groups_in_stable_order_with_params() {
        let d = tempfile::tempdir().unwrap();
        // Written out of order; layer 10 sorts after layer 2 by number.
        let t = |n: &str, shape: &[usize]| {
            let numel = shape.iter().product();
            (n.to_string(), shape.to_vec(), vec![0.25f32; numel])
        };
        let tensors = vec![
            t("lm_head.weight", &[5, 3]),
            t("model.layers.10.mlp.w", &[3, 3]),
            t("model.layers.2.self_attn.q.weight", &[3, 2]),
            t("model.layers.2.mlp.w", &[3]),
            t("model.norm.weight", &[3]),
            t("model.embed_tokens.weight", &[5, 3]),
        ];
        crate::model::write_small(d.path(), &tensors, Dtype::BF16, &[]).unwrap();
        let m = Model::open(d.path()).unwrap();
        let groups = m.layer_groups();
        let summary: Vec<(Group, u64, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                let names = g.tensors.iter().map(|t| t.name.as_str()).collect();
                (g.group, g.params, names)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Group::Pre, 15, vec!["model.embed_tokens.weight"]),
                (
                    Group::Layer(2),
                    9,
                    vec!["model.layers.2.mlp.w", "model.layers.2.self_attn.q.weight"]
                ),
                (Group::Layer(10), 9, vec!["model.layers.10.mlp.w"]),
                (Group::Post, 18, vec!["lm_head.weight", "model.norm.weight"]),
            ]
        );
        assert_eq!(
            groups[1].tensors[1],
            TensorSummary {
                name: "model.layers.2.self_attn.q.weight".into(),
                shape: vec![3, 2],
                dtype: Dtype::BF16,
            }
        );
        let total: u64 = groups.iter().map(|g| g.params).sum();
        assert_eq!(total, m.num_params());
    }

    #[test]
    fn renamed_replaces_index() {
        assert_eq!(
            classify("model.layers.3.mlp.up_proj.weight").renamed(17),
            "model.layers.17.mlp.up_proj.weight"
        );
        assert_eq!(classify("lm_head.weight").renamed(5), "lm_head.weight");
    }
}
