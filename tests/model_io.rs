//! Reading and writing checkpoints: every malformed input gives a clear
//! error naming the file and tensor; written models read back exactly; the
//! writer never leaves partial output behind and protects its inputs.

use smelt::model::{
    write_small, Dtype, Model, ModelError, OutputLock, OutputTensor, Writer, WriterOptions,
    INDEX_FILE, RECIPE_FILE, SINGLE_FILE,
};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- helpers

/// Write a safetensors file from a raw header string and data bytes.
fn raw_file(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Everything under `dir`, sorted, as relative paths.
fn listing(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Open `path`, expect failure, check the listing of `dir` is unchanged.
fn open_err(dir: &Path, path: &Path) -> ModelError {
    let before = listing(dir);
    let e = match Model::open(path) {
        Ok(_) => panic!("{} opened but should not", path.display()),
        Err(e) => e,
    };
    assert_eq!(listing(dir), before, "open left files behind");
    e
}

fn assert_names(e: &ModelError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "`{msg}` should mention `{p}`");
    }
}

fn single(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
    let p = dir.join("m.safetensors");
    raw_file(&p, header, data);
    p
}

// ------------------------------------------------------- malformed inputs

#[test]
fn shorter_than_8_bytes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("tiny.safetensors");
    std::fs::write(&p, [1u8, 2, 3]).unwrap();
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(
        &e,
        &[
            "tiny.safetensors",
            "not a safetensors checkpoint",
            "3 bytes",
        ],
    );
    std::fs::write(&p, []).unwrap();
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
}

#[test]
fn header_length_beyond_file() {
    // A plausible length over a short file: said, with the length, since
    // the file may be a truncated checkpoint.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("big.safetensors");
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&p, bytes).unwrap();
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(
        &e,
        &[
            "big.safetensors",
            "1000000",
            "larger than the file",
            "truncated",
        ],
    );
}

#[test]
fn header_not_json_or_not_object() {
    let d = tempfile::tempdir().unwrap();
    let p = single(d.path(), "{not json", &[]);
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(
        &e,
        &[
            "m.safetensors",
            "not a safetensors checkpoint",
            "not valid JSON",
        ],
    );
    let p = single(d.path(), "[1, 2]  ", &[]);
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(&e, &["m.safetensors", "not a JSON object"]);
    // A JSON object with a bad entry is a safetensors file gone wrong, not
    // some other kind of file.
    let p = single(d.path(), r#"{"__metadata__": {"a": 1}}"#, &[]);
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert_names(&e, &["__metadata__"]);
}

/// A text file opened as a model (`smelt inspect README.md`): its first
/// bytes read as an absurd header length. The message says what the file
/// is not and why, without the meaningless number.
#[test]
fn text_file_is_not_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("README.md");
    std::fs::write(
        &p,
        "# smelt\n\nA terminal workbench for merging checkpoints.\n",
    )
    .unwrap();
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: not a safetensors checkpoint: header length larger than the file (",
            p.display()
        )),
        "{msg}"
    );
    let bogus = u64::from_le_bytes(*b"# smelt\n").to_string();
    assert!(!msg.contains(&bogus), "{msg}");
    // A text file whose first 8 bytes happen to make a small length: the
    // "header" is then text, not JSON.
    let p = d.path().join("notes.txt");
    let mut bytes = 6u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"hello, world");
    std::fs::write(&p, bytes).unwrap();
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(
        &e,
        &[
            "notes.txt",
            "not a safetensors checkpoint",
            "not valid JSON",
        ],
    );
}

/// A folder without weights is not a checkpoint; where it holds
/// safetensors files under other names, or models in subfolders, the
/// message points there.
#[test]
fn folder_without_weights_is_not_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("docs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "# docs\n").unwrap();
    let e = open_err(d.path(), &dir);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(
        &e,
        &[
            "docs",
            "not a safetensors checkpoint",
            SINGLE_FILE,
            INDEX_FILE,
        ],
    );

    let t = vec![("w".to_string(), vec![2], vec![1.0, 2.0])];
    write_small(&dir.join("adapter.safetensors"), &t, Dtype::F32, &[]).unwrap();
    let e = open_err(d.path(), &dir);
    assert_names(&e, &["not a safetensors checkpoint", "adapter.safetensors"]);
    // ... which opens.
    assert!(Model::open(&dir.join("adapter.safetensors")).is_ok());

    let family = d.path().join("family");
    write_small(&family.join("base"), &t, Dtype::F32, &[]).unwrap();
    write_small(&family.join("ft"), &t, Dtype::F32, &[]).unwrap();
    let e = open_err(d.path(), &family);
    assert_names(&e, &["family", "not a safetensors checkpoint", "base, ft"]);

    // A JSON file that is not a shard index (config.json named by mistake).
    let p = d.path().join("config.json");
    std::fs::write(&p, r#"{"num_hidden_layers": 2}"#).unwrap();
    let e = open_err(d.path(), &p);
    assert!(matches!(e, ModelError::NotCheckpoint { .. }), "{e:?}");
    assert_names(&e, &["config.json", "weight_map"]);
}

#[test]
fn unknown_dtype() {
    let d = tempfile::tempdir().unwrap();
    let p = single(
        d.path(),
        r#"{"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}"#,
        &[0; 8],
    );
    let e = open_err(d.path(), &p);
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "w"),
        "{e:?}"
    );
    assert_names(&e, &["m.safetensors", "`w`", "C64"]);
}

