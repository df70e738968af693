//! The smelt-mlp checkpoint format: round trips and clear errors.

use smelt::mlp::{head_layout, init_layer, Head, MlpModel, Rng};
use smelt::model::{write_small, Dtype, Model};
use std::path::Path;

fn random_model(widths: &[usize], classes: &[u32], seed: u64) -> MlpModel {
    let mut rng = Rng::new(seed);
    let mut layers: Vec<_> = widths
        .windows(2)
        .map(|w| init_layer(w[0], w[1], &mut rng))
        .collect();
    for l in &mut layers {
        for b in &mut l.bias {
            *b = 0.1 * rng.normal() as f32;
        }
    }
    assert_eq!(*widths.last().unwrap(), classes.len());
    MlpModel {
        input_scale: 0.5,
        trunk: Vec::new(),
        heads: vec![Head {
            classes: classes.to_vec(),
            layers,
        }],
    }
}

fn tensor_names(dir: &Path) -> Vec<String> {
    let m = Model::open(dir).unwrap();
    let mut v: Vec<String> = m.tensors().iter().map(|t| t.name.clone()).collect();
    v.sort();
    v
}

#[test]
fn plain_model_round_trips_with_plain_names() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_model(&[4, 6, 3], &[7, 8, 9], 1);
    let out = dir.path().join("m");
    m.save(&out, false).unwrap();
    let back = MlpModel::load(&out).unwrap();
    assert_eq!(back, m);
    assert_eq!(
        tensor_names(&out),
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight"
        ]
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "smelt-mlp");
    assert_eq!(cfg["input_scale"], 0.5);
    assert_eq!(cfg["heads"][0]["classes"], serde_json::json!([7, 8, 9]));
    // Refuses to overwrite without force; with force too, as it is not a
    // smelt merge output (no smelt-recipe.toml). An empty folder is fine.
    assert!(m.save(&out, false).is_err());
    let e = m.save(&out, true).unwrap_err().to_string();
    assert!(e.contains("smelt-recipe.toml"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    m.save(&out, true).unwrap();
}

#[test]
fn multi_head_model_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let a = random_model(&[4, 6, 5, 2], &[0, 1], 2);
    let b = random_model(&[5, 3], &[2, 3, 4], 3);
    let mut layers = a.heads[0].layers.clone();
    let head_a = layers.pop().unwrap();
    let m = MlpModel {
        input_scale: 1.0,
        trunk: layers,
        heads: vec![
            Head {
                classes: vec![0, 1],
                layers: vec![head_a],
            },
            Head {
                classes: vec![2, 3, 4],
                layers: b.heads[0].layers.clone(),
            },
        ],
    };
    let out = dir.path().join("mh");
    m.save(&out, false).unwrap();
    assert_eq!(MlpModel::load(&out).unwrap(), m);
    let names = tensor_names(&out);
    assert!(
        names.contains(&"heads.1.layers.0.weight".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"layers.1.bias".to_string()), "{names:?}");
    // Forward: each head reads the trunk's output.
    let x = [1.0, 2.0, 3.0, 4.0];
    let out = m.forward(&x, 1);
    let mut h = x.to_vec();
    for l in &m.trunk {
        h = l.forward(&h, 1, true);
    }
    assert_eq!(out[1], m.heads[1].layers[0].forward(&h, 1, false));
}

fn write(dir: &Path, tensors: &[(&str, Vec<usize>)], config: serde_json::Value) {
    let t: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone(), vec![0.5; s.iter().product()]))
        .collect();
    write_small(dir, &t, Dtype::F32, &[]).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn cfg(classes: &[&[u32]]) -> serde_json::Value {
    serde_json::json!({"model_type": "smelt-mlp", "activation": "relu", "input_scale": 1.0,
        "heads": classes.iter().map(|c| serde_json::json!({"classes": c})).collect::<Vec<_>>()})
}

#[test]
fn malformed_models_name_the_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad1");
    // Wrong bias shape.
    write(
        &p,
        &[("layers.0.weight", vec![3, 4]), ("layers.0.bias", vec![2])],
        cfg(&[&[0, 1, 2]]),
    );
    let e = MlpModel::load(&p).unwrap_err().to_string();
    assert!(e.contains("bad1") && e.contains("layers.0.bias"), "{e}");

    // Chain mismatch between layers.
    let p = dir.path().join("bad2");
    write(
        &p,
        &[
            ("layers.0.weight", vec![3, 4]),
            ("layers.0.bias", vec![3]),
            ("layers.1.weight", vec![2, 5]),
            ("layers.1.bias", vec![2]),
        ],
        cfg(&[&[0, 1]]),
    );
    let e = MlpModel::load(&p).unwrap_err().to_string();
    assert!(e.contains("bad2") && e.contains("layers.1.weight"), "{e}");

    // Missing bias.
    let p = dir.path().join("bad3");
    write(&p, &[("layers.0.weight", vec![2, 4])], cfg(&[&[0, 1]]));
    let e = MlpModel::load(&p).unwrap_err().to_string();
    assert!(e.contains("layers.0.bias") && e.contains("missing"), "{e}");

    // Classes disagree with the output width.
    let p = dir.path().join("bad4");
    write(
        &p,
        &[("layers.0.weight", vec![2, 4]), ("layers.0.bias", vec![2])],
        cfg(&[&[0, 1, 2]]),
    );
    let e = MlpModel::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad4") && e.contains("layers.0.weight") && e.contains("classes"),
        "{e}"
    );

    // Wrong model type.
    let p = dir.path().join("bad5");
    write(
        &p,
        &[("layers.0.weight", vec![2, 4]), ("layers.0.bias", vec![2])],
        serde_json::json!({"model_type": "llama", "heads": [{"classes": [0, 1]}]}),
    );
    let e = MlpModel::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad5") && e.contains("config.json") && e.contains("model_type"),
        "{e}"
    );

    // Unknown tensor.
    let p = dir.path().join("bad6");
    write(
        &p,
        &[
            ("layers.0.weight", vec![2, 4]),
            ("layers.0.bias", vec![2]),
            ("extra.scale", vec![1]),
        ],
        cfg(&[&[0, 1]]),
    );
    let e = MlpModel::load(&p).unwrap_err().to_string();
    assert!(e.contains("extra.scale"), "{e}");
}

