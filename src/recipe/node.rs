//! A small format-neutral document tree with line numbers.
//!
//! Both recipe formats are read into [`Node`]s first, so one interpreter per
//! format can report every problem at the line it comes from. TOML lines come
//! from `toml_edit`'s spans. YAML lines come from a forward scan of the text
//! in document order (serde_yaml_ng keeps no spans): see [`YamlLines`].

/// A parsed value and the (1-based) line it starts on; 0 when unknown.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Entries in document order: key, the key's line, value.
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::List(_) => "a list",
            Kind::Map(_) => "a table",
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(x) => Some(x),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Byte offset → 1-based line.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }
    pub fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

// ---------------------------------------------------------------- TOML

/// Parse TOML text; on a syntax error, the line and message.
pub(crate) fn parse_toml(text: &str) -> Result<Node, (usize, String)> {
    let lines = LineIndex::new(text);
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let line = e.span().map_or(0, |s| lines.line(s.start));
        (line, e.message().trim().to_string())
    })?;
    Ok(toml_item(doc.as_item(), &lines, 1))
}

fn span_line(span: Option<std::ops::Range<usize>>, lines: &LineIndex, fallback: usize) -> usize {
    span.map_or(fallback, |s| lines.line(s.start))
}

fn toml_table(t: &dyn toml_edit::TableLike, lines: &LineIndex, line: usize) -> Node {
    let mut entries = Vec::new();
    for (k, item) in t.iter() {
        let kline = t
            .key(k)
            .and_then(|key| key.span())
            .map_or(line, |s| lines.line(s.start));
        let value = toml_item(item, lines, kline);
        entries.push((k.to_string(), kline, value));
    }
    Node {
        line,
        kind: Kind::Map(entries),
    }
}

fn toml_item(item: &toml_edit::Item, lines: &LineIndex, fallback: usize) -> Node {
    let line = span_line(item.span(), lines, fallback);
    match item {
        toml_edit::Item::None => Node {
            line,
            kind: Kind::Null,
        },
        toml_edit::Item::Value(v) => toml_value(v, lines, line),
        toml_edit::Item::Table(t) => toml_table(t, lines, span_line(t.span(), lines, fallback)),
        toml_edit::Item::ArrayOfTables(a) => Node {
            line,
            kind: Kind::List(
                a.iter()
                    .map(|t| toml_table(t, lines, span_line(t.span(), lines, line)))
                    .collect(),
            ),
        },
    }
}

fn toml_value(v: &toml_edit::Value, lines: &LineIndex, fallback: usize) -> Node {
    use toml_edit::Value as V;
    let line = span_line(v.span(), lines, fallback);
    let kind = match v {
        V::String(s) => Kind::Str(s.value().clone()),
        V::Integer(i) => Kind::Int(*i.value()),
        V::Float(f) => Kind::Float(*f.value()),
        V::Boolean(b) => Kind::Bool(*b.value()),
        V::Datetime(d) => Kind::Str(d.value().to_string()),
        V::Array(a) => Kind::List(a.iter().map(|x| toml_value(x, lines, line)).collect()),
        V::InlineTable(t) => return toml_table(t, lines, line),
    };
    Node { line, kind }
}

// ---------------------------------------------------------------- YAML

/// The deepest nesting a YAML recipe may have. A mergekit recipe nests a
/// handful of levels (slices, sources, parameters, a gradient list); the
/// YAML parser's time grows much faster than the text with deep flow
/// nesting (`[[[[...]]]]` 100,000 levels deep took 26 s), so deeper text
/// is refused before it is parsed.
pub(crate) const MAX_YAML_DEPTH: usize = 64;

