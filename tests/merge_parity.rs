//! Parity of the merge kernels with mergekit 0.1.5 on the fixture recipes:
//! every tensor of every recipe (passthrough's renaming is the planner's),
//! merged in small chunks so the multi-chunk paths run.

mod common;
use common::tied_positions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use smelt::merge::{self, Method, ParamMap, ParamValue, TensorParams};

const N_LAYERS: usize = 4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit")
}

struct Tensors {
    map: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

fn load(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut map = BTreeMap::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        map.insert(name.to_string(), (view.shape().to_vec(), data));
    }
    Tensors { map }
}

fn layer_of(name: &str) -> Option<usize> {
    let rest = name.split("layers.").nth(1)?;
    rest.split('.').next()?.parse().ok()
}

/// A gradient (list of numbers) at this tensor's layer: piecewise linear at
/// t = layer / (n_layers - 1); tensors outside the layers take the first.
fn gradient(points: &[f64], name: &str) -> f64 {
    let Some(layer) = layer_of(name) else {
        return points[0];
    };
    if points.len() == 1 {
        return points[0];
    }
    let t = layer as f64 / (N_LAYERS - 1) as f64;
    let pos = t * (points.len() - 1) as f64;
    let i = (pos.floor() as usize).min(points.len() - 2);
    let frac = pos - i as f64;
    points[i] * (1.0 - frac) + points[i + 1] * frac
}

fn scalar(v: &Value, name: &str) -> Option<ParamValue> {
    match v {
        Value::Bool(b) => Some(ParamValue::Bool(*b)),
        Value::Number(n) => n.as_f64().map(ParamValue::Float),
        Value::Sequence(items) => {
            if items.iter().all(|x| x.is_number()) {
                let pts: Vec<f64> = items.iter().filter_map(|x| x.as_f64()).collect();
                Some(ParamValue::Float(gradient(&pts, name)))
            } else {
                // {filter, value} entries: first substring match wins; an
                // entry without a filter matches everything.
                for item in items {
                    let filter = item.get("filter").and_then(|f| f.as_str());
                    if filter.is_none_or(|f| name.contains(f)) {
                        return item.get("value").and_then(|v| scalar(v, name));
                    }
                }
                None
            }
        }
        _ => None,
    }
}

fn params_of(v: Option<&Value>, name: &str) -> ParamMap {
    let mut m = ParamMap::default();
    if let Some(Value::Mapping(map)) = v {
        for (k, val) in map {
            if let (Some(k), Some(pv)) = (k.as_str(), scalar(val, name)) {
                m.set(k, pv);
            }
        }
    }
    m
}

fn run_recipe(name: &str) {
    let dir = fixtures();
    let text = std::fs::read_to_string(dir.join(format!("recipes/{name}.yml"))).expect("recipe");
    let recipe: Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let method_name = recipe["merge_method"].as_str().expect("merge_method");
    let method = Method::from_name(method_name).expect("known method");
    let model_dir = |p: &str| dir.join("recipes").join(p).join("model.safetensors");
    let base_path = recipe.get("base_model").and_then(|b| b.as_str());
    let base = base_path.map(|b| load(&model_dir(b)));
    let mut models = Vec::new();
    for m in recipe["models"].as_sequence().expect("models") {
        let path = m["model"].as_str().expect("model path");
        if Some(path) == base_path {
            continue; // mergekit folds the base out of the model list
        }
        models.push((load(&model_dir(path)), m.get("parameters").cloned()));
    }
    let expected = load(&dir.join(format!("outputs/{name}/model.safetensors")));
    assert!(!expected.map.is_empty());
    let mut worst = 0.0f64;
    let (mut exempt, mut checked) = (0usize, 0usize);
    for (tname, (shape, want)) in &expected.map {
        let global = params_of(recipe.get("parameters"), tname);
        let tp = TensorParams {
            tensor: tname.clone(),
            global,
            models: models
                .iter()
                .map(|(_, p)| params_of(p.as_ref(), tname))
                .collect(),
            seed: 0,
        };
        let inputs: Vec<&[f32]> = models
            .iter()
            .map(|(t, _)| t.map[tname].1.as_slice())
            .collect();
        let b = base.as_ref().map(|b| b.map[tname].1.as_slice());
        let numel = want.len();
        let row_len = *shape.last().unwrap_or(&1);
        let mut k = merge::kernel(method, &tp, numel, inputs.len())
            .unwrap_or_else(|e| panic!("{name}/{tname}: {e}"));
        let got = merge::merge_slices(k.as_mut(), b, &inputs, row_len, 1000);
        assert_eq!(got.len(), numel);
        // Trimming methods may legitimately differ where a task vector has
        // entries of equal magnitude (a tie at the top-k cut-off: smelt keeps
        // the lowest indices, mergekit whatever its sort returns).
        let tied = if method.spec().trims {
            tied_positions(&inputs, b)
        } else {
            vec![false; numel]
        };
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (f64::from(g) - f64::from(w)).abs();
            let tol = 1e-4 * f64::from(w.abs()) + 1e-6;
            if err > tol && tied[i] {
                exempt += 1;
                continue;
            }
            assert!(err <= tol, "{name}/{tname}[{i}]: got {g}, mergekit {w}");
            worst = worst.max(err / (f64::from(w.abs()) + 1e-6));
        }
        checked += numel;
    }
    eprintln!("{name}: {checked} values, worst relative error {worst:.2e}, {exempt} differ at tied magnitudes");
    // Ties are coincidences in these float32 inputs: a handful at most.
    assert!(
        exempt <= 8,
        "{name}: {exempt} differences at tied positions"
    );
}

macro_rules! parity {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            run_recipe(stringify!($name));
        }
    )*};
}

parity!(
    linear,
    task_arithmetic,
    ties,
    ties_nonorm,
    breadcrumbs_ties,
    slerp,
    nuslerp,
    multislerp,
    karcher,
    model_stock,
    sce,
    nearswap
);
