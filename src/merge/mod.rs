//! Merge math: one streaming kernel per method family, pure functions over
//! `&[f32]` chunks. Nothing here touches files or threads.
//!
//! Files: `gta` (task arithmetic, TIES, DARE, breadcrumbs, DELLA), `sphere`
//! (slerp, nuslerp, multislerp, karcher, model_stock: Gram-matrix pass, then
//! a linear combination), `sce`, `simple` (linear, nearswap, passthrough),
//! `fusion` (arcee_fusion), `ram` (ram, ramplus_tl),
//! [`select`] (exact streaming top-k, also used by the analysis panels),
//! [`rng`] (counter-based draws: same seed, same bytes, whatever the
//! chunking or thread count). Semantics follow mergekit 0.1.5; deliberate
//! differences are listed in each file's docs.
//!
//! How the engine drives a [`Kernel`] per output tensor:
//! while `wants_pass()` it feeds every chunk of the tensor, in order, to
//! `observe` between `begin_pass`/`end_pass`; then it feeds every chunk, in
//! order, to `apply`, which writes the merged values for that chunk. Kernels
//! hold only O(chunk) or O(models²) state, never a whole tensor, so memory
//! does not grow with tensor size. Statistics that need the whole tensor
//! (top-k thresholds, norms, cosines) come from the observe passes.

mod fusion;
mod gta;
mod method;
mod params;
mod ram;
pub mod rng;
mod sce;
pub mod select;
mod simple;
mod sphere;
mod util;

pub use gta::{draw, trim, weigh};
pub use method::{BaseRule, Method, MethodSpec, ParamKind, ParamSpec, Selection};
pub use params::{ParamMap, ParamValue, TensorParams};
pub use select::{Bounds, TopK};
pub use util::dot;

/// An input element as a kernel reads it: `f32`, or a bf16 bit pattern
/// (`u16`) that a kernel converts inside its own loop (see
/// [`Kernel::takes_bf16`]). Converting on the fly saves writing and reading
/// back an f32 copy of every input chunk.
///
/// Sealed: `f32` and `u16` are the only lanes. The vector loads in
/// [`select`] read 16 lanes of 4 bytes (or of 2 bytes, for `BF16`) from a
/// `&[E]`; a lane type of another size would make them read outside the
/// slice, so no other crate may implement this trait:
///
/// ```compile_fail,E0277
/// #[derive(Clone, Copy)]
/// struct Byte(u8);
/// impl smelt::merge::Lane for Byte {
///     const BF16: bool = false;
///     fn f32(self) -> f32 {
///         f32::from(self.0)
///     }
/// }
/// ```
pub trait Lane: sealed::Sealed + Copy + Send + Sync + 'static {
    /// Whether the element is a bf16 bit pattern (for loads that widen).
    const BF16: bool;
    /// The value as f32 (bf16 widened, f32 as is).
    fn f32(self) -> f32;
}

mod sealed {
    /// Implemented only here, for the [`super::Lane`] types.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u16 {}
}

impl Lane for f32 {
    const BF16: bool = false;
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

/// bf16: the top half of an f32.
impl Lane for u16 {
    const BF16: bool = true;
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_bits(u32::from(self) << 16)
    }
}

/// A slice of one tensor across all inputs: elements `[start, start + len)`,
/// as f32 (the default) or bf16 bit patterns.
pub struct Chunk<'a, T = f32> {
    /// Flat index of the first element in the whole tensor.
    pub start: usize,
    /// Total elements in the tensor.
    pub numel: usize,
    /// Length of the tensor's last dimension (1 for scalars). When a row
    /// fits in a chunk, chunk boundaries fall on row boundaries.
    pub row_len: usize,
    /// The base model's values, when the method has a base.
    pub base: Option<&'a [T]>,
    /// One slice per (non-base) model, in recipe order, all the same length.
    pub models: &'a [&'a [T]],
}

impl<T> Chunk<'_, T> {
    /// Entries per input in this chunk.
    pub fn len(&self) -> usize {
        self.models
            .first()
            .map_or(self.base.map_or(0, |b| b.len()), |m| m.len())
    }
    /// Whether the chunk holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A method, instantiated for one tensor with its resolved parameters.