/// The first line where `text` nests deeper than [`MAX_YAML_DEPTH`], in one
/// pass over the text. The depth is counted generously: two levels per
/// indentation level (a mapping and a sequence may share one), one per
/// `- `/`? ` starting a line's content, one per open `[`/`{`. Quoted
/// strings, comments and block scalars (`|`, `>`) are skipped, so brackets
/// inside them do not count.
fn yaml_too_deep(text: &str) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    // Indentation of the line that opened a block scalar: more indented
    // (or blank) lines after it are its text.
    let mut block_scalar: Option<usize> = None;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let indent = line.iter().take_while(|&&c| c == b' ').count();
        let body = &line[indent..];
        let blank = body.iter().all(|c| c.is_ascii_whitespace());
        if let Some(open) = block_scalar {
            if blank || indent > open {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 {
            if blank || body[0] == b'#' {
                continue;
            }
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        let base = 2 * indents.len();
        // Indicators (`- `, `? `) before any other content on the line.
        let mut leading = 0usize;
        let mut content = false;
        // Inside a plain (unquoted) scalar, where brackets and quotes are
        // text.
        let mut plain = false;
        // The last structural byte (`\n`: the line's start): what may
        // precede a flow collection, a quoted string or a plain scalar.
        let mut prev = b'\n';
        let mut end = body.len();
        let mut j = 0;
        while j < body.len() {
            let c = body[j];
            let next_blank = body.get(j + 1).is_none_or(|n| *n == b' ' || *n == b'\t');
            let after_blank = j == 0 || matches!(body[j - 1], b' ' | b'\t');
            match quote {
                Some(b'"') => {
                    if escaped {
                        escaped = false;
                    } else if c == b'\\' {
                        escaped = true;
                    } else if c == b'"' {
                        quote = None;
                        prev = c;
                    }
                }
                Some(_) => {
                    if c == b'\'' {
                        if body.get(j + 1) == Some(&b'\'') {
                            j += 1;
                        } else {
                            quote = None;
                            prev = c;
                        }
                    }
                }
                None => {
                    if c == b'#' && after_blank {
                        end = j;
                        break;
                    }
                    let plain_ends =
                        (c == b':' && next_blank) || (flow > 0 && matches!(c, b',' | b']' | b'}'));
                    if plain && !plain_ends {
                        j += 1;
                        continue;
                    }
                    plain = false;
                    let starts_value =
                        matches!(prev, b'\n' | b'[' | b'{' | b',' | b':' | b'-' | b'?');
                    match c {
                        b' ' | b'\t' => {}
                        b'-' | b'?' if !content && flow == 0 && next_blank => {
                            leading += 1;
                            prev = c;
                        }
                        b'"' | b'\'' if starts_value => quote = Some(c),
                        b'[' | b'{' if starts_value => {
                            flow += 1;
                            if base + leading + flow > MAX_YAML_DEPTH {
                                return Some(i + 1);
                            }
                            prev = c;
                        }
                        b']' | b'}' if flow > 0 => {
                            flow -= 1;
                            prev = c;
                        }
                        b',' | b':' => prev = c,
                        _ => plain = true,
                    }
                    if !matches!(c, b' ' | b'\t') && prev != b'-' && prev != b'?' {
                        content = true;
                    }
                }
            }
            j += 1;
        }
        if base + leading > MAX_YAML_DEPTH {
            return Some(i + 1);
        }
        if quote.is_none() && flow == 0 {
            let code = String::from_utf8_lossy(&body[..end]);
            let mut words = code.split_whitespace();
            if let Some(last) = words.next_back() {
                let rest = last.trim_start_matches(['|', '>']);
                let indicator = rest.len() + 1 == last.len()
                    && rest.bytes().all(|b| matches!(b, b'-' | b'+' | b'0'..=b'9'));
                if indicator {
                    block_scalar = Some(indent);
                }
            }
        }
    }
    None
}

/// Parse YAML text; on a syntax error, the line and message.
pub(crate) fn parse_yaml(text: &str) -> Result<Node, (usize, String)> {
    if let Some(line) = yaml_too_deep(text) {
        return Err((
            line,
            format!(
                "nested more than {MAX_YAML_DEPTH} levels deep; a recipe needs only a few \
                 (not parsed further)"
            ),
        ));
    }
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        let msg = e.to_string();
        // The library appends " at line L column C"; the line is reported
        // separately, so keep only the message.
        let msg = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        (line, msg)
    })?;
    let mut scan = YamlLines::new(text);
    Ok(scan.node(&value, 1))
}

