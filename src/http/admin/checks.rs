//! The editor's test buttons: `POST /api/admin/clients/{uid}/checks/{integration}` tries one
//! integration with the client's saved settings and says what works, or what failed, where,
//! and what to change — never more than a short excerpt of an upstream's answer (our error
//! types already cut it) and never a secret. The check ran either way: the answer is 200 with
//! `ok` true or false.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Admin, no_store};
use crate::app::AppState;
use crate::http::ApiError;
use crate::registry::ClientRuntime;

/// The integrations a test button can try.
pub const INTEGRATIONS: &[&str] = &["model", "embeddings", "tasks", "catalog"];

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
        match serde_json::from_slice(&body) {
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
        "embeddings" => embeddings(&state, &client).await,
        "tasks" => tasks(&state, &client).await,
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

/// At most `max` characters of an upstream's words.
fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
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
