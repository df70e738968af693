//! `update(state, msg) -> effects`: every change to the state happens here.
//!
//! Nothing in this file touches the terminal or the engine; what must
//! happen outside (open a model, run a merge, compute statistics, write a
//! file) is returned as an [`Effect`] for the job layer. Keys go to the
//! open dialog or prompt first, then to the workbench-wide keys, then to
//! the focused panel ([`super::panels`]). Any analysis the new state needs
//! is requested at the end, so every path that changes parameters or
//! selection gets fresh statistics.

use super::dialog;
use super::input::InputEvent;
use super::keys::{action, Action};
use super::layout;
use super::panels;
use super::state::*;
use crate::analysis::Stats;
use crate::engine::{Event, Summary};
use crate::recipe::Recipe;
use ratatui::crossterm::event::{KeyEvent, KeyEventKind, MouseEvent};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::state::JobError;

/// Everything that can happen to the UI.
#[derive(Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (only with `--mouse`).
    Mouse(MouseEvent),
    /// The terminal's new width and height.
    Resize(u16, u16),
    /// A signal asking the process to end (SIGHUP, SIGTERM, ...).
    Signal(i32),
    /// A statistics result, with the key of the inputs it came from.
    Analysis {
        /// What it was computed from.
        key: StatsKey,
        /// What it is about.
        target: Target,
        /// The statistics, or why there are none.
        result: Result<Report, JobError>,
    },
    /// A quick estimate from sampled rows of a big tensor.
    Preview {
        /// What it was computed from.
        key: StatsKey,
        /// What it is about.
        target: Target,
        /// The estimate.
        stats: Stats,
    },
    /// An engine event from the merge, with time since it started.
    Merge {
        /// The merge's ticket.
        ticket: Ticket,
        /// What the engine said.
        event: Event,
        /// Time since the merge started.
        elapsed: Duration,
    },
    /// The merge ended: its summary, or why it failed.
    MergeDone {
        /// The merge's ticket.
        ticket: Ticket,
        /// What the engine returned.
        result: Result<Summary, JobError>,
    },
    /// A LoRA extraction's progress, with time since it started.
    Extract {
        /// The extraction's ticket.
        ticket: Ticket,
        /// What the extraction said.
        event: crate::extract::Event,
        /// Time since it started.
        elapsed: Duration,
    },
    /// A LoRA extraction ended: its report, or why it failed.
    ExtractDone {
        /// The extraction's ticket.
        ticket: Ticket,
        /// What the extraction returned.
        result: Result<crate::extract::Report, JobError>,
    },
    /// A recipe or models were opened (or not).
    Opened {
        /// The opening's ticket.
        ticket: Ticket,
        /// What was opened.
        path: PathBuf,
        /// The recipe and its models, or why not.
        result: Result<Loaded, JobError>,
    },
    /// A document of the multi-document file open was opened (or not).
    DocumentOpened {
        /// The opening's ticket.
        ticket: Ticket,
        /// The document.
        index: usize,
        /// Its recipe and models, or why not.
        result: Result<Loaded, JobError>,
    },
    /// A model was added (or not).
    ModelAdded {
        /// The job's ticket.
        ticket: Ticket,
        /// The model's path.
        path: PathBuf,
        /// Its summary and layer groups, or why not.
        result: Result<(ModelInfo, Vec<LayerRow>), JobError>,
    },
    /// A recipe was saved (or not).
    Saved {
        /// The save's ticket.
        ticket: Ticket,
        /// Where it went.
        path: PathBuf,
        /// What was written, or why not.
        result: Result<SavedFile, JobError>,
    },
    /// What planning the recipe against its models found (the checks that
    /// need the models' headers: shapes, missing tensors, model kinds), for
    /// the recipe of edit `gen`.
    Checked {
        /// The edit the check is about.
        gen: u64,
        /// The first problem found, if any.
        problem: Option<String>,
    },
    /// Accuracy of the merge written to `out` (`None`: not an MLP).
    Accuracy {
        /// The folder evaluated.
        out: PathBuf,
        /// The figures, when the output is an MLP.
        result: Option<Accuracy>,
    },
}

/// An opened recipe and its models.
#[derive(Debug)]
pub struct Loaded {
    /// The recipe, paths resolved.
    pub recipe: Recipe,
    /// Where it was read from (`None`: models opened without a recipe).
    pub path: Option<PathBuf>,
    /// The file's text, when read from one.
    pub text: Option<String>,
    /// A summary of each model, in recipe order.
    pub infos: Vec<ModelInfo>,
    /// The models' layer groups.
    pub layers: Vec<LayerRow>,
    /// A multi-document file opened anew: the file (`recipe` is one of
    /// its documents, [`Loaded::document`]).
    pub multi: Option<crate::recipe::MultiRecipe>,
    /// The document of a multi-document file `recipe` is.
    pub document: Option<usize>,
    /// Opened from the recovery folder: the file these unsaved edits were
    /// made to (see [`super::recovered_from`]), which `s` saves again.
    pub recovered: Option<PathBuf>,
}

/// A recipe as written.
#[derive(Debug, Clone)]
pub struct SavedFile {
    /// The recipe as saved.
    pub recipe: Recipe,
    /// The file's text as written.
    pub text: String,
}