/// Finds the lines of YAML mapping keys by walking the parsed value in
/// document order while moving a cursor forward through the text: each key
/// is searched for after the previous one, as a whole token followed by `:`,
/// with comments masked out. serde_yaml_ng keeps mapping order, so the walk
/// visits keys in the order they are written, and a key cannot be confused
/// with an earlier occurrence of the same word. Anchors and merge keys
/// (`<<`) may put a later key before the cursor; then the line of the
/// nearest previous key is used.
pub(crate) struct YamlLines {
    /// The text with comments blanked (same byte offsets as the original).
    masked: String,
    lines: LineIndex,
    cursor: usize,
}

impl YamlLines {
    fn new(text: &str) -> YamlLines {
        YamlLines {
            masked: mask_comments(text),
            lines: LineIndex::new(text),
            cursor: 0,
        }
    }

    fn find_key(&mut self, key: &str) -> Option<usize> {
        let hay = &self.masked;
        let mut from = self.cursor;
        while let Some(rel) = hay.get(from..).and_then(|h| h.find(key)) {
            let at = from + rel;
            let end = at + key.len();
            let before_ok = at == 0
                || hay[..at].chars().next_back().is_some_and(|c| {
                    c.is_whitespace() || matches!(c, '{' | ',' | '"' | '\'' | '-' | '?')
                });
            let rest = &hay[end..];
            let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
            let after_ok = rest.trim_start_matches([' ', '\t']).starts_with(':');
            if before_ok && after_ok {
                self.cursor = end;
                return Some(self.lines.line(at));
            }
            from = end;
        }
        None
    }

    fn node(&mut self, v: &serde_yaml_ng::Value, line: usize) -> Node {
        use serde_yaml_ng::Value as V;
        let kind = match v {
            V::Null => Kind::Null,
            V::Bool(b) => Kind::Bool(*b),
            V::Number(n) => match n.as_i64() {
                Some(i) => Kind::Int(i),
                None => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            V::String(s) => Kind::Str(s.clone()),
            V::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    // A mapping item starts on the line of its first key.
                    let item_line = match item {
                        V::Mapping(m) => m
                            .keys()
                            .next()
                            .and_then(|k| {
                                let save = self.cursor;
                                let found = self.find_key(&key_text(k));
                                self.cursor = save;
                                found
                            })
                            .unwrap_or(line),
                        _ => line,
                    };
                    out.push(self.node(item, item_line));
                }
                Kind::List(out)
            }
            V::Mapping(m) => {
                let mut entries = Vec::with_capacity(m.len());
                let mut last = line;
                for (k, val) in m {
                    let key = key_text(k);
                    let kline = self.find_key(&key).unwrap_or(last);
                    last = kline;
                    entries.push((key, kline, self.node(val, kline)));
                }
                return Node {
                    line,
                    kind: Kind::Map(entries),
                };
            }
            V::Tagged(t) => return self.node(&t.value, line),
        };
        Node { line, kind }
    }
}

fn key_text(k: &serde_yaml_ng::Value) -> String {
    match k {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Null => "null".to_string(),
        other => format!("{other:?}"),
    }
}

