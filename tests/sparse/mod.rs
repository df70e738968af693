//! Checkpoints whose data is a hole in a sparse file: instant to make and
//! free of disk, yet seconds of work to merge. Tests that must act while a
//! merge runs (cancel, signals, progress redraws) use them, so the merge is
//! always still running when the test acts on its "started" report.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

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
