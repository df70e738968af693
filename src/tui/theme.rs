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

    /// The theme to use: NO_COLOR (set and non-empty) forces mono whatever
    /// was asked for, as <https://no-color.org> specifies.
    pub fn select(
        spec: Option<&str>,
        no_color: bool,
        config_dir: Option<&Path>,
    ) -> Result<Theme, String> {
        if no_color {
            return Ok(Theme::mono());
        }
        Theme::load(spec.unwrap_or("default"), config_dir)
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
        assert_eq!(
            Theme::select(Some("default"), true, None).unwrap(),
            Theme::mono()
        );
        assert!(Theme::select(Some("no-such-theme"), false, None).is_err());
    }
}
