//! The tokenizer keys of a recipe (mergekit's `tokenizer_source`,
//! `tokenizer:` block and `chat_template`): their types, how both recipe
//! formats read them (the same key names in TOML and YAML) and how they
//! are written back.
//!
//! The keys mean what they mean in mergekit 0.1.5; [`crate::tokenizer`]
//! builds the output vocabulary from them.

use super::node::{Kind, Node};
use super::toml::{entries, quote, string};
use super::util::{relative_to, resolve_path, unknown_key_msg, Diag};
use serde_yaml_ng::{Mapping, Value as Y};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the output vocabulary comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum VocabSource {
    /// The base model's tokenizer (the first model's without a base).
    Base,
    /// The base's tokenizer plus every token any model has that it lacks.
    Union,
    /// This model's tokenizer, unchanged (mergekit: a model reference;
    /// `model:PATH` is read too).
    Model(PathBuf),
}

/// A token of the source model's original vocabulary, by id or text.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenRef {
    /// Row `id` of the model's tensors.
    Id(usize),
    /// The row of this token in the model's own vocabulary.
    Text(String),
}

/// Where one output token's embedding row comes from (mergekit
/// `tokenizer.tokens.<token>.source`).
#[derive(Clone, Debug, PartialEq)]
pub enum TokenSource {
    /// That model's row of the same token.
    Model(PathBuf),
    /// That model's row of another token (`kind: model_token`).
    ModelToken {
        /// The model.
        model: PathBuf,
        /// Its token.
        token: TokenRef,
    },
    /// A row of zeros (`kind: zero`).
    Zero,
}

/// One entry of `tokenizer.tokens`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpec {
    /// The output token (added to the vocabulary when missing).
    pub token: String,
    /// Where its row comes from; `None`: mergekit's default rules.
    pub source: Option<TokenSource>,
    /// Use `source` even for models that have the token.
    pub force: bool,
}

/// The recipe's tokenizer settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenizerSpec {
    /// The output vocabulary.
    pub source: VocabSource,
    /// Per-token row sources, in recipe order (which is the order tokens
    /// missing from the vocabulary are added in).
    pub tokens: Vec<TokenSpec>,
    /// Pad the vocabulary (embedding rows and `vocab_size`) up to a
    /// multiple of this.
    pub pad_to_multiple_of: Option<usize>,
    /// Written as a `tokenizer:` block (true) or as `tokenizer_source`
    /// (false, only possible without tokens and padding).
    pub block: bool,
}

impl TokenizerSpec {
    /// `tokenizer_source: <source>` alone.
    pub fn source(source: VocabSource) -> TokenizerSpec {
        TokenizerSpec {
            source,
            tokens: Vec::new(),
            pad_to_multiple_of: None,
            block: false,
        }
    }

    /// Every model path the settings name (source model, token sources).
    pub fn paths(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        if let VocabSource::Model(p) = &self.source {
            out.push(p);
        }
        for t in &self.tokens {
            match &t.source {
                Some(TokenSource::Model(p)) | Some(TokenSource::ModelToken { model: p, .. }) => {
                    out.push(p)
                }
                _ => {}
            }
        }
        out
    }
}

const BLOCK_KEYS: &[&str] = &["source", "tokens", "pad_to_multiple_of"];
const TOKEN_KEYS: &[&str] = &["source", "force"];
const KIND_KEYS: &[&str] = &["kind", "model", "token", "token_id"];

/// A vocabulary source as written: `base`, `union`, `model:PATH` or a
/// model path.
fn vocab_source(s: &str, dir: &Path) -> VocabSource {
    match s {
        "base" => VocabSource::Base,
        "union" => VocabSource::Union,
        _ => VocabSource::Model(resolve_path(dir, s.strip_prefix("model:").unwrap_or(s))),
    }
}

/// `tokenizer_source = "..."`.
pub(crate) fn read_source(v: &Node, dir: &Path, diag: &mut Diag) -> Option<TokenizerSpec> {
    if matches!(v.kind, Kind::Null) {
        return None;
    }
    let s = string(v, "tokenizer_source", diag)?;
    if s.is_empty() {
        diag.err(
            v.line,
            "`tokenizer_source` is empty: use base, union or a model",
        );
        return None;
    }
    Some(TokenizerSpec::source(vocab_source(&s, dir)))
}

