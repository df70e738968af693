//! `smelt eval MODEL [--data FILE] [--json]`: the library's
//! [`EvalReport`] as lines for people, or as JSON for scripts.

use super::{emit, CliError, CliResult};
use smelt::eval::{classes_label, EvalReport};
use std::fmt::Write as _;
use std::path::Path;

/// `smelt eval MODEL [--data FILE] [--json]`.
pub fn run(path: &Path, data: Option<&Path>, json: bool) -> CliResult {
    let report = smelt::eval::evaluate_path(path, data).map_err(CliError::input)?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(CliError::internal)?;
        emit(&format!("{text}\n"))
    } else {
        emit(&render(&report))
    }
}

/// One line per head, then the joint accuracy: percentages with the
/// counts behind them, so a 100% on two samples reads as what it is.
pub fn render(r: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model: {}", r.model);
    let _ = writeln!(s, "data:  {}", r.data);
    for h in &r.heads {
        let _ = writeln!(
            s,
            "head {:>2} {:<24} {:>6.2}%  ({}/{})",
            h.head,
            format!("classes {}", classes_label(&h.classes)),
            100.0 * h.accuracy,
            h.correct,
            h.total
        );
    }
    let _ = writeln!(
        s,
        "joint   {:<24} {:>6.2}%  ({}/{})",
        "argmax over all heads",
        100.0 * r.joint_accuracy,
        r.joint_correct,
        r.joint_total
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt::eval::HeadAccuracy;

    #[test]
    fn lines_per_head_and_joint() {
        let r = EvalReport {
            model: "m".into(),
            data: "d".into(),
            heads: vec![
                HeadAccuracy {
                    head: 0,
                    classes: vec![0, 1, 2, 3, 4],
                    correct: 3,
                    total: 4,
                    accuracy: 0.75,
                },
                HeadAccuracy {
                    head: 1,
                    classes: vec![5, 7],
                    correct: 1,
                    total: 2,
                    accuracy: 0.5,
                },
            ],
            joint_correct: 3,
            joint_total: 6,
            joint_accuracy: 0.5,
        };
        assert_eq!(
            render(&r),
            "model: m\n\
             data:  d\n\
             head  0 classes 0-4               75.00%  (3/4)\n\
             head  1 classes 5,7               50.00%  (1/2)\n\
             joint   argmax over all heads     50.00%  (3/6)\n"
        );
    }
}
