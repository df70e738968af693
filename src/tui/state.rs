//! The workbench's state: plain data, no terminal, no engine handles.
//!
//! [`App`] holds the edited recipe ([`Doc`]) with its undo history, the
//! typed view state of each panel, the statistics received, the merge, and
//! the open dialog. Everything the views draw comes from here, and it
//! changes only through [`super::update::update`], so the whole UI can be
//! driven by synthetic events in tests.

pub use super::doc::*;
use super::history::History;
use super::input::TextInput;
use crate::analysis::Stats;
pub use crate::analysis::{Report, Skipped, Target};
use crate::engine::Summary;
use crate::eval::EvalReport;
use crate::merge::{BaseRule, ParamKind, ParamSpec};
use crate::model::Group;
use crate::recipe::{Recipe, Value};
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

/// Why a background job failed.
#[derive(Clone, Debug, PartialEq)]
pub enum JobError {
    /// The input is at fault (a file, a recipe, a model): the message says
    /// which and why.
    Input(String),
    /// smelt is at fault (a thread could not start, an internal error).
    Internal(String),
    /// The user cancelled it.
    Cancelled,
    /// The file to save over changed on disk since it was read.
    ChangedOnDisk,
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Input(m) => f.write_str(m),
            JobError::Internal(m) => write!(f, "internal error: {m}"),
            JobError::Cancelled => f.write_str("cancelled"),
            JobError::ChangedOnDisk => f.write_str("the file changed on disk since it was read"),
        }
    }
}

/// The panels, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    /// The models of the recipe, base first.
    Models,
    /// Layer groups and their tensors, with their conflict gauges.
    Layers,
    /// The method and its parameters at the selected layers.
    Params,
    /// Sign agreement and the other statistics of the selection.
    Agreement,
    /// Focusable only in the compact layout (in the full one it is always
    /// on screen).
    Status,
}

impl Panel {
    /// Tab order in the full layout.
    pub const FULL: [Panel; 4] = [
        Panel::Models,
        Panel::Layers,
        Panel::Params,
        Panel::Agreement,
    ];
    /// Tab order in the compact layout (status too).
    pub const COMPACT: [Panel; 5] = [
        Panel::Models,
        Panel::Layers,
        Panel::Params,
        Panel::Agreement,
        Panel::Status,
    ];
    /// The panel's title.
    pub fn name(self) -> &'static str {
        match self {
            Panel::Models => "Models",
            Panel::Layers => "Layers",
            Panel::Params => "Parameters",
            Panel::Agreement => "Sign agreement",
            Panel::Status => "Status",
        }
    }
}

/// One row of the Layers panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerLine {
    /// The whole model: edits go to the recipe's own values.
    All,
    /// A layer group, by index into the catalogue's groups.
    Group(usize),
    /// A tensor: its group, then its index in the group.
    Tensor(usize, usize),
}

/// One row of the Parameters panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamRow {
    /// The merge method.
    Method,
    /// The recipe's `seed` (random methods, or wherever one is set).
    Seed,
    /// A method-wide value, or a per-model name written recipe-wide (it
    /// then applies to every model).
    Global(String),
    /// One model's value.
    Model {
        /// The model's position in the recipe.
        slot: usize,
        /// The parameter's name.
        name: String,
    },
    /// The output dtype (`dtype`).
    OutDtype,
    /// The calibration data (zipit and permute).
    Calibration,
    /// The recipe's slices (read from its file; removable, not editable).
    Slices,
}

/// The typed view state of every panel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// The focused panel (`None`: the default, Layers).
    pub focus: Option<Panel>,
    /// Selected row of the Models panel.
    pub model_cursor: usize,
    /// Selected row of the Layers panel.
    pub layer_cursor: usize,
    /// Selected row of the Parameters panel.
    pub param_cursor: usize,
    /// First layer of a range selection (`v`), by layer index.
    pub range_anchor: Option<usize>,
    /// Layer groups whose tensors are listed.
    pub expanded: BTreeSet<usize>,
    /// Lines of the Sign agreement panel scrolled past (`↑`/`↓` there).
    pub agreement_scroll: usize,
}

/// What statistics were computed from: the method, the models, the seed
/// and every parameter value of every tensor of the target (hashed). A
/// result whose key differs from the target's current one is stale; going
/// back to earlier values makes earlier results current again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatsKey(pub u64);

/// Statistics held for a target, with the key they were computed under.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// What they were computed from.
    pub key: StatsKey,
    /// The statistics, or why there are none.
    pub result: Result<Report, JobError>,
}

/// A background job's ticket: results carry it back, and a result whose
/// ticket is not the latest of its kind is dropped (latest wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ticket(pub u64);

