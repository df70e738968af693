//! Generalised task arithmetic: task_arithmetic, ties, dare_ties,
//! dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear.
//!
//! As in mergekit 0.1.5: each task vector `model - base` is sparsified
//! (magnitude top-k, Bernoulli, magnitude with outliers removed, or DELLA's
//! rank-weighted Bernoulli), optionally rescaled so its L1 norm matches the
//! unsparsified one (`rescale`), weighted, optionally sign-elected (TIES:
//! sign of the sum of weighted deltas, zero counting as +), summed, divided by
//! the summed weights (`normalize`; with sign election only the agreeing
//! models' weights), scaled by `lambda` and added to the base.
//!
//! Streaming: top-k cut-offs come from [`TopK`] passes; the L1 rescale
//! factors from one more pass (the masks are reproducible, so the pass sees
//! exactly the mask `apply` will use).
//!
//! Where smelt deliberately differs from mergekit 0.1.5:
//! - ties at a top-k cut-off keep the lowest flat indices (mergekit keeps
//!   whatever its sort returns), so results are reproducible;
//! - TIES with `int(density * numel) == 0` keeps nothing (mergekit asserts);
//! - breadcrumbs whose outlier count `int(gamma * numel)` is 0 removes no
//!   outliers and keeps the top `density` share (mergekit slices
//!   `indices[n_bot:-0]`, which is empty, and zeroes the whole task vector);
//! - DARE/DELLA draws come from a counter-based hash ([`super::rng`]), not
//!   torch's generator: same distribution, different individual draws;
//! - DELLA ties in magnitude are ranked by flat index; a one-element row gets
//!   probability `density` (mergekit divides 0 by 0); a row longer than the
//!   engine's chunk is not ranked (probability `density`, see `della_mask`).

use super::rng::Stream;
use super::select::{keep_count, Bounds, TopK};
use super::util::{delta_into, l1, Params};
use super::{Chunk, Keep, Kernel, Lane, MergeError, Method, Parts, Rule, Vote};

/// How one model's task vector is sparsified.
enum Sparse {
    /// Unchanged (no sparsification, or density >= 1).
    Keep,
    /// Everything dropped (DELLA with density <= 0).
    Zero,
    /// Keep the top-k magnitudes (TIES).
    Magnitude(TopK),
    /// Keep the top `upper.k()` magnitudes except the top `outliers.k()`
    /// (breadcrumbs). Both selectors break ties by lowest index, so the
    /// outlier set is a subset of the upper set.
    Outliers { upper: TopK, outliers: TopK },
    /// Keep each entry with probability `p` (DARE).
    Random { p: f32, stream: Stream },
    /// DELLA: keep with probability rising linearly with the entry's
    /// magnitude rank within its row, from `d - eps` to `d + eps`.
    Della { d: f32, eps: f32, stream: Stream },
}

impl Sparse {
    /// The magnitude selectors this sparsification uses: none, one
    /// (TIES) or two (breadcrumbs).
    fn selectors(&mut self) -> impl Iterator<Item = &mut TopK> {
        let (a, b) = match self {
            Sparse::Magnitude(t) => (Some(t), None),
            Sparse::Outliers { upper, outliers } => (Some(upper), Some(outliers)),
            _ => (None, None),
        };
        a.into_iter().chain(b)
    }

    /// [`Sparse::selectors`], read-only.
    fn any_selector(&self, f: impl Fn(&TopK) -> bool) -> bool {
        match self {
            Sparse::Magnitude(t) => f(t),
            Sparse::Outliers { upper, outliers } => f(upper) || f(outliers),
            _ => false,
        }
    }
}

struct ModelState {
    weight: f32,
    sparse: Sparse,
    /// L1 rescale factor (1 until the rescale pass has run).
    scale: f32,
    l1_before: f64,
    l1_after: f64,
    /// In a copy for the other end ([`Kernel::back`]): each block's L1
    /// sums `(start, before, after)`, which [`Kernel::join_back`] adds in
    /// index order, so the totals are the bits a sweep in order gives.
    l1_blocks: Option<Vec<(usize, f64, f64)>>,
}

impl Sparse {
    /// See [`Kernel::back`].
    fn back(&mut self) -> Sparse {
        self.copy(&mut |t| t.back())
    }

    /// A copy whose selectors are `f` of these (in [`Sparse::selectors`]
    /// order).
    fn copy(&mut self, f: &mut impl FnMut(&mut TopK) -> TopK) -> Sparse {
        match self {
            Sparse::Keep => Sparse::Keep,
            Sparse::Zero => Sparse::Zero,
            Sparse::Magnitude(t) => Sparse::Magnitude(f(t)),
            Sparse::Outliers { upper, outliers } => Sparse::Outliers {
                upper: f(upper),
                outliers: f(outliers),
            },
            Sparse::Random { p, stream } => Sparse::Random {
                p: *p,
                stream: *stream,
            },
            Sparse::Della { d, eps, stream } => Sparse::Della {
                d: *d,
                eps: *eps,
                stream: *stream,
            },
        }
    }

    /// The selectors, by value (in [`Sparse::selectors`] order).
    fn into_selectors(self) -> Vec<TopK> {
        match self {
            Sparse::Magnitude(t) => vec![t],
            Sparse::Outliers { upper, outliers } => vec![upper, outliers],
            _ => Vec::new(),
        }
    }

    /// See [`Kernel::join_back`].
    fn join(&mut self, back: Sparse) {
        match (self, back) {
            (Sparse::Magnitude(a), Sparse::Magnitude(b)) => a.join(b),
            (
                Sparse::Outliers { upper, outliers },
                Sparse::Outliers {
                    upper: bu,
                    outliers: bo,
                },
            ) => {
                upper.join(bu);
                outliers.join(bo);
            }
            _ => {}
        }
    }
}

/// Per-chunk working memory, reused across chunks (O(chunk)).
#[derive(Default)]
struct Scratch {
    order: Vec<u64>,
    keep_a: Vec<bool>,
    keep_b: Vec<bool>,
    drop: Vec<u32>,
    tmp: Vec<u64>,
}

