//! `smelt analyze`: the workbench's interference numbers, headless. Calls
//! the same library code ([`smelt::analysis::Analyzer`]) as the TUI's
//! sign-agreement panel, so the numbers follow the recipe's method: its
//! own selection (magnitude, DARE's draws, breadcrumbs, DELLA, SCE) and
//! whether it elects a sign. Text output fits in 80 columns.

use super::{CliError, CliResult};
use smelt::analysis::{Analyzer, Inputs, Report, Selection, Skipped, Stats, Target};
use smelt::merge::Method;
use smelt::model::{Group, Model};
use smelt::recipe::{Recipe, Value};
use smelt::text::escape;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Statistics kept while one command runs (per tensor, a few hundred
/// bytes each).
const CACHE_BYTES: usize = 64 << 20;

#[derive(serde::Serialize)]
struct Out {
    method: &'static str,
    selection: Selection,
    elects_sign: bool,
    base: PathBuf,
    models: Vec<PathBuf>,
    total: Stats,
    groups: Vec<GroupOut>,
}

#[derive(serde::Serialize)]
struct GroupOut {
    group: String,
    stats: Stats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<Skipped>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tensors: Vec<TensorOut>,
}

#[derive(serde::Serialize)]
struct TensorOut {
    name: String,
    stats: Stats,
}

pub fn run(
    inputs: &[PathBuf],
    base: Option<PathBuf>,
    method: Option<&str>,
    density: Option<f64>,
    layers_only: bool,
    json: bool,
) -> CliResult {
    let from_file = matches!(inputs, [one] if is_recipe(one));
    let mut recipe = recipe_for(inputs, base)?;
    super::fetch::hub_models(&smelt::plan::recipe_paths(&recipe), false)?;
    if let Some(name) = method {
        recipe.method = Method::from_name(name).ok_or_else(|| {
            let all: Vec<&str> = Method::all().map(Method::name).collect();
            CliError::input(format!("--method {name}: one of {}", all.join(", ")))
        })?;
    }
    if !from_file
        && recipe
            .method
            .spec()
            .per_model
            .iter()
            .any(|p| p.name == "weight")
    {
        // Models given on the command line weigh the same.
        for m in &mut recipe.models {
            m.params
                .entry("weight".into())
                .or_insert(Value::Number(1.0));
        }
    }
    if let Some(d) = density {
        if !(d > 0.0 && d <= 1.0) {
            return Err(CliError::input(format!("--density {d}: must be in (0, 1]")));
        }
        for m in &mut recipe.models {
            m.params.insert("density".into(), Value::Number(d));
        }
    }
    if matches!(recipe.method, Method::Zipit | Method::Permute) {
        let whose = match inputs {
            [one] if from_file => format!("{}: ", one.display()),
            _ => String::new(),
        };
        return Err(CliError::input(format!(
            "{whose}{} matches features across whole models: there are no task vectors to \
             analyze (smelt eval measures a merge it made)",
            recipe.method.name()
        )));
    }
    let Some(base_path) = recipe.base.clone() else {
        return Err(CliError::input(
            "analyze needs a base model: task vectors are models minus the base (give --base, or a recipe with `base`)",
        ));
    };
    // The base is not its own task vector: drop it from the models, and
    // renumber per-model overrides to match.
    let keep: Vec<usize> = (0..recipe.models.len())
        .filter(|&i| !smelt::plan::same_path(&recipe.models[i].path, &base_path))
        .collect();
    recipe.models = keep.iter().map(|&i| recipe.models[i].clone()).collect();
    for o in &mut recipe.overrides {
        o.models = std::mem::take(&mut o.models)
            .into_iter()
            .filter_map(|(i, p)| keep.iter().position(|&k| k == i).map(|k| (k, p)))
            .collect();
    }
    if recipe.models.is_empty() {
        return Err(CliError::input(
            "analyze needs at least one model besides the base",
        ));
    }
    // A model a recipe names that cannot be read: say which recipe.
    let opened = |p: &std::path::Path| {
        Model::open(p).map(Arc::new).map_err(|e| match inputs {
            [r] if from_file => CliError::input(format!(
                "{}: a model it names cannot be read: {e}",
                r.display()
            )),
            _ => CliError::from(e),
        })
    };
    let reference = opened(&base_path)?;
    let models: Vec<Arc<Model>> = recipe
        .models
        .iter()
        .map(|m| opened(&m.path))
        .collect::<Result<_, _>>()?;
    let inputs = Inputs { reference, models };
    let cancel = AtomicBool::new(false);
    let mut analyzer = Analyzer::new(CACHE_BYTES);
    let reference = inputs.reference.clone();
    let mut groups: Vec<Group> = reference.tensors().iter().map(|t| t.place.group).collect();
    groups.dedup();
    let fail = |e: smelt::analysis::AnalysisError| CliError::input(e.to_string());
    // Every tensor (or every group) in one parallel run; the group rows
    // below then come from the analyzer's cache.
    let tensor_targets: Vec<Target> = if layers_only {
        groups.iter().map(|&g| Target::Group(g)).collect()
    } else {
        reference
            .tensors()
            .iter()
            .filter(|t| t.dtype.is_mergeable())
            .map(|t| Target::Tensor(t.name.clone()))
            .collect()
    };
    let per_tensor = analyzer
        .analyze_many(&inputs, &recipe, &tensor_targets, &cancel)
        .map_err(fail)?;
    let mut out = Out {
        method: recipe.method.name(),
        selection: recipe.method.spec().selection,
        elects_sign: recipe.method.spec().sign_election,
        base: base_path.clone(),
        models: inputs
            .models
            .iter()
            .map(|m| m.path().to_path_buf())
            .collect(),
        total: Stats::for_method(recipe.method, inputs.models.len()),
        groups: Vec::new(),
    };
    for g in groups {
        let Report { stats, skipped } = analyzer
            .analyze(&inputs, &recipe, &Target::Group(g), &cancel)
            .map_err(fail)?;
        let mut tensors = Vec::new();
        if !layers_only {
            for (t, r) in tensor_targets.iter().zip(&per_tensor) {
                if let (Target::Tensor(name), Ok(r)) = (t, r) {
                    if reference.tensor(name).is_some_and(|x| x.place.group == g) {
                        tensors.push(TensorOut {
                            name: name.clone(),
                            stats: r.stats.clone(),
                        });
                    }
                }
            }
        }
        out.total.combine(&stats);
        out.groups.push(GroupOut {
            group: g.to_string(),
            stats,
            skipped,
            tensors,
        });
    }
    // Nothing compared is not a result: say why, as an error.
    if out.total.params == 0 {
        let why = out
            .groups
            .iter()
            .flat_map(|g| g.skipped.iter())
            .next()
            .map_or_else(String::new, |s| format!(": {} ({})", s.reason, s.tensor));
        return Err(CliError::input(format!(
            "nothing to compare: every tensor was left out{why}"
        )));
    }
    if json {
        let text = serde_json::to_string_pretty(&out).map_err(CliError::internal)?;
        super::emit(&format!("{}\n", smelt::text::json(&text)))
    } else {
        super::emit(&render(&out, &recipe))
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
    smelt::recipe::is_recipe_path(p)
}

/// Width of the name column.
const NAME_W: usize = 24;

fn pct(x: f64) -> String {
    format!("{:5.1}%", x * 100.0)
}

/// `s` cut to `w` characters, keeping the end (tensor names differ there).
fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n + 1 - w).collect();
    format!("…{tail}")
}

