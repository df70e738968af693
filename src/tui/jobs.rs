//! The job layer: the only part of the TUI that calls the engine.
//!
//! Work runs on named background threads and reports back as [`Msg`]s on
//! one channel, so the UI thread never blocks on disk or math. Every job
//! kind is latest-wins: results carry the ticket they were started with
//! and the state drops those that are not the latest of their kind;
//! statistics requests also cancel the one running, and carry the key of
//! the inputs they were computed from. Errors are typed ([`JobError`]):
//! the input's fault, smelt's, or a cancel. A thread that cannot start
//! reports a failure for its job, never a job that runs forever. Every job
//! body runs under `catch_unwind`: an engine bug becomes an error on
//! screen, not a wrecked terminal.

use super::state::{Accuracy, LayerRow, ModelInfo, StatsKey, Target, TensorRow, Ticket};
use super::update::{is_yaml, Effect, JobError, Loaded, Msg, SaveRequest, SavedFile};
use crate::analysis::{AnalysisError, Analyzer, Inputs};
use crate::engine::{self, EngineError, Event};
use crate::model::Model;
use crate::plan::Plan;
use crate::recipe::Recipe;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Memory the statistics may keep between requests (task vectors of the
/// selected tensor, for fast re-trims), bounded so browsing every tensor
/// of a big model keeps the workbench small.
pub const ANALYSIS_CACHE_BYTES: usize = 96 << 20;

type Registry = Arc<Mutex<HashMap<PathBuf, Arc<Model>>>>;

/// Accuracy of input models, by path: they do not change while the
/// workbench runs, so each is evaluated once.
type EvalCache = Arc<Mutex<HashMap<PathBuf, Result<crate::eval::EvalReport, JobError>>>>;

struct AnalysisReq {
    recipe: Recipe,
    reference: PathBuf,
    targets: Vec<(Target, StatsKey)>,
    cancel: Arc<AtomicBool>,
}

/// Handles to the background workers.
pub struct Jobs {
    tx: Sender<Msg>,
    models: Registry,
    /// `None` when the analysis thread could not start.
    analysis_tx: Option<Sender<AnalysisReq>>,
    analysis_error: String,
    analysis_cancel: Arc<AtomicBool>,
    merge_cancel: Option<Arc<AtomicBool>>,
    extract_cancel: Option<Arc<AtomicBool>>,
    evals: EvalCache,
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Run `f`, turning a panic into an internal error.
fn guarded<T>(f: impl FnOnce() -> Result<T, JobError>) -> Result<T, JobError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(JobError::Internal(panic_text(p))))
}

fn input(e: impl std::fmt::Display) -> JobError {
    JobError::Input(e.to_string())
}

impl Jobs {
    /// Jobs whose results go to `tx` as messages.
    pub fn new(tx: Sender<Msg>) -> Jobs {
        let models: Registry = Arc::default();
        let (analysis_tx, analysis_rx) = unbounded();
        let reg = models.clone();
        let out = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("smelt-analysis".into())
            .spawn(move || analysis_worker(analysis_rx, reg, out));
        let (analysis_tx, analysis_error) = match spawned {
            Ok(_) => (Some(analysis_tx), String::new()),
            Err(e) => (None, format!("the statistics thread could not start: {e}")),
        };
        Jobs {
            tx,
            models,
            analysis_tx,
            analysis_error,
            analysis_cancel: Arc::new(AtomicBool::new(false)),
            merge_cancel: None,
            extract_cancel: None,
            evals: EvalCache::default(),
        }
    }

