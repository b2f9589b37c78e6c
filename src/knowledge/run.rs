//! One training run of a client against the store, shared by `aia-chat train` and the
//! server's schedule: take the client's lease, fetch every page, swap the knowledge, record the
//! outcome. A failed run writes no knowledge and leaves its error in the client's status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::extract::Mapping;
use super::graphql::{Source, SourceError};
use super::train::{Progress, TrainSource, fetch_all};
use crate::clients::{ClientSettings, SecretBox, UpstreamPolicy};
use crate::ids::now_ms;
use crate::store::{KnowledgeWrite, Store, StoreError};

/// How long a run's lease holds without progress (a crashed run frees it after this).
pub const LEASE_MS: i64 = 120_000;

/// Why a run did not train.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no client '{0}'")]
    NoClient(String),
    #[error("client '{0}' has no training source: set graphql_url and graphql_query")]
    NotConfigured(String),
    #[error("a training run of {0} is already running; try again when it has finished")]
    Busy(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("found no FAQ entries in the source")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a successful run did.
#[derive(Debug)]
pub struct Outcome {
    pub entries: usize,
    pub pages: u32,
    pub warnings: Vec<String>,
    pub written: KnowledgeWrite,
}

/// What a run needs from its host process.
pub struct Trainer {
    pub store: Arc<dyn Store>,
    pub keys: SecretBox,
    pub policy: UpstreamPolicy,
    pub client: reqwest::Client,
}

impl Trainer {
    /// A trainer whose requests time out after `timeout`.
    pub fn new(store: Arc<dyn Store>, keys: SecretBox, policy: UpstreamPolicy, timeout: Duration) -> Trainer {
        Trainer { client: crate::outbound::client(policy, timeout), store, keys, policy }
    }

    /// Trains client `uid` as `owner` (a name for the lease), reporting each page.
    pub async fn train(&self, uid: &str, owner: &str, on_page: impl FnMut(Progress)) -> Result<Outcome, TrainError> {
        let store = &self.store;
        let row = store.client_get(uid).await?.ok_or_else(|| TrainError::NoClient(uid.into()))?;
        let s = ClientSettings::from_stored(store.settings_get(row.id).await?);
        let (url, query) = (s.get("graphql_url"), s.get("graphql_query"));
        if url.is_empty() || query.trim().is_empty() {
            return Err(TrainError::NotConfigured(uid.into()));
        }
        self.policy.check_url(url).map_err(|e| TrainError::Config(format!("graphql_url {e}")))?;
        let headers: Vec<(String, String)> = match s.secret(&self.keys, uid, "graphql_headers") {
            Some(text) => {
                let text = text.map_err(|e| TrainError::Config(format!("graphql_headers: {e}")))?;
                let map: BTreeMap<String, String> =
                    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("graphql_headers: {e}")))?;
                map.into_iter().collect()
            }
            None => Vec::new(),
        };
        let mapping = Mapping::parse(s.get("graphql_fields")).map_err(TrainError::Config)?;
        if !store.training_lease(row.id, owner, now_ms(), now_ms() + LEASE_MS).await? {
            return Err(TrainError::Busy(uid.into()));
        }
        let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(Progress::default());
        let recorder = {
            let (store, owner, client_id) = (store.clone(), owner.to_string(), row.id);
            tokio::spawn(async move {
                while progress_rx.changed().await.is_ok() {
                    let p = *progress_rx.borrow_and_update();
                    let (pages, entries) = (i64::from(p.pages), p.entries as i64);
                    let _ = store.training_progress(client_id, &owner, pages, entries, now_ms() + LEASE_MS).await;
                }
            })
        };
        let source = TrainSource {
            source: Source { client: &self.client, url, query, headers: &headers },
            chunk_size: s.get("chunk_size").parse().unwrap_or(100),
            mapping,
        };
        let mut on_page = on_page;
        let result = async {
            let fetched = fetch_all(&source, |p| {
                let _ = progress_tx.send(p);
                on_page(p);
            })
            .await?;
            if fetched.entries.is_empty() {
                return Err(TrainError::Empty);
            }
            let written = store.knowledge_replace(row.id, &fetched.entries).await?;
            Ok(Outcome { entries: fetched.entries.len(), pages: fetched.pages, warnings: fetched.warnings, written })
        }
        .await;
        drop(progress_tx);
        let _ = recorder.await;
        let recorded = match &result {
            Ok(o) => Ok(o.entries as i64),
            Err(e) => Err(e.to_string()),
        };
        store.training_finish(row.id, owner, now_ms(), recorded.as_ref().map(|n| *n).map_err(String::as_str)).await?;
        result
    }
}
