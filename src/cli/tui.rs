//! `smelt` / `smelt tui`: open the workbench.

use super::{CliError, CliResult};
use crate::TuiArgs;
use smelt::tui::state::Exit;
use smelt::tui::{TuiError, TuiOptions};
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
    match smelt::tui::run(opts) {
        Ok(Exit::User) => Ok(()),
        // Ended by a signal: the conventional 128 + its number, quietly
        // (after SIGHUP there is no terminal to write to).
        Ok(Exit::Signal(sig)) => Err(CliError {
            message: String::new(),
            code: (128 + sig).clamp(0, 255) as u8,
        }),
        Err(e @ (TuiError::Input(_) | TuiError::NoTerminal(_))) => Err(CliError::input(e)),
        Err(e @ TuiError::Terminal(_)) => Err(CliError::internal(e)),
    }
}
