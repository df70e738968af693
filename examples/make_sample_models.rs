//! Builds every model under `sample_models/`, deterministically:
//!
//! ```text
//! cargo run --release --example make_sample_models [-- OUT_DIR] [--no-write]
//! ```
//!
//! - `digits-zip/digits-0-4`, `digits-zip/digits-5-9`: 3 hidden layers of 128,
//!   different seeds, trained on disjoint halves of the digits.
//! - `digits-tasks/base` (pretrained on mirrored digits, all ten classes) and
//!   three fine-tunes of it on upright digits, each with its own head.
//! - `llama-synthetic/{base,ft-*}`: random Llama-shaped weights (bf16,
//!   sharded) with structured heavy-tailed fine-tune deltas. Synthetic.
//!
//! Single-threaded, seeded by constants below: the same command gives the
//! same bytes.

use smelt::eval::evaluate;
use smelt::mlp::{
    init_layer, train_chain, Dataset, Head, MlpModel, Rng, Samples, Split, TrainConfig,
};
use smelt::model::{Dtype, OutputTensor, Writer, WriterOptions};
use std::path::{Path, PathBuf};

const INPUT_SCALE: f32 = 1.0 / 16.0;

fn train_plain(
    train: &Samples,
    hidden: &[usize],
    classes: &[u32],
    init_seed: u64,
    cfg: &TrainConfig,
) -> MlpModel {
    let mut rng = Rng::new(init_seed);
    let mut widths = vec![train.dim];
    widths.extend_from_slice(hidden);
    widths.push(classes.len());
    let mut layers: Vec<_> = widths
        .windows(2)
        .map(|w| init_layer(w[0], w[1], &mut rng))
        .collect();
    let loss = train_chain(&mut layers, INPUT_SCALE, train, classes, cfg);
    eprintln!("  trained classes {classes:?}: final loss {loss:.4}");
    MlpModel {
        input_scale: INPUT_SCALE,
        trunk: Vec::new(),
        heads: vec![Head {
            classes: classes.to_vec(),
            layers,
        }],
    }
}

/// Split a plain model into trunk (all but the last layer) and one head.
fn as_trunk_and_head(m: MlpModel) -> MlpModel {
    let mut layers = m.heads[0].layers.clone();
    let last = layers.pop().expect("at least one layer");
    MlpModel {
        input_scale: m.input_scale,
        trunk: layers,
        heads: vec![Head {
            classes: m.heads[0].classes.clone(),
            layers: vec![last],
        }],
    }
}

/// Mirror each 8x8 image left-right (the base model's pretraining task).
fn mirrored(s: &Samples) -> Samples {
    let mut out = s.clone();
    for r in 0..s.len() {
        for y in 0..8 {
            for x in 0..8 {
                out.x[r * 64 + y * 8 + x] = s.x[r * 64 + y * 8 + (7 - x)];
            }
        }
    }
    out
}

