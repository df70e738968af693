//! Switching a recipe to another method while keeping it runnable
//! ([`Recipe::with_method`]).

use super::check::{global_names, model_names, same, total};
use super::{Recipe, Value};
use crate::merge::{BaseRule, Method, MethodSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A parameter table of a recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `parameters`.
    Global,
    /// `models[i].parameters`.
    Model(usize),
    /// `overrides[i].parameters`.
    Override(usize),
    /// `overrides[o].models.m`: override `o`'s values for model `m`.
    OverrideModel(usize, usize),
    /// `slices[i].parameters`.
    Slice(usize),
    /// `slices[i].sources[j].parameters`.
    SliceSource(usize, usize),
}

impl Table {
    /// The location of parameter `name` in this table, as
    /// [`Recipe::problems`] writes it (`models[1].parameters.density`,
    /// `overrides[0].models.1.density`, ...).
    pub fn at(&self, name: &str) -> String {
        match self {
            Table::Global => format!("parameters.{name}"),
            Table::Model(i) => format!("models[{i}].parameters.{name}"),
            Table::Override(i) => format!("overrides[{i}].parameters.{name}"),
            Table::OverrideModel(o, m) => format!("overrides[{o}].models.{m}.{name}"),
            Table::Slice(i) => format!("slices[{i}].parameters.{name}"),
            Table::SliceSource(i, j) => format!("slices[{i}].sources[{j}].parameters.{name}"),
        }
    }

    /// Whether the table holds one model's values (only per-model names
    /// belong there) rather than values for all.
    pub fn per_model(&self) -> bool {
        matches!(
            self,
            Table::Model(_) | Table::OverrideModel(..) | Table::SliceSource(..)
        )
    }
}

/// What [`Recipe::with_method`] took out of a recipe.
#[derive(Clone, Debug, PartialEq)]
pub enum Dropped {
    /// A parameter the new method does not take.
    Param {
        /// The table it was in.
        table: Table,
        /// The parameter's name.
        name: String,
        /// The value it had.
        value: Value,
    },
    /// The base (or a slice's base): the new method takes none.
    Base(PathBuf),
    /// The seed: the new method draws no random numbers.
    Seed(u64),
    /// Calibration data: only zipit and permute read it.
    Calibration(PathBuf),
}

/// A value [`Recipe::with_method`] put in because the new method requires
/// it and the recipe had none.
#[derive(Clone, Debug, PartialEq)]
pub struct Added {
    /// The table it went into.
    pub table: Table,
    /// The parameter's name.
    pub name: String,
    /// The value given (the method's default, or a neutral one).
    pub value: Value,
}

/// A recipe switched to another method, and what changed on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Switched {
    /// The recipe under the new method.
    pub recipe: Recipe,
    /// What was taken out, for the user to see.
    pub dropped: Vec<Dropped>,
    /// What was put in.
    pub added: Vec<Added>,
}

/// The value a required parameter gets when a switch finds none.
fn required_default(method: Method, name: &str) -> Value {
    match (method, name) {
        // Halfway between the two models.
        (Method::Slerp, "t") => Value::Number(0.5),
        // mergekit's docs (docs/merge_methods.md, "Nearswap") give as the
        // method's reference the model QuartetAnemoi-70B-t0.0001, merged
        // with t = 0.0001.
        (Method::Nearswap, "t") => Value::Number(0.0001),
        // `weight` (every method that requires one): 1.0 per model, as in
        // mergekit's examples.
        _ => Value::Number(1.0),
    }
}

/// Keep the names `spec` takes in `table`; the rest go to `dropped`.
fn keep(
    spec: &MethodSpec,
    table: Table,
    params: &mut BTreeMap<String, Value>,
    dropped: &mut Vec<Dropped>,
) {
    let allowed = if table.per_model() {
        model_names(spec)
    } else {
        global_names(spec)
    };
    let gone: Vec<String> = params
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .cloned()
        .collect();
    for name in gone {
        if let Some(value) = params.remove(&name) {
            dropped.push(Dropped::Param { table, name, value });
        }
    }
}

