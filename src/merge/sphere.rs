//! Norm- and angle-based methods: slerp, nuslerp, multislerp, karcher,
//! model_stock.
//!
//! Each of these merges to a linear combination of its input vectors whose
//! coefficients depend only on the inputs' Gram matrix (dot products). So one
//! statistics pass accumulates the Gram matrix in f64, the coefficients are
//! solved on `n x n` numbers, and `apply` combines the chunks. Karcher's
//! iterate stays in the span of the unit inputs, so it iterates on
//! coefficients too. Per-row variants (nuslerp without flattening,
//! model_stock `filter_wise`) solve per row: rows that sit inside one chunk
//! are solved on the spot; only rows split across chunks keep a Gram matrix
//! from the statistics pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancel flag nobody sets (solves outside the engine run to the end).
static NEVER: AtomicBool = AtomicBool::new(false);

use super::util::{combine, gram_accumulate, Params};
use super::{Chunk, Kernel, MergeError, Method};

#[derive(Clone, Debug)]
enum Solve {
    /// Vectors `[base, model]`; `t` towards the model.
    Slerp {
        t: f64,
    },
    /// Vectors are task vectors (with a base) or models.
    Nuslerp {
        t: f64,
    },
    Multislerp {
        weights: Vec<f64>,
        eps: f64,
    },
    Karcher {
        max_iter: usize,
        tol: f64,
    },
    ModelStock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// The whole tensor is one vector.
    Flat,
    /// Each row (last dimension) is a vector.
    Rows,
    /// Each column of the tensor viewed as `[numel / row_len, row_len]` is
    /// a vector (nuslerp `row_wise`, i.e. mergekit's `dim=0`).
    Columns,
}

pub struct GramKernel {
    solve: Solve,
    layout: Layout,
    /// Whether the vectors are `model - base` (else the models themselves).
    use_base: bool,
    n: usize,
    passes_left: usize,
    g: Vec<f64>,
    coef: Vec<f32>,
    /// Gram matrices of rows split across chunks (Rows layout).
    split_rows: BTreeMap<usize, Vec<f64>>,
    scratch: Vec<f32>,
    g_row: Vec<f64>,
    coef_row: Vec<f32>,
}

fn clamp1(x: f64) -> f64 {
    x.clamp(-1.0, 1.0)
}

impl Solve {
    /// Coefficients of the output on the input vectors.
    fn coefficients(&self, g: &[f64], n: usize) -> Vec<f64> {
        self.coefficients_or_cancel(g, n, &NEVER)
            .unwrap_or_default()
    }

    /// [`Solve::coefficients`], `None` once `cancel` is set (polled by
    /// the iterative solves).
    fn coefficients_or_cancel(&self, g: &[f64], n: usize, cancel: &AtomicBool) -> Option<Vec<f64>> {
        Some(match self {
            Solve::Slerp { t } => {
                let t = *t;
                let (n0, n1) = (g[0].sqrt(), g[3].sqrt());
                // mergekit normalises only vectors with norm > 1e-8.
                let a = if n0 > 1e-8 { n0 } else { 1.0 };
                let b = if n1 > 1e-8 { n1 } else { 1.0 };
                let dot = g[1] / (a * b);
                if dot.abs() > 0.9995 || !dot.is_finite() {
                    return Some(vec![1.0 - t, t]);
                }
                let th = dot.acos();
                let s = th.sin();
                vec![(th - t * th).sin() / s, (t * th).sin() / s]
            }
            Solve::Nuslerp { t } => {
                let t = *t;
                let n0 = g[0].sqrt().max(1e-7);
                let n1 = g[3].sqrt().max(1e-7);
                let cos = clamp1(g[1] / (n0 * n1));
                let th = cos.acos();
                let s = th.sin();
                if s.abs() < 1e-8 {
                    vec![1.0 - t, t]
                } else {
                    vec![((1.0 - t) * th).sin() / s, (t * th).sin() / s]
                }
            }
            Solve::Multislerp { weights, eps } => multislerp(g, n, weights, *eps),
            Solve::Karcher { max_iter, tol } => karcher(g, n, *max_iter, *tol, cancel)?,
            Solve::ModelStock => {
                let mut acc = 0.0;
                let mut pairs = 0usize;
                for i in 0..n {
                    for j in i + 1..n {
                        let np = (g[i * n + i].sqrt() * g[j * n + j].sqrt()).max(1e-6);
                        acc += clamp1(g[i * n + j] / np);
                        pairs += 1;
                    }
                }
                let cos = if pairs == 0 { 0.0 } else { acc / pairs as f64 };
                let nn = n as f64;
                let t = nn * cos / (1.0 + (nn - 1.0) * cos);
                vec![t / nn; n]
            }
        })
    }
}

