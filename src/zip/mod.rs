//! ZipIt! and permutation merging of MLPs trained apart (Stoica et al.,
//! "ZipIt! Merging Models from Different Tasks without Training", 2023;
//! Ainsworth et al., "Git Re-Basin", 2022, activation matching).
//!
//! Models trained from different initialisations compute similar features
//! in different orders, so averaging their weights position by position
//! mixes unrelated units. Both methods first look at what the units do: run
//! every model on calibration inputs, correlate every hidden feature with
//! every other (within and across models, streamed over batches), and match
//! features. `permute` pairs each feature of model 0 with exactly one
//! feature of each other model (an exact linear assignment), then averages.
//! ZipIt! merges greedily over the joint correlation matrix, which lets it
//! also merge redundant features inside one model, so a feature that has no
//! partner in the other model need not be forced onto one.
//!
//! A matching of layer `l` gives per model a merge matrix `M_m` (merged
//! feature = mean of its members) and an unmerge matrix `U_m` (each member
//! reads its merged feature back). The merged layer is
//! `W = sum_m M_m W_m U_m'` and `b = sum_m M_m (b_m + W_m o_m')`, with `U_m'`
//! and `o_m'` the previous layer's unmerge and read-back offset (identity
//! and zero for the input).
//!
//! Two refinements over the paper's plain average/copy, both measured on
//! `digits-zip` (joint accuracy with every hidden layer zipped, α=0.5, β=1;
//! ensemble 92.5): members are averaged in units of their own standard
//! deviation and read back at that scale (79.4 → 83.9: matched features are
//! correlated, not equally large, and ReLU commutes with positive scaling),
//! and each member is read back by the least-squares affine fit
//! `x_f ≈ a_f z_c + b_f`, computed in closed form from the same covariance
//! sums (83.9 → 87.5). Both keep the exact answer when members are equal up
//! to scale, so zipping a model with itself or with a permuted copy still
//! reproduces it. Plain weight averaging ([`ZipMethod::Average`]) uses
//! neither: it is the data-free baseline. With `depth` k, layers
//! `0..k-1` are merged into a shared trunk; each model keeps its layers
//! `k..` as its own head, the first of them reading the trunk through
//! `U_m`. Depth 0 is the ensemble; the largest depth zips every hidden
//! layer and keeps only the classifiers apart.

mod corr;
mod matching;

pub use corr::CorrAccum;
pub use matching::{linear_assignment, permute, zipit, Matching};

use crate::mlp::{into_vec, Head, Layer, MlpError, MlpModel, Result, Samples};
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

/// How features are matched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ZipMethod {
    /// ZipIt! greedy matching; `alpha` repeated matching, `beta` same-model
    /// budget (see [`zipit`]).
    Zipit {
        /// Repeated matching: a merged group's correlations are scaled by
        /// this (0: merged again only when nothing else is left).
        alpha: f64,
        /// Same-model budget: the share of a model's features that may be
        /// merged within that model (0: cross-model merges first).
        beta: f64,
    },
    /// Exact one-to-one matching to model 0, then averaging.
    Permute,
    /// No matching: feature `i` of every model is merged with feature `i` of
    /// the others (plain weight averaging, heads kept). The baseline.
    Average,
}

/// Per-layer α/β for ZipIt! (`None` keeps the method's value).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerOverride {
    /// The trunk layer it applies to.
    pub layer: usize,
    /// Repeated-matching share, if not the method's.
    pub alpha: Option<f64>,
    /// Same-model budget, if not the method's.
    pub beta: Option<f64>,
}

/// What a zip did, layer by layer (for reports and the TUI).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ZipStats {
    /// Per zipped layer: mean correlation between members of the same
    /// merged feature (1 would be a perfect match).
    pub mean_match_corr: Vec<f64>,
    /// Per zipped layer: merged features that combine features of one
    /// model only (within-model merges or unmatched features).
    pub single_model_features: Vec<usize>,
}

/// Each model as one chain of layers plus its classes, with its
/// `input_scale` folded into the first layer relative to model 0's.
type Chain = (Vec<Layer>, Vec<u32>);

