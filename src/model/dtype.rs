//! Element types and their conversion to and from f32, a chunk at a time.
//!
//! This is the hot path of every merge: each input element passes through
//! [`to_f32`] once and each output element through [`from_f32`] once. Two
//! things make it fast:
//!
//! - half-precision types go through `half`'s slice conversions, which use
//!   the CPU's F16C instructions when present and loops the compiler can
//!   vectorise otherwise;
//! - memory-mapped tensor data is not necessarily aligned (a safetensors
//!   file packs tensors back to back after a header of any length that is a
//!   multiple of 8, so a BF16 tensor with an odd element count leaves the next
//!   one at an odd address). Aligned input is reinterpreted in place with
//!   `bytemuck`; unaligned input is copied through a small stack buffer first,
//!   which is a `memcpy` and costs little next to the conversion.
//!
//! All byte data is little-endian, as safetensors specifies.

use super::{ModelError, Result};
use half::{f16, slice::HalfFloatSliceExt};

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

/// Every dtype, for parsing and tests.
const ALL: [Dtype; 15] = [
    Dtype::F64,
    Dtype::F32,
    Dtype::F16,
    Dtype::BF16,
    Dtype::I64,
    Dtype::I32,
    Dtype::I16,
    Dtype::I8,
    Dtype::U64,
    Dtype::U32,
    Dtype::U16,
    Dtype::U8,
    Dtype::Bool,
    Dtype::F8E4M3,
    Dtype::F8E5M2,
];

impl Dtype {
    /// The name safetensors headers use (`"BF16"`, `"F8_E4M3"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "F64",
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U64 => "U64",
            Dtype::U32 => "U32",
            Dtype::U16 => "U16",
            Dtype::U8 => "U8",
            Dtype::Bool => "BOOL",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
        }
    }
    /// Parse a header dtype name; `None` if unknown.
    pub fn parse(s: &str) -> Option<Dtype> {
        ALL.iter().copied().find(|d| d.name() == s)
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
        }
    }
    /// Whether tensors of this type are merged (F64, F32, F16, BF16); all
    /// others are copied through unchanged.
    pub fn is_mergeable(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Elements converted per step through the stack buffer on the unaligned
/// paths: 8 KiB of `u16`, small enough for any thread's stack, large enough
/// that the per-step overhead vanishes.
const STEP: usize = 4096;

/// Convert little-endian `bytes` of `dtype` into `out` (`bytes.len() ==
/// out.len() * dtype.size()`). Only mergeable dtypes.
///
/// Callers check [`Dtype::is_mergeable`] first ([`super::Model::read_f32`]
/// does); for any other dtype `out` is filled with NaN so that a missed check
/// shows in the numbers instead of passing silently. Likewise a length
/// mismatch converts only the common prefix.
pub fn to_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    let n = out.len().min(bytes.len() / dtype.size());
    let (bytes, out) = (&bytes[..n * dtype.size()], &mut out[..n]);
    match dtype {
        // On a little-endian machine the f32 bytes are already the values:
        // copying into `out`'s bytes is alignment-free.
        Dtype::F32 => {
            bytemuck::cast_slice_mut::<f32, u8>(out).copy_from_slice(bytes);
            if cfg!(target_endian = "big") {
                for v in out.iter_mut() {
                    *v = f32::from_bits(u32::from_le(v.to_bits()));
                }
            }
        }
        Dtype::F16 => half_to_f32::<f16>(bytes, out),
        // bf16 is the top half of an f32: a shift, which vectorises (and
        // needs no alignment), several times faster than a per-value call.
        Dtype::BF16 => match bytemuck::try_cast_slice::<u8, u16>(bytes) {
            Ok(src) if cfg!(target_endian = "little") => {
                crate::simd::dispatch!(bf16_bits_to_f32(src, out));
            }
            _ => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
                }
            }
        },
        Dtype::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                *o = f64::from_le_bytes(b) as f32;
            }
        }
        _ => out.fill(f32::NAN),
    }
}

