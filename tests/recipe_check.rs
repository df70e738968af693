//! Every `check` failure gives its message at the right recipe line, in both
//! formats, with did-you-mean suggestions where a name is misspelt.

use smelt::merge::Method;
use smelt::recipe::{Recipe, RecipeError, Value};
use std::path::PathBuf;

/// Load `text` as `name` from a temp folder; all problems as (line, msg).
fn problems(name: &str, text: &str) -> Vec<(usize, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    match Recipe::load_all(&path) {
        Ok(_) => Vec::new(),
        Err(errs) => errs
            .into_iter()
            .map(|e| match e {
                RecipeError::At { path: p, line, msg } => {
                    assert_eq!(p, path);
                    (line, msg)
                }
                other => panic!("not located: {other}"),
            })
            .collect(),
    }
}

/// Exactly one problem, at `line`, whose message contains every `needle`.
fn one(name: &str, text: &str, line: usize, needles: &[&str]) {
    let ps = problems(name, text);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].0, line, "{ps:?}");
    for n in needles {
        assert!(ps[0].1.contains(n), "`{}` lacks `{n}`", ps[0].1);
    }
}

const TIES_OK: &str = r#"method = "ties"
base = "base"

[[models]]
path = "a"
[models.parameters]
weight = 1.0
density = 0.5
"#;

#[test]
fn a_good_recipe_has_no_problems() {
    assert!(problems("r.toml", TIES_OK).is_empty());
}

#[test]
fn unknown_method_suggests_the_nearest() {
    one(
        "r.toml",
        &TIES_OK.replace("\"ties\"", "\"tiez\""),
        1,
        &["unknown method `tiez`", "did you mean `ties`?"],
    );
    one(
        "r.yml",
        "merge_method: task_arithmatic\nbase_model: b\nmodels:\n  - model: a\n    parameters: {weight: 1}\n",
        1,
        &["did you mean `task_arithmetic`?"],
    );
}

#[test]
fn unknown_parameter_suggests_from_the_method_spec() {
    one(
        "r.toml",
        &TIES_OK.replace("density = 0.5", "densty = 0.5"),
        8,
        &["`densty`", "did you mean `density`?"],
    );
    one(
        "r.toml",
        &format!("{TIES_OK}\n[parameters]\nnormalise = true\n"),
        11,
        &["did you mean `normalize`?"],
    );
    // A method-wide name in a model's table says where it belongs.
    one(
        "r.toml",
        &TIES_OK.replace("density = 0.5", "density = 0.5\nlambda = 2"),
        9,
        &["method-wide"],
    );
}

#[test]
fn unknown_format_keys_suggest_too() {
    let ps = problems("r.toml", &TIES_OK.replace("base = ", "bsae = "));
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 2 && m.contains("did you mean `base`?")),
        "{ps:?}"
    );
    let ps = problems("r.toml", &TIES_OK.replace("path = ", "pth = "));
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 5
                && m.contains("unknown key `pth` in [[models]]: did you mean `path`?")),
        "{ps:?}"
    );
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 4 && m.contains("needs `path`")),
        "{ps:?}"
    );
    let yml =
        "merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    paramters: {weight: 1}\n";
    let ps = problems("r.yml", yml);
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 5 && m.contains("did you mean `parameters`?")),
        "{ps:?}"
    );
    let ps = problems(
        "r.yml",
        "merge_method: ties\nbase_modle: b\nmodels:\n  - model: a\n    parameters: {weight: 1}\n",
    );
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 2 && m.contains("did you mean `base_model`?")),
        "{ps:?}"
    );
}

#[test]
fn density_and_select_topk_must_be_in_unit_interval() {
    one(
        "r.toml",
        &TIES_OK.replace("density = 0.5", "density = 1.5"),
        8,
        &["`density` = 1.5 is outside (0, 1]"],
    );
    one(
        "r.toml",
        &TIES_OK.replace("density = 0.5", "density = 0"),
        8,
        &["outside (0, 1]"],
    );
    // Every point of a gradient is checked.
    one(
        "r.toml",
        &TIES_OK.replace("density = 0.5", "density = [0.5, 1.2]"),
        8,
        &["1.2"],
    );
    one(
        "r.yml",
        "merge_method: sce\nbase_model: b\nmodels:\n  - model: a\n  - model: c\nparameters:\n  select_topk: 0\n",
        7,
        &["`select_topk` = 0 is outside (0, 1]"],
    );
    // YAML, nested in a flow mapping on the third model's line.
    let yml = "merge_method: ties\nbase_model: b\nmodels:\n  - {model: a, parameters: {weight: 1}}\n  - {model: c, parameters: {weight: 1, density: 2}}\n";
    one("r.yml", yml, 5, &["`density` = 2 is outside"]);
}

