//! The progress of `smelt merge` on stderr: an indicatif bar redrawn in
//! place on a terminal, plain lines every few seconds otherwise.
//!
//! The bar's line is laid out for the terminal's width, one column short of
//! it (so the terminal never wraps it onto a new line): the bar, the
//! percentage, tensors done, the ETA, and the tensor being merged, escaped
//! and shortened from the middle at whole `.` segments. The percentage is of
//! bytes done and never goes back: methods with a statistics pass grow the
//! total while they run, so the raw fraction can dip; the bar holds the
//! highest fraction shown so far.

use console::measure_text_width as width;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use smelt::engine::Event;
use smelt::units::bytes;
use std::io::Write;
use std::time::{Duration, Instant};

/// Steps of the bar's position (the bar only draws; the text is ours).
const STEPS: u64 = 10_000;
/// The widest the bar itself gets.
const MAX_BAR: usize = 30;
/// Below this many columns for the name, it is left out.
const MIN_NAME: usize = 8;
/// Shown where a name was shortened.
const CUT: &str = "…";

/// The fraction of bytes done, never decreasing.
#[derive(Debug, Default)]
pub(super) struct Monotonic {
    shown: f64,
}

impl Monotonic {
    /// The fraction to show for `done` of `total` bytes: in 0..=1, and never
    /// less than any value returned before.
    pub(super) fn update(&mut self, done: u64, total: u64) -> f64 {
        let raw = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).clamp(0.0, 1.0)
        };
        if raw > self.shown {
            self.shown = raw;
        }
        self.shown
    }
}

/// `name` in at most `max` columns: whole when it fits; else as many whole
/// last segments as fit after `…`, led by the first segment when that fits
/// too (`model.….mlp.up_proj.weight`, `….mlp.up_proj.weight`); else the end
/// of the name after `…`.
pub(super) fn shorten(name: &str, max: usize) -> String {
    if width(name) <= max {
        return name.to_string();
    }
    let segs: Vec<&str> = name.split('.').collect();
    let tail = |k: usize| segs[segs.len() - k..].join(".");
    // The most last segments first (some always left out), with the first
    // segment in front when it fits.
    for k in (1..segs.len()).rev() {
        let tail = tail(k);
        if k + 1 < segs.len() {
            let s = format!("{}.{CUT}.{tail}", segs[0]);
            if width(&s) <= max {
                return s;
            }
        }
        let s = format!("{CUT}.{tail}");
        if width(&s) <= max {
            return s;
        }
    }
    if max == 0 {
        return String::new();
    }
    // Cut inside: the end of the name, characters from the right.
    let budget = max - width(CUT);
    let mut kept: Vec<char> = Vec::new();
    let mut used = 0;
    for c in name.chars().rev() {
        let w = width(c.encode_utf8(&mut [0u8; 4]));
        if used + w > budget {
            break;
        }
        used += w;
        kept.push(c);
    }
    let mut s = CUT.to_string();
    s.extend(kept.iter().rev());
    s
}

/// `s` cut at the right to at most `max` columns.
fn cut_right(s: &str, max: usize) -> String {
    console::truncate_str(s, max, "").into_owned()
}

/// Seconds as `42s`, `3m05s` or `2h07m`.
fn eta_text(secs: f64) -> String {
    let s = if secs.is_finite() { secs.max(0.0) } else { 0.0 }.round() as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=5999 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
    }
}

/// One line of the bar for a terminal `cols` wide: the bar's width and the
/// text after it. The whole line, `[` bar `] ` text, takes at most
/// `cols - 1` columns.
pub(super) fn layout(
    cols: usize,
    frac: f64,
    tensors_done: usize,
    tensors: usize,
    eta: f64,
    name: &str,
) -> (usize, String) {
    let avail = cols.saturating_sub(1);
    let bar = (avail / 4).min(MAX_BAR);
    let room = avail.saturating_sub(bar + 3);
    let stats = format!(
        "{:>5.1}% {tensors_done}/{tensors} tensors  ETA {}",
        frac * 100.0,
        eta_text(eta)
    );
    let name = smelt::text::escape(name);
    let left = room.saturating_sub(width(&stats) + 2);
    let text = if !name.is_empty() && left >= MIN_NAME {
        format!("{stats}  {}", shorten(&name, left))
    } else {
        stats
    };
    (bar, cut_right(&text, room))
}

/// The terminal's width in columns (80 when it cannot be told).
fn term_cols() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, c)| usize::from(c))
}

fn style(bar: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!("[{{bar:{bar}}}] {{msg}}"))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-")
}

/// Draw progress until the channel closes: a redrawn bar on a terminal, a
/// line every few seconds otherwise (logs stay readable).
pub(super) fn print(rx: &crossbeam_channel::Receiver<Event>, tty: bool) {
    if tty {
        bar(rx)
    } else {
        lines(rx)
    }
}

fn bar(rx: &crossbeam_channel::Receiver<Event>) {
    let start = Instant::now();
    let pb = ProgressBar::with_draw_target(Some(STEPS), ProgressDrawTarget::stderr());
    let mut shown_bar = usize::MAX;
    let mut frac = Monotonic::default();
    let mut tensors = 0;
    for ev in rx.iter() {
        match ev {
            Event::Started { tensors: t, .. } => tensors = t,
            Event::Progress {
                tensor,
                tensors_done,
                bytes_done,
                bytes_total,
            } => {
                let f = frac.update(bytes_done, bytes_total);
                let elapsed = start.elapsed().as_secs_f64();
                let eta = if f > 0.0 {
                    elapsed * (1.0 - f) / f
                } else {
                    0.0
                };
                let (w, msg) = layout(term_cols(), f, tensors_done, tensors, eta, &tensor);
                if w != shown_bar {
                    pb.set_style(style(w));
                    shown_bar = w;
                }
                pb.set_message(msg);
                pb.set_position((f * STEPS as f64) as u64);
            }
            Event::Finished(_) => {}
        }
    }
    pb.finish_and_clear();
}

