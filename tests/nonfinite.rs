//! NaN and infinite input values: one rule for every method, applied where
//! the engine reads its inputs.
//!
//! By default a non-finite input value stops the merge with an error naming
//! the model, the tensor and how many values are not finite, and nothing is
//! written. With `allow_nonfinite` they pass through position by position:
//! the output is non-finite exactly where some input is (taking the first
//! non-finite input value, base first), and every other position equals,
//! bit for bit, the merge of the same inputs with those positions set to
//! zero in every input. ZipIt!/permute refuse them always.

use smelt::engine::{self, EngineError, Options};
use smelt::merge::{BaseRule, Method};
use smelt::model::{write_small, Dtype, Model};
use smelt::plan::Plan;
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The tensor that holds the non-finite values, and one that has none.
const BAD: &str = "model.layers.0.mlp.up_proj.weight";
const GOOD: &str = "model.norm.weight";
const SHAPE: [usize; 2] = [6, 16];

/// Input `k` (0 base, 1 ft0, 2 ft1): two tensors of varied values.
fn values(k: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + k * 104_729) % 1000) as f32 / 500.0 - 1.0) * (1.0 + k as f32 * 0.1))
        .collect()
}

/// The non-finite values planted in input `k`'s `BAD` tensor.
fn planted(k: usize) -> Vec<(usize, f32)> {
    match k {
        // base: conflicts with ft0 at 17 (the base's value wins).
        0 => vec![(17, f32::NAN), (55, f32::INFINITY)],
        // ft0: NaN at 3, where ft1 has -Inf (ft0's wins).
        1 => vec![(3, f32::NAN), (17, f32::INFINITY), (40, f32::NEG_INFINITY)],
        _ => vec![(3, f32::NEG_INFINITY), (90, f32::NAN)],
    }
}

/// Write the three inputs under `dir/prefix*`; `zero` (sorted flat
/// indices) are set to 0 in every `BAD` tensor, and with `plant` the
/// non-finite values go in.
fn write_inputs(
    dir: &Path,
    prefix: &str,
    dtype: Dtype,
    plant: bool,
    zero: &[usize],
) -> Vec<PathBuf> {
    let n: usize = SHAPE.iter().product();
    (0..3)
        .map(|k| {
            let mut bad = values(k, n);
            if plant {
                for (i, v) in planted(k) {
                    bad[i] = v;
                }
            }
            for &i in zero {
                bad[i] = 0.0;
            }
            let p = dir.join(format!("{prefix}{k}"));
            std::fs::create_dir_all(&p).expect("mkdir");
            write_small(
                &p.join("model.safetensors"),
                &[
                    (BAD.to_string(), SHAPE.to_vec(), bad),
                    (GOOD.to_string(), vec![16], values(k + 3, 16)),
                ],
                dtype,
                &[],
            )
            .expect("write model");
            p
        })
        .collect()
}

/// A recipe of `method` over `paths` (base first), with every required
/// parameter set; which inputs it uses (indices into `paths`).
fn recipe(method: Method, paths: &[PathBuf]) -> (Recipe, Vec<usize>) {
    let spec = method.spec();
    let max = spec.max_models.unwrap_or(2).min(2);
    let with_base = spec.base != BaseRule::None;
    let used: Vec<usize> = if with_base {
        (0..=max).collect()
    } else {
        (1..=max).collect()
    };
    let base = with_base.then(|| paths[0].clone());
    let models = used
        .iter()
        .filter(|&&k| !(with_base && k == 0))
        .map(|&k| paths[k].clone())
        .collect();
    let mut r = Recipe::new(method, base, models);
    let num = |x: f64| Value::Number(x);
    for (i, m) in r.models.iter_mut().enumerate() {
        let names: Vec<&str> = spec.per_model.iter().map(|p| p.name).collect();
        if names.contains(&"weight") {
            m.params.insert("weight".into(), num(1.0 - 0.3 * i as f64));
        }
        if names.contains(&"density") {
            m.params.insert("density".into(), num(0.5));
        }
        if names.contains(&"gamma") {
            m.params.insert("gamma".into(), num(0.1));
        }
        if names.contains(&"epsilon") {
            m.params.insert("epsilon".into(), num(0.2));
        }
    }
    match method {
        Method::Slerp | Method::Nearswap => {
            r.params.insert("t".into(), num(0.3));
        }
        Method::Sce => {
            r.params.insert("select_topk".into(), num(0.5));
        }
        _ => {}
    }
    (r, used)
}

/// Every per-tensor method.
fn methods() -> Vec<Method> {
    Method::all()
        .filter(|m| !matches!(m, Method::Zipit | Method::Permute))
        .collect()
}

fn merge(r: &Recipe, out: &Path, allow: bool) -> Result<engine::Summary, EngineError> {
    let plan = Plan::build(r).unwrap_or_else(|e| panic!("{}: plan: {e}", r.method.name()));
    let mut opts = Options::new(out);
    opts.threads = Some(1);
    opts.sync = false;
    opts.allow_nonfinite = allow;
    let (tx, _rx) = crossbeam_channel::unbounded();
    engine::run(&plan, &opts, &tx, &AtomicBool::new(false))
}

fn read(out: &Path, name: &str) -> Vec<f32> {
    Model::open(out)
        .expect("open output")
        .read_all_f32(name)
        .expect("read output")
}

