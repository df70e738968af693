//! `smelt extract-lora` and [`smelt::extract`]: an exactly low-rank
//! fine-tune recovered to f32 rounding, parity with mergekit-extract-lora
//! 0.1.5 on the bf16 tiny Llama family (goldens in
//! tests/fixtures/extract_lora/, made by its make.py), the round trip
//! through smelt's own `base+adapter` reader, and refusals of bad input.

mod common;
use common::{smelt, text};
use smelt::extract::{self, Event, ExtractError, Options};
use smelt::model::{Adapter, Dtype, Model};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn bf16_models() -> PathBuf {
    common::fixtures().join("models_bf16")
}

fn goldens() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/extract_lora/errors.json");
    serde_json::from_slice(&std::fs::read(p).expect("errors.json")).expect("json")
}

fn quiet(o: &Options) -> Result<extract::Report, ExtractError> {
    extract::run(o, &mut |_| {}, &AtomicBool::new(false))
}

/// `model − base`'s relative error through `base+adapter` as smelt reads
/// it: `‖(base+adapter) − model‖ / ‖model − base‖` over `tensors`.
fn round_trip_error(base: &Path, model: &Path, adapter: &Path, tensors: &[String]) -> f64 {
    let joined = format!("{}+{}", base.display(), adapter.display());
    let applied = Model::open(Path::new(&joined)).expect("base+adapter opens");
    let ft = Model::open(model).expect("fine-tune");
    let b = Model::open(base).expect("base");
    let (mut num, mut den) = (0f64, 0f64);
    for t in tensors {
        let x = applied.read_all_f32(t).expect("adapted");
        let y = ft.read_all_f32(t).expect("fine-tune");
        let z = b.read_all_f32(t).expect("base");
        for ((x, y), z) in x.iter().zip(&y).zip(&z) {
            num += (f64::from(*x) - f64::from(*y)).powi(2);
            den += (f64::from(*y) - f64::from(*z)).powi(2);
        }
    }
    (num / den).sqrt()
}

/// A tiny Llama-shaped pair in f32 whose task vectors are exactly rank 3
/// (and an embedding and norm that change arbitrarily).
fn low_rank_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let mut base = Vec::new();
    let mut ft = Vec::new();
    let mut push = |name: &str, shape: Vec<usize>, delta_rank: Option<usize>| {
        let n: usize = shape.iter().product();
        let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
        let f: Vec<f32> = match delta_rank {
            Some(r) => {
                let (rows, cols) = (shape[0], shape[1]);
                let u: Vec<f32> = (0..rows * r).map(|_| rnd()).collect();
                let v: Vec<f32> = (0..r * cols).map(|_| rnd()).collect();
                (0..n)
                    .map(|k| {
                        let (i, j) = (k / cols, k % cols);
                        let d: f32 = (0..r).map(|q| u[i * r + q] * v[q * cols + j]).sum();
                        b[k] + 0.1 * d
                    })
                    .collect()
            }
            None => b.iter().map(|x| x + rnd() * 0.01).collect(),
        };
        base.push((name.to_string(), shape.clone(), b));
        ft.push((name.to_string(), shape, f));
    };
    push("model.embed_tokens.weight", vec![32, 16], None);
    for l in 0..2 {
        push(
            &format!("model.layers.{l}.self_attn.q_proj.weight"),
            vec![16, 16],
            Some(3),
        );
        push(
            &format!("model.layers.{l}.mlp.down_proj.weight"),
            vec![16, 24],
            Some(3),
        );
        push(
            &format!("model.layers.{l}.input_layernorm.weight"),
            vec![16],
            None,
        );
    }
    push("model.norm.weight", vec![16], None);
    push("lm_head.weight", vec![32, 16], None);
    let (bp, fp) = (dir.join("base"), dir.join("ft"));
    smelt::model::write_small(&bp, &base, Dtype::F32, &[]).expect("base");
    smelt::model::write_small(&fp, &ft, Dtype::F32, &[]).expect("ft");
    (bp, fp)
}

