//! Themes: colours for each role in the UI, read from TOML.
//!
//! The four bundled themes (`themes/*.toml`) are compiled in so the binary
//! works from any directory; a user may add more in the config folder
//! (`<config>/themes/NAME.toml`) or name a file with `--theme PATH`. Colour
//! never carries meaning alone: selection is reverse video plus a marker,
//! focus is a bold title plus a marker, so `mono` and `NO_COLOR` lose nothing.

use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The bundled themes, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
];

/// What colours the terminal can show, from the environment alone
/// ([`ColorSupport::from_env`]); a theme is brought down to it by
/// [`Theme::downgraded`], so no terminal receives a colour code it does not
/// understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColorSupport {
    /// No colour at all: `NO_COLOR`, or `TERM=dumb`.
    None,
    /// The 16 named ANSI colours only.
    Ansi16,
    /// The xterm 256-colour palette.
    Ansi256,
    /// 24-bit RGB.
    TrueColor,
}

/// `TERM` families that show 16 colours, whatever `COLORTERM` claims (a
/// `COLORTERM` inherited from an outer terminal into `screen` does not make
/// `screen` pass RGB on): `xterm`, `xterm-color`, `screen.linux`, ...
const SIXTEEN_COLOUR_TERMS: &[&str] = &[
    "ansi", "cygwin", "linux", "putty", "rxvt", "screen", "tmux", "vt100", "vt102", "vt220",
    "vt320", "xterm",
];

/// Whether `term` (lower case) is one of [`SIXTEEN_COLOUR_TERMS`] or a
/// variant of one (`xterm-color`, `xterm-16color`, `screen-bce`,
/// `screen.linux`), as opposed to a terminal of its own that borrows a
/// family name (`xterm-kitty`).
fn is_sixteen_colour(term: &str) -> bool {
    SIXTEEN_COLOUR_TERMS.iter().any(|f| {
        let Some(rest) = term.strip_prefix(f) else {
            return false;
        };
        rest.is_empty()
            || rest.starts_with('.')
            || matches!(
                rest,
                "-color" | "-16color" | "-8color" | "-bce" | "-r6" | "-m"
            )
    })
}

impl ColorSupport {
    /// Decide from `TERM`, `COLORTERM` and whether `NO_COLOR` is set (and
    /// non-empty). In order:
    ///
    /// - `NO_COLOR`, or `TERM=dumb`: no colour;
    /// - a `TERM` with `256color` (`xterm-256color`, `tmux-256color`): the
    ///   256-colour palette, or RGB when `COLORTERM` is `truecolor`/`24bit`;
    /// - a `-direct` `TERM` (`xterm-direct`): RGB;
    /// - a `TERM` of a 16-colour family (`xterm`, `vt100`, `vt220`,
    ///   `screen`, `linux`, `ansi`, ... and their variants): 16 colours,
    ///   whatever `COLORTERM` says;
    /// - any other or no `TERM` (`alacritty`, `xterm-kitty`): RGB when
    ///   `COLORTERM` says so, else 16 colours.
    pub fn from_env(term: Option<&str>, colorterm: Option<&str>, no_color: bool) -> ColorSupport {
        let term = term.unwrap_or("").trim().to_ascii_lowercase();
        let truecolor = colorterm.is_some_and(|c| {
            let c = c.trim();
            c.eq_ignore_ascii_case("truecolor") || c.eq_ignore_ascii_case("24bit")
        });
        if no_color || term == "dumb" {
            return ColorSupport::None;
        }
        if term.contains("256color") {
            return if truecolor {
                ColorSupport::TrueColor
            } else {
                ColorSupport::Ansi256
            };
        }
        if term.ends_with("-direct") {
            return ColorSupport::TrueColor;
        }
        if !is_sixteen_colour(&term) && truecolor {
            return ColorSupport::TrueColor;
        }
        ColorSupport::Ansi16
    }

    /// [`ColorSupport::from_env`] on this process's environment.
    pub fn detect() -> ColorSupport {
        let var = |k: &str| std::env::var(k).ok();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        ColorSupport::from_env(
            var("TERM").as_deref(),
            var("COLORTERM").as_deref(),
            no_color,
        )
    }

    /// `c` as this terminal can show it: unchanged when supported, else the
    /// nearest colour it has (an RGB colour to the nearest of the 256, or of
    /// the 16 named ones by their usual VGA values), or the terminal's
    /// default colour when it has none.
    pub fn adapt(self, c: Color) -> Color {
        use anstyle_lossy::palette::VGA;
        match (self, c) {
            (_, Color::Reset) => Color::Reset,
            (ColorSupport::None, _) => Color::Reset,
            (ColorSupport::TrueColor, c) => c,
            (ColorSupport::Ansi256, Color::Rgb(r, g, b)) => {
                Color::Indexed(anstyle_lossy::rgb_to_xterm(anstyle::RgbColor(r, g, b)).0)
            }
            (ColorSupport::Ansi256, c) => c,
            (ColorSupport::Ansi16, Color::Rgb(r, g, b)) => {
                named(anstyle_lossy::rgb_to_ansi(anstyle::RgbColor(r, g, b), VGA))
            }
            (ColorSupport::Ansi16, Color::Indexed(i)) => {
                named(anstyle_lossy::xterm_to_ansi(anstyle::Ansi256Color(i), VGA))
            }
            (ColorSupport::Ansi16, c) => c,
        }
    }
}