///
/// (`Any`, so that [`Kernel::join_back`] can take back the copy
/// [`Kernel::back`] made.)
pub trait Kernel: Send + std::any::Any {
    /// Whether another statistics pass over the whole tensor is needed
    /// before `apply`.
    fn wants_pass(&self) -> bool {
        false
    }
    /// Start a statistics pass (called before its first `observe`).
    fn begin_pass(&mut self) {}
    /// Whether the kernel wants a sample of the tensor (see
    /// [`sample_ranges`]) before its first statistics pass. Selection
    /// kernels predict their cut-off from it and then need fewer, cheaper
    /// passes; the result never depends on the sample.
    fn wants_sample(&self) -> bool {
        false
    }
    /// See the sample: the ranges of [`sample_ranges`] back to back in one
    /// chunk (its `start` means nothing).
    fn sample(&mut self, _chunk: &Chunk) {}
    /// Whether `apply` depends on nothing but the chunk it is given (no
    /// state carried from one chunk to the next, no statistics passes), so
    /// that ranges of one tensor may be merged by different workers, each
    /// with its own kernel.
    fn splittable(&self) -> bool {
        false
    }
    /// Whether the kernel reads bf16 inputs directly ([`Kernel::observe_bf16`]
    /// and [`Kernel::apply_bf16`] for the rest of the tensor) when every
    /// input, base included, is bf16. Asked before each pass.
    fn takes_bf16(&self) -> bool {
        false
    }
    /// [`Kernel::observe`] of bf16 inputs (only called when `takes_bf16`).
    fn observe_bf16(&mut self, _chunk: &Chunk<u16>) {}
    /// [`Kernel::apply`] of bf16 inputs (only called when `takes_bf16`).
    fn apply_bf16(&mut self, _chunk: &Chunk<u16>, _out: &mut [f32]) {}
    /// See one chunk during a statistics pass (chunks arrive in order).
    fn observe(&mut self, _chunk: &Chunk) {}
    /// Finish a statistics pass (after its last `observe`).
    fn end_pass(&mut self) {}
    /// [`Kernel::end_pass`] that gives up once `cancel` is set, for the
    /// engine: a kernel whose end of pass can run long (Karcher's
    /// iterations, as many as the recipe asks) polls the flag there.
    /// Returns false when it gave up; the kernel must not be used after.
    fn end_pass_or_cancel(&mut self, cancel: &std::sync::atomic::AtomicBool) -> bool {
        let _ = cancel;
        self.end_pass();
        true
    }
    /// Write the merged values of `chunk` into `out` (chunks arrive in order).
    fn apply(&mut self, chunk: &Chunk, out: &mut [f32]);
    /// Each model's part of this chunk's merge, for the statistics panels
    /// (see [`Parts`]): called instead of `apply`, after the same sample
    /// and passes, on every chunk in order. The parts come from the code
    /// `apply` runs, so the statistics show exactly the entries the merge
    /// keeps. Returns false (and leaves `parts` alone) for methods that do
    /// not combine per-model task vectors.
    fn parts(&mut self, _chunk: &Chunk, _parts: &mut Parts) -> bool {
        false
    }
    /// [`Kernel::parts`] as rules (see [`Rule`]), one per model, when the
    /// kernel decides every entry on its own: the statistics then form
    /// the parts entry by entry in registers (with [`trim`], [`draw`] and
    /// [`weigh`], the functions `apply` uses) instead of reading them
    /// back from memory. Called instead of `parts`, in the same sweep, so
    /// the rules describe the same masks. Returns false (nothing done)
    /// when the kernel has none for this chunk; `parts` then does it.
    fn rules(&mut self, _chunk: &Chunk, _rules: &mut Vec<Rule>) -> bool {
        false
    }
    /// [`Kernel::rules`] for a chunk of bf16 inputs (bit patterns).
    fn rules_bf16(&mut self, _chunk: &Chunk<u16>, _rules: &mut Vec<Rule>) -> bool {
        false
    }
    /// A copy of this kernel for the other end of the tensor, so that two
    /// workers can share a statistics pass or the sweep of
    /// [`Kernel::parts`]: this kernel takes whole chunks from the first one
    /// on, the copy from the last one back, until they meet. The copy sees
    /// the chunks of the pass under way (it starts with empty statistics),
    /// or, after the passes, hands out the same parts for a chunk as this
    /// kernel would in a sweep in order. `None` (the default) when the
    /// kernel cannot share its sweeps.
    fn back(&mut self) -> Option<Box<dyn Kernel>> {
        None
    }
    /// Add what a copy from [`Kernel::back`] observed in this pass, before
    /// `end_pass`: the statistics then are what one sweep in order gives,
    /// bit for bit.
    fn join_back(&mut self, _back: Box<dyn Kernel>) {}
    /// Copies of this kernel for a statistics pass shared by `n` workers,
    /// one per range of consecutive whole chunks (in index order); each
    /// starts with empty statistics and sees its range's chunks in order.
    /// Call after `begin_pass`, and [`Kernel::end_split_pass`] instead of
    /// `end_pass`. `None` (the default) when the kernel cannot share the
    /// pass.
    fn split_pass(&mut self, _n: usize) -> Option<Vec<Box<dyn Kernel>>> {
        None
    }
    /// End a pass the copies from [`Kernel::split_pass`] made (in range
    /// order): the statistics are what one sweep in order gives, bit for
    /// bit.
    fn end_split_pass(&mut self, _ranges: Vec<Box<dyn Kernel>>) {}
    /// After the passes, kernels that merge the same `n` ranges as the
    /// last [`Kernel::split_pass`], each its range's chunks in order, with
    /// the outputs one kernel gives over the whole tensor. `None` when the
    /// kernel cannot (the passes did not run split, or it has no such
    /// copies).
    fn split_apply(&mut self, _n: usize) -> Option<Vec<Box<dyn Kernel>>> {
        None
    }
}

