//! The Sign agreement panel: for the selected layer, tensor or the whole
//! model, how many models' task vectors, as the chosen method selects
//! them, agree with the elected sign per parameter; the conflict share;
//! each model's kept share, energy kept and norm; the pairwise cosines.
//! The first line says whether the figures are current and what the
//! method's selection does.

use crate::analysis::Stats;
use crate::merge::{Method, Selection};
use crate::model::Group;
use crate::tui::state::*;
use crate::tui::theme::Theme;
use crate::tui::widgets::{bar, marks, pad, panel};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// What the figures are, for the first line.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Current,
    /// All layers: `done` of `all` groups in (the rest computing).
    Partial {
        done: usize,
        all: usize,
    },
    /// From earlier values, recomputing.
    Stale,
    /// A sampled estimate of a big tensor, the exact figures coming.
    Preview,
    Computing,
}

/// What the method's selection does, in words: the long form when `w`
/// columns allow, else a short one.
pub fn selection_note(method: Method, w: usize) -> String {
    let spec = method.spec();
    let (long, short) = match spec.selection {
        Selection::None => ("no trimming: raw task vectors", "no trimming"),
        Selection::Magnitude => ("kept: largest magnitudes", "magnitude trim"),
        Selection::Random => ("kept: random draws, rescaled", "random drop"),
        Selection::Outliers => ("kept: magnitudes past gamma", "two-tailed trim"),
        Selection::RankedRandom => ("kept: draws ranked by magnitude", "ranked drop"),
        Selection::Variance => ("kept: highest variance", "variance pick"),
        Selection::Importance => ("kept: changes of outlier importance", "importance pick"),
        Selection::Epsilon => (
            "kept: changes past epsilon, shared ones averaged",
            "epsilon pick",
        ),
    };
    let (sign_long, sign_short) = if spec.sign_election {
        ("signs elected", "elects signs")
    } else {
        ("no sign election (vs the sum's sign)", "no election")
    };
    let full = format!("{long} · {sign_long}");
    if full.chars().count() <= w {
        full
    } else {
        format!("{short} · {sign_short}")
    }
}

/// What was left out, one line per reason: `tensor: reason` for a reason
/// given once, `reason (N tensors, first …)` for one given many times (a
/// recipe the method refuses gives the same reason for every tensor).
fn by_reason(notes: Vec<(String, String)>) -> Vec<String> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (what, why) in notes {
        match groups.iter_mut().find(|(r, _)| *r == why) {
            Some((_, v)) => v.push(what),
            None => groups.push((why, vec![what])),
        }
    }
    groups
        .into_iter()
        .map(|(why, v)| match v.as_slice() {
            [one] => format!("{one}: {why}"),
            _ => format!("{why} ({} tensors, first {})", v.len(), v[0]),
        })
        .collect()
}

