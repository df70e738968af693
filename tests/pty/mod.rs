//! Shared by the tests that drive the real `smelt` binary in a
//! pseudo-terminal: spawn it at a size, type, read the screen back through
//! a vt100 emulator (and the raw bytes it wrote), wait for it to exit, and
//! look at the terminal modes it left behind.
#![allow(dead_code)]

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Tui {
    pub parser: Arc<Mutex<vt100::Parser>>,
    /// Every byte smelt wrote to the terminal.
    pub raw: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    master: Arc<Mutex<Box<dyn portable_pty::MasterPty + Send>>>,
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
        }
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
        let child = pty.slave.spawn_command(cmd).expect("spawn smelt");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("pty reader");
        let writer = pty.master.take_writer().expect("pty writer");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(self.rows).unwrap(),
            std::num::NonZeroU16::new(self.cols).unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (p, r) = (parser.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tui {
            parser,
            raw,
            writer,
            child,
            master: Arc::new(Mutex::new(pty.master)),
        }
    }
}

impl Tui {
    pub fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    pub fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Wait until `pred` holds for the screen, or fail showing it.
    pub fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if t.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the process to end; its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> u32 {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last bytes.
                self.drain();
                return st.exit_code();
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "smelt did not exit; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the output stops growing (after the process exited).
    fn drain(&self) {
        let mut last = usize::MAX;
        for _ in 0..100 {
            let n = self.raw.lock().unwrap().len();
            if n == last {
                return;
            }
            last = n;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.process_id().expect("a pid") as i32
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
        let fd = m.as_raw_fd().expect("a unix pty");
        // SAFETY: a zeroed termios is a valid value to fill; tcgetattr
        // writes only into it and reads the fd we own.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::tcgetattr(fd, &mut t) };
        assert_eq!(r, 0, "tcgetattr failed");
        t.c_lflag
    }

    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }
}

/// A failed test must not leave smelt running.
impl Drop for Tui {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
