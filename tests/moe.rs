//! `smelt moe` against mergekit-moe 0.1.5's own output
//! (tests/fixtures/moe/expected, made by tests/fixtures/moe/make.py from
//! the recipes in tests/fixtures/moe/recipes and the tiny models of
//! tests/fixtures/arch), and its refusals of bad input.

mod common;

use common::{smelt, text};
use smelt::model::{Dtype, Model};
use smelt::moe::{self, MoeError, MoeRecipe, Options};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn moe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moe")
}

fn recipe(name: &str) -> PathBuf {
    moe_dir().join("recipes").join(format!("{name}.yml"))
}

fn arch_model(arch: &str, which: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arch")
        .join(arch)
        .join(which)
}

/// Build `recipe` into `out` through the library.
fn build(recipe: &Path, out: &Path, seed: u64) -> Result<moe::Summary, MoeError> {
    let r = MoeRecipe::load(recipe)?;
    let mut opts = Options::new(out);
    opts.seed = seed;
    opts.sync = false;
    moe::build(&r, &opts, &|_| {}, &AtomicBool::new(false))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// name -> (dtype, shape) of a model's tensors.
fn header(m: &Model) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let mut tensors: Vec<_> = m.tensors().iter().collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    for t in tensors {
        map.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype.name(), "shape": t.shape}),
        );
    }
    serde_json::Value::Object(map)
}

fn is_gate(name: &str) -> bool {
    name.ends_with("mlp.gate.weight") || name.ends_with("mlp.shared_expert_gate.weight")
}

/// The output of `name` matches mergekit's: config.json, every tensor's
/// name, dtype and shape, non-gate tensors bit for bit, gates to f32
/// rounding (one unit in the last place of the output dtype).
fn check_cheap(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    build(&recipe(name), &out, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = moe_dir().join("expected").join(name);
    assert_eq!(
        json(&out.join("config.json")),
        json(&want.join("config.json")),
        "{name}: config.json"
    );
    let ours = Model::open(&out).unwrap();
    let theirs = Model::open(&want.join("model.safetensors")).unwrap();
    assert_eq!(header(&ours), header(&theirs), "{name}: tensors");
    let mut gates = 0;
    for t in theirs.tensors() {
        let o = ours.tensor(&t.name).unwrap();
        if is_gate(&t.name) {
            gates += 1;
            let a = ours.read_all_f32(&t.name).unwrap();
            let b = theirs.read_all_f32(&t.name).unwrap();
            // Rows are unit vectors: f32 rounding of mergekit's sums and
            // norms is a few units of 2^-23 of the norm; bf16 output
            // adds at most one bf16 unit of the value.
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                let tol = if t.dtype == Dtype::BF16 {
                    y.abs() / 128.0 + 1e-6
                } else {
                    1e-6
                };
                assert!(
                    (x - y).abs() <= tol,
                    "{name}: {}[{i}]: smelt {x}, mergekit {y}",
                    t.name
                );
            }
            // Each row is a unit vector.
            let h = t.shape[1];
            for row in a.chunks(h) {
                let n: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                assert!((n.sqrt() - 1.0).abs() < 0.02, "{name}: {} norm {n}", t.name);
            }
        } else {
            let mut x = vec![0u8; t.nbytes()];
            let mut y = vec![0u8; o.nbytes()];
            ours.read_raw(o, 0, &mut y).unwrap();
            theirs.read_raw(t, 0, &mut x).unwrap();
            assert!(x == y, "{name}: {} differs from mergekit's", t.name);
        }
    }
    assert!(gates >= 5, "{name}: gates compared: {gates}");
    // The base's tokenizer files and the recipe come along.
    assert!(out.join("tokenizer.json").is_file());
    assert!(out.join("mergekit_moe_config.yml").is_file());
}

/// The output of a `random` recipe has mergekit's config and tensors'
/// names, dtypes and shapes.
fn check_random(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    build(&recipe(name), &out, 7).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = moe_dir().join("expected").join(name);
    assert_eq!(
        json(&out.join("config.json")),
        json(&want.join("config.json")),
        "{name}: config.json"
    );
    let ours = Model::open(&out).unwrap();
    assert_eq!(
        header(&ours),
        json(&want.join("header.json")),
        "{name}: tensors"
    );
}

#[test]
fn mixtral_cheap_embed_matches_mergekit() {
    check_cheap("mixtral-cheap");
}

#[test]
fn qwen2_moe_cheap_embed_matches_mergekit() {
    check_cheap("qwen2-cheap");
}

#[test]
fn qwen3_moe_cheap_embed_matches_mergekit() {
    check_cheap("qwen3-cheap");
}

#[test]
fn deepseek_moe_cheap_embed_matches_mergekit() {
    // Chosen as mergekit chooses it: one shared expert without prompts.
    check_cheap("deepseek-cheap");
}

