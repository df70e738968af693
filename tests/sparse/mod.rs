//! Checkpoints whose data is a hole in a sparse file: instant to make and
//! free of disk, yet seconds of work to merge. Tests that must act while a
//! merge runs (cancel, signals, progress redraws) use them, so the merge is
//! always still running when the test acts on its "started" report.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// A 1 GiB f32 tensor shape (16384 x 16384).
pub const GIB: (u64, u64) = (16384, 16384);

/// Write `dir/model.safetensors` holding `tensors` f32 tensors of `shape`,
/// tensor `i` named `name(i)`, all data zero (a hole made by `set_len`).
pub fn sparse_model(dir: &Path, tensors: usize, shape: (u64, u64), name: impl Fn(u64) -> String) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let (rows, cols) = shape;
    let n = rows * cols * 4;
    let entries: Vec<String> = (0..tensors as u64)
        .map(|i| {
            format!(
                "\"{}\":{{\"dtype\":\"F32\",\"shape\":[{rows},{cols}],\"data_offsets\":[{},{}]}}",
                name(i),
                i * n,
                (i + 1) * n
            )
        })
        .collect();
    let mut header = format!("{{{}}}", entries.join(","));
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut f = std::fs::File::create(dir.join("model.safetensors")).expect("create");
    f.write_all(&(header.len() as u64).to_le_bytes())
        .expect("write");
    f.write_all(header.as_bytes()).expect("write");
    f.set_len(8 + header.len() as u64 + tensors as u64 * n)
        .expect("set_len");
}

/// `model.layers.{i}.mlp.up_proj.weight`: Llama-style names.
pub fn up_proj(i: u64) -> String {
    format!("model.layers.{i}.mlp.up_proj.weight")
}

/// A base and two fine-tunes (`dir/{base,ft0,ft1}`) of [`sparse_model`]s.
pub fn family(
    dir: &Path,
    tensors: usize,
    shape: (u64, u64),
    name: impl Fn(u64) -> String,
) -> Vec<PathBuf> {
    ["base", "ft0", "ft1"]
        .iter()
        .map(|m| {
            let p = dir.join(m);
            sparse_model(&p, tensors, shape, &name);
            p
        })
        .collect()
}

/// Task arithmetic over the family in `big/`, as `r.toml` holds it.
pub const RECIPE: &str = r#"method = "task_arithmetic"
base = "big/base"

[[models]]
path = "big/ft0"
parameters = { weight = 0.5 }

[[models]]
path = "big/ft1"
parameters = { weight = 0.5 }
"#;

/// A temp folder with a [`family`] in `big/` and [`RECIPE`] as `r.toml`.
pub fn merge_dir(
    tensors: usize,
    shape: (u64, u64),
    name: impl Fn(u64) -> String,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    family(&dir.path().join("big"), tensors, shape, name);
    std::fs::write(dir.path().join("r.toml"), RECIPE).expect("recipe");
    dir
}