/// `chat_template = "..."` (`auto`, a built-in name or a template).
pub(crate) fn read_chat_template(v: &Node, diag: &mut Diag) -> Option<String> {
    if matches!(v.kind, Kind::Null) {
        return None;
    }
    string(v, "chat_template", diag).filter(|s| !s.is_empty())
}

/// The `tokenizer` table.
pub(crate) fn read_block(v: &Node, dir: &Path, diag: &mut Diag) -> Option<TokenizerSpec> {
    if matches!(v.kind, Kind::Null) {
        return None;
    }
    // mergekit's default source is `union`.
    let mut spec = TokenizerSpec {
        source: VocabSource::Union,
        tokens: Vec::new(),
        pad_to_multiple_of: None,
        block: true,
    };
    for (k, line, x) in entries(v, "tokenizer", diag) {
        match k.as_str() {
            "source" => {
                if let Some(s) = string(x, "tokenizer.source", diag) {
                    spec.source = vocab_source(&s, dir);
                }
            }
            "pad_to_multiple_of" => match x.kind {
                Kind::Null => {}
                Kind::Int(i) if i > 0 => spec.pad_to_multiple_of = Some(i as usize),
                _ => diag.err(
                    x.line,
                    "`tokenizer.pad_to_multiple_of` must be a whole number ≥ 1",
                ),
            },
            "tokens" => {
                if matches!(x.kind, Kind::Null) {
                    continue;
                }
                for (tok, l, t) in entries(x, "tokenizer.tokens", diag) {
                    if let Some(ts) = token_spec(tok, *l, t, dir, diag) {
                        spec.tokens.push(ts);
                    }
                }
            }
            other => diag.err(
                *line,
                unknown_key_msg("key in `tokenizer`", other, BLOCK_KEYS),
            ),
        }
    }
    Some(spec)
}

fn token_spec(tok: &str, line: usize, v: &Node, dir: &Path, diag: &mut Diag) -> Option<TokenSpec> {
    let at = format!("tokenizer.tokens.{tok}");
    let mut spec = TokenSpec {
        token: tok.to_string(),
        source: None,
        force: false,
    };
    if matches!(v.kind, Kind::Null) {
        return Some(spec);
    }
    for (k, l, x) in entries(v, &at, diag) {
        match k.as_str() {
            "force" => match x.kind {
                Kind::Bool(b) => spec.force = b,
                _ => diag.err(x.line, format!("`{at}.force` must be true or false")),
            },
            "source" => spec.source = token_source(x, &at, dir, diag),
            other => diag.err(
                *l,
                unknown_key_msg(&format!("key in `{at}`"), other, TOKEN_KEYS),
            ),
        }
    }
    if spec.force && spec.source.is_none() {
        diag.err(line, format!("`{at}`: `force` needs a `source`"));
    }
    Some(spec)
}

