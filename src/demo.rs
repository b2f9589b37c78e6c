//! The embedded default: on first start (no clients yet) a `demo` client with the bundled
//! FAQ of an invented lamp shop, allowed on localhost, so a newcomer chats at once.

use crate::clients::{ClientSettings, SecretBox, UpstreamPolicy};
use crate::ids::now_ms;
use crate::knowledge::demo_entries;
use crate::store::Store;

/// The demo client's uid.
pub const UID: &str = "demo";

/// Creates the demo client when the store has no clients at all.
pub async fn ensure(store: &dyn Store, keys: &SecretBox, public_url: Option<&url::Url>) -> anyhow::Result<bool> {
    if !store.client_list().await?.is_empty() {
        return Ok(false);
    }
    let row = store.client_create(UID, now_ms()).await?;
    let mut domains = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Some(host) = public_url.and_then(|u| u.host_str()) {
        domains.push(host.to_string());
    }
    let updates: Vec<(String, String)> = [
        ("bot_name", "Lumen Assistant"),
        ("greeting", "Hi! I'm the Lumen Home assistant. Ask me about shipping, returns, payment or your order."),
        (
            "contact_text",
            "You can reach our team at support@lumen-home.example or +49 30 1234 5678 (Mon–Fri 9:00–18:00).",
        ),
        ("button_color", "#1a73e8"),
        ("bg_color", "#ffffff"),
        ("position", "bottom-right"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("allowed_domains".to_string(), domains.join(","))])
    .collect();
    let writes = ClientSettings::default().plan(UID, &updates, UpstreamPolicy::default(), keys)?;
    store.settings_put(row.id, &writes).await?;
    store.knowledge_replace(row.id, &demo_entries()).await?;
    Ok(true)
}
