//! A multi-document (mergekit-multi) file in the workbench, through the
//! job layer on the tiny f32 fixture models: it opens on a document it can
//! show, `d` picks another, what a document reads is built first (in
//! order, into the working folder beside the file, the same tensors as a
//! headless run), edits stay with their document, `r` rebuilds a named
//! document in place (what reads it goes out of date), and `s` writes the
//! whole file, other documents byte for byte.

#![cfg(feature = "tui")]

use crossbeam_channel::{unbounded, Receiver};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use smelt::model::Model;
use smelt::recipe::MultiRecipe;
use smelt::tui::jobs::Jobs;
use smelt::tui::multi::{statuses, Status};
use smelt::tui::state::{App, Confirm, Level, Modal, Panel, Purpose};
use smelt::tui::update::{update, Effect, Msg};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn key(app: &mut App, c: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

/// The three-document fixture (final merge, `mixed`, `tied`; `mixed`
/// reads `tied`, the final merge reads `mixed`) with absolute model
/// paths, written into `dir`.
fn chain(dir: &Path) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multi");
    let models = here.join("../mergekit/models");
    let text = std::fs::read_to_string(here.join("chain.yml"))
        .unwrap()
        .replace("../mergekit/models", models.to_str().unwrap());
    let p = dir.join("chain.yml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A temporary folder holding the chain, the job layer (its messages on
/// the receiver) and the workbench opened on the chain.
fn setup() -> (tempfile::TempDir, PathBuf, Jobs, Receiver<Msg>, App) {
    let d = tempfile::tempdir().unwrap();
    let file = chain(d.path());
    let (tx, rx) = unbounded();
    let jobs = Jobs::new(tx);
    let app = open(&jobs, &file);
    (d, file, jobs, rx, app)
}

/// The workbench opened on `file` as `smelt tui FILE` opens it.
fn open(jobs: &Jobs, file: &Path) -> App {
    let mut app = App::new(dir_of(file).join("data"), dir_of(file));
    let l = jobs
        .open_now(file, std::fs::read_to_string(file).unwrap(), &app.data_dir)
        .expect("the file opens");
    smelt::tui::update::opened(&mut app, l);
    app
}

/// The screen drawn `w`x`h`.
fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    let theme = smelt::tui::theme::Theme::default();
    t.draw(|f| smelt::tui::view::draw(f, app, &theme)).unwrap();
    format!("{}", t.backend())
}

/// The title line drawn `w` columns wide.
fn title_line(app: &App, w: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, 24)).unwrap();
    let theme = smelt::tui::theme::Theme::default();
    t.draw(|f| smelt::tui::view::draw(f, app, &theme)).unwrap();
    let b = t.backend().buffer();
    (0..w).map(|x| b[(x, 0)].symbol().to_string()).collect()
}

fn dir_of(p: &Path) -> PathBuf {
    p.parent().unwrap().to_path_buf()
}

fn message(app: &App) -> (Level, String) {
    app.message.clone().expect("a status line message")
}

fn current(app: &App) -> (usize, String) {
    let m = app.multi.as_ref().expect("a multi-document file is open");
    (m.current, m.file.label(m.current).to_string())
}

/// Hand `fx` to the jobs and feed every message back until `done` holds
/// (each message's effects handed on too).
fn drive(
    app: &mut App,
    jobs: &mut Jobs,
    rx: &Receiver<Msg>,
    fx: Vec<Effect>,
    done: impl Fn(&App) -> bool,
) {
    for e in fx {
        jobs.handle(e);
    }
    while !done(app) {
        let m = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a message from a job");
        for e in update(app, m) {
            jobs.handle(e);
        }
    }
}

fn statuses_now(app: &App) -> Vec<Status> {
    let m = app.multi.as_ref().unwrap();
    statuses(&m.file, &m.work, &|k| smelt::tui::multi::run_recipe(app, k))
}

/// Every tensor of two models equal.
fn same_tensors(a: &Path, b: &Path) {
    let (a, b) = (Model::open(a).unwrap(), Model::open(b).unwrap());
    assert_eq!(a.tensors().len(), b.tensors().len());
    for t in a.tensors() {
        assert_eq!(
            a.read_all_f32(&t.name).unwrap(),
            b.read_all_f32(&t.name).unwrap(),
            "{}",
            t.name
        );
    }
}

