//! One tensor's statistics, streamed from the files the way the engine
//! merges it: the method's own kernel over chunks of whole rows (bf16 bit
//! patterns straight from the files where the kernel takes them), its
//! sample and statistics passes, then a last sweep where the kernel hands
//! out each model's part of every chunk instead of merging, and the parts
//! are counted: as rules ([`Kernel::rules`], a trim's bounds or DARE's
//! draw) that the count applies entry by entry with the merge's own
//! functions, or written out ([`Kernel::parts`]) for the other methods.
//!
//! Every sweep takes two workers where the kernel can be copied
//! ([`Kernel::back`]): one from the first chunk on, one from the last back,
//! until they meet (the second only when a worker is idle). Each piece of
//! a chunk is counted on its own and the sums are added in index order, so
//! the figures are the same bits whichever worker counted what, and the
//! same as one worker's in order (the tests compare every way).
//!
//! Memory is a few chunk buffers per worker, whatever the tensor's size
//! (small tensors are read once and held for all their sweeps).

use super::{count, AnalysisError, RawSums, Result, Stats};
use crate::engine::chunk_step;
use crate::merge::{self, Chunk, Kernel, Method, Parts, Selection, TensorParams};
use crate::model::{Dtype, Model, TensorInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Tensors at least this large get a sampled preview.
pub const PREVIEW_MIN: usize = 1 << 22;
/// Roughly how many elements a preview samples.
pub const PREVIEW_ELEMS: usize = 1 << 20;

/// Entries per call for a kernel's parts: the parts and the inputs of one
/// call stay in the L2 cache while they are counted.
const PIECE: usize = 1 << 14;

/// Whether `method`'s kernel describes its per-model parts (the task
/// arithmetic family and SCE). The others trim nothing, and their
/// statistics describe the raw task vectors.
pub(super) fn has_parts(method: Method) -> bool {
    method.spec().selection != Selection::None || method == Method::TaskArithmetic
}

/// One tensor across the reference (first) and the models.
pub(super) struct Source<'a> {
    inputs: Vec<(&'a Model, &'a TensorInfo)>,
    pub numel: usize,
    pub row_len: usize,
    all_bf16: bool,
    /// Every input's bytes (u64 words, so any element type is aligned),
    /// when the tensor is small enough to hold: read from the files once,
    /// every pass then served from memory.
    held: Option<Vec<Vec<u64>>>,
}

/// Tensors whose inputs take at most this many bytes are read once and
/// held for all passes (two workers hold at most twice this).
const HOLD_BYTES: usize = 48 << 20;

impl<'a> Source<'a> {
    /// The tensor `name` of `reference` and of every model, which must
    /// all have it, with the same shape and a float dtype.
    pub fn new(reference: &'a Model, models: &'a [Arc<Model>], name: &str) -> Result<Source<'a>> {
        let missing = |m: &Model| AnalysisError::MissingTensor {
            model: m.path().to_path_buf(),
            tensor: name.to_string(),
        };
        let rt = reference.tensor(name).ok_or_else(|| missing(reference))?;
        let mut inputs = vec![(reference, rt)];
        for m in models {
            let t = m.tensor(name).ok_or_else(|| missing(m))?;
            if t.shape != rt.shape {
                return Err(AnalysisError::Shape {
                    model: m.path().to_path_buf(),
                    tensor: name.to_string(),
                    shape: t.shape.clone(),
                    reference: rt.shape.clone(),
                });
            }
            inputs.push((m.as_ref(), t));
        }
        if let Some((m, t)) = inputs.iter().find(|(_, t)| !t.dtype.is_mergeable()) {
            return Err(AnalysisError::NotFloat {
                model: m.path().to_path_buf(),
                tensor: name.to_string(),
                dtype: t.dtype.name(),
            });
        }
        Ok(Source {
            all_bf16: cfg!(target_endian = "little")
                && inputs.iter().all(|(_, t)| t.dtype == Dtype::BF16),
            numel: rt.numel(),
            row_len: rt.shape.last().copied().unwrap_or(1).max(1),
            inputs,
            held: None,
        })
    }

    /// Read every input whole into memory if all of them fit in
    /// [`HOLD_BYTES`].
    fn hold(&mut self, cancel: &AtomicBool) -> Result<()> {
        let total: usize = self.inputs.iter().map(|(_, t)| t.nbytes()).sum();
        if total > HOLD_BYTES || self.held.is_some() {
            return Ok(());
        }
        const PIECE_BYTES: usize = 1 << 20;
        let mut held = Vec::with_capacity(self.inputs.len());
        for (m, t) in &self.inputs {
            let size = t.nbytes();
            let mut words = vec![0u64; size.div_ceil(8)];
            let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..size];
            for (i, piece) in bytes.chunks_mut(PIECE_BYTES).enumerate() {
                check(cancel)?;
                m.read_raw(t, i * PIECE_BYTES, piece)?;
            }
            held.push(words);
        }
        self.held = Some(held);
        Ok(())
    }

    /// Input `i`'s held bytes `[start, start + len)` in elements.
    fn held_bytes(&self, i: usize, start: usize, len: usize) -> Option<&[u8]> {
        let words = self.held.as_ref()?.get(i)?;
        let size = self.inputs[i].1.dtype.size();
        bytemuck::cast_slice::<u64, u8>(words).get(start * size..(start + len) * size)
    }

    /// Models (besides the reference).
    pub fn n(&self) -> usize {
        self.inputs.len() - 1
    }
}