fn token_source(v: &Node, at: &str, dir: &Path, diag: &mut Diag) -> Option<TokenSource> {
    match &v.kind {
        Kind::Null => None,
        Kind::Str(s) => Some(TokenSource::Model(resolve_path(dir, s))),
        Kind::Map(_) => {
            let mut kind = None;
            let mut model = None;
            let mut token = None;
            let mut token_id = None;
            for (k, l, x) in entries(v, at, diag) {
                match k.as_str() {
                    "kind" => kind = string(x, &format!("{at}.source.kind"), diag),
                    "model" => {
                        model = string(x, &format!("{at}.source.model"), diag)
                            .map(|s| resolve_path(dir, &s))
                    }
                    "token" => token = string(x, &format!("{at}.source.token"), diag),
                    "token_id" => match x.kind {
                        Kind::Int(i) if i >= 0 => token_id = Some(i as usize),
                        _ => diag.err(
                            x.line,
                            format!("`{at}.source.token_id` must be a whole number ≥ 0"),
                        ),
                    },
                    other => diag.err(
                        *l,
                        unknown_key_msg(&format!("key in `{at}.source`"), other, KIND_KEYS),
                    ),
                }
            }
            match kind.as_deref() {
                Some("zero") => Some(TokenSource::Zero),
                Some("model_token") => {
                    let Some(model) = model else {
                        diag.err(v.line, format!("`{at}.source`: model_token needs `model`"));
                        return None;
                    };
                    let token = match (token, token_id) {
                        (Some(t), None) => TokenRef::Text(t),
                        (None, Some(i)) => TokenRef::Id(i),
                        _ => {
                            diag.err(
                                v.line,
                                format!(
                                    "`{at}.source`: model_token needs exactly one of `token`, `token_id`"
                                ),
                            );
                            return None;
                        }
                    };
                    Some(TokenSource::ModelToken { model, token })
                }
                Some(other) => {
                    diag.err(
                        v.line,
                        format!("`{at}.source.kind` is `{other}`: use model_token or zero"),
                    );
                    None
                }
                None => {
                    diag.err(v.line, format!("`{at}.source` needs a `kind`"));
                    None
                }
            }
        }
        _ => {
            diag.err(
                v.line,
                format!(
                    "`{at}.source` must be a model or a table, found {}",
                    v.type_name()
                ),
            );
            None
        }
    }
}

fn source_text(s: &VocabSource, dir: &Path) -> String {
    match s {
        VocabSource::Base => "base".into(),
        VocabSource::Union => "union".into(),
        VocabSource::Model(p) => relative_to(p, dir),
    }
}

/// mergekit YAML: `tokenizer_source` or `tokenizer`, and `chat_template`.
pub(crate) fn to_yaml(
    spec: Option<&TokenizerSpec>,
    chat: Option<&str>,
    dir: &Path,
    top: &mut Mapping,
) {
    let path = |p: &Path| Y::String(relative_to(p, dir));
    if let Some(t) = spec {
        if !t.block && t.tokens.is_empty() && t.pad_to_multiple_of.is_none() {
            top.insert(
                "tokenizer_source".into(),
                Y::String(source_text(&t.source, dir)),
            );
        } else {
            let mut b = Mapping::new();
            b.insert("source".into(), Y::String(source_text(&t.source, dir)));
            if !t.tokens.is_empty() {
                let mut toks = Mapping::new();
                for ts in &t.tokens {
                    let mut e = Mapping::new();
                    match &ts.source {
                        None => {}
                        Some(TokenSource::Model(p)) => {
                            e.insert("source".into(), path(p));
                        }
                        Some(TokenSource::Zero) => {
                            let mut s = Mapping::new();
                            s.insert("kind".into(), Y::String("zero".into()));
                            e.insert("source".into(), Y::Mapping(s));
                        }
                        Some(TokenSource::ModelToken { model, token }) => {
                            let mut s = Mapping::new();
                            s.insert("kind".into(), Y::String("model_token".into()));
                            s.insert("model".into(), path(model));
                            match token {
                                TokenRef::Id(i) => {
                                    s.insert("token_id".into(), Y::Number((*i as u64).into()))
                                }
                                TokenRef::Text(x) => s.insert("token".into(), Y::String(x.clone())),
                            };
                            e.insert("source".into(), Y::Mapping(s));
                        }
                    }
                    if ts.force {
                        e.insert("force".into(), Y::Bool(true));
                    }
                    toks.insert(Y::String(ts.token.clone()), Y::Mapping(e));
                }
                b.insert("tokens".into(), Y::Mapping(toks));
            }
            if let Some(p) = t.pad_to_multiple_of {
                b.insert("pad_to_multiple_of".into(), Y::Number((p as u64).into()));
            }
            top.insert("tokenizer".into(), Y::Mapping(b));
        }
    }
    if let Some(c) = chat {
        top.insert("chat_template".into(), Y::String(c.to_string()));
    }
}