#[test]
fn a_multi_document_file_opens_on_a_document_it_can_show() {
    let (d, _file, _jobs, _rx, app) = setup();
    // Nothing is built: the final merge cannot be shown, `tied` (which
    // reads no other document, and runs first) is.
    assert_eq!(current(&app).1, "tied");
    assert_eq!(app.doc.method.name(), "ties");
    let (level, msg) = message(&app);
    assert_eq!(level, Level::Info);
    assert!(msg.contains("3 documents, showing `tied`"), "{msg}");
    assert_eq!(
        app.multi.as_ref().unwrap().work,
        d.path().join("chain.smelt-work")
    );
    assert_eq!(
        statuses_now(&app),
        vec![Status::Final, Status::Missing, Status::Missing]
    );
    assert!(!app.modified());
}

#[test]
fn showing_a_later_document_builds_what_it_reads_first() {
    let (d, file, mut jobs, rx, mut app) = setup();
    let work = d.path().join("chain.smelt-work");

    key(&mut app, KeyCode::Char('d'));
    assert_eq!(app.modal, Some(Modal::Documents(2)));
    key(&mut app, KeyCode::Home);
    key(&mut app, KeyCode::Enter);
    // The final merge reads `mixed`, which reads `tied`: both, in order.
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Build {
            target: 0,
            steps: vec![2, 1]
        }))
    );
    // Esc builds nothing.
    key(&mut app, KeyCode::Esc);
    assert!(app.modal.is_none());
    assert!(!work.exists());
    assert_eq!(current(&app).1, "tied");

    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('1'));
    let fx = key(&mut app, KeyCode::Char('y'));
    match fx.as_slice() {
        [Effect::StartMerge { out, force, .. }] => {
            assert_eq!(out, &work.join("tied"));
            assert!(force);
        }
        other => panic!("expected the first build: {other:?}"),
    }
    drive(&mut app, &mut jobs, &rx, fx, |a| current(a).0 == 0);
    assert_eq!(app.doc.method.name(), "slerp");
    // A two-model SLERP has one task vector: no histogram of agreement.
    drive(&mut app, &mut jobs, &rx, Vec::new(), |a| {
        screen(a, 80, 24).contains("[current]")
    });
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("one task vector") && !s.contains("1/1 agree") && !s.contains("conflict 0"),
        "{s}"
    );
    let st = statuses_now(&app);
    assert!(matches!(st[1], Status::Built(_)), "{st:?}");
    assert!(matches!(st[2], Status::Built(_)), "{st:?}");
    // The final merge's models are `mixed`'s output and ft2.
    let paths: Vec<PathBuf> = app.doc.slots.iter().map(|s| s.info.path.clone()).collect();
    assert!(paths.contains(&work.join("mixed")), "{paths:?}");
    // Each build says where its recipe comes from, and carries the file.
    let saved = std::fs::read_to_string(work.join("mixed/smelt-recipe.toml")).unwrap();
    let note = saved
        .lines()
        .take_while(|l| *l != "#")
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        note.starts_with("Built by the smelt workbench from document `mixed`")
            && note.contains("documents `tied`, built by the workbench and kept"),
        "{saved}"
    );
    assert!(saved.contains("#   name: mixed"), "{saved}");
    let card = std::fs::read_to_string(work.join("tied/README.md")).unwrap();
    assert!(
        card.contains("## Origin") && card.contains("document `tied`"),
        "{card}"
    );
    // Opened again, the file shows its final merge at once.
    assert_eq!(current(&open(&jobs, &file)).1, "final merge");
    // `r` on the final merge offers a new folder named after the file.
    key(&mut app, KeyCode::Char('r'));
    match &app.modal {
        Some(Modal::Prompt(p)) => {
            assert_eq!(PathBuf::from(&p.input.text), d.path().join("chain-slerp"))
        }
        other => panic!("no output prompt: {other:?}"),
    }
    key(&mut app, KeyCode::Esc);

    // The builds are what a headless run builds.
    let m = MultiRecipe::load(&file).unwrap().unwrap();
    let mixed = m.find("mixed").unwrap();
    let out = d.path().join("headless");
    let opts = smelt::engine::Options {
        out: out.clone(),
        force: false,
        threads: None,
        shard_size: smelt::model::DEFAULT_SHARD_SIZE,
        sync: false,
        allow_nonfinite: false,
        origin: None,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    smelt::engine::multi::run(
        &m,
        mixed,
        &d.path().join("headless.work"),
        &opts,
        &|_| {},
        &cancel,
    )
    .unwrap();
    same_tensors(&work.join("mixed"), &out);

    // Back to `tied`: its state comes back at once (no job).
    key(&mut app, KeyCode::Char('d'));
    let fx = key(&mut app, KeyCode::Char('3'));
    assert!(
        fx.iter().all(|e| !matches!(e, Effect::OpenDocument { .. })),
        "{fx:?}"
    );
    assert_eq!(current(&app).1, "tied");
    assert!(!app.modified());

    // `r` on a named document offers its place in the working folder and
    // builds over the earlier build; `mixed`, built before it, is then
    // out of date.
    let fx = key(&mut app, KeyCode::Char('r'));
    assert!(fx.is_empty());
    match &app.modal {
        Some(Modal::Prompt(p)) => {
            assert_eq!(p.purpose, Purpose::OutputFolder);
            assert_eq!(PathBuf::from(&p.input.text), work.join("tied"));
        }
        other => panic!("no output prompt: {other:?}"),
    }
    let fx = key(&mut app, KeyCode::Enter);
    assert!(
        matches!(fx.as_slice(), [Effect::StartMerge { force: true, .. }]),
        "{fx:?}"
    );
    drive(&mut app, &mut jobs, &rx, fx, |a| !a.merge_running());
    assert!(
        message(&app).1.contains("merge written to"),
        "{:?}",
        app.message
    );
    let st = statuses_now(&app);
    assert!(matches!(st[2], Status::Built(_)), "{st:?}");
    assert_eq!(st[1], Status::Stale("`tied` was built after it".into()));

    // So showing the final merge rebuilds `mixed` alone first.
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Build {
            target: 0,
            steps: vec![1]
        }))
    );
}

