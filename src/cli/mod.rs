//! Subcommands. Each turns library errors into a [`CliError`] with an exit
//! code: 2 when the input is at fault (a file, a recipe, a model, an
//! output that may not be written), 1 when smelt or the environment is (a
//! full disk, a read-only output folder, an output another merge is
//! writing), 128 + N when stopped by signal N.

pub mod analyze;
pub mod eval;
pub mod extract;
pub mod fetch;
pub mod inspect;
pub mod merge;
pub mod moe;
pub mod tui;

use smelt::recipe::Recipe;
use std::path::Path;

/// A message for stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    /// The input is at fault (exit 2).
    pub fn input(message: impl std::fmt::Display) -> CliError {
        CliError {
            message: safe(message),
            code: 2,
        }
    }
    /// smelt or the environment is at fault (exit 1).
    pub fn internal(message: impl std::fmt::Display) -> CliError {
        CliError {
            message: safe(message),
            code: 1,
        }
    }
}

/// A message for the terminal: whatever names and paths it holds, escaped
/// (line breaks kept; escaping what is escaped already changes nothing).
fn safe(message: impl std::fmt::Display) -> String {
    smelt::text::escape_lines(&message.to_string()).into_owned()
}

impl From<smelt::model::ModelError> for CliError {
    fn from(e: smelt::model::ModelError) -> Self {
        if e.is_environment() {
            CliError::internal(e)
        } else {
            CliError::input(e)
        }
    }
}
impl From<smelt::recipe::RecipeError> for CliError {
    fn from(e: smelt::recipe::RecipeError) -> Self {
        CliError::input(e)
    }
}
impl From<smelt::plan::PlanError> for CliError {
    fn from(e: smelt::plan::PlanError) -> Self {
        CliError::input(e)
    }
}
impl From<smelt::engine::EngineError> for CliError {
    fn from(e: smelt::engine::EngineError) -> Self {
        use smelt::engine::EngineError as E;
        match e {
            E::Model(m) => m.into(),
            E::Merge(m) => CliError::input(m),
            E::Mlp(m) => CliError::input(m),
            e @ (E::NonFinite { .. } | E::Input(_)) => CliError::input(e),
            E::Cancelled => CliError {
                message: "cancelled; nothing was written".into(),
                code: 130,
            },
            E::Other(m) => CliError::internal(m),
        }
    }
}

pub type CliResult = Result<(), CliError>;

/// Write a command's output to stdout. A closed pipe (`smelt inspect M |
/// head`) ends the output quietly instead of failing.
pub fn emit(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::internal(format!("writing output: {e}")))
        }
        _ => Ok(()),
    }
}

/// `--shard-size`'s default as the user would type it: what [`parse_size`]
/// reads as [`smelt::model::DEFAULT_SHARD_SIZE`] (a test holds the two
/// together).
pub const DEFAULT_SHARD_SIZE: &str = "5GB";

/// Parse a size such as `5GB`, `500MB`, `2GiB`, `1000000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 5GB, 500MB, 2GiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "`{u}` is not a size unit (B, KB, MB, GB, TB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = n * mult;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("`{s}`: a shard size must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// `smelt recipe check R`: the recipe, then the plan against the models'
/// headers (shapes, missing tensors), without merging.
pub fn recipe_check(path: &Path) -> CliResult {
    if let Some(m) = smelt::recipe::MultiRecipe::load(path).map_err(merge::problems)? {
        return recipe_check_multi(&m);
    }
    // Every problem at once, each with its line.
    let recipe = Recipe::load_all(path).map_err(merge::multi::problems)?;
    let plan = smelt::plan::Plan::build(&recipe).map_err(|e| named(path, e))?;
    let what = if plan.jobs.is_empty() {
        "whole MLPs, features matched on calibration data".to_string()
    } else {
        format!(
            "{} output tensors, {} layers, {} to read",
            plan.jobs.len(),
            plan.out_layers,
            smelt::units::bytes(plan.input_bytes())
        )
    };
    emit(&format!(
        "{}: ok ({}, {} models, {what})\n",
        smelt::text::path(path),
        recipe.method.name(),
        plan.models.len(),
    ))
}

