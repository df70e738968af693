//! Multi-document (mergekit-multi) files in the workbench: one recipe per
//! document, a picker (`d`) to move between them, the whole file saved
//! back, and documents built in dependency order.
//!
//! A document that reads another's output needs that output to be shown:
//! its models panel, layers and sign-agreement statistics come from the
//! real tensors, never from a stand-in. So the workbench keeps built
//! documents in a working folder beside the file (`STEM.smelt-work/NAME`,
//! [`crate::engine::multi::file_work`]), and opening a document whose
//! inputs are missing or out of date first asks to build them, in order,
//! as background merges (`c` cancels). Out of date is make's rule on the
//! recipes: an output is current when its `smelt-recipe.toml` is the
//! document's recipe as it stands (edits included) and every document it
//! reads is current and was built before it.
//!
//! Each document keeps its own edits and undo history while another is
//! shown; saving writes every edited document back into the file (as
//! mergekit YAML, its `name` first) and leaves the others, the separators
//! and comments between documents byte for byte.

use super::dialog::boxed;
use super::history::History;
use super::state::*;
use super::theme::Theme;
use super::update::Effect;
use crate::recipe::{MultiRecipe, Recipe};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::Frame;
use std::path::PathBuf;
use std::time::SystemTime;

/// A multi-document file open in the workbench.
#[derive(Clone, Debug)]
pub struct MultiDoc {
    /// The file as last read or saved.
    pub file: MultiRecipe,
    /// Where its documents are built ([`crate::engine::multi::file_work`]
    /// of the file as opened; kept for the session).
    pub work: PathBuf,
    /// The document shown.
    pub current: usize,
    /// Documents shown before and left: their state as left.
    pub stash: Vec<Option<Stashed>>,
    /// Documents still to build, in order, before `then` opens.
    pub queue: Vec<usize>,
    /// The document to open once `queue` is built.
    pub then: Option<usize>,
}

/// A document's editing state while another is shown.
#[derive(Clone, Debug)]
pub struct Stashed {
    /// The recipe being edited.
    pub doc: Doc,
    /// Its undo history.
    pub history: History<Doc>,
    /// The recipe as opened or last saved (its edits are the difference).
    pub saved: Option<Recipe>,
}

impl Stashed {
    fn edited(&self) -> Option<Recipe> {
        let now = self.doc.to_recipe();
        (self.saved.as_ref() != Some(&now)).then_some(now)
    }
}

/// Where a document's output stands in the working folder.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// The unnamed final document: its output goes where `r` says.
    Final,
    /// Not built.
    Missing,
    /// Built from the document as it stands, after what it reads.
    Built(SystemTime),
    /// Built, but from another recipe or before something it reads.
    Stale(String),
    /// The folder is there but is not a smelt output.
    Foreign,
}

impl Status {
    fn word(&self) -> String {
        match self {
            Status::Final => "final merge, r writes it".into(),
            Status::Missing => "not built".into(),
            Status::Built(_) => "built".into(),
            Status::Stale(why) => format!("out of date, {why}"),
            Status::Foreign => "its folder is not smelt's".into(),
        }
    }
}

impl MultiDoc {
    /// A file just opened, showing document `current`.
    pub fn new(file: MultiRecipe, current: usize) -> MultiDoc {
        let work = crate::engine::multi::file_work(&file.path);
        let n = file.documents.len();
        MultiDoc {
            file,
            work,
            current,
            stash: vec![None; n],
            queue: Vec::new(),
            then: None,
        }
    }
}

/// Document `k`'s recipe as it would run now: its edits if it has any
/// (shown or stashed), else as the file has it, references to other
/// documents being their outputs in the working folder.
pub fn run_recipe(app: &App, k: usize) -> Recipe {
    let Some(m) = &app.multi else {
        return app.doc.to_recipe();
    };
    edited(app, m, k).unwrap_or_else(|| m.file.recipe_for(k, &m.work))
}

/// Document `k`'s recipe when it has unsaved edits (shown or stashed).
fn edited(app: &App, m: &MultiDoc, k: usize) -> Option<Recipe> {
    if k == m.current {
        let now = app.doc.to_recipe();
        (app.saved.as_ref() != Some(&now)).then_some(now)
    } else {
        m.stash[k].as_ref().and_then(Stashed::edited)
    }
}

