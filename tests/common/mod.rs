//! Helpers shared by the integration tests: the `smelt` binary, the
//! mergekit fixtures, tied magnitudes for the parity tests.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run the `smelt` binary with `args` in `cwd`.
pub fn smelt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run smelt")
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The mergekit fixtures (tiny models, recipes, mergekit's outputs).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit")
}

/// A temp folder with a copy of the fixture models `names` (4 layers each)
/// in `models/`: the merge writes nothing there, but tests must not share
/// files.
pub fn fixture_models(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for m in names {
        let to = dir.path().join("models").join(m);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in ["model.safetensors", "config.json"] {
            std::fs::copy(fixtures().join("models").join(m).join(f), to.join(f)).expect("copy");
        }
    }
    dir
}

/// Positions where some model's task vector has a non-zero magnitude that
/// also occurs elsewhere in the same tensor.
pub fn tied_positions(models: &[&[f32]], base: Option<&[f32]>) -> Vec<bool> {
    let n = models.first().map_or(0, |m| m.len());
    let mut tied = vec![false; n];
    for m in models {
        let mags: Vec<u32> = (0..n)
            .map(|i| (m[i] - base.map_or(0.0, |b| b[i])).abs().to_bits())
            .collect();
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for &x in &mags {
            *counts.entry(x).or_default() += 1;
        }
        for (t, x) in tied.iter_mut().zip(&mags) {
            if *x != 0 && counts[x] > 1 {
                *t = true;
            }
        }
    }
    tied
}

/// The shared splitmix64 stream (`smelt::mlp::splitmix64`), with the picks
/// the fuzzing tests need (`fuzz_header`, `fuzz_recipe`, `torchbin_fuzz`).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 bits.
    pub fn next(&mut self) -> u64 {
        smelt::mlp::splitmix64(&mut self.0)
    }
    /// Uniform-ish in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// One of `xs` (not empty).
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}
