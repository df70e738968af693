//! Parameter values once resolved for one tensor.

use std::collections::BTreeMap;

/// A resolved parameter value.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` or `false`.
    Bool(bool),
    /// A number (integers too).
    Float(f64),
}

impl ParamValue {
    /// The value as a number (`true` is 1).
    pub fn as_f64(self) -> f64 {
        match self {
            ParamValue::Float(x) => x,
            ParamValue::Bool(b) => f64::from(u8::from(b)),
        }
    }
    /// The value as a flag (any non-zero number is true).
    pub fn as_bool(self) -> bool {
        match self {
            ParamValue::Bool(b) => b,
            ParamValue::Float(x) => x != 0.0,
        }
    }
}

/// Named values, defaults already filled in from the method's spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamMap(pub BTreeMap<String, ParamValue>);

impl ParamMap {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<ParamValue> {
        self.0.get(name).copied()
    }
    /// The value as f64, or `default` when absent.
    pub fn f64_or(&self, name: &str, default: f64) -> f64 {
        self.get(name).map_or(default, ParamValue::as_f64)
    }
    /// The value as a flag, or `default` when absent.
    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, ParamValue::as_bool)
    }
    /// Set `name` to `v`, replacing what was there.
    pub fn set(&mut self, name: &str, v: ParamValue) {
        self.0.insert(name.to_string(), v);
    }
}

/// Everything a kernel needs to know about one output tensor's parameters.
#[derive(Clone, Debug, Default)]
pub struct TensorParams {
    /// The output tensor's name (random methods derive their stream from it
    /// and the seed, so results do not depend on order or threads).
    pub tensor: String,
    /// Method-wide parameters (`lambda`, `normalize`, `t`, ...).
    pub global: ParamMap,
    /// Per-model parameters (`weight`, `density`, ...), one map per non-base
    /// model in recipe order.
    pub models: Vec<ParamMap>,
    /// Seed for randomised methods.
    pub seed: u64,
}
