//! Access and erasure requests in the admin API: export or delete a visitor's conversations by
//! conversation id or email, within one client (its admins) or across all (server admins).
//! The visitor and the client are named in the JSON body, never in the URL, so no address ends
//! up in access logs. The work is `privacy`'s; `AppState::erase` also ends the erased
//! sessions' sockets.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Admin, no_store};
use crate::app::AppState;
use crate::http::{ApiError, JsonBody};
use crate::privacy::{self, Subject};

/// Body of every visitor request.
#[derive(Debug, Deserialize)]
pub struct VisitorRequest {
    /// A conversation id (`c_…`) or the email the visitor gave.
    visitor: String,
    /// Only this client's conversations; without it, every client's (server admins only).
    #[serde(default)]
    client: Option<String>,
}

/// `POST /api/admin/visitors/export`.
pub async fn export(State(state): State<AppState>, admin: Admin, JsonBody(body): JsonBody<VisitorRequest>) -> Response {
    let result = async {
        let client = scope(&state, &admin, &body)?;
        let subject = Subject::parse(&body.visitor)?;
        let matched = privacy::find(state.store.as_ref(), &subject, client.as_deref()).await?;
        Ok::<_, ApiError>(Json(privacy::export(state.store.as_ref(), &matched).await?).into_response())
    };
    no_store(result.await.unwrap_or_else(IntoResponse::into_response))
}

/// `POST /api/admin/visitors/delete`.
pub async fn delete(State(state): State<AppState>, admin: Admin, JsonBody(body): JsonBody<VisitorRequest>) -> Response {
    let result = async {
        let client = scope(&state, &admin, &body)?;
        let subject = Subject::parse(&body.visitor)?;
        let matched = privacy::find(state.store.as_ref(), &subject, client.as_deref()).await?;
        let erasure = state.erase(&matched).await?;
        // Who erased how much, for the record; never whom (no id, no address).
        tracing::info!(admin = %admin.0.username, conversations = erasure.conversations.len(), "visitor data erased");
        Ok::<_, ApiError>(Json(erasure).into_response())
    };
    no_store(result.await.unwrap_or_else(IntoResponse::into_response))
}

/// The client a request is limited to: one the account manages (an unknown and a foreign
/// client look the same, as on every client route), or none, which only a server admin may
/// ask for (every client).
fn scope(state: &AppState, admin: &Admin, body: &VisitorRequest) -> Result<Option<String>, ApiError> {
    match &body.client {
        Some(uid) => Ok(Some(admin.client(state, uid)?.row.uid.clone())),
        None => admin.server_admin().map(|()| None),
    }
}
