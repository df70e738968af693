//! LoRA adapters as inputs (`model+adapter`): parity with mergekit 0.1.5
//! (which merges the adapter with PEFT first) on the fixtures in
//! tests/fixtures/lora/, the adapter applied on every read path (f32
//! windows, raw bytes for bf16 copy-through and TIES, analysis), adapter
//! inspection, refusals, and the reference syntax in recipes.

mod common;
use common::{smelt, text};
use smelt::model::{Adapter, Model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

/// A temp folder holding a copy of the fixture tree (models, adapters,
/// recipes), so that nothing is written near the committed files.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["models", "adapters", "recipes"] {
        copy_tree(&fixtures().join(sub), &dir.path().join(sub));
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// Every tensor of a safetensors file as (dtype, shape, f32 values).
fn load(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<f32>)> {
    let m = Model::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    m.tensors()
        .iter()
        .map(|t| {
            let v = m.read_all_f32(&t.name).expect("read");
            (
                t.name.clone(),
                (t.dtype.name().to_string(), t.shape.clone(), v),
            )
        })
        .collect()
}

/// Run `smelt merge recipes/NAME.yml` in a workspace and compare every
/// tensor with mergekit's output: same names, dtypes and shapes, values
/// equal to float32 rounding (about one f32 step of the summands, whose
/// products torch sums in another order; one bf16 step where the output is bf16,
/// since the sum's last f32 bit can round either way).
fn parity(name: &str) {
    let ws = workspace();
    let out = ws.path().join("out");
    let o = smelt(
        &[
            "merge",
            &format!("recipes/{name}.yml"),
            "--out",
            out.to_str().unwrap(),
        ],
        ws.path(),
    );
    assert!(o.status.success(), "{name}: {}", text(&o));
    let ours = load(&out);
    let theirs = load(&fixtures().join("outputs").join(name));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{name}: tensor names"
    );
    for (t, (dt, shape, want)) in &theirs {
        let (odt, oshape, got) = &ours[t];
        assert_eq!((odt, oshape), (dt, shape), "{name}: {t}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            let tol = if dt == "BF16" {
                b.abs() / 128.0 + 1e-30
            } else {
                1e-6 * b.abs().max(0.1)
            };
            assert!(
                (a - b).abs() <= tol,
                "{name}: {t}[{i}]: smelt {a}, mergekit {b}"
            );
        }
    }
}

#[test]
fn parity_passthrough_base_plus_adapter() {
    parity("alone");
}

/// `lora_bias`: each adapted layer's bias gets `scale · lora_B.bias`, as
/// PEFT's `merge_and_unload` gives it (the reference is PEFT's own merge:
/// mergekit 0.1.5 drops every bias of a Llama, see `make_bias.py`).
#[test]
fn parity_lora_bias_with_peft() {
    parity("bias");
    // And the biases did move: the adapter is not a no-op here.
    let base = load(&fixtures().join("models/base-bias"));
    let merged = load(&fixtures().join("outputs/bias"));
    let b = "model.layers.0.self_attn.q_proj.bias";
    assert_ne!(base[b].2, merged[b].2);
    let k = "model.layers.0.self_attn.k_proj.bias";
    assert_eq!(base[k].2, merged[k].2, "k_proj is not adapted");
}

#[test]
fn parity_rslora_with_rank_and_alpha_patterns() {
    parity("rslora");
}

#[test]
fn parity_embedding_lora_and_modules_to_save() {
    parity("save");
}

#[test]
fn parity_gpt2_fan_in_fan_out() {
    parity("gpt2");
}

#[test]
fn parity_bf16_base_rounds_like_peft() {
    parity("bf16");
}

#[test]
fn parity_ties_with_three_adapted_models() {
    parity("ties");
}

/// The adapter really changes the targets (a parity that passes because
/// nothing was applied would be worthless) and nothing else.
#[test]
fn adapter_changes_only_its_targets() {
    let base = fixtures().join("models/base");
    let plain = Model::open(&base).unwrap();
    let adapted = Model::open_with_adapter(&base, &fixtures().join("adapters/lora-a")).unwrap();
    let mut changed = Vec::new();
    for t in plain.tensors() {
        let a = plain.read_all_f32(&t.name).unwrap();
        let b = adapted.read_all_f32(&t.name).unwrap();
        if a != b {
            changed.push(t.name.clone());
        }
    }
    assert_eq!(
        changed,
        [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.v_proj.weight",
            "model.layers.1.self_attn.q_proj.weight",
            "model.layers.1.self_attn.v_proj.weight",
        ]
    );
}

