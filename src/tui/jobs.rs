//! The job layer: the only part of the TUI that calls the engine.
//!
//! Work runs on named background threads and reports back as [`Msg`]s on
//! one crossbeam channel, so the UI thread never blocks on disk or math.
//! Statistics requests are "latest wins": a new request cancels the one
//! running, and each result carries the key of the inputs it was
//! computed from, so the state can tell current from stale. Every job
//! body runs under `catch_unwind`: an engine bug becomes an error message
//! on screen, not a wrecked terminal.

use super::state::{Accuracy, LayerRow, ModelInfo, Target, TensorRow};
use super::update::{is_yaml, Effect, Loaded, Msg};
use crate::analysis;
use crate::engine::{self, Event};
use crate::merge::Method;
use crate::model::Model;
use crate::plan::Plan;
use crate::recipe::{Recipe, Value};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shard size for merges started from the TUI; the CLI's default, so the
/// same recipe gives the same files either way.
pub const SHARD_SIZE: u64 = 5_000_000_000;

type Registry = Arc<Mutex<HashMap<PathBuf, Arc<Model>>>>;

/// Accuracy of input models, by path: they do not change while the
/// workbench runs, so each is evaluated once.
type EvalCache = Arc<Mutex<HashMap<PathBuf, Result<crate::eval::EvalReport, String>>>>;

struct AnalysisReq {
    recipe: Recipe,
    targets: Vec<(Target, String)>,
    cancel: Arc<AtomicBool>,
}

/// Handles to the background workers.
pub struct Jobs {
    tx: Sender<Msg>,
    models: Registry,
    analysis_tx: Sender<AnalysisReq>,
    analysis_cancel: Arc<AtomicBool>,
    merge_cancel: Option<Arc<AtomicBool>>,
    evals: EvalCache,
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error: {s}")
}

/// Run `f`, turning a panic into an error message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_text(p)))
}

impl Jobs {
    pub fn new(tx: Sender<Msg>) -> Jobs {
        let models: Registry = Arc::default();
        let (analysis_tx, analysis_rx) = unbounded();
        let reg = models.clone();
        let out = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("smelt-analysis".into())
            .spawn(move || analysis_worker(analysis_rx, reg, out));
        if let Err(e) = spawned {
            let _ = tx.send(Msg::Loaded(Err(format!(
                "cannot start the analysis thread: {e}"
            ))));
        }
        Jobs {
            tx,
            models,
            analysis_tx,
            analysis_cancel: Arc::new(AtomicBool::new(false)),
            merge_cancel: None,
            evals: EvalCache::default(),
        }
    }

    /// Carry out an effect (Repaint is the event loop's business).
    pub fn handle(&mut self, e: Effect) {
        match e {
            Effect::Analyze { recipe, targets } => {
                // Latest wins: stop whatever is being computed now.
                self.analysis_cancel.store(true, Ordering::Relaxed);
                let cancel = Arc::new(AtomicBool::new(false));
                self.analysis_cancel = cancel.clone();
                let _ = self.analysis_tx.send(AnalysisReq {
                    recipe,
                    targets,
                    cancel,
                });
            }
            Effect::StartMerge { recipe, out } => {
                let cancel = Arc::new(AtomicBool::new(false));
                self.merge_cancel = Some(cancel.clone());
                let reg = self.models.clone();
                let tx = self.tx.clone();
                self.spawn("smelt-merge", move || {
                    let r = guarded(|| run_merge(&recipe, &out, &reg, &tx, &cancel));
                    let _ = tx.send(Msg::MergeDone(r));
                });
            }
            Effect::CancelMerge => {
                if let Some(c) = &self.merge_cancel {
                    c.store(true, Ordering::Relaxed);
                }
            }
            Effect::Save { recipe, path } => {
                let tx = self.tx.clone();
                self.spawn("smelt-save", move || {
                    let r = guarded(|| {
                        save_recipe(&recipe, &path).map(|()| (path.clone(), recipe.clone()))
                    });
                    let _ = tx.send(Msg::Saved(r));
                });
            }
            Effect::Open(path) => {
                let reg = self.models.clone();
                let tx = self.tx.clone();
                self.spawn("smelt-open", move || {
                    let r = guarded(|| {
                        let recipe = Recipe::load(&path).map_err(|e| e.to_string())?;
                        load(recipe, Some(path.clone()), &reg)
                    });
                    let _ = tx.send(Msg::Loaded(r));
                });
            }
            Effect::AddModel(path) => {
                let reg = self.models.clone();
                let tx = self.tx.clone();
                self.spawn("smelt-open", move || {
                    let r = guarded(|| {
                        let m = open_model(&path, &reg)?;
                        Ok((info(&m), layer_rows(&m)))
                    });
                    let _ = tx.send(Msg::ModelAdded(r));
                });
            }
            Effect::Evaluate { out, inputs } => {
                let cache = self.evals.clone();
                let tx = self.tx.clone();
                self.spawn("smelt-eval", move || {
                    let result =
                        guarded(|| Ok(evaluate(&out, &inputs, &cache))).unwrap_or_else(|e| {
                            Some(Accuracy {
                                out: out.clone(),
                                merged: Err(e),
                                inputs: Vec::new(),
                            })
                        });
                    let _ = tx.send(Msg::Accuracy { out, result });
                });
            }
            Effect::Repaint => {}
        }
    }

    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
            let _ = self
                .tx
                .send(Msg::Saved(Err(format!("cannot start a thread: {e}"))));
        }
    }

    /// Open models synchronously (startup: headers only, fast) and build the
    /// Loaded message.
    pub fn load_now(&self, recipe: Recipe, path: Option<PathBuf>) -> Result<Loaded, String> {
        guarded(|| load(recipe, path, &self.models))
    }
}