/// The latest ticket of each job kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tickets {
    /// The last ticket issued.
    pub next: u64,
    /// Latest recipe opening.
    pub open: Option<Ticket>,
    /// Latest model added.
    pub add: Option<Ticket>,
    /// Latest save.
    pub save: Option<Ticket>,
    /// Latest merge.
    pub merge: Option<Ticket>,
    /// Latest LoRA extraction.
    pub extract: Option<Ticket>,
}

impl Tickets {
    /// A new ticket, later than every one before.
    pub fn issue(&mut self) -> Ticket {
        self.next += 1;
        Ticket(self.next)
    }
}

/// Merge progress as the engine reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Output tensors in all.
    pub tensors: usize,
    /// Output tensors written.
    pub tensors_done: usize,
    /// Input bytes read.
    pub bytes_done: u64,
    /// Input bytes to read (grows with passes; see `engine::Event`).
    pub bytes_total: u64,
    /// A tensor being worked on.
    pub current: String,
    /// Time since the merge started.
    pub elapsed: Duration,
}

impl Progress {
    /// The share of the work done, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.bytes_total > 0 {
            (self.bytes_done as f64 / self.bytes_total as f64).min(1.0)
        } else {
            0.0
        }
    }
}

/// The background merge, as the status panel shows it. Every state after
/// `Idle` keeps the recipe that produced it, so a result stays labelled
/// with its recipe once the recipe changes.
#[derive(Clone, Debug)]
pub enum MergeState {
    /// No merge started yet.
    Idle,
    /// A merge is running.
    Running {
        /// Its job's ticket.
        ticket: Ticket,
        /// Its output folder.
        out: PathBuf,
        /// The recipe it runs.
        recipe: Recipe,
        /// How far it is.
        progress: Progress,
        /// Cancel was asked; waiting for the engine to stop.
        cancelling: bool,
    },
    /// The merge finished and published its output.
    Done {
        /// What the engine reports.
        summary: Summary,
        /// The recipe it ran.
        recipe: Recipe,
    },
    /// The merge failed; nothing was published.
    Failed {
        /// The output folder it was to write.
        out: PathBuf,
        /// Why it failed.
        error: String,
        /// The recipe it ran.
        recipe: Recipe,
    },
    /// The merge was cancelled; nothing was published.
    Cancelled {
        /// The output folder it was to write.
        out: PathBuf,
        /// The recipe it ran.
        recipe: Recipe,
    },
}

/// A LoRA extraction running in the background (`L` on Models), as the
/// status panel shows it. Its end is reported on the status line.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtractJob {
    /// Its job's ticket.
    pub ticket: Ticket,
    /// The fine-tune's name.
    pub model: String,
    /// The adapter folder it writes.
    pub out: PathBuf,
    /// Modules factored so far.
    pub done: usize,
    /// Modules to factor (0 until the models are open).
    pub total: usize,
    /// The module last factored, or what is happening.
    pub current: String,
    /// Time since it started.
    pub elapsed: Duration,
    /// Cancel was asked; waiting for the extraction to stop.
    pub cancelling: bool,
}

/// A LoRA extraction that ended, as Status shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Extracted {
    /// The fine-tune's name.
    pub model: String,
    /// The adapter folder written.
    pub out: PathBuf,
    /// The overall relative error of the approximation.
    pub error: f64,
    /// Its rank.
    pub rank: usize,
    /// Modules factored.
    pub modules: usize,
    /// How many warnings the extraction gave (`smelt extract-lora` lists
    /// them).
    pub warnings: usize,
}

impl ExtractJob {
    /// The share of the modules factored, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.total > 0 {
            (self.done as f64 / self.total as f64).min(1.0)
        } else {
            0.0
        }
    }
}

/// Accuracy of a merged MLP beside each input's own, on the test split.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// The merge output the report is about.
    pub out: PathBuf,
    /// The merged model's accuracy, or why there is none.
    pub merged: Result<EvalReport, JobError>,
    /// Each input model (by name) evaluated alone.
    pub inputs: Vec<(String, Result<EvalReport, JobError>)>,
}

/// Evaluation after a merge (MLP outputs only).
#[derive(Clone, Debug, PartialEq)]
pub enum AccuracyState {
    /// No evaluation (not an MLP merge, or none yet).
    None,
    /// Evaluating the output in this folder.
    Running(PathBuf),
    /// The figures, merged and inputs.
    Done(Accuracy),
}

/// What to do once the user has dealt with unsaved changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Quit the workbench.
    Quit,
    /// Open the recipe or models asked for.
    Open,
}