#[test]
fn deepseek_moe_random_has_mergekits_structure() {
    check_random("deepseek-random");
}

#[test]
fn mixtral_random_has_mergekits_structure() {
    check_random("mixtral-random");
}

#[test]
fn qwen2_moe_random_has_mergekits_structure() {
    check_random("qwen2-random");
}

#[test]
fn qwen3_moe_random_has_mergekits_structure() {
    check_random("qwen3-random");
}

/// Experts' MLPs are the inputs' own (stacked), the rest is the base's,
/// `residual_scale` scales `down_proj`, and the Qwen MoE of a Qwen2 base
/// keeps its attention biases.
#[test]
fn tensors_come_from_the_right_models() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    build(&recipe("mixtral-cheap"), &out, 0).unwrap();
    let m = Model::open(&out).unwrap();
    let a = Model::open(&arch_model("llama", "a")).unwrap();
    let b = Model::open(&arch_model("llama", "b")).unwrap();
    let l = "model.layers.3";
    let gate_up = m
        .read_all_f32(&format!("{l}.mlp.experts.gate_up_proj"))
        .unwrap();
    let ga = a
        .read_all_f32(&format!("{l}.mlp.gate_proj.weight"))
        .unwrap();
    let ua = a.read_all_f32(&format!("{l}.mlp.up_proj.weight")).unwrap();
    let gb = b
        .read_all_f32(&format!("{l}.mlp.gate_proj.weight"))
        .unwrap();
    let n = ga.len();
    assert_eq!(&gate_up[..n], &ga[..]);
    assert_eq!(&gate_up[n..2 * n], &ua[..]);
    assert_eq!(&gate_up[2 * n..3 * n], &gb[..]);
    let down = m
        .read_all_f32(&format!("{l}.mlp.experts.down_proj"))
        .unwrap();
    let db = b
        .read_all_f32(&format!("{l}.mlp.down_proj.weight"))
        .unwrap();
    let half: Vec<f32> = db.iter().map(|x| x * 0.5).collect();
    assert_eq!(&down[down.len() / 2..], &half[..], "residual_scale 0.5");
    let q = format!("{l}.self_attn.q_proj.weight");
    assert_eq!(m.read_all_f32(&q).unwrap(), a.read_all_f32(&q).unwrap());

    let out2 = tmp.path().join("qwen2");
    build(&recipe("qwen2-random"), &out2, 0).unwrap();
    let m = Model::open(&out2).unwrap();
    let qa = Model::open(&arch_model("qwen2", "a")).unwrap();
    let bias = format!("{l}.self_attn.k_proj.bias");
    let kb = qa.read_all_f32(&bias).unwrap();
    assert!(kb.iter().any(|&x| x != 0.0));
    assert_eq!(m.read_all_f32(&bias).unwrap(), kb);
    let shared = m
        .read_all_f32(&format!("{l}.mlp.shared_expert.up_proj.weight"))
        .unwrap();
    assert_eq!(
        shared,
        qa.read_all_f32(&format!("{l}.mlp.up_proj.weight")).unwrap()
    );
}

/// Random gates: the same seed gives the same bytes, another seed other
/// gates and the same everything else; draws look standard normal.
#[test]
fn random_gates_are_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    build(&recipe("qwen3-random"), &a, 1).unwrap();
    build(&recipe("qwen3-random"), &b, 1).unwrap();
    build(&recipe("qwen3-random"), &c, 2).unwrap();
    let read = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b));
    let (ma, mc) = (Model::open(&a).unwrap(), Model::open(&c).unwrap());
    let g = "model.layers.2.mlp.gate.weight";
    let (ga, gc) = (ma.read_all_f32(g).unwrap(), mc.read_all_f32(g).unwrap());
    assert_ne!(ga, gc);
    // Layers get their own draws.
    assert_ne!(
        ga,
        ma.read_all_f32("model.layers.1.mlp.gate.weight").unwrap()
    );
    let e = "model.layers.2.mlp.experts.down_proj";
    assert_eq!(ma.read_all_f32(e).unwrap(), mc.read_all_f32(e).unwrap());
    let draws = moe::gates::random(3, 1, 100, 1000, false);
    let n = draws[0].len() as f64;
    let mean = draws[0].iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = draws[0]
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
        "{mean} {var}"
    );
    let uni = moe::gates::random(3, 1, 100, 1000, true);
    let bound = (1.0f32 / 1000.0).sqrt();
    assert!(uni[0].iter().all(|x| x.abs() <= bound));
}

