//! Interference statistics: what the chosen merge method keeps of each
//! task vector, and how much the kept entries disagree, per tensor and per
//! layer group.
//!
//! The workbench's sign-agreement panel and `smelt analyze` both call
//! [`Analyzer`]. A task vector is a model minus the reference (the recipe's
//! base, or for methods without one the model the user keeps as
//! reference). The numbers come from the method's own selection: each
//! tensor is streamed through the merge kernel the engine would run (same
//! parameters, seed, tensor name and model order, so the same masks, DARE
//! draws included), and the kernel hands out each model's part
//! ([`crate::merge::Kernel::parts`], or the rules that make it,
//! [`crate::merge::Kernel::rules`]) where a merge would combine them.
//! Methods that trim nothing describe the raw task vectors.
//!
//! What the fields mean, per [`Selection`]:
//! - `kept[i]`: non-zero entries of model `i`'s task vector that survive
//!   the selection (`Magnitude`: the top `density` share by magnitude,
//!   ties by lowest index; `Random`: DARE's seeded draws; `Outliers`:
//!   breadcrumbs' two-tailed cut; `RankedRandom`: DELLA's ranked draws;
//!   `Variance`: SCE's selected positions, the same for every model;
//!   `None`: every non-zero entry). Compare with `nonzero[i]`.
//! - `norm_kept[i]`: share of the task vector's energy (squared L2 norm)
//!   in the kept entries; independent of weights, `rescale` and `lambda`.
//!   For random selections it follows the density, for magnitude ones it
//!   stays high while `kept` drops.
//! - `agree[k]`: parameters where exactly `k` models' non-zero votes agree
//!   with the sign of the summed votes, `conflicts`: where at least one
//!   opposes it. The votes are what the merge combines (kept, rescaled,
//!   weighted; SCE: the selected deltas, which its election sums). With
//!   `elects_sign` the merge drops the opposing entries; without, the sum
//!   is what it adds, and conflicts measure interference.
//! - `norms`, `cosines`: of the untrimmed task vectors.
//! - `weights[i]`: the weight the merge gives model `i` (SCE: the one it
//!   computes, averaged over the tensors by size).
//! - `tied[i]`: entries tied at a magnitude cut-off (`Magnitude`,
//!   `Outliers`, `Variance`), where the tie rule decides what is kept.
//!
//! Groups are the sum of their tensors, each selected on its own as the
//! merge does; a tensor that cannot be analysed (missing, a different
//! shape) is listed in [`Report::skipped`] and the rest still count.

mod count;
mod stream;

pub use crate::merge::Selection;
pub use stream::{PREVIEW_ELEMS, PREVIEW_MIN};

use crate::merge::{Method, TensorParams};
use crate::model::{Group, Model};
use crate::recipe::Recipe;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What a statistics request is about: a layer group, or one tensor (by
/// the reference model's name for it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A whole layer group (embeddings, one layer, the final norm and head).
    Group(Group),
    /// One tensor, named as in the reference model.
    Tensor(String),
}

/// The models a request compares: task vectors are `models[i] -
/// reference`, and `models` follows the recipe's `models` (per-model
/// parameters are matched by position).
#[derive(Clone)]
pub struct Inputs {
    /// The model task vectors are measured from (the recipe's base).
    pub reference: Arc<Model>,
    /// The models whose task vectors are compared, in the recipe's order.
    pub models: Vec<Arc<Model>>,
}

/// Statistics of a target, and the tensors left out of them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// The figures themselves.
    pub stats: Stats,
    /// Tensors of a group that could not be analysed; the statistics cover
    /// the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// A tensor left out of a group's statistics, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The tensor's name in the reference model.
    pub tensor: String,
    /// Why it was left out (a missing tensor, another shape, not a float).
    pub reason: String,
}

