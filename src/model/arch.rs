//! What smelt knows about architectures' `config.json`: which key counts
//! the layers, which lists hold one entry per layer, and which nested
//! configs hold towers of their own. Kept in this one table so that reading
//! a layer count ([`layer_count`]) and writing the config of a merge whose
//! slices change the layer count ([`sliced_config`]) agree.
//!
//! The layer-count keys follow mergekit's architecture definitions
//! (`num_layers_config_key`: `n_layer` for GPT-2, GPT-BigCode, Jais and the
//! old Phi formats, `num_hidden_layers` for the rest). Architectures mergekit
//! does not define (ViT, CLIP, ...) use the first layer-count key their
//! config has. Two-tower models (CLIP, SigLIP) keep a layer count in each
//! tower's nested config; smelt's catalogue numbers both towers' layers
//! alike (`text_model.encoder.layers.N`, `vision_model.encoder.layers.N`),
//! so slices take the same layers of every tower, and every tower's count
//! and lists are rewritten. (mergekit refuses top-level `slices` on such
//! models and wants its `modules:` syntax, which smelt does not read.)

use serde_json::Value;

/// Keys that hold a layer count, in the order they are looked for.
pub const LAYER_COUNT_KEYS: [&str; 4] = ["num_hidden_layers", "n_layer", "num_layers", "n_layers"];

/// Config lists with one entry per layer (transformers checks
/// `layer_types` and `mlp_layer_types` against `num_hidden_layers`). The
/// output's list takes, for each output layer, the entry of the layer it
/// came from.
pub const PER_LAYER_LISTS: [&str; 4] = [
    "layer_types",
    "mlp_layer_types",
    "no_rope_layers",
    "layers_block_type",
];

/// Config lists of layer indices (`mlp_only_layers`: the layers whose MLP
/// is dense in a mixture-of-experts model; `cross_attention_layers`). The
/// output's list holds the output layers whose source layer was listed.
pub const LAYER_INDEX_LISTS: [&str; 2] = ["mlp_only_layers", "cross_attention_layers"];

/// One architecture's config layout.
struct Arch {
    /// `model_type` values it covers.
    model_types: &'static [&'static str],
    /// The key of the layer count (in each tower when there are towers).
    count_key: &'static str,
    /// Nested configs that are towers with layers of their own; empty when
    /// the layers are counted at the top level.
    towers: &'static [&'static str],
}

/// Architectures whose layout is not the default (`num_hidden_layers` at
/// the top, found by [`LAYER_COUNT_KEYS`] order anyway).
const ARCHS: &[Arch] = &[
    Arch {
        model_types: &[
            "gpt2",
            "gpt_bigcode",
            "jais",
            "mixformer-sequential",
            "phi-msft",
        ],
        count_key: "n_layer",
        towers: &[],
    },
    Arch {
        model_types: &["clip", "siglip", "siglip2", "chinese_clip", "altclip"],
        count_key: "num_hidden_layers",
        towers: &["text_config", "vision_config"],
    },
];

fn arch_of(config: &Value) -> Option<&'static Arch> {
    let mt = config.get("model_type")?.as_str()?;
    ARCHS.iter().find(|a| a.model_types.contains(&mt))
}

/// Where the layer count lives: `(tower, key)` pairs, `tower` `None` for
/// the top level. Empty when the config states no layer count.
fn count_locations(config: &Value) -> Vec<(Option<&'static str>, String)> {
    if let Some(a) = arch_of(config) {
        if a.towers.is_empty() {
            return vec![(None, a.count_key.to_string())];
        }
        return a
            .towers
            .iter()
            .filter(|t| config.get(**t).is_some_and(Value::is_object))
            .map(|t| (Some(*t), a.count_key.to_string()))
            .collect();
    }
    let find = |v: &Value| {
        LAYER_COUNT_KEYS
            .iter()
            .find(|k| v.get(**k).is_some_and(Value::is_u64))
            .map(|k| k.to_string())
    };
    if let Some(k) = find(config) {
        return vec![(None, k)];
    }
    // Multimodal wrappers (LLaVA & co.) count the language model's layers
    // in `text_config`.
    if let Some(k) = config.get("text_config").and_then(find) {
        return vec![(Some("text_config"), k)];
    }
    Vec::new()
}

