//! Properties every merge kernel must satisfy, over random inputs.

use proptest::prelude::*;
use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};

fn pm(pairs: &[(&str, f64)]) -> ParamMap {
    let mut m = ParamMap::default();
    for (k, v) in pairs {
        m.set(k, ParamValue::Float(*v));
    }
    m
}

/// Reasonable parameters for `method` with `n` models (model `i` gets
/// weight `weights[i]`).
fn params(method: Method, weights: &[f64], seed: u64) -> TensorParams {
    let mut global = ParamMap::default();
    match method {
        Method::Slerp => global.set("t", ParamValue::Float(0.3)),
        Method::Nearswap => global.set("t", ParamValue::Float(0.01)),
        Method::Sce => global.set("select_topk", ParamValue::Float(0.5)),
        _ => {}
    }
    let models = weights
        .iter()
        .map(|&w| {
            let mut m = pm(&[
                ("weight", w),
                ("density", 0.5),
                ("gamma", 0.05),
                ("epsilon", 0.1),
            ]);
            if method == Method::Passthrough {
                m = pm(&[("scale", 1.0)]);
            }
            m
        })
        .collect();
    TensorParams {
        tensor: "model.layers.0.mlp.up_proj.weight".into(),
        global,
        models,
        seed,
    }
}

fn has_base(m: Method) -> bool {
    !matches!(m, Method::Linear | Method::Karcher | Method::Passthrough)
}

fn model_count(m: Method, want: usize) -> usize {
    match m {
        Method::Slerp | Method::Nearswap | Method::Passthrough | Method::ArceeFusion => 1,
        Method::Nuslerp => 2,
        Method::ModelStock | Method::Multislerp => want.max(2),
        _ => want,
    }
}

fn methods() -> Vec<Method> {
    Method::all()
        .filter(|m| !matches!(m, Method::Zipit | Method::Permute))
        .collect()
}

fn run(
    method: Method,
    tp: &TensorParams,
    base: Option<&[f32]>,
    models: &[&[f32]],
    row_len: usize,
    chunk: usize,
) -> Vec<f32> {
    let numel = models[0].len();
    let mut k = merge::kernel(method, tp, numel, models.len()).expect("kernel");
    merge::merge_slices(k.as_mut(), base, models, row_len, chunk)
}

fn close(a: &[f32], b: &[f32], rtol: f32) -> Result<(), String> {
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > rtol * scale {
            return Err(format!("[{i}] {x} vs {y}"));
        }
    }
    Ok(())
}

/// A tensor of `rows x row_len` with heavy-tailed values and some exact
/// repeats (ties).
fn tensor(rows: usize, row_len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            4 => -1.0f32..1.0,
            1 => -10.0f32..10.0,
            1 => Just(0.25f32),
            1 => Just(-0.25f32),
        ],
        rows * row_len,
    )
}

