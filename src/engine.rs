//! Running a plan: stream tensors in chunks on rayon, merge, write.
//!
//! Each output tensor is one job. A job streams its inputs in chunks of at
//! most [`CHUNK_ELEMS`] elements through its method's kernel (statistics
//! passes first, if the method needs them, then the apply pass) and writes
//! each merged chunk straight into its place in the output shard. Workers
//! hold a handful of chunk buffers each, and inputs are read with `pread`
//! rather than through their maps, so peak memory depends on the number of
//! threads and models, not on model or tensor size.

pub mod multi;

use crate::merge::{self, Chunk};
use crate::model::{Dtype, Model, Writer, WriterOptions};
use crate::plan::{Job, JobKind, Plan};
use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Elements per chunk and input. Small enough that a worker's buffers (one
/// f32 chunk per input plus the output, about 1.3 MB with four inputs) stay
/// in the L2 cache between conversion, merge and write: larger chunks make
/// every step a trip to memory.
pub const CHUNK_ELEMS: usize = 1 << 16;

/// Longest row kept whole in one chunk (methods that work per row, such as
/// DELLA's ranking, see entire rows up to this length).
pub const MAX_ROW_CHUNK: usize = 1 << 22;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Files copied from the base (config) model when present (the list lives
/// with the writer, which accepts only files a merge writes).
use crate::model::COPIED_FILES;

/// What a running merge reports.
#[derive(Clone, Debug)]
pub enum Event {
    /// The plan is checked and the output created; the work begins.
    Started {
        /// Output tensors to write.
        tensors: usize,
        /// Input bytes the run will read (may grow; see `Progress`).
        bytes_total: u64,
    },
    /// Periodic (and once more, complete, when every tensor is done, just
    /// before the output is published): bytes of input processed so far,
    /// and a tensor being worked on. Methods that read a tensor more than
    /// once (a statistics pass, then the merge) add that tensor's bytes to
    /// `bytes_total` when a pass starts, so the fraction keeps moving
    /// through every pass.
    Progress {
        /// A tensor being worked on (one of several, with many threads).
        tensor: String,
        /// Output tensors finished.
        tensors_done: usize,
        /// Input bytes read so far.
        bytes_done: u64,
        /// Input bytes to read, counting every pass started so far.
        bytes_total: u64,
    },
    /// The output is published; the last event of a run that succeeded.
    Finished(Summary),
}

/// What a finished merge did: where, how much, how fast.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The published output folder.
    pub out: PathBuf,
    /// Output tensors written.
    pub tensors: usize,
    /// Bytes written (shards, index and the other files).
    pub bytes_written: u64,
    /// Input bytes read, every pass counted.
    pub bytes_read: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl Summary {
    /// Input bytes per second, in GB/s.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes_read as f64 / 1e9 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How to run a plan: where to write, whether to replace, threads, shards.
#[derive(Clone, Debug)]
pub struct Options {
    /// The output folder: must not exist unless `force`, never inside an
    /// input's folder.
    pub out: PathBuf,
    /// Replace an existing output folder, if it is empty or a smelt output
    /// (see `model::check_destination`).
    pub force: bool,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Maximum bytes per shard.
    pub shard_size: u64,
    /// fsync the output before publishing it (see `WriterOptions::sync`).
    pub sync: bool,
    /// Pass NaN and infinite input values through instead of refusing
    /// them (see [`EngineError::NonFinite`] and "Non-finite values" in
    /// docs/recipes.md): an output position is then non-finite exactly
    /// where some input's is, and takes the first such input value in
    /// model order, base first. Every other position is what the merge of
    /// the same inputs gives with those positions set to zero in every
    /// input (so sums such as norms, Gram matrices and L1 totals leave
    /// them out).
    pub allow_nonfinite: bool,
    /// Where the recipe comes from, when it is not the whole story: the
    /// output's `smelt-recipe.toml` and model card say so. Set by
    /// [`multi::run`] for a document of a multi-document file, whose
    /// models include the file's other documents' outputs.
    pub origin: Option<Origin>,
}

/// See [`Options::origin`].
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// What to know, as plain sentences (they become comments at the top of
    /// `smelt-recipe.toml`).
    pub note: String,
    /// The recipe file the recipe is part of, as text: kept whole, in the
    /// recipe's comments and in the model card, so the output says how to
    /// build it again.
    pub file: String,
}

impl Options {
    /// Write to `out` with the defaults every front end uses: no force, every
    /// core, [`crate::model::DEFAULT_SHARD_SIZE`] shards, fsync, non-finite
    /// values refused.
    pub fn new(out: impl Into<PathBuf>) -> Options {
        Options {
            out: out.into(),
            force: false,
            threads: None,
            shard_size: crate::model::DEFAULT_SHARD_SIZE,
            sync: true,
            allow_nonfinite: false,
            origin: None,
        }
    }
}

/// Why a run failed; nothing is published when it does.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A model could not be read, or the output not written.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The method refuses the recipe's parameters for a tensor.
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    /// MLP checkpoints that cannot be zipped (ZipIt!/permute).
    #[error(transparent)]
    Mlp(#[from] crate::mlp::MlpError),
    /// The cancel flag was set; what was written is removed.
    #[error("cancelled")]
    Cancelled,
    /// An input tensor holds NaN or infinite values (F64 values beyond the
    /// f32 range count as infinite) and [`Options::allow_nonfinite`] is off
    /// (zipit/permute refuse them always).
    #[error("{}: tensor `{tensor}` has {} of {numel} values not finite ({nan} NaN, {inf} infinite){hint}", model.display(), nan + inf)]
    NonFinite {
        /// The model whose tensor it is.
        model: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// NaN values in it.
        nan: usize,
        /// Infinite values in it.
        inf: usize,
        /// Values in it.
        numel: usize,
        /// How to go on, when there is a way.
        hint: &'static str,
    },
    /// A run option the engine refuses (too many threads).
    #[error("{0}")]
    Input(String),
    /// Something else failed: the worker threads could not start, a
    /// config.json could not be written, or a bug.
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, EngineError>;

/// Shared counters of a run.
struct Progress<'a> {
    bytes_done: AtomicU64,
    /// Grows as statistics passes are discovered (see [`Event::Progress`]).
    bytes_total: AtomicU64,
    tensors_done: AtomicUsize,
    current: Mutex<String>,
    cancel: &'a AtomicBool,
    /// [`Options::allow_nonfinite`].
    allow_nonfinite: bool,
}

impl Progress<'_> {
    /// The counters as an [`Event::Progress`].
    fn event(&self) -> Event {
        Event::Progress {
            tensor: self.current.lock().map(|c| c.clone()).unwrap_or_default(),
            tensors_done: self.tensors_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
        }
    }

    fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Run `plan`, writing to `opts.out`. Events go to `progress`; setting
/// `cancel` stops the run within a fraction of a second and leaves nothing
/// behind.
pub fn run(
    plan: &Plan,
    opts: &Options,
    progress: &Sender<Event>,
    cancel: &AtomicBool,
) -> Result<Summary> {
    let started = Instant::now();
    check_threads(opts.threads)?;
    if matches!(
        plan.recipe.method,
        merge::Method::Zipit | merge::Method::Permute
    ) {
        return run_zip(plan, opts, progress, cancel, started);
    }
    let writer = Writer::create(
        &opts.out,
        plan.jobs.iter().map(|j| j.out.clone()).collect(),
        &writer_options(plan, opts),
    )?;
    let bytes_total = plan.input_bytes();
    let _ = progress.send(Event::Started {
        tensors: plan.jobs.len(),
        bytes_total,
    });
    let state = Progress {
        bytes_done: AtomicU64::new(0),
        bytes_total: AtomicU64::new(bytes_total),
        tensors_done: AtomicUsize::new(0),
        current: Mutex::new(String::new()),
        cancel,
        allow_nonfinite: opts.allow_nonfinite,
    };
    // Largest jobs first, so the last job to finish is a small one.
    let mut order: Vec<usize> = (0..plan.jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(job_bytes(plan, &plan.jobs[i])));

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| EngineError::Other(format!("cannot start worker threads: {e}")))?;
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| report(&state, &done_rx, progress));
        let r: Result<()> = pool.install(|| {
            use rayon::prelude::*;
            // One queue in `order`, each worker taking the next job when
            // it is free (jobs differ in size by orders of magnitude). So
            // the job after the running ones is known: its inputs are read
            // ahead (`will_need`), and on a cold page cache the disk works
            // while the workers compute. A worker out of jobs is idle, and
            // helps with a big tensor's split passes.
            let workers = rayon::current_num_threads().max(1);
            let next = AtomicUsize::new(0);
            let failed = AtomicBool::new(false);
            (0..workers).into_par_iter().try_for_each(|_| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else {
                    return Ok(());
                };
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if let Some(&ahead) = order.get(k + workers) {
                    read_ahead(plan, &plan.jobs[ahead]);
                }
                let r = state.check().and_then(|()| {
                    let job = &plan.jobs[i];
                    if let Ok(mut cur) = state.current.lock() {
                        cur.clone_from(&job.out.name);
                    }
                    run_job(plan, job, i, &writer, &state)
                });
                if let Err(e) = r {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                state.tensors_done.fetch_add(1, Ordering::Relaxed);
            })
        });
        drop(done_tx);
        r
    });
    result?;
    state.check()?;
    // Every tensor done: the final counts, however fast the run was (a run
    // shorter than `PROGRESS_EVERY` would otherwise report none).
    let _ = progress.send(state.event());
    write_side_files(plan, opts, &writer, plan.config.as_ref())?;
    let out = writer.finish()?;
    let summary = Summary {
        out,
        tensors: plan.jobs.len(),
        bytes_written: plan.output_bytes(),
        bytes_read: bytes_total,
        elapsed: started.elapsed(),
    };
    let _ = progress.send(Event::Finished(summary.clone()));
    Ok(summary)
}

