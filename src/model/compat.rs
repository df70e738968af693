//! Whether two checkpoints can be merged tensor by tensor: the same tensor
//! names, each with the same shape, and float (mergeable) where the other
//! is float. Float types may differ (F32 and BF16 merge fine: every read
//! converts to f32).
//!
//! The check reads headers only, so the workbench can refuse a model that
//! does not fit the ones already loaded the moment it is added, naming the
//! first tensor that does not fit.

use super::{Dtype, Group, Model, TensorInfo};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What is wrong with the first tensor that does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The tensor is in the model but not in the other.
    MissingFromOther,
    /// The tensor is in the other model but not in this one.
    MissingFromModel,
    /// Both have it, with these shapes (the model's, then the other's).
    Shape {
        /// Its shape in the model.
        model: Vec<usize>,
        /// Its shape in the other.
        other: Vec<usize>,
    },
    /// One has it as a float (mergeable) type, the other not.
    Dtype {
        /// Its dtype in the model.
        model: Dtype,
        /// Its dtype in the other.
        other: Dtype,
    },
}

/// Two models that cannot be merged: the first tensor (in the models'
/// stable order, see [`Model::tensors`]) that does not fit, and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} does not fit {}: {}", .model.display(), .other.display(), self.detail())]
pub struct Incompatible {
    /// The path of the model checked ([`Model::path`]).
    pub model: PathBuf,
    /// The path of the model it was checked against.
    pub other: PathBuf,
    /// The first tensor that does not fit.
    pub tensor: String,
    /// How it does not fit.
    pub mismatch: Mismatch,
}

impl Incompatible {
    /// The tensor and what is wrong with it, without the models' paths
    /// in front.
    pub fn detail(&self) -> String {
        let (t, a, b) = (&self.tensor, self.model.display(), self.other.display());
        match &self.mismatch {
            Mismatch::MissingFromOther => format!("tensor `{t}` is in {a} but not in {b}"),
            Mismatch::MissingFromModel => format!("tensor `{t}` is in {b} but not in {a}"),
            Mismatch::Shape { model, other } => {
                format!("tensor `{t}` has shape {model:?} in {a} but {other:?} in {b}")
            }
            Mismatch::Dtype { model, other } => format!(
                "tensor `{t}` is {model} in {a} but {other} in {b}, and only float tensors merge"
            ),
        }
    }
}

/// A tensor as found in the model and in the other.
type Pair<'a> = (Option<&'a TensorInfo>, Option<&'a TensorInfo>);

impl Model {
    /// Check that `other` can be merged with this model: every tensor in
    /// both, with equal shapes, and float in both or in neither. On
    /// failure, names the first tensor that does not fit, in the stable
    /// order of [`Model::tensors`] (group, then name) over the tensors of
    /// both.
    pub fn check_compatible(&self, other: &Model) -> Result<(), Incompatible> {
        let fail = |tensor: &str, mismatch| Incompatible {
            model: self.path().to_path_buf(),
            other: other.path().to_path_buf(),
            tensor: tensor.to_string(),
            mismatch,
        };
        // The union of both tensor lists, in the stable order.
        let mut all: BTreeMap<(Group, &str), Pair<'_>> = BTreeMap::new();
        for t in self.tensors() {
            all.entry((t.place.group, &t.name)).or_default().0 = Some(t);
        }
        for t in other.tensors() {
            all.entry((t.place.group, &t.name)).or_default().1 = Some(t);
        }
        for ((_, name), pair) in all {
            let mismatch = match pair {
                (Some(_), None) => Mismatch::MissingFromOther,
                (None, Some(_)) => Mismatch::MissingFromModel,
                (Some(x), Some(y)) if x.shape != y.shape => Mismatch::Shape {
                    model: x.shape.clone(),
                    other: y.shape.clone(),
                },
                (Some(x), Some(y)) if x.dtype.is_mergeable() != y.dtype.is_mergeable() => {
                    Mismatch::Dtype {
                        model: x.dtype,
                        other: y.dtype,
                    }
                }
                _ => continue,
            };
            return Err(fail(name, mismatch));
        }
        Ok(())
    }
}
