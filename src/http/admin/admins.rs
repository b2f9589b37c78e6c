//! Admin accounts in the panel, for server admins: list, add (a client admin with the clients
//! they manage, or another server admin), change a password or the granted clients, delete.
//! Everyone may change their own password. The rules live in `admin::accounts`; this maps
//! them to the API and the Accounts page.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::{AdminForm, AdminPage, Me, page};
use super::{Admin, no_store};
use crate::admin::accounts::{self, AccountError};
use crate::admin::password;
use crate::app::AppState;
use crate::http::{ApiError, JsonBody};
use crate::realtime::protocol::rfc3339_ms;
use crate::store::AdminRole;

fn account_error(e: AccountError) -> ApiError {
    let (status, code) = match &e {
        AccountError::BadName(_)
        | AccountError::Password(password::PasswordError::TooShort | password::PasswordError::TooLong) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_account")
        }
        AccountError::NoSuchClient(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_client"),
        AccountError::Taken(_) => (StatusCode::CONFLICT, "account_exists"),
        AccountError::NoSuchAccount(_) => (StatusCode::NOT_FOUND, "unknown_account"),
        AccountError::LastServerAdmin(_) => (StatusCode::CONFLICT, "last_server_admin"),
        AccountError::Password(password::PasswordError::Hash(_)) | AccountError::Store(_) => {
            return ApiError::internal(&e);
        }
    };
    ApiError::new(status, code, e.to_string())
}

/// Every account with its role and clients.
async fn accounts_json(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let store = state.store.as_ref();
    let mut out = Vec::new();
    for row in store.admin_list().await.map_err(|e| ApiError::internal(&e))? {
        let clients = match row.role {
            AdminRole::Server => Vec::new(),
            AdminRole::Client => store.admin_grants(row.id).await.map_err(|e| ApiError::internal(&e))?,
        };
        out.push(json!({"username": row.username, "role": row.role, "clients": clients, "createdAt": rfc3339_ms(row.created_at)}));
    }
    Ok(out)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

/// `GET /api/admin/accounts` (server admins).
pub async fn list(State(state): State<AppState>, admin: Admin) -> Response {
    respond(
        async {
            admin.server_admin()?;
            Ok(Json(json!({"accounts": accounts_json(&state).await?})).into_response())
        }
        .await,
    )
}

/// Body of `POST /api/admin/accounts`.
#[derive(Debug, Deserialize)]
pub struct NewAccount {
    username: String,
    password: String,
    role: AdminRole,
    #[serde(default)]
    clients: Vec<String>,
}

/// `POST /api/admin/accounts` (server admins).
pub async fn create(State(state): State<AppState>, admin: Admin, JsonBody(body): JsonBody<NewAccount>) -> Response {
    respond(async {
        admin.server_admin()?;
        let clients = if body.role == AdminRole::Client { body.clients } else { Vec::new() };
        let row = accounts::create(state.store.as_ref(), &body.username, &body.password, body.role, &clients)
            .await
            .map_err(account_error)?;
        tracing::info!(admin = %admin.0.username, account = %row.username, role = row.role.as_str(), "admin account added");
        Ok((StatusCode::CREATED, Json(json!({"username": row.username, "role": row.role, "clients": clients}))).into_response())
    }
    .await)
}

/// Body of `PATCH /api/admin/accounts/{username}`.
#[derive(Debug, Deserialize)]
pub struct AccountChange {
    /// A new password (signs the account out everywhere).
    password: Option<String>,
    /// The clients a client admin manages, exactly.
    clients: Option<Vec<String>>,
}

/// `PATCH /api/admin/accounts/{username}` (server admins).
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(username): Path<String>,
    JsonBody(body): JsonBody<AccountChange>,
) -> Response {
    respond(async {
        admin.server_admin()?;
        let store = state.store.as_ref();
        let row = accounts::find(store, &username).await.map_err(account_error)?;
        if let Some(clients) = &body.clients {
            if row.role == AdminRole::Server {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "server_admin_has_all",
                    "A server admin manages every client; grants are for client admins.",
                ));
            }
            accounts::set_grants(store, &row.username, clients).await.map_err(account_error)?;
        }
        if let Some(p) = &body.password {
            accounts::set_password(store, &state.settings.store.data_dir, &row.username, p).await.map_err(account_error)?;
        }
        tracing::info!(admin = %admin.0.username, account = %row.username, password_changed = body.password.is_some(), clients = body.clients.is_some(), "admin account changed");
        let all = accounts_json(&state).await?;
        let one = all.into_iter().find(|a| a["username"] == row.username.as_str()).unwrap_or(Value::Null);
        Ok(Json(one).into_response())
    }
    .await)
}