#[test]
fn head_layout_keeps_heads_apart_and_merges_trunks() {
    let dir = tempfile::tempdir().unwrap();
    let a = random_model(&[4, 6, 2], &[0, 1], 4);
    let b = random_model(&[4, 6, 3], &[2, 3, 4], 5);
    let same = random_model(&[4, 6, 2], &[0, 1], 6);
    a.save(&dir.path().join("a"), false).unwrap();
    b.save(&dir.path().join("b"), false).unwrap();
    same.save(&dir.path().join("c"), false).unwrap();
    let ma = Model::open(&dir.path().join("a")).unwrap();
    let mb = Model::open(&dir.path().join("b")).unwrap();
    let mc = Model::open(&dir.path().join("c")).unwrap();
    let l = head_layout(&[&ma, &mb]).unwrap().unwrap();
    assert_eq!(l.trunk, ["layers.0.weight", "layers.0.bias"]);
    let outs: Vec<(usize, &str, &str)> = l
        .heads
        .iter()
        .map(|h| (h.model, h.source.as_str(), h.output.as_str()))
        .collect();
    assert_eq!(
        outs,
        [
            (0, "layers.1.weight", "heads.0.layers.0.weight"),
            (0, "layers.1.bias", "heads.0.layers.0.bias"),
            (1, "layers.1.weight", "heads.1.layers.0.weight"),
            (1, "layers.1.bias", "heads.1.layers.0.bias"),
        ]
    );
    assert_eq!(
        l.config["heads"][1]["classes"],
        serde_json::json!([2, 3, 4])
    );
    // Same heads everywhere: nothing to keep apart.
    assert!(head_layout(&[&ma, &mc]).unwrap().is_none());
    // Mixed with a non-MLP: an error naming it.
    let llama = dir.path().join("l");
    write_small(&llama, &[("w".into(), vec![1], vec![1.0])], Dtype::F32, &[]).unwrap();
    let ml = Model::open(&llama).unwrap();
    let e = head_layout(&[&ma, &ml]).unwrap_err().to_string();
    assert!(e.contains("not a smelt-mlp"), "{e}");
}

#[test]
fn sample_models_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models");
    for p in [
        "digits-zip/digits-0-4",
        "digits-zip/digits-5-9",
        "digits-tasks/base",
        "digits-tasks/ft-0-2",
        "digits-tasks/ft-3-6",
        "digits-tasks/ft-7-9",
    ] {
        let m = MlpModel::load(&root.join(p)).unwrap();
        assert_eq!(m.n_in(), 64, "{p}");
    }
    let fts: Vec<Model> = ["ft-0-2", "ft-3-6", "ft-7-9"]
        .iter()
        .map(|n| Model::open(&root.join("digits-tasks").join(n)).unwrap())
        .collect();
    let refs: Vec<&Model> = fts.iter().collect();
    let l = head_layout(&refs).unwrap().unwrap();
    assert_eq!(l.trunk.len(), 6);
    assert_eq!(l.config["heads"].as_array().unwrap().len(), 3);
    for name in ["base", "ft-attn-early", "ft-mlp-late", "ft-broad"] {
        let llama = Model::open(&root.join("llama-synthetic").join(name)).unwrap();
        assert!(llama.shard_paths().len() > 1, "llama-synthetic is sharded");
        assert!(llama.tensors().iter().all(|t| t.dtype == Dtype::BF16));
        assert!(llama
            .tensor("model.layers.3.mlp.down_proj.weight")
            .is_some());
        assert_eq!(llama.num_layers(), 4);
        assert!(!MlpModel::is_mlp(&llama));
        let e = MlpModel::load(&root.join("llama-synthetic").join(name)).unwrap_err();
        assert!(e.to_string().contains("smelt-mlp"), "{e}");
    }
    // Fine-tune deltas are heavy-tailed: the largest |delta| is many times the mean.
    let base = Model::open(&root.join("llama-synthetic/base")).unwrap();
    let ft = Model::open(&root.join("llama-synthetic/ft-attn-early")).unwrap();
    let t = "model.layers.0.self_attn.q_proj.weight";
    let (b, f) = (base.read_all_f32(t).unwrap(), ft.read_all_f32(t).unwrap());
    let d: Vec<f32> = b.iter().zip(&f).map(|(x, y)| (y - x).abs()).collect();
    let mean = d.iter().sum::<f32>() / d.len() as f32;
    let max = d.iter().cloned().fold(0.0, f32::max);
    assert!(mean > 0.0 && max > 8.0 * mean, "mean {mean} max {max}");
}