/// A chunk over per-input views, the reference first.
fn make_chunk<'a, E>(
    start: usize,
    numel: usize,
    row_len: usize,
    views: &'a [&'a [E]],
) -> Chunk<'a, E> {
    Chunk {
        start,
        numel,
        row_len,
        base: views.first().copied(),
        models: views.get(1..).unwrap_or(&[]),
    }
}

/// Buffers of one chunk of every input.
type Bufs<T> = Vec<Vec<T>>;

/// Fills the buffers with elements `[start, start + len)` of every input.
type Read<'a, T> = dyn Fn(usize, usize, &mut Bufs<T>) -> Result<()> + Sync + 'a;

/// Call `work` on every chunk of `0..numel` (`step` entries each, the last
/// shorter), in order, with `read` filling the buffers of the next chunk
/// meanwhile: on another worker when one is idle (a tensor analysed
/// alone then uses both cores), else on this one after `work`. `read`
/// sizes the buffers to the chunk. Checks `cancel` between chunks.
fn prefetched<T: Send + Sync>(
    numel: usize,
    step: usize,
    bufs: &mut [Bufs<T>; 2],
    cancel: &AtomicBool,
    read: &Read<'_, T>,
    work: &mut (dyn FnMut(usize, &Bufs<T>) + Send),
) -> Result<()> {
    if numel == 0 {
        return Ok(());
    }
    let [a, b] = bufs;
    let (mut cur, mut next) = (a, b);
    read(0, step.min(numel), cur)?;
    let mut start = 0;
    while start < numel {
        check(cancel)?;
        let len = step.min(numel - start);
        let after = start + len;
        let (ahead, ()) = rayon::join(
            || match step.min(numel - after) {
                0 => Ok(()),
                l => read(after, l, next),
            },
            || work(start, cur),
        );
        ahead?;
        std::mem::swap(&mut cur, &mut next);
        start = after;
    }
    Ok(())
}

fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        Err(AnalysisError::Cancelled)
    } else {
        Ok(())
    }
}

/// How a tensor's sweeps run. The statistics are the same, bit for bit,
/// whichever is chosen (the tests compare them); only the speed differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mode {
    /// Parts from the kernel's fused loop ([`Kernel::parts_fused`]) where
    /// it has one, read as bf16 bit patterns when every input is bf16.
    pub fused: bool,
    /// Who takes the chunks of a sweep.
    pub ends: Ends,
}

/// Who takes the chunks of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ends {
    /// One worker, in order (the next chunk read meanwhile).
    One,
    /// Two workers where the kernel can share its sweeps
    /// ([`Kernel::back`]): one from the first chunk on, one from the last
    /// back, until they meet (the second only when a worker is idle).
    Two,
    /// Both ends on this thread, taking a chunk each in turn (tests: both
    /// ends always take part).
    #[cfg_attr(not(test), allow(dead_code))]
    Alternate,
}

/// What the workbench and `smelt analyze` use.
pub(super) const FAST: Mode = Mode {
    fused: true,
    ends: Ends::Two,
};

/// An element type a sweep reads: f32, or bf16 bit patterns.
trait Elem: merge::Lane + bytemuck::Pod + Default {
    /// Input `i`'s elements `[start, start + len)`: the held bytes when
    /// they are of this type already, else read (and converted) into
    /// `buf`.
    fn view<'b>(
        src: &'b Source,
        i: usize,
        start: usize,
        len: usize,
        buf: &'b mut Vec<Self>,
    ) -> Result<&'b [Self]>;
    /// The kernel's `observe` for this element type.
    fn observe(k: &mut dyn Kernel, c: &Chunk<Self>);
    /// The kernel's `rules` for this element type.
    fn rules(k: &mut dyn Kernel, c: &Chunk<Self>, rules: &mut Vec<merge::Rule>) -> bool;
}

