//! Merge speed and memory, each figure a ratio to the cost of merely
//! reading the inputs, measured in the same run.
//!
//! ```sh
//! cargo run --release --example bench_merge              # 169M-parameter family
//! cargo run --release --example bench_merge -- --big     # also one 32768x16384 tensor
//! cargo run --release --example bench_merge -- --huge    # also a 1.1B-parameter family
//! cargo run --release --example bench_merge -- --no-cold # skip the cold-cache rows
//! cargo run --release --example bench_merge -- --runs 1   # one run per row
//! ```
//!
//! It writes model families (a base and three fine-tunes, bf16) into a
//! scratch folder, then for `linear` and `ties` reports wall time, input
//! GB per second, the ratio to its floor and the peak resident memory of
//! the merging process. Floors: `cat` of every input file to /dev/null
//! (warm: page cache full; cold: after dropping it), and `read`, every
//! input converted to f32 once on all cores the way the engine reads.
//! The `-nosync` rows skip flushing the output to disk (`smelt merge
//! --no-sync`); cold rows drop the page cache (`sync; echo 3 >
//! /proc/sys/vm/drop_caches`, as root) before each run and are skipped
//! when that is not allowed. Each measurement runs in a child process
//! (this example re-executed, or `cat`) so that its peak RSS is its own.
//! Every row is measured once per round, three rounds (`--runs N`), and
//! each row's best time is reported: a floor and the merges divided by it
//! are sampled over the same minutes.

use smelt::engine::{self, Options};
use smelt::merge::Method;
use smelt::model::{Dtype, Model, OutputTensor, Writer, WriterOptions};
use smelt::plan::Plan;
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Llama-shaped: hidden, layers, intermediate, vocab.
#[derive(Clone, Copy)]
struct Shape {
    hidden: usize,
    layers: usize,
    inter: usize,
    vocab: usize,
}

/// 169M parameters, 338 MB in bf16.
const SMALL: Shape = Shape {
    hidden: 1024,
    layers: 8,
    inter: 2816,
    vocab: 32000,
};

/// TinyLlama's shape: 1.1B parameters, 2.2 GB in bf16.
const HUGE: Shape = Shape {
    hidden: 2048,
    layers: 22,
    inter: 5632,
    vocab: 32000,
};

/// Runs per row (the best is reported), unless `--runs N` says.
const RUNS: usize = 3;

const NAMES: [&str; 4] = ["base", "ft0", "ft1", "ft2"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]);
    }
    let flag = |f: &str| args.iter().any(|a| a == f);
    let cold = !flag("--no-cold") && can_drop_caches();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(RUNS)
        .max(1);
    if !cold {
        println!("# cold-cache rows skipped (--no-cold, or not allowed to drop the page cache)");
    }
    let root = std::env::temp_dir().join("smelt-bench");
    std::fs::create_dir_all(&root)?;
    println!(
        "# {} cores; every ratio is to a floor measured in this run",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let family = root.join("llama169m");
    if !family.join("ft2").exists() {
        eprintln!(
            "writing the 169M-parameter family to {} ...",
            family.display()
        );
        write_family(&family, &llama_tensors(SMALL), 100_000_000, SMALL)?;
    }
    println!(
        "\n# family: base + 3 fine-tunes, Llama-shaped, 169M parameters each, bf16, 100 MB shards"
    );
    bench_family(&family, &root, cold, runs)?;

    if flag("--big") {
        let family = root.join("one-tensor");
        if !family.join("ft2").exists() {
            eprintln!("writing the single-1GB-tensor family ...");
            let t = vec![OutputTensor {
                name: "model.layers.0.mlp.big.weight".into(),
                dtype: Dtype::BF16,
                shape: vec![32768, 16384],
            }];
            write_family(&family, &t, 5_000_000_000, SMALL)?;
        }
        println!("\n# family: base + 3 fine-tunes, one 32768x16384 bf16 tensor (1.07 GB) each");
        bench_family(&family, &root, cold, runs)?;
    }
    if flag("--huge") {
        let family = root.join("llama1b");
        if !family.join("ft2").exists() {
            // 8.8 GB of inputs and 2.2 GB of output: refuse rather than
            // fill a shared disk.
            let free = free_gb(&root);
            if free < 14.0 {
                return Err(format!(
                    "--huge needs about 14 GB free in {} ({free:.1} GB free)",
                    root.display()
                )
                .into());
            }
            eprintln!(
                "writing the 1.1B-parameter family to {} ...",
                family.display()
            );
            write_family(&family, &llama_tensors(HUGE), 2_000_000_000, HUGE)?;
        }
        println!("\n# family: base + 3 fine-tunes, TinyLlama-shaped, 1.1B parameters each, bf16, 2 GB shards");
        bench_family(&family, &root, cold, runs)?;
    }
    Ok(())
}

/// Free space (GB) of the file system holding `dir`, from `df` (0 when
/// it cannot tell).
fn free_gb(dir: &Path) -> f64 {
    std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let kb: f64 = text
                .lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()?;
            Some(kb * 1024.0 / 1e9)
        })
        .unwrap_or(0.0)
}

