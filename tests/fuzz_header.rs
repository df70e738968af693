//! Seeded, deterministic fuzzing of safetensors headers against the
//! `safetensors` crate: smelt must accept exactly the files the crate
//! accepts (less those whose shapes torch cannot hold, which smelt refuses
//! on purpose), and for every file it accepts, read the same bytes for each
//! tensor as the crate. Nothing may panic.
//!
//! Each case starts from a valid file (1-4 tensors of any of the crate's
//! dtypes, in any JSON order, with or without `__metadata__` and padding)
//! and applies up to three mutations: the header length field, the file's
//! tail (truncated, extended), offsets, shapes, dtypes, duplicate names,
//! padding, `__metadata__`, fields, raw JSON bytes.
//!
//! `SMELT_FUZZ_CASES` and `SMELT_FUZZ_SEED` run more or other cases.

use smelt::model::{parse_header, Model, ModelError};
use std::path::Path;

mod common;
use common::Rng;

const DTYPES: [(&str, usize); 19] = [
    ("BOOL", 8),
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
    ("U8", 8),
    ("I8", 8),
    ("F8_E5M2", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("I16", 16),
    ("U16", 16),
    ("F16", 16),
    ("BF16", 16),
    ("I32", 32),
    ("U32", 32),
    ("F32", 32),
    ("F64", 64),
    ("I64", 64),
    ("U64", 64),
];
const BAD_DTYPES: [&str; 6] = ["C64", "bf16", "F8_E4M3FN", "", "F32 ", "FLOAT"];
const NAMES: [&str; 8] = [
    "a",
    "b",
    "model.layers.0.mlp.weight",
    "lm_head.weight",
    "x y",
    "é",
    "",
    "__metadata__x",
];
/// Numbers that break things: torch's and u64's limits, and beyond.
const HUGE: [&str; 8] = [
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "-1",
    "1.5",
    "1e3",
];

/// One header entry, its numbers as JSON tokens (so that they can be
/// anything, not only valid numbers).
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: String,
    shape: Vec<String>,
    offsets: Vec<String>,
    /// Extra `"key": value` members, written after the three fields.
    extra: Vec<(String, String)>,
    /// Drop one of the three fields (0 dtype, 1 shape, 2 offsets).
    drop: Option<usize>,
    /// Written as `[dtype, shape, offsets]` instead of an object.
    as_array: bool,
}

impl Entry {
    fn json(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let dtype = q(&self.dtype);
        let shape = format!("[{}]", self.shape.join(","));
        let offsets = format!("[{}]", self.offsets.join(","));
        if self.as_array {
            return format!("[{dtype},{shape},{offsets}]");
        }
        let mut parts = Vec::new();
        for (i, (k, v)) in [
            ("dtype", dtype),
            ("shape", shape),
            ("data_offsets", offsets),
        ]
        .into_iter()
        .enumerate()
        {
            if self.drop != Some(i) {
                parts.push(format!("{}:{v}", q(k)));
            }
        }
        for (k, v) in &self.extra {
            parts.push(format!("{}:{v}", q(k)));
        }
        format!("{{{}}}", parts.join(","))
    }
}

/// A file before rendering.
struct Case {
    entries: Vec<Entry>,
    /// `__metadata__` members as raw JSON values (`None`: no key).
    metadata: Vec<String>,
    data_len: usize,
}

