//! `smelt` / `smelt tui`: open the workbench.

use super::{CliError, CliResult};
use crate::TuiArgs;
use smelt::tui::TuiOptions;
use std::path::Path;

/// Whether a path names a recipe file rather than a model.
fn is_recipe(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("toml" | "yml" | "yaml")
        )
}

pub fn run(args: TuiArgs) -> CliResult {
    let mut opts = TuiOptions {
        base: args.base,
        theme: args.theme,
        mouse: args.mouse,
        ascii: args.ascii,
        ..TuiOptions::default()
    };
    match args.paths.as_slice() {
        [one] if is_recipe(one) => opts.recipe = Some(one.clone()),
        paths => opts.models = paths.to_vec(),
    }
    smelt::tui::run(opts).map_err(CliError::input)
}