impl Elem for f32 {
    fn view<'b>(
        src: &'b Source,
        i: usize,
        start: usize,
        len: usize,
        buf: &'b mut Vec<f32>,
    ) -> Result<&'b [f32]> {
        let (m, t) = src.inputs[i];
        let held = src.held_bytes(i, start, len);
        if let Some(v) = held
            .filter(|_| t.dtype == Dtype::F32 && cfg!(target_endian = "little"))
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
        {
            return Ok(v);
        }
        buf.resize(len, 0.0);
        match held {
            Some(bytes) => crate::model::to_f32(t.dtype, bytes, buf),
            None => m.read_f32(t, start, buf)?,
        }
        Ok(buf)
    }
    fn observe(k: &mut dyn Kernel, c: &Chunk<f32>) {
        k.observe(c);
    }
    fn rules(k: &mut dyn Kernel, c: &Chunk<f32>, rules: &mut Vec<merge::Rule>) -> bool {
        k.rules(c, rules)
    }
}

/// Only read when every input is bf16 (`Source::all_bf16`).
impl Elem for u16 {
    fn view<'b>(
        src: &'b Source,
        i: usize,
        start: usize,
        len: usize,
        buf: &'b mut Vec<u16>,
    ) -> Result<&'b [u16]> {
        if let Some(v) = src
            .held_bytes(i, start, len)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
        {
            return Ok(v);
        }
        let (m, t) = src.inputs[i];
        buf.resize(len, 0);
        m.read_raw(t, start * 2, bytemuck::cast_slice_mut(&mut buf[..]))?;
        Ok(buf)
    }
    fn observe(k: &mut dyn Kernel, c: &Chunk<u16>) {
        k.observe_bf16(c);
    }
    fn rules(k: &mut dyn Kernel, c: &Chunk<u16>, rules: &mut Vec<merge::Rule>) -> bool {
        k.rules_bf16(c, rules)
    }
}

/// Every input's elements `[start, start + len)` (see [`Elem::view`]).
fn views<'b, E: Elem>(
    src: &'b Source,
    start: usize,
    len: usize,
    bufs: &'b mut [Vec<E>],
) -> Result<Vec<&'b [E]>> {
    bufs.iter_mut()
        .enumerate()
        .map(|(i, b)| E::view(src, i, start, len, b))
        .collect()
}

/// What a sweep does with one chunk: its first flat index, and a view of
/// it per input (the reference first).
type Visit<'w, E> = dyn FnMut(usize, &[&[E]]) + Send + 'w;

/// Every chunk of `src` (`step` entries each, the last shorter), each
/// once: to `front` in order when there is no `back`, else split between
/// `front`, which takes chunks from the first on, and `back`, which takes
/// them from the last back, until they meet (see [`Ends`]). Checks
/// `cancel` between chunks.
fn sweep<E: Elem>(
    src: &Source,
    step: usize,
    ends: Ends,
    cancel: &AtomicBool,
    front: &mut Visit<'_, E>,
    back: Option<&mut Visit<'_, E>>,
) -> Result<()> {
    let numel = src.numel;
    let n_in = src.inputs.len();
    let (Some(back), Ends::Two | Ends::Alternate) = (back, ends) else {
        let mut bufs: [Bufs<E>; 2] = [vec![Vec::new(); n_in], vec![Vec::new(); n_in]];
        return prefetched(
            numel,
            step,
            &mut bufs,
            cancel,
            &|start, len, b| {
                for (i, buf) in b.iter_mut().enumerate() {
                    let v = E::view(src, i, start, len, buf)?.to_vec();
                    *buf = v;
                }
                Ok(())
            },
            &mut |start, b| {
                let v: Vec<&[E]> = b.iter().map(Vec::as_slice).collect();
                front(start, &v);
            },
        );
    };
    let step = step.max(1);
    // Chunks not yet taken: `[next.0, next.1)`.
    let next = std::sync::Mutex::new((0usize, numel.div_ceil(step)));
    let stop = AtomicBool::new(false);
    // Take and visit one chunk from one end; false when none is left.
    let one = |from_back: bool, visit: &mut Visit<'_, E>, bufs: &mut Bufs<E>| -> Result<bool> {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        check(cancel)?;
        let c = {
            let mut r = next.lock().unwrap_or_else(|e| e.into_inner());
            if r.0 >= r.1 {
                return Ok(false);
            }
            if from_back {
                r.1 -= 1;
                r.1
            } else {
                r.0 += 1;
                r.0 - 1
            }
        };
        let start = c * step;
        let len = step.min(numel - start);
        let v = views(src, start, len, bufs)?;
        visit(start, &v);
        Ok(true)
    };
    let run = |from_back: bool, visit: &mut Visit<'_, E>| -> Result<()> {
        let mut bufs: Bufs<E> = vec![Vec::new(); n_in];
        loop {
            match one(from_back, visit, &mut bufs) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    };
    if ends == Ends::Two {
        let (a, b) = rayon::join(|| run(false, front), || run(true, back));
        return a.and(b);
    }
    let mut bufs: [Bufs<E>; 2] = [vec![Vec::new(); n_in], vec![Vec::new(); n_in]];
    let [fb, bb] = &mut bufs;
    loop {
        let a = one(false, front, fb)?;
        let b = one(true, back, bb)?;
        if !a && !b {
            return Ok(());
        }
    }
}

