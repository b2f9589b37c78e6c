//! FAQ benchmark files in the format of `shared/data/README.md` (FAQs with variants, and
//! queries with their gold FAQ or `null` for out of scope). Used by `aia-chat eval` and by
//! `aia-chat knowledge import`.

use serde::Deserialize;

use super::KnowledgeEntry;

/// One FAQ of a benchmark file.
#[derive(Debug, Clone, Deserialize)]
pub struct DatasetFaq {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub answer: String,
    #[serde(default)]
    pub variants: Vec<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// One query and the FAQ that answers it (`None`: out of scope, "no answer" is right).
#[derive(Debug, Clone, Deserialize)]
pub struct DatasetQuery {
    pub text: String,
    pub faq_id: Option<String>,
}

/// A benchmark or import file.
#[derive(Debug, Clone, Deserialize)]
pub struct Dataset {
    #[serde(default)]
    pub name: String,
    pub faqs: Vec<DatasetFaq>,
    #[serde(default)]
    pub queries: Vec<DatasetQuery>,
}

impl Dataset {
    /// Parses a file's text.
    pub fn parse(text: &str) -> Result<Dataset, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The FAQs as knowledge entries.
    pub fn entries(&self) -> Vec<KnowledgeEntry> {
        self.faqs
            .iter()
            .map(|f| KnowledgeEntry {
                id: f.id.clone(),
                question: f.question.clone(),
                answer: f.answer.clone(),
                variants: f.variants.clone(),
                category: f.category.clone(),
                url: f.url.clone(),
            })
            .collect()
    }
}
