//! The admin panel's pages: server-rendered (askama) with a little plain JavaScript, no
//! framework. Forms post back here and carry the session's CSRF token in `_csrf`; every page
//! is sent with a strict Content-Security-Policy (scripts and styles from this server only).

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::clients::{FieldView, change};
use super::{Admin, COOKIE, cookie, same_site, session_cookie, signed_in};
use crate::admin::accounts::{self, SESSION_TTL};
use crate::admin::{Principal, SignInError};
use crate::app::AppState;
use crate::clients::settings::{Group, SETTINGS};
use crate::clients::{ClientSettings, connect_code, valid_uid};
use crate::http::{ApiError, base_url, client_ip};
use crate::registry::ClientRuntime;

const CSS: &str = include_str!("../../../assets/admin/admin.css");
const JS: &str = include_str!("../../../assets/admin/admin.js");
const OPERATIONS_JS: &str = include_str!("../../../assets/admin/operations.js");

/// The signed-in account as every page's header shows it.
pub struct Me {
    pub username: String,
    pub role: &'static str,
    pub server: bool,
    pub csrf: String,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Me {
        Me {
            username: p.username.clone(),
            role: if p.is_server_admin() { "server admin" } else { "client admin" },
            server: p.is_server_admin(),
            csrf: p.csrf.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    error: Option<String>,
    username: &'a str,
}

struct ClientItem {
    uid: String,
    bot_name: String,
    button_color: String,
    domains: String,
    entries: usize,
}

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage {
    me: Me,
    clients: Vec<ClientItem>,
    error: Option<String>,
}

struct GroupView {
    id: &'static str,
    label: &'static str,
    fields: Vec<FieldView>,
    /// The group's test buttons: (integration, button label).
    checks: &'static [(&'static str, &'static str)],
}

/// Which integrations a group's test buttons try.
fn checks_of(group: Group) -> &'static [(&'static str, &'static str)] {
    match group {
        Group::Model => &[("model", "Test the model")],
        Group::Training => &[("graphql", "Test the GraphQL query"), ("embeddings", "Test embeddings")],
        Group::Tasks => &[("tasks", "Test Trello")],
        Group::Catalog => &[("catalog", "Test a product search")],
        Group::Operator => &[("operator", "Test Chatwoot")],
        Group::General | Group::Privacy => &[],
    }
}

#[derive(Template)]
#[template(path = "admin/client.html")]
struct ClientPage {
    me: Me,
    uid: String,
    entries: usize,
    base: String,
    connect_code: String,
    webhook_url: String,
    lists_url: String,
    groups: Vec<GroupView>,
    saved: Option<usize>,
    error: Option<String>,
    error_key: Option<String>,
}

/// A page with the panel's security headers.
pub fn page(status: StatusCode, html: Result<String, askama::Error>) -> Response {
    let html = match html {
        Ok(html) => html,
        Err(e) => return ApiError::internal(&e).into_response(),
    };
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// A signed-in admin on a page; anyone else is sent to the sign-in page. Posts must come from
/// this site (their `_csrf` field is checked by the handler, which has the form).
pub struct AdminPage(pub Principal);

impl FromRequestParts<AppState> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<AdminPage, Response> {
        if parts.method == Method::POST
            && let Err(e) = same_site(&parts.headers)
        {
            return Err(e.into_response());
        }
        match signed_in(state, &parts.headers).await {
            Ok(p) => Ok(AdminPage(p)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(see("/admin/login")),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The form's `_csrf` must be the session's token.
fn check_csrf(principal: &Principal, form: &[(String, String)]) -> Result<(), ApiError> {
    let given = form.iter().find(|(k, _)| k == "_csrf").map_or("", |(_, v)| v.as_str());
    if crate::ids::same_secret(given, &principal.csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            "This form has expired or did not come from the admin panel; reload the page and try again.",
        ))
    }
}

/// A form posted by a signed-in admin from this site, its `_csrf` already checked: every form
/// handler takes this, so none can forget the check.
pub struct AdminForm {
    pub me: Principal,
    pub fields: Vec<(String, String)>,
}

impl FromRequest<AppState> for AdminForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<AdminForm, Response> {
        let (mut parts, body) = req.into_parts();
        let AdminPage(me) = AdminPage::from_request_parts(&mut parts, state).await?;
        let req = axum::extract::Request::from_parts(parts, body);
        let Form(fields) =
            Form::<Vec<(String, String)>>::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        check_csrf(&me, &fields).map_err(IntoResponse::into_response)?;
        Ok(AdminForm { me, fields })
    }
}

impl AdminForm {
    /// A field's value ("" when absent).
    pub fn field(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The client the form is for, if the account may manage it.
    pub fn client(&self, state: &AppState, uid: &str) -> Result<(Admin, std::sync::Arc<ClientRuntime>), ApiError> {
        let admin = Admin(self.me.clone());
        let client = admin.client(state, uid)?;
        Ok((admin, client))
    }
}

/// A JSON value as page text ("" for null), for templates that render API views.
pub fn display(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /admin`.
pub async fn root() -> Response {
    see("/admin/clients")
}

/// `GET /admin/login`.
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).await.is_ok() {
        return see("/admin/clients");
    }
    page(StatusCode::OK, LoginPage { error: None, username: "" }.render())
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

/// `POST /admin/login`: signs in and goes to the clients, or shows why not.
pub async fn login_form(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(e) = same_site(&headers) {
        return e.into_response();
    }
    let ip = client_ip(&state, peer, &headers);
    let refused = |status: StatusCode, error: String| {
        page(status, LoginPage { error: Some(error), username: &form.username }.render())
    };
    match accounts::sign_in(state.store.as_ref(), &state.login_throttle, &form.username, &form.password, ip).await {
        Ok(signed) => {
            let mut response = see("/admin/clients");
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, &headers, &signed.token, SESSION_TTL.as_secs()));
            response
        }
        Err(SignInError::Throttled(wait)) => super::throttled(wait, |secs| {
            refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many wrong passwords. For your safety, wait {secs} s before trying again."),
            )
        }),
        Err(SignInError::Invalid) => refused(StatusCode::UNAUTHORIZED, "Wrong username or password.".into()),
        Err(SignInError::Store(e)) => ApiError::internal(&e).into_response(),
    }
}

/// `POST /admin/logout`.
pub async fn logout_form(State(state): State<AppState>, headers: HeaderMap, _form: AdminForm) -> Response {
    if let Some(token) = cookie(&headers, COOKIE)
        && let Err(e) = accounts::sign_out(state.store.as_ref(), token).await
    {
        return ApiError::internal(&e).into_response();
    }
    let mut response = see("/admin/login");
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &headers, "", 0));
    response
}

fn clients_page(state: &AppState, me: &Principal, error: Option<String>) -> Response {
    let mut clients: Vec<ClientItem> = state
        .registry
        .all()
        .into_iter()
        .filter(|c| me.may_manage(&c.row.uid))
        .map(|c| ClientItem {
            uid: c.row.uid.clone(),
            bot_name: c.settings.get("bot_name").to_string(),
            button_color: c.settings.get("button_color").to_string(),
            domains: c.settings.origins().to_text(),
            entries: c.knowledge.entries().len(),
        })
        .collect();
    clients.sort_by(|a, b| a.uid.cmp(&b.uid));
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    page(status, ClientsPage { me: Me::from(me), clients, error }.render())
}

/// `GET /admin/clients`.
pub async fn clients(State(state): State<AppState>, AdminPage(me): AdminPage) -> Response {
    clients_page(&state, &me, None)
}

/// `POST /admin/clients`: adds a client (server admins).
pub async fn add_client(State(state): State<AppState>, form: AdminForm) -> Response {
    let me = &form.me;
    if let Err(e) = Admin(me.clone()).server_admin() {
        return e.into_response();
    }
    let uid = form.field("uid").trim();
    if !valid_uid(uid) {
        let why = "A client UID is 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'.";
        return clients_page(&state, me, Some(why.into()));
    }
    match state.store.client_create(uid, crate::ids::now_ms()).await {
        Ok(_) => {}
        Err(crate::store::StoreError::Conflict(_)) => {
            return clients_page(&state, me, Some(format!("A client named '{uid}' exists already.")));
        }
        Err(e) => return ApiError::internal(&e).into_response(),
    }
    if let Err(e) = state.reload_everywhere().await {
        return ApiError::internal(&e).into_response();
    }
    tracing::info!(admin = %me.username, client = %uid, "client added");
    see(&format!("/admin/clients/{uid}"))
}

/// The query of the editor (after a save).
#[derive(Debug, Deserialize)]
pub struct Saved {
    saved: Option<usize>,
}

fn client_page(
    state: &AppState,
    headers: &HeaderMap,
    me: &Principal,
    client: &ClientRuntime,
    saved: Option<usize>,
    failed: Option<(ApiError, BTreeMap<String, String>)>,
) -> Response {
    let base = base_url(state, headers);
    let uid = client.row.uid.clone();
    let (status, error, error_key, typed) = match failed {
        Some((e, typed)) => {
            let key = e.message.split_once(':').map(|(k, _)| k.to_string());
            (e.status, Some(e.message), key, typed)
        }
        None => (StatusCode::OK, None, None, BTreeMap::new()),
    };
    let groups = Group::ALL
        .iter()
        .map(|g| GroupView {
            id: g.id(),
            label: g.label(),
            checks: checks_of(*g),
            fields: SETTINGS
                .iter()
                .filter(|d| d.group == *g)
                .map(|d| {
                    let mut f = FieldView::new(d, &client.settings);
                    // After a refused save the form shows what was typed, not what is stored.
                    if let (Some(v), Some(_)) = (typed.get(d.key), &f.value) {
                        f.value = Some(v.clone());
                    }
                    f
                })
                .collect(),
        })
        .collect();
    page(
        status,
        ClientPage {
            me: Me::from(me),
            entries: client.knowledge.entries().len(),
            connect_code: connect_code(&base, &uid, &client.settings),
            webhook_url: format!("{base}/api/webhook/{uid}"),
            lists_url: format!("{base}/api/tasks/lists?clientUid={uid}"),
            base,
            uid,
            groups,
            saved,
            error,
            error_key,
        }
        .render(),
    )
}

/// `GET /admin/clients/{uid}`: the client editor.
pub async fn client(
    State(state): State<AppState>,
    AdminPage(me): AdminPage,
    headers: HeaderMap,
    Path(uid): Path<String>,
    Query(q): Query<Saved>,
) -> Response {
    match Admin(me.clone()).client(&state, &uid) {
        Ok(client) => client_page(&state, &headers, &me, &client, q.saved, None),
        Err(e) => e.into_response(),
    }
}

/// `POST /admin/clients/{uid}`: saves the editor's changes.
pub async fn save_client(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    form: AdminForm,
) -> Response {
    let (admin, client) = match form.client(&state, &uid) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let me = &form.me;
    let stored = match state.store.settings_get(client.row.id).await {
        Ok(rows) => ClientSettings::from_stored(rows),
        Err(e) => return ApiError::internal(&e).into_response(),
    };
    let (updates, typed) = updates_from_form(&form.fields, &stored);
    match change(&state, &admin, &client, &updates).await {
        Ok(changes) => see(&format!("/admin/clients/{uid}?saved={}", changes.len())),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            client_page(&state, &headers, me, &client, None, Some((e, typed)))
        }
        Err(e) => e.into_response(),
    }
}

/// The changes a submitted editor makes: plain fields (`s:KEY`) and lists (`l:KEY`, one entry
/// each) that differ from the stored values, secrets (`p:KEY`) that were typed, and secrets
/// ticked for clearing (`c:KEY`). Also what was typed, to show again if the change is refused.
fn updates_from_form(
    form: &[(String, String)],
    stored: &ClientSettings,
) -> (Vec<(String, String)>, BTreeMap<String, String>) {
    let mut updates = Vec::new();
    let mut typed = BTreeMap::new();
    let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let known = |key: &str| crate::clients::settings::find(key);
    for (name, value) in form {
        // Browsers send textarea lines as CRLF.
        let value = value.replace("\r\n", "\n");
        if let Some(key) = name.strip_prefix("s:").filter(|k| known(k).is_some_and(|d| !d.secret())) {
            typed.insert(key.to_string(), value.clone());
            let same = value.trim() == stored.get(key) || (value.trim().is_empty() && !stored.is_set(key));
            if !same {
                updates.push((key.to_string(), value));
            }
        } else if let Some(key) = name.strip_prefix("l:").filter(|k| known(k).is_some_and(|d| !d.secret())) {
            let entry = lists.entry(key).or_default();
            if !value.trim().is_empty() {
                entry.push(value.trim().to_string());
            }
        } else if let Some(key) = name.strip_prefix("p:").filter(|k| known(k).is_some_and(|d| d.secret())) {
            if !value.trim().is_empty() {
                updates.retain(|(k, _)| k != key);
                updates.push((key.to_string(), value));
            }
        } else if let Some(key) = name.strip_prefix("c:").filter(|k| known(k).is_some_and(|d| d.secret())) {
            let typed_new = form.iter().any(|(n, v)| n.strip_prefix("p:") == Some(key) && !v.trim().is_empty());
            if !typed_new && stored.is_set(key) {
                updates.push((key.to_string(), String::new()));
            }
        }
    }
    for (key, items) in lists {
        let joined = items.join(",");
        typed.insert(key.to_string(), joined.clone());
        let current: Vec<&str> = crate::clients::origin::split_list(stored.get(key)).collect();
        if current != items.iter().map(String::as_str).collect::<Vec<_>>() {
            updates.push((key.to_string(), joined));
        }
    }
    (updates, typed)
}

/// `GET /admin/assets/admin.css`.
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

/// `GET /admin/assets/admin.js`.
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// `GET /admin/assets/operations.js`.
pub async fn operations_js() -> Response {
    asset("text/javascript; charset=utf-8", OPERATIONS_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredSetting;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_form_changes_only_what_differs() {
        let stored = ClientSettings::from_stored(vec![
            StoredSetting { key: "allowed_domains".into(), value: "a.example,b.example".into() },
            StoredSetting { key: "model_token".into(), value: "sealed".into() },
            StoredSetting { key: "graphql_query".into(), value: "{\n faqs }".into() },
        ]);
        let form = pairs(&[
            ("_csrf", "t"),
            ("s:bot_name", "Assistant"),
            ("s:greeting", ""),
            ("s:button_color", "#123456"),
            ("s:graphql_query", "{\r\n faqs }"),
            ("l:allowed_domains", ""),
            ("l:allowed_domains", "a.example"),
            ("l:allowed_domains", "b.example"),
            ("l:trello_label_ids", ""),
            ("p:model_token", ""),
            ("p:operator_token", "tok"),
            ("c:trello_key", "on"),
            ("s:model_token", "sneaky"),
            ("s:nonsense", "x"),
        ]);
        let (updates, _) = updates_from_form(&form, &stored);
        assert_eq!(updates, pairs(&[("button_color", "#123456"), ("operator_token", "tok")]));

        let form = pairs(&[("l:allowed_domains", ""), ("l:allowed_domains", "c.example"), ("c:model_token", "on")]);
        let (updates, typed) = updates_from_form(&form, &stored);
        assert_eq!(updates, pairs(&[("model_token", ""), ("allowed_domains", "c.example")]));
        assert_eq!(typed["allowed_domains"], "c.example");
        let emptied = updates_from_form(&pairs(&[("l:allowed_domains", "")]), &stored).0;
        assert_eq!(emptied, pairs(&[("allowed_domains", "")]), "removing every entry clears the list");
    }
}