/// Per-model weight from resolved parameters (1 where the method has none).
fn weights(params: &TensorParams, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            params
                .models
                .get(i)
                .map_or(1.0, |m| m.f64_or("weight", 1.0)) as f32
        })
        .collect()
}

/// Working memory of one worker's counting.
struct Work {
    raw: Vec<f32>,
    parts: Parts,
    rules: Vec<merge::Rule>,
    scratch: count::Scratch,
    /// bf16 inputs widened, for kernels without rules.
    wide: Bufs<f32>,
    /// Per model, the ties and weight of the last piece counted.
    last: Option<(Vec<u64>, Vec<f32>)>,
}

impl Work {
    fn new() -> Work {
        Work {
            raw: Vec::new(),
            parts: Parts::default(),
            rules: Vec::new(),
            scratch: count::Scratch::default(),
            wide: Vec::new(),
            last: None,
        }
    }

    /// Count one chunk: the kernel's parts, or (no kernel) the raw task
    /// vectors, weighted by `w`.
    fn add(
        &mut self,
        kernel: Option<&mut dyn Kernel>,
        chunk: &Chunk,
        w: &[f32],
        with_raw: bool,
        st: &mut Stats,
    ) {
        let n = chunk.models.len();
        let len = chunk.len();
        let by_kernel = kernel.is_some_and(|k| k.parts(chunk, &mut self.parts));
        if with_raw || !by_kernel {
            self.raw.resize(n * len, 0.0);
            for (i, m) in chunk.models.iter().enumerate() {
                let r = &mut self.raw[i * len..(i + 1) * len];
                match chunk.base {
                    Some(b) => {
                        for ((o, &x), &y) in r.iter_mut().zip(m.iter()).zip(b) {
                            *o = x - y;
                        }
                    }
                    None => r.copy_from_slice(m),
                }
            }
        }
        if !by_kernel {
            let p = &mut self.parts;
            p.reset(n, len);
            p.vote = merge::Vote::Weighted;
            p.kept.copy_from_slice(&self.raw);
            for i in 0..n {
                let wi = w.get(i).copied().unwrap_or(1.0);
                p.weights[i] = wi;
                p.tied[i] = 0;
                for (o, &x) in p.weighted[i * len..(i + 1) * len]
                    .iter_mut()
                    .zip(&self.raw[i * len..(i + 1) * len])
                {
                    *o = x * wi;
                }
            }
        }
        count::add_chunk(&self.raw, &self.parts, with_raw, st);
        if self.last.is_none() {
            self.last = Some((self.parts.tied.clone(), self.parts.weights.clone()));
        }
    }