/// The ratatui name of an ANSI colour (ratatui's `Gray` is ANSI white, its
/// `White` bright white).
fn named(c: anstyle::AnsiColor) -> Color {
    use anstyle::AnsiColor as A;
    match c {
        A::Black => Color::Black,
        A::Red => Color::Red,
        A::Green => Color::Green,
        A::Yellow => Color::Yellow,
        A::Blue => Color::Blue,
        A::Magenta => Color::Magenta,
        A::Cyan => Color::Cyan,
        A::White => Color::Gray,
        A::BrightBlack => Color::DarkGray,
        A::BrightRed => Color::LightRed,
        A::BrightGreen => Color::LightGreen,
        A::BrightYellow => Color::LightYellow,
        A::BrightBlue => Color::LightBlue,
        A::BrightMagenta => Color::LightMagenta,
        A::BrightCyan => Color::LightCyan,
        A::BrightWhite => Color::White,
    }
}

/// The terminal's output stream, with colour codes rewritten for what the
/// terminal supports. Put between the terminal and ratatui's backend.
///
/// crossterm writes even the 16 named colours as 256-colour codes
/// (`ESC[38;5;4m` for blue), which a 16-colour terminal (`vt100`, the Linux
/// console, some `xterm`s) shows wrongly or not at all. This writer
/// rewrites every SGR colour to the terminal's kind: the named colours as
/// the classic `30`-`37`/`90`-`97` (`40`-`47`/`100`-`107` for backgrounds)
/// everywhere; on 16 colours any other colour as its nearest named one; on
/// 256 an RGB colour as its nearest index; with no colour, the default
/// colour. Everything else passes through unchanged.
pub struct SgrWriter<W: std::io::Write> {
    inner: W,
    support: ColorSupport,
    /// An escape sequence begun in one write and not yet ended.
    pending: Vec<u8>,
}

/// Longest escape sequence held back whole; longer ones pass unchanged.
const MAX_ESCAPE: usize = 256;

impl<W: std::io::Write> SgrWriter<W> {
    /// Wrap `inner`, rewriting colours for `support`.
    pub fn new(inner: W, support: ColorSupport) -> SgrWriter<W> {
        SgrWriter {
            inner,
            support,
            pending: Vec::new(),
        }
    }
    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The rewritten parameters of `ESC[{params}m`.
    fn rewrite_sgr(&self, params: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(params);
        let nums: Option<Vec<u16>> = text
            .split(';')
            .map(|p| {
                if p.is_empty() {
                    Some(0)
                } else {
                    p.parse().ok()
                }
            })
            .collect();
        // Colon sub-parameters or garbage: not ours to touch.
        let Some(nums) = nums else {
            return params.to_vec();
        };
        let mut out: Vec<String> = Vec::with_capacity(nums.len());
        let mut i = 0;
        while i < nums.len() {
            let p = nums[i];
            let colour = match (p, nums.get(i + 1)) {
                (38 | 48 | 58, Some(5)) => nums
                    .get(i + 2)
                    .and_then(|&n| u8::try_from(n).ok())
                    .map(|n| (3, Color::Indexed(n))),
                (38 | 48 | 58, Some(2)) => match nums.get(i + 2..i + 5) {
                    Some(&[r, g, b]) => match (u8::try_from(r), u8::try_from(g), u8::try_from(b)) {
                        (Ok(r), Ok(g), Ok(b)) => Some((5, Color::Rgb(r, g, b))),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
            match colour {
                Some((len, c)) => {
                    out.push(self.sgr_colour(p, c));
                    i += len;
                }
                None => {
                    out.push(p.to_string());
                    i += 1;
                }
            }
        }
        out.join(";").into_bytes()
    }

    /// The SGR parameters setting colour `c` for `kind` (38 foreground, 48
    /// background, 58 underline) on this terminal.
    fn sgr_colour(&self, kind: u16, c: Color) -> String {
        let c = self.support.adapt(c);
        let index = match c {
            Color::Reset => None,
            Color::Rgb(r, g, b) => return format!("{kind};2;{r};{g};{b}"),
            Color::Indexed(n) if n >= 16 => return format!("{kind};5;{n}"),
            Color::Indexed(n) => Some(n),
            named => ansi_index(named),
        };
        match (kind, index) {
            (38, Some(n)) if n < 8 => (30 + u16::from(n)).to_string(),
            (38, Some(n)) => (90 + u16::from(n) - 8).to_string(),
            (48, Some(n)) if n < 8 => (40 + u16::from(n)).to_string(),
            (48, Some(n)) => (100 + u16::from(n) - 8).to_string(),
            // Underline colours have no 16-colour form.
            (58, Some(n)) if self.support >= ColorSupport::Ansi256 => format!("58;5;{n}"),
            (kind, _) => (kind + 1).to_string(),
        }
    }

    /// Process `buf`, holding back an escape sequence that is cut off.
    fn rewrite(&mut self, buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            if self.pending.is_empty() {
                if b == 0x1b {
                    self.pending.push(b);
                } else {
                    out.push(b);
                }
                continue;
            }
            self.pending.push(b);
            let n = self.pending.len();
            if n == 2 {
                if b != b'[' {
                    // Not a CSI sequence: pass it on (a second ESC starts
                    // one of its own).
                    self.pending.pop();
                    out.append(&mut self.pending);
                    if b == 0x1b {
                        self.pending.push(b);
                    } else {
                        out.push(b);
                    }
                }
                continue;
            }
            if (0x40..=0x7e).contains(&b) {
                if b == b'm' {
                    let params = self.rewrite_sgr(&self.pending[2..n - 1]);
                    out.extend_from_slice(b"\x1b[");
                    out.extend_from_slice(&params);
                    out.push(b'm');
                    self.pending.clear();
                } else {
                    out.append(&mut self.pending);
                }
            } else if n >= MAX_ESCAPE {
                out.append(&mut self.pending);
            }
        }
        out
    }
}

impl<W: std::io::Write> std::io::Write for SgrWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = self.rewrite(buf);
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // A sequence cut off at a flush is completed by the next write;
        // crossterm never flushes mid-sequence.
        self.inner.flush()
    }
}

