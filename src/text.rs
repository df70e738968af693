//! Names from files, made safe to print.
//!
//! Tensor names, metadata and paths come from files that anyone can write.
//! Printed raw, a name such as `"\x1b]0;PWNED\x07\x1b[2J"` retitles and
//! clears the user's terminal, and a bidi override can make one name look
//! like another. Every name or path smelt prints goes through [`escape`]
//! (or [`Escaped`], [`path`]): control characters and other characters that
//! print nothing visible come out as Rust-style escapes (`\u{1b}`, `\n`),
//! everything else unchanged, so ordinary names (non-ASCII ones included)
//! look as they are.
//!
//! Escaping is idempotent: the escaped text is printable, so escaping a
//! message that already holds escaped names changes nothing.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// Whether `c` prints as itself. ASCII graphic characters and the space do;
/// other ASCII does not; beyond ASCII, whatever `str::escape_debug` leaves
/// alone after a first character (Unicode's printable characters, with
/// combining marks kept as they are; format characters such as bidi
/// overrides and zero-width spaces, line separators, private-use and
/// unassigned code points are escaped).
fn printable(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    if c.is_control() {
        return false;
    }
    // `escape_debug` of a string escapes a combining mark only at its
    // start, so put one printable character in front and look at the rest.
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let n = 1 + c.encode_utf8(&mut buf[1..]).len();
    let s = std::str::from_utf8(&buf[..n]).unwrap_or("a");
    s.escape_debug().nth(1) == Some(c)
}

/// Write `c` escaped.
fn write_escaped(f: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        _ => write!(f, "\\u{{{:x}}}", c as u32),
    }
}

/// `s` with every character that does not print as itself escaped. Borrows
/// when there is nothing to escape (the common case).
pub fn escape(s: &str) -> Cow<'_, str> {
    if s.chars().all(printable) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(Escaped(s).to_string())
}

/// Like [`escape`], but line breaks are kept: for whole messages of several
/// lines, whose parts may hold names.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| c == '\n' || printable(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    Cow::Owned(out)
}

/// A path for people: lossy UTF-8 (as `Path::display`), escaped.
pub fn path(p: &Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

/// `Display` of a string, escaped: `format!("tensor `{}`", Escaped(name))`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| !printable(c)) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or(' ');
            write_escaped(f, c)?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// JSON text (from `serde_json`) with the characters that `serde_json`
/// leaves raw but a terminal acts on (DEL, the C1 controls, and the other
/// non-printing characters [`escape`] escapes) written as `\uXXXX`
/// escapes. Such characters only occur inside JSON strings, where the
/// escape means the same character, so the JSON is unchanged in meaning.
pub fn json(text: &str) -> Cow<'_, str> {
    if text
        .chars()
        .all(|c| printable(c) || matches!(c, '\n' | '\t' | '\r'))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if printable(c) || matches!(c, '\n' | '\t' | '\r') {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        }
    }
    Cow::Owned(out)
}

/// `text` in lines of at most `w` characters, broken between words; a word
/// longer than a line (a path, say) gets a line of its own, whole.
pub fn wrap(text: &str, w: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let len = cur.chars().count();
        if len > 0 && len + 1 + word.chars().count() > w {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_unchanged() {
        for s in [
            "model.layers.0.self_attn.q_proj.weight",
            "a b/c-d_e",
            "名前.重み",
            "café",
            "cafe\u{301}",
            "emoji 🦀",
            "",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn controls_and_invisibles_are_escaped() {
        assert_eq!(
            escape("\x1b]0;PWNED\x07\x1b[2J"),
            "\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J"
        );
        assert_eq!(escape("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape("x\u{7f}y\u{9b}z"), "x\\u{7f}y\\u{9b}z");
        // Bidi override, zero-width space, line separator, BOM.
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape("a\u{200b}b"), "a\\u{200b}b");
        assert_eq!(escape("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(escape("\u{feff}a"), "\\u{feff}a");
        assert_eq!(Escaped("\x1bx").to_string(), "\\u{1b}x");
        assert_eq!(path(Path::new("/tmp/\x1b[31mred")), "/tmp/\\u{1b}[31mred");
    }

    #[test]
    fn escaping_is_idempotent() {
        let once = escape("\x1b]0;t\x07\u{202e}\n").into_owned();
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn lines_keep_line_breaks() {
        assert_eq!(escape_lines("a\x1b\nb"), "a\\u{1b}\nb");
        assert!(matches!(escape_lines("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_stays_json() {
        let name = "x\u{7f}\u{9b}\u{202e}\x1b\u{1f980}y";
        let text = serde_json::to_string(&serde_json::json!({ name: name })).unwrap();
        let safe = json(&text);
        assert!(safe.chars().all(|c| printable(c) || c == '\n'), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back[name], name);
    }

    #[test]
    fn wrapping_keeps_long_words_whole() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(
            wrap("x /a/very/long/path y", 6),
            vec!["x", "/a/very/long/path", "y"]
        );
        assert_eq!(wrap("", 5), vec![""]);
    }
}