/// The most worker threads a run takes: four per core, at most 1024.
/// More only add memory and switching (a run asked for 100000 made
/// thousands of threads and could not be cancelled while it did).
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_mul(4).min(1024)
}

/// Refuse a thread count above [`max_threads`].
fn check_threads(threads: Option<usize>) -> Result<()> {
    let cap = max_threads();
    match threads {
        Some(t) if t > cap => Err(EngineError::Input(format!(
            "{t} threads is too many: at most {cap} (four per core, at most 1024); leave the count out to use one per core"
        ))),
        _ => Ok(()),
    }
}

fn writer_options(plan: &Plan, opts: &Options) -> WriterOptions {
    WriterOptions {
        shard_size: opts.shard_size,
        force: opts.force,
        sync: opts.sync,
        inputs: plan.model_paths(),
        metadata: vec![
            ("format".into(), "pt".into()),
            ("merged_with".into(), "smelt".into()),
            ("merge_method".into(), plan.recipe.method.name().into()),
        ],
    }
}

/// Send a progress event every [`PROGRESS_EVERY`] until `done` closes.
fn report(state: &Progress, done: &crossbeam_channel::Receiver<()>, tx: &Sender<Event>) {
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = done.recv_timeout(PROGRESS_EVERY)
    {
        let _ = tx.send(state.event());
    }
}

fn job_bytes(plan: &Plan, job: &Job) -> u64 {
    job.inputs()
        .iter()
        .map(|s| plan.info(s).map_or(0, |t| t.nbytes() as u64))
        .sum()
}

