//! The methods smelt knows, and the parameters each takes (names and
//! defaults as mergekit has them, so recipes move between the two).

use super::ParamValue;

/// A merge method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Weighted average of the models (`linear`).
    Linear,
    /// Base plus the weighted sum of task vectors (`task_arithmetic`).
    TaskArithmetic,
    /// Trim each task vector by magnitude, elect a sign per parameter, merge
    /// the agreeing entries (`ties`).
    Ties,
    /// TIES with DARE's random drop and rescale instead of magnitude trim.
    DareTies,
    /// Task arithmetic over DARE-dropped, rescaled task vectors.
    DareLinear,
    /// Task arithmetic over task vectors without their smallest and largest
    /// entries (`breadcrumbs`).
    Breadcrumbs,
    /// Breadcrumbs trimming with TIES sign election.
    BreadcrumbsTies,
    /// DELLA: drop probabilities ranked by magnitude, with sign election.
    Della,
    /// DELLA's ranked drop without sign election.
    DellaLinear,
    /// Spherical interpolation between two models (`slerp`).
    Slerp,
    /// Slerp with per-model weights and optional task vectors (`nuslerp`).
    Nuslerp,
    /// Spherical interpolation of several models (`multislerp`).
    Multislerp,
    /// The Riemannian (Karcher) mean on the sphere (`karcher`).
    Karcher,
    /// Interpolation towards the base by the fine-tunes' angles
    /// (`model_stock`).
    ModelStock,
    /// Variance-selected, sign-elected, weighted by squared task vectors
    /// (`sce`).
    Sce,
    /// Base entries replaced where a model is close to it (`nearswap`).
    Nearswap,
    /// A single model's tensors copied unchanged (`passthrough`).
    Passthrough,
    /// The fine-tune's changes where their importance (|Δ| times the row's
    /// KL divergence) is an outlier (`arcee_fusion`).
    ArceeFusion,
    /// Reinforced Agent Merging: changes one model makes are kept whole,
    /// changes several make are averaged (`ram`).
    Ram,
    /// RAM with each model's unique changes scaled up by how much it
    /// shares with the others, per tensor (`ramplus_tl`).
    RamplusTl,
    /// ZipIt! feature matching (MLP checkpoints; see [`crate::zip`]).
    Zipit,
    /// Permutation matching and averaging (MLP checkpoints).
    Permute,
}

/// What a method needs of `base_model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseRule {
    /// `base_model` must be given.
    Required,
    /// `base_model` may be given.
    Optional,
    /// `base_model` must not be given.
    None,
}

/// The type of a parameter's values (what the recipe must give).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A real number.
    Float,
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Int,
}

/// One parameter a method takes.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    /// The name recipes use, as mergekit spells it.
    pub name: &'static str,
    /// The type of its values.
    pub kind: ParamKind,
    /// `None` means required.
    pub default: Option<ParamValue>,
    /// Inclusive-exclusive bounds to validate against, where they exist:
    /// `(lo, lo_inclusive, hi, hi_inclusive)`.
    pub range: Option<(f64, bool, f64, bool)>,
    /// One line on what it does, for help and the workbench.
    pub doc: &'static str,
}

/// How a method picks the task-vector entries it keeps (what the
/// statistics panels describe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Nothing is trimmed: whole task vectors (or whole models) are
    /// combined.
    #[default]
    None,
    /// The largest `density` share by magnitude (TIES), exact, ties by
    /// lowest index.
    Magnitude,
    /// Each entry kept with probability `density` (DARE), seeded.
    Random,
    /// The largest `density + gamma` share minus the top `gamma` outliers
    /// (breadcrumbs).
    Outliers,
    /// Kept with probabilities ranked by magnitude within each row,
    /// `density +/- epsilon` (DELLA), seeded.
    RankedRandom,
    /// Positions of highest variance across the models (SCE's
    /// `select_topk`), the same for every model.
    Variance,
    /// Entries whose importance (|Δ| times the KL divergence of the row's
    /// softmax from the base's) reaches median + 1.5 IQR (arcee_fusion).
    Importance,
    /// Entries whose magnitude exceeds `epsilon` (RAM): an entry only one
    /// model changes is kept whole, one several change is averaged.
    Epsilon,
}

