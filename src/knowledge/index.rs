//! Full-text retrieval over FAQ entries with tantivy (BM25). An entry is scored from three
//! kinds of document: all its phrasings together (question and variants, like one FAQ page),
//! its best single phrasing (so one close paraphrase counts even among many variants), and its
//! answer. The weights are the same for every client and data set (chosen on the development
//! sets, see BENCHMARKS.md). Visitor text is never parsed as query syntax: it is analysed with
//! the index's own analyser and turned into term queries, so any input is safe. Each hit
//! carries a confidence in [0, 1] for the "don't know" decision.

use std::collections::{HashMap, HashSet};

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term, doc};

use super::KnowledgeEntry;

const ANALYZER: &str = "aia";
/// Weight of the best single phrasing's score.
const PHRASING_WEIGHT: f32 = 0.6;
/// Weight of the answer's score (all phrasings together weigh 1).
const ANSWER_WEIGHT: f32 = 1.0;

/// One retrieved entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Position of the entry in [`KnowledgeIndex::entries`].
    pub entry: usize,
    /// Relevance: all phrasings' BM25 + weighted best phrasing + weighted answer.
    pub score: f32,
    /// How sure retrieval is that this entry answers the query, in [0, 1]: the share of the
    /// query's content words the entry contains, each weighted by its IDF so that a rare or
    /// unknown word the entry lacks weighs more than a common one.
    pub confidence: f32,
}

/// Which part of an entry a document holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// All phrasings of the question together.
    Phrasings,
    /// One phrasing (the question or a variant).
    Phrasing,
    /// The answer.
    Answer,
}

impl Kind {
    fn weight(self) -> f32 {
        match self {
            Kind::Phrasings => 1.0,
            Kind::Phrasing => PHRASING_WEIGHT,
            Kind::Answer => ANSWER_WEIGHT,
        }
    }
}

/// The fast field holding the entry's position.
const ENTRY: &str = "entry";

/// An immutable, searchable snapshot of one client's knowledge.
pub struct KnowledgeIndex {
    entries: Vec<KnowledgeEntry>,
    entry_terms: Vec<HashSet<String>>,
    doc_freq: HashMap<String, u32>,
    /// One index per kind of document, so each has its own BM25 statistics (document count
    /// and average length): sharing one index would count every phrasing and answer document
    /// as an empty document of the other fields and skew both.
    parts: Vec<Part>,
    analyzer: TextAnalyzer,
    content_analyzer: TextAnalyzer,
}

/// One kind of document and its index.
struct Part {
    kind: Kind,
    reader: IndexReader,
    text: Field,
    docs: usize,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnowledgeIndex({} entries)", self.entries.len())
    }
}

/// The analyser language for a client's `language` code (ISO 639-1, region ignored); codes
/// without a tantivy stemmer fall back to English rules.
fn language(code: &str) -> Language {
    match code.get(..2).unwrap_or("").to_ascii_lowercase().as_str() {
        "ar" => Language::Arabic,
        "da" => Language::Danish,
        "nl" => Language::Dutch,
        "fi" => Language::Finnish,
        "fr" => Language::French,
        "de" => Language::German,
        "el" => Language::Greek,
        "hu" => Language::Hungarian,
        "it" => Language::Italian,
        "no" | "nb" | "nn" => Language::Norwegian,
        "pt" => Language::Portuguese,
        "ro" => Language::Romanian,
        "ru" => Language::Russian,
        "es" => Language::Spanish,
        "sv" => Language::Swedish,
        "ta" => Language::Tamil,
        "tr" => Language::Turkish,
        _ => Language::English,
    }
}