/// List `k` of tower `t` in the config of the model layer `o` comes from,
/// else the output config's own (`own`, the same tower).
fn source_list<'v>(
    o: &LayerOrigin<'v>,
    t: Option<&str>,
    own: &'v Value,
    k: &str,
) -> Option<&'v Vec<Value>> {
    o.config
        .and_then(|c| tower(c, t))
        .and_then(|c| c.get(k))
        .and_then(Value::as_array)
        .or_else(|| own.get(k).and_then(Value::as_array))
}

fn tower<'v>(config: &'v Value, t: Option<&str>) -> Option<&'v Value> {
    match t {
        None => Some(config),
        Some(t) => config.get(t),
    }
}

/// The layer count a config states: the architecture's key (see the module
/// docs), in the first tower for two-tower models.
pub fn layer_count(config: &Value) -> Option<usize> {
    count_locations(config).into_iter().find_map(|(t, k)| {
        let n = tower(config, t)?.get(&k)?.as_u64()?;
        usize::try_from(n).ok()
    })
}

/// Where one output layer comes from: the config of the model whose layer
/// it is (if that model has one) and the layer's index there.
#[derive(Clone, Copy, Debug)]
pub struct LayerOrigin<'a> {
    /// The source model's `config.json`.
    pub config: Option<&'a Value>,
    /// The layer's index in the source model.
    pub layer: usize,
}

