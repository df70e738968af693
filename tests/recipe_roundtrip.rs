//! TOML ↔ mergekit YAML round trips, saving, and relative paths.

use proptest::prelude::*;
use smelt::merge::{BaseRule, Method, ParamKind, ParamSpec};
use smelt::model::{Dtype, Group};
use smelt::recipe::{ModelEntry, Override, OverrideScope, Recipe, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Write `text` as `dir/name` and load it.
fn reload(dir: &Path, name: &str, text: &str) -> Recipe {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    Recipe::load(&path).unwrap_or_else(|e| panic!("{e}\n--- {name}:\n{text}"))
}

/// The shared splitmix64 stream (`smelt::mlp::splitmix64`), driven by
/// proptest's seed.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        smelt::mlp::splitmix64(&mut self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        // (0, 1], with awkward binary fractions to test float round trips.
        (self.below(1000) + 1) as f64 / 1000.0 + if self.below(2) == 0 { 0.0 } else { 1.0 / 3.0e7 }
    }
}

fn number(g: &mut Gen, p: &ParamSpec) -> f64 {
    match p.kind {
        ParamKind::Int => g.below(20) as f64 + 1.0,
        _ if p.range.is_some() => g.unit().min(1.0),
        _ => g.unit() * 3.0 - 1.0,
    }
}

fn value(g: &mut Gen, p: &ParamSpec) -> Value {
    let scalar = |g: &mut Gen| match p.kind {
        ParamKind::Bool => Value::Bool(g.below(2) == 0),
        _ => Value::Number(number(g, p)),
    };
    let gradient = |g: &mut Gen| match p.kind {
        ParamKind::Float => Value::Gradient((0..2 + g.below(4)).map(|_| number(g, p)).collect()),
        _ => scalar(g),
    };
    match g.below(4) {
        0 | 1 => scalar(g),
        2 => gradient(g),
        _ => {
            let mut entries = Vec::new();
            for f in ["mlp", "self_attn", "q_proj"]
                .iter()
                .take(1 + g.below(3) as usize)
            {
                let v = if g.below(2) == 0 {
                    scalar(g)
                } else {
                    gradient(g)
                };
                entries.push((Some(f.to_string()), v));
            }
            // Required parameters need a catch-all; others may go without.
            if p.default.is_none() || g.below(2) == 0 {
                entries.push((None, scalar(g)));
            }
            Value::Filtered(entries)
        }
    }
}

const MERGEKIT_METHODS: &[Method] = &[
    Method::Linear,
    Method::TaskArithmetic,
    Method::Ties,
    Method::DareTies,
    Method::DareLinear,
    Method::Breadcrumbs,
    Method::BreadcrumbsTies,
    Method::Della,
    Method::DellaLinear,
    Method::Slerp,
    Method::Nuslerp,
    Method::Multislerp,
    Method::Karcher,
    Method::ModelStock,
    Method::Sce,
    Method::Nearswap,
];