/// Sort `(magnitude bits << 32 | index)` keys ascending. Long rows use an
/// LSD radix sort on the magnitude bytes (stable, and the keys start in
/// index order, so ties stay in index order: the same result as a
/// comparison sort of the unique keys, several times faster).
fn sort_keys(keys: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    tmp.clear();
    tmp.resize(keys.len(), 0);
    for shift in [32u32, 40, 48, 56] {
        let mut count = [0usize; 256];
        for &k in keys.iter() {
            count[((k >> shift) & 0xff) as usize] += 1;
        }
        if count.contains(&keys.len()) {
            continue; // every key has this digit: the pass would be a no-op
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & 0xff) as usize;
            tmp[count[d]] = k;
            count[d] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Select,
    L1,
}

pub struct Gta {
    models: Vec<ModelState>,
    consensus: bool,
    normalize: bool,
    lambda: f32,
    need_l1: bool,
    l1_done: bool,
    pass: Pass,
    tmp: Vec<f32>,
    /// A block's kept entries (bf16 L1 passes).
    kept: Vec<f32>,
    div: Vec<f32>,
    sum: Vec<f32>,
    scratch: Scratch,
    /// Whether [`Gta::apply_fused`] may run (tests turn it off to check it
    /// against the general path).
    fused: bool,
    /// A copy for the other end ([`Kernel::back`]): the blocks of a chunk
    /// go from the last back too, as its selectors expect.
    backwards: bool,
    /// Per selector (models in order, [`Sparse::selectors`] order inside),
    /// the entries tied at its cut-off in each range of the split pass
    /// that settled it ([`Kernel::split_pass`]).
    range_ties: Vec<Option<Vec<u64>>>,
}

impl Gta {
    pub fn new(
        method: Method,
        p: &Params,
        numel: usize,
        n_models: usize,
    ) -> Result<Gta, MergeError> {
        let consensus = method.spec().sign_election;
        let normalize = p.global_b("normalize")?;
        let rescale = p.global_b("rescale")?;
        let lambda = p.global_f("lambda")? as f32;
        let mut models = Vec::with_capacity(n_models);
        for i in 0..n_models {
            let weight = p.model_f(i, "weight")? as f32;
            let sparse = if method == Method::TaskArithmetic {
                Sparse::Keep
            } else {
                let density = p.model_f(i, "density")?;
                if !density.is_finite() {
                    return Err(p.error(format!("model {i}: density must be finite")));
                }
                if density >= 1.0 {
                    Sparse::Keep
                } else {
                    match method {
                        Method::Ties => {
                            // mergekit: k = int(density * numel) and asserts
                            // k > 0; here k == 0 keeps nothing.
                            Sparse::Magnitude(TopK::new(numel, keep_count(density, numel)))
                        }
                        Method::Breadcrumbs | Method::BreadcrumbsTies => {
                            let gamma = p.model_f(i, "gamma")?;
                            let target = keep_count(density, numel) as i64;
                            let mut n_top = (gamma.max(0.0) * numel as f64) as i64;
                            let mut n_bot = numel as i64 - target - n_top;
                            if n_bot < 0 {
                                n_top += n_bot;
                                n_bot = 0;
                            }
                            let n_top = n_top.max(0) as usize;
                            let upper = numel - n_bot as usize;
                            Sparse::Outliers {
                                upper: TopK::new(numel, upper),
                                outliers: TopK::new(numel, n_top),
                            }
                        }
                        Method::DareTies | Method::DareLinear => Sparse::Random {
                            p: density.max(0.0) as f32,
                            stream: Stream::new(p.p.seed, &p.p.tensor, i),
                        },
                        Method::Della | Method::DellaLinear => {
                            if density <= 0.0 {
                                Sparse::Zero
                            } else {
                                let eps = p.model_f(i, "epsilon")?;
                                if density + eps >= 1.0 || density - eps <= 0.0 {
                                    return Err(p.error(format!(
                                        "model {i}: epsilon {eps} must keep density {density} \
                                         +/- epsilon inside (0, 1)"
                                    )));
                                }
                                Sparse::Della {
                                    d: density as f32,
                                    eps: eps as f32,
                                    stream: Stream::new(p.p.seed, &p.p.tensor, i),
                                }
                            }
                        }
                        _ => Sparse::Keep,
                    }
                }
            };
            models.push(ModelState {
                weight,
                sparse,
                scale: 1.0,
                l1_before: 0.0,
                l1_after: 0.0,
                l1_blocks: None,
            });
        }
        let need_l1 = rescale
            && models
                .iter()
                .any(|m| !matches!(m.sparse, Sparse::Keep | Sparse::Zero));
        Ok(Gta {
            models,
            consensus,
            normalize,
            lambda,
            need_l1,
            l1_done: false,
            pass: Pass::Select,
            tmp: Vec::new(),
            kept: Vec::new(),
            div: Vec::new(),
            sum: Vec::new(),
            scratch: Scratch::default(),
            fused: true,
            backwards: false,
            range_ties: Vec::new(),
        })
    }

    fn selecting(&self) -> bool {
        self.models
            .iter()
            .any(|m| m.sparse.any_selector(TopK::wants_pass))
    }
}

/// Apply model `st`'s sparsification mask to its delta chunk in place.
fn sparsify(st: &mut ModelState, vals: &mut [f32], start: usize, row_len: usize, sc: &mut Scratch) {
    match &mut st.sparse {
        Sparse::Keep => {}
        Sparse::Zero => vals.iter_mut().for_each(|v| *v = 0.0),
        Sparse::Magnitude(t) => t.mask_in_place(vals),
        Sparse::Outliers { upper, outliers } => {
            // Both selectors must see the original values, so take both
            // decisions before zeroing anything.
            sc.keep_a.resize(vals.len(), false);
            sc.keep_b.resize(vals.len(), false);
            upper.keep_mask(vals, &mut sc.keep_a[..vals.len()]);
            outliers.keep_mask(vals, &mut sc.keep_b[..vals.len()]);
            for ((v, &k), &o) in vals.iter_mut().zip(&sc.keep_a).zip(&sc.keep_b) {
                if !k || o {
                    *v = 0.0;
                }
            }
        }
        Sparse::Random { p, stream } => {
            let p = *p;
            for (j, v) in vals.iter_mut().enumerate() {
                *v = draw(*v, stream, start + j, p);
            }
        }
        Sparse::Della { d, eps, stream } => della_mask(vals, start, row_len, *d, *eps, stream, sc),
    }
}

/// DELLA's mask over one chunk. mergekit ranks magnitudes along the last
/// dimension of a 2-D tensor (a 1-D tensor is one row); ties are ranked by
/// flat index here (torch's argsort order is unspecified). Rank `r` of `L`
/// gets keep probability `d - eps + 2 eps (r - 1) / (L - 1)`; a row of one
/// element (where mergekit divides 0 by 0) gets `d`.
///
/// Rows are ranked inside a chunk, which holds whole rows whenever a row
/// fits in a chunk. A row longer than the engine's chunk cannot be ranked in
/// bounded memory; its entries get probability `d` (plain DARE) instead.
fn della_mask(
    vals: &mut [f32],
    start: usize,
    row_len: usize,
    d: f32,
    eps: f32,
    stream: &Stream,
    sc: &mut Scratch,
) {
    let Scratch {
        order, drop, tmp, ..
    } = sc;
    let len = vals.len();
    let rl = row_len.max(1);
    if !start.is_multiple_of(rl) || !len.is_multiple_of(rl) {
        for (j, v) in vals.iter_mut().enumerate() {
            *v = if stream.keep(start + j, d) { *v } else { 0.0 };
        }
        return;
    }
    let lo = d - eps;
    let span = 2.0 * eps;
    for (r, row) in vals.chunks_mut(rl).enumerate() {
        let row_start = start + r * rl;
        if rl == 1 {
            if !stream.keep(row_start, d) {
                row[0] = 0.0;
            }
            continue;
        }
        // Sort (magnitude bits, index) packed in one u64: ranks by
        // magnitude, ties by index, and a primitive sort is fast.
        order.clear();
        order.extend(
            row.iter()
                .enumerate()
                .map(|(j, x)| (u64::from(x.to_bits() & 0x7fff_ffff) << 32) | j as u64),
        );
        sort_keys(order, tmp);
        // p(rank) = lo + rank * step, step = 2 eps / (L - 1)
        let step = span / (rl - 1) as f32;
        // Decide first (ranks need the original magnitudes), then zero.
        drop.clear();
        for (rank, &key) in order.iter().enumerate() {
            let j = key as u32;
            let p = lo + rank as f32 * step;
            if !stream.keep(row_start + j as usize, p) {
                drop.push(j);
            }
        }
        for &j in drop.iter() {
            row[j as usize] = 0.0;
        }
    }
}

impl Kernel for Gta {
    fn wants_pass(&self) -> bool {
        self.selecting() || (self.need_l1 && !self.l1_done)
    }
    fn splittable(&self) -> bool {
        // Magnitude trims keep a running count of ties between chunks;
        // random and DELLA masks depend only on each entry's position.
        !self.need_l1
            && self.models.iter().all(|m| {
                matches!(
                    m.sparse,
                    Sparse::Keep | Sparse::Zero | Sparse::Random { .. } | Sparse::Della { .. }
                )
            })
    }
    fn takes_bf16(&self) -> bool {
        if !self.fused {
            return false;
        }
        if !self.wants_pass() {
            // The merge: the fused loop.
            return self.fusable() && !self.need_l1;
        }
        // A pass: selections decided entry by entry (the selection pass
        // only counts the magnitude trims' task vectors).
        self.models.iter().all(|m| {
            matches!(
                m.sparse,
                Sparse::Keep | Sparse::Zero | Sparse::Magnitude(_) | Sparse::Random { .. }
            )
        })
    }
    fn observe_bf16(&mut self, chunk: &Chunk<u16>) {
        let len = chunk.len();
        if self.pass == Pass::L1 {
            if self.backwards {
                for_blocks_back(chunk, BLOCK, |c| self.l1_block(c));
            } else {
                for_blocks(chunk, BLOCK, |c| self.l1_block(c));
            }
            return;
        }
        for (st, m) in self.models.iter_mut().zip(chunk.models) {
            if let (Sparse::Magnitude(t), Some(b)) = (&mut st.sparse, chunk.base) {
                t.observe_diff(&m[..len], &b[..len], &mut self.tmp);
            }
        }
    }
    fn apply_bf16(&mut self, chunk: &Chunk<u16>, out: &mut [f32]) {
        let mut start = 0;
        for_blocks(chunk, BLOCK, |c| {
            let len = c.len();
            if !self.apply_fused(c, &mut out[start..start + len]) {
                // Not fusable after all (no base): convert, then the
                // general path.
                let f = |v: &[u16]| -> Vec<f32> { v.iter().map(|h| h.f32()).collect() };
                let base = c.base.map(f);
                let models: Vec<Vec<f32>> = c.models.iter().map(|m| f(m)).collect();
                let refs: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
                let conv = Chunk {
                    start: c.start,
                    numel: c.numel,
                    row_len: c.row_len,
                    base: base.as_deref(),
                    models: &refs,
                };
                self.apply_block(&conv, &mut out[start..start + len]);
            }
            start += len;
        });
    }
    fn wants_sample(&self) -> bool {
        self.models
            .iter()
            .any(|m| m.sparse.any_selector(TopK::wants_sample))
    }
    fn sample(&mut self, chunk: &Chunk) {
        let len = chunk.len();
        self.tmp.resize(len, 0.0);
        for (st, m) in self.models.iter_mut().zip(chunk.models) {
            if !st.sparse.any_selector(|_| true) {
                continue;
            }
            delta_into(m, chunk.base, &mut self.tmp[..len]);
            for t in st.sparse.selectors() {
                t.predict(&self.tmp[..len]);
            }
        }
    }
    fn parts(&mut self, chunk: &Chunk, parts: &mut Parts) -> bool {
        let n = self.models.len();
        let len = chunk.len();
        parts.reset(n, len);
        parts.vote = Vote::Weighted;
        let (kept, weighted) = (&mut parts.kept, &mut parts.weighted);
        self.contributions(chunk, &mut weighted[..], Some(&mut kept[..]));
        for (i, st) in self.models.iter().enumerate() {
            parts.weights[i] = st.weight;
            parts.tied[i] = match &st.sparse {
                Sparse::Magnitude(t) => t.tied_at_cutoff(),
                Sparse::Outliers { upper, .. } => upper.tied_at_cutoff(),
                _ => 0,
            };
        }
        true
    }
    fn rules(&mut self, chunk: &Chunk, rules: &mut Vec<Rule>) -> bool {
        self.rules_lanes(chunk, rules)
    }
    fn rules_bf16(&mut self, chunk: &Chunk<u16>, rules: &mut Vec<Rule>) -> bool {
        self.rules_lanes(chunk, rules)
    }
    fn back(&mut self) -> Option<Box<dyn Kernel>> {
        let models = self
            .models
            .iter_mut()
            .map(|m| ModelState {
                weight: m.weight,
                sparse: m.sparse.back(),
                scale: m.scale,
                l1_before: 0.0,
                l1_after: 0.0,
                l1_blocks: Some(Vec::new()),
            })
            .collect();
        Some(Box::new(Gta {
            models,
            consensus: self.consensus,
            normalize: self.normalize,
            lambda: self.lambda,
            need_l1: self.need_l1,
            l1_done: self.l1_done,
            pass: self.pass,
            tmp: Vec::new(),
            kept: Vec::new(),
            div: Vec::new(),
            sum: Vec::new(),
            scratch: Scratch::default(),
            fused: self.fused,
            backwards: true,
            range_ties: Vec::new(),
        }))
    }
    fn split_pass(&mut self, n: usize) -> Option<Vec<Box<dyn Kernel>>> {
        // The L1 pass sums in index order and masks as it goes: it stays
        // one sweep.
        if n < 2 || self.need_l1 || self.pass != Pass::Select || !self.selecting() {
            return None;
        }
        Some(
            (0..n)
                .map(|_| Box::new(self.copy_with(&mut TopK::fork)) as Box<dyn Kernel>)
                .collect(),
        )
    }
    fn end_split_pass(&mut self, ranges: Vec<Box<dyn Kernel>>) {
        let n = ranges.len();
        // Each range's selectors, regrouped per selector.
        let mut per: Vec<Vec<TopK>> = Vec::new();
        for r in ranges {
            let r: Box<dyn std::any::Any> = r;
            let Ok(r) = r.downcast::<Gta>() else {
                continue;
            };
            let all = r.models.into_iter().flat_map(|m| m.sparse.into_selectors());
            for (s, t) in all.enumerate() {
                if per.len() <= s {
                    per.push(Vec::with_capacity(n));
                }
                per[s].push(t);
            }
        }
        let mut s = 0;
        for st in &mut self.models {
            for t in st.sparse.selectors() {
                if self.range_ties.len() <= s {
                    self.range_ties.push(None);
                }
                let mut none = Vec::new();
                let forks = per.get_mut(s).unwrap_or(&mut none);
                if forks.len() == n {
                    if let Some(ties) = t.end_pass_ranges(forks) {
                        self.range_ties[s] = Some(ties);
                    }
                } else {
                    t.end_pass();
                }
                s += 1;
            }
        }
    }
    fn split_apply(&mut self, n: usize) -> Option<Vec<Box<dyn Kernel>>> {
        // (Without selectors, `splittable` covers it.)
        if n < 2 || self.need_l1 || self.wants_pass() || self.range_ties.is_empty() {
            return None;
        }
        // Where each range's masking starts: the ties of the ranges before
        // it, per selector. A selector whose ties were not counted by
        // range has none (it keeps nothing or everything) or stays whole.
        let mut starts: Vec<Vec<u64>> = Vec::new();
        let mut s = 0;
        for st in &mut self.models {
            for t in st.sparse.selectors() {
                let before = match self.range_ties.get(s).and_then(Option::as_ref) {
                    Some(ties) if ties.len() == n => ties
                        .iter()
                        .scan(0u64, |acc, &c| {
                            let at = *acc;
                            *acc += c;
                            Some(at)
                        })
                        .collect(),
                    _ if t.tied_at_cutoff() == 0 => vec![0; n],
                    _ => return None,
                };
                starts.push(before);
                s += 1;
            }
        }
        Some(
            (0..n)
                .map(|r| {
                    let mut s = 0;
                    let k = self.copy_with(&mut |t: &mut TopK| {
                        let c = t.starting_at(starts[s][r]);
                        s += 1;
                        c
                    });
                    Box::new(k) as Box<dyn Kernel>
                })
                .collect(),
        )
    }
    fn join_back(&mut self, back: Box<dyn Kernel>) {
        let back: Box<dyn std::any::Any> = back;
        let Ok(back) = back.downcast::<Gta>() else {
            return;
        };
        for (a, b) in self.models.iter_mut().zip(back.models) {
            a.sparse.join(b.sparse);
            if let Some(mut blocks) = b.l1_blocks {
                // The copy's blocks all follow this kernel's: in index
                // order, they continue its sums as one sweep would.
                blocks.sort_by_key(|x| x.0);
                for (_, before, after) in blocks {
                    a.l1_before += before;
                    a.l1_after += after;
                }
            }
        }
    }
    fn begin_pass(&mut self) {
        self.pass = if self.selecting() {
            Pass::Select
        } else {
            Pass::L1
        };
    }
    fn observe(&mut self, chunk: &Chunk) {
        let block = self.block_len(chunk);
        if self.backwards {
            for_blocks_back(chunk, block, |c| self.observe_block(c));
        } else {
            for_blocks(chunk, block, |c| self.observe_block(c));
        }
    }
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]) {
        let block = self.block_len(chunk);
        let mut start = 0;
        for_blocks(chunk, block, |c| {
            let len = c.len();
            self.apply_block(c, &mut out[start..start + len]);
            start += len;
        });
    }
    fn end_pass(&mut self) {
        match self.pass {
            Pass::Select => {
                for st in &mut self.models {
                    st.sparse.selectors().for_each(TopK::end_pass);
                }
            }
            Pass::L1 => {
                for st in &mut self.models {
                    // mergekit: leave the masked tensor alone when either
                    // norm is below 1e-7.
                    st.scale = if st.l1_before < 1e-7 || st.l1_after < 1e-7 {
                        1.0
                    } else {
                        (st.l1_before / st.l1_after) as f32
                    };
                    st.sparse.selectors().for_each(TopK::rewind);
                }
                self.l1_done = true;
            }
        }
    }
}

