//! `smelt analyze`: the workbench's interference numbers, headless. Calls
//! the same library code as the TUI's sign-agreement panel.

use super::{CliError, CliResult};
use smelt::analysis::{self, Stats};
use smelt::merge::Method;
use smelt::model::{Group, Model};
use smelt::recipe::{Recipe, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(serde::Serialize)]
struct Report {
    method: &'static str,
    base: PathBuf,
    models: Vec<PathBuf>,
    total: Stats,
    groups: Vec<GroupReport>,
}

#[derive(serde::Serialize)]
struct GroupReport {
    group: String,
    stats: Stats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tensors: Vec<TensorReport>,
}

#[derive(serde::Serialize)]
struct TensorReport {
    name: String,
    stats: Stats,
}

pub fn run(
    inputs: &[PathBuf],
    base: Option<PathBuf>,
    density: Option<f64>,
    layers_only: bool,
    json: bool,
) -> CliResult {
    let mut recipe = recipe_for(inputs, base)?;
    if let Some(d) = density {
        if !(d > 0.0 && d <= 1.0) {
            return Err(CliError::input(format!("--density {d}: must be in (0, 1]")));
        }
        for m in &mut recipe.models {
            m.params.insert("density".into(), Value::Number(d));
        }
    }
    let Some(base_path) = recipe.base.clone() else {
        return Err(CliError::input(
            "analyze needs a base model: task vectors are models minus the base (give --base, or a recipe with `base`)",
        ));
    };
    let base = Model::open(&base_path)?;
    let models: Vec<Arc<Model>> = recipe
        .models
        .iter()
        .filter(|m| !smelt::plan::same_path(&m.path, &base_path))
        .map(|m| Model::open(&m.path).map(Arc::new))
        .collect::<Result<_, _>>()?;
    if models.is_empty() {
        return Err(CliError::input(
            "analyze needs at least one model besides the base",
        ));
    }
    // Parameters per tensor as the merge would resolve them; non-base
    // entries only, aligned with `models`.
    let keep: Vec<usize> = recipe
        .models
        .iter()
        .enumerate()
        .filter(|(_, m)| !smelt::plan::same_path(&m.path, &base_path))
        .map(|(i, _)| i)
        .collect();
    let n_layers = base.num_layers();
    let cancel = AtomicBool::new(false);
    let mut groups: Vec<Group> = base.tensors().iter().map(|t| t.place.group).collect();
    groups.dedup();
    let mut report = Report {
        method: recipe.method.name(),
        base: base_path.clone(),
        models: models.iter().map(|m| m.path().to_path_buf()).collect(),
        total: Stats::new(models.len()),
        groups: Vec::new(),
    };
    for g in groups {
        let mut gr = GroupReport {
            group: g.to_string(),
            stats: Stats::new(models.len()),
            tensors: Vec::new(),
        };
        for t in base
            .tensors()
            .iter()
            .filter(|t| t.place.group == g && t.dtype.is_mergeable())
        {
            let mut params = recipe.resolve(&t.name, g, n_layers);
            params.models = keep
                .iter()
                .filter_map(|&i| params.models.get(i).cloned())
                .collect();
            let s = analysis::analyze_tensor(&base, &models, &t.name, &params, &cancel)
                .map_err(CliError::input)?;
            gr.stats.combine(&s);
            if !layers_only {
                gr.tensors.push(TensorReport {
                    name: t.name.clone(),
                    stats: s,
                });
            }
        }
        report.total.combine(&gr.stats);
        report.groups.push(gr);
    }
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(CliError::internal)?;
        super::emit(&format!("{text}\n"))
    } else {
        super::emit(&render(&report, recipe.method))
    }
}

/// A recipe file, or models. For models, analyze makes its own choice of
/// base (task vectors need one): `--base`, else the first model. The rest
/// is [`Recipe::for_models`]: TIES, weight 1.0 and density 0.5 per model
/// (`--density` replaces the density).
fn recipe_for(inputs: &[PathBuf], base: Option<PathBuf>) -> Result<Recipe, CliError> {
    if let [one] = inputs {
        if is_recipe(one) {
            return Ok(Recipe::load(one)?);
        }
    }
    let mut models = inputs.to_vec();
    let base = match base {
        Some(b) => b,
        None => {
            if models.len() < 2 {
                return Err(CliError::input(
                    "give a recipe, or a base and at least one model (or --base)",
                ));
            }
            models.remove(0)
        }
    };
    Ok(Recipe::for_models(models, Some(base)))
}

fn is_recipe(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("toml" | "yml" | "yaml")
    )
}

fn pct(x: f64) -> String {
    format!("{:5.1}%", x * 100.0)
}

fn row(name: &str, s: &Stats) -> String {
    let energy: Vec<String> = s
        .norm_kept
        .iter()
        .map(|e| format!("{:3.0}", e * 100.0))
        .collect();
    let mut cos_min = f64::INFINITY;
    let mut cos_max = f64::NEG_INFINITY;
    for i in 0..s.n() {
        for j in 0..i {
            cos_min = cos_min.min(s.cosines[i][j]);
            cos_max = cos_max.max(s.cosines[i][j]);
        }
    }
    let cos = if cos_min.is_finite() {
        format!("{cos_min:+.2}..{cos_max:+.2}")
    } else {
        "-".into()
    };
    let name: String = if name.chars().count() > 28 {
        let tail: String = name
            .chars()
            .rev()
            .take(27)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        name.to_string()
    };
    format!(
        "{name:<28} {:>8} {} {} {} {:<12} {}\n",
        smelt::units::count(s.params),
        pct(s.conflict_share()),
        pct(s.kept_share()),
        pct(s.tied_share()),
        energy.join(" "),
        cos
    )
}

fn render(r: &Report, method: Method) -> String {
    let mut out = format!(
        "{} task vectors against {} ({}{})\n",
        r.models.len(),
        r.base.display(),
        method.name(),
        if method.spec().trims {
            ", trimmed at each model's density"
        } else {
            ", untrimmed"
        }
    );
    out.push_str(&format!(
        "{:<28} {:>8} {:>6} {:>6} {:>6} {:<12} {}\n",
        "layer / tensor", "params", "confl", "kept", "tied", "energy kept%", "cosines"
    ));
    for g in &r.groups {
        out.push_str(&row(&g.group, &g.stats));
        for t in &g.tensors {
            out.push_str(&row(&format!("  {}", t.name), &t.stats));
        }
    }
    out.push_str(&row("total", &r.total));
    out.push_str(
        "\nconfl: parameters where a kept entry opposes the elected sign; kept: entries kept by trimming;\n\
         tied: entries tied at the trim cut-off; energy kept: share of each task vector's squared norm kept.\n",
    );
    out
}
