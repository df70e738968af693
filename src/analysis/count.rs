//! Turning one chunk's [`Parts`] (or [`Rule`]s) into counts and sums.
//!
//! Everything here is arithmetic over what the method's kernel handed out:
//! which entries it keeps, and what it combines. Parts written out are
//! counted one L1-sized step at a time; rules are applied entry by entry
//! with the merge's functions and counted by the same step (or, for up to
//! four models, in one loop in registers that takes the same sums in the
//! same order), so both give the same bits. The sign rule is the
//! merge's: an entry agrees with the elected sign when it is `> 0` and the
//! sum is `>= 0`, or `< 0` and the sum is `< 0` (a zero sum counts as `+`;
//! zeros agree with nothing and oppose nothing; a NaN agrees with nothing
//! and opposes everything).

use super::Stats;
use crate::merge::{draw, trim, weigh, Keep, Lane, Parts, Rule, Vote};

/// Entries per step of the counting loops: the scratch (`3` arrays of
/// this many words) stays in L1, and every inner loop is a straight,
/// branch-free pass that vectorises.
const SUB: usize = 1024;

/// Add one chunk to `st`: `raw` holds the untrimmed task vectors
/// (model-major, `parts.len` entries per model), `parts` what the method
/// keeps and combines for the same entries. With `with_raw` false the
/// sums over the raw task vectors alone (`dots`, `nonzero`) are left
/// alone (the caller has them already).
pub(super) fn add_chunk(raw: &[f32], parts: &Parts, with_raw: bool, st: &mut Stats) {
    crate::simd::dispatch!(add_body(raw, parts, with_raw, st));
}

/// [`add_chunk`], one L1-sized step at a time.
#[inline(always)]
fn add_body(raw: &[f32], parts: &Parts, with_raw: bool, st: &mut Stats) {
    let len = parts.len;
    let votes = match parts.vote {
        Vote::Weighted => &parts.weighted,
        Vote::Kept => &parts.kept,
    };
    let mut g = 0;
    while g < len {
        let l = SUB.min(len - g);
        add_step(
            Step {
                raw,
                kept: &parts.kept,
                votes,
                stride: len,
                off: g,
                len: l,
            },
            with_raw,
            st,
        );
        g += l;
    }
}

/// One L1-sized step of model-major vectors: model `i`'s entries are
/// `[i * stride + off, i * stride + off + len)`.
#[derive(Clone, Copy)]
struct Step<'a> {
    raw: &'a [f32],
    kept: &'a [f32],
    votes: &'a [f32],
    stride: usize,
    off: usize,
    len: usize,
}

/// Add one step (at most [`SUB`] entries) to `st`: every sum of the step
/// is taken while its entries are in cache.
#[inline(always)]
fn add_step(s: Step, with_raw: bool, st: &mut Stats) {
    let n = st.n();
    let l = s.len.min(SUB);
    let at = |i: usize| i * s.stride + s.off..i * s.stride + s.off + l;
    if with_raw {
        for i in 0..n {
            for j in i..n {
                let v = lane_dot(&s.raw[at(i)], &s.raw[at(j)]);
                st.dots[i][j] += v;
                if i != j {
                    st.dots[j][i] += v;
                }
            }
            st.nonzero[i] += count_nonzero(&s.raw[at(i)]);
        }
    }
    for i in 0..n {
        let k = &s.kept[at(i)];
        st.kept[i] += count_nonzero(k);
        st.kept_energy[i] += lane_dot(k, k);
    }
    let mut sum = [0f32; SUB];
    let mut pos = [0u32; SUB];
    let mut neg = [0u32; SUB];
    let (sum, pos, neg) = (&mut sum[..l], &mut pos[..l], &mut neg[..l]);
    for i in 0..n {
        let v = &s.votes[at(i)];
        for (((&x, s), p), q) in v
            .iter()
            .zip(sum.iter_mut())
            .zip(pos.iter_mut())
            .zip(neg.iter_mut())
        {
            *s += x;
            *p += u32::from(x > 0.0);
            // Neither zero nor positive: negative, or NaN.
            *q += u32::from(x != 0.0) - u32::from(x > 0.0);
        }
    }
    tally(sum, pos, neg, &mut st.agree, &mut st.conflicts);
}

