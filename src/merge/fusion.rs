//! `arcee_fusion`, as mergekit 0.1.5 defines it: take the fine-tune's
//! change `d = x - base` only where it matters.
//!
//! The importance of an entry is `|d|` times the KL divergence, over its
//! row (the last dimension), of `softmax(x) + 1e-8` from `softmax(base) +
//! 1e-8`. Entries whose importance is at least `median + 1.5 * (q3 - q1)`
//! of the tensor's importances are fused (`base + d`); the rest keep the
//! base's value. A quantile `q` is the `floor(q * (n - 1))`-th smallest
//! importance, as mergekit indexes its sorted tensor.
//!
//! Deliberate differences from mergekit:
//! - mergekit estimates the quantiles from 1,000,000 entries drawn at
//!   random (with replacement) when a tensor has more; smelt computes them
//!   exactly, with the streaming selection TIES uses ([`TopK`]), so the
//!   same inputs give the same bytes. Below 1M entries the two agree.
//! - The KL sum runs in f64 and is never negative. mergekit sums in f32,
//!   where a row that barely changed can come out a hair below zero; such
//!   rows have importance about 0 either way.
//!
//! Passes over the tensor: the selection passes of three [`TopK`]s over the
//! importances, then `apply`. Rows that fit in a chunk arrive whole, and
//! their KL is computed from the chunk; a tensor whose rows are longer than
//! a chunk first takes two passes for per-row softmax sums and KL (a few
//! numbers per row, and such tensors have few rows). Memory never grows
//! with the tensor otherwise.

use super::select::TopK;
use super::util::Params;
use super::{Chunk, Kernel, MergeError, Parts, Vote};

/// Where the kernel is in its passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Softmax,
    Kl,
    Select,
    Done,
}

/// An online softmax normaliser: the running maximum and the sum of
/// `exp(x - max)`.
#[derive(Clone, Copy, Debug)]
struct Norm {
    max: f64,
    sum: f64,
}

impl Norm {
    const EMPTY: Norm = Norm {
        max: f64::NEG_INFINITY,
        sum: 0.0,
    };
    #[inline]
    fn add(&mut self, x: f64) {
        if x > self.max {
            self.sum = self.sum * (self.max - x).exp() + 1.0;
            self.max = x;
        } else {
            self.sum += (x - self.max).exp();
        }
    }
    #[inline]
    fn p(&self, x: f64) -> f64 {
        (x - self.max).exp() / self.sum + 1e-8
    }
}

/// The three quantiles mergekit's threshold uses.
const QUANTILES: [f32; 3] = [0.25, 0.5, 0.75];

/// `arcee_fusion` over one tensor.
pub struct Fusion {
    numel: usize,
    row_len: usize,
    stage: Stage,
    /// Whether the first chunk has been seen.
    started: bool,
    /// Whether rows fit in chunks (each row's KL is computed from its
    /// chunk; nothing is kept per row).
    local: bool,
    /// Per row: the normalisers of the model's and the base's softmax.
    norm_x: Vec<Norm>,
    norm_b: Vec<Norm>,
    /// Per row: the KL sum of the KL pass (f64, in index order).
    kl_sum: Vec<f64>,
    /// Per row: the KL divergence (f32, as the importance uses it).
    kl: Vec<f32>,
    /// One selector per quantile: it keeps the `n - index` largest, so its
    /// cut-off is the quantile.
    select: Vec<TopK>,
    /// The smallest importance (the quantile when a selector keeps all).
    min: f32,
    /// The fusion threshold, once known.
    threshold: f32,
    /// Importances of the current chunk.
    scratch: Vec<f32>,
}

impl Fusion {
    pub fn new(p: &Params, numel: usize, n_models: usize) -> Result<Fusion, MergeError> {
        if n_models != 1 {
            return Err(p.error(format!(
                "fuses the base with exactly one other model, got {n_models}"
            )));
        }
        Ok(Fusion {
            numel,
            row_len: 1,
            stage: Stage::Softmax,
            started: false,
            local: false,
            norm_x: Vec::new(),
            norm_b: Vec::new(),
            kl_sum: Vec::new(),
            kl: Vec::new(),
            select: Vec::new(),
            min: f32::INFINITY,
            threshold: 0.0,
            scratch: Vec::new(),
        })
    }