/// How a kernel decides one model's part of every entry of a chunk (see
/// [`Kernel::rules`]): entry `j` of the chunk (flat index `start + j`),
/// with task-vector value `d`, is kept as `keep.kept(d, j, start + j)`
/// and combined as [`weigh`]`(kept, scale, weight)`.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Which entries of the model's task vector are kept.
    pub keep: Keep,
    /// The L1 rescale factor.
    pub scale: f32,
    /// The weight `apply` uses.
    pub weight: f32,
    /// Entries tied at a magnitude cut-off (see [`Parts::tied`]).
    pub tied: u64,
}

/// Which entries a [`Rule`] keeps.
#[derive(Clone, Copy, Debug)]
pub enum Keep {
    /// By magnitude: entries before `split` when their magnitude bits are
    /// at least `before`, the others when at least `after` ([`trim`]).
    Trim(Bounds),
    /// DARE: when the stream's draw for the entry's flat index is under
    /// `p` ([`draw`]).
    Draw {
        /// Keep probability.
        p: f32,
        /// The model's random stream in this tensor.
        stream: rng::Stream,
    },
}

impl Keep {
    /// Entry `j` of the chunk (flat index `index`) as kept.
    #[inline(always)]
    pub fn kept(&self, d: f32, j: usize, index: usize) -> f32 {
        match self {
            Keep::Trim(b) => trim(d, if j < b.split { b.before } else { b.after }),
            Keep::Draw { p, stream } => draw(d, stream, index, *p),
        }
    }
}

/// Which values elect the sign of a parameter (see [`Parts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Vote {
    /// The sum of [`Parts::weighted`] (the TIES family; for methods without
    /// sign election, the sign of the sum the merge adds).
    #[default]
    Weighted,
    /// The sum of [`Parts::kept`] (SCE elects on the selected deltas before
    /// its computed weights).
    Kept,
}

/// What each model contributes to one chunk of a merge (see
/// [`Kernel::parts`]). Vectors are model-major: model `i`'s entries are
/// `[i * len, (i + 1) * len)`.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    /// Entries per model in this chunk.
    pub len: usize,
    /// Each model's task vector as the method's selection leaves it: kept
    /// entries unchanged, dropped ones zero (before rescale and weights).
    pub kept: Vec<f32>,
    /// What `apply` combines for each model: the kept entries rescaled and
    /// weighted, with the same f32 operations as `apply`.
    pub weighted: Vec<f32>,
    /// Per model: the weight `apply` uses (the recipe's, or the one the
    /// method computes, as SCE does).
    pub weights: Vec<f32>,
    /// Per model: entries tied at a magnitude cut-off, where the tie rule
    /// (lowest index first), not the data, decides what is kept.
    pub tied: Vec<u64>,
    /// Which of the two vectors elects the sign.
    pub vote: Vote,
}

impl Parts {
    /// Size the vectors for `n` models and `len` entries each.
    pub fn reset(&mut self, n: usize, len: usize) {
        self.len = len;
        self.kept.resize(n * len, 0.0);
        self.weighted.resize(n * len, 0.0);
        self.weights.resize(n, 0.0);
        self.tied.resize(n, 0);
    }
}

/// Where a tensor's sample comes from: up to 128 evenly spread ranges of
/// flat indices, [`select::SAMPLE_LEN`] elements in all (fewer for small
/// tensors). Spread, because the first rows of a tensor (one attention
/// head, the most frequent tokens) can differ from the rest.
pub fn sample_ranges(numel: usize) -> Vec<std::ops::Range<usize>> {
    const PIECES: usize = 128;
    let piece = (select::SAMPLE_LEN / PIECES).min(numel / PIECES);
    if piece == 0 {
        return std::iter::once(0..numel.min(select::SAMPLE_LEN)).collect();
    }
    (0..PIECES)
        .map(|p| {
            let at = p * (numel / PIECES);
            at..at + piece
        })
        .collect()
}

/// Errors in parameters that only show once values are resolved.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A parameter's resolved value is out of range or inconsistent.
    #[error("{method}: {msg}")]
    Params {
        /// The method's recipe name.
        method: &'static str,
        /// What is wrong, naming the parameter.
        msg: String,
    },
}

