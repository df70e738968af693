//! Deterministic training of small MLPs: seeded by [`Rng`], He
//! initialisation, mini-batch Adam on softmax cross-entropy, one thread,
//! with the batch algebra in `ndarray`.
//! Same seed and data, same bytes.

use super::{into_vec, Layer, Rng, Samples};
use ndarray::{Array2, ArrayView1, ArrayViewMut1, Axis, Zip};

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

/// Adam's moment estimates for one parameter tensor.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
}

/// Adam's constants and the step's bias corrections.
struct AdamStep {
    b1: f32,
    b2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    lr: f32,
    weight_decay: f32,
}

impl AdamStep {
    /// One AdamW update of `p` by its gradient `g` (same length).
    fn apply(&self, p: &mut [f32], g: &[f32], st: &mut Adam) {
        Zip::from(ArrayViewMut1::from(p))
            .and(ArrayView1::from(g))
            .and(ArrayViewMut1::from(&mut st.m[..]))
            .and(ArrayViewMut1::from(&mut st.v[..]))
            .for_each(|p, &g, m, v| {
                *m = self.b1 * *m + (1.0 - self.b1) * g;
                *v = self.b2 * *v + (1.0 - self.b2) * g * g;
                let mh = *m / self.bc1;
                let vh = *v / self.bc2;
                *p -= self.lr * (mh / (vh.sqrt() + self.eps) + self.weight_decay * *p);
            });
    }
}

/// The gradient of the mean softmax cross-entropy with respect to the
/// logits `z` (`[n, k]`) for targets `target` (one per row), and the summed
/// loss.
fn softmax_xent(z: &Array2<f32>, target: impl Iterator<Item = usize>) -> (Array2<f32>, f64) {
    let n = z.nrows();
    let mut grad = Array2::zeros(z.raw_dim());
    let mut total = 0.0f64;
    for ((zr, mut gr), t) in z.rows().into_iter().zip(grad.rows_mut()).zip(target) {
        let mx = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let se: f32 = zr.iter().map(|v| (v - mx).exp()).sum();
        for (c, (g, &zc)) in gr.iter_mut().zip(&zr).enumerate() {
            let p = (zc - mx).exp() / se;
            *g = (p - f32::from(u8::from(c == t))) / n as f32;
        }
        total += f64::from(se.ln() + mx - zr[t]);
    }
    (grad, total)
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
        .map(|l| [Adam::new(l.weight.len()), Adam::new(l.bias.len())])
        .collect();
    let (b1, b2) = (0.9f32, 0.999f32);
    let mut step = 0i32;
    let mut order = idx.clone();
    let mut last_loss = 0.0;
    let n_layers = layers.len();
    for _ in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0f64;
        for batch in order.chunks(cfg.batch.max(1)) {
            let n = batch.len();
            let mut x = Array2::zeros((n, data.dim));
            for (mut row, &i) in x.rows_mut().into_iter().zip(batch) {
                row.assign(&ArrayView1::from(data.row(i)).mapv(|v| v * input_scale));
            }
            // Forward, keeping every layer's input.
            let mut acts = vec![x];
            for (j, l) in layers.iter().enumerate() {
                let y = l.forward_batch(acts[j].view(), j + 1 < n_layers);
                acts.push(y);
            }
            let (mut grad, loss) = softmax_xent(&acts[n_layers], batch.iter().map(|&i| target[i]));
            total += loss;
            step += 1;
            let adam = AdamStep {
                b1,
                b2,
                eps: 1e-8,
                bc1: 1.0 - b1.powi(step),
                bc2: 1.0 - b2.powi(step),
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
            };
            for j in (0..n_layers).rev() {
                let input = &acts[j];
                // dL/dW = gradᵀ x, dL/db = column sums of grad.
                let gw = grad.t().dot(input);
                let gb = grad.sum_axis(Axis(0));
                // dL/dx = grad W, through the ReLU that made x.
                let gx = (j > cfg.freeze_below).then(|| {
                    let mut gx = grad.dot(&layers[j].weight_view());
                    Zip::from(&mut gx).and(input).for_each(|d, &a| {
                        if a <= 0.0 {
                            *d = 0.0;
                        }
                    });
                    gx
                });
                if j >= cfg.freeze_below {
                    let l = &mut layers[j];
                    let [ow, ob] = &mut opt[j];
                    let gw = into_vec(gw);
                    adam.apply(&mut l.weight, &gw, ow);
                    adam.apply(&mut l.bias, &into_vec(gb), ob);
                }
                match gx {
                    Some(g) => grad = g,
                    None => break,
                }
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