/// Chunk length for a tensor: whole rows, as many as fit in
/// [`CHUNK_ELEMS`], or one row up to [`MAX_ROW_CHUNK`].
pub fn chunk_step(numel: usize, row_len: usize) -> usize {
    let row = row_len.max(1);
    let step = if row <= CHUNK_ELEMS {
        (CHUNK_ELEMS / row) * row
    } else if row <= MAX_ROW_CHUNK {
        row
    } else {
        CHUNK_ELEMS
    };
    step.min(numel.max(1))
}

fn run_job(plan: &Plan, job: &Job, index: usize, writer: &Writer, state: &Progress) -> Result<()> {
    match &job.kind {
        JobKind::Copy { source, scale } => {
            let (model, info) = lookup(plan, source)?;
            if let Some(fills) = &job.vocab {
                let gather = Gather::new(vec![(model, info)], fills, &job.out.shape, state)?;
                return copy_gathered(&gather, job, scale.unwrap_or(1.0), index, writer, state);
            }
            if scale.is_none() && info.dtype == job.out.dtype {
                copy_raw(model, info, index, writer, state)
            } else {
                copy_converted(model, info, scale.unwrap_or(1.0), index, writer, state)
            }
        }
        JobKind::Merge {
            method,
            base,
            sources,
            params,
        } => {
            let inputs: Vec<(&Model, &crate::model::TensorInfo)> = base
                .iter()
                .chain(sources.iter())
                .map(|s| lookup(plan, s))
                .collect::<Result<_>>()?;
            let numel: usize = job.out.shape.iter().product();
            let row_len = job.out.shape.last().copied().unwrap_or(1).max(1);
            let gather = match &job.vocab {
                Some(fills) => Some(Gather::new(inputs.clone(), fills, &job.out.shape, state)?),
                None => None,
            };
            let job = MergeJob {
                all_bf16: cfg!(target_endian = "little")
                    && gather.is_none()
                    && inputs.iter().all(|(_, t)| t.dtype == Dtype::BF16),
                gather,
                in_bytes_per_elem: inputs.iter().map(|(_, t)| t.dtype.size()).sum(),
                inputs,
                has_base: base.is_some(),
                numel,
                row_len,
                step: chunk_step(numel, row_len),
                index,
                writer,
                state,
                clean: AtomicBool::new(false),
                seen: AtomicBool::new(false),
            };
            let new_kernel = || merge::kernel(*method, params, numel, sources.len());
            let mut kernel = new_kernel()?;
            let mut held = Buffers::take(job.inputs.len() + 1, job.step);
            if kernel.wants_sample() {
                // The sample reads small pieces from all over the tensor,
                // and the passes read all of it: on a cold page cache,
                // have the kernel read the tensor in large requests now,
                // rather than wait on each piece. (Not for huge tensors:
                // there the pieces cost little beside the tensor, and
                // asking for gigabytes at once made the first pass wait
                // for the inputs one after another.)
                if job.inputs.iter().all(|(_, t)| t.nbytes() <= WILL_NEED_MAX) {
                    for (m, t) in &job.inputs {
                        m.will_need(t, 0, t.nbytes());
                    }
                }
                job.sample(kernel.as_mut(), &mut held)?;
            }
            // A big tensor's passes and merge shared by the idle workers,
            // one range each, when the kernel can (TIES's selection).
            let ranges = job.ranges();
            while kernel.wants_pass() {
                state
                    .bytes_total
                    .fetch_add((numel * job.in_bytes_per_elem) as u64, Ordering::Relaxed);
                kernel.begin_pass();
                if let Some(copies) = kernel.split_pass(ranges.len()) {
                    use rayon::prelude::*;
                    let copies = copies
                        .into_par_iter()
                        .zip(ranges.clone())
                        .map(|(mut k, r)| {
                            let mut held = Buffers::take(job.inputs.len() + 1, job.step);
                            job.stream(k.as_mut(), r, false, &mut held)?;
                            Ok(k)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    kernel.end_split_pass(copies);
                    state.check()?;
                    job.screened_whole();
                    continue;
                }
                job.stream(kernel.as_mut(), 0..numel, false, &mut held)?;
                job.screened_whole();
                if !kernel.end_pass_or_cancel(state.cancel) {
                    return Err(EngineError::Cancelled);
                }
            }
            if let Some(copies) = kernel.split_apply(ranges.len()) {
                drop(held);
                use rayon::prelude::*;
                return copies
                    .into_par_iter()
                    .zip(ranges)
                    .try_for_each(|(mut k, r)| {
                        let mut held = Buffers::take(job.inputs.len() + 1, job.step);
                        job.stream(k.as_mut(), r, true, &mut held)
                    });
            }
            let parts = job.parts();
            if parts.len() > 1 && kernel.splittable() {
                // A big tensor whose kernel keeps nothing between chunks:
                // its ranges go to idle workers too, each with its own
                // kernel and buffers.
                drop(held);
                use rayon::prelude::*;
                return parts.into_par_iter().try_for_each(|r| {
                    let mut k = new_kernel()?;
                    let mut held = Buffers::take(job.inputs.len() + 1, job.step);
                    job.stream(k.as_mut(), r, true, &mut held)
                });
            }
            job.stream(kernel.as_mut(), 0..numel, true, &mut held)
        }
    }
}

/// Elements per part when a tensor is split across workers (see
/// [`MergeJob::parts`]).
const SPLIT_PART: usize = 1 << 22;

/// Largest input tensor (bytes) read ahead before its sample, or while
/// the jobs before it run (see [`Model::will_need`]).
const WILL_NEED_MAX: usize = 128 << 20;

/// Ask the kernel to read `job`'s inputs into the page cache in the
/// background ([`Model::will_need`]), each up to [`WILL_NEED_MAX`]: the job
/// starts once a worker is free, its inputs there by then. A hint only.
fn read_ahead(plan: &Plan, job: &Job) {
    for s in job.inputs() {
        if let Ok((m, t)) = lookup(plan, s) {
            if t.nbytes() <= WILL_NEED_MAX {
                m.will_need(t, 0, t.nbytes());
            }
        }
    }
}

/// Fewest elements per range when a kernel's passes are shared (see
/// [`MergeJob::ranges`]).
const RANGE_MIN: usize = 1 << 20;

/// One merged tensor being streamed: its inputs (base first, when there is
/// one) and where its output goes.
struct MergeJob<'a> {
    inputs: Vec<(&'a Model, &'a crate::model::TensorInfo)>,
    /// Rows permuted into the output vocabulary (see [`Gather`]).
    gather: Option<Gather<'a>>,
    has_base: bool,
    /// Every input is bf16 (little-endian host): kernels that take bit
    /// patterns get them.
    all_bf16: bool,
    numel: usize,
    row_len: usize,
    /// Elements per chunk (whole rows, see [`chunk_step`]).
    step: usize,
    in_bytes_per_elem: usize,
    index: usize,
    writer: &'a Writer,
    state: &'a Progress<'a>,
    /// A whole pass over the tensor found every input value finite: the
    /// passes after it read the same bytes, so they skip the screen
    /// (about 2% of a TIES merge's time on bf16 inputs).
    clean: AtomicBool,
    /// The screen has found a non-finite value (kept, under
    /// `allow_nonfinite`) in this tensor.
    seen: AtomicBool,
}

impl MergeJob<'_> {
    /// A statistics pass over every element has ended: if its screen
    /// found nothing, later passes need none.
    fn screened_whole(&self) {
        if !self.seen.load(Ordering::Relaxed) {
            self.clean.store(true, Ordering::Relaxed);
        }
    }

    /// Ranges for splitting the apply pass across workers: whole chunks,
    /// at least [`SPLIT_PART`] elements each; one range for small tensors.
    fn parts(&self) -> Vec<std::ops::Range<usize>> {
        let per = SPLIT_PART.div_ceil(self.step).max(1) * self.step;
        (0..self.numel.div_ceil(per))
            .map(|p| p * per..((p + 1) * per).min(self.numel))
            .collect()
    }

    /// Ranges for sharing a kernel's passes and merge across workers (see
    /// [`merge::Kernel::split_pass`]): one per worker thread, whole chunks,
    /// at least [`RANGE_MIN`] elements each; one range for small tensors
    /// or a single thread. Each range holds count tables until the pass
    /// ends, so there are no more of them than workers.
    fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        let workers = rayon::current_num_threads()
            .min(self.numel / RANGE_MIN)
            .max(1);
        let per = self.numel.div_ceil(workers).div_ceil(self.step).max(1) * self.step;
        (0..self.numel.div_ceil(per))
            .map(|p| p * per..((p + 1) * per).min(self.numel))
            .collect()
    }

    /// Show the kernel the tensor's sample (see [`merge::sample_ranges`]).
    fn sample(&self, kernel: &mut dyn merge::Kernel, held: &mut Buffers) -> Result<()> {
        let ranges = merge::sample_ranges(self.numel);
        let total: usize = ranges.iter().map(|r| r.len()).sum();
        if total > self.step {
            return Ok(());
        }
        let bufs = &mut held.0[1..];
        for (k, b) in bufs.iter_mut().enumerate().take(self.inputs.len()) {
            let mut at = 0;
            for r in &ranges {
                self.read(k, r.start, &mut b[at..at + r.len()])?;
                at += r.len();
            }
        }
        let mut screened: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..total]).collect();
        self.screen(&mut screened, &mut Vec::new())?;
        let views: Vec<&[f32]> = screened.into_iter().map(|b| &*b).collect();
        kernel.sample(&self.chunk(0, &views));
        Ok(())
    }

    /// Non-finite input values, found as the inputs stream (every chunk of
    /// every pass, and the sample): one place for every method. None (the
    /// usual case) leaves `bufs` (one chunk per input, base first) alone.
    /// Otherwise the merge is refused, or, with `allow_nonfinite`, each
    /// position where some input is not finite is noted in `pass` with the
    /// value the output takes there (the first such input value, base
    /// first) and set to zero in every input, so the kernel sees finite
    /// values only and its statistics leave those positions out of sums.
    fn screen<E: Elem>(&self, bufs: &mut [&mut [E]], pass: &mut Vec<(usize, f32)>) -> Result<()> {
        pass.clear();
        if self.clean.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(first) = bufs.iter().position(|b| E::any_nonfinite(b)) else {
            return Ok(());
        };
        if !self.state.allow_nonfinite {
            let (m, t) = self.inputs[first];
            return Err(refuse(m, t, self.state, HINT_ALLOW));
        }
        self.seen.store(true, Ordering::Relaxed);
        let len = bufs.first().map_or(0, |b| b.len());
        for j in 0..len {
            if let Some(v) = bufs.iter().map(|b| b[j]).find(|v| v.nonfinite()) {
                pass.push((j, v.f32()));
            }
        }
        for b in bufs.iter_mut() {
            for &(j, _) in pass.iter() {
                b[j] = E::ZERO;
            }
        }
        Ok(())
    }

    /// Input `k`'s values from element `start` on, permuted into the
    /// output vocabulary when the job has a [`Gather`].
    fn read(&self, k: usize, start: usize, buf: &mut [f32]) -> Result<()> {
        match &self.gather {
            Some(g) => g.read(k, start, buf),
            None => {
                let (m, t) = self.inputs[k];
                Ok(m.read_f32(t, start, buf)?)
            }
        }
    }

    /// A chunk over per-input views (base first when there is one).
    fn chunk<'v, T>(&self, start: usize, views: &'v [&'v [T]]) -> Chunk<'v, T> {
        let skip = usize::from(self.has_base);
        Chunk {
            start,
            numel: self.numel,
            row_len: self.row_len,
            base: views.first().copied().filter(|_| self.has_base),
            models: &views[skip.min(views.len())..],
        }
    }

    /// One pass over elements `range` (in chunk order): a statistics pass
    /// (`observe`), or the merge (`apply`, written out).
    fn stream(
        &self,
        kernel: &mut dyn merge::Kernel,
        range: std::ops::Range<usize>,
        apply: bool,
        held: &mut Buffers,
    ) -> Result<()> {
        let (out, bufs) = held.0.split_at_mut(1);
        let out = &mut out[0];
        let raw = self.all_bf16 && kernel.takes_bf16();
        let mut pass: Vec<(usize, f32)> = Vec::new();
        let mut start = range.start;
        while start < range.end {
            self.state.check()?;
            let end = (start + self.step).min(range.end);
            let len = end - start;
            if raw {
                // The bit patterns, read into the same buffers.
                let mut halves: Vec<&mut [u16]> = Vec::with_capacity(bufs.len());
                for ((m, t), b) in self.inputs.iter().zip(bufs.iter_mut()) {
                    let h = &mut bytemuck::cast_slice_mut::<f32, u16>(&mut b[..])[..len];
                    m.read_raw(t, start * 2, bytemuck::cast_slice_mut(&mut h[..]))?;
                    halves.push(h);
                }
                self.screen(&mut halves, &mut pass)?;
                let halves: Vec<&[u16]> = halves.into_iter().map(|h| &*h).collect();
                let chunk = self.chunk(start, &halves);
                if apply {
                    kernel.apply_bf16(&chunk, &mut out[..len]);
                } else {
                    kernel.observe_bf16(&chunk);
                }
            } else {
                for (k, b) in bufs.iter_mut().enumerate().take(self.inputs.len()) {
                    self.read(k, start, &mut b[..len])?;
                }
                let mut screened: Vec<&mut [f32]> =
                    bufs.iter_mut().map(|b| &mut b[..len]).collect();
                self.screen(&mut screened, &mut pass)?;
                let views: Vec<&[f32]> = screened.into_iter().map(|b| &*b).collect();
                let chunk = self.chunk(start, &views);
                if apply {
                    kernel.apply(&chunk, &mut out[..len]);
                } else {
                    kernel.observe(&chunk);
                }
            }
            if apply {
                for &(j, v) in &pass {
                    out[j] = v;
                }
                self.writer.write_f32(self.index, start, &out[..len])?;
            }
            self.state
                .bytes_done
                .fetch_add((len * self.in_bytes_per_elem) as u64, Ordering::Relaxed);
            start = end;
        }
        Ok(())
    }
}