    /// Carry out an effect (Repaint is the event loop's business).
    pub fn handle(&mut self, e: Effect) {
        match e {
            Effect::Analyze {
                recipe,
                reference,
                targets,
            } => {
                // Latest wins: stop whatever is being computed now.
                self.analysis_cancel.store(true, Ordering::Relaxed);
                let cancel = Arc::new(AtomicBool::new(false));
                self.analysis_cancel = cancel.clone();
                let req = AnalysisReq {
                    recipe,
                    reference,
                    targets,
                    cancel,
                };
                // No worker: every target gets its error, so nothing shows
                // "computing" forever.
                let unsent = match &self.analysis_tx {
                    Some(t) => t
                        .send(req)
                        .err()
                        .map(|e| (e.0.targets, "the statistics thread has stopped".to_string())),
                    None => Some((req.targets, self.analysis_error.clone())),
                };
                if let Some((targets, why)) = unsent {
                    for (target, key) in targets {
                        let _ = self.tx.send(Msg::Analysis {
                            key,
                            target,
                            result: Err(JobError::Internal(why.clone())),
                        });
                    }
                }
            }
            Effect::StartMerge {
                ticket,
                recipe,
                out,
                force,
                origin,
            } => {
                let cancel = Arc::new(AtomicBool::new(false));
                self.merge_cancel = Some(cancel.clone());
                let reg = self.models.clone();
                let evals = self.evals.clone();
                let tx = self.tx.clone();
                self.job(
                    "smelt-merge",
                    move || {
                        let r = run_merge(&recipe, &out, force, origin, &reg, &tx, ticket, &cancel);
                        // A model opened from `out` before (a document
                        // rebuilt) is another model now.
                        if r.is_ok() {
                            if let Ok(mut m) = reg.lock() {
                                m.remove(&out);
                            }
                            if let Ok(mut e) = evals.lock() {
                                e.remove(&out);
                            }
                        }
                        r
                    },
                    move |result| Msg::MergeDone { ticket, result },
                );
            }
            Effect::CancelMerge => {
                if let Some(c) = &self.merge_cancel {
                    c.store(true, Ordering::Relaxed);
                }
            }
            Effect::StartExtract { ticket, opts } => {
                let cancel = Arc::new(AtomicBool::new(false));
                self.extract_cancel = Some(cancel.clone());
                let tx = self.tx.clone();
                self.job(
                    "smelt-extract",
                    move || run_extract(&opts, &tx, ticket, &cancel),
                    move |result| Msg::ExtractDone { ticket, result },
                );
            }
            Effect::CancelExtract => {
                if let Some(c) = &self.extract_cancel {
                    c.store(true, Ordering::Relaxed);
                }
            }
            Effect::Save { ticket, request } => {
                let path = request.path.clone();
                self.job(
                    "smelt-save",
                    move || save(&request),
                    move |result| Msg::Saved {
                        ticket,
                        path: path.clone(),
                        result,
                    },
                );
            }
            Effect::Open {
                ticket,
                path,
                data_dir,
            } => {
                let reg = self.models.clone();
                let p = path.clone();
                self.job(
                    "smelt-open",
                    move || open_recipe(&p, &reg, &data_dir),
                    move |result| Msg::Opened {
                        ticket,
                        path: path.clone(),
                        result,
                    },
                );
            }
            Effect::OpenDocument {
                ticket,
                index,
                recipe,
            } => {
                let reg = self.models.clone();
                self.job(
                    "smelt-open",
                    move || load(recipe, None, None, &reg),
                    move |result| Msg::DocumentOpened {
                        ticket,
                        index,
                        result,
                    },
                );
            }
            Effect::AddModel { ticket, path, fits } => {
                let reg = self.models.clone();
                let p = path.clone();
                self.job(
                    "smelt-add",
                    move || add_model(&p, fits.as_deref(), &reg),
                    move |result| Msg::ModelAdded {
                        ticket,
                        path: path.clone(),
                        result,
                    },
                );
            }
            Effect::Check { gen, recipe } => {
                let reg = self.models.clone();
                self.job(
                    "smelt-check",
                    move || {
                        let models = recipe_paths(&recipe)
                            .iter()
                            .map(|p| open_model(p, &reg))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(Plan::with_models(&recipe, models)
                            .err()
                            .map(|e| e.to_string()))
                    },
                    move |r: Result<Option<String>, JobError>| Msg::Checked {
                        gen,
                        problem: r.unwrap_or_else(|e| Some(e.to_string())),
                    },
                );
            }
            Effect::Evaluate { out, inputs } => {
                let cache = self.evals.clone();
                let tx = self.tx.clone();
                let o2 = out.clone();
                self.spawn(
                    "smelt-eval",
                    move || {
                        let result =
                            catch_unwind(AssertUnwindSafe(|| evaluate(&out, &inputs, &cache)))
                                .unwrap_or_else(|p| {
                                    Some(Accuracy {
                                        out: out.clone(),
                                        merged: Err(JobError::Internal(panic_text(p))),
                                        inputs: Vec::new(),
                                    })
                                });
                        let _ = tx.send(Msg::Accuracy { out, result });
                    },
                    move |e| Msg::Accuracy {
                        out: o2.clone(),
                        result: Some(Accuracy {
                            out: o2,
                            merged: Err(e),
                            inputs: Vec::new(),
                        }),
                    },
                );
            }
            Effect::Repaint => {}
        }
    }

