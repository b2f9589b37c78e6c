//! The editor's test buttons: `POST /api/admin/clients/{uid}/checks/{integration}` tries one
//! integration with the client's saved settings and says what works, or what failed, where,
//! and what to change — never more than a short excerpt of an upstream's answer (our error
//! types already cut it) and never a secret. The check ran either way: the answer is 200 with
//! `ok` true or false.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Admin, no_store};
use crate::app::AppState;
use crate::http::ApiError;
use crate::registry::ClientRuntime;
use crate::tasks::detect::excerpt;

/// The integrations a test button can try.
pub const INTEGRATIONS: &[&str] = &["model", "graphql", "embeddings", "tasks", "catalog", "operator"];

/// What a check found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub integration: &'static str,
    pub ok: bool,
    /// One sentence for the admin.
    pub summary: String,
    /// What failed, where, and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// What was found (lists, products, the reply…).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
    pub elapsed_ms: u64,
}

/// Why a check failed.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The service and the setting that names it.
    #[serde(rename = "where")]
    pub place: String,
    pub what: String,
    pub fix: String,
}

struct Outcome {
    ok: bool,
    summary: String,
    problem: Option<Problem>,
    details: Value,
}

fn passed(summary: String, details: Value) -> Outcome {
    Outcome { ok: true, summary, problem: None, details }
}

fn failed(summary: &str, place: impl Into<String>, what: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        ok: false,
        summary: summary.to_string(),
        problem: Some(Problem { place: place.into(), what: what.into(), fix: fix.into() }),
        details: Value::Null,
    }
}

/// Optional body of a check (the catalog's sample search term).
#[derive(Debug, Default, serde::Deserialize)]
pub struct CheckInput {
    #[serde(default)]
    query: Option<String>,
}