/// A vocabulary tensor's inputs, each permuted into the output vocabulary
/// row by row as it is read (see [`crate::tokenizer::Fill`]): memory is a
/// chunk per input, as for any tensor, plus one row per input for the
/// padding rows' mean.
struct Gather<'a> {
    inputs: Vec<(&'a Model, &'a crate::model::TensorInfo)>,
    fills: &'a [Vec<crate::tokenizer::Fill>],
    /// Elements per row (every axis but the first).
    row_len: usize,
    /// Per input, the mean of its permuted vocabulary rows, when it has
    /// padding rows.
    means: Vec<Vec<f32>>,
}

impl<'a> Gather<'a> {
    fn new(
        inputs: Vec<(&'a Model, &'a crate::model::TensorInfo)>,
        fills: &'a [Vec<crate::tokenizer::Fill>],
        shape: &[usize],
        state: &Progress,
    ) -> Result<Gather<'a>> {
        use crate::tokenizer::Fill;
        let row_len = shape.iter().skip(1).product::<usize>().max(1);
        let mut g = Gather {
            inputs,
            fills,
            row_len,
            means: Vec::new(),
        };
        let mut means = Vec::new();
        for (k, f) in fills.iter().enumerate() {
            let Some(n) = f.iter().position(|x| *x == Fill::PadMean) else {
                means.push(Vec::new());
                continue;
            };
            // mergekit: the mean over the vocabulary rows, per column.
            let mut sum = vec![0f64; row_len];
            let mut row = vec![0f32; row_len];
            for r in 0..n {
                state.check()?;
                g.read(k, r * row_len, &mut row)?;
                for (s, x) in sum.iter_mut().zip(&row) {
                    *s += f64::from(*x);
                }
            }
            means.push(sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect());
        }
        g.means = means;
        Ok(g)
    }

    /// Input `k`'s permuted values from element `start` on.
    fn read(&self, k: usize, start: usize, buf: &mut [f32]) -> Result<()> {
        use crate::tokenizer::Fill;
        let rl = self.row_len;
        let end = start + buf.len();
        let (mut pos, mut at) = (start, 0);
        while pos < end {
            let (row, col) = (pos / rl, pos % rl);
            let seg = (rl - col).min(end - pos);
            let out = &mut buf[at..at + seg];
            match self.fills[k].get(row).unwrap_or(&Fill::Zero) {
                Fill::Row { input, row: r } => {
                    let (m, t) = self.inputs[*input];
                    m.read_f32(t, r * rl + col, out)?;
                }
                Fill::Zero => out.fill(0.0),
                Fill::Mean(rows) => {
                    // Summed from zero in order, then divided (as mergekit).
                    out.fill(0.0);
                    let mut tmp = vec![0f32; seg];
                    for (input, r) in rows {
                        let (m, t) = self.inputs[*input];
                        m.read_f32(t, r * rl + col, &mut tmp)?;
                        for (o, x) in out.iter_mut().zip(&tmp) {
                            *o += *x;
                        }
                    }
                    let n = rows.len().max(1) as f32;
                    for o in out.iter_mut() {
                        *o /= n;
                    }
                }
                Fill::PadMean => match self.means.get(k) {
                    Some(m) if m.len() == rl => out.copy_from_slice(&m[col..col + seg]),
                    // Only while the means themselves are computed.
                    _ => out.fill(0.0),
                },
            }
            pos += seg;
            at += seg;
        }
        Ok(())
    }
}

