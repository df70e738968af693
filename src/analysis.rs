//! Interference statistics: how much task vectors agree, layer by layer.
//!
//! The TUI's sign-agreement panel and `smelt analyze` both call this
//! module. A task vector is a model minus the base; TIES-style methods trim
//! each to its largest `density` share of entries (the same exact top-k
//! selection, ties included, as the merge itself: [`crate::merge::TopK`]),
//! scale it by its weight, and elect a sign per parameter. The statistics
//! say how often the kept entries disagree with that elected sign, how much
//! of each task vector survives trimming, and how aligned the task vectors
//! are to begin with.
//!
//! Everything is computed in chunks: [`analyze_tensor`] and
//! [`analyze_group`] stream from the models and hold a few chunks at a time.
//! For the TUI, which re-asks for one tensor at many densities, a
//! [`TensorDeltas`] holds that tensor's task vectors in memory once so each
//! new density costs only the selection and the counting.

use crate::merge::select::keep_count;
use crate::merge::{TensorParams, TopK};
use crate::model::{Group, Model, TensorInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Elements per chunk when streaming from models.
const CHUNK: usize = 1 << 18;

/// Statistics over a set of parameters (one tensor or one layer group) for
/// `n` task vectors (each model minus the base, trimmed at its density and
/// scaled by its weight).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Parameters covered.
    pub params: u64,
    /// `agree[k]`: parameters where exactly `k` of the kept, non-zero task
    /// vector entries have the elected sign; `len == n + 1`.
    pub agree: Vec<u64>,
    /// Parameters where at least one kept, non-zero entry opposes the
    /// elected sign.
    pub conflicts: u64,
    /// Per model: entries kept after trimming.
    pub kept: Vec<u64>,
    /// Per model: share of the task vector's energy (squared L2 norm) that
    /// the kept entries carry. Trimming's premise is that this stays high
    /// while `kept` drops.
    pub norm_kept: Vec<f64>,
    /// Per model: L2 norm of the untrimmed task vector.
    pub norms: Vec<f64>,
    /// Pairwise cosine of the untrimmed task vectors (`n x n`).
    pub cosines: Vec<Vec<f64>>,
    /// Per model: entries tied at the trim cut-off magnitude (where the
    /// tie rule, not the data, decides what is kept).
    pub tied: Vec<u64>,
    /// Raw sums behind `norms`/`cosines` (dot products, `n x n`), so groups
    /// can be combined exactly.
    #[serde(skip)]
    pub dots: Vec<Vec<f64>>,
    /// Raw sums behind `norm_kept`.
    #[serde(skip)]
    pub kept_energy: Vec<f64>,
}

impl Stats {
    /// Empty statistics for `n` task vectors.
    pub fn new(n: usize) -> Stats {
        Stats {
            params: 0,
            agree: vec![0; n + 1],
            conflicts: 0,
            kept: vec![0; n],
            norm_kept: vec![0.0; n],
            norms: vec![0.0; n],
            cosines: vec![vec![0.0; n]; n],
            tied: vec![0; n],
            dots: vec![vec![0.0; n]; n],
            kept_energy: vec![0.0; n],
        }
    }

    /// Number of task vectors.
    pub fn n(&self) -> usize {
        self.kept.len()
    }

    pub fn conflict_share(&self) -> f64 {
        ratio(self.conflicts, self.params)
    }

    /// Share of all task-vector entries kept after trimming.
    pub fn kept_share(&self) -> f64 {
        ratio(self.kept.iter().sum(), self.params * self.n() as u64)
    }

    /// Share of entries tied at the cut-off, over all task vectors.
    pub fn tied_share(&self) -> f64 {
        ratio(self.tied.iter().sum(), self.params * self.n() as u64)
    }