/// mergekit's multislerp, on coefficients: the weighted mean of the unit
/// vectors, projected to the tangent space there, averaged, mapped back by
/// the exponential map and scaled by the weighted mean norm.
fn multislerp(g: &[f64], n: usize, w: &[f64], eps: f64) -> Vec<f64> {
    let norms: Vec<f64> = (0..n).map(|i| g[i * n + i].max(0.0).sqrt()).collect();
    let inv: Vec<f64> = norms.iter().map(|&x| 1.0 / (x + eps)).collect();
    let quad = |c: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                s += c[i] * c[j] * g[i * n + j];
            }
        }
        s.max(0.0)
    };
    // mean = sum_i w_i unit_i, as coefficients on the raw vectors
    let mut m: Vec<f64> = (0..n).map(|i| w[i] * inv[i]).collect();
    let mean_norm = quad(&m).sqrt();
    if mean_norm < eps || !mean_norm.is_finite() {
        // mergekit falls back to the weighted sum for two inputs and raises
        // for more; smelt uses the weighted sum for any count.
        return w.to_vec();
    }
    m.iter_mut().for_each(|c| *c /= mean_norm);
    // dots_i = <unit_i, mean>
    let dots: Vec<f64> = (0..n)
        .map(|i| inv[i] * (0..n).map(|j| g[i * n + j] * m[j]).sum::<f64>())
        .collect();
    let wd: f64 = (0..n).map(|i| w[i] * dots[i]).sum();
    let tau: Vec<f64> = (0..n).map(|j| w[j] * inv[j] - wd * m[j]).collect();
    let tn = quad(&tau).sqrt() + eps;
    let avg_norm: f64 = (0..n).map(|i| norms[i] * w[i]).sum();
    (0..n)
        .map(|j| (m[j] * tn.cos() + tau[j] * (tn.sin() / tn)) * avg_norm)
        .collect()
}

/// mergekit's Karcher mean (equal weights), on coefficients of the raw
/// inputs: the iterate `u = sum_j c_j x_j / |x_j|` stays in their span.
/// `None` once `cancel` is set (polled every iteration: a recipe may ask
/// for any number of them).
fn karcher(
    g: &[f64],
    n: usize,
    max_iter: usize,
    tol: f64,
    cancel: &AtomicBool,
) -> Option<Vec<f64>> {
    if n == 1 {
        return Some(vec![1.0]);
    }
    let norms: Vec<f64> = (0..n).map(|i| g[i * n + i].max(0.0).sqrt()).collect();
    // Gram matrix of the unit vectors (zero vectors stay zero).
    let unit = |i: usize, j: usize| -> f64 {
        if norms[i] == 0.0 || norms[j] == 0.0 {
            0.0
        } else {
            g[i * n + j] / (norms[i] * norms[j])
        }
    };
    let quad = |c: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                s += c[i] * c[j] * unit(i, j);
            }
        }
        s.max(0.0)
    };
    let alpha = 1.0 / n as f64;
    let valid: Vec<usize> = (0..n).filter(|&i| norms[i] > tol).collect();
    if valid.is_empty() {
        return Some(vec![0.0; n]);
    }
    let a = 1.0 / valid.len() as f64; // normalised equal alphas
    let mut c = vec![0.0; n];
    for &i in &valid {
        c[i] = a;
    }
    let cn = quad(&c).sqrt();
    if cn < tol {
        c.iter_mut().for_each(|x| *x = 0.0);
        c[valid[0]] = 1.0;
    } else {
        c.iter_mut().for_each(|x| *x /= cn);
    }
    for _ in 0..max_iter {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let mut tan = vec![0.0; n];
        for &i in &valid {
            let dot = clamp1((0..n).map(|j| c[j] * unit(j, i)).sum::<f64>());
            let th = dot.acos();
            if th < tol {
                continue;
            }
            let f = a * th / th.sin();
            tan[i] += f;
            for j in 0..n {
                tan[j] -= f * dot * c[j];
            }
        }
        let tn = quad(&tan).sqrt();
        if tn < tol {
            break;
        }
        let (co, si) = (tn.cos(), tn.sin());
        for j in 0..n {
            c[j] = co * c[j] + si * tan[j] / tn;
        }
        let un = quad(&c).sqrt();
        if un > tol {
            c.iter_mut().for_each(|x| *x /= un);
        }
    }
    let scale: f64 = norms.iter().map(|&x| alpha * x).sum();
    Some(
        (0..n)
            .map(|j| {
                if norms[j] == 0.0 {
                    0.0
                } else {
                    scale * c[j] / norms[j]
                }
            })
            .collect(),
    )
}

