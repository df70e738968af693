//! Tokenizers and vocabularies, as mergekit 0.1.5 handles them.
//!
//! With `tokenizer_source` (or a `tokenizer:` block) in a recipe, the
//! output gets its own vocabulary and every vocabulary-indexed tensor
//! (embeddings, LM head: [`is_vocab_tensor`]) is permuted into it, per
//! input model, before the merge sees it:
//! - `base`: the base model's tokenizer (the first model's without a base),
//!   without tokens at or past its config's `vocab_size`;
//! - `union`: that, plus every token another model has that it lacks, in
//!   model order (regular tokens first, then added tokens), each appended
//!   as an added token;
//! - a model: that model's tokenizer as it is;
//! - `tokenizer.tokens`: tokens still missing are appended, and their rows
//!   come from where the entry says.
//!
//! A model without a token gets, in that token's row: the row of the one
//! model that has it; else the base's; else the average of the models that
//! have it; a token no model has gets zeros. An explicit `tokens` source
//! wins, and with `force` it replaces even the rows of models that have
//! the token. `pad_to_multiple_of` appends rows holding the mean of each
//! model's permuted rows.
//!
//! This module is pure: it reads tokenizer files (`tokenizer.json`,
//! `tokenizer_config.json`, `config.json`) and returns the output
//! vocabulary, the files to write for it and, for any set of models taking
//! part in one tensor, where each row of each model's permuted tensor
//! comes from ([`Fill`]). The engine gathers rows from that.
//!
//! `tokenizer.json` is read and written with serde_json rather than the
//! `tokenizers` crate: a merge needs only the vocabulary (`model.vocab`,
//! `added_tokens`) and to append added tokens, which is plain JSON editing,
//! and the crate would add its regex and normaliser stack to the build for
//! nothing. Only fast tokenizers (a `tokenizer.json`) are read.
//!
//! Two mergekit details are made deterministic: mergekit visits the models
//! of a union in an unspecified (hash) order and each model's tokens in
//! hash order; smelt visits the base, then the recipe's models in order,
//! and each model's tokens by id. Both agree whenever one model
//! contributes the new tokens of each kind.

use crate::recipe::{TokenRef, TokenSource, TokenizerSpec, VocabSource};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Names of mergekit's built-in chat templates (`chat_template: chatml`).
pub const BUILTIN_TEMPLATES: &[&str] = &["alpaca", "chatml", "exaone", "llama3", "mistral"];

/// The text of a built-in chat template. These are the chat formats of
/// their model families, as mergekit 0.1.5 ships them (its
/// `_data/chat_templates`), so that a recipe naming one writes the same
/// template.
pub fn builtin_template(name: &str) -> Option<&'static str> {
    Some(match name {
        "alpaca" => include_str!("templates/alpaca.jinja"),
        "chatml" => include_str!("templates/chatml.jinja"),
        "exaone" => include_str!("templates/exaone.jinja"),
        "llama3" => include_str!("templates/llama3.jinja"),
        "mistral" => include_str!("templates/mistral.jinja"),
        _ => return None,
    })
}

/// Tensors indexed by token along their first axis: the names mergekit's
/// architecture definitions give a `vocabulary_axis` (always 0), for every
/// architecture it knows.
pub const VOCAB_TENSORS: &[&str] = &[
    "model.embed_tokens.weight",
    "embed_tokens.weight",
    "lm_head.weight",
    "lm_head.bias",
    "model.language_model.embed_tokens.weight",
    "model.tok_embeddings.weight",
    "output.weight",
    "transformer.wte.weight",
    "transformer.embd.wte.weight",
    "transformer.word_embeddings.weight",
    "transformer.embedding.word_embeddings.weight",
    "transformer.output_layer.weight",
    "gpt_neox.embed_in.weight",
    "embed_out.weight",
    "backbone.embeddings.weight",
    "bert.embeddings.word_embeddings.weight",
    "roberta.embeddings.word_embeddings.weight",
    "distilbert.embeddings.word_embeddings.weight",
    "embeddings.word_embeddings.weight",
    "cls.predictions.decoder.weight",
    "cls.predictions.bias",
    "lm_head.decoder.weight",
    "lm_head.linear.weight",
    "lm_head.linear.bias",
    "decoder.embed_tokens.weight",
    "encoder.embed_tokens.weight",
    "shared.weight",
    "vocab_projector.weight",
    "vocab_projector.bias",
];

