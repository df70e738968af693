//! Running a multi-document recipe ([`MultiRecipe`], mergekit-multi's
//! files): every document the chosen one needs, in dependency order, each
//! through [`super::run`], the chosen one last into [`Options::out`].
//!
//! Intermediates go into a working folder (`work`, usually `OUT.smelt-work`
//! beside the output): document `NAME` into `work/NAME`, each published
//! whole by the engine like any output. smelt creates `work` when it is
//! missing, and when the run ends (finished, failed or cancelled) removes
//! the intermediates it wrote and then `work` if it created it and it is
//! empty; nothing else in it is touched. An intermediate folder that exists
//! already is an error (never reused: mergekit-multi's `--lazy` reuse of
//! an old output is not done). The final output is written by the engine
//! as always: whole or not at all.

use super::{EngineError, Event, Options, Summary};
use crate::plan::{Plan, PlanError};
use crate::recipe::MultiRecipe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a multi-document run reports.
#[derive(Clone, Debug)]
pub enum MultiEvent {
    /// A document starts (planning, then merging).
    Document {
        /// Its 1-based position in the run.
        pos: usize,
        /// How many documents the run merges.
        total: usize,
        /// Its name (`final merge` for the unnamed one).
        name: String,
        /// Where its output goes.
        out: PathBuf,
    },
    /// An event of the running document's merge.
    Engine(Event),
}

/// Why a multi-document run failed; no final output is published.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    /// A document's plan could not be built (its models, shapes, values).
    #[error("document `{name}` (line {line}): {source}")]
    Plan {
        /// The document's name.
        name: String,
        /// The line where the document starts.
        line: usize,
        /// Its index in [`MultiRecipe::documents`].
        index: usize,
        /// Why.
        source: PlanError,
    },
    /// A document's merge failed (or was cancelled:
    /// [`EngineError::Cancelled`]).
    #[error("document `{name}` (line {line}): {source}")]
    Engine {
        /// The document's name.
        name: String,
        /// The line where the document starts.
        line: usize,
        /// Why.
        source: EngineError,
    },
    /// The working folder could not be made, or an intermediate's folder
    /// exists already.
    #[error("{0}")]
    Work(String),
}

impl MultiError {
    /// Whether the run stopped because the cancel flag was set.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            MultiError::Engine {
                source: EngineError::Cancelled,
                ..
            }
        )
    }
}

/// The working folder for intermediates of a run writing `out`:
/// `OUT.smelt-work` beside it.
pub fn default_work(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".smelt-work");
    PathBuf::from(s)
}

/// The working folder the workbench keeps a multi-document file's built
/// documents in: `STEM.smelt-work` beside the file (`chain.yml` →
/// `chain.smelt-work/NAME`). Unlike a `smelt merge` run's, it is kept:
/// the next documents are tuned against those outputs.
pub fn file_work(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "recipe".into(), |s| s.to_string_lossy().into_owned());
    crate::recipe::folder_of(file).join(format!("{stem}.smelt-work"))
}

/// The recipe a smelt output in `out` was built from (its
/// `smelt-recipe.toml`, paths as the engine resolved them) and when that
/// file was written; `None` when `out` holds no readable one.
pub fn built_from(out: &Path) -> Option<(crate::recipe::Recipe, std::time::SystemTime)> {
    let file = out.join(crate::model::RECIPE_FILE);
    let when = std::fs::metadata(&file).and_then(|m| m.modified()).ok()?;
    let recipe = crate::recipe::Recipe::load(&file).ok()?;
    Some((recipe, when))
}