#[test]
fn slerp_and_nearswap_take_exactly_two_models() {
    let text = "method = \"slerp\"\nbase = \"b\"\n[parameters]\nt = 0.5\n[[models]]\npath = \"a\"\n[[models]]\npath = \"c\"\n";
    one(
        "r.toml",
        text,
        5,
        &["slerp needs exactly 2 models", "a base plus 2 others"],
    );
    let yml =
        "merge_method: nearswap\nbase_model: b\nmodels:\n  - model: b\nparameters: {t: 0.1}\n";
    one("r.yml", yml, 1, &["nearswap needs exactly 2 models"]);
}

#[test]
fn model_stock_needs_three_in_all() {
    let yml = "merge_method: model_stock\nbase_model: b\nmodels:\n  - model: b\n  - model: a\n";
    one(
        "r.yml",
        yml,
        3,
        &["model_stock needs at least 3 models in all", "1 other"],
    );
}

#[test]
fn missing_base_where_required() {
    one(
        "r.toml",
        &TIES_OK.replace("base = \"base\"\n", ""),
        1,
        &["ties needs a base model"],
    );
    let yml = "merge_method: task_arithmetic\nmodels:\n  - model: a\n    parameters: {weight: 1}\n";
    one("r.yml", yml, 1, &["task_arithmetic needs a base model"]);
}

#[test]
fn required_parameters() {
    one(
        "r.toml",
        "method = \"linear\"\n\n[[models]]\npath = \"a\"\n[models.parameters]\nweight = 1\n\n[[models]]\npath = \"c\"\n",
        8,
        &["linear needs `weight` for every model"],
    );
    // A filter list without a catch-all leaves some tensors without a weight.
    one(
        "r.toml",
        "method = \"linear\"\n[[models]]\npath = \"a\"\n[models.parameters]\nweight = [{ filter = \"mlp\", value = 1 }]\n",
        5,
        &["no catch-all"],
    );
    // A global weight covers every model (mergekit falls back to it).
    assert!(problems(
        "r.toml",
        "method = \"linear\"\n[parameters]\nweight = 1\n[[models]]\npath = \"a\"\n"
    )
    .is_empty());
    one(
        "r.yml",
        "merge_method: slerp\nbase_model: b\nmodels:\n  - model: a\n",
        1,
        &["slerp needs `t`"],
    );
}

#[test]
fn overrides_are_checked() {
    let text = format!("{TIES_OK}\n[[overrides]]\nlayers = [3, 1]\n[[overrides.models]]\nmodel = 4\n[overrides.models.parameters]\ndensity = 3.0\n");
    let ps = problems("r.toml", &text);
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 11 && m.contains("first is after the last")),
        "{ps:?}"
    );
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 12 && m.contains("model 4 does not exist")),
        "{ps:?}"
    );
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 15 && m.contains("outside (0, 1]")),
        "{ps:?}"
    );
}

#[test]
fn syntax_errors_have_lines() {
    let ps = problems("r.toml", "method = \"ties\"\nbase = \n");
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].0, 2, "{ps:?}");
    let ps = problems(
        "r.yml",
        "merge_method: ties\nmodels:\n  - model: a\n   bad: [\n",
    );
    assert_eq!(ps.len(), 1);
    assert!(ps[0].0 >= 3, "{ps:?}");
}

#[test]
fn load_reports_the_first_problem_and_load_all_every_one() {
    let text = TIES_OK
        .replace("density = 0.5", "density = 1.5")
        .replace("base = ", "bsae = ");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, &text).unwrap();
    let all = Recipe::load_all(&path).unwrap_err();
    assert_eq!(all.len(), 3, "{all:?}"); // bsae, density, and the missing base
    let first = Recipe::load(&path).unwrap_err().to_string();
    assert!(
        first.contains("r.toml:1:") || first.contains("r.toml:2:"),
        "{first}"
    );
}

