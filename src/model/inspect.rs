//! `smelt inspect`: what a checkpoint holds, as a table for people and as
//! JSON for scripts.
//!
//! The report is built from headers only (no tensor data is read), so it is
//! instant even on large sharded checkpoints.

use super::{Group, Model};
use serde::Serialize;
use std::fmt::Write;

/// One shard file.
#[derive(Clone, Debug, Serialize)]
pub struct ShardRow {
    pub file: String,
    pub bytes: u64,
    pub tensors: usize,
}

/// One group of the catalogue: `pre`, `layer N` or `post`.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRow {
    pub group: String,
    /// The layer index, for layer groups.
    pub layer: Option<usize>,
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
}

/// One tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorRow {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub params: u64,
    pub bytes: u64,
    /// Index into [`Report::shards`].
    pub shard: usize,
    pub group: String,
}

/// What `smelt inspect MODEL` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub path: String,
    pub name: String,
    /// `architectures[0]` of config.json.
    pub architecture: Option<String>,
    /// `num_hidden_layers` of config.json (or its equivalents).
    pub num_hidden_layers: Option<usize>,
    /// Layers found by the catalogue from tensor names.
    pub catalogue_layers: usize,
    pub num_params: u64,
    /// Bytes of tensor data (excluding headers).
    pub data_bytes: u64,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub shards: Vec<ShardRow>,
    pub groups: Vec<GroupRow>,
    pub tensors: Vec<TensorRow>,
}

impl Report {
    pub fn new(model: &Model) -> Report {
        let sizes = model.shard_sizes();
        let mut shards: Vec<ShardRow> = model
            .shard_paths()
            .iter()
            .zip(sizes)
            .map(|(p, bytes)| ShardRow {
                file: p
                    .file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
                bytes,
                tensors: 0,
            })
            .collect();
        let mut groups: Vec<(Group, GroupRow)> = Vec::new();
        let mut tensors = Vec::with_capacity(model.tensors().len());
        for t in model.tensors() {
            let params = t.numel() as u64;
            let bytes = t.nbytes() as u64;
            if let Some(s) = shards.get_mut(t.shard) {
                s.tensors += 1;
            }
            // Tensors come sorted by group, so a group is always the last
            // one pushed or a new one.
            match groups.last_mut() {
                Some((g, row)) if *g == t.place.group => {
                    row.tensors += 1;
                    row.params += params;
                    row.bytes += bytes;
                }
                _ => groups.push((
                    t.place.group,
                    GroupRow {
                        group: t.place.group.to_string(),
                        layer: match t.place.group {
                            Group::Layer(n) => Some(n),
                            _ => None,
                        },
                        tensors: 1,
                        params,
                        bytes,
                    },
                )),
            }
            tensors.push(TensorRow {
                name: t.name.clone(),
                dtype: t.dtype.name().to_string(),
                shape: t.shape.clone(),
                params,
                bytes,
                shard: t.shard,
                group: t.place.group.to_string(),
            });
        }
        let num_hidden_layers = model.config_layers();
        Report {
            path: model.path().display().to_string(),
            name: model.name().to_string(),
            architecture: model.architecture().map(str::to_string),
            num_hidden_layers,
            catalogue_layers: model.catalogue_layers(),
            num_params: model.num_params(),
            data_bytes: tensors.iter().map(|t| t.bytes).sum(),
            metadata: model.metadata().clone(),
            shards,
            groups: groups.into_iter().map(|(_, r)| r).collect(),
            tensors,
        }
    }

    /// A plain-text report that fits 80 columns: summary, shards, layer
    /// groups (runs of identical layers collapsed to one line), tensors.
    ///
    /// Every name from the files (paths, tensors, metadata, the config's
    /// architecture) is escaped ([`crate::text::escape`]).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}  ({})", esc(&self.name), esc(&self.path));
        let arch = self
            .architecture
            .as_deref()
            .map_or("unknown architecture".into(), esc);
        let layers = match self.num_hidden_layers {
            Some(n) if n != self.catalogue_layers => {
                format!("{n} layers in config, {} in tensors", self.catalogue_layers)
            }
            _ => format!("{} layers", self.catalogue_layers),
        };
        let _ = writeln!(s, "{arch}, {layers}");
        let _ = writeln!(
            s,
            "{} parameters, {} in {} tensors, {} shard{}",
            human(self.num_params, ""),
            human(self.data_bytes, "B"),
            self.tensors.len(),
            self.shards.len(),
            if self.shards.len() == 1 { "" } else { "s" }
        );
        if !self.metadata.is_empty() {
            let m: Vec<String> = self
                .metadata
                .iter()
                .map(|(k, v)| format!("{}={}", esc(k), clip(&esc(v), 30)))
                .collect();
            let _ = writeln!(s, "metadata: {}", clip(&m.join(", "), 70));
        }

