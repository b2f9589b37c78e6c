//! Full-text retrieval over FAQ entries with tantivy (BM25). An entry is scored from five
//! kinds of document: all its phrasings together (question and variants, like one FAQ page),
//! its best single phrasing (so one close paraphrase counts even among many variants), its
//! answer, the character 4-grams of its phrasings' words (so "lights" meets "light",
//! inflected forms meet in languages without a stemmer, and a typo still shares most of its
//! word), and the pairs of neighbouring words of its phrasings (word order: "turn off the
//! lights" is closer to "turn off" than to "lights off… turn on"). Query words unknown to the
//! knowledge are corrected to the closest known word (Levenshtein distance 1, or 2 for long
//! words). The weights are the same for every client and data set (chosen on the development
//! sets, see BENCHMARKS.md). Visitor text is never parsed as query syntax: it is analysed with
//! the index's own analysers and turned into term queries, so any input is safe. Each hit
//! carries a confidence in [0, 1] for the "don't know" decision.

use std::collections::{HashMap, HashSet};

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, WhitespaceTokenizer,
};
use tantivy::{IndexReader, ReloadPolicy, TantivyDocument, Term, doc};

use super::KnowledgeEntry;

const ANALYZER: &str = "aia";
/// Weight of the best single phrasing's score (all phrasings together weigh 1).
const PHRASING_WEIGHT: f32 = 0.4;
/// Weight of the answer's score.
const ANSWER_WEIGHT: f32 = 1.1;
/// Weight of the character 4-grams' score.
const GRAMS_WEIGHT: f32 = 0.2;
/// Weight of the word pairs' score.
const PAIRS_WEIGHT: f32 = 0.15;
/// Weight of a query word the content analyser drops (question words, pronouns, stop words):
/// they still rank ("turn off" vs "turn on") but count a little less than topic words.
const STOP_WORD_WEIGHT: f32 = 0.8;
/// Weight of a word corrected from a typo: a guess counts half.
const CORRECTED_WEIGHT: f32 = 0.5;
/// Length of the character n-grams (word boundaries included as `<` and `>`).
const GRAM: usize = 4;
/// The confidence is a logistic function of how much of the question the entry covers and of
/// how strongly it matched: `1 / (1 + e^-(C·coverage + S·ln(1 + score) + B))`, fitted on
/// `clinc-oos-dev.json` (in-scope against out-of-scope questions).
const CONFIDENCE_COVERAGE: f32 = 3.95;
const CONFIDENCE_SCORE: f32 = 2.83;
const CONFIDENCE_BIAS: f32 = -6.84;

/// Language codes (ISO 639-1) with a stemmer; stop words too where tantivy has a list. Other
/// codes are indexed without stemming and lean on the character n-grams and typo correction.
pub const STEMMED_LANGUAGES: &[&str] =
    &["ar", "da", "de", "el", "en", "es", "fi", "fr", "hu", "it", "nl", "no", "pt", "ro", "ru", "sv", "ta", "tr"];

/// One retrieved entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Position of the entry in [`KnowledgeIndex::entries`].
    pub entry: usize,
    /// Relevance: the weighted sum of the entry's documents' BM25 scores.
    pub score: f32,
    /// How sure retrieval is that this entry answers the query, in [0, 1]: grows with the
    /// share of the query's content words the entry contains (each weighted by its IDF, so
    /// that a rare or unknown word the entry lacks weighs more than a common one) and with the
    /// strength of the match.
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
    /// The character n-grams of all phrasings' words.
    Grams,
    /// The pairs of neighbouring words of all phrasings ("turn off" is not "off turn").
    Pairs,
}

impl Kind {
    fn weight(self) -> f32 {
        match self {
            Kind::Phrasings => 1.0,
            Kind::Phrasing => PHRASING_WEIGHT,
            Kind::Answer => ANSWER_WEIGHT,
            Kind::Grams => GRAMS_WEIGHT,
            Kind::Pairs => PAIRS_WEIGHT,
        }
    }
}

/// The fast field holding the entry's position.
const ENTRY: &str = "entry";