#[test]
fn check_on_a_built_recipe_returns_every_problem() {
    let mut r = Recipe::new(Method::ModelStock, None, vec![PathBuf::from("a")]);
    r.params.insert("filter_wize".into(), Value::Bool(true));
    let ps = r.check();
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(ps.iter().any(|p| p.contains("needs a base model")));
    assert!(ps.iter().any(|p| p.contains("at least 3 models")));
    assert!(ps
        .iter()
        .any(|p| p.starts_with("parameters.filter_wize")
            && p.contains("did you mean `filter_wise`?")));
}

#[test]
fn slice_problems_point_at_their_lines() {
    let yml = "\
merge_method: slerp
base_model: a
slices:
  - sources:
      - model: a
        layer_range: [0, 4]
      - model: b
        layer_range: [0, 3]
parameters:
  t: 0.5
";
    one("r.yml", yml, 8, &["same number of layers"]);
    let toml = "method = \"passthrough\"\n\n[[slices]]\n[[slices.sources]]\nmodel = \"a\"\nlayer_range = [2, 2]\n";
    one("r.toml", toml, 6, &["layer_range [2, 2] is empty"]);
    let toml = "method = \"passthrough\"\n\n[[slices]]\n[[slices.sources]]\nmodel = \"a\"\nlayer_rnage = [0, 2]\n";
    let ps = problems("r.toml", toml);
    assert!(
        ps.iter()
            .any(|(l, m)| *l == 6 && m.contains("did you mean `layer_range`?")),
        "{ps:?}"
    );
}

#[test]
fn group_overrides_parse_and_bad_scopes_are_named() {
    let with = |scope: &str| {
        format!("{TIES_OK}\n[[overrides]]\n{scope}\n[overrides.parameters]\nlambda = 0.5\n")
    };
    // TIES_OK is 8 lines; the override's scope sits on line 11.
    assert!(problems("r.toml", &with("group = \"embeddings\"")).is_empty());
    assert!(problems("r.toml", &with("group = \"head\"")).is_empty());
    one(
        "r.toml",
        &with("group = \"haed\""),
        11,
        &["unknown group `haed`", "did you mean `head`?"],
    );
    one(
        "r.toml",
        &with("layers = 2\ngroup = \"head\""),
        12,
        &["either `layers` or `group`, not both"],
    );
    one(
        "r.toml",
        &with("# nothing"),
        10,
        &["needs `layers = [first, last]`", "group = \"embeddings\""],
    );
}

#[test]
fn group_overrides_resolve_on_pre_and_post_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(
        &path,
        format!("{TIES_OK}\n[[overrides]]\ngroup = \"head\"\n[overrides.parameters]\nlambda = [0.5, 0.9]\n\n[[overrides]]\nlayers = [0, 3]\n[overrides.parameters]\nlambda = 2.0\n\n[[overrides]]\ngroup = \"embeddings\"\n[[overrides.models]]\nmodel = 0\n[overrides.models.parameters]\ndensity = 0.25\n"),
    )
    .unwrap();
    let r = Recipe::load(&path).unwrap();
    use smelt::model::Group;
    let lambda = |t: &str, g: Group| r.resolve(t, g, 4).global.get("lambda").unwrap().as_f64();
    let density = |t: &str, g: Group| {
        r.resolve(t, g, 4).models[0]
            .get("density")
            .unwrap()
            .as_f64()
    };
    // A gradient in a group override gives its first value.
    assert_eq!(lambda("lm_head.weight", Group::Post), 0.5);
    assert_eq!(lambda("model.norm.weight", Group::Post), 0.5);
    assert_eq!(lambda("model.embed_tokens.weight", Group::Pre), 1.0);
    assert_eq!(
        lambda("model.layers.0.mlp.up_proj.weight", Group::Layer(0)),
        2.0
    );
    assert_eq!(density("model.embed_tokens.weight", Group::Pre), 0.25);
    assert_eq!(density("lm_head.weight", Group::Post), 0.5);
    assert_eq!(
        density("model.layers.3.mlp.up_proj.weight", Group::Layer(3)),
        0.5
    );
    // TOML round trip keeps the scopes.
    let again = dir.path().join("again.toml");
    r.save(&again).unwrap();
    assert_eq!(Recipe::load(&again).unwrap(), r);
}

