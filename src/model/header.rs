//! The safetensors header: an 8-byte little-endian length, then that many
//! bytes of JSON mapping tensor names to `{dtype, shape, data_offsets}` (plus
//! an optional `__metadata__` of string pairs), then the data section.
//!
//! The `safetensors` crate decides what a valid header is: the JSON is
//! parsed into its [`safetensors::tensor::Metadata`], which checks that the
//! tensors tile the data section from its first byte, back to back, each
//! exactly as long as its shape and dtype say, and then that the data
//! section ends where the last tensor does (`read_metadata`'s last check,
//! done here against the file's length, since only the header is read from
//! disk). So smelt refuses every file the crate (and so mergekit, through
//! Python's safetensors) refuses. On top of that smelt refuses shapes that
//! torch cannot hold (a dimension or element count above `i64::MAX`), which
//! the crate lets through when a dimension is 0.
//!
//! When the crate refuses a header, smelt's own checks find the tensor at
//! fault and say what is wrong with it ([`explain`]); the crate's message
//! is the fallback. Either way the error names the file and, where there is
//! one, the tensor.

use super::{Dtype, ModelError, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Headers larger than this are refused: real ones are kilobytes to a few
/// megabytes, and the cap keeps a corrupt length from making us parse
/// gigabytes (the safetensors crate's limit).
const MAX_HEADER: u64 = 100_000_000;

/// The largest dimension, element count or byte size torch can hold.
const TORCH_MAX: u128 = i64::MAX as u128;

/// One validated header entry, offsets absolute within the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEntry {
    /// The tensor's name.
    pub name: String,
    /// Its dtype.
    pub dtype: Dtype,
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// First byte of its data in the file.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

/// A validated header.
#[derive(Debug)]
pub(super) struct Header {
    /// In file order (by data offset).
    pub entries: Vec<HeaderEntry>,
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

/// The JSON header's length, from the file's first 8 bytes (`None` when
/// the file is shorter), checked against the file's length. Returns the
/// length, which the caller then reads.
pub(super) fn json_len(path: &Path, first8: Option<[u8; 8]>, file_len: u64) -> Result<usize> {
    let Some(len_bytes) = first8 else {
        return Err(not_checkpoint(
            path,
            format!("only {file_len} bytes, shorter than the 8-byte header length"),
        ));
    };
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len.saturating_sub(8) {
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
    usize::try_from(header_len).map_err(|_| not_checkpoint(path, "header length too large"))
}

/// Parse and validate the JSON header `json` of a file of `file_len`
/// bytes (the 8-byte length, `json`, then the data section). `path` is for
/// messages.
///
/// A header that cannot be a safetensors header at all (not JSON, not a
/// JSON object) is [`ModelError::NotCheckpoint`]; one that is a safetensors
/// header with a bad entry is [`ModelError::Tensor`] or
/// [`ModelError::Format`].
pub(super) fn parse(path: &Path, json: &[u8], file_len: u64) -> Result<Header> {
    let data_len = file_len
        .checked_sub(8 + json.len() as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| not_checkpoint(path, "header length larger than the file"))?;
    let meta = match crate_parse(json, data_len) {
        Ok(meta) => meta,
        Err(why) => {
            return Err(explain(path, json, data_len).unwrap_or_else(|| {
                format_err(path, format!("not a valid safetensors header: {why}"))
            }))
        }
    };
    let data_start = 8 + json.len();
    let names = meta.offset_keys();
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let Some(info) = meta.info(&name) else {
            continue;
        };
        let dtype = Dtype::from(info.dtype);
        torch_limits(&info.shape).map_err(|msg| tensor_err(path, &name, msg))?;
        let (start, end) = info.data_offsets;
        entries.push(HeaderEntry {
            dtype,
            shape: info.shape.clone(),
            start: data_start + start,
            end: data_start + end,
            name,
        });
    }
    let metadata = meta
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Header { entries, metadata })
}

/// The `safetensors` crate's verdict on a header: its `Metadata` (which
/// validates on construction), and `read_metadata`'s check that the data
/// section ends with the last tensor. Errors are the crate's message.
fn crate_parse(
    json: &[u8],
    data_len: usize,
) -> std::result::Result<safetensors::tensor::Metadata, String> {
    // As `SafeTensors::read_metadata`: UTF-8 first, then JSON.
    let text = std::str::from_utf8(json).map_err(|e| format!("invalid UTF-8 in header: {e}"))?;
    let meta: safetensors::tensor::Metadata =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    if meta.data_len() != data_len {
        return Err(safetensors::SafeTensorError::MetadataIncompleteBuffer.to_string());
    }
    Ok(meta)
}

/// A shape torch can hold: no dimension and no element count above
/// `i64::MAX`. The count leaves out zero dimensions, so that a tensor with
/// no elements cannot carry an absurd shape through (the crate counts
/// `[0, 2^32, 2^32]` as 0 elements). A tensor with elements needs no byte
/// check: the crate has made its bytes a part of the file.
fn torch_limits(shape: &[usize]) -> std::result::Result<(), String> {
    if let Some(d) = shape.iter().find(|&&d| d as u128 > TORCH_MAX) {
        return Err(format!(
            "shape {shape:?}: dimension {d} is larger than torch allows (2^63 - 1)"
        ));
    }
    let mut numel: u128 = 1;
    for &d in shape.iter().filter(|&&d| d > 0) {
        numel *= d as u128;
        if numel > TORCH_MAX {
            return Err(format!(
                "shape {shape:?} has more elements than torch allows (2^63 - 1)"
            ));
        }
    }
    Ok(())
}

/// Why the crate refused a header, in smelt's words: the first problem
/// found, naming the tensor. `None` when smelt's checks find nothing (the
/// caller then gives the crate's message).
fn explain(path: &Path, json: &[u8], data_len: usize) -> Option<ModelError> {
    let value: Value = match serde_json::from_slice(json) {
        Ok(v) => v,
        Err(e) => {
            return Some(not_checkpoint(
                path,
                format!("header is not valid JSON ({e})"),
            ))
        }
    };
    let Value::Object(obj) = value else {
        return Some(not_checkpoint(path, "header is not a JSON object"));
    };
    let mut spans: Vec<(&str, usize, usize)> = Vec::with_capacity(obj.len());
    for (name, v) in &obj {
        if name == "__metadata__" {
            if let Err(msg) = check_metadata(v) {
                return Some(format_err(path, msg));
            }
            continue;
        }
        match check_entry(v, data_len) {
            Ok((start, end)) => spans.push((name, start, end)),
            Err(msg) => return Some(tensor_err(path, name, msg)),
        }
    }
    // The tensors must tile the data section: sorted by offsets, each one
    // starts where the one before ended, the first at 0, and the last ends
    // with the file.
    spans.sort_by_key(|&(_, s, e)| (s, e));
    let mut pos = 0;
    let mut prev: Option<(&str, usize, usize)> = None;
    for &(name, s, e) in &spans {
        if s < pos {
            let (p, ps, pe) = prev.unwrap_or(("", 0, 0));
            return Some(tensor_err(
                path,
                name,
                format!("its data (data_offsets [{s}, {e}]) overlaps tensor `{p}` ([{ps}, {pe}])"),
            ));
        }
        if s > pos {
            let after = match prev {
                Some((p, _, _)) => format!("after tensor `{p}`"),
                None => "at the start of the data section".to_string(),
            };
            return Some(tensor_err(
                path,
                name,
                format!(
                    "data_offsets [{s}, {e}] leave a gap: bytes {pos}..{s} {after} belong to no tensor"
                ),
            ));
        }
        pos = e;
        prev = Some((name, s, e));
    }
    if pos != data_len {
        return Some(format_err(
            path,
            format!(
                "{} bytes after the last tensor belong to no tensor (the tensors cover {pos} of the \
                 data section's {data_len} bytes); a wrong header length or a file with bytes appended?",
                data_len - pos
            ),
        ));
    }
    None
}

/// `__metadata__`: absent, null, or an object of strings.
fn check_metadata(v: &Value) -> std::result::Result<(), String> {
    match v {
        Value::Null => Ok(()),
        Value::Object(m) => match m.iter().find(|(_, v)| !v.is_string()) {
            Some((k, other)) => Err(format!(
                "`__metadata__` value for `{k}` is not a string: {other}"
            )),
            None => Ok(()),
        },
        _ => Err("`__metadata__` is not a JSON object".into()),
    }
}

/// One entry on its own: its fields, and offsets that fit its shape and
/// the data section. Returns its data-relative offsets.
fn check_entry(v: &Value, data_len: usize) -> std::result::Result<(usize, usize), String> {
    // serde also reads a struct from an array of its fields in order.
    let field = |key: &str, i: usize| match v {
        Value::Object(e) => e.get(key),
        Value::Array(a) => a.get(i),
        _ => None,
    };
    if !matches!(v, Value::Object(_) | Value::Array(_)) {
        return Err("header entry is not a JSON object".into());
    }
    let dtype = match field("dtype", 0) {
        Some(Value::String(s)) => Dtype::parse(s).ok_or_else(|| format!("unknown dtype `{s}`"))?,
        Some(other) => return Err(format!("dtype is not a string: {other}")),
        None => return Err("no `dtype`".into()),
    };
    let shape = usize_array(field("shape", 1), "shape")?;
    let offsets = usize_array(field("data_offsets", 2), "data_offsets")?;
    let [start, end] = offsets[..] else {
        return Err(format!(
            "`data_offsets` must be [start, end], got {} numbers",
            offsets.len()
        ));
    };
    if start > end {
        return Err(format!("data_offsets [{start}, {end}]: start after end"));
    }
    if end > data_len {
        return Err(format!(
            "data_offsets [{start}, {end}] run past the data section ({data_len} bytes)"
        ));
    }
    let Some(nbytes) = dtype.nbytes(&shape) else {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        return Err(match numel.and_then(|n| n.checked_mul(dtype.bits())) {
            Some(_) => format!("shape {shape:?} of {dtype} does not fill whole bytes"),
            None => format!("shape {shape:?} is too large"),
        });
    };
    if nbytes != end - start {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {nbytes} bytes but data_offsets [{start}, {end}] hold {}",
            end - start
        ));
    }
    Ok((start, end))
}

fn usize_array(v: Option<&Value>, key: &str) -> std::result::Result<Vec<usize>, String> {
    let Some(Value::Array(a)) = v else {
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

/// Parse the header of a whole safetensors file held in memory (for fuzzing
/// and tests; [`super::Model::open`] reads only the header from disk).
/// Returns the entries in file order, offsets absolute within `file`.
pub fn parse_header(path: &Path, file: &[u8]) -> Result<Vec<HeaderEntry>> {
    let first8 = file.get(..8).and_then(|b| b.try_into().ok());
    let n = json_len(path, first8, file.len() as u64)?;
    Ok(parse(path, &file[8..8 + n], file.len() as u64)?.entries)
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