#[test]
fn edits_stay_with_their_document_and_save_writes_the_whole_file() {
    let d = tempfile::tempdir().unwrap();
    let file = chain(d.path());
    let before = std::fs::read_to_string(&file).unwrap();
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = open(&jobs, &file);
    let original = MultiRecipe::load(&file).unwrap().unwrap();

    // Edit `tied`: ft0's weight, on the Models panel.
    app.view.focus = Some(Panel::Models);
    let ft0 = app
        .doc
        .slots
        .iter()
        .position(|s| s.info.name == "ft0")
        .unwrap();
    app.view.model_cursor = ft0;
    key(&mut app, KeyCode::Right);
    assert!(app.modified());
    // At 80 columns, and at 60 (a split terminal), the title keeps the
    // document, the file's name and the unsaved mark together.
    for (w, mark) in [(80, "modified"), (60, "[+]")] {
        let title = title_line(&app, w);
        for part in ["doc 3/3 tied", "chain.yml", mark] {
            assert!(title.contains(part), "{part} in {title:?}");
        }
    }
    let edited = smelt::tui::multi::run_recipe(&app, 2);
    assert_ne!(
        edited,
        original.recipe_for(2, &d.path().join("chain.smelt-work"))
    );

    // Build `tied` as edited, show `mixed`, and come back: the edit is
    // still there, and `mixed` does not count as edited.
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('2'));
    let fx = key(&mut app, KeyCode::Char('y'));
    drive(&mut app, &mut jobs, &rx, fx, |a| current(a).0 == 1);
    assert_eq!(app.doc.method.name(), "task_arithmetic");
    assert!(app.modified(), "`tied`'s edit is unsaved");
    key(&mut app, KeyCode::Char('d'));
    match &app.modal {
        Some(Modal::Documents(1)) => {}
        other => panic!("no picker: {other:?}"),
    }
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(current(&app).1, "tied");
    assert_eq!(smelt::tui::multi::run_recipe(&app, 2), edited);
    // Undo history is the document's own.
    assert!(app.history.can_undo() > 0);

    // A multi-document file is saved whole, as YAML, in its folder.
    key(&mut app, KeyCode::Char('s'));
    let retype = |app: &mut App, s: &str| {
        update(
            app,
            Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
        );
        for c in s.chars() {
            key(app, KeyCode::Char(c));
        }
        key(app, KeyCode::Enter)
    };
    retype(&mut app, d.path().join("chain.toml").to_str().unwrap());
    match &app.modal {
        Some(Modal::Prompt(p)) => {
            let e = p.input.error.clone().unwrap_or_default();
            assert!(e.contains("saved together, as mergekit YAML"), "{e}");
        }
        other => panic!("the prompt should stay open: {other:?}"),
    }
    let elsewhere = d.path().join("sub");
    std::fs::create_dir(&elsewhere).unwrap();
    retype(&mut app, elsewhere.join("c.yml").to_str().unwrap());
    match &app.modal {
        Some(Modal::Prompt(p)) => {
            let e = p.input.error.clone().unwrap_or_default();
            assert!(e.contains("in its own folder"), "{e}");
        }
        other => panic!("the prompt should stay open: {other:?}"),
    }
    let fx = retype(&mut app, file.to_str().unwrap());
    assert!(
        matches!(fx.as_slice(), [Effect::Save { .. }]),
        "{fx:?} {:?}",
        app.modal
    );
    drive(&mut app, &mut jobs, &rx, fx, |a| a.tickets.save.is_none());
    assert!(
        message(&app).1.contains("recipe saved"),
        "{:?}",
        app.message
    );
    assert!(!app.modified());

    // The other documents and what separates them are as they were; the
    // edited one reads back as edited, its name kept.
    let after = std::fs::read_to_string(&file).unwrap();
    let m = MultiRecipe::load(&file).unwrap().unwrap();
    assert_eq!(m.documents.len(), 3);
    for k in [0, 1] {
        assert_eq!(
            m.document_text(k),
            original.document_text(k),
            "document {k}"
        );
    }
    let cut = |t: &str| t[..t.rfind("\n---\n").unwrap()].to_string();
    assert_eq!(cut(&after), cut(&before));
    assert_eq!(m.documents[2].name.as_deref(), Some("tied"));
    let work = d.path().join("chain.smelt-work");
    assert_eq!(m.recipe_for(2, &work), edited);
    // And the build of the edited `tied` is current against the file.
    let st = statuses(&m, &work, &|k| m.recipe_for(k, &work));
    assert!(matches!(st[2], Status::Built(_)), "{st:?}");
}

