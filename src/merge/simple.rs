//! Element-wise methods that need no statistics: linear, nearswap,
//! passthrough.

use super::util::Params;
use super::{Chunk, Kernel, Lane, MergeError};

/// `sum_i w_i x_i`, divided by `sum_i w_i` when `normalize`.
pub struct Linear {
    coef: Vec<f32>,
}

impl Linear {
    pub fn new(p: &Params, n_models: usize) -> Result<Linear, MergeError> {
        let weights = (0..n_models)
            .map(|i| p.model_f(i, "weight"))
            .collect::<Result<Vec<_>, _>>()?;
        let normalize = p.global_b("normalize")?;
        let div = if normalize {
            let s: f64 = weights.iter().sum();
            // mergekit divides anyway and writes inf/NaN; refuse instead.
            if s == 0.0 {
                return Err(p.error("weights sum to zero with normalize on"));
            }
            s
        } else {
            1.0
        };
        // mergekit: (sum w_i x_i) / sum w_i; folding the division into the
        // weights changes only the last bit.
        Ok(Linear {
            coef: weights.iter().map(|w| (w / div) as f32).collect(),
        })
    }
}

impl Kernel for Linear {
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        crate::simd::dispatch!(weighted_sum(chunk, &self.coef, out));
    }
    fn takes_bf16(&self) -> bool {
        true
    }
    fn splittable(&self) -> bool {
        true
    }
    fn apply_bf16(&mut self, chunk: &Chunk<u16>, out: &mut [f32]) {
        crate::simd::dispatch!(weighted_sum(chunk, &self.coef, out));
    }
}

/// `out = sum_i coef_i * models_i`, summed in model order from 0.
#[inline(always)]
fn weighted_sum<E: Lane>(chunk: &Chunk<E>, coef: &[f32], out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (m, &c) in chunk.models.iter().zip(coef) {
        for (o, x) in out.iter_mut().zip(m.iter()) {
            *o += c * x.f32();
        }
    }
}

/// Take the other model's value in proportion to how close it is to the
/// base: weight `clamp(t / |base - x|, 0, 1)` (1 where they are equal).
pub struct Nearswap {
    t: f32,
}

impl Nearswap {
    pub fn new(p: &Params) -> Result<Nearswap, MergeError> {
        let t = p.global_f("t")?;
        if t.is_nan() || t <= 0.0 {
            return Err(p.error(format!("threshold t must be > 0, got {t}")));
        }
        Ok(Nearswap { t: t as f32 })
    }
}

impl Kernel for Nearswap {
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        let (Some(b), Some(m)) = (chunk.base, chunk.models.first()) else {
            // No second model: the base (or the model) passes through.
            let src = chunk.base.or(chunk.models.first().copied()).unwrap_or(&[]);
            out.copy_from_slice(&src[..out.len()]);
            return;
        };
        let t = self.t;
        for ((o, &v0), &v1) in out.iter_mut().zip(b).zip(m.iter()) {
            let w = t / (v0 - v1).abs();
            // nan_to_num(nan=1, inf=1), then clamp to [0, 1]
            let w = if w.is_finite() {
                w.clamp(0.0, 1.0)
            } else {
                1.0
            };
            *o = w * v1 + (1.0 - w) * v0;
        }
    }
}

/// Copy the single model's tensor, multiplied by its `scale`.
pub struct Passthrough {
    scale: f32,
}

impl Passthrough {
    pub fn new(p: &Params, n_models: usize) -> Result<Passthrough, MergeError> {
        if n_models != 1 {
            return Err(p.error(format!(
                "takes exactly one model per tensor, got {n_models}"
            )));
        }
        Ok(Passthrough {
            scale: p.model_f(0, "scale")? as f32,
        })
    }
}

impl Kernel for Passthrough {
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        let src = chunk.models.first().copied().or(chunk.base).unwrap_or(&[]);
        if self.scale == 1.0 {
            out.copy_from_slice(&src[..out.len()]);
        } else {
            for (o, &x) in out.iter_mut().zip(src) {
                *o = x * self.scale;
            }
        }
    }
}
