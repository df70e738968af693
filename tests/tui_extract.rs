//! The workbench's `L` on Models: a LoRA extraction as a background job
//! (through the job layer, on the tiny f32 fixture models, copied to a
//! temporary folder so the default output lands beside them there): the
//! prompts, the refusals on the status line, progress, the overall error
//! reported at the end, and cancelling.

#![cfg(feature = "tui")]

use crossbeam_channel::{unbounded, Receiver};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use smelt::recipe::Recipe;
use smelt::tui::jobs::Jobs;
use smelt::tui::state::{App, JobError, Level, Modal, Panel, Purpose, Ticket};
use smelt::tui::update::{update, Effect, Msg};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn recv(rx: &Receiver<Msg>) -> Msg {
    rx.recv_timeout(Duration::from_secs(120))
        .expect("a message from a job")
}

fn key(app: &mut App, c: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Replace the open prompt's text with `s`.
fn retype(app: &mut App, s: &str) {
    update(
        app,
        Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    typed(app, s);
}

/// base and ft0 of the parity fixtures, copied into `dir`.
fn copy_models(dir: &Path) -> (PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models");
    let mut v = Vec::new();
    for name in ["base", "ft0"] {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(src.join(name)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        v.push(to);
    }
    (v[0].clone(), v[1].clone())
}

/// The workbench on ft0 over `base` (if any), Models focused, the cursor
/// on the model named `on`.
fn app_on(jobs: &Jobs, ft0: &Path, base: Option<&Path>, on: &str) -> App {
    let r = Recipe::for_models(vec![ft0.to_path_buf()], base.map(Path::to_path_buf));
    // Started elsewhere than beside the models.
    let here = ft0.parent().unwrap().join("here");
    std::fs::create_dir_all(&here).unwrap();
    let mut app = App::new(PathBuf::from("/nonexistent-data"), here);
    let l = jobs.load_now(r, None, None).expect("fixtures open");
    app.load(&l.recipe, &l.infos, l.layers);
    app.view.focus = Some(Panel::Models);
    app.view.model_cursor = app
        .doc
        .slots
        .iter()
        .position(|s| s.info.name == on)
        .expect("the model is loaded");
    app
}

fn message(app: &App) -> (Level, String) {
    app.message.clone().expect("a status line message")
}

fn prompt(app: &App) -> (Purpose, String, Option<String>) {
    match &app.modal {
        Some(Modal::Prompt(p)) => (
            p.purpose.clone(),
            p.input.text.clone(),
            p.input.error.clone(),
        ),
        other => panic!("no prompt open: {other:?}"),
    }
}

/// Drive the job to its end, feeding every message to the state; returns
/// how many progress events arrived.
fn finish(app: &mut App, rx: &Receiver<Msg>) -> usize {
    let mut events = 0;
    loop {
        match recv(rx) {
            m @ Msg::Extract { .. } => {
                events += 1;
                update(app, m);
            }
            m @ Msg::ExtractDone { .. } => {
                update(app, m);
                return events;
            }
            _ => {}
        }
    }
}

#[test]
fn extraction_runs_in_the_background_and_reports_the_error() {
    let d = tempfile::tempdir().unwrap();
    let (base, ft0) = copy_models(d.path());
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = app_on(&jobs, &ft0, Some(&base), "ft0");

    key(&mut app, KeyCode::Char('L'));
    let (purpose, text, _) = prompt(&app);
    assert_eq!(purpose, Purpose::ExtractRank { model: ft0.clone() });
    assert_eq!(text, "128", "the CLI's default rank is offered");
    // The rank, then extract-lora's options as on its command line.
    retype(&mut app, "4 --embed-lora --sv-epsilon=1e-9 -e 'v_proj$'");
    key(&mut app, KeyCode::Enter);
    let (purpose, text, _) = prompt(&app);
    let mut want = smelt::extract::Options::new(ft0.to_string_lossy(), "", "");
    want.max_rank = 4;
    want.embed_lora = true;
    want.sv_epsilon = 1e-9;
    want.exclude = vec!["v_proj$".into()];
    assert_eq!(
        purpose,
        Purpose::ExtractOut {
            model: ft0.clone(),
            opts: Box::new(want.clone()),
        }
    );
    let out = d.path().join("here/ft0-lora-r4");
    assert_eq!(text, out.display().to_string(), "in the work folder");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(app.modal.is_none());
    assert!(app.extract_running());
    want.base = base.to_string_lossy().into_owned();
    want.out = out.clone();
    match &fx[..] {
        [Effect::StartExtract { opts, .. }] => assert_eq!(**opts, want),
        other => panic!("{other:?}"),
    }
    // While it runs, neither a merge nor a second extraction starts.
    key(&mut app, KeyCode::Char('r'));
    assert!(
        message(&app).1.contains("extraction is running"),
        "{:?}",
        app.message
    );
    assert!(app.modal.is_none());
    key(&mut app, KeyCode::Char('L'));
    assert!(
        message(&app).1.contains("already running"),
        "{:?}",
        app.message
    );
    for e in fx {
        jobs.handle(e);
    }
    let events = finish(&mut app, &rx);
    assert!(events > 0, "progress arrived");
    assert!(!app.extract_running());
    let (level, msg) = message(&app);
    assert_eq!(level, Level::Info, "{msg}");
    assert!(msg.contains("relative error 0."), "{msg}");
    assert!(msg.contains(out.to_str().unwrap()), "{msg}");
    assert!(out.join("adapter_model.safetensors").is_file(), "{msg}");
    assert!(out.join("adapter_config.json").is_file(), "{msg}");
    let cfg = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    assert!(cfg.contains("\"r\": 4") || cfg.contains("\"r\":4"), "{cfg}");
    // The options reached the extraction: embeddings factored, v_proj left out.
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let targets: Vec<&str> = cfg["target_modules"]
        .as_array()
        .expect("target_modules")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(targets.contains(&"embed_tokens"), "{cfg}");
    assert!(
        targets.contains(&"q_proj") && !targets.contains(&"v_proj"),
        "{cfg}"
    );
    // Status keeps the end in view (the message line goes with the next
    // key): the error, the folder and the rank, at 80x24.
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    let theme = smelt::tui::theme::Theme::default();
    t.draw(|f| smelt::tui::view::draw(f, &app, &theme)).unwrap();
    let s = format!("{}", t.backend());
    assert!(s.contains("LoRA of ft0: error 0."), "{s}");
    assert!(s.contains("ft0-lora-r4"), "{s}");

    // Again: the offered folder is a new one; the existing one is refused.
    key(&mut app, KeyCode::Char('L'));
    retype(&mut app, "4");
    key(&mut app, KeyCode::Enter);
    let (_, text, _) = prompt(&app);
    assert_eq!(
        text,
        d.path().join("here/ft0-lora-r4-2").display().to_string()
    );
    retype(&mut app, out.to_str().unwrap());
    let fx = key(&mut app, KeyCode::Enter);
    assert!(fx.is_empty(), "{fx:?}");
    let (_, _, err) = prompt(&app);
    assert!(err.unwrap().contains("exists"));
    // Inside a model's folder is refused too.
    retype(&mut app, ft0.join("lora").to_str().unwrap());
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    let (_, _, err) = prompt(&app);
    assert!(err.unwrap().contains("inside the folder of the model"));
    key(&mut app, KeyCode::Esc);
    assert!(app.modal.is_none());
    assert!(!app.extract_running());
}

#[test]
fn refusals_say_why_on_the_status_line() {
    let d = tempfile::tempdir().unwrap();
    let (base, ft0) = copy_models(d.path());
    let (tx, _rx) = unbounded();
    let jobs = Jobs::new(tx);

    // No base model.
    let mut app = app_on(&jobs, &ft0, None, "ft0");
    key(&mut app, KeyCode::Char('L'));
    assert!(app.modal.is_none());
    let (level, msg) = message(&app);
    assert_eq!(level, Level::Error);
    assert!(msg.contains("no base model"), "{msg}");

    // The base selected.
    let mut app = app_on(&jobs, &ft0, Some(&base), "base");
    key(&mut app, KeyCode::Char('L'));
    assert!(app.modal.is_none());
    assert!(
        message(&app).1.contains("base is the base"),
        "{:?}",
        app.message
    );

    // Another panel focused.
    let mut app = app_on(&jobs, &ft0, Some(&base), "ft0");
    app.view.focus = Some(Panel::Layers);
    key(&mut app, KeyCode::Char('L'));
    assert!(app.modal.is_none());
    assert!(message(&app).1.contains("Models"), "{:?}", app.message);

    // Garbage ranks: the prompt stays, and the status line says why.
    app.view.focus = Some(Panel::Models);
    key(&mut app, KeyCode::Char('L'));
    for bad in ["abc", "0", "-3", "1.5", "99999999999999999999999"] {
        retype(&mut app, bad);
        assert!(key(&mut app, KeyCode::Enter).is_empty());
        let (purpose, _, err) = prompt(&app);
        assert!(matches!(purpose, Purpose::ExtractRank { .. }));
        assert!(err.unwrap().contains("not a rank"), "{bad}");
        let (level, msg) = message(&app);
        assert_eq!(level, Level::Error);
        assert!(msg.contains("not a rank"), "{msg}");
    }
    // Options that are wrong, each named.
    for (bad, why) in [
        ("4 --bogus", "`--bogus` is not an extract-lora option"),
        ("4 --sv-epsilon", "--sv-epsilon needs a value"),
        (
            "4 --sv-epsilon -1",
            "--sv-epsilon `-1`: give a number of 0 or more",
        ),
        ("4 --sv-epsilon nan", "--sv-epsilon `nan`"),
        ("4 -e (", "--exclude-regex `(`"),
        ("4 -i 'a", "a quote is not closed"),
        ("4 5", "`5`: the rank is given already"),
        ("4 --embed-lora=yes", "--embed-lora takes no value"),
        ("4 --max-rank 0", "`0` is not a rank"),
    ] {
        retype(&mut app, bad);
        assert!(key(&mut app, KeyCode::Enter).is_empty(), "{bad}");
        let (purpose, _, err) = prompt(&app);
        assert!(matches!(purpose, Purpose::ExtractRank { .. }), "{bad}");
        let err = err.unwrap();
        assert!(err.contains(why), "{bad}: {err}");
    }
    key(&mut app, KeyCode::Esc);
    assert!(app.modal.is_none());
    // The two models and the (empty) work folder.
    assert!(
        std::fs::read_dir(d.path()).unwrap().count() == 3,
        "nothing written"
    );
    assert!(std::fs::read_dir(d.path().join("here"))
        .unwrap()
        .next()
        .is_none());

    // A merge running (started in the state only): refused, not queued.
    key(&mut app, KeyCode::Char('r'));
    let fx = key(&mut app, KeyCode::Enter);
    assert!(matches!(&fx[..], [Effect::StartMerge { .. }]), "{fx:?}");
    assert!(app.merge_running());
    key(&mut app, KeyCode::Char('L'));
    assert!(app.modal.is_none());
    assert!(
        message(&app).1.contains("a merge is running"),
        "{:?}",
        app.message
    );
}

#[test]
fn cancelling_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (base, ft0) = copy_models(d.path());
    let (tx, rx) = unbounded();
    let mut jobs = Jobs::new(tx);
    let mut app = app_on(&jobs, &ft0, Some(&base), "ft0");
    key(&mut app, KeyCode::Char('L'));
    key(&mut app, KeyCode::Enter);
    let out = d.path().join("here/ft0-lora-r128");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(matches!(&fx[..], [Effect::StartExtract { .. }]), "{fx:?}");
    for e in fx {
        jobs.handle(e);
    }
    // `c` asks the job to stop at once.
    let fx = key(&mut app, KeyCode::Char('c'));
    assert_eq!(fx, vec![Effect::CancelExtract]);
    assert!(app.extract.as_ref().unwrap().cancelling);
    for e in fx {
        jobs.handle(e);
    }
    finish(&mut app, &rx);
    assert!(!app.extract_running());
    let msg = message(&app).1;
    // Cancelled before it could finish (nearly always), or finished
    // first: never a failure, never a partial folder.
    if msg.contains("cancelled") {
        assert!(msg.contains("nothing was written"), "{msg}");
        assert!(!out.exists(), "{msg}");
    } else {
        assert!(msg.contains("LoRA done"), "{msg}");
        assert!(out.join("adapter_model.safetensors").is_file());
    }
    let litter: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");

    // A cancel that the state sees end: the status line says so.
    let t = Ticket(app.tickets.next + 1);
    key(&mut app, KeyCode::Char('L'));
    key(&mut app, KeyCode::Enter);
    let fx = key(&mut app, KeyCode::Enter);
    let Some(Effect::StartExtract { ticket, opts }) = fx.first().cloned() else {
        panic!("{fx:?}")
    };
    let out = opts.out.clone();
    assert_eq!(ticket, t);
    // A stale ticket's end is ignored (latest wins).
    update(
        &mut app,
        Msg::ExtractDone {
            ticket: Ticket(1),
            result: Err(JobError::Cancelled),
        },
    );
    assert!(app.extract_running());
    update(
        &mut app,
        Msg::ExtractDone {
            ticket,
            result: Err(JobError::Cancelled),
        },
    );
    assert!(!app.extract_running());
    let msg = message(&app).1;
    assert!(msg.contains("cancelled; nothing was written"), "{msg}");
    assert!(msg.contains(out.to_str().unwrap()), "{msg}");
    // With nothing running, `c` says so.
    key(&mut app, KeyCode::Char('c'));
    assert!(message(&app).1.contains("no merge or extraction"));
}

mod pty;

/// The real binary at 80x24: Tab to Models, `L` on the fine-tune, a
/// garbage rank refused, rank 4 and a folder typed, the finished status
/// line with the error and the folder; then the adapter is there.
#[test]
fn pty_extract_a_lora_from_the_models_panel() {
    let d = tempfile::tempdir().unwrap();
    let (base, ft0) = copy_models(d.path());
    let args = [
        "tui",
        ft0.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
    ];
    let mut tui = pty::Spawn::new(&args, d.path(), &d.path().join("data")).start();
    tui.wait("the first frame", 30, |s| s.contains("Models"));
    // Shift-Tab from Layers to Models; the base is the first row, ft0
    // the second.
    tui.send("\x1b[Z");
    tui.wait("the Models footer", 10, |s| s.contains("L LoRA"));
    tui.send("j");
    tui.send("L");
    tui.wait("the rank prompt", 10, |s| {
        s.contains("LoRA of ft0") && s.contains("128")
    });
    tui.send("\x15abc\r");
    tui.wait("garbage refused", 10, |s| s.contains("not a rank"));
    tui.send("\x154\r");
    tui.wait("the folder prompt", 10, |s| s.contains("rank-4 LoRA into"));
    let out = d.path().join("my-adapter");
    tui.send("\x15");
    tui.send(out.to_str().unwrap());
    tui.send("\r");
    let done = tui.wait("the extraction to finish", 120, |s| {
        s.contains("LoRA done") || s.contains("failed")
    });
    assert!(done.contains("relative error"), "{done}");
    assert!(out.join("adapter_model.safetensors").is_file(), "{done}");
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
}

/// The LoRA prompt takes every factoring option of `smelt extract-lora`:
/// the two lists are held together here, so an option added to the CLI
/// is not silently missing from the workbench.
#[test]
fn the_prompt_takes_every_factoring_option_of_the_cli() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(["extract-lora", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    // Options with prompts or keys of their own in the workbench.
    let elsewhere = [
        "--model",
        "--base-model",
        "--out-path",
        "--force",
        "--quiet",
        "--json",
        "--no-sync",
        "--help",
    ];
    let mut cli: Vec<(String, bool)> = help
        .lines()
        .filter_map(|l| {
            // Option lines start with a dash (`-i, --include-regex <REGEX>`).
            let l = l.trim_start();
            if !l.starts_with('-') {
                return None;
            }
            let at = l.find("--")?;
            let rest = &l[at..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let takes = rest[name.len()..].starts_with(" <");
            Some((name, takes))
        })
        .filter(|(n, _)| !elsewhere.contains(&n.as_str()))
        .collect();
    cli.sort();
    let mut tui: Vec<(String, bool)> = smelt::tui::lora::OPTIONS
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .collect();
    tui.sort();
    assert_eq!(tui, cli, "{help}");
}
