//! Shared by the tests that drive the real `smelt` binary in a
//! pseudo-terminal: spawn it at a size, type, read the screen back through
//! a vt100 emulator (and the raw bytes it wrote), wait for it to exit, and
//! look at the terminal modes it left behind.
#![allow(dead_code)]

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What ends a frame: the end of a synchronized update (DEC mode 2026).
const FRAME_END: &[u8] = b"\x1b[?2026l";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub struct Tui {
    pub parser: Arc<Mutex<vt100::Parser>>,
    /// Every byte smelt wrote to the terminal.
    pub raw: Arc<Mutex<Vec<u8>>>,
    /// Signalled at the end of every frame (and when output ends).
    seen: Arc<(Mutex<u64>, Condvar)>,
    /// The screen as the last whole frame left it.
    frame: Arc<Mutex<String>>,
    writer: Box<dyn Write + Send>,
    /// The exit code, once smelt has ended (a thread waits for it).
    exited: crossbeam_channel::Receiver<u32>,
    exit_code: Option<u32>,
    killer: Box<dyn portable_pty::ChildKiller + Send + Sync>,
    pid: i32,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Tells the reader to stop and close its copy of the master.
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// None once [`Tui::hang_up`] closed it.
    master: Arc<Mutex<Option<Box<dyn portable_pty::MasterPty + Send>>>>,
}

/// How to start smelt.
pub struct Spawn<'a> {
    pub args: &'a [&'a str],
    pub cwd: &'a Path,
    pub data: &'a Path,
    pub rows: u16,
    pub cols: u16,
    pub term: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    /// Whether the terminal is smelt's controlling terminal (it is, as in
    /// a terminal window or `ssh -t`); when not, closing it sends no SIGHUP.
    pub controlling: bool,
}

impl<'a> Spawn<'a> {
    pub fn new(args: &'a [&'a str], cwd: &'a Path, data: &'a Path) -> Spawn<'a> {
        Spawn {
            args,
            cwd,
            data,
            rows: 24,
            cols: 80,
            term: "xterm-256color",
            env: &[],
            controlling: true,
        }
    }
    /// The terminal is not smelt's controlling terminal.
    pub fn not_controlling(mut self) -> Self {
        self.controlling = false;
        self
    }
    pub fn size(mut self, cols: u16, rows: u16) -> Self {
        self.cols = cols;
        self.rows = rows;
        self
    }
    pub fn term(mut self, t: &'a str) -> Self {
        self.term = t;
        self
    }
    pub fn env(mut self, e: &'a [(&'a str, &'a str)]) -> Self {
        self.env = e;
        self
    }
    pub fn start(self) -> Tui {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: self.rows,
                cols: self.cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_smelt"));
        cmd.args(self.args);
        cmd.cwd(self.cwd);
        cmd.env("TERM", self.term);
        cmd.env("SMELT_DATA_DIR", self.data);
        cmd.env_remove("NO_COLOR");
        cmd.env_remove("COLORTERM");
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        cmd.set_controlling_tty(self.controlling);
        let mut child = pty.slave.spawn_command(cmd).expect("spawn smelt");
        drop(pty.slave);
        // The reader's own copy of the master, polled so that
        // `hang_up` can stop it and close the terminal for good.
        let master_fd = pty.master.as_raw_fd().expect("a unix pty");
        // SAFETY: dup(2) of the master's open descriptor; it touches no
        // memory, and the new descriptor is owned by the File below alone.
        let fd = unsafe { libc::dup(master_fd) };
        assert!(fd >= 0, "dup failed");
        // SAFETY: `fd` is a fresh descriptor from dup, owned by nothing else.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_r = stop.clone();
        let writer = pty.master.take_writer().expect("pty writer");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(self.rows).unwrap(),
            std::num::NonZeroU16::new(self.cols).unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new((Mutex::new(0u64), Condvar::new()));
        let frame = Arc::new(Mutex::new(String::new()));
        let (p, r, sn, fr) = (parser.clone(), raw.clone(), seen.clone(), frame.clone());
        // Reads until smelt's side of the terminal closes (EOF or EIO).
        // smelt draws each frame as one synchronized update; the screen
        // the tests look at is the one at the end of the last whole frame.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the descriptor this thread
                // owns; poll writes only its `revents`.
                let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
                if ready == 0 {
                    if stop_r.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                r.lock().unwrap().extend_from_slice(&buf[..n]);
                pending.extend_from_slice(&buf[..n]);
                let mut ended = n == 0;
                while let Some(at) = find(&pending, FRAME_END) {
                    let upto = at + FRAME_END.len();
                    let mut parser = p.lock().unwrap();
                    parser.process(&pending[..upto]);
                    *fr.lock().unwrap() = parser.screen().contents();
                    drop(parser);
                    pending.drain(..upto);
                    ended = true;
                }
                if n == 0 {
                    // The end: whatever came last (the restored terminal).
                    let mut parser = p.lock().unwrap();
                    parser.process(&pending);
                    *fr.lock().unwrap() = parser.screen().contents();
                    pending.clear();
                } else {
                    // Keep back only what could begin a marker.
                    let keep = (1..FRAME_END.len())
                        .rev()
                        .find(|&k| pending.ends_with(&FRAME_END[..k]))
                        .unwrap_or(0);
                    let cut = pending.len() - keep;
                    p.lock().unwrap().process(&pending[..cut]);
                    pending.drain(..cut);
                }
                // Every read wakes the waiters: `wait` looks at whole
                // frames, `wait_raw` at the bytes so far.
                if ended || n > 0 {
                    let (count, cv) = &*sn;
                    *count.lock().unwrap() += 1;
                    cv.notify_all();
                }
                if n == 0 {
                    return;
                }
            }
        });
        let killer = child.clone_killer();
        let pid = child.process_id().expect("a pid") as i32;
        let (tx, exited) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            if let Ok(st) = child.wait() {
                let _ = tx.send(st.exit_code());
            }
        });
        Tui {
            parser,
            raw,
            seen,
            frame,
            writer,
            exited,
            exit_code: None,
            killer,
            pid,
            reader: Some(reader),
            stop,
            master: Arc::new(Mutex::new(Some(pty.master))),
        }
    }
}

