//! Retrieval quality, measured exactly as `shared/data/README.md` defines it: for each
//! in-scope query, `rank` = 1 + the number of *other* FAQs scoring >= the gold FAQ (ties count
//! against the system); top-1, recall@3, MRR@10; and where there are out-of-scope queries,
//! the no-answer decision at the shipped confidence threshold and the AUROC of the confidence.

use serde::Serialize;

/// What retrieval said about one query: a score for every FAQ (index-aligned with the FAQ
/// list; FAQs it did not retrieve score 0) and the confidence of its best answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub scores: Vec<f32>,
    pub confidence: f32,
}

/// The figures `aia-chat eval` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub top1: f64,
    pub recall3: f64,
    pub mrr10: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_answer_precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_answer_recall: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_answer_f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_scope_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auroc: Option<f64>,
}

/// 1 + the number of other FAQs whose score is >= the gold FAQ's.
pub fn rank(scores: &[f32], gold: usize) -> usize {
    let g = scores[gold];
    1 + scores.iter().enumerate().filter(|(i, s)| *i != gold && **s >= g).count()
}

/// Area under the ROC curve of `confidence` separating in-scope (positive) from out-of-scope
/// queries; ties count one half.
pub fn auroc(in_scope: &[f32], out_of_scope: &[f32]) -> f64 {
    if in_scope.is_empty() || out_of_scope.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for p in in_scope {
        for n in out_of_scope {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (in_scope.len() as f64 * out_of_scope.len() as f64)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Computes the report from each query's gold FAQ (`None`: out of scope) and judgement, with
/// the no-answer decision taken at `threshold`.
pub fn report(queries: &[(Option<usize>, Judged)], threshold: f32) -> Report {
    let (mut n, mut top1, mut r3, mut mrr) = (0usize, 0usize, 0usize, 0.0f64);
    let (mut correct_answered, mut oos_rejected, mut rejected, mut oos) = (0usize, 0usize, 0usize, 0usize);
    let (mut conf_in, mut conf_out) = (Vec::new(), Vec::new());
    for (gold, judged) in queries {
        let answers = judged.confidence >= threshold;
        rejected += usize::from(!answers);
        match gold {
            Some(g) => {
                n += 1;
                let r = rank(&judged.scores, *g);
                top1 += usize::from(r == 1);
                r3 += usize::from(r <= 3);
                if r <= 10 {
                    mrr += 1.0 / r as f64;
                }
                correct_answered += usize::from(r == 1 && answers);
                conf_in.push(judged.confidence);
            }
            None => {
                oos += 1;
                oos_rejected += usize::from(!answers);
                conf_out.push(judged.confidence);
            }
        }
    }
    let mut report = Report {
        top1: ratio(top1, n),
        recall3: ratio(r3, n),
        mrr10: if n == 0 { 0.0 } else { mrr / n as f64 },
        no_answer_precision: None,
        no_answer_recall: None,
        no_answer_f1: None,
        in_scope_accuracy: None,
        auroc: None,
    };
    if oos > 0 {
        let p = ratio(oos_rejected, rejected);
        let r = ratio(oos_rejected, oos);
        report.no_answer_precision = Some(p);
        report.no_answer_recall = Some(r);
        report.no_answer_f1 = Some(if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) });
        report.in_scope_accuracy = Some(ratio(correct_answered, n));
        report.auroc = Some(auroc(&conf_in, &conf_out));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_count_ties_against_the_system() {
        assert_eq!(rank(&[0.5, 0.9, 0.1], 1), 1);
        assert_eq!(rank(&[0.9, 0.9, 0.1], 1), 2, "a tie is a loss");
        assert_eq!(rank(&[0.0, 0.0, 0.0], 2), 3);
        assert_eq!(auroc(&[0.9, 0.8], &[0.1, 0.8]), 0.875);
    }
}
