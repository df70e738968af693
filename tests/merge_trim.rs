//! Trimming methods against a full-sort reference, on heavily tied inputs
//! like bf16 task vectors.

use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};
use smelt::mlp::Rng;

/// Task-vector values with few distinct magnitudes (many ties), both signs.
fn tied_vector(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let m = rng.below(12) as f32 * 0.125;
            if rng.below(2) == 0 {
                m
            } else {
                -m
            }
        })
        .collect()
}

/// Indices in keep order: descending magnitude, ties by ascending index.
fn ranked(d: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..d.len()).collect();
    idx.sort_by(|&a, &b| d[b].abs().total_cmp(&d[a].abs()).then(a.cmp(&b)));
    idx
}

fn one_model(pairs: &[(&str, f64)], global: &[(&str, ParamValue)]) -> TensorParams {
    let mut m = ParamMap::default();
    for (k, v) in pairs {
        m.set(k, ParamValue::Float(*v));
    }
    let mut g = ParamMap::default();
    for (k, v) in global {
        g.set(k, *v);
    }
    TensorParams {
        tensor: "t".into(),
        global: g,
        models: vec![m],
        seed: 0,
    }
}

fn run(method: Method, p: &TensorParams, d: &[f32], chunk: usize) -> Vec<f32> {
    let base = vec![0.0f32; d.len()];
    let mut k = merge::kernel(method, p, d.len(), 1).expect("kernel");
    merge::merge_slices(k.as_mut(), Some(&base), &[d], 1, chunk)
}

#[test]
fn ties_keeps_exactly_k_with_lowest_indices_among_ties() {
    let n = 5000;
    let d = tied_vector(n, 1);
    for density in [0.05, 0.3, 0.77] {
        let k = (density * n as f64) as usize;
        let mut want = vec![0.0f32; n];
        for &i in &ranked(&d)[..k] {
            want[i] = d[i];
        }
        let p = one_model(
            &[("weight", 1.0), ("density", density)],
            &[("normalize", ParamValue::Bool(false))],
        );
        for chunk in [1, 333, 5000] {
            let got = run(Method::Ties, &p, &d, chunk);
            assert_eq!(got, want, "density {density} chunk {chunk}");
        }
    }
}

#[test]
fn breadcrumbs_drops_outliers_and_small_entries() {
    let n = 4000;
    let d = tied_vector(n, 2);
    for (density, gamma) in [(0.5, 0.1), (0.9, 0.2), (0.2, 0.01)] {
        let target = (density * n as f64) as i64;
        let mut n_top = (gamma * n as f64) as i64;
        let mut n_bot = n as i64 - target - n_top;
        if n_bot < 0 {
            n_top += n_bot;
            n_bot = 0;
        }
        let order = ranked(&d);
        let mut want = vec![0.0f32; n];
        for &i in &order[n_top as usize..n - n_bot as usize] {
            want[i] = d[i];
        }
        let p = one_model(
            &[("weight", 1.0), ("density", density), ("gamma", gamma)],
            &[],
        );
        for chunk in [7, 4000] {
            assert_eq!(
                run(Method::Breadcrumbs, &p, &d, chunk),
                want,
                "d={density} g={gamma}"
            );
        }
    }
}

#[test]
fn breadcrumbs_without_outliers_keeps_the_top_share_instead_of_nothing() {
    // gamma * numel rounds to 0: mergekit would zero the task vector.
    let d = tied_vector(50, 3);
    let p = one_model(&[("weight", 1.0), ("density", 0.5), ("gamma", 0.01)], &[]);
    let got = run(Method::Breadcrumbs, &p, &d, 16);
    let mut want = vec![0.0f32; 50];
    for &i in &ranked(&d)[..25] {
        want[i] = d[i];
    }
    assert_eq!(got, want);
    assert!(got.iter().any(|&x| x != 0.0));
}

#[test]
fn ties_sign_election_counts_zero_sum_as_positive() {
    // Two models with opposite deltas of equal weight: the sum is 0, the
    // elected sign +, so only the positive delta survives, divided by its
    // own weight (normalize on).
    let base = [1.0f32, 1.0];
    let a = [1.5f32, 0.5];
    let b = [0.5f32, 1.5];
    let mut p = one_model(&[("weight", 2.0), ("density", 1.0)], &[]);
    p.models.push(p.models[0].clone());
    let mut k = merge::kernel(Method::Ties, &p, 2, 2).expect("kernel");
    let out = merge::merge_slices(k.as_mut(), Some(&base), &[&a, &b], 2, 2);
    assert_eq!(out, vec![1.5, 1.5]);
}

#[test]
fn rescale_matches_the_l1_norm_of_the_untrimmed_task_vector() {
    // mergekit 0.1.5 rescales a trimmed task vector so its L1 norm equals
    // the untrimmed one's, for every trimming method when `rescale` is on.
    let n = 3000;
    let d = tied_vector(n, 4);
    let l1 = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
    for (method, extra) in [
        (Method::Ties, ("gamma", 0.0)),
        (Method::Breadcrumbs, ("gamma", 0.05)),
    ] {
        let p = one_model(
            &[("weight", 1.0), ("density", 0.4), extra],
            &[
                ("rescale", ParamValue::Bool(true)),
                ("normalize", ParamValue::Bool(false)),
            ],
        );
        for chunk in [64, 3000] {
            let got = run(method, &p, &d, chunk);
            let nonzero = got.iter().filter(|&&x| x != 0.0).count();
            assert!(nonzero <= (0.4 * n as f64) as usize, "{}", method.name());
            assert!(
                (l1(&got) - l1(&d)).abs() / l1(&d) < 1e-5,
                "{}: L1 {} vs {}",
                method.name(),
                l1(&got),
                l1(&d)
            );
        }
    }
}
