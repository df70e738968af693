//! The sign-agreement histogram the workbench shows, for one 4096x11008
//! tensor across 3 fine-tunes and a base (bf16 files, mmapped), at a new
//! density each time, as when the user presses `-` on a layer.
//! `cargo run --release --example tui_analysis_bench [DIR]` (writes about
//! 360 MB of bf16 models into DIR, default a temporary folder, once).

use smelt::analysis::{analyze_tensor, TensorDeltas, Trim};
use smelt::merge::{ParamMap, ParamValue, TensorParams};
use smelt::model::{write_small, Dtype, Model};
use smelt::tui::jobs::preview_stats;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

const NAME: &str = "model.layers.0.mlp.up_proj.weight";
const ROWS: usize = 4096;
const COLS: usize = 11008;

/// Deterministic heavy-tailed noise (xorshift; cubes of uniforms).
fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            u * u * u * scale
        })
        .collect()
}

fn ensure(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let n = ROWS * COLS;
    let base = noise(1, n, 0.05);
    for (i, name) in ["base", "ft0", "ft1", "ft2"].iter().enumerate() {
        let p = dir.join(name);
        if p.join("model.safetensors").is_file() {
            continue;
        }
        let w = if i == 0 {
            base.clone()
        } else {
            let d = noise(10 + i as u64, n, 0.01);
            base.iter().zip(&d).map(|(b, d)| b + d).collect()
        };
        write_small(
            &p,
            &[(NAME.to_string(), vec![ROWS, COLS], w)],
            Dtype::BF16,
            &[],
        )?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir: PathBuf = match std::env::args_os().nth(1) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    ensure(&dir)?;
    let base = Model::open(&dir.join("base"))?;
    let models: Vec<Arc<Model>> = ["ft0", "ft1", "ft2"]
        .iter()
        .map(|n| Model::open(&dir.join(n)).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let cancel = AtomicBool::new(false);
    let params_at = |density: f64| {
        let mut m = ParamMap::default();
        m.set("density", ParamValue::Float(density));
        m.set("weight", ParamValue::Float(1.0));
        TensorParams {
            tensor: NAME.into(),
            global: ParamMap::default(),
            models: vec![m.clone(), m.clone(), m],
            seed: 0,
        }
    };
    println!("streamed from the files (what a first look at a tensor costs):");
    for density in [0.5, 0.3] {
        let params = params_at(density);
        let t = Instant::now();
        let s = analyze_tensor(&base, &models, NAME, &params, &cancel)?;
        println!(
            "density {density}: {:.0} ms  (conflict {:.1}%, {} params)",
            t.elapsed().as_secs_f64() * 1e3,
            s.conflict_share() * 100.0,
            s.params
        );
    }
    // The workbench's first answer: evenly spaced rows (about 1M entries).
    let t = Instant::now();
    let s = preview_stats(&base, &models, NAME, &params_at(0.3), &cancel)?.ok_or("no preview")?;
    println!(
        "sampled preview at density 0.3 ({} entries): {:.0} ms  (conflict {:.1}%)",
        s.params,
        t.elapsed().as_secs_f64() * 1e3,
        s.conflict_share() * 100.0
    );
    // What the workbench does on a density change at a selected tensor:
    // task vectors held in memory (read once), re-trimmed.
    let t = Instant::now();
    let deltas = TensorDeltas::load(&base, &models, NAME, &cancel)?;
    println!(
        "task vectors loaded into memory once: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("re-trimmed from memory (each density change after that):");
    for density in [0.5, 0.3, 0.7, 0.2] {
        let trim = Trim::from_params(&params_at(density), models.len());
        let t = Instant::now();
        let s = deltas.stats(&trim, &cancel)?;
        println!(
            "density {density}: {:.0} ms  (conflict {:.1}%)",
            t.elapsed().as_secs_f64() * 1e3,
            s.conflict_share() * 100.0
        );
    }
    Ok(())
}
