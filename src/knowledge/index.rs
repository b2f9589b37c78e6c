//! Full-text retrieval over FAQ entries with tantivy (BM25). Visitor text is never parsed as
//! query syntax: it is analysed with the index's own analyser and turned into term queries,
//! so any input is safe. Each hit carries how much of the query it covers, which the
//! assistant uses to decide whether it is confident.

use std::collections::{HashMap, HashSet};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term, doc};

use super::KnowledgeEntry;

const ANALYZER: &str = "aia";
const QUESTION_BOOST: f32 = 2.0;

/// One retrieved entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Position of the entry in [`KnowledgeIndex::entries`].
    pub entry: usize,
    /// BM25 score (question matches boosted).
    pub score: f32,
    /// Share of the query found in the entry (0–1), each distinct term weighted by its IDF so
    /// that a rare or unknown word the entry lacks weighs more than a common one.
    pub coverage: f32,
}

/// An immutable, searchable snapshot of one client's knowledge.
pub struct KnowledgeIndex {
    entries: Vec<KnowledgeEntry>,
    entry_terms: Vec<HashSet<String>>,
    doc_freq: HashMap<String, u32>,
    reader: Option<IndexReader>,
    analyzer: TextAnalyzer,
    content_analyzer: TextAnalyzer,
    question: Field,
    answer: Field,
    position: Field,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnowledgeIndex({} entries)", self.entries.len())
    }
}

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

/// The ranking analyser keeps question words ("how do I return" ranks "How do I return an
/// item?" first); the content analyser drops them to judge what the question is about.
fn analyzer(code: &str, content: bool) -> TextAnalyzer {
    let lang = language(code);
    let builder =
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    let stop = if lang == Language::English && content {
        Some(StopWordFilter::remove(ENGLISH_STOP_WORDS.iter().map(|w| w.to_string())))
    } else {
        StopWordFilter::new(lang)
    };
    match stop {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(lang)).build(),
        None => builder.filter(Stemmer::new(lang)).build(),
    }
}

fn analyzer_for_content(code: &str) -> TextAnalyzer {
    analyzer(code, true)
}

fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

impl KnowledgeIndex {
    /// Indexes `entries` analysed for `language` (an ISO code such as `en` or `de`).
    pub fn build(entries: Vec<KnowledgeEntry>, language: &str) -> tantivy::Result<KnowledgeIndex> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let question = schema.add_text_field("question", text.clone());
        let answer = schema.add_text_field("answer", text);
        let position = schema.add_u64_field("position", NumericOptions::default().set_stored());
        let mut analyzer = analyzer(language, false);
        let content_analyzer = analyzer_for_content(language);
        let entry_terms: Vec<HashSet<String>> = entries
            .iter()
            .map(|e| terms(&mut analyzer, &format!("{}\n{}", e.question, e.answer)).into_iter().collect())
            .collect();
        let mut doc_freq: HashMap<String, u32> = HashMap::new();
        for t in entry_terms.iter().flatten() {
            *doc_freq.entry(t.clone()).or_default() += 1;
        }
        let reader = if entries.is_empty() {
            None
        } else {
            let index = Index::create_in_ram(schema.build());
            index.tokenizers().register(ANALYZER, analyzer.clone());
            let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 15_000_000)?;
            for (i, e) in entries.iter().enumerate() {
                writer.add_document(
                    doc!(question => e.question.as_str(), answer => e.answer.as_str(), position => i as u64),
                )?;
            }
            writer.commit()?;
            writer.wait_merging_threads()?;
            Some(index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?)
        };
        Ok(KnowledgeIndex {
            entries,
            entry_terms,
            doc_freq,
            reader,
            analyzer,
            content_analyzer,
            question,
            answer,
            position,
        })
    }

    /// The indexed entries.
    pub fn entries(&self) -> &[KnowledgeEntry] {
        &self.entries
    }

    /// BM25's inverse document frequency of a term; unknown terms weigh the most.
    fn idf(&self, term: &str) -> f32 {
        let n = self.entries.len() as f32;
        let df = self.doc_freq.get(term).copied().unwrap_or(0) as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The best `limit` entries for `query`, best first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let Some(reader) = &self.reader else { return Vec::new() };
        let mut query_terms = terms(&mut self.analyzer.clone(), query);
        query_terms.sort();
        query_terms.dedup();
        let mut content_terms = terms(&mut self.content_analyzer.clone(), query);
        content_terms.sort();
        content_terms.dedup();
        if query_terms.is_empty() {
            return Vec::new();
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(query_terms.len() * 2);
        for t in &query_terms {
            let q = TermQuery::new(Term::from_field_text(self.question, t), IndexRecordOption::WithFreqs);
            clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), QUESTION_BOOST))));
            let a = TermQuery::new(Term::from_field_text(self.answer, t), IndexRecordOption::WithFreqs);
            clauses.push((Occur::Should, Box::new(a)));
        }
        let searcher = reader.searcher();
        let Ok(top) = searcher.search(&BooleanQuery::new(clauses), &TopDocs::with_limit(limit).order_by_score()) else {
            return Vec::new();
        };
        top.into_iter()
            .filter_map(|(score, addr)| {
                let doc: TantivyDocument = searcher.doc(addr).ok()?;
                let entry = doc.get_first(self.position)?.as_u64()? as usize;
                let known = self.entry_terms.get(entry)?;
                let covered: f32 = content_terms.iter().filter(|t| known.contains(*t)).map(|t| self.idf(t)).sum();
                let total: f32 = content_terms.iter().map(|t| self.idf(t)).sum();
                Some(Hit { entry, score, coverage: if total > 0.0 { covered / total } else { 0.0 } })
            })
            .collect()
    }
}