/// Statistics over a set of parameters (one tensor or one layer group) for
/// `n` task vectors; see the module docs for what each field means per
/// method.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// How the method selects entries (the panel says "no trimming" for
    /// `Selection::None`).
    pub selection: Selection,
    /// Whether the method drops entries that oppose the elected sign
    /// (otherwise `agree` and `conflicts` measure interference in a plain
    /// sum).
    pub elects_sign: bool,
    /// Parameters covered.
    pub params: u64,
    /// `agree[k]`: parameters where exactly `k` non-zero votes agree with
    /// the elected sign; `len == n + 1`.
    pub agree: Vec<u64>,
    /// Parameters where at least one non-zero vote opposes the elected
    /// sign.
    pub conflicts: u64,
    /// Per model: non-zero entries kept by the selection.
    pub kept: Vec<u64>,
    /// Per model: non-zero entries of the untrimmed task vector.
    pub nonzero: Vec<u64>,
    /// Per model: share of the task vector's energy (squared L2 norm) in
    /// the kept entries.
    pub norm_kept: Vec<f64>,
    /// Per model: L2 norm of the untrimmed task vector.
    pub norms: Vec<f64>,
    /// Pairwise cosine of the untrimmed task vectors (`n x n`).
    pub cosines: Vec<Vec<f64>>,
    /// Per model: entries tied at a magnitude cut-off.
    pub tied: Vec<u64>,
    /// Per model: the weight the merge applies (averaged over tensors by
    /// size).
    pub weights: Vec<f64>,
    /// Raw sums behind `norms`/`cosines` (dot products, `n x n`), so groups
    /// combine exactly.
    #[serde(skip)]
    pub dots: Vec<Vec<f64>>,
    /// Raw sums behind `norm_kept`.
    #[serde(skip)]
    pub kept_energy: Vec<f64>,
    /// Raw sums behind `weights` (weight times parameters).
    #[serde(skip)]
    pub weight_sums: Vec<f64>,
}

impl Stats {
    /// Empty statistics for `n` task vectors.
    pub fn new(n: usize) -> Stats {
        Stats {
            selection: Selection::None,
            elects_sign: false,
            params: 0,
            agree: vec![0; n + 1],
            conflicts: 0,
            kept: vec![0; n],
            nonzero: vec![0; n],
            norm_kept: vec![0.0; n],
            norms: vec![0.0; n],
            cosines: vec![vec![0.0; n]; n],
            tied: vec![0; n],
            weights: vec![0.0; n],
            dots: vec![vec![0.0; n]; n],
            kept_energy: vec![0.0; n],
            weight_sums: vec![0.0; n],
        }
    }

    /// Empty statistics for `n` task vectors under `method`.
    pub fn for_method(method: Method, n: usize) -> Stats {
        let spec = method.spec();
        Stats {
            selection: spec.selection,
            elects_sign: spec.sign_election,
            ..Stats::new(n)
        }
    }

    /// Number of task vectors.
    pub fn n(&self) -> usize {
        self.kept.len()
    }

    /// Share of parameters whose kept task-vector entries disagree in sign:
    /// the interference the merge has to resolve.
    pub fn conflict_share(&self) -> f64 {
        ratio(self.conflicts, self.params)
    }

    /// Share of all task-vector entries kept (non-zero) after selection.
    pub fn kept_share(&self) -> f64 {
        ratio(self.kept.iter().sum(), self.params * self.n() as u64)
    }

    /// Share of the non-zero task-vector entries that the selection keeps.
    pub fn kept_of_nonzero(&self) -> f64 {
        ratio(self.kept.iter().sum(), self.nonzero.iter().sum())
    }

    /// Share of entries tied at the cut-off, over all task vectors.
    pub fn tied_share(&self) -> f64 {
        ratio(self.tied.iter().sum(), self.params * self.n() as u64)
    }

    /// Mean number of agreeing votes per parameter.
    pub fn mean_agree(&self) -> f64 {
        let s: u64 = self
            .agree
            .iter()
            .enumerate()
            .map(|(k, c)| k as u64 * c)
            .sum();
        ratio(s, self.params)
    }

    /// Add another set's counts and sums (same `n`; otherwise nothing
    /// changes), then refresh the derived fields.
    pub fn combine(&mut self, o: &Stats) {
        if o.n() != self.n() {
            return;
        }
        if self.params == 0 {
            self.selection = o.selection;
            self.elects_sign = o.elects_sign;
        }
        self.params += o.params;
        self.conflicts += o.conflicts;
        add(&mut self.agree, &o.agree);
        add(&mut self.kept, &o.kept);
        add(&mut self.nonzero, &o.nonzero);
        add(&mut self.tied, &o.tied);
        addf(&mut self.kept_energy, &o.kept_energy);
        addf(&mut self.weight_sums, &o.weight_sums);
        for (ra, rb) in self.dots.iter_mut().zip(&o.dots) {
            addf(ra, rb);
        }
        self.finish();
    }

    /// Add the counts and raw sums of a part of this tensor (a chunk, the
    /// same `n`), without deriving anything. The analysis adds its chunks'
    /// sums in index order, so the totals do not depend on who counted
    /// which chunk.
    fn add_sums(&mut self, o: &Stats) {
        self.conflicts += o.conflicts;
        add(&mut self.agree, &o.agree);
        add(&mut self.kept, &o.kept);
        add(&mut self.nonzero, &o.nonzero);
        addf(&mut self.kept_energy, &o.kept_energy);
        for (ra, rb) in self.dots.iter_mut().zip(&o.dots) {
            addf(ra, rb);
        }
    }

