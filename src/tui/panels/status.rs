//! The Status panel: the recipe's problems or "ready", a running merge's
//! progress, the result (labelled when the recipe has changed since), and
//! for MLPs the merged model's accuracy beside each input's own.

use crate::tui::state::*;
use crate::tui::theme::Theme;
use crate::tui::widgets::{bar, marks, pad, panel, tail};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

fn fmt_dur(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// Lines the panel's content takes at inner width `w`.
pub fn lines_needed(app: &App, w: usize) -> usize {
    if app.extract.is_some() || app.extracted.is_some() {
        return 3;
    }
    match &app.merge {
        MergeState::Idle => 1 + app.problems.len(),
        MergeState::Cancelled { .. } => 2,
        MergeState::Running { .. } => 3,
        MergeState::Failed { error, .. } => {
            (error.chars().count() + 27).div_ceil(w.max(1)).clamp(1, 6) + 1
        }
        MergeState::Done { .. } => 1 + accuracy_lines(app, &Theme::default(), w).len().max(1),
    }
}

/// The one-line summary the compact layout shows.
pub fn one_line(app: &App) -> String {
    if let Some(j) = &app.extract {
        return format!(
            "{} {:.0}% {}/{} → {}",
            if j.cancelling { "cancelling" } else { "LoRA" },
            j.fraction() * 100.0,
            j.done,
            j.total,
            j.out.display()
        );
    }
    if let Some(x) = &app.extracted {
        return format!("LoRA done: error {:.4} → {}", x.error, x.out.display());
    }
    match &app.merge {
        MergeState::Running {
            progress: p,
            out,
            cancelling,
            ..
        } => {
            let frac = p.fraction();
            format!(
                "{} {:.0}% {}/{} → {}",
                if *cancelling { "cancelling" } else { "merging" },
                frac * 100.0,
                p.tensors_done,
                p.tensors,
                out.display()
            )
        }
        MergeState::Done { summary, .. } => format!("done: {}", summary.out.display()),
        MergeState::Failed { error, .. } => format!("merge FAILED: {error}"),
        MergeState::Cancelled { out, .. } => {
            format!("merge cancelled: nothing written to {}", out.display())
        }
        MergeState::Idle if !app.problems.is_empty() => format!(
            "{} {} problem{} (r lists them)",
            marks(app.ascii).problem,
            app.problems.len(),
            if app.problems.len() == 1 { "" } else { "s" }
        ),
        MergeState::Idle => "ready: r runs the merge · s saves".into(),
    }
}

/// Whether a merge's recipe is no longer the one being edited.
fn earlier(app: &App, r: &crate::recipe::Recipe) -> bool {
    match &app.multi {
        // A document of a multi-document file runs as it stands in the
        // file unless edited (see `multi::run_recipe`).
        Some(m) => *r != crate::tui::multi::run_recipe(app, m.current),
        None => *r != app.doc.to_recipe(),
    }
}

/// Draw the Status panel: the merge, its progress, accuracy, messages.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme, r: Rect, focused: bool) {
    let block = panel(theme, app.ascii, "Status".into(), focused, r.width);
    let inner = block.inner(r);
    f.render_widget(block, r);
    let w = inner.width as usize;
    let m = marks(app.ascii);
    let mut out = Vec::new();
    if let Some(j) = &app.extract {
        f.render_widget(Paragraph::new(extract_lines(app, j, theme, w)), inner);
        return;
    }
    if let Some(x) = &app.extracted {
        f.render_widget(Paragraph::new(extracted_lines(app, x, theme, w)), inner);
        return;
    }
    let tag = |recipe: &crate::recipe::Recipe| -> String {
        // A multi-document file: a merge of another document is named.
        if let Some(other) = crate::tui::multi::document_of(app, recipe) {
            return format!(" (document `{other}`)");
        }
        if earlier(app, recipe) {
            " (earlier recipe)".into()
        } else {
            String::new()
        }
    };
    match &app.merge {
        MergeState::Idle => {
            if app.problems.is_empty() {
                out.push(Line::styled(one_line(app), theme.dim()));
            } else {
                out.push(Line::styled(
                    one_line(app),
                    theme.fg(theme.bad).add_modifier(Modifier::BOLD),
                ));
                // One line each, cut to fit: r lists them whole.
                for i in &app.problems {
                    out.push(Line::styled(
                        pad(&i.text, w, app.ascii),
                        theme.fg(theme.bad),
                    ));
                }
            }
        }
        MergeState::Running {
            out: dir,
            progress: p,
            cancelling,
            ..
        } => {
            let frac = p.fraction();
            // The share of bytes only: tensors finish unevenly (the
            // largest go first), so a count beside it read as a second,
            // contradicting figure (`35% 0/75`); the count is below.
            let pct = format!(" {:>3.0}%", frac * 100.0);
            let (fill, rest) = bar(frac, w.saturating_sub(pct.chars().count()), app.ascii);
            out.push(Line::from(vec![
                Span::styled(fill, theme.fg(theme.gauge)),
                Span::styled(rest, theme.dim()),
                Span::styled(pct, theme.text().add_modifier(Modifier::BOLD)),
            ]));
            let lead = if *cancelling {
                "cancelling · "
            } else {
                "merging · "
            };
            out.push(Line::from(vec![
                Span::styled(lead, theme.fg(theme.warn)),
                Span::styled(
                    pad(&p.current, w.saturating_sub(lead.len()), app.ascii),
                    theme.text(),
                ),
            ]));
            let secs = p.elapsed.as_secs_f64();
            let rate = if secs > 0.0 {
                p.bytes_done as f64 / secs
            } else {
                0.0
            };
            let eta = if rate > 0.0 && p.bytes_total > p.bytes_done {
                fmt_dur(std::time::Duration::from_secs_f64(
                    (p.bytes_total - p.bytes_done) as f64 / rate,
                ))
            } else {
                "-".into()
            };
            // As many of these as fit, most wanted first, shown in this
            // order; the output folder, when there is room, last.
            let parts = [
                (1, format!("{}/s", crate::units::bytes(rate as u64))),
                (4, fmt_dur(p.elapsed)),
                (2, format!("ETA {eta}")),
                (3, format!("{}/{} tensors", p.tensors_done, p.tensors)),
                (0, "c cancels".to_string()),
            ];
            let mut shown = [false; 5];
            let mut used = 0;
            let mut order: Vec<usize> = (0..parts.len()).collect();
            order.sort_by_key(|&i| parts[i].0);
            for i in order {
                let need = parts[i].1.chars().count() + if used > 0 { 3 } else { 0 };
                if used + need <= w {
                    shown[i] = true;
                    used += need;
                }
            }
            let mut line = parts
                .iter()
                .zip(shown)
                .filter(|(_, s)| *s)
                .map(|((_, t), _)| t.as_str())
                .collect::<Vec<_>>()
                .join(" · ");
            let room = w.saturating_sub(line.chars().count() + 3);
            if room >= 12 {
                line.push_str(" · ");
                line.push_str(&tail(&dir.display().to_string(), room, app.ascii));
            }
            out.push(Line::styled(pad(&line, w, app.ascii), theme.dim()));
        }
        MergeState::Done { summary: s, recipe } => {
            out.push(Line::from(vec![
                Span::styled(
                    if app.ascii { "done " } else { "✔ done " },
                    theme.fg(theme.good).add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    tail(
                        &s.out.display().to_string(),
                        w.saturating_sub(7 + tag(recipe).len()),
                        app.ascii,
                    ),
                    theme.text(),
                ),
                Span::styled(tag(recipe), theme.fg(theme.warn)),
            ]));
            let acc = accuracy_lines(app, theme, w);
            if acc.is_empty() {
                out.push(Line::styled(
                    format!(
                        "{} tensors · {} written · {:.2} s",
                        s.tensors,
                        crate::units::bytes(s.bytes_written),
                        s.elapsed.as_secs_f64()
                    ),
                    theme.dim(),
                ));
            }
            out.extend(acc);
        }
        MergeState::Failed {
            out: dir,
            error,
            recipe,
        } => {
            // Whose failure it is goes first: the error may take every
            // line the panel has.
            out.push(Line::from(vec![
                Span::styled(
                    format!("{} FAILED", m.problem),
                    theme.fg(theme.bad).add_modifier(Modifier::BOLD),
                ),
                Span::styled(tag(recipe), theme.fg(theme.warn)),
                Span::styled(format!(" {error}"), theme.fg(theme.bad)),
            ]));
            out.push(Line::styled(
                tail(&dir.display().to_string(), w, app.ascii),
                theme.dim(),
            ));
        }
        MergeState::Cancelled { out: dir, recipe } => {
            out.push(Line::from(vec![
                Span::styled(
                    "cancelled",
                    theme.fg(theme.warn).add_modifier(Modifier::BOLD),
                ),
                Span::styled(" · nothing was written", theme.text()),
                Span::styled(tag(recipe), theme.fg(theme.warn)),
            ]));
            out.push(Line::styled(
                tail(&dir.display().to_string(), w, app.ascii),
                theme.dim(),
            ));
        }
    }
    f.render_widget(Paragraph::new(out).wrap(Wrap { trim: false }), inner);
}