/// What a prompt is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Purpose {
    /// Where to write the merge.
    OutputFolder,
    /// Save the recipe; then continue with `then`.
    Save {
        /// What to do after the save.
        then: Option<Then>,
    },
    /// A recipe or models to open.
    Open,
    /// A model to add to the recipe.
    AddModel,
    /// The rank of a LoRA to extract from `model` (against the base).
    ExtractRank {
        /// The fine-tune.
        model: PathBuf,
    },
    /// The folder to write a LoRA of `model` into.
    ExtractOut {
        /// The fine-tune.
        model: PathBuf,
        /// The rank and options from the rank prompt.
        opts: Box<crate::extract::Options>,
    },
    /// A new value for a Parameters row, at the scopes it was opened at.
    Value {
        /// The row being edited.
        row: ParamRow,
        /// The layers or tensors the value applies to (`None`: recipe-wide).
        scopes: Option<Vec<Scope>>,
    },
}

/// The open text prompt and what it is for.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// The text being typed.
    pub input: TextInput,
    /// What the text is for.
    pub purpose: Purpose,
}

/// Why an overwrite is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Another file exists at the path.
    Exists,
    /// The opened recipe changed on disk since it was read.
    ChangedOnDisk,
    /// Saving over the opened mergekit YAML rewrites it: its comments and
    /// layout go.
    RewritesYaml,
}

/// A question the user answers with y or n.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    /// Leaving (quit, or opening another recipe) with unsaved changes or a
    /// running merge. Drawn from the live state, so it follows a merge
    /// that ends while it is open.
    Leave {
        /// What to do after leaving.
        then: Then,
    },
    /// Writing over a file: y writes, anything else goes back to the
    /// prompt with the path kept.
    Overwrite {
        /// The file that would be written over.
        path: PathBuf,
        /// Why this is asked.
        why: Overwrite,
        /// What to do after the save.
        then: Option<Then>,
    },
    /// `r` into a folder that holds an earlier smelt output (or nothing):
    /// y merges, replacing it once the merge has finished whole; anything
    /// else goes back to the prompt with the path kept.
    Replace {
        /// The folder.
        path: PathBuf,
        /// Whether it is empty (rather than an earlier output).
        empty: bool,
    },
    /// Showing a document of a multi-document file needs other documents
    /// built first: y builds `steps` in order, then shows `target`.
    Build {
        /// The document to show.
        target: usize,
        /// The documents to build, in order.
        steps: Vec<usize>,
    },
}

/// A dialog over the panels; it takes every key until closed.
#[derive(Clone, Debug, PartialEq)]
pub enum Modal {
    /// The help, scrolled down by this many lines.
    Help(usize),
    /// A text prompt.
    Prompt(Prompt),
    /// A yes/no question.
    Confirm(Confirm),
    /// `r` refused: the recipe's problems.
    Problems,
    /// `d`: the documents of a multi-document file, the cursor on this one.
    Documents(usize),
}

/// How serious a status-line message is (its colour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something done or worth knowing.
    Info,
    /// Something the user should look at.
    Warn,
    /// Something failed.
    Error,
}

/// Why the workbench ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The user quit.
    User,
    /// SIGHUP, SIGTERM...: the process exits with 128 + the signal.
    Signal(i32),
}