impl GramKernel {
    pub fn new(method: Method, p: &Params, n_models: usize) -> Result<GramKernel, MergeError> {
        let (solve, layout, use_base) = match method {
            Method::Slerp => {
                let t = p.global_f("t")?;
                (Solve::Slerp { t }, Layout::Flat, false)
            }
            Method::Nuslerp => {
                if n_models != 2 {
                    return Err(p.error(format!("needs exactly two models, got {n_models}")));
                }
                let w0 = p.model_f(0, "weight")?;
                let w1 = p.model_f(1, "weight")?;
                let t = if (w0 + w1).abs() < 1e-6 {
                    0.5
                } else {
                    w1 / (w0 + w1)
                };
                let flatten = p.global_b("nuslerp_flatten")?;
                let row_wise = p.global_b("nuslerp_row_wise")?;
                let layout = if flatten {
                    Layout::Flat
                } else if row_wise {
                    Layout::Columns
                } else {
                    Layout::Rows
                };
                (Solve::Nuslerp { t }, layout, true)
            }
            Method::Multislerp => {
                let mut weights = (0..n_models)
                    .map(|i| p.model_f(i, "weight"))
                    .collect::<Result<Vec<_>, _>>()?;
                if p.global_b("normalize_weights")? {
                    let s: f64 = weights.iter().sum();
                    if s == 0.0 {
                        return Err(p.error("weights sum to zero; cannot normalise them"));
                    }
                    weights.iter_mut().for_each(|w| *w /= s);
                }
                let eps = p.global_f("eps")?;
                (Solve::Multislerp { weights, eps }, Layout::Flat, true)
            }
            Method::Karcher => {
                let max_iter = p.global_f("max_iter")?.max(0.0) as usize;
                let tol = p.global_f("tol")?;
                (Solve::Karcher { max_iter, tol }, Layout::Flat, false)
            }
            Method::ModelStock => {
                if n_models < 2 {
                    return Err(p.error("needs a base and at least two models"));
                }
                let fw = p.global_b("filter_wise")?;
                (
                    Solve::ModelStock,
                    if fw { Layout::Rows } else { Layout::Flat },
                    true,
                )
            }
            _ => return Err(p.error("not a Gram-matrix method")),
        };
        let n = if matches!(solve, Solve::Slerp { .. }) {
            2
        } else {
            n_models
        };
        Ok(GramKernel {
            solve,
            layout,
            use_base,
            n,
            passes_left: 1,
            g: vec![0.0; n * n],
            coef: Vec::new(),
            split_rows: BTreeMap::new(),
            scratch: Vec::new(),
            g_row: vec![0.0; n * n],
            coef_row: vec![0.0; n],
        })
    }

    /// The input vectors of a chunk (as slices) and the subtracted base.
    fn with_vectors<R>(&self, chunk: &Chunk, f: impl FnOnce(&[&[f32]], Option<&[f32]>) -> R) -> R {
        if matches!(self.solve, Solve::Slerp { .. }) {
            let base = chunk.base.unwrap_or(&[]);
            let m = chunk.models.first().copied().unwrap_or(&[]);
            f(&[base, m], None)
        } else {
            let base = if self.use_base { chunk.base } else { None };
            f(chunk.models, base)
        }
    }
}

fn aligned(chunk: &Chunk) -> bool {
    let rl = chunk.row_len.max(1);
    chunk.start.is_multiple_of(rl) && chunk.len().is_multiple_of(rl)
}

