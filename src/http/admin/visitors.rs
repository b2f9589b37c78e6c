//! Access and erasure requests in the admin API: export or delete a visitor's conversations by
//! conversation id or email, within one client (its admins) or across all (server admins).
//! The visitor is named in the JSON body, never in the URL, so no address ends up in access
//! logs. The work is `privacy`'s; `AppState::erase` also ends the erased sessions' sockets.

use axum::Json;
use axum::extract::{Path, State};
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
}

/// `POST /api/admin/clients/{uid}/visitors/export`.
pub async fn export_in_client(
    State(state): State<AppState>,
    admin: Admin,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<VisitorRequest>,
) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        export(&state, &body, Some(&client.row.uid)).await
    };
    no_store(result.await.unwrap_or_else(IntoResponse::into_response))
}

/// `POST /api/admin/clients/{uid}/visitors/delete`.
pub async fn delete_in_client(
    State(state): State<AppState>,
    admin: Admin,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<VisitorRequest>,
) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        delete(&state, &admin, &body, Some(&client.row.uid)).await
    };
    no_store(result.await.unwrap_or_else(IntoResponse::into_response))
}

/// `POST /api/admin/visitors/export`: every client's conversations (server admins).
pub async fn export_everywhere(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<VisitorRequest>,
) -> Response {
    let result = async {
        admin.server_admin()?;
        export(&state, &body, None).await
    };
    no_store(result.await.unwrap_or_else(IntoResponse::into_response))
}

/// `POST /api/admin/visitors/delete`: in every client (server admins).
pub async fn delete_everywhere(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<VisitorRequest>,
) -> Response {
    let result = async {
        admin.server_admin()?;
        delete(&state, &admin, &body, None).await
    };
    no_store(result.await.unwrap_or_else(IntoResponse::into_response))
}

async fn export(state: &AppState, body: &VisitorRequest, client: Option<&str>) -> Result<Response, ApiError> {
    let subject = Subject::parse(&body.visitor)?;
    let matched = privacy::find(state.store.as_ref(), &subject, client).await?;
    Ok(Json(privacy::export(state.store.as_ref(), &matched).await?).into_response())
}

async fn delete(
    state: &AppState,
    admin: &Admin,
    body: &VisitorRequest,
    client: Option<&str>,
) -> Result<Response, ApiError> {
    let subject = Subject::parse(&body.visitor)?;
    let matched = privacy::find(state.store.as_ref(), &subject, client).await?;
    let erasure = state.erase(&matched).await?;
    // Who erased how much, for the record; never whom (no id, no address).
    tracing::info!(admin = %admin.0.username, conversations = erasure.conversations.len(), "visitor data erased");
    Ok(Json(erasure).into_response())
}