/// A valid recipe for a random method, with model paths under `root`.
fn recipe(seed: u64, root: &Path) -> Recipe {
    let mut g = Gen(seed);
    let method = MERGEKIT_METHODS[g.below(MERGEKIT_METHODS.len() as u64) as usize];
    let spec = method.spec();
    let base = match spec.base {
        BaseRule::Required => Some(root.join("models/base")),
        BaseRule::Optional if g.below(2) == 0 => Some(root.join("models/base")),
        _ => None,
    };
    let n = spec.min_models + g.below(3) as usize;
    let n = spec.max_models.map_or(n, |m| n.min(m));
    let models: Vec<PathBuf> = (0..n)
        .map(|i| {
            root.join(if i == 1 {
                "models/odd #name: 'q' \"d\"".to_string()
            } else {
                format!("models/ft {i}")
            })
        })
        .collect();
    let mut r = Recipe::new(method, base, models);
    for p in spec.global {
        if p.default.is_none() || g.below(2) == 0 {
            r.params.insert(p.name.to_string(), value(&mut g, p));
        }
    }
    for m in &mut r.models {
        for p in spec.per_model {
            if p.default.is_none() || g.below(2) == 0 {
                m.params.insert(p.name.to_string(), value(&mut g, p));
            }
        }
    }
    let seed = g.below(3) * 17;
    r.seed = method.draws_random().then_some(seed);
    r.out_dtype =
        [None, Some(Dtype::BF16), Some(Dtype::F32), Some(Dtype::F16)][g.below(4) as usize];
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn toml_yaml_toml_is_lossless(seed in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("recipes")).unwrap();
        // Values are drawn one by one; a few combinations are invalid
        // together (DELLA's density ± epsilon must stay inside (0, 1)), so
        // draw again from the next seed, a bounded number of times.
        let r = (0..16)
            .map(|k| recipe(seed.wrapping_add(k), root))
            .find(|r| r.check().is_empty())
            .unwrap_or_else(|| recipe(seed, root));
        prop_assert!(r.check().is_empty(), "{:?}", r.check());
        let rdir = root.join("recipes");

        let from_toml = reload(&rdir, "a.toml", &r.to_toml(&rdir));
        prop_assert_eq!(&from_toml, &r);

        // No models on disk here: the export cannot read the base's dtype,
        // so it refuses unless the recipe names `out_dtype`.
        if r.out_dtype.is_none() {
            let e = from_toml.to_mergekit_yaml(&rdir).unwrap_err().to_string();
            prop_assert!(e.contains("dtype"), "{}", e);
            return Ok(());
        }
        let yaml = from_toml.to_mergekit_yaml(&rdir).unwrap();
        let from_yaml = reload(&rdir, "b.yml", &yaml);
        prop_assert_eq!(&from_yaml, &r);

        let again = reload(&rdir, "c.toml", &from_yaml.to_toml(&rdir));
        prop_assert_eq!(&again, &r);
    }
}

#[test]
fn every_fixture_survives_yaml_toml_yaml() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/recipes");
    let out = tempfile::tempdir().unwrap();
    // Same depth as the fixtures' folder so relative paths stay short.
    let rdir = out.path().join("recipes");
    std::fs::create_dir_all(&rdir).unwrap();
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let original = Recipe::load(&path).unwrap();
        let toml = reload(&rdir, "x.toml", &original.to_toml(&rdir));
        assert_eq!(toml, original, "{}", path.display());
        let yaml = reload(&rdir, "x.yaml", &toml.to_mergekit_yaml(&rdir).unwrap());
        assert_eq!(yaml, original, "{}", path.display());
    }
}

#[test]
fn written_paths_are_relative_to_the_destination() {
    let mut r = Recipe::new(
        Method::TaskArithmetic,
        Some(PathBuf::from("/w/models/base")),
        vec![PathBuf::from("/w/models/ft0")],
    );
    // (No models on disk: the export is told the output dtype.)
    r.out_dtype = Some(smelt::model::Dtype::BF16);
    let toml = r.to_toml(Path::new("/w/recipes"));
    assert!(toml.contains("base = \"../models/base\""), "{toml}");
    assert!(toml.contains("path = \"../models/ft0\""), "{toml}");
    let yaml = r.to_mergekit_yaml(Path::new("/w")).unwrap();
    // `models/base` would read back as a hub name (org `models`) when no
    // such folder exists: a missing local path is written `./models/base`.
    assert!(yaml.contains("base_model: ./models/base"), "{yaml}");
    assert!(yaml.contains("model: ./models/ft0"), "{yaml}");
}

