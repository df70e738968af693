//! Feature correlations, accumulated over batches.

/// Running sums for the Pearson correlation of `n` features: O(n²) memory,
/// any number of samples, f64 sums.
#[derive(Clone, Debug)]
pub struct CorrAccum {
    n: usize,
    count: u64,
    sum: Vec<f64>,
    /// Upper triangle used; stored full for simple indexing.
    sum_xy: Vec<f64>,
}

impl CorrAccum {
    /// An empty accumulator over `n` features.
    pub fn new(n: usize) -> CorrAccum {
        CorrAccum {
            n,
            count: 0,
            sum: vec![0.0; n],
            sum_xy: vec![0.0; n * n],
        }
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.n
    }

    /// Add `rows` samples, row-major `rows x n`.
    pub fn add(&mut self, x: &[f32], rows: usize) {
        let n = self.n;
        let mut row = vec![0.0f64; n];
        for r in 0..rows {
            for (d, s) in row.iter_mut().zip(&x[r * n..(r + 1) * n]) {
                *d = f64::from(*s);
            }
            for i in 0..n {
                let xi = row[i];
                self.sum[i] += xi;
                if xi == 0.0 {
                    continue; // post-ReLU features are often exactly zero
                }
                let out = &mut self.sum_xy[i * n..(i + 1) * n];
                for j in i..n {
                    out[j] += xi * row[j];
                }
            }
        }
        self.count += rows as u64;
    }

    /// Mean of each feature.
    pub fn means(&self) -> Vec<f64> {
        let c = self.count.max(1) as f64;
        self.sum.iter().map(|s| s / c).collect()
    }

    /// Covariance of features `i` and `j` (population).
    pub fn cov(&self, i: usize, j: usize) -> f64 {
        let c = self.count.max(1) as f64;
        let (a, b) = if i <= j { (i, j) } else { (j, i) };
        self.sum_xy[a * self.n + b] / c - (self.sum[a] / c) * (self.sum[b] / c)
    }

    /// Standard deviation of each feature (population).
    pub fn stds(&self) -> Vec<f64> {
        let n = self.n;
        let c = self.count.max(1) as f64;
        (0..n)
            .map(|i| {
                let m = self.sum[i] / c;
                (self.sum_xy[i * n + i] / c - m * m).max(0.0).sqrt()
            })
            .collect()
    }

    /// The `n x n` correlation matrix. A feature that never varies has
    /// correlation 0 with everything, except another constant feature with
    /// the same value, which it equals (correlation 1): two dead units are
    /// interchangeable.
    pub fn correlation(&self) -> Vec<f64> {
        let n = self.n;
        let c = self.count.max(1) as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / c).collect();
        let cov = |i: usize, j: usize| {
            let (a, b) = if i <= j { (i, j) } else { (j, i) };
            self.sum_xy[a * n + b] / c - mean[a] * mean[b]
        };
        let std: Vec<f64> = (0..n).map(|i| cov(i, i).max(0.0).sqrt()).collect();
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
                    (cov(i, j) / (std[i] * std[j])).clamp(-1.0, 1.0)
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
}
