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
use std::sync::{Arc, Mutex};

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
///
/// Everything that does not depend on densities or weights is computed once
/// here, so a new density costs one scan of each task vector for its exact
/// cut-off and one counting pass over all of them (see [`TensorDeltas::stats`]).
pub struct TensorDeltas {
    pub tensor: String,
    deltas: Vec<Vec<f32>>,
    /// Common length of the task vectors.
    numel: usize,
    /// Dot products of the untrimmed task vectors (`n x n`).
    dots: Vec<Vec<f64>>,
    /// Per model: how many entries fall in each high-16-bit bucket of `|d|`
    /// (the first pass of [`TopK`]'s radix select, which never changes).
    hist: Vec<Vec<u64>>,
    /// Per model and bucket: sum of `d^2`, so the kept energy above the
    /// cut-off bucket is a suffix sum instead of a pass over the data.
    energy: Vec<Vec<f64>>,
    /// Per model: the last cut computed and its `k`. The TUI changes one
    /// model's density or a weight at a time, so most requests find most
    /// cuts here and skip those models' scans.
    last_cuts: Mutex<Vec<Option<(usize, Cut)>>>,
}

/// Entries per parallel work item in the in-memory path: large enough that
/// rayon's overhead vanishes, small enough that two cores share the work
/// evenly.
const PAR_BLOCK: usize = 1 << 16;

/// Entries per step of the counting kernel: its scratch (`n + 3` arrays of
/// this many words) stays in L1.
const SUB: usize = 1024;

/// Entries per parallel work item of the cut-off scan (offsets within one
/// fit in a `u32`).
const SCAN: usize = PAR_BLOCK * 16;

/// Entries in each high-16-bit bucket of `|x|` in `x`.
const BUCKETS: usize = 1 << 16;