/// Blank out `#` comments (a `#` at the start of a line or after
/// whitespace, outside quotes), keeping byte offsets.
fn mask_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut quote: Option<char> = None;
        let mut prev_ws = true;
        let mut cut = None;
        for (i, c) in line.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '#' && prev_ws => {
                    cut = Some(i);
                    break;
                }
                None => {}
            }
            prev_ws = c.is_whitespace();
        }
        match cut {
            Some(i) => {
                out.push_str(&line[..i]);
                for c in line[i..].chars() {
                    if c == '\n' {
                        out.push('\n');
                    } else {
                        out.extend(std::iter::repeat_n(' ', c.len_utf8()));
                    }
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.kind {
            Kind::Map(e) => e
                .iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, _, v)| v)
                .unwrap_or_else(|| panic!("no {key}")),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn yaml_key_lines_follow_document_order() {
        let text = "# weight: in a comment\nmodels:\n  - model: a\n    parameters: {weight: 1}\n  - {model: b, parameters: {weight: 2}}\nparameters:\n  weight: 3\n";
        let n = parse_yaml(text).unwrap();
        let models = find(&n, "models");
        let Kind::List(items) = &models.kind else {
            panic!()
        };
        assert_eq!(items[0].line, 3);
        assert_eq!(find(find(&items[0], "parameters"), "weight").line, 4);
        assert_eq!(items[1].line, 5);
        assert_eq!(find(find(&items[1], "parameters"), "weight").line, 5);
        let Kind::Map(e) = &find(&n, "parameters").kind else {
            panic!()
        };
        assert_eq!(e[0].1, 7);
    }

    /// Deep nesting in any YAML form is refused quickly at the line where
    /// it passes the limit; recipes just under it, and brackets inside
    /// strings, comments and block scalars, are not.
    #[test]
    fn yaml_nesting_limit() {
        let n = 100_000;
        let flow = format!(
            "merge_method: linear\nmodels: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        );
        let seqs = format!("merge_method: linear\nmodels:\n{}x\n", "- ".repeat(n));
        let maps: String = (0..1000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        let maps = format!("merge_method: linear\nmodels:\n{maps}");
        // Line 3 + k is at the (k + 1)th indentation level: two levels each.
        let deepest_map = 3 + MAX_YAML_DEPTH / 2;
        for (text, line) in [(&flow, 2), (&seqs, 3), (&maps, deepest_map)] {
            let (at, msg) = parse_yaml(text).expect_err("refused");
            assert_eq!(at, line, "{msg}");
            assert!(msg.contains("nested more than 64 levels"), "{msg}");
        }
        // Just under the limit: parsed (the flow list sits at depth 2
        // already: the root mapping's one indentation level).
        let ok = format!(
            "a: {}{}\n",
            "[".repeat(MAX_YAML_DEPTH - 2),
            "]".repeat(MAX_YAML_DEPTH - 2)
        );
        assert!(parse_yaml(&ok).is_ok());
        let over = format!(
            "a: {}{}\n",
            "[".repeat(MAX_YAML_DEPTH - 1),
            "]".repeat(MAX_YAML_DEPTH - 1)
        );
        assert!(parse_yaml(&over).is_err());
        // Brackets that open nothing.
        let deep = "[".repeat(200);
        let quiet = format!(
            "a: '{deep}'\nb: \"{deep}\"\nc: x{deep}\n# {deep}\nd: |\n  {deep}\n  {deep}\ne: 1 # {deep}\n"
        );
        let n = parse_yaml(&quiet).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(find(&n, "e").as_f64(), Some(1.0));
        assert!(find(&n, "d").as_str().is_some_and(|s| s.starts_with(&deep)));
    }

    #[test]
    fn toml_key_lines() {
        let text =
            "method = \"ties\"\n\n[[models]]\npath = \"a\"\n[models.parameters]\nweight = 1\n";
        let n = parse_toml(text).unwrap();
        let Kind::Map(e) = &n.kind else { panic!() };
        assert_eq!(e[0].1, 1);
        let Kind::List(items) = &find(&n, "models").kind else {
            panic!()
        };
        let Kind::Map(me) = &items[0].kind else {
            panic!()
        };
        let p = me.iter().find(|x| x.0 == "parameters").unwrap();
        let Kind::Map(pe) = &p.2.kind else { panic!() };
        assert_eq!(pe[0].1, 6);
        assert_eq!(me[0].1, 4);
    }
}
