//! Semantic retrieval: sentence embeddings of FAQ phrasings and visitor questions, from a
//! model run in-process (the `aia-embed` crate, re-exported as [`local`]) or an OpenAI-compatible `/embeddings` endpoint
//! ([`endpoint`]), searched exhaustively over compact vectors ([`vectors`]) and fused with the
//! full-text ranking ([`hybrid`]). Visitors rarely use the FAQ's own words; embeddings meet
//! paraphrases that share none.

pub mod endpoint;
pub mod hybrid;
pub mod sync;
pub mod vectors;

use std::sync::Arc;

pub use aia_embed as local;

pub use aia_embed::pin_rayon_threads;

/// Why texts could not be embedded. Retrieval falls back to full-text alone on any of these,
/// so a dead endpoint never costs a visitor an answer.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The in-process model failed (not expected once it loaded).
    #[error("local embedding model: {0}")]
    Local(#[from] local::EmbedError),
    /// The endpoint failed, refused or answered something unusable.
    #[error("embeddings endpoint: {0}")]
    Endpoint(#[from] endpoint::EndpointError),
}

/// Turns texts into vectors. One trait for the in-process model and every endpoint, so that
/// training, the registry and `eval` never care which one a client uses.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// Names the vector space (model and where it runs): stored vectors are keyed by it, so
    /// switching models re-embeds instead of comparing vectors of two different spaces.
    fn space(&self) -> &str;

    /// One vector per text, in order. Vectors need not be normalised (callers normalise).
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// The in-process model as an [`Embedder`]: inference runs on the blocking pool, never on the
/// async workers serving sockets.
#[derive(Debug, Clone)]
pub struct LocalModel {
    model: Arc<local::LocalEmbedder>,
    space: String,
}

impl LocalModel {
    /// Loads the model directory given to the server (`--embedding-model DIR`).
    pub fn load(dir: &std::path::Path) -> Result<LocalModel, local::LoadError> {
        let model = local::LocalEmbedder::load(dir)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let space = format!("local:{name}:{}", model.fingerprint());
        Ok(LocalModel { model: Arc::new(model), space })
    }

    /// The loaded model, for synchronous callers (`eval`, benchmarks).
    pub fn model(&self) -> &local::LocalEmbedder {
        &self.model
    }
}

#[async_trait::async_trait]
impl Embedder for LocalModel {
    fn space(&self) -> &str {
        &self.space
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (model, texts) = (self.model.clone(), texts.to_vec());
        let vectors = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs)
        })
        .await
        .expect("embedding does not panic")?;
        Ok(vectors)
    }
}

/// The vector index of `entries`, every text embedded now (no store): for `eval` and the
/// benchmarks. Vectors the embedder returns unusable (zero, not finite) are left out.
pub async fn index_entries(
    entries: &[crate::knowledge::KnowledgeEntry],
    embedder: &dyn Embedder,
) -> Result<vectors::VectorIndex, EmbedError> {
    let mut owners = Vec::new();
    let mut texts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        for (field, text) in vectors::entry_texts(e) {
            owners.push((i, field));
            texts.push(text.to_string());
        }
    }
    let embedded = embedder.embed(&texts).await?;
    let dim = embedded.first().map_or(0, Vec::len);
    let mut index = vectors::VectorIndex::new(dim, entries.len());
    for ((entry, field), v) in owners.into_iter().zip(&embedded) {
        if let Some(q) = vectors::Quantized::new(v) {
            index.push(entry, field, &q);
        }
    }
    Ok(index)
}