/// How a save writes.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveRequest {
    /// The recipe to save.
    pub recipe: Recipe,
    /// Where to write it (`.toml`, or mergekit `.yml`/`.yaml`).
    pub path: PathBuf,
    /// The file's text as last read or written, when saving over it: its
    /// comments and layout are kept (TOML), and if the file on disk no
    /// longer has this text the save stops with `ChangedOnDisk`.
    pub over: Option<String>,
    /// Write even if the file changed on disk.
    pub force: bool,
    /// The layer count, for mergekit YAML.
    pub n_layers: usize,
    /// Saving a multi-document file: the whole file, with these edits.
    pub multi: Option<MultiSave>,
}

/// A multi-document file to write: `file` with `edits` (index, recipe as
/// run, references into `work`) written in.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiSave {
    /// The file as last read or saved.
    pub file: crate::recipe::MultiRecipe,
    /// Where its documents are built.
    pub work: PathBuf,
    /// The edited documents.
    pub edits: Vec<(usize, Recipe)>,
}

/// Work for the outside world.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Compute statistics for `targets` (in order) under `recipe`, task
    /// vectors taken against `reference`; replaces any analysis running.
    Analyze {
        /// The recipe as it stands.
        recipe: Recipe,
        /// The model task vectors are taken against.
        reference: PathBuf,
        /// The targets, each with the key its result will carry.
        targets: Vec<(Target, StatsKey)>,
    },
    /// Run `recipe` into `out` on a background thread.
    StartMerge {
        /// The merge's ticket.
        ticket: Ticket,
        /// The recipe to run.
        recipe: Recipe,
        /// The output folder.
        out: PathBuf,
        /// Replace `out` when it holds an earlier smelt output (a
        /// multi-document file's document rebuilt in its working folder).
        force: bool,
        /// Where the recipe comes from (a multi-document file's document:
        /// see [`crate::engine::Origin`]), made by the merge's job.
        origin: Option<super::multi::OriginOf>,
    },
    /// Set the running merge's cancel flag.
    CancelMerge,
    /// Extract a LoRA on a background thread: the fine-tune, its base,
    /// the adapter folder and the settings, all in `opts`.
    StartExtract {
        /// The extraction's ticket.
        ticket: Ticket,
        /// What to extract, how, and where to.
        opts: Box<crate::extract::Options>,
    },
    /// Set the running extraction's cancel flag.
    CancelExtract,
    /// Save a recipe on a background thread.
    Save {
        /// The save's ticket.
        ticket: Ticket,
        /// What and where.
        request: SaveRequest,
    },
    /// Open a recipe or models on a background thread.
    Open {
        /// The opening's ticket.
        ticket: Ticket,
        /// What to open.
        path: PathBuf,
        /// The workbench's data folder, whose recovery folder holds the
        /// recipes kept from ended sessions (see [`super::recovered_from`]).
        data_dir: PathBuf,
    },
    /// Open the models of document `index` of the multi-document file
    /// open, whose recipe (references into its working folder) is
    /// `recipe`.
    OpenDocument {
        /// The opening's ticket.
        ticket: Ticket,
        /// The document.
        index: usize,
        /// Its recipe as run.
        recipe: Recipe,
    },
    /// Open a model and check it fits `fits` (a loaded model).
    AddModel {
        /// The job's ticket.
        ticket: Ticket,
        /// The model to add.
        path: PathBuf,
        /// A loaded model it must fit, if any.
        fits: Option<PathBuf>,
    },
    /// Plan `recipe` against its models' headers (edit `gen`): the checks
    /// `smelt recipe check` runs beyond the recipe itself.
    Check {
        /// The edit it is for.
        gen: u64,
        /// The recipe then.
        recipe: Recipe,
    },
    /// Evaluate the merge output in `out` if it is an MLP, beside each
    /// input (path, name) evaluated alone.
    Evaluate {
        /// The output folder.
        out: PathBuf,
        /// Each input's path and name.
        inputs: Vec<(PathBuf, String)>,
    },
    /// Clear and repaint the whole terminal (Ctrl-L).
    Repaint,
}

