//! ZipIt! and permutation merging on small random models.
#![allow(clippy::needless_range_loop)] // index arithmetic on weight matrices reads clearer

use smelt::mlp::{init_layer, Head, Layer, MlpModel, Rng, Samples};
use smelt::zip::{layer_correlations, permute, zip_merge, zipit, LayerOverride, ZipMethod};

fn random_model(widths: &[usize], classes: &[u32], seed: u64) -> MlpModel {
    let mut rng = Rng::new(seed);
    let mut layers: Vec<Layer> = widths
        .windows(2)
        .map(|w| init_layer(w[0], w[1], &mut rng))
        .collect();
    for l in &mut layers {
        for b in &mut l.bias {
            *b = 0.2 * rng.normal() as f32 + 0.1;
        }
    }
    MlpModel {
        input_scale: 0.5,
        trunk: Vec::new(),
        heads: vec![Head {
            classes: classes.to_vec(),
            layers,
        }],
    }
}

fn data(dim: usize, n: usize, seed: u64) -> Samples {
    let mut rng = Rng::new(seed);
    Samples {
        dim,
        x: (0..n * dim).map(|_| rng.normal() as f32).collect(),
        y: vec![0; n],
    }
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}

/// Model `m` with the hidden units of every hidden layer permuted by
/// `perms[l]` (new unit `perms[l][i]` is old unit `i`): same function.
fn permuted(m: &MlpModel, perms: &[Vec<usize>]) -> MlpModel {
    let mut layers = m.heads[0].layers.clone();
    for (l, p) in perms.iter().enumerate() {
        let (n_out, n_in) = (layers[l].n_out, layers[l].n_in);
        let old = layers[l].clone();
        for i in 0..n_out {
            layers[l].weight[p[i] * n_in..(p[i] + 1) * n_in]
                .copy_from_slice(&old.weight[i * n_in..(i + 1) * n_in]);
            layers[l].bias[p[i]] = old.bias[i];
        }
        let next = layers[l + 1].clone();
        let (o2, i2) = (next.n_out, next.n_in);
        for r in 0..o2 {
            for i in 0..i2 {
                layers[l + 1].weight[r * i2 + p[i]] = next.weight[r * i2 + i];
            }
        }
    }
    let mut out = m.clone();
    out.heads[0].layers = layers;
    out
}

#[test]
fn zipit_of_a_model_with_itself_reproduces_it() {
    let m = random_model(&[6, 12, 10, 8, 3], &[0, 1, 2], 1);
    let calib = data(6, 300, 2);
    let probe = data(6, 50, 3);
    let want = m.forward(&probe.x, probe.len());
    for depth in 0..=3 {
        for (alpha, beta) in [(0.5, 1.0), (0.0, 0.0), (1.0, 0.5)] {
            let z = zip_merge(
                &[m.clone(), m.clone()],
                ZipMethod::Zipit { alpha, beta },
                Some(depth),
                &[],
                &calib,
            )
            .unwrap();
            assert_eq!(z.trunk.len(), depth);
            assert_eq!(z.heads.len(), 2);
            let got = z.forward(&probe.x, probe.len());
            assert_close(&got[0], &want[0], 1e-4);
            assert_close(&got[1], &want[0], 1e-4);
        }
    }
}