/// The documents a recipe (as run) reads: those whose output in `work`
/// is one of its models (as `MODEL` or `MODEL+adapter`). Edits can drop a
/// reference, so this is the graph as it stands, not as written.
pub fn needs_of(file: &MultiRecipe, work: &std::path::Path, recipe: &Recipe) -> Vec<usize> {
    let models: Vec<PathBuf> = crate::plan::recipe_paths(recipe)
        .iter()
        .map(|p| model_of(p))
        .collect();
    (0..file.documents.len())
        .filter(|&j| file.documents[j].name.is_some())
        .filter(|&j| models.contains(&file.work_path(j, work)))
        .collect()
}

/// The model of a recipe path (`MODEL+adapter` → `MODEL`).
fn model_of(p: &std::path::Path) -> PathBuf {
    p.to_str()
        .and_then(crate::model::lora::split_reference)
        .map_or_else(|| p.to_path_buf(), |(m, _)| PathBuf::from(m))
}

/// Every document `target` reads as the recipes stand (directly or not),
/// in run order, `target` last.
pub fn order_now(
    file: &MultiRecipe,
    work: &std::path::Path,
    run: &dyn Fn(usize) -> Recipe,
    target: usize,
) -> Vec<usize> {
    let mut wanted = vec![false; file.documents.len()];
    let mut stack = vec![target];
    while let Some(i) = stack.pop() {
        if !wanted[i] {
            wanted[i] = true;
            stack.extend(needs_of(file, work, &run(i)));
        }
    }
    // The file's order holds for any part of its graph.
    file.order_all()
        .into_iter()
        .filter(|&i| wanted[i])
        .collect()
}

/// Every document's [`Status`], given how each would run.
pub fn statuses(
    file: &MultiRecipe,
    work: &std::path::Path,
    run: &dyn Fn(usize) -> Recipe,
) -> Vec<Status> {
    let n = file.documents.len();
    let mut memo: Vec<Option<Status>> = vec![None; n];
    // The graph is acyclic (checked when read): needs first.
    for k in file.order_all() {
        let s = if file.documents[k].name.is_none() {
            Status::Final
        } else {
            let out = file.work_path(k, work);
            if out.symlink_metadata().is_err() {
                Status::Missing
            } else {
                match crate::engine::multi::built_from(&out) {
                    None => Status::Foreign,
                    // (The same files, however the paths are written:
                    // the build's are relative to its own folder.)
                    Some((r, _)) if r.with_absolute_paths() != run(k).with_absolute_paths() => {
                        Status::Stale("its recipe changed".into())
                    }
                    Some((_, t)) => {
                        let mut s = Status::Built(t);
                        for j in needs_of(file, work, &run(k)) {
                            match &memo[j] {
                                Some(Status::Built(tj)) if *tj <= t => {}
                                Some(Status::Built(_)) => {
                                    s = Status::Stale(format!(
                                        "`{}` was built after it",
                                        file.label(j)
                                    ));
                                    break;
                                }
                                _ => {
                                    s = Status::Stale(format!(
                                        "`{}` is not current",
                                        file.label(j)
                                    ));
                                    break;
                                }
                            }
                        }
                        s
                    }
                }
            }
        };
        memo[k] = Some(s);
    }
    memo.into_iter()
        .map(|s| s.unwrap_or(Status::Missing))
        .collect()
}

/// The statuses of the open file's documents.
fn app_statuses(app: &App) -> Vec<Status> {
    match &app.multi {
        Some(m) => statuses(&m.file, &m.work, &|k| run_recipe(app, k)),
        None => Vec::new(),
    }
}

/// Which document a file opens on: the first final one whose inputs are
/// all built, else the first document of the first final one's run (it
/// reads no other document).
pub fn initial_document(file: &MultiRecipe, work: &std::path::Path) -> usize {
    let st = statuses(file, work, &|k| file.recipe_for(k, work));
    let finals = file.finals();
    for &f in &finals {
        let order = file.order_for(f);
        if order[..order.len() - 1]
            .iter()
            .all(|&k| matches!(st[k], Status::Built(_)))
        {
            return f;
        }
    }
    finals
        .first()
        .and_then(|&f| file.order_for(f).first().copied())
        .unwrap_or(0)
}

