//! SCE (select, calculate, erase), as mergekit 0.1.5 does it:
//! 1. select: keep the positions whose task-vector variance across models
//!    is among the top `select_topk` fraction of the non-zero variances
//!    (`k = int(select_topk * count_nonzero(var))`, exact streaming top-k);
//! 2. calculate: model weights proportional to the mean square of each
//!    (selected) task vector, normalised to sum to 1 (equal if all zero);
//! 3. erase: per position, drop the models whose delta sign disagrees with
//!    the sign of the summed deltas, and average the rest by weight.
//!
//! Passes: two for the selection (when `select_topk < 1`), one for weights.

use super::select::TopK;
use super::util::{delta_into, Params};
use super::{Chunk, Kernel, MergeError, Parts, Vote};

pub struct Sce {
    n: usize,
    numel: usize,
    select: Option<TopK>,
    density: f64,
    nonzero: u64,
    first_pass: bool,
    sumsq: Vec<f64>,
    weights: Vec<f32>,
    weights_done: bool,
    deltas: Vec<f32>,
    var: Vec<f32>,
    mean: Vec<f32>,
    sum: Vec<f32>,
    div: Vec<f32>,
}

impl Sce {
    pub fn new(p: &Params, numel: usize, n_models: usize) -> Result<Sce, MergeError> {
        let density = p.global_f("select_topk")?;
        if density.is_nan() {
            return Err(p.error("select_topk is NaN"));
        }
        Ok(Sce {
            n: n_models,
            numel,
            select: (density < 1.0).then(|| TopK::deferred(numel)),
            density,
            nonzero: 0,
            first_pass: true,
            sumsq: vec![0.0; n_models],
            weights: vec![0.0; n_models],
            weights_done: false,
            deltas: Vec::new(),
            var: Vec::new(),
            mean: Vec::new(),
            sum: Vec::new(),
            div: Vec::new(),
        })
    }

    /// Task vectors of the chunk into `self.deltas` (model-major) and the
    /// population variance across models into `self.var`.
    fn load(&mut self, chunk: &Chunk) {
        let len = chunk.len();
        let n = self.n.min(chunk.models.len());
        self.deltas.resize(n * len, 0.0);
        for i in 0..n {
            delta_into(
                chunk.models[i],
                chunk.base,
                &mut self.deltas[i * len..(i + 1) * len],
            );
        }
        let inv = 1.0 / n.max(1) as f32;
        let (d, var, mean) = (&self.deltas, &mut self.var, &mut self.mean);
        mean.clear();
        mean.resize(len, 0.0);
        for i in 0..n {
            for (m, &x) in mean.iter_mut().zip(&d[i * len..(i + 1) * len]) {
                *m += x;
            }
        }
        mean.iter_mut().for_each(|m| *m *= inv);
        // population variance, as torch.var(unbiased=False)
        var.clear();
        var.resize(len, 0.0);
        for i in 0..n {
            for ((v, &x), &m) in var
                .iter_mut()
                .zip(&d[i * len..(i + 1) * len])
                .zip(mean.iter())
            {
                let c = x - m;
                *v += c * c;
            }
        }
        var.iter_mut().for_each(|v| *v *= inv);
    }

    /// Zero the unselected positions of all deltas of the loaded chunk.
    fn mask_loaded(&mut self) {
        let Some(sel) = self.select.as_mut() else {
            return;
        };
        let len = self.var.len();
        sel.mask_in_place(&mut self.var);
        for i in 0..self.n.min(self.deltas.len() / len.max(1)) {
            for (x, &v) in self.deltas[i * len..(i + 1) * len]
                .iter_mut()
                .zip(&self.var)
            {
                if v == 0.0 {
                    *x = 0.0;
                }
            }
        }
    }
}

impl Kernel for Sce {
    fn wants_pass(&self) -> bool {
        self.select.as_ref().is_some_and(|s| s.wants_pass()) || !self.weights_done
    }
    fn observe(&mut self, chunk: &Chunk) {
        self.load(chunk);
        if let Some(sel) = self.select.as_mut().filter(|s| s.wants_pass()) {
            if self.first_pass {
                self.nonzero += self.var.iter().filter(|&&v| v != 0.0).count() as u64;
            }
            sel.observe(&self.var);
            return;
        }
        self.mask_loaded();
        let len = self.var.len();
        for i in 0..self.n.min(chunk.models.len()) {
            let d = &self.deltas[i * len..(i + 1) * len];
            self.sumsq[i] += super::util::dot(d, d);
        }
    }
    fn end_pass(&mut self) {
        if let Some(sel) = self.select.as_mut().filter(|s| s.wants_pass()) {
            if self.first_pass {
                sel.set_k((self.density.abs() * self.nonzero as f64) as usize);
                self.first_pass = false;
            }
            sel.end_pass();
            return;
        }
        let w: Vec<f64> = self
            .sumsq
            .iter()
            .map(|s| s / self.numel.max(1) as f64)
            .collect();
        let total: f64 = w.iter().sum();
        self.weights = if total == 0.0 {
            vec![1.0 / self.n.max(1) as f32; self.n]
        } else {
            w.iter().map(|x| (x / total) as f32).collect()
        };
        if let Some(sel) = self.select.as_mut() {
            sel.rewind();
        }
        self.weights_done = true;
    }
    fn parts(&mut self, chunk: &Chunk, parts: &mut Parts) -> bool {
        self.load(chunk);
        self.mask_loaded();
        let len = chunk.len();
        let n = self.n;
        parts.reset(n, len);
        parts.vote = Vote::Kept;
        let have = self.n.min(chunk.models.len());
        parts.kept[..have * len].copy_from_slice(&self.deltas[..have * len]);
        parts.kept[have * len..].fill(0.0);
        for i in 0..n {
            let w = self.weights[i];
            parts.weights[i] = w;
            parts.tied[i] = self.select.as_ref().map_or(0, TopK::tied_at_cutoff);
            // `apply` adds `x * w` for the models that agree.
            for (o, &x) in parts.weighted[i * len..(i + 1) * len]
                .iter_mut()
                .zip(&parts.kept[i * len..(i + 1) * len])
            {
                *o = x * w;
            }
        }
        true
    }
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        self.load(chunk);
        self.mask_loaded();
        let len = out.len();
        let n = self.n.min(chunk.models.len());
        // sign election on the summed (selected) deltas
        let (sum, div) = (&mut self.sum, &mut self.div);
        sum.clear();
        sum.resize(len, 0.0);
        div.clear();
        div.resize(len, 0.0);
        for i in 0..n {
            for (s, &x) in sum.iter_mut().zip(&self.deltas[i * len..(i + 1) * len]) {
                *s += x;
            }
        }
        out.iter_mut().for_each(|o| *o = 0.0);
        for i in 0..n {
            let w = self.weights[i];
            for (((o, dv), &x), &s) in out
                .iter_mut()
                .zip(div.iter_mut())
                .zip(&self.deltas[i * len..(i + 1) * len])
                .zip(sum.iter())
            {
                let agree = if s >= 0.0 { x > 0.0 } else { x < 0.0 };
                *o += if agree { x * w } else { 0.0 };
                *dv += if agree { w } else { 0.0 };
            }
        }
        match chunk.base {
            Some(b) => {
                for ((o, &d), &bv) in out.iter_mut().zip(div.iter()).zip(b) {
                    *o = bv + *o / if d == 0.0 { 1.0 } else { d };
                }
            }
            None => {
                for (o, &d) in out.iter_mut().zip(div.iter()) {
                    *o /= if d == 0.0 { 1.0 } else { d };
                }
            }
        }
    }
}
