//! The one text-input component: a line of text with a cursor, path
//! completion, and an error line. Every prompt (output folder, save, open,
//! add model, a new value) is one of these and behaves the same way: on an
//! error the prompt stays open with the text kept and the error under it,
//! and the error goes away once the text changes (value prompts re-check
//! as you type, so it goes once it is fixed).

use super::theme::Theme;
use super::widgets::{centered, modal_block};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Position, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// One completion candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The name as it completes (`ft-code/`).
    pub name: String,
    /// Already loaded in the workbench (marked in the list).
    pub loaded: bool,
}

/// The one text-input component: prompts for paths and values, with
/// Tab completion of paths.
#[derive(Clone, Debug, PartialEq)]
pub struct TextInput {
    /// The prompt's title.
    pub title: String,
    /// The text typed so far.
    pub text: String,
    /// Cursor position in chars.
    pub cursor: usize,
    /// Candidates from the last Tab, listed under the prompt.
    pub completions: Vec<Candidate>,
    /// What is wrong with the text, shown under it.
    pub error: Option<String>,
    /// Whether Tab completes paths.
    pub paths: bool,
    /// Paths to mark as loaded in completions.
    pub loaded: Vec<PathBuf>,
    /// A line of help under the text (what Enter does).
    pub hint: String,
    /// Whether Tab also completes the `org/name` entries of the Hugging
    /// Face cache (the add-model prompt).
    pub hub_names: bool,
}

/// What a key did to the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// Still editing (the text may have changed).
    Edited,
    /// Enter: take the text.
    Submit,
    /// Esc: leave the prompt.
    Cancel,
}

impl TextInput {
    /// A prompt titled `title`, holding `text` with the cursor at its end.
    pub fn new(title: impl Into<String>, text: impl Into<String>) -> TextInput {
        let text = text.into();
        TextInput {
            title: title.into(),
            cursor: text.chars().count(),
            text,
            completions: Vec::new(),
            error: None,
            paths: false,
            loaded: Vec::new(),
            hint: String::new(),
            hub_names: false,
        }
    }

    /// A prompt for a path: Tab completes, `loaded` paths are marked.
    pub fn path(
        title: impl Into<String>,
        text: impl Into<String>,
        loaded: Vec<PathBuf>,
    ) -> TextInput {
        let mut t = TextInput::new(title, text);
        t.paths = true;
        t.loaded = loaded;
        t
    }

    /// The same prompt completing the hub names found in the Hugging Face
    /// cache too.
    pub fn with_hub_names(mut self) -> TextInput {
        self.hub_names = true;
        self
    }

    /// The same prompt with a line of help under the text.
    pub fn with_hint(mut self, hint: impl Into<String>) -> TextInput {
        self.hint = hint.into();
        self
    }

    /// The same prompt showing what is wrong with its text.
    pub fn with_error(mut self, e: impl Into<String>) -> TextInput {
        self.error = Some(e.into());
        self
    }