/// Whether any document other than the one shown has unsaved edits.
pub fn others_edited(app: &App) -> bool {
    app.multi.as_ref().is_some_and(|m| {
        m.stash
            .iter()
            .enumerate()
            .any(|(k, s)| k != m.current && s.as_ref().is_some_and(|s| s.edited().is_some()))
    })
}

/// Every edited document: (index, recipe as it would run).
pub fn edits(app: &App) -> Vec<(usize, Recipe)> {
    let Some(m) = &app.multi else {
        return Vec::new();
    };
    (0..m.file.documents.len())
        .filter_map(|k| edited(app, m, k).map(|r| (k, r)))
        .collect()
}

/// After the whole file was saved as `text` to `path`: the file re-read,
/// and nothing edited any more.
pub fn saved(app: &mut App, path: &std::path::Path, text: &str) {
    let now = app.doc.to_recipe();
    app.saved = Some(now);
    if let Some(m) = &mut app.multi {
        if let Ok(Some(f)) = MultiRecipe::parse(text, path) {
            m.file = f;
        }
        for s in m.stash.iter_mut().flatten() {
            s.saved = Some(s.doc.to_recipe());
        }
    }
}

/// `d`: the document picker (or why there is none).
pub fn open_picker(app: &mut App) {
    match &app.multi {
        Some(m) => app.modal = Some(Modal::Documents(m.current)),
        None => app.say(
            Level::Info,
            "one recipe is open: d picks a document of a multi-document (mergekit-multi) file",
        ),
    }
}

/// A key in the document picker.
pub fn on_picker_key(app: &mut App, cursor: usize, k: KeyEvent, fx: &mut Vec<Effect>) {
    let n = app.multi.as_ref().map_or(0, |m| m.file.documents.len());
    if n == 0 {
        return;
    }
    let keep = |app: &mut App, c: usize| app.modal = Some(Modal::Documents(c));
    match k.code {
        KeyCode::Up | KeyCode::Char('k') => keep(app, cursor.saturating_sub(1)),
        KeyCode::Down | KeyCode::Char('j') => keep(app, (cursor + 1).min(n - 1)),
        KeyCode::Home | KeyCode::Char('g') => keep(app, 0),
        KeyCode::End | KeyCode::Char('G') => keep(app, n - 1),
        KeyCode::Char(c @ '1'..='9') => {
            let i = c as usize - '1' as usize;
            if i < n {
                select(app, i, fx);
            } else {
                keep(app, cursor);
            }
        }
        KeyCode::Enter => select(app, cursor, fx),
        _ => app.say(Level::Info, "still on this document"),
    }
}

/// Show document `j`: at once when it and what it reads are ready, else
/// ask to build what it reads first.
pub fn select(app: &mut App, j: usize, fx: &mut Vec<Effect>) {
    let Some(m) = &app.multi else {
        return;
    };
    if j == m.current {
        app.say(
            Level::Info,
            format!("showing `{}` already", m.file.label(j)),
        );
        return;
    }
    if app.merge_running() || app.extract_running() {
        app.say(
            Level::Warn,
            "a job is running: wait for it (or c cancels it), then pick the document",
        );
        return;
    }
    let st = app_statuses(app);
    let m = app.multi.as_ref().expect("checked above");
    let run = |k: usize| run_recipe(app, k);
    let order = order_now(&m.file, &m.work, &run, j);
    let build: Vec<usize> = order[..order.len() - 1]
        .iter()
        .copied()
        .filter(|&k| !matches!(st[k], Status::Built(_)))
        .collect();
    if let Some(&k) = build.iter().find(|&&k| st[k] == Status::Foreign) {
        let out = m.file.work_path(k, &m.work);
        app.say(
            Level::Error,
            format!(
                "to show `{}`, `{}` must be built into {}, which holds files smelt did not write: move them away first",
                m.file.label(j),
                m.file.label(k),
                out.display()
            ),
        );
        return;
    }
    // A model that is not there fails the build of its document or the
    // opening of `j`: say so now, before anything is built.
    let outs: Vec<PathBuf> = (0..m.file.documents.len())
        .map(|i| m.file.work_path(i, &m.work))
        .collect();
    for &k in &order {
        for p in crate::plan::recipe_paths(&run(k)) {
            let model = model_of(&p);
            if outs.contains(&model) {
                continue;
            }
            let present = model.exists()
                || crate::model::source::hub_name_in(None, &model.to_string_lossy())
                    .is_some_and(|n| crate::model::source::cached(&n).is_some());
            if !present {
                app.say(
                    Level::Error,
                    format!(
                        "document `{}` (line {}) names {}, which is not there: fix the file first",
                        m.file.label(k),
                        m.file.documents[k].line,
                        model.display()
                    ),
                );
                return;
            }
        }
    }
    if build.is_empty() {
        switch(app, j, fx);
    } else {
        // What is built after a rebuilt document is rebuilt too.
        let mut all = build;
        for &k in &order[..order.len() - 1] {
            if !all.contains(&k)
                && needs_of(&m.file, &m.work, &run(k))
                    .iter()
                    .any(|n| all.contains(n))
            {
                all.push(k);
            }
        }
        all.sort_by_key(|k| order.iter().position(|o| o == k));
        app.modal = Some(Modal::Confirm(Confirm::Build {
            target: j,
            steps: all,
        }));
    }
}

