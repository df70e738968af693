//! The key map. Fixed, so people and scripts can rely on it; no key that
//! tmux (Ctrl-B) or screen (Ctrl-A) uses as a prefix, and nothing depends on
//! a double Esc.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Help,
    Quit,
    NextPanel,
    PrevPanel,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Dec,
    Inc,
    Enter,
    NextMethod,
    Run,
    Cancel,
    Save,
    Open,
    Redraw,
    AddModel,
    Remove,
    SetBase,
    Exclude,
    RangeMark,
    ZipDepth,
}

/// The bindings, for the help overlay: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("?", "this help (any key closes it)"),
    ("q", "quit (asks while a merge runs)"),
    ("Tab / Shift-Tab", "next / previous panel"),
    ("↑ ↓  j k", "move; PgUp PgDn Home End jump"),
    ("← →  - +", "adjust the focused value"),
    ("", "  Layers: density of all inputs at that layer"),
    ("", "  Models: weight of the selected model"),
    ("Enter", "expand a layer / type a value / next method"),
    ("v", "start or clear a layer range for edits"),
    ("z", "Layers: zip through this layer (zipit/permute)"),
    ("Backspace Del", "drop overrides (Params: one; Layers: all)"),
    ("m", "next merge method"),
    ("r", "run the merge (asks for the output folder)"),
    ("c", "cancel the running merge"),
    ("s / o", "save recipe (.toml, .yaml) / open recipe"),
    ("a", "add a model by path (Tab completes)"),
    ("x", "Models: remove the selected model"),
    ("b / e", "Models: set base / exclude or include"),
    ("Ctrl-L", "redraw the screen"),
];

/// The action for a key outside any prompt, if it has one.
pub fn action(k: &KeyEvent) -> Option<Action> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char('l') if ctrl => Action::Redraw,
        KeyCode::Char('c') if ctrl => Action::Quit,
        _ if ctrl => return None,
        KeyCode::Char('?') => Action::Help,
        KeyCode::F(1) => Action::Help,
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
        KeyCode::Char('m') => Action::NextMethod,
        KeyCode::Char('r') => Action::Run,
        KeyCode::Char('c') => Action::Cancel,
        KeyCode::Char('s') => Action::Save,
        KeyCode::Char('o') => Action::Open,
        KeyCode::Char('a') => Action::AddModel,
        KeyCode::Char('x') | KeyCode::Delete | KeyCode::Backspace => Action::Remove,
        KeyCode::Char('b') => Action::SetBase,
        KeyCode::Char('e') => Action::Exclude,
        KeyCode::Char('v') => Action::RangeMark,
        KeyCode::Char('z') => Action::ZipDepth,
        _ => return None,
    })
}