/// Draw the Sign agreement panel.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme, r: Rect, focused: bool) {
    let target = app.current_target();
    let what = match &target {
        None => "all layers".to_string(),
        // A range selected (edits go to every layer in it): the figures
        // are the cursor's layer's, and the title says which of them.
        Some(Target::Group(g)) => match app.edit_scopes().as_deref() {
            Some([Scope::Layer(a), .., Scope::Layer(b)]) => format!("{g} of range {a}-{b}"),
            _ => g.to_string(),
        },
        Some(Target::Tensor(n)) => {
            let g = app
                .current_group()
                .and_then(|g| app.doc.layers.get(g))
                .map(|l| l.group);
            let short = super::layers::short_name(n);
            match g {
                Some(Group::Layer(l)) => format!("layer {l} · {short}"),
                _ => short.to_string(),
            }
        }
    };
    let block = panel(
        theme,
        app.ascii,
        format!("Sign agreement · {what}"),
        focused,
        r.width,
    );
    let inner = block.inner(r);
    f.render_widget(block, r);
    let w = inner.width as usize;
    let m = marks(app.ascii);
    let mut out: Vec<Line> = Vec::new();
    if let Some(why) = app.analysis_blocked() {
        out.push(Line::styled(why, theme.dim()));
        f.render_widget(Paragraph::new(out).wrap(Wrap { trim: true }), inner);
        return;
    }
    // The figures, their state, and what was left out (see `by_reason`).
    let mut notes: Vec<(String, String)> = Vec::new();
    let (stats, state): (Option<Stats>, State) = match &target {
        None => {
            let mut cur: Vec<&Stats> = Vec::new();
            let mut done = 0;
            for l in &app.doc.layers {
                match app.stats_for(&Target::Group(l.group)) {
                    Some((Ok(rep), true)) => {
                        done += 1;
                        cur.push(&rep.stats);
                        notes.extend(
                            rep.skipped
                                .iter()
                                .map(|s| (s.tensor.clone(), s.reason.clone())),
                        );
                    }
                    Some((Err(e), true)) => {
                        done += 1;
                        notes.push((l.group.to_string(), e.to_string()));
                    }
                    _ => {}
                }
            }
            let all = app.doc.layers.len();
            if cur.is_empty() {
                // Nothing current yet: the earlier figures, marked stale.
                let old: Vec<&Stats> = app
                    .doc
                    .layers
                    .iter()
                    .filter_map(|l| match app.stats_for(&Target::Group(l.group)) {
                        Some((Ok(rep), false)) => Some(&rep.stats),
                        _ => None,
                    })
                    .collect();
                if !old.is_empty() && done < all {
                    (Some(sum_stats(old.into_iter())), State::Stale)
                } else {
                    (None, State::Partial { done, all })
                }
            } else {
                let state = if done == all {
                    State::Current
                } else {
                    State::Partial { done, all }
                };
                (Some(sum_stats(cur.into_iter())), state)
            }
        }
        Some(t) => match app.stats_for(t) {
            Some((Ok(rep), true)) => {
                notes.extend(
                    rep.skipped
                        .iter()
                        .map(|s| (s.tensor.clone(), s.reason.clone())),
                );
                (Some(rep.stats.clone()), State::Current)
            }
            _ if app.preview_for(t).is_some() => (app.preview_for(t).cloned(), State::Preview),
            Some((Ok(rep), false)) => (Some(rep.stats.clone()), State::Stale),
            Some((Err(e), current)) => {
                out.push(Line::styled(
                    format!("{}error: {e}", if current { "" } else { "(earlier) " }),
                    theme.fg(theme.bad),
                ));
                (
                    None,
                    if current {
                        State::Current
                    } else {
                        State::Stale
                    },
                )
            }
            None => (None, State::Computing),
        },
    };
    let (label, st) = match &state {
        State::Current => ("[current]".to_string(), theme.fg(theme.good)),
        State::Partial { done, all } => (
            format!("[{done}/{all} layers · computing…]"),
            theme.fg(theme.warn).add_modifier(Modifier::BOLD),
        ),
        State::Stale => (
            format!("[{} earlier values · computing…]", m.stale),
            theme.fg(theme.warn).add_modifier(Modifier::BOLD),
        ),
        State::Preview => (
            "[PREVIEW · sampled rows · computing…]".to_string(),
            theme.fg(theme.warn).add_modifier(Modifier::BOLD),
        ),
        State::Computing => (
            "[computing…]".to_string(),
            theme.fg(theme.warn).add_modifier(Modifier::BOLD),
        ),
    };
    let left_out = notes.len();
    let notes = by_reason(notes);
    // The state and what the method does: one line when both fit, else
    // two.
    let note_w = w.saturating_sub(label.chars().count() + 1);
    let method = app.doc.method;
    let beside = selection_note(method, note_w);
    let full = selection_note(method, usize::MAX);
    // Room for a second line (a tall panel): the note in full below.
    let roomy = inner.height >= 14 && full != beside;
    if beside.chars().count() <= note_w && !roomy {
        out.insert(
            0,
            Line::from(vec![
                Span::styled(format!("{label} "), st),
                Span::styled(beside, theme.dim()),
            ]),
        );
    } else {
        out.insert(0, Line::styled(selection_note(method, w), theme.dim()));
        out.insert(0, Line::styled(label, st));
    }
    let head = out.len();
    // Figures over no parameters are not figures: say what was left out.
    let stats = match stats {
        Some(s) if s.params == 0 => {
            out.push(Line::styled(
                "nothing to compare: every tensor here was left out",
                theme.fg(theme.bad),
            ));
            for n in notes.iter().take(inner.height as usize) {
                out.push(Line::styled(
                    format!("{} {n}", m.skipped),
                    theme.fg(theme.bad),
                ));
            }
            f.render_widget(Paragraph::new(out).wrap(Wrap { trim: false }), inner);
            return;
        }
        other => other,
    };
    let Some(s) = stats else {
        f.render_widget(Paragraph::new(out).wrap(Wrap { trim: true }), inner);
        return;
    };
    let n = s.agree.len().saturating_sub(1);
    let total: u64 = s.agree.iter().sum::<u64>().max(1);
    let label_w = 10;
    let bar_w = w.saturating_sub(label_w + 8);
    let dim = !matches!(state, State::Current | State::Partial { .. });
    // The first line wraps on narrow panels: count what it takes.
    let first_h = out
        .iter()
        .take(head)
        .map(|l| l.width().div_ceil(w.max(1)).max(1))
        .sum::<usize>();
    let mut body: Vec<Line> = Vec::new();
    // One task vector (a two-model SLERP, a single fine-tune): there is no
    // other sign to agree or conflict with, and a histogram would read as
    // agreement.
    if n == 1 {
        body.push(Line::styled(
            "one task vector: no other signs to compare",
            theme.dim(),
        ));
    }
    for k in (0..=n).rev().filter(|_| n != 1) {
        let c = s.agree.get(k).copied().unwrap_or(0);
        let frac = c as f64 / total as f64;
        let (fill, rest) = bar(frac, bar_w, app.ascii);
        let label = if k == 0 {
            "0 / none".to_string()
        } else {
            format!("{k}/{n} agree")
        };
        let mut st = theme.fg(if k == n { theme.bar_elected } else { theme.bar });
        if dim {
            st = st.add_modifier(Modifier::DIM);
        }
        body.push(Line::from(vec![
            Span::styled(pad(&label, label_w, app.ascii), theme.text()),
            Span::styled(fill, st),
            Span::styled(rest, theme.dim()),
            Span::styled(format!("{:>6.1}%", frac * 100.0), theme.text()),
        ]));
    }
    // Kept: the share of the parameters where the model still contributes
    // after the method's selection (so density 0.3 reads about 30% for a
    // magnitude trim, less where a task vector is mostly zero).
    let kept_pct = |i: usize| {
        let k = s.kept.get(i).copied().unwrap_or(0);
        if s.params == 0 {
            0.0
        } else {
            k as f64 * 100.0 / s.params as f64
        }
    };
    let conflict = (n != 1).then(|| {
        Line::from(vec![
            Span::styled("conflict ", theme.dim()),
            Span::styled(
                format!("{:.1}%", s.conflict_share() * 100.0),
                theme.fg(theme.warn).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("  of {} params", crate::units::count(s.params)),
                theme.dim(),
            ),
        ])
    });
    body.extend(conflict);
    // Per model: kept share, energy kept, norm. A table when there is
    // room, else one compact line.
    let names: Vec<String> = app
        .doc
        .input_slots()
        .iter()
        .map(|&i| app.doc.slots[i].info.name.clone())
        .collect();
    let room = (inner.height as usize).saturating_sub(first_h + body.len());
    // Without a trim nothing is dropped: the share is of entries the
    // fine-tune changed at all, and the energy is always all of it.
    let trims = app.doc.method.spec().selection != Selection::None;
    let kept_word = if trims { "kept" } else { "changed" };
    if room > names.len() + usize::from(s.cosines.len() > 1) && w >= 44 {
        let nw = w.saturating_sub(27).min(24);
        body.push(Line::styled(
            format!(
                "{}{:>8}{:>10}{:>9}",
                pad("model", nw, app.ascii),
                kept_word,
                if trims { "energy" } else { "" },
                "‖τ‖"
            ),
            theme.dim(),
        ));
        for (i, name) in names.iter().enumerate() {
            let kept = format!("{:.1}%", kept_pct(i));
            let nk = match s.norm_kept.get(i) {
                _ if !trims => String::new(),
                Some(k) => format!("{:.1}%", k * 100.0),
                None => "-".into(),
            };
            let nm = s.norms.get(i).map_or("-".into(), |k| fmt_num(*k));
            body.push(Line::from(Span::styled(
                format!("{}{kept:>8}{nk:>10}{nm:>9}", pad(name, nw, app.ascii)),
                theme.text(),
            )));
        }
    } else if !s.kept.is_empty() {
        let kept: Vec<String> = (0..s.kept.len())
            .map(|i| format!("{:.0}%", kept_pct(i)))
            .collect();
        let nk: Vec<String> = s
            .norm_kept
            .iter()
            .map(|k| format!("{:.0}%", k * 100.0))
            .collect();
        let kept = format!("{kept_word} {}", kept.join(" "));
        let energy = (!nk.is_empty() && trims).then(|| format!("energy {}", nk.join(" ")));
        match energy {
            // One line when both fit, else one each (a line that wrapped
            // would throw the panel's scrolling off).
            Some(e) if kept.chars().count() + 2 + e.chars().count() <= w => {
                body.push(Line::styled(format!("{kept}  {e}"), theme.text()));
            }
            Some(e) => {
                body.push(Line::styled(kept, theme.text()));
                body.push(Line::styled(e, theme.text()));
            }
            None => body.push(Line::styled(kept, theme.text())),
        }
    }
    if s.cosines.len() > 1 {
        let mut parts = Vec::new();
        for i in 0..s.cosines.len() {
            for j in i + 1..s.cosines.len() {
                let c = s.cosines[i].get(j).copied().unwrap_or(f64::NAN);
                parts.push(format!("{}-{} {:+.2}", i + 1, j + 1, c));
            }
        }
        // As many pairs per line as fit, the later lines under the first.
        let mut lines: Vec<String> = vec![String::new()];
        for p in parts {
            let cur = lines.last_mut().expect("a line");
            if !cur.is_empty() && 4 + cur.chars().count() + 2 + p.chars().count() > w {
                lines.push(p);
            } else {
                if !cur.is_empty() {
                    cur.push_str("  ");
                }
                cur.push_str(&p);
            }
        }
        for (k, l) in lines.into_iter().enumerate() {
            body.push(Line::from(vec![
                Span::styled(if k == 0 { "cos " } else { "    " }, theme.dim()),
                Span::styled(l, theme.text()),
            ]));
        }
    }
    if !notes.is_empty() {
        // One line each, so they scroll into view (↑/↓ when focused).
        body.push(Line::styled(
            format!("{} left out of these figures ({left_out}):", m.skipped),
            theme.fg(theme.bad),
        ));
        for n in &notes {
            body.push(Line::styled(
                pad(&format!("  {n}"), w, app.ascii),
                theme.fg(theme.bad),
            ));
        }
    }
    // Scrolled with ↑/↓ when focused: the figures below the histogram
    // stay reachable on a small screen.
    let room = (inner.height as usize).saturating_sub(first_h);
    let top = app
        .view
        .agreement_scroll
        .min(body.len().saturating_sub(room.max(1)));
    let below = body.len().saturating_sub(top + room);
    out.extend(body.into_iter().skip(top));
    f.render_widget(Paragraph::new(out).wrap(Wrap { trim: false }), inner);
    crate::tui::widgets::scroll_hint(f, theme, app.ascii, r, top, below);
}

/// Combine the statistics of several groups (exactly: `Stats::combine`
/// adds the raw sums behind norms and cosines).
fn sum_stats<'a>(mut it: impl Iterator<Item = &'a Stats>) -> Stats {
    let Some(first) = it.next() else {
        return Stats::default();
    };
    let mut s = first.clone();
    for x in it {
        s.combine(x);
    }
    s
}