/// Apply `msg` to `app`; returns what must happen outside.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut fx = Vec::new();
    let before = (app.gen, app.current_target(), app.view.expanded.clone());
    match msg {
        Msg::Key(k) => on_key(app, k, &mut fx),
        Msg::Mouse(m) => panels::on_mouse(app, m),
        Msg::Resize(w, h) => {
            app.size = (w, h);
            // Status is a Tab stop only in the compact layout: grown back
            // to the full one, the focus goes to the panel beside it, which
            // Tab reaches (rather than staying where Tab never comes).
            if !layout::compact(app.size) && !Panel::FULL.contains(&app.focus()) {
                app.view.focus = Some(Panel::Agreement);
            }
            app.dirty = true;
        }
        Msg::Signal(sig) => {
            // Leave now: a running merge is cancelled (its partial folder
            // removed) by the event loop before the process exits.
            fx.push(Effect::CancelMerge);
            if app.extract_running() {
                fx.push(Effect::CancelExtract);
            }
            app.exit = Some(Exit::Signal(sig));
        }
        Msg::Analysis {
            key,
            target,
            result,
        } => {
            // A result for other inputs than the current ones is kept only
            // while nothing current is held, and shows as stale; it never
            // replaces a current one.
            let now = app.stats_key(&target);
            let have_current = app.stats.get(&target).is_some_and(|h| h.key == now);
            if key == now || !have_current {
                app.stats.insert(target, Held { key, result });
                app.dirty = true;
            }
        }
        Msg::Preview { key, target, stats } => {
            if key == app.stats_key(&target) {
                app.previews.insert(target, (key, stats));
                app.dirty = true;
            }
        }
        Msg::Merge {
            ticket,
            event,
            elapsed,
        } => on_merge_event(app, ticket, event, elapsed),
        Msg::MergeDone { ticket, result } => merge_done(app, ticket, result, &mut fx),
        Msg::Extract {
            ticket,
            event,
            elapsed,
        } => super::lora::on_event(app, ticket, event, elapsed),
        Msg::ExtractDone { ticket, result } => super::lora::done(app, ticket, result),
        Msg::Opened {
            ticket,
            path,
            result,
        } => {
            if !latest_open(app, ticket) {
                return fx;
            }
            match result {
                Ok(l) => opened(app, l),
                Err(e) => reopen(app, Purpose::Open, &path, &e),
            }
        }
        Msg::DocumentOpened {
            ticket,
            index,
            result,
        } => {
            if !latest_open(app, ticket) {
                return fx;
            }
            match result {
                Ok(l) => super::multi::opened_document(app, index, l),
                Err(e) => app.say(Level::Error, format!("cannot show the document: {e}")),
            }
        }
        Msg::ModelAdded {
            ticket,
            path,
            result,
        } => {
            if app.tickets.add != Some(ticket) {
                return fx;
            }
            app.tickets.add = None;
            match result {
                Ok((info, layers)) => panels::models::added(app, info, layers),
                Err(e) => reopen(app, Purpose::AddModel, &path, &e),
            }
        }
        Msg::Saved {
            ticket,
            path,
            result,
        } => {
            if app.tickets.save != Some(ticket) {
                return fx;
            }
            app.tickets.save = None;
            let then = app.after_save.take();
            match result {
                Ok(s) => {
                    app.say(Level::Info, format!("recipe saved to {}", path.display()));
                    app.sample = false;
                    if app.multi.is_some() {
                        super::multi::saved(app, &path, &s.text);
                    } else {
                        app.saved = Some(s.recipe);
                    }
                    app.recipe_path = Some(path);
                    app.saved_text = Some(s.text);
                    app.dirty = true;
                    if let Some(t) = then {
                        if t == Then::Quit {
                            // Said again on the terminal: the screen that
                            // showed it is about to go.
                            let m = app.message.as_ref().map(|(_, m)| m.clone());
                            app.farewell.extend(m);
                        }
                        proceed(app, t, &mut fx);
                    }
                }
                Err(JobError::ChangedOnDisk) => {
                    app.modal = Some(Modal::Confirm(Confirm::Overwrite {
                        path,
                        why: Overwrite::ChangedOnDisk,
                        then,
                    }));
                }
                Err(e) => reopen(app, Purpose::Save { then }, &path, &e),
            }
        }
        Msg::Checked { gen, problem } => {
            if gen == app.gen {
                if let Some(p) = problem {
                    app.problems.push(Issue {
                        spots: vec![Spot::Models],
                        text: p,
                    });
                }
            }
        }
        Msg::Accuracy { out, result } => {
            // Only for the output being evaluated now (a rerun supersedes).
            if app.accuracy == AccuracyState::Running(out) {
                app.accuracy = result.map_or(AccuracyState::None, AccuracyState::Done);
                app.dirty = true;
            }
        }
    }
    let after = (app.gen, app.current_target(), app.view.expanded.clone());
    if before != after {
        if let Some(e) = analysis_request(app) {
            fx.push(e);
        }
    }
    if before.0 != app.gen {
        fx.extend(check_request(app));
    }
    // Whatever happened may show: drawing is rate-limited by the loop.
    app.dirty = true;
    fx
}

/// Whether `ticket` is the latest opening's (which is then no longer
/// waited for); an older one's result is dropped.
fn latest_open(app: &mut App, ticket: Ticket) -> bool {
    let latest = app.tickets.open == Some(ticket);
    if latest {
        app.tickets.open = None;
    }
    latest
}

/// Plan the recipe against its models, once the recipe itself is sound.
pub fn check_request(app: &App) -> Option<Effect> {
    (app.problems.is_empty() && !app.doc.slots.is_empty()).then(|| Effect::Check {
        gen: app.gen,
        recipe: app.doc.to_recipe(),
    })
}