fn report(name: &str, m: &MlpModel, test: &Samples) -> String {
    match evaluate(m, test, name, "digits test split") {
        Ok(r) => {
            let heads: Vec<String> = r
                .heads
                .iter()
                .map(|h| {
                    format!(
                        "head {}: {:.1}%",
                        smelt::eval::classes_label(&h.classes),
                        100.0 * h.accuracy
                    )
                })
                .collect();
            let line = format!(
                "{name}: {} ; joint {:.1}%",
                heads.join(", "),
                100.0 * r.joint_accuracy
            );
            eprintln!("  {line}");
            line
        }
        Err(e) => format!("{name}: eval failed: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let write = !args.iter().any(|a| a == "--no-write");
    let root = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| PathBuf::from("sample_models"), PathBuf::from);
    let ds = Dataset::builtin()?;
    let train = ds.split(Split::Train);
    let test = ds.split(Split::Test);
    let mut lines = Vec::new();

    // 1. digits-zip
    eprintln!("digits-zip");
    let cfg = TrainConfig {
        epochs: 40,
        batch: 32,
        lr: 1e-3,
        weight_decay: 0.0,
        seed: 100,
        freeze_below: 0,
    };
    let hidden = [128, 128, 128];
    let a = train_plain(&train, &hidden, &[0, 1, 2, 3, 4], 1, &cfg);
    let b = train_plain(
        &train,
        &hidden,
        &[5, 6, 7, 8, 9],
        2,
        &TrainConfig {
            seed: 200,
            ..cfg.clone()
        },
    );
    lines.push(report("digits-zip/digits-0-4", &a, &test));
    lines.push(report("digits-zip/digits-5-9", &b, &test));
    if write {
        for (m, dir) in [(&a, "digits-zip/digits-0-4"), (&b, "digits-zip/digits-5-9")] {
            clear(&root.join(dir))?;
            m.save(&root.join(dir), false)?;
        }
    }

    // 2. digits-tasks
    eprintln!("digits-tasks");
    let all: Vec<u32> = (0..10).collect();
    let th = [64, 64, 64];
    let base = as_trunk_and_head(train_plain(
        &mirrored(&train),
        &th,
        &all,
        3,
        &TrainConfig {
            epochs: 30,
            seed: 300,
            ..cfg.clone()
        },
    ));
    lines.push(report(
        "digits-tasks/base (upright test digits)",
        &base,
        &test,
    ));
    lines.push(report(
        "digits-tasks/base (mirrored test digits)",
        &base,
        &mirrored(&test),
    ));
    if write {
        // Trunk `layers.{0,1,2}.*` and head `heads.0.layers.0.*`, like the
        // fine-tunes: trunk names line up for task vectors, heads stay apart.
        clear(&root.join("digits-tasks/base"))?;
        base.save(&root.join("digits-tasks/base"), false)?;
    }
    let tasks: [(&str, Vec<u32>); 3] = [
        ("ft-0-2", vec![0, 1, 2]),
        ("ft-3-6", vec![3, 4, 5, 6]),
        ("ft-7-9", vec![7, 8, 9]),
    ];
    for (k, (name, classes)) in tasks.iter().enumerate() {
        let mut rng = Rng::new(400 + k as u64);
        let mut layers = base.trunk.clone();
        layers.push(init_layer(th[2], classes.len(), &mut rng));
        let loss = train_chain(
            &mut layers,
            INPUT_SCALE,
            &train,
            classes,
            &TrainConfig {
                epochs: 15,
                lr: 1e-3,
                seed: 500 + k as u64,
                ..cfg.clone()
            },
        );
        eprintln!("  fine-tune {name}: final loss {loss:.4}");
        let head = layers.pop().expect("head layer");
        let ft = MlpModel {
            input_scale: INPUT_SCALE,
            trunk: layers,
            heads: vec![Head {
                classes: classes.clone(),
                layers: vec![head],
            }],
        };
        lines.push(report(&format!("digits-tasks/{name}"), &ft, &test));
        if write {
            clear(&root.join(format!("digits-tasks/{name}")))?;
            ft.save(&root.join(format!("digits-tasks/{name}")), false)?;
        }
    }

    // 3. llama-synthetic
    if write {
        eprintln!("llama-synthetic");
        llama::build(&root.join("llama-synthetic"))?;
    }
    println!("{}", lines.join("\n"));
    Ok(())
}

/// Remove a sample folder this program wrote before, so it can be written
/// again: `force` replaces only smelt merge outputs (folders with a
/// smelt-recipe.toml), which samples are not. Only checkpoint files, as
/// smelt names them, are removed; anything else stops the program.
fn clear(out: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    let mut files = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        anyhow::ensure!(
            e.file_type()?.is_file() && smelt::model::is_smelt_file(&name),
            "{}: holds {name}, which this program does not write; not replacing it",
            out.display()
        );
        files.push(e.path());
    }
    for f in files {
        std::fs::remove_file(f)?;
    }
    std::fs::remove_dir(out)?;
    Ok(())
}

