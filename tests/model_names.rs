//! Names from files cannot attack the terminal: a tensor named
//! `ESC ] 0 ; PWNED BEL ESC [ 2 J` (retitle the window, clear the screen)
//! and a folder with an escape in its name come out of `inspect`,
//! `analyze` and error messages escaped, never raw.

use smelt::model::{write_small, Dtype};
use std::path::Path;
use std::process::{Command, Output};

const EVIL: &str = "\x1b]0;PWNED\x07\x1b[2J";
/// DEL and a C1 control (CSI), which `serde_json` leaves raw.
const EVIL_TOO: &str = "x\u{7f}y\u{9b}2J";

fn smelt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run smelt")
}

/// No byte or character that a terminal acts on besides line breaks.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || c == '\u{7f}')
        .collect();
    assert!(bad.is_empty(), "{what} carries {bad:?}:\n{text}");
}

fn model(dir: &Path, name: &str, k: f32) {
    let t = vec![
        (EVIL.to_string(), vec![4], vec![1.0 * k, -2.0, 3.0, 0.5]),
        (EVIL_TOO.to_string(), vec![2], vec![k, 1.0]),
        (
            "model.layers.0.mlp.weight".to_string(),
            vec![4],
            vec![0.1, -0.2 * k, 0.3, 0.4],
        ),
    ];
    write_small(
        &dir.join(name),
        &t,
        Dtype::F32,
        &[(EVIL.into(), EVIL.into())],
    )
    .unwrap();
}

#[test]
fn inspect_and_analyze_print_names_escaped() {
    let d = tempfile::tempdir().unwrap();
    model(d.path(), "base", 1.0);
    model(d.path(), "ft", 2.0);

    let o = smelt(&["inspect", "base"], d.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_inert("inspect", &o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J"), "{text}");
    assert!(text.contains("x\\u{7f}y\\u{9b}2J"), "{text}");

    let o = smelt(&["inspect", "base", "--json"], d.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_inert("inspect --json", &o.stdout);
    // Still JSON, with the names as they are.
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&EVIL) && names.contains(&EVIL_TOO),
        "{names:?}"
    );
    assert_eq!(v["metadata"][EVIL], EVIL);

    let o = smelt(&["analyze", "base", "ft"], d.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_inert("analyze", &o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("PWNED\\u{7}\\u{1b}[2J"), "{text}");

    let o = smelt(&["analyze", "base", "ft", "--json"], d.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_inert("analyze --json", &o.stdout);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.to_string().contains("PWNED"));
}

#[test]
fn errors_print_names_and_paths_escaped() {
    let d = tempfile::tempdir().unwrap();
    // A tensor whose entry is wrong, in a folder whose name is hostile too.
    let folder = d.path().join(format!("m{EVIL}"));
    std::fs::create_dir(&folder).unwrap();
    let header = format!(
        r#"{{"{}":{{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}}}"#,
        EVIL.replace('\x1b', "\\u001b").replace('\x07', "\\u0007")
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 8]);
    std::fs::write(folder.join("model.safetensors"), bytes).unwrap();

    // The library's error says it escaped ...
    let Err(e) = smelt::model::Model::open(&folder) else {
        panic!("opened");
    };
    let e = e.to_string();
    assert_inert("ModelError", e.as_bytes());
    // ... and so does the command.
    let o = smelt(&["inspect", &format!("m{EVIL}")], d.path());
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_inert("the error", &o.stderr);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("m\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J/model.safetensors: tensor `\\u{1b}]0;PWNED"),
        "{e}"
    );
    assert!(e.contains("needs 12 bytes"), "{e}");
    assert!(o.stdout.is_empty());

    // A merge whose plan fails on the name (the base has the tensor, the
    // other model lacks it): a message built outside the model module.
    model(d.path(), "base", 1.0);
    let t = vec![(
        "model.layers.0.mlp.weight".to_string(),
        vec![4],
        vec![0.0; 4],
    )];
    write_small(&d.path().join("lacking"), &t, Dtype::F32, &[]).unwrap();
    std::fs::write(
        d.path().join("r.toml"),
        "method = \"linear\"\n[[models]]\npath = \"base\"\nparameters = { weight = 1.0 }\n[[models]]\npath = \"lacking\"\nparameters = { weight = 1.0 }\n",
    )
    .unwrap();
    let o = smelt(&["merge", "r.toml", "--out", "out"], d.path());
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_inert("the merge error", &o.stderr);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("PWNED"), "{e}");
    assert!(!d.path().join("out").exists());

    // A model that is missing: the path in the I/O error.
    let o = smelt(&["inspect", &format!("gone{EVIL}")], d.path());
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_inert("the error", &o.stderr);
}
