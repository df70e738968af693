//! Writing a recipe over the TOML it was read from, keeping the user's
//! comments, key order and inline tables ([`Recipe::to_toml_preserving`]).
//!
//! The recipe is written afresh ([`super::toml::write`]) and that document
//! is merged into the original one: values that mean the same are left as
//! the user wrote them (`weight = 1` stays `1`, `./models/a` stays), values
//! that changed are replaced in place with their comments, keys and tables
//! that are gone are removed, and new ones are appended to the table they
//! belong to. Entries of `[[models]]` are matched by path, slice sources by
//! model, `[[overrides.models]]` by model index, the rest by position.

use super::util::resolve_path;
use super::Recipe;
use std::path::Path;
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// Keys whose string values are paths (compared as the files they name).
const PATH_KEYS: &[&str] = &["base", "path", "model", "calibration"];

/// Whether two values mean the same recipe value.
fn same_value(key: &str, a: &Value, b: &Value, dir: &Path) -> bool {
    let num = |v: &Value| match v {
        Value::Integer(i) => Some(*i.value() as f64),
        Value::Float(f) => Some(*f.value()),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            x.value() == y.value()
                || (PATH_KEYS.contains(&key)
                    && resolve_path(dir, x.value()) == resolve_path(dir, y.value()))
        }
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| same_value(key, p, q, dir))
        }
        (Value::InlineTable(x), Value::InlineTable(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(k, v, w, dir)))
        }
        // `layers = 4` is `layers = [4, 4]`.
        (Value::Integer(_), Value::Array(y)) | (Value::Array(y), Value::Integer(_))
            if key == "layers" =>
        {
            let n = if let Value::Integer(_) = a { a } else { b };
            y.len() == 2 && y.iter().all(|v| num(v) == num(n))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => false,
        },
    }
}

/// A table from the new document as a fresh table (no document position,
/// so it is written right after the table before it).
fn fresh_table(t: &Table) -> Table {
    let mut out = Table::new();
    for (k, item) in t.iter() {
        out.insert(k, fresh(item));
    }
    out
}

fn fresh(item: &Item) -> Item {
    match item {
        Item::Table(t) => Item::Table(fresh_table(t)),
        Item::ArrayOfTables(a) => {
            let mut out = ArrayOfTables::new();
            for t in a.iter() {
                out.push(fresh_table(t));
            }
            Item::ArrayOfTables(out)
        }
        other => other.clone(),
    }
}

/// `item` as a value, for an inline table.
fn as_value(item: &Item) -> Option<Value> {
    match item {
        Item::Value(v) => Some(v.clone()),
        Item::Table(t) => Some(Value::InlineTable(inline(t))),
        _ => None,
    }
}

fn inline(t: &Table) -> InlineTable {
    let mut out = InlineTable::new();
    for (k, item) in t.iter() {
        if let Some(v) = as_value(item) {
            out.insert(k, v);
        }
    }
    out.fmt();
    out
}

/// Merge the new table `new` into the original `orig`.
fn merge(orig: &mut dyn TableLike, new: &dyn TableLike, dir: &Path, inline_table: bool) -> bool {
    let gone: Vec<String> = orig
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| new.get(k).is_none())
        .collect();
    let removed = !gone.is_empty();
    for k in gone {
        orig.remove(&k);
    }
    for (k, n) in new.iter() {
        let Some(o) = orig.get_mut(k) else {
            let item = if inline_table {
                as_value(n).map(Item::Value)
            } else {
                Some(fresh(n))
            };
            if let Some(item) = item {
                orig.insert(k, item);
            }
            continue;
        };
        match (o, n) {
            (Item::Value(Value::InlineTable(ot)), Item::Value(Value::InlineTable(nt))) => {
                if merge(ot, nt, dir, true) {
                    // A removed last entry takes the space before `}`.
                    ot.fmt();
                }
            }
            (Item::Value(Value::InlineTable(ot)), Item::Table(nt)) => {
                if merge(ot, nt, dir, true) {
                    ot.fmt();
                }
            }
            (Item::Table(ot), Item::Table(nt)) => {
                merge(ot, nt, dir, false);
            }
            (Item::Table(ot), Item::Value(Value::InlineTable(nt))) => {
                merge(ot, nt, dir, false);
            }
            (Item::ArrayOfTables(oa), Item::ArrayOfTables(na)) => merge_array(k, oa, na, dir),
            (Item::Value(ov), Item::Value(nv)) => {
                if !same_value(k, ov, nv, dir) {
                    let decor = ov.decor().clone();
                    *ov = nv.clone();
                    *ov.decor_mut() = decor;
                }
            }
            (o, n) => {
                *o = if inline_table {
                    match as_value(n) {
                        Some(v) => Item::Value(v),
                        None => continue,
                    }
                } else {
                    fresh(n)
                };
            }
        }
    }
    removed
}

