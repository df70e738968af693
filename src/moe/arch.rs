//! The output architectures of `smelt moe`, as mergekit-moe 0.1.5 builds
//! them with transformers 5: which one a recipe gets, its `config.json`,
//! and the names and layout of its tensors.
//!
//! - Mixtral (`MixtralForCausalLM`) from Llama or Mistral models, no
//!   shared experts. Each layer's experts are stacked as transformers 5
//!   holds them: `mlp.experts.gate_up_proj` `[E, 2I, H]` (each expert's
//!   `gate_proj` rows, then its `up_proj` rows) and `mlp.experts.down_proj`
//!   `[E, H, I]`; the router is `mlp.gate.weight` `[E, H]`.
//! - Qwen MoE (`Qwen2MoeForCausalLM`) from Qwen2, Llama or Mistral models,
//!   exactly one shared expert. Experts are kept one by one
//!   (`mlp.experts.N.gate_proj.weight`, ...), the shared expert as
//!   `mlp.shared_expert.*`, its gate `mlp.shared_expert_gate.weight`
//!   `[1, H]`; attention biases a Llama or Mistral base lacks are zeros.
//! - Qwen3 MoE (`Qwen3MoeForCausalLM`) from Qwen3 models, no shared
//!   experts, stacked like Mixtral.
//! - DeepSeek MoE (`DeepseekForCausalLM`, the deepseek-moe-16b remote
//!   code) from Llama or Mistral models, at most one shared expert, which
//!   has no gate (and no prompts). Experts are kept one by one like Qwen
//!   MoE's, the shared expert as `mlp.shared_experts.*`. mergekit writes
//!   this config from the base's `to_dict()` with no class of its own, so
//!   the generic attributes stay, with `_name_or_path` (the base as the
//!   recipe names it) and `torch_dtype` (the output dtype) beside the
//!   base's `dtype`.
//!
//! The config is the base's, with what the output class adds and
//! mergekit sets. transformers builds it as `Class(**base.to_dict())` and
//! saves every attribute but the generic ones at their defaults; smelt
//! does the same on the JSON: the base's keys stay (also keys the new
//! class does not know), the class's missing keys get its defaults, then
//! mergekit's values are set.

use serde_json::{json, Map, Value};

/// An output architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutArch {
    /// `MixtralForCausalLM`.
    Mixtral,
    /// `Qwen2MoeForCausalLM` ("Qwen MoE" in mergekit).
    Qwen2Moe,
    /// `Qwen3MoeForCausalLM`.
    Qwen3Moe,
    /// `DeepseekForCausalLM` ("DeepSeek MoE" in mergekit).
    DeepSeek,
}

/// In mergekit's order of preference (Mixtral first, for old recipes; then
/// DeepSeek MoE, which takes a shared expert without prompts before Qwen
/// MoE is tried).
pub const ALL: [OutArch; 4] = [
    OutArch::Mixtral,
    OutArch::DeepSeek,
    OutArch::Qwen2Moe,
    OutArch::Qwen3Moe,
];

