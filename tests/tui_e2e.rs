//! End to end: the real `smelt` binary in a pseudo-terminal, read back
//! through a vt100 emulator. Each test is one flow a user goes through:
//! tuning and merging (and matching `smelt merge`), switching method then
//! merging, quitting with unsaved changes, undo and redo across a method
//! switch, the layouts at 80x23 and 40x12, and what each leaves behind.

#![cfg(feature = "tui")]

mod pty;
mod sparse;

use pty::*;
use std::path::Path;

/// Move to layer 1, change density, watch the histogram change, tune a
/// tensor, save the recipe, run the merge into the offered folder
/// (`out_name` under `dir`), quit, check the terminal, and compare with
/// `smelt merge` of the saved recipe.
fn scenario(args: &[&str], dir: &Path, out_name: &str) {
    let data = dir.join("data");
    let mut tui = Spawn::new(args, dir, &data).size(120, 40).start();
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
        s.contains("[current]") && histogram(s) != h0 && s.contains("Parameters · layer 1")
    });
    assert!(
        after.contains("*▸ layer 1") || after.contains("*▾ layer 1"),
        "override mark on layer 1\n{after}"
    );

    // Down to one of its tensors, and tune again there.
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
    let recipe = dir.join("tuned.toml");
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
    let out = dir.join(out_name);
    assert!(out.join("model.safetensors").is_file(), "{done}");

    // Quit (nothing unsaved) and check the terminal came back.
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
    {
        let p = tui.parser.lock().unwrap();
        assert!(!p.screen().alternate_screen(), "left the alternate screen");
        assert!(!p.screen().hide_cursor(), "cursor shown again");
    }
    let lf = tui.lflags();
    assert!(
        lf & libc::ICANON != 0 && lf & libc::ECHO != 0,
        "cooked mode back"
    );

    // The CLI on the saved recipe writes the same bytes.
    let cli_out = dir.join("cli-out");
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

/// The `!` marks the layers with the most sign conflict, a third of those
/// ranked at most: on the digits MLPs (three layers) one layer, not all.
#[test]
fn a_three_layer_model_marks_one_layer() {
    let recipe = root().join("sample_models/recipes/digits-tasks-ties.toml");
    let (_tmp, mut tui) = start_in_temp(&["tui", recipe.to_str().unwrap()]);
    let s = tui.wait("every layer's figures", 30, |s| {
        s.lines()
            .filter(|l| l.contains("▸ layer") && l.contains('%'))
            .count()
            == 3
    });
    let marked = s
        .lines()
        .filter(|l| l.contains("▸ layer") && l.contains("% !"))
        .count();
    assert_eq!(marked, 1, "{s}");
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
}

/// `smelt tui --base BASE` alone: the workbench holds that base, ready for
/// `a` (it once opened the sample recipe, ignoring the base).
#[test]
fn a_base_alone_opens_with_that_base() {
    let base = root().join("sample_models/digits-tasks/base");
    let (_tmp, mut tui) = start_in_temp(&["tui", "--base", base.to_str().unwrap()]);
    let s = tui.wait("the base alone", 30, |s| s.contains("0 in"));
    assert!(s.contains("base base") && s.contains("13.1K"), "{s}");
    assert!(!s.contains("llama"), "{s}");
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
}

/// The full layout at 80x24: every panel is drawn whole (its right border
/// in the last column on every body row) and the sample opens with
/// statistics; the help opens and closes.
#[test]
fn starts_on_the_sample_models_and_fits_80x24() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tui = Spawn::new(&[], &root(), &tmp.path().join("data")).start();
    let s = tui.wait("the sample models with statistics", 30, |s| {
        s.contains("Sign agreement · all layers") && s.contains("[current]")
    });
    assert!(s.contains("ft-broad") && s.contains("layer 3"), "{s}");
    assert!(s.contains("ties") && s.contains("d0.3"), "{s}");
    let rows: Vec<&str> = s.lines().collect();
    assert_eq!(rows.len(), 24, "{s}");
    for (i, r) in rows.iter().enumerate().take(23).skip(1) {
        let last = r.chars().nth(79);
        assert!(
            matches!(last, Some('│' | '┃' | '┐' | '┓' | '┘' | '┛')),
            "row {i} does not end with a panel border in column 80: {r:?}\n{s}"
        );
    }
    tui.send("?");
    tui.wait("the help overlay", 10, |s| {
        s.contains("Keys") && s.contains("Ctrl-L")
    });
    tui.send("x");
    tui.wait("help closed", 10, |s| !s.contains("other keys close"));
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
}