#[inline(always)]
fn bf16_bits_to_f32(src: &[u16], out: &mut [f32]) {
    for (o, &h) in out.iter_mut().zip(src) {
        *o = f32::from_bits(u32::from(h) << 16);
    }
}

/// `dst[i] = f(src[i])`, a loop to compile for wide vectors.
#[inline(always)]
fn map_into<A: Copy, B>(src: &[A], dst: &mut [B], f: impl Fn(A) -> B) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = f(x);
    }
}

/// Half-precision bytes to f32: in place when aligned, through a stack
/// buffer when not.
fn half_to_f32<H>(bytes: &[u8], out: &mut [f32])
where
    H: bytemuck::Pod,
    [H]: HalfFloatSliceExt,
{
    if cfg!(target_endian = "little") {
        if let Ok(src) = bytemuck::try_cast_slice::<u8, H>(bytes) {
            src.convert_to_f32_slice(out);
            return;
        }
    }
    let mut buf = [H::zeroed(); STEP];
    for (src, dst) in bytes.chunks(STEP * 2).zip(out.chunks_mut(STEP)) {
        let tmp = &mut buf[..dst.len()];
        bytemuck::cast_slice_mut::<H, u8>(tmp).copy_from_slice(src);
        if cfg!(target_endian = "big") {
            for h in bytemuck::cast_slice_mut::<H, u16>(tmp) {
                *h = u16::from_le(*h);
            }
        }
        tmp.convert_to_f32_slice(dst);
    }
}

/// Convert `src` into little-endian bytes of `dtype` (round to nearest even).
///
/// Errors when `dtype` is not a float type or `out` is not exactly
/// `src.len() * dtype.size()` bytes; both are programming errors in the
/// caller, reported rather than panicking.
/// f32 to bf16, rounding to nearest even, NaN kept NaN (quieted): the same
/// results as `half`, written branch-free so it vectorises.
fn f32_to_bf16(src: &[f32], out: &mut [u8]) {
    let convert = |x: f32| -> u16 {
        let b = x.to_bits();
        let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
        let nan = (b >> 16) | 0x40;
        if x.is_nan() {
            nan as u16
        } else {
            rounded as u16
        }
    };
    match bytemuck::try_cast_slice_mut::<u8, u16>(out) {
        Ok(dst) if cfg!(target_endian = "little") => {
            crate::simd::dispatch!(map_into(src, dst, convert));
        }
        _ => {
            for (c, &x) in out.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&convert(x).to_le_bytes());
            }
        }
    }
}

pub fn from_f32(dtype: Dtype, src: &[f32], out: &mut [u8]) -> Result<()> {
    if !dtype.is_mergeable() {
        return Err(conversion_error(format!(
            "cannot convert f32 to {dtype}: not a float type"
        )));
    }
    if out.len() != src.len() * dtype.size() {
        return Err(conversion_error(format!(
            "{} f32 values need {} bytes of {dtype}, got {}",
            src.len(),
            src.len() * dtype.size(),
            out.len()
        )));
    }
    match dtype {
        Dtype::F32 => {
            out.copy_from_slice(bytemuck::cast_slice::<f32, u8>(src));
            if cfg!(target_endian = "big") {
                for c in out.chunks_exact_mut(4) {
                    c.reverse();
                }
            }
        }
        Dtype::F16 => f32_to_half::<f16>(src, out),
        Dtype::BF16 => f32_to_bf16(src, out),
        Dtype::F64 => {
            for (v, c) in src.iter().zip(out.chunks_exact_mut(8)) {
                c.copy_from_slice(&f64::from(*v).to_le_bytes());
            }
        }
        _ => unreachable!("non-float dtypes are rejected above"),
    }
    Ok(())
}