impl OutArch {
    /// mergekit's name, which `architecture:` matches by prefix.
    pub fn name(self) -> &'static str {
        match self {
            OutArch::Mixtral => "Mixtral",
            OutArch::Qwen2Moe => "Qwen MoE",
            OutArch::Qwen3Moe => "Qwen3 MoE",
            OutArch::DeepSeek => "DeepSeek MoE",
        }
    }

    /// Why this architecture cannot take these inputs, or `None` when it
    /// can: `types` are the `model_type`s of the base, the experts and the
    /// shared experts; `shared` how many shared experts there are;
    /// `shared_prompts` whether they have prompts; `random` whether the
    /// gates are random.
    pub fn refuses(
        self,
        types: &[String],
        shared: usize,
        shared_prompts: bool,
        random: bool,
    ) -> Option<String> {
        let same = types.windows(2).all(|w| w[0] == w[1]);
        let first = types.first().map(String::as_str).unwrap_or("");
        match self {
            OutArch::Mixtral => {
                if shared > 0 {
                    Some("Mixtral has no shared experts".into())
                } else if !same {
                    Some("Mixtral needs every model of one model_type".into())
                } else if !matches!(first, "llama" | "mistral") {
                    Some(format!(
                        "Mixtral is built from llama or mistral models, not {first}"
                    ))
                } else {
                    None
                }
            }
            OutArch::Qwen2Moe => {
                if shared != 1 {
                    Some(format!(
                        "Qwen MoE needs exactly one shared expert ({shared} given)"
                    ))
                } else if !random && !shared_prompts {
                    Some("Qwen MoE needs prompts for its shared expert".into())
                } else if !same {
                    Some("Qwen MoE needs every model of one model_type".into())
                } else if !matches!(first, "llama" | "mistral" | "qwen2") {
                    Some(format!(
                        "Qwen MoE is built from qwen2, llama or mistral models, not {first}"
                    ))
                } else {
                    None
                }
            }
            OutArch::DeepSeek => {
                if shared > 1 {
                    Some(format!(
                        "DeepSeek MoE takes at most one shared expert ({shared} given)"
                    ))
                } else if shared_prompts {
                    Some("DeepSeek MoE does not gate its shared expert (it has prompts)".into())
                } else if !same {
                    Some("DeepSeek MoE needs every model of one model_type".into())
                } else if !matches!(first, "llama" | "mistral") {
                    Some(format!(
                        "DeepSeek MoE is built from llama or mistral models, not {first}"
                    ))
                } else {
                    None
                }
            }
            OutArch::Qwen3Moe => {
                if shared > 0 {
                    Some("Qwen3 MoE has no shared experts".into())
                } else {
                    types
                        .iter()
                        .find(|t| *t != "qwen3")
                        .map(|t| format!("Qwen3 MoE is built from qwen3 models only, not {t}"))
                }
            }
        }
    }

    /// Whether the experts of a layer are stacked into two tensors
    /// (transformers 5's layout) rather than kept one by one.
    pub fn stacks_experts(self) -> bool {
        !matches!(self, OutArch::Qwen2Moe | OutArch::DeepSeek)
    }

    /// The name of the shared expert's MLP under a layer's `mlp.`.
    pub fn shared_expert(self) -> &'static str {
        match self {
            OutArch::DeepSeek => "shared_experts",
            _ => "shared_expert",
        }
    }

    /// Whether the shared experts have a gate of their own
    /// (`mlp.shared_expert_gate.weight`).
    pub fn gates_shared_experts(self) -> bool {
        self == OutArch::Qwen2Moe
    }

    /// The tensors (other than MLP and router) taken from the base, per
    /// layer, as mergekit's architecture definition lists them. The bool
    /// says whether a missing one is zeros (Qwen MoE's attention biases).
    pub fn layer_tensors(self) -> &'static [(&'static str, bool)] {
        const COMMON: [(&str, bool); 6] = [
            ("input_layernorm.weight", false),
            ("self_attn.q_proj.weight", false),
            ("self_attn.k_proj.weight", false),
            ("self_attn.v_proj.weight", false),
            ("self_attn.o_proj.weight", false),
            ("post_attention_layernorm.weight", false),
        ];
        const QWEN2: [(&str, bool); 9] = [
            COMMON[0],
            COMMON[1],
            COMMON[2],
            COMMON[3],
            COMMON[4],
            COMMON[5],
            ("self_attn.q_proj.bias", true),
            ("self_attn.k_proj.bias", true),
            ("self_attn.v_proj.bias", true),
        ];
        const QWEN3: [(&str, bool); 8] = [
            COMMON[0],
            COMMON[1],
            COMMON[2],
            COMMON[3],
            COMMON[4],
            COMMON[5],
            ("self_attn.q_norm.weight", false),
            ("self_attn.k_norm.weight", false),
        ];
        match self {
            OutArch::Mixtral | OutArch::DeepSeek => &COMMON,
            OutArch::Qwen2Moe => &QWEN2,
            OutArch::Qwen3Moe => &QWEN3,
        }
    }

    /// The output `config.json`, from the base's: `base_name` is the base
    /// as the recipe names it, `experts` and `shared` how many there are,
    /// `per_token` the recipe's `experts_per_token` (mergekit's DeepSeek
    /// code would take 1 beside a shared expert when it is not given, but
    /// the recipe's default, 2, always is).
    pub fn config(
        self,
        base: &Map<String, Value>,
        base_name: &str,
        (experts, shared): (usize, usize),
        per_token: usize,
        dtype: Option<&str>,
    ) -> Map<String, Value> {
        let mut c = base.clone();
        // transformers 5 reads the older spellings and writes the new.
        if let Some(d) = c.remove("torch_dtype") {
            c.entry("dtype").or_insert(d);
        }
        if !c.contains_key("rope_parameters") {
            if let Some(theta) = c.remove("rope_theta") {
                let mut p = match c.remove("rope_scaling") {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if let Some(t) = p.remove("type") {
                    p.entry("rope_type").or_insert(t);
                }
                p.entry("rope_type").or_insert(json!("default"));
                p.insert("rope_theta".into(), theta);
                c.insert("rope_parameters".into(), Value::Object(p));
            }
        }
        c.remove("_name_or_path");
        let layers = c
            .get("num_hidden_layers")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let intermediate = c.get("intermediate_size").cloned().unwrap_or(Value::Null);
        let fill = |c: &mut Map<String, Value>, defaults: &[(&str, Value)]| {
            for (k, v) in defaults {
                c.entry(k.to_string()).or_insert_with(|| v.clone());
            }
        };
        match self {
            OutArch::DeepSeek => {
                return self.deepseek_config(c, base_name, (experts, shared), per_token, dtype)
            }
            OutArch::Mixtral => {
                if c.get("model_type").and_then(Value::as_str) != Some("mistral") {
                    // Through MistralConfig first, as mergekit does.
                    fill(&mut c, &MISTRAL_DEFAULTS());
                    c.insert("sliding_window".into(), Value::Null);
                }
                fill(
                    &mut c,
                    &[
                        ("num_experts_per_tok", json!(2)),
                        ("num_local_experts", json!(8)),
                        ("output_router_logits", json!(false)),
                        ("router_aux_loss_coef", json!(0.001)),
                        ("router_jitter_noise", json!(0.0)),
                        ("sliding_window", Value::Null),
                    ],
                );
                c.insert("architectures".into(), json!(["MixtralForCausalLM"]));
                c.insert("model_type".into(), json!("mixtral"));
                c.insert("num_local_experts".into(), json!(experts));
                c.insert("num_experts_per_tok".into(), json!(per_token));
                c.insert("sliding_window".into(), Value::Null);
            }
            OutArch::Qwen2Moe => {
                fill(
                    &mut c,
                    &[
                        ("attention_dropout", json!(0.0)),
                        ("max_window_layers", json!(28)),
                        ("mlp_only_layers", json!([])),
                        ("output_router_logits", json!(false)),
                        ("qkv_bias", json!(true)),
                        ("router_aux_loss_coef", json!(0.001)),
                        (
                            "layer_types",
                            json!(vec!["full_attention"; layers as usize]),
                        ),
                    ],
                );
                c.insert("architectures".into(), json!(["Qwen2MoeForCausalLM"]));
                c.insert("model_type".into(), json!("qwen2_moe"));
                c.insert("num_experts".into(), json!(experts));
                c.insert("num_experts_per_tok".into(), json!(per_token));
                c.insert("decoder_sparse_step".into(), json!(1));
                c.insert("norm_topk_prob".into(), json!(true));
                c.insert("sliding_window".into(), Value::Null);
                c.insert("use_sliding_window".into(), json!(false));
                c.insert(
                    "shared_expert_intermediate_size".into(),
                    intermediate.clone(),
                );
                c.insert("moe_intermediate_size".into(), intermediate);
            }
            OutArch::Qwen3Moe => {
                fill(
                    &mut c,
                    &[
                        ("attention_bias", json!(false)),
                        ("attention_dropout", json!(0.0)),
                        ("mlp_only_layers", json!([])),
                        ("output_router_logits", json!(false)),
                        ("router_aux_loss_coef", json!(0.001)),
                        ("sliding_window", json!(4096)),
                        ("use_sliding_window", json!(false)),
                    ],
                );
                c.insert("architectures".into(), json!(["Qwen3MoeForCausalLM"]));
                c.insert("model_type".into(), json!("qwen3_moe"));
                // Qwen3MoeConfig maps num_experts to num_local_experts.
                c.remove("num_experts");
                c.insert("num_local_experts".into(), json!(experts));
                c.insert("num_experts_per_tok".into(), json!(per_token));
                c.insert("decoder_sparse_step".into(), json!(1));
                c.insert("norm_topk_prob".into(), json!(true));
                c.insert("moe_intermediate_size".into(), intermediate);
            }
        }
        if let Some(d) = dtype {
            c.insert("dtype".into(), json!(d));
        }
        // Generic attributes at their defaults are not written
        // (`to_diff_dict`).
        for (k, v) in GENERIC_DEFAULTS() {
            if c.get(k) == Some(&v) {
                c.remove(k);
            }
        }
        // Sorted, as transformers writes them.
        let mut keys: Vec<String> = c.keys().cloned().collect();
        keys.sort();
        let mut out = Map::new();
        for k in keys {
            if let Some(v) = c.remove(&k) {
                out.insert(k, v);
            }
        }
        out
    }
}

