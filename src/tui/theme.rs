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

/// Resolved colours for every role the views use.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    pub text: Color,
    pub dim: Color,
    pub title: Color,
    pub border: Color,
    pub focus: Color,
    pub accent: Color,
    pub selection_fg: Color,
    pub selection_bg: Color,
    pub good: Color,
    pub warn: Color,
    pub bad: Color,
    pub bar: Color,
    pub bar_elected: Color,
    pub gauge: Color,
    pub over: Color,
}

#[derive(serde::Deserialize)]
struct ThemeFile {
    name: Option<String>,
    #[serde(default)]
    colors: BTreeMap<String, String>,
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
    /// supports ([`ColorSupport::adapt`]).
    pub fn downgraded(mut self, support: ColorSupport) -> Theme {
        for c in [
            &mut self.text,
            &mut self.dim,
            &mut self.title,
            &mut self.border,
            &mut self.focus,
            &mut self.accent,
            &mut self.selection_fg,
            &mut self.selection_bg,
            &mut self.good,
            &mut self.warn,
            &mut self.bad,
            &mut self.bar,
            &mut self.bar_elected,
            &mut self.gauge,
            &mut self.over,
        ] {
            *c = support.adapt(*c);
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
        for (role, value) in &file.colors {
            let c = Color::from_str(value).map_err(|_| {
                format!(
                    "{}: colour `{role}`: cannot read `{value}`",
                    origin.display()
                )
            })?;
            let slot = match role.as_str() {
                "text" => &mut t.text,
                "dim" => &mut t.dim,
                "title" => &mut t.title,
                "border" => &mut t.border,
                "focus" => &mut t.focus,
                "accent" => &mut t.accent,
                "selection_fg" => &mut t.selection_fg,
                "selection_bg" => &mut t.selection_bg,
                "good" => &mut t.good,
                "warn" => &mut t.warn,
                "bad" => &mut t.bad,
                "bar" => &mut t.bar,
                "bar_elected" => &mut t.bar_elected,
                "gauge" => &mut t.gauge,
                "override" => &mut t.over,
                other => {
                    return Err(format!(
                        "{}: unknown colour role `{other}`",
                        origin.display()
                    ))
                }
            };
            *slot = c;
        }
        Ok(t)
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
    /// or `TERM=dumb`) that is mono whatever was asked for.
    pub fn select(
        spec: Option<&str>,
        support: ColorSupport,
        config_dir: Option<&Path>,
    ) -> Result<Theme, String> {
        if support == ColorSupport::None {
            return Ok(Theme::mono());
        }
        Ok(Theme::load(spec.unwrap_or("default"), config_dir)?.downgraded(support))
    }

    pub fn text(&self) -> Style {
        Style::default().fg(self.text)
    }
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
}