/// The ANSI index (0-15) of a named colour.
fn ansi_index(c: Color) -> Option<u8> {
    Some(match c {
        Color::Black => 0,
        Color::Red => 1,
        Color::Green => 2,
        Color::Yellow => 3,
        Color::Blue => 4,
        Color::Magenta => 5,
        Color::Cyan => 6,
        Color::Gray => 7,
        Color::DarkGray => 8,
        Color::LightRed => 9,
        Color::LightGreen => 10,
        Color::LightYellow => 11,
        Color::LightBlue => 12,
        Color::LightMagenta => 13,
        Color::LightCyan => 14,
        Color::White => 15,
        Color::Reset | Color::Rgb(..) | Color::Indexed(_) => return None,
    })
}

/// Resolved colours for every role the views use.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    /// The theme's name (built-in, or the file it came from).
    pub name: String,
    /// Ordinary text.
    pub text: Color,
    /// Secondary text: hints, stale figures.
    pub dim: Color,
    /// Panel titles.
    pub title: Color,
    /// Borders of panels without the focus.
    pub border: Color,
    /// The border of the focused panel.
    pub focus: Color,
    /// Emphasis: the base model, key names.
    pub accent: Color,
    /// Selected row's text.
    pub selection_fg: Color,
    /// Selected row's background.
    pub selection_bg: Color,
    /// Good news: agreement, a finished merge.
    pub good: Color,
    /// Warnings.
    pub warn: Color,
    /// Errors and conflicts.
    pub bad: Color,
    /// Histogram bars.
    pub bar: Color,
    /// The bar of entries agreeing with the elected sign.
    pub bar_elected: Color,
    /// Conflict gauges in the Layers panel.
    pub gauge: Color,
    /// Marks of layers whose values override the recipe's, and of a
    /// range selection (`override` in theme files).
    pub over: Color,
    /// Named colours to use instead, by role, on terminals of 16 colours,
    /// where the nearest named colour to an RGB one may not be readable
    /// (dark orange is nearest ANSI yellow, unreadable on white). From the
    /// theme file's `[colors16]`.
    pub colors16: BTreeMap<String, Color>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    #[serde(default)]
    colors: BTreeMap<String, String>,
    #[serde(default)]
    colors16: BTreeMap<String, String>,
}

impl Default for Theme {
    fn default() -> Theme {
        // The bundled default always parses (a unit test checks it); fall
        // back to all-reset rather than panicking if it somehow does not.
        Theme::parse(BUILTIN[0].1, Path::new("themes/default.toml"))
            .unwrap_or_else(|_| Theme::mono())
    }
}

impl Theme {
    /// Every role in the terminal's default colour: what NO_COLOR gets.
    pub fn mono() -> Theme {
        Theme {
            name: "mono".into(),
            text: Color::Reset,
            dim: Color::Reset,
            title: Color::Reset,
            border: Color::Reset,
            focus: Color::Reset,
            accent: Color::Reset,
            selection_fg: Color::Reset,
            selection_bg: Color::Reset,
            good: Color::Reset,
            warn: Color::Reset,
            bad: Color::Reset,
            bar: Color::Reset,
            bar_elected: Color::Reset,
            gauge: Color::Reset,
            over: Color::Reset,
            colors16: BTreeMap::new(),
        }
    }