impl Gta {
    /// A forward copy (same parameters, scale and pass) whose selectors
    /// are `f` of these, in selector order.
    fn copy_with(&mut self, f: &mut impl FnMut(&mut TopK) -> TopK) -> Gta {
        let models = self
            .models
            .iter_mut()
            .map(|m| ModelState {
                weight: m.weight,
                sparse: m.sparse.copy(f),
                scale: m.scale,
                l1_before: 0.0,
                l1_after: 0.0,
                l1_blocks: None,
            })
            .collect();
        Gta {
            models,
            consensus: self.consensus,
            normalize: self.normalize,
            lambda: self.lambda,
            need_l1: self.need_l1,
            l1_done: self.l1_done,
            pass: self.pass,
            tmp: Vec::new(),
            kept: Vec::new(),
            div: Vec::new(),
            sum: Vec::new(),
            scratch: Scratch::default(),
            fused: self.fused,
            backwards: false,
            range_ties: Vec::new(),
        }
    }

    /// Elements per block: the chunk is processed in blocks small enough
    /// for the cache, so the several sweeps over each block's task vectors
    /// hit L2 instead of memory. DELLA ranks whole rows, so it takes the
    /// chunk (row-aligned by the engine) in one piece.
    fn block_len(&self, chunk: &Chunk) -> usize {
        let della = self
            .models
            .iter()
            .any(|m| matches!(m.sparse, Sparse::Della { .. }));
        if della {
            chunk.len().max(1)
        } else {
            BLOCK
        }
    }

