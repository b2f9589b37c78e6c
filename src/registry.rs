//! The server's in-memory view of its clients, rebuilt from the store whenever a client's
//! settings or knowledge version changes — the CLI and other processes share the database,
//! never memory, so this is how their changes reach the running server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use crate::clients::{ClientSettings, OriginRules, SecretBox};
use crate::knowledge::{Hit, KnowledgeIndex};
use crate::semantic::endpoint::EmbeddingEndpoint;
use crate::semantic::hybrid::Fusion;
use crate::semantic::vectors::VectorIndex;
use crate::semantic::{Embedder, LocalModel};
use crate::store::{ClientRow, Store, StoreResult};

/// How long a visitor's question may take to embed before full-text answers alone: an
/// endpoint that slow is failing, and the visitor is waiting.
const QUERY_EMBED_TIMEOUT: Duration = Duration::from_secs(3);
/// After a question failed to embed, the next ones skip the endpoint for this long: a visitor
/// should not wait on a service that just failed.
const QUERY_EMBED_PAUSE: Duration = Duration::from_secs(30);
/// First wait before embedding a client's knowledge again after a failure; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Everything the server needs about one client, immutable once built.
#[derive(Debug)]
pub struct ClientRuntime {
    pub row: ClientRow,
    pub settings: ClientSettings,
    pub origins: OriginRules,
    pub knowledge: Arc<KnowledgeIndex>,
    /// The knowledge as vectors, once they are ready (full-text serves until then). Shared
    /// by every runtime of the same knowledge version and embedding space, so a settings
    /// change elsewhere neither waits for nor repeats the embedding.
    pub semantic: Arc<OnceLock<Semantic>>,
}

/// A client's knowledge as vectors, with the embedder its visitors' questions go through.
#[derive(Debug)]
pub struct Semantic {
    pub vectors: VectorIndex,
    pub embedder: Arc<dyn Embedder>,
    /// Texts embedded to build it (the rest were stored already): 0 after a restart.
    pub embedded: usize,
    /// When a question last failed to embed.
    failed_at: Mutex<Option<std::time::Instant>>,
}

impl Semantic {
    /// Whether questions should skip the embedder for now.
    fn paused(&self) -> bool {
        self.failed_at.lock().expect("pause lock").is_some_and(|at| at.elapsed() < QUERY_EMBED_PAUSE)
    }

    fn failed(&self) {
        *self.failed_at.lock().expect("pause lock") = Some(std::time::Instant::now());
    }
}

impl ClientRuntime {
    /// Whether retrieval is hybrid now (the knowledge's vectors are ready).
    pub fn semantic_ready(&self) -> bool {
        self.semantic.get().is_some()
    }

    /// The best `limit` entries for a question, each with its confidence: hybrid when the
    /// vectors are ready and the question embeds in time, full-text otherwise (an embedding
    /// failure is logged, never the visitor's problem).
    pub async fn retrieve(&self, question: &str, limit: usize) -> Vec<Hit> {
        let Some(semantic) = self.semantic.get().filter(|s| !s.paused()) else {
            return self.knowledge.search(question, limit);
        };
        let embedded =
            tokio::time::timeout(QUERY_EMBED_TIMEOUT, semantic.embedder.embed(&[question.to_string()])).await;
        match embedded {
            Ok(Ok(mut vectors)) if vectors.len() == 1 => {
                let vector = vectors.pop().unwrap_or_default();
                Fusion::SHIPPED.search(&self.knowledge, &semantic.vectors, question, &vector, limit)
            }
            Ok(Ok(_)) => self.knowledge.search(question, limit),
            Ok(Err(e)) => {
                semantic.failed();
                tracing::warn!(client = %self.row.uid, error = %e, pause_s = QUERY_EMBED_PAUSE.as_secs(), "embedding a question failed; full-text search answers meanwhile");
                self.knowledge.search(question, limit)
            }
            Err(_) => {
                semantic.failed();
                tracing::warn!(client = %self.row.uid, pause_s = QUERY_EMBED_PAUSE.as_secs(), "embedding a question timed out; full-text search answers meanwhile");
                self.knowledge.search(question, limit)
            }
        }
    }
}

/// Where clients' embeddings come from: the server's own model (`--embedding-model`), or a
/// client's endpoint (`embedding_url`), reached with the outbound policy's client.
pub struct Embedding {
    pub local: Option<LocalModel>,
    pub http: reqwest::Client,
    pub keys: SecretBox,
    /// Where vectors are stored; embedding runs in the background, past the sync call.
    pub store: Arc<dyn Store>,
    /// This node's name when other nodes share the database: one of them embeds a client's
    /// knowledge (under a lease) and the others read the stored vectors.
    pub lease_owner: Option<String>,
}

