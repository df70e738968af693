//! `smelt analyze`: the workbench's interference numbers, headless.

use super::{CliError, CliResult};
use std::path::{Path, PathBuf};

pub fn run(
    inputs: &[PathBuf],
    base: Option<PathBuf>,
    density: Option<f64>,
    layers_only: bool,
    json: bool,
) -> CliResult {
    let _ = (inputs, base, density, layers_only, json);
    let _: Option<&Path> = None;
    Err(CliError::internal(
        "analyze: not available in this build yet",
    ))
}