/// `POST /api/admin/clients/{uid}/checks/{integration}`.
pub async fn run(
    State(state): State<AppState>,
    admin: Admin,
    Path((uid, integration)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let client = match admin.client(&state, &uid) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(integration) = INTEGRATIONS.iter().copied().find(|i| *i == integration) else {
        let known = INTEGRATIONS.join(", ");
        let e =
            ApiError::new(StatusCode::NOT_FOUND, "unknown_integration", format!("No such test; there are: {known}."));
        return e.into_response();
    };
    // The body is optional; when given it must be a JSON object.
    let input: CheckInput = if body.iter().all(u8::is_ascii_whitespace) {
        CheckInput::default()
    } else {
        // An object only (serde would also take an array for a struct).
        let parsed = serde_json::from_slice::<Value>(&body).and_then(|v| {
            if v.is_object() { serde_json::from_value(v) } else { Err(serde::de::Error::custom("not an object")) }
        });
        match parsed {
            Ok(input) => input,
            Err(e) => {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("The body must be a JSON object: {e}"),
                );
                return e.into_response();
            }
        }
    };
    let started = Instant::now();
    let outcome = match integration {
        "model" => model(&state, &client).await,
        "graphql" => graphql(&state, &client).await,
        "embeddings" => embeddings(&state, &client).await,
        "tasks" => tasks(&state, &client).await,
        "operator" => operator(&state, &client, &crate::http::base_url(&state, &headers)).await,
        _ => catalog(&state, &client, input.query.as_deref()).await,
    };
    tracing::info!(admin = %admin.0.username, client = %uid, integration, ok = outcome.ok, "integration test");
    let report = Report {
        integration,
        ok: outcome.ok,
        summary: outcome.summary,
        problem: outcome.problem,
        details: outcome.details,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    no_store(Json(report).into_response())
}

async fn model(state: &AppState, client: &ClientRuntime) -> Outcome {
    use crate::model::chat::{Chat, ChatRequest, Turn};
    let uid = &client.row.uid;
    let place = || {
        let url = client.settings.get("model_url");
        format!("model API ({})", if url.is_empty() { "the provider's default URL" } else { url })
    };
    let config = match crate::assistant::model_config(&client.settings, &state.keys, uid) {
        None => {
            return failed(
                "No model is configured: the assistant answers from the knowledge base on its own.",
                "AI model settings",
                "model_url and model_token are empty",
                "Set model_token (and model_url for a server other than OpenAI's), then save and test again.",
            );
        }
        Some(Err(why)) => {
            return failed(
                "The model settings cannot be used.",
                "AI model settings",
                why,
                "Correct the AI model settings.",
            );
        }
        Some(Ok(config)) => config,
    };
    let chat = Chat {
        system: "You check a connection. Reply with the single word OK.".into(),
        turns: vec![Turn::User("Ping".into())],
    };
    let request = ChatRequest { model: &config.model, chat: &chat, tools: &[], max_tokens: config.max_tokens };
    let body = config.endpoint.provider.protocol().body(&request);
    let mut reply = String::new();
    let result =
        crate::model::client::stream_chat(&state.model_http, &config.endpoint, &body, &config.timeouts, |piece| {
            if reply.len() < 400 {
                reply.push_str(piece)
            }
        })
        .await;
    match result {
        Ok(_) => passed(
            format!("The model {} answered.", config.model),
            json!({"model": config.model, "reply": excerpt(reply.trim(), 120)}),
        ),
        Err(e) => failed(
            "The model did not answer.",
            place(),
            e.to_string(),
            "Check model_url, model_token and model_type (the model id the provider expects).",
        ),
    }
}

async fn embeddings(state: &AppState, client: &ClientRuntime) -> Outcome {
    let place = || format!("embeddings API ({})", client.settings.get("embedding_url"));
    let embedder = match state.registry.embedder_for(&client.row.uid, &client.settings) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return failed(
                "No embeddings are configured: search is full-text only.",
                "Knowledge settings",
                "embedding_url is empty and the server runs no embedding model",
                "Set embedding_url (and embedding_token), or start the server with --embedding-model.",
            );
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

async fn tasks(state: &AppState, client: &ClientRuntime) -> Outcome {
    use crate::tasks::provider::{self, SetupError, TaskProvider};
    let settings = &client.settings;
    let place = || format!("Trello ({})", settings.get("trello_api_url"));
    let provider = match provider::for_client(settings, &state.keys, &client.row.uid, state.tasks_http.clone()) {
        Ok(p) => p,
        Err(SetupError::Missing(key)) => {
            return failed(
                "Tasks are not set up.",
                "Tasks (Trello) settings",
                format!("{key} is empty"),
                format!("Set {key}, then save and test again."),
            );
        }
        Err(e) => {
            return failed(
                "The task settings cannot be used.",
                "Tasks (Trello) settings",
                e.to_string(),
                "Correct the Trello settings.",
            );
        }
    };
    let found = match provider.destinations().await {
        Ok(found) => found,
        Err(e) => {
            return failed(
                "Trello refused or did not answer.",
                place(),
                e.to_string(),
                "Check trello_key, trello_token (it needs read and write access) and trello_board_id.",
            );
        }
    };
    let list = settings.get("trello_list_id");
    if !list.is_empty() && !found.lists.iter().any(|l| l.id == list) {
        let mut o = failed(
            "The board answered, but the list for new cards is not on it.",
            "trello_list_id",
            format!("no open list of the board has the id {list}"),
            "Pick one of the board's lists below.",
        );
        o.details = json!(found);
        return o;
    }
    let missing: Vec<&str> = crate::clients::origin::split_list(settings.get("trello_label_ids"))
        .filter(|id| !found.labels.iter().any(|l| l.id == *id))
        .collect();
    if !missing.is_empty() {
        let mut o = failed(
            "The board answered, but some default labels are not on it.",
            "trello_label_ids",
            format!("unknown label ids: {}", missing.join(", ")),
            "Remove them or pick labels from the board's list below.",
        );
        o.details = json!(found);
        return o;
    }
    let summary = format!("The board answered: {} open lists, {} labels.", found.lists.len(), found.labels.len());
    passed(summary, json!(found))
}

async fn catalog(state: &AppState, client: &ClientRuntime, query: Option<&str>) -> Outcome {
    let Some(catalog) = state.catalogs.for_client(client, &state.keys, &state.catalog_http) else {
        return failed(
            "No product catalog is configured.",
            "Products (catalog) settings",
            "neither product_graphql_url nor graphql_url is set, or the catalog settings are invalid (see the server log)",
            "Set product_graphql_url (or graphql_url for the same Magento store).",
        );
    };
    let term = query.map(str::trim).filter(|q| !q.is_empty()).unwrap_or("lamp");
    match catalog.search(term, &Default::default()).await {
        Ok(products) => {
            let shown: Vec<Value> =
                products.iter().take(5).map(|p| json!({"name": p.name, "url": p.url, "price": p.price})).collect();
            passed(
                format!("The catalog answered: {} products for \"{term}\".", products.len()),
                json!({"query": term, "products": shown}),
            )
        }
        Err(e) => failed(
            "The catalog search failed.",
            format!("product catalog ({})", client.settings.get("product_graphql_url")),
            e.to_string(),
            "Check product_graphql_url, product_query and product_headers.",
        ),
    }
}

/// Text with every secret value replaced: upstream errors should never echo one, but a check's
/// report must not carry it even if they do.
fn scrub(text: String, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| s.len() >= 4).fold(text, |text, s| text.replace(s, "[redacted]"))
}

/// The shape of a JSON value by its keys alone (never its values), `depth` objects deep: what
/// a page looked like when no entries were found in it.
fn shape(value: &Value, depth: usize) -> String {
    match value {
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(_) if depth == 0 => "{…}".into(),
        Value::Object(o) => {
            let inner: Vec<String> = o
                .iter()
                .map(|(k, v)| match v {
                    Value::Object(_) | Value::Array(_) => format!("{k} {}", shape(v, depth - 1)),
                    _ => k.clone(),
                })
                .collect();
            format!("{{ {} }}", inner.join(" "))
        }
        Value::Array(items) => match items.first() {
            Some(first @ (Value::Object(_) | Value::Array(_))) => format!("[{}]", shape(first, depth)),
            Some(_) => "[…]".into(),
            None => "[]".into(),
        },
        _ => String::new(),
    }
}

/// The training source: the first page of `graphql_query`, exactly as a training run fetches
/// it, through the extractor training uses; nothing is written to the knowledge base.
async fn graphql(state: &AppState, client: &ClientRuntime) -> Outcome {
    use crate::knowledge::extract::{Mapping, dedupe, extract, fields_used, looked_for};
    use crate::knowledge::graphql::{Paging, Source, find_key, paging};
    use crate::knowledge::train::{MAX_PAGE_SIZE, first_page_variables};
    let s = &client.settings;
    let (url, query) = (s.get("graphql_url"), s.get("graphql_query"));
    let missing: Vec<&str> = [("graphql_url", url.is_empty()), ("graphql_query", query.trim().is_empty())]
        .into_iter()
        .filter_map(|(key, empty)| empty.then_some(key))
        .collect();
    if !missing.is_empty() {
        return failed(
            "No training source is configured: the knowledge base holds only what was imported.",
            "Knowledge settings",
            format!("{} {} empty", missing.join(" and "), if missing.len() == 1 { "is" } else { "are" }),
            "Set graphql_url (the store's GraphQL endpoint) and graphql_query (a query returning the FAQ entries), \
             then save and test again.",
        );
    }
    if let Err(e) = state.trainer.policy.check_url(url) {
        return failed(
            "The training source's URL is refused.",
            "graphql_url",
            format!("graphql_url {e}"),
            "Correct graphql_url.",
        );
    }
    let headers: Vec<(String, String)> = match s.secret(&state.keys, &client.row.uid, "graphql_headers") {
        None => Vec::new(),
        Some(Err(e)) => {
            return failed(
                "The GraphQL headers cannot be read.",
                "graphql_headers",
                format!("graphql_headers: {e}"),
                "Set graphql_headers again.",
            );
        }
        // serde's message could quote a value: only where the text goes wrong is told.
        Some(Ok(text)) => match serde_json::from_str::<std::collections::BTreeMap<String, String>>(&text) {
            Ok(map) => map.into_iter().collect(),
            Err(e) => {
                return failed(
                    "The GraphQL headers cannot be used.",
                    "graphql_headers",
                    format!(
                        "graphql_headers is not a JSON object of header names and text values (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                    "Set graphql_headers to a JSON object, e.g. {\"Authorization\": \"Bearer …\", \"Store\": \"default\"}.",
                );
            }
        },
    };
    let mapping = match Mapping::parse(s.get("graphql_fields")) {
        Ok(m) => m,
        Err(why) => {
            return failed(
                "The field mapping cannot be used.",
                "graphql_fields",
                format!("graphql_fields: {why}"),
                "Correct graphql_fields, e.g. question=title,answer=content.html,id=faq_id, or empty it to find the \
                 fields automatically.",
            );
        }
    };
    let secrets: Vec<&str> = headers.iter().map(|(_, v)| v.as_str()).collect();
    let place = format!("GraphQL source ({url})");
    let size = s.get("chunk_size").parse::<u32>().unwrap_or(100).clamp(1, MAX_PAGE_SIZE);
    let source = Source { client: &state.trainer.client, url, query, headers: &headers };
    let data = match source.fetch_without_retry(1, first_page_variables(query, size)).await {
        Ok(data) => data,
        Err(e) => return source_failed(&e, place, &secrets),
    };
    let mut extracted = extract(&data, &mapping, 1);
    dedupe(&mut extracted.entries, &mut extracted.warnings);
    let used = fields_used(&data, &mapping);
    let warnings: Vec<String> =
        extracted.warnings.iter().take(5).map(|w| excerpt(&scrub(w.clone(), &secrets), 200)).collect();
    if extracted.entries.is_empty() {
        let what = match &used {
            Some(u) if extracted.items > 0 => format!(
                "the {} items of {} gave no entry: {}",
                extracted.items,
                u.list,
                if warnings.is_empty() { "no question or answer in them".to_string() } else { warnings.join("; ") }
            ),
            _ => format!("the first page has no FAQ entries: looked for {}", looked_for(&mapping)),
        };
        let fix = if s.get("graphql_fields").is_empty() {
            "Name the fields with graphql_fields (e.g. question=title,answer=content.html,id=faq_id, paths inside \
             each item), or change graphql_query to select question and answer fields."
        } else {
            "Correct graphql_fields (paths inside each item of the list) or graphql_query."
        };
        let mut o = failed("The GraphQL source answered, but no FAQ entries were found.", place, what, fix);
        o.details = json!({"data": excerpt(&shape(&data, 4), 400), "fields": used});
        return o;
    }
    let (paging_text, total_pages) = match paging(query) {
        Paging::Once => ("none: the query runs once".to_string(), None),
        Paging::Pages => {
            (format!("$pageSize/$currentPage, {size} a page"), find_key(&data, "total_pages").and_then(Value::as_u64))
        }
        Paging::Cursor => (format!("$first/$after, {size} a page"), None),
        Paging::Offset => (format!("$limit/$offset, {size} a page"), None),
    };
    let preview: Vec<Value> = extracted
        .entries
        .iter()
        .take(3)
        .map(|e| {
            json!({
                "id": excerpt(&e.id, 80),
                "question": excerpt(&e.question, 160),
                "answer": excerpt(&e.answer, 160),
            })
        })
        .collect();
    let n = extracted.entries.len();
    let mut summary = format!("The first page gave {n} {}", if n == 1 { "entry" } else { "entries" });
    match total_pages {
        Some(t) if t > 1 => summary.push_str(&format!(" (page 1 of {t})")),
        _ => {}
    }
    summary.push('.');
    passed(
        summary,
        json!({
            "entries": n,
            "items": extracted.items,
            "paging": paging_text,
            "total_pages": total_pages,
            "fields": used,
            "preview": preview,
            "warnings": warnings,
        }),
    )
}

/// A failed fetch of the training source, with what to change for each kind of failure.
fn source_failed(e: &crate::knowledge::graphql::SourceError, place: String, secrets: &[&str]) -> Outcome {
    use crate::knowledge::graphql::SourceError;
    let (summary, fix) = match e {
        SourceError::Http { status: 401 | 403, .. } | SourceError::Graphql { status: 401 | 403, .. } => (
            "The GraphQL source refused the credentials.",
            "Check graphql_headers (e.g. {\"Authorization\": \"Bearer …\"}): the token may be wrong, expired, or \
             not allowed to read this data.",
        ),
        SourceError::Http { status: 404, .. } => (
            "The GraphQL source's URL was not found.",
            "Check graphql_url: it is usually the store's address followed by /graphql.",
        ),
        SourceError::Http { .. } => (
            "The GraphQL source answered with an error.",
            "Check graphql_url and that the store is up; if it is busy, test again later.",
        ),
        SourceError::Graphql { .. } => (
            "The GraphQL query was refused.",
            "Correct graphql_query where the message says (try it in the store's GraphQL playground first).",
        ),
        SourceError::InvalidJson { .. } => {
            ("The answer is not GraphQL.", "Check graphql_url: it must be the GraphQL endpoint itself, not a web page.")
        }
        SourceError::Transport { .. } => (
            "The GraphQL source did not answer.",
            "Check graphql_url and that this server can reach it (address, DNS, firewall, TLS).",
        ),
        SourceError::Refused(_) => ("The training source's URL is refused.", "Correct graphql_url."),
    };
    failed(summary, place, excerpt(&scrub(e.to_string(), secrets), 400), fix)
}

/// The hand-over to people: the Chatwoot account and inbox as the relay would find them
/// (`relay::connect`), without remembering anything or writing a setting.
async fn operator(state: &AppState, client: &ClientRuntime, base_url: &str) -> Outcome {
    use crate::operator::chatwoot::{API_CHANNEL, Chatwoot, ChatwootConfig, ChatwootError};
    let s = &client.settings;
    let uid = &client.row.uid;
    let settings_place = "Operator (Chatwoot) settings";
    let missing: Vec<&str> = [
        ("operator_url", s.get("operator_url").is_empty()),
        ("operator_token", !s.is_set("operator_token")),
        ("operator_inbox_id", s.get("operator_inbox_id").is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, empty)| empty.then_some(key))
    .collect();
    if !missing.is_empty() {
        return failed(
            "The hand-over to people is not set up.",
            settings_place,
            format!("{} {} empty", missing.join(", "), if missing.len() == 1 { "is" } else { "are" }),
            "Set operator_url (Chatwoot's address), operator_token (an administrator's access token: Profile \
             settings → Access token) and operator_inbox_id (an API-channel inbox: Settings → Inboxes), then save \
             and test again.",
        );
    }
    // The error is the setting that cannot be read, and why.
    let secret = |key: &'static str| match s.secret(&state.keys, uid, key) {
        Some(Ok(v)) if !v.trim().is_empty() => Ok(Some(v)),
        Some(Err(e)) => Err((key, e.to_string())),
        _ => Ok(None),
    };
    let url = s.get("operator_url");
    let base = match url::Url::parse(url) {
        Ok(base) => base,
        Err(e) => {
            return failed(
                "The Chatwoot URL cannot be used.",
                "operator_url",
                format!("operator_url: {e}"),
                "Set operator_url to Chatwoot's address, e.g. https://chat.example.com.",
            );
        }
    };
    let (admin_token, bot_token, webhook_secret) =
        match (secret("operator_token"), secret("operator_bot_token"), secret("operator_webhook_secret")) {
            (Ok(Some(a)), Ok(b), Ok(w)) => (a, b, w),
            (Ok(None), ..) => {
                return failed(
                    "The hand-over to people is not set up.",
                    settings_place,
                    "operator_token is empty",
                    "Set operator_token to an administrator's access token (Profile settings → Access token).",
                );
            }
            (Err((key, why)), ..) | (_, Err((key, why)), _) | (.., Err((key, why))) => {
                return failed(
                    "A Chatwoot secret cannot be read.",
                    key,
                    format!("{key}: {why}"),
                    format!("Set {key} again."),
                );
            }
        };
    let Ok(inbox_id) = s.get("operator_inbox_id").parse::<i64>() else {
        return failed(
            "The inbox id cannot be used.",
            "operator_inbox_id",
            "it is not a number",
            "Set operator_inbox_id.",
        );
    };
    let secrets: Vec<&str> =
        [Some(admin_token.as_str()), bot_token.as_deref(), webhook_secret.as_deref()].into_iter().flatten().collect();
    let place = |what: &str| format!("Chatwoot ({}), {what}", url.trim_end_matches('/'));
    let http = &state.operator_http;
    let configured_account = s.get("operator_account_id").parse::<i64>().ok();
    let account_id = match configured_account {
        Some(id) => id,
        None => match Chatwoot::profile_account(http, &base, &admin_token).await {
            Ok(id) => id,
            Err(ChatwootError::Invalid(why)) => {
                return failed(
                    "Chatwoot answered, but the account cannot be chosen from the token.",
                    place("the token's profile"),
                    scrub(why, &secrets),
                    "Set operator_account_id to the account to use (the number after /app/accounts/ in Chatwoot's \
                     address bar).",
                );
            }
            Err(e) => return chatwoot_failed(e, place("the token's profile (/api/v1/profile)"), None, &secrets),
        },
    };
    let account_from = if configured_account.is_some() { "operator_account_id" } else { "the token's only account" };
    let config =
        ChatwootConfig { base, account_id, inbox_id, admin_token: admin_token.clone(), bot_token: bot_token.clone() };
    let chatwoot = match Chatwoot::new(config, http.clone()) {
        Ok(c) => c,
        Err(e) => {
            return failed(
                "The Chatwoot settings cannot be used.",
                settings_place,
                scrub(e.to_string(), &secrets),
                "Correct operator_url and operator_token.",
            );
        }
    };
    let inbox_place = place(&format!("account {account_id}, inbox {inbox_id}"));
    let (inbox, name) = match chatwoot.inbox_named(inbox_id).await {
        Ok(found) => found,
        Err(e) => return chatwoot_failed(e, inbox_place, Some((account_id, inbox_id, account_from)), &secrets),
    };
    let mut details = json!({
        "account_id": account_id,
        "account_from": account_from,
        "inbox": {"id": inbox.id, "name": name, "channel_type": inbox.channel_type},
        "bot_token": chatwoot.has_bot_token(),
        "webhook_url": format!("{base_url}/api/webhook/{uid}"),
    });
    if inbox.channel_type != API_CHANNEL {
        let mut o = failed(
            "Chatwoot answered, but the inbox is not an API channel.",
            "operator_inbox_id",
            format!(
                "inbox {inbox_id} ({}) is a {} inbox; the assistant needs an API-channel inbox ({API_CHANNEL})",
                name.as_deref().unwrap_or("unnamed"),
                inbox.channel_type
            ),
            format!(
                "Create an API inbox in Chatwoot (Settings → Inboxes → Add Inbox → API) with the webhook URL \
                 {base_url}/api/webhook/{uid}, then set operator_inbox_id to its id."
            ),
        );
        o.details = details;
        return o;
    }
    let inbox_secret = inbox.secret.as_deref().filter(|v| !v.is_empty());
    let signing = match (webhook_secret.as_deref(), inbox_secret) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            let mut o = failed(
                "Chatwoot answered, but the webhook secret is not the inbox's: agents' replies would be refused.",
                "operator_webhook_secret",
                format!("operator_webhook_secret differs from the secret of inbox {inbox_id}"),
                "Clear operator_webhook_secret (it is then read from the inbox), or paste the inbox's secret.",
            );
            o.details = details;
            return o;
        }
        (Some(_), _) => "operator_webhook_secret is set",
        (None, Some(_)) => "taken from the inbox at the first hand-off (operator_webhook_secret is empty)",
        (None, None) if s.get("operator_allow_unsigned_webhooks") == "on" => {
            "none: unsigned webhooks are accepted (operator_allow_unsigned_webhooks=on)"
        }
        (None, None) => {
            let mut o = failed(
                "Chatwoot answered, but its webhooks cannot be verified: agents' replies would be refused.",
                "operator_webhook_secret",
                format!(
                    "the inbox {inbox_id} has no webhook secret (Chatwoot before 4.13) and operator_webhook_secret is empty"
                ),
                "Upgrade Chatwoot to 4.13 or later (its API inboxes sign webhooks), or set \
                 operator_allow_unsigned_webhooks=on if only trusted networks reach this server.",
            );
            o.details = details;
            return o;
        }
    };
    details["webhook_secret"] = json!(signing);
    passed(
        format!(
            "Chatwoot answered: account {account_id}, API inbox \"{}\" ({inbox_id}).",
            name.as_deref().unwrap_or("unnamed")
        ),
        details,
    )
}