#[test]
fn shape_does_not_match_bytes() {
    let d = tempfile::tempdir().unwrap();
    let p = single(
        d.path(),
        r#"{"a.weight": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}}"#,
        &[0; 8],
    );
    let e = open_err(d.path(), &p);
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "a.weight"),
        "{e:?}"
    );
    assert_names(&e, &["m.safetensors", "a.weight", "needs 12 bytes"]);
    // Overflowing shapes are an error, not a wrap-around.
    let p = single(
        d.path(),
        r#"{"b": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}}"#,
        &[],
    );
    let e = open_err(d.path(), &p);
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "b"),
        "{e:?}"
    );
}

#[test]
fn offsets_outside_data() {
    let d = tempfile::tempdir().unwrap();
    let p = single(
        d.path(),
        r#"{"x": {"dtype": "F32", "shape": [4], "data_offsets": [4, 20]}}"#,
        &[0; 16],
    );
    let e = open_err(d.path(), &p);
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "x"),
        "{e:?}"
    );
    assert_names(&e, &["m.safetensors", "`x`", "past the data section"]);
    let p = single(
        d.path(),
        r#"{"y": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}"#,
        &[0; 16],
    );
    let e = open_err(d.path(), &p);
    assert_names(&e, &["`y`", "start after end"]);
    let p = single(
        d.path(),
        r#"{"z": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}"#,
        &[0; 16],
    );
    let e = open_err(d.path(), &p);
    assert_names(&e, &["`z`", "data_offsets"]);
}

#[test]
fn overlapping_tensors() {
    let d = tempfile::tempdir().unwrap();
    let p = single(
        d.path(),
        r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
        &[0; 12],
    );
    let e = open_err(d.path(), &p);
    assert!(matches!(&e, ModelError::Tensor { .. }), "{e:?}");
    assert_names(&e, &["m.safetensors", "`a`", "`b`", "overlaps"]);
}

/// A two-shard folder: `a` in shard 1, `b` in shard 2, index as given.
fn sharded_folder(dir: &Path, index: &str) {
    raw_file(
        &dir.join("s1.safetensors"),
        r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
        &1f32.to_le_bytes(),
    );
    raw_file(
        &dir.join("s2.safetensors"),
        r#"{"b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
        &2f32.to_le_bytes(),
    );
    std::fs::write(dir.join(INDEX_FILE), index).unwrap();
}

#[test]
fn sharded_index_works() {
    let d = tempfile::tempdir().unwrap();
    sharded_folder(
        d.path(),
        r#"{"metadata": {}, "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}"#,
    );
    let m = Model::open(d.path()).unwrap();
    assert_eq!(m.shard_paths().len(), 2);
    assert_eq!(m.read_all_f32("a").unwrap(), [1.0]);
    assert_eq!(m.read_all_f32("b").unwrap(), [2.0]);
    assert_eq!(m.tensor("b").unwrap().shard, 1);
    // The index file itself is also accepted as the path.
    let m = Model::open(&d.path().join(INDEX_FILE)).unwrap();
    assert_eq!(m.tensors().len(), 2);
}

#[test]
fn index_names_missing_shard() {
    let d = tempfile::tempdir().unwrap();
    sharded_folder(
        d.path(),
        r#"{"weight_map": {"a": "s1.safetensors", "b": "s9.safetensors"}}"#,
    );
    let e = open_err(d.path(), d.path());
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert_names(&e, &[INDEX_FILE, "s9.safetensors", "does not exist"]);
}

#[test]
fn index_names_tensor_absent_from_shard() {
    let d = tempfile::tempdir().unwrap();
    sharded_folder(
        d.path(),
        r#"{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"}}"#,
    );
    let e = open_err(d.path(), d.path());
    assert!(
        matches!(&e, ModelError::MissingTensor { tensor, .. } if tensor == "c"),
        "{e:?}"
    );
    assert_names(&e, &["s2.safetensors", "`c`"]);
}

#[test]
fn index_escaping_folder_or_malformed() {
    let d = tempfile::tempdir().unwrap();
    sharded_folder(
        d.path(),
        r#"{"weight_map": {"a": "../s1.safetensors", "b": "s2.safetensors"}}"#,
    );
    let e = open_err(d.path(), d.path());
    assert_names(&e, &[INDEX_FILE, "../s1.safetensors"]);
    std::fs::write(d.path().join(INDEX_FILE), "{oops").unwrap();
    let e = open_err(d.path(), d.path());
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert_names(&e, &[INDEX_FILE, "not valid JSON"]);
    std::fs::write(d.path().join(INDEX_FILE), r#"{"metadata": {}}"#).unwrap();
    let e = open_err(d.path(), d.path());
    assert_names(&e, &[INDEX_FILE, "weight_map"]);
}

#[test]
fn duplicate_tensor_across_shards() {
    let d = tempfile::tempdir().unwrap();
    sharded_folder(
        d.path(),
        r#"{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}"#,
    );
    raw_file(
        &d.path().join("s2.safetensors"),
        r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
        &[0; 8],
    );
    let e = open_err(d.path(), d.path());
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "a"),
        "{e:?}"
    );
    assert_names(&e, &["s2.safetensors", "s1.safetensors", "`a`"]);
}

