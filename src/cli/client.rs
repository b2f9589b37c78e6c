//! `aia-chat client …`: manage clients in the same database the server uses. Writes go to the
//! database only; a running server notices them within a second. Secrets print only as
//! `set` / `not set`.

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::app::open_store;
use crate::clients::{ClientSettings, valid_uid};
use crate::config::StoreArgs;
use crate::ids::now_ms;

/// The `client` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List clients.
    List,
    /// Show a client's settings (secrets only as set / not set).
    Show { uid: String },
    /// Add a client.
    Add { uid: String },
    /// Change settings: KEY=VALUE… (an empty VALUE resets to the default).
    Set {
        uid: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
}

/// Runs a `client` subcommand.
pub async fn run(args: &StoreArgs, command: ClientCommand) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let (store, keys) = open_store(&settings).await?;
    match command {
        ClientCommand::List => {
            let rows = store.client_list().await?;
            if rows.is_empty() {
                println!("no clients; add one with: aia-chat client add UID");
            }
            for row in rows {
                let s = ClientSettings::from_stored(store.settings_get(row.id).await?);
                let entries = store.knowledge_list(row.id).await?.len();
                let domains = match s.get("allowed_domains") {
                    "" => "(none)",
                    d => d,
                };
                println!("{}\tallowed: {domains}\tknowledge: {entries} entries", row.uid);
            }
        }
        ClientCommand::Show { uid } => {
            let row = store.client_get(&uid).await?.with_context(|| format!("no client '{uid}'"))?;
            let s = ClientSettings::from_stored(store.settings_get(row.id).await?);
            println!("client {uid}");
            for (key, shown) in s.display_rows() {
                println!("  {key:<20} {shown}");
            }
            println!("  {:<20} {} entries", "knowledge", store.knowledge_list(row.id).await?.len());
            if let Some(t) = store.training_status(row.id).await? {
                let when = |ms: i64| crate::realtime::protocol::rfc3339_ms(ms);
                if t.running(crate::ids::now_ms()) {
                    println!(
                        "  {:<20} running since {}: page {}, {} entries",
                        "training",
                        when(t.started_at),
                        t.pages,
                        t.entries
                    );
                } else {
                    println!("  {:<20} idle", "training");
                }
                if let (Some(at), Some(n)) = (t.last_success_at, t.entry_count) {
                    println!("  {:<20} {} ({n} entries)", "last success", when(at));
                }
                if let (Some(at), Some(e)) = (t.last_error_at, &t.last_error) {
                    println!("  {:<20} {}: {e}", "last error", when(at));
                }
            }
            let today = crate::store::utc_day(crate::ids::now_ms());
            let used = store.usage_day(row.id, today).await?;
            println!(
                "  {:<20} {} answers, {} prompt + {} completion tokens (budget {})",
                "model use today",
                used.answers,
                used.tokens.prompt,
                used.tokens.completion,
                s.get("model_daily_token_budget")
            );
            if let Some((at, error)) = store.model_error(row.id).await? {
                println!("  {:<20} {}: {error}", "model error", crate::realtime::protocol::rfc3339_ms(at));
            }
            let yesterday = store.usage_day(row.id, today - 1).await?;
            if yesterday.answers > 0 {
                println!(
                    "  {:<20} {} answers, {} prompt + {} completion tokens",
                    "model use yesterday", yesterday.answers, yesterday.tokens.prompt, yesterday.tokens.completion
                );
            }
            let dead = store.outbox_dead_letters(row.id).await?;
            if let Some(last) = dead.first() {
                println!(
                    "  {:<20} {} undelivered to the operator; latest {}: {}",
                    "operator failures",
                    dead.len(),
                    crate::realtime::protocol::rfc3339_ms(last.dead_at.unwrap_or(last.created_at)),
                    last.last_error.as_deref().unwrap_or("unknown")
                );
            }
            let failed = store.tasks_failed(row.id).await?;
            if let Some(last) = failed.first() {
                println!(
                    "  {:<20} {} not created; latest {} (\"{}\"): {}",
                    "task failures",
                    failed.len(),
                    crate::realtime::protocol::rfc3339_ms(last.updated_at),
                    last.title,
                    last.last_error.as_deref().unwrap_or("unknown")
                );
            }
            for note in notes(&s) {
                println!("note: {note}");
            }
        }
        ClientCommand::Add { uid } => {
            if !valid_uid(&uid) {
                bail!("'{uid}' is not a valid client uid (1-64 characters of A-Z, a-z, 0-9, '-', '_', '.')");
            }
            store.client_create(&uid, now_ms()).await?;
            println!(
                "added client {uid}; allow your site with: aia-chat client set {uid} allowed_domains=shop.example"
            );
        }
        ClientCommand::Set { uid, pairs } => {
            let row = store.client_get(&uid).await?.with_context(|| format!("no client '{uid}'"))?;
            let updates = pairs
                .iter()
                .map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_string(), v.to_string())))
                .collect::<Option<Vec<_>>>()
                .context("settings are given as KEY=VALUE")?;
            let current = ClientSettings::from_stored(store.settings_get(row.id).await?);
            let writes = current.plan(&uid, &updates, settings.upstream, &keys)?;
            store.settings_put(row.id, &writes).await?;
            for w in &writes {
                let given = updates.iter().any(|(k, _)| k == &w.key);
                match (&w.value, given) {
                    (_, false) => {
                        println!("cleared {} (the host of the URL it is sent to changed; set it again)", w.key)
                    }
                    (None, true) => println!("reset {}", w.key),
                    (Some(_), true) => println!("set {}", w.key),
                }
            }
        }
    }
    Ok(())
}

fn notes(s: &ClientSettings) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if s.origins().is_empty() {
        notes.push("allowed_domains is empty: no website can use this client yet (secure default)");
    }
    if s.get("graphql_url").is_empty() {
        notes.push("graphql_url is empty: no training source is configured");
    }
    if s.get("chunk_size").parse::<u32>().is_ok_and(|n| n > crate::knowledge::train::MAX_PAGE_SIZE) {
        notes.push("chunk_size is above 1,000: paged queries fetch 1,000 entries a page (stores cap page sizes)");
    }
    if !s.is_set("model_token") && s.get("model_url").is_empty() {
        notes.push("no model configured: the assistant answers from the knowledge base on its own");
    }
    if !s.get("operator_url").is_empty() && s.get("operator_inbox_id").is_empty() {
        notes.push("operator_inbox_id is empty: no hand-off to Chatwoot until it names the API inbox");
    }
    if s.get("operator_allow_unsigned_webhooks") == "on" {
        notes.push(
            "WARNING operator_allow_unsigned_webhooks is on: anyone who can reach /api/webhook can write to \
             visitors as an operator; use it only with Chatwoot older than 4.13 and turn it off after upgrading",
        );
    }
    notes
}