        let _ = writeln!(s, "\n{:<56} {:>10} {:>8}", "shard", "size", "tensors");
        // By file name (model-00001-of-00003 first), whatever order the
        // index happened to name them in.
        let mut shards: Vec<&ShardRow> = self.shards.iter().collect();
        shards.sort_by(|a, b| a.file.cmp(&b.file));
        for sh in shards {
            let _ = writeln!(
                s,
                "{:<56} {:>10} {:>8}",
                clip(&esc(&sh.file), 56),
                human(sh.bytes, "B"),
                sh.tensors
            );
        }

        let _ = writeln!(
            s,
            "\n{:<24} {:>8} {:>12} {:>12}",
            "group", "tensors", "params", "size"
        );
        for (label, row) in self.group_runs() {
            let _ = writeln!(
                s,
                "{:<24} {:>8} {:>12} {:>12}",
                label,
                row.tensors,
                human(row.params, ""),
                human(row.bytes, "B")
            );
        }

        let _ = writeln!(
            s,
            "\n{:<46} {:<7} {:<13} {:>8} {:>2}",
            "tensor", "dtype", "shape", "params", "#"
        );
        for t in &self.tensors {
            let shape = format!(
                "[{}]",
                t.shape
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let _ = writeln!(
                s,
                "{:<46} {:<7} {:<13} {:>8} {:>2}",
                clip_left(&esc(&t.name), 46),
                t.dtype,
                clip(&shape, 13),
                human(t.params, ""),
                t.shard
            );
        }
        s
    }

    /// Group rows with consecutive identical layers (same tensor count,
    /// params and bytes) merged into `layers A-B (each)`.
    fn group_runs(&self) -> Vec<(String, &GroupRow)> {
        let mut out: Vec<(String, &GroupRow)> = Vec::new();
        let mut i = 0;
        while i < self.groups.len() {
            let g = &self.groups[i];
            let Some(first) = g.layer else {
                out.push((g.group.clone(), g));
                i += 1;
                continue;
            };
            let mut j = i;
            while let Some(next) = self.groups.get(j + 1) {
                let same = next.layer == Some(first + (j + 1 - i))
                    && next.tensors == g.tensors
                    && next.params == g.params
                    && next.bytes == g.bytes;
                if !same {
                    break;
                }
                j += 1;
            }
            let label = if j == i {
                g.group.clone()
            } else {
                format!("layers {first}-{} (each)", first + (j - i))
            };
            out.push((label, g));
            i = j + 1;
        }
        out
    }
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape(s)
}

/// `1234567` → `1.23M` (decimal units, as parameter counts are quoted).
fn human(n: u64, unit: &str) -> String {
    const STEPS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    let x = n as f64;
    for (scale, p) in STEPS {
        if x >= scale {
            return if unit.is_empty() {
                // Parameter counts: 7.00B, not 7.00G.
                let p = if p == "G" { "B" } else { p };
                format!("{:.2}{p}", x / scale)
            } else {
                format!("{:.2} {p}{unit}", x / scale)
            };
        }
    }
    if unit.is_empty() {
        n.to_string()
    } else {
        format!("{n} {unit}")
    }
}

/// Cut `s` to `w` characters, marking the cut with `~` at the end.
fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
    out.push('~');
    out
}

/// Cut `s` to `w` characters keeping the end (the distinctive part of a
/// tensor name), marking the cut with `~` at the start.
fn clip_left(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    let mut out = String::from("~");
    out.extend(s.chars().skip(n - w.saturating_sub(1)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize() {
        assert_eq!(human(999, ""), "999");
        assert_eq!(human(1_234_567, ""), "1.23M");
        assert_eq!(human(7_000_000_000, ""), "7.00B");
        assert_eq!(human(7_000_000_000, "B"), "7.00 GB");
        assert_eq!(human(12, "B"), "12 B");
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("abcdef", 4), "abc~");
        assert_eq!(clip_left("abcdef", 4), "~def");
        assert_eq!(clip_left("abc", 4), "abc");
    }
}