#[test]
fn bad_config_json() {
    let d = tempfile::tempdir().unwrap();
    write_small(
        d.path(),
        &[("w".into(), vec![2], vec![1.0, 2.0])],
        Dtype::F32,
        &[],
    )
    .unwrap();
    std::fs::write(d.path().join("config.json"), "{\"num_hidden_layers\": ").unwrap();
    let e = open_err(d.path(), d.path());
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert_names(&e, &["config.json", "not valid JSON"]);
}

#[test]
fn empty_or_missing_folder() {
    let d = tempfile::tempdir().unwrap();
    let e = open_err(d.path(), d.path());
    assert_names(&e, &[SINGLE_FILE, INDEX_FILE]);
    let e = open_err(d.path(), &d.path().join("nope"));
    assert!(matches!(e, ModelError::Io { .. }), "{e:?}");
    assert_names(&e, &["nope"]);
}

#[test]
fn non_float_tensors_are_raw_only() {
    let d = tempfile::tempdir().unwrap();
    let p = single(
        d.path(),
        r#"{"__metadata__": {"format": "pt"},
            "ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
            "x": {"dtype": "BF16", "shape": [], "data_offsets": [16, 18]},
            "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [18, 18]}}"#,
        &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f],
    );
    let m = Model::open(&p).unwrap();
    assert_eq!(m.name(), "m");
    let ids = m.tensor("ids").unwrap();
    assert_eq!(m.raw(ids).len(), 16);
    let e = m.read_all_f32("ids").unwrap_err();
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "ids"),
        "{e:?}"
    );
    // A scalar (shape []) has one element; an empty tensor none.
    assert_eq!(m.read_all_f32("x").unwrap(), [1.0]);
    assert_eq!(m.read_all_f32("e").unwrap(), Vec::<f32>::new());
    assert!(matches!(
        m.read_all_f32("zzz"),
        Err(ModelError::MissingTensor { .. })
    ));
}

// ---------------------------------------------------------------- writing

fn opts() -> WriterOptions {
    WriterOptions::default()
}

fn out_tensor(name: &str, dtype: Dtype, shape: &[usize]) -> OutputTensor {
    OutputTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Partial, old and temp siblings of an output must not outlive a writer.
fn assert_no_scratch(parent: &Path) {
    for e in std::fs::read_dir(parent).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".partial-")
                && !name.contains(".old-")
                && !name.contains(".tmp-")
                && !name.contains(".smelt-lock"),
            "scratch left behind: {name}"
        );
    }
}

#[test]
fn sharded_write_reads_back() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("merged");
    let specs = [
        ("model.embed_tokens.weight", Dtype::BF16, vec![33, 16]),
        (
            "model.layers.0.mlp.up_proj.weight",
            Dtype::F16,
            vec![17, 31],
        ),
        (
            "model.layers.0.input_layernorm.weight",
            Dtype::F32,
            vec![16],
        ),
        (
            "model.layers.1.mlp.up_proj.weight",
            Dtype::BF16,
            vec![17, 31],
        ),
        ("model.layers.1.scale", Dtype::F64, vec![]),
        ("model.layers.1.empty", Dtype::BF16, vec![0, 7]),
        ("model.norm.weight", Dtype::F32, vec![16]),
        ("lm_head.weight", Dtype::BF16, vec![33, 16]),
        ("position_ids", Dtype::I64, vec![5]),
    ];
    let tensors: Vec<OutputTensor> = specs.iter().map(|(n, d, s)| out_tensor(n, *d, s)).collect();
    let o = WriterOptions {
        shard_size: 1100,
        metadata: vec![("merged_by".into(), "smelt".into())],
        ..opts()
    };
    let w = Writer::create(&out, tensors.clone(), &o).unwrap();
    assert!(w.shard_names().len() >= 3, "{:?}", w.shard_names());
    assert!(!out.exists(), "nothing at the destination before finish");
    let data: Vec<Vec<f32>> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| values(t.numel(), i as u32))
        .collect();
    // Fill from several threads, in odd-sized chunks, in reverse order.
    std::thread::scope(|s| {
        for (i, t) in tensors.iter().enumerate() {
            let (w, data) = (&w, &data[i]);
            s.spawn(move || {
                if t.dtype == Dtype::I64 {
                    let bytes: Vec<u8> = (0..5i64).flat_map(|v| v.to_le_bytes()).collect();
                    w.write_raw(i, 0, &bytes[..24]).unwrap();
                    w.write_raw(i, 24, &bytes[24..]).unwrap();
                    return;
                }
                let chunks: Vec<(usize, &[f32])> = data
                    .chunks(37)
                    .enumerate()
                    .map(|(k, c)| (k * 37, c))
                    .collect();
                for (start, c) in chunks.into_iter().rev() {
                    w.write_f32(i, start, c).unwrap();
                }
            });
        }
    });
    w.add_file("config.json", br#"{"num_hidden_layers": 2}"#)
        .unwrap();
    let done = w.finish().unwrap();
    assert_eq!(done, out);
    assert_no_scratch(d.path());

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(INDEX_FILE)).unwrap()).unwrap();
    let total: u64 = tensors
        .iter()
        .map(|t| (t.numel() * t.dtype.size()) as u64)
        .sum();
    assert_eq!(index["metadata"]["total_size"], total);
    let wm = index["weight_map"].as_object().unwrap();
    assert_eq!(wm.len(), tensors.len());
    assert!(!out.join(SINGLE_FILE).exists());

    let m = Model::open(&out).unwrap();
    assert!(m.shard_paths().len() >= 3);
    assert_eq!(m.num_layers(), 2);
    assert_eq!(
        m.metadata().get("merged_by").map(String::as_str),
        Some("smelt")
    );
    for (i, t) in tensors.iter().enumerate() {
        let info = m.tensor(&t.name).unwrap();
        assert_eq!(info.dtype, t.dtype);
        assert_eq!(info.shape, t.shape);
        let shard_file = m.shard_paths()[info.shard].file_name().unwrap();
        assert_eq!(wm[&t.name], shard_file.to_str().unwrap());
        if t.dtype == Dtype::I64 {
            let want: Vec<u8> = (0..5i64).flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(m.raw(info), &want[..]);
            continue;
        }
        // Each value equals the source rounded to the tensor's dtype.
        let mut want = vec![0u8; data[i].len() * t.dtype.size()];
        smelt::model::from_f32(t.dtype, &data[i], &mut want).unwrap();
        assert_eq!(m.raw(info), &want[..], "{}", t.name);
        let back = m.read_all_f32(&t.name).unwrap();
        for (a, b) in back.iter().zip(&data[i]) {
            assert!(
                (a - b).abs() <= b.abs() / 128.0 + 1e-6,
                "{} {a} vs {b}",
                t.name
            );
        }
    }
}