impl Kernel for GramKernel {
    fn wants_pass(&self) -> bool {
        self.passes_left > 0
    }
    fn begin_pass(&mut self) {}
    fn observe(&mut self, chunk: &Chunk) {
        let n = self.n;
        if self.layout == Layout::Columns && chunk.row_len >= chunk.numel {
            // A 1-D tensor: mergekit's transpose(0, -1) leaves it alone, so
            // the whole tensor is the one vector. (A `[1, N]` matrix, which
            // has the same row length, would be N one-element columns; such
            // tensors do not occur in the architectures smelt merges.)
            self.layout = Layout::Flat;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        match self.layout {
            Layout::Flat => {
                let mut g = std::mem::take(&mut self.g);
                self.with_vectors(chunk, |vs, b| gram_accumulate(vs, b, &mut g, &mut scratch));
                self.g = g;
            }
            Layout::Rows => {
                if !aligned(chunk) {
                    let rl = chunk.row_len.max(1);
                    let len = chunk.len();
                    let mut off = 0;
                    while off < len {
                        let flat = chunk.start + off;
                        let row = flat / rl;
                        let end = ((row + 1) * rl - chunk.start).min(len);
                        let mut g = self
                            .split_rows
                            .remove(&row)
                            .unwrap_or_else(|| vec![0.0; n * n]);
                        self.with_vectors(chunk, |vs, b| {
                            let sub: Vec<&[f32]> = vs.iter().map(|v| &v[off..end]).collect();
                            gram_accumulate(&sub, b.map(|b| &b[off..end]), &mut g, &mut scratch);
                        });
                        self.split_rows.insert(row, g);
                        off = end;
                    }
                }
            }
            Layout::Columns => {
                let rl = chunk.row_len.max(1);
                if self.g.len() != rl * n * n {
                    self.g = vec![0.0; rl * n * n];
                }
                let len = chunk.len();
                let mut g = std::mem::take(&mut self.g);
                self.with_vectors(chunk, |vs, b| {
                    let mut v = vec![0f32; n];
                    for e in 0..len {
                        let col = (chunk.start + e) % rl;
                        for i in 0..n {
                            v[i] = vs[i][e] - b.map_or(0.0, |b| b[e]);
                        }
                        let gc = &mut g[col * n * n..(col + 1) * n * n];
                        for i in 0..n {
                            for j in 0..n {
                                gc[i * n + j] += f64::from(v[i]) * f64::from(v[j]);
                            }
                        }
                    }
                });
                self.g = g;
            }
        }
        self.scratch = scratch;
    }
    fn end_pass(&mut self) {
        self.end_pass_or_cancel(&NEVER);
    }
    fn end_pass_or_cancel(&mut self, cancel: &AtomicBool) -> bool {
        self.passes_left = 0;
        if self.layout == Layout::Flat {
            let Some(coef) = self.solve.coefficients_or_cancel(&self.g, self.n, cancel) else {
                return false;
            };
            self.coef = coef.into_iter().map(|c| c as f32).collect();
        }
        true
    }
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        let n = self.n;
        match self.layout {
            Layout::Flat => {
                let coef = std::mem::take(&mut self.coef);
                self.with_vectors(chunk, |vs, b| combine(vs, b, &coef, out));
                self.coef = coef;
            }
            Layout::Rows => {
                let rl = chunk.row_len.max(1);
                let len = out.len();
                let mut scratch = std::mem::take(&mut self.scratch);
                let mut g_row = std::mem::take(&mut self.g_row);
                let mut coef_row = std::mem::take(&mut self.coef_row);
                let mut off = 0;
                while off < len {
                    let flat = chunk.start + off;
                    let row = flat / rl;
                    let end = ((row + 1) * rl - chunk.start).min(len);
                    let whole = flat.is_multiple_of(rl) && end - off == rl;
                    self.with_vectors(chunk, |vs, b| {
                        let sub: Vec<&[f32]> = vs.iter().map(|v| &v[off..end]).collect();
                        let bs = b.map(|b| &b[off..end]);
                        if whole {
                            g_row.iter_mut().for_each(|x| *x = 0.0);
                            gram_accumulate(&sub, bs, &mut g_row, &mut scratch);
                        } else if let Some(g) = self.split_rows.get(&row) {
                            g_row.copy_from_slice(g);
                        }
                        coef_row.clear();
                        coef_row.extend(
                            self.solve
                                .coefficients(&g_row, n)
                                .into_iter()
                                .map(|c| c as f32),
                        );
                        combine(&sub, bs, &coef_row, &mut out[off..end]);
                    });
                    off = end;
                }
                self.scratch = scratch;
                self.g_row = g_row;
                self.coef_row = coef_row;
            }
            Layout::Columns => {
                let rl = chunk.row_len.max(1);
                let len = out.len();
                // Solve each column once per chunk (cached by column).
                let mut cols: Vec<f32> = Vec::new();
                let ncols = rl.min(len.max(1));
                let first_col = chunk.start % rl;
                for c in 0..ncols {
                    let col = (first_col + c) % rl;
                    let g = &self.g[col * n * n..(col + 1) * n * n];
                    cols.extend(self.solve.coefficients(g, n).into_iter().map(|x| x as f32));
                }
                self.with_vectors(chunk, |vs, b| {
                    for e in 0..len {
                        // element e lies in column (first_col + e) % rl,
                        // solved at local index e % rl
                        let col_local = e % rl;
                        let cf = &cols[col_local * n..(col_local + 1) * n];
                        let bv = b.map_or(0.0, |b| b[e]);
                        let mut acc = bv;
                        for i in 0..n {
                            acc += cf[i] * (vs[i][e] - bv);
                        }
                        out[e] = acc;
                    }
                });
            }
        }
    }
}
