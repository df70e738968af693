//! `smelt merge`'s progress bar in a real 80-column terminal: every drawn
//! line's text fits in 79 columns, it is redrawn in place (no line is left behind),
//! long tensor names are shortened at whole segments, and the percentage
//! never goes back. The merge is of sparse inputs (holes, free of disk)
//! that take many seconds; the test waits for a number of redraws (woken by
//! output, never by a clock), then cancels it.

mod pty;
mod sparse;

/// The text a terminal shows for `raw`, split where the cursor goes back
/// to the start of a line (`\r`, `\n`), with escape sequences removed.
fn drawn_lines(raw: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final (0x40..=0x7e); other escapes: one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&d) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.retain(|l| !l.is_empty());
    out
}

fn columns(s: &str) -> usize {
    // The test names are ASCII but for the `…` mark, one column wide.
    s.chars().count()
}

#[test]
fn the_bar_fits_80_columns_redraws_in_place_and_never_goes_back() {
    let dir = sparse::merge_dir(64, (2048, 2048), |i| {
        format!("model.layers.{i}.block_sparse_moe.experts.{i}.feed_forward_network.gate_up_projection.weight")
    });
    let data = tempfile::tempdir().expect("data dir");
    let mut t = pty::Spawn::new(
        &["merge", "r.toml", "--out", "out"],
        dir.path(),
        data.path(),
    )
    .size(80, 24)
    .start();
    let draws = |raw: &[u8]| {
        String::from_utf8_lossy(raw)
            .matches(" tensors  ETA ")
            .count()
    };
    t.wait_raw("six redraws of the bar", 120, |raw| draws(raw) >= 6);
    t.signal(libc::SIGINT);
    let code = t.wait_exit(120);
    assert_eq!(code, 130, "{}", t.raw_text());

    let raw = t.raw_text();
    let lines = drawn_lines(&raw);
    let bars: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" tensors  ETA "))
        .collect();
    assert!(bars.len() >= 6, "{lines:#?}");
    for l in &lines {
        // indicatif pads a line with spaces to the terminal's width (the
        // cursor then waits at the margin, no wrap); the text stops short.
        assert!(columns(l) <= 80, "{} columns: {l:?}", columns(l));
        assert!(columns(l.trim_end()) <= 79, "{} columns: {l:?}", columns(l));
    }
    let mut last = 0.0f64;
    for b in &bars {
        assert!(b.starts_with('['), "{b:?}");
        let b = b.trim_end();
        // Shortened at whole segments: `…` then `.`, the last segments kept.
        assert!(
            b.contains("….") && b.ends_with(".weight"),
            "shortened name: {b:?}"
        );
        let pct: f64 = b
            .split("] ")
            .nth(1)
            .and_then(|r| r.split('%').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("a percentage in {b:?}"));
        assert!(pct >= last, "went back from {last} to {pct}");
        last = pct;
    }
    // Redrawn in place: the bar wrote no line breaks, and once cleared the
    // screen holds only the final message.
    let before_message = raw.split("cancelled").next().unwrap_or_default();
    assert!(
        !before_message.contains('\n'),
        "line breaks while drawing: {raw:?}"
    );
    let screen = t.screen();
    let shown: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(shown.len(), 1, "screen:\n{screen}");
    assert!(shown[0].contains("cancelled"), "screen:\n{screen}");
}