#[inline(always)]
fn mag_bits(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
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
        check(cancel)?;
        Ok(TensorDeltas::from_vecs(tensor, deltas))
    }

    /// Wrap task vectors already in memory (all the same length; longer
    /// ones are cut to the shortest) and compute what every density shares:
    /// dot products and magnitude histograms.
    pub fn from_vecs(tensor: &str, mut deltas: Vec<Vec<f32>>) -> TensorDeltas {
        use rayon::prelude::*;
        let numel = deltas.iter().map(Vec::len).min().unwrap_or(0);
        for d in &mut deltas {
            d.truncate(numel);
        }
        let n = deltas.len();
        let blocks = numel.div_ceil(PAR_BLOCK);
        let dots = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let r = b * PAR_BLOCK..((b + 1) * PAR_BLOCK).min(numel);
                let mut m = vec![vec![0f64; n]; n];
                for i in 0..n {
                    for j in i..n {
                        let v = crate::merge::dot(&deltas[i][r.clone()], &deltas[j][r.clone()]);
                        m[i][j] = v;
                        m[j][i] = v;
                    }
                }
                m
            })
            .reduce(
                || vec![vec![0f64; n]; n],
                |mut a, b| {
                    for (ra, rb) in a.iter_mut().zip(&b) {
                        for (x, y) in ra.iter_mut().zip(rb) {
                            *x += y;
                        }
                    }
                    a
                },
            );
        let (hist, energy) = deltas
            .iter()
            .map(|d| {
                d.par_chunks(PAR_BLOCK * 16)
                    .fold(
                        || (vec![0u64; BUCKETS], vec![0f64; BUCKETS]),
                        |(mut h, mut e), c| {
                            for &x in c {
                                let b = (mag_bits(x) >> 16) as usize;
                                h[b] += 1;
                                e[b] += f64::from(x) * f64::from(x);
                            }
                            (h, e)
                        },
                    )
                    .reduce(
                        || (vec![0u64; BUCKETS], vec![0f64; BUCKETS]),
                        |(mut h, mut e), (h2, e2)| {
                            add(&mut h, &h2);
                            for (a, b) in e.iter_mut().zip(&e2) {
                                *a += b;
                            }
                            (h, e)
                        },
                    )
            })
            .unzip();
        TensorDeltas {
            tensor: tensor.to_string(),
            deltas,
            numel,
            dots,
            hist,
            energy,
            last_cuts: Mutex::new(vec![None; n]),
        }
    }

    /// Statistics at these densities and weights: the same numbers as the
    /// streaming path (counts exactly; energies and dot products up to the
    /// rounding of a different summation order).
    ///
    /// Per model, the cut-off bucket comes from the cached histogram, and
    /// one parallel scan of that model's task vector lists the entries in
    /// that bucket (in index order): their low bits give the exact cut-off,
    /// and the kept ties (the lowest indices) end at a single flat index.
    /// The counting pass then needs per model only "keep `|d| >= cut`
    /// before that index, `|d| > cut` from it on", which is branch-free and
    /// runs in parallel over blocks.
    pub fn stats(&self, trim: &Trim, cancel: &AtomicBool) -> Result<Stats> {
        use rayon::prelude::*;
        let n = self.deltas.len();
        let numel = self.numel;
        let mut st = Stats::new(n);
        st.params = numel as u64;
        st.dots.clone_from(&self.dots);
        let ks: Vec<usize> = (0..n)
            .map(|i| keep_count(trim.density.get(i).copied().unwrap_or(1.0), numel))
            .collect();
        let mut cuts: Vec<Option<Cut>> = ks
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                self.last_cuts.lock().ok().and_then(|l| match l.get(i) {
                    Some(Some((kk, c))) if *kk == k => Some(c.clone()),
                    _ => None,
                })
            })
            .collect();
        check(cancel)?;
        let wanted: Vec<(usize, usize)> = (0..n)
            .filter(|&i| cuts[i].is_none())
            .map(|i| (i, ks[i]))
            .collect();
        for (i, c) in self.cuts(&wanted) {
            // A poisoned lock only costs the cache.
            if let Ok(mut l) = self.last_cuts.lock() {
                if let Some(slot) = l.get_mut(i) {
                    *slot = Some((ks[i], c.clone()));
                }
            }
            cuts[i] = Some(c);
        }
        let cuts: Vec<Cut> = cuts.into_iter().flatten().collect();
        if cuts.len() != n {
            return Err(AnalysisError::Other("a trim was not computed".into()));
        }
        for (i, c) in cuts.iter().enumerate() {
            st.kept[i] = c.k;
            st.tied[i] = c.tied;
            st.kept_energy[i] = c.energy;
        }
        let weights: Vec<f32> = (0..n)
            .map(|i| trim.weight.get(i).copied().unwrap_or(1.0) as f32)
            .collect();
        let (agree, conflicts) = (0..numel.div_ceil(PAR_BLOCK))
            .into_par_iter()
            .map(|b| {
                let mut agree = vec![0u64; n + 1];
                let mut conflicts = 0u64;
                if !cancel.load(Ordering::Relaxed) {
                    let r = b * PAR_BLOCK..((b + 1) * PAR_BLOCK).min(numel);
                    let (d, c, w) = (&self.deltas, &cuts, &weights);
                    crate::simd::dispatch!(count_block(d, c, w, r, &mut agree, &mut conflicts));
                }
                (agree, conflicts)
            })
            .reduce(
                || (vec![0u64; n + 1], 0),
                |(mut a, c), (a2, c2)| {
                    add(&mut a, &a2);
                    (a, c + c2)
                },
            );
        check(cancel)?;
        st.agree = agree;
        st.conflicts = conflicts;
        st.finish();
        Ok(st)
    }

    /// The exact top-`k` cuts (the rule of [`TopK`]) of the models named
    /// in `wanted` (`(model, k)` pairs). The scans for the cut-off buckets'
    /// members of every model run as one parallel sweep.
    fn cuts(&self, wanted: &[(usize, usize)]) -> Vec<(usize, Cut)> {
        use rayon::prelude::*;
        let numel = self.numel;
        let mut done = Vec::with_capacity(wanted.len());
        // (model, k, cut-off bucket, entries above it, energy above it)
        let mut scans: Vec<(usize, u64, u32, u64, f64)> = Vec::new();
        for &(i, k) in wanted {
            let (hist, energy) = (&self.hist[i], &self.energy[i]);
            if k >= numel {
                // Everything passes `|d| >= 0`.
                done.push((
                    i,
                    Cut {
                        thr: 0,
                        split: numel,
                        k: numel as u64,
                        tied: 0,
                        energy: energy.iter().sum(),
                    },
                ));
                continue;
            }
            if k == 0 {
                // Nothing passes `|d| > 0x8000_0000` (magnitudes are below).
                done.push((
                    i,
                    Cut {
                        thr: 0x8000_0000,
                        split: 0,
                        k: 0,
                        tied: 0,
                        energy: 0.0,
                    },
                ));
                continue;
            }
            let k64 = k as u64;
            let mut above_hi = 0u64;
            let mut cut = 0u32;
            for b in (0..BUCKETS).rev() {
                if above_hi + hist[b] >= k64 {
                    cut = b as u32;
                    break;
                }
                above_hi += hist[b];
            }
            let kept_energy: f64 = energy[cut as usize + 1..].iter().sum();
            scans.push((i, k64, cut, above_hi, kept_energy));
        }
        // Flat indices and magnitudes of the entries in each cut-off
        // bucket, in order: a few percent of the tensor unless the data is
        // degenerate (at most two words per entry either way, and only
        // while this call runs).
        let pieces = numel.div_ceil(SCAN);
        let found: Vec<Vec<u32>> = (0..scans.len() * pieces)
            .into_par_iter()
            .map(|t| {
                let (i, _, cut, _, _) = scans[t / pieces];
                let p = t % pieces;
                let c = &self.deltas[i][p * SCAN..((p + 1) * SCAN).min(numel)];
                let sparse = self.hist[i][cut as usize] * 64 < numel as u64;
                members(c, cut, sparse)
            })
            .collect();
        for (si, &(i, k64, cut, above_hi, mut kept_energy)) in scans.iter().enumerate() {
            let found = &found[si * pieces..(si + 1) * pieces];
            let low = found
                .par_iter()
                .fold(
                    || vec![0u64; BUCKETS],
                    |mut h, mags| {
                        for &m in mags {
                            h[(m & 0xffff) as usize] += 1;
                        }
                        h
                    },
                )
                .reduce(
                    || vec![0u64; BUCKETS],
                    |mut a, b| {
                        add(&mut a, &b);
                        a
                    },
                );
            let mut above = above_hi;
            let mut lo = 0usize;
            for b in (0..BUCKETS).rev() {
                if above + low[b] >= k64 {
                    lo = b;
                    break;
                }
                above += low[b];
            }
            let thr = (cut << 16) | lo as u32;
            let keep_ties = k64 - above;
            // Per piece: ties, and the energy of the members above the
            // cut-off. Every tie has the cut-off's magnitude, so the kept
            // ties' energy is `keep_ties * thr^2`.
            let per: Vec<(u64, f64)> = found
                .par_iter()
                .map(|mags| {
                    let (mut ties, mut e) = (0u64, 0f64);
                    for &m in mags {
                        ties += u64::from(m == thr);
                        let x = f64::from(f32::from_bits(m));
                        e += if m > thr { x * x } else { 0.0 };
                    }
                    (ties, e)
                })
                .collect();
            let t = f64::from(f32::from_bits(thr));
            kept_energy += per.iter().map(|p| p.1).sum::<f64>() + keep_ties as f64 * t * t;
            // The first tie that is not kept: in the piece where the count
            // of ties passes `keep_ties`, found by reading that piece again.
            let mut split = numel;
            let mut seen = 0u64;
            for (ci, &(ties, _)) in per.iter().enumerate() {
                if seen + ties > keep_ties {
                    let nth = (keep_ties - seen) as usize;
                    let d = &self.deltas[i][ci * SCAN..((ci + 1) * SCAN).min(numel)];
                    let hit = d
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| mag_bits(**x) == thr)
                        .nth(nth);
                    if let Some((j, _)) = hit {
                        split = ci * SCAN + j;
                    }
                    break;
                }
                seen += ties;
            }
            done.push((
                i,
                Cut {
                    thr,
                    split,
                    k: k64,
                    tied: low[lo],
                    energy: kept_energy,
                },
            ));
        }
        done
    }
}