/// Whether this process may drop the page cache (root, and the file is
/// writable here).
fn can_drop_caches() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
}

/// Write dirty pages out, then drop the page cache.
fn drop_caches() -> Result<(), Box<dyn std::error::Error>> {
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")?;
    Ok(())
}

/// Every input file of the family (the data the floors read).
fn input_files(family: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    for n in NAMES {
        for e in std::fs::read_dir(family.join(n))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn bench_family(
    family: &Path,
    root: &Path,
    cold: bool,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let files = input_files(family)?;
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let gb = bytes as f64 / 1e9;
    println!("# inputs: {gb:.2} GB in {} files", files.len());
    println!("| what | cache | wall s | s per input GB | / floor | floor | peak RSS MB |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows: Vec<(&str, bool)> = [
        "cat",
        "read",
        "linear",
        "ties",
        "linear-nosync",
        "ties-nosync",
    ]
    .iter()
    .map(|w| (*w, false))
    .collect();
    if cold {
        rows.extend(
            ["cat", "linear", "ties", "linear-nosync", "ties-nosync"]
                .iter()
                .map(|w| (*w, true)),
        );
    }
    // Rounds outside, rows inside: each round measures every row once, so
    // a floor and the merges it divides are sampled over the same minutes
    // (this machine's virtual disk drifts by 2x and more between minutes;
    // measuring each row's runs back to back compared a merge with a `cat`
    // of another minute). Best of the rounds (wall time; the largest peak
    // RSS), so that one hiccup of a shared machine does not decide a row.
    let mut best = vec![(f64::INFINITY, 0f64); rows.len()];
    for _ in 0..runs {
        // Warm the page cache (and check the files read).
        let _ = run_cat(&files)?;
        for (&(what, is_cold), best) in rows.iter().zip(&mut best) {
            // Per process: another bench may share the families' folder.
            let out = root.join(format!("out-{}-{what}", std::process::id()));
            let _ = std::fs::remove_dir_all(&out);
            if is_cold {
                drop_caches()?;
            }
            let (s, r) = if what == "cat" {
                run_cat(&files)?
            } else {
                run_child(&exe, what, family, &out)?
            };
            let _ = std::fs::remove_dir_all(&out);
            *best = (best.0.min(s), best.1.max(r));
        }
    }
    let floor_of = |cold: bool| {
        rows.iter()
            .zip(&best)
            .find(|((w, c), _)| *w == "cat" && *c == cold)
            .map_or(f64::NAN, |(_, b)| b.0)
    };
    for (&(what, is_cold), &(secs, rss)) in rows.iter().zip(&best) {
        let (floor, label) = if is_cold {
            (floor_of(true), "cold cat")
        } else {
            (floor_of(false), "warm cat")
        };
        println!(
            "| {what} | {} | {secs:.3} | {:.3} | {:.2}x | {label} | {} |",
            if is_cold { "cold" } else { "warm" },
            secs / gb,
            secs / floor,
            if rss > 0.0 {
                format!("{rss:.0}")
            } else {
                "-".into()
            },
        );
    }
    Ok(())
}

/// `cat` every file to /dev/null: seconds (its RSS is not reported).
fn run_cat(files: &[PathBuf]) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let st = std::process::Command::new("cat")
        .args(files)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !st.success() {
        return Err("cat failed".into());
    }
    Ok((t.elapsed().as_secs_f64(), 0.0))
}

/// One measurement in a child process: "seconds peak_rss_mb".
fn run_child(
    exe: &Path,
    what: &str,
    family: &Path,
    out: &Path,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let o = std::process::Command::new(exe)
        .arg("--child")
        .arg(what)
        .arg(family)
        .arg(out)
        .output()?;
    if !o.status.success() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut it = text.split_whitespace();
    let s: f64 = it.next().ok_or("no time")?.parse()?;
    let r: f64 = it.next().ok_or("no rss")?.parse()?;
    Ok((s, r))
}

/// In a child: do one thing, print "seconds peak_rss_mb".
fn child(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let what = args.first().ok_or("what")?;
    let family = PathBuf::from(args.get(1).ok_or("family")?);
    let out = PathBuf::from(args.get(2).ok_or("out")?);
    let names = NAMES;
    let secs = if what == "read" {
        let models: Vec<Model> = names
            .iter()
            .map(|n| Model::open(&family.join(n)))
            .collect::<Result<_, _>>()?;
        let t = Instant::now();
        read_all(&models)?;
        t.elapsed().as_secs_f64()
    } else {
        let (name, sync) = match what.strip_suffix("-nosync") {
            Some(m) => (m, false),
            None => (what.as_str(), true),
        };
        let method = Method::from_name(name).ok_or("method")?;
        let mut recipe = Recipe::new(
            method,
            (method != Method::Linear).then(|| family.join("base")),
            names[1..].iter().map(|n| family.join(n)).collect(),
        );
        for m in &mut recipe.models {
            m.params.insert("weight".into(), Value::Number(1.0 / 3.0));
            if method == Method::Ties {
                m.params.insert("density".into(), Value::Number(0.3));
            }
        }
        let t = Instant::now();
        let plan = Plan::build(&recipe)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || for _ in rx.iter() {});
        let mut opts = Options::new(&out);
        opts.sync = sync;
        engine::run(&plan, &opts, &tx, &AtomicBool::new(false))?;
        t.elapsed().as_secs_f64()
    };
    println!("{secs} {}", peak_rss_mb());
    Ok(())
}

