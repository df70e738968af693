//! Running a hot loop with the widest vector instructions the CPU has.
//!
//! The crate is compiled for the baseline of its target (SSE2 on x86-64),
//! so that one binary runs on any machine. The few loops that dominate a
//! merge are compiled a second and third time for AVX2 and AVX-512 and
//! picked at run time (`dispatch!`); `std` caches the CPU check, so the
//! choice costs a load and a branch per call. The variants run the same
//! IEEE operations in the same order (Rust never fuses a multiply and an
//! add on its own), so they give the same bits: only the speed differs.

/// Evaluate a call to an `#[inline(always)]` function, compiled with
/// AVX-512 or AVX2 enabled when the CPU has them, plainly otherwise.
///
/// ```text
/// crate::simd::dispatch!(body::<N>(a, b));
/// ```
macro_rules! dispatch {
    ($f:ident $(:: < $($g:tt),* >)? ($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
            fn wide<R>(run: impl FnOnce() -> R) -> R {
                run()
            }
            #[target_feature(enable = "avx2")]
            fn avx2<R>(run: impl FnOnce() -> R) -> R {
                run()
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the CPU has the features `wide` is compiled for.
                unsafe { wide(#[inline(always)] || $f $(:: < $($g),* >)? ($($arg),*)) }
            } else if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above, for AVX2.
                unsafe { avx2(#[inline(always)] || $f $(:: < $($g),* >)? ($($arg),*)) }
            } else {
                $f $(:: < $($g),* >)? ($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f $(:: < $($g),* >)? ($($arg),*)
        }
    }};
}
pub(crate) use dispatch;