/// [`bucket_members`], with AVX-512's compress instruction when the CPU
/// has it (16 entries a step, no branch per member), else the portable
/// loop compiled for the widest vectors there are.
///
/// `sparse` says members are rare (under 1 in 64): groups of 16 without
/// one are then skipped, a branch that is almost always predicted; with
/// more members that branch would mispredict often, and every group is
/// stored instead.
fn members(c: &[f32], cut: u32, sparse: bool) -> Vec<u32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, the only feature the function uses.
        return unsafe { members_avx512(c, cut, sparse) };
    }
    let _ = sparse;
    crate::simd::dispatch!(bucket_members(c, cut))
}

/// [`bucket_members`], 16 lanes at a time; the compressed stores keep the
/// lanes' order, so the result is the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn members_avx512(c: &[f32], cut: u32, sparse: bool) -> Vec<u32> {
    use std::arch::x86_64::*;
    const STEP: usize = 4096;
    let mut mags = Vec::new();
    let mut mbuf = [0u32; STEP + 16];
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let vcut = _mm512_set1_epi32(cut as i32);
    let whole = c.len() - c.len() % 16;
    let mut at = 0;
    while at < whole {
        let end = (at + STEP).min(whole);
        let mut m = 0usize;
        let mut i = at;
        while i < end {
            // SAFETY: `i + 16 <= whole <= c.len()`; the store writes 16
            // lanes at `m <= i - at < STEP`, inside the STEP + 16 buffer.
            unsafe {
                let v = _mm512_loadu_si512(c.as_ptr().add(i).cast());
                let b = _mm512_and_si512(v, abs);
                let hit = _mm512_cmpeq_epi32_mask(_mm512_srli_epi32::<16>(b), vcut);
                if !(hit == 0 && sparse) {
                    _mm512_storeu_si512(
                        mbuf.as_mut_ptr().add(m).cast(),
                        _mm512_maskz_compress_epi32(hit, b),
                    );
                    m += hit.count_ones() as usize;
                }
            }
            i += 16;
        }
        mags.extend_from_slice(&mbuf[..m]);
        at = end;
    }
    for &x in &c[whole..] {
        let b = mag_bits(x);
        if b >> 16 == cut {
            mags.push(b);
        }
    }
    mags
}

