//! The safetensors header: an 8-byte little-endian length, then that many
//! bytes of JSON mapping tensor names to `{dtype, shape, data_offsets}` (plus
//! an optional `__metadata__` of string pairs), then the data section.
//!
//! Parsing validates everything a later read relies on, so that reading a
//! tensor never needs to check again and a bad file fails at open, naming
//! the file and the tensor.

use super::{Dtype, ModelError, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Headers larger than this are refused: real ones are kilobytes to a few
/// megabytes, and the cap keeps a corrupt length from making us parse
/// gigabytes (the safetensors library uses the same limit).
const MAX_HEADER: u64 = 100_000_000;

/// One validated header entry, offsets absolute within the file.
#[derive(Debug)]
pub(super) struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// A validated header.
#[derive(Debug)]
pub(super) struct Header {
    pub entries: Vec<Entry>,
    pub metadata: BTreeMap<String, String>,
}

fn format_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn tensor_err(path: &Path, tensor: &str, msg: impl Into<String>) -> ModelError {
    ModelError::Tensor {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        msg: msg.into(),
    }
}

fn not_checkpoint(path: &Path, why: impl Into<String>) -> ModelError {
    ModelError::NotCheckpoint {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Parse and validate the header of the safetensors file whose full
/// contents are `file` (normally a memory map). `path` is for messages.
///
/// A file that cannot be a safetensors file at all (too short, a length
/// prefix past its end, a header that is not a JSON object) is
/// [`ModelError::NotCheckpoint`]; one that is a safetensors file with a bad
/// entry is [`ModelError::Format`] or [`ModelError::Tensor`].
pub(super) fn parse(path: &Path, file: &[u8]) -> Result<Header> {
    let file_len = file.len() as u64;
    if file_len < 8 {
        return Err(not_checkpoint(
            path,
            format!("only {file_len} bytes, shorter than the 8-byte header length"),
        ));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&file[..8]);
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len - 8 {
        // A plausible length over a short file is most likely a truncated
        // checkpoint; an absurd one (text read as a number) is no
        // checkpoint at all, and its value would only confuse.
        return Err(if header_len <= MAX_HEADER {
            not_checkpoint(
                path,
                format!(
                    "header length {header_len} is larger than the file ({file_len} bytes); truncated?"
                ),
            )
        } else {
            not_checkpoint(
                path,
                format!("header length larger than the file ({file_len} bytes)"),
            )
        });
    }
    if header_len > MAX_HEADER {
        return Err(not_checkpoint(
            path,
            format!("header length {header_len} exceeds the {MAX_HEADER}-byte limit"),
        ));
    }
    let data_start = 8 + header_len as usize;
    let data_len = file.len() - data_start;
    let json: Value = serde_json::from_slice(&file[8..data_start])
        .map_err(|e| not_checkpoint(path, format!("header is not valid JSON ({e})")))?;
    let Value::Object(obj) = json else {
        return Err(not_checkpoint(path, "header is not a JSON object"));
    };

    let mut metadata = BTreeMap::new();
    let mut entries = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            metadata = parse_metadata(path, v)?;
            continue;
        }
        let e = parse_entry(path, &name, &v, data_len)?;
        entries.push(Entry {
            name,
            dtype: e.0,
            shape: e.1,
            start: data_start + e.2,
            end: data_start + e.3,
        });
    }
    check_overlaps(path, &entries)?;
    Ok(Header { entries, metadata })
}

fn parse_metadata(path: &Path, v: Value) -> Result<BTreeMap<String, String>> {
    let Value::Object(m) = v else {
        return Err(format_err(path, "`__metadata__` is not a JSON object"));
    };
    m.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(format_err(
                path,
                format!("`__metadata__` value for `{k}` is not a string: {other}"),
            )),
        })
        .collect()
}