/// Dot product of two short slices (at most [`SUB`] entries): sixteen f32
/// lanes, so the loop vectorises, summed in f64 at the end (the relative
/// error stays near 1e-6, plenty for norms and cosines on screen).
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..L {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = lanes_f64(&acc);
    for (x, y) in ra.iter().zip(rb) {
        s += f64::from(x * y);
    }
    s
}

/// Lanes of [`lane_dot`]'s sums.
const L: usize = 16;

/// [`lane_dot`]'s lanes summed in f64, in order.
#[inline(always)]
fn lanes_f64(acc: &[f32; L]) -> f64 {
    acc.iter().map(|&v| f64::from(v)).sum()
}

/// Most models [`add_rules`] takes.
pub(super) const RULES_MAX: usize = 8;

/// Working memory of [`add_rules`]: one L1-sized step of every model's
/// task vector, kept entries and votes (model-major, [`SUB`] apart).
#[derive(Default)]
pub(super) struct Scratch {
    raw: Vec<f32>,
    kept: Vec<f32>,
    votes: Vec<f32>,
}

/// [`add_chunk`] for one piece whose parts the kernel gave as rules
/// ([`crate::merge::Kernel::rules`]), with the merge's own functions
/// ([`trim`], [`draw`], [`weigh`]) and the sums [`add_chunk`] takes on the
/// same parts written out, so the same bits. `models` and `base` are the
/// piece's inputs, `start` its first flat index; at most [`RULES_MAX`]
/// models. Up to [`FUSED_MAX`] models whose rules are all trims or all
/// draws go through one loop in registers ([`fused`]), the others through
/// L1-sized scratch.
pub(super) fn add_rules<E: Lane>(
    models: &[&[E]],
    base: &[E],
    start: usize,
    rules: &[Rule],
    with_raw: bool,
    scratch: &mut Scratch,
    st: &mut Stats,
) {
    let n = st.n();
    let trims = rules
        .iter()
        .take(n)
        .all(|r| matches!(r.keep, Keep::Trim(_)));
    let draws = rules
        .iter()
        .take(n)
        .all(|r| matches!(r.keep, Keep::Draw { .. }));
    if (trims || draws) && (1..=FUSED_MAX).contains(&n) && models.len() >= n && rules.len() >= n {
        macro_rules! go {
            ($n:literal) => {{
                let a = Fused::<E, $n>::new(models, base, start, rules);
                match (draws, with_raw) {
                    (false, false) => crate::simd::dispatch!(fused::<E, $n, false, false>(&a, st)),
                    (false, true) => crate::simd::dispatch!(fused::<E, $n, false, true>(&a, st)),
                    (true, false) => crate::simd::dispatch!(fused::<E, $n, true, false>(&a, st)),
                    (true, true) => crate::simd::dispatch!(fused::<E, $n, true, true>(&a, st)),
                }
            }};
        }
        match n {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            _ => go!(4),
        }
        return;
    }
    crate::simd::dispatch!(add_rules_body(
        models, base, start, rules, with_raw, scratch, st
    ));
}

/// Most models [`fused`] takes (one compiled loop per count; more go
/// through L1-sized scratch).
const FUSED_MAX: usize = 4;

/// Pairs of models (`i <= j`) of [`FUSED_MAX`] models.
const PAIRS: usize = FUSED_MAX * (FUSED_MAX + 1) / 2;