/// A running LoRA extraction: the bar, the module, time and the folder.
fn extract_lines<'a>(app: &App, j: &ExtractJob, theme: &Theme, w: usize) -> Vec<Line<'a>> {
    let frac = j.fraction();
    let pct = format!(" {:>3.0}% {}/{}", frac * 100.0, j.done, j.total);
    let (fill, rest) = bar(frac, w.saturating_sub(pct.chars().count()), app.ascii);
    let lead = if j.cancelling {
        "cancelling · ".to_string()
    } else {
        format!("LoRA of {} · ", j.model)
    };
    let head = format!("{} · c cancels · ", fmt_dur(j.elapsed));
    let room = w.saturating_sub(head.chars().count());
    vec![
        Line::from(vec![
            Span::styled(fill, theme.fg(theme.gauge)),
            Span::styled(rest, theme.dim()),
            Span::styled(pct, theme.text().add_modifier(Modifier::BOLD)),
        ]),
        Line::from(vec![
            Span::styled(lead.clone(), theme.fg(theme.warn)),
            Span::styled(
                pad(
                    &j.current,
                    w.saturating_sub(lead.chars().count()),
                    app.ascii,
                ),
                theme.text(),
            ),
        ]),
        Line::styled(
            pad(
                &format!(
                    "{head}{}",
                    tail(&j.out.display().to_string(), room, app.ascii)
                ),
                w,
                app.ascii,
            ),
            theme.dim(),
        ),
    ]
}