/// The whole UI state.
#[derive(Clone, Debug)]
pub struct App {
    /// The recipe being edited (what undo restores).
    pub doc: Doc,
    /// Undo and redo.
    pub history: History<Doc>,
    /// Cursors, focus, expanded groups.
    pub view: View,
    /// Problems of the current recipe (refreshed after every edit).
    pub problems: Vec<Issue>,
    /// Bumped on every edit of the recipe.
    pub gen: u64,
    /// Latest statistics per target.
    pub stats: HashMap<Target, Held>,
    /// Sampled estimates for big tensors, shown until the exact result for
    /// the same key arrives.
    pub previews: HashMap<Target, (StatsKey, Stats)>,
    /// The background merge.
    pub merge: MergeState,
    /// Accuracy after an MLP merge.
    pub accuracy: AccuracyState,
    /// The LoRA extraction running, if any.
    pub extract: Option<ExtractJob>,
    /// Lines for the terminal once the workbench has left it (what a quit
    /// did on the way out, e.g. where it saved the recipe).
    pub farewell: Vec<String>,
    /// The last LoRA extraction's end, shown in Status until a merge
    /// starts or another recipe opens.
    pub extracted: Option<Extracted>,
    /// The open dialog, if any.
    pub modal: Option<Modal>,
    /// The status line's message.
    pub message: Option<(Level, String)>,
    /// Where the recipe was opened from or last saved to.
    pub recipe_path: Option<PathBuf>,
    /// The recipe is the bundled sample `smelt` opened by itself: saving
    /// goes to the data folder, never over the sample.
    pub sample: bool,
    /// A recipe kept from a session that ended by a signal, offered by
    /// the next `o`.
    pub recovered: Option<PathBuf>,
    /// The recipe as last opened or saved, to mark unsaved changes.
    pub saved: Option<Recipe>,
    /// The text of the recipe file as read or written (to keep its comments
    /// on save, and to notice it changed on disk).
    pub saved_text: Option<String>,
    /// The latest ticket of each job kind.
    pub tickets: Tickets,
    /// What to do after the save now running succeeds.
    pub after_save: Option<Then>,
    /// Default folder for saved recipes (user data dir or SMELT_DATA_DIR).
    pub data_dir: PathBuf,
    /// Folder that default output paths are made in.
    pub work_dir: PathBuf,
    /// Draw with ASCII only.
    pub ascii: bool,
    /// Terminal size, for layout-dependent keys and mouse hits.
    pub size: (u16, u16),
    /// Something changed since the last frame (redraw).
    pub dirty: bool,
    /// Set when the workbench should end, and how.
    pub exit: Option<Exit>,
    /// The multi-document file open, if one is.
    pub multi: Option<super::multi::MultiDoc>,
    /// Keys computed for the current `gen` (drawing asks for them often).
    key_memo: std::cell::RefCell<(u64, HashMap<Target, StatsKey>)>,
}

impl App {
    /// A workbench with an empty recipe, saving recipes into `data_dir` and
    /// proposing outputs in `work_dir`.
    pub fn new(data_dir: PathBuf, work_dir: PathBuf) -> App {
        let mut app = App {
            doc: Doc::default(),
            history: History::default(),
            view: View {
                focus: Some(Panel::Layers),
                ..View::default()
            },
            problems: Vec::new(),
            gen: 0,
            stats: HashMap::new(),
            previews: HashMap::new(),
            merge: MergeState::Idle,
            accuracy: AccuracyState::None,
            extract: None,
            extracted: None,
            farewell: Vec::new(),
            modal: None,
            message: None,
            recipe_path: None,
            sample: false,
            recovered: None,
            saved: None,
            saved_text: None,
            tickets: Tickets::default(),
            after_save: None,
            data_dir,
            work_dir,
            ascii: false,
            size: (80, 24),
            dirty: true,
            exit: None,
            multi: None,
            key_memo: Default::default(),
        };
        app.refresh();
        app
    }

    /// The focused panel (Layers when none was chosen).
    pub fn focus(&self) -> Panel {
        self.view.focus.unwrap_or(Panel::Layers)
    }

    /// Install an opened recipe: a fresh document and view, no history.
    pub fn load(&mut self, recipe: &Recipe, infos: &[ModelInfo], layers: Vec<LayerRow>) {
        self.doc = Doc::from_recipe(recipe, infos, layers);
        self.history.clear();
        let focus = self.view.focus;
        self.view = View {
            focus,
            ..View::default()
        };
        self.stats.clear();
        self.previews.clear();
        self.saved = Some(self.doc.to_recipe());
        self.refresh();
    }

    /// Apply an edit of the recipe as one undo step named `what`. Nothing
    /// is recorded when the edit changed nothing.
    pub fn edit<R>(&mut self, what: &str, f: impl FnOnce(&mut Doc) -> R) -> R {
        let before = self.doc.clone();
        let r = f(&mut self.doc);
        if self.doc != before {
            self.history.record(before, what);
            self.refresh();
        }
        r
    }

    /// After the document changed: problems, cursors, new statistics.
    pub fn refresh(&mut self) {
        self.problems = self.doc.problems();
        self.view.model_cursor = self
            .view
            .model_cursor
            .min(self.doc.model_rows().saturating_sub(1));
        self.view.expanded.retain(|g| *g < self.doc.layers.len());
        self.view.layer_cursor = self
            .view
            .layer_cursor
            .min(self.layer_lines().len().saturating_sub(1));
        self.view.param_cursor = self
            .view
            .param_cursor
            .min(self.param_rows().len().saturating_sub(1));
        self.gen += 1;
        self.dirty = true;
    }

    /// Show `msg` on the status line.
    pub fn say(&mut self, level: Level, msg: impl Into<String>) {
        self.message = Some((level, msg.into()));
        self.dirty = true;
    }

