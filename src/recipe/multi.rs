//! Multi-document mergekit files, as `mergekit-multi` reads them: several
//! YAML documents (`---`-separated), each a recipe with a `name`, where a
//! later merge names an earlier one's output where a model goes.
//!
//! The rules, as read from mergekit 0.1.5 (`scripts/multimerge.py`):
//! - a document's `name` names its output; at most one document may have
//!   none, and that one is the final merge (mergekit writes it to
//!   `--out-path`, the named ones into `--intermediate-dir/NAME`);
//! - a model reference (`base_model`, `models[].model`,
//!   `slices[].sources[].model`, `slices[].base_model`, the tokenizer's
//!   sources) whose path is a document's name means that document's output,
//!   whatever folder of that name exists; `NAME+adapter` keeps the adapter;
//! - merges run in dependency order, whatever the order of the documents;
//!   a cycle and a repeated name are errors.
//!
//! smelt adds: a name must be usable as a folder name (no `/`, not `.` or
//! `..`); a reference that is a bare word, not an existing path and not a
//! document's name is an error (mergekit would fail later, loading it);
//! every error names the line. Which document is the final one, and where
//! the intermediates go, is the caller's (see [`MultiRecipe::final_document`]
//! and `engine::multi`).

use super::node::{self, Kind, Node};
use super::util::resolve_path;
use super::{Recipe, RecipeError};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One document of a multi-document file.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Its `name`; `None` for the (one) unnamed final merge.
    pub name: Option<String>,
    /// The 1-based line of its first line of content (not blank, not a
    /// comment).
    pub line: usize,
    /// The line of its `name` key (its first line when unnamed).
    pub name_line: usize,
    /// The recipe as written: a reference to document `N` is the path
    /// `N` resolved against the file's folder, as for any model; see
    /// [`MultiRecipe::recipe_for`] for the recipe to run.
    pub recipe: Recipe,
    /// The documents whose outputs it reads (indices, ascending).
    pub needs: Vec<usize>,
    /// Byte range of its text in the file (without the `---` line).
    range: Range<usize>,
    /// The line `range` starts on.
    start_line: usize,
}

/// A multi-document recipe file (two or more documents).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiRecipe {
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// The documents, in file order.
    pub documents: Vec<Document>,
}

/// The documents of a YAML text: for each, its first line (1-based) and
/// its byte range, without the `---` / `...` marker lines; empty documents
/// (only blank lines and comments) are left out.
///
/// Hand-written rather than serde_yaml_ng's multi-document reader because
/// that one gives no text or lines per document, and both are needed (lines
/// for errors, text for writing one document back unchanged). The rule is
/// YAML's own: a line starting with `---` or `...` followed by a blank or
/// the end of the line is a document marker, even inside a block or quoted
/// scalar (YAML 1.2 forbids such lines there). Text after `---` on the
/// marker line (`--- # note`) belongs to the document that follows.
pub fn split_documents(text: &str) -> Vec<(usize, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut pos = 0usize;
    let push = |range: Range<usize>, line: usize, out: &mut Vec<(usize, Range<usize>)>| {
        let body = &text[range.clone()];
        let empty = body.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        });
        if !empty {
            out.push((line, range));
        }
    };
    for (line_no, l) in (1usize..).zip(text.split_inclusive('\n')) {
        let marker = |m: &str| {
            l.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        };
        if marker("---") || marker("...") {
            push(start..pos, start_line, &mut out);
            // `--- rest`: the rest of the line starts the next document.
            start = if marker("---") {
                pos + 3
            } else {
                pos + l.len()
            };
            start_line = if marker("---") { line_no } else { line_no + 1 };
        }
        pos += l.len();
    }
    push(start..text.len(), start_line, &mut out);
    out
}

/// Whether a recipe text is a multi-document YAML file (two or more
/// non-empty documents).
pub fn is_multi(text: &str) -> bool {
    split_documents(text).len() > 1
}

/// The text of the document at `range` starting at `line`, preceded by
/// blank lines so that a parser's line numbers are the file's.
fn padded(text: &str, line: usize, range: &Range<usize>) -> String {
    let mut s = "\n".repeat(line.saturating_sub(1));
    let body = &text[range.clone()];
    // A body starting right after `---` on the marker line keeps its place.
    if text[..range.start].ends_with("---") {
        s.push_str("   ");
    }
    s.push_str(body);
    s
}