    /// Every role with its name in theme files, in the order of
    /// `themes/README.md`.
    pub fn roles(&self) -> [(&'static str, Color); 15] {
        [
            ("text", self.text),
            ("dim", self.dim),
            ("title", self.title),
            ("border", self.border),
            ("focus", self.focus),
            ("accent", self.accent),
            ("selection_fg", self.selection_fg),
            ("selection_bg", self.selection_bg),
            ("good", self.good),
            ("warn", self.warn),
            ("bad", self.bad),
            ("bar", self.bar),
            ("bar_elected", self.bar_elected),
            ("gauge", self.gauge),
            ("override", self.over),
        ]
    }

    /// This theme with every colour brought down to what the terminal
    /// supports ([`ColorSupport::adapt`]); on 16 colours, the theme's
    /// [`Theme::colors16`] choices replace the nearest colours.
    pub fn downgraded(mut self, support: ColorSupport) -> Theme {
        let roles = self.roles();
        for (role, c) in roles {
            if let Some(slot) = self.slot(role) {
                *slot = support.adapt(c);
            }
        }
        if support == ColorSupport::Ansi16 {
            for (role, c) in self.colors16.clone() {
                if let Some(slot) = self.slot(&role) {
                    *slot = c;
                }
            }
        }
        self
    }

    /// Parse theme TOML; `origin` names the file in errors. Roles not given
    /// keep the mono (terminal default) colour.
    pub fn parse(text: &str, origin: &Path) -> Result<Theme, String> {
        let file: ThemeFile =
            toml::from_str(text).map_err(|e| format!("{}: {e}", origin.display()))?;
        let mut t = Theme::mono();
        t.name = file.name.unwrap_or_else(|| {
            origin
                .file_stem()
                .map_or("theme".into(), |s| s.to_string_lossy().into())
        });
        let read = |table: &str, role: &str, value: &str| {
            Color::from_str(value).map_err(|_| {
                format!(
                    "{}: {table} `{role}`: cannot read `{value}`",
                    origin.display()
                )
            })
        };
        let unknown = |role: &str| format!("{}: unknown colour role `{role}`", origin.display());
        for (role, value) in &file.colors {
            let c = read("colour", role, value)?;
            *t.slot(role).ok_or_else(|| unknown(role))? = c;
        }
        for (role, value) in &file.colors16 {
            let c = read("colors16", role, value)?;
            if t.slot(role).is_none() {
                return Err(unknown(role));
            }
            if matches!(c, Color::Rgb(..) | Color::Indexed(_)) {
                return Err(format!(
                    "{}: colors16 `{role}`: `{value}` is not one of the 16 named colours",
                    origin.display()
                ));
            }
            t.colors16.insert(role.clone(), c);
        }
        Ok(t)
    }

    /// The colour of a role by its name in theme files.
    fn slot(&mut self, role: &str) -> Option<&mut Color> {
        Some(match role {
            "text" => &mut self.text,
            "dim" => &mut self.dim,
            "title" => &mut self.title,
            "border" => &mut self.border,
            "focus" => &mut self.focus,
            "accent" => &mut self.accent,
            "selection_fg" => &mut self.selection_fg,
            "selection_bg" => &mut self.selection_bg,
            "good" => &mut self.good,
            "warn" => &mut self.warn,
            "bad" => &mut self.bad,
            "bar" => &mut self.bar,
            "bar_elected" => &mut self.bar_elected,
            "gauge" => &mut self.gauge,
            "override" => &mut self.over,
            _ => return None,
        })
    }

    /// Find a theme by `--theme NAME|PATH`: an existing file path first, then
    /// `<config_dir>/themes/NAME.toml`, then the bundled themes.
    pub fn load(spec: &str, config_dir: Option<&Path>) -> Result<Theme, String> {
        let p = PathBuf::from(spec);
        if p.is_file() {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            return Theme::parse(&text, &p);
        }
        if let Some(dir) = config_dir {
            let user = dir.join("themes").join(format!("{spec}.toml"));
            if user.is_file() {
                let text = std::fs::read_to_string(&user)
                    .map_err(|e| format!("{}: {e}", user.display()))?;
                return Theme::parse(&text, &user);
            }
        }
        match BUILTIN.iter().find(|(n, _)| *n == spec) {
            Some((n, text)) => Theme::parse(text, Path::new(&format!("themes/{n}.toml"))),
            None => Err(format!(
                "theme `{spec}`: no such file, no user theme, and not one of: {}",
                BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The theme to use on a terminal with `support`
    /// ([`ColorSupport::detect`]): the one asked for (else `default`) with
    /// its colours brought down to what the terminal shows. Without colour
    /// (`NO_COLOR` set and non-empty, as <https://no-color.org> specifies,
    /// or `TERM=dumb`) that is mono whatever was asked for, but a theme
    /// that cannot be loaded is still an error, so a typo shows at once.
    pub fn select(
        spec: Option<&str>,
        support: ColorSupport,
        config_dir: Option<&Path>,
    ) -> Result<Theme, String> {
        let theme = Theme::load(spec.unwrap_or("default"), config_dir)?;
        if support == ColorSupport::None {
            return Ok(Theme::mono());
        }
        Ok(theme.downgraded(support))
    }

    /// Ordinary text.
    pub fn text(&self) -> Style {
        Style::default().fg(self.text)
    }
    /// Secondary text.
    pub fn dim(&self) -> Style {
        Style::default().fg(self.dim)
    }
    /// Selection: reverse video always (visible without colour), coloured
    /// where the theme has colours.
    pub fn selected(&self) -> Style {
        let s = Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD);
        if self.selection_bg == Color::Reset {
            s
        } else {
            // With explicit colours, swap them back so REVERSE yields fg on bg.
            s.fg(self.selection_bg).bg(self.selection_fg)
        }
    }
    /// Text in colour `c`.
    pub fn fg(&self, c: Color) -> Style {
        Style::default().fg(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_themes_parse() {
        for (name, text) in BUILTIN {
            let t = Theme::parse(text, Path::new(name)).unwrap();
            assert_eq!(t.name, *name);
        }
        assert_eq!(Theme::default().accent, Color::Yellow);
    }

    #[test]
    fn bad_colour_names_the_role() {
        let e = Theme::parse("[colors]\ntext = \"nope\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.contains("x.toml") && e.contains("text"), "{e}");
    }

    #[test]
    fn themes_from_a_path_and_from_the_config_dir() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("mine.toml");
        std::fs::write(&file, "name = \"mine\"\n[colors]\naccent = \"#102030\"\n").unwrap();
        let t = Theme::load(file.to_str().unwrap(), None).unwrap();
        assert_eq!(t.accent, Color::Rgb(0x10, 0x20, 0x30));
        assert_eq!(t.text, Color::Reset, "unset roles stay default");
        std::fs::create_dir(d.path().join("themes")).unwrap();
        std::fs::write(
            d.path().join("themes/dusk.toml"),
            "[colors]\nbad = \"lightred\"\n",
        )
        .unwrap();
        let t = Theme::load("dusk", Some(d.path())).unwrap();
        assert_eq!((t.name.as_str(), t.bad), ("dusk", Color::LightRed));
        // A user theme named like a bundled one wins over it.
        std::fs::write(
            d.path().join("themes/light.toml"),
            "[colors]\ntext = \"red\"\n",
        )
        .unwrap();
        assert_eq!(
            Theme::load("light", Some(d.path())).unwrap().text,
            Color::Red
        );
    }

    #[test]
    fn no_color_wins() {
        let none = ColorSupport::from_env(Some("xterm-256color"), Some("truecolor"), true);
        assert_eq!(none, ColorSupport::None);
        assert_eq!(
            Theme::select(Some("default"), none, None).unwrap(),
            Theme::mono()
        );
        assert!(Theme::select(Some("no-such-theme"), ColorSupport::Ansi16, None).is_err());
        assert!(Theme::select(Some("no-such-theme"), none, None).is_err());
    }

    #[test]
    fn colour_support_from_term_and_colorterm() {
        use ColorSupport as S;
        let table: &[(Option<&str>, Option<&str>, bool, ColorSupport)] = &[
            (Some("dumb"), None, false, S::None),
            (Some("dumb"), Some("truecolor"), false, S::None),
            (Some("xterm-256color"), Some("truecolor"), true, S::None),
            (Some("vt100"), None, false, S::Ansi16),
            (Some("vt220"), None, false, S::Ansi16),
            (Some("xterm"), None, false, S::Ansi16),
            (Some("screen"), None, false, S::Ansi16),
            (Some("linux"), None, false, S::Ansi16),
            (Some("ansi"), None, false, S::Ansi16),
            (Some("xterm-color"), None, false, S::Ansi16),
            (Some("screen.linux"), None, false, S::Ansi16),
            (Some("screen-bce"), Some("truecolor"), false, S::Ansi16),
            (Some("xterm-16color"), Some("truecolor"), false, S::Ansi16),
            // A COLORTERM inherited into a 16-colour terminal changes nothing.
            (Some("xterm"), Some("truecolor"), false, S::Ansi16),
            (Some("vt100"), Some("24bit"), false, S::Ansi16),
            (Some("screen"), Some("truecolor"), false, S::Ansi16),
            (Some("xterm-256color"), None, false, S::Ansi256),
            (Some("screen-256color"), Some(""), false, S::Ansi256),
            (Some("tmux-256color"), Some("yes"), false, S::Ansi256),
            (
                Some("xterm-256color"),
                Some("truecolor"),
                false,
                S::TrueColor,
            ),
            (Some("xterm-256color"), Some("24bit"), false, S::TrueColor),
            (
                Some("XTERM-256COLOR"),
                Some("TrueColor"),
                false,
                S::TrueColor,
            ),
            (Some("xterm-direct"), None, false, S::TrueColor),
            // Terminals of their own name: COLORTERM decides.
            (Some("xterm-kitty"), Some("truecolor"), false, S::TrueColor),
            (Some("alacritty"), None, false, S::Ansi16),
            (None, Some("truecolor"), false, S::TrueColor),
            (None, None, false, S::Ansi16),
            (Some(""), None, false, S::Ansi16),
        ];
        for &(term, colorterm, no_color, want) in table {
            assert_eq!(
                ColorSupport::from_env(term, colorterm, no_color),
                want,
                "TERM={term:?} COLORTERM={colorterm:?} NO_COLOR={no_color}"
            );
        }
    }

    /// Named ANSI colours (and the terminal default): all a 16-colour
    /// terminal may receive.
    fn is_named(c: Color) -> bool {
        !matches!(c, Color::Rgb(..) | Color::Indexed(_))
    }

    #[test]
    fn sixteen_colour_terminals_get_only_named_colours() {
        // Every bundled theme, plus one of RGB and indexed colours only.
        let extra = "name = \"rgb\"\n[colors]\ntext = \"#102030\"\ndim = \"#a0a0a0\"\n\
                     border = \"240\"\nbar = \"#ff8800\"\naccent = \"9\"\ngauge = \"#ffffff\"\n";
        let mut themes: Vec<Theme> = BUILTIN
            .iter()
            .map(|(n, text)| Theme::parse(text, Path::new(n)).unwrap())
            .collect();
        themes.push(Theme::parse(extra, Path::new("rgb.toml")).unwrap());
        assert!(themes
            .iter()
            .any(|t| !t.roles().iter().all(|r| is_named(r.1))));
        for term in ["xterm", "vt100", "vt220", "screen", "linux", "ansi"] {
            let support = ColorSupport::from_env(Some(term), Some("truecolor"), false);
            for t in &themes {
                let d = t.clone().downgraded(support);
                for (role, c) in d.roles() {
                    assert!(is_named(c), "{term}: theme {} role {role} is {c:?}", t.name);
                }
            }
        }
        let d = themes[4].clone().downgraded(ColorSupport::Ansi16);
        assert_eq!(d.text, Color::Black, "#102030 is nearest black");
        assert_eq!(d.border, Color::DarkGray, "index 240 is a dark grey");
        assert_eq!(d.accent, Color::LightRed, "index 9 is bright red");
        assert_eq!(d.gauge, Color::White, "#ffffff is bright white");
        // Named colours pass through unchanged.
        assert_eq!(
            Theme::default().downgraded(ColorSupport::Ansi16),
            Theme::default()
        );
    }

    #[test]
    fn other_terminals_get_what_they_support() {
        let t = Theme::parse(
            "[colors]\ntext = \"#ff0000\"\nborder = \"244\"\nbad = \"red\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let d = t.clone().downgraded(ColorSupport::Ansi256);
        assert_eq!(d.text, Color::Indexed(196), "#ff0000 is xterm 196");
        assert_eq!((d.border, d.bad), (Color::Indexed(244), Color::Red));
        assert_eq!(t.clone().downgraded(ColorSupport::TrueColor), t);
        let d = t.clone().downgraded(ColorSupport::None);
        assert!(d.roles().iter().all(|r| r.1 == Color::Reset), "{d:?}");
        // select applies it: dumb gets mono, xterm no RGB.
        let dumb = ColorSupport::from_env(Some("dumb"), None, false);
        assert_eq!(
            Theme::select(Some("light"), dumb, None).unwrap(),
            Theme::mono()
        );
        let xterm = ColorSupport::from_env(Some("xterm"), None, false);
        let light = Theme::select(Some("light"), xterm, None).unwrap();
        assert!(light.roles().iter().all(|r| is_named(r.1)), "{light:?}");
    }

    // ------------------------------------------------------------ contrast

    /// xterm's default palette for the 16 named colours: the reference for
    /// judging named colours (a user's palette may differ; that is why
    /// 16-colour themes also get a name-based check below).
    const XTERM16: [(u8, u8, u8); 16] = [
        (0x00, 0x00, 0x00),
        (0xcd, 0x00, 0x00),
        (0x00, 0xcd, 0x00),
        (0xcd, 0xcd, 0x00),
        (0x00, 0x00, 0xee),
        (0xcd, 0x00, 0xcd),
        (0x00, 0xcd, 0xcd),
        (0xe5, 0xe5, 0xe5),
        (0x7f, 0x7f, 0x7f),
        (0xff, 0x00, 0x00),
        (0x00, 0xff, 0x00),
        (0xff, 0xff, 0x00),
        (0x5c, 0x5c, 0xff),
        (0xff, 0x00, 0xff),
        (0x00, 0xff, 0xff),
        (0xff, 0xff, 0xff),
    ];

    /// A colour's RGB on an xterm; `None` for the terminal default.
    fn rgb(c: Color) -> Option<(u8, u8, u8)> {
        let index = match c {
            Color::Reset => return None,
            Color::Rgb(r, g, b) => return Some((r, g, b)),
            Color::Indexed(i) => i,
            named => ansi_index(named)?,
        };
        if index < 16 {
            return Some(XTERM16[index as usize]);
        }
        let palette = anstyle_lossy::palette::VGA;
        let c = anstyle_lossy::xterm_to_rgb(anstyle::Ansi256Color(index), palette);
        Some((c.r(), c.g(), c.b()))
    }

    /// WCAG relative luminance.
    fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
        let lin = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    }

    /// WCAG contrast ratio (1 to 21).
    fn contrast(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    /// Roles drawn as foreground on the terminal's background.
    const FOREGROUND: [&str; 13] = [
        "text",
        "dim",
        "title",
        "border",
        "focus",
        "accent",
        "good",
        "warn",
        "bad",
        "bar",
        "bar_elected",
        "gauge",
        "override",
    ];

    /// Every foreground role of `t` at least 4.5:1 (text) or 3:1 (the
    /// rest: dim text, borders, bars, as WCAG asks of large text and UI
    /// parts) against `background`, and the selection at least 4.5:1.
    fn check_contrast(t: &Theme, background: (u8, u8, u8), what: &str) -> Vec<String> {
        let mut bad = Vec::new();
        for (role, c) in t.roles() {
            if !FOREGROUND.contains(&role) {
                continue;
            }
            let Some(fg) = rgb(c) else { continue };
            let need = if role == "text" { 4.5 } else { 3.0 };
            let got = contrast(fg, background);
            if got < need {
                bad.push(format!(
                    "{what}: {role} {c:?} has contrast {got:.2} < {need}"
                ));
            }
        }
        if let (Some(fg), Some(bg)) = (rgb(t.selection_fg), rgb(t.selection_bg)) {
            let got = contrast(fg, bg);
            if got < 4.5 {
                bad.push(format!("{what}: selection has contrast {got:.2} < 4.5"));
            }
        }
        bad
    }

    /// Named colours that are light on any usual palette: unreadable as
    /// text, borders or bars on a light background.
    fn light_named(c: Color) -> bool {
        matches!(
            c,
            Color::Gray
                | Color::White
                | Color::Yellow
                | Color::Cyan
                | Color::LightRed
                | Color::LightGreen
                | Color::LightYellow
                | Color::LightBlue
                | Color::LightMagenta
                | Color::LightCyan
        )
    }

    fn bundled(name: &str) -> Theme {
        Theme::load(name, None).unwrap()
    }

    /// The light theme on a white background: readable at every colour
    /// depth. No light grey (or other light colour) for borders, dim text,
    /// bars; the selection keeps its contrast.
    #[test]
    fn light_theme_is_readable_on_white() {
        let white = (0xff, 0xff, 0xff);
        let mut problems = Vec::new();
        for support in [ColorSupport::TrueColor, ColorSupport::Ansi256] {
            let t = bundled("light").downgraded(support);
            problems.extend(check_contrast(&t, white, &format!("{support:?}")));
        }
        // On 16 colours the palette is the user's: no colour that is light
        // on the usual ones, and a selection of one light, one dark colour.
        let t = bundled("light").downgraded(ColorSupport::Ansi16);
        for (role, c) in t.roles() {
            if FOREGROUND.contains(&role) && light_named(c) {
                problems.push(format!("Ansi16: {role} is {c:?}, light on white"));
            }
        }
        if light_named(t.selection_fg) == light_named(t.selection_bg) {
            problems.push(format!(
                "Ansi16: selection {:?} on {:?} is not light on dark",
                t.selection_fg, t.selection_bg
            ));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The themes for dark backgrounds, on black: every role that has a
    /// colour readable (text in the terminal default is the terminal's).
    #[test]
    fn dark_themes_are_readable_on_black() {
        let black = (0, 0, 0);
        let mut problems = Vec::new();
        for name in ["default", "high-contrast"] {
            for support in [ColorSupport::TrueColor, ColorSupport::Ansi16] {
                let t = bundled(name).downgraded(support);
                problems.extend(check_contrast(&t, black, &format!("{name} {support:?}")));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn colors16_replaces_nearest_colours_on_16_colour_terminals_only() {
        let t = Theme::parse(
            "[colors]\nwarn = \"#9a6700\"\n[colors16]\nwarn = \"red\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(t.clone().downgraded(ColorSupport::Ansi16).warn, Color::Red);
        assert_eq!(
            t.clone().downgraded(ColorSupport::TrueColor).warn,
            Color::Rgb(0x9a, 0x67, 0x00)
        );
        assert!(matches!(
            t.downgraded(ColorSupport::Ansi256).warn,
            Color::Indexed(_)
        ));
        let e = Theme::parse("[colors16]\nwarn = \"#ff0000\"\n", Path::new("x.toml")).unwrap_err();
        assert!(
            e.contains("x.toml") && e.contains("warn") && e.contains("16 named"),
            "{e}"
        );
        let e = Theme::parse("[colors16]\nnope = \"red\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        // A misspelt table is an error, not a theme silently without colours.
        let e = Theme::parse("[colours]\ntext = \"red\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.contains("x.toml") && e.contains("colours"), "{e}");
    }

    // ------------------------------------------------- what reaches the tty

    /// A byte sink the test keeps a handle on.
    #[derive(Clone, Default)]
    struct Sink(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What ratatui's crossterm backend writes for `buf` into `w`.
    fn draw_into<W: std::io::Write>(buf: &ratatui::buffer::Buffer, w: W) {
        use ratatui::backend::{Backend, CrosstermBackend};
        let mut backend = CrosstermBackend::new(w);
        let cells = buf.content().iter().enumerate().map(|(i, c)| {
            let (x, y) = buf.pos_of(i);
            (x, y, c)
        });
        backend.draw(cells).unwrap();
    }

    /// What reaches a terminal of `support` for `buf`, through an
    /// [`SgrWriter`].
    fn drawn(buf: &ratatui::buffer::Buffer, support: ColorSupport) -> String {
        let sink = Sink::default();
        draw_into(buf, SgrWriter::new(sink.clone(), support));
        let bytes = sink.0.borrow().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// A row per bundled theme, each role's colour as foreground and as
    /// background (and the selection style), plus RGB and indexed colours.
    fn every_colour() -> ratatui::buffer::Buffer {
        use ratatui::layout::Rect;
        let mut themes: Vec<Theme> = BUILTIN
            .iter()
            .map(|(n, text)| Theme::parse(text, Path::new(n)).unwrap())
            .collect();
        let mut odd = Theme::mono();
        odd.text = Color::Rgb(0x10, 0x80, 0xff);
        odd.dim = Color::Indexed(244);
        odd.border = Color::Indexed(3);
        themes.push(odd);
        let mut buf = ratatui::buffer::Buffer::empty(Rect::new(0, 0, 40, themes.len() as u16));
        for (y, t) in themes.iter().enumerate() {
            for (x, (_, c)) in t.roles().iter().enumerate() {
                let (x, y) = (2 * x as u16, y as u16);
                buf[(x, y)].set_symbol("x").set_fg(*c);
                buf[(x + 1, y)].set_symbol("y").set_bg(*c);
            }
            buf[(39, y as u16)].set_style(t.selected());
        }
        buf
    }

    /// SGR parameter lists in `out`.
    fn sgr(out: &str) -> Vec<&str> {
        out.split("\x1b[")
            .skip(1)
            .filter_map(|s| s.find('m').map(|end| &s[..end]))
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit() || b == b';'))
            .collect()
    }

    /// Whether SGR parameters hold a 256-colour or RGB code.
    fn extended(params: &str) -> bool {
        let nums: Vec<&str> = params.split(';').collect();
        nums.windows(2)
            .any(|w| matches!(w[0], "38" | "48" | "58") && matches!(w[1], "5" | "2"))
    }

    #[test]
    fn no_256_or_rgb_codes_reach_16_colour_terminals() {
        let buf = every_colour();
        // crossterm alone writes even named colours as 256-colour codes.
        let sink = Sink::default();
        draw_into(&buf, sink.clone());
        let raw = String::from_utf8(sink.0.borrow().clone()).unwrap();
        assert!(sgr(&raw).iter().any(|p| extended(p)), "{raw:?}");
        for term in ["xterm", "vt100", "vt220", "linux", "screen", "ansi", "dumb"] {
            let support = ColorSupport::from_env(Some(term), Some("truecolor"), false);
            let out = drawn(&buf, support);
            let params = sgr(&out);
            assert!(params.len() > 10, "{term}: {out:?}");
            for p in &params {
                assert!(!extended(p), "{term}: ESC[{p}m in {out:?}");
            }
            let coloured = params.iter().flat_map(|p| p.split(';')).any(|n| {
                matches!(
                    n.parse::<u16>(),
                    Ok(30..=37 | 40..=47 | 90..=97 | 100..=107)
                )
            });
            assert_eq!(coloured, term != "dumb", "{term}: {out:?}");
            // The text is all there.
            assert_eq!(
                out.matches('x').count(),
                15 * buf.area.height as usize,
                "{term}"
            );
        }
    }

    #[test]
    fn sgr_rewrites_by_terminal() {
        use std::io::Write;
        let through = |support, input: &str| {
            let mut w = SgrWriter::new(Vec::new(), support);
            w.write_all(input.as_bytes()).unwrap();
            String::from_utf8(w.get_ref().clone()).unwrap()
        };
        let named = "a\x1b[38;5;4;48;5;15mb";
        assert_eq!(through(ColorSupport::Ansi16, named), "a\x1b[34;107mb");
        assert_eq!(through(ColorSupport::TrueColor, named), "a\x1b[34;107mb");
        assert_eq!(through(ColorSupport::None, named), "a\x1b[39;49mb");
        let rgb = "\x1b[1;38;2;255;0;0;4m";
        assert_eq!(through(ColorSupport::TrueColor, rgb), rgb);
        assert_eq!(through(ColorSupport::Ansi256, rgb), "\x1b[1;38;5;196;4m");
        assert_eq!(through(ColorSupport::Ansi16, rgb), "\x1b[1;31;4m");
        assert_eq!(
            through(ColorSupport::Ansi256, "\x1b[48;5;240m"),
            "\x1b[48;5;240m"
        );
        assert_eq!(through(ColorSupport::Ansi16, "\x1b[48;5;240m"), "\x1b[100m");
        // Other sequences and text pass unchanged.
        for other in [
            "\x1b[10;5H",
            "\x1b[?25l",
            "\x1bM",
            "plain text",
            "\x1b[0m",
            "\x1b[39;49;59m",
        ] {
            assert_eq!(through(ColorSupport::Ansi16, other), other);
        }
        // Sequences cut across writes come out the same as whole ones.
        let buf = every_colour();
        let whole = drawn(&buf, ColorSupport::Ansi16);
        let raw = drawn(&buf, ColorSupport::TrueColor);
        let mut w = SgrWriter::new(Vec::new(), ColorSupport::Ansi16);
        for b in raw.as_bytes() {
            w.write_all(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(String::from_utf8(w.get_ref().clone()).unwrap(), whole);
    }
}