/// The inputs of [`fused`]: a piece of `N` models, all trimmed or all
/// drawn.
struct Fused<'a, E, const N: usize> {
    models: [&'a [E]; N],
    base: &'a [E],
    start: usize,
    /// Trims: the split (piece-relative, at most the piece's length) and
    /// the thresholds before and after it.
    trims: [(u32, u32, u32); N],
    /// Draws: `p` and the stream.
    draws: [(f32, crate::merge::rng::Stream); N],
    /// Rescale factor and weight.
    sw: [(f32, f32); N],
}

impl<'a, E: Lane, const N: usize> Fused<'a, E, N> {
    /// `base` at most `u32::MAX` long (a piece is).
    fn new(models: &[&'a [E]], base: &'a [E], start: usize, rules: &[Rule]) -> Self {
        let len = base.len();
        let none = crate::merge::rng::Stream::new(0, "", 0);
        Fused {
            models: std::array::from_fn(|i| &models[i][..len]),
            base,
            start,
            trims: std::array::from_fn(|i| match rules[i].keep {
                Keep::Trim(b) => (b.split.min(len) as u32, b.before, b.after),
                Keep::Draw { .. } => (0, 0, 0),
            }),
            draws: std::array::from_fn(|i| match rules[i].keep {
                Keep::Draw { p, stream } => (p, stream),
                Keep::Trim(_) => (0.0, none),
            }),
            sw: std::array::from_fn(|i| (rules[i].scale, rules[i].weight)),
        }
    }

    /// Model `i`'s entry `j` of the piece (task-vector value `d`), kept.
    #[inline(always)]
    fn kept<const DRAW: bool>(&self, i: usize, d: f32, j: usize) -> f32 {
        if DRAW {
            let (p, s) = &self.draws[i];
            draw(d, s, self.start + j, *p)
        } else {
            let (split, before, after) = self.trims[i];
            // A blend, not a branch or a table lookup.
            let past = u32::from(j as u32 >= split).wrapping_neg();
            trim(d, (before & !past) | (after & past))
        }
    }
}

/// [`add_rules`] for `N` models whose rules are all trims or all draws:
/// each step's entries sixteen at a time, every model's task vector, kept
/// entry and vote a sixteen-lane value in registers, summed as
/// [`add_step`] sums them written out (the same f32 lanes as
/// [`lane_dot`], its remainder in f64, the same vote), so the same bits.
#[inline(always)]
fn fused<E: Lane, const N: usize, const DRAW: bool, const RAW: bool>(
    a: &Fused<E, N>,
    st: &mut Stats,
) {
    let len = a.base.len();
    let mut g = 0;
    while g < len {
        let l = SUB.min(len - g);
        let full = l / L * L;
        let mut energy = [[0f32; L]; N];
        let mut dots = [[0f32; L]; PAIRS];
        let mut kept = [[0u32; L]; N];
        let mut nonzero = [[0u32; L]; N];
        // Per lane, how many entries had `k` agreeing votes: `k < 4` in
        // the byte `k` (at most 64 a step), 4 on its own.
        let mut agree = [0u32; L];
        let mut agree4 = [0u32; L];
        let mut conflicts = [0u32; L];
        let mut q = g;
        while q < g + full {
            let b = &a.base[q..q + L];
            let mut d = [[0f32; L]; N];
            let mut x = [[0f32; L]; N];
            for i in 0..N {
                let m = &a.models[i][q..q + L];
                let (sc, w) = a.sw[i];
                let (e, c, xi, di) = (&mut energy[i], &mut kept[i], &mut x[i], &mut d[i]);
                for j in 0..L {
                    let dv = m[j].f32() - b[j].f32();
                    di[j] = dv;
                    let kv = a.kept::<DRAW>(i, dv, q + j);
                    e[j] += kv * kv;
                    c[j] += u32::from(kv != 0.0);
                    xi[j] = weigh(kv, sc, w);
                    if RAW {
                        nonzero[i][j] += u32::from(dv != 0.0);
                    }
                }
            }
            if RAW {
                let mut p = 0;
                for i in 0..N {
                    for k in i..N {
                        for j in 0..L {
                            dots[p][j] += d[i][j] * d[k][j];
                        }
                        p += 1;
                    }
                }
            }
            let mut sum = [0f32; L];
            let mut pos = [0u32; L];
            let mut neg = [0u32; L];
            for xi in &x {
                for j in 0..L {
                    sum[j] += xi[j];
                    pos[j] += u32::from(xi[j] > 0.0);
                    neg[j] += u32::from(xi[j] != 0.0) - u32::from(xi[j] > 0.0);
                }
            }
            for j in 0..L {
                let (v, c) = vote(sum[j], pos[j], neg[j]);
                agree[j] += (1u32 << ((v & 3) << 3)) & u32::from(v < 4).wrapping_neg();
                if N >= 4 {
                    agree4[j] += u32::from(v == 4);
                }
                conflicts[j] += c;
            }
            q += L;
        }
        // The step's sums: the lanes in f64, then the rest one by one.
        let mut e64 = [0f64; N];
        let mut d64 = [0f64; PAIRS];
        for i in 0..N {
            e64[i] = lanes_f64(&energy[i]);
        }
        if RAW {
            for (v, lanes) in d64.iter_mut().zip(&dots) {
                *v = lanes_f64(lanes);
            }
        }
        let mut rest_kept = [0u32; N];
        let mut rest_nonzero = [0u32; N];
        for q in g + full..g + l {
            let mut d = [0f32; N];
            for i in 0..N {
                d[i] = a.models[i][q].f32() - a.base[q].f32();
                rest_nonzero[i] += u32::from(d[i] != 0.0);
            }
            if RAW {
                let mut p = 0;
                for i in 0..N {
                    for k in i..N {
                        d64[p] += f64::from(d[i] * d[k]);
                        p += 1;
                    }
                }
            }
            let (mut sum, mut pos, mut neg) = (0f32, 0u32, 0u32);
            for i in 0..N {
                let k = a.kept::<DRAW>(i, d[i], q);
                e64[i] += f64::from(k * k);
                rest_kept[i] += u32::from(k != 0.0);
                let xi = weigh(k, a.sw[i].0, a.sw[i].1);
                sum += xi;
                pos += u32::from(xi > 0.0);
                neg += u32::from(xi != 0.0) - u32::from(xi > 0.0);
            }
            let (v, c) = vote(sum, pos, neg);
            st.agree[v as usize] += 1;
            st.conflicts += u64::from(c);
        }
        let total = |v: &[u32; L]| u64::from(v.iter().sum::<u32>());
        let mut p = 0;
        for i in 0..N {
            if RAW {
                for k in i..N {
                    st.dots[i][k] += d64[p];
                    if i != k {
                        st.dots[k][i] += d64[p];
                    }
                    p += 1;
                }
                st.nonzero[i] += total(&nonzero[i]) + u64::from(rest_nonzero[i]);
            }
            st.kept[i] += total(&kept[i]) + u64::from(rest_kept[i]);
            st.kept_energy[i] += e64[i];
        }
        for (k, a) in st.agree.iter_mut().enumerate().take(N + 1).take(4) {
            *a += agree
                .iter()
                .map(|&v| u64::from((v >> (8 * k)) & 0xff))
                .sum::<u64>();
        }
        if N >= 4 {
            st.agree[4] += total(&agree4);
        }
        st.conflicts += total(&conflicts);
        g += l;
    }
}

#[inline(always)]
fn add_rules_body<E: Lane>(
    models: &[&[E]],
    base: &[E],
    start: usize,
    rules: &[Rule],
    with_raw: bool,
    scratch: &mut Scratch,
    st: &mut Stats,
) {
    let n = st.n().min(RULES_MAX).min(models.len()).min(rules.len());
    let len = base.len();
    for v in [&mut scratch.raw, &mut scratch.kept, &mut scratch.votes] {
        v.resize(n * SUB, 0.0);
    }
    let mut g = 0;
    while g < len {
        let l = SUB.min(len - g);
        for (i, r) in rules.iter().enumerate().take(n) {
            let m = &models[i][g..g + l];
            let b = &base[g..g + l];
            let at = i * SUB..i * SUB + l;
            let out = (
                &mut scratch.raw[at.clone()],
                &mut scratch.kept[at.clone()],
                &mut scratch.votes[at],
            );
            let sw = (r.scale, r.weight);
            match (r.keep, with_raw) {
                (Keep::Trim(bd), raw) => {
                    // The split, if it falls in this step, cuts it in two
                    // runs with one threshold each.
                    let s = bd.split.clamp(g, g + l) - g;
                    let (r0, r1) = out.0.split_at_mut(s);
                    let (k0, k1) = out.1.split_at_mut(s);
                    let (v0, v1) = out.2.split_at_mut(s);
                    let (t0, t1) = (bd.before, bd.after);
                    let (m0, b0, m1, b1) = (&m[..s], &b[..s], &m[s..], &b[s..]);
                    if raw {
                        fill::<E, true>(m0, b0, |_, d| trim(d, t0), sw, (r0, k0, v0));
                        fill::<E, true>(m1, b1, |_, d| trim(d, t1), sw, (r1, k1, v1));
                    } else {
                        fill::<E, false>(m0, b0, |_, d| trim(d, t0), sw, (r0, k0, v0));
                        fill::<E, false>(m1, b1, |_, d| trim(d, t1), sw, (r1, k1, v1));
                    }
                }
                (Keep::Draw { p, stream }, raw) => {
                    let at = start + g;
                    let keep = |j: usize, d: f32| draw(d, &stream, at + j, p);
                    if raw {
                        fill::<E, true>(m, b, keep, sw, out);
                    } else {
                        fill::<E, false>(m, b, keep, sw, out);
                    }
                }
            }
        }
        add_step(
            Step {
                raw: &scratch.raw,
                kept: &scratch.kept,
                votes: &scratch.votes,
                stride: SUB,
                off: 0,
                len: l,
            },
            with_raw,
            st,
        );
        g += l;
    }
}

/// One model's task vector (with `RAW`), kept entries (as `keep` leaves
/// each, given its index in the run) and votes for a run of a step.
#[inline(always)]
fn fill<E: Lane, const RAW: bool>(
    m: &[E],
    b: &[E],
    keep: impl Fn(usize, f32) -> f32,
    (s, w): (f32, f32),
    (raw, kept, votes): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let len = m.len().min(b.len()).min(kept.len()).min(votes.len());
    let raw = if RAW { &mut raw[..len] } else { &mut raw[..0] };
    let (m, b, kept, votes) = (&m[..len], &b[..len], &mut kept[..len], &mut votes[..len]);
    for j in 0..len {
        let d = m[j].f32() - b[j].f32();
        if RAW {
            raw[j] = d;
        }
        let k = keep(j, d);
        kept[j] = k;
        votes[j] = weigh(k, s, w);
    }
}

/// One entry's vote, as [`tally`] counts it: how many votes agree with
/// the elected sign (the sign of `sum`), and 1 if a non-zero one does
/// not. `pos` votes are `> 0`, `neg` neither zero nor `> 0`.
#[inline(always)]
fn vote(sum: f32, pos: u32, neg: u32) -> (u32, u32) {
    let up = u32::from(sum >= 0.0).wrapping_neg();
    let down = u32::from(sum < 0.0).wrapping_neg();
    let a = (pos & up) | (neg & down);
    (a, u32::from(pos + neg != a))
}

/// Entries that are not zero (NaN counts as not zero); at most [`SUB`].
#[inline(always)]
fn count_nonzero(v: &[f32]) -> u64 {
    u64::from(v.iter().map(|&x| u32::from(x != 0.0)).sum::<u32>())
}

/// Per entry of one step: `sum` the summed votes, `pos` how many votes
/// are `> 0`, `neg` how many are neither zero nor `> 0` (negative or
/// NaN). Adds to `agree[k]` the entries where exactly `k` votes agree
/// with the elected sign and to `conflicts` the entries where a non-zero
/// vote does not. Clobbers `pos` and `neg`.
#[inline(always)]
fn tally(sum: &[f32], pos: &mut [u32], neg: &mut [u32], agree: &mut [u64], conflicts: &mut u64) {
    for ((&s, p), q) in sum.iter().zip(pos.iter_mut()).zip(neg.iter_mut()) {
        // NaNs among `neg` never agree; the merge's `x < 0` excludes them,
        // and a NaN vote makes the sum NaN, which elects neither sign.
        let (a, c) = vote(s, *p, *q);
        *q = c;
        *p = a;
    }
    for (k, a) in agree.iter_mut().enumerate() {
        let k = k as u32;
        *a += u64::from(pos.iter().map(|&c| u32::from(c == k)).sum::<u32>());
    }
    *conflicts += u64::from(neg.iter().sum::<u32>());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(kept: Vec<Vec<f32>>, w: &[f32], vote: Vote) -> (Vec<f32>, Parts) {
        let len = kept[0].len();
        let raw: Vec<f32> = kept.concat();
        let weighted: Vec<f32> = kept
            .iter()
            .zip(w)
            .flat_map(|(k, &w)| k.iter().map(move |x| x * w))
            .collect();
        let p = Parts {
            len,
            kept: raw.clone(),
            weighted,
            weights: w.to_vec(),
            tied: vec![0; w.len()],
            vote,
        };
        (raw, p)
    }

    #[test]
    fn counts_agreement_by_hand() {
        // p0: +,+ agree 2 ; p1: +,- sum>0: one agrees, conflict ;
        // p2: 0,0 agree 0 ; p3: -,- agree 2.
        let (raw, p) = parts(
            vec![vec![1.0, 2.0, 0.0, -1.0], vec![1.0, -1.0, 0.0, -3.0]],
            &[1.0, 1.0],
            Vote::Weighted,
        );
        let mut st = Stats::new(2);
        st.params = 4;
        add_chunk(&raw, &p, true, &mut st);
        st.finish();
        assert_eq!(st.agree, vec![1, 1, 2]);
        assert_eq!(st.conflicts, 1);
        assert_eq!(st.kept, vec![3, 3]);
        assert_eq!(st.nonzero, vec![3, 3]);
        let want = 2.0 / (6f64.sqrt() * 11f64.sqrt());
        assert!((st.cosines[0][1] - want).abs() < 1e-9);
    }

    #[test]
    fn the_vote_decides_the_elected_sign() {
        // Weighted: 1 - 3 + 0.5 < 0, only model 1 agrees. Kept:
        // 1 - 1 + 0.5 >= 0, models 0 and 2 agree.
        for (vote, agreeing) in [(Vote::Weighted, 1), (Vote::Kept, 2)] {
            let (raw, p) = parts(
                vec![vec![1.0], vec![-1.0], vec![0.5]],
                &[1.0, 3.0, 1.0],
                vote,
            );
            let mut st = Stats::new(3);
            add_chunk(&raw, &p, true, &mut st);
            let mut want = vec![0; 4];
            want[agreeing] = 1;
            assert_eq!(st.agree, want, "{vote:?}");
            assert_eq!(st.conflicts, 1);
        }
    }

    /// The rules' counting (one loop in registers for up to four models,
    /// L1 scratch past that) gives the bits `add_chunk` gives on the same
    /// parts written out with the merge's functions: every model count,
    /// trims split inside a step, draws, kept-whole and dropped models,
    /// lengths that leave a remainder, with and without the raw sums.
    #[test]
    fn rules_count_as_written_out_parts() {
        use crate::merge::{rng::Stream, Bounds};
        let mut s = 9u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 33) as u32
        };
        for n in 1..=5 {
            for len in [1, 17, 1024, 2500, 16_384 + 7] {
                // bf16 patterns over a wide range of magnitudes (f64 sums
                // that depend on their order), models a few units in the
                // last place away (ties at any cut-off).
                let base: Vec<u16> = (0..len)
                    .map(|_| (((0x38 + next() % 24) << 8) | (next() & 0x80ff)) as u16)
                    .collect();
                let models: Vec<Vec<u16>> = (0..n)
                    .map(|_| base.iter().map(|&b| b ^ (next() % 16) as u16).collect())
                    .collect();
                let refs: Vec<&[u16]> = models.iter().map(Vec::as_slice).collect();
                let start = 12_345;
                let trim_of = |i: usize| Bounds {
                    split: [0, len / 3, len, 1030, len / 2][i % 5],
                    before: 0x3b00_0000 + (i as u32) * 0x8_0000,
                    after: 0x3b00_0001 + (i as u32) * 0x8_0000,
                };
                let sets: Vec<Vec<Keep>> = vec![
                    (0..n).map(|i| Keep::Trim(trim_of(i))).collect(),
                    (0..n)
                        .map(|i| Keep::Draw {
                            p: 0.2 + 0.15 * i as f32,
                            stream: Stream::new(3, "t", i),
                        })
                        .collect(),
                    // Draws beside a model kept whole and one dropped.
                    (0..n)
                        .map(|i| match i {
                            0 => Keep::Trim(Bounds {
                                split: len,
                                before: 0,
                                after: 0,
                            }),
                            1 => Keep::Trim(Bounds {
                                split: 0,
                                before: u32::MAX,
                                after: u32::MAX,
                            }),
                            _ => Keep::Draw {
                                p: 0.5,
                                stream: Stream::new(4, "t", i),
                            },
                        })
                        .collect(),
                ];
                for keeps in sets {
                    let rules: Vec<Rule> = keeps
                        .iter()
                        .enumerate()
                        .map(|(i, &keep)| Rule {
                            keep,
                            scale: [1.0, 1.25, 0.5, 3.0, 1.0][i],
                            weight: [1.0, -0.5, 2.0, 0.75, 1.5][i],
                            tied: 0,
                        })
                        .collect();
                    // The parts written out.
                    let mut p = Parts::default();
                    p.reset(n, len);
                    let mut raw = vec![0f32; n * len];
                    for i in 0..n {
                        for j in 0..len {
                            let d = refs[i][j].f32() - base[j].f32();
                            let k = rules[i].keep.kept(d, j, start + j);
                            raw[i * len + j] = d;
                            p.kept[i * len + j] = k;
                            p.weighted[i * len + j] = weigh(k, rules[i].scale, rules[i].weight);
                        }
                    }
                    for with_raw in [false, true] {
                        let mut want = Stats::new(n);
                        add_chunk(&raw, &p, with_raw, &mut want);
                        let mut got = Stats::new(n);
                        let mut scratch = Scratch::default();
                        add_rules(
                            &refs,
                            &base,
                            start,
                            &rules,
                            with_raw,
                            &mut scratch,
                            &mut got,
                        );
                        assert_eq!(got, want, "n={n} len={len} {keeps:?} raw={with_raw}");
                    }
                }
            }
        }
    }

    #[test]
    fn nan_votes_agree_with_nothing() {
        let (raw, p) = parts(
            vec![vec![f32::NAN, 1.0], vec![1.0, -2.0]],
            &[1.0, 1.0],
            Vote::Weighted,
        );
        let mut st = Stats::new(2);
        add_chunk(&raw, &p, true, &mut st);
        // entry 0: the sum is NaN, nobody agrees, both are conflicts;
        // entry 1: sum -1, model 1 agrees, model 0 opposes.
        assert_eq!(st.agree, vec![1, 1, 0]);
        assert_eq!(st.conflicts, 2);
    }
}