/// Our files are readable by the reference implementation.
#[test]
fn output_readable_by_safetensors_crate() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let tensors = vec![
        out_tensor("a", Dtype::BF16, &[3]),
        out_tensor("b", Dtype::F32, &[2, 2]),
        out_tensor("s", Dtype::F16, &[]),
    ];
    let w = Writer::create(&out, tensors, &opts()).unwrap();
    w.write_f32(0, 0, &[1.0, 2.0, 3.0]).unwrap();
    w.write_f32(1, 0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    w.write_f32(2, 0, &[0.5]).unwrap();
    w.finish().unwrap();
    assert!(!out.join(INDEX_FILE).exists());
    let bytes = std::fs::read(out.join(SINGLE_FILE)).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(header_len % 8, 0, "header padded to 8 bytes");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let b = st.tensor("b").unwrap();
    assert_eq!(b.shape(), [2, 2]);
    assert_eq!(b.dtype(), safetensors::Dtype::F32);
    let vals: Vec<f32> = b
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(
        st.tensor("s").unwrap().shape(),
        Vec::<usize>::new().as_slice()
    );
}

#[test]
fn write_errors_name_tensor() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let w = Writer::create(
        &out,
        vec![
            out_tensor("w", Dtype::BF16, &[4]),
            out_tensor("ids", Dtype::I32, &[2]),
        ],
        &opts(),
    )
    .unwrap();
    let e = w.write_f32(0, 3, &[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "w"),
        "{e:?}"
    );
    let e = w.write_f32(1, 0, &[1.0]).unwrap_err();
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "ids"),
        "{e:?}"
    );
    assert!(w.write_raw(1, 4, &[0; 8]).is_err());
    assert!(w.write_f32(7, 0, &[1.0]).is_err());
    assert!(w.add_file("../evil", b"x").is_err());
    assert!(w.add_file(SINGLE_FILE, b"x").is_err());
    w.add_file("README.md", b"# merged").unwrap();
    let src = d.path().join("tokenizer.json");
    std::fs::write(&src, "{}").unwrap();
    w.copy_file(&src).unwrap();
    let out = w.finish().unwrap();
    assert_eq!(std::fs::read(out.join("tokenizer.json")).unwrap(), b"{}");
    assert_eq!(std::fs::read(out.join("README.md")).unwrap(), b"# merged");
}

#[test]
fn existing_output_refused_without_force() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "old").unwrap();
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let e = Writer::create(&out, t.clone(), &opts()).err().unwrap();
    assert!(matches!(e, ModelError::Output { .. }), "{e:?}");
    assert_names(&e, &["already exists", "--force"]);
    assert_eq!(std::fs::read(out.join("keep")).unwrap(), b"old");
    assert_no_scratch(d.path());

    // With force too: `keep` is not a file a merge writes.
    let e = Writer::create(&out, t.clone(), &forced()).err().unwrap();
    assert_names(&e, &["keep", "does not write"]);
    assert_eq!(std::fs::read(out.join("keep")).unwrap(), b"old");
    assert_no_scratch(d.path());

    // A smelt output is replaced, and nothing else is left.
    std::fs::remove_file(out.join("keep")).unwrap();
    smelt_output(&out, 1.0);
    let w = Writer::create(&out, t, &forced()).unwrap();
    w.write_f32(0, 0, &[5.0]).unwrap();
    w.finish().unwrap();
    assert!(!out.join(RECIPE_FILE).exists());
    assert_eq!(Model::open(&out).unwrap().read_all_f32("w").unwrap(), [5.0]);
    assert_eq!(listing(&out), vec![PathBuf::from(SINGLE_FILE)]);
    assert_no_scratch(d.path());
}

