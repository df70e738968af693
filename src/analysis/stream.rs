//! One tensor's statistics, streamed from the files the way the engine
//! merges it: the method's own kernel over chunks of whole rows (bf16 bit
//! patterns straight from the files where the kernel takes them), its
//! sample and statistics passes, then a last pass where the kernel hands
//! out each model's part ([`Kernel::parts`]) instead of merging, and the
//! parts are counted. Memory is a few chunk buffers per call, whatever
//! the tensor's size.

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

    /// Elements `[start, start + len)` of every input as f32.
    fn read_f32(&self, start: usize, len: usize, bufs: &mut [Vec<f32>]) -> Result<()> {
        for (i, ((m, t), b)) in self.inputs.iter().zip(bufs.iter_mut()).enumerate() {
            b.resize(len, 0.0);
            match self.held_bytes(i, start, len) {
                Some(bytes) => crate::model::to_f32(t.dtype, bytes, b),
                None => m.read_f32(t, start, b)?,
            }
        }
        Ok(())
    }

    /// The same as bf16 bit patterns (only when `all_bf16`).
    fn read_bf16(&self, start: usize, len: usize, bufs: &mut [Vec<u16>]) -> Result<()> {
        for (i, ((m, t), b)) in self.inputs.iter().zip(bufs.iter_mut()).enumerate() {
            b.resize(len, 0);
            match self.held_bytes(i, start, len) {
                Some(bytes) => bytemuck::cast_slice_mut::<u16, u8>(b).copy_from_slice(bytes),
                None => m.read_raw(t, start * 2, bytemuck::cast_slice_mut(&mut b[..]))?,
            }
        }
        Ok(())
    }
}

/// A chunk over per-input views, the reference first.
fn make_chunk<'a>(start: usize, numel: usize, row_len: usize, views: &'a [&'a [f32]]) -> Chunk<'a> {
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

/// Working memory of one tensor's last pass.
struct Work {
    raw: Vec<f32>,
    parts: Parts,
}

impl Work {
    fn new() -> Work {
        Work {
            raw: Vec::new(),
            parts: Parts::default(),
        }
    }

    /// Count one chunk: the kernel's parts, or (no kernel) the raw task
    /// vectors, weighted by `w`.
    fn add(
        &mut self,
        kernel: &mut Option<Box<dyn Kernel>>,
        chunk: &Chunk,
        w: &[f32],
        with_raw: bool,
        st: &mut Stats,
    ) {
        let n = chunk.models.len();
        let len = chunk.len();
        let by_kernel = kernel
            .as_mut()
            .is_some_and(|k| k.parts(chunk, &mut self.parts));
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
    }

    /// Per-tensor values of the last parts: ties and weights.
    fn finish(&self, st: &mut Stats) {
        let numel = st.params as f64;
        for (i, t) in self.parts.tied.iter().enumerate().take(st.n()) {
            st.tied[i] += t;
            st.weight_sums[i] += f64::from(self.parts.weights[i]) * numel;
        }
    }
}

/// Statistics of one tensor under `method` with its resolved `params`.
///
/// `raw`: the sums over the untrimmed task vectors (dot products, non-zero
/// counts), when an earlier call computed them; they do not depend on the
/// method or its parameters, and they are most of the counting work.
pub(super) fn tensor_stats(
    mut src: Source,
    method: Method,
    params: &TensorParams,
    raw: Option<&RawSums>,
    cancel: &AtomicBool,
) -> Result<Stats> {
    let n = src.n();
    let numel = src.numel;
    let step = chunk_step(numel, src.row_len);
    let mut st = Stats::for_method(method, n);
    st.params = numel as u64;
    let mut kernel = if has_parts(method) {
        Some(merge::kernel(method, params, numel, n)?)
    } else {
        None
    };
    let mut bufs: Vec<Vec<f32>> = vec![Vec::new(); n + 1];
    if kernel.as_ref().is_some_and(|k| k.wants_pass()) {
        // More than one pass: read once.
        src.hold(cancel)?;
    }
    let src = &src;
    if let Some(k) = kernel.as_deref_mut() {
        if k.wants_sample() {
            let ranges = merge::sample_ranges(numel);
            let total: usize = ranges.iter().map(|r| r.len()).sum();
            for ((m, t), b) in src.inputs.iter().zip(bufs.iter_mut()) {
                b.resize(total, 0.0);
                let mut at = 0;
                for r in &ranges {
                    m.read_f32(t, r.start, &mut b[at..at + r.len()])?;
                    at += r.len();
                }
            }
            let views: Vec<&[f32]> = bufs.iter().map(Vec::as_slice).collect();
            k.sample(&make_chunk(0, numel, src.row_len, &views));
        }
        let mut halves: [Vec<Vec<u16>>; 2] = [vec![Vec::new(); n + 1], vec![Vec::new(); n + 1]];
        let mut wide: [Vec<Vec<f32>>; 2] = [vec![Vec::new(); n + 1], vec![Vec::new(); n + 1]];
        while k.wants_pass() {
            k.begin_pass();
            let row_len = src.row_len;
            if src.all_bf16 && k.takes_bf16() {
                prefetched(
                    numel,
                    step,
                    &mut halves,
                    cancel,
                    &|start, len, b| src.read_bf16(start, len, b),
                    &mut |start, b| {
                        let views: Vec<&[u16]> = b.iter().map(Vec::as_slice).collect();
                        k.observe_bf16(&Chunk {
                            start,
                            numel,
                            row_len,
                            base: Some(views[0]),
                            models: &views[1..],
                        });
                    },
                )?;
            } else {
                prefetched(
                    numel,
                    step,
                    &mut wide,
                    cancel,
                    &|start, len, b| src.read_f32(start, len, b),
                    &mut |start, b| {
                        let views: Vec<&[f32]> = b.iter().map(Vec::as_slice).collect();
                        k.observe(&make_chunk(start, numel, row_len, &views));
                    },
                )?;
            }
            k.end_pass();
        }
    }
    let w = weights(params, n);
    if let Some(r) = raw {
        st.dots.clone_from(&r.dots);
        st.nonzero.clone_from(&r.nonzero);
    }
    // The parts in cache-sized pieces (DELLA ranks whole rows: whole
    // chunks for it).
    let piece = if method.spec().selection == Selection::RankedRandom {
        step
    } else {
        PIECE
    };
    let mut work = Work::new();
    let mut pair = [bufs, vec![Vec::new(); n + 1]];
    let with_raw = raw.is_none();
    let row_len = src.row_len;
    prefetched(
        numel,
        step,
        &mut pair,
        cancel,
        &|start, len, b| src.read_f32(start, len, b),
        &mut |start, b| {
            let len = b.first().map_or(0, Vec::len);
            let mut at = 0;
            while at < len {
                let end = (at + piece).min(len);
                let views: Vec<&[f32]> = b.iter().map(|x| &x[at..end]).collect();
                work.add(
                    &mut kernel,
                    &make_chunk(start + at, numel, row_len, &views),
                    &w,
                    with_raw,
                    &mut st,
                );
                at = end;
            }
        },
    )?;
    work.finish(&mut st);
    st.finish();
    Ok(st)
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
            &mut kernel,
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
