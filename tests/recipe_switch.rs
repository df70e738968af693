//! `Recipe::with_method`: every pair of methods, from a recipe with every
//! parameter of the first set in every table that takes it.

use smelt::merge::{BaseRule, Method, ParamKind, ParamSpec};
use smelt::recipe::{Dropped, Override, OverrideScope, Recipe, Switched, Table, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn sample(p: &ParamSpec, salt: f64) -> Value {
    match p.kind {
        ParamKind::Bool => Value::Bool(salt > 0.5),
        ParamKind::Int => Value::Number(2.0),
        ParamKind::Float => Value::Number(0.25 + salt / 4.0),
    }
}

/// A recipe for `m` with every parameter it takes set everywhere it may
/// be: method-wide and per-model names in `parameters` and an override's
/// table, per-model names on each model and in the override's model
/// entries; plus a base, seed and calibration where `m` reads them.
fn full(m: Method) -> Recipe {
    let spec = m.spec();
    let base = (spec.base != BaseRule::None).then(|| PathBuf::from("/w/base"));
    let mut r = Recipe::new(m, base, vec!["/w/a".into(), "/w/b".into()]);
    let all: Vec<&ParamSpec> = spec.global.iter().chain(spec.per_model).collect();
    for p in &all {
        r.params.insert(p.name.into(), sample(p, 0.1));
    }
    for (i, e) in r.models.iter_mut().enumerate() {
        for p in spec.per_model {
            e.params
                .insert(p.name.into(), sample(p, 0.3 + i as f64 / 10.0));
        }
    }
    let mut o = Override {
        scope: OverrideScope::Layers(0, 1),
        params: BTreeMap::new(),
        models: BTreeMap::new(),
    };
    for p in &all {
        o.params.insert(p.name.into(), sample(p, 0.7));
    }
    for i in 0..2 {
        let t: BTreeMap<String, Value> = spec
            .per_model
            .iter()
            .map(|p| (p.name.to_string(), sample(p, 0.9 - i as f64 / 10.0)))
            .collect();
        if !t.is_empty() {
            o.models.insert(i, t);
        }
    }
    r.overrides.push(o);
    r.seed = m.draws_random().then_some(5);
    if matches!(m, Method::Zipit | Method::Permute) {
        r.calibration = Some("/w/digits.csv".into());
    }
    r
}

/// Every (table, name) with a parameter in it.
fn entries(r: &Recipe) -> BTreeSet<(Table, String)> {
    let mut out = BTreeSet::new();
    let mut add = |t: Table, p: &BTreeMap<String, Value>| {
        out.extend(p.keys().map(|k| (t, k.clone())));
    };
    add(Table::Global, &r.params);
    for (i, m) in r.models.iter().enumerate() {
        add(Table::Model(i), &m.params);
    }
    for (i, o) in r.overrides.iter().enumerate() {
        add(Table::Override(i), &o.params);
        for (m, p) in &o.models {
            add(Table::OverrideModel(i, *m), p);
        }
    }
    out
}

/// Whether `method` takes `name` in a table like `t`.
fn understood(method: Method, t: Table, name: &str) -> bool {
    let spec = method.spec();
    spec.per_model.iter().any(|p| p.name == name)
        || (!t.per_model() && spec.global.iter().any(|p| p.name == name))
}

fn table_mut(r: &mut Recipe, t: Table) -> &mut BTreeMap<String, Value> {
    match t {
        Table::Global => &mut r.params,
        Table::Model(i) => &mut r.models[i].params,
        Table::Override(i) => &mut r.overrides[i].params,
        Table::OverrideModel(o, m) => r.overrides[o].models.entry(m).or_default(),
        Table::Slice(i) => &mut r.slices[i].params,
        Table::SliceSource(i, j) => &mut r.slices[i].sources[j].params,
    }
}

/// Put back what a switch dropped.
fn restore(mut r: Recipe, dropped: &[Dropped]) -> Recipe {
    for d in dropped {
        match d {
            Dropped::Param { table, name, value } => {
                table_mut(&mut r, *table).insert(name.clone(), value.clone());
            }
            Dropped::Base(b) => r.base = Some(b.clone()),
            Dropped::Seed(s) => r.seed = Some(*s),
            Dropped::Calibration(c) => r.calibration = Some(c.clone()),
        }
    }
    r
}

/// Problems about parameter names (unknown, misplaced, required missing).
fn name_problems(r: &Recipe) -> Vec<String> {
    r.check()
        .into_iter()
        .filter(|p| {
            p.contains("unknown parameter")
                || p.contains("method-wide parameter")
                || p.contains("is not a parameter")
                || p.contains("needs `")
        })
        .collect()
}

#[test]
fn every_switch_keeps_what_the_new_method_understands() {
    for a in Method::all() {
        let r = full(a);
        assert!(name_problems(&r).is_empty(), "{a:?}: {:?}", r.check());
        let before = entries(&r);
        for b in Method::all() {
            let Switched {
                recipe: s,
                dropped,
                added,
            } = r.with_method(b);
            let ctx = format!("{} -> {}", a.name(), b.name());
            assert_eq!(s.method, b, "{ctx}");
            assert!(name_problems(&s).is_empty(), "{ctx}: {:?}", s.check());

            // Kept: exactly the understood ones, values unchanged.
            let added_set: BTreeSet<(Table, String)> =
                added.iter().map(|x| (x.table, x.name.clone())).collect();
            let kept: BTreeSet<_> = before
                .iter()
                .filter(|(t, n)| understood(b, *t, n))
                .cloned()
                .collect();
            let after = entries(&s);
            let expected: BTreeSet<_> = kept.union(&added_set).cloned().collect();
            assert_eq!(after, expected, "{ctx}");
            for (t, n) in &kept {
                assert_eq!(
                    table_mut(&mut s.clone(), *t).get(n),
                    table_mut(&mut r.clone(), *t).get(n),
                    "{ctx}: {}",
                    t.at(n)
                );
            }
            // Added only what was missing; dropped exactly the rest.
            assert!(added_set.is_disjoint(&before), "{ctx}: {added:?}");
            let dropped_set: BTreeSet<(Table, String)> = dropped
                .iter()
                .filter_map(|d| match d {
                    Dropped::Param { table, name, .. } => Some((*table, name.clone())),
                    _ => None,
                })
                .collect();
            let gone: BTreeSet<_> = before.difference(&kept).cloned().collect();
            assert_eq!(dropped_set, gone, "{ctx}");

            // The drops are where `check` would have complained, by the
            // same location strings.
            let mut raw = r.clone();
            raw.method = b;
            let complaints: BTreeSet<String> = raw
                .problems()
                .into_iter()
                .filter(|p| {
                    p.msg.contains("unknown parameter") || p.msg.contains("method-wide parameter")
                })
                .map(|p| p.at)
                .collect();
            let places: BTreeSet<String> = gone.iter().map(|(t, n)| t.at(n)).collect();
            assert_eq!(complaints, places, "{ctx}");

            // Base, seed, calibration.
            let has = |f: &dyn Fn(&Dropped) -> bool| dropped.iter().any(f);
            assert_eq!(
                has(&|d| matches!(d, Dropped::Base(_))),
                r.base.is_some() && b.spec().base == BaseRule::None,
                "{ctx}"
            );
            if b.spec().base == BaseRule::None {
                assert!(s.base.is_none(), "{ctx}");
            } else {
                assert_eq!(s.base, r.base, "{ctx}");
            }
            assert_eq!(
                has(&|d| matches!(d, Dropped::Seed(5))),
                r.seed.is_some() && !b.draws_random(),
                "{ctx}"
            );
            assert_eq!(s.seed.is_some(), r.seed.is_some() && b.draws_random());
            assert_eq!(
                has(&|d| matches!(d, Dropped::Calibration(_))),
                r.calibration.is_some() && !matches!(b, Method::Zipit | Method::Permute),
                "{ctx}"
            );

            // A -> B -> A, with what A -> B dropped put back, is A again.
            let back = s.with_method(a).recipe;
            assert_eq!(restore(back, &dropped), r, "{ctx} -> {}", a.name());
        }
    }
}

#[test]
fn required_values_get_mergekit_defaults() {
    let r = Recipe::new(Method::Karcher, None, vec!["/w/a".into(), "/w/b".into()]);
    let s = r.with_method(Method::Ties);
    let weights: Vec<_> = s
        .added
        .iter()
        .map(|a| (a.table.at(&a.name), a.value.clone()))
        .collect();
    assert_eq!(
        weights,
        [
            (
                "models[0].parameters.weight".to_string(),
                Value::Number(1.0)
            ),
            (
                "models[1].parameters.weight".to_string(),
                Value::Number(1.0)
            ),
        ]
    );
    let t = |m: Method| {
        let s = Recipe::new(Method::Karcher, None, vec!["/w/a".into()]).with_method(m);
        s.recipe.params.get("t").cloned()
    };
    assert_eq!(t(Method::Slerp), Some(Value::Number(0.5)));
    assert_eq!(t(Method::Nearswap), Some(Value::Number(0.0001)));
    // A weight given once for every model is enough.
    let mut r = Recipe::new(Method::Linear, None, vec!["/w/a".into()]);
    r.params.insert("weight".into(), Value::Number(0.3));
    assert!(r.with_method(Method::TaskArithmetic).added.is_empty());
}

#[test]
fn table_locations_match_check() {
    assert_eq!(Table::Global.at("lambda"), "parameters.lambda");
    assert_eq!(
        Table::Model(1).at("density"),
        "models[1].parameters.density"
    );
    assert_eq!(
        Table::OverrideModel(0, 1).at("density"),
        "overrides[0].models.1.density"
    );
    assert_eq!(
        Table::SliceSource(2, 0).at("weight"),
        "slices[2].sources[0].parameters.weight"
    );
}

/// The one rule for a recipe from a list of models.
#[test]
fn for_models_is_ties_with_a_base_and_linear_without() {
    let models = vec![PathBuf::from("/w/a"), PathBuf::from("/w/b")];
    let r = Recipe::for_models(models.clone(), Some("/w/base".into()));
    assert_eq!(r.method, Method::Ties);
    assert_eq!(r.base, Some(PathBuf::from("/w/base")));
    assert_eq!(r.models.len(), 2);
    for m in &r.models {
        assert_eq!(m.params.get("weight"), Some(&Value::Number(1.0)));
        assert_eq!(m.params.get("density"), Some(&Value::Number(0.5)));
    }
    assert!(r.check().is_empty(), "{:?}", r.check());
    let r = Recipe::for_models(models, None);
    assert_eq!(r.method, Method::Linear);
    assert_eq!(r.base, None);
    for m in &r.models {
        assert_eq!(
            m.params.keys().collect::<Vec<_>>(),
            ["weight"],
            "{:?}",
            m.params
        );
    }
    assert!(r.check().is_empty(), "{:?}", r.check());
    // The base is never one of the models.
    let r = Recipe::for_models(
        vec!["/w/base".into(), "/w/a".into()],
        Some("/w/./base".into()),
    );
    assert_eq!(r.models.len(), 1);
    assert!(r.check().is_empty(), "{:?}", r.check());
}
