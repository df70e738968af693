//! Feature correlations, accumulated over batches.
//!
//! The sums are centred: each batch contributes its own mean and its
//! co-moments about that mean, merged into the running ones with Chan,
//! Golub and LeVeque's pairwise update. The one-pass `E[xy] - E[x]E[y]`
//! cancels catastrophically when a feature's mean is large against its
//! spread (features at 10⁴ ± 10⁻³ come out with correlations wrong in the
//! third digit, even with f64 sums); the centred sums keep them exact to
//! 10⁻⁹.

use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Running mean and co-moments for the Pearson correlation of `n`
/// features: O(n²) memory, any number of samples, f64.
#[derive(Clone, Debug)]
pub struct CorrAccum {
    n: usize,
    count: u64,
    mean: Array1<f64>,
    /// `sum_r (x_ri - mean_i)(x_rj - mean_j)`, `n x n`.
    comoment: Array2<f64>,
}

impl CorrAccum {
    /// An empty accumulator over `n` features.
    pub fn new(n: usize) -> CorrAccum {
        CorrAccum {
            n,
            count: 0,
            mean: Array1::zeros(n),
            comoment: Array2::zeros((n, n)),
        }
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.n
    }

    /// Add `rows` samples, row-major `rows x n`.
    pub fn add(&mut self, x: &[f32], rows: usize) {
        let x =
            ArrayView2::from_shape((rows, self.n), &x[..rows * self.n]).expect("rows x n values");
        self.add_batch(x);
    }

    /// Add a batch `[rows, n]`.
    pub fn add_batch(&mut self, x: ArrayView2<'_, f32>) {
        let rows = x.nrows();
        if rows == 0 {
            return;
        }
        let x = x.mapv(f64::from);
        let batch_mean = x.mean_axis(Axis(0)).expect("a non-empty batch");
        let centred = &x - &batch_mean;
        let batch_comoment = centred.t().dot(&centred);
        let (na, nb) = (self.count as f64, rows as f64);
        let total = na + nb;
        let delta = &batch_mean - &self.mean;
        // C = C_a + C_b + δδᵀ · n_a n_b / n
        let d = delta.view().insert_axis(Axis(1));
        let outer = d.dot(&d.t());
        self.comoment += &batch_comoment;
        self.comoment.scaled_add(na * nb / total, &outer);
        self.mean.scaled_add(nb / total, &delta);
        self.count += rows as u64;
    }

    /// Mean of each feature.
    pub fn means(&self) -> Vec<f64> {
        self.mean.to_vec()
    }

    /// Covariance of features `i` and `j` (population).
    pub fn cov(&self, i: usize, j: usize) -> f64 {
        self.comoment[[i, j]] / self.count.max(1) as f64
    }