/// Copy (passthrough, with its scale) a vocabulary tensor permuted into
/// the output vocabulary.
fn copy_gathered(
    gather: &Gather,
    job: &Job,
    scale: f32,
    index: usize,
    writer: &Writer,
    state: &Progress,
) -> Result<()> {
    let numel: usize = job.out.shape.iter().product();
    let step = chunk_step(numel, gather.row_len);
    let mut buf = vec![0f32; step];
    let mut start = 0;
    while start < numel {
        state.check()?;
        let end = (start + step).min(numel);
        let b = &mut buf[..end - start];
        gather.read(0, start, b)?;
        if !state.allow_nonfinite && f32::any_nonfinite(b) {
            let (m, t) = gather.inputs[0];
            return Err(refuse(m, t, state, HINT_ALLOW));
        }
        if scale != 1.0 {
            for x in b.iter_mut().filter(|x| x.is_finite()) {
                *x *= scale;
            }
        }
        writer.write_f32(index, start, b)?;
        state
            .bytes_done
            .fetch_add(((end - start) * 4) as u64, Ordering::Relaxed);
        start = end;
    }
    Ok(())
}

/// What to do about refused non-finite values, when the flag would help.
const HINT_ALLOW: &str =
    "; `smelt merge --allow-nonfinite` passes them through position by position";

