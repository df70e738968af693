//! Feature matchings: which features of which models become one merged
//! feature, and the merge/unmerge matrices that follow from it.

/// A matching of the features of `N` models (model `m` has `sizes[m]`
/// features) onto `n_out` merged features.
///
/// `assign[m][f]` is the merged feature that feature `f` of model `m` goes
/// to. Every input feature goes to exactly one merged feature and every
/// merged feature has at least one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matching {
    /// Merged features.
    pub n_out: usize,
    /// `assign[m][f]`: the merged feature that feature `f` of model `m`
    /// goes to.
    pub assign: Vec<Vec<usize>>,
}

impl Matching {
    /// Members of each merged feature, over all models.
    pub fn cluster_sizes(&self) -> Vec<usize> {
        let mut s = vec![0; self.n_out];
        for a in &self.assign {
            for &c in a {
                s[c] += 1;
            }
        }
        s
    }

    /// Merge matrix of model `m`, `n_out x sizes[m]` row-major: merged
    /// feature `c` is the mean of its members over all models, so
    /// `z = sum_m M_m x_m`.
    pub fn merge_matrix(&self, m: usize) -> Vec<f32> {
        self.merge_matrix_scaled(m, None)
    }

    /// Unmerge matrix of model `m`, `sizes[m] x n_out`: feature `f` of model
    /// `m` is read back as its merged feature, `x_m ≈ U_m z`.
    pub fn unmerge_matrix(&self, m: usize) -> Vec<f32> {
        self.unmerge_matrix_scaled(m, None)
    }

    /// Merge matrix with members measured in units of `scale[f]` (> 0):
    /// merged feature `c` is the mean of `x_f / scale[f]`. Matched features
    /// are correlated, not equal in size; averaging them in their own units
    /// and reading each back at its own scale keeps a feature that is an
    /// exact multiple of its partner exact (ReLU commutes with positive
    /// scaling). `None`: all scales 1.
    pub fn merge_matrix_scaled(&self, m: usize, scale: Option<&[f32]>) -> Vec<f32> {
        let sizes = self.cluster_sizes();
        let d = self.assign[m].len();
        let mut out = vec![0.0; self.n_out * d];
        for (f, &c) in self.assign[m].iter().enumerate() {
            let s = scale.map_or(1.0, |s| s[f]);
            out[c * d + f] = 1.0 / (sizes[c] as f32 * s);
        }
        out
    }

    /// Unmerge matrix matching [`Matching::merge_matrix_scaled`]: feature
    /// `f` reads `scale[f]` times its merged feature.
    pub fn unmerge_matrix_scaled(&self, m: usize, scale: Option<&[f32]>) -> Vec<f32> {
        let d = self.assign[m].len();
        let mut out = vec![0.0; d * self.n_out];
        for (f, &c) in self.assign[m].iter().enumerate() {
            out[f * self.n_out + c] = scale.map_or(1.0, |s| s[f]);
        }
        out
    }
}

/// Index of model and feature for a joint index.
fn owners(sizes: &[usize]) -> Vec<(usize, usize)> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(m, &d)| (0..d).map(move |f| (m, f)))
        .collect()
}

/// Penalty that puts disallowed pairs behind every allowed one without
/// excluding them (so the greedy loop always finishes).
const PENALTY: f64 = 1e6;