/// Show document `j`, whose inputs are ready: from its stash at once, or
/// opened in the background.
fn switch(app: &mut App, j: usize, fx: &mut Vec<Effect>) {
    let Some(m) = &mut app.multi else {
        return;
    };
    if let Some(s) = m.stash[j].take() {
        let label = leave_for(app, j);
        app.doc = s.doc;
        app.history = s.history;
        app.saved = s.saved;
        app.stats.clear();
        app.previews.clear();
        let focus = app.view.focus;
        app.view = View {
            focus,
            ..View::default()
        };
        app.refresh();
        // The update loop asks for checks and statistics (a new `gen`).
        app.say(Level::Info, format!("showing `{label}`"));
    } else {
        let recipe = m.file.recipe_for(j, &m.work);
        let msg = format!("opening `{}`...", m.file.label(j));
        let ticket = app.tickets.issue();
        app.tickets.open = Some(ticket);
        app.say(Level::Info, msg);
        fx.push(Effect::OpenDocument {
            ticket,
            index: j,
            recipe,
        });
    }
}

/// A document opened in the background: keep the one shown in the stash,
/// show `j`.
pub fn opened_document(app: &mut App, j: usize, l: super::update::Loaded) {
    if app.multi.is_none() {
        return;
    }
    let label = leave_for(app, j);
    app.load(&l.recipe, &l.infos, l.layers);
    app.say(Level::Info, format!("showing `{label}`"));
}

/// Keep the document shown (its recipe, history and baseline) in the
/// stash and make `j` the current one; `j`'s label.
fn leave_for(app: &mut App, j: usize) -> String {
    let Some(m) = &mut app.multi else {
        return String::new();
    };
    let cur = m.current;
    m.stash[cur] = Some(Stashed {
        doc: std::mem::take(&mut app.doc),
        history: std::mem::take(&mut app.history),
        saved: app.saved.take(),
    });
    m.current = j;
    m.file.label(j).to_string()
}

/// `y` in the build question: build `steps` in order, then show `target`.
pub fn start_builds(app: &mut App, target: usize, steps: Vec<usize>, fx: &mut Vec<Effect>) {
    if let Some(m) = &mut app.multi {
        m.queue = steps;
        m.then = Some(target);
    }
    build_next(app, fx);
}

/// Start the next queued build, or show the document waiting for them.
fn build_next(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(m) = &mut app.multi else {
        return;
    };
    if m.queue.is_empty() {
        if let Some(t) = m.then.take() {
            select(app, t, fx);
        }
        return;
    }
    let k = m.queue.remove(0);
    let left = m.queue.len();
    let out = m.file.work_path(k, &m.work);
    let work = m.work.clone();
    let label = m.file.label(k).to_string();
    let then = m.then.map(|t| m.file.label(t).to_string());
    if let Err(e) = std::fs::create_dir_all(&work) {
        stop_builds(app);
        app.say(
            Level::Error,
            format!(
                "cannot create {}: {}",
                work.display(),
                crate::fsutil::reason(&e)
            ),
        );
        return;
    }
    let recipe = run_recipe(app, k);
    let mut msg = format!("building `{label}` into {}", out.display());
    if let Some(t) = then {
        msg.push_str(&format!(" for `{t}`"));
    }
    if left > 0 {
        msg.push_str(&format!(" ({left} more after it)"));
    }
    super::update::start_merge(app, recipe, out, true, fx);
    app.say(Level::Info, msg);
}