#[test]
fn exactly_low_rank_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (base, ft) = low_rank_pair(dir.path());
    let out = dir.path().join("adapter");
    let mut o = Options::new(ft.to_str().unwrap(), base.to_str().unwrap(), &out);
    o.max_rank = 8;
    o.sv_epsilon = 1e-5;
    o.sync = false;
    let mut events = Vec::new();
    let report = extract::run(&o, &mut |e| events.push(e), &AtomicBool::new(false)).unwrap();
    assert_eq!(report.modules.len(), 4);
    for m in &report.modules {
        assert_eq!(
            m.rank, 3,
            "{}: epsilon keeps exactly the 3 real directions",
            m.name
        );
        assert!(m.error < 2e-6, "{}: {}", m.name, m.error);
    }
    assert!(report.error < 2e-6);
    assert_eq!(report.rank, 3);
    assert!(matches!(
        events.first(),
        Some(Event::Started {
            modules: 4,
            saved: 5
        })
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Module { .. }))
            .count(),
        4
    );
    // smelt reads it back: the factored tensors within f32 rounding, the
    // saved ones exactly.
    let adapter = Adapter::open(&out).unwrap();
    assert_eq!(adapter.rank(), 3);
    assert_eq!(adapter.alpha(), 3.0);
    let joined = format!("{}+{}", base.display(), out.display());
    let applied = Model::open(Path::new(&joined)).unwrap();
    let f = Model::open(&ft).unwrap();
    for t in f.tensors() {
        let x = applied.read_all_f32(&t.name).unwrap();
        let y = f.read_all_f32(&t.name).unwrap();
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{}: {worst}", t.name);
    }
}

#[test]
fn matches_mergekit_extract_lora() {
    let g = goldens();
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    for (case, want) in g.as_object().unwrap() {
        let ft = m.join(want["fine_tune"].as_str().unwrap());
        let out = dir.path().join(case);
        let mut o = Options::new(ft.to_str().unwrap(), m.join("base").to_str().unwrap(), &out);
        o.sync = false;
        let args: Vec<&str> = want["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "--max-rank" => o.max_rank = it.next().unwrap().parse().unwrap(),
                "--sv-epsilon" => o.sv_epsilon = it.next().unwrap().parse().unwrap(),
                "--no-distribute-scale" => o.distribute_scale = false,
                "--embed-lora" => o.embed_lora = true,
                "--save-module" => o.modules_to_save.push(it.next().unwrap().to_string()),
                "-e" => o.exclude.push(it.next().unwrap().to_string()),
                "-i" => o.include.push(it.next().unwrap().to_string()),
                "--skip-undecomposable" => o.skip_undecomposable = true,
                other => panic!("{case}: option {other} not handled by this test"),
            }
        }
        let r = quiet(&o).unwrap_or_else(|e| panic!("{case}: {e}"));
        let overall = want["overall"].as_f64().unwrap();
        assert!(
            (r.error - overall).abs() < 1e-3,
            "{case}: overall error {} vs mergekit's {overall}",
            r.error
        );
        assert_eq!(r.rank as u64, want["r"].as_u64().unwrap(), "{case}: r");
        let modules = want["modules"].as_object().unwrap();
        assert_eq!(r.modules.len(), modules.len(), "{case}: modules");
        for mr in &r.modules {
            let w = &modules[&mr.name];
            assert_eq!(
                mr.rank as u64,
                w["rank"].as_u64().unwrap(),
                "{case} {}",
                mr.name
            );
            let e = w["error"].as_f64().unwrap();
            assert!(
                (mr.error - e).abs() < 3e-3,
                "{case} {}: error {} vs mergekit's {e}",
                mr.name,
                mr.error
            );
        }
        // The same files, tensor names, config.
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap())
                .unwrap();
        for k in ["r", "lora_alpha", "rank_pattern", "alpha_pattern"] {
            let want_v = if k == "lora_alpha" {
                &want["r"]
            } else if k == "alpha_pattern" {
                &want["rank_pattern"]
            } else {
                &want[k]
            };
            assert_eq!(&cfg[k], want_v, "{case}: {k}");
        }
        let mut to_save: Vec<String> =
            serde_json::from_value(cfg["modules_to_save"].clone()).unwrap();
        to_save.sort();
        assert_eq!(
            serde_json::to_value(&to_save).unwrap(),
            want["modules_to_save"],
            "{case}"
        );
        assert_eq!(cfg["target_modules"], want["target_modules"], "{case}");
        let names: Vec<String> = Model::open(&out.join("adapter_model.safetensors"))
            .unwrap()
            .tensors()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(
            serde_json::to_value(&names).unwrap(),
            want["tensors"],
            "{case}"
        );
    }
}

