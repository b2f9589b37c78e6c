//! The one HTTP error type: a status, a stable machine-readable code and a message. 5xx
//! bodies never carry internal details; those are logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// An error with a public message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// `client_required`: no clientUid given.
    pub fn client_required() -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "client_required", "The clientUid query parameter is required.")
    }

    /// `unknown_client`.
    pub fn unknown_client() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "unknown_client", "No chat client with this clientUid exists on this server.")
    }

    /// `origin_required`: no Origin header.
    pub fn origin_required() -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "origin_required", "An Origin header is required.")
    }

    /// `forbidden_origin`.
    pub fn forbidden_origin() -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "This website is not in the chat client's allowed domains (allowed_domains).",
        )
    }

    /// `rate_limited`.
    pub fn rate_limited() -> ApiError {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many connections from this address; try again later.",
        )
    }

    /// `shutting_down`.
    pub fn shutting_down() -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "The server is restarting; try again in a moment.")
    }

    /// `internal`, logging the cause once.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on our side.")
    }
}

/// Access and erasure requests' failures (`privacy`).
impl From<crate::privacy::PrivacyError> for ApiError {
    fn from(e: crate::privacy::PrivacyError) -> ApiError {
        use crate::privacy::PrivacyError;
        match e {
            PrivacyError::Invalid => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_visitor",
                "visitor is a conversation id (c_…) or an email address, 1 to 320 characters.",
            ),
            PrivacyError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_visitor",
                "No conversation has this id, or was identified with this email.",
            ),
            PrivacyError::UnknownClient(_) => ApiError::unknown_client(),
            PrivacyError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

/// A JSON body whose refusal is an [`ApiError`] like every other error (axum's own answers
/// in plain text).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_required",
                "Send the body as JSON (Content-Type: application/json).",
            )),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text()))
            }
            Err(e) => Err(ApiError::new(e.status(), "unreadable_body", e.body_text())),
        }
    }
}