mod pty;

/// The real binary at 80x24 on the file: the title names the document, `d`
/// lists the three with what each reads, Enter on the final merge asks to
/// build the two it needs.
#[test]
fn pty_pick_a_document() {
    let d = tempfile::tempdir().unwrap();
    let file = chain(d.path());
    let args = ["tui", file.to_str().unwrap()];
    let mut tui = pty::Spawn::new(&args, d.path(), &d.path().join("data")).start();
    tui.wait("the first frame", 30, |s| s.contains("doc 3/3 tied"));
    tui.send("d");
    let s = tui.wait("the picker", 10, |s| s.contains("Documents"));
    assert!(s.contains("final merge"), "{s}");
    assert!(s.contains("reads tied"), "{s}");
    assert!(s.contains("not built"), "{s}");
    tui.send("1");
    tui.wait("the build question", 10, |s| s.contains("Build first?"));
    tui.send("y");
    tui.wait("the final merge shown", 120, |s| {
        s.contains("doc 1/3 final merge")
    });
    assert!(d
        .path()
        .join("chain.smelt-work/mixed/model.safetensors")
        .is_file());
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
}

/// A build that is cancelled (or fails) stops the queue: nothing after it
/// is built, the document asked for is not shown, and the status line
/// says both.
#[test]
fn a_cancelled_build_stops_the_queue() {
    let (_d, _file, _jobs, _rx, mut app) = setup();
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('1'));
    let fx = key(&mut app, KeyCode::Char('y'));
    let [Effect::StartMerge { ticket, .. }] = fx.as_slice() else {
        panic!("expected the first build: {fx:?}");
    };
    // `d` while it runs is refused.
    key(&mut app, KeyCode::Char('d'));
    let fx = key(&mut app, KeyCode::Char('2'));
    assert!(fx.is_empty(), "{fx:?}");
    assert!(
        message(&app).1.contains("a job is running"),
        "{:?}",
        app.message
    );
    let fx = update(
        &mut app,
        Msg::MergeDone {
            ticket: *ticket,
            result: Err(smelt::tui::state::JobError::Cancelled),
        },
    );
    assert!(
        fx.iter().all(|e| !matches!(e, Effect::StartMerge { .. })),
        "{fx:?}"
    );
    let msg = message(&app).1;
    assert!(msg.contains("merge cancelled"), "{msg}");
    assert!(msg.contains("`final merge` not opened"), "{msg}");
    let m = app.multi.as_ref().unwrap();
    assert!(m.queue.is_empty() && m.then.is_none());
    assert_eq!(current(&app).1, "tied");
}