fn chains(models: &[MlpModel]) -> Result<(f32, Vec<Chain>)> {
    let Some(first) = models.first() else {
        return Err(MlpError::Incompatible("zip: no models".into()));
    };
    let s0 = first.input_scale;
    let n_in = first.n_in();
    let mut out = Vec::new();
    for (i, m) in models.iter().enumerate() {
        if m.heads.len() != 1 {
            return Err(MlpError::Incompatible(format!(
                "zip: model {i} has {} heads; zipit/permute take single-head models",
                m.heads.len()
            )));
        }
        if m.n_in() != n_in {
            return Err(MlpError::Incompatible(format!(
                "zip: model {i} reads {} inputs, model 0 reads {n_in}",
                m.n_in()
            )));
        }
        let mut layers: Vec<Layer> = m.trunk.clone();
        layers.extend(m.heads[0].layers.iter().cloned());
        if layers.is_empty() {
            return Err(MlpError::Incompatible(format!(
                "zip: model {i} has no layers"
            )));
        }
        if s0 != 0.0 && m.input_scale != s0 {
            let r = m.input_scale / s0;
            for w in &mut layers[0].weight {
                *w *= r;
            }
        }
        out.push((layers, m.heads[0].classes.clone()));
    }
    Ok((s0, out))
}

/// The deepest possible `depth` for these models (every hidden layer).
pub fn max_depth(models: &[MlpModel]) -> usize {
    models
        .iter()
        .map(|m| m.trunk.len() + m.heads.first().map_or(0, |h| h.layers.len()))
        .min()
        .unwrap_or(1)
        .saturating_sub(1)
}

/// Joint correlation matrices of layers `0..depth` (post-ReLU outputs of
/// the original models on `calib`, model 0's features first), streamed in
/// batches of 256 samples.
pub fn layer_correlations(
    models: &[MlpModel],
    depth: usize,
    calib: &Samples,
) -> Result<Vec<Vec<f64>>> {
    Ok(layer_statistics(models, depth, calib)?
        .into_iter()
        .map(|a| a.correlation())
        .collect())
}

/// The accumulated statistics behind [`layer_correlations`].
fn layer_statistics(models: &[MlpModel], depth: usize, calib: &Samples) -> Result<Vec<CorrAccum>> {
    let (s0, chains) = chains(models)?;
    if calib.dim != models[0].n_in() {
        return Err(MlpError::Incompatible(format!(
            "calibration data has {} features, the models read {}",
            calib.dim,
            models[0].n_in()
        )));
    }
    let widths: Vec<Vec<usize>> = (0..depth)
        .map(|l| chains.iter().map(|(c, _)| c[l].n_out).collect())
        .collect();
    let mut acc: Vec<CorrAccum> = widths
        .iter()
        .map(|w| CorrAccum::new(w.iter().sum()))
        .collect();
    const BATCH: usize = 256;
    for start in (0..calib.len()).step_by(BATCH) {
        let n = BATCH.min(calib.len() - start);
        let x = ArrayView2::from_shape(
            (n, calib.dim),
            &calib.x[start * calib.dim..(start + n) * calib.dim],
        )
        .expect("n x dim calibration values")
        .mapv(|v| v * s0);
        let mut hs: Vec<Array2<f32>> = vec![x; chains.len()];
        for (l, acc) in acc.iter_mut().enumerate() {
            for (h, (c, _)) in hs.iter_mut().zip(&chains) {
                *h = c[l].forward_batch(h.view(), true);
            }
            let views: Vec<ArrayView2<'_, f32>> = hs.iter().map(|h| h.view()).collect();
            let joint = ndarray::concatenate(Axis(1), &views).expect("equal batch rows");
            acc.add_batch(joint.view());
        }
    }
    Ok(acc)
}

/// A merge or unmerge matrix of one model: one non-zero per feature `f` of
/// that model, at merged feature `index[f]`, worth `value[f]`. As a merge
/// matrix (`n_out x d`) that is one non-zero per column; as an unmerge
/// matrix (`d x n_out`), one per row. Applied as gathers, never as a dense
/// product.
#[derive(Clone, Debug)]
struct OnePerFeature {
    n_out: usize,
    index: Vec<usize>,
    value: Vec<f32>,
}