/// The command line end to end: the summary, the output, and `--force`
/// needed to build again over it.
/// A mergekit-moe recipe given to `smelt merge` (or `recipe check`) is
/// named as one, with the command that builds it, not as a list of
/// unknown keys.
#[test]
fn merge_of_a_moe_recipe_points_to_smelt_moe() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe("mixtral-cheap");
    for args in [
        vec!["merge", r.to_str().unwrap(), "--out", "x"],
        vec!["recipe", "check", r.to_str().unwrap()],
    ] {
        let o = smelt(&args, tmp.path());
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(
            t.contains("mixtral-cheap.yml:")
                && t.contains("mergekit-moe recipe")
                && t.contains("smelt moe"),
            "{t}"
        );
        assert!(!t.contains("unknown"), "{t}");
    }
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn cli_builds_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("moe");
    let r = recipe("mixtral-cheap");
    let args = [
        "moe",
        r.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ];
    let o = smelt(&args, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("built Mixtral with 2 experts"),
        "{}",
        text(&o)
    );
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    let o = smelt(&args, tmp.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = smelt(&forced, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before
    );
}

/// A recipe in a temp folder next to copies of nothing: paths point at the
/// arch fixtures by absolute path.
fn write_recipe(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("r.yml");
    let arch = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch");
    std::fs::write(&p, body.replace("ARCH", arch.to_str().unwrap())).unwrap();
    p
}

/// Run `smelt moe` on `body`; expect exit 2, a message holding every
/// `needle`, and no output folder.
fn refused(body: &str, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let r = write_recipe(tmp.path(), body);
    let out = tmp.path().join("out");
    let o = smelt(
        &["moe", r.to_str().unwrap(), "--out", out.to_str().unwrap()],
        tmp.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    for n in needles {
        assert!(t.contains(n), "`{n}` not in: {t}");
    }
    assert!(!out.exists(), "nothing is written");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["r.yml"], "no partial or lock files left: {left:?}");
}

const GOOD: &str = "base_model: ARCH/llama/a
gate_mode: random
experts:
  - source_model: ARCH/llama/a
  - source_model: ARCH/llama/b
";

#[test]
fn good_recipe_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let r = write_recipe(tmp.path(), GOOD);
    build(&r, &tmp.path().join("out"), 0).unwrap();
}

#[test]
fn refuses_unknown_keys_with_their_line() {
    refused(
        &format!("{GOOD}slerp_factor: 0.5\n"),
        &["r.yml:6", "unknown key `slerp_factor`"],
    );
    refused(
        &GOOD.replace(
            "  - source_model: ARCH/llama/b\n",
            "  - source_model: ARCH/llama/b\n    weight: 2\n",
        ),
        &["r.yml:6", "unknown key `weight`"],
    );
    refused(
        &format!("{GOOD}tokenizer_source: union\n"),
        &["r.yml:6", "tokenizer_source", "base model's tokenizer"],
    );
}

#[test]
fn refuses_hidden_gates() {
    refused(
        &GOOD.replace("gate_mode: random", "gate_mode: hidden"),
        &["r.yml:2", "forward pass", "cheap_embed"],
    );
    // Absent, mergekit's default is `hidden`.
    refused(
        &GOOD.replace("gate_mode: random\n", ""),
        &["mergekit's default is `hidden`"],
    );
}

#[test]
fn refuses_missing_models() {
    refused(
        &GOOD.replace("ARCH/llama/b", "ARCH/llama/nope"),
        &["r.yml:5", "nope"],
    );
}

#[test]
fn refuses_architectures_it_cannot_build() {
    refused(
        &format!("{GOOD}architecture: qwen3\n"),
        &["no output architecture", "qwen3 models only, not llama"],
    );
    refused(
        &format!("{GOOD}architecture: nemotron\n"),
        &["r.yml:6", "names no output architecture", "DeepSeek MoE"],
    );
    refused(
        &format!(
            "{GOOD}architecture: deepseek\nshared_experts:\n  - source_model: ARCH/llama/a\n    \
             positive_prompts: [\"w1\"]\n"
        ),
        &["DeepSeek MoE does not gate its shared expert"],
    );
    refused(
        &format!("{GOOD}architecture: mixtral\nshared_experts:\n  - source_model: ARCH/llama/a\n"),
        &["Mixtral has no shared experts"],
    );
    // Llama and Qwen3 models together.
    refused(
        &GOOD.replace("ARCH/llama/b", "ARCH/qwen3/b"),
        &["one model_type"],
    );
}

