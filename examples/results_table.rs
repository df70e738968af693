//! Prints the results tables of `sample_models/README.md`:
//!
//! ```text
//! cargo run --release --example results_table [-- SAMPLE_MODELS_DIR]
//! ```
//!
//! Everything is evaluated on the test split of the bundled digits (line
//! index `i % 5 == 0`, 360 samples); calibration for ZipIt!/permute is the
//! training split. Models are read from disk, merged in memory (digits-zip
//! through `smelt::zip`, digits-tasks through the `merge` kernels on the
//! trunk tensors and `mlp::head_layout` for the heads), written to a
//! temporary folder and loaded back, as `smelt merge` + `smelt eval` would.

use smelt::eval::{classes_label, evaluate, EvalReport};
use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};
use smelt::mlp::{head_layout, Dataset, MlpModel, Samples, Split};
use smelt::model::{write_small, Dtype, Model};
use smelt::zip::{max_depth, zip_merge, ZipMethod};
use std::path::{Path, PathBuf};

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// Joint accuracy over every test sample (so a model that only knows half
/// the digits scores at most about 50).
fn joint_all(r: &EvalReport, test: &Samples) -> f64 {
    r.joint_correct as f64 / test.len().max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("sample_models"), PathBuf::from);
    let ds = Dataset::builtin()?;
    let train = ds.split(Split::Train);
    let test = ds.split(Split::Test);
    digits_zip(&root, &train, &test)?;
    println!();
    digits_tasks(&root, &test)?;
    Ok(())
}

fn digits_zip(root: &Path, train: &Samples, test: &Samples) -> anyhow::Result<()> {
    let a = MlpModel::load(&root.join("digits-zip/digits-0-4"))?;
    let b = MlpModel::load(&root.join("digits-zip/digits-5-9"))?;
    let models = [a.clone(), b.clone()];
    let full = max_depth(&models);
    println!(
        "### digits-zip (test split, 360 samples; joint = argmax over all heads, all 10 digits)\n"
    );
    println!("| model | depth | head 0-4 | head 5-9 | joint |");
    println!("|---|---|---|---|---|");
    for (name, m) in [("A alone (digits-0-4)", &a), ("B alone (digits-5-9)", &b)] {
        let r = evaluate(m, test, name, "test")?;
        let (h04, h59) = if m.heads[0].classes[0] == 0 {
            (pct(r.heads[0].accuracy), "-".to_string())
        } else {
            ("-".to_string(), pct(r.heads[0].accuracy))
        };
        println!(
            "| {name} | - | {h04} | {h59} | {} |",
            pct(joint_all(&r, test))
        );
    }
    let mut rows: Vec<(String, ZipMethod, usize)> = vec![
        ("ensemble (zip depth 0)".into(), ZipMethod::Average, 0),
        (
            "weight average, heads kept".into(),
            ZipMethod::Average,
            full,
        ),
    ];
    for d in 1..=full {
        rows.push((format!("permute, depth {d}"), ZipMethod::Permute, d));
    }
    for d in 1..=full {
        rows.push((
            format!("ZipIt! α=0.5 β=1 (defaults), depth {d}"),
            ZipMethod::Zipit {
                alpha: 0.5,
                beta: 1.0,
            },
            d,
        ));
    }
    for d in 1..=full {
        rows.push((
            format!("ZipIt! α=1 β=0.5, depth {d}"),
            ZipMethod::Zipit {
                alpha: 1.0,
                beta: 0.5,
            },
            d,
        ));
    }
    for (name, method, depth) in rows {
        let m = zip_merge(&models, method, Some(depth), &[], train)?;
        let m = round_trip(&m)?;
        let r = evaluate(&m, test, &name, "test")?;
        println!(
            "| {name} | {depth} | {} | {} | {} |",
            pct(r.heads[0].accuracy),
            pct(r.heads[1].accuracy),
            pct(joint_all(&r, test))
        );
    }
    Ok(())
}

/// Save to a temporary folder and load back (what `smelt eval` sees).
fn round_trip(m: &MlpModel) -> anyhow::Result<MlpModel> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("merged");
    m.save(&out, false)?;
    Ok(MlpModel::load(&out)?)
}

fn params(
    method: Method,
    n: usize,
    tensor: &str,
    global: &[(&str, f64)],
    per: &[(&str, f64)],
) -> TensorParams {
    let spec = method.spec();
    let mut g = ParamMap::default();
    for p in spec.global {
        if let Some(v) = p.default {
            g.set(p.name, v);
        }
    }
    for (k, v) in global {
        g.set(k, ParamValue::Float(*v));
    }
    let mut pm = ParamMap::default();
    for p in spec.per_model {
        if let Some(v) = p.default {
            pm.set(p.name, v);
        }
    }
    for (k, v) in per {
        pm.set(k, ParamValue::Float(*v));
    }
    TensorParams {
        tensor: tensor.to_string(),
        global: g,
        models: vec![pm; n],
        seed: 0,
    }
}

