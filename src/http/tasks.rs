//! `GET /api/tasks/lists?clientUid=UID`: the client's task board — its open lists and its
//! labels — read through this server, so the Trello key and token never reach a browser. An
//! admin read: for an admin signed in to the panel who manages the client, or with the
//! server's read-only admin token (`Authorization: Bearer …`) for scripts.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, admin_read};
use crate::app::AppState;
use crate::tasks::provider::{self, SetupError, TaskProvider};
use crate::tasks::trello::TrelloError;

/// Query of the lists request.
#[derive(Debug, Deserialize)]
pub struct ListsQuery {
    #[serde(rename = "clientUid")]
    client_uid: Option<String>,
}

/// The board's lists and labels, or why not.
pub async fn lists(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ListsQuery>) -> Response {
    match board(&state, &headers, q.client_uid.as_deref()).await {
        Ok(found) => {
            let mut response = Json(found).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("a valid header"));
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn board(
    state: &AppState,
    headers: &HeaderMap,
    uid: Option<&str>,
) -> Result<crate::tasks::provider::Destinations, ApiError> {
    let uid = uid.filter(|u| !u.is_empty());
    let client = if headers.contains_key(header::AUTHORIZATION) {
        admin_read(state, headers)?;
        let uid = uid.ok_or_else(ApiError::client_required)?;
        state.registry.get(uid).ok_or_else(ApiError::unknown_client)?
    } else {
        let admin = super::admin::Admin(super::admin::signed_in(state, headers).await?);
        admin.client(state, uid.ok_or_else(ApiError::client_required)?)?
    };
    let uid = client.row.uid.as_str();
    let provider =
        provider::for_client(&client.settings, &state.keys, uid, state.tasks_http.clone()).map_err(|e| match e {
            SetupError::Provider(e) => upstream(e),
            other => ApiError::new(StatusCode::CONFLICT, "tasks_not_configured", other.to_string()),
        })?;
    provider.destinations().await.map_err(upstream)
}

/// Trello's refusal as our answer: a bad gateway that says what to fix (the text never
/// carries the key or token).
fn upstream(e: TrelloError) -> ApiError {
    let code = match &e {
        TrelloError::Unauthorized(_) => "trello_unauthorized",
        TrelloError::NotFound(_) => "trello_not_found",
        TrelloError::Invalid(_) => "trello_invalid",
        TrelloError::RateLimited { .. } => "trello_rate_limited",
        TrelloError::Unavailable(_) | TrelloError::Protocol(_) => "trello_unavailable",
    };
    let status = match e {
        TrelloError::RateLimited { .. } | TrelloError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, code, e.to_string())
}