/// The `|x|` bit patterns of the entries of `c` in high-16-bit bucket
/// `cut`, in order. (Where they are is not kept: only the entry where the
/// kept ties end needs a position, and [`TensorDeltas::cuts`] finds it by
/// looking again at the one piece that holds it.)
///
/// The cut-off bucket holds a few percent of the entries, scattered: a
/// branch per entry would mispredict often, and a scalar loop costs more
/// than reading the memory. So each group of [`GROUP`] entries is tested
/// by a branch-free loop (it vectorises) that sets one bit per member, and
/// only the set bits are visited: the work is per member, not per entry.
#[inline(always)]
fn bucket_members(c: &[f32], cut: u32) -> Vec<u32> {
    let mut mags = Vec::new();
    let groups = c.chunks_exact(GROUP);
    let tail = groups.remainder();
    for group in groups {
        // One bit per member, from a loop without branches.
        let mut bits = 0u32;
        for (j, &x) in group.iter().enumerate() {
            bits |= u32::from(mag_bits(x) >> 16 == cut) << j;
        }
        while bits != 0 {
            let j = bits.trailing_zeros() as usize;
            mags.push(mag_bits(group[j]));
            bits &= bits - 1;
        }
    }
    for &x in tail {
        let m = mag_bits(x);
        if m >> 16 == cut {
            mags.push(m);
        }
    }
    mags
}

/// Entries tested at once when looking for the cut-off bucket's members
/// (one bit each in a `u32`).
const GROUP: usize = 32;

/// One model's trim, in the form the counting kernel wants: entry `e` is
/// kept when `|d[e]| >= thr` (bit patterns) for `e < split` and when
/// `|d[e]| > thr` from `split` on.
#[derive(Clone, Debug)]
struct Cut {
    thr: u32,
    split: usize,
    /// Entries kept.
    k: u64,
    /// Entries equal to the cut-off.
    tied: u64,
    /// Sum of `d^2` over the kept entries.
    energy: f64,
}