/// Words that carry no topic in an English question, beyond Lucene's short list: question
/// words, pronouns and auxiliaries ("when are you open" is about "open").
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "but",
    "by",
    "for",
    "if",
    "in",
    "into",
    "is",
    "it",
    "no",
    "not",
    "of",
    "on",
    "or",
    "such",
    "that",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "to",
    "was",
    "will",
    "with",
    "what",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "why",
    "how",
    "do",
    "does",
    "did",
    "done",
    "can",
    "could",
    "would",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "i",
    "me",
    "my",
    "mine",
    "you",
    "your",
    "yours",
    "we",
    "us",
    "our",
    "ours",
    "he",
    "she",
    "him",
    "her",
    "his",
    "its",
    "them",
    "am",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "please",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "much",
    "many",
    "any",
    "some",
    "so",
    "too",
    "very",
    "just",
    "also",
    "about",
    "from",
    "up",
    "out",
    "there",
    "here",
    "s",
    "t",
    "don",
    "im",
    "ive",
    "id",
    "want",
    "like",
    "know",
    "tell",
    "get",
    "got",
    "something",
    "anything",
    "thing",
    "things",
    "ok",
    "okay",
    "yes",
];

/// The ranking analyser keeps every word (stop words carry meaning in short intents: "turn
/// off" vs "turn on"); the content analyser drops question words, pronouns and stop words to
/// judge what a question is about.
fn make_analyzer(code: &str, content: bool) -> TextAnalyzer {
    let lang = language(code);
    let builder =
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    let stop = match (content, lang) {
        (false, _) => None,
        (true, Language::English) => Some(StopWordFilter::remove(ENGLISH_STOP_WORDS.iter().map(|w| w.to_string()))),
        (true, lang) => StopWordFilter::new(lang),
    };
    match stop {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(lang)).build(),
        None => builder.filter(Stemmer::new(lang)).build(),
    }
}

fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

impl Part {
    fn build(
        kind: Kind,
        docs: impl Iterator<Item = (usize, String)>,
        analyzer: &TextAnalyzer,
    ) -> tantivy::Result<Part> {
        let mut schema = Schema::builder();
        let indexing =
            TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs);
        let text = schema.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
        let entry = schema.add_u64_field(ENTRY, FAST);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer.clone());
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 15_000_000)?;
        let mut count = 0;
        for (i, t) in docs {
            writer.add_document(doc!(text => t, entry => i as u64))?;
            count += 1;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Part { kind, reader, text, docs: count })
    }

    /// (entry, BM25) of the best `limit` documents.
    fn search(&self, query_terms: &[String], limit: usize) -> Vec<(usize, f32)> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = query_terms
            .iter()
            .map(|t| {
                let q = TermQuery::new(Term::from_field_text(self.text, t), IndexRecordOption::WithFreqs);
                (Occur::Should, Box::new(q) as Box<dyn Query>)
            })
            .collect();
        let searcher = self.reader.searcher();
        let Ok(top) = searcher.search(&BooleanQuery::new(clauses), &TopDocs::with_limit(limit.max(1)).order_by_score())
        else {
            return Vec::new();
        };
        let columns: Vec<Option<Column<u64>>> =
            searcher.segment_readers().iter().map(|r| r.fast_fields().u64(ENTRY).ok()).collect();
        top.into_iter()
            .filter_map(|(score, addr)| {
                let entry = columns[addr.segment_ord as usize].as_ref()?.first(addr.doc_id)?;
                Some((entry as usize, score))
            })
            .collect()
    }
}

fn sorted_unique(mut terms: Vec<String>) -> Vec<String> {
    terms.sort();
    terms.dedup();
    terms
}