/// Any window (mid-row starts, odd lengths) gives the same values as the
/// whole tensor, in both orientations (plain and transposed deltas), and
/// `read_raw` gives the bytes of those values in the tensor's dtype.
#[test]
fn windows_and_raw_bytes_agree_with_whole_reads() {
    let cases = [
        ("base", "lora-save", "model.embed_tokens.weight"),
        ("base", "lora-save", "model.layers.1.mlp.down_proj.weight"),
        ("gpt2", "gpt2-lora", "transformer.h.1.attn.c_attn.weight"),
        (
            "base-bf16",
            "lora-a",
            "model.layers.0.self_attn.q_proj.weight",
        ),
    ];
    for (model, adapter, name) in cases {
        let m = Model::open_with_adapter(
            &fixtures().join("models").join(model),
            &fixtures().join("adapters").join(adapter),
        )
        .unwrap();
        let t = m.tensor(name).unwrap().clone();
        let whole = m.read_all_f32(name).unwrap();
        let mut start = 0;
        let mut len = 1;
        while start < whole.len() {
            let end = (start + len).min(whole.len());
            let mut w = vec![0f32; end - start];
            m.read_f32(&t, start, &mut w).unwrap();
            assert_eq!(w, whole[start..end], "{model}+{adapter} {name} at {start}");
            start = end;
            len = len * 3 % 41 + 1;
        }
        let size = t.dtype.size();
        let mut bytes = vec![0u8; t.nbytes()];
        m.read_raw(&t, 0, &mut bytes).unwrap();
        let mut back = vec![0f32; t.numel()];
        smelt::model::to_f32(t.dtype, &bytes, &mut back);
        assert_eq!(back, whole, "{name}: read_raw");
        // An unaligned byte window is the same bytes.
        let mut part = vec![0u8; 5 * size + 1];
        m.read_raw(&t, size + 1, &mut part).unwrap();
        assert_eq!(part, bytes[size + 1..size + 1 + part.len()], "{name}");
        // The mapped bytes would be the base's: none are given.
        assert!(m.raw(&t).is_empty(), "{name}: raw() must not bypass");
    }
}