    /// Run `work` on a thread named `name` (a panic becomes an internal
    /// error) and send its result as `msg(result)`; if the thread cannot
    /// start, that failure is sent the same way.
    fn job<T: 'static>(
        &self,
        name: &str,
        work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
        msg: impl Fn(Result<T, JobError>) -> Msg + Send + Sync + 'static,
    ) {
        let msg = Arc::new(msg);
        let (m, tx) = (msg.clone(), self.tx.clone());
        self.spawn(
            name,
            move || {
                let _ = tx.send(m(guarded(work)));
            },
            move |e| msg(Err(e)),
        );
    }

    /// Start a thread; if it cannot start, report `failed` for its job.
    fn spawn(
        &self,
        name: &str,
        f: impl FnOnce() + Send + 'static,
        failed: impl FnOnce(JobError) -> Msg,
    ) {
        if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
            let _ = self.tx.send(failed(JobError::Internal(format!(
                "cannot start a thread ({name}): {e}"
            ))));
        }
    }

    /// Open a recipe's models synchronously (startup: headers only, fast).
    pub fn load_now(
        &self,
        recipe: Recipe,
        path: Option<PathBuf>,
        text: Option<String>,
    ) -> Result<Loaded, JobError> {
        guarded(|| load(recipe, path, text, &self.models))
    }

    /// Open the recipe file `path`, read as `text`, synchronously
    /// (startup); every problem found on a line of its own.
    pub fn open_now(&self, path: &Path, text: String, data_dir: &Path) -> Result<Loaded, JobError> {
        guarded(|| open_text(path, text, &self.models, "\n", data_dir))
    }
}

fn open_model(path: &Path, reg: &Registry) -> Result<Arc<Model>, JobError> {
    if let Some(m) = reg.lock().ok().and_then(|r| r.get(path).cloned()) {
        return Ok(m);
    }
    let m = Arc::new(Model::open(path).map_err(input)?);
    if let Ok(mut r) = reg.lock() {
        r.insert(path.to_path_buf(), m.clone());
    }
    Ok(m)
}

/// The models a recipe names (base, models, then the slices' models),
/// without repeats.
fn recipe_paths(recipe: &Recipe) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    let sliced = recipe
        .slices
        .iter()
        .flat_map(|s| s.base.iter().chain(s.sources.iter().map(|x| &x.model)));
    for p in recipe
        .base
        .iter()
        .chain(recipe.models.iter().map(|m| &m.path))
        .chain(sliced)
    {
        if !v.contains(p) {
            v.push(p.clone());
        }
    }
    v
}

fn open_recipe(path: &Path, reg: &Registry, data_dir: &Path) -> Result<Loaded, JobError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
    open_text(path, text, reg, "; ", data_dir)
}

/// Open the recipe file `path` whose text is `text`: one recipe, or a
/// multi-document file on the document [`super::multi::initial_document`]
/// picks. Every problem found goes into one message, joined by `sep`.
///
/// A recipe kept in `data_dir`'s recovery folder from an ended session
/// says which file its edits were made to ([`super::recovered_from`]). A
/// multi-document file kept there is that file's whole text as a save
/// would have written it, so it is read as that file: its relative paths
/// and its working folder are the file's.
fn open_text(
    path: &Path,
    text: String,
    reg: &Registry,
    sep: &str,
    data_dir: &Path,
) -> Result<Loaded, JobError> {
    let recovered = super::recovered_from(data_dir, path, &text);
    if let Some(from) = &recovered {
        let body = super::without_recovery_note(&text);
        if let Ok(Some(_)) = crate::recipe::MultiRecipe::parse(body, from) {
            let mut l = open_text(from, body.to_string(), reg, sep, data_dir)?;
            l.path = Some(path.to_path_buf());
            l.recovered = recovered;
            return Ok(l);
        }
    }
    let all = |errs: Vec<crate::recipe::RecipeError>| {
        input(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(sep),
        )
    };
    if let Some(m) = crate::recipe::MultiRecipe::parse(&text, path).map_err(all)? {
        let work = crate::engine::multi::file_work(path);
        let j = super::multi::initial_document(&m, &work);
        let mut l = load(
            m.recipe_for(j, &work),
            Some(path.to_path_buf()),
            Some(text),
            reg,
        )
        .map_err(|e| match e {
            // Which document named it, as `smelt merge` says.
            JobError::Input(msg) => JobError::Input(format!(
                "document `{}` (line {}) of {msg}",
                m.label(j),
                m.documents[j].line
            )),
            other => other,
        })?;
        l.multi = Some(m);
        l.document = Some(j);
        return Ok(l);
    }
    let recipe = Recipe::parse_all(&text, path).map_err(all)?;
    let mut l = load(recipe, Some(path.to_path_buf()), Some(text), reg)?;
    l.recovered = recovered;
    Ok(l)
}