impl Recipe {
    /// This recipe for method `to`, kept runnable: the parameters `to`
    /// takes (by the rules [`Recipe::problems`] uses: per-model names are
    /// also allowed in the tables for all models) are kept, the others
    /// dropped and reported; required parameters that are missing get
    /// mergekit's usual values (every model's `weight` 1.0, slerp's `t`
    /// 0.5, nearswap's `t` 0.0001) and are reported as added. The seed is
    /// dropped when `to` draws no random numbers, the calibration data
    /// outside zipit/permute, and the base (and slices' bases) when `to`
    /// takes none. Choosing a base for a method that needs one is the
    /// caller's business.
    pub fn with_method(&self, to: Method) -> Switched {
        let spec = to.spec();
        let mut r = self.clone();
        r.method = to;
        let mut dropped = Vec::new();
        let mut added = Vec::new();

        if spec.base == BaseRule::None {
            if let Some(b) = r.base.take() {
                dropped.push(Dropped::Base(b));
            }
            for s in &mut r.slices {
                if let Some(b) = s.base.take() {
                    dropped.push(Dropped::Base(b));
                }
            }
        }
        if !to.draws_random() {
            if let Some(s) = r.seed.take() {
                dropped.push(Dropped::Seed(s));
            }
        }
        if !matches!(to, Method::Zipit | Method::Permute) {
            if let Some(c) = r.calibration.take() {
                dropped.push(Dropped::Calibration(c));
            }
        }

        keep(spec, Table::Global, &mut r.params, &mut dropped);
        for (i, m) in r.models.iter_mut().enumerate() {
            keep(spec, Table::Model(i), &mut m.params, &mut dropped);
        }
        for (i, o) in r.overrides.iter_mut().enumerate() {
            keep(spec, Table::Override(i), &mut o.params, &mut dropped);
            for (m, p) in o.models.iter_mut() {
                keep(spec, Table::OverrideModel(i, *m), p, &mut dropped);
            }
            o.models.retain(|_, p| !p.is_empty());
        }
        for (i, s) in r.slices.iter_mut().enumerate() {
            keep(spec, Table::Slice(i), &mut s.params, &mut dropped);
            for (j, src) in s.sources.iter_mut().enumerate() {
                keep(
                    spec,
                    Table::SliceSource(i, j),
                    &mut src.params,
                    &mut dropped,
                );
            }
        }

        // Required values the recipe lacks.
        let mut add = |table: Table, name: &str, params: &mut BTreeMap<String, Value>| {
            let value = required_default(to, name);
            params.insert(name.to_string(), value.clone());
            added.push(Added {
                table,
                name: name.to_string(),
                value,
            });
        };
        for p in spec.global.iter().filter(|p| p.default.is_none()) {
            let anywhere = total(r.params.get(p.name))
                || (!r.slices.is_empty() && r.slices.iter().all(|s| total(s.params.get(p.name))));
            if !anywhere && !r.params.contains_key(p.name) {
                add(Table::Global, p.name, &mut r.params);
            }
        }
        for p in spec.per_model.iter().filter(|p| p.default.is_none()) {
            if r.params.contains_key(p.name) {
                continue;
            }
            for (i, m) in r.models.iter_mut().enumerate() {
                if !m.params.contains_key(p.name) {
                    add(Table::Model(i), p.name, &mut m.params);
                }
            }
            let base = r.base.clone();
            for (i, s) in r.slices.iter_mut().enumerate() {
                if s.params.contains_key(p.name) {
                    continue;
                }
                let sbase = s.base.clone().or_else(|| base.clone());
                for (j, src) in s.sources.iter_mut().enumerate() {
                    let is_base = spec.base != BaseRule::None
                        && sbase.as_ref().is_some_and(|b| same(&src.model, b));
                    if !is_base && !src.params.contains_key(p.name) {
                        add(Table::SliceSource(i, j), p.name, &mut src.params);
                    }
                }
            }
        }
        Switched {
            recipe: r,
            dropped,
            added,
        }
    }
}
