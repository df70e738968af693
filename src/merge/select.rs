//! Exact streaming top-k selection by magnitude.
//!
//! TIES, breadcrumbs and SCE keep the `k` largest entries (by absolute value)
//! of a whole tensor. Sorting a full copy would hold the whole tensor; instead
//! [`TopK`] finds the exact cut-off with a two-pass radix select on the bit
//! patterns of `|x|` (for non-negative floats the IEEE-754 bit pattern orders
//! like the value):
//!
//! 1. pass one histograms the high 16 bits of every `|x|`, which identifies
//!    the bucket holding the k-th largest value;
//! 2. pass two histograms the low 16 bits of the entries in that bucket only,
//!    which pins the exact cut-off value.
//!
//! Memory is a few 65 536-entry count tables (at most about 4 MiB, below),
//! whatever the tensor size; they come from a per-thread pool, since fresh
//! multi-megabyte tables for every tensor cost more in page faults and
//! zeroing than the counting.
//!
//! Pass two usually costs nothing: while pass one runs, the first chunk
//! predicts which bucket will hold the cut-off, and the low bits of entries
//! in a small window of buckets around it are histogrammed on the way
//! (`WINDOW` tables of 256 KiB). When the true cut-off bucket falls inside
//! the window, which it does for tensors whose first chunk looks like the
//! rest, the exact cut-off is known after one pass; otherwise pass two runs
//! as described. Either way the cut-off is the same exact value: the
//! prediction only decides how many passes it takes.
//!
//! Given a sample of the tensor up front ([`TopK::predict`], which the engine
//! draws from evenly spread places), pass one skips the full histogram: the
//! sample brackets the cut-off between two magnitudes, and the pass only
//! counts the entries above the bracket (a compare that vectorises) and
//! keeps the magnitudes of the few inside it (the bracket's buckets, at most
//! `MAX_BRACKET`): a list, appended to in order, of which only the cut-off
//! bucket's entries are histogrammed once the pass is over (should the list
//! grow past `KEYS_MAX`, it is counted into a low-bit table per bucket, as
//! it goes). A 16-bit histogram is a scattered
//! read-modify-write per entry, and on task vectors, where neighbours often
//! share a bucket, each waits for the last: the bracketed pass is several
//! times faster. Should the cut-off fall outside the bracket (a sample
//! unlike the tensor), the pass is wasted and the two passes above follow,
//! with the same exact result.
//!
//! Ties at the cut-off are common on bf16 task vectors (about one position in
//! ten), so the rule matters for reproducibility: every entry strictly above
//! the cut-off is kept, and among the entries equal to it the lowest flat
//! indices are kept until exactly `k` are kept. The mask is therefore produced
//! by walking the chunks in order ([`TopK::mask_in_place`] and friends keep a
//! running tie count), and the result does not depend on chunk size or thread
//! count. mergekit keeps whichever tied entries its sort returns, so on tied
//! inputs the two agree everywhere except at tied positions.
//!
//! NaN magnitudes sort above infinity (their bit patterns are larger).

use super::Lane;

const BUCKETS: usize = 1 << 16;

/// Buckets of low-bit tables kept during pass one (centred on the predicted
/// cut-off bucket).
const WINDOW: u32 = 5;

/// Below this many entries a second pass is cheaper than the window tables.
const WINDOW_MIN_NUMEL: usize = 1 << 20;

/// Widest bracket, in high-16-bit buckets, that a sample may set (four
/// standard deviations of the sampled quantile either side take up to
/// about 24 on bf16 task vectors).
const MAX_BRACKET: u32 = 32;

/// Most magnitudes a bracket keeps listed (4 MiB of low bits); past that
/// they go into a 256 KiB low-bit table per bucket, touched only where
/// entries fall. (Small in unit tests, so that they take both ways.)
#[cfg(not(test))]
const KEYS_MAX: usize = 2 << 20;
#[cfg(test)]
const KEYS_MAX: usize = 1 << 12;

/// Entries of a bracket table cleared together (see `Bracket::touched`).
const SEGMENT: usize = 256;

/// Largest sample [`TopK::predict`] looks at.
pub const SAMPLE_LEN: usize = 1 << 15;

/// Entries a magnitude trim at `density` keeps out of `numel`: mergekit's
/// `int(density * numel)`, clamped to `[0, numel]`. TIES and the analysis
/// panels both use it, so what the user sees is what the merge keeps.
pub fn keep_count(density: f64, numel: usize) -> usize {
    ((density.max(0.0) * numel as f64) as usize).min(numel)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Needs the bracketed pass (a sample predicted the cut-off).
    Bracket,
    /// Needs the high-bits histogram pass.
    High,
    /// Needs the low-bits pass over the cut-off bucket.
    Low,
    /// The cut-off is known.
    Done,
}

/// A streaming exact top-k selector over `|x|` (see the module docs).
///
/// Protocol: while [`TopK::wants_pass`], call [`TopK::observe`] on every
/// chunk of the tensor in order, then [`TopK::end_pass`]. Then produce the
/// mask by calling [`TopK::keep_mask`] / [`TopK::mask_in_place`] on every
/// chunk in order; [`TopK::rewind`] starts a new masking sweep.
#[derive(Clone, Debug)]
pub struct TopK {
    numel: usize,
    k: usize,
    stage: Stage,
    /// Counts of the current pass, flushed from `count` at the end of the
    /// pass (or before `count` could overflow).
    hist: Vec<u64>,
    /// The counting table: u32, half the cache footprint of u64, which is
    /// what a random-access histogram's speed depends on.
    count: Zeroed,
    /// Entries counted into `count` since its last flush.
    since_flush: u64,
    /// Bucket (high 16 bits) holding the cut-off.
    cut_hi: u32,
    /// Entries in buckets strictly above `cut_hi`.
    above_hi: u64,
    /// Exact cut-off bit pattern of `|x|`.
    thr: u32,
    /// Entries strictly above the cut-off value.
    above: u64,
    /// Entries equal to the cut-off value.
    tied: u64,
    /// How many tied entries are kept (the lowest indices).
    keep_ties: u64,
    /// Tied entries seen so far in the current masking sweep.
    ties_seen: u64,
    /// The masking sweep takes the chunks from the last to the first (a
    /// copy made by [`TopK::back`]).
    backwards: bool,
    /// In a backwards sweep: tied entries in the chunks already masked
    /// (all of them after the current one).
    ties_after: u64,
    /// Whether pass one may predict the cut-off bucket (`k` known up front).
    predict: bool,
    /// First bucket of the window and its low-bit tables (`WINDOW` x 65 536),
    /// once predicted.
    window: Option<(u32, Zeroed)>,
    /// The sample's bracket (stage `Bracket`).
    bracket: Option<Box<Bracket>>,
}

/// Buckets `lo .. lo + width` around a predicted cut-off: the magnitude
/// bits of the entries inside them, and the count of entries in higher
/// buckets.
#[derive(Clone, Debug)]
struct Bracket {
    lo: u32,
    width: u32,
    /// Per bucket, the low 16 magnitude bits of its entries, not counted
    /// into `tables` yet.
    lows: Vec<Vec<u16>>,
    /// Entries in `lows`.
    listed: usize,
    /// A low-bit table per bucket, once `keys` outgrew [`KEYS_MAX`].
    tables: Zeroed,
    /// Entries counted into each bucket's table.
    inside: [u64; MAX_BRACKET as usize],
    /// One bit per [`SEGMENT`] entries of `tables` counted into, so that
    /// clearing them touches only those (bf16 task vectors use few of the
    /// low-bit values).
    touched: Vec<u64>,
    above: u64,
}