#[test]
fn save_is_atomic_and_relative() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("recipes");
    std::fs::create_dir_all(&sub).unwrap();
    let mut r = Recipe::new(
        Method::Ties,
        Some(dir.path().join("models/base")),
        vec![dir.path().join("models/a"), dir.path().join("models/b")],
    );
    r.models[0]
        .params
        .insert("weight".into(), Value::Number(0.5));
    r.models[1]
        .params
        .insert("weight".into(), Value::Gradient(vec![0.1, 0.9]));
    let path = sub.join("merge.toml");
    std::fs::write(&path, "old contents").unwrap();
    r.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"../models/a\""), "{text}");
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(Recipe::load(&path).unwrap(), r);
    // Saving into a folder that does not exist fails with the path named.
    let err = r
        .save(&dir.path().join("nope/merge.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

/// Overrides become per-layer gradients in YAML; every tensor, pre/post
/// ones included, resolves the same before and after.
#[test]
fn overrides_fold_into_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("recipes");
    std::fs::create_dir_all(&rdir).unwrap();
    let mut r = Recipe::new(
        Method::Ties,
        Some(dir.path().join("models/base")),
        vec![dir.path().join("models/a"), dir.path().join("models/b")],
    );
    r.models[0]
        .params
        .insert("weight".into(), Value::Number(1.0));
    r.models[0]
        .params
        .insert("density".into(), Value::Gradient(vec![0.2, 0.8]));
    r.models[1].params.insert(
        "weight".into(),
        Value::Filtered(vec![
            (Some("mlp".into()), Value::Number(0.5)),
            (None, Value::Number(0.2)),
        ]),
    );
    r.params.insert("lambda".into(), Value::Number(1.0));
    r.overrides.push(Override {
        scope: OverrideScope::Layers(1, 2),
        params: BTreeMap::from([("lambda".to_string(), Value::Number(1.5))]),
        models: BTreeMap::from([(
            1,
            BTreeMap::from([("density".to_string(), Value::Number(0.3))]),
        )]),
    });
    r.overrides.push(Override {
        scope: OverrideScope::Layers(2, 3),
        params: BTreeMap::new(),
        models: BTreeMap::from([(
            1,
            BTreeMap::from([(
                "weight".to_string(),
                Value::Filtered(vec![(Some("self_attn".into()), Value::Number(0.9))]),
            )]),
        )]),
    });
    assert!(r.check().is_empty(), "{:?}", r.check());
    // TOML keeps overrides as they are.
    assert_eq!(reload(&rdir, "o.toml", &r.to_toml(&rdir)), r);

    let blocks = [
        "mlp.up_proj.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "input_layernorm.weight",
    ];
    let mut tensors = vec!["model.embed_tokens.weight".to_string()];
    for n in 0..6 {
        tensors.extend(blocks.iter().map(|b| format!("model.layers.{n}.{b}")));
    }
    tensors.extend([
        "model.norm.weight".to_string(),
        "lm_head.weight".to_string(),
    ]);
    let yaml = r.to_mergekit_yaml_for(&rdir, &tensors, 6).unwrap();
    let back = reload(&rdir, "o.yml", &yaml);
    assert!(back.overrides.is_empty());
    for tensor in &tensors {
        let group = smelt::model::classify(tensor).group;
        let a = r.resolve(tensor, group, 6);
        let b = back.resolve(tensor, group, 6);
        assert_eq!(a.global, b.global, "{tensor}\n{yaml}");
        assert_eq!(a.models, b.models, "{tensor}\n{yaml}");
    }
    // The override really changed something: layer 2's lambda and density.
    let mid = back.resolve("model.layers.2.mlp.up_proj.weight", Group::Layer(2), 6);
    assert_eq!(mid.global.get("lambda").map(|v| v.as_f64()), Some(1.5));
    assert_eq!(mid.models[1].get("density").map(|v| v.as_f64()), Some(0.3));
    let attn3 = back.resolve("model.layers.3.self_attn.k_proj.weight", Group::Layer(3), 6);
    assert_eq!(attn3.models[1].get("weight").map(|v| v.as_f64()), Some(0.9));
}

#[test]
fn smelt_only_methods_do_not_export() {
    let mut r = Recipe::new(Method::Zipit, None, vec!["a".into(), "b".into()]);
    r.calibration = Some("digits.csv".into());
    let err = r.to_mergekit_yaml(Path::new(".")).unwrap_err().to_string();
    assert!(err.contains("zipit"), "{err}");
}

#[test]
fn model_entry_is_plain_data() {
    // Guard the contract others build on: models carry path and params only.
    let m = ModelEntry {
        path: "x".into(),
        params: BTreeMap::new(),
    };
    assert_eq!(m.clone(), m);
}

/// Slices with parameters at every level: lossless both ways, and the
/// gradient runs across each slice.
#[test]
fn sliced_slerp_round_trip_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("recipes");
    std::fs::create_dir_all(&rdir).unwrap();
    let yml = "\
merge_method: slerp
base_model: ../m/a
slices:
  - sources:
      - {model: ../m/a, layer_range: [0, 4]}
      - {model: ../m/b, layer_range: [0, 4]}
    parameters:
      t: [0, 1]
  - sources:
      - model: ../m/a
        layer_range: [4, 6]
      - model: ../m/b
        layer_range: [4, 6]
    parameters:
      t: [{filter: mlp, value: 0.9}, {value: 0.1}]
parameters:
  t: 0.5
tokenizer_source: base
dtype: bfloat16
out_dtype: bfloat16
";
    let r = reload(&rdir, "s.yml", yml);
    assert_eq!(r.slices.len(), 2);
    assert_eq!(r.sliced_layers(), 6);
    let t = |name: &str, g: Group| r.resolve(name, g, 6).global.get("t").unwrap().as_f64();
    // Slice 0 has 4 layers: output layer 1 sits at t = 1/3.
    assert!((t("model.layers.1.mlp.up_proj.weight", Group::Layer(1)) - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(t("model.layers.4.mlp.up_proj.weight", Group::Layer(4)), 0.9);
    assert_eq!(
        t("model.layers.5.self_attn.q_proj.weight", Group::Layer(5)),
        0.1
    );
    // Embeddings: first slice, first value; the head: last slice.
    assert_eq!(t("model.embed_tokens.weight", Group::Pre), 0.0);
    assert_eq!(t("lm_head.weight", Group::Post), 0.1);
    // The base among a slice's sources is not one of the merged models:
    // only b is.
    assert_eq!(
        r.resolve("model.layers.0.mlp.up_proj.weight", Group::Layer(0), 6)
            .models
            .len(),
        1
    );

    let toml = reload(&rdir, "s.toml", &r.to_toml(&rdir));
    assert_eq!(toml, r);
    let yaml = reload(&rdir, "s2.yml", &toml.to_mergekit_yaml(&rdir).unwrap());
    assert_eq!(yaml, r);
}

/// Exporting overrides without a layout reads the base's headers (the
/// fixture models have 4 layers).
#[test]
fn override_export_reads_the_layer_count() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models");
    let mut r = Recipe::new(
        Method::TaskArithmetic,
        Some(models.join("base")),
        vec![models.join("ft0")],
    );
    r.models[0]
        .params
        .insert("weight".into(), Value::Number(1.0));
    r.overrides.push(Override {
        scope: OverrideScope::Layers(3, 3),
        params: BTreeMap::from([("lambda".to_string(), Value::Number(2.0))]),
        models: BTreeMap::new(),
    });
    let yaml = r.to_mergekit_yaml(&models).unwrap();
    assert!(yaml.contains("lambda: [1.0, 1.0, 1.0, 2.0]"), "{yaml}");
    // Without a readable config, the error names the file.
    let mut lost = r.clone();
    lost.base = Some(models.join("nowhere"));
    let err = lost.to_mergekit_yaml(&models).unwrap_err().to_string();
    assert!(err.contains("nowhere"), "{err}");
}

/// Llama-like tensor names for `n` layers.
fn llama_names(n: usize) -> Vec<String> {
    let mut v = vec!["model.embed_tokens.weight".to_string()];
    for l in 0..n {
        for b in [
            "self_attn.q_proj.weight",
            "mlp.up_proj.weight",
            "input_layernorm.weight",
        ] {
            v.push(format!("model.layers.{l}.{b}"));
        }
    }
    v.push("model.norm.weight".into());
    v.push("lm_head.weight".into());
    v
}

/// At some layer counts mergekit's list position `i / (n - 1) * (n - 1)`
/// is not `i` in floating point (23 layers: layer 15), so a list alone
/// would be off by a rounding error there; the export adds entries for
/// those layers and stays exact, booleans that change per layer included.
#[test]
fn overrides_export_exactly_at_awkward_layer_counts() {
    for n in [23usize, 24, 26, 40, 44] {
        let mut r = Recipe::new(
            Method::DareTies,
            Some("/w/models/base".into()),
            vec!["/w/models/a".into(), "/w/models/b".into()],
        );
        for m in &mut r.models {
            m.params.insert("weight".into(), Value::Number(0.7));
            m.params
                .insert("density".into(), Value::Gradient(vec![0.1, 0.9, 0.3]));
        }
        for (i, l) in [0usize, 7, 13, 15, n - 1].into_iter().enumerate() {
            r.overrides.push(Override {
                scope: OverrideScope::Layers(l, l),
                params: BTreeMap::from([
                    ("lambda".to_string(), Value::Number(1.0 + i as f64 / 7.0)),
                    ("rescale".to_string(), Value::Bool(i % 2 == 0)),
                ]),
                models: BTreeMap::from([(
                    1,
                    BTreeMap::from([("density".to_string(), Value::Number(0.45))]),
                )]),
            });
        }
        r.overrides.push(Override {
            scope: OverrideScope::Head,
            params: BTreeMap::from([("weight".to_string(), Value::Number(0.25))]),
            models: BTreeMap::new(),
        });
        let names = llama_names(n);
        let yaml = r
            .to_mergekit_yaml_for(Path::new("/w"), &names, n)
            .unwrap_or_else(|e| panic!("{n} layers: {e}"));
        let back = Recipe::parse_all(&yaml, Path::new("/w/x.yml")).unwrap();
        for t in &names {
            let g = smelt::model::classify(t).group;
            let (a, b) = (r.resolve(t, g, n), back.resolve(t, g, n));
            assert_eq!(a.global, b.global, "{n} layers, {t}\n{yaml}");
            assert_eq!(a.models, b.models, "{n} layers, {t}\n{yaml}");
        }
    }
}

/// The refusal names each value that would change: parameter, model,
/// where, and the value before and after.
#[test]
fn a_lossy_export_names_the_values() {
    // A sliced recipe with overrides cannot be folded.
    let mut r = Recipe::new(Method::Linear, None, Vec::new());
    r.slices.push(smelt::recipe::Slice {
        sources: vec![smelt::recipe::SliceSource {
            model: "/w/a".into(),
            layer_range: (0, 2),
            params: BTreeMap::from([("weight".to_string(), Value::Number(1.0))]),
        }],
        base: None,
        params: BTreeMap::new(),
    });
    r.overrides.push(Override {
        scope: OverrideScope::Embeddings,
        params: BTreeMap::from([("weight".to_string(), Value::Number(0.5))]),
        models: BTreeMap::new(),
    });
    let err = r.to_mergekit_yaml(Path::new("/w")).unwrap_err().to_string();
    assert!(
        err.contains("overrides[0].parameters.weight = 0.5 (embeddings)"),
        "{err}"
    );
}

/// A whole-number parameter that changes per layer is written with
/// per-layer entries, not a list (a list would give fractions between
/// layers, which smelt refuses to load); an override no tensor reads is
/// refused rather than dropped.
#[test]
fn whole_numbers_per_layer_export_and_load_back() {
    let mut r = Recipe::new(
        Method::Karcher,
        None,
        vec!["/w/models/a".into(), "/w/models/b".into()],
    );
    r.overrides.push(Override {
        scope: OverrideScope::Layers(2, 2),
        params: BTreeMap::from([("max_iter".to_string(), Value::Number(30.0))]),
        models: BTreeMap::new(),
    });
    let names = llama_names(4);
    let yaml = r
        .to_mergekit_yaml_for(Path::new("/w"), &names, 4)
        .unwrap_or_else(|e| panic!("{e}"));
    let back =
        Recipe::parse_all(&yaml, Path::new("/w/x.yml")).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    for t in &names {
        let g = smelt::model::classify(t).group;
        assert_eq!(
            r.resolve(t, g, 4).global,
            back.resolve(t, g, 4).global,
            "{t}\n{yaml}"
        );
    }
    assert!(yaml.contains("model.layers.2."), "{yaml}");

    r.overrides[0].scope = OverrideScope::Layers(3, 6);
    let err = r
        .to_mergekit_yaml_for(Path::new("/w"), &names, 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("overrides[0].layers: layer 6 is past the last layer"),
        "{err}"
    );
}