/// `s` in lines of at most `w` characters, broken at spaces (a longer
/// word is cut).
fn wrap(s: &str, w: usize) -> Vec<String> {
    smelt::text::wrap(s, w)
        .into_iter()
        .map(|l| fit(&l, w))
        .collect()
}

fn row(name: &str, s: &Stats) -> String {
    // A group whose every tensor was left out has no figures: say so.
    if s.params == 0 {
        return format!(
            "{:<NAME_W$} {:>7} left out (see below)\n",
            fit(name, NAME_W),
            "-"
        );
    }
    // Energy kept per model (up to four), else its range.
    let e: Vec<f64> = s.norm_kept.iter().map(|e| e * 100.0).collect();
    let energy = if e.len() <= 4 {
        e.iter()
            .map(|x| format!("{x:3.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        let lo = e.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:3.0}..{hi:3.0}")
    };
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
    format!(
        "{:<NAME_W$} {:>7} {} {} {:>4.2} {:<15} {}\n",
        fit(name, NAME_W),
        smelt::units::count(s.params),
        pct(s.conflict_share()),
        pct(s.kept_share()),
        s.mean_agree(),
        energy,
        cos
    )
}

/// What the method's selection and election are, in two short lines.
fn describe(recipe: &Recipe) -> String {
    let spec = recipe.method.spec();
    let kept = match spec.selection {
        Selection::None => "no trimming: every entry of each task vector counts",
        Selection::Magnitude => "kept: each model's largest `density` share by magnitude",
        Selection::Random => "kept: DARE's seeded random draws at `density`",
        Selection::Outliers => "kept: the `density` share under the top `gamma` outliers",
        Selection::RankedRandom => "kept: DELLA's draws, density +/- epsilon by rank in row",
        Selection::Variance => "kept: positions of highest variance (select_topk), SCE weights",
        Selection::Importance => "kept: changes whose |change| x row KL reaches median + 1.5 IQR",
        Selection::Epsilon => "kept: changes past `epsilon`; ones several models make are averaged",
    };
    let sign = if spec.sign_election {
        "sign: elected per parameter; opposing entries are dropped"
    } else {
        "sign: none elected; conflicts measure interference in the sum"
    };
    format!("{kept}\n{sign}\n")
}

fn render(r: &Out, recipe: &Recipe) -> String {
    let mut out = format!(
        "{} task vectors against {} ({})\n",
        r.models.len(),
        fit(&smelt::text::path(&r.base), 40),
        r.method
    );
    out.push_str(&describe(recipe));
    out.push_str(&format!(
        "{:<NAME_W$} {:>7} {:>6} {:>6} {:>4} {:<15} {}\n",
        "layer / tensor", "params", "confl", "kept", "agr", "energy kept %", "cosines"
    ));
    let mut skipped = Vec::new();
    for g in &r.groups {
        out.push_str(&row(&g.group, &g.stats));
        for t in &g.tensors {
            out.push_str(&row(&format!("  {}", escape(&t.name)), &t.stats));
        }
        skipped.extend(g.skipped.iter());
    }
    out.push_str(&row("total", &r.total));
    for s in &skipped {
        out.push_str(&format!("skipped {}\n", fit(&escape(&s.tensor), 72)));
        for line in wrap(&escape(&s.reason), 76) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(
        "\nconfl: parameters where a kept entry opposes the sign of the sum;\n\
         kept: entries the method keeps (non-zero), of all entries;\n\
         agr: mean number of models agreeing with that sign per parameter;\n\
         energy kept: share of each task vector's squared norm kept.\n",
    );
    out
}
