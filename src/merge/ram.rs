//! Reinforced Agent Merging (`ram`, `ramplus_tl`; arXiv 2601.13572), as
//! mergekit 0.1.5 computes it.
//!
//! An entry of model `i`'s task vector `d_i = x_i - base` counts as changed
//! when `|d_i| > epsilon`. Per entry, with `c` the number of models that
//! changed it:
//! - `c == 1`: that model's change is kept whole (`ram`), or scaled by the
//!   model's `lambda_i` (`ramplus_tl`);
//! - `c > 1`: the changes are averaged, each divided by `c`;
//! - unchanged entries add nothing.
//!
//! `ramplus_tl` ("tensor-local") sets `lambda_i = 1 + r * min(rho_i,
//! alpha)`, where `rho_i` is model `i`'s count of shared changed entries
//! over its count of unique ones in this tensor (a count of 0 divides as
//! `epsilon`, as mergekit clamps it): one statistics pass counts them.
//!
//! The f32 operations follow mergekit's, term by term and in model order,
//! so the results agree to the last bit where torch sums in that order.

use super::util::Params;
use super::{Chunk, Kernel, MergeError, Parts, Vote};

/// `ram` and `ramplus_tl` over one tensor.
pub struct Ram {
    eps: f32,
    /// `ramplus_tl`'s `(r, alpha)`; `None` for `ram`.
    plus: Option<(f32, f32)>,
    n: usize,
    /// Per model: entries changed by it and by another model, and by it
    /// alone (the statistics pass of `ramplus_tl`).
    shared: Vec<u64>,
    unique: Vec<u64>,
    /// Per model: the factor on its unique changes (1 for `ram`).
    lambda: Vec<f32>,
    /// Whether the statistics pass is still to run.
    pending: bool,
    /// Per entry of the chunk: models that changed it.
    counts: Vec<u32>,
}

impl Ram {
    pub fn new(p: &Params, n_models: usize, plus: bool) -> Result<Ram, MergeError> {
        let eps = p.global_f("epsilon")?;
        if eps.is_nan() || eps < 0.0 {
            return Err(p.error(format!("epsilon must be >= 0, got {eps}")));
        }
        let plus = if plus {
            let (r, alpha) = (p.global_f("r")?, p.global_f("alpha")?);
            if r.is_nan() || alpha.is_nan() || r < 0.0 || alpha < 0.0 {
                return Err(p.error(format!("r and alpha must be >= 0, got {r} and {alpha}")));
            }
            Some((r as f32, alpha as f32))
        } else {
            None
        };
        Ok(Ram {
            eps: eps as f32,
            plus,
            n: n_models,
            shared: vec![0; n_models],
            unique: vec![0; n_models],
            lambda: vec![1.0; n_models],
            pending: plus.is_some(),
            counts: Vec::new(),
        })
    }

    /// How many models changed each entry of the chunk.
    fn count(&mut self, chunk: &Chunk) {
        let len = chunk.len();
        self.counts.clear();
        self.counts.resize(len, 0);
        let Some(base) = chunk.base else { return };
        for m in chunk.models.iter().take(self.n) {
            for ((c, &x), &b) in self.counts.iter_mut().zip(m.iter()).zip(base) {
                *c += u32::from((x - b).abs() > self.eps);
            }
        }
    }

    /// Model `i`'s term for entry `j` of the chunk: what `apply` adds.
    #[inline(always)]
    fn term(&self, d: f32, c: u32, i: usize) -> f32 {
        let changed = d.abs() > self.eps;
        if !changed {
            return 0.0;
        }
        // mergekit: d * unique * lambda + d * overlap / max(c, 1), one of
        // the two terms zero.
        if c == 1 {
            d * self.lambda[i]
        } else {
            d / c as f32
        }
    }
}