/// A bf16 base with an adapter goes through the raw-byte paths (bf16
/// TIES reads bit patterns, copy-through copies bytes): the result must
/// be exactly that of the same recipe on the adapted model written out.
#[test]
fn raw_byte_paths_see_the_adapter_bf16_ties_and_analyze() {
    let ws = workspace();
    let d = ws.path();
    // The adapted model, materialised by smelt itself.
    std::fs::write(
        d.join("materialise.yml"),
        "merge_method: passthrough\nmodels:\n  - model: models/base-bf16+adapters/lora-a\n",
    )
    .unwrap();
    let o = smelt(&["merge", "materialise.yml", "--out", "adapted"], d);
    assert!(o.status.success(), "{}", text(&o));
    let written = load(&d.join("adapted"));
    let direct =
        Model::open_with_adapter(&d.join("models/base-bf16"), &d.join("adapters/lora-a")).unwrap();
    for (name, (dt, _, v)) in &written {
        assert_eq!(dt, "BF16", "{name}");
        assert_eq!(v, &direct.read_all_f32(name).unwrap(), "{name}");
    }
    let ties = |model: &str| {
        format!(
            "merge_method: ties\nbase_model: models/base-bf16\nmodels:\n  - model: {model}\n    parameters:\n      weight: 0.7\n      density: 0.5\ndtype: bfloat16\n"
        )
    };
    std::fs::write(d.join("a.yml"), ties("models/base-bf16+adapters/lora-a")).unwrap();
    std::fs::write(d.join("b.yml"), ties("adapted")).unwrap();
    for (r, out) in [("a.yml", "out-a"), ("b.yml", "out-b")] {
        let o = smelt(&["merge", r, "--out", out], d);
        assert!(o.status.success(), "{r}: {}", text(&o));
    }
    let (a, b) = (load(&d.join("out-a")), load(&d.join("out-b")));
    assert_eq!(
        a, b,
        "TIES on base+adapter differs from TIES on the adapted model"
    );
    let q = &a["model.layers.0.self_attn.q_proj.weight"].2;
    let base = Model::open(&d.join("models/base-bf16")).unwrap();
    assert_ne!(
        q,
        &base
            .read_all_f32("model.layers.0.self_attn.q_proj.weight")
            .unwrap(),
        "the merge must change the adapted tensor"
    );

    // Analysis reads bf16 inputs as raw bit patterns too.
    let analyze = |model: &str| {
        let o = smelt(
            &["analyze", "--json", "--base", "models/base-bf16", model],
            d,
        );
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let via_adapter = analyze("models/base-bf16+adapters/lora-a");
    let via_written = analyze("adapted");
    let strip = |s: &str| {
        s.replace("models/base-bf16+adapters/lora-a", "M")
            .replace("adapted", "M")
    };
    let (x, y) = (strip(&via_adapter), strip(&via_written));
    // Paths differ; every figure must not.
    let nums = |s: &str| {
        s.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
            .filter(|w| w.parse::<f64>().is_ok())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(nums(&x), nums(&y));
    assert!(
        x.contains("q_proj"),
        "the analysis names the adapted tensors"
    );
}

#[test]
fn inspect_shows_targets_rank_and_alpha() {
    let dir = fixtures().join("adapters/lora-rs");
    let o = smelt(&["inspect", dir.to_str().unwrap()], &fixtures());
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&o);
    assert!(s.contains("LoRA adapter"), "{s}");
    assert!(s.contains("r 4, lora_alpha 8"), "{s}");
    assert!(s.contains("rsLoRA"), "{s}");
    // o_proj has rank 2 (rank_pattern), layer 1's gate_proj alpha 3.
    let line = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name} in {s}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("model.layers.0.self_attn.o_proj.weight")[1..4],
        ["lora", "2", "8"]
    );
    assert_eq!(
        line("model.layers.1.mlp.gate_proj.weight")[1..4],
        ["lora", "4", "3"]
    );
    assert_eq!(
        line("model.layers.0.mlp.gate_proj.weight")[1..5],
        ["lora", "4", "8", "4.0000"]
    );
    // An 80-column terminal takes every line, `replace+lora` rows too.
    let mergekit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/extract_lora/mergekit_ft0_r4");
    for d in [dir.clone(), fixtures().join("adapters/lora-save"), mergekit] {
        let o = smelt(&["inspect", d.to_str().unwrap()], &fixtures());
        for l in text(&o).lines() {
            assert!(l.chars().count() <= 80, "{}: {l:?}", d.display());
        }
    }

    let o = smelt(&["inspect", "--json", "adapters/lora-save"], &fixtures());
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["modules_to_save"][0], "lm_head");
    let kinds: BTreeMap<String, String> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tensor"].as_str().unwrap().to_string(),
                t["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kinds["lm_head.weight"], "replace");
    assert_eq!(kinds["model.embed_tokens.weight"], "replace+lora");
    assert_eq!(kinds["model.layers.0.mlp.up_proj.weight"], "lora");
}

#[test]
fn adapter_for_another_model_is_refused_naming_the_tensor() {
    let e = Model::open_with_adapter(
        &fixtures().join("models/gpt2"),
        &fixtures().join("adapters/lora-a"),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("does not have"),
        "{e}"
    );
    // Through the CLI: exit 2, the tensor named.
    let ws = workspace();
    std::fs::write(
        ws.path().join("r.yml"),
        "merge_method: passthrough\nmodels:\n  - model: models/gpt2+adapters/lora-a\n",
    )
    .unwrap();
    let o = smelt(&["merge", "r.yml", "--out", "out"], ws.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("q_proj.weight"), "{}", text(&o));
    assert!(!ws.path().join("out").exists());
}