/// What stops a build is said before anything is built: a model that is
/// not there (naming the document and its line), and a working folder that
/// holds someone else's files (for `d` and for `r`).
#[test]
fn problems_are_found_before_building() {
    let d = tempfile::tempdir().unwrap();
    let file = chain(d.path());
    let text = std::fs::read_to_string(&file).unwrap();
    let bad = d.path().join("bad.yml");
    std::fs::write(&bad, text.replace("models/ft2", "models/ft9")).unwrap();
    let (tx, _rx) = unbounded();
    let jobs = Jobs::new(tx);
    let mut app = open(&jobs, &bad);
    key(&mut app, KeyCode::Char('d'));
    let fx = key(&mut app, KeyCode::Char('1'));
    assert!(fx.is_empty(), "{fx:?}");
    assert!(app.modal.is_none(), "{:?}", app.modal);
    let (level, msg) = message(&app);
    assert_eq!(level, Level::Error);
    assert!(
        msg.contains("`final merge` (line") && msg.contains("ft9") && msg.contains("not there"),
        "{msg}"
    );
    assert!(!d.path().join("bad.smelt-work").exists(), "nothing built");

    // Someone's own files where `tied` would be built.
    let mut app = open(&jobs, &file);
    let mine = d.path().join("chain.smelt-work/tied");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('2'));
    let msg = message(&app).1;
    assert!(msg.contains("smelt did not write"), "{msg}");
    let fx = key(&mut app, KeyCode::Char('r'));
    assert!(fx.is_empty());
    let fx = key(&mut app, KeyCode::Enter);
    assert!(fx.is_empty(), "{fx:?}");
    match &app.modal {
        Some(Modal::Prompt(p)) => {
            let e = p.input.error.clone().unwrap_or_default();
            assert!(
                e.contains("cannot build over it") && e.contains("notes.txt"),
                "{e}"
            );
        }
        other => panic!("the prompt should stay open: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// The graph as the recipes stand: `mixed` with `tied` removed reads no
/// document, so the picker says so and showing the final merge rebuilds
/// `mixed` alone.
#[test]
fn an_edit_that_drops_an_input_changes_what_is_built() {
    let (d, _file, mut jobs, rx, mut app) = setup();
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('2'));
    let fx = key(&mut app, KeyCode::Char('y'));
    drive(&mut app, &mut jobs, &rx, fx, |a| current(a).0 == 1);
    let work = d.path().join("chain.smelt-work");
    let m = app.multi.as_ref().unwrap().file.clone();
    assert_eq!(
        smelt::tui::multi::needs_of(&m, &work, &smelt::tui::multi::run_recipe(&app, 1)),
        vec![2]
    );
    app.view.focus = Some(Panel::Models);
    app.view.model_cursor = app
        .doc
        .slots
        .iter()
        .position(|s| s.info.path == work.join("tied"))
        .expect("tied's output is a model of mixed");
    key(&mut app, KeyCode::Char('x'));
    assert!(
        smelt::tui::multi::needs_of(&m, &work, &smelt::tui::multi::run_recipe(&app, 1)).is_empty()
    );
    // Remove the build of `tied`: it is no longer needed.
    std::fs::remove_dir_all(work.join("tied")).unwrap();
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Build {
            target: 0,
            steps: vec![1]
        }))
    );
}

/// A kept recipe opened after a multi-document file: the file's documents
/// go (the recipe is one recipe, of the file it was kept from).
#[test]
fn a_recovered_recipe_opened_after_a_multi_document_file_is_one_recipe() {
    let (d, _file, jobs, _rx, mut app) = setup();
    assert!(app.multi.is_some());
    let dir = smelt::tui::recovery_dir(&app.data_dir);
    std::fs::create_dir_all(&dir).unwrap();
    let from = d.path().join("tied.toml");
    let kept = dir.join("tied-1.toml");
    let text = format!(
        "# recovered-from: {}\n{}",
        from.display(),
        smelt::tui::multi::run_recipe(&app, 2).to_toml(&dir)
    );
    std::fs::write(&kept, &text).unwrap();
    let l = jobs
        .open_now(&kept, text, &app.data_dir)
        .expect("the kept recipe opens");
    smelt::tui::update::opened(&mut app, l);
    assert!(app.multi.is_none(), "no documents of the earlier file");
    assert_eq!(app.recipe_path.as_deref(), Some(from.as_path()));
    assert!(app.modified());
}