    /// Count one piece of a chunk in any element type: from the kernel's
    /// rules when `fused` and it has them, else from its parts of the
    /// piece as f32.
    #[allow(clippy::too_many_arguments)]
    fn add_any<E: Elem>(
        &mut self,
        mut kernel: Option<&mut dyn Kernel>,
        chunk: &Chunk<E>,
        fused: bool,
        w: &[f32],
        with_raw: bool,
        st: &mut Stats,
    ) {
        let n = chunk.models.len();
        if let (true, Some(k), Some(base)) = (
            fused && n <= count::RULES_MAX,
            kernel.as_deref_mut(),
            chunk.base,
        ) {
            if E::rules(k, chunk, &mut self.rules) {
                count::add_rules(
                    chunk.models,
                    base,
                    chunk.start,
                    &self.rules,
                    with_raw,
                    &mut self.scratch,
                    st,
                );
                if self.last.is_none() {
                    self.last = Some((
                        self.rules.iter().map(|r| r.tied).collect(),
                        self.rules.iter().map(|r| r.weight).collect(),
                    ));
                }
                return;
            }
        }
        let mut wide = std::mem::take(&mut self.wide);
        let inputs = chunk.base.into_iter().chain(chunk.models.iter().copied());
        wide.resize(inputs.clone().count(), Vec::new());
        for (o, v) in wide.iter_mut().zip(inputs) {
            o.clear();
            o.extend(v.iter().map(|x| x.f32()));
        }
        let views: Vec<&[f32]> = wide.iter().map(Vec::as_slice).collect();
        let skip = usize::from(chunk.base.is_some());
        let c = Chunk {
            start: chunk.start,
            numel: chunk.numel,
            row_len: chunk.row_len,
            base: chunk.base.map(|_| views[0]),
            models: &views[skip..],
        };
        self.add(kernel, &c, w, with_raw, st);
        self.wide = wide;
    }

    /// Per-tensor values of the last parts (ties and weights), when this
    /// worker counted any.
    fn finish(&self, st: &mut Stats) -> bool {
        let Some((tied, weights)) = &self.last else {
            return false;
        };
        if weights.len() < st.n() {
            return false;
        }
        let numel = st.params as f64;
        for (i, t) in tied.iter().enumerate().take(st.n()) {
            st.tied[i] += t;
            st.weight_sums[i] += f64::from(weights[i]) * numel;
        }
        true
    }
}

/// Statistics of one tensor under `method` with its resolved `params`.
///
/// `raw`: the sums over the untrimmed task vectors (dot products, non-zero
/// counts), when an earlier call computed them; they do not depend on the
/// method or its parameters, and they are most of the counting work.
///
/// Every piece of a chunk is counted on its own and the pieces' sums are
/// added in index order, so the result does not depend on which worker
/// counted what (see [`Mode`]).
pub(super) fn tensor_stats(
    mut src: Source,
    method: Method,
    params: &TensorParams,
    raw: Option<&RawSums>,
    cancel: &AtomicBool,
    mode: Mode,
) -> Result<Stats> {
    let n = src.n();
    let numel = src.numel;
    let step = chunk_step(numel, src.row_len);
    let row_len = src.row_len;
    let mut st = Stats::for_method(method, n);
    st.params = numel as u64;
    let mut kernel = if has_parts(method) {
        Some(merge::kernel(method, params, numel, n)?)
    } else {
        None
    };
    if kernel.as_ref().is_some_and(|k| k.wants_pass()) {
        // More than one pass: read once.
        src.hold(cancel)?;
    }
    let src = &src;
    let two = mode.ends != Ends::One;
    if let Some(k) = kernel.as_deref_mut() {
        if k.wants_sample() {
            let ranges = merge::sample_ranges(numel);
            let total: usize = ranges.iter().map(|r| r.len()).sum();
            let mut bufs: Bufs<f32> = vec![Vec::new(); n + 1];
            for ((m, t), b) in src.inputs.iter().zip(bufs.iter_mut()) {
                b.resize(total, 0.0);
                let mut at = 0;
                for r in &ranges {
                    m.read_f32(t, r.start, &mut b[at..at + r.len()])?;
                    at += r.len();
                }
            }
            let views: Vec<&[f32]> = bufs.iter().map(Vec::as_slice).collect();
            k.sample(&make_chunk(0, numel, row_len, &views));
        }
        while k.wants_pass() {
            k.begin_pass();
            let mut kb = if two { k.back() } else { None };
            if src.all_bf16 && k.takes_bf16() {
                pass::<u16>(src, step, mode.ends, cancel, k, kb.as_deref_mut())?;
            } else {
                pass::<f32>(src, step, mode.ends, cancel, k, kb.as_deref_mut())?;
            }
            if let Some(b) = kb {
                k.join_back(b);
            }
            k.end_pass();
        }
    }
    let w = weights(params, n);
    if let Some(r) = raw {
        st.dots.clone_from(&r.dots);
        st.nonzero.clone_from(&r.nonzero);
    }
    // Without a kernel there is no state: both ends count.
    let mut kb = match kernel.as_deref_mut() {
        Some(k) if two => k.back(),
        _ => None,
    };
    let ends = if two && (kernel.is_none() || kb.is_some()) {
        mode.ends
    } else {
        Ends::One
    };
    let count = Count {
        numel,
        row_len,
        // The parts in cache-sized pieces (DELLA ranks whole rows, and
        // arcee_fusion's importance needs each row's KL: whole chunks for
        // them).
        piece: if matches!(
            method.spec().selection,
            Selection::RankedRandom | Selection::Importance
        ) {
            step
        } else {
            PIECE
        },
        w: &w,
        with_raw: raw.is_none(),
        fused: mode.fused,
        n,
    };
    let bf16 = src.all_bf16 && mode.fused && kernel.is_some();
    let mut front = (Work::new(), Vec::new());
    let mut back = (Work::new(), Vec::new());
    if bf16 {
        count.sweep::<u16>(
            src,
            step,
            ends,
            cancel,
            &mut kernel,
            &mut kb,
            &mut front,
            &mut back,
        )?;
    } else {
        count.sweep::<f32>(
            src,
            step,
            ends,
            cancel,
            &mut kernel,
            &mut kb,
            &mut front,
            &mut back,
        )?;
    }
    let mut chunks: Vec<(usize, Stats)> = front.1;
    chunks.append(&mut back.1);
    chunks.sort_by_key(|c| c.0);
    for (_, c) in &chunks {
        st.add_sums(c);
    }
    if !front.0.finish(&mut st) {
        back.0.finish(&mut st);
    }
    st.finish();
    Ok(st)
}