/// Agreement counts for entries `r` of every task vector, added to `agree`
/// and `conflicts`.
///
/// Works in steps of [`SUB`] entries, model by model, so every inner loop
/// is a straight branch-free pass over contiguous arrays (it vectorises on
/// baseline x86-64). One pass per model accumulates, per entry, the
/// weighted sum and how many kept entries are non-zero and positive; the
/// elected sign then says which of the two counts agrees, so no model is
/// read twice. The arithmetic is the streaming path's: `v = w * d`, summed
/// over models in order from `0.0`; adding a masked-out `+0.0` instead of
/// skipping it changes only a `-0.0` sum to `+0.0`, and both elect `+`.
#[inline(always)]
fn count_block(
    deltas: &[Vec<f32>],
    cuts: &[Cut],
    weights: &[f32],
    r: std::ops::Range<usize>,
    agree: &mut [u64],
    conflicts: &mut u64,
) {
    let mut sum = [0f32; SUB];
    let mut pos = [0u32; SUB];
    let mut nz = [0u32; SUB];
    let mut g = r.start;
    while g < r.end {
        let len = SUB.min(r.end - g);
        let (sum, pos, nz) = (&mut sum[..len], &mut pos[..len], &mut nz[..len]);
        sum.fill(0.0);
        pos.fill(0);
        nz.fill(0);
        for ((d, c), &w) in deltas.iter().zip(cuts).zip(weights) {
            let d = &d[g..g + len];
            let s = c.split.saturating_sub(g).min(len);
            weigh(
                &d[..s],
                &mut sum[..s],
                &mut pos[..s],
                &mut nz[..s],
                c.thr,
                w,
            );
            weigh(
                &d[s..],
                &mut sum[s..],
                &mut pos[s..],
                &mut nz[s..],
                c.thr + 1,
                w,
            );
        }
        tally(sum, pos, nz, agree, conflicts);
        g += len;
    }
}

#[inline(always)]
/// Turn one step's per-entry sums and counts into `agree` and `conflicts`:
/// the elected sign (`sum >= 0` is `+`) picks which count agrees, the rest
/// of the non-zero kept entries oppose. Clobbers `pos` and `nz`.
fn tally(sum: &[f32], pos: &mut [u32], nz: &mut [u32], agree: &mut [u64], conflicts: &mut u64) {
    // Per entry: agreeing count into `pos`, conflict flag into `nz`.
    for ((&s, p), z) in sum.iter().zip(pos.iter_mut()).zip(nz.iter_mut()) {
        let elected_pos = u32::from(s >= 0.0).wrapping_neg();
        let a = (*p & elected_pos) | ((*z - *p) & !elected_pos);
        *z = u32::from(*z != a);
        *p = a;
    }
    for (k, a) in agree.iter_mut().enumerate() {
        let k = k as u32;
        *a += u64::from(pos.iter().map(|&c| u32::from(c == k)).sum::<u32>());
    }
    *conflicts += u64::from(nz.iter().sum::<u32>());
}

/// For entries kept (`|d| >= lo`, bit patterns): `v = w * d`, `sum += v`,
/// and count `v > 0` into `pos` and `v != 0` into `nz` (a NaN counts as
/// non-zero and not positive, as in the streaming path). Entries not kept
/// add `+0.0` and count nowhere.
#[inline(always)]
fn weigh(d: &[f32], sum: &mut [f32], pos: &mut [u32], nz: &mut [u32], lo: u32, w: f32) {
    for (((&x, s), p), z) in d
        .iter()
        .zip(sum.iter_mut())
        .zip(pos.iter_mut())
        .zip(nz.iter_mut())
    {
        let keep = u32::from(mag_bits(x) >= lo).wrapping_neg();
        let v = f32::from_bits((w * x).to_bits() & keep);
        *s += v;
        *p += u32::from(v > 0.0);
        *z += u32::from(v != 0.0);
    }
}