#[test]
fn refuses_prompt_problems_as_mergekit_does() {
    let cheap = GOOD.replace("gate_mode: random", "gate_mode: cheap_embed");
    refused(&cheap, &["expert 0 has no positive_prompts"]);
    let same = "base_model: ARCH/llama/a
gate_mode: cheap_embed
experts:
  - source_model: ARCH/llama/a
    positive_prompts: [\"w1\"]
  - source_model: ARCH/llama/b
    positive_prompts: [\"w1\"]
";
    refused(same, &["the same for every expert"]);
    let one_model = same
        .replace("ARCH/llama/b", "ARCH/llama/a")
        .replace("[\"w1\"]\n", "[\"w2\"]\n");
    let one_model = one_model.replacen("[\"w2\"]", "[\"w1\"]", 1);
    refused(&one_model, &["every expert is the same model"]);
    refused(
        &format!("{GOOD}experts_per_token: 3\n"),
        &["2 experts but experts_per_token is 3"],
    );
}

/// An expert whose MLP has another shape: named, with both shapes.
#[test]
fn refuses_mismatched_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    let a = Model::open(&arch_model("llama", "a")).unwrap();
    let mut tensors = Vec::new();
    for t in a.tensors() {
        let mut v = a.read_all_f32(&t.name).unwrap();
        let mut shape = t.shape.clone();
        if t.name == "model.layers.1.mlp.up_proj.weight" {
            shape[0] /= 2;
            v.truncate(v.len() / 2);
        }
        tensors.push((t.name.clone(), shape, v));
    }
    smelt::model::write_small(&odd, &tensors, Dtype::F32, &[]).unwrap();
    std::fs::copy(
        arch_model("llama", "a").join("config.json"),
        odd.join("config.json"),
    )
    .unwrap();
    let body = GOOD.replace("ARCH/llama/b", odd.to_str().unwrap());
    let r = write_recipe(tmp.path(), &body);
    let out = tmp.path().join("out");
    let o = smelt(
        &["moe", r.to_str().unwrap(), "--out", out.to_str().unwrap()],
        tmp.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("model.layers.1.mlp.up_proj.weight") && t.contains("[16, 16]"),
        "{t}"
    );
    assert!(!out.exists());
}

/// A cancelled build leaves nothing behind.
#[test]
fn cancelled_build_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let r = MoeRecipe::load(&recipe("qwen3-random")).unwrap();
    let cancel = AtomicBool::new(false);
    let opts = Options::new(&out);
    let e = moe::build(
        &r,
        &opts,
        &|p| {
            if p.done > 0 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
        &cancel,
    )
    .expect_err("cancelled");
    assert!(matches!(e, MoeError::Cancelled), "{e}");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `noise_scale`: seeded normal noise of that standard deviation on the
/// expert's MLP tensors (mergekit's `randn_like(t) * noise_scale`): the
/// same seed gives the same bytes, another seed other noise, and the
/// expert without it is copied exactly.
#[test]
fn noise_scale_adds_seeded_noise_of_that_size() {
    let tmp = tempfile::tempdir().unwrap();
    let r = write_recipe(
        tmp.path(),
        "base_model: ARCH/llama/a
gate_mode: random
experts:
  - source_model: ARCH/llama/a
  - source_model: ARCH/llama/b
    noise_scale: 0.01
",
    );
    let (x, y, z) = (
        tmp.path().join("x"),
        tmp.path().join("y"),
        tmp.path().join("z"),
    );
    build(&r, &x, 1).unwrap();
    build(&r, &y, 1).unwrap();
    build(&r, &z, 2).unwrap();
    let read = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(read(&x), read(&y));
    let l = "model.layers.1";
    let a = Model::open(&arch_model("llama", "a")).unwrap();
    let b = Model::open(&arch_model("llama", "b")).unwrap();
    let ga = a
        .read_all_f32(&format!("{l}.mlp.gate_proj.weight"))
        .unwrap();
    let gb = b
        .read_all_f32(&format!("{l}.mlp.gate_proj.weight"))
        .unwrap();
    let n = ga.len();
    let fused = |p: &Path| {
        Model::open(p)
            .unwrap()
            .read_all_f32(&format!("{l}.mlp.experts.gate_up_proj"))
            .unwrap()
    };
    let (fx, fz) = (fused(&x), fused(&z));
    // Expert a: exact. Expert b: b plus noise.
    assert_eq!(&fx[..n], &ga[..]);
    let noise: Vec<f64> = fx[2 * n..3 * n]
        .iter()
        .zip(&gb)
        .map(|(o, w)| f64::from(o - w))
        .collect();
    let mean = noise.iter().sum::<f64>() / noise.len() as f64;
    let sd = (noise.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / noise.len() as f64).sqrt();
    assert!(noise.len() >= 256, "{}", noise.len());
    assert!(
        mean.abs() < 0.003 && (sd - 0.01).abs() < 0.002,
        "mean {mean} sd {sd}"
    );
    assert_ne!(
        &fx[2 * n..3 * n],
        &fz[2 * n..3 * n],
        "another seed, other noise"
    );
    assert_eq!(&fz[..n], &ga[..]);
}
