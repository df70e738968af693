//! Saving over the opened recipe keeps the user's comments and layout:
//! `Recipe::to_toml_preserving`.

use proptest::prelude::*;
use smelt::merge::Method;
use smelt::recipe::{ModelEntry, Override, OverrideScope, Recipe, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// In the style of sample_models/recipes: comments above and beside keys,
/// inline parameter tables, an integer where a float is meant.
const ORIGINAL: &str = r#"# TIES over three fine-tunes of one base MLP, each on its own digits with
# its own head: the trunk is merged, the heads are kept side by side.
method = "ties"
base = "../digits-tasks/base"   # the shared ancestor

[parameters]
normalize = true
lambda = 1   # keep the task vectors' scale

# The first fine-tune: digits 0-2.
[[models]]
path = "../digits-tasks/ft-0-2"
parameters = { weight = 1.0, density = 0.5 }

# Digits 3-6.
[[models]]
path = "../digits-tasks/ft-3-6"
parameters = { weight = 1.0, density = 0.5 }

# Digits 7-9: the odd one out.
[[models]]
path = "../digits-tasks/ft-7-9"
parameters = { weight = 1.0, density = 0.5 }
"#;

/// The folder the recipe lives in (never read: paths only).
fn dir() -> PathBuf {
    PathBuf::from("/w/recipes")
}

fn original() -> Recipe {
    Recipe::parse_all(ORIGINAL, &dir().join("r.toml")).expect("the original parses")
}

fn reparse(text: &str) -> Recipe {
    Recipe::parse_all(text, &dir().join("r.toml")).unwrap_or_else(|e| panic!("{e:?}\n---\n{text}"))
}

fn comments(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.find('#').map(|i| l[i..].trim_end()))
        .collect()
}

#[test]
fn unchanged_recipe_is_written_back_byte_for_byte() {
    let text = original().to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(text, ORIGINAL);
}

#[test]
fn a_value_change_is_made_in_place() {
    let mut r = original();
    r.models[1]
        .params
        .insert("density".into(), Value::Number(0.3));
    r.params.insert("lambda".into(), Value::Number(1.25));
    let text = r.to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(reparse(&text), r);
    assert_eq!(comments(&text), comments(ORIGINAL), "{text}");
    assert!(
        text.contains("parameters = { weight = 1.0, density = 0.3 }"),
        "{text}"
    );
    assert!(
        text.contains("lambda = 1.25   # keep the task vectors' scale"),
        "{text}"
    );
    // Only those two lines changed.
    let changed = text
        .lines()
        .zip(ORIGINAL.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 2, "{text}");
}

#[test]
fn a_removed_model_takes_only_its_own_lines() {
    let mut r = original();
    r.models.remove(1);
    let text = r.to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(reparse(&text), r);
    assert!(!text.contains("ft-3-6"), "{text}");
    // The other models keep their comments.
    assert!(
        text.contains("# The first fine-tune: digits 0-2."),
        "{text}"
    );
    assert!(text.contains("# Digits 7-9: the odd one out."), "{text}");
    assert!(text.starts_with("# TIES over three"), "{text}");
}

#[test]
fn added_model_override_and_seed_are_appended_where_they_belong() {
    let mut r = original();
    r.models.push(ModelEntry {
        path: PathBuf::from("/w/digits-tasks/ft-extra"),
        params: BTreeMap::from([("weight".to_string(), Value::Number(0.5))]),
    });
    r.overrides.push(Override {
        scope: OverrideScope::Layers(1, 2),
        params: BTreeMap::from([("lambda".to_string(), Value::Number(1.5))]),
        models: BTreeMap::from([(
            0,
            BTreeMap::from([("density".to_string(), Value::Number(0.7))]),
        )]),
    });
    r.overrides.push(Override {
        scope: OverrideScope::Head,
        params: BTreeMap::from([("lambda".to_string(), Value::Number(0.5))]),
        models: BTreeMap::new(),
    });
    r.out_dtype = Some(smelt::model::Dtype::BF16);
    let text = r.to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(reparse(&text), r);
    assert_eq!(comments(&text), comments(ORIGINAL), "{text}");
    // The new model comes after the last one, before the overrides.
    let extra = text.find("ft-extra").unwrap();
    assert!(text.find("ft-7-9").unwrap() < extra, "{text}");
    assert!(extra < text.find("[[overrides]]").unwrap(), "{text}");
    // A new top-level key goes with the other top-level keys.
    assert!(
        text.find("out_dtype").unwrap() < text.find("[parameters]").unwrap(),
        "{text}"
    );
    assert!(text.contains("group = \"head\""), "{text}");
    // The new model's parameters are inline, like its siblings'.
    assert!(
        text.contains("path = \"../digits-tasks/ft-extra\"\nparameters = { weight = 0.5 }"),
        "{text}"
    );
}