impl KnowledgeIndex {
    /// Indexes `entries` analysed for `language` (an ISO code such as `en` or `de`).
    pub fn build(entries: Vec<KnowledgeEntry>, language: &str) -> tantivy::Result<KnowledgeIndex> {
        let mut analyzer = make_analyzer(language, false);
        let content_analyzer = make_analyzer(language, true);
        let entry_terms: Vec<HashSet<String>> = entries
            .iter()
            .map(|e| {
                let mut all = terms(&mut analyzer, &e.question);
                for v in &e.variants {
                    all.extend(terms(&mut analyzer, v));
                }
                all.extend(terms(&mut analyzer, &e.answer));
                all.into_iter().collect()
            })
            .collect();
        let mut doc_freq: HashMap<String, u32> = HashMap::new();
        for t in entry_terms.iter().flatten() {
            *doc_freq.entry(t.clone()).or_default() += 1;
        }
        let mut parts = Vec::new();
        if !entries.is_empty() {
            for kind in [Kind::Phrasings, Kind::Phrasing, Kind::Answer] {
                let docs = entries.iter().enumerate().flat_map(|(i, e)| {
                    let phrasings =
                        || std::iter::once(e.question.as_str()).chain(e.variants.iter().map(String::as_str));
                    let texts: Vec<String> = match kind {
                        Kind::Phrasings => vec![phrasings().collect::<Vec<_>>().join("\n")],
                        Kind::Phrasing => phrasings().map(str::to_string).collect(),
                        Kind::Answer if e.answer.is_empty() => Vec::new(),
                        Kind::Answer => vec![e.answer.clone()],
                    };
                    texts.into_iter().map(move |t| (i, t))
                });
                parts.push(Part::build(kind, docs, &analyzer)?);
            }
        }
        Ok(KnowledgeIndex { entries, entry_terms, doc_freq, parts, analyzer, content_analyzer })
    }

    /// The indexed entries.
    pub fn entries(&self) -> &[KnowledgeEntry] {
        &self.entries
    }

    /// BM25's inverse document frequency of a term over entries; unknown terms weigh the most.
    fn idf(&self, term: &str) -> f32 {
        let n = self.entries.len() as f32;
        let df = self.doc_freq.get(term).copied().unwrap_or(0) as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// Scores of the entries among the best `docs` documents of each part, by entry position.
    fn entry_scores(&self, query_terms: &[String], docs: Option<usize>) -> HashMap<usize, f32> {
        let mut scores: HashMap<usize, f32> = HashMap::new();
        for part in &self.parts {
            let mut best: HashMap<usize, f32> = HashMap::new();
            for (entry, score) in part.search(query_terms, docs.unwrap_or(part.docs)) {
                let b = best.entry(entry).or_default();
                *b = b.max(score);
            }
            for (entry, score) in best {
                *scores.entry(entry).or_default() += part.kind.weight() * score;
            }
        }
        scores
    }

    fn confidence(&self, content_terms: &[String], entry: usize) -> f32 {
        let Some(known) = self.entry_terms.get(entry) else { return 0.0 };
        let covered: f32 = content_terms.iter().filter(|t| known.contains(*t)).map(|t| self.idf(t)).sum();
        let total: f32 = content_terms.iter().map(|t| self.idf(t)).sum();
        if total > 0.0 { covered / total } else { 0.0 }
    }

    fn query_terms(&self, query: &str) -> (Vec<String>, Vec<String>) {
        (
            sorted_unique(terms(&mut self.analyzer.clone(), query)),
            sorted_unique(terms(&mut self.content_analyzer.clone(), query)),
        )
    }

    /// The best `limit` entries for `query`, best first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let (rank_terms, content_terms) = self.query_terms(query);
        if rank_terms.is_empty() {
            return Vec::new();
        }
        let mut hits: Vec<(usize, f32)> =
            self.entry_scores(&rank_terms, Some((limit * 20).max(200))).into_iter().collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(limit);
        hits.into_iter()
            .map(|(entry, score)| Hit { entry, score, confidence: self.confidence(&content_terms, entry) })
            .collect()
    }

    /// A score for every entry (0 where nothing matched) and the confidence of the best one:
    /// what `eval` ranks with.
    pub fn score_all(&self, query: &str) -> (Vec<f32>, f32) {
        let mut all = vec![0.0; self.entries.len()];
        let (rank_terms, content_terms) = self.query_terms(query);
        if rank_terms.is_empty() {
            return (all, 0.0);
        }
        for (entry, score) in self.entry_scores(&rank_terms, None) {
            all[entry] = score;
        }
        let best = all.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)));
        let confidence = match best {
            Some((i, s)) if *s > 0.0 => self.confidence(&content_terms, i),
            _ => 0.0,
        };
        (all, confidence)
    }
}