/// A final merge reading two documents, one of which reads the other
/// (`tied` → `lin` → final, and `tied` → final): after the build every
/// document it reads is current, and the final merge shows at once.
#[test]
fn a_document_read_twice_is_built_once_and_stays_current() {
    let d = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models");
    let m = models.to_str().unwrap();
    let text = format!(
        "name: tied\nmerge_method: ties\nbase_model: {m}/base\nmodels:\n  \
         - {{model: {m}/ft0, parameters: {{density: 0.5, weight: 1.0}}}}\n  \
         - {{model: {m}/ft1, parameters: {{density: [0.2, 0.8, 0.5, 0.75], weight: 0.7}}}}\n\
         dtype: float32\nout_dtype: float32\n---\n\
         name: lin\nmerge_method: linear\nmodels:\n  \
         - {{model: tied, parameters: {{weight: 0.5}}}}\n  \
         - {{model: {m}/ft2, parameters: {{weight: 0.5}}}}\n---\n\
         merge_method: slerp\nbase_model: tied\nmodels: [{{model: tied}}, {{model: lin}}]\n\
         parameters: {{t: 0.3}}\ndtype: bfloat16\n"
    );
    let file = d.path().join("chain.yml");
    std::fs::write(&file, text).unwrap();
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = open(&jobs, &file);
    assert_eq!(current(&app).1, "tied");
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(
        app.modal,
        Some(Modal::Confirm(Confirm::Build {
            target: 2,
            steps: vec![0, 1]
        }))
    );
    let fx = key(&mut app, KeyCode::Char('y'));
    drive(&mut app, &mut jobs, &rx, fx, |a| {
        current(a).0 == 2 || a.modal.is_some()
    });
    let st = statuses_now(&app);
    assert!(matches!(st[0], Status::Built(_)), "{st:?}");
    assert!(matches!(st[1], Status::Built(_)), "{st:?}");
    assert_eq!(current(&app).1, "final merge", "{:?}", app.modal);
}

/// The file named by a relative path (as `smelt tui chain.yml` names it)
/// and its models by absolute ones: the builds' saved recipes (paths
/// relative to each build) name the same files, so after the build every
/// document is current (they once compared unequal, and the workbench
/// offered to rebuild `mixed` forever).
#[test]
fn builds_of_a_file_named_relatively_stay_current() {
    let d = tempfile::tempdir().unwrap();
    chain(d.path());
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.components().count() - 1;
    let mut rel = PathBuf::new();
    for _ in 0..up {
        rel.push("..");
    }
    rel.push(d.path().strip_prefix("/").unwrap());
    let file = rel.join("chain.yml");
    assert!(file.is_relative() && file.exists(), "{}", file.display());
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = open(&jobs, &file);
    key(&mut app, KeyCode::Char('d'));
    key(&mut app, KeyCode::Char('1'));
    let fx = key(&mut app, KeyCode::Char('y'));
    drive(&mut app, &mut jobs, &rx, fx, |a| {
        current(a).0 == 0 || a.modal.is_some()
    });
    assert_eq!(current(&app).1, "final merge", "{:?}", app.modal);
    let st = statuses_now(&app);
    assert!(matches!(st[1], Status::Built(_)), "{st:?}");
    assert!(matches!(st[2], Status::Built(_)), "{st:?}");
}

/// Saving over a multi-document file whose edited documents hold comments
/// asks first, and says what goes: only the comments inside the edited
/// documents (the rest of the file is kept as it is).
#[test]
fn the_overwrite_question_for_a_multi_document_file_says_what_goes() {
    let (_d, file, _jobs, _rx, mut app) = setup();
    app.modal = Some(Modal::Confirm(Confirm::Overwrite {
        path: file.clone(),
        why: smelt::tui::state::Overwrite::RewritesYaml,
        then: None,
    }));
    let s = screen(&app, 120, 30).replace(['║', '\n', '"'], " ");
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        s.contains("the edited documents are written afresh as mergekit YAML")
            && s.contains("The other documents, and the comments heading each, are kept"),
        "{s}"
    );
    assert!(!s.contains("its comments and layout go"), "{s}");
}