fn forced() -> WriterOptions {
    WriterOptions {
        force: true,
        ..opts()
    }
}

/// Write a smelt output at `out`: one tensor `w` = [`value`], with the
/// recipe, config and model card a merge writes.
fn smelt_output(out: &Path, value: f32) {
    let w = Writer::create(out, vec![out_tensor("w", Dtype::F32, &[1])], &forced()).unwrap();
    w.write_f32(0, 0, &[value]).unwrap();
    w.add_file(RECIPE_FILE, b"method = \"linear\"\n").unwrap();
    w.add_file("config.json", b"{}").unwrap();
    w.add_file("README.md", b"# merged\n").unwrap();
    w.finish().unwrap();
}

/// `--force` replaces an empty folder or one a smelt merge wrote, and
/// refuses anything else, naming what is in the way; nothing is deleted.
#[test]
fn force_replaces_only_an_empty_folder_or_a_smelt_output() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let replace = |value: f32| -> Result<PathBuf, ModelError> {
        let w = Writer::create(&out, t.clone(), &forced())?;
        w.write_f32(0, 0, &[value]).unwrap();
        w.finish()
    };
    // Empty: replaced.
    std::fs::create_dir(&out).unwrap();
    replace(1.0).unwrap();
    assert_eq!(Model::open(&out).unwrap().read_all_f32("w").unwrap(), [1.0]);

    // A smelt output the user added a thesis to: refused, naming it.
    std::fs::remove_dir_all(&out).unwrap();
    smelt_output(&out, 2.0);
    std::fs::write(out.join("thesis.tex"), "\\begin{document}").unwrap();
    std::fs::create_dir(out.join("notes")).unwrap();
    let before = listing(d.path());
    let e = replace(3.0).unwrap_err();
    assert!(matches!(e, ModelError::Output { .. }), "{e:?}");
    assert_names(&e, &["thesis.tex", "notes/", "does not write"]);
    assert_eq!(listing(d.path()), before);
    assert_eq!(Model::open(&out).unwrap().read_all_f32("w").unwrap(), [2.0]);

    // A model folder smelt did not write (no recipe): refused, although
    // every file in it has a name a merge uses.
    std::fs::remove_dir_all(&out).unwrap();
    smelt_output(&out, 4.0);
    std::fs::remove_file(out.join(RECIPE_FILE)).unwrap();
    let before = listing(d.path());
    let e = replace(5.0).unwrap_err();
    assert_names(&e, &[RECIPE_FILE, "not a smelt output"]);
    assert_eq!(listing(d.path()), before);

    // A smelt file name that is not a regular file is foreign.
    std::fs::remove_dir_all(&out).unwrap();
    smelt_output(&out, 4.0);
    std::fs::create_dir(out.join("tokenizer.json")).unwrap();
    let e = replace(5.0).unwrap_err();
    assert_names(&e, &["tokenizer.json/"]);

    // A link to a folder: refused, the folder untouched.
    std::fs::remove_dir_all(&out).unwrap();
    let target = d.path().join("target");
    smelt_output(&target, 6.0);
    std::os::unix::fs::symlink(&target, &out).unwrap();
    let e = replace(7.0).unwrap_err();
    assert_names(&e, &["symbolic link"]);
    assert_eq!(
        Model::open(&target).unwrap().read_all_f32("w").unwrap(),
        [6.0]
    );
    assert_no_scratch(d.path());
}

/// A file that appears in the old output while the merge runs is found by
/// the check before publishing: the old output stays, whole.
#[test]
fn force_checks_again_before_replacing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    smelt_output(&out, 1.0);
    let w = Writer::create(&out, vec![out_tensor("w", Dtype::F32, &[1])], &forced()).unwrap();
    w.write_f32(0, 0, &[2.0]).unwrap();
    std::fs::write(out.join("eval.json"), "{}").unwrap();
    let e = w.finish().unwrap_err();
    assert_names(&e, &["eval.json"]);
    assert_eq!(Model::open(&out).unwrap().read_all_f32("w").unwrap(), [1.0]);
    assert!(out.join("eval.json").is_file());
    assert_no_scratch(d.path());
}

/// The writer adds only files a merge writes, so a smelt output holds
/// nothing `--force` would call foreign.
#[test]
fn only_smelt_side_files_are_added() {
    let d = tempfile::tempdir().unwrap();
    let w = Writer::create(
        &d.path().join("o"),
        vec![out_tensor("w", Dtype::F32, &[1])],
        &opts(),
    )
    .unwrap();
    for name in ["notes.txt", "eval.json", ".hidden"] {
        let e = w.add_file(name, b"x").unwrap_err();
        assert_names(&e, &[name, "not a file a smelt output holds"]);
    }
    for name in smelt::model::COPIED_FILES
        .iter()
        .chain(&["config.json", "README.md", RECIPE_FILE])
    {
        w.add_file(name, b"x").unwrap();
        assert!(smelt::model::is_smelt_file(name), "{name}");
    }
}