fn write_folder(
    out: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: Dtype,
    shard_size: u64,
    files: &[(&str, Vec<u8>)],
) -> anyhow::Result<()> {
    let spec = tensors
        .iter()
        .map(|(n, s, _)| OutputTensor {
            name: n.clone(),
            dtype,
            shape: s.clone(),
        })
        .collect();
    clear(out)?;
    let opts = WriterOptions {
        shard_size,
        force: false,
        inputs: Vec::new(),
        metadata: vec![("format".into(), "pt".into())],
        sync: true,
    };
    let w = Writer::create(out, spec, &opts)?;
    for (i, (_, _, d)) in tensors.iter().enumerate() {
        w.write_f32(i, 0, d)?;
    }
    for (name, bytes) in files {
        w.add_file(name, bytes)?;
    }
    w.finish()?;
    Ok(())
}

mod llama {
    //! A Llama-shaped family with random weights: not a language model.
    use super::{write_folder, Rng};
    use smelt::model::Dtype;
    use std::path::Path;

    pub const HIDDEN: usize = 64;
    pub const INTER: usize = 172;
    pub const LAYERS: usize = 4;
    pub const HEADS: usize = 4;
    pub const KV_HEADS: usize = 2;
    pub const VOCAB: usize = 256;
    const HEAD_DIM: usize = HIDDEN / HEADS;