/// Build the kernel for `method` over one tensor of `numel` elements with
/// `n_models` non-base inputs.
///
/// Parameters missing from `params` take the method spec's defaults; a
/// required one that is missing (a model's `weight`, slerp's `t`) is an
/// error naming the tensor. `zipit` and `permute` are not per-tensor
/// methods (see [`crate::zip`]) and are refused here.
pub fn kernel(
    method: Method,
    params: &TensorParams,
    numel: usize,
    n_models: usize,
) -> Result<Box<dyn Kernel>, MergeError> {
    let p = util::Params { method, p: params };
    if n_models == 0 && !matches!(method, Method::Passthrough) {
        return Err(p.error("no models to merge"));
    }
    Ok(match method {
        Method::Linear => Box::new(simple::Linear::new(&p, n_models)?),
        Method::TaskArithmetic
        | Method::Ties
        | Method::DareTies
        | Method::DareLinear
        | Method::Breadcrumbs
        | Method::BreadcrumbsTies
        | Method::Della
        | Method::DellaLinear => Box::new(gta::Gta::new(method, &p, numel, n_models)?),
        Method::Slerp => {
            if n_models != 1 {
                return Err(p.error(format!(
                    "interpolates the base with exactly one other model, got {n_models}"
                )));
            }
            Box::new(sphere::GramKernel::new(method, &p, n_models)?)
        }
        Method::Nuslerp | Method::Multislerp | Method::Karcher | Method::ModelStock => {
            Box::new(sphere::GramKernel::new(method, &p, n_models)?)
        }
        Method::Sce => Box::new(sce::Sce::new(&p, numel, n_models)?),
        Method::Nearswap => {
            if n_models != 1 {
                return Err(p.error(format!(
                    "swaps between the base and exactly one other model, got {n_models}"
                )));
            }
            Box::new(simple::Nearswap::new(&p)?)
        }
        Method::Passthrough => Box::new(simple::Passthrough::new(&p, n_models)?),
        Method::ArceeFusion => Box::new(fusion::Fusion::new(&p, numel, n_models)?),
        Method::Ram => Box::new(ram::Ram::new(&p, n_models, false)?),
        Method::RamplusTl => Box::new(ram::Ram::new(&p, n_models, true)?),
        Method::Zipit | Method::Permute => {
            return Err(p.error(
                "matches features across whole MLP checkpoints; it is run by the zip module, \
                 not per tensor",
            ))
        }
    })
}

/// Run a kernel over whole in-memory tensors (tests, previews): `chunk` is
/// the chunk length to use, so tests can check chunking changes nothing.
pub fn merge_slices(
    kernel: &mut dyn Kernel,
    base: Option<&[f32]>,
    models: &[&[f32]],
    row_len: usize,
    chunk: usize,
) -> Vec<f32> {
    let numel = models
        .first()
        .map_or(base.map_or(0, |b| b.len()), |m| m.len());
    let step = if row_len <= chunk {
        (chunk / row_len.max(1)).max(1) * row_len.max(1)
    } else {
        chunk.max(1)
    };
    let mut out = vec![0.0f32; numel];
    if kernel.wants_sample() {
        let ranges = sample_ranges(numel);
        let gather = |v: &[f32]| -> Vec<f32> {
            ranges
                .iter()
                .flat_map(|r| v[r.clone()].iter().copied())
                .collect()
        };
        let sb = base.map(gather);
        let sm: Vec<Vec<f32>> = models.iter().map(|m| gather(m)).collect();
        let sm: Vec<&[f32]> = sm.iter().map(|v| v.as_slice()).collect();
        kernel.sample(&Chunk {
            start: 0,
            numel,
            row_len,
            base: sb.as_deref(),
            models: &sm,
        });
    }
    let chunks = |start: usize| {
        let end = (start + step).min(numel);
        let ms: Vec<&[f32]> = models.iter().map(|m| &m[start..end]).collect();
        (end, ms)
    };
    while kernel.wants_pass() {
        kernel.begin_pass();
        let mut start = 0;
        while start < numel {
            let (end, ms) = chunks(start);
            kernel.observe(&Chunk {
                start,
                numel,
                row_len,
                base: base.map(|b| &b[start..end]),
                models: &ms,
            });
            start = end;
        }
        kernel.end_pass();
    }
    let mut start = 0;
    while start < numel {
        let (end, ms) = chunks(start);
        kernel.apply(
            &Chunk {
                start,
                numel,
                row_len,
                base: base.map(|b| &b[start..end]),
                models: &ms,
            },
            &mut out[start..end],
        );
        start = end;
    }
    out
}
