//! What the workbench's sign-agreement panel costs, with each target
//! printed beside its figure.
//!
//! ```sh
//! cargo run --release --example bench_merge           # writes the 169M family once
//! cargo run --release --example tui_analysis_bench [DIR]
//! ```
//!
//! 1. One 4096x11008 tensor across 3 fine-tunes and a base (bf16, written
//!    into DIR, default a temporary folder), page cache warm: the sampled
//!    preview, then the exact statistics at each density, the first of
//!    which also sums the raw task vectors (targets: ties 150 ms, two
//!    sweeps over the inputs; dare_ties 300 ms, whose rescale needs an L1
//!    sweep before the counting one). The TIES merge of the same tensor is
//!    timed in the same run, for scale.
//! 2. The 169M-parameter bf16 family that `bench_merge` writes to
//!    `$TMPDIR/smelt-bench/llama169m`, in child processes (this example
//!    re-executed) so that each peak RSS is its own:
//!    - every layer group's statistics after a recipe-wide density change
//!      (what the whole-model panel needs; target 1 s), one request per
//!      group and all in one request, beside the time to merely read every
//!      input once on all cores (the read floor) and the TIES merge, in the
//!      same process;
//!    - one layer's change (a per-layer override) until every group is
//!      current again (target 150 ms);
//!    - a re-trim of the largest tensor (the 32000x1024 embedding), ties
//!      and dare_ties;
//!    - peak RSS of a process that browses every tensor one after another,
//!      preview and exact statistics each (target under 256 MB).

