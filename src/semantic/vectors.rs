//! Compact vectors and their exhaustive search. A vector is stored normalised and quantised to
//! one signed byte per dimension with one scale (388 bytes for MiniLM's 384 dimensions instead
//! of 1,536): a quarter of the memory and of the bytes each query streams through, at a
//! cosine error around 0.002, below what moves a ranking (the dev figures are the same to the
//! third digit). Exhaustive search stays under a few milliseconds at 100,000 entries, so no
//! approximate index is needed (BENCHMARKS.md).

use super::super::knowledge::KnowledgeEntry;

/// Which text of an entry a vector stands for: phrasings are what visitors paraphrase;
/// answers count separately, since they match differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The question or one of its variants.
    Phrasing,
    /// The answer.
    Answer,
}

/// The texts of an entry that get a vector, each once: question, variants, answer.
pub fn entry_texts(e: &KnowledgeEntry) -> impl Iterator<Item = (Field, &str)> {
    std::iter::once(e.question.as_str())
        .chain(e.variants.iter().map(String::as_str))
        .map(|t| (Field::Phrasing, t))
        .chain(std::iter::once((Field::Answer, e.answer.as_str())))
        .filter(|(_, t)| !t.trim().is_empty())
}

/// The key a text's vector is stored under, with the embedder's space: the same text in
/// another entry, or after a re-train, is never embedded twice.
pub fn text_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
}

/// A unit vector as bytes: `values[i] · scale` ≈ the normalised component.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// One signed byte per dimension.
    pub values: Vec<i8>,
    /// What a byte step is worth.
    pub scale: f32,
}

impl Quantized {
    /// Normalises and quantises `v`; `None` for an empty, zero or non-finite vector, which no
    /// model should produce and which must not rank.
    pub fn new(v: &[f32]) -> Option<Quantized> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if v.is_empty() || !norm.is_finite() || norm == 0.0 {
            return None;
        }
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs())) / norm;
        let scale = max / 127.0;
        let values = v.iter().map(|x| (x / norm / scale).round().clamp(-127.0, 127.0) as i8).collect();
        Some(Quantized { values, scale })
    }

    /// The stored form: the scale (4 bytes, little-endian), then the values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.values.len());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend(self.values.iter().map(|v| *v as u8));
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form; `None` when it is too short or its scale is
    /// not a positive number.
    pub fn from_bytes(bytes: &[u8]) -> Option<Quantized> {
        let (scale, values) = bytes.split_first_chunk::<4>()?;
        let scale = f32::from_le_bytes(*scale);
        (scale.is_finite() && scale > 0.0 && !values.is_empty())
            .then(|| Quantized { values: values.iter().map(|v| *v as i8).collect(), scale })
    }

    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        self.values.len()
    }
}

/// Per entry, the best cosine among its phrasings and its answer's cosine (−1 where it has
/// none), for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Similarities {
    /// Best cosine over the question and its variants.
    pub phrasing: Vec<f32>,
    /// Cosine of the answer.
    pub answer: Vec<f32>,
}

/// The vectors of one client's knowledge, in one contiguous block.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    dim: usize,
    entries: usize,
    values: Vec<i8>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    entry: u32,
    field: Field,
    scale: f32,
}

impl VectorIndex {
    /// An empty index for `entries` entries of `dim`-dimensional vectors.
    pub fn new(dim: usize, entries: usize) -> VectorIndex {
        VectorIndex { dim, entries, values: Vec::new(), rows: Vec::new() }
    }

    /// Adds entry `entry`'s vector for `field`; a vector of another dimension is skipped (and
    /// reported), since it comes from another model.
    pub fn push(&mut self, entry: usize, field: Field, v: &Quantized) -> bool {
        if v.dim() != self.dim || entry >= self.entries {
            return false;
        }
        self.values.extend_from_slice(&v.values);
        self.rows.push(Row { entry: entry as u32, field, scale: v.scale });
        true
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Dimensions of its vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of entries it was built for.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes held, for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() + self.rows.capacity() * std::mem::size_of::<Row>()
    }

