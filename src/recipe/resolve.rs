//! Parameter values for one output tensor, as mergekit computes them.
//!
//! mergekit's rules (read from its `config.py` / `plan.py`, and checked on
//! the parity fixtures):
//! - a list of numbers is a gradient over the layers of a slice: at layer
//!   `i` of `n`, `t = i / (n - 1)` (`t = 1` when the slice has one layer),
//!   and the value is piecewise linear over the list's evenly spaced points;
//! - tensors before the first layer and after the last (embeddings, final
//!   norm, lm_head) use `t = 0`, the list's first value;
//! - `{filter, value}` entries are tried in order; the first whose filter is
//!   a substring of the tensor name (or that has no filter) gives the value;
//!   when none matches, the lookup falls through to the next level;
//! - a model's parameter is looked up in the model's (slice source's)
//!   parameters, then the slice's, then the recipe's, then the default.
//!
//! smelt's overrides then apply on top, for the tensors in their scope (a
//! layer range, or the embeddings / head group), later overrides winning;
//! inside a layer-range override a gradient runs across the override's own
//! range, and in a group override it gives its first value.

use super::check::same;
use super::{Recipe, Slice, Value};
use crate::merge::{ParamMap, ParamValue, TensorParams};
use crate::model::Group;
use std::collections::BTreeMap;
use std::path::Path;

/// Evaluate a value for `tensor` at gradient position `t` in [0, 1].
/// `None` when no filter matches.
pub(crate) fn evaluate(v: &Value, tensor: &str, t: f64) -> Option<ParamValue> {
    match v {
        Value::Bool(b) => Some(ParamValue::Bool(*b)),
        Value::Number(x) => Some(ParamValue::Float(*x)),
        Value::Gradient(xs) => Some(ParamValue::Float(interpolate(xs, t))),
        Value::Filtered(entries) => entries
            .iter()
            .find(|(f, _)| {
                f.as_deref()
                    .is_none_or(|f| !tensor.is_empty() && tensor.contains(f))
            })
            .and_then(|(_, v)| evaluate(v, tensor, t)),
    }
}

/// Piecewise-linear interpolation over evenly spaced points, as mergekit:
/// `scaled = t * (len - 1)`, blend the entries at `floor(scaled)` and the
/// next one.
pub(crate) fn interpolate(xs: &[f64], t: f64) -> f64 {
    match xs.len() {
        0 => f64::NAN,
        1 => xs[0],
        n => {
            let scaled = t.clamp(0.0, 1.0) * (n - 1) as f64;
            let i0 = (scaled.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            let frac = scaled - i0 as f64;
            (1.0 - frac) * xs[i0] + frac * xs[i1]
        }
    }
}

/// Gradient position of layer `i` in a run of `n` layers.
fn position(i: usize, n: usize) -> f64 {
    if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    }
}

/// Where an output tensor sits: the slice it comes from (if any) and the
/// gradient position.
struct Place<'a> {
    slice: Option<&'a Slice>,
    t: f64,
}

impl Recipe {
    /// For a sliced recipe: which slice makes output layer `layer`, and the
    /// offset inside it (`None` past the last slice, or without slices).
    pub fn slice_at(&self, layer: usize) -> Option<(usize, usize)> {
        let mut start = 0;
        for (i, s) in self.slices.iter().enumerate() {
            let len = s
                .sources
                .first()
                .map_or(0, |src| src.layer_range.1.saturating_sub(src.layer_range.0));
            if layer < start + len {
                return Some((i, layer - start));
            }
            start += len;
        }
        None
    }

    /// Layers in the output of a sliced recipe (the slices' lengths summed).
    pub fn sliced_layers(&self) -> usize {
        self.slices
            .iter()
            .map(|s| {
                s.sources
                    .first()
                    .map_or(0, |src| src.layer_range.1.saturating_sub(src.layer_range.0))
            })
            .sum()
    }

