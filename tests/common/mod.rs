//! Helpers shared by the parity tests.

use std::collections::BTreeMap;

/// Positions where some model's task vector has a non-zero magnitude that
/// also occurs elsewhere in the same tensor.
pub fn tied_positions(models: &[&[f32]], base: Option<&[f32]>) -> Vec<bool> {
    let n = models.first().map_or(0, |m| m.len());
    let mut tied = vec![false; n];
    for m in models {
        let mags: Vec<u32> = (0..n)
            .map(|i| (m[i] - base.map_or(0.0, |b| b[i])).abs().to_bits())
            .collect();
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for &x in &mags {
            *counts.entry(x).or_default() += 1;
        }
        for (t, x) in tied.iter_mut().zip(&mags) {
            if *x != 0 && counts[x] > 1 {
                *t = true;
            }
        }
    }
    tied
}
