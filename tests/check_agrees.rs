//! What `recipe check` accepts, the merge accepts: each recipe here once
//! passed `smelt recipe check` and then failed the merge, or was merged
//! with a value nothing could mean. Now `recipe check` refuses each one
//! with its recipe line, and `smelt merge` refuses it before writing
//! anything.

mod common;

use common::smelt;

/// A temp folder with the fixture models (4 layers each) in `models/`.
fn scratch() -> tempfile::TempDir {
    common::fixture_models(&["base", "ft0", "ft1"])
}

/// `recipe check` and `merge` both refuse `text` (saved as `file`) with
/// exit 2 and a message holding `file:line` and `says`; no output appears.
fn refused(file: &str, text: &str, line: usize, says: &str) {
    let dir = scratch();
    let d = dir.path();
    std::fs::write(d.join(file), text).expect("write recipe");
    let check = smelt(&["recipe", "check", file], d);
    let err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(
        check.status.code(),
        Some(2),
        "recipe check accepted:\n{text}\n{err}"
    );
    assert!(
        err.contains(&format!("{file}:{line}:")),
        "want line {line} in: {err}"
    );
    assert!(err.contains(says), "want `{says}` in: {err}");
    let merge = smelt(&["merge", file, "--out", "out"], d);
    let merr = String::from_utf8_lossy(&merge.stderr).into_owned();
    assert_eq!(
        merge.status.code(),
        Some(2),
        "merge accepted:\n{text}\n{merr}"
    );
    assert!(merr.contains(says), "want `{says}` in: {merr}");
    assert!(
        !d.join("out").exists(),
        "the refused merge wrote its output"
    );
}

#[test]
fn della_epsilon_past_its_density_is_refused_at_check() {
    refused(
        "r.yml",
        "merge_method: della\nbase_model: models/base\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1.0, density: 0.5, epsilon: 0.9}\n",
        5,
        "epsilon",
    );
}

#[test]
fn linear_weights_summing_to_zero_under_normalize_are_refused_at_check() {
    refused(
        "r.yml",
        "merge_method: linear\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1.0}\n  - model: models/ft1\n    parameters: {weight: -1.0}\nparameters: {normalize: true}\n",
        2,
        "sum to 0",
    );
}

#[test]
fn an_override_past_the_models_layers_is_refused() {
    refused(
        "r.toml",
        "method = \"task_arithmetic\"\nbase = \"models/base\"\n\n[[models]]\npath = \"models/ft0\"\n[models.parameters]\nweight = 1.0\n\n[[overrides]]\nlayers = [10, 20]\n[overrides.parameters]\nlambda = 0.5\n",
        10,
        "layers",
    );
}

#[test]
fn breadcrumbs_gamma_past_one_is_refused() {
    refused(
        "r.yml",
        "merge_method: breadcrumbs\nbase_model: models/base\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1.0, density: 0.5, gamma: 2}\n",
        5,
        "gamma",
    );
}

#[test]
fn slerp_t_past_one_is_refused() {
    refused(
        "r.yml",
        "merge_method: slerp\nbase_model: models/ft0\nmodels:\n  - model: models/ft0\n  - model: models/ft1\nparameters:\n  t: 2\n",
        7,
        "`t`",
    );
}

#[test]
fn karcher_negative_max_iter_is_refused() {
    refused(
        "r.yml",
        "merge_method: karcher\nmodels:\n  - model: models/ft0\n  - model: models/ft1\nparameters:\n  max_iter: -5\n",
        6,
        "max_iter",
    );
}

#[test]
fn weights_beyond_f32_are_refused() {
    refused(
        "r.yml",
        "merge_method: linear\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1.0e308}\n  - model: models/ft1\n    parameters: {weight: 1.0}\n",
        4,
        "f32",
    );
}

#[test]
fn a_slice_past_its_model_names_the_slice_and_line() {
    refused(
        "r.yml",
        "slices:\n  - sources:\n      - {model: models/ft0, layer_range: [0, 2]}\n  - sources:\n      - {model: models/ft1, layer_range: [2, 6]}\nmerge_method: passthrough\n",
        5,
        "slices[1]",
    );
}
