//! Accuracy of MLP checkpoints: per head, on the test samples of that
//! head's classes, and joint: the argmax over all heads' logits put side by
//! side, on every test sample whose label some head covers. Joint accuracy
//! is what a merged multi-task model is worth when nobody tells it which
//! task a sample belongs to; per-head accuracy is the easier, task-aware
//! number.

use crate::mlp::{MlpModel, Result, Samples};

/// Accuracy of one head.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadAccuracy {
    /// The head's index in the checkpoint.
    pub head: usize,
    /// The labels it predicts, in its output order.
    pub classes: Vec<u32>,
    /// Test samples of its classes it got right.
    pub correct: usize,
    /// Test samples of its classes.
    pub total: usize,
    /// `correct / total`, 0 when there is no sample.
    pub accuracy: f64,
}

/// An evaluation of one model on one set of samples.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Where the model came from (for display).
    pub model: String,
    /// Where the data came from.
    pub data: String,
    /// Accuracy of each head on its own classes.
    pub heads: Vec<HeadAccuracy>,
    /// Samples the joint argmax got right.
    pub joint_correct: usize,
    /// Samples whose label some head covers.
    pub joint_total: usize,
    /// `joint_correct / joint_total`, 0 when there is no sample.
    pub joint_accuracy: f64,
}

fn ratio(c: usize, t: usize) -> f64 {
    if t == 0 {
        0.0
    } else {
        c as f64 / t as f64
    }
}

/// Evaluate `model` on `samples` (normally the test split). `model_name` and
/// `data_name` only label the report.
pub fn evaluate(
    model: &MlpModel,
    samples: &Samples,
    model_name: &str,
    data_name: &str,
) -> Result<EvalReport> {
    if samples.dim != model.n_in() {
        return Err(crate::mlp::MlpError::Incompatible(format!(
            "{data_name}: samples have {} features, {model_name} reads {}",
            samples.dim,
            model.n_in()
        )));
    }
    let mut heads: Vec<HeadAccuracy> = model
        .heads
        .iter()
        .enumerate()
        .map(|(h, head)| HeadAccuracy {
            head: h,
            classes: head.classes.clone(),
            correct: 0,
            total: 0,
            accuracy: 0.0,
        })
        .collect();
    let (mut jc, mut jt) = (0, 0);
    const BATCH: usize = 256;
    let mut start = 0;
    while start < samples.len() {
        let n = BATCH.min(samples.len() - start);
        let logits = model.forward(
            &samples.x[start * samples.dim..(start + n) * samples.dim],
            n,
        );
        for r in 0..n {
            let label = samples.y[start + r];
            let mut best: Option<(f32, u32)> = None;
            for (h, head) in model.heads.iter().enumerate() {
                let k = head.classes.len();
                let z = &logits[h][r * k..(r + 1) * k];
                let mut hb: Option<(f32, u32)> = None;
                for (j, &v) in z.iter().enumerate() {
                    if hb.is_none_or(|b| v > b.0) {
                        hb = Some((v, head.classes[j]));
                    }
                }
                if let Some(hb) = hb {
                    if head.classes.contains(&label) {
                        heads[h].total += 1;
                        heads[h].correct += usize::from(hb.1 == label);
                    }
                    if best.is_none_or(|b| hb.0 > b.0) {
                        best = Some(hb);
                    }
                }
            }
            if model.heads.iter().any(|h| h.classes.contains(&label)) {
                jt += 1;
                jc += usize::from(best.map(|b| b.1) == Some(label));
            }
        }
        start += n;
    }
    for h in &mut heads {
        h.accuracy = ratio(h.correct, h.total);
    }
    Ok(EvalReport {
        model: model_name.to_string(),
        data: data_name.to_string(),
        heads,
        joint_correct: jc,
        joint_total: jt,
        joint_accuracy: ratio(jc, jt),
    })
}

/// Load a checkpoint folder and evaluate it on the test split of `data`
/// (the bundled digits when `None`): what `smelt eval MODEL [--data FILE]`
/// does.
pub fn evaluate_path(
    model: &std::path::Path,
    data: Option<&std::path::Path>,
) -> Result<EvalReport> {
    let m = MlpModel::load(model)?;
    let ds = crate::mlp::Dataset::load_or_builtin(data)?;
    let test = ds.split(crate::mlp::Split::Test);
    evaluate(
        &m,
        &test,
        &model.display().to_string(),
        &format!("{} (test split)", ds.source.display()),
    )
}

impl EvalReport {
    /// Mean of the per-head accuracies.
    pub fn mean_head_accuracy(&self) -> f64 {
        self.heads.iter().map(|h| h.accuracy).sum::<f64>() / self.heads.len().max(1) as f64
    }
}

/// `0-4` for a contiguous run, else `0,2,7`.
pub fn classes_label(c: &[u32]) -> String {
    let contiguous = c.windows(2).all(|w| w[1] == w[0] + 1);
    match (c.first(), c.last()) {
        (Some(a), Some(b)) if contiguous && c.len() > 2 => format!("{a}-{b}"),
        _ => c.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
    }
}