/// Tensors and dtypes as mergekit writes them, byte for byte where there
/// is no SVD involved (modules saved whole).
#[test]
fn same_layout_as_mergekits_adapter() {
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let mut o = Options::new(
        m.join("ft0").to_str().unwrap(),
        m.join("base").to_str().unwrap(),
        &out,
    );
    o.max_rank = 4;
    o.sync = false;
    quiet(&o).unwrap();
    let ours = Model::open(&out.join("adapter_model.safetensors")).unwrap();
    let theirs = Model::open(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/extract_lora/mergekit_ft0_r4/adapter_model.safetensors"),
    )
    .unwrap();
    assert_eq!(ours.tensors().len(), theirs.tensors().len());
    for t in theirs.tensors() {
        let u = ours.tensor(&t.name).unwrap_or_else(|| panic!("{}", t.name));
        assert_eq!((u.dtype, &u.shape), (t.dtype, &t.shape), "{}", t.name);
        if !t.name.contains(".lora_") {
            assert_eq!(ours.raw(u), theirs.raw(t), "{}", t.name);
        }
    }
}

#[test]
fn round_trip_through_base_plus_adapter() {
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    for embed in [false, true] {
        let out = dir.path().join(format!("a{embed}"));
        let mut o = Options::new(
            m.join("ft1").to_str().unwrap(),
            m.join("base").to_str().unwrap(),
            &out,
        );
        o.max_rank = 16;
        o.embed_lora = embed;
        o.sync = false;
        let r = quiet(&o).unwrap();
        let tensors: Vec<String> = r
            .modules
            .iter()
            .map(|m| format!("{}.weight", m.name))
            .collect();
        assert_eq!(
            tensors.contains(&"model.embed_tokens.weight".to_string()),
            embed
        );
        let e = round_trip_error(&m.join("base"), &m.join("ft1"), &out, &tensors);
        // The merged weights are rounded to bf16, as PEFT's merge and
        // mergekit's are: a little above the extraction's own error.
        assert!(
            e <= r.error + 0.02 && e >= r.error - 0.02,
            "round trip {e} vs reported {}",
            r.error
        );
        // Everything saved whole comes back exactly.
        let joined = format!("{}+{}", m.join("base").display(), out.display());
        let applied = Model::open(Path::new(&joined)).unwrap();
        let ft = Model::open(&m.join("ft1")).unwrap();
        for name in &r.saved {
            assert_eq!(
                applied.read_all_f32(name).unwrap(),
                ft.read_all_f32(name).unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn cli_prints_errors_and_writes_a_loadable_adapter() {
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    let (ft, base) = (m.join("ft0"), m.join("base"));
    let o = smelt(
        &[
            "extract-lora",
            "--model",
            ft.to_str().unwrap(),
            "--base-model",
            base.to_str().unwrap(),
            "--out-path",
            "out",
            "--max-rank",
            "4",
            "--no-sync",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("model.layers.0.self_attn.q_proj     4"),
        "{stdout}"
    );
    assert!(stdout.contains("relative error 0.884"), "{stdout}");
    let a = Adapter::open(&dir.path().join("out")).unwrap();
    assert_eq!(a.rank(), 4);
    assert!(dir.path().join("out/smelt-extract.json").is_file());
    // Existing output: refused without --force, untouched.
    let before = std::fs::read(dir.path().join("out/adapter_model.safetensors")).unwrap();
    let again = |extra: &[&str]| {
        let mut args = vec![
            "extract-lora",
            "--model",
            ft.to_str().unwrap(),
            "--base-model",
            base.to_str().unwrap(),
            "-o",
            "out",
            "--max-rank",
            "2",
            "--no-sync",
            "-q",
        ];
        args.extend_from_slice(extra);
        smelt(&args, dir.path())
    };
    let o = again(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join("out/adapter_model.safetensors")).unwrap(),
        before
    );
    // --force replaces smelt's own adapter.
    let o = again(&["--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(Adapter::open(&dir.path().join("out")).unwrap().rank(), 2);
    // ... but not a folder with someone else's files.
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep").unwrap();
    let mut args = vec![
        "extract-lora",
        "--model",
        ft.to_str().unwrap(),
        "--base-model",
        base.to_str().unwrap(),
        "-o",
        "mine",
        "--force",
        "-q",
    ];
    args.push("--no-sync");
    let o = smelt(&args, dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(dir.path().join("mine/notes.txt").is_file());
}

/// Run the CLI expecting exit 2 and no output folder; returns the message.
fn refused(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["extract-lora"];
    all.extend_from_slice(args);
    let o = smelt(&all, dir);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
    assert!(!dir.join("out").exists(), "{args:?}: output written");
    let partial = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("partial"));
    assert!(!partial, "{args:?}: partial folder left");
    t
}

#[test]
fn bad_input_is_refused_naming_the_culprit() {
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    let (ft, base) = (m.join("ft0"), m.join("base"));
    let (ft, base) = (ft.to_str().unwrap(), base.to_str().unwrap());
    let d = dir.path();
    let t = refused(
        d,
        &[
            "--model",
            "no-such-model",
            "--base-model",
            base,
            "-o",
            "out",
        ],
    );
    assert!(t.contains("no-such-model"), "{t}");
    let t = refused(
        d,
        &[
            "--model",
            ft,
            "--base-model",
            base,
            "-o",
            "out",
            "--max-rank",
            "0",
        ],
    );
    assert!(t.contains("--max-rank"), "{t}");
    for (flag, v) in [
        ("--max-rank", "abc"),
        ("--max-rank", "-3"),
        ("--sv-epsilon", "lots"),
    ] {
        refused(
            d,
            &["--model", ft, "--base-model", base, "-o", "out", flag, v],
        );
    }
    for v in ["nan", "-1", "inf"] {
        let t = refused(
            d,
            &[
                "--model",
                ft,
                "--base-model",
                base,
                "-o",
                "out",
                "--sv-epsilon",
                v,
            ],
        );
        assert!(t.contains("--sv-epsilon"), "{t}");
    }
    let t = refused(
        d,
        &["--model", ft, "--base-model", base, "-o", "out", "-i", "("],
    );
    assert!(t.contains("--include-regex"), "{t}");
    // An option mergekit has that smelt does not: refused, not ignored.
    refused(
        d,
        &[
            "--model",
            ft,
            "--base-model",
            base,
            "-o",
            "out",
            "--lora-merge-dtype",
            "float16",
        ],
    );
    // Every module excluded: nothing to extract.
    let t = refused(
        d,
        &["--model", ft, "--base-model", base, "-o", "out", "-e", "."],
    );
    assert!(t.contains("no module"), "{t}");

    // Shapes that differ between base and fine-tune.
    let mut tensors = Vec::new();
    let b = Model::open(Path::new(base)).unwrap();
    for t in b.tensors() {
        let mut v = b.read_all_f32(&t.name).unwrap();
        let mut shape = t.shape.clone();
        if t.name == "model.layers.2.mlp.up_proj.weight" {
            shape[0] -= 1;
            v.truncate(shape.iter().product());
        }
        tensors.push((t.name.clone(), shape, v));
    }
    let odd = d.join("odd");
    smelt::model::write_small(&odd, &tensors, Dtype::BF16, &[]).unwrap();
    let t = refused(
        d,
        &[
            "--model",
            odd.to_str().unwrap(),
            "--base-model",
            base,
            "-o",
            "out",
        ],
    );
    assert!(t.contains("model.layers.2.mlp.up_proj.weight"), "{t}");
    assert!(t.contains("shape"), "{t}");
}

#[test]
fn cancel_writes_nothing() {
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = Options::new(
        m.join("ft0").to_str().unwrap(),
        m.join("base").to_str().unwrap(),
        &out,
    );
    let cancel = AtomicBool::new(false);
    // Cancelled from the progress callback after the second module.
    let r = extract::run(
        &o,
        &mut |e| {
            if let Event::Module { done: 2, .. } = e {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
        &cancel,
    );
    assert!(matches!(r, Err(ExtractError::Cancelled)), "{r:?}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `--save-module` saves a module whole (mergekit 0.1.5 fails on it
/// whenever embeddings are added too, so there is no golden): its tensors
/// come back exactly, and it is not factored.
#[test]
fn save_module_keeps_a_module_whole() {
    let m = bf16_models();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let mut o = Options::new(
        m.join("ft1").to_str().unwrap(),
        m.join("base").to_str().unwrap(),
        &out,
    );
    o.max_rank = 2;
    o.modules_to_save = vec!["q_proj".into()];
    o.sync = false;
    let r = quiet(&o).unwrap();
    assert!(r.modules.iter().all(|m| !m.name.ends_with("q_proj")));
    assert_eq!(r.modules.len(), 24);
    assert_eq!(r.modules_to_save[0], "q_proj");
    let joined = format!("{}+{}", m.join("base").display(), out.display());
    let applied = Model::open(Path::new(&joined)).unwrap();
    let ft = Model::open(&m.join("ft1")).unwrap();
    for l in 0..4 {
        let name = format!("model.layers.{l}.self_attn.q_proj.weight");
        assert!(r.saved.contains(&name));
        assert_eq!(
            applied.read_all_f32(&name).unwrap(),
            ft.read_all_f32(&name).unwrap()
        );
    }
}

/// A model with biases (the tiny Qwen2 pair: q/k/v biases): the bias
/// deltas are written whole with `lora_bias: true`, and smelt reads the
/// adapter back as PEFT would merge it, each bias the fine-tune's to f32
/// rounding.
#[test]
fn bias_deltas_come_back_through_base_plus_adapter() {
    let arch = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch/qwen2");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lora");
    let mut o = Options::new(
        arch.join("b").to_str().unwrap(),
        arch.join("a").to_str().unwrap(),
        &out,
    );
    o.max_rank = 4;
    o.sync = false;
    quiet(&o).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["lora_bias"], serde_json::Value::Bool(true));
    let joined = format!("{}+{}", arch.join("a").display(), out.display());
    let applied = Model::open(Path::new(&joined)).expect("base+adapter opens");
    let ft = Model::open(&arch.join("b")).unwrap();
    let base = Model::open(&arch.join("a")).unwrap();
    let biases: Vec<String> = ft
        .tensors()
        .iter()
        .filter(|t| t.name.ends_with("_proj.bias"))
        .map(|t| t.name.clone())
        .collect();
    assert!(biases.len() >= 3, "{biases:?}");
    for name in &biases {
        let got = applied.read_all_f32(name).unwrap();
        let want = ft.read_all_f32(name).unwrap();
        let was = base.read_all_f32(name).unwrap();
        assert_ne!(want, was, "{name}: the pair differs here");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(0.1),
                "{name}[{i}]: {g} vs the fine-tune's {w}"
            );
        }
    }
}
