//! Per-row and per-column variants (nuslerp without flattening,
//! model_stock `filter_wise`) against the flat method applied to each row
//! (or column) on its own, at chunk sizes that split rows.

use proptest::prelude::*;
use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};

fn params(global: &[(&str, bool)], weights: &[f64]) -> TensorParams {
    let mut g = ParamMap::default();
    for (k, v) in global {
        g.set(k, ParamValue::Bool(*v));
    }
    TensorParams {
        tensor: "w".into(),
        global: g,
        models: weights
            .iter()
            .map(|&w| {
                let mut m = ParamMap::default();
                m.set("weight", ParamValue::Float(w));
                m
            })
            .collect(),
        seed: 0,
    }
}

fn run(
    method: Method,
    tp: &TensorParams,
    base: &[f32],
    models: &[&[f32]],
    row_len: usize,
    chunk: usize,
) -> Vec<f32> {
    let mut k = merge::kernel(method, tp, base.len(), models.len()).expect("kernel");
    merge::merge_slices(k.as_mut(), Some(base), models, row_len, chunk)
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
}

fn matrix() -> impl Strategy<Value = (usize, usize, Vec<Vec<f32>>)> {
    (1usize..6, 2usize..12).prop_flat_map(|(r, c)| {
        (
            Just(r),
            Just(c),
            prop::collection::vec(prop::collection::vec(-1.0f32..1.0, r * c), 4),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn per_row_methods_equal_the_flat_method_per_row((rows, cols, v) in matrix(), chunk in 1usize..30) {
        let (base, ms) = (&v[0], &v[1..]);
        for (method, per_row, flat, n) in [
            (Method::Nuslerp, params(&[("nuslerp_flatten", false)], &[0.7, 0.3]),
             params(&[], &[0.7, 0.3]), 2),
            (Method::ModelStock, params(&[("filter_wise", true)], &[1.0; 3]),
             params(&[], &[1.0; 3]), 3),
        ] {
            let models: Vec<&[f32]> = ms.iter().take(n).map(|m| m.as_slice()).collect();
            let got = run(method, &per_row, base, &models, cols, chunk);
            let mut want = Vec::new();
            for r in 0..rows {
                let sl: Vec<&[f32]> = models.iter().map(|m| &m[r * cols..(r + 1) * cols]).collect();
                want.extend(run(method, &flat, &base[r * cols..(r + 1) * cols], &sl, cols, cols));
            }
            prop_assert!(close(&got, &want), "{} chunk {}", method.name(), chunk);
        }
    }

    #[test]
    fn nuslerp_row_wise_works_on_columns((rows, cols, v) in matrix(), chunk in 1usize..30) {
        // a single row has the row length of a 1-D tensor, which is one vector
        prop_assume!(rows > 1);
        let (base, ms) = (&v[0], &v[1..3]);
        let tp = params(&[("nuslerp_flatten", false), ("nuslerp_row_wise", true)], &[0.4, 0.6]);
        let models: Vec<&[f32]> = ms.iter().map(|m| m.as_slice()).collect();
        let got = run(Method::Nuslerp, &tp, base, &models, cols, chunk);
        // reference: transpose, interpolate rows, transpose back
        let rows_tp = params(&[("nuslerp_flatten", false)], &[0.4, 0.6]);
        let bt = transpose(base, rows, cols);
        let mt: Vec<Vec<f32>> = ms.iter().map(|m| transpose(m, rows, cols)).collect();
        let mtr: Vec<&[f32]> = mt.iter().map(|m| m.as_slice()).collect();
        let want = transpose(&run(Method::Nuslerp, &rows_tp, &bt, &mtr, rows, rows), cols, rows);
        prop_assert!(close(&got, &want));
    }
}

#[test]
fn nuslerp_row_wise_on_a_vector_uses_the_whole_vector() {
    let base: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
    let a: Vec<f32> = (0..50).map(|i| (i as f32 * 0.11).cos()).collect();
    let b: Vec<f32> = (0..50).map(|i| (i as f32 * 0.23).sin() * 2.0).collect();
    let rw = params(
        &[("nuslerp_flatten", false), ("nuslerp_row_wise", true)],
        &[0.4, 0.6],
    );
    let flat = params(&[], &[0.4, 0.6]);
    let got = run(Method::Nuslerp, &rw, &base, &[&a, &b], 50, 7);
    let want = run(Method::Nuslerp, &flat, &base, &[&a, &b], 50, 50);
    assert!(close(&got, &want));
}