    /// Whether the recipe differs from the one last opened or saved.
    pub fn modified(&self) -> bool {
        if super::multi::others_edited(self) {
            return true;
        }
        match &self.saved {
            Some(r) => *r != self.doc.to_recipe(),
            // Never opened or saved: modified once it holds anything.
            None => !self.doc.slots.is_empty() || !self.doc.slices.is_empty(),
        }
    }

    /// Whether a merge is running.
    pub fn merge_running(&self) -> bool {
        matches!(self.merge, MergeState::Running { .. })
    }

    /// Whether a LoRA extraction is running.
    pub fn extract_running(&self) -> bool {
        self.extract.is_some()
    }

    // ------------------------------------------------------------ layers

    /// Rows of the Layers panel in display order.
    pub fn layer_lines(&self) -> Vec<LayerLine> {
        let mut v = vec![LayerLine::All];
        for (gi, l) in self.doc.layers.iter().enumerate() {
            v.push(LayerLine::Group(gi));
            if self.view.expanded.contains(&gi) {
                v.extend((0..l.tensors.len()).map(|ti| LayerLine::Tensor(gi, ti)));
            }
        }
        v
    }

    /// The Layers panel's selected row.
    pub fn current_line(&self) -> LayerLine {
        self.layer_lines()
            .get(self.view.layer_cursor)
            .copied()
            .unwrap_or(LayerLine::All)
    }

    /// The group the cursor is on (a tensor's group for tensor rows).
    pub fn current_group(&self) -> Option<usize> {
        match self.current_line() {
            LayerLine::All => None,
            LayerLine::Group(g) | LayerLine::Tensor(g, _) => Some(g),
        }
    }

    /// What the Sign agreement panel shows (`None`: all layers).
    pub fn current_target(&self) -> Option<Target> {
        match self.current_line() {
            LayerLine::All => None,
            LayerLine::Group(g) => self.doc.layers.get(g).map(|l| Target::Group(l.group)),
            LayerLine::Tensor(g, t) => self
                .doc
                .layers
                .get(g)
                .and_then(|l| l.tensors.get(t))
                .map(|t| Target::Tensor(t.name.clone())),
        }
    }

    /// Which scopes an edit applies to: `None` for the recipe's own values
    /// (the "all layers" row), else the selected layer or group, or the
    /// range of layers marked with `v`.
    pub fn edit_scopes(&self) -> Option<Vec<Scope>> {
        let g = self.current_group()?;
        let scope = Scope::of(self.doc.layers.get(g)?.group);
        match (scope, self.view.range_anchor) {
            (Scope::Layer(l), Some(a)) => Some((a.min(l)..=a.max(l)).map(Scope::Layer).collect()),
            (s, _) => Some(vec![s]),
        }
    }

    /// The scope values are shown at: the first of [`App::edit_scopes`].
    pub fn shown_scope(&self) -> Option<Scope> {
        self.edit_scopes().and_then(|v| v.first().copied())
    }

    // ------------------------------------------------------------ params

    /// Rows of the Parameters panel: every value the recipe holds at the
    /// shown scope, and every parameter the method takes.
    pub fn param_rows(&self) -> Vec<ParamRow> {
        let doc = &self.doc;
        let spec = doc.method.spec();
        let scope = self.shown_scope();
        let mut rows = vec![ParamRow::Method];
        if doc.method.draws_random() || doc.seed.is_some() {
            rows.push(ParamRow::Seed);
        }
        let mut globals: Vec<String> = spec.global.iter().map(|p| p.name.to_string()).collect();
        let extra = |names: &mut Vec<String>, it: &mut dyn Iterator<Item = &String>| {
            for n in it {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        };
        extra(&mut globals, &mut doc.global.keys());
        if let Some(o) = scope.and_then(|s| doc.overrides.get(&s)) {
            extra(&mut globals, &mut o.params.keys());
        }
        rows.extend(globals.into_iter().map(ParamRow::Global));
        for slot in doc.input_slots() {
            let mut names: Vec<String> =
                spec.per_model.iter().map(|p| p.name.to_string()).collect();
            extra(&mut names, &mut doc.slots[slot].params.keys());
            if let Some(m) = scope
                .and_then(|s| doc.overrides.get(&s))
                .and_then(|o| o.models.get(&doc.slots[slot].info.path))
            {
                extra(&mut names, &mut m.keys());
            }
            rows.extend(names.into_iter().map(|name| ParamRow::Model { slot, name }));
        }
        // Always there, so one can be set (default: the base's dtype).
        if !doc.zips() {
            rows.push(ParamRow::OutDtype);
        }
        if doc.calibration.is_some() {
            rows.push(ParamRow::Calibration);
        }
        if !doc.slices.is_empty() {
            rows.push(ParamRow::Slices);
        }
        rows
    }

    /// The parameter name and model of a value row.
    pub fn row_param(row: &ParamRow) -> Option<(&str, Option<usize>)> {
        match row {
            ParamRow::Global(n) => Some((n, None)),
            ParamRow::Model { slot, name } => Some((name, Some(*slot))),
            _ => None,
        }
    }

    /// A row as words: `density · ft-code`, `lambda`, `seed`.
    pub fn row_label(&self, row: &ParamRow) -> String {
        match (App::row_param(row), row) {
            (Some((n, Some(slot))), _) => format!(
                "{n} · {}",
                self.doc
                    .slots
                    .get(slot)
                    .map_or("?", |s| s.info.name.as_str())
            ),
            (Some((n, None)), _) => n.to_string(),
            (None, ParamRow::Seed) => "seed".into(),
            (None, ParamRow::OutDtype) => "out_dtype".into(),
            (None, ParamRow::Calibration) => "calibration".into(),
            (None, ParamRow::Slices) => "slices".into(),
            (None, _) => "method".into(),
        }
    }

    /// The spec of the parameter a row edits, if it edits one.
    pub fn param_spec(&self, row: &ParamRow) -> Option<&'static ParamSpec> {
        let (name, _) = App::row_param(row)?;
        self.doc.spec_of(name)
    }