/// Whether a file of a model folder belongs to its tokenizer (not copied
/// when the output gets a tokenizer of its own).
pub fn is_tokenizer_file(name: &str) -> bool {
    matches!(
        name,
        "tokenizer.json"
            | "tokenizer_config.json"
            | "tokenizer.model"
            | "special_tokens_map.json"
            | "added_tokens.json"
            | "vocab.json"
            | "merges.txt"
            | "chat_template.jinja"
    )
}

/// Whether a tensor is permuted into the output vocabulary.
pub fn is_vocab_tensor(name: &str) -> bool {
    VOCAB_TENSORS.contains(&name)
}

/// Why the tokenizers cannot be combined.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read or parsed.
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The settings ask for something the models cannot give.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, TokenizerError>;

fn file_err(path: &Path, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file_err(path, format!("not valid JSON: {e}")))
}

/// One model's tokenizer, as its folder has it.
#[derive(Clone, Debug)]
pub struct ModelTokenizer {
    /// The model folder.
    pub dir: PathBuf,
    /// `tokenizer.json`.
    pub json: Value,
    /// `tokenizer_config.json`, if any.
    pub config: Option<Value>,
    /// `special_tokens_map.json`, if any.
    pub special_tokens_map: Option<Value>,
    /// The model's chat template (`chat_template.jinja`, else
    /// `tokenizer_config.json`'s `chat_template`), if any.
    pub chat_template: Option<String>,
    /// Token → id, added tokens included.
    pub vocab: HashMap<String, usize>,
    /// The model's `vocab_size` (rows of its embeddings), from
    /// `config.json`; the vocabulary's length when it has none.
    pub vocab_size: usize,
}

impl ModelTokenizer {
    /// Read the tokenizer of the model folder `dir`.
    pub fn load(dir: &Path) -> Result<ModelTokenizer> {
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(file_err(
                &tj,
                "missing: tokenizer settings need each model's tokenizer.json (a fast tokenizer)",
            ));
        }
        let json = read_json(&tj)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let config = if cfg_path.is_file() {
            Some(read_json(&cfg_path)?)
        } else {
            None
        };
        let stm = dir.join("special_tokens_map.json");
        let special_tokens_map = if stm.is_file() {
            Some(read_json(&stm)?)
        } else {
            None
        };
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| file_err(&jinja, e.to_string()))?)
        } else {
            config
                .as_ref()
                .and_then(|c| c.get("chat_template"))
                .and_then(template_of)
        };
        let vocab = vocab_of(&json).map_err(|m| file_err(&tj, m))?;
        let model_cfg = dir.join("config.json");
        let vocab_size = if model_cfg.is_file() {
            let c = read_json(&model_cfg)?;
            c.get("vocab_size")
                .or_else(|| c.get("text_config").and_then(|t| t.get("vocab_size")))
                .and_then(Value::as_u64)
                .map(|v| v as usize)
        } else {
            None
        }
        .unwrap_or(vocab.len());
        Ok(ModelTokenizer {
            dir: dir.to_path_buf(),
            json,
            config,
            special_tokens_map,
            chat_template,
            vocab,
            vocab_size,
        })
    }

    /// The tokenizer without tokens at or past `vocab_size` (mergekit does
    /// this to the base's; BPE only, as there).
    fn stripped(&self) -> Result<ModelTokenizer> {
        let unused: Vec<&String> = self
            .vocab
            .iter()
            .filter(|(_, &i)| i >= self.vocab_size)
            .map(|(t, _)| t)
            .collect();
        if unused.is_empty() {
            return Ok(self.clone());
        }
        let path = self.dir.join("tokenizer.json");
        let kind = self.json["model"]["type"].as_str().unwrap_or("?");
        if kind != "BPE" {
            return Err(file_err(
                &path,
                format!(
                    "has tokens past the model's vocab_size {} and is a {kind} tokenizer; only BPE ones can be cut down (as in mergekit)",
                    self.vocab_size
                ),
            ));
        }
        let unused: std::collections::HashSet<String> = unused.into_iter().cloned().collect();
        let mut json = self.json.clone();
        if let Some(a) = json["added_tokens"].as_array_mut() {
            a.retain(|e| {
                e["id"]
                    .as_u64()
                    .is_some_and(|i| (i as usize) < self.vocab_size)
            });
        }
        if let Some(v) = json["model"]["vocab"].as_object_mut() {
            v.retain(|t, _| !unused.contains(t));
        }
        if let Some(m) = json["model"]["merges"].as_array_mut() {
            m.retain(|e| {
                let parts: Vec<String> = match e {
                    Value::String(s) => s.split(' ').map(str::to_string).collect(),
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                !parts.iter().any(|p| unused.contains(p))
            });
        }
        let vocab = vocab_of(&json).map_err(|m| file_err(&path, m))?;
        Ok(ModelTokenizer {
            json,
            vocab,
            ..self.clone()
        })
    }

    /// Added tokens (`added_tokens` of tokenizer.json) by id.
    fn added(&self) -> Vec<(usize, Value)> {
        let mut out: Vec<(usize, Value)> = self.json["added_tokens"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| Some((e["id"].as_u64()? as usize, e.clone())))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|(i, _)| *i);
        out
    }
}

