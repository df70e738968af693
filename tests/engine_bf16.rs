//! The engine's bf16 path: when every input is bf16, kernels that can read
//! the bit patterns directly (linear, TIES, task arithmetic) must write the
//! same bytes as merging the inputs converted to f32. Also: a tensor big
//! enough to be split across workers merges to the same bytes.

use smelt::engine::{self, Options};
use smelt::merge::{self, Method, TensorParams};
use smelt::model::{from_f32, write_small, Dtype, Model};
use smelt::plan::Plan;
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

const NAME: &str = "model.layers.0.mlp.weight";
const ROWS: usize = 1100;
const COLS: usize = 1000;

/// Values that are exact in bf16, with many repeats (ties at the cut-off).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = smelt::mlp::Rng::new(seed);
    (0..n).map(|_| rng.below(97) as f32 / 64.0 - 0.75).collect()
}

fn family(dir: &Path) -> (Vec<PathBuf>, Vec<Vec<f32>>) {
    family_of(dir, ROWS, 4)
}

fn family_of(dir: &Path, rows: usize, count: usize) -> (Vec<PathBuf>, Vec<Vec<f32>>) {
    let mut paths = Vec::new();
    let mut data = Vec::new();
    for (k, name) in ["base", "ft0", "ft1", "ft2"].iter().enumerate().take(count) {
        let v = values(k as u64 + 1, rows * COLS);
        let p = dir.join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        write_small(
            &p.join("model.safetensors"),
            &[(NAME.to_string(), vec![rows, COLS], v.clone())],
            Dtype::BF16,
            &[],
        )
        .expect("write model");
        paths.push(p);
        data.push(v);
    }
    (paths, data)
}

/// The resolved parameters of the plan's (one) merged tensor.
fn merge_params(plan: &Plan) -> TensorParams {
    plan.jobs
        .iter()
        .find_map(|j| match &j.kind {
            smelt::plan::JobKind::Merge { params, .. } => Some(params.clone()),
            _ => None,
        })
        .expect("a merge job")
}

/// The output tensor of `got` is, byte for byte, `method` over the f32
/// values `data` (base first when `has_base`) merged in memory, as bf16.
fn assert_merged(
    got: &Model,
    method: Method,
    tp: &TensorParams,
    data: &[Vec<f32>],
    has_base: bool,
) {
    let info = got.tensor(NAME).expect("tensor");
    assert_eq!(info.dtype, Dtype::BF16);
    let inputs: Vec<&[f32]> = data[usize::from(has_base)..]
        .iter()
        .map(Vec::as_slice)
        .collect();
    let numel = inputs.first().map_or(0, |v| v.len());
    let mut k = merge::kernel(method, tp, numel, inputs.len()).expect("kernel");
    let want = merge::merge_slices(
        k.as_mut(),
        has_base.then(|| data[0].as_slice()),
        &inputs,
        COLS,
        1 << 16,
    );
    let mut want_bytes = vec![0u8; want.len() * 2];
    from_f32(Dtype::BF16, &want, &mut want_bytes).expect("convert");
    assert!(got.raw(info) == &want_bytes[..], "{}", method.name());
}

#[test]
fn bf16_inputs_merge_to_the_same_bytes_as_their_f32_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (paths, data) = family(dir.path());
    for method in [Method::Linear, Method::Ties, Method::TaskArithmetic] {
        let has_base = method != Method::Linear;
        let models: Vec<PathBuf> = if has_base {
            paths[1..].to_vec()
        } else {
            paths.clone()
        };
        let mut recipe = Recipe::new(method, has_base.then(|| paths[0].clone()), models);
        for (i, m) in recipe.models.iter_mut().enumerate() {
            m.params
                .insert("weight".into(), Value::Number(0.2 + 0.25 * i as f64));
            if method == Method::Ties {
                m.params.insert("density".into(), Value::Number(0.3));
            }
        }
        let out = dir.path().join(format!("out-{}", method.name()));
        let plan = Plan::build(&recipe).expect("plan");
        let (tx, _rx) = crossbeam_channel::unbounded();
        engine::run(&plan, &Options::new(&out), &tx, &AtomicBool::new(false)).expect("merge");
        let got = Model::open(&out).expect("open output");
        assert_merged(&got, method, &merge_params(&plan), &data, has_base);
    }
}

/// 8.5M elements: the apply pass of a kernel that keeps no state between
/// chunks (linear, DARE) is split across workers; the bytes do not change.
#[test]
fn a_tensor_split_across_workers_merges_to_the_same_bytes() {
    const BIG_ROWS: usize = 8500;
    let dir = tempfile::tempdir().expect("tempdir");
    let (paths, data) = family_of(dir.path(), BIG_ROWS, 3);
    for method in [Method::Linear, Method::DareLinear] {
        let has_base = method != Method::Linear;
        let models: Vec<PathBuf> = paths[usize::from(has_base)..].to_vec();
        let mut recipe = Recipe::new(method, has_base.then(|| paths[0].clone()), models);
        for (i, m) in recipe.models.iter_mut().enumerate() {
            m.params
                .insert("weight".into(), Value::Number(0.4 + 0.1 * i as f64));
            if method == Method::DareLinear {
                m.params.insert("density".into(), Value::Number(0.5));
            }
        }
        let out = dir.path().join(format!("out-{}", method.name()));
        let plan = Plan::build(&recipe).expect("plan");
        let mut opts = Options::new(&out);
        opts.threads = Some(3);
        let (tx, _rx) = crossbeam_channel::unbounded();
        engine::run(&plan, &opts, &tx, &AtomicBool::new(false)).expect("merge");
        let got = Model::open(&out).expect("open output");
        assert_merged(&got, method, &merge_params(&plan), &data, has_base);
    }
}

/// 4.4M tied elements: TIES's and breadcrumbs' selection passes and
/// merge are shared by ranges across workers (each range masked from the
/// ties before it); at every worker count the bytes are those of one
/// sweep in order.
#[test]
fn a_selection_split_across_workers_merges_to_the_same_bytes() {
    const BIG_ROWS: usize = 4400;
    let dir = tempfile::tempdir().expect("tempdir");
    let (paths, data) = family_of(dir.path(), BIG_ROWS, 4);
    for method in [Method::Ties, Method::Breadcrumbs] {
        let mut recipe = Recipe::new(method, Some(paths[0].clone()), paths[1..].to_vec());
        for (i, m) in recipe.models.iter_mut().enumerate() {
            m.params
                .insert("weight".into(), Value::Number(0.4 + 0.1 * i as f64));
            m.params
                .insert("density".into(), Value::Number(0.2 + 0.15 * i as f64));
            if method == Method::Breadcrumbs {
                m.params.insert("gamma".into(), Value::Number(0.01));
            }
        }
        let plan = Plan::build(&recipe).expect("plan");
        for threads in [1, 2, 3, 4] {
            let out = dir.path().join(format!("out-{}-{threads}", method.name()));
            let mut opts = Options::new(&out);
            opts.threads = Some(threads);
            let (tx, _rx) = crossbeam_channel::unbounded();
            engine::run(&plan, &opts, &tx, &AtomicBool::new(false)).expect("merge");
            let got = Model::open(&out).expect("open output");
            assert_merged(&got, method, &merge_params(&plan), &data, true);
        }
    }
}
