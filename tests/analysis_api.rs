//! The analysis API the workbench and `smelt analyze` share: errors per
//! tensor with groups that still finish, previews of big tensors, and
//! groups that add up their tensors.

use smelt::analysis::{AnalysisError, Analyzer, Inputs, Stats, Target};
use smelt::merge::Method;
use smelt::model::{write_small, Dtype, Group, Model};
use smelt::recipe::{Recipe, Value};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn inputs_of(recipe: &Recipe) -> Inputs {
    let open = |p: &Path| Arc::new(Model::open(p).unwrap());
    Inputs {
        reference: open(recipe.base.as_ref().unwrap()),
        models: recipe.models.iter().map(|m| open(&m.path)).collect(),
    }
}

/// digits-tasks: three fine-tunes whose classifier heads have different
/// shapes. The head tensors are reported, and every group finishes over
/// the rest.
#[test]
fn a_tensor_that_differs_in_shape_is_skipped_and_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models");
    let recipe = Recipe::load(&root.join("recipes/digits-tasks-ties.toml")).unwrap();
    let inputs = inputs_of(&recipe);
    let cancel = AtomicBool::new(false);
    let mut an = Analyzer::new(1 << 20);
    let mut groups: Vec<Group> = inputs
        .reference
        .tensors()
        .iter()
        .map(|t| t.place.group)
        .collect();
    groups.dedup();
    let targets: Vec<Target> = groups.iter().map(|&g| Target::Group(g)).collect();
    let reports = an
        .analyze_many(&inputs, &recipe, &targets, &cancel)
        .unwrap();
    let mut skipped = Vec::new();
    let mut params = 0;
    for r in reports {
        let r = r.expect("a group always finishes");
        assert_eq!(r.stats.agree.iter().sum::<u64>(), r.stats.params);
        params += r.stats.params;
        skipped.extend(r.skipped);
    }
    assert!(params > 0);
    assert!(!skipped.is_empty(), "the heads differ in shape");
    for s in &skipped {
        assert!(s.tensor.starts_with("heads."), "{s:?}");
        assert!(s.reason.contains("shape"), "{s:?}");
    }
    // Asked alone, such a tensor is an error that says why.
    let e = an
        .analyze(
            &inputs,
            &recipe,
            &Target::Tensor(skipped[0].tensor.clone()),
            &cancel,
        )
        .unwrap_err();
    assert!(matches!(e, AnalysisError::Shape { .. }), "{e}");
    // The same group asked one at a time (cached now) gives the same.
    for g in groups {
        let r = an
            .analyze(&inputs, &recipe, &Target::Group(g), &cancel)
            .unwrap();
        assert_eq!(r.stats.agree.iter().sum::<u64>(), r.stats.params);
    }
}