/// The floor: every byte of every input tensor converted to f32 once, on
/// all cores, the way the engine reads them.
fn read_all(models: &[Model]) -> Result<(), smelt::model::ModelError> {
    use rayon::prelude::*;
    let jobs: Vec<(&Model, &smelt::model::TensorInfo)> = models
        .iter()
        .flat_map(|m| m.tensors().iter().map(move |t| (m, t)))
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

fn llama_tensors(sh: Shape) -> Vec<OutputTensor> {
    let Shape {
        hidden,
        layers,
        inter,
        vocab,
    } = sh;
    let t = |name: String, shape: Vec<usize>| OutputTensor {
        name,
        dtype: Dtype::BF16,
        shape,
    };
    let mut v = vec![t("model.embed_tokens.weight".into(), vec![vocab, hidden])];
    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            v.push(t(format!("{p}self_attn.{n}.weight"), vec![hidden, hidden]));
        }
        v.push(t(format!("{p}mlp.gate_proj.weight"), vec![inter, hidden]));
        v.push(t(format!("{p}mlp.up_proj.weight"), vec![inter, hidden]));
        v.push(t(format!("{p}mlp.down_proj.weight"), vec![hidden, inter]));
        v.push(t(format!("{p}input_layernorm.weight"), vec![hidden]));
        v.push(t(
            format!("{p}post_attention_layernorm.weight"),
            vec![hidden],
        ));
    }
    v.push(t("model.norm.weight".into(), vec![hidden]));
    v.push(t("lm_head.weight".into(), vec![vocab, hidden]));
    v
}

/// A base with N(0, 0.02)-ish weights and three fine-tunes that add a
/// heavy-tailed task vector (mostly small, about 10% large entries).
fn write_family(
    dir: &Path,
    tensors: &[OutputTensor],
    shard: u64,
    sh: Shape,
) -> Result<(), Box<dyn std::error::Error>> {
    let Shape {
        hidden,
        layers,
        inter,
        vocab,
    } = sh;
    std::fs::create_dir_all(dir)?;
    for (mi, name) in ["base", "ft0", "ft1", "ft2"].iter().enumerate() {
        let opts = WriterOptions {
            shard_size: shard,
            force: true,
            inputs: Vec::new(),
            metadata: vec![("format".into(), "pt".into())],
            sync: false,
        };
        let w = Writer::create(&dir.join(name), tensors.to_vec(), &opts)?;
        let config = format!(
            "{{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": {hidden}, \"intermediate_size\": {inter}, \"num_hidden_layers\": {layers}, \"vocab_size\": {vocab}, \"torch_dtype\": \"bfloat16\"}}\n"
        );
        w.add_file("config.json", config.as_bytes())?;
        for (ti, t) in tensors.iter().enumerate() {
            let n: usize = t.shape.iter().product();
            let step = 1 << 20;
            let mut buf = vec![0f32; step.min(n)];
            let mut start = 0;
            while start < n {
                let end = (start + step).min(n);
                for (k, x) in buf[..end - start].iter_mut().enumerate() {
                    let i = (start + k) as u64;
                    let base = gauss(hash(i, ti as u64, 0)) * 0.02;
                    let delta = if mi == 0 {
                        0.0
                    } else {
                        let h = hash(i, ti as u64, mi as u64);
                        let big = (h >> 60) == 0; // 1 in 16
                        gauss(h) * if big { 0.01 } else { 0.001 }
                    };
                    *x = base + delta;
                }
                w.write_f32(ti, start, &buf[..end - start])?;
                start = end;
            }
        }
        w.finish()?;
    }
    Ok(())
}

/// 64 random bits for element `i` of tensor `t` of model `m`: one
/// splitmix64 step (the shared `smelt::mlp::splitmix64`) from a state made
/// of the three, so any element can be made on any thread.
fn hash(i: u64, t: u64, m: u64) -> u64 {
    let mut z = i
        .wrapping_add(t.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(m.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7));
    smelt::mlp::splitmix64(&mut z)
}

/// A cheap approximately normal variate from 64 random bits (sum of four
/// uniforms, centred and scaled).
fn gauss(h: u64) -> f32 {
    let u = |s: u32| ((h >> s) & 0xFFFF) as f32 / 65535.0;
    (u(0) + u(16) + u(32) + u(48) - 2.0) * 1.732
}
