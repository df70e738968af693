//! Hub models on the command line: `smelt download org/name[@rev]`, and
//! the hub names a command reads, fetched into the Hugging Face cache
//! before anything opens them (`smelt merge`, `inspect`, `analyze`), with
//! a progress bar on a terminal and one line per file otherwise.
//!
//! `smelt recipe check` never downloads: it reads the cache only, and says
//! when a model is not there.

use super::{emit, CliError, CliResult};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use smelt::model::source::{self, DownloadProgress, HubName};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Download progress on stderr: a bar per file on a terminal, a line per
/// file otherwise, nothing when quiet.
struct Report {
    model: String,
    quiet: bool,
    tty: bool,
    bar: Option<ProgressBar>,
}

impl Report {
    fn new(model: &HubName, quiet: bool) -> Report {
        Report {
            model: model.to_string(),
            quiet,
            tty: std::io::stderr().is_terminal(),
            bar: None,
        }
    }
    fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

impl DownloadProgress for Report {
    fn file(&mut self, name: &str, size: u64) {
        self.done();
        if self.quiet {
            return;
        }
        let what = format!(
            "{}: {}",
            smelt::text::escape(&self.model),
            smelt::text::escape(name)
        );
        if self.tty {
            let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            self.bar = Some(bar);
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "downloading {what} ({})",
                smelt::units::bytes(size)
            );
        }
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.done();
    }
}

/// Fetch `name` into the cache unless it is there, reporting progress.
fn fetch(name: &HubName, quiet: bool) -> Result<PathBuf, CliError> {
    if let Some(snap) = source::cached(name) {
        return Ok(snap);
    }
    let mut report = Report::new(name, quiet);
    let r = source::fetch(name, &mut report);
    report.done();
    Ok(r?)
}

/// Every hub name among `paths` that is not cached, downloaded into the
/// cache (local paths and cached names cost nothing).
pub fn hub_models(paths: &[PathBuf], quiet: bool) -> CliResult {
    for p in paths {
        let Some(text) = p.to_str() else { continue };
        // `model+adapter`: each half may be a hub name.
        let halves = match smelt::model::lora::split_reference(text) {
            Some((m, a)) if !p.exists() => vec![m, a],
            _ => vec![text],
        };
        for h in halves {
            if let Some(name) = source::hub_name_in(None, h) {
                fetch(&name, quiet)?;
            }
        }
    }
    Ok(())
}

/// [`hub_models`] for one path.
pub fn hub_model(path: &Path, quiet: bool) -> CliResult {
    hub_models(&[path.to_path_buf()], quiet)
}

/// `smelt download org/name[@rev]`: fetch into the cache (unless there)
/// and print the snapshot folder.
pub fn download(reference: &str, quiet: bool) -> CliResult {
    let Some(name) = HubName::parse(reference) else {
        return Err(CliError::input(format!(
            "`{reference}` is not a hub name (org/name or org/name@revision)"
        )));
    };
    let snap = fetch(&name, quiet)?;
    emit(&format!("{}\n", smelt::text::path(&snap)))
}
