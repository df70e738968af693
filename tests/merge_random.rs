//! Statistics of the randomised methods (DARE, DELLA): mergekit's draws come
//! from torch's RNG, so these are checked by their distribution, sign rules
//! and reproducibility rather than element by element.

use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};
use smelt::mlp::Rng;

const N: usize = 200_000;

/// A task vector with no zeros: magnitudes spread over (0.01, 1].
fn task_vector(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..N)
        .map(|_| {
            let v = rng.range_f32(-1.0, 1.0);
            if v.abs() < 0.01 {
                0.5
            } else {
                v
            }
        })
        .collect()
}

fn tp(models: &[(f64, f64)], global: &[(&str, ParamValue)], seed: u64) -> TensorParams {
    let mut g = ParamMap::default();
    for (k, v) in global {
        g.set(k, *v);
    }
    TensorParams {
        tensor: "model.layers.3.self_attn.q_proj.weight".into(),
        global: g,
        models: models
            .iter()
            .map(|&(w, d)| {
                let mut m = ParamMap::default();
                m.set("weight", ParamValue::Float(w));
                m.set("density", ParamValue::Float(d));
                m.set("epsilon", ParamValue::Float(0.15));
                m
            })
            .collect(),
        seed,
    }
}

fn merge(
    method: Method,
    p: &TensorParams,
    base: &[f32],
    models: &[&[f32]],
    row_len: usize,
) -> Vec<f32> {
    let mut k = merge::kernel(method, p, N, models.len()).expect("kernel");
    merge::merge_slices(k.as_mut(), Some(base), models, row_len, 4096)
}

fn kept_fraction(out: &[f32], base: &[f32]) -> f64 {
    out.iter().zip(base).filter(|(o, b)| o != b).count() as f64 / out.len() as f64
}

/// Binomial tolerance: 5 standard deviations.
fn tol(p: f64, n: usize) -> f64 {
    5.0 * (p * (1.0 - p) / n as f64).sqrt()
}