/// Switch method, then run: the merge succeeds (linear and karcher on the
/// Llama sample; today's bug was a hidden density and a stale base).
#[test]
fn switch_method_then_run_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tui = Spawn::new(&[], tmp.path(), &tmp.path().join("data"))
        .size(100, 30)
        .start();
    tui.wait("statistics", 30, |s| s.contains("[current]"));
    // ties is method 3 of 19; linear is 1: h h.
    tui.send("\t");
    tui.send("hh");
    let s = tui.wait("linear", 10, |s| s.contains("│ linear │"));
    assert!(
        s.contains("ref base"),
        "the base stays as the reference\n{s}"
    );
    tui.send("r");
    tui.wait("the output prompt", 10, |s| {
        s.contains("Run merge into folder")
    });
    tui.send("\r");
    let done = tui.wait("the merge", 60, |s| {
        s.contains("done ") || s.contains("FAILED")
    });
    assert!(!done.contains("FAILED"), "{done}");
    assert!(tmp
        .path()
        .join("llama-synthetic-linear/model.safetensors")
        .is_file());
    // karcher: 13 of 19.
    for _ in 0..12 {
        tui.send("l");
    }
    tui.wait("karcher", 10, |s| s.contains("│ karcher │"));
    tui.send("r");
    tui.wait("the output prompt", 10, |s| {
        s.contains("Run merge into folder")
    });
    tui.send("\r");
    let done = tui.wait("the karcher merge", 60, |s| {
        s.lines()
            .any(|l| l.contains("done ") && l.contains("synthetic-karcher"))
            || s.contains("FAILED")
    });
    assert!(!done.contains("FAILED"), "{done}");
    assert!(tmp
        .path()
        .join("llama-synthetic-karcher/model.safetensors")
        .is_file());
    tui.send("q");
    let s = tui.wait("the quit question: the method switch is unsaved", 10, |s| {
        s.contains("Quit?")
    });
    assert!(s.contains("Unsaved changes"), "{s}");
    tui.send("d");
    assert_eq!(tui.wait_exit(10), 0);
}

/// zipit → permute on the digits pair, then run.
#[test]
fn permute_from_zipit_runs() {
    let recipe = root().join("sample_models/recipes/digits-zipit.toml");
    let (tmp, mut tui) = start_in_temp(&["tui", recipe.to_str().unwrap()]);
    tui.wait("zipit", 30, |s| s.contains("│ zipit │"));
    tui.send("m");
    tui.wait("permute", 10, |s| s.contains("│ permute │"));
    tui.send("r");
    tui.wait("the output prompt", 10, |s| {
        s.contains("Run merge into folder")
    });
    tui.send("\r");
    let done = tui.wait("the merge", 60, |s| {
        s.contains("done ") || s.contains("FAILED")
    });
    assert!(!done.contains("FAILED"), "{done}");
    let acc = tui.wait("its accuracy", 60, |s| {
        s.contains("merged") && s.contains("joint")
    });
    assert!(acc.contains('%'), "{acc}");
    // Saving zipit/permute as mergekit YAML is refused in the prompt.
    tui.send("s");
    tui.wait("the save prompt", 10, |s| s.contains("Save recipe"));
    tui.send("\x15");
    let yml = tmp.path().join("p.yml");
    tui.send(yml.to_str().unwrap());
    tui.send("\r");
    let s = tui.wait("the refusal", 20, |s| s.contains("mergekit cannot run it"));
    assert!(s.contains("Save recipe"), "the prompt stays open\n{s}");
    assert!(!yml.exists());
    tui.send("\x1b");
    tui.wait("the prompt closed", 10, |s| !s.contains("Save recipe"));
    tui.send("q");
    tui.wait("asked", 10, |s| s.contains("Quit?"));
    tui.send("d");
    assert_eq!(tui.wait_exit(10), 0);
}

