//! Headers as strict as the `safetensors` crate's: a header length a few
//! bytes short, gaps between tensors and bytes after the last one are
//! refused (they were read from the wrong offsets before); shapes torch
//! cannot hold are refused; the crate's newer dtypes open and are copied
//! through a merge; a FIFO is refused without blocking.

use smelt::model::{Dtype, Model, ModelError};
use std::path::{Path, PathBuf};

/// A safetensors file: the 8-byte length of `header` (unless `len` says
/// otherwise), `header`, `data`.
fn file_bytes(header: &str, len: Option<u64>, data: &[u8]) -> Vec<u8> {
    let mut bytes = len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Whether the `safetensors` crate accepts the file.
fn crate_accepts(bytes: &[u8]) -> bool {
    safetensors::SafeTensors::deserialize(bytes).is_ok()
}

fn open_err(p: &Path) -> ModelError {
    match Model::open(p) {
        Ok(m) => panic!("{} opened with {} tensors", p.display(), m.tensors().len()),
        Err(e) => e,
    }
}

fn assert_mentions(e: &ModelError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "`{msg}` should mention `{p}`");
    }
}

const TWO: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;

/// The header length 1-7 bytes short of the JSON's trailing padding: the
/// JSON still parses, but every tensor would be read from bytes too early.
/// Refused, as by the crate, and nothing of it opens.
#[test]
fn header_length_a_few_bytes_short_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let padded = format!("{TWO}{}", " ".repeat(8 + (8 - TWO.len() % 8) % 8));
    let data: Vec<u8> = (0..12).collect();
    let good = file_bytes(&padded, None, &data);
    assert!(crate_accepts(&good));
    let m = Model::open(&write(d.path(), "good.safetensors", &good)).unwrap();
    assert_eq!(m.raw(m.tensor("b").unwrap()), &data[8..12]);
    for k in 1..=7u64 {
        let bytes = file_bytes(&padded, Some(padded.len() as u64 - k), &data);
        assert!(!crate_accepts(&bytes), "k = {k}");
        let p = write(d.path(), "short.safetensors", &bytes);
        let e = open_err(&p);
        assert!(matches!(e, ModelError::Format { .. }), "k = {k}: {e:?}");
        assert_mentions(
            &e,
            &[
                "short.safetensors",
                &format!("{k} bytes after the last tensor"),
                "header length",
            ],
        );
    }
}

/// The same on a real checkpoint (the mergekit fixture's base model): its
/// header ends in 6 spaces of padding.
#[test]
fn fixture_with_a_short_header_length_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mergekit/models/base/model.safetensors");
    let bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    for k in 1..=6u64 {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&(n - k).to_le_bytes());
        assert!(!crate_accepts(&b));
        let e = open_err(&write(d.path(), "model.safetensors", &b));
        assert_mentions(&e, &["model.safetensors", "bytes after the last tensor"]);
    }
}

#[test]
fn gaps_and_trailing_bytes_are_refused() {
    let d = tempfile::tempdir().unwrap();
    // A gap between `a` and `b`: named at `b`.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#;
    let bytes = file_bytes(h, None, &[0; 16]);
    assert!(!crate_accepts(&bytes));
    let e = open_err(&write(d.path(), "gap.safetensors", &bytes));
    assert!(
        matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "b"),
        "{e:?}"
    );
    assert_mentions(&e, &["gap.safetensors", "gap", "8..12", "after tensor `a`"]);

    // Data that does not start at the data section's first byte.
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let bytes = file_bytes(h, None, &[0; 8]);
    assert!(!crate_accepts(&bytes));
    let e = open_err(&write(d.path(), "late.safetensors", &bytes));
    assert_mentions(&e, &["late.safetensors", "`a`", "gap", "start"]);

    // Bytes after the last tensor.
    let bytes = file_bytes(TWO, None, &[0; 15]);
    assert!(!crate_accepts(&bytes));
    let e = open_err(&write(d.path(), "tail.safetensors", &bytes));
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert_mentions(&e, &["tail.safetensors", "3 bytes after the last tensor"]);

    // An empty tensor inside another one's bytes.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#;
    let bytes = file_bytes(h, None, &[0; 8]);
    assert!(!crate_accepts(&bytes));
    let e = open_err(&write(d.path(), "inside.safetensors", &bytes));
    assert_mentions(&e, &["inside.safetensors", "`e`", "overlaps tensor `a`"]);
}