fn load(
    recipe: Recipe,
    path: Option<PathBuf>,
    text: Option<String>,
    reg: &Registry,
) -> Result<Loaded, JobError> {
    let mut infos = Vec::new();
    let mut layers = Vec::new();
    for (i, p) in recipe_paths(&recipe).iter().enumerate() {
        // Say which recipe named the model that cannot be read.
        let m = open_model(p, reg).map_err(|e| match &path {
            Some(r) => JobError::Input(format!(
                "{}: a model it names cannot be read: {e}",
                r.display()
            )),
            None => e,
        })?;
        if i == 0 {
            layers = layer_rows(&m);
        }
        infos.push(info(&m));
    }
    Ok(Loaded {
        recipe,
        path,
        text,
        infos,
        layers,
        multi: None,
        document: None,
        recovered: None,
    })
}

fn add_model(
    path: &Path,
    fits: Option<&Path>,
    reg: &Registry,
) -> Result<(ModelInfo, Vec<LayerRow>), JobError> {
    let m = open_model(path, reg)?;
    if let Some(f) = fits {
        let other = open_model(f, reg)?;
        use crate::mlp::MlpModel;
        if MlpModel::is_mlp(&m) && MlpModel::is_mlp(&other) {
            // smelt MLPs trained on other classes: their heads differ, and
            // a merge keeps each input's head (as a recipe naming them is
            // planned, `mlp::head_layout`); only their trunks must fit.
            crate::mlp::head_layout(&[&m, &other]).map_err(input)?;
        } else {
            // The message names both models and the first tensor that differs.
            m.check_compatible(&other).map_err(input)?;
        }
    }
    Ok((info(&m), layer_rows(&m)))
}

/// A model's summary for the Models panel.
pub fn info(m: &Model) -> ModelInfo {
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for t in m.tensors() {
        *counts.entry(t.dtype.name()).or_default() += t.numel();
    }
    let dtype = counts
        .into_iter()
        .max_by_key(|(n, c)| (*c, *n))
        .map_or_else(|| "-".to_string(), |(n, _)| n.to_string());
    ModelInfo {
        name: m.name().to_string(),
        path: m.path().to_path_buf(),
        dtype,
        params: m.num_params(),
        shards: m.shard_paths().len(),
        layers: m.num_layers(),
    }
}

/// The layer table, from the model catalogue's grouping.
pub fn layer_rows(m: &Model) -> Vec<LayerRow> {
    m.layer_groups()
        .into_iter()
        .map(|g| LayerRow {
            group: g.group,
            params: g.params,
            tensors: g
                .tensors
                .into_iter()
                .map(|t| TensorRow {
                    name: t.name,
                    shape: t.shape,
                    dtype: t.dtype.name().to_string(),
                })
                .collect(),
        })
        .collect()
}

