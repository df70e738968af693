//! `smelt` / `smelt tui`: open the workbench.

use super::{CliError, CliResult};
use crate::TuiArgs;

pub fn run(args: TuiArgs) -> CliResult {
    let _ = args;
    Err(CliError::internal(
        "the workbench is not available in this build yet",
    ))
}