/// A method's shape: base rule, model counts, parameters.
#[derive(Clone, Copy, Debug)]
pub struct MethodSpec {
    /// The method this describes.
    pub method: Method,
    /// Its recipe name, as mergekit spells it.
    pub name: &'static str,
    /// Whether it needs, allows or refuses `base_model`.
    pub base: BaseRule,
    /// Minimum and maximum number of non-base models.
    pub min_models: usize,
    /// At most this many non-base models; `None`: any number.
    pub max_models: Option<usize>,
    /// Parameters given once for the whole merge.
    pub global: &'static [ParamSpec],
    /// Parameters given per model (weights, densities).
    pub per_model: &'static [ParamSpec],
    /// Whether the method elects a sign per parameter (TIES family).
    pub sign_election: bool,
    /// Whether it trims task vectors by `density`.
    pub trims: bool,
    /// How it trims (`Selection::None` when `trims` is false).
    pub selection: Selection,
    /// One line on what it does, for help and the workbench.
    pub doc: &'static str,
}

impl MethodSpec {
    /// Whether it merges `n` non-base models.
    pub fn takes(&self, n: usize) -> bool {
        n >= self.min_models && self.max_models.is_none_or(|m| n <= m)
    }
}

const fn f(name: &'static str, default: Option<f64>, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Float,
        default: match default {
            Some(x) => Some(ParamValue::Float(x)),
            None => None,
        },
        range: None,
        doc,
    }
}
const fn b(name: &'static str, default: bool, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Bool,
        default: Some(ParamValue::Bool(default)),
        range: None,
        doc,
    }
}
const fn unit(mut p: ParamSpec) -> ParamSpec {
    // (0, 1]
    p.range = Some((0.0, false, 1.0, true));
    p
}
/// Bounds `(lo, lo_inclusive, hi, hi_inclusive)`; `hi` may be infinite.
const fn within(mut p: ParamSpec, lo: f64, lo_inc: bool, hi: f64, hi_inc: bool) -> ParamSpec {
    p.range = Some((lo, lo_inc, hi, hi_inc));
    p
}
const fn int(mut p: ParamSpec) -> ParamSpec {
    p.kind = ParamKind::Int;
    p
}

const WEIGHT: ParamSpec = f("weight", None, "scale of this model's contribution");
const DENSITY: ParamSpec = unit(f(
    "density",
    Some(1.0),
    "fraction of the task vector kept when trimming",
));
const GAMMA: ParamSpec = within(
    f(
        "gamma",
        Some(0.01),
        "fraction of largest-magnitude entries removed as outliers",
    ),
    0.0,
    true,
    1.0,
    true,
);
/// [0, 1); the check also keeps `density +/- epsilon` inside (0, 1).
const EPSILON: ParamSpec = within(
    f(
        "epsilon",
        Some(0.15),
        "spread of keep probabilities around density",
    ),
    0.0,
    true,
    1.0,
    false,
);
/// RAM's threshold: a task-vector entry counts as changed above it.
const RAM_EPSILON: ParamSpec = within(
    f(
        "epsilon",
        Some(1e-5),
        "magnitude above which an entry counts as changed",
    ),
    0.0,
    true,
    f64::INFINITY,
    false,
);
const LAMBDA: ParamSpec = f("lambda", Some(1.0), "scale of the merged task vector");
const INT8: ParamSpec = b(
    "int8_mask",
    false,
    "store masks as int8 (no effect on values)",
);