/// Native TOML: top-level lines (`tokenizer_source`, `chat_template`).
pub(crate) fn toml_top(spec: Option<&TokenizerSpec>, chat: Option<&str>, dir: &Path) -> String {
    let mut out = String::new();
    if let Some(t) = spec {
        if !t.block && t.tokens.is_empty() && t.pad_to_multiple_of.is_none() {
            let _ = writeln!(
                out,
                "tokenizer_source = {}",
                quote(&source_text(&t.source, dir))
            );
        }
    }
    if let Some(c) = chat {
        let _ = writeln!(out, "chat_template = {}", quote(c));
    }
    out
}

/// Native TOML: the `[tokenizer]` table, when the settings need one.
pub(crate) fn toml_block(spec: Option<&TokenizerSpec>, dir: &Path) -> String {
    let mut out = String::new();
    let Some(t) = spec else {
        return out;
    };
    if !t.block && t.tokens.is_empty() && t.pad_to_multiple_of.is_none() {
        return out;
    }
    let path = |p: &Path| quote(&relative_to(p, dir));
    let _ = writeln!(
        out,
        "\n[tokenizer]\nsource = {}",
        quote(&source_text(&t.source, dir))
    );
    if let Some(p) = t.pad_to_multiple_of {
        let _ = writeln!(out, "pad_to_multiple_of = {p}");
    }
    for ts in &t.tokens {
        let _ = writeln!(out, "[tokenizer.tokens.{}]", quote(&ts.token));
        match &ts.source {
            None => {}
            Some(TokenSource::Model(p)) => {
                let _ = writeln!(out, "source = {}", path(p));
            }
            Some(TokenSource::Zero) => out.push_str("source = { kind = \"zero\" }\n"),
            Some(TokenSource::ModelToken { model, token }) => {
                let tok = match token {
                    TokenRef::Id(i) => format!("token_id = {i}"),
                    TokenRef::Text(x) => format!("token = {}", quote(x)),
                };
                let _ = writeln!(
                    out,
                    "source = {{ kind = \"model_token\", model = {}, {tok} }}",
                    path(model)
                );
            }
        }
        if ts.force {
            out.push_str("force = true\n");
        }
    }
    out
}

/// Problems of the settings alone (no files read).
pub(crate) fn problems(r: &super::Recipe) -> Vec<super::Problem> {
    let mut out = Vec::new();
    if let Some(c) = &r.chat_template {
        if c != "auto" && crate::tokenizer::builtin_template(c).is_none() {
            // mergekit's rule: a template is long enough and has a `{`.
            if c.chars().count() < 20 || !c.contains('{') {
                out.push(super::Problem {
                    at: "chat_template".into(),
                    msg: format!(
                        "`{c}` is neither auto, a built-in template ({}) nor a Jinja template",
                        crate::tokenizer::BUILTIN_TEMPLATES.join(", ")
                    ),
                });
            }
        }
    }
    if let Some(t) = &r.tokenizer {
        if matches!(
            r.method,
            crate::merge::Method::Zipit | crate::merge::Method::Permute
        ) {
            out.push(super::Problem {
                at: "tokenizer".into(),
                msg: format!(
                    "{} merges smelt MLPs, which have no vocabulary: remove the tokenizer settings",
                    r.method.name()
                ),
            });
        }
        let named = crate::plan::recipe_paths(r);
        for ts in &t.tokens {
            let p = match &ts.source {
                Some(TokenSource::Model(p)) | Some(TokenSource::ModelToken { model: p, .. }) => p,
                _ => continue,
            };
            if !named.iter().any(|q| crate::plan::same_path(q, p)) {
                out.push(super::Problem {
                    at: "tokenizer".into(),
                    msg: format!(
                        "token `{}` takes its row from {}, which is not one of the recipe's models",
                        ts.token,
                        p.display()
                    ),
                });
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for ts in &t.tokens {
            if seen.contains(&ts.token.as_str()) {
                out.push(super::Problem {
                    at: "tokenizer".into(),
                    msg: format!("token `{}` is listed twice in `tokenizer.tokens`", ts.token),
                });
            }
            seen.push(&ts.token);
        }
    }
    out
}
