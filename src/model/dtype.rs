//! Element types and their conversion to and from f32, a chunk at a time.

use super::Result;

/// A safetensors element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
    F8E4M3,
    F8E5M2,
}

impl Dtype {
    /// The name safetensors headers use (`"BF16"`, `"F8_E4M3"`, ...).
    pub fn name(self) -> &'static str {
        todo!()
    }
    /// Parse a header dtype name; `None` if unknown.
    pub fn parse(s: &str) -> Option<Dtype> {
        let _ = s;
        todo!()
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        todo!()
    }
    /// Whether tensors of this type are merged (F64, F32, F16, BF16); all
    /// others are copied through unchanged.
    pub fn is_mergeable(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

/// Convert little-endian `bytes` of `dtype` into `out` (`bytes.len() ==
/// out.len() * dtype.size()`). Only mergeable dtypes.
pub fn to_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    let _ = (dtype, bytes, out);
    todo!()
}

/// Convert `src` into little-endian bytes of `dtype` (round to nearest even).
pub fn from_f32(dtype: Dtype, src: &[f32], out: &mut [u8]) -> Result<()> {
    let _ = (dtype, src, out);
    todo!()
}