    /// Apply a key: edit, move, complete, submit or cancel.
    pub fn on_key(&mut self, k: KeyEvent) -> InputEvent {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let before = self.text.clone();
        match k.code {
            KeyCode::Esc => return InputEvent::Cancel,
            KeyCode::Char('c') if ctrl => return InputEvent::Cancel,
            KeyCode::Enter => return InputEvent::Submit,
            KeyCode::Char('u') if ctrl => {
                self.text.clear();
                self.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => {
                // Delete the word (or path component) before the cursor.
                let chars: Vec<char> = self.text.chars().collect();
                let mut at = self.cursor;
                while at > 0 && chars[at - 1] == '/' {
                    at -= 1;
                }
                while at > 0 && chars[at - 1] != '/' && !chars[at - 1].is_whitespace() {
                    at -= 1;
                }
                self.text = chars[..at].iter().chain(&chars[self.cursor..]).collect();
                self.cursor = at;
            }
            KeyCode::Tab if self.paths => {
                let hub = if self.hub_names {
                    crate::model::source::cached_names(&crate::model::source::cache_dir())
                } else {
                    Vec::new()
                };
                let (text, cands) = complete_path_or_hub(&self.text, &hub);
                self.cursor = text.chars().count();
                self.text = text;
                self.completions = cands
                    .into_iter()
                    .map(|name| {
                        let full = expand_home(&format!("{}{name}", dir_part(&self.text)));
                        let loaded = self.loaded.iter().any(|p| same_path(p, &full));
                        Candidate { name, loaded }
                    })
                    .collect();
                return InputEvent::Edited;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = byte_at(&self.text, self.cursor - 1);
                self.text.remove(at);
                self.cursor -= 1;
            }
            KeyCode::Delete if self.cursor < self.text.chars().count() => {
                let at = byte_at(&self.text, self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.text.chars().count()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::End => self.cursor = self.text.chars().count(),
            KeyCode::Char('e') if ctrl => self.cursor = self.text.chars().count(),
            KeyCode::Char(c) if !ctrl => {
                let at = byte_at(&self.text, self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            _ => {}
        }
        if self.text != before {
            self.completions.clear();
            self.error = None;
        }
        InputEvent::Edited
    }

    /// The text, trimmed, `~/` expanded.
    pub fn path_value(&self) -> PathBuf {
        expand_home(self.text.trim())
    }

    /// Draw the prompt as a dialog in `area`.
    pub fn draw(&self, f: &mut Frame, theme: &Theme, ascii: bool, area: Rect) {
        let shown_c = self.completions.len().min(8);
        let extra = if shown_c == 0 { 0 } else { 1 + shown_c as u16 };
        let w = area.width.saturating_sub(4).clamp(20, 100);
        // The error wraps: as many lines as it takes, whole.
        let inner_w = w.saturating_sub(2).max(1) as usize;
        let err_lines = self
            .error
            .as_ref()
            .map_or(0, |e| (e.chars().count() + 2).div_ceil(inner_w) as u16);
        let r = centered(area, w, 4 + err_lines + extra);
        super::widgets::clear_modal(f, r, area);
        let b = modal_block(theme, ascii, &self.title, r.width);
        let inner = b.inner(r);
        f.render_widget(b, r);
        let iw = inner.width as usize;
        // Keep the cursor in view on long paths.
        let skip = (self.cursor + 2).saturating_sub(iw);
        let shown: String = self.text.chars().skip(skip).take(iw).collect();
        let mut lines = vec![Line::styled(
            shown,
            theme.text().add_modifier(Modifier::UNDERLINED),
        )];
        if let Some(e) = &self.error {
            lines.push(Line::styled(
                format!("! {e}"),
                theme.fg(theme.bad).add_modifier(Modifier::BOLD),
            ));
        }
        let hint = if self.hint.is_empty() {
            "Enter accepts".to_string()
        } else {
            self.hint.clone()
        };
        let keys = if self.paths {
            format!("{hint} · Esc cancels · Tab completes")
        } else {
            format!("{hint} · Esc cancels")
        };
        lines.push(Line::styled(keys, theme.dim()));
        if shown_c > 0 {
            let more = self.completions.len() - shown_c;
            lines.push(Line::styled(
                if more > 0 {
                    format!(
                        "{} matches ({more} more: type to narrow)",
                        self.completions.len()
                    )
                } else {
                    format!("{} matches:", self.completions.len())
                },
                theme.dim(),
            ));
            for c in self.completions.iter().take(shown_c) {
                let mut spans = vec![Span::styled(format!("  {}", c.name), theme.text())];
                if c.loaded {
                    spans.push(Span::styled(
                        "  (loaded)",
                        theme.fg(theme.accent).add_modifier(Modifier::BOLD),
                    ));
                }
                lines.push(Line::from(spans));
            }
        }
        f.render_widget(
            Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
            inner,
        );
        let cx = inner.x + (self.cursor - skip) as u16;
        f.set_cursor_position(Position::new(
            cx.min(inner.right().saturating_sub(1)),
            inner.y,
        ));
    }
}

fn byte_at(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

/// The folder part of typed text, up to and including the last `/`.
fn dir_part(text: &str) -> &str {
    &text[..text.len() - text.rsplit('/').next().map_or(0, str::len)]
}

fn same_path(a: &Path, b: &Path) -> bool {
    let c = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let t = |p: &Path| {
        let s = p.to_string_lossy();
        PathBuf::from(s.trim_end_matches('/'))
    };
    c(&t(a)) == c(&t(b))
}

/// `~/x` → the home folder's `x`; anything else unchanged.
pub fn expand_home(text: &str) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h).join(rest);
        }
    }
    PathBuf::from(text)
}

/// Complete a path prefix: the longest common extension of every entry that
/// starts with it (folders get a trailing `/`), and the candidates' names
/// when there is more than one.
pub fn complete_path(text: &str) -> (String, Vec<String>) {
    complete_path_or_hub(text, &[])
}

/// [`complete_path`], with the hub names `hub` (`org/name`) as if they
/// were folders `org/name/` (without the trailing `/`: a hub name is
/// complete as it is). A local entry and a hub name that complete the
/// same way are one candidate.
pub fn complete_path_or_hub(text: &str, hub: &[String]) -> (String, Vec<String>) {
    let (completed, mut names) = list_dir(text);
    // Hub names complete only a plain `org` or `org/name` prefix.
    let depth = text.matches('/').count();
    let plain = !text.starts_with(['/', '.', '~']) && depth <= 1;
    if plain {
        for h in hub {
            let Some((org, name)) = h.split_once('/') else {
                continue;
            };
            let cand = if depth == 0 {
                org.starts_with(text).then(|| format!("{org}/"))
            } else {
                let (o, prefix) = text.split_once('/').unwrap_or((text, ""));
                (o == org && name.starts_with(prefix)).then(|| name.to_string())
            };
            if let Some(c) = cand.filter(|c| !names.contains(c)) {
                names.push(c);
            }
        }
        names.sort();
    }
    if names.is_empty() {
        return (completed, names);
    }
    let mut common = names[0].clone();
    for n in &names[1..] {
        let l = common
            .chars()
            .zip(n.chars())
            .take_while(|(a, b)| a == b)
            .count();
        common = common.chars().take(l).collect();
    }
    let completed = format!("{}{common}", dir_part(text));
    (completed, if names.len() > 1 { names } else { Vec::new() })
}

/// The entries of the folder `text` is in that start with its last part
/// (folders with a trailing `/`), sorted; `text` itself when there is no
/// such folder.
fn list_dir(text: &str) -> (String, Vec<String>) {
    let path = expand_home(text);
    let (dir, prefix) = if text.ends_with('/') || text.is_empty() {
        (
            if text.is_empty() {
                PathBuf::from(".")
            } else {
                path.clone()
            },
            String::new(),
        )
    } else {
        (
            path.parent().map_or_else(
                || PathBuf::from("."),
                |p| {
                    if p.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        p.to_path_buf()
                    }
                },
            ),
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        )
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return (text.to_string(), Vec::new());
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with(&prefix) || (n.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir()) || e.path().is_dir();
            Some(if is_dir { format!("{n}/") } else { n })
        })
        .collect();
    names.sort();
    (text.to_string(), names)
}