/// A chat template from tokenizer_config.json: a string, or a list of
/// named ones (the `default`).
fn template_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(|e| {
            (e.get("name")?.as_str()? == "default")
                .then(|| e.get("template")?.as_str().map(str::to_string))?
        }),
        _ => None,
    }
}

/// Token → id of a tokenizer.json, added tokens included.
fn vocab_of(json: &Value) -> std::result::Result<HashMap<String, usize>, String> {
    let mut out = HashMap::new();
    match &json["model"]["vocab"] {
        Value::Object(m) => {
            for (t, i) in m {
                let i = i
                    .as_u64()
                    .ok_or_else(|| format!("token {t:?} has id {i}, not a number"))?;
                out.insert(t.clone(), i as usize);
            }
        }
        // Unigram: [token, score] pairs, the id is the position.
        Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                if let Some(t) = e.get(0).and_then(Value::as_str) {
                    out.insert(t.to_string(), i);
                }
            }
        }
        Value::Null => {}
        _ => return Err("`model.vocab` is neither a map nor a list".into()),
    }
    if let Some(a) = json["added_tokens"].as_array() {
        for e in a {
            if let (Some(t), Some(i)) = (e["content"].as_str(), e["id"].as_u64()) {
                out.insert(t.to_string(), i as usize);
            }
        }
    }
    Ok(out)
}

/// The output's vocabulary and how each model maps into it.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    /// Tokens by output id (`tokens[i]` has id `i`; gaps are empty).
    pub tokens: Vec<String>,
    /// Rows of the output's vocabulary tensors: the vocabulary padded to
    /// `pad_to_multiple_of`. Also the output config's `vocab_size`.
    pub rows: usize,
    /// Per model (the order given to [`Vocabulary::build`]): for each
    /// output id, the model's row of that token, or `None`.
    pub perm: Vec<Vec<Option<usize>>>,
    /// Per model, its own vocabulary (for `model_token` sources by text).
    original: Vec<HashMap<String, usize>>,
    /// Per model, its `vocab_size`.
    sizes: Vec<usize>,
    /// `force` and sources of `tokenizer.tokens`, by output id.
    explicit: HashMap<usize, (Option<TokenSource>, bool)>,
    /// Model paths, to match token sources to models.
    paths: Vec<PathBuf>,
    /// The output tokenizer files (name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Where one row of one model's permuted tensor comes from. Indices name