#[test]
fn nonfinite_inputs_are_refused_naming_model_tensor_and_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = write_inputs(dir.path(), "in", Dtype::F32, true, &[]);
    for method in methods() {
        let (r, used) = recipe(method, &paths);
        let out = dir.path().join(format!("out-{}", method.name()));
        let err = merge(&r, &out, false).expect_err(method.name());
        // The first input (base first) with non-finite values.
        let k = used[0];
        let want_nan = planted(k).iter().filter(|(_, v)| v.is_nan()).count();
        let want_inf = planted(k).len() - want_nan;
        match &err {
            EngineError::NonFinite {
                model,
                tensor,
                nan,
                inf,
                numel,
                ..
            } => {
                assert_eq!(model, &paths[k], "{}", method.name());
                assert_eq!(tensor, BAD, "{}", method.name());
                assert_eq!(
                    (*nan, *inf, *numel),
                    (want_nan, want_inf, 96),
                    "{}",
                    method.name()
                );
            }
            other => panic!("{}: {other:?}", method.name()),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("{} of 96 values not finite", want_nan + want_inf))
                && text.contains(BAD)
                && text.contains(&paths[k].display().to_string())
                && text.contains("--allow-nonfinite"),
            "{text}"
        );
        assert!(!out.exists(), "{}: an output was left", method.name());
    }
}

/// The pass-through property for every method, on `dtype` inputs.
fn passes_through(dtype: Dtype, methods: &[Method]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = write_inputs(dir.path(), "in", dtype, true, &[]);
    for &method in methods {
        let (r, used) = recipe(method, &paths);
        // Where some used input is not finite, and the value that wins.
        let mut expect: Vec<(usize, f32)> = Vec::new();
        for &k in &used {
            for (i, v) in planted(k) {
                if !expect.iter().any(|(j, _)| *j == i) {
                    expect.push((i, v));
                }
            }
        }
        expect.sort_by_key(|(i, _)| *i);
        let zero: Vec<usize> = expect.iter().map(|(i, _)| *i).collect();
        let zpaths = write_inputs(
            dir.path(),
            &format!("zero-{}-", method.name()),
            dtype,
            false,
            &zero,
        );
        let (zr, _) = recipe(method, &zpaths);

        let out = dir.path().join(format!("out-{}", method.name()));
        let zout = dir.path().join(format!("zout-{}", method.name()));
        merge(&r, &out, true).unwrap_or_else(|e| panic!("{}: {e}", method.name()));
        merge(&zr, &zout, false).unwrap_or_else(|e| panic!("{}: {e}", method.name()));

        let got = read(&out, BAD);
        let reference = read(&zout, BAD);
        for (i, (&g, &z)) in got.iter().zip(&reference).enumerate() {
            match expect.iter().find(|(j, _)| *j == i) {
                Some(&(_, v)) => assert_eq!(
                    g.to_bits(),
                    v.to_bits(),
                    "{}: position {i} should pass {v} through, got {g}",
                    method.name()
                ),
                None => assert_eq!(
                    g.to_bits(),
                    z.to_bits(),
                    "{}: position {i}: {g} differs from the merge with the non-finite positions zeroed ({z})",
                    method.name()
                ),
            }
        }
        let nonfinite = got.iter().filter(|v| !v.is_finite()).count();
        assert_eq!(nonfinite, expect.len(), "{}", method.name());
        assert_eq!(
            read(&out, GOOD)
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            read(&zout, GOOD)
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            "{}",
            method.name()
        );
    }
}

#[test]
fn allowed_nonfinite_values_pass_through_position_by_position() {
    passes_through(Dtype::F32, &methods());
}

#[test]
fn allowed_nonfinite_bf16_values_pass_through_on_the_bit_pattern_path() {
    // The TIES family reads bf16 bit patterns directly.
    passes_through(
        Dtype::BF16,
        &[
            Method::Ties,
            Method::DareTies,
            Method::Della,
            Method::Linear,
        ],
    );
}

/// Two small MLPs; `poison` changes one weight of the second.
fn mlps(dir: &Path, poison: f32) -> Vec<PathBuf> {
    use smelt::mlp::{init_layer, Head, MlpModel, Rng};
    (0..2u64)
        .map(|seed| {
            let mut rng = Rng::new(seed + 1);
            let mut layers = vec![init_layer(64, 8, &mut rng), init_layer(8, 10, &mut rng)];
            if seed == 1 {
                layers[0].weight.iter_mut().for_each(|w| *w *= poison);
            }
            let m = MlpModel {
                input_scale: 1.0,
                trunk: Vec::new(),
                heads: vec![Head {
                    classes: (0..10).collect(),
                    layers,
                }],
            };
            let p = dir.join(format!("mlp-{poison}-{seed}"));
            m.save(&p, false).expect("save");
            p
        })
        .collect()
}

#[test]
fn zip_methods_refuse_nonfinite_weights_with_or_without_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    for poison in [f32::NAN, f32::INFINITY] {
        let paths = mlps(dir.path(), poison);
        for method in [Method::Zipit, Method::Permute] {
            // Planning (which `recipe check` and every merge run) refuses
            // them, naming model and tensor; the flag is not consulted.
            let r = Recipe::new(method, None, paths.clone());
            let err = Plan::build(&r)
                .err()
                .expect("non-finite weights are refused");
            let text = err.to_string();
            assert!(
                text.contains(&paths[1].display().to_string())
                    && text.contains("layers.0.weight")
                    && text.contains("NaN or infinite"),
                "{text}"
            );
        }
    }
}
