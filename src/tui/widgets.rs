//! Drawing pieces every panel uses: the panel frame, list rows, bars,
//! padding that marks cut text, centred overlays.
//!
//! Marks mean one thing each (the `?` legend lists them): `…` text cut to
//! fit, `°` a figure being recomputed (stale), `≈` a value a gradient or
//! filter gives at this layer, `*` a per-layer value, `!` one of the worst
//! layers, `✘` a problem, `†` tensors left out of the figures. In ASCII
//! mode they become `~`, `'`, `=`, `*`, `!`, `x`, `+`: still one each.

use super::theme::Theme;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};

/// Panel borders with `--ascii`.
pub const ASCII_BORDER: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};
/// The focused panel's border with `--ascii`.
pub const ASCII_FOCUS: border::Set = border::Set {
    top_left: "#",
    top_right: "#",
    bottom_left: "#",
    bottom_right: "#",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "=",
    horizontal_bottom: "=",
};

/// The glyphs of the marks, Unicode or ASCII.
#[derive(Clone, Copy, Debug)]
pub struct Marks {
    /// Marks text cut to fit.
    pub cut: &'static str,
    /// Marks figures computed for earlier values (being recomputed).
    pub stale: &'static str,
    /// Marks what a gradient or filter resolves to at the selected layer
    /// or tensor.
    pub resolved: &'static str,
    /// Marks a row with a recipe problem.
    pub problem: &'static str,
    /// Marks tensors left out of a group's statistics.
    pub skipped: &'static str,
    /// Marks the selected row.
    pub cursor: &'static str,
}

/// The marks in Unicode.
pub const UNICODE: Marks = Marks {
    cut: "…",
    stale: "°",
    resolved: "≈",
    problem: "✘",
    skipped: "†",
    cursor: "▶",
};
/// The marks in ASCII (`--ascii`).
pub const ASCII: Marks = Marks {
    cut: "~",
    stale: "'",
    resolved: "=",
    problem: "x",
    skipped: "+",
    cursor: ">",
};

/// The marks for `--ascii` or not.
pub fn marks(ascii: bool) -> Marks {
    if ascii {
        ASCII
    } else {
        UNICODE
    }
}

/// A panel's frame: focused panels get a marker in the title, a bold title
/// and a heavier border, so focus needs no colour.
pub fn panel<'a>(
    theme: &Theme,
    ascii: bool,
    title: String,
    focused: bool,
    width: u16,
) -> Block<'a> {
    let marker = if focused {
        format!("{} ", marks(ascii).cursor)
    } else {
        String::new()
    };
    // A title longer than the border is cut with the cut mark.
    let room = (width as usize).saturating_sub(4 + marker.chars().count());
    let title = if title.chars().count() > room {
        pad(&title, room, ascii)
    } else {
        title
    };
    let title_style = if focused {
        theme.fg(theme.focus).add_modifier(Modifier::BOLD)
    } else {
        theme.fg(theme.title)
    };
    let b = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.fg(if focused { theme.focus } else { theme.border }))
        .title(Line::from(vec![Span::styled(
            format!(" {marker}{title} "),
            title_style,
        )]));
    if ascii {
        b.border_set(if focused { ASCII_FOCUS } else { ASCII_BORDER })
    } else {
        b.border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
    }
}

/// A modal's frame.
pub fn modal_block<'a>(theme: &Theme, ascii: bool, title: &str, width: u16) -> Block<'a> {
    let room = (width as usize).saturating_sub(4);
    let title = if title.chars().count() > room {
        pad(title, room, ascii)
    } else {
        title.to_string()
    };
    let b = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.fg(theme.focus))
        .title(Span::styled(
            format!(" {title} "),
            theme.fg(theme.focus).add_modifier(Modifier::BOLD),
        ));
    if ascii {
        b.border_set(ASCII_FOCUS)
    } else {
        b.border_type(BorderType::Double)
    }
}

/// Marker and style of a list row: the cursor row is reverse video (or
/// the theme's selection colours) plus a marker when its panel has focus,
/// bold plus the marker otherwise.
pub fn row_style(theme: &Theme, ascii: bool, selected: bool, focused: bool) -> (String, Style) {
    if !selected {
        return ("  ".into(), theme.text());
    }
    let m = format!("{} ", marks(ascii).cursor);
    if focused {
        (m, theme.selected())
    } else {
        (m, theme.text().add_modifier(Modifier::BOLD))
    }
}