thread_local! {
    /// Zeroed count tables returned by finished selectors, for the next
    /// ones on this thread (see [`Zeroed`]).
    static POOL: std::cell::RefCell<Vec<Vec<u32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most table entries a thread keeps pooled (16 MiB).
const POOL_MAX: usize = 4 << 20;

/// A zero-filled count table from a per-thread pool, zeroed again and
/// pooled when dropped. A merge builds selectors for tensor after tensor;
/// fresh multi-megabyte tables would be fresh pages, and the page faults
/// and zeroing cost more than the counting itself.
#[derive(Debug, Default)]
struct Zeroed {
    v: Vec<u32>,
    /// The owner zeroed what it touched (skip the full clear on drop).
    cleared: bool,
}

impl Zeroed {
    fn new(len: usize) -> Zeroed {
        let pooled = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let at = p.iter().position(|t| t.len() == len)?;
                Some(p.swap_remove(at))
            })
            .ok()
            .flatten();
        Zeroed {
            v: pooled.unwrap_or_else(|| vec![0; len]),
            cleared: false,
        }
    }
}

impl Clone for Zeroed {
    fn clone(&self) -> Zeroed {
        let mut z = Zeroed::new(self.v.len());
        z.v.copy_from_slice(&self.v);
        z
    }
}

impl std::ops::Deref for Zeroed {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.v
    }
}

impl std::ops::DerefMut for Zeroed {
    fn deref_mut(&mut self) -> &mut [u32] {
        &mut self.v
    }
}

impl Drop for Zeroed {
    fn drop(&mut self) {
        if self.v.is_empty() {
            return;
        }
        let mut t = std::mem::take(&mut self.v);
        let cleared = self.cleared;
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            let held: usize = p.iter().map(Vec::len).sum();
            if held + t.len() <= POOL_MAX {
                if !cleared {
                    t.fill(0);
                }
                p.push(t);
            }
        });
    }
}

/// What [`TopK::bounds`] returns for one chunk: entries before `split` are
/// kept when their magnitude bits are `>= before`, entries from `split` on
/// when they are `>= after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Entries before this index use `before`, the rest `after`.
    pub split: usize,
    /// Least magnitude bits (f32 bits without the sign) kept before `split`.
    pub before: u32,
    /// Least magnitude bits kept from `split` on.
    pub after: u32,
}

#[inline(always)]
fn mag_bits(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
}

/// How many of `v` (at most a block of 1024, so u32 lanes cannot
/// overflow) have magnitude bits `thr`.
#[inline(always)]
fn count_equal<E: Lane>(v: &[E], thr: u32) -> u32 {
    v.iter().map(|x| u32::from(mag_bits(x.f32()) == thr)).sum()
}

/// [`count_equal`] of `a - b`.
#[inline(always)]
fn count_equal_diff<E: Lane>(a: &[E], b: &[E], thr: u32) -> u32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u32::from(mag_bits(x.f32() - y.f32()) == thr))
        .sum()
}

impl TopK {
    /// A selector keeping `k` of `numel` entries. `k >= numel` keeps all and
    /// `k == 0` keeps none; neither needs a pass.
    pub fn new(numel: usize, k: usize) -> TopK {
        let mut t = TopK::blank(numel, k.min(numel));
        t.predict = numel >= WINDOW_MIN_NUMEL && numel <= u32::MAX as usize;
        t.settle_trivial();
        t
    }

    /// A selector whose `k` is only known after the first pass (SCE counts
    /// non-zero variances while histogramming): call [`TopK::set_k`] before
    /// the first [`TopK::end_pass`]. It cannot predict the cut-off bucket
    /// (that needs `k` during the first pass), so it always takes two.
    pub fn deferred(numel: usize) -> TopK {
        TopK::blank(numel, numel)
    }

    fn blank(numel: usize, k: usize) -> TopK {
        TopK {
            numel,
            k,
            stage: Stage::High,
            hist: Vec::new(),
            count: Zeroed::default(),
            since_flush: 0,
            cut_hi: 0,
            above_hi: 0,
            thr: 0,
            above: 0,
            tied: 0,
            keep_ties: 0,
            ties_seen: 0,
            backwards: false,
            ties_after: 0,
            predict: false,
            window: None,
            bracket: None,
        }
    }

    /// Set `k` (only before the first pass ends; ignored afterwards).
    pub fn set_k(&mut self, k: usize) {
        if self.stage == Stage::High {
            self.k = k.min(self.numel);
        }
    }

    /// Bracket the cut-off from `sample`, values drawn from across the
    /// tensor, before the first pass: the first pass then only counts (see
    /// the module docs). Ignored when the selector cannot predict (small or
    /// deferred selectors) or a pass has begun. At most [`SAMPLE_LEN`]
    /// values are used.
    pub fn predict(&mut self, sample: &[f32]) {
        if !self.wants_sample() || sample.is_empty() {
            return;
        }
        let mut keys: Vec<u32> = sample
            .iter()
            .take(SAMPLE_LEN)
            .map(|v| mag_bits(*v))
            .collect();
        let s = keys.len();
        let q = self.k as f64 / self.numel as f64;
        // The cut-off sits at ascending rank s (1 - q); allow four standard
        // deviations of a sampled quantile either side.
        let centre = s as f64 * (1.0 - q);
        let margin = 4.0 * (s as f64 * q * (1.0 - q)).sqrt() + 2.0;
        let rank = |r: f64| (r.max(0.0) as usize).min(s - 1);
        let (lo_r, hi_r) = (
            rank((centre - margin).floor()),
            rank((centre + margin).ceil()),
        );
        let lo_key = *keys.select_nth_unstable(lo_r).1;
        let hi_key = *keys.select_nth_unstable(hi_r).1;
        let (mut lo, mut hi) = (lo_key >> 16, hi_key >> 16);
        if hi - lo + 1 > MAX_BRACKET {
            let mid = *keys.select_nth_unstable(rank(centre)).1 >> 16;
            lo = mid.saturating_sub(MAX_BRACKET / 2);
            hi = lo + MAX_BRACKET - 1;
        }
        let width = hi - lo + 1;
        self.bracket = Some(Box::new(Bracket::new(lo, width)));
        self.stage = Stage::Bracket;
    }

    /// Whether [`TopK::predict`] would use a sample now.
    pub fn wants_sample(&self) -> bool {
        self.stage == Stage::High && self.predict && self.since_flush == 0 && self.window.is_none()
    }

    fn settle_trivial(&mut self) -> bool {
        if self.k == 0 || self.k >= self.numel {
            self.stage = Stage::Done;
            self.hist = Vec::new();
            self.count = Zeroed::default();
            self.above = self.k as u64;
            self.tied = 0;
            self.keep_ties = 0;
            // All kept: threshold 0 with every entry "above" is expressed by
            // the `all()` check in the mask functions.
            return true;
        }
        false
    }

    fn all(&self) -> bool {
        self.k >= self.numel
    }

    /// Whether another observation pass is needed.
    pub fn wants_pass(&self) -> bool {
        self.stage != Stage::Done
    }

    /// See one chunk of values (signed; magnitudes are taken here), in order.
    pub fn observe(&mut self, values: &[f32]) {
        if self.stage == Stage::Done {
            return;
        }
        if let (Stage::Bracket, Some(br)) = (self.stage, &mut self.bracket) {
            br.observe::<f32>(values, None);
            return;
        }
        if self.count.is_empty() {
            self.count = Zeroed::new(BUCKETS);
        }
        if self.since_flush + values.len() as u64 > u64::from(u32::MAX) {
            self.flush();
        }
        self.since_flush += values.len() as u64;
        match self.stage {
            Stage::Done | Stage::Bracket => {}
            Stage::High => {
                let c = &mut self.count[..];
                match &mut self.window {
                    Some((lo, tables)) => {
                        let lo = *lo;
                        if tables.is_empty() {
                            // A copy for the other end (see `back`).
                            *tables = Zeroed::new(WINDOW as usize * BUCKETS);
                        }
                        for &v in values {
                            let b = mag_bits(v);
                            c[(b >> 16) as usize] += 1;
                            let w = (b >> 16).wrapping_sub(lo);
                            if w < WINDOW {
                                tables[w as usize * BUCKETS + (b & 0xffff) as usize] += 1;
                            }
                        }
                    }
                    None => {
                        for &v in values {
                            c[(mag_bits(v) >> 16) as usize] += 1;
                        }
                        if self.predict {
                            // The first chunk predicts the window; count its
                            // own entries into it too.
                            let lo = self.predict_bucket(values.len());
                            let mut tables = Zeroed::new(WINDOW as usize * BUCKETS);
                            for &v in values {
                                let b = mag_bits(v);
                                let w = (b >> 16).wrapping_sub(lo);
                                if w < WINDOW {
                                    tables[w as usize * BUCKETS + (b & 0xffff) as usize] += 1;
                                }
                            }
                            self.window = Some((lo, tables));
                        }
                    }
                }
            }
            Stage::Low => {
                let cut = self.cut_hi;
                let c = &mut self.count[..];
                for &v in values {
                    let b = mag_bits(v);
                    if b >> 16 == cut {
                        c[(b & 0xffff) as usize] += 1;
                    }
                }
            }
        }
    }