impl OnePerFeature {
    /// `M W` for `W` `[d, k]`: merged row `c` sums `value[f] W[f, :]` over
    /// the features `f` that go to `c`.
    fn merge_rows(&self, w: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut out = Array2::zeros((self.n_out, w.ncols()));
        for (f, (&c, &v)) in self.index.iter().zip(&self.value).enumerate() {
            out.row_mut(c).scaled_add(v, &w.row(f));
        }
        out
    }

    /// `W U` for `W` `[r, d]`: merged column `c` sums `W[:, f] value[f]`
    /// over the features `f` that read `c`.
    fn unmerge_cols(&self, w: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut out = Array2::zeros((w.nrows(), self.n_out));
        for (f, (&c, &v)) in self.index.iter().zip(&self.value).enumerate() {
            out.column_mut(c).scaled_add(v, &w.column(f));
        }
        out
    }
}

/// Model `m`'s merge matrix of `matching` with its features in units of
/// `scale` (see [`Matching::merge_matrix_scaled`]).
fn merge_of(matching: &Matching, m: usize, scale: Option<&[f32]>) -> OnePerFeature {
    let sizes = matching.cluster_sizes();
    let a = &matching.assign[m];
    OnePerFeature {
        n_out: matching.n_out,
        index: a.clone(),
        value: a
            .iter()
            .enumerate()
            .map(|(f, &c)| 1.0 / (sizes[c] as f32 * scale.map_or(1.0, |s| s[f])))
            .collect(),
    }
}

/// Model `m`'s plain unmerge matrix (see
/// [`Matching::unmerge_matrix_scaled`]).
fn unmerge_of(matching: &Matching, m: usize, scale: Option<&[f32]>) -> OnePerFeature {
    let a = &matching.assign[m];
    OnePerFeature {
        n_out: matching.n_out,
        index: a.clone(),
        value: (0..a.len()).map(|f| scale.map_or(1.0, |s| s[f])).collect(),
    }
}

/// Merge single-head MLPs by feature matching.
///
/// `depth`: layers `0..depth` form the shared trunk (`None`: every hidden
/// layer, [`max_depth`]). `calib`: calibration inputs (the training split
/// by default at the CLI); unused by [`ZipMethod::Average`]. The output has
/// one head per input model, in order, with that model's classes.
pub fn zip_merge(
    models: &[MlpModel],
    method: ZipMethod,
    depth: Option<usize>,
    overrides: &[LayerOverride],
    calib: &Samples,
) -> Result<MlpModel> {
    zip_merge_with_stats(models, method, depth, overrides, calib).map(|(m, _)| m)
}

/// [`zip_merge`], also returning per-layer statistics of the matching.
pub fn zip_merge_with_stats(
    models: &[MlpModel],
    method: ZipMethod,
    depth: Option<usize>,
    overrides: &[LayerOverride],
    calib: &Samples,
) -> Result<(MlpModel, ZipStats)> {
    if models.len() < 2 {
        return Err(MlpError::Incompatible(format!(
            "zip: needs at least 2 models, got {}",
            models.len()
        )));
    }
    let (s0, chains) = chains(models)?;
    let depth = checked_depth(models, depth, overrides)?;
    let layers = LayerStats::gather(models, method, depth, calib)?;
    let mut stats = ZipStats::default();
    let mut trunk = Vec::new();
    // How each model reads the previous merged layer back (none for the
    // input).
    let mut prev: Option<Vec<Unmerge>> = None;
    for l in 0..depth {
        let sizes: Vec<usize> = chains.iter().map(|(c, _)| c[l].n_out).collect();
        let matching = match_layer(method, l, &sizes, layers.corr(l), overrides)?;
        if let Some(corr) = layers.corr(l) {
            stats
                .mean_match_corr
                .push(mean_member_corr(&matching, corr, &sizes));
        }
        stats
            .single_model_features
            .push(single_model_features(&matching));
        trunk.push(merge_layer(
            &chains,
            l,
            &matching,
            &sizes,
            layers.scales(l),
            prev.as_deref(),
        ));
        prev = Some(read_back(method, &matching, &sizes, &layers, l));
    }
    let heads = attach_heads(&chains, depth, prev.as_deref());
    Ok((
        MlpModel {
            input_scale: s0,
            trunk,
            heads,
        },
        stats,
    ))
}