/// (label, method, global parameters, per-model parameters).
type TaskRow = (
    String,
    Method,
    Vec<(&'static str, f64)>,
    Vec<(&'static str, f64)>,
);

fn digits_tasks(root: &Path, test: &Samples) -> anyhow::Result<()> {
    let base = Model::open(&root.join("digits-tasks/base"))?;
    let names = ["ft-0-2", "ft-3-6", "ft-7-9"];
    let fts: Vec<Model> = names
        .iter()
        .map(|n| Model::open(&root.join("digits-tasks").join(n)))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Model> = fts.iter().collect();
    let layout =
        head_layout(&refs)?.ok_or_else(|| anyhow::anyhow!("digits-tasks: no head layout"))?;
    let own: Vec<f64> = fts
        .iter()
        .map(|m| {
            let mlp = MlpModel::from_model(m)?;
            Ok(evaluate(&mlp, test, "", "")?.heads[0].accuracy)
        })
        .collect::<anyhow::Result<_>>()?;
    let own_labels: Vec<String> = fts
        .iter()
        .map(|m| MlpModel::from_model(m).map(|x| classes_label(&x.heads[0].classes)))
        .collect::<Result<_, _>>()?;

    println!(
        "### digits-tasks (heads kept per fine-tune; % of each fine-tune's own head accuracy)\n"
    );
    println!(
        "| merge | {} | mean | joint (10 digits) |",
        own_labels
            .iter()
            .zip(&own)
            .map(|(l, a)| format!("head {l} (own {})", pct(*a)))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|---|---|---|---|");
    let mut rows: Vec<TaskRow> = vec![
        (
            "base trunk, fine-tune heads".into(),
            Method::TaskArithmetic,
            vec![],
            vec![("weight", 0.0)],
        ),
        (
            "average (linear)".into(),
            Method::Linear,
            vec![],
            vec![("weight", 1.0)],
        ),
        (
            "task arithmetic w=0.5".into(),
            Method::TaskArithmetic,
            vec![],
            vec![("weight", 0.5)],
        ),
        (
            "task arithmetic w=1".into(),
            Method::TaskArithmetic,
            vec![],
            vec![("weight", 1.0)],
        ),
    ];
    for d in [0.2, 0.5, 0.8] {
        rows.push((
            format!("TIES density {d}"),
            Method::Ties,
            vec![],
            vec![("weight", 1.0), ("density", d)],
        ));
    }
    for d in [0.2, 0.5, 0.8] {
        rows.push((
            format!("DARE-TIES density {d}"),
            Method::DareTies,
            vec![],
            vec![("weight", 1.0), ("density", d)],
        ));
    }
    // Reference: the three fine-tunes side by side, nothing merged.
    let singles: Vec<MlpModel> = fts
        .iter()
        .map(MlpModel::from_model)
        .collect::<Result<_, _>>()?;
    let ens = zip_merge(
        &singles,
        ZipMethod::Average,
        Some(0),
        &[],
        &Samples::default(),
    )?;
    let r = evaluate(&ens, test, "ensemble", "test")?;
    println!(
        "| fine-tunes side by side (ensemble, nothing merged) | {} | 100.0 | {} |",
        r.heads
            .iter()
            .map(|_| "100.0".to_string())
            .collect::<Vec<_>>()
            .join(" | "),
        pct(joint_all(&r, test))
    );
    for (name, method, global, per) in rows {
        let m = merge_tasks(&base, &fts, &layout, method, &global, &per)?;
        let r = evaluate(&m, test, &name, "test")?;
        let rel: Vec<f64> = r
            .heads
            .iter()
            .zip(&own)
            .map(|(h, o)| h.accuracy / o.max(1e-9))
            .collect();
        let mean = rel.iter().sum::<f64>() / rel.len() as f64;
        println!(
            "| {name} | {} | {} | {} |",
            rel.iter().map(|x| pct(*x)).collect::<Vec<_>>().join(" | "),
            pct(mean),
            pct(joint_all(&r, test))
        );
    }
    Ok(())
}

fn merge_tasks(
    base: &Model,
    fts: &[Model],
    layout: &smelt::mlp::HeadLayout,
    method: Method,
    global: &[(&str, f64)],
    per: &[(&str, f64)],
) -> anyhow::Result<MlpModel> {
    let mut tensors = Vec::new();
    for name in &layout.trunk {
        let info = base
            .tensor(name)
            .ok_or_else(|| anyhow::anyhow!("base lacks {name}"))?;
        let b = base.read_all_f32(name)?;
        let ms: Vec<Vec<f32>> = fts
            .iter()
            .map(|m| m.read_all_f32(name))
            .collect::<Result<_, _>>()?;
        let slices: Vec<&[f32]> = ms.iter().map(|v| v.as_slice()).collect();
        let tp = params(method, fts.len(), name, global, per);
        let mut k = merge::kernel(method, &tp, b.len(), fts.len())?;
        let row_len = *info.shape.last().unwrap_or(&1);
        let base_arg = if matches!(method, Method::Linear) {
            None
        } else {
            Some(b.as_slice())
        };
        let out = merge::merge_slices(k.as_mut(), base_arg, &slices, row_len, 4096);
        tensors.push((name.clone(), info.shape.clone(), out));
    }
    for h in &layout.heads {
        let m = &fts[h.model];
        let info = m
            .tensor(&h.source)
            .ok_or_else(|| anyhow::anyhow!("missing {}", h.source))?;
        tensors.push((
            h.output.clone(),
            info.shape.clone(),
            m.read_all_f32(&h.source)?,
        ));
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("merged");
    write_small(&out, &tensors, Dtype::F32, &[])?;
    std::fs::write(
        out.join("config.json"),
        serde_json::to_vec_pretty(&layout.config)?,
    )?;
    Ok(MlpModel::load(&out)?)
}
