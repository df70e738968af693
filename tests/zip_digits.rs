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
