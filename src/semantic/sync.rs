//! Keeps a client's stored vectors in step with its entries, and builds the vector index from
//! them. Vectors are keyed by the text's hash within an embedding space, so only texts without
//! one are embedded: a re-train that changes nothing embeds nothing, an edited answer embeds
//! one text, and a model switch re-embeds everything once (the old space is dropped).

use std::collections::{HashMap, HashSet};

use super::vectors::{Quantized, VectorIndex, entry_texts, text_hash};
use super::{EmbedError, Embedder};
use crate::knowledge::KnowledgeEntry;
use crate::store::{Store, StoreError};

/// Texts embedded per call, and stored per write: a failure midway keeps what was done.
pub const BATCH: usize = 256;

/// Why vectors could not be brought up to date. The client keeps full-text search meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The embedder answered with a vector count or size that does not fit.
    #[error("the embedding model returned {got} vectors of mixed or empty size for {asked} texts")]
    Malformed { asked: usize, got: usize },
}

/// What a sync did, and the index it built.
#[derive(Debug)]
pub struct Synced {
    pub index: VectorIndex,
    /// Texts embedded now (the rest were stored already).
    pub embedded: usize,
    /// Stored vectors dropped because no entry uses their text any more.
    pub removed: usize,
}

/// Embeds the entries' texts that have no stored vector in `embedder`'s space, stores them,
/// drops the vectors of texts no entry uses any more, and builds the index of every entry.
/// `on_batch` hears the number of texts embedded so far.
pub async fn sync(
    store: &dyn Store,
    client_id: i64,
    entries: &[KnowledgeEntry],
    embedder: &dyn Embedder,
    mut on_batch: impl FnMut(usize) + Send,
) -> Result<Synced, SyncError> {
    let space = embedder.space();
    let mut stored: HashMap<String, Quantized> = HashMap::new();
    let mut unreadable = Vec::new();
    for (hash, bytes) in store.vectors_list(client_id, space).await? {
        match Quantized::from_bytes(&bytes) {
            Some(q) => {
                stored.insert(hash, q);
            }
            None => unreadable.push(hash),
        }
    }
    let mut wanted: HashSet<String> = HashSet::new();
    let mut missing: Vec<(String, &str)> = Vec::new();
    for e in entries {
        for (_, text) in entry_texts(e) {
            let hash = text_hash(text);
            if !stored.contains_key(&hash) && wanted.insert(hash.clone()) {
                missing.push((hash, text));
            } else {
                wanted.insert(hash);
            }
        }
    }
    // Drop first: a changed answer's old vector is garbage whatever happens next.
    let stale: Vec<String> =
        stored.keys().filter(|h| !wanted.contains(*h)).cloned().chain(unreadable).collect::<Vec<_>>();
    if !stale.is_empty() {
        store.vectors_remove(client_id, space, &stale).await?;
        stored.retain(|h, _| wanted.contains(h));
    }
    let mut embedded = 0;
    let dim = stored.values().next().map(Quantized::dim);
    for batch in missing.chunks(BATCH) {
        let texts: Vec<String> = batch.iter().map(|(_, t)| t.to_string()).collect();
        let vectors = embedder.embed(&texts).await?;
        let quantized: Vec<Quantized> = vectors.iter().filter_map(|v| Quantized::new(v)).collect();
        let dim = dim.or_else(|| quantized.first().map(Quantized::dim));
        if quantized.len() != batch.len() || quantized.iter().any(|q| Some(q.dim()) != dim) {
            return Err(SyncError::Malformed { asked: batch.len(), got: vectors.len() });
        }
        let rows: Vec<(String, Vec<u8>)> =
            batch.iter().zip(&quantized).map(|((hash, _), q)| (hash.clone(), q.to_bytes())).collect();
        store.vectors_add(client_id, space, &rows).await?;
        for ((hash, _), q) in batch.iter().zip(quantized) {
            stored.insert(hash.clone(), q);
        }
        embedded += batch.len();
        on_batch(embedded);
    }
    Ok(Synced { index: build(entries, &stored), embedded, removed: stale.len() })
}

/// The index of `entries` from vectors by text hash; texts without one are left out.
fn build(entries: &[KnowledgeEntry], vectors: &HashMap<String, Quantized>) -> VectorIndex {
    let dim = vectors.values().next().map_or(0, Quantized::dim);
    let mut index = VectorIndex::new(dim, entries.len());
    for (i, e) in entries.iter().enumerate() {
        for (field, text) in entry_texts(e) {
            if let Some(v) = vectors.get(&text_hash(text)) {
                index.push(i, field, v);
            }
        }
    }
    index
}