impl Deltas for TensorDeltas {
    fn numel(&self) -> usize {
        self.numel
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
/// counts as positive, as in TIES) and count who agrees: the streaming
/// path's counting, with the same branch-free steps as the in-memory
/// kernel ([`count_block`]) but masks from [`TopK::keep_mask`].
fn count_signs(b: &[Vec<f32>], masks: &[Vec<bool>], weights: &[f32], st: &mut Stats) {
    let len = b.first().map_or(0, Vec::len);
    let mut sum = [0f32; SUB];
    let mut pos = [0u32; SUB];
    let mut nz = [0u32; SUB];
    let mut g = 0;
    while g < len {
        let l = SUB.min(len - g);
        let (sum, pos, nz) = (&mut sum[..l], &mut pos[..l], &mut nz[..l]);
        sum.fill(0.0);
        pos.fill(0);
        nz.fill(0);
        for ((d, m), &w) in b.iter().zip(masks).zip(weights) {
            let (d, m) = (&d[g..g + l], &m[g..g + l]);
            for ((((&x, &k), s), p), z) in d
                .iter()
                .zip(m)
                .zip(sum.iter_mut())
                .zip(pos.iter_mut())
                .zip(nz.iter_mut())
            {
                let keep = u32::from(k).wrapping_neg();
                let v = f32::from_bits((w * x).to_bits() & keep);
                *s += v;
                *p += u32::from(v > 0.0);
                *z += u32::from(v != 0.0);
            }
        }
        tally(sum, pos, nz, &mut st.agree, &mut st.conflicts);
        g += l;
    }
    for ((d, m), (e, kept)) in b
        .iter()
        .zip(masks)
        .zip(st.kept_energy.iter_mut().zip(st.kept.iter_mut()))
    {
        let mut e2 = 0f64;
        let mut k = 0u64;
        for (&x, &keep) in d.iter().zip(m) {
            let x = f64::from(f32::from_bits(x.to_bits() & u32::from(keep).wrapping_neg()));
            e2 += x * x;
            k += u64::from(keep);
        }
        *e += e2;
        *kept += k;
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

    /// The straightforward implementation, as the reference for both fast
    /// paths: whole-vector [`TopK`] masks, then the original per-entry loop
    /// (skip what is not kept or zero, compare signs one by one).
    fn reference(deltas: &[Vec<f32>], trim: &Trim) -> Stats {
        let n = deltas.len();
        let numel = deltas.first().map_or(0, Vec::len);
        let mut st = Stats::new(n);
        st.params = numel as u64;
        let mut masks = Vec::new();
        for (i, d) in deltas.iter().enumerate() {
            let density = trim.density.get(i).copied().unwrap_or(1.0);
            let mut t = TopK::new(numel, keep_count(density, numel));
            while t.wants_pass() {
                t.observe(d);
                t.end_pass();
            }
            let mut m = vec![false; numel];
            t.keep_mask(d, &mut m);
            st.tied[i] = t.tied_at_cutoff();
            masks.push(m);
            for (j, e) in deltas.iter().enumerate() {
                st.dots[i][j] = crate::merge::dot(d, e);
            }
        }
        let weights: Vec<f32> = (0..n)
            .map(|i| trim.weight.get(i).copied().unwrap_or(1.0) as f32)
            .collect();
        for e in 0..numel {
            let mut sum = 0f32;
            for i in 0..n {
                if masks[i][e] {
                    sum += weights[i] * deltas[i][e];
                }
            }
            let positive = sum >= 0.0;
            let mut agree = 0usize;
            let mut oppose = false;
            for i in 0..n {
                let v = weights[i] * deltas[i][e];
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
            for (x, &k) in deltas[i].iter().zip(&masks[i]) {
                if k {
                    st.kept_energy[i] += f64::from(*x) * f64::from(*x);
                    st.kept[i] += 1;
                }
            }
        }
        st.finish();
        st
    }

    /// The streaming path ([`compute`], chunk by chunk) over the same
    /// task vectors.
    fn streamed(deltas: &[Vec<f32>], trim: &Trim) -> Stats {
        let src = TensorDeltas {
            tensor: "t".into(),
            numel: deltas.first().map_or(0, Vec::len),
            deltas: deltas.to_vec(),
            dots: Vec::new(),
            hist: Vec::new(),
            energy: Vec::new(),
            last_cuts: Mutex::new(Vec::new()),
        };
        compute(&src, trim, &AtomicBool::new(false)).expect("in-memory analysis cannot fail")
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    /// Counts equal exactly; sums equal up to summation order.
    /// The member scans (compressing, skipping or not, and the portable
    /// loop) list the same entries in the same order.
    #[test]
    fn member_scans_agree() {
        let mut s = 9u64;
        for len in [0usize, 5, 16, 33, 4096, 10_007] {
            for spread in [3u32, 40] {
                let c: Vec<f32> = (0..len)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let bucket = 0x3c00 + ((s >> 40) as u32 % spread);
                        let v = f32::from_bits((bucket << 16) | ((s >> 20) as u32 & 0xffff));
                        if s >> 63 == 1 {
                            -v
                        } else {
                            v
                        }
                    })
                    .collect();
                let want = super::bucket_members(&c, 0x3c01);
                assert_eq!(super::members(&c, 0x3c01, true), want, "len {len}");
                assert_eq!(super::members(&c, 0x3c01, false), want, "len {len}");
            }
        }
    }

    fn assert_same(fast: &Stats, slow: &Stats, what: &str) {
        assert_eq!(fast.params, slow.params, "{what}");
        assert_eq!(fast.agree, slow.agree, "{what}");
        assert_eq!(fast.conflicts, slow.conflicts, "{what}");
        assert_eq!(fast.kept, slow.kept, "{what}");
        assert_eq!(fast.tied, slow.tied, "{what}");
        for (a, b) in fast.kept_energy.iter().zip(&slow.kept_energy) {
            assert!(close(*a, *b), "{what}: kept energy {a} vs {b}");
        }
        for (ra, rb) in fast.dots.iter().zip(&slow.dots) {
            for (a, b) in ra.iter().zip(rb) {
                assert!(close(*a, *b), "{what}: dot {a} vs {b}");
            }
        }
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Few distinct magnitudes (heavy ties), both signs, zeros of both
    /// signs.
    fn tied_vec(seed: &mut u64, len: usize, distinct: u64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                let v = (lcg(seed) % distinct) as f32 * 0.125;
                if lcg(seed).is_multiple_of(2) {
                    v
                } else {
                    -v
                }
            })
            .collect()
    }

    #[test]
    fn fast_path_matches_streaming_with_heavy_ties() {
        let mut seed = 5u64;
        let densities: [f64; 9] = [0.0, 1e-4, 0.1, 0.3, 0.5, 0.77, 0.999, 1.0, 1.5];
        let weight_sets: [&[f64]; 4] = [
            &[1.0, 1.0, 1.0, 1.0],
            &[0.5, -1.0, 2.0, 1.0],
            &[1.0, 0.0, 1.0, 3.0],
            // Weights that make opposite equal entries cancel to zero.
            &[1.0, 1.0, 2.0, 0.5],
        ];
        for (trial, len) in [1usize, 7, 1000, 3 * PAR_BLOCK + 17]
            .into_iter()
            .enumerate()
        {
            for n in 1..=4usize {
                let distinct = 2 + (trial as u64 * 3 + n as u64) % 7;
                let deltas: Vec<Vec<f32>> =
                    (0..n).map(|_| tied_vec(&mut seed, len, distinct)).collect();
                let td = TensorDeltas::from_vecs("t", deltas.clone());
                for di in 0..densities.len() {
                    for w in weight_sets {
                        let trim = Trim {
                            // Different densities per model.
                            density: (0..n)
                                .map(|i| densities[(di + 2 * i) % densities.len()])
                                .collect(),
                            weight: w[..n].to_vec(),
                        };
                        let fast = td.stats(&trim, &AtomicBool::new(false)).expect("no cancel");
                        let what = format!("len={len} n={n} {trim:?}");
                        let want = reference(&deltas, &trim);
                        assert_same(&fast, &want, &what);
                        assert_same(&streamed(&deltas, &trim), &want, &what);
                    }
                }
            }
        }
    }

    #[test]
    fn fast_path_matches_streaming_on_continuous_and_odd_values() {
        let mut seed = 17u64;
        let len = 2 * PAR_BLOCK + 999;
        let mut deltas: Vec<Vec<f32>> = (0..3)
            .map(|_| {
                (0..len)
                    .map(|_| (lcg(&mut seed) as f32 / (1u64 << 31) as f32 - 0.5) * 1e-2)
                    .collect()
            })
            .collect();
        // Exact cancellations, signed zeros, infinities and NaN.
        deltas[1][5] = -deltas[0][5];
        deltas[0][6] = -0.0;
        deltas[1][7] = f32::INFINITY;
        deltas[2][7] = f32::NEG_INFINITY;
        deltas[2][8] = f32::NAN;
        let td = TensorDeltas::from_vecs("t", deltas.clone());
        for density in [0.01, 0.2, 0.5, 0.9, 1.0] {
            let trim = Trim {
                density: vec![density; 3],
                weight: vec![1.0, 0.7, -1.3],
            };
            let fast = td.stats(&trim, &AtomicBool::new(false)).expect("no cancel");
            let want = reference(&deltas, &trim);
            assert_same(&fast, &want, &format!("{density}"));
            assert_same(&streamed(&deltas, &trim), &want, &format!("{density}"));
        }
    }

    /// Longer than one scan chunk, so the tie boundary and the cut-off
    /// bucket's members span chunks.
    #[test]
    fn fast_path_matches_streaming_across_scan_chunks() {
        let mut seed = 23u64;
        let len = SCAN + PAR_BLOCK + 5;
        let deltas: Vec<Vec<f32>> = (0..2).map(|_| tied_vec(&mut seed, len, 3)).collect();
        let td = TensorDeltas::from_vecs("t", deltas.clone());
        for density in [0.2, 0.6, 0.95] {
            let trim = Trim {
                density: vec![density, 0.5],
                weight: vec![1.0, -0.5],
            };
            let fast = td.stats(&trim, &AtomicBool::new(false)).expect("no cancel");
            assert_same(&fast, &reference(&deltas, &trim), &format!("{density}"));
        }
    }

    /// Cuts remembered from an earlier request give the same answer as
    /// fresh ones when only some densities or weights change.
    #[test]
    fn remembered_cuts_match_fresh_ones() {
        let mut seed = 31u64;
        let deltas: Vec<Vec<f32>> = (0..3).map(|_| tied_vec(&mut seed, 5000, 4)).collect();
        let td = TensorDeltas::from_vecs("t", deltas.clone());
        let trims = [
            (vec![0.3, 0.5, 0.7], vec![1.0, 1.0, 1.0]),
            (vec![0.3, 0.5, 0.7], vec![1.0, -2.0, 1.0]),
            (vec![0.3, 0.2, 0.7], vec![1.0, -2.0, 1.0]),
            (vec![0.3, 0.5, 0.7], vec![1.0, 1.0, 1.0]),
        ];
        for (density, weight) in trims {
            let trim = Trim { density, weight };
            let fast = td.stats(&trim, &AtomicBool::new(false)).expect("no cancel");
            let fresh = TensorDeltas::from_vecs("t", deltas.clone())
                .stats(&trim, &AtomicBool::new(false))
                .expect("no cancel");
            assert_eq!(fast, fresh);
            assert_same(&fast, &reference(&deltas, &trim), &format!("{trim:?}"));
        }
    }

    #[test]
    fn fast_path_handles_empty_and_cancel() {
        let td = TensorDeltas::from_vecs("t", vec![Vec::new(), Vec::new()]);
        let trim = Trim {
            density: vec![0.5; 2],
            weight: vec![1.0; 2],
        };
        let s = td.stats(&trim, &AtomicBool::new(false)).expect("no cancel");
        assert_eq!(s.params, 0);
        assert_eq!(s.agree, vec![0, 0, 0]);
        let td = TensorDeltas::from_vecs("t", vec![vec![1.0; 10]]);
        assert!(matches!(
            td.stats(&trim, &AtomicBool::new(true)),
            Err(AnalysisError::Cancelled)
        ));
    }
}