impl OutArch {
    /// DeepSeek MoE's config (see the module's notes): written as the
    /// base's `to_dict()` is, with mergekit's keys set.
    fn deepseek_config(
        self,
        mut c: Map<String, Value>,
        base_name: &str,
        (experts, shared): (usize, usize),
        per_token: usize,
        dtype: Option<&str>,
    ) -> Map<String, Value> {
        debug_assert_eq!(self, OutArch::DeepSeek);
        for (k, v) in GENERIC_DEFAULTS() {
            if k != "architectures" {
                c.entry(k.to_string()).or_insert(v);
            }
        }
        let intermediate = c.get("intermediate_size").cloned().unwrap_or(Value::Null);
        c.insert("_name_or_path".into(), json!(base_name));
        c.insert("architectures".into(), json!(["DeepseekForCausalLM"]));
        c.insert("model_type".into(), json!("deepseek"));
        c.insert("n_routed_experts".into(), json!(experts));
        c.insert(
            "n_shared_experts".into(),
            if shared > 0 {
                json!(shared)
            } else {
                Value::Null
            },
        );
        c.insert("num_experts_per_tok".into(), json!(per_token));
        c.insert("first_k_dense_replace".into(), json!(0));
        c.insert("moe_layer_freq".into(), json!(1));
        c.insert("scoring_func".into(), json!("softmax"));
        c.insert("norm_topk_prob".into(), json!(true));
        c.insert("moe_intermediate_size".into(), intermediate);
        let remote = "deepseek-ai/deepseek-moe-16b-base--";
        c.insert(
            "auto_map".into(),
            json!({
                "AutoConfig": format!("{remote}configuration_deepseek.DeepseekConfig"),
                "AutoModel": format!("{remote}modeling_deepseek.DeepseekModel"),
                "AutoModelForCausalLM": format!("{remote}modeling_deepseek.DeepseekForCausalLM"),
            }),
        );
        if let Some(d) = dtype {
            c.insert("torch_dtype".into(), json!(d));
        }
        c
    }
}

/// MistralConfig's defaults for the keys a Llama config may lack.
#[allow(non_snake_case)]
fn MISTRAL_DEFAULTS() -> Vec<(&'static str, Value)> {
    vec![
        ("attention_dropout", json!(0.0)),
        ("hidden_act", json!("silu")),
        ("initializer_range", json!(0.02)),
        ("rms_norm_eps", json!(1e-6)),
        ("tie_word_embeddings", json!(false)),
        ("use_cache", json!(true)),
    ]
}

/// `PreTrainedConfig()`'s attributes that are dropped when at these
/// values.
#[allow(non_snake_case)]
fn GENERIC_DEFAULTS() -> Vec<(&'static str, Value)> {
    vec![
        ("architectures", Value::Null),
        ("chunk_size_feed_forward", json!(0)),
        ("id2label", json!({"0": "LABEL_0", "1": "LABEL_1"})),
        ("is_encoder_decoder", json!(false)),
        ("label2id", json!({"LABEL_0": 0, "LABEL_1": 1})),
        ("output_attentions", json!(false)),
        ("output_hidden_states", json!(false)),
        ("problem_type", Value::Null),
        ("return_dict", json!(true)),
    ]
}