/// The depth to zip to (`None`: every hidden layer), once it and the
/// per-layer overrides are checked against the models.
fn checked_depth(
    models: &[MlpModel],
    depth: Option<usize>,
    overrides: &[LayerOverride],
) -> Result<usize> {
    let max = max_depth(models);
    let depth = depth.unwrap_or(max);
    if depth > max {
        return Err(MlpError::Incompatible(format!(
            "zip: depth {depth} too large: these models have {max} hidden layers (the classifiers stay separate)"
        )));
    }
    for o in overrides {
        if o.layer >= depth.max(1) {
            return Err(MlpError::Incompatible(format!(
                "zip: override for layer {} but only layers 0..{} are zipped",
                o.layer,
                depth.saturating_sub(1)
            )));
        }
    }
    Ok(depth)
}

/// Per zipped layer: the accumulated statistics, the joint correlation
/// matrix and each feature's unit (its standard deviation, 1 for a dead
/// feature). Empty for plain averaging, which looks at no data.
struct LayerStats {
    accs: Vec<CorrAccum>,
    corrs: Vec<Vec<f64>>,
    scales: Vec<Vec<f32>>,
}

impl LayerStats {
    fn gather(
        models: &[MlpModel],
        method: ZipMethod,
        depth: usize,
        calib: &Samples,
    ) -> Result<LayerStats> {
        let needs_data = !matches!(method, ZipMethod::Average) && depth > 0;
        if !needs_data {
            return Ok(LayerStats {
                accs: Vec::new(),
                corrs: Vec::new(),
                scales: Vec::new(),
            });
        }
        if calib.is_empty() {
            return Err(MlpError::Incompatible("zip: no calibration samples".into()));
        }
        let accs = layer_statistics(models, depth, calib)?;
        let (corrs, scales) = accs
            .iter()
            .map(|a| {
                let scale = a
                    .stds()
                    .iter()
                    .map(|&s| if s > 1e-6 { s as f32 } else { 1.0 })
                    .collect();
                (a.correlation(), scale)
            })
            .unzip();
        Ok(LayerStats {
            accs,
            corrs,
            scales,
        })
    }

    fn corr(&self, l: usize) -> Option<&[f64]> {
        self.corrs.get(l).map(Vec::as_slice)
    }

    fn scales(&self, l: usize) -> Option<&[f32]> {
        self.scales.get(l).map(Vec::as_slice)
    }
}

/// Which features of layer `l` merge, by `method` (with `overrides`' α/β
/// for ZipIt!). `corr` is there for every method but plain averaging.
fn match_layer(
    method: ZipMethod,
    l: usize,
    sizes: &[usize],
    corr: Option<&[f64]>,
    overrides: &[LayerOverride],
) -> Result<Matching> {
    let corr = || corr.expect("correlations are gathered for data-driven methods");
    match method {
        ZipMethod::Zipit { alpha, beta } => {
            let o = overrides.iter().find(|o| o.layer == l);
            let a = o.and_then(|o| o.alpha).unwrap_or(alpha);
            let b = o.and_then(|o| o.beta).unwrap_or(beta);
            let n_out = sizes.iter().copied().max().unwrap_or(0);
            Ok(zipit(corr(), sizes, n_out, a, b))
        }
        ZipMethod::Permute | ZipMethod::Average => {
            if sizes.iter().any(|&s| s != sizes[0]) {
                return Err(MlpError::Incompatible(format!(
                    "zip: layer {l} widths differ {sizes:?}; permute and averaging need equal widths (zipit does not)"
                )));
            }
            Ok(if matches!(method, ZipMethod::Permute) {
                permute(corr(), sizes)
            } else {
                Matching {
                    n_out: sizes[0],
                    assign: vec![(0..sizes[0]).collect(); sizes.len()],
                }
            })
        }
    }
}