/// One client's embedding job: for which knowledge version and space, and the slot it fills.
struct Job {
    version: i64,
    space: String,
    slot: Arc<OnceLock<Semantic>>,
}

/// Uid → current runtime of each client.
pub struct Registry {
    clients: RwLock<HashMap<String, Arc<ClientRuntime>>>,
    embedding: Option<Embedding>,
    jobs: Mutex<HashMap<String, Job>>,
    /// One client embeds at a time: the local model takes every core it is given, and
    /// visitors' questions need some.
    embedding_turn: Arc<tokio::sync::Semaphore>,
}

impl Default for Registry {
    /// A registry without semantic search: full-text only.
    fn default() -> Registry {
        Registry {
            clients: RwLock::default(),
            embedding: None,
            jobs: Mutex::default(),
            embedding_turn: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

impl Registry {
    /// A registry whose clients get semantic search from `embedding`.
    pub fn with_embedding(embedding: Embedding) -> Registry {
        Registry { embedding: Some(embedding), ..Default::default() }
    }

    /// The embedder a client's settings ask for, if any (problems logged: full-text only).
    fn embedder(&self, uid: &str, settings: &ClientSettings) -> Option<Arc<dyn Embedder>> {
        match self.embedder_for(uid, settings) {
            Ok(embedder) => embedder,
            Err(e) => {
                tracing::warn!(client = %uid, error = %e, "no embeddings; full-text search only");
                None
            }
        }
    }

    /// The embedder a client's settings ask for: `Ok(None)` when none is configured (no
    /// `embedding_url` and no server model), `Err` saying why a configured one is unusable.
    pub fn embedder_for(&self, uid: &str, settings: &ClientSettings) -> Result<Option<Arc<dyn Embedder>>, String> {
        let Some(embedding) = self.embedding.as_ref() else { return Ok(None) };
        let url = settings.get("embedding_url");
        if url.is_empty() {
            return Ok(embedding.local.clone().map(|m| Arc::new(m) as Arc<dyn Embedder>));
        }
        let token = match settings.secret(&embedding.keys, uid, "embedding_token") {
            Some(Ok(token)) => token,
            Some(Err(e)) => return Err(format!("embedding_token cannot be read ({e}); set it again")),
            None => String::new(),
        };
        match EmbeddingEndpoint::new(embedding.http.clone(), url, &token, settings.get("embedding_model")) {
            Ok(endpoint) => Ok(Some(Arc::new(endpoint))),
            Err(e) => Err(format!("embedding_url is unusable: {e}")),
        }
    }

    /// The semantic slot of a client's runtime: the running job's when it is for the same
    /// knowledge and space, else a new job's.
    fn semantic(
        &self,
        row: &ClientRow,
        settings: &ClientSettings,
        knowledge: &Arc<KnowledgeIndex>,
    ) -> Arc<OnceLock<Semantic>> {
        let Some(embedder) = self.embedder(&row.uid, settings) else {
            self.jobs.lock().expect("jobs lock").remove(&row.uid);
            return Arc::default();
        };
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some(job) = jobs.get(&row.uid)
            && job.version == row.knowledge_version
            && job.space == embedder.space()
        {
            return job.slot.clone();
        }
        let slot: Arc<OnceLock<Semantic>> = Arc::default();
        let job = Job { version: row.knowledge_version, space: embedder.space().to_string(), slot: slot.clone() };
        jobs.insert(row.uid.clone(), job);
        if let Some(embedding) = &self.embedding {
            tokio::spawn(vectorize(
                embedding.store.clone(),
                embedding.lease_owner.clone(),
                row.clone(),
                knowledge.clone(),
                embedder,
                Arc::downgrade(&slot),
                self.embedding_turn.clone(),
            ));
        }
        slot
    }

    /// The current runtime of a client.
    pub fn get(&self, uid: &str) -> Option<Arc<ClientRuntime>> {
        self.clients.read().expect("registry lock").get(uid).cloned()
    }

    /// Every loaded client.
    pub fn all(&self) -> Vec<Arc<ClientRuntime>> {
        self.clients.read().expect("registry lock").values().cloned().collect()
    }

    /// Number of clients loaded.
    pub fn len(&self) -> usize {
        self.clients.read().expect("registry lock").len()
    }

    /// Whether no client is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings every client up to date with the store; returns the uids rebuilt.
    pub async fn sync(&self, store: &dyn Store) -> StoreResult<Vec<String>> {
        let rows = store.client_list().await?;
        let mut rebuilt = Vec::new();
        for row in &rows {
            let current = self.get(&row.uid);
            if current.as_ref().is_some_and(|c| c.row == *row) {
                continue;
            }
            let settings = ClientSettings::from_stored(store.settings_get(row.id).await?);
            let knowledge = match &current {
                Some(c)
                    if c.row.knowledge_version == row.knowledge_version
                        && c.settings.get("language") == settings.get("language") =>
                {
                    c.knowledge.clone()
                }
                _ => {
                    let entries = store.knowledge_list(row.id).await?;
                    let language = settings.get("language").to_string();
                    let built = tokio::task::spawn_blocking(move || KnowledgeIndex::build(entries, &language))
                        .await
                        .expect("index build does not panic");
                    match built {
                        Ok(index) => Arc::new(index),
                        Err(e) => {
                            tracing::error!(client = %row.uid, error = %e, "knowledge index build failed; keeping the previous one");
                            match &current {
                                Some(c) => c.knowledge.clone(),
                                None => Arc::new(KnowledgeIndex::build(Vec::new(), "en").expect("empty index")),
                            }
                        }
                    }
                }
            };
            let semantic = self.semantic(row, &settings, &knowledge);
            let runtime =
                ClientRuntime { row: row.clone(), origins: settings.origins(), settings, knowledge, semantic };
            self.clients.write().expect("registry lock").insert(row.uid.clone(), Arc::new(runtime));
            rebuilt.push(row.uid.clone());
        }
        self.jobs.lock().expect("jobs lock").retain(|uid, _| rows.iter().any(|r| &r.uid == uid));
        let mut clients = self.clients.write().expect("registry lock");
        clients.retain(|uid, _| rows.iter().any(|r| &r.uid == uid));
        Ok(rebuilt)
    }
}

/// How long a node may embed a client's knowledge before another may start too (the work
/// is stored in batches as it goes, so a taker continues where it stopped).
const EMBED_LEASE: Duration = Duration::from_secs(120);
/// How often a node waiting for another's embedding looks again.
const EMBED_LEASE_WAIT: Duration = Duration::from_secs(2);

/// Embeds a client's knowledge (only what has no stored vector) and fills `slot`; retries
/// with a growing wait while the slot is still wanted (its knowledge still current).
async fn vectorize(
    store: Arc<dyn Store>,
    lease_owner: Option<String>,
    row: ClientRow,
    knowledge: Arc<KnowledgeIndex>,
    embedder: Arc<dyn Embedder>,
    slot: Weak<OnceLock<Semantic>>,
    turn: Arc<tokio::sync::Semaphore>,
) {
    let mut wait = RETRY_FIRST;
    loop {
        let Ok(permit) = turn.acquire().await else { return };
        if slot.strong_count() == 0 {
            return;
        }
        // On several nodes one embeds; the others wait and then find the vectors stored.
        let lease = format!("embed:{}:{}", row.id, embedder.space());
        if let Some(owner) = &lease_owner {
            let now = crate::ids::now_ms();
            if let Ok(false) = store.lease_take(&lease, owner, now, now + EMBED_LEASE.as_millis() as i64).await {
                drop(permit);
                tokio::time::sleep(EMBED_LEASE_WAIT).await;
                continue;
            }
        }
        let started = std::time::Instant::now();
        let synced =
            crate::semantic::sync::sync(store.as_ref(), row.id, knowledge.entries(), embedder.as_ref(), |_| {}).await;
        if let Some(owner) = &lease_owner {
            let _ = store.lease_release(&lease, owner).await;
        }
        match synced {
            Ok(synced) => {
                tracing::info!(
                    client = %row.uid,
                    space = embedder.space(),
                    embedded = synced.embedded,
                    removed = synced.removed,
                    vectors = synced.index.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "knowledge vectors ready; retrieval is hybrid"
                );
                if let Some(slot) = slot.upgrade() {
                    let _ = slot.set(Semantic {
                        vectors: synced.index,
                        embedder,
                        embedded: synced.embedded,
                        failed_at: Mutex::new(None),
                    });
                }
                return;
            }
            Err(e) => {
                tracing::warn!(client = %row.uid, error = %e, retry_in_s = wait.as_secs(), "embedding the knowledge failed; full-text search meanwhile");
            }
        }
        drop(permit);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}
