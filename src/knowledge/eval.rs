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

/// Position of the highest score, the first among equals (`None` for no scores).
pub fn best(scores: &[f32]) -> Option<usize> {
    scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map(|(i, _)| i)
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

/// `text` with one typo, as a visitor would make it: a random letter inserted, deleted,
/// replaced, or swapped with its neighbour, in one random word of three letters or more.
/// Text without such a word comes back unchanged. Deterministic for a seeded `rng`, so the typo
/// set derived from a benchmark file is the same on every run.
pub fn with_typo(text: &str, rng: &mut impl rand::Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().chain(std::iter::once(&' ')).enumerate() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= 3 {
                    words.push((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    if words.is_empty() {
        return text.to_string();
    }
    let (from, to) = words[rng.random_range(0..words.len())];
    let at = rng.random_range(from..to);
    let letter = |rng: &mut dyn rand::RngCore, not: char| loop {
        let c = char::from(b'a' + (rng.next_u32() % 26) as u8);
        if c != not {
            return c;
        }
    };
    match rng.random_range(0..4) {
        0 => {
            let c = letter(rng, '\0');
            chars.insert(at, c)
        }
        1 => {
            chars.remove(at);
        }
        2 => chars[at] = letter(rng, chars[at].to_ascii_lowercase()),
        _ => {
            let other = if at + 1 < to { at + 1 } else { at - 1 };
            chars.swap(at, other)
        }
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_typo_is_one_edit_in_one_word() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for text in ["how long does shipping take", "where is my order", "ok"] {
            for _ in 0..50 {
                let typo = with_typo(text, &mut rng);
                if text == "ok" {
                    assert_eq!(typo, "ok", "no word long enough");
                    continue;
                }
                let (a, b): (Vec<&str>, Vec<&str>) = (text.split(' ').collect(), typo.split(' ').collect());
                assert_eq!(a.len(), b.len(), "{typo}");
                let changed: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
                assert!(changed.len() <= 1, "{text} -> {typo}");
                if let Some((x, y)) = changed.first() {
                    assert!(x.len() >= 3 && x.len().abs_diff(y.len()) <= 1, "{x} -> {y}");
                }
            }
        }
        let mut again = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(
            with_typo("how long does shipping take", &mut again),
            with_typo("how long does shipping take", &mut rand::rngs::StdRng::seed_from_u64(7))
        );
    }

    #[test]
    fn ranks_count_ties_against_the_system() {
        assert_eq!(rank(&[0.5, 0.9, 0.1], 1), 1);
        assert_eq!(rank(&[0.9, 0.9, 0.1], 1), 2, "a tie is a loss");
        assert_eq!(rank(&[0.0, 0.0, 0.0], 2), 3);
        assert_eq!(auroc(&[0.9, 0.8], &[0.1, 0.8]), 0.875);
    }
}
