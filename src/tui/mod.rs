//! The workbench: a ratatui front end over the engine.
//!
//! Shaped like gitui: [`state::App`] is plain data (the edited recipe is a
//! [`doc::Doc`] with an undo [`history`]); [`update::update`] turns keys,
//! signals and job results into new state plus [`update::Effect`]s;
//! [`view::draw`] renders the state, one widget per panel
//! ([`panels`]), with one text-input component ([`input`]) and the
//! dialogs ([`dialog`]); [`jobs`] runs every engine call on background
//! threads. The event loop here glues them together, draws only when the
//! state is dirty (at most ~10 times a second while a merge reports
//! progress), and restores the terminal on quit, on error, on panic and on
//! SIGHUP/SIGTERM (a running merge is cancelled first, its partial folder
//! removed).

pub mod demo;
pub mod dialog;
pub mod doc;
pub mod history;
pub mod input;
pub mod jobs;
pub mod keys;
pub mod layout;
pub mod lora;
pub mod multi;
pub mod panels;
pub mod state;
pub mod theme;
pub mod update;
pub mod view;
pub mod widgets;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event as TermEvent,
};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, BeginSynchronizedUpdate, EndSynchronizedUpdate,
    EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute, queue};
use ratatui::Terminal;
use state::{App, Exit, Level};
use std::io::{stdout, IsTerminal, Stdout, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use theme::Theme;
use update::{update, Effect, Msg};

/// How `smelt` / `smelt tui` was asked to start.
#[derive(Clone, Debug, Default)]
pub struct TuiOptions {
    /// A recipe to open (`smelt tui RECIPE`).
    pub recipe: Option<PathBuf>,
    /// Models to open (`smelt tui MODEL...`), with `base` or without;
    /// ignored when `recipe` is set.
    pub models: Vec<PathBuf>,
    /// The base model, when opening models (`--base`).
    pub base: Option<PathBuf>,
    /// `--theme NAME|PATH`.
    pub theme: Option<String>,
    /// `--mouse`: capture the mouse (off by default so text selection works).
    pub mouse: bool,
    /// `--ascii`: no box-drawing or block glyphs.
    pub ascii: bool,
}

/// Why the workbench could not run.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// What the user named cannot be opened (exit 2).
    #[error("{0}")]
    Input(String),
    /// Started without a terminal (exit 2).
    #[error(
        "the workbench needs a terminal, and {0} is not one (started from a pipe, \
         a cron job or a script?). For headless use: `smelt merge RECIPE --out DIR` \
         runs a recipe, `smelt analyze RECIPE` prints the sign-agreement statistics, \
         `smelt recipe check RECIPE` validates one"
    )]
    NoTerminal(&'static str),
    /// The terminal failed while running (exit 1).
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// The recipe `smelt` opens with no arguments, inside the sample folder.
pub const DEFAULT_SAMPLE_RECIPE: &str = "recipes/llama-ties.toml";

/// Environment variable overriding where recipes are saved by default.
pub const DATA_DIR_ENV: &str = "SMELT_DATA_DIR";

/// Where recipes go by default: `$SMELT_DATA_DIR`, else the user data dir.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    directories::ProjectDirs::from("", "", "smelt")
        .map_or_else(|| PathBuf::from(".smelt"), |p| p.data_dir().to_path_buf())
}

/// The user config dir (for themes).
pub fn config_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "smelt").map(|p| p.config_dir().to_path_buf())
}

/// Where the bundled sample models are: `./sample_models`, else next to the
/// crate the binary was built from.
pub fn sample_root() -> PathBuf {
    let here = PathBuf::from("sample_models");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models")
}

static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);
static MOUSE_ON: AtomicBool = AtomicBool::new(false);

/// Put the terminal back: cooked mode, main screen, cursor, no mouse.
/// Safe to call twice, and on a terminal that has gone away (errors are
/// ignored: after SIGHUP there is nobody to show them to).
fn restore_terminal() {
    if TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = stdout();
        if MOUSE_ON.load(Ordering::SeqCst) {
            let _ = execute!(out, DisableMouseCapture);
        }
        let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
        let _ = disable_raw_mode();
    }
}

