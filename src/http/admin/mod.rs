//! The admin API's door: signing in and out, the session cookie, and the checks every admin
//! request passes — a valid session, the CSRF token on anything that changes state, and a
//! same-site origin. The routes themselves are listed in `http::router`.

pub mod admins;
pub mod checks;
pub mod clients;
pub mod conversations;
pub mod openapi;
pub mod operations;
pub mod pages;
pub mod visitors;

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody, client_ip};
use crate::admin::accounts::{self, SESSION_TTL};
use crate::admin::{Principal, SignInError};
use crate::app::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "aia_admin";
/// The header state-changing API calls repeat the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in admin, checked for CSRF and origin on state-changing methods.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, ApiError> {
        let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes {
            same_site(&parts.headers)?;
        }
        let principal = signed_in(state, &parts.headers).await?;
        if changes {
            let given = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !crate::ids::same_secret(given, &principal.csrf) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_token_invalid",
                    "This request must carry the session's CSRF token in the X-CSRF-Token header.",
                ));
            }
        }
        Ok(Admin(principal))
    }
}

impl Admin {
    /// `Ok` when the account may manage client `uid`; an unknown and a foreign client look the
    /// same, so a client admin learns nothing about other shops.
    pub fn client(
        &self,
        state: &AppState,
        uid: &str,
    ) -> Result<std::sync::Arc<crate::registry::ClientRuntime>, ApiError> {
        match state.registry.get(uid) {
            Some(client) if self.0.may_manage(uid) => Ok(client),
            _ => Err(ApiError::unknown_client()),
        }
    }

    /// `Ok` for server admins only.
    pub fn server_admin(&self) -> Result<(), ApiError> {
        if self.0.is_server_admin() {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "server_admin_only", "Only a server admin may do this."))
        }
    }
}

/// The account signed in with the request's session cookie.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = cookie(headers, COOKIE).ok_or_else(signed_out)?;
    accounts::session(state.store.as_ref(), token).await.map_err(|e| ApiError::internal(&e))?.ok_or_else(signed_out)
}

fn signed_out() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "signed_out", "Sign in first: POST /api/admin/login.")
}

/// Refuses cross-site requests: browsers send `Sec-Fetch-Site` and `Origin`; a request from
/// another site never changes anything here, whatever cookie it carries.
fn same_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let cross = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "Admin changes must come from the admin panel itself.",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(cross());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = url::Url::parse(origin).ok().map(|u| match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or("")),
            None => u.host_str().unwrap_or("").to_string(),
        });
        if origin_host.as_deref() != Some(host) {
            return Err(cross());
        }
    }
    Ok(())
}

/// A cookie's value from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether browsers reach us over https (then the cookie is `Secure`).
fn behind_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.settings.public_url.as_ref().is_some_and(|u| u.scheme() == "https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn session_cookie(state: &AppState, headers: &HeaderMap, token: &str, max_age: u64) -> HeaderValue {
    let secure = if behind_https(state, headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .expect("a token is a valid header value")
}

/// What the admin's browser learns about its session.
fn session_json(p: &Principal) -> serde_json::Value {
    json!({"username": p.username, "role": p.role, "clients": p.clients, "csrfToken": p.csrf})
}

/// Body of `POST /api/admin/login`.
#[derive(Debug, Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /api/admin/login`: checks the password (slowed down after failures) and sets the
/// session cookie.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Login>,
) -> Response {
    if let Err(e) = same_site(&headers) {
        return e.into_response();
    }
    let ip = client_ip(&state, peer, &headers);
    match accounts::sign_in(state.store.as_ref(), &state.login_throttle, &body.username, &body.password, ip).await {
        Ok(signed) => {
            let cookie = session_cookie(&state, &headers, &signed.token, SESSION_TTL.as_secs());
            let mut response = Json(session_json(&signed.principal)).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            no_store(response)
        }
        Err(SignInError::Throttled(wait)) => throttled(wait, |secs| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "login_throttled",
                format!("Too many wrong passwords for this account from your address; try again in {secs} s."),
            )
            .into_response()
        }),
        Err(SignInError::Invalid) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "Wrong username or password.")
                .into_response()
        }
        Err(SignInError::Store(e)) => ApiError::internal(&e).into_response(),
    }
}

/// A throttled sign-in's answer (made by `answer` from the whole seconds to wait), with the
/// `Retry-After` header both the API and the sign-in page send.
pub fn throttled(wait: std::time::Duration, answer: impl FnOnce(u64) -> Response) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = answer(secs);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// `POST /api/admin/logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, _admin: Admin, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, COOKIE)
        && let Err(e) = accounts::sign_out(state.store.as_ref(), token).await
    {
        return ApiError::internal(&e).into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &headers, "", 0));
    response
}

/// `GET /api/admin/session`: who is signed in, and the CSRF token for the page's calls.
pub async fn session(admin: Admin) -> Response {
    no_store(Json(session_json(&admin.0)).into_response())
}

/// Admin answers are never cached (they carry a CSRF token or a client's settings).
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
