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

/// A safetensors element type: the `safetensors` crate's own list, so that
/// every type a checkpoint may hold opens (the 8-, 6- and 4-bit float
/// formats too). Four of them are converted and merged
/// ([`Dtype::is_mergeable`]); every other one is copied through unchanged.
///
/// The constants name the types smelt's own code uses; any other comes from
/// the crate's enum: `Dtype::from(safetensors::Dtype::F8_E8M0)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Dtype(safetensors::Dtype);

impl Dtype {
    /// 64-bit float.
    pub const F64: Dtype = Dtype(safetensors::Dtype::F64);
    /// 32-bit float.
    pub const F32: Dtype = Dtype(safetensors::Dtype::F32);
    /// 16-bit IEEE half float.
    pub const F16: Dtype = Dtype(safetensors::Dtype::F16);
    /// bfloat16: f32's exponent, 8 bits of mantissa.
    pub const BF16: Dtype = Dtype(safetensors::Dtype::BF16);
    /// 64-bit integer (copied through, never merged).
    pub const I64: Dtype = Dtype(safetensors::Dtype::I64);
    /// 32-bit integer (copied through).
    pub const I32: Dtype = Dtype(safetensors::Dtype::I32);
    /// 16-bit integer (copied through).
    pub const I16: Dtype = Dtype(safetensors::Dtype::I16);
    /// 8-bit integer (copied through).
    pub const I8: Dtype = Dtype(safetensors::Dtype::I8);
    /// 8-bit unsigned integer (copied through).
    pub const U8: Dtype = Dtype(safetensors::Dtype::U8);
    /// Boolean (copied through).
    pub const BOOL: Dtype = Dtype(safetensors::Dtype::BOOL);

    /// The name safetensors headers use (`"BF16"`, `"F8_E4M3"`, ...).
    pub fn name(self) -> &'static str {
        // The crate spells its types only through `Display` (and serde):
        // each name is made once and kept, one per type.
        use std::sync::{Mutex, OnceLock};
        type Names = Vec<(safetensors::Dtype, &'static str)>;
        static NAMES: OnceLock<Mutex<Names>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&(_, n)) = names.iter().find(|(d, _)| *d == self.0) {
            return n;
        }
        let n: &'static str = Box::leak(self.0.to_string().into_boxed_str());
        names.push((self.0, n));
        n
    }
    /// Parse a header dtype name; `None` if the `safetensors` crate does
    /// not know it.
    pub fn parse(s: &str) -> Option<Dtype> {
        use serde::de::{value::Error, Deserialize, IntoDeserializer};
        let de: serde::de::value::StrDeserializer<'_, Error> = s.into_deserializer();
        safetensors::Dtype::deserialize(de).ok().map(Dtype)
    }
    /// Bits per element (4 for F4, 6 for the F6 types).
    pub fn bits(self) -> usize {
        self.0.bitsize()
    }
    /// Bytes per element, rounded up for the sub-byte types (F4, F6_*):
    /// the size of a whole tensor is [`Dtype::nbytes`].
    pub fn size(self) -> usize {
        self.bits().div_ceil(8)
    }
    /// Bytes of a tensor of this type and shape, as the `safetensors` crate
    /// counts them; `None` when the count overflows or a sub-byte tensor
    /// does not fill whole bytes.
    pub fn nbytes(self, shape: &[usize]) -> Option<usize> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let bits = numel.checked_mul(self.bits())?;
        bits.is_multiple_of(8).then_some(bits / 8)
    }
    /// Whether tensors of this type are merged (F64, F32, F16, BF16); all
    /// others are copied through unchanged.
    pub fn is_mergeable(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
    /// The `safetensors` crate's value.
    pub fn to_safetensors(self) -> safetensors::Dtype {
        self.0
    }
}

impl From<safetensors::Dtype> for Dtype {
    fn from(d: safetensors::Dtype) -> Dtype {
        Dtype(d)
    }
}

impl From<Dtype> for safetensors::Dtype {
    fn from(d: Dtype) -> safetensors::Dtype {
        d.0
    }
}

impl std::hash::Hash for Dtype {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(&self.0).hash(state);
    }
}

impl std::fmt::Debug for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

/// Convert `src` into little-endian bytes of `dtype` (round to nearest even).
///
/// Errors when `dtype` is not a float type or `out` is not exactly
/// `src.len() * dtype.size()` bytes; both are programming errors in the
/// caller, reported rather than panicking.
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
        use safetensors::Dtype as St;
        let all = [
            St::BOOL,
            St::F4,
            St::F6_E2M3,
            St::F6_E3M2,
            St::U8,
            St::I8,
            St::F8_E5M2,
            St::F8_E4M3,
            St::F8_E8M0,
            St::I16,
            St::U16,
            St::F16,
            St::BF16,
            St::I32,
            St::U32,
            St::F32,
            St::F64,
            St::I64,
            St::U64,
        ];
        for st in all {
            let d = Dtype::from(st);
            assert_eq!(d.name(), st.to_string());
            assert_eq!(Dtype::parse(d.name()), Some(d));
            assert_eq!(d.bits(), st.bitsize());
        }
        assert_eq!(Dtype::parse("F8_E4M3"), Some(Dtype::from(St::F8_E4M3)));
        assert_eq!(Dtype::parse("BOOL"), Some(Dtype::BOOL));
        assert_eq!(Dtype::parse("bf16"), None);
        assert_eq!(Dtype::parse("C64"), None);
        assert_eq!(format!("{:?}", Dtype::BF16), "BF16");
    }

    #[test]
    fn sizes_of_sub_byte_types() {
        let f4 = Dtype::from(safetensors::Dtype::F4);
        assert_eq!(f4.nbytes(&[3, 2]), Some(3));
        assert_eq!(f4.nbytes(&[3]), None, "1.5 bytes");
        assert_eq!(f4.size(), 1);
        let f6 = Dtype::from(safetensors::Dtype::F6_E3M2);
        assert_eq!(f6.nbytes(&[4]), Some(3));
        assert_eq!(Dtype::BF16.nbytes(&[2, 3]), Some(12));
        assert_eq!(Dtype::F32.nbytes(&[usize::MAX, 2]), None);
        assert_eq!(Dtype::F32.nbytes(&[]), Some(4));
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