    fn place(&self, group: Group, n_layers: usize) -> Place<'_> {
        match group {
            Group::Pre => Place {
                slice: self.slices.first(),
                t: 0.0,
            },
            Group::Post => Place {
                slice: self.slices.last(),
                t: 0.0,
            },
            Group::Layer(n) => match self.slice_at(n) {
                Some((i, off)) => {
                    let s = &self.slices[i];
                    let len = s
                        .sources
                        .first()
                        .map_or(1, |x| x.layer_range.1.saturating_sub(x.layer_range.0));
                    Place {
                        slice: Some(s),
                        t: position(off, len),
                    }
                }
                None => Place {
                    slice: None,
                    t: position(n, n_layers),
                },
            },
        }
    }

    /// The base model for a slice (the slice's own, else the recipe's).
    fn slice_base<'a>(&'a self, s: &'a Slice) -> Option<&'a Path> {
        s.base.as_deref().or(self.base.as_deref())
    }

    pub(crate) fn resolve_impl(&self, tensor: &str, group: Group, n_layers: usize) -> TensorParams {
        let spec = self.method.spec();
        let place = self.place(group, n_layers);
        let t = place.t;
        let from = |maps: &[Option<&BTreeMap<String, Value>>], name: &str| -> Option<ParamValue> {
            maps.iter()
                .flatten()
                .filter_map(|m| m.get(name))
                .find_map(|v| evaluate(v, tensor, t))
        };
        let slice_params = place.slice.map(|s| &s.params);
        // Overrides covering this tensor, each with the tensor's position
        // inside the override's scope (0 for a one-layer range and for the
        // embeddings / head groups, so a gradient there means its first
        // value).
        let active: Vec<_> = self
            .overrides
            .iter()
            .filter(|o| o.scope.covers(group))
            .map(|o| (o, o.scope.position(group)))
            .collect();

        let mut global = ParamMap::default();
        for p in spec.global {
            let mut v = from(&[slice_params, Some(&self.params)], p.name).or(p.default);
            for (o, ot) in &active {
                if let Some(x) = o.params.get(p.name).and_then(|x| evaluate(x, tensor, *ot)) {
                    v = Some(x);
                }
            }
            if let Some(v) = v {
                global.set(p.name, v);
            }
        }

        // The per-model tables, in the order the kernels see the models.
        let model_tables: Vec<(Option<usize>, &BTreeMap<String, Value>)> = match place.slice {
            Some(s) => {
                let base = self.slice_base(s);
                s.sources
                    .iter()
                    .filter(|src| base.is_none_or(|b| !same(&src.model, b)))
                    .map(|src| {
                        (
                            self.models.iter().position(|m| same(&m.path, &src.model)),
                            &src.params,
                        )
                    })
                    .collect()
            }
            None => self
                .models
                .iter()
                .enumerate()
                .map(|(i, m)| (Some(i), &m.params))
                .collect(),
        };
        let models = model_tables
            .iter()
            .map(|(index, own)| {
                let mut map = ParamMap::default();
                for p in spec.per_model {
                    let mut v =
                        from(&[Some(own), slice_params, Some(&self.params)], p.name).or(p.default);
                    for (o, ot) in &active {
                        let per = index
                            .and_then(|i| o.models.get(&i))
                            .and_then(|m| m.get(p.name));
                        let x = per.and_then(|x| evaluate(x, tensor, *ot)).or_else(|| {
                            o.params.get(p.name).and_then(|x| evaluate(x, tensor, *ot))
                        });
                        if x.is_some() {
                            v = x;
                        }
                    }
                    if let Some(v) = v {
                        map.set(p.name, v);
                    }
                }
                map
            })
            .collect();

        TensorParams {
            tensor: tensor.to_string(),
            global,
            models,
            seed: self.seed.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_matches_mergekit() {
        let xs = [0.2, 0.8];
        assert!((interpolate(&xs, 0.0) - 0.2).abs() < 1e-12);
        assert!((interpolate(&xs, 1.0 / 3.0) - 0.4).abs() < 1e-12);
        assert!((interpolate(&xs, 1.0) - 0.8).abs() < 1e-12);
        let ys = [0.0, 0.5, 0.3, 0.7, 1.0];
        // t = 1/3 over 5 points: scaled 4/3, between 0.5 and 0.3.
        let want = (1.0 - 1.0 / 3.0) * 0.5 + (1.0 / 3.0) * 0.3;
        assert!((interpolate(&ys, 1.0 / 3.0) - want).abs() < 1e-12);
    }

    #[test]
    fn filters_first_match_and_fall_through() {
        let v = Value::Filtered(vec![
            (Some("mlp".into()), Value::Number(0.5)),
            (Some("attn".into()), Value::Number(0.1)),
        ]);
        assert_eq!(
            evaluate(&v, "model.layers.0.mlp.up_proj.weight", 0.0),
            Some(ParamValue::Float(0.5))
        );
        assert_eq!(
            evaluate(&v, "model.layers.0.self_attn.q_proj.weight", 0.0),
            Some(ParamValue::Float(0.1))
        );
        assert_eq!(evaluate(&v, "model.norm.weight", 0.0), None);
    }
}