/// Where a model goes in a mergekit document: every string there, with its
/// line and where it is (for messages).
fn references(root: &Node) -> Vec<(String, usize, String)> {
    fn map(n: &Node) -> &[(String, usize, Node)] {
        match &n.kind {
            Kind::Map(m) => m,
            _ => &[],
        }
    }
    fn list(n: &Node) -> &[Node] {
        match &n.kind {
            Kind::List(l) => l,
            _ => &[],
        }
    }
    fn model_string(n: &Node) -> Option<(String, usize)> {
        match &n.kind {
            Kind::Str(s) => Some((s.clone(), n.line)),
            // `model: {model: ..., ...}` forms: the path inside.
            Kind::Map(m) => m
                .iter()
                .find(|(k, _, _)| k == "model" || k == "path")
                .and_then(|(_, _, v)| model_string(v)),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let mut add = |n: &Node, at: String| {
        if let Some((s, line)) = model_string(n) {
            // mergekit's `model:PATH` tokenizer form names PATH.
            let s = s.strip_prefix("model:").map_or(s.clone(), str::to_string);
            out.push((s, line, at));
        }
    };
    for (k, _, v) in map(root) {
        match k.as_str() {
            "base_model" => add(v, "base_model".into()),
            "tokenizer_source" => add(v, "tokenizer_source".into()),
            "models" => {
                for (j, m) in list(v).iter().enumerate() {
                    for (k2, _, v2) in map(m) {
                        if k2 == "model" {
                            add(v2, format!("models[{j}].model"));
                        }
                    }
                }
            }
            "slices" => {
                for (i, s) in list(v).iter().enumerate() {
                    for (k2, _, v2) in map(s) {
                        match k2.as_str() {
                            "base_model" => add(v2, format!("slices[{i}].base_model")),
                            "sources" => {
                                for (j, src) in list(v2).iter().enumerate() {
                                    for (k3, _, v3) in map(src) {
                                        if k3 == "model" {
                                            add(v3, format!("slices[{i}].sources[{j}].model"));
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            "tokenizer" => {
                for (k2, _, v2) in map(v) {
                    match k2.as_str() {
                        "source" => add(v2, "tokenizer.source".into()),
                        "tokens" => {
                            for (tok, _, spec) in map(v2) {
                                // `source: PATH` or `source: {kind, model, token}`.
                                let src = map(spec).iter().find(|(k, _, _)| k == "source");
                                if let Some((_, _, s)) = src {
                                    add(s, format!("tokenizer.tokens.{tok}.source"));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Why a name cannot be a document's name (it becomes a folder's name).
fn bad_name(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is not a folder name")
    } else if name.contains(['/', '\\']) {
        Some("has a path separator (a name becomes a folder's name)")
    } else if name.contains('+') {
        Some("has `+`, which separates a model from its adapter")
    } else if name.chars().any(char::is_control) {
        Some("has control characters")
    } else {
        None
    }
}

/// `r` with every model path that is a `from` of `map` (alone or as the
/// model of `MODEL+adapter`) replaced by its `to`.
fn map_models(r: &Recipe, map: &[(PathBuf, PathBuf)]) -> Recipe {
    let mut r = r.clone();
    r.each_model_path(&mut |p: &mut PathBuf| {
        for (from, to) in map {
            if p == from {
                p.clone_from(to);
                return;
            }
            if let Some((m, a)) = p.to_str().and_then(crate::model::lora::split_reference) {
                if Path::new(m) == from {
                    *p = crate::model::lora::join_reference(to, Path::new(a));
                    return;
                }
            }
        }
    });
    r
}

/// The model part of a reference (`NAME+adapter` → `NAME`).
fn model_part(reference: &str) -> &str {
    crate::model::lora::split_reference(reference).map_or(reference, |(m, _)| m)
}

impl MultiRecipe {
    /// Read `path`: `Ok(None)` when it is not a multi-document YAML file
    /// (read it with [`Recipe::load`]), else every document checked, or
    /// every problem found, each with its line.
    pub fn load(path: &Path) -> Result<Option<MultiRecipe>, Vec<RecipeError>> {
        if !super::is_yaml_path(path) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![RecipeError::Io {
                path: path.to_path_buf(),
                source,
            }]
        })?;
        MultiRecipe::parse(&text, path)
    }

    /// [`MultiRecipe::load`] on text read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Option<MultiRecipe>, Vec<RecipeError>> {
        let docs = split_documents(text);
        if docs.len() < 2 || !super::is_yaml_path(path) {
            return Ok(None);
        }
        let dir = super::folder_of(path);
        let at = |line: usize, msg: String| RecipeError::At {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let mut errors: Vec<RecipeError> = Vec::new();
        let mut documents = Vec::new();
        // Per document: its references with lines (model part as written).
        let mut refs: Vec<Vec<(String, usize, String)>> = Vec::new();
        let mut unnamed: Option<usize> = None;
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (k, (start_line, range)) in docs.iter().enumerate() {
            let body = padded(text, *start_line, range);
            let skipped = text[range.clone()]
                .split('\n')
                .take_while(|l| {
                    let t = l.trim();
                    t.is_empty() || t.starts_with('#')
                })
                .count();
            let line = start_line + skipped;
            let root = match node::parse_yaml(&body) {
                Ok(r) => r,
                Err((l, msg)) => {
                    errors.push(at(l, format!("document {}: {msg}", k + 1)));
                    continue;
                }
            };
            let mut name = None;
            let mut name_line = line;
            let mut name_bad = false;
            if let Kind::Map(m) = &root.kind {
                if let Some((_, l, v)) = m.iter().find(|(key, _, _)| key == "name") {
                    name_line = *l;
                    name_bad = true;
                    match &v.kind {
                        Kind::Str(s) => match bad_name(s) {
                            Some(why) => {
                                errors.push(at(*l, format!("name `{s}` {why}")));
                            }
                            None => {
                                name = Some(s.clone());
                                name_bad = false;
                            }
                        },
                        // mergekit takes any YAML value; a name is a
                        // folder name here, so it must be written as text.
                        Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                            errors.push(at(
                                *l,
                                format!(
                                    "`name` is {}; write it as text (in quotes)",
                                    v.type_name()
                                ),
                            ));
                        }
                        _ => errors.push(at(*l, "`name` must be text".to_string())),
                    }
                }
            }
            match &name {
                Some(n) => {
                    if let Some(&first) = names.get(n) {
                        let first_line = documents.get(first).map_or(0, |d: &Document| d.name_line);
                        errors.push(at(
                            name_line,
                            format!(
                                "document name `{n}` is used already (line {first_line}); \
                                 each document needs its own name"
                            ),
                        ));
                    } else {
                        names.insert(n.clone(), documents.len());
                    }
                }
                None if !name_bad => {
                    if let Some(u) = unnamed {
                        let first: &Document = &documents[u];
                        errors.push(at(
                            line,
                            format!(
                                "document {} has no `name`; only one document (the final \
                                 merge) may be unnamed, and the one at line {} is already",
                                k + 1,
                                first.line
                            ),
                        ));
                    } else {
                        unnamed = Some(documents.len());
                    }
                }
                None => {}
            }
            match Recipe::parse_all(&body, path) {
                Ok(recipe) => {
                    refs.push(references(&root));
                    documents.push(Document {
                        name,
                        line,
                        name_line,
                        recipe,
                        needs: Vec::new(),
                        range: range.clone(),
                        start_line: *start_line,
                    });
                }
                Err(mut es) => {
                    // Still a document, for the graph's checks (its
                    // references), but no recipe.
                    errors.append(&mut es);
                    refs.push(references(&root));
                    documents.push(Document {
                        name,
                        line,
                        name_line,
                        recipe: Recipe::new(crate::merge::Method::Linear, None, Vec::new()),
                        needs: Vec::new(),
                        range: range.clone(),
                        start_line: *start_line,
                    });
                }
            }
        }
        let index: BTreeMap<&str, usize> = documents
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.name.as_deref().map(|n| (n, i)))
            .collect();
        let known = || {
            index
                .keys()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Edges, and references to nothing.
        let mut needs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); documents.len()];
        for (i, rs) in refs.iter().enumerate() {
            for (written, line, where_) in rs {
                let m = model_part(written);
                if let Some(&j) = index.get(m) {
                    needs[i].push((j, *line));
                } else if !m.contains(['/', '\\'])
                    && !m.starts_with('.')
                    && !resolve_path(dir, m).exists()
                {
                    // A bare word is a local folder or a document: a hub
                    // name always has an `org/`.
                    errors.push(at(
                        *line,
                        format!(
                            "{where_}: `{m}` is neither a document of this file ({}) nor an \
                             existing folder",
                            known()
                        ),
                    ));
                }
            }
        }
        // Cycles: depth-first, reporting each cycle once, at the line of
        // the reference that closes it.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; documents.len()];
        let label = |i: usize| match &documents[i].name {
            Some(n) => format!("`{n}`"),
            None => "the unnamed document".to_string(),
        };
        fn visit(
            i: usize,
            needs: &[Vec<(usize, usize)>],
            mark: &mut [Mark],
            stack: &mut Vec<usize>,
            found: &mut Vec<(Vec<usize>, usize)>,
        ) {
            mark[i] = Mark::Open;
            stack.push(i);
            for &(j, line) in &needs[i] {
                match mark[j] {
                    Mark::New => visit(j, needs, mark, stack, found),
                    Mark::Open => {
                        let from = stack.iter().position(|&s| s == j).unwrap_or(0);
                        let mut cycle = stack[from..].to_vec();
                        cycle.push(j);
                        found.push((cycle, line));
                    }
                    Mark::Done => {}
                }
            }
            stack.pop();
            mark[i] = Mark::Done;
        }
        let mut found = Vec::new();
        for i in 0..documents.len() {
            if mark[i] == Mark::New {
                visit(i, &needs, &mut mark, &mut Vec::new(), &mut found);
            }
        }
        for (cycle, line) in found {
            let msg = if cycle.len() == 2 {
                format!("document {} reads its own output", label(cycle[0]))
            } else {
                format!(
                    "documents depend on each other in a cycle: {}",
                    cycle
                        .iter()
                        .map(|&i| label(i))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                )
            };
            errors.push(at(line, msg));
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| match e {
                RecipeError::At { line, .. } => *line,
                _ => 0,
            });
            return Err(errors);
        }
        for (d, n) in documents.iter_mut().zip(needs) {
            let mut v: Vec<usize> = n.into_iter().map(|(j, _)| j).collect();
            v.sort_unstable();
            v.dedup();
            d.needs = v;
        }
        Ok(Some(MultiRecipe {
            path: path.to_path_buf(),
            text: text.to_string(),
            documents,
        }))
    }

    /// How a document is called in messages and progress: its name, or
    /// `final merge` (mergekit's word) for the unnamed one.
    pub fn label(&self, i: usize) -> &str {
        self.documents[i].name.as_deref().unwrap_or("final merge")
    }

    /// Documents `docs` by their labels, quoted: `` `a`, `b` ``.
    pub fn quoted_labels(&self, docs: &[usize]) -> String {
        docs.iter()
            .map(|&j| format!("`{}`", self.label(j)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The index of the document named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.documents
            .iter()
            .position(|d| d.name.as_deref() == Some(name))
    }

    /// The documents no other document reads, in file order.
    pub fn finals(&self) -> Vec<usize> {
        (0..self.documents.len())
            .filter(|&i| !self.documents.iter().any(|d| d.needs.contains(&i)))
            .collect()
    }

    /// The document whose output is the result: `select` when given (a
    /// name), else the one document no other reads. Several such (or an
    /// unknown name) is an error naming them.
    pub fn final_document(&self, select: Option<&str>) -> Result<usize, RecipeError> {
        let err = |msg: String| RecipeError::At {
            path: self.path.clone(),
            line: 0,
            msg,
        };
        let names = |v: &[usize]| {
            v.iter()
                .map(|&i| format!("`{}` (line {})", self.label(i), self.documents[i].line))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(s) = select {
            return self.find(s).ok_or_else(|| {
                let all: Vec<usize> = (0..self.documents.len())
                    .filter(|&i| self.documents[i].name.is_some())
                    .collect();
                err(format!(
                    "no document is named `{s}`; the names are {}",
                    names(&all)
                ))
            });
        }
        match self.finals().as_slice() {
            [one] => Ok(*one),
            many => Err(err(format!(
                "{} documents are read by no other: {}; choose the one to build with --doc NAME",
                many.len(),
                names(many)
            ))),
        }
    }

    /// Every document `target` needs (directly or not) and `target` last,
    /// in an order where each comes after the ones it reads (among those
    /// ready, the earliest in the file first): the order of a run.
    pub fn order_for(&self, target: usize) -> Vec<usize> {
        let mut wanted = vec![false; self.documents.len()];
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            if !wanted[i] {
                wanted[i] = true;
                stack.extend(self.documents[i].needs.iter().copied());
            }
        }
        self.order_of(&wanted)
    }

    /// Every document, each after the ones it reads (among those ready,
    /// the earliest in the file first).
    pub fn order_all(&self) -> Vec<usize> {
        self.order_of(&vec![true; self.documents.len()])
    }

    /// The `wanted` documents in run order.
    fn order_of(&self, wanted: &[bool]) -> Vec<usize> {
        let mut done = vec![false; self.documents.len()];
        let mut out = Vec::new();
        // The graph is acyclic (checked when read): each pass adds one.
        while out.len() < wanted.iter().filter(|&&w| w).count() {
            let next = (0..self.documents.len()).find(|&i| {
                wanted[i] && !done[i] && self.documents[i].needs.iter().all(|&j| done[j])
            });
            match next {
                Some(i) => {
                    done[i] = true;
                    out.push(i);
                }
                None => break,
            }
        }
        out
    }

    /// Where document `i`'s output goes when it is an intermediate of a
    /// run with working folder `work`: `work/NAME` (mergekit-multi's
    /// `--intermediate-dir/NAME`).
    ///
    /// Cleaned lexically (`./chain.smelt-work/tied` is
    /// `chain.smelt-work/tied`), as a recipe's paths are when read, so
    /// that a recipe naming it compares equal to the one saved with its
    /// build.
    pub fn work_path(&self, i: usize, work: &Path) -> PathBuf {
        super::util::clean(&work.join(self.label(i)))
    }

    /// Document `i`'s recipe with each reference to a document replaced
    /// by that document's output in `work` ([`MultiRecipe::work_path`]).
    pub fn recipe_for(&self, i: usize, work: &Path) -> Recipe {
        let dir = super::folder_of(&self.path);
        let map: Vec<(PathBuf, PathBuf)> = self.documents[i]
            .needs
            .iter()
            .map(|&j| (resolve_path(dir, self.label(j)), self.work_path(j, work)))
            .collect();
        map_models(&self.documents[i].recipe, &map)
    }

    /// The inverse of [`MultiRecipe::recipe_for`]: a recipe (document
    /// `i`'s, edited) whose references to other documents are their
    /// outputs in `work`, with those references back as the documents'
    /// names (paths resolved against the file's folder, as
    /// [`Document::recipe`] holds them).
    pub fn file_form(&self, i: usize, recipe: &Recipe, work: &Path) -> Recipe {
        let dir = super::folder_of(&self.path);
        let map: Vec<(PathBuf, PathBuf)> = (0..self.documents.len())
            .filter(|&j| j != i && self.documents[j].name.is_some())
            .map(|j| (self.work_path(j, work), resolve_path(dir, self.label(j))))
            .collect();
        map_models(recipe, &map)
    }

    /// The file's text with each document of `edits` (index, recipe as
    /// [`MultiRecipe::recipe_for`] gives it, edited) written anew as
    /// mergekit YAML, its `name` first; every other document, the
    /// separators and the comments between them are kept byte for byte.
    /// The tensor layout mergekit's YAML needs (per-layer values) is read
    /// from the edited recipe's models, the built outputs in `work` among
    /// them. The text is read back before it is returned: a document that
    /// would not load, or a graph that no longer holds, is an error.
    pub fn with_documents(
        &self,
        edits: &[(usize, Recipe)],
        work: &Path,
    ) -> Result<String, Vec<RecipeError>> {
        let dir = super::folder_of(&self.path);
        let mut parts: Vec<(usize, String)> = Vec::new();
        for (i, run_form) in edits {
            let d = &self.documents[*i];
            let file_form = self.file_form(*i, run_form, work);
            let layout = super::mergekit::layout_of(run_form).map_err(|e| vec![e])?;
            let yaml = super::mergekit::write(&file_form, dir, Some(&layout)).map_err(|e| {
                vec![RecipeError::At {
                    path: self.path.clone(),
                    line: d.line,
                    msg: format!("document `{}`: {e}", self.label(*i)),
                }]
            })?;
            let body = match &d.name {
                // The name as YAML writes a plain or quoted string.
                Some(n) => format!("name: {}\n{yaml}", super::mergekit::yaml_string(n)),
                None => yaml,
            };
            // Comments heading the document (what it is for) stay with it;
            // those inside it go with the YAML written anew.
            let (head, _) = split_heading(self.text.get(d.range.clone()).unwrap_or(""));
            parts.push((*i, format!("{head}{body}")));
        }
        let out = self.replace_documents(&parts);
        match MultiRecipe::parse(&out, &self.path)? {
            Some(m) if m.documents.len() == self.documents.len() => Ok(out),
            _ => Err(vec![RecipeError::Invalid(format!(
                "{}: the documents written would not read back as the same {} documents; nothing was written",
                self.path.display(),
                self.documents.len()
            ))]),
        }
    }

    /// Document `i`'s text alone, with blank lines before it so that line
    /// numbers in it are the file's (for [`super::locate`]).
    pub fn document_text(&self, i: usize) -> String {
        let d = &self.documents[i];
        padded(&self.text, d.start_line, &d.range)
    }

    /// The file's text with document `i` replaced by `new` (mergekit YAML
    /// of one document); every other document, the separators and any
    /// comments between them are kept as they are.
    pub fn replace_document(&self, i: usize, new: &str) -> String {
        self.replace_documents(&[(i, new.to_string())])
    }

    /// [`MultiRecipe::replace_document`] for several documents at once
    /// (index, new text), each index at most once.
    pub fn replace_documents(&self, new: &[(usize, String)]) -> String {
        let mut parts: Vec<(&Range<usize>, String)> = new
            .iter()
            .map(|(i, text)| {
                let r = &self.documents[*i].range;
                let mut body = text.clone();
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                // A document that followed `---` on the marker line starts
                // on a line of its own now (a body that starts with the
                // marker line's end, as a heading kept from the document
                // does, already is).
                if self.text[..r.start].ends_with("---") && !body.starts_with('\n') {
                    body.insert(0, '\n');
                }
                (r, body)
            })
            .collect();
        parts.sort_by_key(|(r, _)| r.start);
        let mut out = String::with_capacity(self.text.len());
        let mut pos = 0;
        for (r, body) in parts {
            out.push_str(&self.text[pos..r.start]);
            out.push_str(&body);
            pos = r.end;
        }
        out.push_str(&self.text[pos..]);
        out
    }
}

/// A document's text split after its heading: the comment and blank
/// lines it starts with (what the document is for), and the rest.
pub fn split_heading(text: &str) -> (&str, &str) {
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        let t = l.trim();
        if !(t.is_empty() || t.starts_with('#')) {
            break;
        }
        at += l.len();
    }
    text.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers_only() {
        let t = "# head\n---\na: 1\n---   # two\nb: 2\n...\n---\nc: |\n  ---x\n";
        let d = split_documents(t);
        assert_eq!(d.len(), 3);
        // Each range starts right after its `---`, on the marker's line.
        assert_eq!(&t[d[0].1.clone()], "\na: 1\n");
        assert_eq!(d[0].0, 2);
        assert_eq!(d[1].0, 4);
        assert_eq!(&t[d[1].1.clone()], "   # two\nb: 2\n");
        assert_eq!(&t[d[2].1.clone()], "\nc: |\n  ---x\n");
        assert!(!is_multi("---\na: 1\n"));
        assert!(!is_multi("a: 1\n---\n# only a comment\n"));
        assert!(is_multi("a: 1\n---\nb: 2\n"));
        // `----` and `---x` are not markers.
        assert!(!is_multi("a: 1\n----\nb: 2\n"));
    }
}