/// The config of an output whose layers are `origins` (one per output
/// layer, in order), made from `config` (the base or first model's): the
/// layer count set under the architecture's own key, and every per-layer
/// list ([`PER_LAYER_LISTS`], [`LAYER_INDEX_LISTS`]) taken from the
/// source layers, in every tower. A config that states no layer count gets
/// `num_hidden_layers`. Errors (as a sentence naming the key) when a list
/// is shorter than the layers it should describe, or when the towers of a
/// two-tower model have different layer counts (slices take the same
/// layers of every tower).
pub fn sliced_config(config: &Value, origins: &[LayerOrigin<'_>]) -> Result<Value, String> {
    let mut out = config.clone();
    let locations = count_locations(config);
    if locations.is_empty() {
        if let Some(obj) = out.as_object_mut() {
            obj.insert("num_hidden_layers".into(), Value::from(origins.len()));
        }
        return Ok(out);
    }
    // Every config involved must count its towers alike.
    if locations.len() > 1 {
        let sources = std::iter::once(config).chain(origins.iter().filter_map(|o| o.config));
        for c in sources {
            let counts: Vec<(String, Option<u64>)> = count_locations(c)
                .into_iter()
                .map(|(t, k)| {
                    let n = tower(c, t).and_then(|v| v.get(&k)).and_then(Value::as_u64);
                    (format!("{}.{k}", t.unwrap_or("")), n)
                })
                .collect();
            if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                let said: Vec<String> = counts
                    .iter()
                    .map(|(k, n)| format!("{k} = {}", n.map_or("none".into(), |n| n.to_string())))
                    .collect();
                return Err(format!(
                    "slices take the same layers of every tower, but this model's towers differ in \
                     layer count ({})",
                    said.join(", ")
                ));
            }
        }
    }
    for (t, key) in locations {
        let own = tower(config, t).cloned().unwrap_or(Value::Null);
        let at = |k: &str| match t {
            Some(t) => format!("{t}.{k}"),
            None => k.to_string(),
        };
        let mut lists: Vec<(&str, Value)> = Vec::new();
        for k in PER_LAYER_LISTS {
            if !own.get(k).is_some_and(Value::is_array) {
                continue;
            }
            let mut new = Vec::with_capacity(origins.len());
            for o in origins {
                let src = source_list(o, t, &own, k);
                let Some(v) = src.and_then(|l| l.get(o.layer)) else {
                    return Err(format!(
                        "config.json: `{}` has no entry for layer {} (it must list every layer)",
                        at(k),
                        o.layer
                    ));
                };
                new.push(v.clone());
            }
            lists.push((k, Value::Array(new)));
        }
        for k in LAYER_INDEX_LISTS {
            if !own.get(k).is_some_and(Value::is_array) {
                continue;
            }
            let mut new = Vec::new();
            for (j, o) in origins.iter().enumerate() {
                let src = source_list(o, t, &own, k);
                let listed =
                    src.is_some_and(|l| l.iter().any(|x| x.as_u64() == Some(o.layer as u64)));
                if listed {
                    new.push(Value::from(j));
                }
            }
            lists.push((k, Value::Array(new)));
        }
        let Some(obj) = (match t {
            None => out.as_object_mut(),
            Some(t) => out.get_mut(t).and_then(Value::as_object_mut),
        }) else {
            continue;
        };
        obj.insert(key, Value::from(origins.len()));
        for (k, v) in lists {
            obj.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origins<'a>(c: &'a Value, layers: &[usize]) -> Vec<LayerOrigin<'a>> {
        layers
            .iter()
            .map(|&layer| LayerOrigin {
                config: Some(c),
                layer,
            })
            .collect()
    }

    #[test]
    fn counts_by_architecture() {
        assert_eq!(
            layer_count(&json!({"model_type": "gpt2", "n_layer": 4})),
            Some(4)
        );
        // GPT-2's own key wins over a stray one.
        assert_eq!(
            layer_count(&json!({"model_type": "gpt2", "n_layer": 4, "num_hidden_layers": 6})),
            Some(4)
        );
        assert_eq!(
            layer_count(&json!({"model_type": "mpt", "n_layers": 3})),
            Some(3)
        );
        assert_eq!(
            layer_count(&json!({"model_type": "t5", "num_layers": 2})),
            Some(2)
        );
        assert_eq!(
            layer_count(
                &json!({"model_type": "clip", "text_config": {"num_hidden_layers": 5},
                "vision_config": {"num_hidden_layers": 5}})
            ),
            Some(5)
        );
        assert_eq!(
            layer_count(&json!({"model_type": "llava", "text_config": {"num_hidden_layers": 7}})),
            Some(7)
        );
        assert_eq!(layer_count(&json!({"model_type": "x"})), None);
    }

    #[test]
    fn gpt2_key_updated_not_added() {
        let c = json!({"model_type": "gpt2", "n_layer": 5});
        let out = sliced_config(&c, &origins(&c, &[0, 1, 2, 3, 1, 2])).unwrap();
        assert_eq!(out, json!({"model_type": "gpt2", "n_layer": 6}));
    }

    #[test]
    fn per_layer_lists_follow_the_layers() {
        let a = json!({"model_type": "gemma2", "num_hidden_layers": 3,
            "layer_types": ["s", "f", "s"], "mlp_only_layers": [1]});
        let b = json!({"model_type": "gemma2", "num_hidden_layers": 3,
            "layer_types": ["x", "y", "z"], "mlp_only_layers": [0, 2]});
        let mut o = origins(&a, &[0, 1]);
        o.extend(origins(&b, &[1, 2]));
        let out = sliced_config(&a, &o).unwrap();
        assert_eq!(out["num_hidden_layers"], 4);
        assert_eq!(out["layer_types"], json!(["s", "f", "y", "z"]));
        assert_eq!(out["mlp_only_layers"], json!([1, 3]));
    }

    #[test]
    fn short_list_is_an_error() {
        let c = json!({"num_hidden_layers": 3, "layer_types": ["s"]});
        let e = sliced_config(&c, &origins(&c, &[0, 2])).unwrap_err();
        assert!(e.contains("`layer_types` has no entry for layer 2"), "{e}");
    }

    #[test]
    fn towers_rewritten_alike() {
        let c = json!({"model_type": "clip",
            "text_config": {"num_hidden_layers": 3, "layer_types": ["a", "b", "c"]},
            "vision_config": {"num_hidden_layers": 3}});
        let out = sliced_config(&c, &origins(&c, &[2, 0])).unwrap();
        assert_eq!(out["text_config"]["num_hidden_layers"], 2);
        assert_eq!(out["text_config"]["layer_types"], json!(["c", "a"]));
        assert_eq!(out["vision_config"]["num_hidden_layers"], 2);
        assert!(out.get("num_hidden_layers").is_none());
        let uneven = json!({"model_type": "clip", "text_config": {"num_hidden_layers": 3},
            "vision_config": {"num_hidden_layers": 4}});
        let e = sliced_config(&uneven, &origins(&uneven, &[0])).unwrap_err();
        assert!(e.contains("vision_config.num_hidden_layers = 4"), "{e}");
    }

    #[test]
    fn no_count_gets_num_hidden_layers() {
        let c = json!({"model_type": "mystery"});
        let out = sliced_config(&c, &origins(&c, &[0, 0])).unwrap();
        assert_eq!(out["num_hidden_layers"], 2);
    }
}
