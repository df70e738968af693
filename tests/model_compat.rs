//! `Model::check_compatible`: models that merge pass; the first tensor
//! that does not fit (in the models' stable order: group, then name) is
//! named with what is wrong with it.

use smelt::model::{
    write_small, Dtype, Incompatible, Mismatch, Model, OutputTensor, Writer, WriterOptions,
};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Model {
    Model::open(&root().join("tests/fixtures/mergekit/models").join(name)).expect("fixture")
}

/// A model of `(name, shape)` tensors, all F32 (or `dtype`), in `dir/name`.
fn small(dir: &Path, name: &str, tensors: &[(&str, &[usize])], dtype: Dtype) -> Model {
    let t: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_vec(), vec![0.5; s.iter().product()]))
        .collect();
    let p = dir.join(name);
    write_small(&p, &t, dtype, &[]).expect("write");
    Model::open(&p).expect("open")
}

fn mismatch(a: &Model, b: &Model) -> Incompatible {
    match a.check_compatible(b) {
        Ok(()) => panic!(
            "{} and {} should not fit",
            a.path().display(),
            b.path().display()
        ),
        Err(e) => e,
    }
}

#[test]
fn a_family_fits_both_ways() {
    let base = fixture("base");
    for ft in ["ft0", "ft1", "ft2"] {
        let m = fixture(ft);
        assert_eq!(base.check_compatible(&m), Ok(()), "{ft}");
        assert_eq!(m.check_compatible(&base), Ok(()), "{ft}");
    }
    assert_eq!(base.check_compatible(&base), Ok(()));
}

#[test]
fn another_family_is_refused_at_its_first_tensor() {
    let base = fixture("base");
    let other_path = root().join("sample_models/llama-synthetic/base");
    let other = Model::open(&other_path).expect("sample model");
    let e = mismatch(&base, &other);
    assert_eq!(e.tensor, "model.embed_tokens.weight");
    assert_eq!(
        e.mismatch,
        Mismatch::Shape {
            model: vec![96, 64],
            other: vec![256, 64]
        }
    );
    assert_eq!(
        (e.model.as_path(), e.other.as_path()),
        (base.path(), other.path())
    );
    let msg = e.to_string();
    for part in [
        "fixtures/mergekit/models/base does not fit",
        "llama-synthetic/base:",
        "model.embed_tokens.weight",
        "[96, 64]",
        "[256, 64]",
    ] {
        assert!(msg.contains(part), "`{msg}` should mention `{part}`");
    }
    // The other way round, the shapes swap.
    let e = mismatch(&other, &base);
    assert_eq!(
        e.mismatch,
        Mismatch::Shape {
            model: vec![256, 64],
            other: vec![96, 64]
        }
    );
}

#[test]
fn float_types_may_differ() {
    let d = tempfile::tempdir().expect("tempdir");
    let t: &[(&str, &[usize])] = &[("model.layers.0.w", &[2, 3]), ("lm_head.weight", &[3])];
    let a = small(d.path(), "a", t, Dtype::F32);
    let b = small(d.path(), "b", t, Dtype::BF16);
    assert_eq!(a.check_compatible(&b), Ok(()));
}

/// The first mismatch is by group (embeddings, layers by number, head),
/// then name: not by plain name, where `lm_head` and `model.layers.10`
/// would come before `model.layers.2`.
#[test]
fn first_mismatch_in_stable_order() {
    let d = tempfile::tempdir().expect("tempdir");
    let a = small(
        d.path(),
        "a",
        &[
            ("model.embed_tokens.weight", &[4, 2]),
            ("model.layers.2.w", &[2, 2]),
            ("model.layers.10.w", &[2, 2]),
            ("lm_head.weight", &[2, 4]),
        ],
        Dtype::F32,
    );
    let b = small(
        d.path(),
        "b",
        &[
            ("model.embed_tokens.weight", &[4, 2]),
            ("model.layers.2.w", &[2, 3]),
            ("model.layers.10.w", &[3, 2]),
        ],
        Dtype::F32,
    );
    let e = mismatch(&a, &b);
    assert_eq!(e.tensor, "model.layers.2.w");
    assert_eq!(
        e.mismatch,
        Mismatch::Shape {
            model: vec![2, 2],
            other: vec![2, 3]
        }
    );

    // Only the head differs: missing from one side, named as such.
    let c = small(
        d.path(),
        "c",
        &[
            ("model.embed_tokens.weight", &[4, 2]),
            ("model.layers.2.w", &[2, 2]),
            ("model.layers.10.w", &[2, 2]),
        ],
        Dtype::F32,
    );
    let e = mismatch(&a, &c);
    assert_eq!(
        (e.tensor.as_str(), &e.mismatch),
        ("lm_head.weight", &Mismatch::MissingFromOther)
    );
    assert!(
        e.to_string().ends_with(&format!(
            "tensor `lm_head.weight` is in {} but not in {}",
            a.path().display(),
            c.path().display()
        )),
        "{e}"
    );
    let e = mismatch(&c, &a);
    assert_eq!(
        (e.tensor.as_str(), &e.mismatch),
        ("lm_head.weight", &Mismatch::MissingFromModel)
    );

    // A missing layer tensor comes before a head tensor's shape.
    let f = small(
        d.path(),
        "f",
        &[
            ("model.embed_tokens.weight", &[4, 2]),
            ("model.layers.2.w", &[2, 2]),
            ("lm_head.weight", &[9]),
        ],
        Dtype::F32,
    );
    let e = mismatch(&a, &f);
    assert_eq!(
        (e.tensor.as_str(), &e.mismatch),
        ("model.layers.10.w", &Mismatch::MissingFromOther)
    );
}

/// A model with one tensor `w` of `dtype` (raw zero bytes).
fn raw_model(dir: &Path, name: &str, dtype: Dtype) -> Model {
    let out: PathBuf = dir.join(name);
    let t = OutputTensor {
        name: "w".into(),
        dtype,
        shape: vec![4],
    };
    let opts = WriterOptions {
        sync: false,
        ..WriterOptions::default()
    };
    let w = Writer::create(&out, vec![t], &opts).expect("create");
    w.write_raw(0, 0, &vec![0u8; 4 * dtype.size()])
        .expect("write");
    w.finish().expect("finish");
    Model::open(&out).expect("open")
}

#[test]
fn float_against_integer_is_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = raw_model(d.path(), "f", Dtype::F32);
    let i = raw_model(d.path(), "i", Dtype::I64);
    let e = mismatch(&f, &i);
    assert_eq!(
        e.mismatch,
        Mismatch::Dtype {
            model: Dtype::F32,
            other: Dtype::I64
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`w`") && msg.contains("F32") && msg.contains("I64"),
        "{msg}"
    );
    // Two integer types: both are copied, not merged, so they fit.
    let j = raw_model(d.path(), "j", Dtype::I32);
    assert_eq!(i.check_compatible(&j), Ok(()));
}