    /// One block of an L1 pass over bf16 inputs, for selections decided
    /// entry by entry: each model's task vector and its selection formed
    /// in one loop, then summed by [`l1`] as `observe_block` sums them.
    fn l1_block(&mut self, chunk: &Chunk<u16>) {
        let Some(base) = chunk.base else {
            return;
        };
        let len = chunk.len();
        let base = &base[..len];
        let (d, k) = (&mut self.tmp, &mut self.kept);
        d.resize(len, 0.0);
        k.resize(len, 0.0);
        for (st, m) in self.models.iter_mut().zip(chunk.models) {
            let m = &m[..len];
            match &mut st.sparse {
                Sparse::Magnitude(t) => {
                    let b = t.bounds_diff(len, m, base);
                    let s = b.split.min(len);
                    let (d0, d1) = d.split_at_mut(s);
                    let (k0, k1) = k.split_at_mut(s);
                    select_into(&m[..s], &base[..s], d0, k0, |_, x| trim(x, b.before));
                    select_into(&m[s..], &base[s..], d1, k1, |_, x| trim(x, b.after));
                }
                Sparse::Random { p, stream } => {
                    let (p, stream, start) = (*p, *stream, chunk.start);
                    select_into(m, base, d, k, |j, x| draw(x, &stream, start + j, p));
                }
                Sparse::Zero => select_into(m, base, d, k, |_, _| 0.0),
                _ => select_into(m, base, d, k, |_, x| x),
            }
            let (before, after) = (l1(&d[..len]), l1(&k[..len]));
            match &mut st.l1_blocks {
                Some(b) => b.push((chunk.start, before, after)),
                None => {
                    st.l1_before += before;
                    st.l1_after += after;
                }
            }
        }
    }