/// An immutable, searchable snapshot of one client's knowledge.
pub struct KnowledgeIndex {
    entries: Vec<KnowledgeEntry>,
    doc_freq: HashMap<String, u32>,
    /// One index per kind of document, so each has its own BM25 statistics (document count
    /// and average length): sharing one index would count every phrasing and answer document
    /// as an empty document of the other fields and skew both.
    parts: Vec<Part>,
    analyzer: TextAnalyzer,
    content_analyzer: TextAnalyzer,
    word_analyzer: TextAnalyzer,
    /// Term sets of recently answered entries, for the confidence: visitors ask the same few
    /// questions, and analysing an entry (stemming all its words) was 40 % of a search.
    /// Bounded, because a set per entry of a large knowledge base costs too much memory.
    recent_terms: std::sync::Mutex<HashMap<usize, std::sync::Arc<HashSet<String>>>>,
    /// Recent typo corrections (or their absence): building the edit-distance automata for
    /// an unknown word is a tenth of a search, and visitors repeat their words.
    recent_corrections: std::sync::Mutex<HashMap<String, Option<String>>>,
}

/// Entries whose term sets [`KnowledgeIndex`] keeps at most (about 1 KiB each).
const RECENT_TERMS: usize = 1024;

/// Typo corrections [`KnowledgeIndex`] remembers at most.
const RECENT_CORRECTIONS: usize = 4096;

/// One kind of document and its index.
struct Part {
    kind: Kind,
    reader: IndexReader,
    text: Field,
    docs: usize,
}

/// A visitor's question, analysed once for every part.
struct Analysed {
    /// Ranking terms (typos corrected) with their weights.
    rank: Vec<(String, f32)>,
    /// Content terms (typos corrected) with the credit a match earns (a correction is a guess:
    /// it earns half), for the confidence.
    content: Vec<(String, f32)>,
    /// Character n-grams of the words.
    grams: Vec<(String, f32)>,
    /// Neighbouring ranking terms (typos corrected).
    pairs: Vec<(String, f32)>,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnowledgeIndex({} entries)", self.entries.len())
    }
}

/// The stemmer language for a client's `language` code (ISO 639-1, region ignored), if
/// tantivy has one.
fn language(code: &str) -> Option<Language> {
    Some(match code.get(..2).unwrap_or("").to_ascii_lowercase().as_str() {
        "ar" => Language::Arabic,
        "da" => Language::Danish,
        "nl" => Language::Dutch,
        "en" => Language::English,
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
        _ => return None,
    })
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
/// judge what a question is about; the word analyser only splits and lower-cases, for the
/// character n-grams.
fn make_analyzer(code: &str, role: Role) -> TextAnalyzer {
    let builder =
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    let lang = language(code);
    let stop = match (role, lang) {
        (Role::Content, Some(Language::English)) => {
            Some(StopWordFilter::remove(ENGLISH_STOP_WORDS.iter().map(|w| w.to_string())))
        }
        (Role::Content, Some(lang)) => StopWordFilter::new(lang),
        _ => None,
    };
    match (role, stop, lang) {
        (Role::Words, _, _) => builder.build(),
        (_, Some(stop), Some(lang)) => builder.filter(stop).filter(Stemmer::new(lang)).build(),
        (_, None, Some(lang)) => builder.filter(Stemmer::new(lang)).build(),
        (_, _, None) => builder.build(),
    }
}

/// What an analyser is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Rank,
    Content,
    Words,
}

fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The character n-grams of `words`, each word framed as `<word>`; words no longer than a
/// gram are kept whole.
fn grams(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for word in words {
        let framed: Vec<char> = std::iter::once('<').chain(word.chars()).chain(std::iter::once('>')).collect();
        if framed.len() <= GRAM {
            out.push(framed.iter().collect());
        } else {
            out.extend(framed.windows(GRAM).map(|w| w.iter().collect::<String>()));
        }
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
        let tokenizers = tantivy::tokenizer::TokenizerManager::default();
        tokenizers.register(ANALYZER, analyzer.clone());
        // One segment, written on this thread: a search then walks one posting list per term
        // instead of one per segment (p99 at 100,000 entries: 5.9 ms in 8 segments, 1.1 ms in
        // one), and no indexing threads start. The small budget only sizes the initial term
        // table (it grows as needed): tantivy's usual 15 MB tables, freed after each build, left
        // glibc's heap ~25 MB larger for good (idle server: 43 MiB instead of 17).
        let mut writer = tantivy::IndexBuilder::new()
            .schema(schema.build())
            .tokenizers(tokenizers)
            .single_segment_index_writer::<TantivyDocument>(tantivy::directory::RamDirectory::create(), 1 << 20)?;
        let mut count = 0;
        for (i, t) in docs {
            writer.add_document(doc!(text => t, entry => i as u64))?;
            count += 1;
        }
        let index = writer.finalize()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Part { kind, reader, text, docs: count })
    }

    /// (entry, BM25) of the best `limit` documents.
    fn search(&self, query_terms: &[(String, f32)], limit: usize) -> Vec<(usize, f32)> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = query_terms
            .iter()
            .map(|(t, weight)| {
                let q: Box<dyn Query> =
                    Box::new(TermQuery::new(Term::from_field_text(self.text, t), IndexRecordOption::WithFreqs));
                let q = if *weight == 1.0 { q } else { Box::new(BoostQuery::new(q, *weight)) };
                (Occur::Should, q)
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

    /// The terms of this part within Levenshtein `distance` of `term` (transpositions count
    /// one edit).
    fn neighbours(&self, term: &str, distance: u8) -> Vec<String> {
        let mut out = Vec::new();
        let query = FuzzyTermQuery::new(Term::from_field_text(self.text, term), distance, true);
        let Ok(automaton) = query.automaton() else { return out };
        for segment in self.reader.searcher().segment_readers() {
            let Ok(inverted) = segment.inverted_index(self.text) else { continue };
            let Ok(mut stream) = inverted.terms().search(&automaton).into_stream() else { continue };
            while stream.advance() {
                if let Ok(t) = std::str::from_utf8(stream.key()) {
                    out.push(t.to_string());
                }
            }
        }
        out
    }
}

/// Neighbouring terms joined by `_`, which no analyser leaves inside a term.
fn pairs(terms: &[String]) -> Vec<String> {
    terms.windows(2).map(|w| format!("{}_{}", w[0], w[1])).collect()
}

/// The distinct ranking terms of an entry's question, variants and answer.
fn entry_terms(analyzer: &mut TextAnalyzer, e: &KnowledgeEntry) -> HashSet<String> {
    let mut all: HashSet<String> = terms(analyzer, &e.question).into_iter().collect();
    for v in &e.variants {
        all.extend(terms(analyzer, v));
    }
    all.extend(terms(analyzer, &e.answer));
    all
}

fn sorted_unique(mut terms: Vec<String>) -> Vec<String> {
    terms.sort();
    terms.dedup();
    terms
}

impl KnowledgeIndex {
    /// Indexes `entries` analysed for `language` (an ISO code such as `en` or `de`).
    pub fn build(entries: Vec<KnowledgeEntry>, language: &str) -> tantivy::Result<KnowledgeIndex> {
        let mut analyzer = make_analyzer(language, Role::Rank);
        let content_analyzer = make_analyzer(language, Role::Content);
        let word_analyzer = make_analyzer(language, Role::Words);
        let mut doc_freq: HashMap<String, u32> = HashMap::new();
        for e in &entries {
            for t in entry_terms(&mut analyzer, e) {
                *doc_freq.entry(t).or_default() += 1;
            }
        }
        let grams_analyzer = TextAnalyzer::from(WhitespaceTokenizer::default());
        let mut parts = Vec::new();
        if !entries.is_empty() {
            for kind in [Kind::Phrasings, Kind::Phrasing, Kind::Answer, Kind::Grams, Kind::Pairs] {
                let mut ranked = analyzer.clone();
                let mut words = word_analyzer.clone();
                let docs = entries.iter().enumerate().flat_map(move |(i, e)| {
                    let phrasings =
                        || std::iter::once(e.question.as_str()).chain(e.variants.iter().map(String::as_str));
                    let texts: Vec<String> = match kind {
                        Kind::Phrasings => vec![phrasings().collect::<Vec<_>>().join("\n")],
                        Kind::Phrasing => phrasings().map(str::to_string).collect(),
                        Kind::Answer if e.answer.is_empty() => Vec::new(),
                        Kind::Answer => vec![e.answer.clone()],
                        Kind::Grams => {
                            let all: Vec<String> = phrasings().flat_map(|p| terms(&mut words, p)).collect();
                            vec![grams(&all).join(" ")]
                        }
                        Kind::Pairs => {
                            vec![phrasings().flat_map(|p| pairs(&terms(&mut ranked, p))).collect::<Vec<_>>().join(" ")]
                        }
                    };
                    texts.into_iter().map(move |t| (i, t))
                });
                let part_analyzer = if matches!(kind, Kind::Grams | Kind::Pairs) { &grams_analyzer } else { &analyzer };
                parts.push(Part::build(kind, docs, part_analyzer)?);
            }
        }
        Ok(KnowledgeIndex {
            entries,
            doc_freq,
            parts,
            analyzer,
            content_analyzer,
            word_analyzer,
            recent_terms: Default::default(),
            recent_corrections: Default::default(),
        })
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
    fn entry_scores(&self, query: &Analysed, docs: Option<usize>) -> HashMap<usize, f32> {
        let mut scores: HashMap<usize, f32> = HashMap::new();
        for part in &self.parts {
            let terms = match part.kind {
                Kind::Grams => &query.grams,
                Kind::Pairs => &query.pairs,
                _ => &query.rank,
            };
            let mut best: HashMap<usize, f32> = HashMap::new();
            for (entry, score) in part.search(terms, docs.unwrap_or(part.docs)) {
                let b = best.entry(entry).or_default();
                *b = b.max(score);
            }
            for (entry, score) in best {
                *scores.entry(entry).or_default() += part.kind.weight() * score;
            }
        }
        scores
    }

    fn confidence(&self, query: &Analysed, entry: usize, score: f32) -> f32 {
        if score <= 0.0 {
            return 0.0;
        }
        let Some(known) = self.terms_of(entry) else { return 0.0 };
        let covered: f32 =
            query.content.iter().filter(|(t, _)| known.contains(t)).map(|(t, credit)| credit * self.idf(t)).sum();
        let total: f32 = query.content.iter().map(|(t, _)| self.idf(t)).sum();
        let coverage = if total > 0.0 { covered / total } else { 0.0 };
        let z = CONFIDENCE_COVERAGE * coverage + CONFIDENCE_SCORE * score.ln_1p() + CONFIDENCE_BIAS;
        1.0 / (1.0 + (-z).exp())
    }

    /// The distinct ranking terms of entry `i`, from the recent ones when there.
    fn terms_of(&self, i: usize) -> Option<std::sync::Arc<HashSet<String>>> {
        if let Some(known) = self.recent_terms.lock().expect("terms lock").get(&i) {
            return Some(known.clone());
        }
        let known = std::sync::Arc::new(entry_terms(&mut self.analyzer.clone(), self.entries.get(i)?));
        let mut recent = self.recent_terms.lock().expect("terms lock");
        if recent.len() >= RECENT_TERMS {
            recent.clear();
        }
        recent.insert(i, known.clone());
        Some(known)
    }

    /// The known term a word unknown to the knowledge was most likely meant to be: the most
    /// common term at edit distance 1 (2 for words of 8 letters or more). Short words and
    /// numbers are left alone: too many neighbours, and "1234" is not a typo of "1235".
    fn correction(&self, term: &str) -> Option<String> {
        let len = term.chars().count();
        if len < 4 || term.chars().any(|c| c.is_numeric()) {
            return None;
        }
        if let Some(known) = self.recent_corrections.lock().expect("corrections lock").get(term) {
            return known.clone();
        }
        let max = if len >= 8 { 2 } else { 1 };
        let found = (1..=max).find_map(|distance| {
            self.parts
                .iter()
                .filter(|p| matches!(p.kind, Kind::Phrasings | Kind::Answer))
                .flat_map(|p| p.neighbours(term, distance))
                .map(|t| (self.doc_freq.get(&t).copied().unwrap_or(0), t))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, t)| t)
        });
        let mut recent = self.recent_corrections.lock().expect("corrections lock");
        if recent.len() >= RECENT_CORRECTIONS {
            recent.clear();
        }
        recent.insert(term.to_string(), found.clone());
        found
    }

    fn analyse(&self, query: &str) -> Analysed {
        let ordered = terms(&mut self.analyzer.clone(), query);
        let rank = sorted_unique(ordered.clone());
        let content = sorted_unique(terms(&mut self.content_analyzer.clone(), query));
        let words = terms(&mut self.word_analyzer.clone(), query);
        let corrections: HashMap<&str, String> = rank
            .iter()
            .filter(|t| !self.doc_freq.contains_key(*t))
            .filter_map(|t| Some((t.as_str(), self.correction(t)?)))
            .collect();
        let correct = |t: &String| corrections.get(t.as_str()).cloned().unwrap_or_else(|| t.clone());
        let corrected: HashSet<&String> = corrections.values().collect();
        let credit = |t: &String| if corrected.contains(t) { CORRECTED_WEIGHT } else { 1.0 };
        let content: Vec<(String, f32)> =
            sorted_unique(content.iter().map(correct).collect()).into_iter().map(|t| (t.clone(), credit(&t))).collect();
        let rank = sorted_unique(rank.iter().map(correct).collect());
        let rank = rank
            .into_iter()
            .map(|t| {
                let mut weight = if content.iter().any(|(c, _)| *c == t) { 1.0 } else { STOP_WORD_WEIGHT };
                if corrected.contains(&t) {
                    weight *= CORRECTED_WEIGHT;
                }
                (t, weight)
            })
            .collect();
        let grams = sorted_unique(grams(&words)).into_iter().map(|g| (g, 1.0)).collect();
        let ordered: Vec<String> = ordered.iter().map(correct).collect();
        let pairs = sorted_unique(pairs(&ordered)).into_iter().map(|p| (p, 1.0)).collect();
        Analysed { rank, content, grams, pairs }
    }

    /// The best `limit` entries for `query`, best first.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let query = self.analyse(query);
        self.ranked(&query, limit)
            .into_iter()
            .map(|(entry, score)| Hit { entry, score, confidence: self.confidence(&query, entry, score) })
            .collect()
    }

    /// The best `limit` entries for `query`, best first, without their confidence: what a
    /// model is given to answer from (it judges relevance itself), a quarter cheaper.
    pub fn candidates(&self, query: &str, limit: usize) -> Vec<usize> {
        self.ranked(&self.analyse(query), limit).into_iter().map(|(entry, _)| entry).collect()
    }

    fn ranked(&self, query: &Analysed, limit: usize) -> Vec<(usize, f32)> {
        if query.rank.is_empty() {
            return Vec::new();
        }
        let mut hits: Vec<(usize, f32)> = self.entry_scores(query, Some((limit * 20).max(200))).into_iter().collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(limit);
        hits
    }

    /// A score for every entry (0 where nothing matched) and the confidence of the best one:
    /// what `eval` ranks with.
    pub fn score_all(&self, query: &str) -> (Vec<f32>, f32) {
        let scored = self.scored(query, None);
        let confidence = super::eval::best(&scored.scores).map_or(0.0, |i| scored.confidence(i));
        (scored.scores, confidence)
    }

    /// The query scored against every entry (from the best `docs` documents of each kind, or
    /// all), keeping its analysis so that the confidence of any entry can be read: hybrid
    /// ranking may put first an entry that full-text did not.
    pub fn scored(&self, query: &str, docs: Option<usize>) -> Scored<'_> {
        let query = self.analyse(query);
        let mut scores = vec![0.0; self.entries.len()];
        if !query.rank.is_empty() {
            for (entry, score) in self.entry_scores(&query, docs) {
                scores[entry] = score;
            }
        }
        Scored { index: self, query, scores }
    }
}

