//! Frame-draw benchmark: time to draw a whole workbench frame at 200x60
//! (and 80x24) from a filled state, 32 layers with statistics, one layer
//! expanded. `cargo run --release --example tui_frame_bench`.
//!
//! It draws into ratatui's TestBackend, so it measures layout, widgets and
//! the buffer diff, not the terminal's own speed.

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use smelt::tui::demo::{demo_app, demo_layers, fill_stats};
use smelt::tui::theme::Theme;
use smelt::tui::view::draw;
use std::time::Instant;

fn main() {
    let mut app = demo_app();
    app.doc.layers = demo_layers(32);
    app.refresh();
    fill_stats(&mut app);
    app.view.expanded.insert(5);
    app.view.layer_cursor = 8;
    let theme = Theme::default();
    for (w, h) in [(200u16, 60u16), (80, 24)] {
        let mut term = match Terminal::new(TestBackend::new(w, h)) {
            Ok(t) => t,
            Err(e) => match e {},
        };
        let frames: u32 = 500;
        // Warm up, then alternate between two states so every frame has
        // real changes to diff (a moving cursor), as when a user scrolls.
        let _ = term.draw(|f| draw(f, &app, &theme));
        let t = Instant::now();
        for i in 0..frames {
            app.view.layer_cursor = 8 + (i % 2) as usize;
            let _ = term.draw(|f| draw(f, &app, &theme));
        }
        let per = t.elapsed().as_secs_f64() * 1e3 / f64::from(frames);
        println!("{w}x{h}: {per:.3} ms per frame ({frames} frames)");
    }
}
