//! `smelt merge` stopped by a signal, and two merges to one output. The
//! merges here are of sparse inputs (data that is a hole, so free of disk)
//! that take many seconds to merge; each test waits until smelt reports
//! the merge under way (a line on stderr, no sleeping), then acts, so the
//! merge is always still running when it is interrupted.

mod sparse;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

use sparse::RECIPE;

/// A temp folder with three big sparse models and `r.toml` over them.
fn big_merge_dir() -> tempfile::TempDir {
    sparse::merge_dir(4, sparse::GIB, sparse::up_proj)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A running merge, once it has reported that it started. Killed if the
/// test fails before it ends.
struct Running {
    child: Option<Child>,
    stderr: std::io::BufReader<ChildStderr>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Running {
    /// Start `smelt merge r.toml --out out` in `dir` and wait until its
    /// progress output says the merge is under way (its output is locked
    /// and its partial folder exists by then).
    fn start(dir: &Path) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(["merge", "r.toml", "--out", "out"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smelt");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        loop {
            line.clear();
            match stderr.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if line.starts_with("merging ") {
                        return Running {
                            child: Some(child),
                            stderr,
                        };
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("smelt ended before the merge started");
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        let child = self.child.as_ref().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) has no memory effects; `pid` is our own child,
        // not yet waited for, so the pid cannot have been reused.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill failed");
    }

    /// Wait for the exit; its code and the rest of its error output.
    fn finish(mut self) -> (Option<i32>, String) {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stderr, &mut rest);
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait");
        (status.code(), rest)
    }
}

/// SIGINT, SIGTERM or SIGHUP during a merge: cancelled, partial folder and
/// lock removed, exit 128 + the signal.
fn signal_cancels_a_merge_and_leaves_nothing(sig: i32) {
    let dir = big_merge_dir();
    let before = listing(dir.path());
    let merge = Running::start(dir.path());
    assert!(
        listing(dir.path())
            .iter()
            .any(|e| e.starts_with("out.partial-")),
        "no partial folder while merging: {:?}",
        listing(dir.path())
    );
    merge.signal(sig);
    let (code, stderr) = merge.finish();
    assert_eq!(code, Some(128 + sig), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(listing(dir.path()), before, "{stderr}");
}

#[test]
fn sigterm_cancels_a_merge_and_leaves_nothing() {
    signal_cancels_a_merge_and_leaves_nothing(libc::SIGTERM);
}

#[test]
fn sighup_cancels_a_merge_and_leaves_nothing() {
    signal_cancels_a_merge_and_leaves_nothing(libc::SIGHUP);
}

#[test]
fn sigint_cancels_a_merge_and_leaves_nothing() {
    signal_cancels_a_merge_and_leaves_nothing(libc::SIGINT);
}

/// A second merge to the same output while one runs fails at once, with
/// or without --force, naming the running merge's partial folder. "At
/// once": before planning, which would fail on its recipe's missing
/// models; the refusal comes instead. The first merge is unharmed.
#[test]
fn a_second_merge_to_the_same_output_fails_at_once() {
    let dir = big_merge_dir();
    std::fs::write(
        dir.path().join("other.toml"),
        RECIPE.replace("big/", "missing/"),
    )
    .expect("recipe");
    let first = Running::start(dir.path());
    let partial = listing(dir.path())
        .into_iter()
        .find(|e| e.starts_with("out.partial-"))
        .expect("the first merge's partial folder");
    for force in [false, true] {
        let mut args = vec!["merge", "other.toml", "--out", "out"];
        if force {
            args.push("--force");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("second smelt");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "--force={force}: {err}");
        assert!(
            err.contains("another smelt merge") && err.contains(&partial),
            "--force={force}: {err}"
        );
        assert!(!err.contains("missing"), "it planned first: {err}");
    }
    assert!(
        dir.path().join(&partial).is_dir(),
        "the first merge's work was touched"
    );
    first.signal(libc::SIGTERM);
    let (code, stderr) = first.finish();
    assert_eq!(code, Some(143), "{stderr}");
    assert_eq!(listing(dir.path()), ["big", "other.toml", "r.toml"]);
}