/// A refused or failed Chatwoot call, at the profile (`inbox` is `None`) or at the inbox
/// (account id, inbox id, where the account came from).
fn chatwoot_failed(
    e: crate::operator::chatwoot::ChatwootError,
    place: String,
    inbox: Option<(i64, i64, &str)>,
    secrets: &[&str],
) -> Outcome {
    use crate::operator::chatwoot::ChatwootError;
    let what = excerpt(&scrub(e.to_string(), secrets), 400);
    let (summary, fix) = match (&e, inbox) {
        (ChatwootError::Unauthorized(_), None) => (
            "Chatwoot refused the access token.".to_string(),
            "Check operator_token: an administrator's access token (Chatwoot → Profile settings → Access token)."
                .to_string(),
        ),
        (ChatwootError::Unauthorized(_), Some((account, _, from))) => (
            "Chatwoot refused the access token for this account.".to_string(),
            format!(
                "Check operator_token (an administrator's access token: Profile settings → Access token) and that \
                 its user belongs to account {account} ({from})."
            ),
        ),
        (ChatwootError::NotFound, None) => (
            "Chatwoot's profile API was not found.".to_string(),
            "Check operator_url: Chatwoot's own address (with its path prefix, if any), not a page of it.".to_string(),
        ),
        (ChatwootError::NotFound, Some((account, inbox, from))) => (
            "Chatwoot has no such inbox in this account.".to_string(),
            format!(
                "Check operator_inbox_id (the number after /inboxes/ in the inbox's settings address) and the \
                 account {account} ({from}): the inbox {inbox} must belong to it."
            ),
        ),
        (ChatwootError::Unavailable(_), _) => (
            "Chatwoot did not answer.".to_string(),
            "Check operator_url and that this server can reach Chatwoot (address, DNS, firewall, TLS).".to_string(),
        ),
        (ChatwootError::RateLimited { .. }, _) => {
            ("Chatwoot is rate limiting.".to_string(), "Test again in a minute.".to_string())
        }
        (ChatwootError::Invalid(_) | ChatwootError::Protocol(_), _) => (
            "Chatwoot's answer was unexpected.".to_string(),
            "Check operator_url: it must be Chatwoot's own address (with its path prefix, if any).".to_string(),
        ),
    };
    failed(&summary, place, what, fix)
}