    fn shapes() -> Vec<(String, Vec<usize>)> {
        let mut v = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN])];
        for l in 0..LAYERS {
            let p = format!("model.layers.{l}.");
            v.push((format!("{p}input_layernorm.weight"), vec![HIDDEN]));
            v.push((
                format!("{p}self_attn.q_proj.weight"),
                vec![HEADS * HEAD_DIM, HIDDEN],
            ));
            v.push((
                format!("{p}self_attn.k_proj.weight"),
                vec![KV_HEADS * HEAD_DIM, HIDDEN],
            ));
            v.push((
                format!("{p}self_attn.v_proj.weight"),
                vec![KV_HEADS * HEAD_DIM, HIDDEN],
            ));
            v.push((
                format!("{p}self_attn.o_proj.weight"),
                vec![HIDDEN, HEADS * HEAD_DIM],
            ));
            v.push((format!("{p}post_attention_layernorm.weight"), vec![HIDDEN]));
            v.push((format!("{p}mlp.gate_proj.weight"), vec![INTER, HIDDEN]));
            v.push((format!("{p}mlp.up_proj.weight"), vec![INTER, HIDDEN]));
            v.push((format!("{p}mlp.down_proj.weight"), vec![HIDDEN, INTER]));
        }
        v.push(("model.norm.weight".into(), vec![HIDDEN]));
        v.push(("lm_head.weight".into(), vec![VOCAB, HIDDEN]));
        v
    }

    /// Heavy-tailed noise: a normal divided by the square root of a scaled
    /// chi-square with 3 degrees of freedom (Student's t, ν = 3).
    fn student_t(rng: &mut Rng) -> f64 {
        let z = rng.normal();
        let chi: f64 = (0..3).map(|_| rng.normal().powi(2)).sum::<f64>() / 3.0;
        z / chi.sqrt().max(1e-3)
    }

    /// Fine-tune recipes: (name, seed, what it changes).
    /// - `ft-attn-early`: attention of layers 0-1, rank-2 structure.
    /// - `ft-mlp-late`: MLP of layers 2-3, rank-2 structure.
    /// - `ft-broad`: everything a little, sharing ft-attn-early's direction on
    ///   q_proj with the opposite sign (sign conflicts for TIES to resolve).
    const FTS: [(&str, u64); 3] = [("ft-attn-early", 11), ("ft-mlp-late", 12), ("ft-broad", 13)];

    fn scale_for(ft: usize, name: &str) -> f64 {
        let layer = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        let attn = name.contains("self_attn");
        let mlp = name.contains(".mlp.");
        match (ft, layer) {
            (0, Some(l)) if attn && l < 2 => 0.02,
            (1, Some(l)) if mlp && l >= 2 => 0.02,
            (2, Some(_)) => 0.006,
            (2, None) => 0.004,
            _ => 0.0005,
        }
    }

    pub fn build(root: &Path) -> anyhow::Result<()> {
        let shapes = shapes();
        let mut rng = Rng::new(7);
        let base: Vec<Vec<f32>> = shapes
            .iter()
            .map(|(n, s)| {
                let numel: usize = s.iter().product();
                if n.ends_with("norm.weight") {
                    (0..numel)
                        .map(|_| 1.0 + 0.05 * rng.normal() as f32)
                        .collect()
                } else {
                    let std = 1.0 / (s[s.len() - 1] as f64).sqrt();
                    (0..numel).map(|_| (std * rng.normal()) as f32).collect()
                }
            })
            .collect();
        // A shared direction (rank-1 per q_proj) that ft 0 and ft 2 use with opposite signs.
        let mut shared_rng = Rng::new(99);
        let shared: Vec<(Vec<f64>, Vec<f64>)> = shapes
            .iter()
            .map(|(_, s)| {
                let r = s[0];
                let c = if s.len() > 1 { s[1] } else { 1 };
                (
                    (0..r).map(|_| shared_rng.normal()).collect(),
                    (0..c).map(|_| shared_rng.normal()).collect(),
                )
            })
            .collect();
        write(root, "base", &shapes, &base)?;
        for (k, (name, seed)) in FTS.iter().enumerate() {
            let mut rng = Rng::new(*seed);
            let mut w = base.clone();
            for (t, (tn, s)) in shapes.iter().enumerate() {
                let scale = scale_for(k, tn);
                let r = s[0];
                let c = if s.len() > 1 { s[1] } else { 1 };
                // rank-2 structure plus heavy-tailed sparse-ish noise
                let u: Vec<Vec<f64>> = (0..2)
                    .map(|_| (0..r).map(|_| rng.normal()).collect())
                    .collect();
                let v: Vec<Vec<f64>> = (0..2)
                    .map(|_| (0..c).map(|_| rng.normal()).collect())
                    .collect();
                let norm = 1.0 / (c as f64).sqrt();
                for i in 0..r {
                    for j in 0..c {
                        let mut d = 0.0;
                        for q in 0..2 {
                            d += u[q][i] * v[q][j] * norm;
                        }
                        d += 0.3 * student_t(&mut rng);
                        if tn.contains("q_proj") && k != 1 {
                            let sign = if k == 0 { 1.0 } else { -3.0 };
                            d += sign * shared[t].0[i] * shared[t].1[j] * norm;
                        }
                        w[t][i * c + j] += (scale * d) as f32;
                    }
                }
            }
            write(root, name, &shapes, &w)?;
        }
        Ok(())
    }

    fn write(
        root: &Path,
        name: &str,
        shapes: &[(String, Vec<usize>)],
        data: &[Vec<f32>],
    ) -> anyhow::Result<()> {
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = shapes
            .iter()
            .zip(data)
            .map(|((n, s), d)| (n.clone(), s.clone(), d.clone()))
            .collect();
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "intermediate_size": INTER,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "vocab_size": VOCAB,
            "max_position_embeddings": 256,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "_smelt_note": "SYNTHETIC: random weights, not a language model (see README.md)",
        });
        let readme = format!(
            "# llama-synthetic/{name}\n\nSYNTHETIC. Random Llama-shaped weights made by \
             `cargo run --release --example make_sample_models`; not a trained model and \
             not a language model. See ../README.md.\n"
        );
        // ~150 kB shards so every model is split into several files.
        write_folder(
            &root.join(name),
            &tensors,
            Dtype::BF16,
            150_000,
            &[
                ("config.json", serde_json::to_vec_pretty(&config)?),
                ("README.md", readme.into_bytes()),
            ],
        )
    }
}