impl Kernel for Ram {
    fn wants_pass(&self) -> bool {
        self.pending
    }
    fn observe(&mut self, chunk: &Chunk) {
        self.count(chunk);
        let Some(base) = chunk.base else { return };
        for (i, m) in chunk.models.iter().take(self.n).enumerate() {
            let (mut shared, mut unique) = (0u64, 0u64);
            for ((&c, &x), &b) in self.counts.iter().zip(m.iter()).zip(base) {
                if (x - b).abs() > self.eps {
                    shared += u64::from(c > 1);
                    unique += u64::from(c == 1);
                }
            }
            self.shared[i] += shared;
            self.unique[i] += unique;
        }
    }
    fn end_pass(&mut self) {
        self.pending = false;
        if let Some((r, alpha)) = self.plus {
            for i in 0..self.n {
                // rho = shared / clamp(unique, min = epsilon), in f32.
                let unique = (self.unique[i] as f32).max(self.eps);
                let rho = self.shared[i] as f32 / unique;
                self.lambda[i] = 1.0 + r * rho.clamp(0.0, alpha);
            }
        }
    }
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        self.count(chunk);
        let Some(base) = chunk.base else {
            out.fill(0.0);
            return;
        };
        out.fill(0.0);
        for (i, m) in chunk.models.iter().take(self.n).enumerate() {
            for (((o, &x), &b), &c) in out.iter_mut().zip(m.iter()).zip(base).zip(&self.counts) {
                *o += self.term(x - b, c, i);
            }
        }
        for (o, &b) in out.iter_mut().zip(base) {
            *o += b;
        }
    }
    fn parts(&mut self, chunk: &Chunk, parts: &mut Parts) -> bool {
        let Some(base) = chunk.base else {
            return false;
        };
        self.count(chunk);
        let len = chunk.len();
        parts.reset(self.n, len);
        parts.vote = Vote::Weighted;
        for i in 0..self.n {
            parts.weights[i] = self.lambda[i];
            parts.tied[i] = 0;
            let kept = &mut parts.kept[i * len..(i + 1) * len];
            let weighted = &mut parts.weighted[i * len..(i + 1) * len];
            let Some(m) = chunk.models.get(i) else {
                kept.fill(0.0);
                weighted.fill(0.0);
                continue;
            };
            for j in 0..len {
                let d = m[j] - base[j];
                let changed = d.abs() > self.eps;
                kept[j] = if changed { d } else { 0.0 };
                weighted[j] = self.term(d, self.counts[j], i);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::merge::{kernel, merge_slices, Method, ParamMap, ParamValue, TensorParams};

    fn run(method: Method, global: &[(&str, f64)], base: &[f32], models: &[&[f32]]) -> Vec<f32> {
        let mut g = ParamMap::default();
        for (k, v) in global {
            g.set(k, ParamValue::Float(*v));
        }
        let params = TensorParams {
            tensor: "t".into(),
            global: g,
            models: vec![ParamMap::default(); models.len()],
            ..Default::default()
        };
        let mut k = kernel(method, &params, base.len(), models.len()).unwrap();
        merge_slices(k.as_mut(), Some(base), models, base.len(), 2)
    }

    #[test]
    fn unique_changes_kept_shared_ones_averaged() {
        let base = [0.0, 0.0, 0.0, 1.0];
        let a = [0.5, 0.2, 0.0, 1.0];
        let b = [0.0, 0.4, 0.0, 1.0 + 1e-6];
        let out = run(Method::Ram, &[], &base, &[&a, &b]);
        // entry 0: only a; entry 1: both, averaged; entry 2: none; entry
        // 3: b's change is under epsilon.
        assert_eq!(out, vec![0.5, 0.3, 0.0, 1.0]);
    }

    #[test]
    fn ramplus_scales_unique_changes_by_the_shared_ratio() {
        let base = [0.0; 4];
        let a = [1.0, 1.0, 1.0, 0.0];
        let b = [0.0, 0.0, 1.0, 2.0];
        // a: 1 shared, 2 unique: rho 0.5, capped at alpha 0.2: lambda
        // 1 + 0.1 * 0.2. b: 1 shared, 1 unique: rho 1, capped the same.
        let out = run(Method::RamplusTl, &[], &base, &[&a, &b]);
        let l = 1.0f32 + 0.1 * 0.2;
        assert_eq!(out, vec![l, l, 1.0, 2.0 * l]);
        // alpha 1, r 1: a's lambda 1.5, b's 2.
        let out = run(
            Method::RamplusTl,
            &[("r", 1.0), ("alpha", 1.0)],
            &base,
            &[&a, &b],
        );
        assert_eq!(out, vec![1.5, 1.5, 1.0, 4.0]);
    }

    #[test]
    fn a_model_with_no_unique_changes_divides_by_epsilon() {
        let base = [0.0; 2];
        let a = [1.0, 1.0];
        let b = [1.0, 1.0];
        // both models share everything: rho = 2 / 1e-5, capped at alpha;
        // the unique factor applies to nothing, the shared entries average.
        let out = run(Method::RamplusTl, &[], &base, &[&a, &b]);
        assert_eq!(out, vec![1.0, 1.0]);
    }
}