use smelt::analysis::{Analyzer, Inputs, Target};
use smelt::merge::Method;
use smelt::model::{write_small, Dtype, Group, Model};
use smelt::recipe::{Override, Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

const NAME: &str = "model.layers.0.mlp.up_proj.weight";
const ROWS: usize = 4096;
const COLS: usize = 11008;

/// What the workbench gives its analyzer (`ANALYSIS_CACHE_BYTES`).
const CACHE_BYTES: usize = 96 << 20;

/// Deterministic heavy-tailed noise (the shared splitmix64 stream; cubes
/// of uniforms).
fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let r = smelt::mlp::splitmix64(&mut s);
            let u = (r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
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

fn open(dir: &Path) -> Result<Inputs, Box<dyn std::error::Error>> {
    let m = |n: &str| Model::open(&dir.join(n)).map(Arc::new);
    Ok(Inputs {
        reference: m("base")?,
        models: vec![m("ft0")?, m("ft1")?, m("ft2")?],
    })
}

fn recipe(method: Method, dir: &Path, density: f64) -> Recipe {
    let mut r = Recipe::new(
        method,
        Some(dir.join("base")),
        ["ft0", "ft1", "ft2"].iter().map(|n| dir.join(n)).collect(),
    );
    for m in &mut r.models {
        m.params.insert("weight".into(), Value::Number(1.0));
        m.params.insert("density".into(), Value::Number(density));
    }
    r
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]);
    }
    let tmp;
    let dir: PathBuf = match args.get(1) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    one_tensor(&dir)?;
    let family = std::env::temp_dir().join("smelt-bench/llama169m");
    if !family.join("ft2").exists() {
        println!(
            "\n(no 169M family at {}: run `cargo run --release --example bench_merge` once)",
            family.display()
        );
        return Ok(());
    }
    println!("\n# 169M-parameter bf16 family (base + 3 fine-tunes, 8 layers), ties");
    let exe = std::env::current_exe()?;
    for what in ["groups", "browse"] {
        let o = std::process::Command::new(&exe)
            .args(["--child", what])
            .arg(&family)
            .output()?;
        if !o.status.success() {
            return Err(format!("{what}: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        print!("{}", String::from_utf8_lossy(&o.stdout));
    }
    Ok(())
}

fn one_tensor(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    ensure(dir)?;
    let inputs = open(dir)?;
    let cancel = AtomicBool::new(false);
    let target = Target::Tensor(NAME.into());
    println!("# one 4096x11008 bf16 tensor, 3 fine-tunes");
    let merge = merge_ms(&recipe(Method::Ties, dir, 0.3))?;
    println!("(the TIES merge of this tensor takes {merge:.0} ms in this run)");
    for method in [Method::Ties, Method::DareTies] {
        let mut an = Analyzer::new(CACHE_BYTES);
        let t = Instant::now();
        let p = an.preview(&inputs, &recipe(method, dir, 0.3), NAME, &cancel)?;
        let p = p.ok_or("no preview")?;
        println!(
            "{:<9} sampled preview ({} entries): {:.0} ms  (conflict {:.1}%)",
            method.name(),
            p.params,
            ms(t),
            p.conflict_share() * 100.0
        );
        let goal = if method == Method::Ties { 150 } else { 300 };
        for density in [0.5, 0.3, 0.7, 0.2] {
            let t = Instant::now();
            let s = an
                .analyze(&inputs, &recipe(method, dir, density), &target, &cancel)?
                .stats;
            println!(
                "{:<9} density {density}: {:.0} ms  [target {goal} ms]  (conflict {:.1}%, kept {:.1}%)",
                method.name(),
                ms(t),
                s.conflict_share() * 100.0,
                s.kept_share() * 100.0
            );
        }
    }
    Ok(())
}

fn groups_of(inputs: &Inputs) -> Vec<Target> {
    let mut g: Vec<Group> = inputs
        .reference
        .tensors()
        .iter()
        .map(|t| t.place.group)
        .collect();
    g.dedup();
    g.into_iter().map(Target::Group).collect()
}

/// In a child: one measurement, printed as lines.
fn child(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let what = args.first().ok_or("what")?;
    let family = PathBuf::from(args.get(1).ok_or("family")?);
    let inputs = open(&family)?;
    let cancel = AtomicBool::new(false);
    let groups = groups_of(&inputs);
    let mut an = Analyzer::new(CACHE_BYTES);
    match what.as_str() {
        "groups" => {
            let t = Instant::now();
            read_all(&inputs)?;
            let floor = ms(t);
            // The workbench's first view, then a recipe-wide density change
            // (every tensor changes), one request per layer group as the
            // workbench asks.
            for g in &groups {
                an.analyze(&inputs, &recipe(Method::Ties, &family, 0.5), g, &cancel)?;
            }
            let r = recipe(Method::Ties, &family, 0.3);
            let t = Instant::now();
            for g in &groups {
                an.analyze(&inputs, &r, g, &cancel)?;
            }
            let each = ms(t);
            let t = Instant::now();
            an.analyze_many(
                &inputs,
                &recipe(Method::Ties, &family, 0.4),
                &groups,
                &cancel,
            )?;
            let many = ms(t);
            let merge = merge_ms(&r)?;
            println!(
                "every group after a density change, one request per group: {each:.0} ms  [target 1000 ms]"
            );
            println!(
                "  = {:.2}x the read floor ({floor:.0} ms), {:.2}x the TIES merge ({merge:.0} ms) in this run  [target 1.67x the merge]",
                each / floor,
                each / merge
            );
            println!(
                "the same in one request (analyze_many): {many:.0} ms  ({:.2}x the read floor)",
                many / floor
            );
            // One layer's density changes: every group current again.
            let mut one = r.clone();
            let mut o = Override {
                scope: smelt::recipe::OverrideScope::Layers(3, 3),
                params: Default::default(),
                models: Default::default(),
            };
            o.params.insert("density".into(), Value::Number(0.6));
            one.overrides.push(o);
            let t = Instant::now();
            for g in &groups {
                an.analyze(&inputs, &one, g, &cancel)?;
            }
            println!(
                "one layer's change, every group current: {:.0} ms  [target 150 ms]",
                ms(t)
            );
            for method in [Method::Ties, Method::DareTies] {
                let name = "model.embed_tokens.weight";
                let t = Instant::now();
                an.analyze(
                    &inputs,
                    &recipe(method, &family, 0.25),
                    &Target::Tensor(name.into()),
                    &cancel,
                )?;
                println!(
                    "re-trim of the 32000x1024 embedding ({}): {:.0} ms",
                    method.name(),
                    ms(t)
                );
            }
        }
        "browse" => {
            let r = recipe(Method::Ties, &family, 0.3);
            let t = Instant::now();
            let mut n = 0;
            for info in inputs.reference.tensors() {
                let _ = an.preview(&inputs, &r, &info.name, &cancel)?;
                an.analyze(&inputs, &r, &Target::Tensor(info.name.clone()), &cancel)?;
                n += 1;
            }
            println!(
                "browsing all {n} tensors (preview + exact each): {:.0} ms, peak RSS {:.0} MB  [target < 256 MB]",
                ms(t),
                peak_rss_mb()
            );
        }
        _ => return Err("unknown child".into()),
    }
    Ok(())
}

/// Wall time of the TIES merge of the family (no fsync), as `bench_merge`
/// runs it.
fn merge_ms(r: &Recipe) -> Result<f64, Box<dyn std::error::Error>> {
    let out = tempfile::tempdir()?;
    let t = Instant::now();
    let plan = smelt::plan::Plan::build(r)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || for _ in rx.iter() {});
    let mut opts = smelt::engine::Options::new(out.path().join("merged"));
    opts.sync = false;
    smelt::engine::run(&plan, &opts, &tx, &AtomicBool::new(false))?;
    Ok(ms(t))
}

/// Every byte of every input converted to f32 once, on all cores, the way
/// the analysis reads them.
fn read_all(inputs: &Inputs) -> Result<(), smelt::model::ModelError> {
    use rayon::prelude::*;
    let models: Vec<&Model> = std::iter::once(inputs.reference.as_ref())
        .chain(inputs.models.iter().map(|m| m.as_ref()))
        .collect();
    let jobs: Vec<(&Model, &smelt::model::TensorInfo)> = models
        .iter()
        .flat_map(|m| m.tensors().iter().map(move |t| (*m, t)))
        .collect();
    let sum: f64 = jobs
        .par_iter()
        .map(|(m, t)| {
            let n = t.numel();
            let step = smelt::engine::CHUNK_ELEMS;
            let mut buf = vec![0f32; step.min(n)];
            let mut s = 0f64;
            let mut start = 0;
            while start < n {
                let end = (start + step).min(n);
                m.read_f32(t, start, &mut buf[..end - start])?;
                s += f64::from(buf[0]);
                start = end;
            }
            Ok(s)
        })
        .collect::<Result<Vec<f64>, _>>()?
        .into_iter()
        .sum();
    std::hint::black_box(sum);
    Ok(())
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