fn analysis_worker(rx: Receiver<AnalysisReq>, reg: Registry, tx: Sender<Msg>) {
    let mut analyzer = Analyzer::new(ANALYSIS_CACHE_BYTES);
    while let Ok(mut req) = rx.recv() {
        // Only the newest request matters.
        while let Ok(newer) = rx.try_recv() {
            req = newer;
        }
        let opened = (|| -> Result<Inputs, JobError> {
            Ok(Inputs {
                reference: open_model(&req.reference, &reg)?,
                models: req
                    .recipe
                    .models
                    .iter()
                    .map(|m| open_model(&m.path, &reg))
                    .collect::<Result<_, _>>()?,
            })
        })();
        let inputs = match opened {
            Ok(i) => i,
            Err(e) => {
                for (target, key) in req.targets {
                    let _ = tx.send(Msg::Analysis {
                        key,
                        target,
                        result: Err(e.clone()),
                    });
                }
                continue;
            }
        };
        // The selected target first (with a preview if it is big), then
        // every layer group in one parallel run (the gauges), then the
        // tensors of expanded layers.
        let (groups, singles): (Vec<_>, Vec<_>) = req
            .targets
            .iter()
            .enumerate()
            .partition(|(i, (t, _))| *i > 0 && matches!(t, Target::Group(_)));
        let mut singles = singles.into_iter().map(|(_, x)| x);
        if let Some(first) = singles.next() {
            if !one(&mut analyzer, &inputs, &req, first, &tx) {
                return;
            }
        }
        if !groups.is_empty() && !req.cancel.load(Ordering::Relaxed) {
            let targets: Vec<Target> = groups.iter().map(|(_, (t, _))| t.clone()).collect();
            let all = catch_unwind(AssertUnwindSafe(|| {
                analyzer.analyze_many(&inputs, &req.recipe, &targets, &req.cancel)
            }));
            let results: Vec<Result<_, JobError>> = match all {
                Ok(Ok(v)) => v.into_iter().map(|r| r.map_err(job_error)).collect(),
                Ok(Err(e)) => vec![Err(job_error(e)); targets.len()],
                Err(p) => vec![Err(JobError::Internal(panic_text(p))); targets.len()],
            };
            if req.cancel.load(Ordering::Relaxed) {
                continue;
            }
            for ((_, (target, key)), result) in groups.iter().zip(results) {
                let msg = Msg::Analysis {
                    key: *key,
                    target: target.clone(),
                    result,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
        for x in singles {
            if req.cancel.load(Ordering::Relaxed) {
                break;
            }
            if !one(&mut analyzer, &inputs, &req, x, &tx) {
                return;
            }
        }
    }
}

fn job_error(e: AnalysisError) -> JobError {
    match e {
        AnalysisError::Cancelled => JobError::Cancelled,
        other => JobError::Input(other.to_string()),
    }
}

/// One target's statistics (a sampled preview first for a big tensor),
/// sent unless the request was cancelled meanwhile. False when nobody
/// listens any more.
fn one(
    analyzer: &mut Analyzer,
    inputs: &Inputs,
    req: &AnalysisReq,
    (target, key): &(Target, StatsKey),
    tx: &Sender<Msg>,
) -> bool {
    if let Target::Tensor(name) = target {
        let p = catch_unwind(AssertUnwindSafe(|| {
            analyzer.preview(inputs, &req.recipe, name, &req.cancel)
        }));
        if let Ok(Ok(Some(s))) = p {
            if req.cancel.load(Ordering::Relaxed) {
                return true;
            }
            let _ = tx.send(Msg::Preview {
                key: *key,
                target: target.clone(),
                stats: s,
            });
        }
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        analyzer
            .analyze(inputs, &req.recipe, target, &req.cancel)
            .map_err(job_error)
    }))
    .unwrap_or_else(|p| Err(JobError::Internal(panic_text(p))));
    if req.cancel.load(Ordering::Relaxed) {
        return true;
    }
    tx.send(Msg::Analysis {
        key: *key,
        target: target.clone(),
        result,
    })
    .is_ok()
}

#[allow(clippy::too_many_arguments)]
fn run_merge(
    recipe: &Recipe,
    out: &Path,
    force: bool,
    origin: Option<super::multi::OriginOf>,
    reg: &Registry,
    tx: &Sender<Msg>,
    ticket: Ticket,
    cancel: &Arc<AtomicBool>,
) -> Result<engine::Summary, JobError> {
    let problems = recipe.check();
    if !problems.is_empty() {
        return Err(JobError::Input(problems.join("; ")));
    }
    let models = recipe_paths(recipe)
        .iter()
        .map(|p| open_model(p, reg))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Plan::with_models(recipe, models).map_err(input)?;
    let opts = engine::Options {
        out: out.to_path_buf(),
        force,
        threads: None,
        // The CLI's default, so the same recipe gives the same files
        // either way.
        shard_size: crate::model::DEFAULT_SHARD_SIZE,
        sync: true,
        allow_nonfinite: false,
        origin: origin.map(|o| o.origin()),
    };
    let (ev_tx, ev_rx) = unbounded::<Event>();
    let start = Instant::now();
    // The engine runs on its own thread; this one forwards its events with
    // the elapsed time, so the UI computes throughput without a clock.
    std::thread::scope(|s| {
        let c = cancel.clone();
        let h = s.spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(|| engine::run(&plan, &opts, &ev_tx, &c)))
                .unwrap_or_else(|p| {
                    Err(EngineError::Other(format!(
                        "internal error: {}",
                        panic_text(p)
                    )))
                });
            drop(ev_tx);
            r
        });
        for ev in ev_rx.iter() {
            let _ = tx.send(Msg::Merge {
                ticket,
                event: ev,
                elapsed: start.elapsed(),
            });
        }
        match h.join() {
            Ok(r) => r.map_err(|e| match e {
                EngineError::Cancelled => JobError::Cancelled,
                EngineError::Other(m) => JobError::Internal(m),
                other => input(other),
            }),
            Err(p) => Err(JobError::Internal(panic_text(p))),
        }
    })
}

