//! The `smelt` command line: `smelt` (the workbench), `merge`, `inspect`,
//! `analyze`, `eval`, `recipe`. Each subcommand is a thin front end over
//! the library; this file parses arguments and turns errors into messages
//! and exit codes (2: bad input, 1: smelt or the environment failed, such
//! as a full disk or a read-only output; 128 + N: stopped by signal N).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// `smelt --help`'s description: what `smelt` alone does in this build.
#[cfg(feature = "tui")]
const LONG_ABOUT: &str = "A terminal workbench for merging neural-network checkpoints.\n\n\
                          With no command, opens the workbench on the bundled sample models.";
#[cfg(not(feature = "tui"))]
const LONG_ABOUT: &str = "A terminal workbench for merging neural-network checkpoints.\n\n\
                          This build is without the workbench (cargo feature `tui`): \
                          `smelt` alone and `smelt tui` only say so.";

#[derive(Parser)]
#[command(
    name = "smelt",
    version,
    about = "A terminal workbench for merging neural-network checkpoints",
    long_about = LONG_ABOUT,
    // `smelt --theme light [tui ...]` opens the workbench; before another
    // command the workbench flags would be ignored, so they are refused
    // there (see `main`).
)]
struct Cli {
    #[command(flatten)]
    workbench: WorkbenchFlags,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open the workbench on a recipe, or on models.
    Tui(TuiCmd),
    /// Build a mixture-of-experts model from a mergekit-moe recipe.
    Moe {
        /// The mergekit-moe YAML recipe.
        recipe: PathBuf,
        /// Output folder (must not exist unless --force).
        #[arg(long, short)]
        out: PathBuf,
        /// Replace an existing output folder, if it is empty or a smelt
        /// output.
        #[arg(long)]
        force: bool,
        /// Seed of random gates (gate_mode random, uniform_random) and of
        /// noise_scale. The values differ from mergekit's (torch's RNG).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Maximum shard size, e.g. 5GB, 500MB, 2GiB.
        #[arg(long, default_value = cli::DEFAULT_SHARD_SIZE, value_parser = cli::parse_size)]
        shard_size: u64,
        /// No progress output, only the summary.
        #[arg(long, short)]
        quiet: bool,
        /// Do not flush the output to disk (no fsync).
        #[arg(long)]
        no_sync: bool,
        /// Build even when every expert is the same model (as mergekit-moe's
        /// flag of that name).
        #[arg(long)]
        i_understand_this_is_not_useful_without_training: bool,
    },
    /// Run a recipe (TOML, or mergekit YAML) and write the merged model.
    Merge {
        /// The recipe file (.toml, or mergekit .yml/.yaml).
        recipe: PathBuf,
        /// Output folder (must not exist unless --force; never inside a
        /// model's folder).
        #[arg(long, short)]
        out: PathBuf,
        /// Replace an existing output folder, if it is empty or a smelt
        /// output: one holding smelt-recipe.toml and only files a merge
        /// writes (shards, index, config.json, README.md, the recipe,
        /// copied tokenizer files). Anything else is refused, naming the
        /// other files; a file is never replaced.
        #[arg(long)]
        force: bool,
        /// Worker threads (default: every core; at most four per core, and
        /// at most 1024).
        #[arg(long)]
        threads: Option<usize>,
        /// Maximum shard size, e.g. 5GB, 500MB, 2GiB.
        #[arg(long, default_value = cli::DEFAULT_SHARD_SIZE, value_parser = cli::parse_size)]
        shard_size: u64,
        /// No progress output, only the summary.
        #[arg(long, short)]
        quiet: bool,
        /// Do not flush the output to disk (no fsync): a little faster, and
        /// the output still appears whole or not at all, but a power loss
        /// just after the merge may lose it.
        #[arg(long)]
        no_sync: bool,
        /// Pass NaN and infinite input values through, position by position,
        /// instead of refusing them (see docs/recipes.md, "Non-finite
        /// values").
        #[arg(long)]
        allow_nonfinite: bool,
        /// In a multi-document (mergekit-multi) file: the document to
        /// build into --out (default: the one no other document reads);
        /// the ones it needs are built first, into OUT.smelt-work/NAME,
        /// removed at the end.
        #[arg(long, value_name = "NAME")]
        doc: Option<String>,
    },
    /// Show a model's layers, tensors, shapes, dtypes and shards.
    Inspect {
        model: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sign agreement and interference statistics per layer and tensor.
    Analyze {
        /// A recipe, or model folders (the first is the base unless --base;
        /// then TIES, weight 1 and density 0.5 for every model).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The base model (when giving models).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Merge method whose selection to describe (default: the
        /// recipe's, or ties).
        #[arg(long)]
        method: Option<String>,
        /// Trim density for every model (overrides the recipe's).
        #[arg(long)]
        density: Option<f64>,
        /// Only layer rows, no per-tensor rows.
        #[arg(long)]
        layers_only: bool,
        #[arg(long)]
        json: bool,
    },
    /// Accuracy of an MLP checkpoint on the digits test split.
    Eval {
        model: PathBuf,
        /// A CSV in the digits format (default: the bundled data set).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check or convert recipes.
    #[command(subcommand)]
    Recipe(RecipeCmd),
    /// Write a PEFT LoRA adapter approximating a fine-tune (a rank-r SVD of
    /// fine-tune − base per linear module), as mergekit-extract-lora does.
    ExtractLora(cli::extract::Args),
    /// Fetch a hub model (org/name or org/name@revision) into the Hugging
    /// Face cache: only the files a merge reads, resuming a partial
    /// download. Prints the snapshot folder.
    Download {
        /// org/name or org/name@revision.
        model: String,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// How the workbench looks and takes input: accepted by `smelt` alone and
/// by `smelt tui`, nowhere else.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct WorkbenchFlags {
    /// Theme name (default, light, high-contrast, mono) or a theme file.
    #[arg(long)]
    pub theme: Option<String>,
    /// Enable the mouse (off by default so terminal text selection works).
    #[arg(long)]
    pub mouse: bool,
    /// Draw with ASCII only (no box-drawing or block glyphs).
    #[arg(long)]
    pub ascii: bool,
}

/// `smelt tui [PATHS] [--base B] [flags]`.
#[derive(clap::Args, Debug, PartialEq)]
struct TuiCmd {
    /// A recipe file, or model folders.
    paths: Vec<PathBuf>,
    /// The base model, when opening models.
    #[arg(long)]
    base: Option<PathBuf>,
    #[command(flatten)]
    flags: WorkbenchFlags,
}

/// What the workbench is opened with.
#[derive(Debug, Default, PartialEq)]
pub struct TuiArgs {
    pub paths: Vec<PathBuf>,
    pub base: Option<PathBuf>,
    pub theme: Option<String>,
    pub mouse: bool,
    pub ascii: bool,
}

impl TuiArgs {
    fn new(paths: Vec<PathBuf>, base: Option<PathBuf>, flags: WorkbenchFlags) -> TuiArgs {
        TuiArgs {
            paths,
            base,
            theme: flags.theme,
            mouse: flags.mouse,
            ascii: flags.ascii,
        }
    }
}

impl WorkbenchFlags {
    fn any(&self) -> bool {
        self.theme.is_some() || self.mouse || self.ascii
    }
    /// Flags given before `tui` and after it: after wins.
    fn and(self, later: WorkbenchFlags) -> WorkbenchFlags {
        WorkbenchFlags {
            theme: later.theme.or(self.theme),
            mouse: self.mouse || later.mouse,
            ascii: self.ascii || later.ascii,
        }
    }
}

#[derive(Subcommand)]
enum RecipeCmd {
    /// Validate a recipe against its models without merging.
    Check { recipe: PathBuf },
    /// Write a recipe in another format.
    Export {
        recipe: PathBuf,
        #[arg(long, value_enum, default_value = "mergekit")]
        format: Format,
        /// Output file (default: standard output, paths absolute). Never
        /// inside the folder of a model the recipe reads.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Write over an existing output file (still never one inside a
        /// model's folder).
        #[arg(long)]
        force: bool,
    },
}

/// Parse, refusing workbench flags before a command they do not apply to
/// (they would be ignored there).
fn parse_checked<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::CommandFactory;
    let cli = Cli::try_parse_from(args)?;
    if cli.workbench.any() && !matches!(cli.cmd, None | Some(Cmd::Tui(_))) {
        return Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--theme, --mouse and --ascii are workbench flags: use them with `smelt` or `smelt tui`",
        ));
    }
    Ok(cli)
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Toml,
    Mergekit,
}