#[test]
fn permute_recovers_a_permuted_copy_exactly() {
    let m = random_model(&[6, 12, 10, 3], &[4, 5, 6], 4);
    let mut rng = Rng::new(5);
    let perms: Vec<Vec<usize>> = [12usize, 10]
        .iter()
        .map(|&d| {
            let mut p: Vec<usize> = (0..d).collect();
            rng.shuffle(&mut p);
            p
        })
        .collect();
    let q = permuted(&m, &perms);
    let calib = data(6, 400, 6);
    let probe = data(6, 40, 7);
    // The copy computes the same function.
    assert_close(
        &q.forward(&probe.x, 40)[0],
        &m.forward(&probe.x, 40)[0],
        1e-5,
    );
    let models = [m.clone(), q.clone()];
    let corrs = layer_correlations(&models, 2, &calib).unwrap();
    for (l, p) in perms.iter().enumerate() {
        let d = p.len();
        let matching = permute(&corrs[l], &[d, d]);
        for i in 0..d {
            assert_eq!(matching.assign[1][p[i]], i, "layer {l} unit {i}");
        }
    }
    let z = zip_merge(&models, ZipMethod::Permute, None, &[], &calib).unwrap();
    let want = m.forward(&probe.x, 40);
    let got = z.forward(&probe.x, 40);
    assert_close(&got[0], &want[0], 1e-4);
    assert_close(&got[1], &want[0], 1e-4);
    // Plain averaging of the permuted copy does not recover it.
    let avg = zip_merge(&models, ZipMethod::Average, None, &[], &calib).unwrap();
    let bad = avg.forward(&probe.x, 40);
    let diff: f32 = bad[0]
        .iter()
        .zip(&want[0])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(
        diff > 1e-2,
        "averaging a permuted copy should change the function"
    );
}

#[test]
fn depth_zero_is_the_ensemble_and_shapes_follow_depth() {
    let a = random_model(&[5, 8, 8, 2], &[0, 1], 8);
    let b = random_model(&[5, 8, 8, 3], &[2, 3, 4], 9);
    let calib = data(5, 200, 10);
    let probe = data(5, 20, 11);
    let e = zip_merge(
        &[a.clone(), b.clone()],
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        Some(0),
        &[],
        &calib,
    )
    .unwrap();
    assert!(e.trunk.is_empty());
    let got = e.forward(&probe.x, 20);
    assert_close(&got[0], &a.forward(&probe.x, 20)[0], 1e-6);
    assert_close(&got[1], &b.forward(&probe.x, 20)[0], 1e-6);
    let z = zip_merge(
        &[a.clone(), b.clone()],
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        None,
        &[],
        &calib,
    )
    .unwrap();
    assert_eq!(z.trunk.len(), 2);
    assert_eq!(z.trunk[0].n_out, 8);
    assert_eq!(z.heads[0].layers.len(), 1);
    assert_eq!(z.heads[1].classes, [2, 3, 4]);
    assert_eq!(z.heads[1].layers[0].n_in, 8);
    // Too deep, or an override outside the zipped layers: clear errors.
    let e = zip_merge(
        &[a.clone(), b.clone()],
        ZipMethod::Permute,
        Some(3),
        &[],
        &calib,
    )
    .unwrap_err();
    assert!(e.to_string().contains("depth 3"), "{e}");
    let o = [LayerOverride {
        layer: 2,
        alpha: Some(0.1),
        beta: None,
    }];
    assert!(zip_merge(
        &[a.clone(), b.clone()],
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0
        },
        Some(2),
        &o,
        &calib
    )
    .is_err());
}

#[test]
fn per_layer_override_changes_only_that_layer() {
    let a = random_model(&[5, 10, 10, 2], &[0, 1], 12);
    let b = random_model(&[5, 10, 10, 2], &[2, 3], 13);
    let calib = data(5, 300, 14);
    let models = [a, b];
    let base = zip_merge(
        &models,
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        None,
        &[],
        &calib,
    )
    .unwrap();
    let o = [LayerOverride {
        layer: 1,
        alpha: None,
        beta: Some(0.0),
    }];
    let over = zip_merge(
        &models,
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        None,
        &o,
        &calib,
    )
    .unwrap();
    assert_eq!(base.trunk[0], over.trunk[0]);
    // Layer 1 with beta 0 pairs across models only, as the matcher would.
    let corrs = layer_correlations(&models, 2, &calib).unwrap();
    let m = zipit(&corrs[1], &[10, 10], 10, 0.5, 0.0);
    let mut owners = vec![Vec::new(); 10];
    for (k, a) in m.assign.iter().enumerate() {
        for &c in a {
            owners[c].push(k);
        }
    }
    assert!(owners.iter().all(|o| o == &[0, 1]));
    assert_ne!(base.trunk[1], over.trunk[1]);
}