fn inputs() -> impl Strategy<Value = (usize, Vec<f32>, Vec<Vec<f32>>)> {
    (1usize..6, 1usize..40).prop_flat_map(|(rows, row_len)| {
        (
            Just(row_len),
            tensor(rows, row_len),
            prop::collection::vec(tensor(rows, row_len), 3),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn linear_with_one_model_is_identity(x in tensor(3, 17), w in 0.1f64..5.0) {
        let tp = params(Method::Linear, &[w], 0);
        let out = run(Method::Linear, &tp, None, &[&x], 17, 10);
        prop_assert_eq!(out, x);
    }

    #[test]
    fn identical_inputs_return_that_model((row_len, x, _) in inputs()) {
        for method in methods() {
            let n = model_count(method, 3);
            let tp = params(method, &vec![0.7; n], 1);
            let models: Vec<&[f32]> = vec![&x; n];
            let base = has_base(method).then_some(x.as_slice());
            let out = run(method, &tp, base, &models, row_len, 7);
            prop_assert!(close(&out, &x, 1e-5).is_ok(), "{}: {:?}", method.name(), close(&out, &x, 1e-5));
        }
    }

    #[test]
    fn symmetric_methods_ignore_model_order((row_len, b, ms) in inputs()) {
        for method in [Method::Linear, Method::TaskArithmetic, Method::Ties, Method::Breadcrumbs,
                       Method::BreadcrumbsTies, Method::Sce, Method::Karcher, Method::ModelStock,
                       Method::Multislerp] {
            let w = [0.5, 0.3, 0.9];
            let fwd: Vec<&[f32]> = ms.iter().map(|m| m.as_slice()).collect();
            let rev: Vec<&[f32]> = ms.iter().rev().map(|m| m.as_slice()).collect();
            let wr: Vec<f64> = w.iter().rev().copied().collect();
            let base = has_base(method).then_some(b.as_slice());
            let a = run(method, &params(method, &w, 0), base, &fwd, row_len, 11);
            let r = run(method, &params(method, &wr, 0), base, &rev, row_len, 11);
            prop_assert!(close(&a, &r, 1e-5).is_ok(), "{}: {:?}", method.name(), close(&a, &r, 1e-5));
        }
    }

    #[test]
    fn slerp_endpoints((row_len, b, ms) in inputs()) {
        for (t, want) in [(0.0, &b), (1.0, &ms[0])] {
            let mut tp = params(Method::Slerp, &[1.0], 0);
            tp.global.set("t", ParamValue::Float(t));
            let out = run(Method::Slerp, &tp, Some(&b), &[&ms[0]], row_len, 13);
            prop_assert!(close(&out, want, 1e-5).is_ok(), "t={} {:?}", t, close(&out, want, 1e-5));
        }
    }

    #[test]
    fn ties_at_full_density_is_task_arithmetic((row_len, b, ms) in inputs(), w in -2.0f64..2.0, lambda in 0.1f64..2.0) {
        let mut ties = params(Method::Ties, &[w], 0);
        ties.models[0].set("density", ParamValue::Float(1.0));
        ties.global.set("normalize", ParamValue::Bool(false));
        ties.global.set("lambda", ParamValue::Float(lambda));
        let mut ta = params(Method::TaskArithmetic, &[w], 0);
        ta.global.set("lambda", ParamValue::Float(lambda));
        let a = run(Method::Ties, &ties, Some(&b), &[&ms[0]], row_len, 9);
        let c = run(Method::TaskArithmetic, &ta, Some(&b), &[&ms[0]], row_len, 9);
        prop_assert_eq!(a, c);
    }

    #[test]
    fn chunk_size_changes_nothing((row_len, b, ms) in inputs(), c1 in 1usize..64, c2 in 64usize..300, seed in any::<u64>()) {
        for method in methods() {
            let n = model_count(method, 3);
            let tp = params(method, &[0.5, 0.3, 0.9][..n.min(3)], seed);
            let models: Vec<&[f32]> = ms.iter().take(n).map(|m| m.as_slice()).collect();
            let base = has_base(method).then_some(b.as_slice());
            // DELLA ranks magnitudes within a row, which needs the row in
            // one chunk (documented); give it row-sized chunks or larger.
            let c1 = if matches!(method, Method::Della | Method::DellaLinear) { c1.max(row_len) } else { c1 };
            let x = run(method, &tp, base, &models, row_len, c1);
            let y = run(method, &tp, base, &models, row_len, c2);
            let xb: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
            let yb: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
            prop_assert!(xb == yb, "{} differs between chunk {} and {}", method.name(), c1, c2);
        }
    }
}

#[test]
fn zipit_and_permute_are_refused_with_a_message() {
    for m in [Method::Zipit, Method::Permute] {
        let err = merge::kernel(m, &TensorParams::default(), 10, 2)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("zip"), "{err}");
    }
}

#[test]
fn missing_required_parameter_names_the_tensor() {
    let tp = TensorParams {
        tensor: "lm_head.weight".into(),
        models: vec![ParamMap::default()],
        ..TensorParams::default()
    };
    let err = merge::kernel(Method::Linear, &tp, 4, 1)
        .err()
        .expect("weight is required");
    let msg = err.to_string();
    assert!(
        msg.contains("lm_head.weight") && msg.contains("weight"),
        "{msg}"
    );
}