/// An input element as the engine screens it (f32, or bf16 bits).
trait Elem: Copy {
    const ZERO: Self;
    fn nonfinite(self) -> bool;
    fn f32(self) -> f32;
    /// Whether any element is NaN or infinite: a max over the magnitude
    /// bits, which vectorises and has no early exit.
    fn any_nonfinite(x: &[Self]) -> bool;
}

impl Elem for f32 {
    const ZERO: f32 = 0.0;
    #[inline(always)]
    fn nonfinite(self) -> bool {
        !self.is_finite()
    }
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
    fn any_nonfinite(x: &[f32]) -> bool {
        crate::simd::dispatch!(max_magnitude_f32(x)) >= 0x7f80_0000
    }
}

impl Elem for u16 {
    const ZERO: u16 = 0;
    #[inline(always)]
    fn nonfinite(self) -> bool {
        self & 0x7f80 == 0x7f80
    }
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_bits(u32::from(self) << 16)
    }
    fn any_nonfinite(x: &[u16]) -> bool {
        crate::simd::dispatch!(max_magnitude_bf16(x)) >= 0x7f80
    }
}

/// The largest magnitude bit pattern of `x` (see [`Elem::any_nonfinite`]):
/// every input chunk of every pass goes through it, so it is compiled for
/// the widest vectors (`crate::simd`).
#[inline(always)]
fn max_magnitude_f32(x: &[f32]) -> u32 {
    x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff))
}

/// [`max_magnitude_f32`] of bf16 bit patterns.
#[inline(always)]
fn max_magnitude_bf16(x: &[u16]) -> u16 {
    x.iter().fold(0u16, |m, &h| m.max(h & 0x7fff))
}

/// Whether little-endian `bytes` of `dtype` hold a NaN or an infinity
/// (float dtypes the engine merges; others are never screened).
fn raw_nonfinite(dtype: Dtype, bytes: &[u8]) -> bool {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .any(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000 == 0x7f80_0000),
        Dtype::F64 => bytes.chunks_exact(8).any(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w) & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
        }),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .any(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .any(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00),
        _ => false,
    }
}

/// NaN and infinite values (in f32, so F64 values beyond its range count
/// as infinite) of a whole tensor, read a chunk at a time.
fn count_nonfinite(
    model: &Model,
    t: &crate::model::TensorInfo,
    cancel: &AtomicBool,
) -> Result<(usize, usize)> {
    let numel = t.numel();
    let mut buf = vec![0f32; CHUNK_ELEMS.min(numel.max(1))];
    let (mut nan, mut inf) = (0, 0);
    let mut start = 0;
    while start < numel {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        let end = (start + buf.len()).min(numel);
        let b = &mut buf[..end - start];
        model.read_f32(t, start, b)?;
        if f32::any_nonfinite(b) {
            nan += b.iter().filter(|v| v.is_nan()).count();
            inf += b.iter().filter(|v| v.is_infinite()).count();
        }
        start = end;
    }
    Ok((nan, inf))
}

/// The error for a tensor found to hold non-finite values: counts them
/// over the whole tensor (read again; this is the failing path).
fn refuse(
    model: &Model,
    t: &crate::model::TensorInfo,
    state: &Progress,
    hint: &'static str,
) -> EngineError {
    match count_nonfinite(model, t, state.cancel) {
        Ok((nan, inf)) => EngineError::NonFinite {
            model: model.path().to_path_buf(),
            tensor: t.name.clone(),
            nan,
            inf,
            numel: t.numel(),
            hint,
        },
        Err(e) => e,
    }
}

thread_local! {
    /// Chunk buffers of finished jobs, for the next job on this worker.
    static BUFFERS: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A job's chunk buffers, borrowed from its worker's pool and returned when
/// dropped: allocating them afresh for every tensor costs page faults and
/// zeroing on each.
struct Buffers(Vec<Vec<f32>>);

impl Buffers {
    /// `count` buffers of `len` elements each (contents unspecified).
    fn take(count: usize, len: usize) -> Buffers {
        let mut got: Vec<Vec<f32>> = BUFFERS
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let keep = p.len().saturating_sub(count);
                p.split_off(keep)
            })
            .unwrap_or_default();
        got.resize_with(count, Vec::new);
        for b in &mut got {
            b.resize(len, 0.0);
        }
        Buffers(got)
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        /// Buffers a worker keeps (a few inputs' worth of the largest chunks).
        const KEEP: usize = 16;
        let mut mine = std::mem::take(&mut self.0);
        // Only ordinary chunks are worth keeping; a buffer sized for one
        // very long row goes back to the allocator.
        mine.retain(|b| b.capacity() <= 2 * CHUNK_ELEMS);
        let _ = BUFFERS.try_with(|p| {
            let mut p = p.borrow_mut();
            mine.truncate(KEEP.saturating_sub(p.len()));
            p.append(&mut mine);
        });
    }
}