/// First row to show so that `cursor` is visible in `h` rows.
pub fn scroll(cursor: usize, h: usize) -> usize {
    if h == 0 || cursor < h {
        0
    } else {
        cursor + 1 - h
    }
}

/// `s` in exactly `w` columns: padded, or cut with the cut mark.
pub fn pad(s: &str, w: usize, ascii: bool) -> String {
    let n = s.chars().count();
    if n > w {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        if w > 0 {
            t.push_str(marks(ascii).cut);
        }
        t
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

/// A path in at most `w` columns, cut at its start (the folder's own name
/// is the part worth keeping).
pub fn tail(s: &str, w: usize, ascii: bool) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    let keep: String = s.chars().skip(n + 1 - w.max(1)).collect();
    format!("{}{keep}", marks(ascii).cut)
}

/// `s` right-aligned in `w` columns (never cut: numbers must stay whole).
pub fn rpad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_string()
    } else {
        format!("{}{s}", " ".repeat(w - n))
    }
}

/// A horizontal bar of `frac` of `w` cells, eighth-cell resolution in
/// Unicode, `#` in ASCII; the rest filled with a dotted track.
pub fn bar(frac: f64, w: usize, ascii: bool) -> (String, String) {
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if ascii {
        let n = (frac * w as f64).round() as usize;
        return ("#".repeat(n), ".".repeat(w - n));
    }
    let eighths = (frac * w as f64 * 8.0).round() as usize;
    let full = eighths / 8;
    let rem = eighths % 8;
    let mut s = "█".repeat(full);
    let mut used = full;
    if rem > 0 && used < w {
        s.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][rem - 1]);
        used += 1;
    }
    (s, "·".repeat(w.saturating_sub(used)))
}

/// On a panel's bottom border, how many rows are out of sight above and
/// below (` ↑2 ↓5 `), so a list that scrolls says so.
pub fn scroll_hint(
    f: &mut ratatui::Frame,
    theme: &Theme,
    ascii: bool,
    r: Rect,
    above: usize,
    below: usize,
) {
    if (above == 0 && below == 0) || r.height < 2 || r.width < 12 {
        return;
    }
    let mut t = String::from(" ");
    if ascii {
        // Words: `v` and `^` are keys and marks here.
        if above > 0 {
            t.push_str(&format!("{above} above "));
        }
        if below > 0 {
            t.push_str(&format!("{below} below "));
        }
    } else {
        if above > 0 {
            t.push_str(&format!("↑{above} "));
        }
        if below > 0 {
            t.push_str(&format!("↓{below} more "));
        }
    }
    let w = t.chars().count() as u16;
    if w + 2 > r.width {
        return;
    }
    let at = Rect::new(r.right() - w - 1, r.bottom() - 1, w, 1);
    f.render_widget(
        ratatui::widgets::Paragraph::new(Line::styled(t, theme.fg(theme.title))),
        at,
    );
}

/// Blank the rows a modal covers, across the whole screen, and one row
/// above and below: no piece of a panel shows beside or against its
/// border.
pub fn clear_modal(f: &mut ratatui::Frame, r: Rect, area: Rect) {
    let y = r.y.saturating_sub(1).max(area.y);
    let bottom = (r.bottom() + 1).min(area.bottom());
    f.render_widget(
        ratatui::widgets::Clear,
        Rect::new(area.x, y, area.width, bottom - y),
    );
}

/// A `w` x `h` rectangle in the middle of `area` (clipped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Replace every non-ASCII glyph left on screen with an ASCII stand-in, so
/// ASCII mode covers separators, arrows and names alike.
pub fn asciify(buf: &mut ratatui::buffer::Buffer) {
    for cell in buf.content.iter_mut() {
        let sym = cell.symbol();
        if sym.is_ascii() {
            continue;
        }
        let r = match sym {
            "·" => ".",
            "…" => "~",
            "°" => "'",
            "≈" => "=",
            "‖" | "│" | "┃" => "|",
            "─" | "━" => "-",
            "←" => "<",
            "→" => ">",
            "↑" => "^",
            "↓" => "v",
            "▶" | "▸" => ">",
            "▾" => "v",
            "✔" => "+",
            "✘" => "x",
            "†" => "+",
            "τ" => "t",
            "█" | "▏" | "▎" | "▍" | "▌" | "▋" | "▊" | "▉" => "#",
            "" => "",
            _ => "?",
        };
        cell.set_symbol(r);
    }
}
