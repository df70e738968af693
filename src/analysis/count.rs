//! Turning one chunk's [`Parts`] into counts and sums.
//!
//! Everything here is arithmetic over what the method's kernel handed out:
//! which entries it keeps, and what it combines. The sign rule is the
//! merge's: an entry agrees with the elected sign when it is `> 0` and the
//! sum is `>= 0`, or `< 0` and the sum is `< 0` (a zero sum counts as `+`;
//! zeros agree with nothing and oppose nothing; a NaN agrees with nothing
//! and opposes everything).

use super::Stats;
use crate::merge::{Parts, Vote};

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

/// [`add_chunk`], one L1-sized step at a time: every sum of a step is
/// taken while its entries are in cache.
#[inline(always)]
fn add_body(raw: &[f32], parts: &Parts, with_raw: bool, st: &mut Stats) {
    let n = st.n();
    let len = parts.len;
    let votes = match parts.vote {
        Vote::Weighted => &parts.weighted,
        Vote::Kept => &parts.kept,
    };
    let mut sum = [0f32; SUB];
    let mut pos = [0u32; SUB];
    let mut neg = [0u32; SUB];
    let mut g = 0;
    while g < len {
        let l = SUB.min(len - g);
        let at = |i: usize| i * len + g..i * len + g + l;
        if with_raw {
            for i in 0..n {
                for j in i..n {
                    let v = lane_dot(&raw[at(i)], &raw[at(j)]);
                    st.dots[i][j] += v;
                    if i != j {
                        st.dots[j][i] += v;
                    }
                }
                st.nonzero[i] += count_nonzero(&raw[at(i)]);
            }
        }
        for i in 0..n {
            let k = &parts.kept[at(i)];
            st.kept[i] += count_nonzero(k);
            st.kept_energy[i] += lane_dot(k, k);
        }
        let (sum, pos, neg) = (&mut sum[..l], &mut pos[..l], &mut neg[..l]);
        sum.fill(0.0);
        pos.fill(0);
        neg.fill(0);
        for i in 0..n {
            let v = &votes[at(i)];
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
        g += l;
    }
}

/// Dot product of two short slices (at most [`SUB`] entries): sixteen f32
/// lanes, so the loop vectorises, summed in f64 at the end (the relative
/// error stays near 1e-6, plenty for norms and cosines on screen).
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f64 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..L {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f64 = acc.iter().map(|&v| f64::from(v)).sum();
    for (x, y) in ra.iter().zip(rb) {
        s += f64::from(x * y);
    }
    s
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
        let up = u32::from(s >= 0.0).wrapping_neg();
        let down = u32::from(s < 0.0).wrapping_neg();
        let nz = *p + *q;
        // NaNs among `neg` never agree; the merge's `x < 0` excludes them,
        // and a NaN vote makes the sum NaN, which elects neither sign.
        let a = (*p & up) | (*q & down);
        *q = u32::from(nz != a);
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