fn valid_case(rng: &mut Rng) -> Case {
    let n = 1 + rng.below(4);
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut names: Vec<&str> = NAMES.to_vec();
    for _ in 0..n {
        let name = names.remove(rng.below(names.len())).to_string();
        let &(dtype, bits) = rng.pick(&DTYPES);
        let rank = rng.below(4);
        let mut shape: Vec<usize> = (0..rank).map(|_| rng.below(5)).collect();
        // Sub-byte types fill whole bytes (most of the time).
        let numel: usize = shape.iter().product();
        if !(numel * bits).is_multiple_of(8) && rng.chance(85) {
            shape.push(8);
        }
        let numel: usize = shape.iter().product();
        let nbytes = numel * bits / 8;
        entries.push(Entry {
            name,
            dtype: dtype.to_string(),
            shape: shape.iter().map(usize::to_string).collect(),
            offsets: vec![pos.to_string(), (pos + nbytes).to_string()],
            extra: Vec::new(),
            drop: None,
            as_array: false,
        });
        pos += nbytes;
    }
    // Any JSON order: offsets need not follow it.
    for i in (1..entries.len()).rev() {
        let j = rng.below(i + 1);
        entries.swap(i, j);
    }
    let metadata = match rng.below(3) {
        0 => Vec::new(),
        1 => vec![r#"{"format":"pt"}"#.to_string()],
        _ => vec!["null".to_string()],
    };
    Case {
        entries,
        metadata,
        data_len: pos,
    }
}

/// Mutations of the structure, before rendering. Returns a label.
fn mutate_structure(rng: &mut Rng, c: &mut Case) -> &'static str {
    let n = c.entries.len();
    let i = rng.below(n);
    match rng.below(10) {
        0 => {
            let e = &mut c.entries[i];
            let k = rng.below(2);
            let v: i64 = e.offsets[k].parse().unwrap_or(0);
            e.offsets[k] = if rng.chance(20) {
                rng.pick(&HUGE).to_string()
            } else {
                (v + [-4i64, -2, -1, 1, 2, 4][rng.below(6)]).to_string()
            };
            "offset"
        }
        1 => {
            let e = &mut c.entries[i];
            match rng.below(4) {
                0 if !e.shape.is_empty() => {
                    let k = rng.below(e.shape.len());
                    let v: i64 = e.shape[k].parse().unwrap_or(0);
                    e.shape[k] = (v + if rng.chance(50) { 1 } else { -1 }).to_string();
                }
                1 => {
                    // An absurd dimension beside a zero one: no elements.
                    e.shape.push(rng.pick(&HUGE).to_string());
                    e.shape.insert(rng.below(e.shape.len() + 1), "0".into());
                }
                2 => e.shape.push(rng.pick(&HUGE).to_string()),
                _ => {
                    e.shape.pop();
                }
            }
            "shape"
        }
        2 => {
            c.entries[i].dtype = if rng.chance(70) {
                rng.pick(&DTYPES).0.to_string()
            } else {
                rng.pick(&BAD_DTYPES).to_string()
            };
            "dtype"
        }
        3 => {
            let j = rng.below(n);
            c.entries[i].name = c.entries[j].name.clone();
            if i != j && rng.chance(50) {
                // Duplicates with the same entry too.
                c.entries[i] = c.entries[j].clone();
            }
            "duplicate name"
        }
        4 => {
            let j = rng.below(n);
            let o = c.entries[j].offsets.clone();
            c.entries[j].offsets = c.entries[i].offsets.clone();
            c.entries[i].offsets = o;
            "swap offsets"
        }
        5 => {
            c.metadata = match rng.below(6) {
                0 => vec![r#"{"a":1}"#.into()],
                1 => vec!["[]".into()],
                2 => vec![r#""pt""#.into()],
                3 => vec![r#"{"format":"pt"}"#.into(), "null".into()],
                4 => vec![r#"{"x":{"y":"z"}}"#.into()],
                _ => vec![r#"{"format":"pt","b":"c"}"#.into()],
            };
            "metadata"
        }
        6 => {
            let e = &mut c.entries[i];
            match rng.below(3) {
                0 => e.drop = Some(rng.below(3)),
                1 => e.extra.push(("extra".into(), "[1,2]".into())),
                _ => e.extra.push(("dtype".into(), r#""F32""#.into())),
            }
            "fields"
        }
        7 => {
            c.entries[i].as_array = true;
            "array entry"
        }
        8 => {
            let e = &mut c.entries[i];
            let k = rng.below(2);
            e.offsets.insert(k, "0".into());
            "offset count"
        }
        _ => {
            // A tensor with no elements after the last one, its other
            // dimensions anything.
            let mut shape: Vec<String> = (0..1 + rng.below(2))
                .map(|_| rng.pick(&HUGE).to_string())
                .collect();
            shape.insert(rng.below(shape.len() + 1), "0".into());
            let at = c.data_len.to_string();
            c.entries.push(Entry {
                name: "empty".into(),
                dtype: rng.pick(&DTYPES).0.to_string(),
                shape,
                offsets: vec![at.clone(), at],
                extra: Vec::new(),
                drop: None,
                as_array: false,
            });
            "empty, huge"
        }
    }
}

fn render(c: &Case, rng: &mut Rng) -> String {
    let mut parts: Vec<String> = c
        .metadata
        .iter()
        .map(|m| format!("\"__metadata__\":{m}"))
        .collect();
    for e in &c.entries {
        parts.push(format!(
            "{}:{}",
            serde_json::to_string(&e.name).unwrap(),
            e.json()
        ));
    }
    if parts.len() > 1 && rng.chance(50) {
        let m = parts.remove(0);
        let at = rng.below(parts.len() + 1);
        parts.insert(at, m);
    }
    let mut json = format!("{{{}}}", parts.join(","));
    if rng.chance(70) {
        while !json.len().is_multiple_of(8) {
            json.push(' ');
        }
    }
    json
}

/// Mutations of the bytes: JSON text, padding, length field, tail.
fn mutate_bytes(
    rng: &mut Rng,
    json: &mut Vec<u8>,
    len: &mut u64,
    data: &mut Vec<u8>,
) -> &'static str {
    match rng.below(6) {
        0 => {
            let d = 1 + rng.below(9) as u64;
            *len = if rng.chance(50) {
                len.saturating_sub(d)
            } else {
                *len + d
            };
            if rng.chance(10) {
                *len = rng.next();
            }
            "length field"
        }
        1 => {
            let k = 1 + rng.below(8);
            let keep = data.len().saturating_sub(k);
            data.truncate(keep);
            "truncated"
        }
        2 => {
            for _ in 0..1 + rng.below(8) {
                data.push(rng.next() as u8);
            }
            "appended"
        }
        3 => {
            let pad = *rng.pick(&[b' ', b'\t', b'\n', b'\r', 0u8, b'x']);
            for _ in 0..1 + rng.below(7) {
                json.push(pad);
            }
            if rng.chance(70) {
                *len = json.len() as u64;
            }
            "padding"
        }
        4 => {
            if !json.is_empty() {
                let at = rng.below(json.len());
                match rng.below(3) {
                    0 => {
                        json.remove(at);
                    }
                    1 => json.insert(at, *rng.pick(b"{}[],:\"0 \xff")),
                    _ => json[at] ^= 1 << rng.below(8),
                }
                *len = json.len() as u64;
            }
            "json bytes"
        }
        _ => {
            *json = rng
                .pick(&[&b"[]"[..], b"null", b"\"x\"", b"{}", b"", b"{\"a\":null}"])
                .to_vec();
            *len = json.len() as u64;
            "not an object"
        }
    }
}

/// The crate's verdict, with the tensors it sees (name, dtype, shape, data).
type Tensors = Vec<(String, String, Vec<usize>, Vec<u8>)>;

fn crate_read(bytes: &[u8]) -> Option<Tensors> {
    let st = safetensors::SafeTensors::deserialize(bytes).ok()?;
    let mut out: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.dtype().to_string(),
                v.shape().to_vec(),
                v.data().to_vec(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

/// What torch refuses and the crate accepts: a dimension or element count
/// (leaving out zero dimensions) above `i64::MAX`.
fn torch_holds(t: &Tensors) -> bool {
    t.iter().all(|(_, _, shape, _)| {
        let mut n: u128 = 1;
        shape.iter().all(|&d| {
            if d > 0 {
                n = n.saturating_mul(d as u128);
            }
            d as u128 <= i64::MAX as u128 && n <= i64::MAX as u128
        })
    })
}

/// smelt's reading of the file on disk (through `Model::open`).
fn smelt_read(path: &Path) -> Result<Tensors, ModelError> {
    let m = Model::open(path)?;
    let mut out: Tensors = m
        .tensors()
        .iter()
        .map(|t| {
            let mut data = vec![0u8; t.nbytes()];
            m.read_raw(t, 0, &mut data).expect("read_raw");
            assert_eq!(m.raw(t), &data[..], "{}: map and pread differ", t.name);
            (
                t.name.clone(),
                t.dtype.name().to_string(),
                t.shape.clone(),
                data,
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

#[derive(Default)]
struct Tally {
    cases: usize,
    accepted: usize,
    rejected: usize,
    /// Accepted by the crate, refused by smelt for torch's limits.
    torch_only: usize,
    by_kind: std::collections::BTreeMap<String, (usize, usize)>,
}

#[test]
fn headers_agree_with_the_safetensors_crate() {
    let cases: usize = std::env::var("SMELT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2500);
    let seed: u64 = std::env::var("SMELT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5e1f_7a11);
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.safetensors");
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for case in 0..cases {
        let mut c = valid_case(&mut rng);
        let mutations = rng.below(4);
        let mut kinds: Vec<&str> = Vec::new();
        // Structure first, bytes after rendering.
        let byte_steps: Vec<bool> = (0..mutations).map(|_| rng.chance(45)).collect();
        for &bytes in &byte_steps {
            if !bytes {
                kinds.push(mutate_structure(&mut rng, &mut c));
            }
        }
        let mut json = render(&c, &mut rng).into_bytes();
        let mut len = json.len() as u64;
        let mut data: Vec<u8> = (0..c.data_len).map(|_| rng.next() as u8).collect();
        for &bytes in &byte_steps {
            if bytes {
                kinds.push(mutate_bytes(&mut rng, &mut json, &mut len, &mut data));
            }
        }
        let mut file = len.to_le_bytes().to_vec();
        file.extend_from_slice(&json);
        file.extend_from_slice(&data);
        let what = || {
            format!(
                "case {case} (seed {seed:#x}, {kinds:?}): header {:?}, {} data bytes",
                String::from_utf8_lossy(&json),
                data.len()
            )
        };

        let want = crate_read(&file);
        let torch_ok = want.as_ref().is_some_and(torch_holds);
        let in_memory =
            std::panic::catch_unwind(|| parse_header(Path::new("case.safetensors"), &file))
                .unwrap_or_else(|_| panic!("parse_header panicked: {}", what()));
        std::fs::write(&path, &file).unwrap();
        let on_disk = std::panic::catch_unwind(|| smelt_read(&path))
            .unwrap_or_else(|_| panic!("Model::open panicked: {}", what()));

        assert_eq!(in_memory.is_ok(), on_disk.is_ok(), "{}", what());
        match (&want, on_disk) {
            (Some(want), Ok(got)) => {
                assert!(
                    torch_ok,
                    "torch cannot hold a shape, smelt accepted: {}",
                    what()
                );
                assert_eq!(&got, want, "{}", what());
                let entries = in_memory.unwrap();
                assert_eq!(entries.len(), want.len(), "{}", what());
                tally.accepted += 1;
            }
            (Some(_), Err(e)) => {
                assert!(
                    !torch_ok,
                    "the crate accepts, smelt refuses ({e}): {}",
                    what()
                );
                assert!(
                    matches!(&e, ModelError::Tensor { .. }) && e.to_string().contains("torch"),
                    "{e}: {}",
                    what()
                );
                tally.torch_only += 1;
                tally.rejected += 1;
            }
            (None, Ok(got)) => panic!(
                "the crate refuses, smelt accepts {} tensors: {}",
                got.len(),
                what()
            ),
            (None, Err(e)) => {
                // Refusals name the file.
                assert!(e.to_string().contains("case.safetensors"), "{e}");
                tally.rejected += 1;
            }
        }
        tally.cases += 1;
        let key = if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join("+")
        };
        let slot = tally.by_kind.entry(key).or_default();
        if want.is_some() && torch_ok {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "fuzz_header: {} cases (seed {seed:#x}): {} accepted, {} rejected ({} by torch's limits only), {:.2} s",
        tally.cases,
        tally.accepted,
        tally.rejected,
        tally.torch_only,
        elapsed.as_secs_f64()
    );
    let mut single: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for (k, (a, r)) in &tally.by_kind {
        if !k.contains('+') {
            let s = single.entry(k.as_str()).or_default();
            s.0 += a;
            s.1 += r;
        }
    }
    for (k, (a, r)) in &single {
        eprintln!("  {k:<16} accepted {a:>4}  rejected {r:>4}");
    }
    // The fuzz is not degenerate: both verdicts, every single mutation
    // tried, and the torch rule hit.
    if cases >= 2000 {
        assert!(tally.accepted >= cases / 5, "{} accepted", tally.accepted);
        assert!(tally.rejected >= cases / 5, "{} rejected", tally.rejected);
        assert!(tally.torch_only > 0);
        assert!(single.len() >= 16, "{:?}", single.keys());
    }
}