const ZIP: &str = r#"method = "zipit"

[parameters]
depth = 2

[[models]]
path = "a"

[[models]]
path = "b"
"#;

/// What zipit/permute would not read is refused where it is written.
#[test]
fn zip_recipes_refuse_what_the_engine_does_not_read() {
    assert!(problems("r.toml", ZIP).is_empty());
    let with = |o: &str| format!("{ZIP}\n[[overrides]]\n{o}\n");
    // Layers 0 and 1 are zipped at depth 2; layer 2 is not.
    assert!(problems(
        "r.toml",
        &with("layers = [0, 1]\n[overrides.parameters]\nalpha = 0.3")
    )
    .is_empty());
    one(
        "r.toml",
        &with("layers = [1, 2]\n[overrides.parameters]\nalpha = 0.3"),
        12,
        &["layers 1-2 lies past zip depth 2", "0..=1"],
    );
    one(
        "r.toml",
        &with("group = \"head\"\n[overrides.parameters]\nalpha = 0.3"),
        12,
        &["zipit zips layers only"],
    );
    one(
        "r.toml",
        &with("layers = 0\n[overrides.parameters]\ndepth = 1"),
        15,
        &["`depth` is one value for the whole merge"],
    );
    one(
        "r.toml",
        &with("layers = 0\n[overrides.parameters]\nbeta = [0.5, 1.0]"),
        15,
        &["zipit takes one number for `beta` in an override"],
    );
    one(
        "r.toml",
        &ZIP.replace("depth = 2", "depth = 2\nalpha = [0.2, 0.8]"),
        5,
        &["zipit takes one number for `alpha`"],
    );
    one(
        "r.toml",
        &ZIP.replace("depth = 2", "depth = [1, 2]"),
        4,
        &["`depth` takes a whole number; a gradient"],
    );
    one(
        "r.toml",
        &ZIP.replace("method = \"zipit\"\n", "method = \"zipit\"\nseed = 3\n"),
        2,
        &["zipit draws no random numbers"],
    );
}

#[test]
fn overrides_in_sliced_recipes_and_unread_slice_values_are_refused() {
    let yml = "\
merge_method: ties
base_model: a
slices:
  - sources:
      - model: a
        layer_range: [0, 2]
        parameters: {weight: 1.0}
      - model: b
        layer_range: [0, 2]
        parameters: {weight: 1.0}
";
    one("r.yml", yml, 7, &["this source is the slice's base"]);
    let toml = "method = \"passthrough\"\n\n[[slices]]\nbase = \"a\"\n[[slices.sources]]\nmodel = \"a\"\nlayer_range = [0, 2]\n";
    one("r.toml", toml, 4, &["passthrough takes no base model"]);
    let toml = "method = \"passthrough\"\n\n[[slices]]\n[[slices.sources]]\nmodel = \"a\"\nlayer_range = [0, 2]\n\n[[overrides]]\nlayers = 1\n";
    one("r.toml", toml, 8, &["not supported together with slices"]);
}

/// `problems` gives each location apart, in the documented form.
#[test]
fn problems_are_structured() {
    let mut r = Recipe::new(
        Method::Ties,
        Some(PathBuf::from("base")),
        vec![PathBuf::from("a"), PathBuf::from("b")],
    );
    r.models[0]
        .params
        .insert("weight".into(), Value::Number(1.0));
    r.models[1]
        .params
        .insert("weight".into(), Value::Number(1.0));
    r.models[1]
        .params
        .insert("density".into(), Value::Number(2.0));
    r.seed = Some(1);
    r.overrides.push(smelt::recipe::Override {
        scope: smelt::recipe::OverrideScope::Head,
        params: Default::default(),
        models: [(1, [("densty".to_string(), Value::Number(0.2))].into())].into(),
    });
    let ats: Vec<String> = r.problems().into_iter().map(|p| p.at).collect();
    assert_eq!(
        ats,
        [
            "models[1].parameters.density",
            "overrides[0].models.1.densty",
            "seed"
        ]
    );
    assert_eq!(r.check().len(), 3);
    assert!(r.check()[2].starts_with("seed: ties draws no random numbers"));
}