/// The merged layer `l`: `W = sum_m M_m W_m U_m'`,
/// `b = sum_m M_m (b_m + W_m o_m')`, with `prev` the previous layer's
/// read-back per model (`U_m'`, `o_m'`; none for the input).
fn merge_layer(
    chains: &[Chain],
    l: usize,
    matching: &Matching,
    sizes: &[usize],
    scales: Option<&[f32]>,
    prev: Option<&[Unmerge]>,
) -> Layer {
    let n_out = matching.n_out;
    let n_in = prev.map_or(chains[0].0[0].n_in, |p| p[0].matrix.n_out);
    let mut weight = Array2::<f32>::zeros((n_out, n_in));
    let mut bias = Array2::<f32>::zeros((n_out, 1));
    let mut off = 0;
    for (m, (c, _)) in chains.iter().enumerate() {
        let layer = &c[l];
        let (w, b) = match prev {
            Some(un) => (
                un[m].matrix.unmerge_cols(layer.weight_view()),
                with_offset(layer, &un[m].offset),
            ),
            None => (layer.weight_view().to_owned(), layer.bias.clone()),
        };
        let mm = merge_of(matching, m, scales.map(|s| &s[off..off + sizes[m]]));
        weight += &mm.merge_rows(w.view());
        bias += &mm.merge_rows(column(&b));
        off += sizes[m];
    }
    Layer {
        n_in,
        n_out,
        weight: into_vec(weight),
        bias: into_vec(bias),
    }
}

/// How each model reads merged layer `l` back: by least squares for the
/// data-driven methods, plainly (each member at its own scale) for plain
/// averaging, which stays the data-free baseline.
fn read_back(
    method: ZipMethod,
    matching: &Matching,
    sizes: &[usize],
    layers: &LayerStats,
    l: usize,
) -> Vec<Unmerge> {
    if let (Some(acc), Some(scales), false) = (
        layers.accs.get(l),
        layers.scales(l),
        matches!(method, ZipMethod::Average),
    ) {
        return fitted_unmerge(matching, acc, sizes, scales);
    }
    let mut off = 0;
    (0..sizes.len())
        .map(|m| {
            let sc = layers.scales(l).map(|s| &s[off..off + sizes[m]]);
            off += sizes[m];
            Unmerge {
                matrix: unmerge_of(matching, m, sc),
                offset: vec![0.0; sizes[m]],
            }
        })
        .collect()
}

/// Each model's layers past the trunk, as its own head; the first of them
/// reads the trunk's last merged layer back through `prev`.
fn attach_heads(chains: &[Chain], depth: usize, prev: Option<&[Unmerge]>) -> Vec<Head> {
    chains
        .iter()
        .enumerate()
        .map(|(m, (c, classes))| {
            let mut layers: Vec<Layer> = c[depth..].to_vec();
            if let (Some(un), Some(first)) = (prev, layers.first_mut()) {
                first.bias = with_offset(first, &un[m].offset);
                first.weight = into_vec(un[m].matrix.unmerge_cols(first.weight_view()));
                first.n_in = un[m].matrix.n_out;
            }
            Head {
                classes: classes.clone(),
                layers,
            }
        })
        .collect()
}

/// How one model reads its features back from the merged ones:
/// `x ≈ matrix · z + offset`.
#[derive(Clone, Debug)]
struct Unmerge {
    /// `d_m x n_out`, one non-zero per row.
    matrix: OnePerFeature,
    offset: Vec<f32>,
}

/// The layer's bias once its input is read back with `offset` added:
/// `W (x + o) + b = W x + (b + W o)`.
fn with_offset(layer: &Layer, offset: &[f32]) -> Vec<f32> {
    let extra = layer.weight_view().dot(&ArrayView1::from(offset));
    layer.bias.iter().zip(&extra).map(|(b, e)| b + e).collect()
}

/// `v` as a one-column matrix.
fn column(v: &[f32]) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((v.len(), 1), v).expect("a column")
}

