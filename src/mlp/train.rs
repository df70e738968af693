//! Deterministic training of small MLPs: a seeded generator written here
//! (so results do not depend on a crate's algorithm changing), He
//! initialisation, mini-batch Adam on softmax cross-entropy, one thread.
//! Same seed and data, same bytes.

use super::{Layer, Samples};

/// xoshiro256** seeded through splitmix64: small, fast, and fixed forever.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded with `seed` (same seed, same numbers).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box-Muller; one value per call, for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A layer with He-normal weights (std `sqrt(2 / n_in)`) and zero bias.
pub fn init_layer(n_in: usize, n_out: usize, rng: &mut Rng) -> Layer {
    let std = (2.0 / n_in.max(1) as f64).sqrt();
    Layer {
        n_in,
        n_out,
        weight: (0..n_in * n_out)
            .map(|_| (rng.normal() * std) as f32)
            .collect(),
        bias: vec![0.0; n_out],
    }
}

/// Training hyper-parameters.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Passes over the training samples.
    pub epochs: usize,
    /// Samples per gradient step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Decoupled weight decay (AdamW), 0 for none.
    pub weight_decay: f32,
    /// Seed of the sample order.
    pub seed: u64,
    /// Layers below this index are frozen (0: train all).
    pub freeze_below: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch: 32,
            lr: 1e-3,
            weight_decay: 0.0,
            seed: 0,
            freeze_below: 0,
        }
    }
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Train a chain of layers (ReLU after all but the last) as a classifier:
/// output `j` stands for `classes[j]`; samples with other labels are
/// skipped. Inputs are multiplied by `input_scale`. Returns the mean loss of
/// the last epoch.
pub fn train_chain(
    layers: &mut [Layer],
    input_scale: f32,
    data: &Samples,
    classes: &[u32],
    cfg: &TrainConfig,
) -> f32 {
    let idx: Vec<usize> = (0..data.len())
        .filter(|&i| classes.contains(&data.y[i]))
        .collect();
    let target: Vec<usize> = (0..data.len())
        .map(|i| classes.iter().position(|&c| c == data.y[i]).unwrap_or(0))
        .collect();
    let mut rng = Rng::new(cfg.seed);
    let mut opt: Vec<[Adam; 2]> = layers
        .iter()
        .map(|l| {
            [
                Adam {
                    m: vec![0.0; l.weight.len()],
                    v: vec![0.0; l.weight.len()],
                },
                Adam {
                    m: vec![0.0; l.bias.len()],
                    v: vec![0.0; l.bias.len()],
                },
            ]
        })
        .collect();
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut step = 0i32;
    let mut order = idx.clone();
    let mut last_loss = 0.0;
    let n_layers = layers.len();
    for _ in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0f64;
        for batch in order.chunks(cfg.batch.max(1)) {
            let n = batch.len();
            let mut x = Vec::with_capacity(n * data.dim);
            for &i in batch {
                x.extend(data.row(i).iter().map(|v| v * input_scale));
            }
            // Forward, keeping every layer's input.
            let mut acts = vec![x];
            for (j, l) in layers.iter().enumerate() {
                let y = l.forward(&acts[j], n, j + 1 < n_layers);
                acts.push(y);
            }
            // Softmax cross-entropy gradient wrt logits.
            let k = classes.len();
            let logits = &acts[n_layers];
            let mut grad = vec![0.0f32; n * k];
            for (b, &i) in batch.iter().enumerate() {
                let z = &logits[b * k..(b + 1) * k];
                let mx = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let se: f32 = z.iter().map(|v| (v - mx).exp()).sum();
                for c in 0..k {
                    let p = (z[c] - mx).exp() / se;
                    grad[b * k + c] = (p - f32::from(u8::from(c == target[i]))) / n as f32;
                }
                total += f64::from(se.ln() + mx - z[target[i]]);
            }
            step += 1;
            let bc1 = 1.0 - b1.powi(step);
            let bc2 = 1.0 - b2.powi(step);
            for j in (0..n_layers).rev() {
                let l = &layers[j];
                let input = &acts[j];
                let mut gw = vec![0.0f32; l.weight.len()];
                let mut gb = vec![0.0f32; l.n_out];
                let mut gx = if j > cfg.freeze_below {
                    vec![0.0f32; n * l.n_in]
                } else {
                    Vec::new()
                };
                for b in 0..n {
                    let xb = &input[b * l.n_in..(b + 1) * l.n_in];
                    for o in 0..l.n_out {
                        let g = grad[b * l.n_out + o];
                        if g == 0.0 {
                            continue;
                        }
                        gb[o] += g;
                        let row = o * l.n_in..(o + 1) * l.n_in;
                        for (w, xi) in gw[row.clone()].iter_mut().zip(xb) {
                            *w += g * xi;
                        }
                        if !gx.is_empty() {
                            let gxb = &mut gx[b * l.n_in..(b + 1) * l.n_in];
                            for (d, w) in gxb.iter_mut().zip(&l.weight[row]) {
                                *d += g * w;
                            }
                        }
                    }
                }
                // Backprop through the ReLU of the previous layer.
                if !gx.is_empty() {
                    for (d, a) in gx.iter_mut().zip(input) {
                        if *a <= 0.0 {
                            *d = 0.0;
                        }
                    }
                }
                if j >= cfg.freeze_below {
                    let l = &mut layers[j];
                    let [ow, ob] = &mut opt[j];
                    for (p, g, st) in [(&mut l.weight, &gw, ow), (&mut l.bias, &gb, ob)] {
                        for e in 0..p.len() {
                            st.m[e] = b1 * st.m[e] + (1.0 - b1) * g[e];
                            st.v[e] = b2 * st.v[e] + (1.0 - b2) * g[e] * g[e];
                            let mh = st.m[e] / bc1;
                            let vh = st.v[e] / bc2;
                            p[e] -= cfg.lr * (mh / (vh.sqrt() + eps) + cfg.weight_decay * p[e]);
                        }
                    }
                }
                if gx.is_empty() {
                    break;
                }
                grad = gx;
            }
        }
        last_loss = (total / idx.len().max(1) as f64) as f32;
    }
    last_loss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_roughly_normal() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
        let ys: Vec<f64> = (0..20000).map(|_| b.normal()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn training_learns_a_separable_problem() {
        // Two clusters in 2-D; a 2-layer net must separate them.
        let mut rng = Rng::new(1);
        let mut s = Samples {
            dim: 2,
            ..Samples::default()
        };
        for i in 0..200 {
            let c = (i % 2) as u32;
            let cx = if c == 0 { -1.0 } else { 1.0 };
            s.x.push(cx + 0.3 * rng.normal() as f32);
            s.x.push(0.3 * rng.normal() as f32);
            s.y.push(c + 3);
        }
        let mut layers = vec![init_layer(2, 8, &mut rng), init_layer(8, 2, &mut rng)];
        let cfg = TrainConfig {
            epochs: 30,
            lr: 0.01,
            ..TrainConfig::default()
        };
        let loss = train_chain(&mut layers, 1.0, &s, &[3, 4], &cfg);
        assert!(loss < 0.1, "loss {loss}");
    }
}
