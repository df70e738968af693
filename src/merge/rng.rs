//! Counter-based randomness for DARE and DELLA.
//!
//! Each draw is a pure hash of (seed, tensor name, model index, element
//! index), so the value an element gets does not depend on chunking, thread
//! count or the order tensors are processed in: same seed, same bytes.
//! The draws differ from torch's `bernoulli` (mergekit), so the masks differ
//! from mergekit's element by element while having the same distribution.

/// SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a tensor name (stable across runs and platforms).
pub fn name_hash(name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The random stream of one model's task vector in one tensor.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    key: u64,
}

impl Stream {
    /// The stream of `model` in `tensor` under `seed`: the same three give
    /// the same draws on every run and thread count.
    pub fn new(seed: u64, tensor: &str, model: usize) -> Stream {
        let k = mix64(seed ^ 0x5eed_0000_0000_0000);
        let k = mix64(k ^ name_hash(tensor));
        Stream {
            key: mix64(k ^ (model as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }

    /// Uniform draw in `[0, 1)` with 24 bits for element `index`.
    #[inline(always)]
    pub fn uniform(&self, index: usize) -> f32 {
        let h = mix64(
            self.key
                .wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        );
        (h >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// Bernoulli draw: true with probability `p`.
    #[inline(always)]
    pub fn keep(&self, index: usize, p: f32) -> bool {
        self.uniform(index) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_roughly_uniform_and_stream_dependent() {
        let a = Stream::new(1, "w", 0);
        let b = Stream::new(2, "w", 0);
        let c = Stream::new(1, "w", 1);
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| f64::from(a.uniform(i))).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let same_ab = (0..1000).filter(|&i| a.uniform(i) == b.uniform(i)).count();
        let same_ac = (0..1000).filter(|&i| a.uniform(i) == c.uniform(i)).count();
        assert!(same_ab < 5 && same_ac < 5);
        assert_eq!(a.uniform(123), Stream::new(1, "w", 0).uniform(123));
    }
}