#[test]
fn three_models_zip_into_three_heads() {
    let m = random_model(&[6, 10, 9, 2], &[0, 1], 21);
    let calib = data(6, 300, 22);
    let probe = data(6, 30, 23);
    let want = m.forward(&probe.x, 30);
    // Three identical copies with α = 1: every feature merges with its two copies.
    let z = zip_merge(
        &[m.clone(), m.clone(), m.clone()],
        ZipMethod::Zipit {
            alpha: 1.0,
            beta: 1.0,
        },
        None,
        &[],
        &calib,
    )
    .unwrap();
    assert_eq!(z.heads.len(), 3);
    assert_eq!(z.trunk[0].n_out, 10);
    for h in z.forward(&probe.x, 30) {
        assert_close(&h, &want[0], 1e-4);
    }
    // Different models of different input scales: valid shapes, finite outputs.
    let mut b = random_model(&[6, 10, 9, 3], &[2, 3, 4], 24);
    b.input_scale = 0.25;
    let c = random_model(&[6, 10, 9, 2], &[5, 6], 25);
    // Input scales are folded into the first layer: the ensemble still computes b.
    let e = zip_merge(
        &[m.clone(), b.clone()],
        ZipMethod::Permute,
        Some(0),
        &[],
        &calib,
    )
    .unwrap();
    assert_close(
        &e.forward(&probe.x, 30)[1],
        &b.forward(&probe.x, 30)[0],
        1e-5,
    );
    for method in [
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        ZipMethod::Permute,
    ] {
        let z = zip_merge(
            &[m.clone(), b.clone(), c.clone()],
            method,
            None,
            &[],
            &calib,
        )
        .unwrap();
        assert_eq!(z.heads.len(), 3);
        assert!(z
            .forward(&probe.x, 30)
            .iter()
            .flatten()
            .all(|v| v.is_finite()));
    }
}

#[test]
fn rescaled_copy_is_merged_exactly() {
    // b: a's hidden units scaled by positive factors (ReLU commutes), the
    // next layer compensating: same function, differently sized features.
    // Merging in units of each feature's spread must reproduce it.
    let a = random_model(&[5, 8, 7, 2], &[0, 1], 31);
    let mut b = a.clone();
    let mut rng = Rng::new(32);
    let layers = &mut b.heads[0].layers;
    for l in 0..2 {
        let s: Vec<f32> = (0..layers[l].n_out)
            .map(|_| 0.2 + 3.0 * rng.uniform() as f32)
            .collect();
        let n_in = layers[l].n_in;
        for o in 0..layers[l].n_out {
            for w in &mut layers[l].weight[o * n_in..(o + 1) * n_in] {
                *w *= s[o];
            }
            layers[l].bias[o] *= s[o];
        }
        let next_in = layers[l + 1].n_in;
        for r in 0..layers[l + 1].n_out {
            for i in 0..next_in {
                layers[l + 1].weight[r * next_in + i] /= s[i];
            }
        }
    }
    let calib = data(5, 300, 33);
    let probe = data(5, 30, 34);
    let want = a.forward(&probe.x, 30);
    assert_close(&b.forward(&probe.x, 30)[0], &want[0], 1e-4);
    for method in [
        ZipMethod::Permute,
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
    ] {
        let z = zip_merge(&[a.clone(), b.clone()], method, None, &[], &calib).unwrap();
        let got = z.forward(&probe.x, 30);
        assert_close(&got[0], &want[0], 1e-3);
        assert_close(&got[1], &want[0], 1e-3);
    }
}