/// What the crate accepts that smelt used to refuse: `__metadata__: null`
/// and an entry written as an array of its fields.
#[test]
fn what_the_crate_accepts_opens() {
    let d = tempfile::tempdir().unwrap();
    let h = r#"{"__metadata__":null,"a":["F32",[1],[0,4]]}"#;
    let bytes = file_bytes(h, None, &1f32.to_le_bytes());
    assert!(crate_accepts(&bytes));
    let m = Model::open(&write(d.path(), "m.safetensors", &bytes)).unwrap();
    assert_eq!(m.read_all_f32("a").unwrap(), [1.0]);
    assert!(m.metadata().is_empty());
}

/// `[0, 18446744073709551615]` has no elements, so the crate lets it
/// through, but torch cannot make it: refused, naming the tensor.
#[test]
fn shapes_torch_cannot_hold_are_refused() {
    let d = tempfile::tempdir().unwrap();
    for (shape, why) in [
        (
            "[0, 18446744073709551615]",
            "dimension 18446744073709551615",
        ),
        ("[9223372036854775808, 0]", "dimension 9223372036854775808"),
        ("[0, 4294967296, 4294967296]", "more elements"),
        ("[3037000500, 0, 3037000500]", "more elements"),
    ] {
        let h = format!(
            r#"{{"ok":{{"dtype":"U8","shape":[1],"data_offsets":[0,1]}},"huge":{{"dtype":"F32","shape":{shape},"data_offsets":[1,1]}}}}"#
        );
        let bytes = file_bytes(&h, None, &[7]);
        assert!(crate_accepts(&bytes), "{shape}");
        let e = open_err(&write(d.path(), "m.safetensors", &bytes));
        assert!(
            matches!(&e, ModelError::Tensor { tensor, .. } if tensor == "huge"),
            "{shape}: {e:?}"
        );
        assert_mentions(&e, &["m.safetensors", "torch", why]);
    }
    // The largest dimension torch allows, with no elements, is fine.
    let h = r#"{"e":{"dtype":"F32","shape":[9223372036854775807, 0],"data_offsets":[0,0]}}"#;
    let m = Model::open(&write(d.path(), "m.safetensors", &file_bytes(h, None, &[]))).unwrap();
    assert_eq!(m.tensor("e").unwrap().numel(), 0);
}

/// Two models, each with an f32 weight and tensors of the crate's newer
/// types: F8_E8M0 (MX scales), F4 (packed two to a byte), F6_E3M2.
fn newer_dtypes_model(dir: &Path, name: &str, k: f32) -> PathBuf {
    let w: Vec<u8> = [1.0f32 * k, 2.0 * k, 3.0 * k, 4.0 * k]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let scales = [127u8, 128, 126, 1];
    let packed = [0x12u8, 0x34, 0x56];
    let six = [0xabu8, 0xcd, 0xef];
    let h = r#"{"model.layers.0.mlp.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"model.layers.0.mlp.scales":{"dtype":"F8_E8M0","shape":[4],"data_offsets":[16,20]},"model.layers.0.mlp.packed":{"dtype":"F4","shape":[2,3],"data_offsets":[20,23]},"model.layers.0.mlp.six":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[23,26]}}"#;
    let mut data = w;
    data.extend_from_slice(&scales);
    data.extend_from_slice(&packed);
    data.extend_from_slice(&six);
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let bytes = file_bytes(h, None, &data);
    assert!(crate_accepts(&bytes));
    write(&folder, "model.safetensors", &bytes);
    folder
}