    /// [`TopK::observe`] of `a - b` (a model's task vector from its chunk
    /// and the base's), without writing the difference out when the pass
    /// is a bracketed one; `tmp` holds it otherwise.
    pub fn observe_diff<E: Lane>(&mut self, a: &[E], b: &[E], tmp: &mut Vec<f32>) {
        if let (Stage::Bracket, Some(br)) = (self.stage, &mut self.bracket) {
            br.observe(a, Some(b));
            return;
        }
        let len = a.len().min(b.len());
        tmp.resize(len, 0.0);
        for ((t, x), y) in tmp.iter_mut().zip(a).zip(b) {
            *t = x.f32() - y.f32();
        }
        self.observe(tmp);
    }

    /// Move `count` into `hist`.
    fn flush(&mut self) {
        if self.hist.is_empty() {
            self.hist = vec![0; BUCKETS];
        }
        for (h, c) in self.hist.iter_mut().zip(self.count.iter_mut()) {
            *h += u64::from(*c);
            *c = 0;
        }
        self.since_flush = 0;
    }

    /// Finish a pass: locate the bucket, then the exact cut-off.
    pub fn end_pass(&mut self) {
        match self.stage {
            Stage::Done => {}
            Stage::Bracket => {
                if self.settle_trivial() {
                    return;
                }
                let Some(br) = self.bracket.take() else {
                    self.stage = Stage::High;
                    return;
                };
                if let Some((cut, above, low)) = br.settle(self.k as u64) {
                    self.cut_hi = cut;
                    self.above_hi = above;
                    self.finish(&low);
                    return;
                }
                // The cut-off is outside the bracket: the full passes follow.
                self.stage = Stage::High;
            }
            Stage::High => {
                if self.settle_trivial() {
                    return;
                }
                self.flush();
                let k = self.k as u64;
                let mut acc = 0u64;
                let mut cut = 0usize;
                for b in (0..BUCKETS).rev() {
                    if acc + self.hist[b] >= k {
                        cut = b;
                        break;
                    }
                    acc += self.hist[b];
                }
                self.cut_hi = cut as u32;
                self.above_hi = acc;
                if let Some((lo, tables)) = self.window.take() {
                    let w = (cut as u32).wrapping_sub(lo);
                    if w < WINDOW {
                        // The window caught it: pass two is already done.
                        let at = w as usize * BUCKETS;
                        let low: Vec<u64> = tables[at..at + BUCKETS]
                            .iter()
                            .map(|&c| u64::from(c))
                            .collect();
                        self.finish(&low);
                        return;
                    }
                }
                self.hist.iter_mut().for_each(|c| *c = 0);
                self.stage = Stage::Low;
            }
            Stage::Low => {
                self.flush();
                let low = std::mem::take(&mut self.hist);
                self.finish(&low);
            }
        }
    }

    /// The exact cut-off from the low-bit histogram of the cut-off bucket.
    fn finish(&mut self, low: &[u64]) {
        let k = self.k as u64;
        let mut acc = self.above_hi;
        let mut lo = 0usize;
        for b in (0..BUCKETS).rev() {
            if acc + low[b] >= k {
                lo = b;
                break;
            }
            acc += low[b];
        }
        self.thr = (self.cut_hi << 16) | lo as u32;
        self.above = acc;
        self.tied = low[lo];
        self.keep_ties = k - acc;
        self.hist = Vec::new();
        self.count = Zeroed::default();
        self.stage = Stage::Done;
    }

    /// The first window bucket, from the first chunk's histogram (the only
    /// one in `hist` so far): where the chunk's own top `k/numel` share
    /// ends, centred in the window.
    fn predict_bucket(&self, len: usize) -> u32 {
        let want = (self.k as f64 / self.numel.max(1) as f64 * len as f64).ceil() as u64;
        let mut acc = 0u64;
        let mut cut = 0usize;
        for b in (0..BUCKETS).rev() {
            acc += u64::from(self.count[b]);
            if acc >= want.max(1) {
                cut = b;
                break;
            }
        }
        (cut as u32).saturating_sub(WINDOW / 2)
    }

    /// Number of entries kept (`k`).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Number of entries in the tensor.
    pub fn numel(&self) -> usize {
        self.numel
    }
    /// The cut-off magnitude (the smallest kept `|x|`); `None` until known or
    /// when nothing or everything is kept.
    pub fn threshold(&self) -> Option<f32> {
        (self.stage == Stage::Done && self.k > 0 && self.k < self.numel)
            .then(|| f32::from_bits(self.thr))
    }
    /// Entries whose magnitude equals the cut-off (kept or not).
    pub fn tied_at_cutoff(&self) -> u64 {
        self.tied
    }
    /// How many of the tied entries are kept (those with the lowest flat
    /// indices).
    pub fn tied_kept(&self) -> u64 {
        self.keep_ties
    }
    /// Entries strictly above the cut-off.
    pub fn above_cutoff(&self) -> u64 {
        self.above
    }
    /// Share of the tensor tied at the cut-off.
    pub fn tied_share(&self) -> f64 {
        if self.numel == 0 {
            0.0
        } else {
            self.tied as f64 / self.numel as f64
        }
    }
    /// Share of the tensor kept.
    pub fn kept_share(&self) -> f64 {
        if self.numel == 0 {
            0.0
        } else {
            self.k as f64 / self.numel as f64
        }
    }

    /// Start a new masking sweep from the first chunk (from the last one,
    /// for a copy made by [`TopK::back`]).
    pub fn rewind(&mut self) {
        self.ties_seen = 0;
        self.ties_after = 0;
    }

    /// A copy of this selector for the other end of the tensor, so that
    /// two workers can share a pass or a masking sweep: this selector takes
    /// chunks from the first one on, the copy from the last one back (each
    /// chunk still in order inside), until they meet.
    ///
    /// During a pass the copy starts with empty counts and [`TopK::join`]
    /// adds them back before [`TopK::end_pass`]: counts add up, so the
    /// cut-off is the one a single sweep finds. (Predicting the window from
    /// the first chunk is turned off here, for both: the copy never sees
    /// that chunk.) Once the cut-off is known, the copy masks from the last
    /// chunk back: from the number of entries tied at the cut-off and the
    /// ties in the chunks it has masked, it knows how many precede each
    /// chunk, so every chunk gets the mask a sweep in order gives it (the
    /// lowest-index ties kept).
    pub fn back(&mut self) -> TopK {
        if self.window.is_none() {
            self.predict = false;
        }
        TopK {
            hist: Vec::new(),
            count: Zeroed::default(),
            since_flush: 0,
            ties_seen: 0,
            backwards: true,
            ties_after: 0,
            predict: false,
            window: self.window.as_ref().map(|(lo, _)| (*lo, Zeroed::default())),
            bracket: self
                .bracket
                .as_ref()
                .map(|b| Box::new(Bracket::new(b.lo, b.width))),
            ..*self
        }
    }

    /// Add the counts of a copy made by [`TopK::back`] for the same pass
    /// (call before [`TopK::end_pass`]). Nothing to add once the cut-off
    /// is known.
    pub fn join(&mut self, mut back: TopK) {
        self.join_counts(&mut back);
    }