    /// Cosines of `query` (any length-`dim` vector) against every vector, folded per entry.
    /// `None` when the query is not a usable vector of this index's dimension.
    pub fn similarities(&self, query: &[f32]) -> Option<Similarities> {
        let q = Quantized::new(query).filter(|q| q.dim() == self.dim)?;
        let mut out = Similarities { phrasing: vec![-1.0; self.entries], answer: vec![-1.0; self.entries] };
        let mut dots = vec![0i32; self.rows.len()];
        aia_embed::dot_rows_i8(&self.values, &q.values, &mut dots);
        for (row, dot) in self.rows.iter().zip(&dots) {
            let cos = *dot as f32 * row.scale * q.scale;
            let slot = match row.field {
                Field::Phrasing => &mut out.phrasing[row.entry as usize],
                Field::Answer => &mut out.answer[row.entry as usize],
            };
            *slot = slot.max(cos);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        d / n(a) / n(b)
    }

    fn pseudo_random(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..dim)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn quantised_cosines_stay_within_a_few_thousandths() {
        let mut index = VectorIndex::new(384, 50);
        let vs: Vec<Vec<f32>> = (0..50).map(|i| pseudo_random(i, 384)).collect();
        for (i, v) in vs.iter().enumerate() {
            let q = Quantized::new(v).unwrap();
            assert_eq!(Quantized::from_bytes(&q.to_bytes()), Some(q.clone()), "stored form round-trips");
            assert!(index.push(i, Field::Phrasing, &q));
        }
        let query = pseudo_random(99, 384);
        let sims = index.similarities(&query).unwrap();
        for (i, v) in vs.iter().enumerate() {
            let exact = cosine(v, &query);
            assert!((sims.phrasing[i] - exact).abs() < 0.005, "{} vs {exact}", sims.phrasing[i]);
            assert_eq!(sims.answer[i], -1.0, "no answer vector");
        }
        let own = index.similarities(&vs[7]).unwrap();
        assert!((own.phrasing[7] - 1.0).abs() < 0.005);
    }

    #[test]
    fn entries_keep_their_best_phrasing_and_their_answer_apart() {
        let mut index = VectorIndex::new(3, 2);
        index.push(0, Field::Phrasing, &Quantized::new(&[1.0, 0.0, 0.0]).unwrap());
        index.push(0, Field::Phrasing, &Quantized::new(&[0.0, 1.0, 0.0]).unwrap());
        index.push(0, Field::Answer, &Quantized::new(&[0.0, 0.0, 1.0]).unwrap());
        index.push(1, Field::Phrasing, &Quantized::new(&[-1.0, 0.0, 0.0]).unwrap());
        assert!(!index.push(1, Field::Answer, &Quantized::new(&[1.0, 0.0]).unwrap()), "another model's size");
        assert!(!index.push(2, Field::Answer, &Quantized::new(&[1.0, 0.0, 0.0]).unwrap()), "no such entry");
        let s = index.similarities(&[0.0, 2.0, 0.0]).unwrap();
        assert!((s.phrasing[0] - 1.0).abs() < 0.01 && s.answer[0].abs() < 0.01);
        assert!(s.phrasing[1].abs() < 0.01 && s.answer[1] == -1.0);
        assert_eq!(index.similarities(&[0.0, 0.0]), None, "wrong dimension");
        assert_eq!(index.similarities(&[0.0, 0.0, 0.0]), None, "zero vector");
        assert_eq!(Quantized::new(&[f32::NAN, 1.0, 0.0]), None);
        assert_eq!(Quantized::from_bytes(&[0, 0, 0, 0, 1]), None, "zero scale");
        assert_eq!(Quantized::from_bytes(&[1, 2]), None, "too short");
    }

    #[test]
    fn an_entry_embeds_each_non_empty_text_once_in_order() {
        let e = KnowledgeEntry {
            id: "1".into(),
            question: "Q".into(),
            answer: "A".into(),
            variants: vec!["V1".into(), " ".into()],
            category: None,
            url: None,
        };
        let texts: Vec<_> = entry_texts(&e).collect();
        assert_eq!(texts, [(Field::Phrasing, "Q"), (Field::Phrasing, "V1"), (Field::Answer, "A")]);
        assert_eq!(text_hash("Q").len(), 32);
        assert_ne!(text_hash("Q"), text_hash("q"));
    }
}
