//! The workbench's flags (`--theme`, `--mouse`, `--ascii`) on `smelt`
//! alone as on `smelt tui`, and on no other command.

use std::process::{Command, Output, Stdio};

fn smelt(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smelt"));
    cmd.args(args)
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run smelt")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_the_workbench_flags_where_they_apply() {
    for args in [&["--help"][..], &["tui", "--help"]] {
        let o = smelt(args, &[]);
        assert!(o.status.success(), "{args:?}: {}", out(&o));
        let text = out(&o);
        for flag in ["--theme", "--mouse", "--ascii"] {
            assert!(text.contains(flag), "{args:?} should list {flag}:\n{text}");
        }
    }
    let o = smelt(&["merge", "--help"], &[]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(!out(&o).contains("--theme"), "{}", out(&o));
}

#[test]
fn merge_refuses_a_theme() {
    let o = smelt(&["merge", "r.toml", "--out", "o", "--theme", "light"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("--theme"), "{}", out(&o));
}

/// `smelt --theme NAME` reaches the workbench: an unknown theme is its
/// error (before any terminal is touched), not an unknown argument; also
/// where colour is off, so a typo never passes unseen.
#[cfg(feature = "tui")]
#[test]
fn theme_without_tui_reaches_the_workbench() {
    for envs in [&[][..], &[("NO_COLOR", "1")], &[("TERM", "dumb")]] {
        let o = smelt(&["--theme", "no-such-theme", "--ascii"], envs);
        assert_eq!(o.status.code(), Some(2), "{envs:?}: {}", out(&o));
        let text = out(&o);
        assert!(
            text.contains("theme `no-such-theme`") && !text.contains("unexpected argument"),
            "{envs:?}: {text}"
        );
    }
}

/// A build without the `tui` feature parses the workbench's command and
/// flags as any build does, and then says it has no workbench (exit 2)
/// instead of an unknown-command error.
#[cfg(not(feature = "tui"))]
#[test]
fn a_build_without_the_workbench_says_so() {
    for args in [
        &[][..],
        &["tui"],
        &["tui", "r.toml", "--theme", "light"],
        &["--ascii"],
    ] {
        let o = smelt(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", out(&o));
        let text = out(&o);
        assert!(
            text.contains("built without the workbench") && text.contains("smelt --help"),
            "{args:?}: {text}"
        );
        assert!(o.stdout.is_empty(), "{args:?}: the message goes to stderr");
    }
    // Everything else still works, and the help says what this build is.
    let o = smelt(&["--help"], &[]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("without the workbench"), "{}", out(&o));
}