    /// [`TopK::join`] without taking the copy (which keeps its counts, for
    /// [`TopK::ties_in`]).
    fn join_counts(&mut self, back: &mut TopK) {
        match self.stage {
            Stage::Done => {}
            Stage::Bracket => {
                if let (Some(a), Some(b)) = (&mut self.bracket, &back.bracket) {
                    a.add(b);
                }
            }
            Stage::High | Stage::Low => {
                if back.since_flush > 0 || !back.hist.is_empty() {
                    back.flush();
                    self.flush();
                    for (h, b) in self.hist.iter_mut().zip(&back.hist) {
                        *h += b;
                    }
                }
                if let (Some((_, a)), Some((_, b))) = (&mut self.window, &back.window) {
                    if !b.is_empty() {
                        if a.is_empty() {
                            *a = Zeroed::new(WINDOW as usize * BUCKETS);
                        }
                        for (x, y) in a.iter_mut().zip(b.iter()) {
                            *x += y;
                        }
                    }
                }
            }
        }
    }

    /// A copy of this selector for one of several consecutive ranges of
    /// the tensor, so that workers can share a pass: each copy sees the
    /// chunks of its range in order, starting with empty counts, and
    /// [`TopK::end_pass_ranges`] adds them up (counts add up, so the
    /// cut-off is the one a single sweep finds). Predicting the window from
    /// the first chunk is turned off, as for [`TopK::back`].
    pub fn fork(&mut self) -> TopK {
        let mut t = self.back();
        t.backwards = false;
        t
    }

    /// End a pass whose chunks the copies `ranges` (from [`TopK::fork`],
    /// one per range, in index order) saw instead of this selector. When
    /// the pass settles the cut-off, returns each range's entries tied at
    /// it (read from the range's own count tables): the tie rule keeps the
    /// lowest indices, so a range's masking starts from the ties of the
    /// ranges before it (see [`TopK::starting_at`]). `None` when the
    /// cut-off was already known or another pass is needed.
    pub fn end_pass_ranges(&mut self, ranges: &mut [TopK]) -> Option<Vec<u64>> {
        if self.stage == Stage::Done {
            return None;
        }
        for r in ranges.iter_mut() {
            self.join_counts(r);
        }
        self.end_pass();
        if self.stage != Stage::Done {
            return None;
        }
        Some(ranges.iter().map(|r| r.ties_in(self.thr)).collect())
    }

    /// Entries of this copy's range whose magnitude bits are `thr`, from
    /// the counts of the pass it took part in (the pass that settled
    /// `thr`, so its tables hold `thr`'s bucket).
    fn ties_in(&self, thr: u32) -> u64 {
        let (hi, lo) = (thr >> 16, (thr & 0xffff) as usize);
        match self.stage {
            Stage::Done => 0,
            Stage::Bracket => self.bracket.as_ref().map_or(0, |b| b.count_at(hi, lo)),
            Stage::High => match &self.window {
                Some((w_lo, tables)) => {
                    let w = hi.wrapping_sub(*w_lo);
                    if w < WINDOW {
                        tables
                            .get(w as usize * BUCKETS + lo)
                            .map_or(0, |&c| u64::from(c))
                    } else {
                        0
                    }
                }
                None => 0,
            },
            Stage::Low => {
                self.hist.get(lo).copied().unwrap_or(0)
                    + self.count.get(lo).map_or(0, |&c| u64::from(c))
            }
        }
    }

    /// A copy of this selector (the cut-off known) that masks one range of
    /// the tensor, its chunks in order, given the entries tied at the
    /// cut-off in the ranges before it: every chunk gets the mask a sweep
    /// of the whole tensor in order gives it.
    pub fn starting_at(&self, ties_before: u64) -> TopK {
        TopK {
            hist: Vec::new(),
            count: Zeroed::default(),
            since_flush: 0,
            ties_seen: ties_before,
            backwards: false,
            ties_after: 0,
            predict: false,
            window: None,
            bracket: None,
            ..*self
        }
    }

    /// For the next chunk (in order), where the kept ties run out: entries
    /// before the returned index are kept when `|x| >= cut`, entries from it
    /// on when `|x| > cut` (bit patterns). Every chunk but one has the split
    /// at an end. Counting ties in blocks first keeps both the counting and
    /// the masking loops branch-free, so they vectorise even on bf16 task
    /// vectors where many entries tie.
    ///
    /// With `minus`, the chunk is `values - minus` (formed on the way,
    /// never written out).
    fn split_of<E: Lane>(&mut self, values: &[E], minus: Option<&[E]>) -> usize {
        const BLOCK: usize = 1024;
        let thr = self.thr;
        if self.ties_seen >= self.keep_ties {
            return 0;
        }
        let len = values.len().min(minus.map_or(usize::MAX, <[E]>::len));
        let value = |j: usize| minus.map_or(values[j].f32(), |b| values[j].f32() - b[j].f32());
        let mut split = len;
        let mut seen = self.ties_seen;
        let mut at = 0;
        while at < len {
            let end = (at + BLOCK).min(len);
            let block = &values[at..end];
            let c = u64::from(match minus {
                Some(b) => crate::simd::dispatch!(count_equal_diff(block, &b[at..end], thr)),
                None => crate::simd::dispatch!(count_equal::<E>(block, thr)),
            });
            if split == len && seen + c > self.keep_ties {
                // The boundary is in this block: find the first tie that is
                // not kept.
                let mut s = seen;
                for j in at..end {
                    if mag_bits(value(j)) == thr {
                        if s == self.keep_ties {
                            split = j;
                            break;
                        }
                        s += 1;
                    }
                }
            }
            seen += c;
            at = end;
        }
        self.ties_seen = seen;
        split
    }

    /// [`TopK::split_of`] for the next chunk of a backwards sweep (chunks
    /// from the last to the first): the ties of the chunks after it are
    /// known, so how many precede it is too.
    fn split_back<E: Lane>(&mut self, values: &[E], minus: Option<&[E]>) -> usize {
        let len = values.len().min(minus.map_or(usize::MAX, <[E]>::len));
        let dropped = self.tied - self.keep_ties;
        if self.ties_after >= dropped {
            // The dropped ties (the highest indices) are all behind: every
            // tie from here down to the first chunk is kept.
            return len;
        }
        let c = self.count_ties(values, minus);
        self.ties_after += c;
        let before = self.tied.saturating_sub(self.ties_after);
        if before >= self.keep_ties {
            // The kept ties all come before this chunk.
            return 0;
        }
        // The boundary is in this chunk (`before + c > keep_ties`, since
        // the dropped ties were not all behind).
        self.ties_seen = before;
        self.split_of(values, minus)
    }

    /// Entries of a chunk (`values - minus`, when given) tied at the
    /// cut-off.
    fn count_ties<E: Lane>(&self, values: &[E], minus: Option<&[E]>) -> u64 {
        const BLOCK: usize = 1024;
        let thr = self.thr;
        let len = values.len().min(minus.map_or(usize::MAX, <[E]>::len));
        let mut c = 0u64;
        let mut at = 0;
        while at < len {
            let end = (at + BLOCK).min(len);
            let block = &values[at..end];
            c += u64::from(match minus {
                Some(b) => crate::simd::dispatch!(count_equal_diff(block, &b[at..end], thr)),
                None => crate::simd::dispatch!(count_equal::<E>(block, thr)),
            });
            at = end;
        }
        c
    }

    /// Whether the next chunks' masks still depend on counting ties (the
    /// kept ties have not all been seen yet in this sweep).
    pub fn ties_pending(&self) -> bool {
        !self.all() && self.k > 0 && self.ties_seen < self.keep_ties
    }

    /// The keep rule for the next chunk of `len` entries (in order), for
    /// callers that mask in their own loops. `values` are the chunk's
    /// values; they are read only while [`TopK::ties_pending`].
    pub fn bounds(&mut self, len: usize, values: &[f32]) -> Bounds {
        self.bounds_of::<f32>(len, values, None)
    }