#[test]
fn newer_dtypes_are_copied_through_a_merge() {
    use smelt::engine::{self, Options};
    use smelt::plan::Plan;
    use smelt::recipe::Recipe;
    let d = tempfile::tempdir().unwrap();
    let a = newer_dtypes_model(d.path(), "a", 1.0);
    let b = newer_dtypes_model(d.path(), "b", 3.0);
    let ma = Model::open(&a).unwrap();
    let packed = ma.tensor("model.layers.0.mlp.packed").unwrap();
    assert_eq!(packed.dtype.name(), "F4");
    assert_eq!(packed.nbytes(), 3);
    // Arithmetic on them is refused, naming the tensor and its dtype.
    let e = ma
        .read_all_f32("model.layers.0.mlp.scales")
        .expect_err("F8_E8M0 is not converted");
    assert_mentions(&e, &["model.layers.0.mlp.scales", "F8_E8M0"]);

    let recipe = Recipe::for_models(vec![a.clone(), b], None);
    let plan = Plan::build(&recipe).expect("plan");
    let out = d.path().join("out");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    engine::run(&plan, &Options::new(&out), &tx, &cancel).expect("merge");
    let m = Model::open(&out).unwrap();
    for name in [
        "model.layers.0.mlp.scales",
        "model.layers.0.mlp.packed",
        "model.layers.0.mlp.six",
    ] {
        let (t, src) = (m.tensor(name).unwrap(), ma.tensor(name).unwrap());
        assert_eq!((t.dtype, &t.shape), (src.dtype, &src.shape), "{name}");
        assert_eq!(m.raw(t), ma.raw(src), "{name}");
    }
    // The weights were merged (the mean of 1x and 3x).
    assert_eq!(
        m.read_all_f32("model.layers.0.mlp.weight").unwrap(),
        [2.0, 4.0, 6.0, 8.0]
    );
    let f4 = Dtype::from(safetensors::Dtype::F4);
    assert_eq!(m.tensor("model.layers.0.mlp.packed").unwrap().dtype, f4);
}

// ------------------------------------------------------------------ FIFOs

fn mkfifo(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", p.display());
}

/// Run `open` against a setup holding the FIFO `fifo`, and return its
/// error. A helper thread opens the FIFO for writing (which waits for a
/// reader): should `open` open the FIFO after all, it gets a writer and
/// then end of file, and fails with another message instead of blocking
/// the test forever. Once `open` is done, this side opens the FIFO for
/// reading itself, which releases the helper.
fn refused_without_blocking(
    fifo: &Path,
    open: impl FnOnce() -> smelt::model::Result<Model>,
) -> String {
    std::thread::scope(|s| {
        let helper = s.spawn(|| {
            let _w = std::fs::OpenOptions::new().write(true).open(fifo);
        });
        let result = open();
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Held until the helper has opened and closed its end.
            let _r = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo)
                .unwrap();
            helper.join().unwrap();
        }
        match result {
            Ok(_) => panic!("a model with the FIFO {} opened", fifo.display()),
            Err(e) => e.to_string(),
        }
    })
}

#[test]
fn fifos_are_refused_before_they_are_opened() {
    let d = tempfile::tempdir().unwrap();
    let good = file_bytes(TWO, None, &[0; 12]);

    // Given as the model.
    let fifo = d.path().join("pipe.safetensors");
    mkfifo(&fifo);
    let e = refused_without_blocking(&fifo, || Model::open(&fifo));
    assert!(
        e.contains("pipe.safetensors") && e.contains("named pipe"),
        "{e}"
    );

    // As a folder's model.safetensors.
    let folder = d.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let fifo = folder.join("model.safetensors");
    mkfifo(&fifo);
    let e = refused_without_blocking(&fifo, || Model::open(&folder));
    assert!(
        e.contains("model.safetensors") && e.contains("named pipe"),
        "{e}"
    );

    // As the config.json beside good weights.
    let folder = d.path().join("config");
    std::fs::create_dir(&folder).unwrap();
    write(&folder, "model.safetensors", &good);
    let fifo = folder.join("config.json");
    mkfifo(&fifo);
    let e = refused_without_blocking(&fifo, || Model::open(&folder));
    assert!(e.contains("config.json") && e.contains("named pipe"), "{e}");

    // As a shard named by the index.
    let folder = d.path().join("sharded");
    std::fs::create_dir(&folder).unwrap();
    write(&folder, "s1.safetensors", &good);
    std::fs::write(
        folder.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}}"#,
    )
    .unwrap();
    let fifo = folder.join("s2.safetensors");
    mkfifo(&fifo);
    let e = refused_without_blocking(&fifo, || Model::open(&folder));
    assert!(
        e.contains("s2.safetensors") && e.contains("named pipe"),
        "{e}"
    );

    // As the index itself.
    let folder = d.path().join("index");
    std::fs::create_dir(&folder).unwrap();
    let fifo = folder.join("model.safetensors.index.json");
    mkfifo(&fifo);
    let e = refused_without_blocking(&fifo, || Model::open(&folder));
    assert!(e.contains("index.json") && e.contains("named pipe"), "{e}");
}