    /// Add another set's counts and sums (same `n`), then refresh the
    /// derived fields.
    pub fn combine(&mut self, o: &Stats) {
        if o.n() != self.n() {
            return;
        }
        self.params += o.params;
        self.conflicts += o.conflicts;
        add(&mut self.agree, &o.agree);
        add(&mut self.kept, &o.kept);
        add(&mut self.tied, &o.tied);
        for (a, b) in self.kept_energy.iter_mut().zip(&o.kept_energy) {
            *a += b;
        }
        for (ra, rb) in self.dots.iter_mut().zip(&o.dots) {
            for (a, b) in ra.iter_mut().zip(rb) {
                *a += b;
            }
        }
        self.finish();
    }

    /// Derive norms, cosines and energy shares from the raw sums.
    fn finish(&mut self) {
        let n = self.n();
        for i in 0..n {
            self.norms[i] = self.dots[i][i].max(0.0).sqrt();
            self.norm_kept[i] = if self.dots[i][i] > 0.0 {
                self.kept_energy[i] / self.dots[i][i]
            } else {
                1.0
            };
        }
        for i in 0..n {
            for j in 0..n {
                let d = self.norms[i] * self.norms[j];
                self.cosines[i][j] = if d > 0.0 { self.dots[i][j] / d } else { 0.0 };
            }
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn add(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, AnalysisError>;

/// Per-model trimming and weighting for one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Trim {
    /// Kept share per model, in (0, 1]; 1 keeps everything.
    pub density: Vec<f64>,
    pub weight: Vec<f64>,
}

impl Trim {
    /// `density` and `weight` of each model from resolved parameters
    /// (missing values: 1.0).
    pub fn from_params(params: &TensorParams, n: usize) -> Trim {
        let get = |i: usize, name: &str| params.models.get(i).map_or(1.0, |m| m.f64_or(name, 1.0));
        Trim {
            density: (0..n).map(|i| get(i, "density")).collect(),
            weight: (0..n).map(|i| get(i, "weight")).collect(),
        }
    }
}

/// Where task-vector chunks come from: streamed from files or held in
/// memory.
trait Deltas {
    fn numel(&self) -> usize;
    fn n(&self) -> usize;
    /// Task vector `i`, elements `[start, start + out.len())`.
    fn read(&self, i: usize, start: usize, out: &mut Vec<f32>) -> Result<()>;
}

/// Task vectors computed on the fly from a base and models.
struct FileDeltas<'a> {
    base: (&'a Model, &'a TensorInfo),
    models: Vec<(&'a Model, &'a TensorInfo)>,
    numel: usize,
}

impl Deltas for FileDeltas<'_> {
    fn numel(&self) -> usize {
        self.numel
    }
    fn n(&self) -> usize {
        self.models.len()
    }
    fn read(&self, i: usize, start: usize, out: &mut Vec<f32>) -> Result<()> {
        let len = out.len();
        let (m, t) = self.models[i];
        m.read_f32(t, start, out)?;
        let mut base = vec![0f32; len];
        self.base.0.read_f32(self.base.1, start, &mut base)?;
        for (x, b) in out.iter_mut().zip(&base) {
            *x -= b;
        }
        Ok(())
    }
}

/// One tensor's task vectors, held in memory for repeated analysis (the
/// TUI asks again at every density change).
pub struct TensorDeltas {
    pub tensor: String,
    deltas: Vec<Vec<f32>>,
}

impl TensorDeltas {
    /// Read `tensor` from the base and every model and keep the
    /// differences. Checks `cancel` between chunks.
    pub fn load(
        base: &Model,
        models: &[Arc<Model>],
        tensor: &str,
        cancel: &AtomicBool,
    ) -> Result<TensorDeltas> {
        let src = file_deltas(base, models, tensor)?;
        let numel = src.numel;
        let mut deltas = vec![Vec::with_capacity(numel); models.len()];
        let mut buf = Vec::new();
        let mut start = 0;
        while start < numel {
            check(cancel)?;
            let end = (start + CHUNK).min(numel);
            for (i, d) in deltas.iter_mut().enumerate() {
                buf.resize(end - start, 0.0);
                src.read(i, start, &mut buf)?;
                d.extend_from_slice(&buf);
            }
            start = end;
        }
        Ok(TensorDeltas {
            tensor: tensor.to_string(),
            deltas,
        })
    }