/// Forget queued builds (after a failure or cancel).
fn stop_builds(app: &mut App) {
    if let Some(m) = &mut app.multi {
        m.queue.clear();
        m.then = None;
    }
}

/// A merge ended: carry on with the queued builds, or drop them (saying
/// so) when it failed.
pub fn merge_ended(app: &mut App, ok: bool, fx: &mut Vec<Effect>) {
    let Some(m) = &app.multi else {
        return;
    };
    if m.then.is_none() && m.queue.is_empty() {
        return;
    }
    if ok {
        build_next(app, fx);
    } else {
        let then = m.then.map(|t| m.file.label(t).to_string());
        stop_builds(app);
        if let Some(t) = then {
            let (level, was) = app.message.clone().unwrap_or((Level::Info, String::new()));
            app.say(level, format!("{was}; `{t}` not opened"));
        }
    }
}

/// The output folder `r` offers for the shown document of a
/// multi-document file: a named one's place in the working folder (the
/// documents that read it read it there); for the final merge, a new
/// folder named after the file (`chain.yml` → `chain-slerp`).
pub fn default_out(app: &App) -> Option<PathBuf> {
    let m = app.multi.as_ref()?;
    Some(match m.file.documents[m.current].name {
        Some(_) => m.file.work_path(m.current, &m.work),
        None => {
            let stem = m
                .file
                .path
                .file_stem()
                .map_or_else(|| "merge".into(), |s| s.to_string_lossy().into_owned());
            super::update::numbered(&app.work_dir, &format!("{stem}-{}", app.doc.method.name()))
        }
    })
}

/// Whether `out` is the shown document's own place in the working folder
/// (built over when it holds an earlier build of it).
pub fn is_own_output(app: &App, out: &std::path::Path) -> bool {
    app.multi.as_ref().is_some_and(|m| {
        m.file.documents[m.current].name.is_some() && m.file.work_path(m.current, &m.work) == out
    })
}

/// The label of the document other than the shown one that a merge of
/// `recipe` built (the Status panel names it), if any.
pub fn document_of(app: &App, recipe: &Recipe) -> Option<String> {
    let m = app.multi.as_ref()?;
    (0..m.file.documents.len())
        .filter(|&k| k != m.current)
        .find(|&k| run_recipe(app, k) == *recipe)
        .map(|k| m.file.label(k).to_string())
}

/// The title bar's part: `doc 2/3 mixed`.
pub fn title(app: &App) -> Option<String> {
    let m = app.multi.as_ref()?;
    Some(format!(
        "doc {}/{} {}",
        m.current + 1,
        m.file.documents.len(),
        m.file.label(m.current)
    ))
}

