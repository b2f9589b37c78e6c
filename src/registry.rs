//! The server's in-memory view of its clients, rebuilt from the store whenever a client's
//! settings or knowledge version changes — the CLI and other processes share the database,
//! never memory, so this is how their changes reach the running server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clients::{ClientSettings, OriginRules};
use crate::knowledge::KnowledgeIndex;
use crate::store::{ClientRow, Store, StoreResult};

/// Everything the server needs about one client, immutable once built.
#[derive(Debug)]
pub struct ClientRuntime {
    pub row: ClientRow,
    pub settings: ClientSettings,
    pub origins: OriginRules,
    pub knowledge: Arc<KnowledgeIndex>,
}

/// Uid → current runtime of each client.
#[derive(Default)]
pub struct Registry {
    clients: RwLock<HashMap<String, Arc<ClientRuntime>>>,
}

impl Registry {
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
            let runtime = ClientRuntime { row: row.clone(), origins: settings.origins(), settings, knowledge };
            self.clients.write().expect("registry lock").insert(row.uid.clone(), Arc::new(runtime));
            rebuilt.push(row.uid.clone());
        }
        let mut clients = self.clients.write().expect("registry lock");
        clients.retain(|uid, _| rows.iter().any(|r| &r.uid == uid));
        Ok(rebuilt)
    }
}