/// One statistics pass of `k` over `src`, shared with `kb` (its copy for
/// the other end) when there is one.
fn pass<E: Elem>(
    src: &Source,
    step: usize,
    ends: Ends,
    cancel: &AtomicBool,
    k: &mut dyn Kernel,
    kb: Option<&mut dyn Kernel>,
) -> Result<()> {
    let (numel, row_len) = (src.numel, src.row_len);
    let mut front = |start: usize, v: &[&[E]]| E::observe(k, &make_chunk(start, numel, row_len, v));
    match kb {
        Some(kb) => {
            let mut back =
                |start: usize, v: &[&[E]]| E::observe(kb, &make_chunk(start, numel, row_len, v));
            sweep::<E>(src, step, ends, cancel, &mut front, Some(&mut back))
        }
        None => sweep::<E>(src, step, ends, cancel, &mut front, None),
    }
}

/// The last sweep: every chunk's parts counted on their own.
struct Count<'a> {
    numel: usize,
    row_len: usize,
    piece: usize,
    w: &'a [f32],
    with_raw: bool,
    fused: bool,
    n: usize,
}

/// One worker's counting memory and the pieces it counted (first flat
/// index, sums).
type Counted = (Work, Vec<(usize, Stats)>);

impl Count<'_> {
    /// One chunk's pieces, each counted on its own (first flat index,
    /// sums) into `out`: in order, or from the last piece back for the
    /// worker that takes chunks from the end (its kernel's selections
    /// expect every call to come before the last one).
    fn chunk<E: Elem>(
        &self,
        mut k: Option<&mut dyn Kernel>,
        work: &mut Work,
        start: usize,
        v: &[&[E]],
        backwards: bool,
        out: &mut Vec<(usize, Stats)>,
    ) {
        let len = v.first().map_or(0, |x| x.len());
        let pieces = len.div_ceil(self.piece.max(1));
        for p in 0..pieces {
            let p = if backwards { pieces - 1 - p } else { p };
            let at = p * self.piece;
            let end = (at + self.piece).min(len);
            let pv: Vec<&[E]> = v.iter().map(|x| &x[at..end]).collect();
            let mut st = Stats::new(self.n);
            work.add_any(
                k.as_deref_mut(),
                &make_chunk(start + at, self.numel, self.row_len, &pv),
                self.fused,
                self.w,
                self.with_raw,
                &mut st,
            );
            out.push((start + at, st));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sweep<E: Elem>(
        &self,
        src: &Source,
        step: usize,
        ends: Ends,
        cancel: &AtomicBool,
        kernel: &mut Option<Box<dyn Kernel>>,
        kb: &mut Option<Box<dyn Kernel>>,
        front: &mut Counted,
        back: &mut Counted,
    ) -> Result<()> {
        let mut f = |start: usize, v: &[&[E]]| {
            self.chunk(
                kernel.as_deref_mut(),
                &mut front.0,
                start,
                v,
                false,
                &mut front.1,
            );
        };
        if ends == Ends::One {
            return sweep::<E>(src, step, ends, cancel, &mut f, None);
        }
        let mut b = |start: usize, v: &[&[E]]| {
            self.chunk(kb.as_deref_mut(), &mut back.0, start, v, true, &mut back.1);
        };
        sweep::<E>(src, step, ends, cancel, &mut f, Some(&mut b))
    }
}

/// A sampled estimate for a big tensor: about [`PREVIEW_ELEMS`] entries in
/// evenly spaced whole rows, run through the method's kernel as if they
/// were the whole tensor (each row at its true position, so random draws
/// are the merge's own for those rows; magnitude and variance cut-offs
/// come from the sample's own values, so kept shares and the histogram
/// are estimates). `None` for tensors under [`PREVIEW_MIN`] or too few
/// rows to sample.
pub(super) fn preview_stats(
    src: &Source,
    method: Method,
    params: &TensorParams,
    cancel: &AtomicBool,
) -> Result<Option<Stats>> {
    let (numel, row) = (src.numel, src.row_len);
    let rows = numel / row;
    let want = (PREVIEW_ELEMS / row).clamp(1, rows.max(1));
    if numel < PREVIEW_MIN || want * 2 > rows {
        return Ok(None);
    }
    let n = src.n();
    let stride = rows / want;
    let starts: Vec<usize> = (0..want).map(|r| r * stride * row).collect();
    let sample = want * row;
    let mut data: Vec<Vec<f32>> = vec![vec![0f32; sample]; n + 1];
    for (r, &at) in starts.iter().enumerate() {
        check(cancel)?;
        for ((m, t), d) in src.inputs.iter().zip(data.iter_mut()) {
            m.read_f32(t, at, &mut d[r * row..(r + 1) * row])?;
        }
    }
    let mut kernel = if has_parts(method) {
        Some(merge::kernel(method, params, sample, n)?)
    } else {
        None
    };
    let views =
        |r: usize| -> Vec<&[f32]> { data.iter().map(|d| &d[r * row..(r + 1) * row]).collect() };
    if let Some(k) = kernel.as_deref_mut() {
        while k.wants_pass() {
            check(cancel)?;
            k.begin_pass();
            for (r, &at) in starts.iter().enumerate() {
                let v = views(r);
                k.observe(&make_chunk(at, sample, row, &v));
            }
            k.end_pass();
        }
    }
    let mut st = Stats::for_method(method, n);
    st.params = sample as u64;
    let w = weights(params, n);
    let mut work = Work::new();
    for (r, &at) in starts.iter().enumerate() {
        let v = views(r);
        work.add(
            kernel.as_deref_mut(),
            &make_chunk(at, sample, row, &v),
            &w,
            true,
            &mut st,
        );
    }
    check(cancel)?;
    work.finish(&mut st);
    st.finish();
    Ok(Some(st))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{ParamMap, ParamValue};
    use crate::model::write_small;
    use std::path::Path;

    /// One tensor over 1M entries (the selections take a sample and bracket
    /// their cut-off), one of several chunks of 1000-long rows, one whose
    /// rows are longer than a chunk.
    const TENSORS: [(&str, [usize; 2]); 3] = [
        ("big", [1100, 1000]),
        ("mid", [300, 1000]),
        ("long", [3, 70_000]),
    ];
    const N: usize = 3;

    fn lcg(s: &mut u64) -> u64 {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *s >> 33
    }

    /// Base and three models whose task vectors are zero, a few quantised
    /// values (heavy ties at any cut-off) or continuous.
    fn family(dir: &Path, dtype: Dtype) -> (Arc<Model>, Vec<Arc<Model>>) {
        let mut s = 7u64;
        let mut base = Vec::new();
        let mut models = vec![Vec::new(); N];
        for (name, shape) in TENSORS {
            let numel = shape[0] * shape[1];
            let b: Vec<f32> = (0..numel)
                .map(|_| (lcg(&mut s) % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            for (i, m) in models.iter_mut().enumerate() {
                let v: Vec<f32> = b
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| {
                        let r = lcg(&mut s);
                        let d = match r % 10 {
                            0 => 0.0,
                            1..=5 => (1 + (r >> 8) % 5) as f32 / 32.0,
                            // Continuous, over a range wide enough (from
                            // one region of the tensor to the next) that
                            // f64 sums depend on their order.
                            _ => {
                                let m = ((r >> 8) % 100_000) as f32 * 1e-5 * (i + 1) as f32;
                                m * 2f32.powi(-(((j >> 14) % 40) as i32))
                            }
                        };
                        if (r >> 40).is_multiple_of(2) {
                            x + d
                        } else {
                            x - d
                        }
                    })
                    .collect();
                m.push((name.to_string(), shape.to_vec(), v));
            }
            base.push((name.to_string(), shape.to_vec(), b));
        }
        write_small(&dir.join("base"), &base, dtype, &[]).unwrap();
        for (i, m) in models.iter().enumerate() {
            write_small(&dir.join(format!("ft{i}")), m, dtype, &[]).unwrap();
        }
        let open = |n: &str| Arc::new(Model::open(&dir.join(n)).unwrap());
        (
            open("base"),
            (0..N).map(|i| open(&format!("ft{i}"))).collect(),
        )
    }

    fn params(name: &str, global: &[(&str, ParamValue)], per: &[(&str, [f64; N])]) -> TensorParams {
        let mut g = ParamMap::default();
        for (k, v) in global {
            g.set(k, *v);
        }
        let models = (0..N)
            .map(|i| {
                let mut m = ParamMap::default();
                m.set("weight", ParamValue::Float([1.0, 0.5, 2.0][i]));
                for (k, v) in per {
                    m.set(k, ParamValue::Float(v[i]));
                }
                m
            })
            .collect();
        TensorParams {
            tensor: name.into(),
            global: g,
            models,
            seed: 5,
        }
    }

    /// Every way of running the sweeps (the kernel's rules or its parts,
    /// one worker or both ends) gives the statistics of the general path,
    /// one worker in order, bit for bit: the same masks (ties at the
    /// cut-off kept by lowest index, whichever end meets them), the same
    /// DARE draws and L1 rescale factors, the same sums.
    #[test]
    fn every_mode_counts_what_the_general_path_counts() {
        use ParamValue::{Bool, Float};
        let cancel = AtomicBool::new(false);
        let general = Mode {
            fused: false,
            ends: Ends::One,
        };
        let modes = [
            Mode {
                fused: true,
                ends: Ends::One,
            },
            Mode {
                fused: false,
                ends: Ends::Alternate,
            },
            Mode {
                fused: true,
                ends: Ends::Alternate,
            },
            FAST,
        ];
        let d = [("density", [0.3, 0.5, 0.7])];
        // Nothing kept (k = 0), everything (kept whole), all but one.
        let edges = [("density", [0.0, 1.0, 0.999_999])];
        type Case<'a> = (
            Method,
            Vec<(&'a str, ParamValue)>,
            &'a [(&'a str, [f64; N])],
        );
        let cases: Vec<Case> = vec![
            (Method::Ties, vec![], &d),
            (Method::Ties, vec![], &edges),
            (Method::Ties, vec![("rescale", Bool(true))], &d),
            (Method::TaskArithmetic, vec![], &[]),
            (Method::DareTies, vec![], &d),
            (Method::DareTies, vec![], &edges),
            (Method::DareLinear, vec![("rescale", Bool(false))], &d),
            (
                Method::BreadcrumbsTies,
                vec![],
                &[("density", [0.3, 0.5, 0.7]), ("gamma", [0.01, 0.05, 0.1])],
            ),
            (
                Method::Della,
                vec![],
                &[("density", [0.3, 0.5, 0.7]), ("epsilon", [0.1, 0.1, 0.2])],
            ),
            (Method::Sce, vec![("select_topk", Float(0.4))], &[]),
            (Method::Linear, vec![], &[]),
        ];
        for dtype in [Dtype::BF16, Dtype::F32] {
            let dir = tempfile::tempdir().unwrap();
            let (base, models) = family(dir.path(), dtype);
            for (name, shape) in TENSORS {
                // f32 inputs take the same code after the read: fewer cases.
                if dtype == Dtype::F32 && name == "big" {
                    continue;
                }
                for (method, global, per) in &cases {
                    let p = params(name, global, per);
                    let run = |mode: Mode, raw: Option<&RawSums>| {
                        let src = Source::new(&base, &models, name).unwrap();
                        tensor_stats(src, *method, &p, raw, &cancel, mode).unwrap()
                    };
                    let want = run(general, None);
                    assert_eq!(want.params as usize, shape[0] * shape[1]);
                    assert_eq!(want.agree.iter().sum::<u64>(), want.params);
                    for mode in modes {
                        let got = run(mode, None);
                        assert_eq!(
                            got, want,
                            "{method:?} {global:?} {per:?} {name} {dtype:?} {mode:?}"
                        );
                    }
                    // The raw sums of an earlier request: the same.
                    let raw = RawSums {
                        dots: want.dots.clone(),
                        nonzero: want.nonzero.clone(),
                    };
                    assert_eq!(
                        run(FAST, Some(&raw)),
                        want,
                        "{method:?} {name} with raw sums"
                    );
                }
            }
        }
    }
}