/// Draw the document picker.
pub fn draw_picker(f: &mut Frame, app: &App, theme: &Theme, area: Rect, cursor: usize) {
    let Some(m) = &app.multi else {
        return;
    };
    let st = app_statuses(app);
    let edited: Vec<usize> = edits(app).into_iter().map(|(k, _)| k).collect();
    // The box's inner width (as `boxed` makes it).
    let inner_w = area.width.saturating_sub(4).min(90).saturating_sub(2) as usize;
    let name_w = (0..m.file.documents.len())
        .map(|k| m.file.label(k).chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    let method_w = m
        .file
        .documents
        .iter()
        .map(|d| d.recipe.method.name().len())
        .chain((0..m.file.documents.len()).map(|k| run_recipe(app, k).method.name().len()))
        .max()
        .unwrap_or(0);
    let mut lines: Vec<Line> = vec![Line::styled(
        format!(
            "{} documents; built ones go to {}",
            m.file.documents.len(),
            m.work.display()
        ),
        theme.dim(),
    )];
    for (k, status) in st.iter().enumerate() {
        let here = if k == m.current { "*" } else { " " };
        // As the document stands: an edit may drop an input or switch
        // the method.
        let r = run_recipe(app, k);
        let needs = needs_of(&m.file, &m.work, &r);
        let reads = if needs.is_empty() {
            String::new()
        } else {
            format!(
                " · reads {}",
                needs
                    .iter()
                    .map(|&n| m.file.label(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mark = if edited.contains(&k) { "+" } else { " " };
        let text = format!(
            "{}{here}{mark} {:<name_w$} {:<method_w$} {}{}",
            k + 1,
            m.file.label(k),
            r.method.name(),
            status.word(),
            reads,
        );
        // One line per document, cut rather than wrapped.
        let text = if text.chars().count() > inner_w {
            let cut: String = text.chars().take(inner_w.saturating_sub(1)).collect();
            format!("{cut}{}", super::widgets::marks(app.ascii).cut)
        } else {
            text
        };
        let style = if k == cursor {
            theme.text().add_modifier(Modifier::REVERSED)
        } else {
            theme.text()
        };
        lines.push(Line::styled(text, style));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("Enter", theme.fg(theme.accent).add_modifier(Modifier::BOLD)),
        Span::styled(" or 1-9 shows it · * shown · + edited · ", theme.text()),
        Span::styled("Esc", theme.fg(theme.accent).add_modifier(Modifier::BOLD)),
        Span::styled(" stays", theme.text()),
    ]));
    boxed(f, app, theme, area, "Documents", lines, 90);
}

/// The lines of the build question.
pub fn build_lines<'a>(app: &App, theme: &Theme, target: usize, steps: &[usize]) -> Vec<Line<'a>> {
    let Some(m) = &app.multi else {
        return Vec::new();
    };
    let st = app_statuses(app);
    let mut lines = vec![Line::styled(
        format!(
            "`{}` is shown on the outputs of the documents it reads. First smelt builds {}, in order, into {}:",
            m.file.label(target),
            if steps.len() == 1 { "this one" } else { "these" },
            m.work.display()
        ),
        theme.text(),
    )];
    for &k in steps {
        lines.push(Line::styled(
            format!("  {}: {}", m.file.label(k), st[k].word()),
            theme.text(),
        ));
    }
    lines
}

/// What a merge into `out` will say of where its recipe comes from (see
/// [`crate::engine::Origin`]), when a multi-document file is open: the
/// document (the one whose place in the working folder `out` is, else
/// the one shown), the file with the workbench's edits, and the documents
/// it reads. Cheap: [`OriginOf::origin`] writes the file's text, off the
/// drawing thread (edited documents are written as mergekit YAML, which
/// reads a model's header).
pub fn origin(app: &App, out: &std::path::Path) -> Option<OriginOf> {
    let m = app.multi.as_ref()?;
    let doc = (0..m.file.documents.len())
        .find(|&j| m.file.documents[j].name.is_some() && m.file.work_path(j, &m.work) == out)
        .unwrap_or(m.current);
    let needs = needs_of(&m.file, &m.work, &run_recipe(app, doc));
    Some(OriginOf {
        file: m.file.clone(),
        work: m.work.clone(),
        doc,
        edits: edits(app),
        needs,
    })
}

/// See [`origin`].
#[derive(Clone, Debug, PartialEq)]
pub struct OriginOf {
    file: MultiRecipe,
    work: PathBuf,
    doc: usize,
    edits: Vec<(usize, Recipe)>,
    needs: Vec<usize>,
}

impl OriginOf {
    /// The note and the file's text (with the edits, when they can be
    /// written).
    pub fn origin(&self) -> crate::engine::Origin {
        let m = &self.file;
        let (file, unsaved) = match m.with_documents(&self.edits, &self.work) {
            Ok(t) if t != m.text => (t, " (with the workbench's unsaved edits)"),
            Ok(t) => (t, ""),
            Err(_) => (m.text.clone(), ""),
        };
        let mut note = format!(
            "Built by the smelt workbench from document `{}` (line {}) of the multi-document \
             recipe {}{unsaved}.",
            m.label(self.doc),
            m.documents[self.doc].line,
            crate::text::path(&m.path)
        );
        if !self.needs.is_empty() {
            note.push_str(&format!(
                " Its models under {} are that file's documents {}, built by the workbench and \
                 kept there; `smelt merge` of the whole file builds them again.",
                crate::text::path(&self.work),
                m.quoted_labels(&self.needs)
            ));
        }
        crate::engine::Origin { note, file }
    }
}