/// Restores the terminal when dropped, so `?` and early returns do too.
struct TermGuard;
impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn setup_terminal(
    mouse: bool,
    support: theme::ColorSupport,
) -> std::io::Result<Terminal<CrosstermBackend<theme::SgrWriter<Stdout>>>> {
    enable_raw_mode()?;
    TERMINAL_ACTIVE.store(true, Ordering::SeqCst);
    let mut out = stdout();
    execute!(out, EnterAlternateScreen, cursor::Hide)?;
    if mouse {
        execute!(out, EnableMouseCapture)?;
        MOUSE_ON.store(true, Ordering::SeqCst);
    }
    Terminal::new(CrosstermBackend::new(theme::SgrWriter::new(out, support)))
}

static UI_THREAD: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

/// A panic on the UI thread restores the terminal before the message is
/// printed. Panics anywhere else (job threads, the engine's rayon workers)
/// are caught by the job layer and shown as errors on screen, so while the
/// terminal is ours they print nothing over it.
fn install_panic_hook() {
    let _ = UI_THREAD.set(std::thread::current().id());
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_ui = UI_THREAD.get() == Some(&std::thread::current().id());
        if !on_ui && TERMINAL_ACTIVE.load(Ordering::SeqCst) {
            return;
        }
        restore_terminal();
        prev(info);
    }));
}

/// Signals that end the workbench cleanly: the SSH connection dropping
/// (SIGHUP), `kill` (SIGTERM), SIGINT and SIGQUIT sent by another process
/// (in raw mode Ctrl-C is a key, not a signal).
const EXIT_SIGNALS: &[i32] = &[
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGQUIT,
];

/// Forward exit signals into the event loop.
fn signal_thread(tx: Sender<Msg>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(EXIT_SIGNALS)?;
    std::thread::Builder::new()
        .name("smelt-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Msg::Signal(sig)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Where recipes of sessions ended by a signal are kept.
pub fn recovery_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("recovered")
}

/// The line of a recovered recipe naming the file it was opened from.
const RECOVERED_FROM: &str = "# recovered-from: ";

/// The first line of a recovered recipe.
const RECOVERED_NOTE: &str = "# smelt: unsaved changes, kept when a session ended";

/// A recovered recipe's text without the two lines [`recover`] put on
/// top (the note and the file it was opened from); any other text whole.
pub fn without_recovery_note(text: &str) -> &str {
    let Some(rest) = text
        .strip_prefix(RECOVERED_NOTE)
        .and_then(|t| t.strip_prefix('\n'))
    else {
        return text;
    };
    match rest
        .strip_prefix(RECOVERED_FROM)
        .and_then(|t| t.split_once('\n'))
    {
        Some((_, body)) => body,
        None => text,
    }
}

/// The two lines heading a recovered recipe, when `from` (the file it was
/// opened from) can be named on one line.
fn recovery_note(from: Option<&Path>) -> Option<String> {
    let from = std::path::absolute(from?).ok()?;
    let from = from.to_str().filter(|f| !f.contains('\n'))?;
    Some(format!("{RECOVERED_NOTE}\n{RECOVERED_FROM}{from}\n"))
}

/// The file a recipe kept in the recovery folder was opened from, when
/// `path` is such a recipe and says so (a recipe kept when a session
/// ended by a signal, with the file it was opened from).
pub fn recovered_from(data_dir: &Path, path: &Path, text: &str) -> Option<PathBuf> {
    if !path.starts_with(recovery_dir(data_dir)) {
        return None;
    }
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(RECOVERED_FROM))
        .map(PathBuf::from)
}

/// Keep the unsaved edits in the recovery folder, where the next session
/// offers them (`o`); the files written. A recipe is kept as TOML headed
/// by the file it was opened from; a multi-document file as the whole
/// file, as `s` would have saved it, headed likewise.
pub fn recover(app: &App) -> Vec<PathBuf> {
    let dir = recovery_dir(&app.data_dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return Vec::new();
    }
    let stem = app
        .recipe_path
        .as_deref()
        .and_then(|p| p.file_stem())
        .map_or_else(|| app.family(), |s| s.to_string_lossy().into_owned());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let note = recovery_note(app.recipe_path.as_deref());
    // A multi-document file: the whole file as `s` would save it (read
    // back by `o` as that file, whose relative paths it keeps); else, when
    // the edits cannot be written as the file's YAML, each edited document
    // as a recipe of its own (`STEM-NAME-SECS.toml`), its references to
    // other documents being their built outputs.
    if let Some(m) = &app.multi {
        let edits = multi::edits(app);
        if let (Some(note), Ok(text)) = (&note, m.file.with_documents(&edits, &m.work)) {
            let path = dir.join(format!("{stem}-{secs}.yml"));
            let text = format!("{note}{text}");
            return match crate::fsutil::write_atomic(&path, text.as_bytes()) {
                Ok(()) => vec![path],
                Err(_) => Vec::new(),
            };
        }
        let mut written = Vec::new();
        for (k, r) in edits {
            let name = m.file.label(k).replace(' ', "-");
            let path = dir.join(format!("{stem}-{name}-{secs}.toml"));
            if crate::fsutil::write_atomic(&path, r.to_toml(&dir).as_bytes()).is_ok() {
                written.push(path);
            }
        }
        return written;
    }
    let path = dir.join(format!("{stem}-{secs}.toml"));
    // Read back by `o`, which then saves to that file again.
    let mut text = note.unwrap_or_default();
    text.push_str(&app.doc.to_recipe().to_toml(&dir));
    match crate::fsutil::write_atomic(&path, text.as_bytes()) {
        Ok(()) => vec![path],
        Err(_) => Vec::new(),
    }
}

