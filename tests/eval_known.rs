//! Evaluation of hand-built models whose answers are known.

use smelt::eval::evaluate;
use smelt::mlp::{Head, Layer, MlpModel, Samples};

/// One linear layer picking input feature `i` as the logit of output `i`.
fn picker(n_in: usize, picks: &[usize], scale: f32) -> Layer {
    let mut l = Layer::zeros(n_in, picks.len());
    for (o, &i) in picks.iter().enumerate() {
        l.weight[o * n_in + i] = scale;
    }
    l
}

fn samples(rows: &[(&[f32], u32)]) -> Samples {
    Samples {
        dim: rows[0].0.len(),
        x: rows.iter().flat_map(|r| r.0.iter().copied()).collect(),
        y: rows.iter().map(|r| r.1).collect(),
    }
}

#[test]
fn per_head_and_joint_accuracy() {
    // 4 inputs; head 0 (classes 0,1) reads inputs 0,1; head 1 (classes 2,3)
    // reads inputs 2,3 at twice the scale.
    let m = MlpModel {
        input_scale: 1.0,
        trunk: Vec::new(),
        heads: vec![
            Head {
                classes: vec![0, 1],
                layers: vec![picker(4, &[0, 1], 1.0)],
            },
            Head {
                classes: vec![2, 3],
                layers: vec![picker(4, &[2, 3], 2.0)],
            },
        ],
    };
    let s = samples(&[
        (&[1.0, 0.0, 0.0, 0.0], 0), // head0 right, joint right
        (&[0.0, 1.0, 0.0, 0.0], 0), // head0 wrong, joint wrong (says 1)
        (&[5.0, 0.0, 1.0, 0.0], 0), // head0 right; joint: 5 vs 2 -> right
        (&[1.0, 0.0, 1.0, 0.0], 0), // head0 right; joint: 1 vs 2 -> says 2, wrong
        (&[0.0, 0.0, 0.0, 1.0], 3), // head1 right, joint right
        (&[0.0, 0.0, 1.0, 0.0], 3), // head1 wrong (says 2)
        (&[0.0, 0.0, 0.0, 0.0], 9), // no head covers 9: not counted
    ]);
    let r = evaluate(&m, &s, "m", "d").unwrap();
    assert_eq!((r.heads[0].correct, r.heads[0].total), (3, 4));
    assert_eq!((r.heads[1].correct, r.heads[1].total), (1, 2));
    assert_eq!((r.joint_correct, r.joint_total), (3, 6));
    assert!((r.joint_accuracy - 0.5).abs() < 1e-12);
    let json = serde_json::to_string(&r).unwrap();
    let back: smelt::eval::EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn trunk_relu_and_input_scale_apply() {
    // Trunk: h = relu(x0 - x1), relu(x1 - x0); head picks them as classes 5, 6.
    let mut t = Layer::zeros(2, 2);
    t.weight = vec![1.0, -1.0, -1.0, 1.0];
    let m = MlpModel {
        input_scale: -1.0, // flips the inputs
        trunk: vec![t],
        heads: vec![Head {
            classes: vec![5, 6],
            layers: vec![picker(2, &[0, 1], 1.0)],
        }],
    };
    // x = (3, 1) scaled to (-3, -1): h = (0, 2) -> class 6.
    let s = samples(&[(&[3.0, 1.0], 6), (&[1.0, 3.0], 5), (&[1.0, 3.0], 6)]);
    let r = evaluate(&m, &s, "m", "d").unwrap();
    assert_eq!((r.heads[0].correct, r.heads[0].total), (2, 3));
}

#[test]
fn wrong_width_is_an_error() {
    let m = MlpModel {
        input_scale: 1.0,
        trunk: Vec::new(),
        heads: vec![Head {
            classes: vec![0],
            layers: vec![Layer::zeros(3, 1)],
        }],
    };
    let s = samples(&[(&[1.0, 2.0], 0)]);
    assert!(evaluate(&m, &s, "m", "d").is_err());
}

#[test]
fn sample_digits_models_score_as_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/digits-zip");
    let r = smelt::eval::evaluate_path(&root.join("digits-0-4"), None).unwrap();
    let test = smelt::mlp::Dataset::builtin()
        .unwrap()
        .split(smelt::mlp::Split::Test);
    let n04 = test.y.iter().filter(|&&y| y < 5).count();
    assert_eq!(r.joint_total, n04, "test samples of digits 0-4");
    assert!(r.heads[0].accuracy > 0.95, "{r:?}");
}
