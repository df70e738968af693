//! Issue 4's bar, on the committed `digits-zip` models: ZipIt! with every
//! hidden layer zipped stays within 5 points of the ensemble's joint
//! accuracy; permutation and plain weight averaging fall clearly below.

use smelt::eval::evaluate;
use smelt::mlp::{Dataset, MlpModel, Split};
use smelt::zip::{zip_merge, ZipMethod};
use std::path::Path;

#[test]
fn zipit_is_close_to_the_ensemble_and_beats_permute_and_average() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/digits-zip");
    let models = [
        MlpModel::load(&root.join("digits-0-4")).unwrap(),
        MlpModel::load(&root.join("digits-5-9")).unwrap(),
    ];
    let ds = Dataset::builtin().unwrap();
    let train = ds.split(Split::Train);
    let test = ds.split(Split::Test);
    let joint = |method, depth| {
        let m = zip_merge(&models, method, depth, &[], &train).unwrap();
        let r = evaluate(&m, &test, "merged", "test").unwrap();
        assert_eq!(r.joint_total, test.len());
        r.joint_accuracy
    };
    let ensemble = joint(ZipMethod::Average, Some(0));
    let zipit = joint(
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        None,
    );
    let permute = joint(ZipMethod::Permute, None);
    let average = joint(ZipMethod::Average, None);
    let msg = format!(
        "ensemble {ensemble:.3} zipit {zipit:.3} permute {permute:.3} average {average:.3}"
    );
    assert!(ensemble > 0.85, "{msg}");
    assert!(zipit >= ensemble - 0.05 - 1e-9, "{msg}");
    assert!(permute < zipit - 0.10, "{msg}");
    assert!(average < zipit - 0.10, "{msg}");
}

#[test]
fn zip_paths_writes_a_multi_head_model_that_evaluates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/digits-zip");
    let a = root.join("digits-0-4");
    let b = root.join("digits-5-9");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zipped");
    let (written, stats) = smelt::zip::zip_paths(
        &[&a, &b],
        ZipMethod::Zipit {
            alpha: 0.5,
            beta: 1.0,
        },
        Some(1),
        &[],
        None,
        &out,
        false,
    )
    .unwrap();
    assert_eq!(stats.mean_match_corr.len(), 1);
    let m = MlpModel::load(&written).unwrap();
    assert_eq!(m.trunk.len(), 1);
    assert_eq!(m.heads.len(), 2);
    assert_eq!(m.heads[1].classes, [5, 6, 7, 8, 9]);
    let r = smelt::eval::evaluate_path(&written, None).unwrap();
    assert!(r.joint_accuracy > 0.8, "{r:?}");
    // Exists: refused without force.
    assert!(smelt::zip::zip_paths(
        &[&a, &b],
        ZipMethod::Permute,
        Some(1),
        &[],
        None,
        &out,
        false
    )
    .is_err());
    // A user data file (plain CSV) works: the 0-4 model on three samples.
    let csv = dir.path().join("d.csv");
    let test = Dataset::builtin().unwrap().split(Split::Test);
    let mut text = String::new();
    for i in 0..15 {
        let row: Vec<String> = test.row(i).iter().map(|v| format!("{v}")).collect();
        text += &format!("{},{}\n", row.join(","), test.y[i]);
    }
    std::fs::write(&csv, text).unwrap();
    let r = smelt::eval::evaluate_path(&a, Some(&csv)).unwrap();
    assert!(r.data.contains("d.csv"));
    let ds = Dataset::load(&csv).unwrap();
    let n04 = ds.split(Split::Test).y.iter().filter(|&&y| y < 5).count();
    assert_eq!(r.joint_total, n04);
}