/// Least-squares read-back of each feature from its merged feature.
///
/// The plain unmerge reads member `f` of merged feature `c` as
/// `scale_f · z_c`, exact only when all members are equal up to scale. Given
/// the matching, the best affine read-back `x_f ≈ a_f z_c + b_f` follows in
/// closed form from statistics already gathered for the correlations
/// (`z_c` is the mean of its members in their own units, so its covariance
/// with `x_f` is a sum of covariances between members). A merged feature
/// with a single member, or members equal up to scale, keeps the exact
/// read-back (`a_f = scale_f`, `b_f = 0`). The offset folds into the next
/// layer's bias, so the merged network keeps the same shape.
fn fitted_unmerge(
    matching: &Matching,
    acc: &CorrAccum,
    sizes: &[usize],
    scales: &[f32],
) -> Vec<Unmerge> {
    let n_out = matching.n_out;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_out];
    let mut off = 0;
    for (m, a) in matching.assign.iter().enumerate() {
        for (f, &c) in a.iter().enumerate() {
            members[c].push(off + f);
        }
        off += sizes[m];
    }
    let mean = acc.means();
    // Statistics of each merged feature z_c = mean_g(x_g / s_g).
    let mut z_mean = vec![0.0f64; n_out];
    let mut z_var = vec![0.0f64; n_out];
    for (c, mem) in members.iter().enumerate() {
        let k = mem.len().max(1) as f64;
        z_mean[c] = mem
            .iter()
            .map(|&g| mean[g] / f64::from(scales[g]))
            .sum::<f64>()
            / k;
        let mut v = 0.0;
        for &g in mem {
            for &h in mem {
                v += acc.cov(g, h) / (f64::from(scales[g]) * f64::from(scales[h]));
            }
        }
        z_var[c] = v / (k * k);
    }
    let mut out = Vec::new();
    let mut off = 0;
    for (m, a) in matching.assign.iter().enumerate() {
        let d = sizes[m];
        let mut matrix = OnePerFeature {
            n_out,
            index: a.clone(),
            value: vec![0.0; d],
        };
        let mut offset = vec![0.0f32; d];
        for (f, &c) in a.iter().enumerate() {
            let g = off + f;
            let mem = &members[c];
            let (slope, icpt) = if mem.len() > 1 && z_var[c] > 1e-12 {
                let k = mem.len() as f64;
                let cov_xz = mem
                    .iter()
                    .map(|&h| acc.cov(g, h) / f64::from(scales[h]))
                    .sum::<f64>()
                    / k;
                let slope = cov_xz / z_var[c];
                (slope, mean[g] - slope * z_mean[c])
            } else {
                (f64::from(scales[g]), 0.0)
            };
            matrix.value[f] = slope as f32;
            offset[f] = icpt as f32;
        }
        out.push(Unmerge { matrix, offset });
        off += d;
    }
    out
}

fn mean_member_corr(m: &Matching, corr: &[f64], sizes: &[usize]) -> f64 {
    let f: usize = sizes.iter().sum();
    let mut joint = Vec::new();
    for a in &m.assign {
        joint.extend_from_slice(a);
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for i in 0..f {
        for j in i + 1..f {
            if joint[i] == joint[j] {
                sum += corr[i * f + j];
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

fn single_model_features(m: &Matching) -> usize {
    let mut owners = vec![0u64; m.n_out];
    for (k, a) in m.assign.iter().enumerate() {
        for &c in a {
            owners[c] |= 1 << (k % 64);
        }
    }
    owners.iter().filter(|o| o.count_ones() == 1).count()
}

/// Everything `smelt merge` needs for a zipit/permute recipe: load the
/// model folders, calibrate on the training split of `calibration` (the
/// bundled digits when `None`), merge, and write the multi-head result to
/// `out` (refusing to replace it unless `force`). Returns the written path
/// and the matching statistics.
pub fn zip_paths(
    models: &[&std::path::Path],
    method: ZipMethod,
    depth: Option<usize>,
    overrides: &[LayerOverride],
    calibration: Option<&std::path::Path>,
    out: &std::path::Path,
    force: bool,
) -> Result<(std::path::PathBuf, ZipStats)> {
    let loaded: Vec<MlpModel> = models
        .iter()
        .map(|p| MlpModel::load(p))
        .collect::<Result<_>>()?;
    let ds = crate::mlp::Dataset::load_or_builtin(calibration)?;
    let calib = ds.split(crate::mlp::Split::Train);
    let (merged, stats) = zip_merge_with_stats(&loaded, method, depth, overrides, &calib)?;
    let opts = crate::model::WriterOptions {
        shard_size: crate::model::DEFAULT_SHARD_SIZE,
        force,
        inputs: models.iter().map(|p| p.to_path_buf()).collect(),
        metadata: vec![("format".into(), "pt".into())],
        sync: true,
    };
    let written = merged.save_with(out, &opts, crate::model::Dtype::F32, &[])?;
    Ok((written, stats))
}