/// Copy a tensor's bytes unchanged, a chunk at a time.
fn copy_raw(
    model: &Model,
    info: &crate::model::TensorInfo,
    index: usize,
    writer: &Writer,
    state: &Progress,
) -> Result<()> {
    let total = info.nbytes();
    let step = CHUNK_ELEMS * 4;
    let mut buf = vec![0u8; step.min(total)];
    let mut off = 0;
    while off < total {
        state.check()?;
        let end = (off + step).min(total);
        let b = &mut buf[..end - off];
        model.read_raw(info, off, b)?;
        if !state.allow_nonfinite && info.dtype.is_mergeable() && raw_nonfinite(info.dtype, b) {
            return Err(refuse(model, info, state, HINT_ALLOW));
        }
        writer.write_raw(index, off, b)?;
        state
            .bytes_done
            .fetch_add((end - off) as u64, Ordering::Relaxed);
        off = end;
    }
    Ok(())
}

/// Copy a tensor through f32: to change its dtype, or to scale it.
fn copy_converted(
    model: &Model,
    info: &crate::model::TensorInfo,
    scale: f32,
    index: usize,
    writer: &Writer,
    state: &Progress,
) -> Result<()> {
    let numel = info.numel();
    let step = chunk_step(numel, 1);
    let mut buf = vec![0f32; step];
    let mut start = 0;
    while start < numel {
        state.check()?;
        let end = (start + step).min(numel);
        let b = &mut buf[..end - start];
        model.read_f32(info, start, b)?;
        if !state.allow_nonfinite && f32::any_nonfinite(b) {
            return Err(refuse(model, info, state, HINT_ALLOW));
        }
        if scale != 1.0 {
            // A non-finite value passes through as it is.
            for x in b.iter_mut().filter(|x| x.is_finite()) {
                *x *= scale;
            }
        }
        writer.write_f32(index, start, b)?;
        state.bytes_done.fetch_add(
            ((end - start) * info.dtype.size()) as u64,
            Ordering::Relaxed,
        );
        start = end;
    }
    Ok(())
}

fn lookup<'p>(
    plan: &'p Plan,
    s: &crate::plan::Source,
) -> Result<(&'p Model, &'p crate::model::TensorInfo)> {
    let model = plan
        .models
        .get(s.model)
        .ok_or_else(|| EngineError::Other(format!("plan names model #{}", s.model)))?;
    let info = model.tensor(&s.tensor).ok_or_else(|| {
        EngineError::Model(crate::model::ModelError::MissingTensor {
            path: model.path().to_path_buf(),
            tensor: s.tensor.clone(),
        })
    })?;
    Ok((model.as_ref(), info))
}

/// config.json, tokenizer and generation files, the recipe, a model card.
fn write_side_files(
    plan: &Plan,
    opts: &Options,
    writer: &Writer,
    config: Option<&serde_json::Value>,
) -> Result<()> {
    if let Some(config) = config {
        let text = serde_json::to_string_pretty(config)
            .map_err(|e| EngineError::Other(format!("config.json: {e}")))?;
        writer.add_file("config.json", format!("{text}\n").as_bytes())?;
    }
    let cfg_model = &plan.models[plan.config_model];
    let folder = model_folder(cfg_model.local_path());
    for name in COPIED_FILES {
        // Tokenizer files made for the recipe's tokenizer settings replace
        // the config model's.
        if !plan.tokenizer_files.is_empty() && crate::tokenizer::is_tokenizer_file(name) {
            continue;
        }
        let p = folder.join(name);
        if p.is_file() {
            writer.copy_file(&p)?;
        }
    }
    for (name, bytes) in &plan.tokenizer_files {
        writer.add_file(name, bytes)?;
    }
    // The saved recipe lives inside the output folder, so its paths are
    // relative to that folder.
    let recipe_text = plan.recipe.to_toml(&opts.out);
    let saved = match &opts.origin {
        Some(o) => format!("{}{recipe_text}", origin_comments(o)),
        None => recipe_text.clone(),
    };
    writer.add_file("smelt-recipe.toml", saved.as_bytes())?;
    writer.add_file(
        "README.md",
        model_card(plan, &recipe_text, opts.origin.as_ref()).as_bytes(),
    )?;
    Ok(())
}

/// An [`Origin`] as TOML comments: the note, then the file it names,
/// every line commented out.
fn origin_comments(o: &Origin) -> String {
    let mut s = String::new();
    for l in crate::text::wrap(&o.note, 76) {
        s.push_str(&format!("# {l}\n"));
    }
    s.push_str("#\n# The file:\n#\n");
    for l in o.file.lines() {
        // (Escaped: a control character would make the TOML invalid.)
        match crate::text::escape(l).trim_end() {
            "" => s.push_str("#\n"),
            l => s.push_str(&format!("#   {l}\n")),
        }
    }
    s.push('\n');
    s
}