/// Validate one entry; returns dtype, shape and data-relative offsets.
fn parse_entry(
    path: &Path,
    name: &str,
    v: &Value,
    data_len: usize,
) -> Result<(Dtype, Vec<usize>, usize, usize)> {
    let err = |msg: String| tensor_err(path, name, msg);
    let Value::Object(e) = v else {
        return Err(err("header entry is not a JSON object".into()));
    };
    let dtype = match e.get("dtype") {
        Some(Value::String(s)) => {
            Dtype::parse(s).ok_or_else(|| err(format!("unknown or unsupported dtype `{s}`")))?
        }
        Some(other) => return Err(err(format!("dtype is not a string: {other}"))),
        None => return Err(err("no `dtype`".into())),
    };
    let shape = usize_array(e, "shape").map_err(&err)?;
    let offsets = usize_array(e, "data_offsets").map_err(&err)?;
    let [start, end] = offsets[..] else {
        return Err(err(format!(
            "`data_offsets` must be [start, end], got {} numbers",
            offsets.len()
        )));
    };
    if start > end {
        return Err(err(format!(
            "data_offsets [{start}, {end}]: start after end"
        )));
    }
    if end > data_len {
        return Err(err(format!(
            "data_offsets [{start}, {end}] run past the data section ({data_len} bytes)"
        )));
    }
    let nbytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    if nbytes != end - start {
        return Err(err(format!(
            "shape {shape:?} of {dtype} needs {nbytes} bytes but data_offsets [{start}, {end}] hold {}",
            end - start
        )));
    }
    Ok((dtype, shape, start, end))
}

fn usize_array(e: &Map<String, Value>, key: &str) -> std::result::Result<Vec<usize>, String> {
    let Some(Value::Array(a)) = e.get(key) else {
        return Err(format!("`{key}` missing or not an array"));
    };
    a.iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("`{key}` holds {x}, not a non-negative integer"))
        })
        .collect()
}

/// Tensors may not share bytes: a write through one would change another,
/// and it is a sign of a corrupt header. Empty tensors overlap nothing.
fn check_overlaps(path: &Path, entries: &[Entry]) -> Result<()> {
    let mut order: Vec<&Entry> = entries.iter().filter(|e| e.end > e.start).collect();
    order.sort_unstable_by_key(|e| (e.start, e.end));
    for w in order.windows(2) {
        if w[1].start < w[0].end {
            return Err(tensor_err(
                path,
                &w[1].name,
                format!(
                    "data overlaps tensor `{}` (bytes {}..{} and {}..{} of the file)",
                    w[0].name, w[1].start, w[1].end, w[0].start, w[0].end
                ),
            ));
        }
    }
    Ok(())
}

/// A header entry to write: data offsets relative to the data section.
pub(super) struct OutEntry<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub start: u64,
    pub end: u64,
}

/// Build the bytes before the data section: 8-byte length, then the JSON
/// (`__metadata__` first, then tensors in the given order) padded with
/// spaces to a multiple of 8 so the data section starts 8-aligned.
pub(super) fn build(entries: &[OutEntry<'_>], metadata: &[(String, String)]) -> Vec<u8> {
    let mut obj = Map::new();
    let mut meta = Map::new();
    for (k, v) in metadata {
        meta.insert(k.clone(), Value::String(v.clone()));
    }
    // transformers refuses safetensors files whose metadata lacks a known
    // `format`; "pt" is what torch-written checkpoints carry.
    if !meta.contains_key("format") {
        meta.insert("format".into(), Value::String("pt".into()));
    }
    obj.insert("__metadata__".into(), Value::Object(meta));
    for e in entries {
        let mut t = Map::new();
        t.insert("dtype".into(), Value::String(e.dtype.name().into()));
        t.insert("shape".into(), Value::from(e.shape.to_vec()));
        t.insert("data_offsets".into(), Value::from(vec![e.start, e.end]));
        obj.insert(e.name.to_string(), Value::Object(t));
    }
    let mut json = Value::Object(obj).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}