/// Quit with unsaved changes: Esc stays, s saves over the opened recipe
/// (comments kept) and quits.
#[test]
fn quit_while_dirty_saves_over_the_recipe_keeping_comments() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&root().join("sample_models"), &tmp.path().join("s"));
    let recipe = tmp.path().join("s/recipes/llama-ties.toml");
    let before = std::fs::read_to_string(&recipe).unwrap();
    assert!(before.starts_with('#'), "the sample starts with a comment");
    let args = ["tui", recipe.to_str().unwrap()];
    let mut tui = Spawn::new(&args, tmp.path(), &tmp.path().join("data")).start();
    tui.wait("statistics", 30, |s| s.contains("[current]"));
    tui.send("jjj-"); // layer 1, density down
    tui.wait("modified", 10, |s| s.contains("modified"));
    tui.send("q");
    tui.wait("the question", 10, |s| s.contains("Unsaved changes"));
    tui.send("\x1b");
    tui.wait("still open", 10, |s| !s.contains("Unsaved changes"));
    assert!(tui.running());
    tui.send("q");
    tui.wait("the question", 10, |s| s.contains("Unsaved changes"));
    tui.send("s");
    assert_eq!(tui.wait_exit(20), 0);
    // Where it went is said on the terminal, after the workbench left it.
    let raw = tui.raw_text();
    let said = format!("smelt: recipe saved to {}", recipe.display());
    let at = raw
        .find(&said)
        .unwrap_or_else(|| panic!("{said:?} not in {raw:?}"));
    assert!(
        raw[..at].contains("\x1b[?1049l"),
        "after the screen is restored"
    );
    let after = std::fs::read_to_string(&recipe).unwrap();
    let first = before.lines().next().unwrap();
    assert!(after.contains(first), "comment kept\n{after}");
    let r = smelt::recipe::Recipe::load(&recipe).unwrap();
    assert_eq!(r.overrides.len(), 1, "{after}");
}

/// Undo and redo across a method switch, on screen.
#[test]
fn undo_and_redo_across_a_method_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tui = Spawn::new(&[], tmp.path(), &tmp.path().join("data")).start();
    tui.wait("statistics", 30, |s| s.contains("[current]"));
    tui.send("\thh");
    let s = tui.wait("linear", 10, |s| s.contains("│ linear │"));
    assert!(!s.contains("d0.3"), "density set aside\n{s}");
    tui.send("u");
    tui.wait("task_arithmetic again", 10, |s| {
        s.contains("│ task_arithmetic │")
    });
    tui.send("u");
    let s = tui.wait("ties again", 10, |s| s.contains("│ ties │"));
    assert!(s.contains("d0.3"), "density back\n{s}");
    assert!(!s.contains("modified"), "{s}");
    tui.send("\x12"); // Ctrl-R
    tui.wait("redone", 10, |s| s.contains("│ task_arithmetic │"));
    tui.send("\x12");
    tui.wait("linear again", 10, |s| s.contains("│ linear │"));
    tui.send("q");
    tui.wait("asked", 10, |s| s.contains("Quit?"));
    tui.send("d");
    assert_eq!(tui.wait_exit(10), 0);
}

/// An exact export: tuned per layer and per group, saved as TOML and as
/// mergekit YAML, both merge to the same bytes.
#[test]
fn yaml_export_merges_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut tui = Spawn::new(&[], d, &d.join("data")).start();
    tui.wait("statistics", 30, |s| s.contains("[current]"));
    tui.send("j+"); // embeddings
    tui.send("jj-v"); // layer 1, then a range from it
    tui.send("j-"); // layers 1-2
    tui.wait("modified", 10, |s| s.contains("modified"));
    for name in ["t.toml", "t.yml"] {
        tui.send("s");
        tui.wait("the save prompt", 10, |s| s.contains("Save recipe"));
        tui.send("\x15");
        tui.send(d.join(name).to_str().unwrap());
        tui.send("\r");
        tui.wait("saved", 20, |s| {
            s.contains(&format!("saved to {}", d.join(name).display()))
                || s.contains(name) && s.contains("recipe saved")
        });
    }
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0, "saved: nothing to ask");
    let merge = |r: &str, out: &str| {
        let st = std::process::Command::new(env!("CARGO_BIN_EXE_smelt"))
            .args(["merge", r, "--out", out, "--quiet"])
            .current_dir(d)
            .status()
            .unwrap();
        assert!(st.success(), "{r}");
    };
    merge("t.toml", "a");
    merge("t.yml", "b");
    let (a, b) = (files(&d.join("a")), files(&d.join("b")));
    let find = |v: &[(String, Vec<u8>)]| {
        v.iter()
            .find(|f| f.0 == "model.safetensors")
            .map(|f| f.1.clone())
    };
    let (fa, fb) = (find(&a), find(&b));
    assert!(fa.is_some());
    assert!(fa == fb, "TOML and YAML merges differ");
}