/// `smelt recipe check` on a multi-document file: the graph (checked when
/// read), then each document: planned against its models' headers when it
/// reads no other document's output (those do not exist before a run).
fn recipe_check_multi(m: &smelt::recipe::MultiRecipe) -> CliResult {
    let mut report = String::new();
    let finals = m.finals();
    for (i, d) in m.documents.iter().enumerate() {
        let what = if d.needs.is_empty() {
            let plan =
                smelt::plan::Plan::build(&d.recipe).map_err(|e| merge::plan_error(m, i, e))?;
            format!(
                "{} output tensors, {} to read",
                plan.jobs.len(),
                smelt::units::bytes(plan.input_bytes())
            )
        } else {
            format!("reads {}", m.quoted_labels(&d.needs))
        };
        report.push_str(&format!(
            "  line {}: `{}`: {}, {}{}\n",
            d.line,
            smelt::text::escape_lines(m.label(i)),
            d.recipe.method.name(),
            what,
            if finals.len() == 1 && finals[0] == i {
                " (final)"
            } else {
                ""
            }
        ));
    }
    let order = match m.final_document(None) {
        Ok(t) => format!(
            "order: {}",
            m.order_for(t)
                .iter()
                .map(|&i| smelt::text::escape_lines(m.label(i)).into_owned())
                .collect::<Vec<_>>()
                .join(" -> ")
        ),
        Err(_) => format!(
            "{} documents are read by no other; `smelt merge` needs --doc NAME",
            finals.len()
        ),
    };
    emit(&format!(
        "{}: ok ({} documents; {order})\n{report}",
        smelt::text::path(&m.path),
        m.documents.len(),
    ))
}

/// A planning error of the recipe at `path`: a model it names that cannot
/// be read is said to come from that recipe.
pub fn named(path: &Path, e: smelt::plan::PlanError) -> CliError {
    match e {
        // Each at its line, as `recipe check` reports what it finds itself.
        smelt::plan::PlanError::Problems(problems) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            CliError::input(
                smelt::recipe::locate(&text, path, &problems)
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\nsmelt: "),
            )
        }
        smelt::plan::PlanError::Model(m) => CliError::input(format!(
            "{}: a model it names cannot be read: {m}",
            path.display()
        )),
        other => other.into(),
    }
}

/// `smelt recipe export R [--format toml|mergekit] [--out F]`. The file
/// is written atomically; an existing one is replaced only with `force`,
/// and never one inside a model's folder (that could be the model itself).
pub fn recipe_export(path: &Path, mergekit: bool, out: Option<&Path>, force: bool) -> CliResult {
    if let Some(m) = smelt::recipe::MultiRecipe::load(path).map_err(merge::problems)? {
        return Err(CliError::input(format!(
            "{}: has {} documents (a mergekit-multi file), and an export holds one recipe; \
             its documents are: {}",
            path.display(),
            m.documents.len(),
            (0..m.documents.len())
                .map(|i| format!("`{}` (line {})", m.label(i), m.documents[i].line))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let recipe = Recipe::load(path)?;
    if let Some(o) = out {
        let models = smelt::plan::recipe_paths(&recipe);
        if let Some(m) = smelt::model::inside_input(o, &models)? {
            return Err(CliError::input(format!(
                "{}: is inside the folder of model {}, which the recipe reads; \
                 write the export somewhere else (--force does not change this)",
                o.display(),
                m.display()
            )));
        }
        if o.symlink_metadata().is_ok() && !force {
            return Err(CliError::input(format!(
                "{} exists; --force writes over it",
                o.display()
            )));
        }
        if o.is_dir() {
            return Err(CliError::input(format!(
                "{} is a folder; --out names the file to write",
                o.display()
            )));
        }
    }
    // Paths are written relative to where the text goes; on standard
    // output nobody knows where that is, so they are absolute.
    let dir = match out {
        Some(o) => o
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf),
        None => std::path::PathBuf::from("/"),
    };
    let text = if mergekit {
        recipe.to_mergekit_yaml(&dir)?
    } else {
        recipe.to_toml(&dir)
    };
    match out {
        Some(o) => smelt::fsutil::write_atomic(o, text.as_bytes()).map_err(|e| {
            let message = format!(
                "cannot write {}: {}",
                o.display(),
                smelt::fsutil::reason(&e)
            );
            if smelt::fsutil::is_environment_write(&e) {
                CliError::internal(message)
            } else {
                CliError::input(message)
            }
        })?,
        None => emit(&text)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_size_default_is_the_library_s() {
        assert_eq!(
            parse_size(DEFAULT_SHARD_SIZE),
            Ok(smelt::model::DEFAULT_SHARD_SIZE)
        );
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert!(parse_size("0").is_err());
    }
}