fn lines(rx: &crossbeam_channel::Receiver<Event>) {
    let start = Instant::now();
    let mut last_line = Instant::now();
    let mut err = std::io::stderr();
    for ev in rx.iter() {
        match ev {
            Event::Started {
                tensors,
                bytes_total,
            } => {
                let _ = writeln!(
                    err,
                    "merging {tensors} tensors, {} to read",
                    bytes(bytes_total)
                );
            }
            Event::Progress {
                tensors_done,
                bytes_done,
                bytes_total,
                ..
            } => {
                let frac = if bytes_total == 0 {
                    1.0
                } else {
                    bytes_done as f64 / bytes_total as f64
                };
                let elapsed = start.elapsed().as_secs_f64();
                let eta = if frac > 0.0 {
                    elapsed * (1.0 - frac) / frac
                } else {
                    0.0
                };
                if last_line.elapsed() >= Duration::from_secs(2) {
                    last_line = Instant::now();
                    let _ = writeln!(
                        err,
                        "{:5.1}%  {tensors_done} tensors  {}/{}  ETA {eta:.0}s",
                        frac * 100.0,
                        bytes(bytes_done),
                        bytes(bytes_total)
                    );
                }
            }
            Event::Finished(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraction_never_goes_back() {
        let mut m = Monotonic::default();
        assert_eq!(m.update(0, 100), 0.0);
        assert!((m.update(736, 1000) - 0.736).abs() < 1e-12);
        // A statistics pass grew the total: the raw fraction is 0.730.
        assert!((m.update(800, 1096) - 0.736).abs() < 1e-12);
        assert!((m.update(900, 1096) - 900.0 / 1096.0).abs() < 1e-12);
        assert_eq!(m.update(5, 0), 1.0);
        assert_eq!(m.update(1, 10), 1.0);
        // Out of range inputs stay in range.
        let mut m = Monotonic::default();
        assert_eq!(m.update(20, 10), 1.0);
    }

    #[test]
    fn names_are_shortened_at_whole_segments() {
        let n = "model.layers.31.self_attn.q_proj.weight";
        assert_eq!(shorten(n, 60), n);
        assert_eq!(shorten(n, width(n)), n);
        assert_eq!(shorten(n, 38), "….layers.31.self_attn.q_proj.weight");
        assert_eq!(shorten(n, 34), "model.….31.self_attn.q_proj.weight");
        assert_eq!(shorten(n, 28), "….31.self_attn.q_proj.weight");
        assert_eq!(shorten(n, 27), "….self_attn.q_proj.weight");
        assert_eq!(shorten(n, 21), "model.….q_proj.weight");
        assert_eq!(shorten(n, 14), "model.….weight");
        assert_eq!(shorten(n, 13), "….weight");
        assert_eq!(shorten(n, 6), "…eight");
        assert_eq!(shorten(n, 1), "…");
        assert_eq!(shorten(n, 0), "");
        // One long segment: cut from the left.
        assert_eq!(shorten("abcdefghij", 5), "…ghij");
        // Wide characters count two columns.
        let wide = "模型.层.权重";
        for max in 0..=width(wide) {
            let s = shorten(wide, max);
            assert!(width(&s) <= max, "{s:?} in {max}");
        }
        assert_eq!(shorten(wide, 7), "….权重");
    }

    #[test]
    fn every_line_fits_its_terminal() {
        let long = format!("model.{}.mlp.down_proj.weight", "x".repeat(200));
        for cols in 0..=200usize {
            for name in ["", "w", long.as_str(), "a\u{1b}]0;PWNED\u{7}.b"] {
                for (frac, done, total, eta) in [
                    (0.0, 0, 0, 0.0),
                    (0.736, 120, 291, 12.0),
                    (1.0, 99999, 99999, 1e9),
                ] {
                    let (bar, text) = layout(cols, frac, done, total, eta, name);
                    assert!(bar <= MAX_BAR);
                    let line = bar + 3 + width(&text);
                    if cols >= 4 {
                        assert!(line < cols, "{cols}: {line} columns: {text:?}");
                    }
                    assert!(!text.contains('\u{1b}'), "escaped: {text:?}");
                }
            }
        }
        // At 80 columns a long name is shortened, not cut mid-word.
        let (bar, text) = layout(80, 0.5, 3, 40, 20.0, &long);
        assert_eq!(bar, 19);
        assert!(text.ends_with("  ….mlp.down_proj.weight"), "{text}");
        assert!(text.starts_with(" 50.0% 3/40 tensors  ETA 20s  "), "{text}");
    }

    #[test]
    fn eta_is_compact() {
        assert_eq!(eta_text(0.4), "0s");
        assert_eq!(eta_text(99.0), "99s");
        assert_eq!(eta_text(185.0), "3m05s");
        assert_eq!(eta_text(7620.0), "2h07m");
        assert_eq!(eta_text(f64::NAN), "0s");
    }
}
