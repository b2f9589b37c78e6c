//! The embeddings check: one short text through the embedder the client's retrieval would use
//! (its `embedding_url`, or the server's own model).

use serde_json::json;

use super::{Outcome, Subject, Toolkit, failed, passed};

pub(super) async fn check(kit: &Toolkit<'_>, client: Subject<'_>) -> Outcome {
    let place = || format!("embeddings API ({})", client.settings.get("embedding_url"));
    let embedder = match kit.embeddings.embedder_for(client.uid, client.settings) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return failed(
                "No embeddings are configured: search is full-text only.",
                "Knowledge settings",
                "embedding_url is empty and the server runs no embedding model",
                "Set embedding_url (and embedding_token), or start the server with --embedding-model.",
            )
            .unconfigured();
        }
        Err(why) => {
            return failed(
                "The embeddings settings cannot be used.",
                place(),
                why,
                "Correct embedding_url or embedding_token.",
            );
        }
    };
    match embedder.embed(&["Where is my order?".to_string()]).await {
        Ok(vectors) => {
            let dim = vectors.first().map_or(0, Vec::len);
            passed(
                format!("Embeddings work: {} dimensions from {}.", dim, embedder.space()),
                json!({"dimensions": dim, "space": embedder.space()}),
            )
        }
        Err(e) => failed(
            "The embeddings API did not answer.",
            place(),
            e.to_string(),
            "Check embedding_url, embedding_model and embedding_token.",
        ),
    }
}