#[test]
fn dare_keeps_density_and_rescales_to_the_same_l1() {
    let base = vec![0.0f32; N];
    let d = task_vector(1);
    for density in [0.1, 0.5, 0.9] {
        for method in [Method::DareLinear, Method::DareTies] {
            let no = tp(
                &[(1.0, density)],
                &[("rescale", ParamValue::Bool(false))],
                7,
            );
            let out = merge(method, &no, &base, &[&d], 1000);
            let kept = kept_fraction(&out, &base);
            assert!(
                (kept - density).abs() < tol(density, N),
                "{} d={density}: kept {kept}",
                method.name()
            );
            // unrescaled: kept entries are the task vector's own values
            assert!(out.iter().zip(&d).all(|(o, x)| *o == 0.0 || o == x));

            let yes = tp(&[(1.0, density)], &[("rescale", ParamValue::Bool(true))], 7);
            let out_r = merge(method, &yes, &base, &[&d], 1000);
            let l1 = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
            let (before, after) = (l1(&d), l1(&out_r));
            assert!(
                (after - before).abs() / before < 1e-5,
                "{}: L1 {before} -> {after}",
                method.name()
            );
            // same mask, uniformly scaled (by about 1/density)
            let ratio = before / l1(&out);
            assert!(
                (ratio - 1.0 / density).abs() / (1.0 / density) < 0.02,
                "ratio {ratio}"
            );
            for (r, o) in out_r.iter().zip(&out) {
                assert_eq!(*r == 0.0, *o == 0.0);
            }
        }
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different_draws() {
    let base = task_vector(3);
    let d0 = task_vector(4);
    let d1 = task_vector(5);
    for method in [
        Method::DareTies,
        Method::DareLinear,
        Method::Della,
        Method::DellaLinear,
    ] {
        let p = |seed| tp(&[(0.6, 0.4), (0.4, 0.5)], &[], seed);
        let a = merge(method, &p(11), &base, &[&d0, &d1], 500);
        let b = merge(method, &p(11), &base, &[&d0, &d1], 500);
        let c = merge(method, &p(12), &base, &[&d0, &d1], 500);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "{}", method.name());
        let differ = a.iter().zip(&c).filter(|(x, y)| x != y).count();
        assert!(
            differ > N / 10,
            "{}: only {differ} differ across seeds",
            method.name()
        );
        // a different tensor name gives a different stream too
        let mut q = p(11);
        q.tensor = "model.layers.3.self_attn.k_proj.weight".into();
        let e = merge(method, &q, &base, &[&d0, &d1], 500);
        assert!(a.iter().zip(&e).filter(|(x, y)| x != y).count() > N / 10);
    }
}

#[test]
fn dare_ties_sign_rule() {
    // Model 1's task vector is model 0's, negated and doubled: where both
    // survive, model 1 wins the election and model 0 is dropped; the output
    // is never a sum of the two.
    let base = vec![0.0f32; N];
    let d0 = task_vector(9);
    let d1: Vec<f32> = d0.iter().map(|x| -2.0 * x).collect();
    let (p0, p1) = (0.6, 0.5);
    let p = tp(
        &[(1.0, p0), (1.0, p1)],
        &[("rescale", ParamValue::Bool(false))],
        5,
    );
    let out = merge(Method::DareTies, &p, &base, &[&d0, &d1], 1000);
    let (mut only0, mut one) = (0usize, 0usize);
    for ((o, a), b) in out.iter().zip(&d0).zip(&d1) {
        if o == a {
            only0 += 1;
        } else if o == b {
            one += 1;
        } else {
            assert_eq!(*o, 0.0, "output must be one model's delta or nothing");
        }
    }
    let (f0, f1) = (only0 as f64 / N as f64, one as f64 / N as f64);
    assert!((f1 - p1).abs() < tol(p1, N), "model 1 share {f1}");
    let want0 = p0 * (1.0 - p1);
    assert!((f0 - want0).abs() < tol(want0, N), "model 0 share {f0}");
}

#[test]
fn della_keeps_density_and_favours_large_magnitudes() {
    let base = vec![0.0f32; N];
    let d = task_vector(21);
    let density = 0.5;
    let eps = 0.15;
    let p = tp(
        &[(1.0, density)],
        &[("rescale", ParamValue::Bool(false))],
        3,
    );
    let row_len = 1000;
    let out = merge(Method::DellaLinear, &p, &base, &[&d], row_len);
    let kept = kept_fraction(&out, &base);
    assert!((kept - density).abs() < tol(density, N), "kept {kept}");
    // Within each row, the largest quarter is kept with probability about
    // density + 0.75 eps, the smallest quarter with density - 0.75 eps.
    let (mut top, mut bot, mut nt, mut nb) = (0usize, 0usize, 0usize, 0usize);
    for (row, orow) in d.chunks(row_len).zip(out.chunks(row_len)) {
        let mut mags: Vec<f32> = row.iter().map(|x| x.abs()).collect();
        mags.sort_by(|a, b| a.total_cmp(b));
        let (q1, q3) = (mags[row_len / 4], mags[3 * row_len / 4]);
        for (x, o) in row.iter().zip(orow) {
            if x.abs() >= q3 {
                nt += 1;
                top += usize::from(*o != 0.0);
            } else if x.abs() < q1 {
                nb += 1;
                bot += usize::from(*o != 0.0);
            }
        }
    }
    let (ft, fb) = (top as f64 / nt as f64, bot as f64 / nb as f64);
    let (wt, wb) = (density + 0.75 * eps, density - 0.75 * eps);
    assert!(
        (ft - wt).abs() < tol(wt, nt) + 0.005,
        "top quarter kept {ft}, want {wt}"
    );
    assert!(
        (fb - wb).abs() < tol(wb, nb) + 0.005,
        "bottom quarter kept {fb}, want {wb}"
    );
    // della (rescale on by default) preserves the L1 norm exactly
    let p = tp(&[(1.0, density)], &[], 3);
    let out = merge(Method::Della, &p, &base, &[&d], row_len);
    let l1 = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
    assert!((l1(&out) - l1(&d)).abs() / l1(&d) < 1e-5);
}

#[test]
fn della_rejects_epsilon_outside_the_density_band() {
    let mut p = tp(&[(1.0, 0.1)], &[], 0);
    p.models[0].set("epsilon", ParamValue::Float(0.2));
    let err = merge::kernel(Method::Della, &p, 10, 1)
        .err()
        .expect("invalid epsilon");
    assert!(err.to_string().contains("epsilon"), "{err}");
}