/// `DELETE /api/admin/accounts/{username}` (server admins; the last one stays).
pub async fn delete(State(state): State<AppState>, admin: Admin, Path(username): Path<String>) -> Response {
    respond(
        async {
            admin.server_admin()?;
            accounts::remove(state.store.as_ref(), &username).await.map_err(account_error)?;
            tracing::info!(admin = %admin.0.username, account = %username, "admin account removed");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// Body of `POST /api/admin/session/password`.
#[derive(Debug, Deserialize)]
pub struct OwnPassword {
    current: String,
    new: String,
}

/// Changes the signed-in account's own password after checking the current one; every
/// session of the account ends (sign in again).
async fn change_own(state: &AppState, admin: &Admin, current: &str, new: &str) -> Result<(), ApiError> {
    let row = accounts::find(state.store.as_ref(), &admin.0.username).await.map_err(account_error)?;
    let (given, phc) = (current.to_string(), row.password_hash.clone());
    let ok = accounts::argon2(move || password::verify(&given, &phc)).await.unwrap_or(false);
    if !ok {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "wrong_password", "The current password is wrong."));
    }
    accounts::set_password(state.store.as_ref(), &state.settings.store.data_dir, &row.username, new)
        .await
        .map_err(account_error)?;
    tracing::info!(admin = %row.username, "own password changed; signed out everywhere");
    Ok(())
}

/// `POST /api/admin/session/password`: 204, and the session has ended.
pub async fn own_password(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<OwnPassword>,
) -> Response {
    respond(
        async {
            change_own(&state, &admin, &body.current, &body.new).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

#[derive(Template)]
#[template(path = "admin/accounts.html")]
struct AccountsPage {
    me: Me,
    accounts: Vec<Value>,
    clients: Vec<String>,
    notice: Option<String>,
    error: Option<String>,
}

impl AccountsPage {
    fn text(&self, v: &Value) -> String {
        super::pages::display(v)
    }

    /// Whether `account` manages `uid`.
    fn has(&self, account: &Value, uid: &str) -> bool {
        account["clients"].as_array().is_some_and(|c| c.iter().any(|u| u == uid))
    }
}

async fn accounts_page(
    state: &AppState,
    me: &crate::admin::Principal,
    notice: Option<String>,
    error: Option<ApiError>,
) -> Response {
    if let Err(e) = Admin(me.clone()).server_admin() {
        return e.into_response();
    }
    let accounts = match accounts_json(state).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut clients: Vec<String> = state.registry.all().iter().map(|c| c.row.uid.clone()).collect();
    clients.sort();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    page(status, AccountsPage { me: Me::from(me), accounts, clients, notice, error: error.map(|e| e.message) }.render())
}

/// `GET /admin/accounts` (server admins).
pub async fn accounts_view(State(state): State<AppState>, AdminPage(me): AdminPage) -> Response {
    accounts_page(&state, &me, None, None).await
}

/// `POST /admin/accounts`: the page's forms (`action=add|clients|password|delete`).
pub async fn accounts_form(State(state): State<AppState>, form: AdminForm) -> Response {
    let me = &form.me;
    if let Err(e) = Admin(me.clone()).server_admin() {
        return e.into_response();
    }
    let field = |name: &str| form.field(name);
    let picked: Vec<String> = form.fields.iter().filter(|(k, _)| k == "client").map(|(_, v)| v.clone()).collect();
    let store = state.store.as_ref();
    let user = field("username");
    let outcome = match field("action") {
        "add" => {
            let role = if field("role") == "server" { AdminRole::Server } else { AdminRole::Client };
            let clients = if role == AdminRole::Client { picked } else { Vec::new() };
            accounts::create(store, user, field("password"), role, &clients)
                .await
                .map(|r| format!("Added {}.", r.username))
        }
        "clients" => accounts::set_grants(store, user, &picked).await.map(|()| format!("Saved {user}'s clients.")),
        "password" => accounts::set_password(store, &state.settings.store.data_dir, user, field("password"))
            .await
            .map(|()| format!("Set {user}'s password; they are signed out everywhere.")),
        "delete" => accounts::remove(store, user).await.map(|()| format!("Deleted {user}.")),
        _ => return ApiError::new(StatusCode::BAD_REQUEST, "unknown_action", "Unknown action.").into_response(),
    };
    match outcome {
        Ok(notice) => {
            tracing::info!(admin = %me.username, account = %user, action = field("action"), "admin account changed");
            accounts_page(&state, me, Some(notice), None).await
        }
        Err(e) => accounts_page(&state, me, None, Some(account_error(e))).await,
    }
}

/// `GET /admin/password`: change your own password.
pub async fn password_view(AdminPage(me): AdminPage) -> Response {
    page(StatusCode::OK, PasswordPage { me: Me::from(&me), error: None }.render())
}

#[derive(Template)]
#[template(path = "admin/password.html")]
struct PasswordPage {
    me: Me,
    error: Option<String>,
}

/// `POST /admin/password`: on success every session ends; sign in with the new password.
pub async fn password_form(State(state): State<AppState>, form: AdminForm) -> Response {
    let me = &form.me;
    if form.field("new") != form.field("repeat") {
        let error = Some("The new password and its repetition differ.".to_string());
        return page(StatusCode::UNPROCESSABLE_ENTITY, PasswordPage { me: Me::from(me), error }.render());
    }
    match change_own(&state, &Admin(me.clone()), form.field("current"), form.field("new")).await {
        Ok(()) => Redirect::to("/admin/login").into_response(),
        Err(e) => page(e.status, PasswordPage { me: Me::from(me), error: Some(e.message) }.render()),
    }
}
