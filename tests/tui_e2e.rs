//! End to end: the real `smelt` binary in a pseudo-terminal, read back
//! through a vt100 emulator. Moves to a layer, changes density, watches the
//! histogram change, saves the recipe, runs the merge, checks the output is
//! byte-identical to `smelt merge` of the saved recipe, quits, and checks
//! the terminal was restored.

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Tui {
    parser: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Tui {
    fn spawn(args: &[&str], cwd: &Path, data: &Path, rows: u16, cols: u16) -> Tui {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_smelt"));
        cmd.args(args);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        cmd.env("SMELT_DATA_DIR", data);
        cmd.env_remove("NO_COLOR");
        let child = pty.slave.spawn_command(cmd).expect("spawn smelt");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("pty reader");
        let writer = pty.master.take_writer().expect("pty writer");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(rows).unwrap(),
            std::num::NonZeroU16::new(cols).unwrap(),
            0,
        )));
        let p = parser.clone();
        std::thread::spawn(move || {
            let _keep = pty.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.lock().unwrap().process(&buf[..n]);
            }
        });
        Tui {
            parser,
            writer,
            child,
        }
    }

    fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Wait until `pred` holds for the screen, or fail showing it.
    fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if t.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(30));
        }
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

/// The histogram rows of the Sign agreement panel.
fn histogram(screen: &str) -> Vec<String> {
    screen
        .lines()
        .filter_map(|l| {
            let i = l.find(" agree ").or_else(|| l.find("0 / none"))?;
            Some(l[i.saturating_sub(3)..].to_string())
        })
        .collect()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

/// On the sample models (no arguments): the issue's whole scenario.
#[test]
fn sample_models_tune_a_layer_run_the_merge_and_match_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    // From an empty folder, `smelt` finds the bundled samples by itself.
    scenario(&[], tmp.path(), "llama-synthetic-ties");
}

/// On models named on the command line (f32 parity fixtures).
#[test]
fn named_models_tune_a_layer_run_the_merge_and_match_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixtures();
    let (ft0, ft1, ft2, base) = (m.join("ft0"), m.join("ft1"), m.join("ft2"), m.join("base"));
    let args = [
        "tui",
        ft0.to_str().unwrap(),
        ft1.to_str().unwrap(),
        ft2.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
    ];
    scenario(&args, tmp.path(), "models-ties");
}

/// Move to layer 1, change density, watch the histogram change, tune a
/// tensor, save the recipe, run the merge into the offered folder
/// (`out_name` under `dir`), quit, check the terminal, and compare with
/// `smelt merge` of the saved recipe.
fn scenario(args: &[&str], dir: &Path, out_name: &str) {
    let data = dir.join("data");
    let tmp_path = dir;
    let mut tui = Tui::spawn(args, tmp_path, &data, 40, 120);
    tui.wait("the first frame with statistics", 30, |s| {
        s.contains("Sign agreement · all layers") && s.contains("[current]")
    });

    // Move to layer 1: all layers -> embeddings -> layer 0 -> layer 1.
    tui.send("jjj");
    let before = tui.wait("layer 1 statistics", 30, |s| {
        s.contains("Sign agreement · layer 1") && s.contains("[current]")
    });
    let h0 = histogram(&before);
    assert_eq!(h0.len(), 4, "3 inputs: 4 histogram rows\n{before}");

    // Lower density at this layer; the histogram must follow.
    tui.send("---");
    let after = tui.wait("new statistics after the density change", 30, |s| {
        s.contains("[current]") && histogram(s) != h0 && s.contains("layer 1 override")
    });
    assert!(
        after.contains("*▸ layer 1")
            || after.contains("* ▸ layer 1")
            || after.contains("*▾ layer 1"),
        "override mark on layer 1\n{after}"
    );

    // Down to one of its tensors, and tune again there (the tensor's task
    // vectors are re-trimmed from memory).
    tui.send("\rj");
    let t0 = tui.wait("a tensor's statistics", 30, |s| {
        s.contains("Sign agreement · layer 1 · input_layernorm") && s.contains("[current]")
    });
    let th0 = histogram(&t0);
    assert_eq!(th0.len(), 4, "{t0}");
    tui.send("++");
    tui.wait("the tensor's statistics at the new density", 30, |s| {
        s.contains("[current]") && histogram(s) != th0 && s.contains("layer 1 · input_layernorm")
    });

    // Save the recipe where we choose.
    let recipe = tmp_path.join("tuned.toml");
    tui.send("s");
    tui.wait("the save prompt", 10, |s| s.contains("Save recipe"));
    tui.send("\x15"); // Ctrl-U clears the default
    tui.send(recipe.to_str().unwrap());
    tui.send("\r");
    tui.wait("the save confirmation", 20, |s| s.contains("recipe saved"));
    assert!(recipe.is_file());

    // Run the merge into the offered default folder.
    tui.send("r");
    tui.wait("the output prompt", 10, |s| {
        s.contains("Run merge into folder")
    });
    tui.send("\r");
    let done = tui.wait("the merge to finish", 120, |s| {
        s.contains("done ") || s.contains("FAILED")
    });
    assert!(!done.contains("FAILED"), "{done}");
    let out = tmp_path.join(out_name);
    assert!(out.join("model.safetensors").is_file(), "{done}");

    // Quit and check the terminal came back.
    tui.send("q");
    let t = Instant::now();
    let status = loop {
        if let Some(st) = tui.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "smelt did not quit");
        std::thread::sleep(Duration::from_millis(30));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    {
        let p = tui.parser.lock().unwrap();
        assert!(!p.screen().alternate_screen(), "left the alternate screen");
        assert!(!p.screen().hide_cursor(), "cursor shown again");
    }

    // The CLI on the saved recipe writes the same bytes.
    let cli_out = tmp_path.join("cli-out");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args([
            "merge",
            recipe.to_str().unwrap(),
            "--out",
            cli_out.to_str().unwrap(),
            "--quiet",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let (a, b) = (files(&out), files(&cli_out));
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between the TUI's merge and `smelt merge`"
        );
    }
}

#[test]
fn starts_on_the_sample_models_and_fits_80x24() {
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut tui = Tui::spawn(&[], Path::new(root), &tmp.path().join("data"), 24, 80);
    // The documented sample recipe: TIES over the synthetic Llama family.
    let s = tui.wait("the sample models with statistics", 30, |s| {
        s.contains("Sign agreement · all layers") && s.contains("[current]")
    });
    assert!(s.contains("ft-broad") && s.contains("layer 3"), "{s}");
    assert!(s.contains("method ties") && s.contains("d0.3"), "{s}");
    // Every line fits: nothing drawn past 80 columns, border intact.
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
    tui.send("?");
    tui.wait("the help overlay", 10, |s| {
        s.contains("Keys") && s.contains("Ctrl-L")
    });
    tui.send("x");
    tui.send("q");
    let t = Instant::now();
    while tui.child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "smelt did not quit");
        std::thread::sleep(Duration::from_millis(30));
    }
}