    /// Wrap task vectors already in memory (all the same length).
    pub fn from_vecs(tensor: &str, deltas: Vec<Vec<f32>>) -> TensorDeltas {
        TensorDeltas {
            tensor: tensor.to_string(),
            deltas,
        }
    }

    /// Statistics at these densities and weights.
    pub fn stats(&self, trim: &Trim, cancel: &AtomicBool) -> Result<Stats> {
        compute(self, trim, cancel)
    }
}

impl Deltas for TensorDeltas {
    fn numel(&self) -> usize {
        self.deltas.first().map_or(0, Vec::len)
    }
    fn n(&self) -> usize {
        self.deltas.len()
    }
    fn read(&self, i: usize, start: usize, out: &mut Vec<f32>) -> Result<()> {
        let len = out.len();
        out.copy_from_slice(&self.deltas[i][start..start + len]);
        Ok(())
    }
}

fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        Err(AnalysisError::Cancelled)
    } else {
        Ok(())
    }
}

fn file_deltas<'a>(
    base: &'a Model,
    models: &'a [Arc<Model>],
    tensor: &str,
) -> Result<FileDeltas<'a>> {
    let missing = |m: &Model| {
        AnalysisError::Model(crate::model::ModelError::MissingTensor {
            path: m.path().to_path_buf(),
            tensor: tensor.to_string(),
        })
    };
    let bt = base.tensor(tensor).ok_or_else(|| missing(base))?;
    let mut ms = Vec::new();
    for m in models {
        let t = m.tensor(tensor).ok_or_else(|| missing(m))?;
        if t.shape != bt.shape {
            return Err(AnalysisError::Other(format!(
                "{}: tensor `{tensor}` has shape {:?}, the base has {:?}",
                m.path().display(),
                t.shape,
                bt.shape
            )));
        }
        ms.push((m.as_ref(), t));
    }
    Ok(FileDeltas {
        base: (base, bt),
        models: ms,
        numel: bt.numel(),
    })
}

/// Read every chunk of every task vector in order and hand it to `f`.
fn sweep(src: &dyn Deltas, cancel: &AtomicBool, f: &mut dyn FnMut(&[Vec<f32>])) -> Result<()> {
    let numel = src.numel();
    let mut bufs: Vec<Vec<f32>> = vec![Vec::new(); src.n()];
    let mut start = 0;
    while start < numel {
        check(cancel)?;
        let end = (start + CHUNK).min(numel);
        for (i, b) in bufs.iter_mut().enumerate() {
            b.resize(end - start, 0.0);
            src.read(i, start, b)?;
        }
        f(&bufs);
        start = end;
    }
    Ok(())
}