const NORM_T: ParamSpec = b("normalize", true, "divide by the sum of weights");
const NORM_F: ParamSpec = b("normalize", false, "divide by the sum of weights");
const RESC_T: ParamSpec = b("rescale", true, "rescale kept entries by 1/density");
const RESC_F: ParamSpec = b("rescale", false, "rescale kept entries by 1/density");
/// Generalised task arithmetic globals: (normalize, rescale) defaults differ.
const GTA_FF: &[ParamSpec] = &[INT8, NORM_F, RESC_F, LAMBDA];
const GTA_TF: &[ParamSpec] = &[INT8, NORM_T, RESC_F, LAMBDA];
// Random methods take their seed from the recipe's top-level `seed`
// (`Recipe::seed`), never from `parameters`.
const GTA_FT_RANDOM: &[ParamSpec] = &[INT8, NORM_F, RESC_T, LAMBDA];
const GTA_TT_RANDOM: &[ParamSpec] = &[INT8, NORM_T, RESC_T, LAMBDA];

const SPECS: &[MethodSpec] = &[
    MethodSpec {
        method: Method::Linear,
        name: "linear",
        base: BaseRule::None,
        min_models: 1,
        max_models: None,
        global: &[b("normalize", true, "divide by the sum of weights")],
        per_model: &[WEIGHT],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "weighted average of the models (model soups)",
    },
    MethodSpec {
        method: Method::TaskArithmetic,
        name: "task_arithmetic",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_FF,
        per_model: &[WEIGHT],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "base plus the weighted sum of task vectors",
    },
    MethodSpec {
        method: Method::Ties,
        name: "ties",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_TF,
        per_model: &[WEIGHT, DENSITY],
        sign_election: true,
        trims: true,
        selection: Selection::Magnitude,
        doc: "trim task vectors to their largest entries, elect a sign, average the agreeing ones",
    },
    MethodSpec {
        method: Method::DareTies,
        name: "dare_ties",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_FT_RANDOM,
        per_model: &[WEIGHT, DENSITY],
        sign_election: true,
        trims: true,
        selection: Selection::Random,
        doc: "drop task-vector entries at random, rescale, elect signs",
    },
    MethodSpec {
        method: Method::DareLinear,
        name: "dare_linear",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_FT_RANDOM,
        per_model: &[WEIGHT, DENSITY],
        sign_election: false,
        trims: true,
        selection: Selection::Random,
        doc: "drop task-vector entries at random, rescale, add",
    },
    MethodSpec {
        method: Method::Breadcrumbs,
        name: "breadcrumbs",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_FF,
        per_model: &[WEIGHT, DENSITY, GAMMA],
        sign_election: false,
        trims: true,
        selection: Selection::Outliers,
        doc: "drop the largest outliers and the smallest entries of each task vector",
    },
    MethodSpec {
        method: Method::BreadcrumbsTies,
        name: "breadcrumbs_ties",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_FF,
        per_model: &[WEIGHT, DENSITY, GAMMA],
        sign_election: true,
        trims: true,
        selection: Selection::Outliers,
        doc: "breadcrumbs trimming with TIES sign election",
    },
    MethodSpec {
        method: Method::Della,
        name: "della",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_TT_RANDOM,
        per_model: &[WEIGHT, DENSITY, EPSILON],
        sign_election: true,
        trims: true,
        selection: Selection::RankedRandom,
        doc: "drop entries with probabilities ranked by magnitude, elect signs",
    },
    MethodSpec {
        method: Method::DellaLinear,
        name: "della_linear",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: GTA_FT_RANDOM,
        per_model: &[WEIGHT, DENSITY, EPSILON],
        sign_election: false,
        trims: true,
        selection: Selection::RankedRandom,
        doc: "DELLA dropping without sign election",
    },
    MethodSpec {
        method: Method::Slerp,
        name: "slerp",
        base: BaseRule::Required,
        min_models: 1,
        max_models: Some(1),
        global: &[within(
            f(
                "t",
                None,
                "interpolation factor: 0 is the base, 1 the other model",
            ),
            0.0,
            true,
            1.0,
            true,
        )],
        per_model: &[],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "spherical interpolation between two models",
    },
    MethodSpec {
        method: Method::Nuslerp,
        name: "nuslerp",
        base: BaseRule::Optional,
        min_models: 2,
        max_models: Some(2),
        global: &[
            b(
                "nuslerp_flatten",
                true,
                "treat each tensor as one flat vector",
            ),
            b(
                "nuslerp_row_wise",
                false,
                "interpolate rows rather than columns",
            ),
        ],
        per_model: &[WEIGHT],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "slerp of two models (or their task vectors) by relative weight",
    },
    MethodSpec {
        method: Method::Multislerp,
        name: "multislerp",
        base: BaseRule::Optional,
        min_models: 2,
        max_models: None,
        global: &[
            b("normalize_weights", true, "divide weights by their sum"),
            f("eps", Some(1e-8), "numerical floor"),
        ],
        per_model: &[WEIGHT],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "weighted spherical mean of several models (or task vectors)",
    },
    MethodSpec {
        method: Method::Karcher,
        name: "karcher",
        base: BaseRule::None,
        min_models: 1,
        max_models: None,
        global: &[
            within(
                int(f("max_iter", Some(10.0), "iterations of the Karcher mean")),
                0.0,
                true,
                f64::INFINITY,
                false,
            ),
            within(
                f("tol", Some(1e-5), "convergence tolerance"),
                0.0,
                true,
                f64::INFINITY,
                false,
            ),
        ],
        // mergekit 0.1.5 weighs every model equally (no per-model weight).
        per_model: &[],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "Riemannian (Karcher) mean of the models on the sphere",
    },
    MethodSpec {
        method: Method::ModelStock,
        name: "model_stock",
        base: BaseRule::Required,
        min_models: 2,
        max_models: None,
        global: &[b("filter_wise", false, "compute the ratio per row")],
        per_model: &[],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "average of fine-tunes pulled toward the base by their angle",
    },
    MethodSpec {
        method: Method::Sce,
        name: "sce",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: &[
            INT8,
            unit(f(
                "select_topk",
                Some(1.0),
                "fraction of highest-variance entries kept",
            )),
        ],
        per_model: &[],
        sign_election: true,
        trims: true,
        selection: Selection::Variance,
        doc: "select high-variance entries, calculate weights, erase sign conflicts",
    },
    MethodSpec {
        method: Method::Nearswap,
        name: "nearswap",
        base: BaseRule::Required,
        min_models: 1,
        max_models: Some(1),
        global: &[within(
            f("t", None, "similarity threshold"),
            0.0,
            false,
            f64::INFINITY,
            false,
        )],
        per_model: &[],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "take the other model's value where it is close to the base",
    },
    MethodSpec {
        method: Method::Passthrough,
        name: "passthrough",
        base: BaseRule::None,
        min_models: 1,
        max_models: Some(1),
        global: &[],
        per_model: &[f("scale", Some(1.0), "multiply the tensor by this")],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "copy tensors unchanged (with slices: frankenmerges)",
    },
    MethodSpec {
        method: Method::ArceeFusion,
        name: "arcee_fusion",
        base: BaseRule::Required,
        min_models: 1,
        max_models: Some(1),
        global: &[],
        per_model: &[],
        sign_election: false,
        trims: true,
        selection: Selection::Importance,
        doc: "fuse the changes whose importance (|change| x row KL) is an outlier",
    },
    MethodSpec {
        method: Method::Ram,
        name: "ram",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: &[RAM_EPSILON],
        per_model: &[],
        sign_election: false,
        trims: true,
        selection: Selection::Epsilon,
        doc: "keep changes one model makes, average changes several make",
    },
    MethodSpec {
        method: Method::RamplusTl,
        name: "ramplus_tl",
        base: BaseRule::Required,
        min_models: 1,
        max_models: None,
        global: &[
            within(
                f("r", Some(0.1), "how much shared changes boost unique ones"),
                0.0,
                true,
                f64::INFINITY,
                false,
            ),
            within(
                f("alpha", Some(0.2), "cap on the shared-to-unique ratio"),
                0.0,
                true,
                f64::INFINITY,
                false,
            ),
            RAM_EPSILON,
        ],
        per_model: &[],
        sign_election: false,
        trims: true,
        selection: Selection::Epsilon,
        doc: "RAM with unique changes scaled by how much each model shares",
    },
    MethodSpec {
        method: Method::Zipit,
        name: "zipit",
        base: BaseRule::None,
        min_models: 2,
        max_models: None,
        global: &[
            int(f(
                "depth",
                Some(-1.0),
                "layers zipped into a shared trunk (-1: all hidden layers)",
            )),
            f(
                "alpha",
                Some(0.5),
                "how much a merged feature may be matched again",
            ),
            f(
                "beta",
                Some(1.0),
                "budget for matching features within one model",
            ),
        ],
        per_model: &[],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "ZipIt!: match and merge features, within and across models",
    },
    MethodSpec {
        method: Method::Permute,
        name: "permute",
        base: BaseRule::None,
        min_models: 2,
        max_models: None,
        global: &[int(f(
            "depth",
            Some(-1.0),
            "layers merged into a shared trunk (-1: all hidden layers)",
        ))],
        per_model: &[],
        sign_election: false,
        trims: false,
        selection: Selection::None,
        doc: "one-to-one feature matching by correlation, then averaging",
    },
];

