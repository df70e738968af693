//! f32 ⇄ half-precision conversion agrees with `half`'s rounding, for any
//! value and any alignment of the byte buffer.

use half::{bf16, f16};
use proptest::prelude::*;
use smelt::model::{from_f32, to_f32, Dtype};

/// Bitwise equality, treating every NaN as equal to every NaN.
fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Round-trip `xs` through `dtype` with the bytes placed at `shift`.
fn round_trip(dtype: Dtype, xs: &[f32], shift: usize) -> Vec<f32> {
    let n = xs.len() * dtype.size();
    let mut buf = vec![0u8; n + 8];
    from_f32(dtype, xs, &mut buf[shift..shift + n]).unwrap();
    let mut back = vec![0f32; xs.len()];
    to_f32(dtype, &buf[shift..shift + n], &mut back);
    back
}

proptest! {
    #[test]
    fn bf16_matches_half(bits in proptest::collection::vec(any::<u32>(), 0..300), shift in 0usize..8) {
        let xs: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        let back = round_trip(Dtype::BF16, &xs, shift);
        for (x, y) in xs.iter().zip(&back) {
            let want = bf16::from_f32(*x).to_f32();
            prop_assert!(same(*y, want), "{x:e}: got {y:e}, half gives {want:e}");
        }
    }

    #[test]
    fn f16_matches_half(bits in proptest::collection::vec(any::<u32>(), 0..300), shift in 0usize..8) {
        let xs: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        let back = round_trip(Dtype::F16, &xs, shift);
        for (x, y) in xs.iter().zip(&back) {
            let want = f16::from_f32(*x).to_f32();
            prop_assert!(same(*y, want), "{x:e}: got {y:e}, half gives {want:e}");
        }
    }

    /// Values that are exactly representable survive unchanged, bit for bit.
    #[test]
    fn representable_values_survive(halves in proptest::collection::vec(any::<u16>(), 0..300), shift in 0usize..8) {
        for dtype in [Dtype::BF16, Dtype::F16] {
            let xs: Vec<f32> = halves
                .iter()
                .map(|&h| if dtype == Dtype::BF16 { bf16::from_bits(h).to_f32() } else { f16::from_bits(h).to_f32() })
                .filter(|x| !x.is_nan())
                .collect();
            let back = round_trip(dtype, &xs, shift);
            for (x, y) in xs.iter().zip(&back) {
                prop_assert_eq!(x.to_bits(), y.to_bits());
            }
        }
    }

    #[test]
    fn f32_and_f64_are_exact(bits in proptest::collection::vec(any::<u32>(), 0..100), shift in 0usize..8) {
        let xs: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
        for dtype in [Dtype::F32, Dtype::F64] {
            let back = round_trip(dtype, &xs, shift);
            for (x, y) in xs.iter().zip(&back) {
                prop_assert!(same(*x, *y));
            }
        }
    }
}