    /// A row's value at `scope` (see [`Doc::value_at`]).
    pub fn row_value(&self, row: &ParamRow, scope: Option<Scope>) -> Lookup {
        match App::row_param(row) {
            Some((name, model)) => self.doc.value_at(name, model, scope),
            None => Lookup {
                value: None,
                from: Source::Missing,
            },
        }
    }

    /// Where an edit of `row` at `scope` writes.
    pub fn place_of(&self, row: &ParamRow, scope: Option<Scope>) -> Option<Place> {
        let (name, model) = App::row_param(row)?;
        let scope = scope.filter(|_| !GLOBAL_ONLY.contains(&name));
        let path = model
            .and_then(|m| self.doc.slots.get(m))
            .map(|s| s.info.path.clone());
        Some(match (scope, path) {
            (None, None) => Place::Global,
            (None, Some(p)) => Place::Model(p),
            (Some(s), None) => Place::Scope(s),
            (Some(s), Some(p)) => Place::ScopeModel(s, p),
        })
    }

    // ------------------------------------------------------------ problems

    /// The recipe's problems at `spot`.
    pub fn problems_at(&self, spot: &Spot) -> impl Iterator<Item = &Issue> {
        let spot = spot.clone();
        self.problems
            .iter()
            .filter(move |i| i.spots.contains(&spot))
    }

    /// Whether the recipe has a problem at `spot`.
    pub fn has_problem(&self, spot: &Spot) -> bool {
        self.problems_at(spot).next().is_some()
    }

    /// The problem a Parameters row shows, if any (at the shown scope).
    pub fn row_problem(&self, row: &ParamRow) -> Option<&Issue> {
        let spot = match row {
            ParamRow::Method => Spot::Method,
            ParamRow::Seed => Spot::Seed,
            ParamRow::Calibration => Spot::Calibration,
            ParamRow::Slices => Spot::Slices,
            ParamRow::OutDtype => return None,
            ParamRow::Global(_) | ParamRow::Model { .. } => {
                let (name, _) = App::row_param(row)?;
                Spot::Value(self.place_of(row, self.shown_scope())?, name.to_string())
            }
        };
        self.problems_at(&spot).next()
    }

    // ------------------------------------------------------------ statistics

    /// The model task vectors are measured from: the base, or for methods
    /// without one the model kept as their reference.
    pub fn reference(&self) -> Option<&ModelInfo> {
        self.doc.base_slot().map(|i| &self.doc.slots[i].info)
    }