fn open_model(path: &Path, reg: &Registry) -> Result<Arc<Model>, String> {
    if let Some(m) = reg.lock().ok().and_then(|r| r.get(path).cloned()) {
        return Ok(m);
    }
    let m = Arc::new(Model::open(path).map_err(|e| e.to_string())?);
    if let Ok(mut r) = reg.lock() {
        r.insert(path.to_path_buf(), m.clone());
    }
    Ok(m)
}

/// The models a recipe names, base first, without repeats.
fn recipe_paths(recipe: &Recipe) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    for p in recipe
        .base
        .iter()
        .chain(recipe.models.iter().map(|m| &m.path))
    {
        if !v.contains(p) {
            v.push(p.clone());
        }
    }
    v
}

fn load(recipe: Recipe, path: Option<PathBuf>, reg: &Registry) -> Result<Loaded, String> {
    let mut infos = Vec::new();
    let mut layers = Vec::new();
    for (i, p) in recipe_paths(&recipe).iter().enumerate() {
        let m = open_model(p, reg)?;
        if i == 0 {
            layers = layer_rows(&m);
        }
        infos.push(info(&m));
    }
    Ok(Loaded {
        recipe,
        path,
        infos,
        layers,
    })
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

/// Layer groups with their tensors, in the model's stable order.
pub fn layer_rows(m: &Model) -> Vec<LayerRow> {
    let mut rows: Vec<LayerRow> = Vec::new();
    for t in m.tensors() {
        let g = t.place.group;
        if rows.last().is_none_or(|r| r.group != g) {
            rows.push(LayerRow {
                group: g,
                params: 0,
                tensors: Vec::new(),
            });
        }
        if let Some(r) = rows.last_mut() {
            r.params += t.numel() as u64;
            r.tensors.push(TensorRow {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype.name().to_string(),
            });
        }
    }
    rows
}

/// Statistics the analysis thread keeps between requests (per-tensor
/// numbers only, never tensor data).
const ANALYSIS_CACHE_BYTES: usize = 16 << 20;

fn analysis_worker(rx: Receiver<AnalysisReq>, reg: Registry, tx: Sender<Msg>) {
    let mut analyzer = analysis::Analyzer::new(ANALYSIS_CACHE_BYTES);
    while let Ok(mut req) = rx.recv() {
        // Only the newest request matters.
        while let Ok(newer) = rx.try_recv() {
            req = newer;
        }
        for (target, key) in &req.targets {
            if req.cancel.load(Ordering::Relaxed) {
                break;
            }
            // Big tensors: a quick estimate from sampled rows first, so the
            // histogram moves at once; the exact result follows.
            if let Target::Tensor(name) = target {
                if let Ok(Some(s)) =
                    guarded(|| preview(&req.recipe, name, &reg, &req.cancel, &mut analyzer))
                {
                    if req.cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = tx.send(Msg::Preview {
                        key: key.clone(),
                        target: target.clone(),
                        stats: s,
                    });
                }
            }
            let result = guarded(|| analyze(&req.recipe, target, &reg, &req.cancel, &mut analyzer));
            if req.cancel.load(Ordering::Relaxed) {
                break;
            }
            if tx
                .send(Msg::Analysis {
                    key: key.clone(),
                    target: target.clone(),
                    result,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// The recipe's base and models, opened.
fn inputs(recipe: &Recipe, reg: &Registry) -> Result<analysis::Inputs, String> {
    let base_path = recipe.base.as_ref().ok_or("no base model")?;
    Ok(analysis::Inputs {
        reference: open_model(base_path, reg)?,
        models: recipe
            .models
            .iter()
            .map(|m| open_model(&m.path, reg))
            .collect::<Result<Vec<_>, _>>()?,
    })
}

/// A sampled estimate for a big tensor (`None` for small ones), labelled
/// as such on screen.
fn preview(
    recipe: &Recipe,
    name: &str,
    reg: &Registry,
    cancel: &AtomicBool,
    analyzer: &mut analysis::Analyzer,
) -> Result<Option<analysis::Stats>, String> {
    analyzer
        .preview(&inputs(recipe, reg)?, recipe, name, cancel)
        .map_err(|e| e.to_string())
}

fn analyze(
    recipe: &Recipe,
    target: &Target,
    reg: &Registry,
    cancel: &AtomicBool,
    analyzer: &mut analysis::Analyzer,
) -> Result<analysis::Stats, String> {
    // A group's result always finishes (over the tensors it could
    // analyse); `Report::skipped` names the rest, for the panel to show.
    analyzer
        .analyze(&inputs(recipe, reg)?, recipe, target, cancel)
        .map(|r| r.stats)
        .map_err(|e| e.to_string())
}

fn run_merge(
    recipe: &Recipe,
    out: &Path,
    reg: &Registry,
    tx: &Sender<Msg>,
    cancel: &Arc<AtomicBool>,
) -> Result<engine::Summary, String> {
    let problems = recipe.check();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let models = recipe_paths(recipe)
        .iter()
        .map(|p| open_model(p, reg))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Plan::with_models(recipe, models).map_err(|e| e.to_string())?;
    let opts = engine::Options {
        out: out.to_path_buf(),
        force: false,
        threads: None,
        shard_size: SHARD_SIZE,
        sync: true,
    };
    let (ev_tx, ev_rx) = unbounded::<Event>();
    let start = Instant::now();
    // The engine runs on its own thread; this one forwards its events with
    // the elapsed time, so the UI computes throughput without a clock.
    std::thread::scope(|s| {
        let c = cancel.clone();
        let h = s.spawn(move || {
            let r = guarded(|| engine::run(&plan, &opts, &ev_tx, &c).map_err(|e| e.to_string()));
            drop(ev_tx);
            r
        });
        for ev in ev_rx.iter() {
            let _ = tx.send(Msg::Merge {
                event: ev,
                elapsed: start.elapsed(),
            });
        }
        h.join().unwrap_or_else(|p| Err(panic_text(p)))
    })
}

/// Accuracy of the merge in `out` and of each input alone (cached), when
/// the output is a smelt MLP; `None` for any other model.
fn evaluate(out: &Path, inputs: &[(PathBuf, String)], cache: &EvalCache) -> Option<Accuracy> {
    let is_mlp = Model::open(out).is_ok_and(|m| crate::mlp::MlpModel::is_mlp(&m));
    if !is_mlp {
        return None;
    }
    let eval =
        |p: &Path| guarded(|| crate::eval::evaluate_path(p, None).map_err(|e| e.to_string()));
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

fn save_recipe(recipe: &Recipe, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if is_yaml(path) {
        let dir = path.parent().unwrap_or(Path::new("."));
        let text = recipe.to_mergekit_yaml(dir).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("yaml.partial");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        recipe.save(path).map_err(|e| e.to_string())
    }
}

/// The recipe `smelt` opens with no arguments: TIES over the synthetic
/// Llama-shaped family in `sample_models/llama-synthetic` (falling back to
/// `digits-tasks`): the folder whose name contains "base" is the base, the
/// rest are inputs at weight 1 and density 0.5.
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
        let mut r = Recipe::new(Method::Ties, Some(base), subs);
        for m in &mut r.models {
            m.params.insert("weight".into(), Value::Number(1.0));
            m.params.insert("density".into(), Value::Number(0.5));
        }
        return Some(r);
    }
    None
}

/// A recipe for `smelt tui MODEL... [--base M]`: TIES when there is a base
/// (weights 1, density 0.5), a plain average otherwise.
pub fn recipe_for_models(models: Vec<PathBuf>, base: Option<PathBuf>) -> Recipe {
    let method = if base.is_some() {
        Method::Ties
    } else {
        Method::Linear
    };
    let mut r = Recipe::new(method, base, models);
    for m in &mut r.models {
        m.params.insert("weight".into(), Value::Number(1.0));
        if method == Method::Ties {
            m.params.insert("density".into(), Value::Number(0.5));
        }
    }
    r
}
