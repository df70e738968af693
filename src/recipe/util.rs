//! Pieces both recipe formats share: parameter values, paths, dtype names,
//! did-you-mean suggestions, and the loader's problem list.

use super::node::{Kind, Node};
use super::Value;
use crate::model::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

/// What a loader collects: problems with their lines, and the line of every
/// recipe location it saw (keyed like `models[1].parameters.density`), so
/// that problems found later by `check` can be placed too.
#[derive(Default)]
pub(crate) struct Diag {
    pub problems: Vec<(usize, String)>,
    pub lines: HashMap<String, usize>,
}

impl Diag {
    pub fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.problems.push((line, msg.into()));
    }
    pub fn mark(&mut self, path: &str, line: usize) {
        self.lines.entry(path.to_string()).or_insert(line);
    }
    /// The line of `path`, or of its nearest enclosing location that has
    /// one (`models[1].parameters.weight` → `models[1].parameters` → ...).
    pub fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 0,
            }
        }
    }
}

/// Levenshtein distance (small strings: recipe keys and method names).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a typo
/// (distance at most a third of the word, and at least 1 allowed; a word
/// that is a prefix of a candidate counts too).
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= limit || (word.len() >= 3 && c.starts_with(word)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `unknown key `x``, with a did-you-mean and the list of valid keys.
pub(crate) fn unknown_key_msg(what: &str, key: &str, valid: &[&str]) -> String {
    // "key in [[models]]" reads "unknown key `x` in [[models]]".
    let mut msg = match what.split_once(" in ") {
        Some((noun, place)) => format!("unknown {noun} `{key}` in {place}"),
        None => format!("unknown {what} `{key}`"),
    };
    if let Some(s) = suggest(key, valid.iter().copied()) {
        msg.push_str(&format!(": did you mean `{s}`?"));
    }
    if !valid.is_empty() {
        msg.push_str(&format!(" (expected one of: {})", valid.join(", ")));
    } else {
        msg.push_str(" (this method takes no parameters here)");
    }
    msg
}

/// Read one parameter value: a boolean, a number, a list of numbers (a
/// gradient), a `{filter, value}` table, or a list of those.
pub(crate) fn parse_value(node: &Node, name: &str, diag: &mut Diag) -> Option<Value> {
    match &node.kind {
        Kind::Bool(b) => Some(Value::Bool(*b)),
        Kind::Int(_) | Kind::Float(_) => node.as_f64().map(Value::Number),
        Kind::Map(_) => parse_conditional(node, name, diag).map(|e| Value::Filtered(vec![e])),
        Kind::List(items) if items.is_empty() => {
            diag.err(node.line, format!("`{name}`: empty list"));
            None
        }
        Kind::List(items) if items.iter().all(|i| i.as_f64().is_some()) => Some(Value::Gradient(
            items.iter().filter_map(Node::as_f64).collect(),
        )),
        Kind::List(items) if items.iter().all(|i| matches!(i.kind, Kind::Map(_))) => {
            let entries: Vec<_> = items
                .iter()
                .filter_map(|i| parse_conditional(i, name, diag))
                .collect();
            (entries.len() == items.len()).then_some(Value::Filtered(entries))
        }
        _ => {
            diag.err(
                node.line,
                format!(
                    "`{name}`: expected a number, a boolean, a list of numbers (a gradient) or a list of {{filter, value}} tables, found {}",
                    node.type_name()
                ),
            );
            None
        }
    }
}

fn parse_conditional(node: &Node, name: &str, diag: &mut Diag) -> Option<(Option<String>, Value)> {
    let Kind::Map(entries) = &node.kind else {
        return None;
    };
    let mut filter = None;
    let mut value = None;
    let mut ok = true;
    for (k, line, v) in entries {
        match k.as_str() {
            "filter" => match v.as_str() {
                // mergekit treats `*` as "match everything".
                Some("*") => filter = None,
                Some(s) => filter = Some(s.to_string()),
                None => {
                    diag.err(*line, format!("`{name}`: `filter` must be a string"));
                    ok = false;
                }
            },
            "value" => match &v.kind {
                Kind::Map(_) => {
                    diag.err(
                        *line,
                        format!("`{name}`: a filtered `value` cannot itself be filtered"),
                    );
                    ok = false;
                }
                Kind::List(items) if items.iter().any(|i| i.as_f64().is_none()) => {
                    diag.err(
                        *line,
                        format!("`{name}`: a filtered `value` list must hold numbers"),
                    );
                    ok = false;
                }
                _ => value = parse_value(v, name, diag),
            },
            other => {
                diag.err(
                    *line,
                    unknown_key_msg(
                        &format!("key in a `{name}` entry"),
                        other,
                        &["filter", "value"],
                    ),
                );
                ok = false;
            }
        }
    }
    if value.is_none() && ok {
        diag.err(
            node.line,
            format!("`{name}`: a filtered entry needs a `value`"),
        );
    }
    if ok {
        value.map(|v| (filter, v))
    } else {
        None
    }
}

/// Read a table of parameters, marking each one's line under `at`.
pub(crate) fn parse_params(node: &Node, at: &str, diag: &mut Diag) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    diag.mark(at, node.line);
    match &node.kind {
        Kind::Map(entries) => {
            for (k, line, v) in entries {
                diag.mark(&format!("{at}.{k}"), *line);
                if let Some(val) = parse_value(v, k, diag) {
                    out.insert(k.clone(), val);
                }
            }
        }
        Kind::Null => {}
        _ => diag.err(
            node.line,
            format!(
                "`{at}` must be a table of parameters, found {}",
                node.type_name()
            ),
        ),
    }
    out
}

