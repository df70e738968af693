//! The layer catalogue: which layer (or pre/post group) a tensor belongs to.

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

/// A tensor's place: its group and the block inside the layer
/// (`"self_attn.q_proj.weight"` for `model.layers.3.self_attn.q_proj.weight`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRef {
    pub group: Group,
    pub block: String,
    /// The name prefix up to and including the layer index
    /// (`"model.layers.3."`), empty for pre/post tensors. Passthrough slices
    /// rename tensors by replacing the index here.
    pub prefix: String,
}

/// Classify a tensor name: `model.layers.N.`, `transformer.h.N.`,
/// `encoder.layer.N.`, `layer.N.`, `blocks.N.`, `layers.N.` (also nested under
/// other prefixes); names before any layer (embeddings) are `Pre`, the rest
/// (final norm, `lm_head`, heads) `Post`.
pub fn classify(name: &str) -> LayerRef {
    let _ = name;
    todo!()
}