    fn observe_block(&mut self, chunk: &Chunk) {
        let len = chunk.len();
        self.tmp.resize(len, 0.0);
        for (i, st) in self.models.iter_mut().enumerate() {
            let Some(m) = chunk.models.get(i) else {
                continue;
            };
            if let (Pass::Select, Sparse::Magnitude(t), Some(b)) =
                (self.pass, &mut st.sparse, chunk.base)
            {
                // TIES's selection: the task vector is formed inside the
                // selector's counting loop.
                t.observe_diff(m, b, &mut self.tmp);
                continue;
            }
            self.tmp.resize(len, 0.0);
            delta_into(m, chunk.base, &mut self.tmp[..len]);
            match self.pass {
                Pass::Select => {
                    for t in st.sparse.selectors() {
                        t.observe(&self.tmp[..len]);
                    }
                }
                Pass::L1 => {
                    let before = l1(&self.tmp[..len]);
                    sparsify(
                        st,
                        &mut self.tmp[..len],
                        chunk.start,
                        chunk.row_len,
                        &mut self.scratch,
                    );
                    let after = l1(&self.tmp[..len]);
                    match &mut st.l1_blocks {
                        Some(b) => b.push((chunk.start, before, after)),
                        None => {
                            st.l1_before += before;
                            st.l1_after += after;
                        }
                    }
                }
            }
        }
    }
    /// Each model's contribution to `chunk` into `weighted` (model-major,
    /// `chunk.len()` entries per model): its task vector, sparsified,
    /// rescaled and weighted. With `kept`, also the sparsified task vector
    /// before rescale and weight. The general path of `apply` and
    /// [`Kernel::parts`] both call this, so the statistics see the same
    /// masks as the merge.
    fn contributions(&mut self, chunk: &Chunk, weighted: &mut [f32], mut kept: Option<&mut [f32]>) {
        let len = chunk.len();
        let n = self.models.len().min(chunk.models.len());
        for (i, st) in self.models.iter_mut().enumerate().take(n) {
            let buf = &mut weighted[i * len..(i + 1) * len];
            delta_into(chunk.models[i], chunk.base, buf);
            sparsify(st, buf, chunk.start, chunk.row_len, &mut self.scratch);
            if let Some(k) = kept.as_deref_mut() {
                k[i * len..(i + 1) * len].copy_from_slice(buf);
            }
            let (s, w) = (st.scale, st.weight);
            buf.iter_mut().for_each(|v| *v = weigh(*v, s, w));
        }
    }

    fn apply_block(&mut self, chunk: &Chunk, out: &mut [f32]) {
        if self.fused && self.apply_fused(chunk, out) {
            return;
        }
        let len = out.len();
        let n = self.models.len().min(chunk.models.len());
        let mut tmp = std::mem::take(&mut self.tmp);
        tmp.resize(n * len, 0.0);
        self.contributions(chunk, &mut tmp[..n * len], None);
        self.tmp = tmp;
        // out <- mixed delta, div <- divisor
        self.div.resize(len, 0.0);
        out.iter_mut().for_each(|o| *o = 0.0);
        if self.consensus {
            self.sum.resize(len, 0.0);
            self.sum.iter_mut().for_each(|s| *s = 0.0);
            for i in 0..n {
                let wd = &self.tmp[i * len..(i + 1) * len];
                for (s, &x) in self.sum.iter_mut().zip(wd) {
                    *s += x;
                }
            }
            self.div.iter_mut().for_each(|d| *d = 0.0);
            for i in 0..n {
                let w = self.models[i].weight;
                let wd = &self.tmp[i * len..(i + 1) * len];
                // Agreement with the elected sign (a zero sum counts as +),
                // as selects rather than branches so the loop vectorises.
                for (((o, d), &x), &s) in out
                    .iter_mut()
                    .zip(self.div.iter_mut())
                    .zip(wd)
                    .zip(&self.sum)
                {
                    let agree = (s >= 0.0 && x > 0.0) | (s < 0.0 && x < 0.0);
                    let m = u32::from(agree).wrapping_neg();
                    *o += f32::from_bits(x.to_bits() & m);
                    *d += f32::from_bits(w.to_bits() & m);
                }
            }
            for d in self.div.iter_mut() {
                let zero = u32::from(*d == 0.0).wrapping_neg();
                *d = f32::from_bits((d.to_bits() & !zero) | (1f32.to_bits() & zero));
            }
        } else {
            for i in 0..n {
                let wd = &self.tmp[i * len..(i + 1) * len];
                for (o, &x) in out.iter_mut().zip(wd) {
                    *o += x;
                }
            }
            let mut wsum: f32 = self.models.iter().take(n).map(|m| m.weight).sum();
            if wsum.abs() < 1e-8 {
                wsum = 1.0;
            }
            self.div.iter_mut().for_each(|d| *d = wsum);
        }
        if self.normalize {
            for (o, &d) in out.iter_mut().zip(&self.div) {
                *o /= d;
            }
        }
        if self.lambda != 1.0 {
            let l = self.lambda;
            out.iter_mut().for_each(|o| *o *= l);
        }
        if let Some(b) = chunk.base {
            for (o, &bv) in out.iter_mut().zip(b) {
                *o += bv;
            }
        }
    }
}

/// Most models the fused path takes (one compiled loop per count).
const FUSED_MAX: usize = 8;

/// The loop-invariant part of the fused combination.
#[derive(Clone, Copy)]
struct Mix {
    normalize: bool,
    lambda: f32,
    /// Summed weights (the divisor without sign election).
    wsum: f32,
}

impl Gta {
    /// TIES and task arithmetic in one loop: when every model's task vector
    /// is either kept whole or trimmed by magnitude, the whole combination
    /// (delta, trim, weight, sign election, disjoint mean, lambda, base)
    /// runs per element in registers instead of a dozen sweeps over
    /// block-sized buffers. Same operations in the same order as the
    /// general path below, so the same bits. Returns false (nothing done)
    /// when the chunk does not qualify.
    /// Whether [`Gta::apply_fused`] can take this method's chunks.
    fn fusable(&self) -> bool {
        let n = self.models.len();
        n > 0
            && n <= FUSED_MAX
            && self
                .models
                .iter()
                .all(|m| matches!(m.sparse, Sparse::Keep | Sparse::Magnitude(_)))
    }

    fn apply_fused<E: Lane>(&mut self, chunk: &Chunk<E>, out: &mut [f32]) -> bool {
        let n = self.models.len();
        let Some(base) = chunk.base else {
            return false;
        };
        if !self.fusable() || chunk.models.len() < n {
            return false;
        }
        let len = out.len();
        let all = Bounds {
            split: len,
            before: 0,
            after: 0,
        };
        let mut bounds = [all; FUSED_MAX];
        for (i, st) in self.models.iter_mut().enumerate() {
            if let Sparse::Magnitude(t) = &mut st.sparse {
                bounds[i] = t.bounds_diff(len, chunk.models[i], base);
            }
        }
        let mut wsum: f32 = self.models.iter().map(|m| m.weight).sum();
        if wsum.abs() < 1e-8 {
            wsum = 1.0;
        }
        let mix = Mix {
            normalize: self.normalize,
            lambda: self.lambda,
            wsum,
        };
        let mut scale = [0f32; FUSED_MAX];
        let mut weight = [0f32; FUSED_MAX];
        for (i, m) in self.models.iter().enumerate() {
            scale[i] = m.scale;
            weight[i] = m.weight;
        }
        // Sub-ranges between the models' tie splits (a split inside the
        // block happens once per model and tensor).
        let mut cuts = [0usize; FUSED_MAX + 2];
        cuts[1] = len;
        let mut nc = 2;
        for b in &bounds[..n] {
            if b.split > 0 && b.split < len {
                cuts[nc] = b.split;
                nc += 1;
            }
        }
        cuts[..nc].sort_unstable();
        for w in cuts[..nc].windows(2) {
            let (a, z) = (w[0], w[1]);
            if a == z {
                continue;
            }
            let mut th = [0u32; FUSED_MAX];
            for (t, b) in th.iter_mut().zip(&bounds[..n]) {
                *t = if a < b.split { b.before } else { b.after };
            }
            let models: [&[E]; FUSED_MAX] =
                std::array::from_fn(|i| chunk.models.get(i).map_or(&[][..], |m| &m[a..z]));
            let args = Fused {
                models: &models[..n],
                base: &base[a..z],
                th: &th[..n],
                scale: &scale[..n],
                weight: &weight[..n],
                mix,
            };
            let out = &mut out[a..z];
            match (n, self.consensus) {
                (1, true) => combine::<1, true, E>(&args, out),
                (2, true) => combine::<2, true, E>(&args, out),
                (3, true) => combine::<3, true, E>(&args, out),
                (4, true) => combine::<4, true, E>(&args, out),
                (5, true) => combine::<5, true, E>(&args, out),
                (6, true) => combine::<6, true, E>(&args, out),
                (7, true) => combine::<7, true, E>(&args, out),
                (_, true) => combine::<8, true, E>(&args, out),
                (1, false) => combine::<1, false, E>(&args, out),
                (2, false) => combine::<2, false, E>(&args, out),
                (3, false) => combine::<3, false, E>(&args, out),
                (4, false) => combine::<4, false, E>(&args, out),
                (5, false) => combine::<5, false, E>(&args, out),
                (6, false) => combine::<6, false, E>(&args, out),
                (7, false) => combine::<7, false, E>(&args, out),
                (_, false) => combine::<8, false, E>(&args, out),
            }
        }
        true
    }
}

