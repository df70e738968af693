//! Small numeric helpers shared by the kernels: f64 reductions over f32
//! slices, written as plain indexed loops LLVM vectorises.

use super::{MergeError, Method, TensorParams};

/// Dot product of two equal-length slices, accumulated in f64.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 4];
    let mut i = 0;
    while i + 4 <= n {
        acc[0] += f64::from(a[i]) * f64::from(b[i]);
        acc[1] += f64::from(a[i + 1]) * f64::from(b[i + 1]);
        acc[2] += f64::from(a[i + 2]) * f64::from(b[i + 2]);
        acc[3] += f64::from(a[i + 3]) * f64::from(b[i + 3]);
        i += 4;
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    while i < n {
        s += f64::from(a[i]) * f64::from(b[i]);
        i += 1;
    }
    s
}

/// Sum of absolute values in f64.
#[inline]
pub fn l1(a: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let mut it = a.chunks_exact(4);
    for c in &mut it {
        acc[0] += f64::from(c[0].abs());
        acc[1] += f64::from(c[1].abs());
        acc[2] += f64::from(c[2].abs());
        acc[3] += f64::from(c[3].abs());
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for &x in it.remainder() {
        s += f64::from(x.abs());
    }
    s
}

/// `out = x - base` (or `x` when there is no base).
#[inline]
pub fn delta_into(x: &[f32], base: Option<&[f32]>, out: &mut [f32]) {
    match base {
        Some(b) => crate::simd::dispatch!(sub_into(x, b, out)),
        None => out.copy_from_slice(&x[..out.len()]),
    }
}

#[inline(always)]
fn sub_into(x: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &xv), &bv) in out.iter_mut().zip(x).zip(b) {
        *o = xv - bv;
    }
}

/// The vectors a Gram-matrix method works on: each model minus the base
/// (task vectors) when `base` is given, else the models themselves.
/// Accumulates `g[i * n + j] += <v_i, v_j>` over one chunk (symmetric, both
/// halves written). `scratch` must hold `n * len` values.
pub fn gram_accumulate(
    models: &[&[f32]],
    base: Option<&[f32]>,
    g: &mut [f64],
    scratch: &mut Vec<f32>,
) {
    let n = models.len();
    let len = models.first().map_or(0, |m| m.len());
    match base {
        Some(b) => {
            scratch.resize(n * len, 0.0);
            for (i, m) in models.iter().enumerate() {
                delta_into(m, Some(b), &mut scratch[i * len..(i + 1) * len]);
            }
            for i in 0..n {
                for j in i..n {
                    let d = dot(
                        &scratch[i * len..(i + 1) * len],
                        &scratch[j * len..(j + 1) * len],
                    );
                    g[i * n + j] += d;
                    if i != j {
                        g[j * n + i] += d;
                    }
                }
            }
        }
        None => {
            for i in 0..n {
                for j in i..n {
                    let d = dot(models[i], models[j]);
                    g[i * n + j] += d;
                    if i != j {
                        g[j * n + i] += d;
                    }
                }
            }
        }
    }
}

/// `out = base + sum_i c_i (x_i - base)` (or `sum_i c_i x_i` without base),
/// computed in f32.
pub fn combine(models: &[&[f32]], base: Option<&[f32]>, coef: &[f32], out: &mut [f32]) {
    match base {
        Some(b) => {
            out.copy_from_slice(b);
            for (m, &c) in models.iter().zip(coef) {
                for ((o, &x), &bv) in out.iter_mut().zip(m.iter()).zip(b) {
                    *o += c * (x - bv);
                }
            }
        }
        None => {
            out.iter_mut().for_each(|o| *o = 0.0);
            for (m, &c) in models.iter().zip(coef) {
                for (o, &x) in out.iter_mut().zip(m.iter()) {
                    *o += c * x;
                }
            }
        }
    }
}

/// Parameter lookup with the method spec's defaults as a fallback.
pub struct Params<'a> {
    pub method: Method,
    pub p: &'a TensorParams,
}

impl Params<'_> {
    fn err(&self, msg: String) -> MergeError {
        MergeError::Params {
            method: self.method.name(),
            msg: format!("tensor {}: {msg}", self.p.tensor),
        }
    }
    fn spec_default(specs: &[super::ParamSpec], name: &str) -> Option<super::ParamValue> {
        specs
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.default)
    }
    /// A method-wide value: the recipe's, else the spec default, else an error.
    pub fn global(&self, name: &str) -> Result<super::ParamValue, MergeError> {
        self.p
            .global
            .get(name)
            .or_else(|| Self::spec_default(self.method.spec().global, name))
            .ok_or_else(|| self.err(format!("missing parameter `{name}`")))
    }
    pub fn global_f(&self, name: &str) -> Result<f64, MergeError> {
        self.global(name).map(|v| v.as_f64())
    }
    pub fn global_b(&self, name: &str) -> Result<bool, MergeError> {
        self.global(name).map(|v| v.as_bool())
    }
    /// Model `i`'s value: the recipe's, else the spec default, else an error.
    pub fn model_f(&self, i: usize, name: &str) -> Result<f64, MergeError> {
        self.p
            .models
            .get(i)
            .and_then(|m| m.get(name))
            .or_else(|| Self::spec_default(self.method.spec().per_model, name))
            .map(|v| v.as_f64())
            .ok_or_else(|| self.err(format!("model {i}: missing parameter `{name}`")))
    }
    pub fn error(&self, msg: impl Into<String>) -> MergeError {
        self.err(msg.into())
    }
}
