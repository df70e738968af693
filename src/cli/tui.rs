//! `smelt` / `smelt tui`: open the workbench, or, in a build without the
//! `tui` feature, say that there is none.

use super::{CliError, CliResult};
use crate::TuiArgs;
#[cfg(feature = "tui")]
use smelt::tui::state::Exit;
#[cfg(feature = "tui")]
use smelt::tui::{TuiError, TuiOptions};
#[cfg(feature = "tui")]
use std::path::Path;

/// Why `smelt` / `smelt tui` cannot open anything in a build without the
/// workbench, and what does work (exit 2, as for any command this
/// binary cannot run).
#[cfg(not(feature = "tui"))]
pub fn run(_args: TuiArgs) -> CliResult {
    Err(CliError::input(
        "this smelt was built without the workbench (cargo feature `tui`); \
         merge, inspect, analyze, eval and recipe work as usual (see smelt --help), \
         and a build with default features has the workbench",
    ))
}

/// Whether a path names a recipe file rather than a model.
#[cfg(feature = "tui")]
fn is_recipe(p: &Path) -> bool {
    p.is_file() && smelt::recipe::is_recipe_path(p)
}

/// Open the workbench on a recipe, on models, or on the bundled samples.
#[cfg(feature = "tui")]
pub fn run(args: TuiArgs) -> CliResult {
    let mut opts = TuiOptions {
        base: args.base,
        theme: args.theme,
        mouse: args.mouse,
        ascii: args.ascii,
        ..TuiOptions::default()
    };
    match args.paths.as_slice() {
        [one] if is_recipe(one) => {
            if let Some(b) = &opts.base {
                return Err(CliError::input(format!(
                    "--base {}: {} names its own base (--base goes with models: \
                     smelt tui MODEL... --base BASE)",
                    b.display(),
                    one.display()
                )));
            }
            opts.recipe = Some(one.clone());
        }
        paths => opts.models = paths.to_vec(),
    }
    exit_of(smelt::tui::run(opts))
}

/// The workbench's end as an exit: 0 when the user quits, 128 + the
/// signal that ended it, 2 when what the user named (a recipe, a model,
/// a theme, a missing terminal) is at fault, 1 when the terminal failed.
#[cfg(feature = "tui")]
fn exit_of(r: Result<Exit, TuiError>) -> CliResult {
    match r {
        Ok(Exit::User) => Ok(()),
        // Quietly: after SIGHUP there is no terminal to write to.
        Ok(Exit::Signal(sig)) => Err(CliError {
            message: String::new(),
            code: (128 + sig).clamp(0, 255) as u8,
        }),
        Err(e @ (TuiError::Input(_) | TuiError::NoTerminal(_))) => Err(CliError::input(e)),
        Err(e @ TuiError::Terminal(_)) => Err(CliError::internal(e)),
    }
}

#[cfg(all(test, feature = "tui"))]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let code = |r| exit_of(r).err().map_or(0, |e| e.code);
        assert_eq!(code(Ok(Exit::User)), 0);
        assert_eq!(code(Ok(Exit::Signal(1))), 129);
        assert_eq!(code(Ok(Exit::Signal(15))), 143);
        assert_eq!(code(Err(TuiError::Input("bad recipe".into()))), 2);
        assert_eq!(code(Err(TuiError::NoTerminal("standard input"))), 2);
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        assert_eq!(
            code(Err(TuiError::Terminal(io))),
            1,
            "a terminal failure is not bad input"
        );
    }
}