/// One sub-range's inputs to [`combine`]: `n` models, each with the
/// magnitude-bits threshold it keeps at (0 keeps everything), its L1 scale
/// and weight.
struct Fused<'a, E> {
    models: &'a [&'a [E]],
    base: &'a [E],
    th: &'a [u32],
    scale: &'a [f32],
    weight: &'a [f32],
    mix: Mix,
}

/// The fused TIES / task-arithmetic combination over `N` models (see
/// [`Gta::apply_fused`]), compiled for the widest vector unit the CPU has
/// (see [`crate::simd`]). Fixed `N` and `CONSENSUS` let the per-model loops
/// unroll and the element loop vectorise.
fn combine<const N: usize, const CONSENSUS: bool, E: Lane>(f: &Fused<E>, out: &mut [f32]) {
    crate::simd::dispatch!(combine_body::<N, CONSENSUS, E>(f, out));
}

#[inline(always)]
fn combine_body<const N: usize, const CONSENSUS: bool, E: Lane>(f: &Fused<E>, out: &mut [f32]) {
    let len = out.len().min(f.base.len());
    let ms: [&[E]; N] = std::array::from_fn(|i| &f.models[i][..len]);
    let th: [u32; N] = std::array::from_fn(|i| f.th[i]);
    let sc: [f32; N] = std::array::from_fn(|i| f.scale[i]);
    let w: [f32; N] = std::array::from_fn(|i| f.weight[i]);
    let Mix {
        normalize,
        lambda,
        wsum,
    } = f.mix;
    for (j, (o, b)) in out[..len].iter_mut().zip(&f.base[..len]).enumerate() {
        let b = b.f32();
        let mut x = [0f32; N];
        for i in 0..N {
            let d = ms[i][j].f32() - b;
            x[i] = trim(d, th[i]) * sc[i] * w[i];
        }
        let mut v = 0f32;
        let den = if CONSENSUS {
            let mut s = 0f32;
            for &xi in &x {
                s += xi;
            }
            let mut den = 0f32;
            for i in 0..N {
                // Agreement with the elected sign (a zero sum counts as +).
                let agree = (s >= 0.0 && x[i] > 0.0) | (s < 0.0 && x[i] < 0.0);
                let m = u32::from(agree).wrapping_neg();
                v += f32::from_bits(x[i].to_bits() & m);
                den += f32::from_bits(w[i].to_bits() & m);
            }
            if den == 0.0 {
                1.0
            } else {
                den
            }
        } else {
            for &xi in &x {
                v += xi;
            }
            wsum
        };
        if normalize {
            v /= den;
        }
        *o = v * lambda + b;
    }
}

/// A magnitude trim of one entry: `d` when its magnitude bits are `th` or
/// more, else +0 (a [`Bounds`] threshold: 0 keeps all, `u32::MAX` none).
/// What `TopK`'s masks do, for loops that trim entry by entry.
#[inline(always)]
pub fn trim(d: f32, th: u32) -> f32 {
    let keep = u32::from(d.to_bits() & 0x7fff_ffff >= th).wrapping_neg();
    f32::from_bits(d.to_bits() & keep)
}

/// DARE's draw for the entry at flat index `index`: `d` when the stream's
/// draw is under `p`, else +0.
#[inline(always)]
pub fn draw(d: f32, stream: &Stream, index: usize, p: f32) -> f32 {
    let keep = u32::from(stream.keep(index, p)).wrapping_neg();
    f32::from_bits(d.to_bits() & keep)
}

/// A kept entry as the merge combines it: rescaled, then weighted. (A
/// kept entry is a difference or zero, never a signalling NaN, so a
/// factor of 1 leaves its bits alone: the general path used to skip that
/// multiply, with the same results, and the fused loop never did.)
#[inline(always)]
pub fn weigh(kept: f32, scale: f32, weight: f32) -> f32 {
    kept * scale * weight
}

impl Gta {
    /// See [`Kernel::rules`]: for selections decided entry by entry
    /// (none, magnitude, DARE's draws).
    fn rules_lanes<E: Lane>(&mut self, chunk: &Chunk<E>, rules: &mut Vec<Rule>) -> bool {
        let n = self.models.len();
        let Some(base) = chunk.base else {
            return false;
        };
        let entrywise = self.models.iter().all(|m| {
            matches!(
                m.sparse,
                Sparse::Keep | Sparse::Zero | Sparse::Magnitude(_) | Sparse::Random { .. }
            )
        });
        if !entrywise || chunk.models.len() < n {
            return false;
        }
        let len = chunk.len();
        rules.clear();
        for (st, m) in self.models.iter_mut().zip(chunk.models) {
            let (keep, tied) = match &mut st.sparse {
                Sparse::Magnitude(t) => (
                    Keep::Trim(t.bounds_diff(len, &m[..len], &base[..len])),
                    t.tied_at_cutoff(),
                ),
                Sparse::Random { p, stream } => (
                    Keep::Draw {
                        p: *p,
                        stream: *stream,
                    },
                    0,
                ),
                Sparse::Zero => (
                    Keep::Trim(Bounds {
                        split: 0,
                        before: u32::MAX,
                        after: u32::MAX,
                    }),
                    0,
                ),
                _ => (
                    Keep::Trim(Bounds {
                        split: len,
                        before: 0,
                        after: 0,
                    }),
                    0,
                ),
            };
            rules.push(Rule {
                keep,
                scale: st.scale,
                weight: st.weight,
                tied,
            });
        }
        true
    }
}

/// A task vector `m - b` into `d` and each entry as `keep` leaves it
/// (given its index in the run) into `k`.
#[inline(always)]
fn select_into<E: Lane>(
    m: &[E],
    b: &[E],
    d: &mut [f32],
    k: &mut [f32],
    keep: impl Fn(usize, f32) -> f32,
) {
    crate::simd::dispatch!(select_into_body(m, b, d, k, keep));
}

