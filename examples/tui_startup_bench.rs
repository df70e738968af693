//! Time from nothing to the workbench's first frame: open the models
//! (headers only, as `smelt tui` does before drawing), build the state and
//! draw one 200x60 frame. `cargo run --example tui_startup_bench -- BASE
//! MODEL...` (default: the sample llama-synthetic family, else the parity
//! fixtures).

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use smelt::recipe::Recipe;
use smelt::tui::jobs::{default_recipe, Jobs};
use smelt::tui::state::App;
use smelt::tui::theme::Theme;
use smelt::tui::view::draw;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let t = Instant::now();
    let recipe = if let [base, models @ ..] = args.as_slice() {
        Recipe::for_models(models.to_vec(), Some(base.clone()))
    } else {
        let root = smelt::tui::sample_root();
        default_recipe(&root).unwrap_or_else(|| {
            let m =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models");
            Recipe::for_models(
                vec![m.join("ft0"), m.join("ft1"), m.join("ft2")],
                Some(m.join("base")),
            )
        })
    };
    let (tx, _rx) = crossbeam_channel::unbounded();
    let jobs = Jobs::new(tx);
    let loaded = match jobs.load_now(recipe, None, None) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot open the models: {e}");
            std::process::exit(2);
        }
    };
    let opened = t.elapsed();
    let mut app = App::new(PathBuf::from("."), PathBuf::from("."));
    app.load(&loaded.recipe, &loaded.infos, loaded.layers);
    let mut term = match Terminal::new(TestBackend::new(200, 60)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    let _ = term.draw(|f| draw(f, &app, &Theme::default()));
    let total = t.elapsed();
    let params: u64 = app.doc.slots.iter().map(|s| s.info.params).sum();
    println!(
        "{} models, {} layers, {:.1}M parameters: opened in {:.1} ms, first frame at {:.1} ms",
        app.doc.slots.len(),
        app.doc.layers.len(),
        params as f64 / 1e6,
        opened.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    if let Some((_, m)) = &app.message {
        println!("{m}");
    }
}