impl Method {
    /// Every method, in declaration order (what help and the workbench
    /// list).
    pub fn all() -> impl Iterator<Item = Method> {
        SPECS.iter().map(|s| s.method)
    }
    /// What the method takes and refuses.
    pub fn spec(self) -> &'static MethodSpec {
        // SPECS lists every variant; the position is the discriminant order.
        &SPECS[self as usize]
    }
    /// The name recipes use (`ties`, `dare_linear`, ...).
    pub fn name(self) -> &'static str {
        self.spec().name
    }
    /// The method whose recipe name this is, if any.
    pub fn from_name(name: &str) -> Option<Method> {
        SPECS.iter().find(|s| s.name == name).map(|s| s.method)
    }
    /// Whether the method draws random numbers (and so reads the recipe's
    /// `seed`): the DARE and DELLA families.
    pub fn draws_random(self) -> bool {
        match self {
            Method::DareTies | Method::DareLinear | Method::Della | Method::DellaLinear => true,
            Method::Linear
            | Method::TaskArithmetic
            | Method::Ties
            | Method::Breadcrumbs
            | Method::BreadcrumbsTies
            | Method::Slerp
            | Method::Nuslerp
            | Method::Multislerp
            | Method::Karcher
            | Method::ModelStock
            | Method::Sce
            | Method::Nearswap
            | Method::Passthrough
            | Method::ArceeFusion
            | Method::Ram
            | Method::RamplusTl
            | Method::Zipit
            | Method::Permute => false,
        }
    }
    /// The next method in the list (the TUI's `m` key).
    pub fn next(self) -> Method {
        SPECS[(self as usize + 1) % SPECS.len()].method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_in_discriminant_order() {
        for (i, s) in SPECS.iter().enumerate() {
            assert_eq!(s.method as usize, i, "{}", s.name);
            assert_eq!(Method::from_name(s.name), Some(s.method));
            assert_eq!(s.trims, s.selection != Selection::None, "{}", s.name);
        }
    }

    #[test]
    fn no_method_takes_seed_as_a_parameter() {
        // The seed is the recipe's, not a parameter: a `seed` spec would
        // land in `TensorParams.global`, where no kernel reads it.
        for s in SPECS {
            assert!(
                s.global.iter().chain(s.per_model).all(|p| p.name != "seed"),
                "{}",
                s.name
            );
        }
        let random: Vec<&str> = Method::all()
            .filter(|m| m.draws_random())
            .map(Method::name)
            .collect();
        assert_eq!(
            random,
            ["dare_ties", "dare_linear", "della", "della_linear"]
        );
    }
}
