//! HTTP: the one place that lists every route, plus request helpers shared by handlers
//! (which client a request is for, whether its origin may use it, the peer's address).

mod admin;
mod error;
mod pages;
mod public;
pub(crate) mod serve;
mod socket;
mod tasks;
mod webhook;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};

pub use error::{ApiError, JsonBody};

use crate::app::AppState;
use crate::registry::ClientRuntime;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::demo))
        .route("/healthz", get(pages::healthz))
        .route("/readyz", get(pages::readyz))
        .route("/js/ChatBot.js", get(pages::widget))
        .route("/js/{file}", get(pages::script))
        .route("/api/data/ai_chat_bot", get(public::config).options(public::preflight))
        .route("/ws", get(socket::upgrade))
        .route(
            "/api/webhook",
            post(webhook::any_client)
                .layer(DefaultBodyLimit::max(webhook::MAX_BODY))
                .layer(axum::middleware::from_fn_with_state(state.clone(), webhook::gate)),
        )
        .route("/admin", get(admin::pages::root))
        .route("/admin/login", get(admin::pages::login_page).post(admin::pages::login_form))
        .route("/admin/logout", post(admin::pages::logout_form))
        .route("/admin/clients", get(admin::pages::clients).post(admin::pages::add_client))
        .route("/admin/clients/{uid}", get(admin::pages::client).post(admin::pages::save_client))
        .route("/admin/accounts", get(admin::admins::accounts_view).post(admin::admins::accounts_form))
        .route("/admin/password", get(admin::admins::password_view).post(admin::admins::password_form))
        .route("/api/admin/accounts", get(admin::admins::list).post(admin::admins::create))
        .route(
            "/api/admin/accounts/{username}",
            axum::routing::patch(admin::admins::update).delete(admin::admins::delete),
        )
        .route("/api/admin/session/password", post(admin::admins::own_password))
        .route("/admin/assets/admin.css", get(admin::pages::css))
        .route("/admin/assets/admin.js", get(admin::pages::js))
        .route("/admin/assets/operations.js", get(admin::pages::operations_js))
        .route(
            "/admin/clients/{uid}/operations",
            get(admin::operations::operations).post(admin::operations::operations_form),
        )
        .route("/admin/clients/{uid}/conversations", get(admin::conversations::list_page))
        .route("/admin/clients/{uid}/conversations/{conversation}", get(admin::conversations::transcript_page))
        .route("/api/admin/clients/{uid}/conversations", get(admin::conversations::list))
        .route("/api/admin/clients/{uid}/conversations/{conversation}", get(admin::conversations::show))
        .route("/api/admin/visitors/export", post(admin::visitors::export))
        .route("/api/admin/visitors/delete", post(admin::visitors::delete))
        .route("/api/admin/clients/{uid}/training", get(admin::operations::training).post(admin::operations::train))
        .route("/api/admin/clients/{uid}/usage", get(admin::operations::usage))
        .route("/api/admin/clients/{uid}/outbox", get(admin::operations::outbox))
        .route("/api/admin/clients/{uid}/outbox/{id}/retry", post(admin::operations::retry))
        .route("/api/admin/openapi.json", get(admin::openapi::document))
        .route("/api/admin/login", post(admin::login))
        .route("/api/admin/logout", post(admin::logout))
        .route("/api/admin/session", get(admin::session))
        .route("/api/admin/clients", get(admin::clients::list).post(admin::clients::create))
        .route(
            "/api/admin/clients/{uid}",
            get(admin::clients::show).patch(admin::clients::update).delete(admin::clients::delete),
        )
        .route("/api/admin/clients/{uid}/checks/{integration}", post(admin::checks::run))
        .route("/api/tasks/lists", get(tasks::lists))
        .route("/api/metrics/catalog", get(catalog_metrics))
        .route(
            "/api/webhook/{uid}",
            post(webhook::one_client)
                .layer(DefaultBodyLimit::max(webhook::MAX_BODY))
                .layer(axum::middleware::from_fn_with_state(state.clone(), webhook::gate)),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), serve::body_deadline))
        .layer(axum::middleware::from_fn(request_span))
        .with_state(state)
}

/// Runs every request in a span with an id of its own, so each log line it causes names it
/// (`request{id=r-… method=POST route=/api/admin/login}`). The route is the matched template,
/// never the path or query, which may carry ids or credentials.
async fn request_span(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("-", |p| p.as_str()).to_string();
    let span = tracing::info_span!(
        "request",
        id = %format_args!("r-{:08x}", rand::random::<u32>()),
        method = %req.method(),
        route = %route
    );
    next.run(req).instrument(span).await
}

/// The client named by `clientUid` whose allowed domains include the request's `Origin`.
fn allowed_client(state: &AppState, uid: Option<&str>, headers: &HeaderMap) -> Result<Arc<ClientRuntime>, ApiError> {
    let uid = uid.filter(|u| !u.is_empty()).ok_or_else(ApiError::client_required)?;
    let client = state.registry.get(uid).ok_or_else(ApiError::unknown_client)?;
    let origin = origin(headers).ok_or_else(ApiError::origin_required)?;
    if !client.origins.allows(origin) {
        return Err(ApiError::forbidden_origin());
    }
    Ok(client)
}

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// The visitor's address: the peer, or the last untrusted hop of `X-Forwarded-For` when the
/// peer is a trusted proxy.
fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |ip: &IpAddr| state.settings.trusted_proxies.iter().any(|net| net.contains(ip));
    let peer_ip = peer.ip().to_canonical();
    if !trusted(&peer_ip) {
        return peer_ip;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer_ip)
}

/// The public base URL: `--public-url`, else the request's Host over http.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.public_url {
        return url.as_str().trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)))
        .unwrap_or("localhost:3015");
    format!("http://{host}")
}

/// Checks the read-only admin token.
pub(crate) fn admin_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.settings.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "Admin reads are off: start the server with an admin token (AIA_ADMIN_TOKEN).",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if token.matches(given) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin_token_required",
            "This endpoint needs the admin token: Authorization: Bearer <AIA_ADMIN_TOKEN>.",
        )),
    }
}

/// `GET /api/metrics/catalog`: our share of product answers' latency (see
/// `catalog::timing`), for the benchmark. An admin read.
async fn catalog_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match admin_read(&state, &headers) {
        Ok(()) => axum::Json(state.catalog_timings.snapshot()).into_response(),
        Err(e) => e.into_response(),
    }
}