/// What identifies an entry of an array of tables across edits.
fn identity(t: &Table, dir: &Path) -> Option<String> {
    if let Some(p) = t.get("path").and_then(Item::as_str) {
        return Some(format!("path:{}", resolve_path(dir, p).display()));
    }
    match t.get("model") {
        Some(Item::Value(Value::String(s))) => {
            Some(format!("model:{}", resolve_path(dir, s.value()).display()))
        }
        Some(Item::Value(Value::Integer(i))) => Some(format!("index:{}", i.value())),
        _ => None,
    }
}

fn merge_array(_key: &str, orig: &mut ArrayOfTables, new: &ArrayOfTables, dir: &Path) {
    let olds: Vec<Table> = orig.iter().cloned().collect();
    let ids: Vec<Option<String>> = olds.iter().map(|t| identity(t, dir)).collect();
    let mut used = vec![false; olds.len()];
    let inline_params = olds.iter().any(|t| {
        matches!(
            t.get("parameters"),
            Some(Item::Value(Value::InlineTable(_)))
        )
    });
    let mut out = ArrayOfTables::new();
    let mut floor = 0isize;
    for (i, n) in new.iter().enumerate() {
        let id = identity(n, dir);
        let pick = match &id {
            Some(id) => (0..olds.len()).find(|&j| !used[j] && ids[j].as_ref() == Some(id)),
            None => (i < olds.len() && !used[i] && ids[i].is_none()).then_some(i),
        };
        let mut t = match pick {
            Some(j) => {
                used[j] = true;
                let mut t = olds[j].clone();
                merge(&mut t, n, dir, false);
                t
            }
            None => {
                let mut t = fresh_table(n);
                // A new entry follows its siblings' style for `parameters`.
                if inline_params {
                    if let Some(Item::Table(p)) = t.get("parameters") {
                        let v = inline(p);
                        t.insert("parameters", Item::Value(Value::InlineTable(v)));
                    }
                }
                t
            }
        };
        // Entries are written in document-position order: keep that the
        // array's order when entries moved.
        floor = raise(&mut t, floor);
        out.push(t);
    }
    *orig = out;
}

/// Raise the positions of `t` and its sub-tables to at least `floor`;
/// returns the highest position now in `t`.
fn raise(t: &mut Table, floor: isize) -> isize {
    let mut top = floor;
    if let Some(p) = t.position() {
        if p < floor {
            t.set_position(floor);
        } else {
            top = p;
        }
    }
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(s) => top = raise(s, top),
            Item::ArrayOfTables(a) => {
                for s in a.iter_mut() {
                    top = raise(s, top);
                }
            }
            _ => {}
        }
    }
    top
}

/// See [`Recipe::to_toml_preserving`].
pub(crate) fn write(r: &Recipe, original: &str, dir: &Path) -> Result<String, String> {
    let mut doc: DocumentMut = original
        .parse()
        .map_err(|e: toml_edit::TomlError| e.message().trim().to_string())?;
    let plain = super::toml::write(r, dir);
    let new: DocumentMut = plain
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("smelt wrote TOML it cannot read: {e}"))?;
    merge(doc.as_table_mut(), new.as_table(), dir, false);
    let text = doc.to_string();
    // The merged text must mean the recipe; where it would not (a layout
    // the merge does not foresee), the plain text is written instead.
    let back = super::node::parse_toml(&text).ok().and_then(|root| {
        let mut diag = super::util::Diag::default();
        let r = super::toml::from_node(&root, dir, &mut diag);
        r.filter(|_| diag.problems.is_empty())
    });
    match back {
        Some(b) if super::toml::write(&b, dir) == plain => Ok(text),
        _ => Ok(plain),
    }
}
