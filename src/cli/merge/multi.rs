//! `smelt merge` on a multi-document (mergekit-multi) file: the chosen
//! document (`--doc NAME`, else the one no other reads) into `--out`, the
//! ones it needs first into `OUT.smelt-work/NAME` (removed at the end), a
//! `[2/3] name` line before each document's progress.

use super::super::{CliError, CliResult};
use super::progress;
use smelt::engine::multi::{self, MultiError, MultiEvent};
use smelt::engine::Options;
use smelt::model::OutputLock;
use smelt::recipe::MultiRecipe;
use smelt::units::bytes;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Errors of loading: every problem, each with its line.
pub(crate) fn problems(errors: Vec<smelt::recipe::RecipeError>) -> CliError {
    CliError::input(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\nsmelt: "),
    )
}

/// A document's planning error, each problem at its line in the file.
pub(crate) fn plan_error(m: &MultiRecipe, index: usize, e: smelt::plan::PlanError) -> CliError {
    let name = m.label(index);
    match e {
        smelt::plan::PlanError::Problems(ps) => {
            problems(smelt::recipe::locate(&m.document_text(index), &m.path, &ps))
                .prefixed(&format!("document `{name}`: "))
        }
        smelt::plan::PlanError::Model(e) => CliError::input(format!(
            "{}: document `{name}` (line {}): a model it names cannot be read: {e}",
            m.path.display(),
            m.documents[index].line
        )),
        other => {
            let c: CliError = other.into();
            c.prefixed(&format!(
                "{}: document `{name}` (line {}): ",
                m.path.display(),
                m.documents[index].line
            ))
        }
    }
}

impl CliError {
    fn prefixed(mut self, p: &str) -> CliError {
        self.message = format!("{}{}", super::super::safe(p), self.message);
        self
    }
}

/// Print a multi-document run's progress until the channel closes: a line
/// per document, then that document's bar or lines.
fn print(rx: &crossbeam_channel::Receiver<MultiEvent>, tty: bool) {
    std::thread::scope(|scope| {
        let mut current: Option<(crossbeam_channel::Sender<smelt::engine::Event>, _)> = None;
        for ev in rx.iter() {
            match ev {
                MultiEvent::Document {
                    pos,
                    total,
                    name,
                    out,
                } => {
                    if let Some((tx, h)) = current.take() {
                        drop(tx);
                        let _ = std::thread::ScopedJoinHandle::join(h);
                    }
                    let _ = writeln!(
                        std::io::stderr(),
                        "[{pos}/{total}] {} -> {}",
                        smelt::text::escape_lines(&name),
                        smelt::text::path(&out)
                    );
                    let (tx, rx2) = crossbeam_channel::unbounded();
                    let h = scope.spawn(move || progress::print(&rx2, tty));
                    current = Some((tx, h));
                }
                MultiEvent::Engine(e) => {
                    if let Some((tx, _)) = &current {
                        let _ = tx.send(e);
                    }
                }
            }
        }
        if let Some((tx, h)) = current.take() {
            drop(tx);
            let _ = h.join();
        }
    });
}

/// Run the multi-document file `m` (see the module documentation).
pub(crate) fn run(m: &MultiRecipe, doc: Option<&str>, opts: Options, quiet: bool) -> CliResult {
    let target = m.final_document(doc)?;
    let out = opts.out.clone();
    let work = multi::default_work(&out);
    let order = m.order_for(target);
    // Every model a document reads that is not another document's output.
    let mut inputs: Vec<PathBuf> = Vec::new();
    for &i in &order {
        for p in smelt::plan::recipe_paths(&m.recipe_for(i, &work)) {
            if !p.starts_with(&work) && !inputs.contains(&p) {
                inputs.push(p);
            }
        }
    }
    let final_inputs = smelt::plan::recipe_paths(&m.recipe_for(target, &work));
    smelt::model::check_destination(&out, &final_inputs, opts.force)?;
    smelt::model::check_destination(&out, &inputs, opts.force)?;
    let _lock = OutputLock::acquire(&out)?;
    super::super::fetch::hub_models(&inputs, quiet)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    super::on_stop_signals(&cancel, &signal);
    let (tx, rx) = crossbeam_channel::unbounded();
    let tty = std::io::stderr().is_terminal();
    let summary = std::thread::scope(|scope| {
        let printer = scope.spawn(move || {
            if quiet {
                for _ in rx.iter() {}
            } else {
                print(&rx, tty);
            }
        });
        let send = |e: MultiEvent| {
            let _ = tx.send(e);
        };
        let r = multi::run(m, target, &work, &opts, &send, &cancel);
        drop(tx);
        let _ = printer.join();
        r
    })
    .map_err(|e| match e {
        e if e.is_cancelled() => super::cancelled(signal.load(Ordering::Relaxed)),
        MultiError::Plan { index, source, .. } => plan_error(m, index, source),
        MultiError::Engine { name, line, source } => {
            let c: CliError = source.into();
            c.prefixed(&format!(
                "{}: document `{name}` (line {line}): ",
                m.path.display()
            ))
        }
        MultiError::Work(msg) => CliError::input(msg),
    })?;
    super::super::emit(&format!(
        "merged {} documents; the last, `{}`: {} tensors ({}), {} written in {:.2} s -> {}\n",
        order.len(),
        m.label(target),
        summary.tensors,
        m.documents[target].recipe.method.name(),
        bytes(summary.bytes_written),
        summary.elapsed.as_secs_f64(),
        summary.out.display()
    ))
}