/// Lexically clean a path: drop `.`, fold `..` into the previous component.
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_normal {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A path written in a recipe in folder `dir`, as the program sees it.
///
/// `model+adapter` (a LoRA, mergekit's syntax) resolves each half on its
/// own and keeps the `+` between them, unless the whole text names an
/// existing path (a folder may have a `+` in its name).
///
/// A relative path that does not exist in `dir` and reads as a hub name
/// (`org/name[@revision]`) stays that name, as written: the model comes
/// from the Hugging Face cache ([`crate::model::source::hub_name_in`]). A
/// folder of that name beside the recipe wins, as in mergekit, and so
/// does a folder `org` there (a missing model in a local folder).
pub(crate) fn resolve_path(dir: &Path, written: &str) -> PathBuf {
    if let Some((m, a)) = crate::model::lora::split_reference(written) {
        if !resolve_one(dir, written).exists() {
            return crate::model::lora::join_reference(&resolve_one(dir, m), &resolve_one(dir, a));
        }
    }
    resolve_one(dir, written)
}

/// One model reference (no `+adapter`) written in a recipe in folder `dir`.
fn resolve_one(dir: &Path, written: &str) -> PathBuf {
    let p = Path::new(written);
    if p.is_absolute() {
        clean(p)
    } else {
        let local = clean(&dir.join(p));
        if crate::model::source::hub_name_in(Some(dir), written).is_some() {
            PathBuf::from(written)
        } else if local.is_relative()
            && crate::model::source::hub_name_in(None, &local.to_string_lossy()).is_some()
        {
            // Written as a path (`../gone/base` from `out/`), cleaned into
            // what reads as `org/name`: `./` keeps it the (missing) path
            // it is, so that it is reported missing, not looked up on the
            // hub.
            Path::new(".").join(local)
        } else {
            local
        }
    }
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        clean(p)
    } else {
        match std::env::current_dir() {
            Ok(cwd) => clean(&cwd.join(p)),
            Err(_) => clean(p),
        }
    }
}

/// `path` written relative to folder `dir` (for saving a recipe there).
/// Falls back to the absolute path when the two share no root (Windows
/// drives). A missing path whose relative form reads as a hub name is
/// written `./org/name`, so that it reads back as the same path.
///
/// A hub name ([`crate::model::source::hub_name`]) is written as it is.
pub(crate) fn relative_to(path: &Path, dir: &Path) -> String {
    // `model+adapter`: each half relative on its own, the `+` kept.
    if !path.exists() {
        if let Some((m, a)) = crate::model::lora::split_reference(&path.to_string_lossy()) {
            return format!(
                "{}+{}",
                relative_one(Path::new(m), dir),
                relative_one(Path::new(a), dir)
            );
        }
    }
    relative_one(path, dir)
}