#[test]
fn output_inside_input_refused() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    write_small(&input, &[("w".into(), vec![1], vec![1.0])], Dtype::F32, &[]).unwrap();
    let before = listing(d.path());
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let o = WriterOptions {
        inputs: vec![input.clone()],
        force: true,
        ..opts()
    };
    for out in [
        input.join("merged"),
        input.join("a/b/../merged"),
        input.clone(),
        d.path().join("in/./sub/../merged"),
    ] {
        let e = Writer::create(&out, t.clone(), &o).err().unwrap();
        assert!(matches!(e, ModelError::Output { .. }), "{e:?}");
        assert_names(&e, &["input"]);
    }
    // Replacing a folder that contains an input would delete it.
    let e = Writer::create(d.path(), t.clone(), &o).err().unwrap();
    assert_names(&e, &["contains input"]);
    // Without force, refusing an existing output comes first.
    let e = Writer::create(
        &input,
        t.clone(),
        &WriterOptions {
            force: false,
            ..o.clone()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, ModelError::Output { .. }), "{e:?}");
    assert_eq!(listing(d.path()), before);
    drop(t);
}

#[test]
fn dropped_writer_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let w = Writer::create(&out, vec![out_tensor("w", Dtype::BF16, &[8])], &opts()).unwrap();
    let partial = w.partial_path().to_path_buf();
    assert!(partial.is_dir());
    assert!(partial
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("o.partial-"));
    w.write_f32(0, 0, &[1.0; 8]).unwrap();
    drop(w);
    assert!(!partial.exists());
    assert!(!out.exists());
    assert_eq!(listing(d.path()), Vec::<PathBuf>::new());
}

#[test]
fn duplicate_output_names_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let t = vec![
        out_tensor("w", Dtype::F32, &[1]),
        out_tensor("w", Dtype::F32, &[2]),
    ];
    let e = Writer::create(&out, t, &opts()).err().unwrap();
    assert_names(&e, &["`w`", "twice"]);
    assert_eq!(listing(d.path()), Vec::<PathBuf>::new());
}

#[test]
fn write_small_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let tensors = vec![
        (
            "layers.0.weight".to_string(),
            vec![2, 3],
            vec![1.0, -2.0, 0.5, 0.25, 3.0, -0.125],
        ),
        ("layers.0.bias".to_string(), vec![2], vec![0.0, 1.0]),
        ("scale".to_string(), vec![], vec![2.0]),
    ];
    for (path, dt) in [
        (d.path().join("folder"), Dtype::BF16),
        (d.path().join("file.safetensors"), Dtype::F16),
    ] {
        write_small(&path, &tensors, dt, &[("k".into(), "v".into())]).unwrap();
        let m = Model::open(&path).unwrap();
        for (name, shape, vals) in &tensors {
            assert_eq!(&m.tensor(name).unwrap().shape, shape);
            assert_eq!(&m.read_all_f32(name).unwrap(), vals);
        }
        assert_eq!(m.catalogue_layers(), 1);
        assert_eq!(m.metadata()["k"], "v");
    }
    assert_no_scratch(d.path());
    let bad = vec![("w".to_string(), vec![3], vec![1.0])];
    let e = write_small(&d.path().join("x"), &bad, Dtype::F32, &[]).unwrap_err();
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "w"),
        "{e:?}"
    );
    assert!(!d.path().join("x").join(SINGLE_FILE).exists());
}

/// The layout of a 7B Llama (291 tensors, bf16, about 13.5 GB) in 5 GB
/// shards. The writer creates sparse files, so this costs no disk space;
/// opening reads only the headers and finds every tensor.
#[test]
fn open_7b_layout() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("llama7b");
    let (h, i, v) = (4096, 11008, 32000);
    let mut t = vec![out_tensor(
        "model.embed_tokens.weight",
        Dtype::BF16,
        &[v, h],
    )];
    for l in 0..32 {
        let p = format!("model.layers.{l}.");
        for (n, s) in [
            ("self_attn.q_proj.weight", vec![h, h]),
            ("self_attn.k_proj.weight", vec![h, h]),
            ("self_attn.v_proj.weight", vec![h, h]),
            ("self_attn.o_proj.weight", vec![h, h]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            t.push(out_tensor(&format!("{p}{n}"), Dtype::BF16, &s));
        }
    }
    t.push(out_tensor("model.norm.weight", Dtype::BF16, &[h]));
    t.push(out_tensor("lm_head.weight", Dtype::BF16, &[v, h]));
    let w = Writer::create(&out, t, &opts()).unwrap();
    assert_eq!(w.shard_names().len(), 3);
    w.finish().unwrap();

    // How fast this is belongs in a benchmark, not here.
    let m = Model::open(&out).unwrap();
    assert_eq!(m.tensors().len(), 291);
    assert_eq!(m.catalogue_layers(), 32);
    assert_eq!(m.num_params(), 6_738_415_616);
    assert_eq!(m.tensors()[0].name, "model.embed_tokens.weight");
    assert_eq!(m.tensors()[1].name, "model.layers.0.input_layernorm.weight");
    assert_eq!(m.tensors()[290].name, "model.norm.weight");
}

#[test]
fn unnamed_outputs_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let o = WriterOptions {
        force: true,
        ..opts()
    };
    for out in [
        PathBuf::from("."),
        PathBuf::from(".."),
        PathBuf::from("/"),
        d.path().join(".."),
    ] {
        let e = Writer::create(&out, t.clone(), &o).err().unwrap();
        assert!(
            matches!(e, ModelError::Output { .. }),
            "{}: {e:?}",
            out.display()
        );
    }
}