/// positions in the participant list given to [`Vocabulary::fills`].
#[derive(Clone, Debug, PartialEq)]
pub enum Fill {
    /// Row `row` of participant `input`'s tensor.
    Row {
        /// Participant.
        input: usize,
        /// Its row.
        row: usize,
    },
    /// The average of these rows (participant, row), summed in this order.
    Mean(Vec<(usize, usize)>),
    /// Zeros.
    Zero,
    /// Padding: the mean of rows `0..vocabulary length` of this same
    /// permuted tensor.
    PadMean,
}

impl Vocabulary {
    /// Build the output vocabulary. `models` are the model folders taking
    /// part in the merge, `base` the index of the base among them (mergekit
    /// takes the first without one), `chat` the recipe's chat template.
    pub fn build(
        spec: &TokenizerSpec,
        models: &[PathBuf],
        base: Option<usize>,
        chat: Option<&str>,
    ) -> Result<Vocabulary> {
        if models.is_empty() {
            return Err(TokenizerError::Invalid("no models".into()));
        }
        let base = base.unwrap_or(0);
        let mut toks: Vec<Option<ModelTokenizer>> = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let dir = folder(m);
            // mergekit goes on with the base's vocabulary for a model whose
            // tokenizer cannot be loaded; smelt needs the base's only.
            let t = if i == base {
                Some(ModelTokenizer::load(&dir)?.stripped()?)
            } else if dir.join("tokenizer.json").is_file() {
                Some(ModelTokenizer::load(&dir)?)
            } else {
                None
            };
            toks.push(t);
        }
        let Some(base_tok) = toks[base].clone() else {
            return Err(TokenizerError::Invalid("the base has no tokenizer".into()));
        };
        // Each model's vocabulary and size (mergekit: a model without a
        // tokenizer has the base's vocabulary, and its own vocab_size).
        let mut original = Vec::new();
        let mut sizes = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            match t {
                Some(t) => {
                    original.push(t.vocab.clone());
                    sizes.push(t.vocab_size);
                }
                None => {
                    original.push(base_tok.vocab.clone());
                    sizes.push(
                        config_vocab_size(&folder(&models[i])).unwrap_or(base_tok.vocab.len()),
                    );
                }
            }
        }
        let mut out = match &spec.source {
            VocabSource::Base => OutTokenizer::from(&base_tok),
            VocabSource::Model(p) => OutTokenizer::from(&ModelTokenizer::load(&folder(p))?),
            VocabSource::Union => {
                let mut o = OutTokenizer::from(&base_tok);
                let order: Vec<usize> = std::iter::once(base)
                    .chain((0..models.len()).filter(|&i| i != base))
                    .collect();
                // Regular tokens first, then added ones, as mergekit adds them.
                let mut added_all: Vec<Value> = Vec::new();
                let mut added_seen: std::collections::HashSet<String> = Default::default();
                let mut regular: Vec<String> = Vec::new();
                let mut regular_seen: std::collections::HashSet<String> = Default::default();
                for &i in &order {
                    let Some(t) = &toks[i] else { continue };
                    let mut by_id: Vec<(&String, &usize)> = t.vocab.iter().collect();
                    by_id.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
                    for (tok, &id) in by_id {
                        if id < t.vocab_size && regular_seen.insert(tok.clone()) {
                            regular.push(tok.clone());
                        }
                    }
                    for (id, e) in t.added() {
                        let Some(c) = e["content"].as_str() else {
                            continue;
                        };
                        if id < t.vocab_size && added_seen.insert(c.to_string()) {
                            added_all.push(e);
                        }
                    }
                }
                for tok in regular {
                    if !added_seen.contains(&tok) && !base_tok.vocab.contains_key(&tok) {
                        o.add(&tok, None);
                    }
                }
                for e in added_all {
                    let c = e["content"].as_str().unwrap_or_default().to_string();
                    o.add(&c, Some(e));
                }
                o
            }
        };
        for ts in &spec.tokens {
            out.add(&ts.token, None);
        }
        let len = out.len();
        let rows = match spec.pad_to_multiple_of {
            Some(m) if m > 0 && len % m != 0 => len.div_ceil(m) * m,
            _ => len,
        };
        let mut tokens = vec![String::new(); len];
        for (t, &i) in &out.vocab {
            tokens[i] = t.clone();
        }
        let perm = (0..models.len())
            .map(|m| {
                tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        if out.gap(i) {
                            return None;
                        }
                        original[m].get(t).copied().filter(|&r| r < sizes[m])
                    })
                    .collect()
            })
            .collect();
        let mut explicit = HashMap::new();
        for ts in &spec.tokens {
            if let Some(&i) = out.vocab.get(&ts.token) {
                explicit.insert(i, (ts.source.clone(), ts.force));
            }
        }
        let files = out.files(chat, &toks)?;
        Ok(Vocabulary {
            tokens,
            rows,
            perm,
            original,
            sizes,
            explicit,
            paths: models.to_vec(),
            files,
        })
    }

    /// Tokens in the vocabulary (before padding).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// For one tensor: `participants` are the models (indices into the
    /// list given to [`Vocabulary::build`]) whose tensor takes part, in
    /// merge order, `base` the recipe's base among all models, `rows` each
    /// participant's row count. Returns, per participant, the source of
    /// every row of its permuted tensor ([`Vocabulary::rows`] of them).
    pub fn fills(
        &self,
        tensor: &str,
        participants: &[usize],
        base: Option<usize>,
        rows: &[usize],
    ) -> Result<Vec<Vec<Fill>>> {
        let n = self.len();
        // Participant positions in mergekit's order: the models, the base
        // last when it is not among them (averages sum in this order).
        let base_pos = base.and_then(|b| participants.iter().position(|&p| p == b));
        let mut order: Vec<usize> = (0..participants.len())
            .filter(|&k| Some(k) != base_pos)
            .collect();
        if let Some(b) = base_pos {
            order.push(b);
        }
        let row_of = |k: usize, t: usize| self.perm[participants[k]][t];
        let find = |p: &Path| -> Result<usize> {
            participants
                .iter()
                .position(|&m| crate::plan::same_path(&self.paths[m], p))
                .ok_or_else(|| {
                    TokenizerError::Invalid(format!(
                        "tensor `{tensor}`: a token takes its row from {}, which has no `{tensor}` here",
                        p.display()
                    ))
                })
        };
        // The row every model without the token (or, with `force`, every
        // model) gets.
        let mut defaults: HashMap<usize, Fill> = HashMap::new();
        for t in 0..n {
            let present: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&k| row_of(k, t).is_some())
                .collect();
            let explicit = self.explicit.get(&t);
            let force = explicit.is_some_and(|e| e.1);
            if !force && present.len() == participants.len() {
                continue;
            }
            let token = &self.tokens[t];
            let fill = match explicit {
                Some((src, _)) => match src {
                    None => {
                        return Err(TokenizerError::Invalid(format!(
                            "token `{token}` in `tokenizer.tokens` needs a `source`: not every model has it"
                        )))
                    }
                    Some(TokenSource::Zero) => Fill::Zero,
                    Some(TokenSource::Model(p)) => {
                        let k = find(p)?;
                        let Some(row) = row_of(k, t) else {
                            return Err(TokenizerError::Invalid(format!(
                                "token `{token}`: its source {} does not have it",
                                p.display()
                            )));
                        };
                        Fill::Row { input: k, row }
                    }
                    Some(TokenSource::ModelToken { model, token: r }) => {
                        let k = find(model)?;
                        let row = match r {
                            TokenRef::Id(i) => *i,
                            TokenRef::Text(s) => *self.original[participants[k]].get(s).ok_or_else(|| {
                                TokenizerError::Invalid(format!(
                                    "token `{token}`: {} has no token `{s}`",
                                    model.display()
                                ))
                            })?,
                        };
                        if row >= rows[k] {
                            return Err(TokenizerError::Invalid(format!(
                                "token `{token}`: row {row} is past the {} rows of `{tensor}` in {}",
                                rows[k],
                                model.display()
                            )));
                        }
                        Fill::Row { input: k, row }
                    }
                },
                None => match present.len() {
                    0 => Fill::Zero,
                    1 => Fill::Row {
                        input: present[0],
                        row: row_of(present[0], t).unwrap_or(0),
                    },
                    _ => match base_pos.and_then(|b| row_of(b, t).map(|r| (b, r))) {
                        Some((b, row)) => Fill::Row { input: b, row },
                        None => Fill::Mean(
                            present
                                .iter()
                                .map(|&k| (k, row_of(k, t).unwrap_or(0)))
                                .collect(),
                        ),
                    },
                },
            };
            defaults.insert(t, fill);
        }
        let mut out = Vec::with_capacity(participants.len());
        for k in 0..participants.len() {
            let mut fills = Vec::with_capacity(self.rows);
            for t in 0..n {
                let force = self.explicit.get(&t).is_some_and(|e| e.1);
                fills.push(match (row_of(k, t), defaults.get(&t)) {
                    (Some(row), _) if !force => {
                        if row >= rows[k] {
                            return Err(TokenizerError::Invalid(format!(
                                "tensor `{tensor}` of {} has {} rows, but its token `{}` is row {row}",
                                self.paths[participants[k]].display(),
                                rows[k],
                                self.tokens[t]
                            )));
                        }
                        Fill::Row { input: k, row }
                    }
                    (_, Some(f)) => f.clone(),
                    // mergekit logs an error and leaves zeros.
                    _ => Fill::Zero,
                });
            }
            fills.resize(self.rows, Fill::PadMean);
            out.push(fills);
        }
        Ok(out)
    }

    /// A model's `vocab_size` as read.
    pub fn model_vocab_size(&self, model: usize) -> usize {
        self.sizes[model]
    }
}

