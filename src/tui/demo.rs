//! A hand-filled workbench state: a Llama-shaped family of four models with
//! made-up statistics. No files are read, so snapshot tests and the frame
//! benchmark are deterministic and need no engine. The numbers are
//! illustrative only; nothing here is computed from weights.

use super::state::*;
use crate::analysis::Stats;
use crate::merge::Method;
use crate::model::Group;
use crate::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};

const BLOCKS: &[(&str, &[usize])] = &[
    ("input_layernorm.weight", &[256]),
    ("self_attn.q_proj.weight", &[256, 256]),
    ("self_attn.k_proj.weight", &[64, 256]),
    ("self_attn.v_proj.weight", &[64, 256]),
    ("self_attn.o_proj.weight", &[256, 256]),
    ("post_attention_layernorm.weight", &[256]),
    ("mlp.gate_proj.weight", &[688, 256]),
    ("mlp.up_proj.weight", &[688, 256]),
    ("mlp.down_proj.weight", &[256, 688]),
];

fn tensor(name: String, shape: &[usize]) -> TensorRow {
    TensorRow {
        name,
        shape: shape.to_vec(),
        dtype: "BF16".into(),
    }
}

/// The layer table of the demo family (`n` transformer layers).
pub fn demo_layers(n: usize) -> Vec<LayerRow> {
    let mut v = vec![LayerRow {
        group: Group::Pre,
        params: 1000 * 256,
        tensors: vec![tensor("model.embed_tokens.weight".into(), &[1000, 256])],
    }];
    for l in 0..n {
        let tensors: Vec<TensorRow> = BLOCKS
            .iter()
            .map(|(b, s)| tensor(format!("model.layers.{l}.{b}"), s))
            .collect();
        let params = tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum();
        v.push(LayerRow {
            group: Group::Layer(l),
            params,
            tensors,
        });
    }
    v.push(LayerRow {
        group: Group::Post,
        params: 256 + 1000 * 256,
        tensors: vec![
            tensor("model.norm.weight".into(), &[256]),
            tensor("lm_head.weight".into(), &[1000, 256]),
        ],
    });
    v
}

/// Made-up statistics for 3 task vectors over `params` parameters, shaped by
/// `seed` and `density` so different layers and densities look different.
pub fn fake_stats(params: u64, seed: u64, density: f64) -> Stats {
    fake_stats_of(params, seed, density, 3)
}

/// [`fake_stats`] for `n` task vectors (the first three as there, the
/// others made up alike).
pub fn fake_stats_of(params: u64, seed: u64, density: f64, n: usize) -> Stats {
    let d = density.clamp(0.0, 1.0);
    let conflict = 0.08 + 0.04 * (seed % 7) as f64 * d;
    let none = (1.0 - d).powi(3);
    let all = (1.0 - none - conflict) * (0.35 + 0.05 * (seed % 3) as f64);
    let one = 1.0 - none - conflict - all;
    let c = |x: f64| (x * params as f64).round() as u64;
    let agree = match n {
        3 => vec![c(none), c(one * 0.6), c(one * 0.4 + conflict), c(all)],
        0 | 1 => vec![c(none), c(1.0 - none)],
        _ => std::iter::once(c(none))
            .chain((1..n).map(|_| c((one + conflict) / (n - 1) as f64)))
            .chain(std::iter::once(c(all)))
            .collect(),
    };
    let kept = vec![c(d); n];
    let extra = |i: usize| 0.01 * (i / 3) as f64;
    let norms: Vec<f64> = (0..n)
        .map(|i| [1.25 + seed as f64 * 0.01, 0.98, 1.1][i % 3] + extra(i))
        .collect();
    let cos3 = [[1.0, 0.12, -0.03], [0.12, 1.0, 0.05], [-0.03, 0.05, 1.0]];
    let cos: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match (i, j) {
                    _ if i == j => 1.0,
                    (0..3, 0..3) => cos3[i][j],
                    _ => 0.02 * ((i + j) % 5) as f64 - 0.04,
                })
                .collect()
        })
        .collect();
    let norm_kept: Vec<f64> = (0..n)
        .map(|i| [0.5 + d / 2.0, 0.45 + d / 2.0, 0.55 + d / 2.0 - 0.1][i % 3] - extra(i))
        .collect();
    Stats {
        params,
        agree,
        conflicts: c(conflict),
        kept,
        // The raw sums consistent with the derived fields, so combining
        // groups (as the "all layers" view does) gives sensible numbers.
        dots: (0..n)
            .map(|i| (0..n).map(|j| norms[i] * norms[j] * cos[i][j]).collect())
            .collect(),
        kept_energy: (0..n).map(|i| norm_kept[i] * norms[i] * norms[i]).collect(),
        norm_kept,
        norms,
        cosines: cos,
        tied: vec![0; n],
        nonzero: vec![params; n],
        weights: vec![1.0; n],
        weight_sums: vec![params as f64; n],
        ..Stats::for_method(crate::merge::Method::Ties, n)
    }
}

/// A recipe over the demo family (paths are never opened).
pub fn demo_recipe(root: &Path) -> Recipe {
    demo_recipe_of(root, &["ft-code", "ft-math", "ft-chat"])
}