/// `--force` never replaces a file by a folder.
#[test]
fn force_refuses_a_plain_file() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    std::fs::write(&out, "not a model").unwrap();
    let e = Writer::create(&out, vec![out_tensor("w", Dtype::BF16, &[2])], &forced())
        .err()
        .unwrap();
    assert!(matches!(e, ModelError::Output { .. }), "{e:?}");
    assert_names(&e, &["is a file", "smelt replaces only"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "not a model");
    assert_no_scratch(d.path());
}

/// An input named as a file protects the folder it is in, as an input
/// named as a folder does.
#[test]
fn output_inside_the_folder_of_a_file_input_refused() {
    let d = tempfile::tempdir().unwrap();
    let ft1 = d.path().join("ft1");
    write_small(&ft1, &[("w".into(), vec![1], vec![1.0])], Dtype::F32, &[]).unwrap();
    let before = listing(d.path());
    let o = WriterOptions {
        inputs: vec![ft1.join(SINGLE_FILE)],
        ..forced()
    };
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    for out in [ft1.join("newout"), d.path().join("ft1/./x/../newout")] {
        let e = Writer::create(&out, t.clone(), &o).err().unwrap();
        assert!(matches!(e, ModelError::Output { .. }), "{e:?}");
        assert_names(&e, &["inside the folder of input", "model.safetensors"]);
    }
    assert_eq!(listing(d.path()), before);
    // Beside it is fine.
    let w = Writer::create(&d.path().join("newout"), t, &o).unwrap();
    w.write_f32(0, 0, &[1.0]).unwrap();
    w.finish().unwrap();
}

// ------------------------------------------------------------------ locks

/// A second writer to the same output fails at once, naming the first
/// one's partial folder; with `force` too. Once the first is done, the
/// output is free again, and no lock file is left.
#[test]
fn a_second_writer_to_the_same_output_is_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let first = Writer::create(&out, t.clone(), &opts()).unwrap();
    let partial = first.partial_path().canonicalize().unwrap();
    std::fs::create_dir(d.path().join("x")).unwrap();
    for o in [opts(), forced()] {
        // Through another spelling of the same path, too.
        let other = d.path().join("x/../o");
        let e = Writer::create(&other, t.clone(), &o).err().unwrap();
        assert!(matches!(e, ModelError::Busy { .. }), "{e:?}");
        assert!(e.is_environment());
        assert_names(&e, &["another smelt merge", &partial.display().to_string()]);
    }
    first.write_f32(0, 0, &[1.0]).unwrap();
    first.finish().unwrap();
    assert_no_scratch(d.path());
    // Free again.
    drop(Writer::create(&d.path().join("o2"), t, &opts()).unwrap());
    assert_eq!(
        listing(d.path()),
        ["o", "o/model.safetensors", "x"].map(PathBuf::from)
    );
}

/// The lock taken before planning (as `smelt merge` does) is the one the
/// writer then uses; while held, no other writer can start, and releasing
/// it removes the lock file.
#[test]
fn a_lock_taken_early_is_used_by_the_writer() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let lock = OutputLock::acquire(&out).unwrap();
    assert_names(
        &OutputLock::acquire(&out).unwrap_err(),
        &["another smelt merge"],
    );
    let w = Writer::create(&out, t.clone(), &opts()).unwrap();
    let e = Writer::create(&out, t.clone(), &opts()).err().unwrap();
    assert!(matches!(e, ModelError::Busy { .. }), "{e:?}");
    w.write_f32(0, 0, &[1.0]).unwrap();
    w.add_file(RECIPE_FILE, b"").unwrap();
    w.finish().unwrap();
    // Still held by `lock` after the writer is done.
    assert!(Writer::create(&out, t.clone(), &forced()).is_ok());
    assert!(d.path().join("o.smelt-lock").is_file());
    assert!(OutputLock::acquire(&out).is_err());
    drop(lock);
    assert!(!d.path().join("o.smelt-lock").exists());
    assert!(OutputLock::acquire(&out).is_ok());
}

/// A lock file smelt did not write is neither used nor removed.
#[test]
fn a_foreign_lock_file_is_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    std::fs::write(d.path().join("o.smelt-lock"), "my notes").unwrap();
    let e = OutputLock::acquire(&out).unwrap_err();
    assert_names(&e, &["o.smelt-lock", "not a smelt lock file"]);
    assert_eq!(
        std::fs::read_to_string(d.path().join("o.smelt-lock")).unwrap(),
        "my notes"
    );
}

