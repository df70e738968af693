//! Where things go on screen, shared by drawing and mouse handling.
//!
//! The full layout (every panel at once) needs 80x23: an 80x24 tmux window
//! minus its status bar. Between 40x12 and that, a compact layout shows the
//! focused panel alone (Tab moves on), with a status line. Below 40x12 the
//! screen says how big it needs to be.

use super::state::{App, Panel};
use ratatui::layout::{Constraint, Layout, Rect};

/// Width the full layout needs.
pub const FULL_W: u16 = 80;
/// Height the full layout needs (an 80x24 tmux window minus its bar).
pub const FULL_H: u16 = 23;
/// Width below which nothing but "too small" is drawn.
pub const MIN_W: u16 = 40;
/// Height below which nothing but "too small" is drawn.
pub const MIN_H: u16 = 12;

/// Whether a terminal of this size gets the compact layout.
pub fn compact((w, h): (u16, u16)) -> bool {
    (w < FULL_W || h < FULL_H) && !too_small((w, h))
}

/// Whether a terminal of this size is too small to draw the workbench.
pub fn too_small((w, h): (u16, u16)) -> bool {
    w < MIN_W || h < MIN_H
}

/// Panel rectangles of the full layout.
pub struct Areas {
    /// The title bar.
    pub title: Rect,
    /// The Models panel.
    pub models: Rect,
    /// The Layers panel.
    pub layers: Rect,
    /// The Parameters panel.
    pub params: Rect,
    /// The Sign agreement panel.
    pub agreement: Rect,
    /// The Status panel.
    pub status: Rect,
    /// The key hints at the bottom.
    pub footer: Rect,
}

impl Areas {
    /// The panel at a screen position.
    pub fn panel_at(&self, x: u16, y: u16) -> Option<(Panel, Rect)> {
        let p = ratatui::layout::Position::new(x, y);
        [
            (Panel::Models, self.models),
            (Panel::Layers, self.layers),
            (Panel::Params, self.params),
            (Panel::Agreement, self.agreement),
            (Panel::Status, self.status),
        ]
        .into_iter()
        .find(|(_, r)| r.contains(p))
    }
}

/// The full layout of `area`.
pub fn areas(app: &App, area: Rect) -> Areas {
    let [title, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    // The left column holds names; the right one grows with the width so
    // histogram bars and the per-model table get the extra space.
    let left_w = (area.width * 2 / 5).clamp(36, 64);
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_w), Constraint::Min(0)]).areas(body);
    let models_h = (app.doc.slots.len() as u16 + 2).clamp(4, (left.height / 3).max(4));
    let [models, layers] =
        Layout::vertical([Constraint::Length(models_h), Constraint::Min(0)]).areas(left);
    let status_lines =
        super::panels::status::lines_needed(app, right.width.saturating_sub(2) as usize);
    let status_h = (status_lines as u16 + 2).min(right.height / 3).max(3);
    let params_h = (app.param_rows().len() as u16 + 2).clamp(4, (right.height * 2 / 5).max(5));
    let [params, agreement, status] = Layout::vertical([
        Constraint::Length(params_h),
        Constraint::Min(0),
        Constraint::Length(status_h),
    ])
    .areas(right);
    Areas {
        title,
        models,
        layers,
        params,
        agreement,
        status,
        footer,
    }
}

/// The compact layout: title, the focused panel, a status line, footer.
pub struct Compact {
    /// The title bar.
    pub title: Rect,
    /// The focused panel.
    pub panel: Rect,
    /// The status line.
    pub status: Rect,
    /// The key hints at the bottom.
    pub footer: Rect,
}

/// The compact layout of `area`.
pub fn compact_areas(area: Rect) -> Compact {
    let [title, panel, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    Compact {
        title,
        panel,
        status,
        footer,
    }
}