/// [`demo_recipe`] with these fine-tunes.
fn demo_recipe_of(root: &Path, models: &[&str]) -> Recipe {
    let fam = root.join("llama-synthetic");
    let mut r = Recipe::new(
        Method::Ties,
        Some(fam.join("base")),
        models.iter().map(|m| fam.join(m)).collect(),
    );
    for m in &mut r.models {
        m.params.insert("weight".into(), Value::Number(1.0));
        m.params.insert("density".into(), Value::Number(0.5));
    }
    r
}

/// Summaries for a recipe's models, as if opened.
fn infos(
    recipe: &Recipe,
    dtype: &str,
    params: u64,
    shards: usize,
    layers: usize,
) -> Vec<ModelInfo> {
    recipe
        .base
        .iter()
        .chain(recipe.models.iter().map(|m| &m.path))
        .map(|p| ModelInfo {
            name: display_name(p),
            path: p.clone(),
            dtype: dtype.into(),
            params,
            shards,
            layers,
        })
        .collect()
}

/// The demo state: 4 models, 8 layers, current statistics for every group.
pub fn demo_app() -> App {
    demo_app_of(&["ft-code", "ft-math", "ft-chat"])
}

/// [`demo_app`] with these fine-tunes (and the base) as its inputs.
pub fn demo_app_of(models: &[&str]) -> App {
    let root = PathBuf::from("/demo/sample_models");
    let mut app = App::new(PathBuf::from("/demo/data"), PathBuf::from("/demo/work"));
    let recipe = demo_recipe_of(&root, models);
    let layers = demo_layers(8);
    let total: u64 = layers.iter().map(|l| l.params).sum();
    let infos = infos(&recipe, "BF16", total, 2, 8);
    app.load(&recipe, &infos, layers);
    app.recipe_path = Some(root.join("recipes/llama-ties.toml"));
    fill_stats(&mut app);
    app
}

/// Put current made-up statistics for every group into `app`, as the
/// analysis worker would, using each layer's density for the first model.
pub fn fill_stats(app: &mut App) {
    let groups: Vec<(Group, u64)> = app.doc.layers.iter().map(|l| (l.group, l.params)).collect();
    let first = app.doc.input_slots().first().copied();
    for (i, (g, params)) in groups.into_iter().enumerate() {
        let density = match first {
            Some(slot) => match app
                .doc
                .value_at("density", Some(slot), Some(Scope::of(g)))
                .value
            {
                Some(Value::Number(x)) => x,
                _ => 1.0,
            },
            None => 1.0,
        };
        let key = app.stats_key(&Target::Group(g));
        let n = app.doc.input_slots().len();
        app.stats.insert(
            Target::Group(g),
            Held {
                key,
                result: Ok(Report {
                    stats: fake_stats_of(params, i as u64, density, n),
                    skipped: Vec::new(),
                }),
            },
        );
    }
    app.dirty = true;
}

/// The layer table of a smelt MLP: `layers.{i}.weight` / `.bias` for each
/// of `widths`' consecutive pairs (`[64, 128, 128, 128, 5]`: the digits
/// classifiers, 3 hidden layers and the output layer).
pub fn mlp_layers(widths: &[usize]) -> Vec<LayerRow> {
    widths
        .windows(2)
        .enumerate()
        .map(|(i, w)| LayerRow {
            group: Group::Layer(i),
            params: (w[1] * w[0] + w[1]) as u64,
            tensors: vec![
                TensorRow {
                    name: format!("layers.{i}.weight"),
                    shape: vec![w[1], w[0]],
                    dtype: "F32".into(),
                },
                TensorRow {
                    name: format!("layers.{i}.bias"),
                    shape: vec![w[1]],
                    dtype: "F32".into(),
                },
            ],
        })
        .collect()
}

/// The ZipIt! demo: the two `digits-zip` classifiers (0-4 and 5-9), method
/// zipit at the sample recipe's values (depth -1, alpha 0.5, beta 1). No
/// base, so no statistics.
pub fn demo_zip_app() -> App {
    let fam = PathBuf::from("/demo/sample_models/digits-zip");
    let mut app = App::new(PathBuf::from("/demo/data"), PathBuf::from("/demo/work"));
    let mut recipe = Recipe::new(
        Method::Zipit,
        None,
        vec![fam.join("digits-0-4"), fam.join("digits-5-9")],
    );
    recipe.params.insert("depth".into(), Value::Number(-1.0));
    recipe.params.insert("alpha".into(), Value::Number(0.5));
    recipe.params.insert("beta".into(), Value::Number(1.0));
    let layers = mlp_layers(&[64, 128, 128, 128, 5]);
    let total: u64 = layers.iter().map(|l| l.params).sum();
    let infos = infos(&recipe, "F32", total, 1, 4);
    app.load(&recipe, &infos, layers);
    app
}

/// A made-up accuracy report (per head, joint) for snapshots.
pub fn demo_report(model: &str, heads: &[(&[u32], f64)], joint: f64) -> crate::eval::EvalReport {
    crate::eval::EvalReport {
        model: model.into(),
        data: "digits (test split)".into(),
        heads: heads
            .iter()
            .enumerate()
            .map(|(h, (c, a))| crate::eval::HeadAccuracy {
                head: h,
                classes: c.to_vec(),
                correct: (a * 180.0).round() as usize,
                total: 180,
                accuracy: *a,
            })
            .collect(),
        joint_correct: (joint * 360.0).round() as usize,
        joint_total: 360,
        joint_accuracy: joint,
    }
}