/// A multi-document file whose first document names a missing model does
/// not open, and says which document (and line) names it.
#[test]
fn a_missing_model_names_its_document() {
    let d = tempfile::tempdir().unwrap();
    let file = chain(d.path());
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("models/ft0", "models/ft0-typo");
    std::fs::write(&file, &text).unwrap();
    let (tx, _rx) = unbounded();
    let jobs = Jobs::new(tx);
    let e = match jobs.open_now(&file, text, &dir_of(&file).join("data")) {
        Ok(_) => panic!("opened with a missing model"),
        Err(e) => e.to_string(),
    };
    let line = MultiRecipe::load(&file).unwrap().unwrap().documents[2].line;
    assert!(
        e.contains(&format!("document `tied` (line {line})")) && e.contains("ft0-typo"),
        "{e}"
    );
}

/// Edits to a multi-document file kept when a session ends (SIGHUP) are
/// the whole file, as `s` would have saved it: opened again (`o`), it is
/// that file, its relative model paths and working folder its own, the
/// edit unsaved; `s` writes it over the file.
#[test]
fn kept_edits_of_a_multi_document_file_open_as_that_file() {
    let d = tempfile::tempdir().unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // The fixture's own layout, so its `../mergekit/models` paths hold.
    let models = d.path().join("mergekit/models");
    std::fs::create_dir_all(&models).unwrap();
    for m in ["base", "ft0", "ft1", "ft2"] {
        std::fs::create_dir(models.join(m)).unwrap();
        for e in std::fs::read_dir(here.join("mergekit/models").join(m)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), models.join(m).join(e.file_name())).unwrap();
        }
    }
    std::fs::create_dir(d.path().join("multi")).unwrap();
    let file = d.path().join("multi/chain.yml");
    std::fs::copy(here.join("multi/chain.yml"), &file).unwrap();
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = open(&jobs, &file);
    assert_eq!(current(&app).1, "tied");
    app.view.focus = Some(Panel::Models);
    app.view.model_cursor = app
        .doc
        .slots
        .iter()
        .position(|s| s.info.name == "ft0")
        .unwrap();
    key(&mut app, KeyCode::Right);
    let edited = smelt::tui::multi::run_recipe(&app, 2);

    let kept = smelt::tui::recover(&app);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].extension().unwrap(), "yml");
    let text = std::fs::read_to_string(&kept[0]).unwrap();
    assert!(text.contains("../mergekit/models/ft1"), "{text}");
    let body = smelt::tui::without_recovery_note(&text).to_string();
    assert!(body.len() < text.len() && body.starts_with("# Three documents"));

    // A new session: offered at start, opened with `o` and Enter.
    let mut app = App::new(app.data_dir.clone(), d.path().to_path_buf());
    app.recovered = Some(kept[0].clone());
    let fx = update(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::Char('o'), KeyModifiers::NONE)),
    );
    assert!(fx.is_empty(), "{fx:?}");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(matches!(fx.as_slice(), [Effect::Open { .. }]), "{fx:?}");
    drive(&mut app, &mut jobs, &rx, fx, |a| a.tickets.open.is_none());
    assert_eq!(app.recipe_path.as_deref(), Some(file.as_path()));
    let m = app.multi.as_ref().expect("the file's documents");
    assert_eq!(m.file.path, file);
    assert_eq!(m.work, d.path().join("multi/chain.smelt-work"));
    assert_eq!(smelt::tui::multi::run_recipe(&app, 2), edited);
    assert!(app.modified(), "the kept edits are not saved yet");
    assert!(!kept[0].exists(), "offered no more");

    key(&mut app, KeyCode::Char('s'));
    let fx = key(&mut app, KeyCode::Enter);
    let fx = match &app.modal {
        // Saving over the file asks first.
        Some(Modal::Confirm(_)) => key(&mut app, KeyCode::Char('y')),
        _ => fx,
    };
    drive(&mut app, &mut jobs, &rx, fx, |a| a.tickets.save.is_none());
    assert!(!app.modified(), "{:?}", app.message);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), body);
    let m = MultiRecipe::load(&file).unwrap().unwrap();
    assert_eq!(
        m.recipe_for(2, &d.path().join("multi/chain.smelt-work")),
        edited
    );
}
