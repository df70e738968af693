//! `smelt inspect MODEL [--json]`: the library's [`Report`] as a table
//! for people, or as JSON for scripts.

use super::{emit, CliError, CliResult};
use smelt::model::inspect::{AdapterReport, GroupRow, Report, ShardRow};
use smelt::model::Model;
use std::fmt::Write;
use std::path::Path;

/// `smelt inspect MODEL [--json]`.
pub fn run(path: &Path, json: bool) -> CliResult {
    super::fetch::hub_model(path, false)?;
    if smelt::model::lora::is_adapter(path) {
        let adapter = smelt::model::Adapter::open(path)?;
        let report = AdapterReport::new(&adapter);
        return if json {
            let text = serde_json::to_string_pretty(&report).map_err(CliError::internal)?;
            emit(&format!("{}\n", smelt::text::json(&text)))
        } else {
            emit(&render_adapter(&report))
        };
    }
    let model = Model::open(path)?;
    let report = Report::new(&model);
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(CliError::internal)?;
        emit(&format!("{}\n", smelt::text::json(&text)))
    } else {
        emit(&render(&report))
    }
}

/// A plain-text report that fits 80 columns: summary, shards, layer
/// groups (runs of identical layers collapsed to one line), tensors.
///
/// Every name from the files (paths, tensors, metadata, the config's
/// architecture) is escaped ([`smelt::text::escape`]).
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}  ({})", esc(&r.name), esc(&r.path));
    let arch = r
        .architecture
        .as_deref()
        .map_or("unknown architecture".into(), esc);
    let layers = match r.num_hidden_layers {
        Some(n) if n != r.catalogue_layers => {
            format!("{n} layers in config, {} in tensors", r.catalogue_layers)
        }
        _ => format!("{} layers", r.catalogue_layers),
    };
    let _ = writeln!(s, "{arch}, {layers}");
    let _ = writeln!(
        s,
        "{} parameters, {} in {} tensors, {} shard{}",
        human(r.num_params, ""),
        human(r.data_bytes, "B"),
        r.tensors.len(),
        r.shards.len(),
        if r.shards.len() == 1 { "" } else { "s" }
    );
    if !r.metadata.is_empty() {
        let m: Vec<String> = r
            .metadata
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), clip(&esc(v), 30)))
            .collect();
        let _ = writeln!(s, "metadata: {}", clip(&m.join(", "), 70));
    }

    let _ = writeln!(s, "\n{:<56} {:>10} {:>8}", "shard", "size", "tensors");
    // By file name (model-00001-of-00003 first), whatever order the
    // index happened to name them in.
    let mut shards: Vec<&ShardRow> = r.shards.iter().collect();
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
    for (label, row) in group_runs(r) {
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
    for t in &r.tensors {
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

/// A LoRA adapter's report: its settings, then every tensor it changes
/// with the rank, alpha and scale in effect there.
pub fn render_adapter(r: &AdapterReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "LoRA adapter  ({})", esc(&r.path));
    let _ = writeln!(
        s,
        "r {}, lora_alpha {}, {} scaling{}",
        r.rank,
        r.alpha,
        if r.rslora {
            "rsLoRA (alpha/sqrt(r))"
        } else {
            "alpha/r"
        },
        if r.fan_in_fan_out {
            ", fan_in_fan_out"
        } else {
            ""
        }
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|x| esc(x).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(s, "target_modules: {}", clip(&list(&r.target_modules), 64));
    let _ = writeln!(
        s,
        "modules_to_save: {}",
        clip(&list(&r.modules_to_save), 63)
    );
    let _ = writeln!(
        s,
        "\n{:<45} {:<12} {:>4} {:>6} {:>7}",
        "tensor", "kind", "rank", "alpha", "scale"
    );
    for t in &r.targets {
        let (rank, alpha, scale) = if t.kind == "replace" {
            ("-".into(), "-".into(), "-".into())
        } else {
            (
                t.rank.to_string(),
                format!("{}", t.alpha),
                format!("{:.4}", t.scale),
            )
        };
        let _ = writeln!(
            s,
            // 78 columns: the widest kind is `replace+lora`.
            "{:<45} {:<12} {:>4} {:>6} {:>7}",
            clip_left(&esc(&t.tensor), 45),
            t.kind,
            rank,
            alpha,
            scale
        );
    }
    s
}

/// Group rows with consecutive identical layers (same tensor count,
/// params and bytes) merged into `layers A-B (each)`.
fn group_runs(r: &Report) -> Vec<(String, &GroupRow)> {
    let mut out: Vec<(String, &GroupRow)> = Vec::new();
    let mut i = 0;
    while i < r.groups.len() {
        let g = &r.groups[i];
        let Some(first) = g.layer else {
            out.push((g.group.clone(), g));
            i += 1;
            continue;
        };
        let mut j = i;
        while let Some(next) = r.groups.get(j + 1) {
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

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    smelt::text::escape(s)
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

/// Cut `s` to `w` characters, marking the cut with `…` at the end (as
/// everything else smelt prints does).
fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cut `s` to `w` characters keeping the end (the distinctive part of a
/// tensor name), marking the cut with `…` at the start.
fn clip_left(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    let mut out = String::from("…");
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
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip_left("abcdef", 4), "…def");
        assert_eq!(clip_left("abc", 4), "abc");
    }

    /// The fixture's table fits 80 columns and collapses its four
    /// identical layers into one line.
    #[test]
    fn fixture_report_fits_80_columns() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mergekit/models/base");
        let r = Report::new(&Model::open(&dir).unwrap());
        let text = render(&r);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line}");
        }
        assert!(text.contains("layers 0-3 (each)"), "{text}");
        assert!(text.contains("LlamaForCausalLM"));
        assert_eq!(text.lines().filter(|l| l.contains(".weight")).count(), 39);
    }
}