/// Install an opened recipe and say where it came from.
pub fn opened(app: &mut App, l: Loaded) {
    app.load(&l.recipe, &l.infos, l.layers);
    // The end of a merge of the file closed (its accuracy table, its
    // folder) is not this recipe's: Status starts over. A merge still
    // running stays shown, named as an earlier recipe's.
    if !app.merge_running() {
        app.merge = MergeState::Idle;
    }
    app.extracted = None;
    app.sample = false;
    app.recipe_path = l.path.clone();
    app.saved_text = l.text;
    app.multi = l
        .multi
        .map(|m| super::multi::MultiDoc::new(m, l.document.unwrap_or(0)));
    // Changes kept from an ended session: they belong to the file they
    // were made to, which `s` saves again; until then they are unsaved.
    // The kept copy is renamed `.opened`, so it is offered no more.
    let from = match (&l.path, l.recovered) {
        (Some(p), Some(f)) => Some((p.clone(), f)),
        _ => None,
    };
    if let Some((kept, from)) = from {
        let mut done = kept.clone().into_os_string();
        done.push(".opened");
        let _ = std::fs::rename(&kept, &done);
        app.saved_text = std::fs::read_to_string(&from).ok();
        app.recipe_path = Some(from.clone());
        app.saved = None;
        app.say(
            Level::Info,
            format!(
                "opened changes to {} kept from an ended session · s saves them",
                from.file_name().map_or_else(
                    || from.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
        );
        return;
    }
    let what = l
        .path
        .map_or_else(|| "models".to_string(), |p| p.display().to_string());
    match &app.multi {
        Some(m) => {
            let msg = format!(
                "opened {what}: {} documents, showing `{}` (d picks another)",
                m.file.documents.len(),
                m.file.label(m.current)
            );
            app.say(Level::Info, msg);
        }
        None => app.say(Level::Info, format!("opened {what}")),
    }
}

/// The statistics request for everything missing or stale, if any.
pub fn analysis_request(app: &App) -> Option<Effect> {
    if app.analysis_blocked().is_some() {
        return None;
    }
    let targets = app.wanted_targets();
    let reference = app.reference()?.path.clone();
    (!targets.is_empty()).then(|| Effect::Analyze {
        recipe: app.doc.to_recipe(),
        reference,
        targets,
    })
}

/// The requests to send at startup (or after loading): statistics and
/// the check against the models.
pub fn initial_analysis(app: &App) -> Option<Effect> {
    analysis_request(app)
}

/// Everything to ask for once a recipe is installed.
pub fn initial_effects(app: &App) -> Vec<Effect> {
    analysis_request(app)
        .into_iter()
        .chain(check_request(app))
        .collect()
}

/// A prompt whose job failed opens again, with its text and the error.
fn reopen(app: &mut App, purpose: Purpose, path: &Path, e: &JobError) {
    let mut p = prompt_for(app, purpose, path.display().to_string());
    p.input.error = Some(e.to_string());
    app.modal = Some(Modal::Prompt(p));
    app.dirty = true;
}

fn on_merge_event(app: &mut App, ticket: Ticket, event: Event, elapsed: Duration) {
    let MergeState::Running {
        ticket: t,
        progress: p,
        ..
    } = &mut app.merge
    else {
        return;
    };
    if *t != ticket {
        return;
    }
    p.elapsed = elapsed;
    match event {
        Event::Started {
            tensors,
            bytes_total,
        } => {
            p.tensors = tensors;
            p.bytes_total = bytes_total;
        }
        Event::Progress {
            tensor,
            tensors_done,
            bytes_done,
            bytes_total,
        } => {
            p.current = tensor;
            p.tensors_done = tensors_done;
            p.bytes_done = bytes_done;
            p.bytes_total = bytes_total;
        }
        // The worker's final result (MergeDone) carries the summary too; the
        // event only marks the bar full.
        Event::Finished(s) => {
            p.tensors_done = s.tensors;
            p.bytes_done = p.bytes_total;
        }
    }
    app.dirty = true;
}

fn merge_done(
    app: &mut App,
    ticket: Ticket,
    result: Result<Summary, JobError>,
    fx: &mut Vec<Effect>,
) {
    let MergeState::Running {
        ticket: t,
        out,
        recipe,
        ..
    } = &app.merge
    else {
        return;
    };
    if *t != ticket {
        return;
    }
    let (out, recipe) = (out.clone(), recipe.clone());
    app.merge = match result {
        Ok(s) => {
            app.say(Level::Info, format!("merge written to {}", s.out.display()));
            app.accuracy = AccuracyState::Running(s.out.clone());
            fx.push(Effect::Evaluate {
                out: s.out.clone(),
                inputs: recipe
                    .models
                    .iter()
                    .map(|m| (m.path.clone(), display_name(&m.path)))
                    .collect(),
            });
            MergeState::Done { summary: s, recipe }
        }
        Err(JobError::Cancelled) => {
            app.say(
                Level::Info,
                format!("merge cancelled; nothing was written to {}", out.display()),
            );
            MergeState::Cancelled { out, recipe }
        }
        Err(e) => {
            app.say(Level::Error, format!("merge failed: {e}"));
            MergeState::Failed {
                out,
                error: e.to_string(),
                recipe,
            }
        }
    };
    let ok = matches!(app.merge, MergeState::Done { .. });
    super::multi::merge_ended(app, ok, fx);
    app.dirty = true;
}

fn on_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    if k.kind == KeyEventKind::Release {
        return;
    }
    app.dirty = true;
    match app.modal.take() {
        Some(Modal::Help(top)) => {
            // Arrows, pages (Space too, as in a pager) and the ends
            // scroll; any other key closes (`q` too, rather than quitting).
            use ratatui::crossterm::event::KeyCode as K;
            let screen = ratatui::layout::Rect::new(0, 0, app.size.0, app.size.1);
            let last = dialog::help_max_scroll(app, screen);
            let to = match k.code {
                K::Down | K::Char('j') => Some(top + 1),
                K::PageDown | K::Char(' ') => Some(top + 10),
                K::Up | K::Char('k') => Some(top.saturating_sub(1)),
                K::PageUp => Some(top.saturating_sub(10)),
                K::Home | K::Char('g') => Some(0),
                K::End | K::Char('G') => Some(last),
                _ => None,
            };
            app.modal = to.map(|t| Modal::Help(t.min(last)));
            return;
        }
        Some(Modal::Problems) => return,
        Some(Modal::Documents(cursor)) => {
            super::multi::on_picker_key(app, cursor, k, fx);
            return;
        }
        Some(Modal::Confirm(c)) => {
            dialog::on_key(app, c, k, fx);
            return;
        }
        Some(Modal::Prompt(p)) => {
            on_prompt_key(app, p, k, fx);
            return;
        }
        None => {}
    }
    let Some(a) = action(&k) else {
        return;
    };
    app.message = None;
    match a {
        Action::Help => app.modal = Some(Modal::Help(0)),
        Action::Quit => leave(app, Then::Quit, fx),
        Action::Open => leave(app, Then::Open, fx),
        Action::NextPanel | Action::PrevPanel => {
            let ring: &[Panel] = if layout::compact(app.size) {
                &Panel::COMPACT
            } else {
                &Panel::FULL
            };
            let i = ring.iter().position(|p| *p == app.focus()).unwrap_or(0);
            let n = ring.len();
            let j = if a == Action::NextPanel {
                (i + 1) % n
            } else {
                (i + n - 1) % n
            };
            app.view.focus = Some(ring[j]);
        }
        Action::Undo => undo(app, true),
        Action::Redo => undo(app, false),
        Action::NextMethod => panels::params::switch_method(app, app.doc.method.next()),
        Action::Run => run(app),
        Action::Cancel => {
            if let Some(j) = &mut app.extract {
                j.cancelling = true;
                fx.push(Effect::CancelExtract);
                app.say(Level::Info, "cancelling the LoRA extraction...");
            } else if let MergeState::Running { cancelling, .. } = &mut app.merge {
                *cancelling = true;
                fx.push(Effect::CancelMerge);
                app.say(Level::Info, "cancelling...");
            } else {
                app.say(Level::Info, "no merge or extraction is running");
            }
        }
        Action::Save => open_save(app, None),
        Action::ExtractLora => super::lora::ask_rank(app),
        Action::Documents => super::multi::open_picker(app),
        Action::Redraw => fx.push(Effect::Repaint),
        Action::AddModel => {
            let d = app
                .doc
                .slots
                .last()
                .and_then(|s| s.info.path.parent())
                .map_or_else(
                    || format!("{}/", app.work_dir.display()),
                    |p| format!("{}/", p.display()),
                );
            app.modal = Some(Modal::Prompt(prompt_for(app, Purpose::AddModel, d)));
        }
        other => panels::on_action(app, other),
    }
}

fn undo(app: &mut App, back: bool) {
    let now = app.doc.clone();
    let r = if back {
        app.history.undo(now)
    } else {
        app.history.redo(now)
    };
    match r {
        Ok((doc, what)) => {
            // What is there now, named, so the message never reads as
            // the value just undone (`undid: set lambda 1e39`).
            let changes = now_ref(&app.doc, &doc, back);
            app.doc = doc;
            app.refresh();
            let (n_undo, n_redo) = (app.history.can_undo(), app.history.can_redo());
            // A value: what it is now; another edit: what was undone.
            let said = match (changes, back) {
                (Some(now), true) => format!("undo: {now}"),
                (Some(now), false) => format!("redo: {now}"),
                (None, true) => format!("undid: {what}"),
                (None, false) => format!("redid: {what}"),
            };
            app.say(
                Level::Info,
                if back {
                    format!("{said} · {n_undo} more · Ctrl-R redoes")
                } else {
                    format!("{said} · {n_redo} more")
                },
            );
        }
        Err(now) => {
            app.doc = now;
            app.say(
                Level::Info,
                if back {
                    "nothing to undo"
                } else {
                    "nothing to redo"
                },
            );
        }
    }
}

/// What an undo (`back`) or redo from `before` to `after` leaves, as
/// `lambda back to 1e30` or `lambda is 1e30` (the first value changed, and
/// how many more), or None for edits that are not of values (models added
/// or removed).
fn now_ref(before: &super::doc::Doc, after: &super::doc::Doc, back: bool) -> Option<String> {
    let changes = before.value_changes(after);
    let first = changes.first()?;
    let is = if back { "back to" } else { "is" };
    let now = if first.label == "method" {
        format!("method {is} {}", after.method.name())
    } else {
        match &first.now {
            Some(v) => format!("{} {is} {}", first.label, super::doc::fmt_value(v)),
            None => format!("{} unset", first.label),
        }
    };
    Some(match changes.len() - 1 {
        0 => now,
        n => format!("{now} (and {n} more)"),
    })
}

/// `q`, Ctrl-C, `o`: ask first when there are unsaved changes or a merge
/// is running.
fn leave(app: &mut App, then: Then, fx: &mut Vec<Effect>) {
    let running = then == Then::Quit && (app.merge_running() || app.extract_running());
    if app.modified() || running {
        app.modal = Some(Modal::Confirm(Confirm::Leave { then }));
    } else {
        proceed(app, then, fx);
    }
}

/// Carry on with what the user asked once changes are dealt with.
pub fn proceed(app: &mut App, then: Then, fx: &mut Vec<Effect>) {
    match then {
        Then::Quit => {
            if app.merge_running() {
                fx.push(Effect::CancelMerge);
            }
            if app.extract_running() {
                fx.push(Effect::CancelExtract);
            }
            app.exit = Some(Exit::User);
        }
        Then::Open => {
            // A recipe kept from an ended session first, once.
            let d = app
                .recovered
                .take()
                .or_else(|| app.recipe_path.clone())
                .unwrap_or_else(|| app.data_dir.join("recipes").join(""));
            app.modal = Some(Modal::Prompt(prompt_for(
                app,
                Purpose::Open,
                d.display().to_string(),
            )));
        }
    }
}

/// `s`: the save prompt, showing the path it will write.
pub fn open_save(app: &mut App, then: Option<Then>) {
    let fresh = app.data_dir.join("recipes").join(format!(
        "{}-{}.toml",
        app.family(),
        app.doc.method.name()
    ));
    // The bundled sample is never offered to be written over.
    let d = match &app.recipe_path {
        Some(p) if !app.sample => p.clone(),
        _ => fresh,
    };
    app.modal = Some(Modal::Prompt(prompt_for(
        app,
        Purpose::Save { then },
        d.display().to_string(),
    )));
}

/// A prompt for a purpose, with its title and hint.
pub fn prompt_for(app: &App, purpose: Purpose, text: String) -> Prompt {
    let loaded: Vec<PathBuf> = app.doc.slots.iter().map(|s| s.info.path.clone()).collect();
    let input = match &purpose {
        Purpose::OutputFolder => {
            super::input::TextInput::path("Run merge into folder", text, Vec::new())
                .with_hint("Enter merges into this new folder")
        }
        Purpose::Save { .. } => super::input::TextInput::path(
            match &app.multi {
                Some(_) => "Save every document to (.yml, in the file's folder)",
                None => "Save recipe to (.toml, or .yml for mergekit)",
            },
            text,
            Vec::new(),
        )
        .with_hint("Enter writes this file"),
        Purpose::Open => {
            super::input::TextInput::path("Open recipe (.toml, .yml)", text, Vec::new())
                .with_hint("Enter opens it")
        }
        Purpose::AddModel => super::input::TextInput::path(
            "Add model (folder, .safetensors, or hub org/name)",
            text,
            loaded,
        )
        .with_hint("Enter adds it")
        .with_hub_names(),
        Purpose::ExtractRank { model } => super::input::TextInput::new(
            format!(
                "LoRA of {}: rank, then any extract-lora options",
                display_name(model)
            ),
            text,
        )
        .with_hint("e.g. 64 --embed-lora -e lm_head · Enter asks for the folder"),
        Purpose::ExtractOut { opts, .. } => super::input::TextInput::path(
            format!("Write the rank-{} LoRA into folder", opts.max_rank),
            text,
            Vec::new(),
        )
        .with_hint("Enter extracts into this new folder"),
        Purpose::Value { row, scopes } => {
            let what = app.row_label(row);
            let at = match scopes.as_deref() {
                None => "all layers".to_string(),
                Some([one]) => one.to_string(),
                Some(v) => format!("{} layers", v.len()),
            };
            // Name filters cannot be typed back: a value replaces them.
            let filtered = matches!(
                app.row_value(row, scopes.as_ref().and_then(|v| v.first().copied()))
                    .value,
                Some(crate::recipe::Value::Filtered(_))
            );
            // Only a float parameter of the layers takes a gradient (not
            // the seed, not a whole number such as `depth`).
            let gradient = app
                .param_spec(row)
                .is_some_and(|p| p.kind == crate::merge::ParamKind::Float);
            let hint = if filtered {
                "Enter sets it for every tensor (replacing the name filters)"
            } else if gradient {
                "Enter sets it ([a, b] for a gradient)"
            } else {
                "Enter sets it"
            };
            super::input::TextInput::new(format!("New value: {what} ({at})"), text).with_hint(hint)
        }
    };
    Prompt { input, purpose }
}

fn on_prompt_key(app: &mut App, mut p: Prompt, k: KeyEvent, fx: &mut Vec<Effect>) {
    match p.input.on_key(k) {
        InputEvent::Cancel => app.say(
            Level::Info,
            match p.purpose {
                Purpose::Save { .. } => "cancelled; nothing saved",
                _ => "cancelled",
            },
        ),
        InputEvent::Submit => submit(app, p, fx),
        InputEvent::Edited => {
            // Value prompts check as you type, so an error goes once fixed.
            if let Purpose::Value { row, .. } = &p.purpose {
                if !p.input.text.trim().is_empty() {
                    p.input.error = panels::params::parse_row(app, row, &p.input.text).err();
                }
            }
            app.modal = Some(Modal::Prompt(p));
        }
    }
}

fn submit(app: &mut App, mut p: Prompt, fx: &mut Vec<Effect>) {
    let text = p.input.text.trim().to_string();
    let fail = |app: &mut App, mut p: Prompt, e: String| {
        p.input.error = Some(e);
        app.modal = Some(Modal::Prompt(p));
    };
    if text.is_empty() {
        return fail(app, p, "type something first (Esc cancels)".into());
    }
    let path = p.input.path_value();
    match p.purpose.clone() {
        Purpose::Value { row, scopes } => {
            match panels::params::set_typed(app, &row, scopes.as_deref(), &text) {
                Ok(()) => {}
                Err(e) => fail(app, p, e),
            }
        }
        Purpose::ExtractRank { model } => {
            if let Err(e) = super::lora::submit_rank(app, model, &text) {
                fail(app, p, e);
            }
        }
        Purpose::ExtractOut { model, opts } => {
            if let Err(e) = super::lora::submit_out(app, model, *opts, path, fx) {
                fail(app, p, e);
            }
        }
        Purpose::OutputFolder => {
            let inputs: Vec<PathBuf> = app.doc.slots.iter().map(|s| s.info.path.clone()).collect();
            // A named document is rebuilt over its earlier build in the
            // working folder: checked now by the engine's own rule for
            // replacing an output (only an empty folder or smelt's output,
            // never inside an input), which the merge applies again.
            let own = super::multi::is_own_output(app, &path);
            // An earlier smelt output (or an empty folder) may be replaced,
            // as `smelt merge --force` does: asked first.
            if !own
                && path.exists()
                && crate::model::check_destination(&path, &inputs, true).is_ok()
            {
                let empty = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
                app.modal = Some(Modal::Confirm(Confirm::Replace { path, empty }));
                return;
            }
            let checked = if own {
                crate::model::check_destination(&path, &inputs, true)
                    .map(|_| ())
                    .map_err(|e| format!("cannot build over it: {e}"))
            } else {
                check_output(&path, &inputs)
            };
            if let Err(e) = checked {
                return fail(app, p, e);
            }
            if own {
                if let Some(w) = path.parent() {
                    if let Err(e) = std::fs::create_dir_all(w) {
                        return fail(
                            app,
                            p,
                            format!(
                                "cannot create {}: {}",
                                w.display(),
                                crate::fsutil::reason(&e)
                            ),
                        );
                    }
                }
            }
            merge_into(app, path, own, fx);
        }
        Purpose::Save { then } => {
            if let Err(e) = multi_save_path(app, &path) {
                return fail(app, p, e);
            }
            let inputs: Vec<PathBuf> = app.doc.slots.iter().map(|s| s.info.path.clone()).collect();
            if let Err(e) = inside_model(&path, &inputs, "save the recipe somewhere else") {
                return fail(app, p, e);
            }
            if path.is_dir() {
                return fail(
                    app,
                    p,
                    format!("{} is a folder; name a file", path.display()),
                );
            }
            // The data folder is made when needed; any other folder must
            // exist (a typo should not create folders).
            let parent = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() && !parent.starts_with(&app.data_dir) {
                return fail(
                    app,
                    p,
                    format!(
                        "cannot save there: the folder {} does not exist",
                        parent.display()
                    ),
                );
            }
            let over_opened = app.recipe_path.as_deref() == Some(path.as_path());
            if path.exists() && !over_opened {
                app.modal = Some(Modal::Confirm(Confirm::Overwrite {
                    path,
                    why: Overwrite::Exists,
                    then,
                }));
                return;
            }
            // YAML is written afresh: say that the file's comments go
            // (a multi-document file's: those of the edited documents).
            let commented = match &app.multi {
                // (Comments heading a document stay: see `with_documents`.)
                Some(m) => super::multi::edits(app).iter().any(|(k, _)| {
                    let text = m.file.document_text(*k);
                    crate::recipe::multi::split_heading(&text)
                        .1
                        .lines()
                        .any(|l| l.trim_start().starts_with('#'))
                }),
                None => app
                    .saved_text
                    .as_deref()
                    .is_some_and(|t| t.lines().any(|l| l.trim_start().starts_with('#'))),
            };
            if over_opened && is_yaml(&path) && commented {
                app.modal = Some(Modal::Confirm(Confirm::Overwrite {
                    path,
                    why: Overwrite::RewritesYaml,
                    then,
                }));
                return;
            }
            save(app, path, then, false, fx);
        }
        Purpose::Open => {
            if path.is_dir() {
                let what = if crate::model::Model::open(&path).is_ok() {
                    "a model folder, not a recipe (a adds a model)"
                } else {
                    "a folder, not a recipe file (Tab completes names)"
                };
                return fail(app, p, format!("{}: {what}", path.display()));
            }
            if !path.is_file() {
                return fail(app, p, format!("{}: no such recipe file", path.display()));
            }
            let ticket = app.tickets.issue();
            app.tickets.open = Some(ticket);
            p.input.error = None;
            fx.push(Effect::Open {
                ticket,
                path,
                data_dir: app.data_dir.clone(),
            });
        }
        Purpose::AddModel => {
            // A hub name is added from the Hugging Face cache; one not
            // there is refused with the command that fetches it (the
            // workbench does not download). `model+adapter` (a LoRA): both
            // halves must be there, each a path or a cached hub name.
            if !path.exists() {
                use crate::model::source;
                let text = path.to_string_lossy();
                let present = |s: &str| {
                    Path::new(s).exists()
                        || source::hub_name_in(None, s)
                            .is_some_and(|n| source::cached(&n).is_some())
                };
                let adapted = crate::model::lora::split_reference(&text)
                    .is_some_and(|(m, a)| present(m) && present(a));
                let msg = match source::hub_name_in(None, &text) {
                    _ if adapted => None,
                    Some(name) if source::cached(&name).is_some() => None,
                    Some(name) => Some(source::not_cached(&name).to_string()),
                    None => Some(format!("{}: no such file or folder", path.display())),
                };
                if let Some(msg) = msg {
                    return fail(app, p, msg);
                }
            }
            if let Some(s) = app
                .doc
                .slots
                .iter()
                .find(|s| same_model(&s.info.path, &path))
            {
                return fail(
                    app,
                    p,
                    format!("{} is already loaded (as {})", path.display(), s.info.name),
                );
            }
            let fits = app
                .reference()
                .or_else(|| app.doc.slots.first().map(|s| &s.info))
                .map(|i| i.path.clone());
            let ticket = app.tickets.issue();
            app.tickets.add = Some(ticket);
            fx.push(Effect::AddModel { ticket, path, fits });
        }
    }
}

/// Start writing the recipe to `path`.
pub fn save(app: &mut App, path: PathBuf, then: Option<Then>, force: bool, fx: &mut Vec<Effect>) {
    let over = (app.recipe_path.as_deref() == Some(path.as_path()))
        .then(|| app.saved_text.clone())
        .flatten();
    let ticket = app.tickets.issue();
    app.tickets.save = Some(ticket);
    app.after_save = then;
    app.say(Level::Info, format!("saving {}...", path.display()));
    fx.push(Effect::Save {
        ticket,
        request: SaveRequest {
            recipe: app.doc.to_recipe(),
            path,
            over,
            force,
            n_layers: app.doc.n_layers(),
            multi: app.multi.as_ref().map(|m| MultiSave {
                file: m.file.clone(),
                work: m.work.clone(),
                edits: super::multi::edits(app),
            }),
        },
    });
}

/// Why a multi-document file cannot be saved to `path`: it is saved
/// whole, as YAML, in its own folder (the documents' relative paths stay
/// as written).
fn multi_save_path(app: &App, path: &Path) -> Result<(), String> {
    let Some(m) = &app.multi else {
        return Ok(());
    };
    if !is_yaml(path) {
        return Err(format!(
            "{} documents are saved together, as mergekit YAML: name a .yml file",
            m.file.documents.len()
        ));
    }
    let folder = |p: &Path| {
        std::fs::canonicalize(crate::recipe::folder_of(p))
            .unwrap_or_else(|_| crate::recipe::folder_of(p).to_path_buf())
    };
    if folder(path) != folder(&m.file.path) {
        return Err(format!(
            "a multi-document file is saved in its own folder ({}): its documents' relative paths stay as written",
            crate::recipe::folder_of(&m.file.path).display()
        ));
    }
    Ok(())
}

/// Merge the recipe shown into `path` (`force`: replacing an earlier
/// smelt output there).
pub fn merge_into(app: &mut App, path: PathBuf, force: bool, fx: &mut Vec<Effect>) {
    let recipe = match &app.multi {
        Some(m) => super::multi::run_recipe(app, m.current),
        None => app.doc.to_recipe(),
    };
    app.say(Level::Info, format!("merging into {}", path.display()));
    start_merge(app, recipe, path, force, fx);
}

/// Start a merge of `recipe` into `out` (`force`: replacing an earlier
/// smelt output there) as the one background merge.
pub fn start_merge(app: &mut App, recipe: Recipe, out: PathBuf, force: bool, fx: &mut Vec<Effect>) {
    let ticket = app.tickets.issue();
    app.tickets.merge = Some(ticket);
    app.extracted = None;
    app.merge = MergeState::Running {
        ticket,
        out: out.clone(),
        recipe: recipe.clone(),
        progress: Progress::default(),
        cancelling: false,
    };
    app.accuracy = AccuracyState::None;
    let origin = super::multi::origin(app, &out);
    fx.push(Effect::StartMerge {
        ticket,
        recipe,
        out,
        force,
        origin,
    });
}

/// Whether two paths name the same model (after resolving links).
pub fn same_model(a: &Path, b: &Path) -> bool {
    let c = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    c(a) == c(b)
}

/// Why a merge cannot go into `out`, named so the user can act: it
/// exists, its parent does not, or it lies inside one of the `inputs`.
pub fn check_output(out: &Path, inputs: &[PathBuf]) -> Result<(), String> {
    check_new_folder(out, inputs, "merge outputs go elsewhere")
}

/// Why a new output folder `out` cannot be made (the rules of
/// [`check_output`]); `what` ends the message when it lies inside one of
/// the `inputs`.
pub fn check_new_folder(out: &Path, inputs: &[PathBuf], what: &str) -> Result<(), String> {
    if out.exists() {
        return Err(format!("{} exists; pick a new folder", out.display()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "cannot create {}: its parent folder {} does not exist",
            out.display(),
            parent.display()
        ));
    }
    inside_model(out, inputs, what)
}

/// Refuse `path` inside the folder of one of `inputs` (a model named as a
/// file protects its folder too): writing there could replace the model
/// itself. The rule is the engine's, [`crate::model::inside_input`].
pub fn inside_model(path: &Path, inputs: &[PathBuf], what: &str) -> Result<(), String> {
    match crate::model::inside_input(path, inputs) {
        Ok(None) => Ok(()),
        Ok(Some(m)) => Err(format!(
            "{} lies inside the folder of the model {}: {what}",
            crate::text::path(path),
            crate::text::path(m)
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `r`: refuse with the list of problems, or ask for the output folder.
fn run(app: &mut App) {
    if app.merge_running() {
        app.say(Level::Warn, "a merge is already running (c cancels it)");
    } else if app.extract_running() {
        app.say(
            Level::Warn,
            "a LoRA extraction is running: wait for it, or c cancels it",
        );
    } else if !app.problems.is_empty() {
        app.modal = Some(Modal::Problems);
    } else {
        let d = super::multi::default_out(app).unwrap_or_else(|| default_out(app));
        let mut p = prompt_for(app, Purpose::OutputFolder, d.display().to_string());
        if super::multi::is_own_output(app, &d) && d.exists() {
            p.input = p
                .input
                .with_hint("Enter builds this document again over its earlier build");
        }
        app.modal = Some(Modal::Prompt(p));
    }
}

/// `<work_dir>/<family>-<method>`, numbered if that exists.
pub fn default_out(app: &App) -> PathBuf {
    numbered(
        &app.work_dir,
        &format!("{}-{}", app.family(), app.doc.method.name()),
    )
}

/// `dir/stem`, or `dir/stem-2`, `-3`... the first that does not exist.
pub fn numbered(dir: &Path, stem: &str) -> PathBuf {
    let mut p = dir.join(stem);
    let mut i = 2;
    while p.exists() {
        p = dir.join(format!("{stem}-{i}"));
        i += 1;
    }
    p
}

/// Whether the path looks like a recipe for mergekit (YAML) rather than TOML.
pub fn is_yaml(p: &Path) -> bool {
    crate::recipe::is_yaml_path(p)
}