    /// [`TopK::bounds`] for the chunk `values - minus` (a model's task
    /// vector from its chunk and the base's), formed on the way.
    pub fn bounds_diff<E: Lane>(&mut self, len: usize, values: &[E], minus: &[E]) -> Bounds {
        self.bounds_of(len, values, Some(minus))
    }

    fn bounds_of<E: Lane>(&mut self, len: usize, values: &[E], minus: Option<&[E]>) -> Bounds {
        if self.all() {
            return Bounds {
                split: len,
                before: 0,
                after: 0,
            };
        }
        if self.k == 0 {
            return Bounds {
                split: 0,
                before: u32::MAX,
                after: u32::MAX,
            };
        }
        let n = len.min(values.len());
        let (values, minus) = (&values[..n], minus.map(|b| &b[..n.min(b.len())]));
        let split = if self.keep_ties >= self.tied {
            // Every tie is kept: no need to count them.
            len
        } else if self.backwards {
            self.split_back(values, minus)
        } else if self.ties_pending() {
            self.split_of(values, minus)
        } else {
            0
        };
        Bounds {
            split,
            before: self.thr,
            after: self.thr + 1,
        }
    }

    /// Write whether each entry of the next chunk (in order) is kept.
    pub fn keep_mask(&mut self, values: &[f32], keep: &mut [bool]) {
        let len = values.len().min(keep.len());
        let b = self.bounds(len, values);
        let split = b.split.min(len);
        for (k, &v) in keep[..split].iter_mut().zip(values) {
            *k = mag_bits(v) >= b.before;
        }
        for (k, &v) in keep[split..len].iter_mut().zip(&values[split..]) {
            *k = mag_bits(v) >= b.after;
        }
    }

    /// Zero the entries of the next chunk (in order) that are not kept.
    pub fn mask_in_place(&mut self, values: &mut [f32]) {
        if self.all() {
            return;
        }
        let b = self.bounds(values.len(), values);
        let (head, tail) = values.split_at_mut(b.split.min(values.len()));
        // An all-ones or all-zeros mask per entry: branch-free.
        let mask = |vals: &mut [f32], lo: u32| {
            for v in vals.iter_mut() {
                let keep = u32::from(mag_bits(*v) >= lo).wrapping_neg();
                *v = f32::from_bits(v.to_bits() & keep);
            }
        };
        mask(head, b.before);
        mask(tail, b.after);
    }
}

impl Drop for Bracket {
    /// Clear only the tables that were counted into (most of a wide
    /// bracket's tables stay untouched).
    fn drop(&mut self) {
        for (wi, &word) in self.touched.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let seg = wi * 64 + bits.trailing_zeros() as usize;
                if let Some(t) = self.tables.get_mut(seg * SEGMENT..(seg + 1) * SEGMENT) {
                    t.fill(0);
                }
                bits &= bits - 1;
            }
        }
        self.tables.cleared = true;
    }
}

impl Bracket {
    fn new(lo: u32, width: u32) -> Bracket {
        Bracket {
            lo,
            width,
            lows: vec![Vec::new(); width as usize],
            listed: 0,
            tables: Zeroed::default(),
            inside: [0; MAX_BRACKET as usize],
            touched: Vec::new(),
            above: 0,
        }
    }

    /// Add the counts of another bracket over the same buckets (see
    /// [`TopK::join`]).
    fn add(&mut self, o: &Bracket) {
        self.above += o.above;
        for (a, b) in self.lows.iter_mut().zip(&o.lows) {
            a.extend_from_slice(b);
        }
        self.listed += o.listed;
        if self.listed > KEYS_MAX {
            self.spill();
        }
        if o.tables.is_empty() {
            return;
        }
        self.allocate();
        // Only the segments it counted into.
        for (wi, &word) in o.touched.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let seg = wi * 64 + bits.trailing_zeros() as usize;
                let r = seg * SEGMENT..(seg + 1) * SEGMENT;
                if let (Some(a), Some(b)) = (self.tables.get_mut(r.clone()), o.tables.get(r)) {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                }
                bits &= bits - 1;
            }
            if let Some(t) = self.touched.get_mut(wi) {
                *t |= word;
            }
        }
        for (a, b) in self.inside.iter_mut().zip(&o.inside) {
            *a += b;
        }
    }

    /// Entries of high bucket `hi` whose low 16 bits are `lo`, listed or
    /// counted (0 outside the bracket).
    fn count_at(&self, hi: u32, lo: usize) -> u64 {
        let w = hi.wrapping_sub(self.lo);
        if w >= self.width {
            return 0;
        }
        let w = w as usize;
        let listed = self
            .lows
            .get(w)
            .map_or(0, |l| l.iter().filter(|&&x| usize::from(x) == lo).count());
        let counted = self
            .tables
            .get(w * BUCKETS + lo)
            .map_or(0, |&c| u64::from(c));
        listed as u64 + counted
    }

    fn allocate(&mut self) {
        if self.tables.is_empty() {
            let len = self.width as usize * BUCKETS;
            self.tables = Zeroed::new(len);
            self.touched = vec![0; (len / SEGMENT).div_ceil(64)];
        }
    }

    /// Count the listed entries into the tables.
    fn spill(&mut self) {
        self.allocate();
        for (w, lows) in self.lows.iter_mut().enumerate() {
            let Some(table) = self.tables.get_mut(w * BUCKETS..(w + 1) * BUCKETS) else {
                continue;
            };
            for &l in lows.iter() {
                table[usize::from(l)] += 1;
                let seg = (w * BUCKETS + usize::from(l)) / SEGMENT;
                self.touched[seg / 64] |= 1 << (seg % 64);
            }
            self.inside[w] += lows.len() as u64;
            lows.clear();
        }
        self.listed = 0;
    }

    /// After the pass: the bucket holding the `k`-th largest magnitude, the
    /// entries in higher buckets, and the low-bit histogram of the bucket;
    /// `None` when the cut-off lies outside the bracket.
    fn settle(&self, k: u64) -> Option<(u32, u64, Vec<u64>)> {
        let width = self.width as usize;
        let mut acc = self.above;
        for w in (0..width).rev() {
            let here = self.inside[w] + self.lows.get(w).map_or(0, Vec::len) as u64;
            if acc < k && acc + here >= k {
                let mut low: Vec<u64> = match self.tables.get(w * BUCKETS..(w + 1) * BUCKETS) {
                    Some(t) => t.iter().map(|&c| u64::from(c)).collect(),
                    None => vec![0; BUCKETS],
                };
                for &l in self.lows.get(w).into_iter().flatten() {
                    low[usize::from(l)] += 1;
                }
                return Some((self.lo + w as u32, acc, low));
            }
            acc += here;
        }
        None
    }

    /// Count a chunk: entries above the bracket are only counted, entries
    /// inside it are listed. Each block is compacted, branch-free, into the
    /// keys that fall inside (a store per entry to consecutive addresses,
    /// which never waits on another). With `minus`, the values are `values
    /// - minus` (a task vector from model and base), formed on the way.
    fn observe<E: Lane>(&mut self, values: &[E], minus: Option<&[E]>) {
        const BLOCK: usize = 4096;
        let mut keys = [0u32; BLOCK];
        for (bi, block) in values.chunks(BLOCK).enumerate() {
            let sub = minus.map(|b| &b[bi * BLOCK..(bi * BLOCK + block.len()).min(b.len())]);
            let (m, above) = compact_any(block, sub, self.lo, self.width, &mut keys);
            self.above += above;
            for &b in &keys[..m] {
                let w = (b >> 16).wrapping_sub(self.lo) as usize;
                if let Some(l) = self.lows.get_mut(w) {
                    l.push(b as u16);
                }
            }
            self.listed += m;
        }
        if self.listed > KEYS_MAX {
            self.spill();
        }
    }
}

/// [`compact`] with AVX-512's compress instruction when the CPU has it (16
/// entries per step instead of one), the portable loop otherwise.
fn compact_any<E: Lane>(
    values: &[E],
    minus: Option<&[E]>,
    lo: u32,
    width: u32,
    keys: &mut [u32],
) -> (usize, u64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the CPU has AVX-512F and POPCNT, the features the
        // function is compiled for.
        return unsafe { compact_avx512(values, minus, lo, width, keys) };
    }
    compact(values, minus, lo, width, keys)
}