#[test]
fn switching_method_rewrites_only_what_changes() {
    let r = original().with_method(Method::DareTies).recipe;
    let mut r = r;
    r.seed = Some(9);
    let text = r.to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(reparse(&text), r);
    assert!(text.contains("method = \"dare_ties\""), "{text}");
    assert!(text.contains("seed = 9"), "{text}");
    assert_eq!(comments(&text), comments(ORIGINAL), "{text}");

    // To linear: the base and the TIES-only values go, comments on the
    // lines that stay are kept.
    let s = original().with_method(Method::Linear).recipe;
    let text = s.to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(reparse(&text), s);
    assert!(!text.contains("base ="), "{text}");
    assert!(!text.contains("density"), "{text}");
    assert!(text.contains("# Digits 3-6."), "{text}");
    assert!(text.contains("parameters = { weight = 1.0 }"), "{text}");
}

#[test]
fn reordered_models_keep_their_comments_and_the_new_order() {
    let mut r = original();
    r.models.swap(0, 2);
    let text = r.to_toml_preserving(ORIGINAL, &dir()).unwrap();
    assert_eq!(reparse(&text), r);
    let odd = text.find("# Digits 7-9: the odd one out.").unwrap();
    let first = text.find("# The first fine-tune").unwrap();
    assert!(odd < first, "{text}");
    assert!(odd < text.find("ft-7-9").unwrap(), "{text}");
}

#[test]
fn not_toml_is_an_error() {
    let err = original()
        .to_toml_preserving("method = \n", &dir())
        .unwrap_err()
        .to_string();
    assert!(err.contains("recipe being saved over"), "{err}");
}

/// Random edits of the sample (each kept valid, so the text can be read
/// back with the checks): whatever the recipe becomes, the text read back
/// is that recipe, and the header comment survives.
fn edited(seed: u64) -> Recipe {
    let mut g = seed;
    let mut next = |n: u64| smelt::mlp::splitmix64(&mut g) % n;
    let methods: Vec<Method> = Method::all()
        .filter(|m| !matches!(m, Method::Zipit | Method::Permute | Method::Passthrough))
        .collect();
    let mut r = original();
    // A value the method takes, for a model or for all.
    let per_model = |m: Method| m.spec().per_model.first().map(|p| p.name);
    let any_name = |m: Method| {
        let s = m.spec();
        s.global
            .iter()
            .chain(s.per_model)
            .find(|p| p.kind != smelt::merge::ParamKind::Bool)
            .map(|p| p.name)
    };
    for _ in 0..1 + next(5) {
        match next(7) {
            0 => {
                let m = methods[next(methods.len() as u64) as usize];
                r = r.with_method(m).recipe;
            }
            1 if r.models.len() > 1 => {
                let i = next(r.models.len() as u64) as usize;
                r.models.remove(i);
            }
            2 => {
                let mut params = BTreeMap::new();
                if let Some(n) = per_model(r.method) {
                    params.insert(n.to_string(), Value::Number(0.5));
                }
                r.models.push(ModelEntry {
                    path: Path::new("/w/models").join(format!("m{}", next(100))),
                    params,
                });
            }
            3 => {
                if let Some(n) = any_name(r.method) {
                    r.overrides.push(Override {
                        scope: match next(3) {
                            0 => OverrideScope::Embeddings,
                            1 => OverrideScope::Head,
                            _ => OverrideScope::Layers(next(3) as usize, 3),
                        },
                        params: BTreeMap::from([(n.to_string(), Value::Number(0.5))]),
                        models: BTreeMap::new(),
                    });
                }
            }
            4 if !r.models.is_empty() => {
                if let Some(n) = per_model(r.method) {
                    let i = next(r.models.len() as u64) as usize;
                    r.models[i]
                        .params
                        .insert(n.into(), Value::Gradient(vec![0.2, 0.4]));
                }
            }
            5 => {
                r.params.clear();
            }
            _ => {
                if r.method.draws_random() {
                    r.seed = Some(next(10));
                }
            }
        }
    }
    // Keep it runnable: a base where one is needed, the model count.
    let spec = r.method.spec();
    if spec.base == smelt::merge::BaseRule::Required && r.base.is_none() {
        r.base = Some(PathBuf::from("/w/digits-tasks/base"));
    }
    if let Some(max) = spec.max_models {
        r.models.truncate(max);
    }
    while r.models.len() < spec.min_models {
        let n = r.models.len();
        r.models.push(ModelEntry {
            path: Path::new("/w/models").join(format!("pad{n}")),
            params: BTreeMap::new(),
        });
    }
    r = r.with_method(r.method).recipe;
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn preserving_text_reads_back_as_the_recipe(seed in any::<u64>()) {
        let r = edited(seed);
        prop_assume!(r.check().is_empty());
        let text = r.to_toml_preserving(ORIGINAL, &dir()).unwrap();
        let back = Recipe::parse_all(&text, &dir().join("r.toml"));
        prop_assert!(back.is_ok(), "{:?}\n{}", back, text);
        prop_assert_eq!(back.unwrap(), r, "{}", text);
        prop_assert!(text.starts_with("# TIES over three"), "{}", text);
    }
}