/// A LoRA extraction's end: how close, where, then the rest (in that
/// order, as the panel may have two lines only).
fn extracted_lines<'a>(app: &App, x: &Extracted, theme: &Theme, w: usize) -> Vec<Line<'a>> {
    let warn = match x.warnings {
        0 => String::new(),
        n => format!(" · {n} warnings"),
    };
    vec![
        Line::styled(
            pad(
                &format!("LoRA of {}: error {:.4}", x.model, x.error),
                w,
                app.ascii,
            ),
            theme.fg(theme.good).add_modifier(Modifier::BOLD),
        ),
        Line::styled(
            tail(&x.out.display().to_string(), w, app.ascii),
            theme.dim(),
        ),
        Line::styled(
            pad(
                &format!("rank {} · {} modules{warn}", x.rank, x.modules),
                w,
                app.ascii,
            ),
            theme.text(),
        ),
    ]
}

/// Accuracy of the merged MLP beside each input's own, as a table whose
/// columns are the heads and the joint accuracy; at most as wide as `w`
/// (columns that do not fit go to a second table below).
pub fn accuracy_lines<'a>(app: &App, theme: &Theme, w: usize) -> Vec<Line<'a>> {
    use crate::eval::classes_label;
    let AccuracyState::Done(a) = &app.accuracy else {
        // Evaluating takes a moment and most outputs are not MLPs.
        return Vec::new();
    };
    let mut v = Vec::new();
    let merged = match &a.merged {
        Ok(r) => r,
        Err(e) => {
            v.push(Line::styled(
                format!("accuracy: cannot evaluate the merge: {e}"),
                theme.fg(theme.bad),
            ));
            return v;
        }
    };
    // Columns: each head of the merged model, then joint.
    let mut cols: Vec<(String, String, String)> = merged
        .heads
        .iter()
        .map(|h| {
            (
                classes_label(&h.classes),
                format!("{:.1}%", 100.0 * h.accuracy),
                String::new(),
            )
        })
        .collect();
    // Each input alone, matched to the merged heads by their classes.
    let mut errs = Vec::new();
    for (name, r) in &a.inputs {
        match r {
            Ok(r) => {
                for h in &r.heads {
                    let label = classes_label(&h.classes);
                    if let Some(c) = cols.iter_mut().find(|c| c.0 == label) {
                        c.2 = format!("{:.1}%", 100.0 * h.accuracy);
                    }
                }
            }
            Err(e) => errs.push(format!("{name}: {e}")),
        }
    }
    cols.push((
        "joint".into(),
        format!("{:.1}%", 100.0 * merged.joint_accuracy),
        String::new(),
    ));
    let lw = 7;
    let cw = cols
        .iter()
        .map(|c| c.0.len().max(c.1.len()).max(c.2.len()))
        .max()
        .unwrap_or(6)
        + 2;
    let per = (w.saturating_sub(lw) / cw).max(1);
    for chunk in cols.chunks(per) {
        let row = |label: &str, f: &dyn Fn(&(String, String, String)) -> String| {
            let mut s = pad(label, lw, false);
            for c in chunk {
                s.push_str(&format!("{:>cw$}", f(c)));
            }
            s
        };
        v.push(Line::styled(row("", &|c| c.0.clone()), theme.dim()));
        v.push(Line::styled(
            row("merged", &|c| c.1.clone()),
            theme.text().add_modifier(Modifier::BOLD),
        ));
        if chunk.iter().any(|c| !c.2.is_empty()) {
            v.push(Line::styled(row("alone", &|c| c.2.clone()), theme.text()));
        }
    }
    if !errs.is_empty() {
        v.push(Line::styled(
            format!("inputs not evaluated: {}", errs.join("; ")),
            theme.fg(theme.bad),
        ));
    }
    v
}