    fn rows(&self) -> usize {
        self.numel.div_ceil(self.row_len.max(1))
    }

    /// The importances of the chunk's entries into `scratch`.
    fn importance(&mut self, chunk: &Chunk) {
        let (Some(base), Some(x)) = (chunk.base, chunk.models.first()) else {
            self.scratch.clear();
            return;
        };
        let row_len = self.row_len.max(1);
        self.scratch.clear();
        if self.local {
            // Whole rows: each row's KL from the chunk itself.
            for (xr, br) in x.chunks(row_len).zip(base.chunks(row_len)) {
                let kl = row_kl(xr, br);
                self.scratch
                    .extend(xr.iter().zip(br).map(|(&x, &b)| (x - b).abs() * kl));
            }
            return;
        }
        self.scratch.extend(
            x.iter()
                .zip(base)
                .enumerate()
                .map(|(j, (&x, &b))| (x - b).abs() * self.kl[(chunk.start + j) / row_len]),
        );
    }

    /// The three selectors, for the selection passes.
    fn start_selection(&mut self) {
        let n = self.numel;
        self.select = QUANTILES
            .iter()
            .map(|&q| {
                // torch: (q * (n - 1)).long(), q a float32 tensor.
                let index = (q * n.saturating_sub(1) as f32) as usize;
                TopK::new(n, n - index.min(n.saturating_sub(1)))
            })
            .collect();
        self.stage = if n == 0 { Stage::Done } else { Stage::Select };
    }
}

/// One row's KL divergence, computed with the same f64 operations, in the
/// same order, as the passes over rows that span chunks (so the result
/// does not depend on chunking).
fn row_kl(x: &[f32], b: &[f32]) -> f32 {
    let (mut nx, mut nb) = (Norm::EMPTY, Norm::EMPTY);
    for (&x, &b) in x.iter().zip(b) {
        nx.add(f64::from(x));
        nb.add(f64::from(b));
    }
    let mut sum = 0.0f64;
    for (&x, &b) in x.iter().zip(b) {
        let p = nx.p(f64::from(x));
        let q = nb.p(f64::from(b));
        sum += p * (p / q).ln();
    }
    (sum as f32).max(0.0)
}