/// A partial folder is stale when no process holds its lock, whatever its
/// pid says: one held by a live merge (here: this test, as a merge in
/// another PID namespace would, with a pid that means nothing here) is
/// kept; one nobody holds is removed, but only the files a merge writes.
#[test]
fn stale_partial_folders_are_told_by_their_lock() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let live = d.path().join("o.partial-4194999-0");
    let dead = d.path().join("o.partial-4194998-0");
    let odd = d.path().join("o.partial-4194997-0");
    for p in [&live, &dead, &odd] {
        std::fs::create_dir(p).unwrap();
        std::fs::write(p.join(SINGLE_FILE), "half a model").unwrap();
        std::fs::write(p.join(".config.json.tmp-4194999-3"), "{").unwrap();
    }
    std::fs::write(odd.join("mine.txt"), "not smelt's").unwrap();
    let held = std::fs::File::open(&live).unwrap();
    held.try_lock().unwrap();

    let w = Writer::create(&out, vec![out_tensor("w", Dtype::F32, &[1])], &opts()).unwrap();
    w.write_f32(0, 0, &[1.0]).unwrap();
    w.add_file(RECIPE_FILE, b"").unwrap();
    w.finish().unwrap();
    assert!(
        live.join(SINGLE_FILE).is_file(),
        "a live merge's folder was touched"
    );
    assert!(!dead.exists(), "a dead merge's folder was kept");
    assert_eq!(listing(&odd), vec![PathBuf::from("mine.txt")]);

    // Once its merge is gone, the next writer removes it.
    drop(held);
    let w = Writer::create(&out, vec![out_tensor("w", Dtype::F32, &[1])], &forced()).unwrap();
    drop(w);
    assert!(!live.exists());
}

/// A symlink into an input is seen through: the real location counts.
#[test]
fn output_through_symlink_into_input_refused() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    write_small(&input, &[("w".into(), vec![1], vec![1.0])], Dtype::F32, &[]).unwrap();
    std::os::unix::fs::symlink(&input, d.path().join("link")).unwrap();
    let o = WriterOptions {
        inputs: vec![input.clone()],
        ..opts()
    };
    let t = vec![out_tensor("w", Dtype::F32, &[1])];
    let e = Writer::create(&d.path().join("link/merged"), t.clone(), &o)
        .err()
        .unwrap();
    assert_names(&e, &["inside input"]);
    // And the other way round: the input given through the link.
    let o = WriterOptions {
        inputs: vec![d.path().join("link")],
        ..opts()
    };
    let e = Writer::create(&input.join("merged"), t, &o).err().unwrap();
    assert_names(&e, &["inside input"]);
    assert_eq!(listing(&input), vec![PathBuf::from(SINGLE_FILE)]);
}

// ------------------------------------------ output folders that cannot be

/// `Writer::create` must fail with `CannotCreate` for `out`, naming `out`
/// and never the scratch folder, and leave `dir` as it was.
fn cannot_create(dir: &Path, out: &Path) -> String {
    let before = listing(dir);
    let e = match Writer::create(out, vec![out_tensor("w", Dtype::F32, &[2])], &opts()) {
        Ok(_) => panic!("{} created but should not be", out.display()),
        Err(e) => e,
    };
    assert!(
        matches!(&e, ModelError::CannotCreate { path, .. } if path == out),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot create {}: ", out.display())),
        "{msg}"
    );
    assert!(
        !msg.contains(".partial-"),
        "names the scratch folder: {msg}"
    );
    assert_eq!(listing(dir), before, "left files behind");
    msg
}

#[test]
fn output_under_missing_parent_names_that_parent() {
    let d = tempfile::tempdir().unwrap();
    let nope = d.path().join("nope");
    let msg = cannot_create(d.path(), &nope.join("out"));
    assert!(
        msg.ends_with(&format!(
            "its parent folder {} does not exist",
            nope.display()
        )),
        "{msg}"
    );
    // Not created on the way.
    assert!(!nope.exists());

    // A parent that is a file.
    let file = d.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let msg = cannot_create(d.path(), &file.join("out"));
    assert!(msg.contains("is not a folder"), "{msg}");
}

/// A read-only parent. Root writes into it anyway, so a probe decides
/// which behaviour to expect, and the test says which one it checked.
#[test]
fn output_in_read_only_parent_names_that_parent() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = ro.join("probe");
    let writable = std::fs::create_dir(&probe).is_ok();
    let out = ro.join("out");
    if writable {
        std::fs::remove_dir(&probe).unwrap();
        eprintln!(
            "output_in_read_only_parent: a mode 555 folder is writable here (running as root), \
             so this checks that the output is written there"
        );
        let w = Writer::create(&out, vec![out_tensor("w", Dtype::F32, &[2])], &opts()).unwrap();
        w.write_f32(0, 0, &[1.0, 2.0]).unwrap();
        w.finish().unwrap();
        assert!(out.join(SINGLE_FILE).is_file());
    } else {
        eprintln!("output_in_read_only_parent: checking the refusal");
        let msg = cannot_create(d.path(), &out);
        assert!(
            msg.ends_with(&format!(
                "its parent {} is not writable (Permission denied)",
                ro.display()
            )),
            "{msg}"
        );
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A parent nobody can write to, root included: procfs refuses new
/// folders. Linux only; skipped (and said so) where there is no /proc.
#[test]
fn output_in_proc_names_proc() {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        eprintln!("output_in_proc: no /proc here; not checked");
        return;
    }
    let out = proc.join("smelt-test-out");
    let e = match Writer::create(&out, vec![out_tensor("w", Dtype::F32, &[2])], &opts()) {
        Ok(_) => panic!("created {}", out.display()),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot create /proc/smelt-test-out: its parent /proc is not writable ("),
        "{msg}"
    );
    assert!(!msg.contains(".partial-"), "{msg}");
}
