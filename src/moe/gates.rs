//! Router (gate) weights: one `[experts, hidden]` matrix per layer.
//!
//! `cheap_embed`, as mergekit 0.1.5's `get_cheap_embedding`: each prompt
//! is the base's BOS token text followed by the prompt, tokenised by the
//! base model's fast tokenizer (`tokenizer.json`) without special tokens
//! added; the embedding rows (`model.embed_tokens.weight`) of every token
//! of every prompt are summed and the sum divided by its L2 norm (at least
//! 1e-8). With negative prompts, their vector is subtracted and the
//! difference normalised again. Every layer gets the same rows. Padding
//! in mergekit is masked out, so it changes nothing and is not done here.
//! Sums are taken in f64, so values agree with mergekit's f32 arithmetic to
//! f32 rounding.
//!
//! `random` and `uniform_random` draw from a counter-based stream keyed by
//! the seed ([`crate::merge::rng::Stream`]), so the same seed gives the
//! same gates on every machine. The values are not torch's (mergekit calls
//! `torch.randn` unseeded); the distributions are the same.

use super::MoeError;
use crate::merge::rng::Stream;
use crate::model::Model;
use std::path::Path;

/// The gates: `[layer][expert * hidden + h]`, experts first, then shared
/// experts.
pub type Gates = Vec<Vec<f32>>;

/// Standard normal draws `i` of a stream (Box-Muller on two uniforms).
pub(crate) fn normal(s: &Stream, i: usize) -> f32 {
    let u1 = (f64::from(s.uniform(2 * i)) + 1.0 / 33_554_432.0).min(1.0);
    let u2 = f64::from(s.uniform(2 * i + 1));
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Random gates: `layers` matrices of `experts` rows of `hidden`.
pub fn random(seed: u64, layers: usize, experts: usize, hidden: usize, uniform: bool) -> Gates {
    let scale = (1.0 / hidden as f64).sqrt() as f32;
    (0..layers)
        .map(|l| {
            let s = Stream::new(seed, &format!("moe.gate.{l}"), 0);
            (0..experts * hidden)
                .map(|i| {
                    if uniform {
                        s.uniform(i) * 2.0 * scale - scale
                    } else {
                        normal(&s, i)
                    }
                })
                .collect()
        })
        .collect()
}

/// The BOS token's text, from `tokenizer_config.json` (or
/// `special_tokens_map.json`): a string or `{"content": ...}`.
fn bos_text(dir: &Path) -> Option<String> {
    for f in ["tokenizer_config.json", "special_tokens_map.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(f)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        match v.get("bos_token") {
            Some(serde_json::Value::String(s)) => return Some(s.clone()),
            Some(serde_json::Value::Object(m)) => {
                if let Some(s) = m.get("content").and_then(|c| c.as_str()) {
                    return Some(s.to_string());
                }
            }
            Some(serde_json::Value::Null) => return None,
            _ => {}
        }
    }
    None
}

/// The base model's tokenizer, loaded once for every expert's prompts.
pub struct PromptTokenizer {
    tok: tokenizers::Tokenizer,
    bos: String,
}

impl PromptTokenizer {
    /// Load `tokenizer.json` (and the BOS token) from a model folder.
    pub fn load(dir: &Path) -> Result<PromptTokenizer, MoeError> {
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            return Err(MoeError::Model(format!(
                "{}: no tokenizer.json (gate_mode cheap_embed tokenises the prompts with \
                 the base model's fast tokenizer)",
                dir.display()
            )));
        }
        let tok = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| MoeError::Model(format!("{}: {e}", file.display())))?;
        Ok(PromptTokenizer {
            tok,
            bos: bos_text(dir).unwrap_or_default(),
        })
    }

    /// The token ids of one prompt, as mergekit tokenises it.
    pub fn ids(&self, prompt: &str) -> Result<Vec<u32>, MoeError> {
        let text = format!("{}{}", self.bos, prompt);
        let enc = self
            .tok
            .encode(text.as_str(), false)
            .map_err(|e| MoeError::Model(format!("tokenising the prompt {prompt:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// The base's embedding rows summed over every token of `prompts`, then
/// normalised.
fn embed_prompts(
    model: &Model,
    tok: &PromptTokenizer,
    prompts: &[String],
    vocab: usize,
    hidden: usize,
) -> Result<Vec<f64>, MoeError> {
    const EMBED: &str = "model.embed_tokens.weight";
    let t = model.tensor(EMBED).ok_or_else(|| {
        MoeError::Model(format!(
            "{}: no tensor {EMBED} (gate_mode cheap_embed reads the base's token embeddings)",
            model.path().display()
        ))
    })?;
    if t.shape != [vocab, hidden] {
        return Err(MoeError::Model(format!(
            "{}: {EMBED} is {:?}, but config.json's vocab_size and hidden_size make it \
             [{vocab}, {hidden}]",
            model.path().display(),
            t.shape
        )));
    }
    let mut sum = vec![0f64; hidden];
    let mut row = vec![0f32; hidden];
    for p in prompts {
        for id in tok.ids(p)? {
            let id = id as usize;
            if id >= vocab {
                return Err(MoeError::Model(format!(
                    "the prompt {p:?} has token id {id}, past the base's vocab_size {vocab}"
                )));
            }
            model
                .read_f32(t, id * hidden, &mut row)
                .map_err(|e| MoeError::Model(e.to_string()))?;
            for (s, &x) in sum.iter_mut().zip(&row) {
                *s += f64::from(x);
            }
        }
    }
    normalise(&mut sum);
    Ok(sum)
}

fn normalise(v: &mut [f64]) {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-8);
    for x in v {
        *x /= n;
    }
}

/// One gate row per expert from its prompts (`cheap_embed`).
pub fn cheap_embed(
    model: &Model,
    tok: &PromptTokenizer,
    experts: &[&super::recipe::Expert],
    layers: usize,
    vocab: usize,
    hidden: usize,
) -> Result<Gates, MoeError> {
    let mut rows = Vec::with_capacity(experts.len() * hidden);
    for e in experts {
        let mut v = embed_prompts(model, tok, &e.positive, vocab, hidden)?;
        if !e.negative.is_empty() {
            let n = embed_prompts(model, tok, &e.negative, vocab, hidden)?;
            // mergekit rounds each normalised vector to f32 before the
            // difference.
            for (a, b) in v.iter_mut().zip(&n) {
                *a = f64::from(*a as f32) - f64::from(*b as f32);
            }
        }
        normalise(&mut v);
        rows.extend(v.iter().map(|&x| x as f32));
    }
    Ok(vec![rows; layers])
}