/// [`relative_to`] of one path (no `+adapter`).
fn relative_one(path: &Path, dir: &Path) -> String {
    if let Some(name) = crate::model::source::hub_name(path) {
        return name.to_string();
    }
    let p = absolute(path);
    let d = absolute(dir);
    let pc: Vec<_> = p.components().collect();
    let dc: Vec<_> = d.components().collect();
    let common = pc.iter().zip(&dc).take_while(|(a, b)| a == b).count();
    // Nothing but the root in common (or relative to the root itself):
    // the absolute path says it best.
    if common == 0 || dc.len() <= 1 {
        return slash(&p);
    }
    let mut rel = PathBuf::new();
    for _ in common..dc.len() {
        rel.push("..");
    }
    for c in &pc[common..] {
        rel.push(c.as_os_str());
    }
    if rel.as_os_str().is_empty() {
        return ".".to_string();
    }
    let written = slash(&rel);
    // A local path that is not there (yet) and reads as a hub name would
    // come back as a hub name: `./` keeps it a path.
    if p.symlink_metadata().is_err()
        && crate::model::source::hub_name_in(Some(&d), &written).is_some()
    {
        return format!("./{written}");
    }
    written
}

/// Forward slashes in recipes on every platform, so they travel.
fn slash(p: &Path) -> String {
    let s = p.to_string_lossy().to_string();
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s
    }
}

/// Output dtype names: torch's (what mergekit writes) plus short aliases.
pub(crate) const DTYPE_NAMES: &[(&str, Dtype)] = &[
    ("float32", Dtype::F32),
    ("bfloat16", Dtype::BF16),
    ("float16", Dtype::F16),
    ("float64", Dtype::F64),
    ("fp32", Dtype::F32),
    ("f32", Dtype::F32),
    ("bf16", Dtype::BF16),
    ("fp16", Dtype::F16),
    ("f16", Dtype::F16),
    ("half", Dtype::F16),
    ("float", Dtype::F32),
    ("fp64", Dtype::F64),
    ("f64", Dtype::F64),
    ("double", Dtype::F64),
];

/// A recipe's dtype name (`bfloat16`, `torch.float16`, ...) as a dtype.
pub fn parse_dtype(s: &str) -> Result<Dtype, String> {
    let lower = s.to_ascii_lowercase();
    let lower = lower.strip_prefix("torch.").unwrap_or(&lower);
    DTYPE_NAMES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, d)| *d)
        .ok_or_else(|| {
            let names: Vec<&str> = DTYPE_NAMES[..4].iter().map(|(n, _)| *n).collect();
            let mut msg = format!("unknown dtype `{s}`");
            if let Some(g) = suggest(lower, DTYPE_NAMES.iter().map(|(n, _)| *n)) {
                msg.push_str(&format!(": did you mean `{g}`?"));
            }
            msg.push_str(&format!(" (expected one of: {})", names.join(", ")));
            msg
        })
}

/// The name written for an output dtype (torch's, as mergekit expects).
/// The name a recipe gives a dtype (`bfloat16`).
pub fn dtype_name(d: Dtype) -> Option<&'static str> {
    DTYPE_NAMES[..4]
        .iter()
        .find(|(_, x)| *x == d)
        .map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("tiez", "ties"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(suggest("densty", ["weight", "density"]), Some("density"));
        assert_eq!(suggest("zzzzzz", ["weight", "density"]), None);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_to(Path::new("/a/models/x"), Path::new("/a/recipes")),
            "../models/x"
        );
        assert_eq!(
            relative_to(Path::new("/a/recipes/x"), Path::new("/a/recipes")),
            "x"
        );
        assert_eq!(
            resolve_path(Path::new("/a/recipes"), "../models/x"),
            PathBuf::from("/a/models/x")
        );
        assert_eq!(clean(Path::new("../x/./y/../z")), PathBuf::from("../x/z"));
    }
}