    /// Standard deviation of each feature (population).
    pub fn stds(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.cov(i, i).max(0.0).sqrt())
            .collect()
    }

    /// The `n x n` correlation matrix. A feature that never varies has
    /// correlation 0 with everything, except another constant feature with
    /// the same value, which it equals (correlation 1): two dead units are
    /// interchangeable.
    pub fn correlation(&self) -> Vec<f64> {
        let n = self.n;
        let mean = &self.mean;
        let std = self.stds();
        let scale: Vec<f64> = mean.iter().map(|m| m.abs().max(1.0)).collect();
        let constant: Vec<bool> = (0..n).map(|i| std[i] <= 1e-9 * scale[i]).collect();
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = if constant[i] || constant[j] {
                    let same = constant[i]
                        && constant[j]
                        && (mean[i] - mean[j]).abs() <= 1e-6 * scale[i].max(scale[j]);
                    f64::from(u8::from(same))
                } else {
                    (self.cov(i, j) / (std[i] * std[j])).clamp(-1.0, 1.0)
                };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_pearson_and_batching_changes_nothing() {
        let x: Vec<f32> = (0..60).map(|i| ((i * 37 % 11) as f32) - 3.0).collect();
        // 20 samples of 3 features; feature 2 = 2 * feature 0 + 1.
        let mut x = x;
        for r in 0..20 {
            x[r * 3 + 2] = 2.0 * x[r * 3] + 1.0;
        }
        let mut a = CorrAccum::new(3);
        a.add(&x, 20);
        let mut b = CorrAccum::new(3);
        b.add(&x[..21], 7);
        b.add(&x[21..], 13);
        let ca = a.correlation();
        let cb = b.correlation();
        for (p, q) in ca.iter().zip(&cb) {
            assert!((p - q).abs() < 1e-12);
        }
        assert!((ca[2] - 1.0).abs() < 1e-9, "{}", ca[2]);
        // direct Pearson for (0, 1)
        let col = |k: usize| (0..20).map(|r| f64::from(x[r * 3 + k])).collect::<Vec<_>>();
        let (u, v) = (col(0), col(1));
        let mu = u.iter().sum::<f64>() / 20.0;
        let mv = v.iter().sum::<f64>() / 20.0;
        let cov: f64 = u.iter().zip(&v).map(|(a, b)| (a - mu) * (b - mv)).sum();
        let su: f64 = u.iter().map(|a| (a - mu) * (a - mu)).sum::<f64>().sqrt();
        let sv: f64 = v.iter().map(|b| (b - mv) * (b - mv)).sum::<f64>().sqrt();
        assert!((ca[1] - cov / (su * sv)).abs() < 1e-9);
        assert!((ca[3] - ca[1]).abs() < 1e-12, "symmetric");
    }

    /// The one-pass formula this module used to use: `E[xy] - E[x]E[y]`
    /// from f64 sums.
    fn one_pass_correlation(x: &[f32], rows: usize, n: usize) -> Vec<f64> {
        let mut sum = vec![0.0f64; n];
        let mut sum_xy = vec![0.0f64; n * n];
        for r in 0..rows {
            let row = &x[r * n..(r + 1) * n];
            for i in 0..n {
                sum[i] += f64::from(row[i]);
                for j in 0..n {
                    sum_xy[i * n + j] += f64::from(row[i]) * f64::from(row[j]);
                }
            }
        }
        let c = rows as f64;
        let cov = |i: usize, j: usize| sum_xy[i * n + j] / c - (sum[i] / c) * (sum[j] / c);
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let d = (cov(i, i) * cov(j, j)).max(0.0).sqrt();
                out[i * n + j] = if d > 0.0 { cov(i, j) / d } else { 0.0 };
            }
        }
        out
    }

    /// Correlations straight from the definition, two passes over exact
    /// f64 values.
    fn two_pass_correlation(x: &[f32], rows: usize, n: usize) -> Vec<f64> {
        let col = |k: usize| {
            (0..rows)
                .map(|r| f64::from(x[r * n + k]))
                .collect::<Vec<_>>()
        };
        let cols: Vec<Vec<f64>> = (0..n).map(col).collect();
        let means: Vec<f64> = cols
            .iter()
            .map(|c| c.iter().sum::<f64>() / rows as f64)
            .collect();
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let dot = |a: usize, b: usize| {
                    cols[a]
                        .iter()
                        .zip(&cols[b])
                        .map(|(p, q)| (p - means[a]) * (q - means[b]))
                        .sum::<f64>()
                };
                out[i * n + j] = dot(i, j) / (dot(i, i) * dot(j, j)).sqrt();
            }
        }
        out
    }

    #[test]
    fn a_large_mean_keeps_its_correlation_where_one_pass_loses_it() {
        // Features at 10⁴ with a spread of about 0.001, every value exact
        // in f32 (multiples of 2⁻¹⁰, f32's step near 10⁴):
        // f0 = 10⁴ + u, f1 = 10⁴ + u + v, f2 = 10⁴ - u, u, v independent.
        let mut rng = crate::mlp::Rng::new(17);
        let rows = 20_000;
        let step = 1.0 / 1024.0;
        let mut x = Vec::with_capacity(rows * 3);
        for _ in 0..rows {
            let u = (rng.below(5) as f32 - 2.0) * step;
            let v = (rng.below(5) as f32 - 2.0) * step;
            x.extend([1e4 + u, 1e4 + u + v, 1e4 - u]);
        }
        let exact = two_pass_correlation(&x, rows, 3);
        assert!((exact[1] - 0.5f64.sqrt()).abs() < 0.02, "{}", exact[1]);
        assert!((exact[2] + 1.0).abs() < 1e-12, "{}", exact[2]);

        let mut acc = CorrAccum::new(3);
        for batch in x.chunks(256 * 3) {
            acc.add(batch, batch.len() / 3);
        }
        let stable = acc.correlation();
        let one_pass = one_pass_correlation(&x, rows, 3);
        let worst = |c: &[f64]| {
            c.iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max)
        };
        assert!(worst(&stable) < 1e-9, "stable {stable:?} exact {exact:?}");
        assert!(
            worst(&one_pass) > 1e-3,
            "the one-pass formula was expected to lose digits here: {one_pass:?}"
        );
        // Means and spreads come out right too.
        let m = acc.means();
        assert!((m[0] + m[2] - 2e4).abs() < 1e-9, "{m:?}");
        let s = acc.stds();
        assert!(
            (s[0] - s[2]).abs() < 1e-12
                && (s[0] / (2f64.sqrt() * f64::from(step)) - 1.0).abs() < 0.05,
            "{s:?}"
        );
    }
}