/// ZipIt! greedy matching over the joint correlation matrix `corr`
/// (`F x F`, `F = sum(sizes)`, features of model 0 first), down to `n_out`
/// merged features.
///
/// Repeatedly merges the most correlated pair of current groups, within a
/// model or across models. After a merge the new group's correlation with
/// any other group is `alpha * min(...)` of the two merged groups' (α, the
/// paper's repeated matching: with α = 0 a merged group is only merged again
/// when nothing else is left). A merge whose two groups both contain
/// features of some model is a same-model merge; each model allows
/// `floor(beta * sizes[m])` of them (β, the same-model budget: β = 0 means
/// only cross-model merges while any remain). Ties go to the lowest index
/// pair, so the result is deterministic.
pub fn zipit(corr: &[f64], sizes: &[usize], n_out: usize, alpha: f64, beta: f64) -> Matching {
    let f_total: usize = sizes.iter().sum();
    let n_out = n_out.clamp(1, f_total.max(1));
    let own = owners(sizes);
    let n_models = sizes.len();
    let mut score: Vec<f64> = corr.to_vec();
    for i in 0..f_total {
        score[i * f_total + i] = f64::NEG_INFINITY;
    }
    // Group membership: which models each active group touches.
    let mut models_of: Vec<Vec<bool>> = own
        .iter()
        .map(|&(m, _)| (0..n_models).map(|k| k == m).collect())
        .collect();
    let mut parent: Vec<usize> = (0..f_total).collect();
    let mut active: Vec<bool> = vec![true; f_total];
    let mut budget: Vec<i64> = sizes
        .iter()
        .map(|&d| (beta.max(0.0) * d as f64).floor() as i64)
        .collect();
    let mut groups = f_total;
    while groups > n_out {
        let mut best: Option<(f64, usize, usize)> = None;
        for i in 0..f_total {
            if !active[i] {
                continue;
            }
            for j in i + 1..f_total {
                if !active[j] {
                    continue;
                }
                let mut s = score[i * f_total + j];
                let shared = (0..n_models).any(|m| models_of[i][m] && models_of[j][m]);
                if shared {
                    let ok = (0..n_models)
                        .filter(|&m| models_of[i][m] && models_of[j][m])
                        .all(|m| budget[m] > 0);
                    if !ok {
                        s -= PENALTY;
                    }
                }
                if best.is_none_or(|b| s > b.0) {
                    best = Some((s, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else { break };
        for m in 0..n_models {
            if models_of[i][m] && models_of[j][m] {
                budget[m] -= 1;
            }
            models_of[i][m] |= models_of[j][m];
        }
        active[j] = false;
        parent[j] = i;
        for k in 0..f_total {
            if !active[k] || k == i {
                continue;
            }
            let a = score[i * f_total + k];
            let b = score[j * f_total + k];
            let low = a.min(b);
            let new = if alpha > 0.0 {
                alpha * low
            } else {
                low - PENALTY
            };
            score[i * f_total + k] = new;
            score[k * f_total + i] = new;
        }
        groups -= 1;
    }
    // Resolve groups to merged-feature indices, in order of first member.
    let root = |mut x: usize| {
        while parent[x] != x {
            x = parent[x];
        }
        x
    };
    let mut index = vec![usize::MAX; f_total];
    let mut next = 0;
    let mut assign: Vec<Vec<usize>> = sizes.iter().map(|&d| vec![0; d]).collect();
    for (g, &(m, f)) in own.iter().enumerate() {
        let r = root(g);
        if index[r] == usize::MAX {
            index[r] = next;
            next += 1;
        }
        assign[m][f] = index[r];
    }
    Matching {
        n_out: next,
        assign,
    }
}

/// Permutation matching (Git Re-Basin, activation matching): every model's
/// features are matched one-to-one to model 0's by maximising the summed
/// correlation with an exact linear assignment. All models must have the
/// same width; merged feature `c` is model 0's feature `c` and its partners.
pub fn permute(corr: &[f64], sizes: &[usize]) -> Matching {
    let f_total: usize = sizes.iter().sum();
    let d = sizes[0];
    let mut assign = vec![(0..d).collect::<Vec<_>>()];
    let mut offset = d;
    for &dm in &sizes[1..] {
        debug_assert_eq!(dm, d);
        // cost[i][j] = -corr(model0 feature i, model m feature j)
        let cost: Vec<f64> = (0..d)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| -corr[i * f_total + offset + j])
            .collect();
        let row_to_col = linear_assignment(&cost, d);
        let mut a = vec![0; d];
        for (i, &j) in row_to_col.iter().enumerate() {
            a[j] = i;
        }
        assign.push(a);
        offset += dm;
    }
    Matching { n_out: d, assign }
}

/// Minimum-cost perfect assignment of an `n x n` cost matrix (row-major):
/// returns the column of each row. Shortest augmenting paths with
/// potentials (the Hungarian method in its O(n³) form). A non-finite
/// cost counts as 0 (with NaN no column would ever be picked, and the
/// search would never end; the engine refuses non-finite models before
/// this, so it is a last guard).
pub fn linear_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    let cost: Vec<f64> = cost
        .iter()
        .map(|&c| if c.is_finite() { c } else { 0.0 })
        .collect();
    // 1-based arrays; p[j] is the row matched to column j (0 = none).
    let inf = f64::INFINITY;
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut row_to_col = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            row_to_col[p[j] - 1] = j - 1;
        }
    }
    row_to_col
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::Rng;

    fn brute_force(cost: &[f64], n: usize) -> f64 {
        fn rec(cost: &[f64], n: usize, row: usize, used: &mut Vec<bool>) -> f64 {
            if row == n {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..n {
                if !used[j] {
                    used[j] = true;
                    best = best.min(cost[row * n + j] + rec(cost, n, row + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        rec(cost, n, 0, &mut vec![false; n])
    }

    #[test]
    fn assignment_finishes_on_non_finite_costs() {
        // With a NaN cost no column was ever picked and the search never
        // ended; non-finite costs now count as 0.
        let cost = [f64::NAN, 1.0, f64::INFINITY, f64::NAN];
        let a = linear_assignment(&cost, 2);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], a[1]);
        assert_eq!(
            linear_assignment(&[0.0, f64::NAN, f64::NAN, 0.0], 2),
            [0, 1]
        );
    }

    #[test]
    fn assignment_is_optimal_on_random_matrices() {
        let mut rng = Rng::new(3);
        for n in 1..=7 {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
                let a = linear_assignment(&cost, n);
                let mut seen = vec![false; n];
                for &j in &a {
                    assert!(!seen[j]);
                    seen[j] = true;
                }
                let total: f64 = a.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum();
                assert!((total - brute_force(&cost, n)).abs() < 1e-9);
            }
        }
    }

    fn random_corr(f: usize, rng: &mut Rng) -> Vec<f64> {
        let mut c = vec![0.0; f * f];
        for i in 0..f {
            for j in i..f {
                let v = if i == j {
                    1.0
                } else {
                    rng.uniform() * 2.0 - 1.0
                };
                c[i * f + j] = v;
                c[j * f + i] = v;
            }
        }
        c
    }

    #[test]
    fn zipit_matching_is_a_valid_merge() {
        let mut rng = Rng::new(5);
        for (sizes, alpha, beta) in [
            (vec![6, 6], 0.5, 1.0),
            (vec![6, 6], 0.0, 0.0),
            (vec![5, 7], 0.3, 0.5),
            (vec![4, 4, 4], 0.5, 1.0),
            (vec![4, 4, 4], 0.0, 0.0),
        ] {
            let f: usize = sizes.iter().sum();
            let corr = random_corr(f, &mut rng);
            let n_out = sizes[0];
            let m = zipit(&corr, &sizes, n_out, alpha, beta);
            assert_eq!(m.n_out, n_out);
            assert!(m.cluster_sizes().iter().all(|&s| s >= 1));
            assert_eq!(m.cluster_sizes().iter().sum::<usize>(), f);
            // sum_m M_m U_m = I (each merged feature is the mean of its members,
            // read back by each member).
            let mut mu = vec![0.0f32; n_out * n_out];
            for (k, &d) in sizes.iter().enumerate() {
                let mm = m.merge_matrix(k);
                let uu = m.unmerge_matrix(k);
                for r in 0..n_out {
                    for c in 0..n_out {
                        for t in 0..d {
                            mu[r * n_out + c] += mm[r * d + t] * uu[t * n_out + c];
                        }
                    }
                }
                // every feature used exactly once
                for t in 0..d {
                    let row = &uu[t * n_out..(t + 1) * n_out];
                    assert_eq!(row.iter().filter(|&&v| v == 1.0).count(), 1);
                    assert_eq!(row.iter().sum::<f32>(), 1.0);
                }
            }
            for r in 0..n_out {
                for c in 0..n_out {
                    let want = if r == c { 1.0 } else { 0.0 };
                    assert!((mu[r * n_out + c] - want).abs() < 1e-6, "{sizes:?}");
                }
            }
        }
    }

    #[test]
    fn beta_zero_gives_only_cross_model_pairs() {
        let mut rng = Rng::new(9);
        let corr = random_corr(16, &mut rng);
        let m = zipit(&corr, &[8, 8], 8, 0.0, 0.0);
        let mut owners_of = vec![Vec::new(); 8];
        for (k, a) in m.assign.iter().enumerate() {
            for &c in a {
                owners_of[c].push(k);
            }
        }
        for o in owners_of {
            assert_eq!(o, vec![0, 1]);
        }
    }

    #[test]
    fn permute_recovers_a_planted_permutation() {
        let d = 10;
        let mut rng = Rng::new(11);
        let mut perm: Vec<usize> = (0..d).collect();
        rng.shuffle(&mut perm);
        // Model 1's feature perm[i] is model 0's feature i.
        let mut corr = vec![0.1; 4 * d * d];
        for (i, &p) in perm.iter().enumerate() {
            corr[i * 2 * d + d + p] = 0.9;
            corr[(d + p) * 2 * d + i] = 0.9;
        }
        let m = permute(&corr, &[d, d]);
        for (i, &p) in perm.iter().enumerate() {
            assert_eq!(m.assign[1][p], i);
        }
    }
}