/// Uniform in [-1, 1) from the shared splitmix64 stream.
fn uniform(s: &mut u64) -> f32 {
    ((smelt::mlp::splitmix64(s) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A family with one tensor big enough for a preview (4096 x 1024, bf16)
/// and two small ones in another layer.
fn big_family(dir: &Path) -> Recipe {
    let mut s = 7u64;
    let big = "model.layers.0.mlp.up_proj.weight";
    let (rows, cols) = (4096, 1024);
    let base: Vec<f32> = (0..rows * cols).map(|_| uniform(&mut s) * 0.05).collect();
    let small: Vec<f32> = (0..256).map(|_| uniform(&mut s) * 0.05).collect();
    let write = |name: &str, big_v: Vec<f32>, small_v: Vec<f32>| {
        write_small(
            &dir.join(name),
            &[
                (big.to_string(), vec![rows, cols], big_v),
                (
                    "model.layers.1.mlp.up_proj.weight".to_string(),
                    vec![16, 16],
                    small_v.clone(),
                ),
                (
                    "model.layers.1.mlp.down_proj.weight".to_string(),
                    vec![16, 16],
                    small_v,
                ),
            ],
            Dtype::BF16,
            &[],
        )
        .unwrap();
    };
    write("base", base.clone(), small.clone());
    for i in 0..3 {
        let b = base
            .iter()
            .map(|x| x + uniform(&mut s) * uniform(&mut s).abs() * 0.01)
            .collect();
        let m = small.iter().map(|x| x + uniform(&mut s) * 0.01).collect();
        write(&format!("ft{i}"), b, m);
    }
    let mut r = Recipe::new(
        Method::Ties,
        Some(dir.join("base")),
        (0..3).map(|i| dir.join(format!("ft{i}"))).collect(),
    );
    for m in &mut r.models {
        m.params.insert("weight".into(), Value::Number(1.0));
        m.params.insert("density".into(), Value::Number(0.3));
    }
    r
}

#[test]
fn a_preview_estimates_a_big_tensor_under_the_method() {
    let d = tempfile::tempdir().unwrap();
    let mut recipe = big_family(d.path());
    let inputs = inputs_of(&recipe);
    let cancel = AtomicBool::new(false);
    let big = "model.layers.0.mlp.up_proj.weight";
    for method in [Method::Ties, Method::DareTies, Method::DellaLinear] {
        recipe.method = method;
        if method == Method::DellaLinear {
            for m in &mut recipe.models {
                m.params.insert("epsilon".into(), Value::Number(0.1));
            }
        }
        let mut an = Analyzer::new(1 << 20);
        let pre = an
            .preview(&inputs, &recipe, big, &cancel)
            .unwrap()
            .expect("big tensor");
        assert!(pre.params < 4096 * 1024 / 2, "a sample: {}", pre.params);
        let exact = an
            .analyze(&inputs, &recipe, &Target::Tensor(big.into()), &cancel)
            .unwrap()
            .stats;
        assert!(
            (pre.kept_share() - exact.kept_share()).abs() < 0.01,
            "{method:?}"
        );
        assert!(
            (pre.conflict_share() - exact.conflict_share()).abs() < 0.02,
            "{method:?}"
        );
        assert_eq!(pre.selection, exact.selection);
        // Once the exact numbers are known, no estimate is needed.
        assert_eq!(an.preview(&inputs, &recipe, big, &cancel).unwrap(), None);
        // Small tensors get none.
        let small = "model.layers.1.mlp.up_proj.weight";
        assert_eq!(an.preview(&inputs, &recipe, small, &cancel).unwrap(), None);
    }
}

/// A group is the sum of its tensors, each selected on its own.
#[test]
fn a_group_adds_up_its_tensors() {
    let d = tempfile::tempdir().unwrap();
    let recipe = big_family(d.path());
    let inputs = inputs_of(&recipe);
    let cancel = AtomicBool::new(false);
    let mut an = Analyzer::new(1 << 20);
    let g = an
        .analyze(&inputs, &recipe, &Target::Group(Group::Layer(1)), &cancel)
        .unwrap();
    assert!(g.skipped.is_empty());
    let mut sum = Stats::new(3);
    for t in [
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    ] {
        let s = Analyzer::new(1 << 20)
            .analyze(&inputs, &recipe, &Target::Tensor(t.into()), &cancel)
            .unwrap()
            .stats;
        sum.combine(&s);
    }
    assert_eq!(g.stats.params, 512);
    assert_eq!(g.stats.agree, sum.agree);
    assert_eq!(g.stats.kept, sum.kept);
    assert_eq!(g.stats.conflicts, sum.conflicts);
    assert_eq!(g.stats.selection, smelt::analysis::Selection::Magnitude);
    assert!(g.stats.elects_sign);
    // A cancelled request says so.
    let mut other = recipe.clone();
    other.models[0]
        .params
        .insert("density".into(), Value::Number(0.9));
    let e = an
        .analyze(
            &inputs,
            &other,
            &Target::Group(Group::Layer(1)),
            &AtomicBool::new(true),
        )
        .unwrap_err();
    assert!(matches!(e, AnalysisError::Cancelled), "{e}");
}