impl Kernel for Fusion {
    fn wants_pass(&self) -> bool {
        self.stage != Stage::Done
    }
    fn observe(&mut self, chunk: &Chunk) {
        if self.stage == Stage::Softmax && !self.started {
            // The first chunk tells the row length. Rows that fit in a
            // chunk arrive whole (the engine cuts chunks at row
            // boundaries), so their KL comes from the chunk and the
            // selection starts at once; longer rows (few of them) keep
            // their softmax sums and KL between passes.
            self.started = true;
            self.row_len = chunk.row_len.max(1);
            if self.row_len <= chunk.len() {
                self.local = true;
                self.start_selection();
            } else {
                let rows = self.rows();
                self.norm_x = vec![Norm::EMPTY; rows];
                self.norm_b = vec![Norm::EMPTY; rows];
                self.kl = vec![0.0; rows];
            }
        }
        let (Some(base), Some(x)) = (chunk.base, chunk.models.first()) else {
            return;
        };
        let row_len = self.row_len;
        match self.stage {
            Stage::Softmax => {
                for (j, (&x, &b)) in x.iter().zip(base).enumerate() {
                    let r = (chunk.start + j) / row_len;
                    self.norm_x[r].add(f64::from(x));
                    self.norm_b[r].add(f64::from(b));
                }
            }
            Stage::Kl => {
                // Summed per row in f64, in index order; converted when
                // the pass ends.
                for (j, (&x, &b)) in x.iter().zip(base).enumerate() {
                    let r = (chunk.start + j) / row_len;
                    let p = self.norm_x[r].p(f64::from(x));
                    let q = self.norm_b[r].p(f64::from(b));
                    self.kl_sum[r] += p * (p / q).ln();
                }
            }
            Stage::Select => {
                self.importance(chunk);
                let scratch = std::mem::take(&mut self.scratch);
                for &v in &scratch {
                    self.min = self.min.min(v);
                }
                for s in self.select.iter_mut().filter(|s| s.wants_pass()) {
                    s.observe(&scratch);
                }
                self.scratch = scratch;
            }
            Stage::Done => {}
        }
    }
    fn end_pass(&mut self) {
        match self.stage {
            Stage::Softmax => {
                self.stage = Stage::Kl;
                self.kl_sum = vec![0.0; self.norm_x.len()];
            }
            Stage::Kl => {
                for (k, &sum) in self.kl.iter_mut().zip(&self.kl_sum) {
                    *k = (sum as f32).max(0.0);
                }
                self.kl_sum = Vec::new();
                self.norm_x = Vec::new();
                self.norm_b = Vec::new();
                self.start_selection();
            }
            Stage::Select => {
                for s in self.select.iter_mut().filter(|s| s.wants_pass()) {
                    s.end_pass();
                }
                if self.select.iter().all(|s| !s.wants_pass()) {
                    let q: Vec<f32> = self
                        .select
                        .iter()
                        .map(|s| s.threshold().unwrap_or(self.min))
                        .collect();
                    self.threshold = q[1] + 1.5 * (q[2] - q[0]);
                    self.stage = Stage::Done;
                }
            }
            Stage::Done => {}
        }
    }
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        let (Some(base), Some(x)) = (chunk.base, chunk.models.first()) else {
            let src = chunk.base.or(chunk.models.first().copied()).unwrap_or(&[]);
            out.copy_from_slice(&src[..out.len()]);
            return;
        };
        self.importance(chunk);
        for (((o, &x), &b), &imp) in out.iter_mut().zip(x.iter()).zip(base).zip(&self.scratch) {
            // mergekit: base + (x - base) * mask
            let mask = if imp >= self.threshold { 1.0 } else { 0.0 };
            *o = b + (x - b) * mask;
        }
    }
    fn parts(&mut self, chunk: &Chunk, parts: &mut Parts) -> bool {
        let (Some(base), Some(x)) = (chunk.base, chunk.models.first()) else {
            return false;
        };
        self.importance(chunk);
        let len = chunk.len();
        parts.reset(1, len);
        parts.vote = Vote::Weighted;
        parts.weights[0] = 1.0;
        parts.tied[0] = 0;
        for j in 0..len {
            let d = x[j] - base[j];
            let v = if self.scratch[j] >= self.threshold {
                d
            } else {
                0.0
            };
            parts.kept[j] = v;
            parts.weighted[j] = v;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::merge::{kernel, merge_slices, Method, TensorParams};

    fn family(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = || (crate::mlp::splitmix64(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        let base: Vec<f32> = (0..n).map(|_| next()).collect();
        let ft: Vec<f32> = base
            .iter()
            .map(|&b| {
                let r = next();
                // heavy-tailed changes: mostly small, a few large
                b + if r.abs() > 0.45 { r * 4.0 } else { r * 0.01 }
            })
            .collect();
        (base, ft)
    }

    fn fuse(base: &[f32], ft: &[f32], row: usize, chunk: usize) -> Vec<f32> {
        let params = TensorParams {
            tensor: "w".into(),
            models: vec![Default::default()],
            ..Default::default()
        };
        let mut k = kernel(Method::ArceeFusion, &params, base.len(), 1).unwrap();
        merge_slices(k.as_mut(), Some(base), &[ft], row, chunk)
    }

    #[test]
    fn rows_longer_than_a_chunk_give_the_same_bytes() {
        let (base, ft) = family(64 * 300, 5);
        let whole = fuse(&base, &ft, 300, 1 << 16);
        for chunk in [7, 64, 299, 300, 301, 4096] {
            let out = fuse(&base, &ft, 300, chunk);
            let same = out
                .iter()
                .zip(&whole)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "chunk {chunk}");
        }
        let fused = whole.iter().zip(&base).filter(|(o, b)| o != b).count();
        let changed = ft.iter().zip(&base).filter(|(o, b)| o != b).count();
        assert!(fused > 0 && fused < changed / 2, "{fused} of {changed}");
        // Fused entries take the fine-tune's value exactly.
        for ((o, b), f) in whole.iter().zip(&base).zip(&ft) {
            assert!(o == b || o == f);
        }
    }

    #[test]
    fn an_unchanged_model_fuses_nothing() {
        let (base, _) = family(1000, 2);
        assert_eq!(fuse(&base, &base, 100, 256), base);
    }
}
