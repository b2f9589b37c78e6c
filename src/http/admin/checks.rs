//! The editor's test buttons: `POST /api/admin/clients/{uid}/checks/{integration}` runs one
//! check of `crate::checks` with the client's saved settings. The check ran either way: the
//! answer is 200 with `ok` true or false.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Admin, no_store};
use crate::app::AppState;
use crate::checks::{Subject, Toolkit};
use crate::http::ApiError;

pub use crate::checks::INTEGRATIONS;

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
    let kit = Toolkit::of(&state, crate::http::base_url(&state, &headers));
    let subject = Subject { uid: &client.row.uid, settings: &client.settings };
    let report = crate::checks::run(integration, &kit, subject, input.query.as_deref()).await;
    tracing::info!(admin = %admin.0.username, client = %uid, integration, ok = report.ok, "integration test");
    no_store(Json(report).into_response())
}