    /// Why there can be no statistics, if there cannot.
    pub fn analysis_blocked(&self) -> Option<&'static str> {
        if !self.doc.slices.is_empty() {
            Some("a sliced recipe mixes layers of several models: its statistics are not shown")
        } else if self.doc.zips() {
            Some("ZipIt! and permute match features across whole models: there are no task vectors to compare")
        } else if self.reference().is_none() {
            Some("no base model: task vectors need one (select a model in Models, press b)")
        } else if self.doc.input_slots().is_empty() {
            Some("no input models to compare")
        } else if !self.doc.method.spec().takes(self.doc.input_slots().len()) {
            // Every tensor would fail the same way.
            Some("this method cannot merge this many input models (Status says how many it takes)")
        } else {
            None
        }
    }

    /// Keys of targets, computed from one snapshot of the recipe.
    pub fn keys(&self) -> Keys {
        Keys {
            recipe: self.doc.to_recipe(),
            reference: self.reference().map(|i| i.path.clone()),
            n_layers: self.doc.n_layers(),
        }
    }

    /// The key of `t`'s statistics under the current recipe (memoised per
    /// edit).
    pub fn stats_key(&self, t: &Target) -> StatsKey {
        let mut memo = self.key_memo.borrow_mut();
        if memo.0 != self.gen || memo.1.is_empty() {
            // One recipe snapshot for every target of this state.
            let keys = self.keys();
            let mut all = HashMap::new();
            for l in &self.doc.layers {
                let g = Target::Group(l.group);
                all.insert(g.clone(), keys.key(&g, &self.doc.layers));
                for x in &l.tensors {
                    let t = Target::Tensor(x.name.clone());
                    all.insert(t.clone(), keys.key(&t, &self.doc.layers));
                }
            }
            *memo = (self.gen, all);
        }
        match memo.1.get(t) {
            Some(k) => *k,
            None => self.keys().key(t, &self.doc.layers),
        }
    }

    /// Statistics for a target, and whether they are current.
    pub fn stats_for(&self, t: &Target) -> Option<(&Result<Report, JobError>, bool)> {
        let h = self.stats.get(t)?;
        Some((&h.result, h.key == self.stats_key(t)))
    }

    /// A preview for the target's current inputs, if one is held.
    pub fn preview_for(&self, t: &Target) -> Option<&Stats> {
        let key = self.stats_key(t);
        self.previews
            .get(t)
            .filter(|(k, _)| *k == key)
            .map(|(_, s)| s)
    }

    /// Targets whose statistics are missing or stale, with their current
    /// keys: the selected one first, then every layer group (for the
    /// gauges), then the tensors of expanded layers.
    pub fn wanted_targets(&self) -> Vec<(Target, StatsKey)> {
        let mut all: Vec<Target> = self.current_target().into_iter().collect();
        all.extend(self.doc.layers.iter().map(|l| Target::Group(l.group)));
        for &g in &self.view.expanded {
            if let Some(l) = self.doc.layers.get(g) {
                all.extend(l.tensors.iter().map(|t| Target::Tensor(t.name.clone())));
            }
        }
        let mut v: Vec<(Target, StatsKey)> = Vec::new();
        for t in all {
            if v.iter().any(|(x, _)| *x == t) {
                continue;
            }
            let key = self.stats_key(&t);
            if self.stats.get(&t).is_none_or(|h| h.key != key) {
                v.push((t, key));
            }
        }
        v
    }

    /// A family name for default file names: the base's (or first
    /// model's) parent folder, e.g. `llama-synthetic`.
    pub fn family(&self) -> String {
        let slot = self.doc.base_slot().or(if self.doc.slots.is_empty() {
            None
        } else {
            Some(0)
        });
        let path = slot
            .map(|i| &self.doc.slots[i].info.path)
            .or_else(|| self.doc.slice_models().first().map(|i| &i.path));
        path.and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|s| !s.is_empty() && s != ".")
        .unwrap_or_else(|| "merge".into())
    }

    /// Whether the method takes a base (for wording `b`).
    pub fn takes_base(&self) -> bool {
        self.doc.method.spec().base != BaseRule::None
    }
}

/// What statistics keys are computed from (one recipe snapshot).
pub struct Keys {
    recipe: Recipe,
    reference: Option<PathBuf>,
    n_layers: usize,
}

impl Keys {
    /// The key of `t` under this recipe snapshot, over `layers`.
    pub fn key(&self, t: &Target, layers: &[LayerRow]) -> StatsKey {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let r = &self.recipe;
        r.method.name().hash(&mut h);
        self.reference.hash(&mut h);
        for m in &r.models {
            m.path.hash(&mut h);
        }
        r.seed.hash(&mut h);
        let tensors: Vec<(&str, Group)> = match t {
            Target::Group(g) => layers
                .iter()
                .filter(|l| l.group == *g)
                .flat_map(|l| l.tensors.iter().map(|x| (x.name.as_str(), l.group)))
                .collect(),
            Target::Tensor(n) => layers
                .iter()
                .find(|l| l.tensors.iter().any(|x| &x.name == n))
                .map(|l| vec![(n.as_str(), l.group)])
                .unwrap_or_default(),
        };
        for (name, g) in tensors {
            let tp = r.resolve(name, g, self.n_layers);
            name.hash(&mut h);
            for (k, v) in &tp.global.0 {
                k.hash(&mut h);
                v.as_f64().to_bits().hash(&mut h);
            }
            for m in &tp.models {
                for (k, v) in &m.0 {
                    k.hash(&mut h);
                    v.as_f64().to_bits().hash(&mut h);
                }
                0xffu8.hash(&mut h);
            }
        }
        StatsKey(h.finish())
    }
}