/// One query's full-text scores over every entry; see [`KnowledgeIndex::scored`].
pub struct Scored<'a> {
    index: &'a KnowledgeIndex,
    query: Analysed,
    /// Score per entry position, 0 where nothing matched.
    pub scores: Vec<f32>,
}

impl Scored<'_> {
    /// The full-text confidence that entry `entry` answers the query (0 for no match).
    pub fn confidence(&self, entry: usize) -> f32 {
        self.scores.get(entry).map_or(0.0, |s| self.index.confidence(&self.query, entry, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, question: &str, answer: &str) -> KnowledgeEntry {
        KnowledgeEntry::new(id, question, answer)
    }

    fn best(index: &KnowledgeIndex, query: &str) -> Option<(String, f32)> {
        index.search(query, 1).first().map(|h| (index.entries()[h.entry].id.clone(), h.confidence))
    }

    #[test]
    fn every_listed_language_has_a_stemmer_and_others_have_none() {
        for code in STEMMED_LANGUAGES {
            assert!(language(code).is_some(), "{code}");
        }
        assert_eq!(language("de-AT"), Some(Language::German), "the region is ignored");
        assert_eq!(language("uk"), None);
        assert_eq!(language(""), None);
    }

    #[test]
    fn german_questions_meet_their_answers_through_stemming() {
        let mut rank = make_analyzer("de", Role::Rank);
        assert_eq!(terms(&mut rank, "Zahlungsmethoden"), terms(&mut rank, "Zahlungsmethode"));
        assert_eq!(terms(&mut rank, "Rücksendungen"), terms(&mut rank, "Rücksendung"));
        let mut content = make_analyzer("de", Role::Content);
        assert_eq!(terms(&mut content, "Wie lange dauert der Versand?"), ["lang", "dauert", "versand"]);
        let index = KnowledgeIndex::build(
            vec![
                entry("zahlung", "Welche Zahlungsmethode gibt es?", "Karte, PayPal und Rechnung."),
                entry("versand", "Wie lange dauert der Versand?", "Zwei bis vier Werktage."),
                entry("ruecksendung", "Wie funktioniert eine Rücksendung?", "Mit dem Formular im Kundenkonto."),
                entry("oeffnung", "Wann ist der Laden geöffnet?", "Montag bis Freitag von 9 bis 18 Uhr."),
            ],
            "de",
        )
        .unwrap();
        let mut lowest = f32::MAX;
        for (query, id) in [
            ("Welche Zahlungsmethoden akzeptiert ihr?", "zahlung"),
            ("Rücksendungen: wie geht das?", "ruecksendung"),
            ("dauern Versande lange", "versand"),
        ] {
            let (found, confidence) = best(&index, query).unwrap();
            assert_eq!(found, id, "{query}");
            lowest = lowest.min(confidence);
        }
        let (_, confidence) = best(&index, "Verkauft ihr Fahrräder?").unwrap_or_default();
        assert!(confidence < lowest, "an unrelated question is less sure: {confidence} vs {lowest}");
    }

    #[test]
    fn languages_without_a_stemmer_match_inflections_and_typos_fuzzily() {
        let index = KnowledgeIndex::build(
            vec![
                entry("dostavka", "Скільки коштує доставка?", "Доставка коштує 50 гривень."),
                entry("oplata", "Як можна оплатити замовлення?", "Карткою або при отриманні."),
                entry("povernennia", "Як повернути товар?", "Заповніть форму повернення."),
            ],
            "uk",
        )
        .unwrap();
        let mut rank = make_analyzer("uk", Role::Rank);
        assert_eq!(terms(&mut rank, "Доставки"), ["доставки"], "no stemming, just lower case");
        assert_eq!(best(&index, "вартість доставки").unwrap().0, "dostavka");
        assert_eq!(best(&index, "оплата замовленя").unwrap().0, "oplata");
        assert_eq!(best(&index, "повернення товару").unwrap().0, "povernennia");
    }

    #[test]
    fn typos_are_corrected_to_the_closest_known_word() {
        let index = KnowledgeIndex::build(crate::knowledge::demo_entries(), "en").unwrap();
        let analysed = index.analyse("shiping");
        assert_eq!(analysed.rank, [("ship".to_string(), CORRECTED_WEIGHT)], "the typo's stem is one edit away");
        assert_eq!(analysed.content, [("ship".to_string(), CORRECTED_WEIGHT)]);
        assert_eq!(index.correction("paymnet").as_deref(), Some("payment"), "a swap is one edit");
        assert_eq!(index.correction("1234"), None, "numbers are not typos");
        assert_eq!(index.correction("xyz"), None, "short words are left alone");
        for (query, id) in [
            ("how long does shiping take", "shipping-time"),
            ("which paymnet methods do you acept", "payment-methods"),
            ("how do I retrun something", "returns-how"),
        ] {
            assert_eq!(best(&index, query).unwrap().0, id, "{query}");
        }
    }
}