fn main() -> ExitCode {
    let cli = match parse_checked(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.cmd {
        None => cli::tui::run(TuiArgs::new(Vec::new(), None, cli.workbench)),
        Some(Cmd::Tui(a)) => {
            cli::tui::run(TuiArgs::new(a.paths, a.base, cli.workbench.and(a.flags)))
        }
        Some(Cmd::Merge {
            recipe,
            out,
            force,
            threads,
            shard_size,
            quiet,
            no_sync,
            allow_nonfinite,
            doc,
        }) => cli::merge::run(
            &recipe,
            out,
            force,
            threads,
            shard_size,
            quiet,
            !no_sync,
            allow_nonfinite,
            doc.as_deref(),
        ),
        Some(Cmd::Moe {
            recipe,
            out,
            force,
            seed,
            shard_size,
            quiet,
            no_sync,
            i_understand_this_is_not_useful_without_training,
        }) => cli::moe::run(cli::moe::Args {
            recipe,
            out,
            force,
            seed,
            shard_size,
            quiet,
            sync: !no_sync,
            allow_all_same: i_understand_this_is_not_useful_without_training,
        }),
        Some(Cmd::Inspect { model, json }) => cli::inspect::run(&model, json),
        Some(Cmd::Analyze {
            inputs,
            base,
            method,
            density,
            layers_only,
            json,
        }) => cli::analyze::run(&inputs, base, method.as_deref(), density, layers_only, json),
        Some(Cmd::Eval { model, data, json }) => cli::eval::run(&model, data.as_deref(), json),
        Some(Cmd::ExtractLora(a)) => a.run(),
        Some(Cmd::Download { model, quiet }) => cli::fetch::download(&model, quiet),
        Some(Cmd::Recipe(RecipeCmd::Check { recipe })) => cli::recipe_check(&recipe),
        Some(Cmd::Recipe(RecipeCmd::Export {
            recipe,
            format,
            out,
            force,
        })) => cli::recipe_export(
            &recipe,
            matches!(format, Format::Mergekit),
            out.as_deref(),
            force,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                // Not eprintln!: it panics when stderr is gone (a hung-up
                // terminal).
                use std::io::Write;
                // Escaped here too (escaping is idempotent), so no message
                // can carry a control sequence whatever built it.
                let _ = writeln!(
                    std::io::stderr(),
                    "smelt: {}",
                    smelt::text::escape_lines(&e.message)
                );
            }
            ExitCode::from(e.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_checked(std::iter::once("smelt").chain(args.iter().copied()))
    }

    /// The workbench arguments `args` open it with (panics for another
    /// command or a parse error).
    fn workbench(args: &[&str]) -> TuiArgs {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.cmd {
            None => TuiArgs::new(Vec::new(), None, cli.workbench),
            Some(Cmd::Tui(a)) => TuiArgs::new(a.paths, a.base, cli.workbench.and(a.flags)),
            Some(_) => panic!("{args:?} is not the workbench"),
        }
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// `merge` without `--shard-size` shards as the engine and the
    /// workbench do by default.
    #[test]
    fn merge_shards_at_the_library_default() {
        match parse(&["merge", "r.toml", "--out", "o"]).map(|c| c.cmd) {
            Ok(Some(Cmd::Merge { shard_size, .. })) => {
                assert_eq!(shard_size, smelt::model::DEFAULT_SHARD_SIZE);
                let engine = smelt::engine::Options::new("o");
                assert_eq!(shard_size, engine.shard_size);
            }
            _ => panic!("not a merge"),
        }
    }

    #[test]
    fn workbench_flags_without_tui() {
        let light = TuiArgs {
            theme: Some("light".into()),
            ..TuiArgs::default()
        };
        assert_eq!(workbench(&["--theme", "light"]), light);
        assert_eq!(workbench(&["tui", "--theme", "light"]), light);
        let both = TuiArgs {
            mouse: true,
            ascii: true,
            ..TuiArgs::default()
        };
        assert_eq!(workbench(&["--mouse", "--ascii"]), both);
        assert_eq!(workbench(&["tui", "--ascii", "--mouse"]), both);
        assert_eq!(workbench(&[]), TuiArgs::default());
        let with_paths = workbench(&["tui", "r.toml", "--base", "b", "--theme", "mono"]);
        assert_eq!(with_paths.paths, [PathBuf::from("r.toml")]);
        assert_eq!(with_paths.base, Some(PathBuf::from("b")));
        assert_eq!(with_paths.theme.as_deref(), Some("mono"));
        // Before `tui` as well as after it.
        let before = workbench(&["--theme", "light", "--ascii", "tui", "r.toml"]);
        assert_eq!(before.theme.as_deref(), Some("light"));
        assert!(before.ascii);
        assert_eq!(before.paths, [PathBuf::from("r.toml")]);
        let both = workbench(&["--theme", "light", "tui", "--theme", "mono"]);
        assert_eq!(both.theme.as_deref(), Some("mono"), "the later one wins");
    }

    #[test]
    fn workbench_flags_only_for_the_workbench() {
        use clap::error::ErrorKind;
        let kind = |args: &[&str]| parse(args).err().map(|e| e.kind());
        assert_eq!(
            kind(&["merge", "r.toml", "--out", "o", "--theme", "x"]),
            Some(ErrorKind::UnknownArgument)
        );
        assert_eq!(
            kind(&["inspect", "m", "--ascii"]),
            Some(ErrorKind::UnknownArgument)
        );
        // Before another command they would be ignored: refused instead.
        assert!(kind(&["--theme", "light", "merge", "r.toml", "--out", "o"]).is_some());
        assert!(kind(&["--mouse", "inspect", "m"]).is_some());
        assert!(kind(&["--theme"]).is_some(), "--theme needs a value");
        // Models are given to `tui`, not to `smelt` itself.
        assert!(kind(&["--ascii", "models/base"]).is_some());
    }
}