/// The step `←`/`→` changes a parameter by.
pub fn step_for(spec: &ParamSpec) -> f64 {
    match (spec.kind, spec.name) {
        (ParamKind::Int, _) => 1.0,
        (_, "gamma") => 0.01,
        (_, "epsilon") => 0.01,
        _ => 0.05,
    }
}

/// `v` moved by `dir` steps and kept inside the parameter's range. Values
/// are rounded to 4 decimals so repeated steps save as `0.3`, not
/// `0.30000000000000004`. Booleans flip.
pub fn adjust(spec: &ParamSpec, v: Option<&Value>, dir: i32) -> Value {
    if spec.kind == ParamKind::Bool {
        let cur = match v {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(x)) => *x != 0.0,
            _ => false,
        };
        return Value::Bool(!cur);
    }
    let cur = match v {
        Some(Value::Number(x)) => *x,
        Some(Value::Gradient(g)) => g.first().copied().unwrap_or(0.0),
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        _ => match spec.name {
            "weight" => 1.0,
            "t" => 0.5,
            _ => 0.0,
        },
    };
    // Multiplicative for tiny tolerances (eps, tol): additive steps would
    // jump straight past them.
    let mut x = if matches!(spec.name, "eps" | "tol") {
        if dir > 0 {
            cur * 10.0
        } else {
            cur / 10.0
        }
    } else {
        cur + f64::from(dir) * step_for(spec)
    };
    if let Some((lo, lo_inc, hi, hi_inc)) = spec.range {
        let step = step_for(spec);
        let min = if lo_inc { lo } else { lo + step.min(0.01) };
        let max = if hi_inc { hi } else { hi - step.min(0.01) };
        x = x.clamp(min, max);
    }
    if spec.name == "t" {
        x = x.clamp(0.0, 1.0);
    }
    if spec.name == "depth" {
        // -1 already means every hidden layer.
        x = x.max(-1.0);
    }
    if !matches!(spec.name, "eps" | "tol") {
        x = (x * 1e4).round() / 1e4;
    }
    Value::Number(x)
}

/// Parse typed text as a value of a parameter's kind.
pub fn parse_value(spec: &ParamSpec, text: &str) -> Result<Value, String> {
    let t = text.trim();
    match spec.kind {
        ParamKind::Bool => match t {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("{}: expected true or false, got `{t}`", spec.name)),
        },
        _ if t.starts_with('[') => {
            // A gradient across the layers: `[0.2, 0.8]`.
            let inner = t
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .ok_or_else(|| format!("{}: a list is written [a, b, ...]", spec.name))?;
            if inner.trim().is_empty() {
                return Err(format!("{}: an empty list is not a value", spec.name));
            }
            let xs = inner
                .split(',')
                .enumerate()
                .map(|(i, x)| {
                    if x.trim().is_empty() {
                        return Err(format!(
                            "{}: a list holds numbers, and its item {} is empty",
                            spec.name,
                            i + 1
                        ));
                    }
                    match parse_value(spec, x)? {
                        Value::Number(v) => Ok(v),
                        _ => Err(format!("{}: a list holds numbers", spec.name)),
                    }
                })
                .collect::<Result<Vec<f64>, String>>()?;
            Ok(Value::Gradient(xs))
        }
        _ if t.is_empty() => Err(format!("{}: expected a number", spec.name)),
        _ => {
            let x: f64 = t
                .parse()
                .map_err(|_| format!("{}: expected a number, got `{t}`", spec.name))?;
            if spec.name == "depth" && x < -1.0 {
                return Err(format!("depth: -1 (every hidden layer) or more, got `{t}`"));
            }
            // What the recipe check would say, said now.
            if let Some(m) = crate::recipe::number_problems(spec, x).first() {
                // The number as typed: `1e308` in full is 309 digits.
                return Err(format!("{}: {t} {m}", spec.name));
            }
            Ok(Value::Number(x))
        }
    }
}

/// The output dtypes a recipe can name, in the order ←/→ walks them
/// (`None`: the base's).
pub const OUT_DTYPES: [Option<crate::model::Dtype>; 5] = [
    None,
    Some(crate::model::Dtype::BF16),
    Some(crate::model::Dtype::F16),
    Some(crate::model::Dtype::F32),
    Some(crate::model::Dtype::F64),
];

/// Parse a seed: a whole number ≥ 0.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("seed: expected a whole number ≥ 0, got `{}`", text.trim()))
}
