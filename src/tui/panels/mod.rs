//! One widget per panel: each file draws its panel and handles the keys
//! that act on it. [`on_action`] routes a key to the focused panel;
//! [`on_mouse`] to the panel under the pointer.

pub mod agreement;
pub mod chrome;
pub mod layers;
pub mod models;
pub mod params;
pub mod status;

use super::keys::Action;
use super::layout;
use super::state::*;
use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

/// A key for the focused panel.
pub fn on_action(app: &mut App, a: Action) {
    match a {
        Action::Up => move_cursor(app, app.focus(), -1),
        Action::Down => move_cursor(app, app.focus(), 1),
        Action::PageUp => move_cursor(app, app.focus(), -10),
        Action::PageDown => move_cursor(app, app.focus(), 10),
        Action::Home => move_cursor(app, app.focus(), -1_000_000),
        Action::End => move_cursor(app, app.focus(), 1_000_000),
        _ => match app.focus() {
            Panel::Models => models::on_action(app, a),
            Panel::Layers => layers::on_action(app, a),
            Panel::Params => params::on_action(app, a),
            Panel::Agreement | Panel::Status => app.say(
                Level::Info,
                format!(
                    "{} shows; Tab to Models, Layers or Parameters to edit",
                    app.focus().name()
                ),
            ),
        },
    }
}

/// Move a panel's cursor by `d` rows, kept inside its list.
pub fn move_cursor(app: &mut App, panel: Panel, d: i64) {
    let len = match panel {
        Panel::Models => app.doc.model_rows(),
        Panel::Layers => app.layer_lines().len(),
        Panel::Params => app.param_rows().len(),
        Panel::Agreement => {
            // Scrolls its figures (the compact layout cannot show them all).
            let s = app.view.agreement_scroll as i64 + d;
            app.view.agreement_scroll = s.clamp(0, 40) as usize;
            app.dirty = true;
            return;
        }
        Panel::Status => return,
    };
    let cur = match panel {
        Panel::Models => &mut app.view.model_cursor,
        Panel::Layers => &mut app.view.layer_cursor,
        _ => &mut app.view.param_cursor,
    };
    *cur = if len == 0 {
        0
    } else {
        (*cur as i64 + d).clamp(0, len as i64 - 1) as usize
    };
    app.dirty = true;
}

/// Mouse (only with `--mouse`): the wheel scrolls the panel under the
/// pointer, a click focuses that panel and selects the row under it.
pub fn on_mouse(app: &mut App, m: MouseEvent) {
    if app.modal.is_some()
        || !matches!(
            m.kind,
            MouseEventKind::ScrollUp
                | MouseEventKind::ScrollDown
                | MouseEventKind::Down(MouseButton::Left)
        )
    {
        return;
    }
    let (w, h) = app.size;
    let full = Rect::new(0, 0, w, h);
    let hit = if layout::too_small(app.size) {
        None
    } else if layout::compact(app.size) {
        let c = layout::compact_areas(full);
        c.panel
            .contains(ratatui::layout::Position::new(m.column, m.row))
            .then_some((app.focus(), c.panel))
    } else {
        layout::areas(app, full).panel_at(m.column, m.row)
    };
    let Some((panel, r)) = hit else {
        return;
    };
    match m.kind {
        MouseEventKind::ScrollUp => move_cursor(app, panel, -1),
        MouseEventKind::ScrollDown => move_cursor(app, panel, 1),
        _ => {
            app.view.focus = Some(panel);
            // Rows start inside the border, and the view scrolls to keep
            // the cursor in sight the same way, so the row under the
            // pointer is the first shown plus the offset.
            if m.row <= r.y || m.row + 1 >= r.bottom() {
                app.dirty = true;
                return;
            }
            let inner_h = r.height.saturating_sub(2) as usize;
            let off = (m.row - r.y - 1) as usize;
            let (cur, len) = match panel {
                Panel::Models => (app.view.model_cursor, app.doc.model_rows()),
                Panel::Layers => (app.view.layer_cursor, app.layer_lines().len()),
                Panel::Params => (app.view.param_cursor, app.param_rows().len()),
                _ => {
                    app.dirty = true;
                    return;
                }
            };
            let row = super::widgets::scroll(cur, inner_h) + off;
            if row < len {
                move_cursor(app, panel, row as i64 - cur as i64);
            }
        }
    }
    app.dirty = true;
}