#[inline(always)]
fn select_into_body<E: Lane>(
    m: &[E],
    b: &[E],
    d: &mut [f32],
    k: &mut [f32],
    keep: impl Fn(usize, f32) -> f32,
) {
    let len = m.len().min(b.len()).min(d.len()).min(k.len());
    let (m, b, d, k) = (&m[..len], &b[..len], &mut d[..len], &mut k[..len]);
    for j in 0..len {
        let x = m[j].f32() - b[j].f32();
        d[j] = x;
        k[j] = keep(j, x);
    }
}

/// Cache-sized blocks; see [`Gta::block_len`].
const BLOCK: usize = 16 * 1024;

/// Call `f` on consecutive sub-chunks of at most `block` elements.
fn for_blocks<T>(chunk: &Chunk<T>, block: usize, mut f: impl FnMut(&Chunk<T>)) {
    let len = chunk.len();
    let mut models: Vec<&[T]> = Vec::with_capacity(chunk.models.len());
    let mut at = 0;
    while at < len {
        let end = (at + block).min(len);
        models.clear();
        models.extend(chunk.models.iter().map(|m| &m[at..end]));
        f(&Chunk {
            start: chunk.start + at,
            numel: chunk.numel,
            row_len: chunk.row_len,
            base: chunk.base.map(|b| &b[at..end]),
            models: &models,
        });
        at = end;
    }
}