/// The full layout at 80x23 (an 80x24 tmux window with its status bar),
/// the compact one at 40x12, a message below that.
#[test]
fn layouts_at_80x23_and_40x12() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tui = Spawn::new(&[], tmp.path(), &tmp.path().join("data"))
        .size(80, 23)
        .start();
    let s = tui.wait("the full layout", 30, |s| s.contains("[current]"));
    for p in ["Models", "Layers", "Parameters", "Sign agreement", "Status"] {
        assert!(s.contains(p), "{p} missing at 80x23\n{s}");
    }
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);

    let mut tui = Spawn::new(&[], tmp.path(), &tmp.path().join("data"))
        .size(40, 12)
        .start();
    let s = tui.wait("the compact layout", 30, |s| s.contains("Layers"));
    assert!(
        !s.contains("Sign agreement") && !s.contains("enlarge"),
        "{s}"
    );
    tui.send("\t\t");
    tui.wait("sign agreement alone", 10, |s| {
        s.contains("Sign agreement") && !s.contains("Layers ·")
    });
    tui.send("\t");
    tui.wait("status alone", 10, |s| s.contains("Status"));
    tui.send("q");
    assert_eq!(tui.wait_exit(10), 0);
}

/// Colours follow the terminal: no 256-colour or RGB codes to xterm, no
/// colour at all to `dumb` or with NO_COLOR.
#[test]
fn colours_follow_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |term: &str, env: &[(&str, &str)]| -> String {
        let mut tui = Spawn::new(&[], tmp.path(), &tmp.path().join("data"))
            .term(term)
            .env(env)
            .start();
        tui.wait("the first frame", 30, |s| s.contains("[current]"));
        tui.send("q");
        assert_eq!(tui.wait_exit(10), 0);
        tui.raw_text()
    };
    let xterm = run("xterm", &[]);
    assert!(!xterm.contains("38;5;") && !xterm.contains("48;5;") && !xterm.contains("38;2;"));
    assert!(xterm.contains("\x1b[3"), "named colours are used");
    let x256 = run("xterm-256color", &[]);
    assert!(!x256.contains("38;2;"), "no RGB without COLORTERM");
    for (term, env) in [
        ("dumb", &[][..]),
        ("xterm-256color", &[("NO_COLOR", "1")][..]),
    ] {
        let raw = run(term, env);
        let colour = raw
            .split('\x1b')
            .filter(|seq| seq.starts_with('['))
            .any(|seq| {
                let body: String = seq[1..]
                    .chars()
                    .take_while(|c| *c != 'm' && (c.is_ascii_digit() || *c == ';'))
                    .collect();
                seq[1..].starts_with(&body)
                    && seq[1 + body.len()..].starts_with('m')
                    && body.split(';').any(|n| {
                        matches!(
                            n.parse::<u32>(),
                            Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
                        )
                    })
            });
        assert!(!colour, "colour codes sent to {term} {env:?}");
    }
}

/// The workbench on three sparse 2 GiB models in `dir` (so a merge takes
/// a while), its data folder `dir/data`, with a linear merge of them
/// running into `dir`.
fn merging(dir: &Path) -> pty::Tui {
    let fam = dir.join("fam");
    for m in ["a", "b", "c"] {
        sparse::sparse_model(&fam.join(m), 2, sparse::GIB, sparse::up_proj);
    }
    let paths: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|m| fam.join(m).display().to_string())
        .collect();
    let mut args = vec!["tui"];
    args.extend(paths.iter().map(String::as_str));
    let mut tui = Spawn::new(&args, dir, &dir.join("data")).start();
    tui.wait("the models", 30, |s| s.contains("│ linear │"));
    tui.send("r");
    tui.wait("the output prompt", 10, |s| {
        s.contains("Run merge into folder")
    });
    tui.send("\r");
    tui.wait("the merge running", 30, |s| s.contains("merging ·"));
    tui
}

/// SIGHUP (the SSH connection drops) or SIGTERM during a merge: the merge
/// is cancelled, its partial folder removed, the terminal put back, and
/// the exit code is 128 + the signal.
fn signal_during_a_merge(sig: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let mut tui = merging(tmp.path());
    tui.signal(sig);
    assert_eq!(tui.wait_exit(60), 128 + sig as u32);
    {
        let p = tui.parser.lock().unwrap();
        assert!(!p.screen().alternate_screen(), "left the alternate screen");
        assert!(!p.screen().hide_cursor(), "cursor shown again");
    }
    let lf = tui.lflags();
    assert!(lf & libc::ICANON != 0, "canonical mode back");
    assert!(lf & libc::ECHO != 0, "echo back");
    nothing_left(tmp.path());
}

/// No trace of the merge in `dir`: no partial folder, no output, no lock.
fn nothing_left(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.contains("partial") || n.contains("fam-linear") || n.contains("lock")),
        "the merge left {left:?}"
    );
}