/// What a document's output says of where it comes from (see
/// [`super::Origin`]): its recipe reads the file's other documents'
/// outputs in `work`, which the run removes, so only the whole file
/// builds it again.
fn origin(multi: &MultiRecipe, i: usize, work: &Path) -> super::Origin {
    let d = &multi.documents[i];
    let mut note = format!(
        "Built by smelt from document `{}` (line {}) of the multi-document recipe {}.",
        multi.label(i),
        d.line,
        crate::text::path(&multi.path)
    );
    if !d.needs.is_empty() {
        note.push_str(&format!(
            " Its models under {} were that file's documents {}, built by the same run (with \
             the documents they read) and removed after it: to build this model again, run \
             the whole file with `smelt merge`.",
            crate::text::path(work),
            multi.quoted_labels(&d.needs)
        ));
    }
    super::Origin {
        note,
        file: multi.text.clone(),
    }
}

/// Removes, when dropped, the intermediates written and the working folder
/// if this run made it (and it is empty then).
struct Cleanup {
    work: PathBuf,
    created: bool,
    written: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for w in &self.written {
            let _ = std::fs::remove_dir_all(w);
        }
        if self.created {
            // Only when empty: anything else in it is not ours.
            let _ = std::fs::remove_dir(&self.work);
        }
    }
}

/// Run document `target` of `multi` and every document it needs (see
/// [`MultiRecipe::order_for`]): intermediates into `work` (see the module
/// documentation), `target` into `opts.out` with `opts`. Events go to
/// `progress`: a document's [`MultiEvent::Document`] on the calling thread
/// just before `cancel` is looked at and the document planned, its merge's
/// events from a helper thread. Setting `cancel` stops the run within a
/// fraction of a second, leaving no output and removing the intermediates
/// written.
pub fn run(
    multi: &MultiRecipe,
    target: usize,
    work: &Path,
    opts: &Options,
    progress: &(dyn Fn(MultiEvent) + Sync),
    cancel: &AtomicBool,
) -> Result<Summary, MultiError> {
    let order = multi.order_for(target);
    let total = order.len();
    let mut cleanup = Cleanup {
        work: work.to_path_buf(),
        created: false,
        written: Vec::new(),
    };
    if total > 1 && !work.exists() {
        std::fs::create_dir(work).map_err(|e| {
            MultiError::Work(format!(
                "cannot create the working folder {}: {}",
                work.display(),
                crate::fsutil::reason(&e)
            ))
        })?;
        cleanup.created = true;
    }
    for (k, &i) in order.iter().enumerate() {
        let name = multi.label(i).to_string();
        let line = multi.documents[i].line;
        let last = i == target;
        let out = if last {
            opts.out.clone()
        } else {
            multi.work_path(i, work)
        };
        if !last && out.symlink_metadata().is_ok() {
            return Err(MultiError::Work(format!(
                "{} exists already (left by a run that was killed?); smelt does not reuse \
                 an intermediate output: remove it",
                out.display()
            )));
        }
        progress(MultiEvent::Document {
            pos: k + 1,
            total,
            name: name.clone(),
            out: out.clone(),
        });
        if cancel.load(Ordering::Relaxed) {
            return Err(MultiError::Engine {
                name,
                line,
                source: EngineError::Cancelled,
            });
        }
        let recipe = multi.recipe_for(i, work);
        let plan = Plan::build(&recipe).map_err(|source| MultiError::Plan {
            name: name.clone(),
            line,
            index: i,
            source,
        })?;
        let mut o = opts.clone();
        o.origin = Some(origin(multi, i, work));
        if !last {
            o.out.clone_from(&out);
            o.force = false;
            crate::model::check_destination(&out, &crate::plan::recipe_paths(&recipe), false)
                .map_err(|e| MultiError::Work(e.to_string()))?;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let result = std::thread::scope(|scope| {
            scope.spawn(move || {
                for ev in rx.iter() {
                    progress(MultiEvent::Engine(ev));
                }
            });
            let r = super::run(&plan, &o, &tx, cancel);
            drop(tx);
            r
        });
        match result {
            Ok(summary) => {
                if last {
                    return Ok(summary);
                }
                cleanup.written.push(summary.out);
            }
            Err(source) => return Err(MultiError::Engine { name, line, source }),
        }
    }
    Err(MultiError::Work(
        "the chosen document is not among those run (a bug)".into(),
    ))
}