/// The folder of a model path (a `.safetensors` file's parent).
fn folder(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

fn config_vocab_size(dir: &Path) -> Option<usize> {
    let c = read_json(&dir.join("config.json")).ok()?;
    c.get("vocab_size")?.as_u64().map(|v| v as usize)
}

/// The output tokenizer being built: a tokenizer.json with added tokens
/// appended.
struct OutTokenizer {
    json: Value,
    config: Option<Value>,
    special_tokens_map: Option<Value>,
    /// The source's own chat template.
    template: Option<String>,
    vocab: HashMap<String, usize>,
    /// Ids in use (to find gaps).
    used: std::collections::HashSet<usize>,
}

impl OutTokenizer {
    fn from(t: &ModelTokenizer) -> OutTokenizer {
        OutTokenizer {
            json: t.json.clone(),
            config: t.config.clone(),
            special_tokens_map: t.special_tokens_map.clone(),
            template: t.chat_template.clone(),
            used: t.vocab.values().copied().collect(),
            vocab: t.vocab.clone(),
        }
    }

    /// Length as transformers counts it: one past the largest id.
    fn len(&self) -> usize {
        self.vocab.values().max().map_or(0, |m| m + 1)
    }

    fn gap(&self, i: usize) -> bool {
        !self.used.contains(&i)
    }

    /// Append `token` as an added token, unless the vocabulary has it
    /// (`entry`: its settings in the model it comes from; else a regular,
    /// normalised, non-special token, as transformers' `add_tokens` makes).
    fn add(&mut self, token: &str, entry: Option<Value>) {
        if self.vocab.contains_key(token) {
            return;
        }
        let id = self.len();
        let mut e = entry.unwrap_or_else(|| {
            json!({
                "id": 0, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": true, "special": false
            })
        });
        e["id"] = json!(id);
        if !self.json["added_tokens"].is_array() {
            self.json["added_tokens"] = json!([]);
        }
        if let Some(a) = self.json["added_tokens"].as_array_mut() {
            a.push(e);
        }
        self.vocab.insert(token.to_string(), id);
        self.used.insert(id);
    }

    /// tokenizer.json, tokenizer_config.json, special_tokens_map.json (when
    /// the source has one) and chat_template.jinja (when there is one).
    fn files(
        &self,
        chat: Option<&str>,
        toks: &[Option<ModelTokenizer>],
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let mut files = Vec::new();
        let text = serde_json::to_string_pretty(&self.json)
            .map_err(|e| TokenizerError::Invalid(format!("tokenizer.json: {e}")))?;
        files.push(("tokenizer.json".to_string(), text.into_bytes()));
        let mut cfg = match &self.config {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        // transformers 5 writes no added_tokens_decoder; drop a stale one,
        // which would disagree with the tokens just appended.
        cfg.remove("added_tokens_decoder");
        let template = chat_template(chat, toks)?;
        // The template goes to chat_template.jinja, as transformers 5 saves
        // it; a source's own template is kept there too.
        cfg.remove("chat_template");
        let text = serde_json::to_string_pretty(&Value::Object(cfg))
            .map_err(|e| TokenizerError::Invalid(format!("tokenizer_config.json: {e}")))?;
        files.push(("tokenizer_config.json".to_string(), text.into_bytes()));
        if let Some(m) = &self.special_tokens_map {
            let text = serde_json::to_string_pretty(m)
                .map_err(|e| TokenizerError::Invalid(format!("special_tokens_map.json: {e}")))?;
            files.push(("special_tokens_map.json".to_string(), text.into_bytes()));
        }
        if let Some(t) = template.or_else(|| self.template.clone()) {
            files.push(("chat_template.jinja".to_string(), t.into_bytes()));
        }
        Ok(files)
    }
}

/// The chat template a recipe's `chat_template` asks for: `auto` (the
/// models' most common template, trimmed; ties go to the first seen),
/// a built-in name, or a template as written. `None` when not set, or
/// `auto` finds none.
pub fn chat_template(
    chat: Option<&str>,
    toks: &[Option<ModelTokenizer>],
) -> Result<Option<String>> {
    let Some(c) = chat else { return Ok(None) };
    if c == "auto" {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for t in toks.iter().flatten() {
            if let Some(x) = &t.chat_template {
                let x = x.trim().to_string();
                if x.is_empty() {
                    continue;
                }
                match counts.iter_mut().find(|(s, _)| *s == x) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((x, 1)),
                }
            }
        }
        // Counter.most_common: the highest count, first seen among equals.
        let mut best: Option<(String, usize)> = None;
        for (s, n) in counts {
            if best.as_ref().is_none_or(|b| n > b.1) {
                best = Some((s, n));
            }
        }
        return Ok(best.map(|b| b.0));
    }
    if c.chars().count() < 256 && !c.contains('\n') && !c.contains('{') {
        if let Some(t) = builtin_template(c) {
            return Ok(Some(t.to_string()));
        }
    }
    if c.chars().count() < 20 || !c.contains('{') {
        return Err(TokenizerError::Invalid(format!(
            "chat_template `{c}` is neither auto, a built-in template ({}) nor a Jinja template",
            BUILTIN_TEMPLATES.join(", ")
        )));
    }
    Ok(Some(c.to_string()))
}

/// The output tokenizer files when the recipe sets only `chat_template`:
/// the config model's tokenizer with the template (mergekit reloads and
/// saves the donor's tokenizer then). `models` give `auto` its candidates.
pub fn template_only_files(
    config_model: &Path,
    models: &[PathBuf],
    chat: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let dir = folder(config_model);
    let base = ModelTokenizer::load(&dir)?;
    let toks: Vec<Option<ModelTokenizer>> = models
        .iter()
        .map(|m| ModelTokenizer::load(&folder(m)).ok())
        .collect();
    OutTokenizer::from(&base).files(Some(chat), &toks)
}