impl Tui {
    /// The screen as the last whole frame left it.
    pub fn screen(&self) -> String {
        self.frame.lock().unwrap().clone()
    }

    pub fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Wait until `pred` holds for the screen, or fail showing it: woken
    /// by each piece of output, never by a clock (the limit only ends a
    /// test that would otherwise hang).
    pub fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let limit = Instant::now() + Duration::from_secs(secs);
        let (count, cv) = &*self.seen;
        let mut seen = count.lock().unwrap();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            let left = limit.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            let before = *seen;
            seen = cv
                .wait_timeout_while(seen, left, |c| *c == before)
                .unwrap()
                .0;
        }
    }

    /// Like [`Tui::wait`], for programs that draw no frames (the merge
    /// progress bar): `pred` looks at every byte written so far.
    pub fn wait_raw(&self, what: &str, secs: u64, pred: impl Fn(&[u8]) -> bool) {
        let limit = Instant::now() + Duration::from_secs(secs);
        let (count, cv) = &*self.seen;
        let mut seen = count.lock().unwrap();
        loop {
            if pred(&self.raw.lock().unwrap()) {
                return;
            }
            let left = limit.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out waiting for {what}; output:\n{}", self.raw_text());
            }
            let before = *seen;
            seen = cv
                .wait_timeout_while(seen, left, |c| *c == before)
                .unwrap()
                .0;
        }
    }

    /// Wait for the process to end and for all it wrote to be read; its
    /// exit code.
    pub fn wait_exit(&mut self, secs: u64) -> u32 {
        let code = match self.exit_code {
            Some(c) => c,
            None => match self.exited.recv_timeout(Duration::from_secs(secs)) {
                Ok(c) => c,
                Err(_) => panic!("smelt did not exit; screen:\n{}", self.screen()),
            },
        };
        self.exit_code = Some(code);
        // The reader ends when smelt's side of the terminal closes.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        code
    }

    /// Whether smelt is still running.
    pub fn running(&mut self) -> bool {
        if self.exit_code.is_none() {
            self.exit_code = self.exited.try_recv().ok();
        }
        self.exit_code.is_none()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Send a signal to smelt.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number;
        // it touches no memory of ours.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill failed");
    }

    /// The terminal's local modes now (ICANON, ECHO...), read from the
    /// pty: what the next program in this terminal would get.
    pub fn lflags(&self) -> libc::tcflag_t {
        let m = self.master.lock().unwrap();
        let fd = m
            .as_ref()
            .expect("the terminal is open")
            .as_raw_fd()
            .expect("a unix pty");
        // SAFETY: a zeroed termios is a valid value to fill; tcgetattr
        // writes only into it and reads the fd we own.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::tcgetattr(fd, &mut t) };
        assert_eq!(r, 0, "tcgetattr failed");
        t.c_lflag
    }

    /// Close the terminal, as a dropped SSH connection or a closed window
    /// does: every copy of the master closed, so smelt gets SIGHUP and its
    /// writes to the terminal fail.
    pub fn hang_up(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.writer = Box::new(std::io::sink());
        self.master.lock().unwrap().take();
    }

    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }
}

/// A failed test must not leave smelt running.
impl Drop for Tui {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.killer.kill();
        }
    }
}

/// smelt started with `args`, its working and data folders in a new
/// temporary folder (kept alive by the first half).
pub fn start_in_temp(args: &[&str]) -> (tempfile::TempDir, Tui) {
    let tmp = tempfile::tempdir().unwrap();
    let tui = Spawn::new(args, tmp.path(), &tmp.path().join("data")).start();
    (tmp, tui)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures/mergekit/models")
}

/// Every file of a folder, sorted, with its bytes.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Copy a folder tree (the sample models and recipes into a temp dir, so
/// tests may save over recipes).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// The histogram rows of the Sign agreement panel.
pub fn histogram(screen: &str) -> Vec<String> {
    screen
        .lines()
        .filter_map(|l| {
            let i = l.find(" agree ").or_else(|| l.find("0 / none"))?;
            Some(l[i.saturating_sub(3)..].to_string())
        })
        .collect()
}