/// Sixteen lanes of `v` from `i` on, as f32 (AVX-512).
///
/// # Safety
/// `i + 16 <= v.len()`, and the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load16<E: Lane>(v: &[E], i: usize) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // The loads below read 16 lanes of 2 bytes (bf16) or 4 bytes (f32);
    // `Lane` is sealed to those two types, and this holds it at compile
    // time for each one.
    const {
        assert!(std::mem::size_of::<E>() == if E::BF16 { 2 } else { 4 });
    }
    // SAFETY: the caller guarantees `i + 16 <= v.len()`, so the pointer
    // and the 16 elements read from it (32 or 64 bytes, by the size check
    // above) stay inside `v`; unaligned loads need no alignment; the caller
    // guarantees AVX-512F.
    unsafe {
        let p = v.as_ptr().add(i);
        if E::BF16 {
            // bf16 bit patterns: widen to 32 bits, shift into the top half.
            let h = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_loadu_ps(p.cast())
        }
    }
}

/// [`compact`], 16 lanes at a time. Same results: the subtraction is the
/// same IEEE operation and the compressed store keeps the lanes' order.
#[cfg(target_arch = "x86_64")]
// POPCNT too: without it each mask's `count_ones` is a dozen
// bit-twiddling instructions (a third of this loop's time in `perf`).
#[target_feature(enable = "avx512f,popcnt")]
fn compact_avx512<E: Lane>(
    values: &[E],
    minus: Option<&[E]>,
    lo: u32,
    width: u32,
    keys: &mut [u32],
) -> (usize, u64) {
    use std::arch::x86_64::*;
    let n = values
        .len()
        .min(keys.len())
        .min(minus.map_or(usize::MAX, <[E]>::len));
    let (values, keys) = (&values[..n], &mut keys[..n]);
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    // Compared on the whole magnitude bits: bucket `h` lies in
    // `lo .. lo + width` exactly when `b - (lo << 16) < width << 16`
    // (unsigned, wrapping), and above it when `b >= (lo + width) << 16`.
    // Buckets are at most 0x7fff and a bracket at most `MAX_BRACKET`
    // wide, so the shifted bounds fit in 32 bits.
    let vlo = _mm512_set1_epi32((lo << 16) as i32);
    let vwidth = _mm512_set1_epi32((width << 16) as i32);
    let vtop = _mm512_set1_epi32(((lo + width) << 16) as i32);
    let one = _mm512_set1_epi32(1);
    // Per-lane counts of entries above the bracket, added up at the end
    // (at most n / 16 per lane).
    let mut high = _mm512_setzero_si512();
    let mut m = 0usize;
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: lanes i..i+16 are inside `values` and `minus` (both at
        // least `n` long); the compressed store writes 16 lanes at `m`,
        // and `m <= i`, `i + 16 <= n = keys.len()`, so inside `keys`.
        unsafe {
            let mut v = load16(values, i);
            if let Some(b) = minus {
                v = _mm512_sub_ps(v, load16(b, i));
            }
            let b = _mm512_and_si512(_mm512_castps_si512(v), abs);
            let inside = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(b, vlo), vwidth);
            let above = _mm512_cmpge_epu32_mask(b, vtop);
            high = _mm512_mask_add_epi32(high, above, high, one);
            let packed = _mm512_maskz_compress_epi32(inside, b);
            _mm512_storeu_si512(keys.as_mut_ptr().add(m).cast(), packed);
            m += inside.count_ones() as usize;
        }
        i += 16;
    }
    let above = u64::from(_mm512_reduce_add_epi32(high) as u32);
    let rest = minus.map(|b| &b[i..n]);
    let (rest_m, rest_above) = compact(&values[i..], rest, lo, width, &mut keys[m..]);
    (m + rest_m, above + rest_above)
}

