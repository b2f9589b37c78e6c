//! Hybrid ranking: full-text and vector evidence fused into one score per entry, and one
//! confidence for the "don't know" decision. Full-text catches the shop's own words (product
//! names, codes, rare terms a small model never learned); vectors catch paraphrases that share
//! no word with the FAQ. One configuration for every client and data set, chosen on the
//! development files (BENCHMARKS.md, `aia-bench hybrid-tune`).

use super::vectors::{Similarities, VectorIndex};
use crate::knowledge::eval::best;
use crate::knowledge::{Hit, KnowledgeIndex, Scored};

/// Documents of each kind full-text considers per query at run time (`eval` scores all):
/// beyond them an entry's full-text evidence is too weak to matter next to its vector.
const TEXT_DOCS: usize = 200;

/// How the two kinds of evidence combine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// Share of the fused score that is the vector evidence (the rest: full-text, divided by
    /// the query's best full-text score so that both lie in comparable ranges).
    pub vector_weight: f32,
    /// The answer's cosine counts times this against the best phrasing's (the entry's vector
    /// evidence is the larger of the two): answers are longer and say more, but a visitor
    /// asks a question.
    pub answer_weight: f32,
    /// `C` of the confidence, `1 / (1 + e^-(C·cosine + T·text_confidence + B))` of the best
    /// entry, where `cosine` is its vector evidence and `text_confidence` its full-text
    /// confidence: a logistic regression of in-scope against out-of-scope questions on
    /// `clinc-oos-dev.json`, its bias shifted so that the shipped threshold (0.87) stays the
    /// balanced choice.
    pub confidence_cosine: f32,
    /// `T` above.
    pub confidence_text: f32,
    /// `B` above.
    pub confidence_bias: f32,
}

impl Default for Fusion {
    fn default() -> Fusion {
        Fusion::SHIPPED
    }
}

impl Fusion {
    /// The configuration every client uses.
    pub const SHIPPED: Fusion = Fusion {
        vector_weight: 0.8,
        answer_weight: 1.1,
        confidence_cosine: 22.34,
        confidence_text: 2.59,
        confidence_bias: -8.95,
    };

    /// The vector evidence of entry `i`.
    pub fn semantic(&self, sims: &Similarities, i: usize) -> f32 {
        sims.phrasing[i].max(self.answer_weight * sims.answer[i])
    }

    /// The fused score of every entry, from the full-text scores and the similarities.
    pub fn fuse(&self, text: &[f32], sims: &Similarities) -> Vec<f32> {
        let top = text.iter().copied().fold(0f32, f32::max);
        let scale = if top > 0.0 { 1.0 / top } else { 0.0 };
        text.iter()
            .enumerate()
            .map(|(i, t)| self.vector_weight * self.semantic(sims, i) + (1.0 - self.vector_weight) * t * scale)
            .collect()
    }

    /// The confidence that entry `best` answers, from its vector evidence and its full-text
    /// confidence.
    pub fn confidence(&self, cosine: f32, text_confidence: f32) -> f32 {
        let z = self.confidence_cosine * cosine + self.confidence_text * text_confidence + self.confidence_bias;
        1.0 / (1.0 + (-z).exp())
    }

    /// Fused scores of every entry and the confidence of the best, from a query's full-text
    /// scoring and similarities.
    pub fn judge(&self, text: &Scored<'_>, sims: &Similarities) -> (Vec<f32>, f32) {
        let fused = self.fuse(&text.scores, sims);
        let confidence = match best(&fused) {
            Some(i) => self.confidence(self.semantic(sims, i), text.confidence(i)),
            None => 0.0,
        };
        (fused, confidence)
    }

    /// The best `limit` entries for a question and its vector, best first, each with the
    /// confidence of the hybrid ranking. Falls back to full-text alone (its own confidences)
    /// when the vector is unusable.
    pub fn search(
        &self,
        index: &KnowledgeIndex,
        vectors: &VectorIndex,
        query: &str,
        vector: &[f32],
        limit: usize,
    ) -> Vec<Hit> {
        let Some(sims) = vectors.similarities(vector).filter(|_| vectors.entries() == index.entries().len()) else {
            return index.search(query, limit);
        };
        let text = index.scored(query, Some(TEXT_DOCS.max(limit * 20)));
        let fused = self.fuse(&text.scores, &sims);
        let mut order: Vec<usize> = (0..fused.len()).collect();
        let limit = limit.min(order.len());
        if limit == 0 {
            return Vec::new();
        }
        order.select_nth_unstable_by(limit - 1, |a, b| fused[*b].total_cmp(&fused[*a]).then(a.cmp(b)));
        order.truncate(limit);
        order.sort_by(|a, b| fused[*b].total_cmp(&fused[*a]).then(a.cmp(b)));
        order
            .into_iter()
            .map(|i| Hit {
                entry: i,
                score: fused[i],
                confidence: self.confidence(self.semantic(&sims, i), text.confidence(i)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_text_breaks_a_vector_tie_and_vectors_outweigh_a_weak_word_match() {
        let f = Fusion::SHIPPED;
        let sims = Similarities { phrasing: vec![0.8, 0.8, 0.3], answer: vec![0.1, 0.1, 0.1] };
        let fused = f.fuse(&[0.0, 2.0, 0.5], &sims);
        assert_eq!(best(&fused), Some(1), "same cosine: the word match decides");
        let sims = Similarities { phrasing: vec![0.9, 0.2, 0.2], answer: vec![-1.0; 3] };
        assert_eq!(
            best(&f.fuse(&[0.5, 0.6, 0.0], &sims)),
            Some(0),
            "a close paraphrase beats a slightly better word match"
        );
        assert!(f.confidence(0.9, 0.9) > f.confidence(0.3, 0.9) && f.confidence(0.9, 0.9) > f.confidence(0.9, 0.1));
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn search_ranks_by_the_fused_score_and_falls_back_to_full_text_without_a_vector() {
        use crate::knowledge::KnowledgeEntry;
        use crate::semantic::vectors::{Field, Quantized};
        let entry = KnowledgeEntry::new;
        let index = KnowledgeIndex::build(
            vec![
                entry("eta", "How long does delivery take?", "Two to four working days."),
                entry("pay", "Which payment methods do you accept?", "Cards and PayPal."),
                entry("parcel", "My parcel arrived damaged", "Send us a photo."),
            ],
            "en",
        )
        .unwrap();
        let mut vectors = VectorIndex::new(3, 3);
        for (i, v) in [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]].iter().enumerate() {
            vectors.push(i, Field::Phrasing, &Quantized::new(v).unwrap());
        }
        let f = Fusion::SHIPPED;
        // The words match the parcel entry; the meaning (the vector) the delivery one.
        let question = "when will my parcel arrive";
        let hits = f.search(&index, &vectors, question, &[0.95, 0.0, 0.3], 3);
        assert_eq!(hits.iter().map(|h| h.entry).collect::<Vec<_>>(), [0, 2, 1]);
        assert!(hits[0].confidence > hits[2].confidence);
        assert_eq!(f.search(&index, &vectors, question, &[0.95, 0.0, 0.3], 1).len(), 1);
        let text_only = index.search(question, 3);
        assert_eq!(text_only[0].entry, 2);
        assert_eq!(f.search(&index, &vectors, question, &[1.0, 0.0], 3), text_only, "a vector of another size");
        let other = VectorIndex::new(3, 2);
        assert_eq!(f.search(&index, &other, question, &[1.0, 0.0, 0.0], 3), text_only, "vectors of other knowledge");
    }
}