#[test]
fn sighup_during_a_merge_restores_the_terminal_and_leaves_nothing() {
    signal_during_a_merge(libc::SIGHUP);
}

#[test]
fn sigterm_during_a_merge_restores_the_terminal_and_leaves_nothing() {
    signal_during_a_merge(libc::SIGTERM);
}

/// The terminal itself goes away (a closed window, an SSH connection
/// dropped) during a merge, with unsaved changes: writes to it fail from
/// then on, yet the changes are kept and the merge's partial folder is
/// removed, as for a SIGHUP sent while the terminal still works.
#[test]
fn a_closed_terminal_keeps_changes_and_leaves_no_partial_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut tui = merging(tmp.path());
    // An edit while it runs: the weight of the model under the cursor.
    tui.send("\x1b[Z");
    tui.send("j\x1b[C");
    tui.wait("modified", 10, |s| s.contains("modified"));
    tui.hang_up();
    assert_eq!(tui.wait_exit(60), 129, "ended as by SIGHUP");
    let kept = kept_one(&data);
    smelt::recipe::Recipe::load(&kept).expect("the kept recipe loads");
    nothing_left(tmp.path());
}

/// The one recipe a session that ended kept in `data`'s recovery folder.
fn kept_one(data: &Path) -> std::path::PathBuf {
    let kept: Vec<_> = std::fs::read_dir(data.join("recovered"))
        .expect("a recovery folder")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    kept[0].clone()
}

/// The terminal goes away with no SIGHUP to say so (it is not smelt's
/// controlling terminal): smelt finds out by itself within a second or so,
/// keeps the unsaved changes and ends as by SIGHUP. It once spun on the
/// end of input, at full CPU, for ever.
#[test]
fn a_terminal_gone_without_a_sighup_ends_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut tui = Spawn::new(&[], tmp.path(), &data).not_controlling().start();
    tui.wait("statistics", 30, |s| s.contains("[current]"));
    tui.send("jjj-");
    tui.wait("modified", 10, |s| s.contains("modified"));
    tui.hang_up();
    assert_eq!(tui.wait_exit(60), 129, "ended as by SIGHUP");
    kept_one(&data);
}

/// The SSH connection drops with unsaved changes: they are kept in the
/// data folder, and the next session says where.
#[test]
fn unsaved_changes_survive_a_hangup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut tui = Spawn::new(&[], tmp.path(), &data).start();
    tui.wait("statistics", 30, |s| s.contains("[current]"));
    tui.send("jjj-");
    tui.wait("modified", 10, |s| s.contains("modified"));
    tui.signal(libc::SIGHUP);
    assert_eq!(tui.wait_exit(20), 129);
    let kept = kept_one(&data);
    let r = smelt::recipe::Recipe::load(&kept).expect("the kept recipe loads");
    assert_eq!(r.overrides.len(), 1, "the density change is in it");
    let mut again = Spawn::new(&[], tmp.path(), &data).start();
    again.wait("the note", 30, |s| s.contains("kept from an ended session"));
    // o offers the kept recipe, and it opens with the change in it.
    again.send("o");
    again.wait("the open prompt", 10, |s| s.contains("Open recipe"));
    again.send("\r");
    // It opens as unsaved changes to the file they were made to.
    again.wait("the kept recipe", 20, |s| {
        s.contains("changes to llama-ties.toml kept from an ended session · s saves them")
            && s.contains("*▸ layer 1")
            && s.contains("llama-ties.toml")
            && s.contains("modified")
    });
    again.send("s");
    again.wait("the save prompt", 10, |s| s.contains("Save recipe"));
    let prompt = again.screen();
    assert!(
        prompt.contains("recipes/llama-ties.toml") && !prompt.contains("recovered/"),
        "s offers the original file:\n{prompt}"
    );
    again.send("\x1b");
    again.wait("the prompt closed", 10, |s| !s.contains("Save recipe"));
    // q asks first: the changes are not saved anywhere else now.
    again.send("q");
    again.wait("the question", 10, |s| s.contains("Unsaved changes to"));
    again.send("d");
    assert_eq!(again.wait_exit(10), 0);
    // The kept copy is not offered again.
    let left: Vec<_> = std::fs::read_dir(data.join("recovered"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.len() == 1 && left[0].ends_with(".toml.opened"),
        "{left:?}"
    );
    let mut third = Spawn::new(&[], tmp.path(), &data).start();
    let s = third.wait("statistics", 30, |s| s.contains("[current]"));
    assert!(!s.contains("kept from an ended session"), "{s}");
    third.send("q");
    assert_eq!(third.wait_exit(10), 0);
}