/// Write the magnitude bits of the entries of `values` (minus `minus`,
/// when given) whose bucket lies in `lo .. lo + width` to the front of
/// `keys`; return how many, and how many entries lie above the bracket.
#[inline(always)]
fn compact<E: Lane>(
    values: &[E],
    minus: Option<&[E]>,
    lo: u32,
    width: u32,
    keys: &mut [u32],
) -> (usize, u64) {
    let top = lo + width;
    let mut m = 0usize;
    let mut above = 0u32;
    let n = values
        .len()
        .min(keys.len())
        .min(minus.map_or(usize::MAX, <[E]>::len));
    for (j, &v) in values[..n].iter().enumerate() {
        let v = match minus {
            Some(b) => v.f32() - b[j].f32(),
            None => v.f32(),
        };
        let b = mag_bits(v);
        let h = b >> 16;
        above += u32::from(h >= top);
        // `m < n` always holds here (at most one key per entry seen).
        keys[m.min(n - 1)] = b;
        m += usize::from(h.wrapping_sub(lo) < width);
    }
    (m, u64::from(above))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[f32], k: usize, chunk: usize) -> (Vec<bool>, TopK) {
        let mut t = TopK::new(values.len(), k);
        select(&mut t, values, chunk);
        (mask(&mut t, values, chunk), t)
    }

    /// Run `t`'s passes over `values` in chunks; how many it took.
    fn select(t: &mut TopK, values: &[f32], chunk: usize) -> usize {
        let mut passes = 0;
        while t.wants_pass() {
            for c in values.chunks(chunk) {
                t.observe(c);
            }
            t.end_pass();
            passes += 1;
        }
        passes
    }

    /// `t`'s keep mask over `values`, a chunk at a time.
    fn mask(t: &mut TopK, values: &[f32], chunk: usize) -> Vec<bool> {
        let mut keep = vec![false; values.len()];
        for (c, kc) in values.chunks(chunk).zip(keep.chunks_mut(chunk)) {
            t.keep_mask(c, kc);
        }
        keep
    }

    /// Reference: stable sort by descending magnitude, ties by index.
    fn reference(values: &[f32], k: usize) -> Vec<bool> {
        let mut idx: Vec<usize> = (0..values.len()).collect();
        idx.sort_by(|&a, &b| {
            mag_bits(values[b])
                .cmp(&mag_bits(values[a]))
                .then(a.cmp(&b))
        });
        let mut keep = vec![false; values.len()];
        for &i in &idx[..k.min(values.len())] {
            keep[i] = true;
        }
        keep
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn matches_full_sort_with_heavy_ties() {
        let mut s = 7u64;
        for trial in 0..40 {
            let n = 1 + (lcg(&mut s) as usize % 3000);
            // Few distinct values (heavy ties), both signs, some zeros.
            let distinct = 1 + trial % 9;
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let v = (lcg(&mut s) % distinct as u64) as f32 * 0.25;
                    if lcg(&mut s).is_multiple_of(2) {
                        v
                    } else {
                        -v
                    }
                })
                .collect();
            for k in [0, 1, n / 3, n / 2, n.saturating_sub(1), n, n + 5] {
                let want = reference(&values, k);
                for chunk in [1, 7, 100, 4096] {
                    let (got, t) = run(&values, k, chunk);
                    assert_eq!(got, want, "n={n} k={k} chunk={chunk}");
                    assert_eq!(got.iter().filter(|&&b| b).count(), k.min(n));
                    if let Some(thr) = t.threshold() {
                        let tied = values.iter().filter(|v| v.abs() == thr).count() as u64;
                        assert_eq!(t.tied_at_cutoff(), tied);
                        assert!(t.tied_kept() >= 1 && t.tied_kept() <= tied);
                    }
                }
            }
        }
    }

    #[test]
    fn matches_full_sort_on_continuous_values() {
        let mut s = 99u64;
        let values: Vec<f32> = (0..20_000)
            .map(|_| (lcg(&mut s) as f32 / (1u64 << 31) as f32 - 0.5) * 1e-3)
            .collect();
        for k in [1, 17, 5000, 19_999] {
            let (got, t) = run(&values, k, 999);
            assert_eq!(got, reference(&values, k));
            assert_eq!(t.tied_at_cutoff(), 1);
        }
    }

    #[test]
    fn values_sharing_the_high_bits_are_separated_exactly() {
        // All in one high-16-bit bucket: only the low pass separates them.
        let values: Vec<f32> = (0..500u32)
            .map(|i| f32::from_bits(0x3f80_0000 + (i * 37) % 500))
            .collect();
        let (got, _) = run(&values, 123, 64);
        assert_eq!(got, reference(&values, 123));
    }

    #[test]
    fn mask_in_place_agrees_with_keep_mask() {
        // Heavy ties; chunks smaller and larger than the 1024-entry blocks
        // the tie boundary is searched in.
        let values: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        for chunk in [33, 1500, 5000] {
            for k in [1, 400, 2500, 4999] {
                let (keep, mut t) = run(&values, k, chunk);
                assert_eq!(keep, reference(&values, k), "k={k} chunk={chunk}");
                t.rewind();
                let mut masked = values.clone();
                for c in masked.chunks_mut(chunk) {
                    t.mask_in_place(c);
                }
                for i in 0..values.len() {
                    assert_eq!(masked[i], if keep[i] { values[i] } else { 0.0 });
                }
            }
        }
    }

    /// Big tensors take the one-pass route when the first chunk predicts
    /// the cut-off, two passes when it does not; both are exact.
    #[test]
    fn predicted_window_is_exact_and_saves_a_pass() {
        let n = (1 << 20) + 12_345;
        let mut s = 11u64;
        // Homogeneous, with heavy ties (a coarse grid of values).
        let same: Vec<f32> = (0..n)
            .map(|_| ((lcg(&mut s) % 2001) as f32 - 1000.0) * 1e-3)
            .collect();
        // First chunk tiny, the rest large: the prediction misses.
        let skewed: Vec<f32> = (0..n)
            .map(|i| {
                let v = ((lcg(&mut s) % 2001) as f32 - 1000.0) * 1e-3;
                if i < 1 << 18 {
                    v * 1e-3
                } else {
                    v
                }
            })
            .collect();
        for (values, one_pass) in [(&same, true), (&skewed, false)] {
            for k in [n / 10, n / 2] {
                let mut t = TopK::new(n, k);
                let passes = select(&mut t, values, 1 << 18);
                assert_eq!(passes, if one_pass { 1 } else { 2 }, "k={k}");
                assert!(
                    mask(&mut t, values, 1 << 18) == reference(values, k),
                    "k={k}"
                );
                let thr = t.threshold().expect("cut-off");
                let tied = values.iter().filter(|v| v.abs() == thr).count() as u64;
                assert_eq!(t.tied_at_cutoff(), tied);
            }
        }
    }

    /// A sample brackets the cut-off: one counting pass when the sample is
    /// like the tensor, the full passes when it is not; exact either way,
    /// and `bounds` describes the same mask as `keep_mask`.
    #[test]
    fn sampled_bracket_is_exact() {
        let n = (1 << 20) + 777;
        let mut s = 5u64;
        let values: Vec<f32> = (0..n)
            .map(|_| ((lcg(&mut s) % 4001) as f32 - 2000.0) * 1e-4)
            .collect();
        let good: Vec<f32> = values.iter().step_by(n / SAMPLE_LEN).copied().collect();
        let bad: Vec<f32> = good.iter().map(|v| v * 1e-3).collect();
        for (sample, one_pass) in [(&good, true), (&bad, false)] {
            for k in [n / 20, n / 3, n - 5] {
                let mut t = TopK::new(n, k);
                t.predict(sample);
                let passes = select(&mut t, &values, 70_000);
                // (Near k = n the cut-off is 0, which the scaled sample
                // still brackets.)
                if k < n / 2 {
                    assert_eq!(passes == 1, one_pass, "k={k} passes={passes}");
                }
                let want = reference(&values, k);
                assert!(mask(&mut t, &values, 70_000) == want, "k={k}");
                t.rewind();
                let mut via_bounds = Vec::with_capacity(n);
                for c in values.chunks(70_000) {
                    let b = t.bounds(c.len(), c);
                    for (j, v) in c.iter().enumerate() {
                        let lim = if j < b.split { b.before } else { b.after };
                        via_bounds.push(mag_bits(*v) >= lim);
                    }
                }
                assert!(via_bounds == want, "bounds k={k}");
            }
        }
    }

    /// Two workers, one from each end of the tensor, meeting at `meet`
    /// (in chunks): the front selector takes chunks `0..meet` in order,
    /// its copy from [`TopK::back`] chunks from the last back to `meet`.
    /// Returns the keep mask, and the number of passes.
    fn two_ended(t: &mut TopK, values: &[f32], chunk: usize, meet: usize) -> (Vec<bool>, usize) {
        let chunks: Vec<&[f32]> = values.chunks(chunk).collect();
        let meet = meet.min(chunks.len());
        let mut passes = 0;
        while t.wants_pass() {
            let mut b = t.back();
            for c in &chunks[..meet] {
                t.observe(c);
            }
            for c in chunks[meet..].iter().rev() {
                b.observe(c);
            }
            t.join(b);
            t.end_pass();
            passes += 1;
        }
        let mut keep = vec![false; values.len()];
        let mut b = t.back();
        let mut masks: Vec<Vec<bool>> = chunks.iter().map(|c| vec![false; c.len()]).collect();
        for (c, m) in chunks.iter().zip(masks.iter_mut()).take(meet) {
            t.keep_mask(c, m);
        }
        for (c, m) in chunks.iter().zip(masks.iter_mut()).skip(meet).rev() {
            b.keep_mask(c, m);
        }
        for (k, m) in keep.chunks_mut(chunk).zip(&masks) {
            k.copy_from_slice(m);
        }
        (keep, passes)
    }

    /// A selector shared by two workers from both ends finds the cut-off
    /// a single sweep finds and masks every chunk as a sweep in order
    /// does: the lowest-index ties kept. Every stage (a sample's bracket,
    /// a bracket that misses, the predicted window, the plain two passes),
    /// listed and spilled brackets, heavy ties, nothing or everything
    /// kept, and either worker doing all the chunks.
    #[test]
    fn both_ends_select_and_mask_as_one_sweep() {
        let mut s = 21u64;
        let n = (1 << 20) + 3001;
        // Heavy ties (a grid of values) and zeros.
        let values: Vec<f32> = (0..n)
            .map(|_| ((lcg(&mut s) % 801) as f32 - 400.0) * 1e-3)
            .collect();
        let good: Vec<f32> = values.iter().step_by(n / SAMPLE_LEN).copied().collect();
        let bad: Vec<f32> = good.iter().map(|v| v * 1e-3).collect();
        let chunk = 65_000;
        let count = n.div_ceil(chunk);
        for k in [0, 1, n / 20, n / 3, n / 2, n - 7, n] {
            let want = reference(&values, k);
            for (label, sample) in [("none", None), ("good", Some(&good)), ("bad", Some(&bad))] {
                for meet in [0, 1, count / 3, count - 1, count] {
                    let mut t = TopK::new(n, k);
                    if let Some(sm) = sample {
                        t.predict(sm);
                    }
                    let (got, _) = two_ended(&mut t, &values, chunk, meet);
                    assert!(got == want, "k={k} sample={label} meet={meet}");
                    let mut one = TopK::new(n, k);
                    if let Some(sm) = sample {
                        one.predict(sm);
                    }
                    select(&mut one, &values, chunk);
                    assert_eq!(t.threshold(), one.threshold(), "k={k} {label} {meet}");
                    assert_eq!(t.tied_at_cutoff(), one.tied_at_cutoff());
                    assert_eq!(t.tied_kept(), one.tied_kept());
                }
            }
        }
    }

    /// Workers sharing the passes by ranges ([`TopK::fork`]) and masking
    /// each range from the ties before it ([`TopK::starting_at`]) keep
    /// exactly what one sweep keeps: heavy ties (few distinct magnitudes),
    /// every stage (a sample's bracket, listed or spilled, a bracket that
    /// misses, the plain two passes), nothing or everything kept, ranges
    /// of uneven length and empty ones, at several worker counts.
    #[test]
    fn ranges_select_and_mask_as_one_sweep() {
        let mut s = 33u64;
        let n = (1 << 20) + 4321;
        let values: Vec<f32> = (0..n)
            .map(|_| ((lcg(&mut s) % 61) as f32 - 30.0) * 0.125)
            .collect();
        let good: Vec<f32> = values.iter().step_by(n / SAMPLE_LEN).copied().collect();
        let bad: Vec<f32> = good.iter().map(|v| v * 1e-3).collect();
        let chunk = 50_000;
        let chunks: Vec<&[f32]> = values.chunks(chunk).collect();
        for k in [0, 1, n / 20, n / 3, n / 2, n - 3, n] {
            let want = reference(&values, k);
            for (label, sample) in [("none", None), ("good", Some(&good)), ("bad", Some(&bad))] {
                let mut one = TopK::new(n, k);
                if let Some(sm) = sample {
                    one.predict(sm);
                }
                select(&mut one, &values, chunk);
                for workers in [1usize, 2, 3, 5, 8, 40] {
                    // Uneven ranges of whole chunks (the last ones may be
                    // empty).
                    let per = chunks.len().div_ceil(workers).max(1);
                    let ranges: Vec<&[&[f32]]> = (0..workers)
                        .map(|w| {
                            &chunks[(w * per).min(chunks.len())..((w + 1) * per).min(chunks.len())]
                        })
                        .collect();
                    let mut t = TopK::new(n, k);
                    if let Some(sm) = sample {
                        t.predict(sm);
                    }
                    let mut ties = vec![0u64; workers];
                    while t.wants_pass() {
                        let mut forks: Vec<TopK> = (0..workers).map(|_| t.fork()).collect();
                        for (f, r) in forks.iter_mut().zip(&ranges) {
                            r.iter().for_each(|c| f.observe(c));
                        }
                        if let Some(v) = t.end_pass_ranges(&mut forks) {
                            ties = v;
                        }
                    }
                    let at = format!("k={k} sample={label} workers={workers}");
                    assert_eq!(t.threshold(), one.threshold(), "{at}");
                    assert_eq!(t.tied_at_cutoff(), one.tied_at_cutoff(), "{at}");
                    assert_eq!(t.tied_kept(), one.tied_kept(), "{at}");
                    assert_eq!(ties.iter().sum::<u64>(), t.tied_at_cutoff(), "{at}");
                    let mut got = Vec::with_capacity(n);
                    let mut before = 0;
                    for (r, &tied) in ranges.iter().zip(&ties) {
                        let mut m = t.starting_at(before);
                        for c in r.iter() {
                            let mut keep = vec![false; c.len()];
                            m.keep_mask(c, &mut keep);
                            got.extend(keep);
                        }
                        before += tied;
                    }
                    assert!(got == want, "{at}");
                }
            }
        }
    }

    /// `bounds_diff` from a copy made by `back`, chunks taken from the last
    /// back, describes the mask a sweep in order gives, with the tie
    /// boundary inside a chunk and at its edges.
    #[test]
    fn bounds_from_the_back_match_a_sweep_in_order() {
        let n = 10_000;
        let base: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.5).collect();
        let model: Vec<f32> = (0..n)
            .map(|i| base[i] + ((i * 7919) % 9) as f32 - 4.0)
            .collect();
        let diff: Vec<f32> = model.iter().zip(&base).map(|(m, b)| m - b).collect();
        for k in [1, 999, 2500, 5000, 9999] {
            let want = reference(&diff, k);
            for chunk in [100, 1024, 3333] {
                let mut t = TopK::new(n, k);
                select(&mut t, &diff, chunk);
                let mut b = t.back();
                let starts: Vec<usize> = (0..n).step_by(chunk).collect();
                let mut got = vec![false; n];
                for &at in starts.iter().rev() {
                    let end = (at + chunk).min(n);
                    let bd = b.bounds_diff(end - at, &model[at..end], &base[at..end]);
                    for j in at..end {
                        let lim = if j - at < bd.split {
                            bd.before
                        } else {
                            bd.after
                        };
                        got[j] = mag_bits(diff[j]) >= lim;
                    }
                }
                assert!(got == want, "k={k} chunk={chunk}");
            }
        }
    }

    /// Every way of compacting gives the same keys and counts.
    #[test]
    fn compaction_variants_agree() {
        let mut s = 17u64;
        for len in [0usize, 1, 15, 16, 17, 1000, 4096] {
            let values: Vec<f32> = (0..len)
                .map(|_| f32::from_bits(0x3c00_0000 + (lcg(&mut s) as u32 % 0x0060_0000)))
                .collect();
            let (lo, width) = ((0x3c20_0000u32 >> 16), 9);
            let mut a = vec![0u32; len];
            let mut b = vec![0u32; len];
            let (ma, ha) = compact::<f32>(&values, None, lo, width, &mut a);
            let (mb, hb) = compact_any::<f32>(&values, None, lo, width, &mut b);
            assert_eq!((ma, ha), (mb, hb), "len {len}");
            assert_eq!(a[..ma], b[..mb], "len {len}");
            let inside = values
                .iter()
                .filter(|v| (mag_bits(**v) >> 16).wrapping_sub(lo) < width)
                .count();
            assert_eq!(ma, inside);
            // Formed from a model and a base on the way: the same keys.
            let base: Vec<f32> = values.iter().map(|v| v * 0.25).collect();
            let model: Vec<f32> = values.iter().zip(&base).map(|(v, b)| v + b).collect();
            let diff: Vec<f32> = model.iter().zip(&base).map(|(m, b)| m - b).collect();
            let (md, hd) = compact::<f32>(&diff, None, lo, width, &mut a);
            let (mc, hc) = compact(&model, Some(&base), lo, width, &mut b);
            assert_eq!((md, hd), (mc, hc), "len {len}");
            assert_eq!(a[..md], b[..mc], "len {len}");
            let (mw, hw) = compact_any(&model, Some(&base), lo, width, &mut b);
            assert_eq!((md, hd), (mw, hw), "len {len}");
            assert_eq!(a[..md], b[..mw], "len {len}");
        }
        // bf16 bit patterns, with brackets low, middle and at the top of
        // the range (where the vector loop's shifted bounds are largest).
        for (lo, width) in [(0u32, 32u32), (0x3c20, 9), (0x7f70, MAX_BRACKET)] {
            for len in [0usize, 15, 16, 33, 4096] {
                let mut gen = || -> Vec<u16> {
                    (0..len)
                        .map(|_| {
                            let r = lcg(&mut s) as u32;
                            let m = (lo + r % (width + 8)).saturating_sub(4) as u16;
                            m | (r as u16 & 0x8000)
                        })
                        .collect()
                };
                let (model, base) = (gen(), gen());
                let mut a = vec![0u32; len];
                let mut b = vec![0u32; len];
                let (ma, ha) = compact::<u16>(&model, Some(&base), lo, width, &mut a);
                let (mb, hb) = compact_any::<u16>(&model, Some(&base), lo, width, &mut b);
                assert_eq!((ma, ha), (mb, hb), "bf16 lo {lo:#x} len {len}");
                assert_eq!(a[..ma], b[..mb], "bf16 lo {lo:#x} len {len}");
                let (ma, ha) = compact::<u16>(&model, None, lo, width, &mut a);
                let (mb, hb) = compact_any::<u16>(&model, None, lo, width, &mut b);
                assert_eq!((ma, ha), (mb, hb), "bf16 lo {lo:#x} len {len}");
                assert_eq!(a[..ma], b[..mb], "bf16 lo {lo:#x} len {len}");
                if len == 4096 && lo > 0 {
                    // The draws land inside, below and above the bracket.
                    assert!(ma > 0 && ha > 0 && ma + (ha as usize) < len, "lo {lo:#x}");
                }
            }
        }
    }
}
