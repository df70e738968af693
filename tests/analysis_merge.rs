//! The analysis describes what each method's merge does: per model, the
//! entries the statistics count as kept, and the parameters they count as
//! conflicts, equal what the merge itself keeps, derived here only through
//! the merge's public API (`merge::kernel` + `merge::merge_slices`), never
//! through the analysis code.

use smelt::analysis::{AnalysisError, Analyzer, Inputs, Selection, Target};
use smelt::merge::{self, Method, ParamValue, TensorParams};
use smelt::model::{write_small, Dtype, Group, Model};
use smelt::recipe::{Recipe, Value};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A small tensor with heavy ties and zeros (quantised deltas), and one
/// spanning several engine chunks (65 000 entries each) of 1000-long rows.
const TENSORS: [(&str, [usize; 2]); 2] = [
    ("model.layers.0.mlp.up_proj.weight", [64, 48]),
    ("model.layers.0.mlp.down_proj.weight", [300, 1000]),
];
const N: usize = 3;

/// 31 random bits from the shared splitmix64 stream.
fn bits(s: &mut u64) -> u64 {
    smelt::mlp::splitmix64(s) >> 33
}

/// Base values in [-1, 1); deltas either zero, a multiple of 1/16 (ties)
/// or continuous, all at least 1/64 in magnitude, so `out - base` is
/// non-zero exactly where the merge adds something.
fn family(dir: &Path) -> Inputs {
    let mut s = 42u64;
    let mut base = Vec::new();
    let mut models = vec![Vec::new(); N];
    for (name, shape) in TENSORS {
        let numel = shape[0] * shape[1];
        let b: Vec<f32> = (0..numel)
            .map(|_| (bits(&mut s) % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        for m in models.iter_mut() {
            let v: Vec<f32> = b
                .iter()
                .map(|&x| {
                    let r = bits(&mut s);
                    let mag = match r % 10 {
                        0 => 0.0,
                        1..=4 => (1 + (r >> 8) % 6) as f32 / 16.0,
                        _ => 1.0 / 64.0 + ((r >> 8) % 100_000) as f32 / 100_000.0,
                    };
                    if (r >> 40).is_multiple_of(2) {
                        x + mag
                    } else {
                        x - mag
                    }
                })
                .collect();
            m.push((name.to_string(), shape.to_vec(), v));
        }
        base.push((name.to_string(), shape.to_vec(), b));
    }
    write_small(&dir.join("base"), &base, Dtype::F32, &[]).unwrap();
    for (i, m) in models.iter().enumerate() {
        write_small(&dir.join(format!("ft{i}")), m, Dtype::F32, &[]).unwrap();
    }
    let open = |n: &str| Arc::new(Model::open(&dir.join(n)).unwrap());
    Inputs {
        reference: open("base"),
        models: (0..N).map(|i| open(&format!("ft{i}"))).collect(),
    }
}

fn recipe(method: Method, dir: &Path) -> Recipe {
    let mut r = Recipe::new(
        method,
        Some(dir.join("base")),
        (0..N).map(|i| dir.join(format!("ft{i}"))).collect(),
    );
    let spec = method.spec();
    let takes = |name: &str| spec.per_model.iter().any(|p| p.name == name);
    for (i, m) in r.models.iter_mut().enumerate() {
        let mut set = |k: &str, v: f64| {
            if takes(k) {
                m.params.insert(k.into(), Value::Number(v));
            }
        };
        // Uneven weights, densities under 1.
        set("weight", [1.0, 0.5, 2.0][i]);
        set("density", [0.3, 0.5, 0.7][i]);
        set("gamma", 0.05);
        set("epsilon", 0.1);
    }
    if method == Method::Sce {
        r.params.insert("select_topk".into(), Value::Number(0.4));
    }
    if matches!(method, Method::Ram | Method::RamplusTl) {
        // Past the ties at 1/16, so some of each task vector counts as
        // unchanged.
        r.params.insert("epsilon".into(), Value::Number(0.1));
    }
    r
}

fn read(m: &Model, name: &str) -> Vec<f32> {
    m.read_all_f32(name).unwrap()
}

/// What the merge keeps of each model's task vector, from the merge's
/// output alone: per model, a flag per entry.
fn merge_masks(
    method: Method,
    params: &TensorParams,
    inputs: &Inputs,
    name: &str,
    row: usize,
) -> Vec<Vec<bool>> {
    let base = read(&inputs.reference, name);
    let models: Vec<Vec<f32>> = inputs.models.iter().map(|m| read(m, name)).collect();
    let refs: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
    let numel = base.len();
    let run = |p: &TensorParams| {
        let mut k = merge::kernel(method, p, numel, N).unwrap();
        let out = merge::merge_slices(k.as_mut(), Some(&base), &refs, row, 1 << 16);
        out.iter()
            .zip(&base)
            .map(|(o, b)| o - b != 0.0)
            .collect::<Vec<bool>>()
    };
    if method == Method::Sce {
        // SCE selects positions for all models at once and weighs them
        // itself (positive weights): where it selects, the output moves
        // away from the base; a model keeps its non-zero entries there.
        let selected = run(params);
        return (0..N)
            .map(|i| {
                selected
                    .iter()
                    .zip(models[i].iter().zip(&base))
                    .map(|(&s, (m, b))| s && m - b != 0.0)
                    .collect()
            })
            .collect();
    }
    if matches!(method, Method::Ram | Method::RamplusTl) {
        // RAM has no weights: merged alone, a model's output moves from
        // the base exactly where its change counts (past epsilon).
        return (0..N)
            .map(|i| {
                let mut k = merge::kernel(method, params, numel, 1).unwrap();
                let out = merge::merge_slices(k.as_mut(), Some(&base), &refs[i..=i], row, 1 << 16);
                out.iter().zip(&base).map(|(o, b)| o - b != 0.0).collect()
            })
            .collect();
    }
    // One-hot weights, no normalising, rescaling or scaling: the output
    // minus the base is model i's sparsified task vector (the masks do not
    // depend on weights, and random draws follow the model's index).
    (0..N)
        .map(|i| {
            let mut p = params.clone();
            for (j, m) in p.models.iter_mut().enumerate() {
                m.set("weight", ParamValue::Float(if i == j { 1.0 } else { 0.0 }));
            }
            p.global.set("normalize", ParamValue::Bool(false));
            p.global.set("rescale", ParamValue::Bool(false));
            p.global.set("lambda", ParamValue::Float(1.0));
            run(&p)
        })
        .collect()
}

/// Kept counts and conflicts from masks: with positive weights and
/// rescale factors, an entry conflicts exactly when the kept non-zero
/// entries have both signs (one of them opposes whatever sign is elected).
fn counts(masks: &[Vec<bool>], inputs: &Inputs, name: &str) -> (Vec<u64>, u64) {
    let base = read(&inputs.reference, name);
    let deltas: Vec<Vec<f32>> = inputs
        .models
        .iter()
        .map(|m| {
            read(m, name)
                .iter()
                .zip(&base)
                .map(|(x, b)| x - b)
                .collect()
        })
        .collect();
    let kept = masks
        .iter()
        .zip(&deltas)
        .map(|(m, d)| m.iter().zip(d).filter(|(k, x)| **k && **x != 0.0).count() as u64)
        .collect();
    let conflicts = (0..base.len())
        .filter(|&e| {
            let signs = (0..N)
                .filter(|&i| masks[i][e] && deltas[i][e] != 0.0)
                .map(|i| deltas[i][e] > 0.0);
            let (mut pos, mut neg) = (false, false);
            for s in signs {
                pos |= s;
                neg |= !s;
            }
            pos && neg
        })
        .count() as u64;
    (kept, conflicts)
}

#[test]
fn kept_and_conflicts_equal_what_each_merge_keeps() {
    let d = tempfile::tempdir().unwrap();
    let inputs = family(d.path());
    let cancel = AtomicBool::new(false);
    for method in Method::all().filter(|m| {
        !matches!(
            m,
            Method::Zipit
                | Method::Permute
                | Method::Slerp
                | Method::Nearswap
                | Method::Passthrough
                | Method::ArceeFusion
        )
    }) {
        let r = recipe(method, d.path());
        let mut an = Analyzer::new(1 << 20);
        for (name, shape) in TENSORS {
            let report = an
                .analyze(&inputs, &r, &Target::Tensor(name.into()), &cancel)
                .unwrap_or_else(|e| panic!("{method:?} {name}: {e}"));
            let s = &report.stats;
            assert_eq!(s.selection, method.spec().selection, "{method:?}");
            assert_eq!(s.params as usize, shape[0] * shape[1]);
            assert_eq!(s.agree.iter().sum::<u64>(), s.params, "{method:?}");
            let masks = if merge_has_masks(method) {
                let params = r.resolve(name, Group::Layer(0), 1);
                merge_masks(method, &params, &inputs, name, shape[1])
            } else {
                // Nothing is trimmed: every entry is kept.
                vec![vec![true; shape[0] * shape[1]]; N]
            };
            let (kept, conflicts) = counts(&masks, &inputs, name);
            assert_eq!(s.kept, kept, "{method:?} {name}: kept");
            assert_eq!(s.conflicts, conflicts, "{method:?} {name}: conflicts");
            if method.spec().selection != Selection::None {
                assert!(
                    s.kept_share() < 0.9,
                    "{method:?} {name} trims: {}",
                    s.kept_share()
                );
            }
        }
    }
}

/// arcee_fusion takes one model: the analysis counts as kept exactly the
/// entries the merge fuses (where its output leaves the base).
#[test]
fn arcee_fusion_counts_the_fused_entries() {
    let d = tempfile::tempdir().unwrap();
    let all = family(d.path());
    let inputs = Inputs {
        reference: all.reference.clone(),
        models: vec![all.models[0].clone()],
    };
    let r = Recipe::new(
        Method::ArceeFusion,
        Some(d.path().join("base")),
        vec![d.path().join("ft0")],
    );
    let cancel = AtomicBool::new(false);
    let mut an = Analyzer::new(1 << 20);
    for (name, shape) in TENSORS {
        let s = an
            .analyze(&inputs, &r, &Target::Tensor(name.into()), &cancel)
            .unwrap()
            .stats;
        assert_eq!(s.selection, Selection::Importance);
        let base = read(&inputs.reference, name);
        let model = read(&inputs.models[0], name);
        let params = r.resolve(name, Group::Layer(0), 1);
        let mut k = merge::kernel(Method::ArceeFusion, &params, base.len(), 1).unwrap();
        let out = merge::merge_slices(k.as_mut(), Some(&base), &[&model], shape[1], 1 << 16);
        let fused = out.iter().zip(&base).filter(|(o, b)| *o != *b).count() as u64;
        assert_eq!(s.kept, vec![fused], "{name}");
        // median + 1.5 IQR keeps the outliers: a small share.
        assert!(
            fused > 0 && (fused as usize) < base.len() / 4,
            "{name}: {fused}"
        );
    }
}

fn merge_has_masks(m: Method) -> bool {
    m.spec().selection != Selection::None || m == Method::TaskArithmetic
}

/// DARE's kept counts are its random draws', not a magnitude trim's:
/// changing the seed changes them, and they are not `int(density * n)`.
#[test]
fn dare_counts_follow_the_seeded_draws() {
    let d = tempfile::tempdir().unwrap();
    let inputs = family(d.path());
    let cancel = AtomicBool::new(false);
    let name = TENSORS[1].0;
    let mut r = recipe(Method::DareTies, d.path());
    let mut an = Analyzer::new(1 << 20);
    let a = an
        .analyze(&inputs, &r, &Target::Tensor(name.into()), &cancel)
        .unwrap()
        .stats;
    let ties = an
        .analyze(
            &inputs,
            &recipe(Method::Ties, d.path()),
            &Target::Tensor(name.into()),
            &cancel,
        )
        .unwrap()
        .stats;
    assert_ne!(a.kept, ties.kept);
    // Random: the kept share of non-zero entries follows the density,
    // and so does the energy kept (magnitude trimming keeps far more).
    for i in 0..N {
        let share = a.kept[i] as f64 / a.nonzero[i] as f64;
        let want = [0.3, 0.5, 0.7][i];
        assert!((share - want).abs() < 0.01, "model {i}: {share}");
        assert!(
            (a.norm_kept[i] - want).abs() < 0.02,
            "model {i}: {}",
            a.norm_kept[i]
        );
        assert!(ties.norm_kept[i] > a.norm_kept[i] + 0.1);
    }
    // Weights and lambda change the vote, never what is kept.
    for m in &mut r.models {
        m.params.insert("weight".into(), Value::Number(0.25));
    }
    r.params.insert("lambda".into(), Value::Number(3.0));
    let b = an
        .analyze(&inputs, &r, &Target::Tensor(name.into()), &cancel)
        .unwrap()
        .stats;
    assert_eq!(a.kept, b.kept);
    assert_eq!(a.kept_energy, b.kept_energy);
}

/// Breadcrumbs' gamma cuts the largest entries: the kept energy drops.
#[test]
fn breadcrumbs_gamma_removes_the_largest_entries() {
    let d = tempfile::tempdir().unwrap();
    let inputs = family(d.path());
    let cancel = AtomicBool::new(false);
    let name = TENSORS[1].0;
    let mut an = Analyzer::new(1 << 20);
    let mut energy = Vec::new();
    for gamma in [0.0, 0.1] {
        let mut r = recipe(Method::Breadcrumbs, d.path());
        for m in &mut r.models {
            m.params.insert("gamma".into(), Value::Number(gamma));
        }
        let s = an
            .analyze(&inputs, &r, &Target::Tensor(name.into()), &cancel)
            .unwrap()
            .stats;
        energy.push(s.norm_kept[0]);
    }
    assert!(energy[1] < energy[0] - 0.05, "{energy:?}");
}

#[test]
fn zipit_has_no_task_vector_statistics() {
    let d = tempfile::tempdir().unwrap();
    let inputs = family(d.path());
    let r = recipe(Method::Zipit, d.path());
    let e = Analyzer::new(1 << 20)
        .analyze(
            &inputs,
            &r,
            &Target::Group(Group::Layer(0)),
            &AtomicBool::new(false),
        )
        .unwrap_err();
    assert!(matches!(e, AnalysisError::NotPerTensor { .. }), "{e}");
}