/// [`for_blocks`] from the last block back.
fn for_blocks_back<T>(chunk: &Chunk<T>, block: usize, mut f: impl FnMut(&Chunk<T>)) {
    let len = chunk.len();
    let block = block.max(1);
    let mut models: Vec<&[T]> = Vec::with_capacity(chunk.models.len());
    for b in (0..len.div_ceil(block)).rev() {
        let (at, end) = (b * block, ((b + 1) * block).min(len));
        models.clear();
        models.extend(chunk.models.iter().map(|m| &m[at..end]));
        f(&Chunk {
            start: chunk.start + at,
            numel: chunk.numel,
            row_len: chunk.row_len,
            base: chunk.base.map(|b| &b[at..end]),
            models: &models,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{sort_keys, Gta};
    use crate::merge::{merge_slices, Method, ParamMap, ParamValue, TensorParams};

    /// Parameters with `lambda` and a `(weight, density)` per model.
    fn params(lambda: f64, models: impl Iterator<Item = (f64, f64)>) -> TensorParams {
        let mut global = ParamMap::default();
        global.set("lambda", ParamValue::Float(lambda));
        let models = models
            .map(|(w, d)| {
                let mut m = ParamMap::default();
                m.set("weight", ParamValue::Float(w));
                m.set("density", ParamValue::Float(d));
                m
            })
            .collect();
        TensorParams {
            tensor: "t".into(),
            global,
            models,
            seed: 1,
        }
    }

    /// bf16 inputs read as bit patterns (the engine's path when every
    /// input is bf16) give the same bits as the same inputs converted to
    /// f32 first.
    #[test]
    fn bf16_inputs_match_their_f32_conversion() {
        use crate::merge::{Chunk, Kernel, Lane};
        let mut s = 11u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            // bf16 patterns of moderate, mixed-sign values
            (0x3c00 + ((s >> 40) % 0x0300) as u16) | (((s >> 20) & 1) as u16) << 15
        };
        let numel = (1 << 20) + 77;
        let n = 3;
        let base: Vec<u16> = (0..numel).map(|_| next()).collect();
        let models: Vec<Vec<u16>> = (0..n)
            .map(|_| {
                (0..numel)
                    .map(|j| if j % 3 == 0 { base[j] } else { next() })
                    .collect()
            })
            .collect();
        let f = |v: &[u16]| -> Vec<f32> { v.iter().map(|h| h.f32()).collect() };
        let (base32, models32): (Vec<f32>, Vec<Vec<f32>>) =
            (f(&base), models.iter().map(|m| f(m)).collect());
        // DARE and a rescaled TIES also take their L1 pass from bf16.
        for (method, rescale) in [
            (Method::Ties, false),
            (Method::TaskArithmetic, false),
            (Method::DareTies, true),
            (Method::Ties, true),
        ] {
            let mut tp = params(1.1, (0..n).map(|i| (0.2 + 0.3 * i as f64, 0.25)));
            tp.global
                .set("rescale", crate::merge::ParamValue::Bool(rescale));
            let p = crate::merge::util::Params { method, p: &tp };
            let refs32: Vec<&[f32]> = models32.iter().map(Vec::as_slice).collect();
            let mut one = Gta::new(method, &p, numel, n).expect("kernel");
            let want = merge_slices(&mut one, Some(&base32), &refs32, 1000, 1 << 16);

            let mut k = Gta::new(method, &p, numel, n).expect("kernel");
            // Whole rows, as `merge_slices` chunks.
            let step = 65_000;
            let chunk = |start: usize, end: usize, ms: &mut Vec<Vec<u16>>| {
                ms.clear();
                ms.extend(models.iter().map(|m| m[start..end].to_vec()));
            };
            let mut ms = Vec::new();
            // Sampled as the engine does, so the bracketed selection (and
            // its bf16 compaction) runs.
            assert_eq!(k.wants_sample(), method == Method::Ties);
            assert_eq!(k.wants_pass(), method == Method::Ties || rescale);
            if k.wants_sample() {
                let ranges = crate::merge::sample_ranges(numel);
                let pick = |v: &[f32]| -> Vec<f32> {
                    ranges.iter().flat_map(|r| v[r.clone()].to_vec()).collect()
                };
                let sm: Vec<Vec<f32>> = models32.iter().map(|m| pick(m)).collect();
                let sb = pick(&base32);
                let refs: Vec<&[f32]> = sm.iter().map(Vec::as_slice).collect();
                k.sample(&Chunk {
                    start: 0,
                    numel,
                    row_len: 1000,
                    base: Some(&sb),
                    models: &refs,
                });
            }
            while k.wants_pass() {
                assert!(k.takes_bf16());
                k.begin_pass();
                let mut start = 0;
                while start < numel {
                    let end = (start + step).min(numel);
                    chunk(start, end, &mut ms);
                    let refs: Vec<&[u16]> = ms.iter().map(Vec::as_slice).collect();
                    k.observe_bf16(&Chunk {
                        start,
                        numel,
                        row_len: 1000,
                        base: Some(&base[start..end]),
                        models: &refs,
                    });
                    start = end;
                }
                k.end_pass();
            }
            for (a, b) in k.models.iter().zip(&one.models) {
                assert_eq!(a.l1_before.to_bits(), b.l1_before.to_bits(), "{method:?}");
                assert_eq!(a.l1_after.to_bits(), b.l1_after.to_bits(), "{method:?}");
            }
            // The merge takes bf16 where its fused loop runs.
            assert_eq!(k.takes_bf16(), !rescale);
            let mut got = vec![0f32; numel];
            let mut start = 0;
            while start < numel {
                let end = (start + step).min(numel);
                chunk(start, end, &mut ms);
                let refs: Vec<&[u16]> = ms.iter().map(Vec::as_slice).collect();
                let c = Chunk {
                    start,
                    numel,
                    row_len: 1000,
                    base: Some(&base[start..end]),
                    models: &refs,
                };
                k.apply_bf16(&c, &mut got[start..end]);
                start = end;
            }
            let same = got
                .iter()
                .zip(&want)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{method:?} rescale {rescale}");
        }
    }

    /// The fused loop gives the same bits as the general path, for TIES
    /// (with heavy ties at the cut-off, tie splits inside blocks, a
    /// negative weight) and task arithmetic, at every model count it
    /// compiles for.
    #[test]
    fn fused_path_matches_the_general_path_bit_for_bit() {
        let mut s = 3u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 33) % 41) as f32 * 0.125 - 2.5
        };
        let numel = (1 << 20) + 4099;
        let base: Vec<f32> = (0..numel).map(|_| next()).collect();
        for n in [1usize, 2, 3, 5, 8] {
            let models: Vec<Vec<f32>> = (0..n)
                .map(|_| base.iter().map(|b| b + next() * 0.5).collect())
                .collect();
            let refs: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
            for method in [Method::Ties, Method::TaskArithmetic] {
                let tp = params(
                    0.9,
                    (0..n).map(|i| {
                        let w = if i == 1 { -0.4 } else { 0.3 + i as f64 * 0.1 };
                        (w, 0.2 + 0.1 * i as f64)
                    }),
                );
                let p = crate::merge::util::Params { method, p: &tp };
                let run = |fused: bool| {
                    let mut k = Gta::new(method, &p, numel, n).expect("kernel");
                    k.fused = fused;
                    merge_slices(&mut k, Some(&base), &refs, 1000, 1 << 16)
                };
                let (a, b) = (run(true), run(false));
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{method:?} with {n} models");
            }
        }
    }

    /// Passes shared by two workers (this kernel from the first chunk on,
    /// its [`Kernel::back`] copy from the last back, meeting anywhere)
    /// leave the kernel as one sweep in order does: the same cut-offs and
    /// L1 rescale factors, so the same merged bits. With heavy ties at the
    /// cut-offs, and chunks of several blocks.
    #[test]
    fn passes_from_both_ends_merge_as_one_sweep() {
        use crate::merge::{Chunk, Kernel};
        let mut s = 13u64;
        // Half on a coarse grid (ties at any cut-off), half continuous over
        // a wide range (f64 sums that depend on their order).
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            if (s >> 20).is_multiple_of(2) {
                ((s >> 33) % 17) as f32 * 0.25 - 2.0
            } else {
                let m = ((s >> 40) % (1 << 23)) as f32 / (1 << 23) as f32 + 1.0;
                let e = ((s >> 25) % 24) as i32 - 20;
                let v = m * 2f32.powi(e);
                if (s >> 30).is_multiple_of(2) {
                    v
                } else {
                    -v
                }
            }
        };
        let numel = (1 << 20) + 999;
        let n = 3;
        let base: Vec<f32> = (0..numel).map(|_| next() * 0.1).collect();
        let models: Vec<Vec<f32>> = (0..n)
            .map(|_| base.iter().map(|b| b + next()).collect())
            .collect();
        let refs: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
        // Whole 1000-long rows, as `merge_slices` chunks.
        let step = 65_000;
        let chunk = |start: usize| {
            let end = (start + step).min(numel);
            let ms: Vec<&[f32]> = refs.iter().map(|m| &m[start..end]).collect();
            (end, ms)
        };
        for (method, rescale) in [
            (Method::Ties, true),
            (Method::DareTies, true),
            (Method::BreadcrumbsTies, true),
        ] {
            let mut tp = params(1.0, (0..n).map(|i| (0.5 + i as f64, 0.3 + 0.2 * i as f64)));
            tp.global
                .set("rescale", crate::merge::ParamValue::Bool(rescale));
            for m in &mut tp.models {
                m.set("gamma", crate::merge::ParamValue::Float(0.05));
            }
            let p = crate::merge::util::Params { method, p: &tp };
            let mut one = Gta::new(method, &p, numel, n).expect("kernel");
            let want = merge_slices(&mut one, Some(&base), &refs, 1000, 1 << 16);
            let count = numel.div_ceil(step);
            for meet in [0, 3, count / 2, count] {
                let mut k = Gta::new(method, &p, numel, n).expect("kernel");
                if meet % 2 == 0 && k.wants_sample() {
                    // Half the runs bracket their cut-offs from a sample.
                    let ranges = crate::merge::sample_ranges(numel);
                    let pick = |v: &[f32]| -> Vec<f32> {
                        ranges.iter().flat_map(|r| v[r.clone()].to_vec()).collect()
                    };
                    let sm: Vec<Vec<f32>> = models.iter().map(|m| pick(m)).collect();
                    let sr: Vec<&[f32]> = sm.iter().map(Vec::as_slice).collect();
                    let sb = pick(&base);
                    k.sample(&Chunk {
                        start: 0,
                        numel,
                        row_len: 1000,
                        base: Some(&sb),
                        models: &sr,
                    });
                }
                let starts: Vec<usize> = (0..numel).step_by(step).collect();
                while k.wants_pass() {
                    k.begin_pass();
                    let mut b = k.back().expect("a copy");
                    for &at in &starts[..meet] {
                        let (end, ms) = chunk(at);
                        k.observe(&Chunk {
                            start: at,
                            numel,
                            row_len: 1000,
                            base: Some(&base[at..end]),
                            models: &ms,
                        });
                    }
                    for &at in starts[meet..].iter().rev() {
                        let (end, ms) = chunk(at);
                        b.observe(&Chunk {
                            start: at,
                            numel,
                            row_len: 1000,
                            base: Some(&base[at..end]),
                            models: &ms,
                        });
                    }
                    k.join_back(b);
                    k.end_pass();
                }
                let mut got = vec![0f32; numel];
                for &at in &starts {
                    let (end, ms) = chunk(at);
                    let c = Chunk {
                        start: at,
                        numel,
                        row_len: 1000,
                        base: Some(&base[at..end]),
                        models: &ms,
                    };
                    k.apply(&c, &mut got[at..end]);
                }
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{method:?} meeting at chunk {meet}");
                // The L1 sums themselves (the factor is rounded to f32,
                // which hides most differences in their last bits).
                for (a, b) in k.models.iter().zip(&one.models) {
                    assert_eq!(a.l1_before.to_bits(), b.l1_before.to_bits(), "{method:?}");
                    assert_eq!(a.l1_after.to_bits(), b.l1_after.to_bits(), "{method:?}");
                }
            }
        }
    }

    #[test]
    fn radix_key_sort_matches_comparison_sort() {
        let mut s = 5u64;
        for n in [0usize, 1, 255, 256, 1000, 5000] {
            for distinct in [1u64, 3, 1000, u64::from(u32::MAX)] {
                let mut keys: Vec<u64> = (0..n as u64)
                    .map(|j| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((((s >> 33) % distinct) & 0x7fff_ffff) << 32) | j
                    })
                    .collect();
                let mut want = keys.clone();
                want.sort_unstable();
                sort_keys(&mut keys, &mut Vec::new());
                assert_eq!(keys, want, "n={n} distinct={distinct}");
            }
        }
    }
}