/// Three sweeps: (1) dot products and the selectors' first pass; (2) the
/// selectors' remaining passes; (3) masks, elected signs, agreement.
fn compute(src: &dyn Deltas, trim: &Trim, cancel: &AtomicBool) -> Result<Stats> {
    let n = src.n();
    let numel = src.numel();
    let mut st = Stats::new(n);
    st.params = numel as u64;
    let mut sel: Vec<TopK> = (0..n)
        .map(|i| {
            let density = trim.density.get(i).copied().unwrap_or(1.0);
            TopK::new(numel, keep_count(density, numel))
        })
        .collect();
    let observe = |sel: &mut [TopK], b: &[Vec<f32>]| {
        for (s, d) in sel.iter_mut().zip(b) {
            if s.wants_pass() {
                s.observe(d);
            }
        }
    };
    sweep(src, cancel, &mut |b| {
        for i in 0..n {
            for j in i..n {
                st.dots[i][j] += crate::merge::dot(&b[i], &b[j]);
            }
        }
        observe(&mut sel, b);
    })?;
    for i in 0..n {
        for j in 0..i {
            st.dots[i][j] = st.dots[j][i];
        }
    }
    for s in sel.iter_mut().filter(|s| s.wants_pass()) {
        s.end_pass();
    }
    while sel.iter().any(TopK::wants_pass) {
        sweep(src, cancel, &mut |b| observe(&mut sel, b))?;
        for s in sel.iter_mut().filter(|s| s.wants_pass()) {
            s.end_pass();
        }
    }
    for s in &mut sel {
        s.rewind();
    }
    let weights: Vec<f32> = (0..n)
        .map(|i| trim.weight.get(i).copied().unwrap_or(1.0) as f32)
        .collect();
    let mut masks: Vec<Vec<bool>> = vec![Vec::new(); n];
    sweep(src, cancel, &mut |b| {
        let len = b.first().map_or(0, Vec::len);
        for ((s, d), m) in sel.iter_mut().zip(b).zip(masks.iter_mut()) {
            m.resize(len, false);
            s.keep_mask(d, m);
        }
        count_signs(b, &masks, &weights, &mut st);
    })?;
    for (t, s) in st.tied.iter_mut().zip(&sel) {
        *t = s.tied_at_cutoff();
    }
    st.finish();
    Ok(st)
}

/// Elect a sign per parameter from the kept, weighted entries (a zero sum
/// counts as positive, as in TIES) and count who agrees.
fn count_signs(b: &[Vec<f32>], masks: &[Vec<bool>], weights: &[f32], st: &mut Stats) {
    let n = b.len();
    let len = b.first().map_or(0, Vec::len);
    for e in 0..len {
        let mut sum = 0f32;
        for i in 0..n {
            if masks[i][e] {
                sum += weights[i] * b[i][e];
            }
        }
        let positive = sum >= 0.0;
        let mut agree = 0usize;
        let mut oppose = false;
        for i in 0..n {
            let v = weights[i] * b[i][e];
            if !masks[i][e] || v == 0.0 {
                continue;
            }
            if (v > 0.0) == positive {
                agree += 1;
            } else {
                oppose = true;
            }
        }
        st.agree[agree] += 1;
        st.conflicts += u64::from(oppose);
    }
    for i in 0..n {
        let mut e2 = 0f64;
        let mut kept = 0u64;
        for (x, &k) in b[i].iter().zip(&masks[i]) {
            if k {
                e2 += f64::from(*x) * f64::from(*x);
                kept += 1;
            }
        }
        st.kept_energy[i] += e2;
        st.kept[i] += kept;
    }
}

/// Statistics for one tensor, streamed from the models. `params` supplies
/// each model's `density` and `weight` (missing: 1.0, so methods that do
/// not trim describe the raw task vectors). Checks `cancel` between chunks.
pub fn analyze_tensor(
    base: &Model,
    models: &[Arc<Model>],
    tensor: &str,
    params: &TensorParams,
    cancel: &AtomicBool,
) -> Result<Stats> {
    let src = file_deltas(base, models, tensor)?;
    compute(&src, &Trim::from_params(params, models.len()), cancel)
}