    /// Derive norms, cosines, energy shares and weights from the raw sums.
    fn finish(&mut self) {
        let n = self.n();
        // Statistics built by hand (struct update syntax) may lack the
        // newer per-model fields: size them.
        for v in [&mut self.norm_kept, &mut self.norms, &mut self.weights] {
            v.resize(n, 0.0);
        }
        for v in [&mut self.kept_energy, &mut self.weight_sums] {
            v.resize(n, 0.0);
        }
        self.nonzero.resize(n, 0);
        self.tied.resize(n, 0);
        self.dots.resize(n, Vec::new());
        self.cosines.resize(n, Vec::new());
        for r in self.dots.iter_mut().chain(self.cosines.iter_mut()) {
            r.resize(n, 0.0);
        }
        for i in 0..n {
            self.norms[i] = self.dots[i][i].max(0.0).sqrt();
            self.norm_kept[i] = if self.dots[i][i] > 0.0 {
                self.kept_energy[i] / self.dots[i][i]
            } else {
                1.0
            };
            self.weights[i] = if self.params > 0 {
                self.weight_sums[i] / self.params as f64
            } else {
                0.0
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

fn addf(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Why a statistics request failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A model's files could not be read.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The method rejects this tensor's parameters.
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    /// The request was cancelled (a newer one replaced it).
    #[error("cancelled")]
    Cancelled,
    /// zipit and permute match features across whole checkpoints; they
    /// have no per-tensor task vectors to describe.
    #[error("{method} matches features across whole checkpoints: no task-vector statistics")]
    NotPerTensor {
        /// The method's name.
        method: &'static str,
    },
    /// Only the reference was given.
    #[error("no models to compare with the reference")]
    NoModels,
    /// `Inputs::models` does not follow the recipe's models.
    #[error("the recipe has {recipe} models, the analysis was given {inputs}")]
    Inputs {
        /// Models in the recipe.
        recipe: usize,
        /// Models given to the analysis.
        inputs: usize,
    },
    #[error("{}: no tensor `{tensor}`", model.display())]
    /// A model has no tensor of this name.
    MissingTensor {
        /// The model without it.
        model: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A model's tensor differs in shape from the reference's.
    #[error("{}: tensor `{tensor}` has shape {shape:?}, the reference has {reference:?}", model.display())]
    Shape {
        /// The model whose tensor differs.
        model: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Its shape in that model.
        shape: Vec<usize>,
        /// Its shape in the reference.
        reference: Vec<usize>,
    },
    /// A tensor is not floating point (task vectors need arithmetic).
    #[error("{}: tensor `{tensor}` is {dtype}, not a float type", model.display())]
    NotFloat {
        /// The model whose tensor it is.
        model: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Its dtype's name.
        dtype: &'static str,
    },
}

type Result<T> = std::result::Result<T, AnalysisError>;

/// Sums over one tensor's untrimmed task vectors: the same for every
/// method and parameter, so kept across requests.
#[derive(Clone, Debug)]
struct RawSums {
    dots: Vec<Vec<f64>>,
    nonzero: Vec<u64>,
}

/// Computes [`Report`]s and keeps what it computed, per tensor, keyed by
/// everything the numbers depend on (models, method, the tensor's resolved
/// parameters and seed). A recipe change recomputes only the tensors whose
/// parameters changed: a one-layer edit costs one layer. The cache holds
/// statistics only (a few hundred bytes a tensor), never tensor data, so
/// memory stays bounded by `cache_bytes` whatever the models' size.
pub struct Analyzer {
    cache: HashMap<String, Stats>,
    /// Per tensor and inputs (not parameters): sums of the raw task
    /// vectors.
    raw: HashMap<String, RawSums>,
    order: VecDeque<String>,
    bytes: usize,
    cap: usize,
}

impl Analyzer {
    /// An analyzer that keeps at most about `cache_bytes` of statistics.
    pub fn new(cache_bytes: usize) -> Analyzer {
        Analyzer {
            cache: HashMap::new(),
            raw: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap: cache_bytes,
        }
    }

    /// Statistics of `target` under `recipe` (its method, and each
    /// tensor's parameters from `recipe.resolve`). A tensor target that
    /// cannot be analysed is an error; a group reports the tensors it
    /// skipped. Tensors of a group run in parallel (rayon's pool). Checks
    /// `cancel` between chunks.
    pub fn analyze(
        &mut self,
        inputs: &Inputs,
        recipe: &Recipe,
        target: &Target,
        cancel: &AtomicBool,
    ) -> Result<Report> {
        self.analyze_many(inputs, recipe, std::slice::from_ref(target), cancel)?
            .pop()
            .unwrap_or(Err(AnalysisError::Cancelled))
    }

    /// [`Analyzer::analyze`] for several targets at once, with every
    /// uncached tensor of all of them in one parallel run (what the
    /// whole-model view wants: every layer group). One result per target,
    /// in order; the outer error is cancellation or a problem with the
    /// request itself.
    pub fn analyze_many(
        &mut self,
        inputs: &Inputs,
        recipe: &Recipe,
        targets: &[Target],
        cancel: &AtomicBool,
    ) -> Result<Vec<Result<Report>>> {
        use rayon::prelude::*;
        check_request(inputs, recipe)?;
        let reference = inputs.reference.as_ref();
        let n_layers = reference.num_layers();
        // Per target: its tensors (name, key, parameters).
        let mut wanted: Vec<Vec<(String, String, TensorParams)>> = Vec::new();
        for t in targets {
            let names: Vec<(String, Group)> = match t {
                Target::Group(g) => reference
                    .tensors()
                    .iter()
                    .filter(|x| x.place.group == *g && x.dtype.is_mergeable())
                    .map(|x| (x.name.clone(), *g))
                    .collect(),
                Target::Tensor(name) => {
                    let g = reference
                        .tensor(name)
                        .map_or_else(|| crate::model::classify(name).group, |x| x.place.group);
                    vec![(name.clone(), g)]
                }
            };
            wanted.push(
                names
                    .into_iter()
                    .map(|(name, g)| {
                        let params = recipe.resolve(&name, g, n_layers);
                        let key = key(inputs, recipe.method, &params, &name);
                        (name, key, params)
                    })
                    .collect(),
            );
        }
        let mut todo: Vec<(&str, &str, &TensorParams, usize)> = Vec::new();
        for (name, key, params) in wanted.iter().flatten() {
            if !self.cache.contains_key(key) && !todo.iter().any(|t| t.1 == key) {
                let size = reference.tensor(name).map_or(0, |t| t.numel());
                todo.push((name, key, params, size));
            }
        }
        // Largest first, one tensor per task: sizes differ by orders of
        // magnitude.
        todo.sort_by_key(|t| std::cmp::Reverse(t.3));
        let method = recipe.method;
        let raw = &self.raw;
        let done: Vec<(&str, &str, Result<Stats>)> = todo
            .par_iter()
            .with_max_len(1)
            .map(|&(name, key, params, _)| {
                let sums = raw.get(&raw_key(inputs, name));
                let r = stream::Source::new(reference, &inputs.models, name).and_then(|src| {
                    stream::tensor_stats(src, method, params, sums, cancel, stream::FAST)
                });
                (name, key, r)
            })
            .collect();
        let mut errors: HashMap<&str, AnalysisError> = HashMap::new();
        for (name, key, r) in done {
            match r {
                Ok(s) => {
                    self.insert_raw(
                        raw_key(inputs, name),
                        RawSums {
                            dots: s.dots.clone(),
                            nonzero: s.nonzero.clone(),
                        },
                    );
                    self.insert(key.to_string(), s);
                }
                Err(AnalysisError::Cancelled) => return Err(AnalysisError::Cancelled),
                Err(e) => {
                    errors.insert(key, e);
                }
            }
        }
        let n = inputs.models.len();
        let mut out = Vec::new();
        for (t, tensors) in targets.iter().zip(&wanted) {
            let mut report = Report {
                stats: Stats::for_method(method, n),
                skipped: Vec::new(),
            };
            let mut failed = None;
            for (name, key, _) in tensors {
                match (self.cache.get(key), errors.remove(key.as_str())) {
                    (Some(s), _) => report.stats.combine(s),
                    (None, Some(e)) => {
                        report.skipped.push(Skipped {
                            tensor: name.clone(),
                            reason: e.to_string(),
                        });
                        failed = Some(e);
                    }
                    // Evicted by this very run (a tiny cache), or the same
                    // tensor's error already taken by an earlier target.
                    (None, None) => {
                        let r =
                            stream::Source::new(reference, &inputs.models, name).and_then(|src| {
                                stream::tensor_stats(
                                    src,
                                    method,
                                    &tensors_params(tensors, key),
                                    None,
                                    cancel,
                                    stream::FAST,
                                )
                            });
                        match r {
                            Ok(s) => report.stats.combine(&s),
                            Err(AnalysisError::Cancelled) => return Err(AnalysisError::Cancelled),
                            Err(e) => {
                                report.skipped.push(Skipped {
                                    tensor: name.clone(),
                                    reason: e.to_string(),
                                });
                                failed = Some(e);
                            }
                        }
                    }
                }
            }
            match (t, failed) {
                (Target::Tensor(_), Some(e)) => out.push(Err(e)),
                _ => out.push(Ok(report)),
            }
        }
        Ok(out)
    }

    /// A sampled estimate for a big tensor ([`PREVIEW_MIN`] entries or
    /// more): evenly spaced whole rows through the method's own kernel;
    /// `None` for smaller tensors, whose exact statistics come as fast.
    /// Label it as an estimate on screen.
    pub fn preview(
        &mut self,
        inputs: &Inputs,
        recipe: &Recipe,
        tensor: &str,
        cancel: &AtomicBool,
    ) -> Result<Option<Stats>> {
        check_request(inputs, recipe)?;
        let reference = inputs.reference.as_ref();
        let Some(t) = reference.tensor(tensor) else {
            return Err(AnalysisError::MissingTensor {
                model: reference.path().to_path_buf(),
                tensor: tensor.to_string(),
            });
        };
        if t.numel() < PREVIEW_MIN || !t.dtype.is_mergeable() {
            return Ok(None);
        }
        let params = recipe.resolve(tensor, t.place.group, reference.num_layers());
        if self
            .cache
            .contains_key(&key(inputs, recipe.method, &params, tensor))
        {
            // The exact numbers are already here.
            return Ok(None);
        }
        let src = stream::Source::new(reference, &inputs.models, tensor)?;
        stream::preview_stats(&src, recipe.method, &params, cancel)
    }

    /// Keep a tensor's raw sums (in their own map, a tenth of the budget:
    /// one entry per tensor of the models in use).
    fn insert_raw(&mut self, key: String, r: RawSums) {
        let n = r.nonzero.len();
        if self.raw.len() * (2 * key.len() + 8 * (n * n + n) + 128) > self.cap / 10 {
            self.raw.clear();
        }
        self.raw.insert(key, r);
    }

    fn insert(&mut self, key: String, s: Stats) {
        let size = entry_bytes(&key, &s);
        if size > self.cap {
            return;
        }
        while self.bytes + size > self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(o) = self.cache.remove(&old) {
                self.bytes -= entry_bytes(&old, &o);
            }
        }
        if let Some(o) = self.cache.insert(key.clone(), s) {
            self.bytes -= entry_bytes(&key, &o);
            self.order.retain(|k| *k != key);
        }
        self.bytes += size;
        self.order.push_back(key);
    }
}

fn tensors_params(tensors: &[(String, String, TensorParams)], key: &str) -> TensorParams {
    tensors
        .iter()
        .find(|t| t.1 == key)
        .map(|t| t.2.clone())
        .unwrap_or_default()
}

/// Problems with a whole request, before any tensor is read.
fn check_request(inputs: &Inputs, recipe: &Recipe) -> Result<()> {
    let method = recipe.method;
    if matches!(method, Method::Zipit | Method::Permute) {
        return Err(AnalysisError::NotPerTensor {
            method: method.name(),
        });
    }
    if inputs.models.is_empty() {
        return Err(AnalysisError::NoModels);
    }
    if recipe.slices.is_empty() && recipe.models.len() != inputs.models.len() {
        return Err(AnalysisError::Inputs {
            recipe: recipe.models.len(),
            inputs: inputs.models.len(),
        });
    }
    Ok(())
}

/// Everything a tensor's statistics depend on.
fn key(inputs: &Inputs, method: Method, params: &TensorParams, tensor: &str) -> String {
    use std::fmt::Write;
    let mut k = format!(
        "{}\u{0}{tensor}\u{0}{}",
        method.name(),
        inputs.reference.path().display()
    );
    for m in &inputs.models {
        let _ = write!(k, "\u{0}{}", m.path().display());
    }
    let _ = write!(
        k,
        "\u{0}{:?}\u{0}{:?}\u{0}{}",
        params.global, params.models, params.seed
    );
    k
}

/// What a tensor's raw sums depend on: the inputs and the tensor.
fn raw_key(inputs: &Inputs, tensor: &str) -> String {
    use std::fmt::Write;
    let mut k = format!("{tensor}\u{0}{}", inputs.reference.path().display());
    for m in &inputs.models {
        let _ = write!(k, "\u{0}{}", m.path().display());
    }
    k
}

/// Approximate heap bytes of a cache entry.
fn entry_bytes(key: &str, s: &Stats) -> usize {
    let n = s.n();
    2 * key.len() + 8 * (2 * n * n + 9 * n + 1) + 256
}
