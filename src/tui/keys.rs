//! The key map. Fixed, so people and scripts can rely on it; no key that
//! tmux (Ctrl-B) or screen (Ctrl-A) uses as a prefix, and nothing depends on
//! a double Esc. The footer shows the focused panel's keys (as lazygit and
//! k9s do); `?` shows all of them and the legend of the marks.

use super::state::Panel;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for, whatever panel has the focus (the panel decides
/// what it means there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `?` / F1: the help.
    Help,
    /// `q` / Ctrl-C: quit (asking first if work could be lost).
    Quit,
    /// Tab: the next panel.
    NextPanel,
    /// Shift-Tab: the previous panel.
    PrevPanel,
    /// ↑ / `k`.
    Up,
    /// ↓ / `j`.
    Down,
    /// Page Up.
    PageUp,
    /// Page Down.
    PageDown,
    /// Home / `g`: the first row.
    Home,
    /// End / `G`: the last row.
    End,
    /// ← / `-` / `h`: decrease the value under the cursor.
    Dec,
    /// → / `+` / `l`: increase the value under the cursor.
    Inc,
    /// Enter: edit, expand or choose.
    Enter,
    /// Space: toggle a boolean.
    Toggle,
    /// `m`: the next merge method (the recipe is translated).
    NextMethod,
    /// `r`: run the merge (asks for the output folder).
    Run,
    /// `c`: cancel the running merge.
    Cancel,
    /// `s`: save the recipe.
    Save,
    /// `o`: open a recipe or models.
    Open,
    /// Ctrl-L: redraw the screen.
    Redraw,
    /// `a`: add a model by path.
    AddModel,
    /// `x`: remove the selected model.
    RemoveModel,
    /// `L`: extract a LoRA from the selected model against the base.
    ExtractLora,
    /// Backspace / Delete: remove the value (or overrides) under the cursor.
    Clear,
    /// `b`: make the selected model the base.
    SetBase,
    /// `e`: exclude the selected model from the recipe, or include it again.
    Exclude,
    /// `v`: mark the first layer of a range.
    RangeMark,
    /// `z`: how many layers ZipIt! zips into the shared trunk.
    ZipDepth,
    /// `u`: undo the last recipe edit.
    Undo,
    /// `d`: pick a document of a multi-document file.
    Documents,
    /// Ctrl-R: redo.
    Redo,
}

/// The action for a key outside any prompt or dialog, if it has one.
pub fn action(k: &KeyEvent) -> Option<Action> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char('l') if ctrl => Action::Redraw,
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('r') if ctrl => Action::Redo,
        _ if ctrl => return None,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextPanel,
        KeyCode::BackTab => Action::PrevPanel,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Left | KeyCode::Char('-') | KeyCode::Char('h') => Action::Dec,
        KeyCode::Right | KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Char('l') => {
            Action::Inc
        }
        KeyCode::Enter => Action::Enter,
        KeyCode::Char(' ') => Action::Toggle,
        KeyCode::Char('m') => Action::NextMethod,
        KeyCode::Char('r') => Action::Run,
        KeyCode::Char('c') => Action::Cancel,
        KeyCode::Char('s') => Action::Save,
        KeyCode::Char('o') => Action::Open,
        KeyCode::Char('a') => Action::AddModel,
        KeyCode::Char('x') => Action::RemoveModel,
        KeyCode::Char('L') => Action::ExtractLora,
        KeyCode::Delete | KeyCode::Backspace => Action::Clear,
        KeyCode::Char('b') => Action::SetBase,
        KeyCode::Char('e') => Action::Exclude,
        KeyCode::Char('v') => Action::RangeMark,
        KeyCode::Char('z') => Action::ZipDepth,
        KeyCode::Char('u') => Action::Undo,
        KeyCode::Char('d') => Action::Documents,
        _ => return None,
    })
}

/// Keys that work in every panel: (keys, what they do).
pub const GLOBAL: &[(&str, &str)] = &[
    ("?", "this help: every key, and what the marks mean"),
    ("q  Ctrl-C", "quit (asks first if work could be lost)"),
    ("Tab S-Tab", "next / previous panel"),
    ("↑↓ jk", "move in the panel (PgUp PgDn, Home End or g G too)"),
    ("Esc", "close a dialog or prompt (nothing changes)"),
    ("u  Ctrl-R", "undo / redo any recipe edit"),
    ("m", "next merge method (the recipe is translated)"),
    ("r", "run the merge (asks for the output folder)"),
    ("c", "cancel the running merge or LoRA extraction"),
    (
        "s  o",
        "save the recipe (.toml; .yml for mergekit) / open one",
    ),
    ("a", "add a model by path (Tab completes)"),
    (
        "d",
        "documents of a multi-document file: Enter or a digit shows one (building what it reads first)",
    ),
    ("Ctrl-L", "redraw the screen"),
];

/// The keys of each panel, for the footer and the help.
pub fn panel_keys(p: Panel) -> &'static [(&'static str, &'static str)] {
    match p {
        Panel::Models => &[
            ("←→", "weight"),
            ("b", "base"),
            ("e", "exclude"),
            ("x", "remove"),
            ("a", "add"),
            ("L", "LoRA"),
        ],
        Panel::Layers => &[
            ("←→", "density"),
            ("Enter", "tensors"),
            ("v", "range"),
            ("z", "zip"),
            ("Del", "clear"),
        ],
        Panel::Params => &[
            ("←→", "adjust"),
            ("Enter", "edit"),
            ("Space", "toggle"),
            ("Del", "remove"),
        ],
        Panel::Agreement => &[("↑↓", "scroll"), ("m", "method")],
        Panel::Status => &[("r", "run"), ("c", "cancel")],
    }
}

/// What each panel's keys do, in full, for the help overlay.
pub fn panel_help(p: Panel) -> &'static [(&'static str, &'static str)] {
    match p {
        Panel::Models => &[
            (
                "←→ -+",
                "the selected model's weight (at the selected layer)",
            ),
            ("b", "make the selected model the base"),
            ("e", "exclude it from the recipe, or include it again"),
            ("x", "remove it (u brings it back)"),
            (
                "L",
                "extract a LoRA of it against the base (asks rank, options, folder)",
            ),
        ],
        Panel::Layers => &[
            (
                "←→ -+",
                "every input's density at the selected row or range",
            ),
            ("Enter", "show or hide a layer's tensors"),
            (
                "v",
                "start a range here (v again drops it); edits move each layer",
            ),
            ("z", "zipit/permute: zip through this layer"),
            ("Del", "remove the selected row's (or range's) overrides"),
        ],
        Panel::Params => &[
            ("←→ -+", "adjust the value (booleans flip)"),
            ("Enter", "type a value (booleans flip)"),
            ("Space", "flip a boolean"),
            ("Del", "remove the value here: the next level's shows"),
        ],
        Panel::Agreement => &[],
        Panel::Status => &[],
    }
}

/// The marks, for the help overlay's legend.
pub const LEGEND: &[(&str, &str)] = &[
    ("▶", "cursor (also reverse video)"),
    ("*", "a value set for this layer or group (an override)"),
    ("≈", "the value a gradient or filter gives at this layer"),
    ("°", "a figure being recomputed: it is from earlier values"),
    ("…", "text cut to fit"),
    (
        "!",
        "among the layers with the most sign conflict (three at most, a third of them)",
    ),
    ("✘", "a problem that stops the merge (listed by r)"),
    (
        "†",
        "tensors left out of these figures (named in Sign agreement)",
    ),
];