/// The folder of a model path (a `.safetensors` file's parent).
fn model_folder(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

/// A model as the card names it: a local one by its absolute path (the
/// same from the CLI, whose recipe paths are resolved, and from the
/// workbench, whose may be relative to where it runs), a hub name as given.
fn card_name(p: &Path) -> String {
    match std::path::absolute(p) {
        Ok(a) if p.exists() => a.display().to_string(),
        _ => p.display().to_string(),
    }
}

fn model_card(plan: &Plan, recipe_text: &str, origin: Option<&Origin>) -> String {
    let r = &plan.recipe;
    let mut s = String::new();
    s.push_str("---\ntags:\n- merge\n- smelt\n");
    if let Some(b) = &r.base {
        s.push_str(&format!("base_model: {}\n", card_name(b)));
    }
    s.push_str("---\n\n# Merged model\n\n");
    s.push_str(&format!(
        "Made with [smelt](https://crates.io/crates/smelt) using the `{}` method: {}.\n\n",
        r.method.name(),
        r.method.spec().doc
    ));
    s.push_str("## Inputs\n\n");
    if let Some(b) = &r.base {
        s.push_str(&format!("- base: `{}`\n", card_name(b)));
    }
    for m in &r.models {
        s.push_str(&format!("- `{}`\n", card_name(&m.path)));
    }
    for (i, sl) in r.slices.iter().enumerate() {
        for src in &sl.sources {
            s.push_str(&format!(
                "- slice {}: `{}` layers {}..{}\n",
                i + 1,
                card_name(&src.model),
                src.layer_range.0,
                src.layer_range.1
            ));
        }
    }
    s.push_str(&format!(
        "\nOutput: {} tensors, {} layers.\n\n## Recipe\n\nThe exact recipe (`smelt-recipe.toml`, rerun with `smelt merge`):\n\n```toml\n{}```\n",
        plan.jobs.len(),
        plan.out_layers,
        recipe_text
    ));
    if let Some(o) = origin {
        s.push_str(&format!(
            "\n## Origin\n\n{}\n\n```yaml\n{}{}```\n",
            o.note,
            o.file,
            if o.file.ends_with('\n') { "" } else { "\n" }
        ));
    }
    s
}

/// ZipIt! and permutation merge whole MLPs (features are matched on
/// calibration inputs, layer by layer); the `zip` module does the work and
/// the result is written like any other merge.
fn run_zip(
    plan: &Plan,
    opts: &Options,
    progress: &Sender<Event>,
    cancel: &AtomicBool,
    started: Instant,
) -> Result<Summary> {
    use crate::mlp::{Dataset, MlpModel, Split};
    use crate::zip::{zip_merge_with_stats, LayerOverride, ZipMethod};
    let recipe = &plan.recipe;
    let models: Vec<MlpModel> = recipe
        .models
        .iter()
        .map(|m| MlpModel::load(&m.path))
        .collect::<std::result::Result<_, _>>()?;
    let bytes_read: u64 = plan
        .models
        .iter()
        .flat_map(|m| m.tensors().iter().map(|t| t.nbytes() as u64))
        .sum();
    // Method-wide values with the spec's defaults filled in.
    let global = recipe
        .resolve("", crate::model::Group::Pre, plan.out_layers)
        .global;
    let method = if recipe.method == merge::Method::Zipit {
        ZipMethod::Zipit {
            alpha: global.f64_or("alpha", 0.5),
            beta: global.f64_or("beta", 1.0),
        }
    } else {
        ZipMethod::Permute
    };
    let depth = global.f64_or("depth", -1.0);
    let depth = (depth >= 0.0).then_some(depth as usize);
    // Per-layer α/β: every layer an override covers, later ones winning
    // value by value (as `Recipe::resolve` does: an override setting only
    // beta keeps an earlier one's alpha).
    // `Recipe::problems` refuses everything else an override could hold
    // here (group scopes, `depth`, values other than one number).
    let mut overrides: Vec<LayerOverride> = Vec::new();
    for o in &recipe.overrides {
        let crate::recipe::OverrideScope::Layers(lo, hi) = o.scope else {
            continue;
        };
        let num = |name: &str| match o.params.get(name) {
            Some(crate::recipe::Value::Number(x)) => Some(*x),
            _ => None,
        };
        for layer in lo..=hi {
            let at = match overrides.iter().position(|x| x.layer == layer) {
                Some(i) => i,
                None => {
                    overrides.push(LayerOverride {
                        layer,
                        alpha: None,
                        beta: None,
                    });
                    overrides.len() - 1
                }
            };
            let o = &mut overrides[at];
            o.alpha = num("alpha").or(o.alpha);
            o.beta = num("beta").or(o.beta);
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(EngineError::Cancelled);
    }
    let data = Dataset::load_or_builtin(recipe.calibration.as_deref())?;
    let calib = data.split(Split::Train);
    let (merged, _stats) = zip_merge_with_stats(&models, method, depth, &overrides, &calib)?;
    if cancel.load(Ordering::Relaxed) {
        return Err(EngineError::Cancelled);
    }
    let tensors = merged.tensors();
    // Said once the output's tensors are known: the heads kept past the
    // zip depth make more tensors than an input has.
    let _ = progress.send(Event::Started {
        tensors: tensors.len(),
        bytes_total: bytes_read,
    });
    let dtype = recipe.out_dtype.unwrap_or(crate::model::Dtype::F32);
    let writer = Writer::create(
        &opts.out,
        tensors
            .iter()
            .map(|(name, shape, _)| crate::model::OutputTensor {
                name: name.clone(),
                dtype,
                shape: shape.clone(),
            })
            .collect(),
        &writer_options(plan, opts),
    )?;
    for (i, (_, _, data)) in tensors.iter().enumerate() {
        writer.write_f32(i, 0, data)?;
    }
    write_side_files(plan, opts, &writer, Some(&merged.config_json()))?;
    let out = writer.finish()?;
    let summary = Summary {
        out,
        tensors: tensors.len(),
        bytes_written: tensors
            .iter()
            .map(|(_, _, d)| (d.len() * dtype.size()) as u64)
            .sum(),
        bytes_read,
        elapsed: started.elapsed(),
    };
    let _ = progress.send(Event::Finished(summary.clone()));
    Ok(summary)
}
