//! A client's conversations for its admins: a searchable list (newest activity first, with
//! hand-off state, tasks and the visitor's ratings) and each transcript. A client admin sees
//! only their own clients' conversations: `Admin::client` decides, as everywhere.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::pages::{AdminPage, Me, display, page};
use super::{Admin, no_store};
use crate::app::AppState;
use crate::http::ApiError;
use crate::realtime::protocol::rfc3339_ms;
use crate::registry::ClientRuntime;
use crate::store::ConversationSummary;

/// Conversations per page.
pub const PAGE_SIZE: u32 = 25;
/// Messages a transcript shows at most (the newest).
pub const TRANSCRIPT_MAX: u32 = 500;

/// The list's query: a search and a 1-based page.
#[derive(Debug, Default)]
pub struct ListQuery {
    q: String,
    page: Option<u32>,
}

impl ListQuery {
    /// Reads `q` and `page`, refusing a page that is not a number in the API's error shape.
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
        let mut query = ListQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                "q" => query.q = v,
                "page" => {
                    let page = v.parse::<u32>().ok().filter(|p| (1..=10_000).contains(p));
                    query.page = Some(page.ok_or_else(|| {
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid_page", "page is a number from 1 to 10000.")
                    })?);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(&e)
}

fn summary_json(c: &ConversationSummary) -> Value {
    json!({
        "conversationId": c.session.conversation_id,
        "startedAt": rfc3339_ms(c.session.created_at),
        "lastAt": rfc3339_ms(c.last_at),
        "messages": c.messages,
        "firstQuestion": c.first_question,
        "handoff": c.handoff.map(|h| h.as_str()),
        "tasks": c.tasks,
        "feedback": {"up": c.feedback_up, "down": c.feedback_down},
        "visitorName": c.session.visitor_name,
    })
}

/// One page of the list and whether there are more.
async fn list_json(
    state: &AppState,
    client: &ClientRuntime,
    q: &ListQuery,
) -> Result<(Vec<Value>, u32, bool), ApiError> {
    let page = q.page.unwrap_or(1).clamp(1, 10_000);
    let query = q.q.chars().take(200).collect::<String>();
    let rows = state
        .store
        .conversations(client.row.id, &query, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
        .await
        .map_err(internal)?;
    let more = rows.len() > PAGE_SIZE as usize;
    Ok((rows.iter().take(PAGE_SIZE as usize).map(summary_json).collect(), page, more))
}

/// `GET /api/admin/clients/{uid}/conversations?q=…&page=…`.
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Path(uid): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        let q = ListQuery::from_pairs(pairs)?;
        let (rows, page, more) = list_json(&state, &client, &q).await?;
        Ok::<_, ApiError>(Json(json!({"conversations": rows, "page": page, "more": more})).into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

/// A transcript with its hand-off state and tasks.
async fn transcript_json(state: &AppState, client: &ClientRuntime, conversation: &str) -> Result<Value, ApiError> {
    let store = &state.store;
    let session = store
        .session_by_conversation(client.row.id, conversation)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_conversation", "No such conversation."))?;
    let (messages, earlier) = store.messages_page(session.id, None, TRANSCRIPT_MAX).await.map_err(internal)?;
    let handoff = store.operator_link(session.id).await.map_err(internal)?.map(|l| l.state.as_str());
    let tasks = store.tasks_of_session(session.id).await.map_err(internal)?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "seq": m.seq,
                "role": m.role.as_str(),
                "text": m.text,
                "at": rfc3339_ms(m.created_at),
                "source": m.source,
                "entryId": m.entry_id,
                "feedback": m.feedback.map(|f| f.as_str()),
                "author": m.author.as_ref().map(|a| a.name.clone()),
            })
        })
        .collect();
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| {
            json!({
                "title": t.title,
                "state": t.state.as_str(),
                "reference": t.reference,
                "url": t.url,
                "createdAt": rfc3339_ms(t.created_at),
                "lastError": t.last_error,
            })
        })
        .collect();
    Ok(json!({
        "conversationId": session.conversation_id,
        "startedAt": rfc3339_ms(session.created_at),
        "visitor": {"name": session.visitor_name, "email": session.visitor_email, "verified": false},
        "handoff": handoff,
        "earlierMessages": earlier,
        "messages": messages,
        "tasks": tasks,
    }))
}

/// `GET /api/admin/clients/{uid}/conversations/{conversation}`.
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path((uid, conversation)): Path<(String, String)>,
) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        Ok::<_, ApiError>(Json(transcript_json(&state, &client, &conversation).await?).into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

#[derive(Template)]
#[template(path = "admin/conversations.html")]
struct ListPage {
    me: Me,
    uid: String,
    q: String,
    rows: Vec<Value>,
    page: u32,
    more: bool,
}

impl ListPage {
    fn text(&self, v: &Value) -> String {
        display(v)
    }
}

/// `GET /admin/clients/{uid}/conversations`.
pub async fn list_page(
    State(state): State<AppState>,
    AdminPage(me): AdminPage,
    Path(uid): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let client = match Admin(me.clone()).client(&state, &uid) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let q = match ListQuery::from_pairs(pairs) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    match list_json(&state, &client, &q).await {
        Ok((rows, page, more)) => {
            page_of(ListPage { me: Me::from(&me), uid, q: q.q.clone(), rows, page, more }.render())
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Template)]
#[template(path = "admin/transcript.html")]
struct TranscriptPage {
    me: Me,
    uid: String,
    t: Value,
}

impl TranscriptPage {
    fn text(&self, v: &Value) -> String {
        display(v)
    }
}

/// `GET /admin/clients/{uid}/conversations/{conversation}`.
pub async fn transcript_page(
    State(state): State<AppState>,
    AdminPage(me): AdminPage,
    Path((uid, conversation)): Path<(String, String)>,
) -> Response {
    let client = match Admin(me.clone()).client(&state, &uid) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match transcript_json(&state, &client, &conversation).await {
        Ok(t) => page_of(TranscriptPage { me: Me::from(&me), uid, t }.render()),
        Err(e) => e.into_response(),
    }
}

fn page_of(html: Result<String, askama::Error>) -> Response {
    page(StatusCode::OK, html)
}