/// An adapter whose factors do not fit the model is refused, naming the
/// tensor; so are settings that are not implemented, naming the key.
#[test]
fn shape_mismatch_and_unsupported_settings_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let src = fixtures().join("adapters/lora-a");
    let bad = d.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(
        src.join("adapter_config.json"),
        bad.join("adapter_config.json"),
    )
    .unwrap();
    // Rank 4 factors for a 32-wide q_proj, but A is 4 × 16.
    let a = vec![0u8; 4 * 16 * 4];
    let b = vec![0u8; 32 * 4 * 4];
    let views = [
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 16], &a).unwrap(),
        ),
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32, 4], &b).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, None, &bad.join("adapter_model.safetensors")).unwrap();
    let e = Model::open_with_adapter(&fixtures().join("models/base"), &bad)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("do not fit"),
        "{e}"
    );

    for (key, value) in [
        ("use_dora", "true"),
        ("bias", "\"all\""),
        ("peft_type", "\"IA3\""),
        ("layer_replication", "[[0, 2]]"),
    ] {
        let cfg = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        let dir = d.path().join(key);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("adapter_config.json"), v.to_string()).unwrap();
        std::fs::copy(
            src.join("adapter_model.safetensors"),
            dir.join("adapter_model.safetensors"),
        )
        .unwrap();
        let e = Adapter::open(&dir).err().expect(key).to_string();
        assert!(
            e.contains(key) && e.contains("adapter_config.json"),
            "{key}: {e}"
        );
    }
}

/// A LoRA bias is applied only as `lora_bias: true` says (without it PEFT
/// leaves the tensor unread: refused, not guessed), and only to a model
/// that has that bias.
#[test]
fn lora_bias_needs_the_setting_and_a_bias_to_add_to() {
    let d = tempfile::tempdir().unwrap();
    let src = fixtures().join("adapters/lora-bias");
    let off = d.path().join("off");
    std::fs::create_dir(&off).unwrap();
    let cfg = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["lora_bias"] = serde_json::Value::Bool(false);
    std::fs::write(off.join("adapter_config.json"), v.to_string()).unwrap();
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        off.join("adapter_model.safetensors"),
    )
    .unwrap();
    let e = Adapter::open(&off).err().expect("refused").to_string();
    assert!(
        e.contains("lora_B.bias") && e.contains("lora_bias: true"),
        "{e}"
    );

    // The bias-free Llama has no biases to add to.
    let e = Model::open_with_adapter(&fixtures().join("models/base"), &src)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("lora_B.bias") && e.contains("does not have") && e.contains("LoRA bias"),
        "{e}"
    );
}

/// `a+b` that exists on disk is a path, not a model and an adapter.
#[test]
fn existing_path_with_a_plus_is_a_path() {
    let ws = workspace();
    let d = ws.path();
    copy_tree(&d.join("models/base"), &d.join("models/my+model"));
    let m = Model::open(&d.join("models/my+model")).unwrap();
    assert!(m.adapter().is_none());
    std::fs::write(
        d.join("r.yml"),
        "merge_method: passthrough\nmodels:\n  - model: models/my+model\n",
    )
    .unwrap();
    let o = smelt(&["merge", "r.yml", "--out", "out"], d);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(load(&d.join("out")), load(&d.join("models/base")));
}

/// Export keeps `model+adapter` as written (relative, the `+` kept), and
/// the exported recipe merges to the same model.
#[test]
fn recipe_export_keeps_model_plus_adapter() {
    let ws = workspace();
    let d = ws.path();
    for (format, file) in [("mergekit", "exported.yml"), ("toml", "exported.toml")] {
        let o = smelt(
            &[
                "recipe",
                "export",
                "recipes/ties.yml",
                "--format",
                format,
                "--out",
                file,
            ],
            d,
        );
        assert!(o.status.success(), "{format}: {}", text(&o));
        let s = std::fs::read_to_string(d.join(file)).unwrap();
        assert!(s.contains("models/base+adapters/lora-a"), "{format}: {s}");
        assert!(s.contains("models/ft+adapters/lora-save"), "{format}: {s}");
        assert!(!s.contains(&d.display().to_string()), "{format}: {s}");
        let out = format!("out-{format}");
        let o = smelt(&["merge", file, "--out", &out], d);
        assert!(o.status.success(), "{format}: {}", text(&o));
    }
    assert_eq!(load(&d.join("out-mergekit")), load(&d.join("out-toml")));
}

/// The output may not go inside the adapter's folder either.
#[test]
fn output_inside_the_adapter_folder_is_refused() {
    let ws = workspace();
    let o = smelt(
        &["merge", "recipes/alone.yml", "--out", "adapters/lora-a/out"],
        ws.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!ws.path().join("adapters/lora-a/out").exists());
}