/// Recipes kept from sessions that ended by a signal: each with when it
/// was written and the file it was opened from.
fn recovered(data_dir: &Path) -> Vec<Kept> {
    std::fs::read_dir(recovery_dir(data_dir))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml" || x == "yml"))
                .map(|p| Kept {
                    when: std::fs::metadata(&p).and_then(|m| m.modified()).ok(),
                    from: std::fs::read_to_string(&p)
                        .ok()
                        .and_then(|t| recovered_from(data_dir, &p, &t)),
                    path: p,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A recipe kept from an ended session (see [`recovered`]).
struct Kept {
    path: PathBuf,
    when: Option<std::time::SystemTime>,
    from: Option<PathBuf>,
}

/// Which kept recipe to offer at start, and how many others there are:
/// the newest of those kept from the recipe now open, else the newest.
fn offer(mut kept: Vec<Kept>, open: Option<&Path>) -> Option<(PathBuf, usize)> {
    let same = |a: &Path, b: &Path| {
        let c = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        c(a) == c(b)
    };
    kept.sort_by(|a, b| (a.when, &a.path).cmp(&(b.when, &b.path)));
    let n = kept.len();
    let mine = kept
        .iter()
        .rposition(|k| matches!((&k.from, open), (Some(f), Some(o)) if same(f, o)));
    let at = mine.or(n.checked_sub(1))?;
    Some((kept.swap_remove(at).path, n - 1))
}

/// Read a recipe file as the workbench opens it: its text kept, every
/// problem in one message.
fn read_recipe(p: &Path) -> Result<(crate::recipe::Recipe, String), String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let r = crate::recipe::Recipe::parse_all(&text, p).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((r, text))
}

/// The first state: the recipe, the models, or the sample models.
fn initial(
    opts: &TuiOptions,
    jobs: &jobs::Jobs,
    data_dir: &Path,
) -> Result<update::Loaded, String> {
    if let Some(p) = &opts.recipe {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        return jobs.open_now(p, text, data_dir).map_err(|e| e.to_string());
    }
    // Models, or a base alone (the models to come with `a`).
    if !opts.models.is_empty() || opts.base.is_some() {
        let r = crate::recipe::Recipe::for_models(opts.models.clone(), opts.base.clone());
        return jobs.load_now(r, None, None).map_err(|e| e.to_string());
    }
    let root = sample_root();
    // The sample folder's own recipe, as its README documents it; else a
    // TIES recipe made up from the family's folders.
    let documented = root.join(DEFAULT_SAMPLE_RECIPE);
    if let Ok((r, text)) = read_recipe(&documented) {
        if let Ok(l) = jobs.load_now(r, Some(documented), Some(text)) {
            return Ok(l);
        }
    }
    match jobs::default_recipe(&root) {
        Some(r) => jobs.load_now(r, None, None).map_err(|e| e.to_string()),
        None => Err(format!(
            "no sample models in {} (a adds a model, o opens a recipe)",
            root.display()
        )),
    }
}

/// Whether the terminal behind `fd` hung up (`poll` reports `POLLHUP`
/// whatever events are asked for; none are, so nothing is consumed).
fn hung_up(fd: &impl std::os::fd::AsRawFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: `p` is one valid, initialised `pollfd` that lives across the
    // call, and the count passed is 1; a timeout of 0 returns at once.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLNVAL) != 0
}

fn input_thread(tx: Sender<Msg>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("smelt-input".into())
        .spawn(move || loop {
            let msg = match event::read() {
                Ok(TermEvent::Key(k)) => Msg::Key(k),
                Ok(TermEvent::Mouse(m)) => Msg::Mouse(m),
                Ok(TermEvent::Resize(w, h)) => Msg::Resize(w, h),
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(msg).is_err() {
                return;
            }
        })?;
    Ok(())
}

/// After a cancel: wait (30 s at most each) for the merge and the LoRA
/// extraction to end, so that they remove what they had written.
fn wait_for_jobs(rx: &Receiver<Msg>, merge: bool, extract: bool) {
    for (wanted, is_end) in [
        (
            merge,
            (|m: &Msg| matches!(m, Msg::MergeDone { .. })) as fn(&Msg) -> bool,
        ),
        (extract, |m: &Msg| matches!(m, Msg::ExtractDone { .. })),
    ] {
        if !wanted {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(m) if is_end(&m) => break,
                Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Run the workbench until the user quits or a signal ends it.
pub fn run(opts: TuiOptions) -> Result<Exit, TuiError> {
    // The flags first, so a typo is reported wherever smelt runs.
    let support = theme::ColorSupport::detect();
    let theme = Theme::select(opts.theme.as_deref(), support, config_dir().as_deref())
        .map_err(TuiError::Input)?;
    if !std::io::stdin().is_terminal() {
        return Err(TuiError::NoTerminal("standard input"));
    }
    if !stdout().is_terminal() {
        return Err(TuiError::NoTerminal("standard output"));
    }
    let (tx, rx) = unbounded::<Msg>();
    let mut jobs = jobs::Jobs::new(tx.clone());
    let work_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut app = App::new(data_dir(), work_dir);
    app.ascii = opts.ascii;
    let mut pending = Vec::new();
    match initial(&opts, &jobs, &app.data_dir) {
        Ok(l) => {
            update::opened(&mut app, l);
            app.sample = opts.recipe.is_none() && opts.models.is_empty() && opts.base.is_none();
        }
        // What the user named on the command line must open; only a
        // missing sample folder starts the workbench empty.
        Err(e) if opts.recipe.is_some() || !opts.models.is_empty() || opts.base.is_some() => {
            return Err(TuiError::Input(e));
        }
        Err(e) => app.say(Level::Error, e),
    }
    pending.extend(update::initial_effects(&app));
    if let Some((last, others)) = offer(recovered(&app.data_dir), app.recipe_path.as_deref()) {
        let more = match others {
            0 => String::new(),
            n => format!(" (+{n} more)"),
        };
        app.say(
            Level::Warn,
            format!(
                "o opens unsaved changes kept from an ended session: {}{more}",
                last.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ),
        );
        app.recovered = Some(last);
    }
    signal_thread(tx.clone())?;

    install_panic_hook();
    let _guard = TermGuard;
    let mut terminal = setup_terminal(opts.mouse, support)?;
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    input_thread(tx)?;

    let mut last_draw: Option<Instant> = None;
    // The terminal failed to take output: it hung up (an SSH connection
    // or a window gone, perhaps before its SIGHUP arrives). Treated as
    // SIGHUP, and nothing more is written to it.
    let mut lost = false;
    let mut hangup_checked = Instant::now();
    loop {
        // A terminal gone without a SIGHUP to say so (smelt is not in its
        // foreground process group, e.g. started with `setsid`): crossterm's
        // reader then spins on the end of input, and nothing is drawn to
        // find out. Checked at least once a second.
        if hangup_checked.elapsed() >= Duration::from_secs(1) {
            hangup_checked = Instant::now();
            if hung_up(&std::io::stdin()) {
                lost = true;
            }
        }
        for e in pending.drain(..) {
            if e == Effect::Repaint {
                if terminal.clear().is_err() {
                    lost = true;
                }
                app.dirty = true;
            } else {
                jobs.handle(e);
            }
        }
        if lost {
            pending.extend(update(&mut app, Msg::Signal(signal_hook::consts::SIGHUP)));
            break;
        }
        if app.exit.is_some() {
            break;
        }
        // During a merge, progress arrives constantly: cap at ~10 fps.
        // Otherwise draw as soon as something changed.
        let min_gap = if app.merge_running() || app.extract_running() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(15)
        };
        let since = last_draw.map_or(min_gap, |t| t.elapsed());
        if app.dirty && since >= min_gap {
            // One frame is one synchronized update: terminals that know
            // the mode show it whole (no tearing over a slow SSH link), and
            // the others ignore it.
            let drawn = queue!(terminal.backend_mut(), BeginSynchronizedUpdate)
                .and_then(|()| terminal.draw(|f| view::draw(f, &app, &theme)).map(drop))
                .and_then(|()| execute!(terminal.backend_mut(), EndSynchronizedUpdate));
            if drawn.is_err() {
                lost = true;
                continue;
            }
            app.dirty = false;
            last_draw = Some(Instant::now());
        }
        let wait = if app.dirty {
            min_gap.saturating_sub(since)
        } else {
            Duration::from_secs(1)
        };
        match rx.recv_timeout(wait) {
            Ok(msg) => {
                pending.extend(update(&mut app, msg));
                // Take whatever else is queued before drawing again.
                while let Ok(m) = rx.try_recv() {
                    pending.extend(update(&mut app, m));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for e in pending.drain(..) {
        if e != Effect::Repaint {
            jobs.handle(e);
        }
    }
    let cancelling = app.merge_running();
    if cancelling {
        jobs.handle(Effect::CancelMerge);
    }
    let extracting = app.extract_running();
    if extracting {
        jobs.handle(Effect::CancelExtract);
    }
    let mut err = std::io::stderr();
    // Ended by a signal (the SSH connection dropped) with unsaved changes:
    // keep them where the next session will say so, and let a cancelled
    // job remove its partial folder, before anything touches the terminal
    // (which may be gone: a write to it then fails, and must not stop
    // these).
    let signalled = matches!(app.exit, Some(Exit::Signal(_)));
    let kept = if signalled && app.modified() {
        recover(&app)
    } else {
        Vec::new()
    };
    if signalled {
        wait_for_jobs(&rx, cancelling, extracting);
    }
    // Dropping the terminal with its cursor hidden shows it, and reports
    // a failure with `eprintln!`, which panics when stderr is that same
    // hung-up terminal: shown here first, and on failure the terminal is
    // left alone (only memory is left behind, at exit).
    if !lost && terminal.show_cursor().is_err() {
        lost = true;
    }
    if lost {
        std::mem::forget(terminal);
        TERMINAL_ACTIVE.store(false, Ordering::SeqCst);
    } else {
        drop(terminal);
        restore_terminal();
    }
    for p in &kept {
        let _ = writeln!(
            err,
            "smelt: unsaved changes kept in {}",
            crate::text::path(p)
        );
    }
    if !lost {
        for line in &app.farewell {
            let _ = writeln!(err, "smelt: {line}");
        }
    }
    if !signalled {
        if cancelling {
            // Let the engine remove its partial output before the process ends.
            let _ = writeln!(err, "smelt: cancelling the merge...");
        }
        if extracting {
            // Likewise for a LoRA extraction (it never writes a partial
            // folder over anything; this lets it remove its own).
            let _ = writeln!(err, "smelt: cancelling the LoRA extraction...");
        }
        wait_for_jobs(&rx, cancelling, extracting);
    }
    if let Some((Level::Error, m)) = &app.message {
        // Names in it reach the terminal escaped, as everywhere.
        let _ = writeln!(err, "smelt: {}", crate::text::escape_lines(m));
    }
    Ok(app.exit.unwrap_or(Exit::User))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn kept(name: &str, secs: u64, from: Option<&str>) -> Kept {
        Kept {
            path: PathBuf::from(format!("/data/recovered/{name}")),
            when: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            from: from.map(PathBuf::from),
        }
    }

    #[test]
    fn the_offer_is_the_open_recipes_newest_else_the_newest() {
        let all = || {
            vec![
                kept("b-2.toml", 20, Some("/r/b.toml")),
                kept("a-1.toml", 10, Some("/r/a.toml")),
                kept("z-3.toml", 5, Some("/r/z.toml")),
                kept("a-0.toml", 1, Some("/r/a.toml")),
            ]
        };
        let name = |o: Option<(PathBuf, usize)>| {
            o.map(|(p, n)| (p.file_name().unwrap().to_string_lossy().into_owned(), n))
        };
        // By time, not by name (`z-3` sorts last but is older).
        assert_eq!(name(offer(all(), None)), Some(("b-2.toml".into(), 3)));
        // The open recipe's own, newest first.
        assert_eq!(
            name(offer(all(), Some(Path::new("/r/a.toml")))),
            Some(("a-1.toml".into(), 3))
        );
        assert_eq!(
            name(offer(all(), Some(Path::new("/r/other.toml")))),
            Some(("b-2.toml".into(), 3))
        );
        assert_eq!(offer(Vec::new(), None), None);
    }
}
