//! Drawing: a pure function of the state (and theme) onto a ratatui frame.
//! The layout ([`super::layout`]) decides where panels go; each panel draws
//! itself ([`super::panels`]); dialogs and prompts go on top.
//!
//! Colour never carries meaning alone: the cursor row is reverse video and
//! a marker, the focused panel has a marker in its title and a heavier
//! border, marks (see [`super::widgets`]) say the rest.

use super::dialog;
use super::layout::{self, compact_areas, MIN_H, MIN_W};
use super::panels::{agreement, chrome, layers, models, params, status};
use super::state::*;
use super::theme::Theme;
use super::widgets::asciify;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme) {
    let area = f.area();
    let size = (area.width, area.height);
    if layout::too_small(size) {
        let msg = format!(
            "Terminal is {}x{}: smelt needs at least {MIN_W}x{MIN_H} (q quits)",
            area.width, area.height
        );
        let y = area.height / 2;
        f.render_widget(
            Paragraph::new(msg)
                .style(theme.fg(theme.warn))
                .wrap(Wrap { trim: true }),
            Rect::new(0, y, area.width, area.height - y),
        );
        // A question asked (q with unsaved changes) must be seen at any
        // size.
        if let Some(Modal::Confirm(c)) = &app.modal {
            dialog::draw_confirm(f, app, theme, area, c);
        }
        return;
    }
    let modal_open = app.modal.is_some();
    let focus = app.focus();
    let has = |p: Panel| !modal_open && focus == p;
    if layout::compact(size) {
        let c = compact_areas(area);
        chrome::draw_title(f, app, theme, c.title);
        match focus {
            Panel::Models => models::draw(f, app, theme, c.panel, !modal_open),
            Panel::Layers => layers::draw(f, app, theme, c.panel, !modal_open),
            Panel::Params => params::draw(f, app, theme, c.panel, !modal_open),
            Panel::Agreement => agreement::draw(f, app, theme, c.panel, !modal_open),
            Panel::Status => status::draw(f, app, theme, c.panel, !modal_open),
        }
        f.render_widget(
            Paragraph::new(Line::styled(
                format!(
                    " {}",
                    super::widgets::pad(
                        &status::one_line(app),
                        c.status.width.saturating_sub(1) as usize,
                        app.ascii
                    )
                ),
                theme.dim(),
            )),
            c.status,
        );
        chrome::draw_footer(f, app, theme, c.footer);
    } else {
        let a = layout::areas(app, area);
        chrome::draw_title(f, app, theme, a.title);
        models::draw(f, app, theme, a.models, has(Panel::Models));
        layers::draw(f, app, theme, a.layers, has(Panel::Layers));
        params::draw(f, app, theme, a.params, has(Panel::Params));
        agreement::draw(f, app, theme, a.agreement, has(Panel::Agreement));
        status::draw(f, app, theme, a.status, has(Panel::Status));
        chrome::draw_footer(f, app, theme, a.footer);
    }
    match &app.modal {
        Some(Modal::Help(top)) => dialog::draw_help(f, app, theme, area, *top),
        Some(Modal::Confirm(c)) => dialog::draw_confirm(f, app, theme, area, c),
        Some(Modal::Problems) => dialog::draw_problems(f, app, theme, area),
        Some(Modal::Documents(c)) => super::multi::draw_picker(f, app, theme, area, *c),
        Some(Modal::Prompt(p)) => p.input.draw(f, theme, app.ascii, area),
        None => {}
    }
    if app.ascii {
        asciify(f.buffer_mut());
    }
}