/// Statistics summed over every mergeable tensor of a layer group (each
/// tensor trimmed on its own, as the merge does); `params_for` gives each
/// tensor's parameters.
pub fn analyze_group(
    base: &Model,
    models: &[Arc<Model>],
    group: Group,
    params_for: &dyn Fn(&str) -> TensorParams,
    cancel: &AtomicBool,
) -> Result<Stats> {
    let mut total = Stats::new(models.len());
    for t in base
        .tensors()
        .iter()
        .filter(|t| t.place.group == group && t.dtype.is_mergeable())
    {
        let s = analyze_tensor(base, models, &t.name, &params_for(&t.name), cancel)?;
        total.combine(&s);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(deltas: Vec<Vec<f32>>, density: Vec<f64>, weight: Vec<f64>) -> Stats {
        TensorDeltas::from_vecs("t", deltas)
            .stats(&Trim { density, weight }, &AtomicBool::new(false))
            .expect("in-memory analysis cannot fail")
    }

    #[test]
    fn counts_agreement_by_hand() {
        // Four parameters, two task vectors, no trimming.
        // p0: +,+ agree 2 ; p1: +,- sum>0 -> one agrees, conflict ;
        // p2: 0,0 -> agree 0 ; p3: -,- agree 2.
        let s = stats(
            vec![vec![1.0, 2.0, 0.0, -1.0], vec![1.0, -1.0, 0.0, -3.0]],
            vec![1.0, 1.0],
            vec![1.0, 1.0],
        );
        assert_eq!(s.params, 4);
        assert_eq!(s.agree, vec![1, 1, 2]);
        assert_eq!(s.conflicts, 1);
        assert_eq!(s.kept, vec![4, 4]);
        assert!((s.norm_kept[0] - 1.0).abs() < 1e-12);
        assert!((s.norms[0] - 6f64.sqrt()).abs() < 1e-9);
        // cos = (1 - 2 + 0 + 3) / (sqrt(6) * sqrt(11))
        let want = 2.0 / (6f64.sqrt() * 11f64.sqrt());
        assert!((s.cosines[0][1] - want).abs() < 1e-9);
        assert!((s.cosines[1][0] - want).abs() < 1e-9);
    }

    #[test]
    fn trimming_removes_small_conflicts() {
        // The conflicting entry of model 1 is its smallest: at density 0.5
        // it is trimmed away and the conflict disappears.
        let a = vec![4.0, 3.0, 0.1, 0.1];
        let b = vec![5.0, 2.0, -0.2, 0.05];
        let full = stats(vec![a.clone(), b.clone()], vec![1.0, 1.0], vec![1.0, 1.0]);
        assert_eq!(full.conflicts, 1);
        let trimmed = stats(vec![a, b], vec![0.5, 0.5], vec![1.0, 1.0]);
        assert_eq!(trimmed.conflicts, 0);
        assert_eq!(trimmed.kept, vec![2, 2]);
        assert!(trimmed.norm_kept[0] > 0.99);
    }

    #[test]
    fn weights_decide_the_elected_sign() {
        let s = stats(vec![vec![1.0], vec![-1.0]], vec![1.0, 1.0], vec![1.0, 3.0]);
        // Elected sign is negative: model 1 agrees, model 0 conflicts.
        assert_eq!(s.agree, vec![0, 1, 0]);
        assert_eq!(s.conflicts, 1);
    }

    #[test]
    fn ties_at_the_cutoff_are_reported_and_kept_by_index() {
        // Eight equal magnitudes, density 0.5: all tied, the first four kept.
        let s = stats(vec![vec![1.0; 8]], vec![0.5], vec![1.0]);
        assert_eq!(s.kept, vec![4]);
        assert_eq!(s.tied, vec![8]);
        assert_eq!(s.agree, vec![4, 4]);
    }

    #[test]
    fn combine_matches_one_pass_over_the_union() {
        let a = stats(
            vec![vec![1.0, -2.0], vec![2.0, 1.0]],
            vec![1.0; 2],
            vec![1.0; 2],
        );
        let b = stats(vec![vec![3.0], vec![-1.0]], vec![1.0; 2], vec![1.0; 2]);
        let whole = stats(
            vec![vec![1.0, -2.0, 3.0], vec![2.0, 1.0, -1.0]],
            vec![1.0; 2],
            vec![1.0; 2],
        );
        let mut c = a.clone();
        c.combine(&b);
        assert_eq!(c.params, whole.params);
        assert_eq!(c.agree, whole.agree);
        assert_eq!(c.conflicts, whole.conflicts);
        for i in 0..2 {
            for j in 0..2 {
                assert!((c.cosines[i][j] - whole.cosines[i][j]).abs() < 1e-12);
            }
        }
    }
}
