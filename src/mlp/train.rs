//! Deterministic training of small MLPs: seeded by [`Rng`], He
//! initialisation, mini-batch Adam on softmax cross-entropy, one thread,
//! with the batch algebra in `ndarray`.
//! Same seed and data, same bytes.

use super::{into_vec, Layer, Rng, Samples};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1, Zip};

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

/// One layer's gradients from `grad` (dL/dy, `[n, out]`) and its input `x`
/// (`[n, in]`): dL/dW = gradᵀ x, dL/db = the column sums of grad, and, when
/// `want_x`, dL/dx = grad W through the ReLU that made `x`.
///
/// Every sum runs over samples (for W and b) or outputs (for x) in index
/// order, one `scaled_add` at a time, not through a blocked matrix product:
/// the committed sample models are reproduced bit for bit from this order
/// on any CPU, where a blocked product's order follows the kernel that
/// matrixmultiply picks at run time. The layers are small, so this costs
/// little.
fn backward(
    grad: &Array2<f32>,
    x: &Array2<f32>,
    layer: &Layer,
    want_x: bool,
) -> (Array2<f32>, Array1<f32>, Option<Array2<f32>>) {
    let w = layer.weight_view();
    let mut gw = Array2::<f32>::zeros((layer.n_out, layer.n_in));
    let mut gb = Array1::<f32>::zeros(layer.n_out);
    let mut gx = want_x.then(|| Array2::<f32>::zeros(x.raw_dim()));
    for (b, (gr, xr)) in grad.rows().into_iter().zip(x.rows()).enumerate() {
        for (o, &g) in gr.iter().enumerate() {
            if g == 0.0 {
                continue;
            }
            gb[o] += g;
            gw.row_mut(o).scaled_add(g, &xr);
            if let Some(gx) = gx.as_mut() {
                gx.row_mut(b).scaled_add(g, &w.row(o));
            }
        }
    }
    if let Some(gx) = gx.as_mut() {
        Zip::from(gx).and(x).for_each(|d, &a| {
            if a <= 0.0 {
                *d = 0.0;
            }
        });
    }
    (gw, gb, gx)
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
                let (gw, gb, gx) = backward(&grad, input, &layers[j], j > cfg.freeze_below);
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