/// f32 to half-precision bytes: in place when `out` is aligned, through a
/// stack buffer when not.
fn f32_to_half<H>(src: &[f32], out: &mut [u8])
where
    H: bytemuck::Pod,
    [H]: HalfFloatSliceExt,
{
    if cfg!(target_endian = "little") {
        if let Ok(dst) = bytemuck::try_cast_slice_mut::<u8, H>(out) {
            dst.convert_from_f32_slice(src);
            return;
        }
    }
    let mut buf = [H::zeroed(); STEP];
    for (s, dst) in src.chunks(STEP).zip(out.chunks_mut(STEP * 2)) {
        let tmp = &mut buf[..s.len()];
        tmp.convert_from_f32_slice(s);
        if cfg!(target_endian = "big") {
            for h in bytemuck::cast_slice_mut::<H, u16>(tmp) {
                *h = h.to_le();
            }
        }
        dst.copy_from_slice(bytemuck::cast_slice::<H, u8>(tmp));
    }
}

fn conversion_error(msg: String) -> ModelError {
    ModelError::Format {
        path: std::path::PathBuf::from("<f32 conversion>"),
        msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in ALL {
            assert_eq!(Dtype::parse(d.name()), Some(d));
        }
        assert_eq!(Dtype::parse("F8_E4M3"), Some(Dtype::F8E4M3));
        assert_eq!(Dtype::parse("BOOL"), Some(Dtype::Bool));
        assert_eq!(Dtype::parse("bf16"), None);
        assert_eq!(Dtype::parse("C64"), None);
    }

    /// Every float dtype, every alignment of the byte buffer, and lengths
    /// that cross the stack-buffer step: values must come back the same.
    #[test]
    fn unaligned_matches_aligned() {
        let vals: Vec<f32> = (0..(STEP * 2 + 37))
            // Integers of at most 8 bits times powers of two: exact in bf16.
            .map(|i| ((i % 256) as f32 - 128.0) * (2f32).powi(i as i32 % 7 - 3))
            .collect();
        for d in [Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16] {
            let mut bytes = vec![0u8; vals.len() * d.size()];
            from_f32(d, &vals, &mut bytes).unwrap();
            let mut want = vec![0f32; vals.len()];
            to_f32(d, &bytes, &mut want);
            for shift in 0..8 {
                // Same bytes at offset `shift` of a fresh buffer, both for
                // reading and for writing.
                let mut shifted = vec![0u8; bytes.len() + 8];
                shifted[shift..shift + bytes.len()].copy_from_slice(&bytes);
                let mut got = vec![0f32; vals.len()];
                to_f32(d, &shifted[shift..shift + bytes.len()], &mut got);
                assert!(got == want, "{d} read at shift {shift}");
                let mut written = vec![0u8; bytes.len() + 8];
                from_f32(d, &vals, &mut written[shift..shift + bytes.len()]).unwrap();
                assert!(
                    written[shift..shift + bytes.len()] == bytes[..],
                    "{d} write"
                );
            }
            // These values are exact in every float type here.
            assert!(want == vals, "{d}");
        }
    }

    #[test]
    fn known_bit_patterns() {
        let mut out = [0u8; 4];
        from_f32(Dtype::BF16, &[1.0, -2.0], &mut out).unwrap();
        assert_eq!(out, [0x80, 0x3f, 0x00, 0xc0]);
        from_f32(Dtype::F16, &[1.0, -2.0], &mut out).unwrap();
        assert_eq!(out, [0x00, 0x3c, 0x00, 0xc0]);
        // Round to nearest even: 1 + 2^-8 lies halfway between two bf16
        // values and goes to the even one (1.0).
        from_f32(Dtype::BF16, &[1.0 + 1.0 / 256.0], &mut out[..2]).unwrap();
        assert_eq!(&out[..2], &[0x80, 0x3f]);
    }

    #[test]
    fn non_float_is_refused() {
        let mut out = [0u8; 4];
        assert!(from_f32(Dtype::I32, &[1.0], &mut out).is_err());
        assert!(from_f32(Dtype::F32, &[1.0, 2.0], &mut out).is_err());
        let mut f = [0f32; 1];
        to_f32(Dtype::I32, &[1, 0, 0, 0], &mut f);
        assert!(f[0].is_nan());
    }
}