/// Extract a LoRA with the CLI's defaults but the rank, forwarding its
/// progress with the elapsed time (the UI keeps no clock).
fn run_extract(
    o: &crate::extract::Options,
    tx: &Sender<Msg>,
    ticket: Ticket,
    cancel: &AtomicBool,
) -> Result<crate::extract::Report, JobError> {
    use crate::extract::{self, ExtractError};
    let start = Instant::now();
    let mut progress = |event: extract::Event| {
        let _ = tx.send(Msg::Extract {
            ticket,
            event,
            elapsed: start.elapsed(),
        });
    };
    extract::run(o, &mut progress, cancel).map_err(|e| match e {
        ExtractError::Cancelled => JobError::Cancelled,
        e if e.is_environment() => JobError::Internal(e.to_string()),
        e => input(e),
    })
}

/// Accuracy of the merge in `out` and of each input alone (cached), when
/// the output is a smelt MLP; `None` for any other model.
fn evaluate(out: &Path, inputs: &[(PathBuf, String)], cache: &EvalCache) -> Option<Accuracy> {
    let is_mlp = Model::open(out).is_ok_and(|m| crate::mlp::MlpModel::is_mlp(&m));
    if !is_mlp {
        return None;
    }
    let eval = |p: &Path| {
        catch_unwind(AssertUnwindSafe(|| {
            crate::eval::evaluate_path(p, None).map_err(input)
        }))
        .unwrap_or_else(|p| Err(JobError::Internal(panic_text(p))))
    };
    let merged = eval(out);
    let inputs = inputs
        .iter()
        .map(|(p, name)| {
            let cached = cache.lock().ok().and_then(|c| c.get(p).cloned());
            let r = cached.unwrap_or_else(|| {
                let r = eval(p);
                if let Ok(mut c) = cache.lock() {
                    c.insert(p.clone(), r.clone());
                }
                r
            });
            (name.clone(), r)
        })
        .collect();
    Some(Accuracy {
        out: out.to_path_buf(),
        merged,
        inputs,
    })
}

/// Write a recipe: TOML (over the opened file, its comments and layout
/// kept), or mergekit YAML (exact, or refused naming what would be lost).
/// Stops with `ChangedOnDisk` when the file being saved over is no longer
/// what was read, unless forced.
fn save(req: &SaveRequest) -> Result<SavedFile, JobError> {
    let path = &req.path;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let (Some(expected), false) = (&req.over, req.force) {
        match std::fs::read_to_string(path) {
            Ok(now) if now != *expected => return Err(JobError::ChangedOnDisk),
            _ => {}
        }
    }
    let text = if let Some(m) = &req.multi {
        m.file.with_documents(&m.edits, &m.work).map_err(|errs| {
            input(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?
    } else if is_yaml(path) {
        req.recipe.to_mergekit_yaml(&dir).map_err(input)?
    } else {
        match &req.over {
            Some(orig) => req.recipe.to_toml_preserving(orig, &dir).map_err(input)?,
            None => req.recipe.to_toml(&dir),
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| input(format!("{}: {e}", dir.display())))?;
    crate::fsutil::write_atomic(path, text.as_bytes())
        .map_err(|e| input(format!("{}: {e}", path.display())))?;
    Ok(SavedFile {
        recipe: req.recipe.clone(),
        text,
    })
}

/// The recipe `smelt` opens with no arguments when the sample folder has
/// none of its own: TIES over the synthetic Llama-shaped family in
/// `sample_models/llama-synthetic` (falling back to `digits-tasks`), the
/// folder named like a base as the base.
pub fn default_recipe(sample_root: &Path) -> Option<Recipe> {
    for fam in ["llama-synthetic", "digits-tasks"] {
        let dir = sample_root.join(fam);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut subs: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.join("model.safetensors").is_file()
                    || p.join("model.safetensors.index.json").is_file()
            })
            .collect();
        subs.sort();
        let base_i = subs.iter().position(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("base"))
        });
        let Some(bi) = base_i else {
            continue;
        };
        let base = subs.remove(bi);
        if subs.is_empty() {
            continue;
        }
        return Some(Recipe::for_models(subs, Some(base)));
    }
    None
}
