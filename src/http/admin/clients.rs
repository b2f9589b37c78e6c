//! The admin API's clients: list, create, read, change and delete, with settings grouped as
//! the settings table groups them. Secrets are write-only: a response says only whether one is
//! set; an empty string keeps the stored one and `null` clears it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, no_store};
use crate::app::AppState;
use crate::clients::settings::{Group, Kind, SETTINGS, SettingDef};
use crate::clients::{ClientSettings, SettingError, connect_code, valid_uid};
use crate::http::{ApiError, JsonBody, base_url};
use crate::registry::ClientRuntime;
use crate::store::StoreError;

/// `GET /api/admin/clients`: the clients this account manages.
pub async fn list(State(state): State<AppState>, admin: Admin) -> Response {
    let mut clients: Vec<_> = state.registry.all().into_iter().filter(|c| admin.0.may_manage(&c.row.uid)).collect();
    clients.sort_by(|a, b| a.row.uid.cmp(&b.row.uid));
    let rows: Vec<Value> = clients
        .iter()
        .map(|c| {
            json!({
                "uid": c.row.uid,
                "createdAt": crate::realtime::protocol::rfc3339_ms(c.row.created_at),
                "botName": c.settings.get("bot_name"),
                "allowedDomains": c.settings.origins().to_text(),
                "knowledgeEntries": c.knowledge.entries().len(),
            })
        })
        .collect();
    no_store(Json(json!({ "clients": rows })).into_response())
}

/// Body of `POST /api/admin/clients`.
#[derive(Debug, Deserialize)]
pub struct NewClient {
    uid: String,
}

/// `POST /api/admin/clients`: adds a client (server admins only).
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewClient>,
) -> Response {
    let result = async {
        admin.server_admin()?;
        if !valid_uid(&body.uid) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_uid",
                "A client uid is 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'.",
            ));
        }
        match state.store.client_create(&body.uid, crate::ids::now_ms()).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "client_exists",
                    "A client with this uid exists already.",
                ));
            }
            Err(e) => return Err(ApiError::internal(&e)),
        }
        state.reload_everywhere().await.map_err(|e| ApiError::internal(&e))?;
        tracing::info!(admin = %admin.0.username, client = %body.uid, "client added");
        let client = admin.client(&state, &body.uid)?;
        Ok((StatusCode::CREATED, Json(view(&state, &headers, &client, &[]))).into_response())
    }
    .await;
    respond(result)
}

/// `GET /api/admin/clients/{uid}`: a client's settings by group, and what to paste where.
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Response {
    respond(admin.client(&state, &uid).map(|c| Json(view(&state, &headers, &c, &[])).into_response()))
}

/// Body of `PATCH /api/admin/clients/{uid}`.
#[derive(Debug, Deserialize)]
pub struct Change {
    /// Setting key → new value. Plain settings: a value sets, `""` or `null` resets to the
    /// default. Secrets: a value replaces, `""` keeps the stored one, `null` clears it.
    settings: BTreeMap<String, Option<String>>,
}

/// `PATCH /api/admin/clients/{uid}`: validates the whole change, then writes it.
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<Change>,
) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        let mut updates = Vec::new();
        for (key, value) in body.settings {
            let def = crate::clients::settings::find(&key)
                .ok_or_else(|| setting_error(SettingError::Unknown(key.clone())))?;
            match (def.secret(), value) {
                (true, Some(v)) if v.is_empty() => {}
                (_, value) => updates.push((key, value.unwrap_or_default())),
            }
        }
        let changes = change(&state, &admin, &client, &updates).await?;
        let client = admin.client(&state, &uid)?;
        Ok(Json(view(&state, &headers, &client, &changes)).into_response())
    }
    .await;
    respond(result)
}

/// Validates and writes `updates` (key, value; an empty value resets) to a client's settings,
/// and loads the change at once; returns each written key with what happened to it.
pub async fn change(
    state: &AppState,
    admin: &Admin,
    client: &ClientRuntime,
    updates: &[(String, String)],
) -> Result<Vec<(String, &'static str)>, ApiError> {
    let uid = &client.row.uid;
    // The store's settings, not the registry's copy: it may be a reload behind.
    let stored = state.store.settings_get(client.row.id).await.map_err(|e| ApiError::internal(&e))?;
    let current = ClientSettings::from_stored(stored);
    let writes = current.plan(uid, updates, state.settings.store.upstream, &state.keys).map_err(setting_error)?;
    if !writes.is_empty() {
        state.store.settings_put(client.row.id, &writes).await.map_err(|e| ApiError::internal(&e))?;
        state.reload_everywhere().await.map_err(|e| ApiError::internal(&e))?;
    }
    let changes: Vec<(String, &'static str)> = writes
        .iter()
        .map(|w| {
            let given = updates.iter().any(|(k, _)| k == &w.key);
            let what = match (&w.value, given) {
                (_, false) => "cleared_host_changed",
                (None, true) => "reset",
                (Some(_), true) => "set",
            };
            (w.key.clone(), what)
        })
        .collect();
    let keys: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    tracing::info!(admin = %admin.0.username, client = %uid, settings = ?keys, "client settings changed");
    Ok(changes)
}

/// `DELETE /api/admin/clients/{uid}`: deletes a client and everything it owns (server admins).
pub async fn delete(State(state): State<AppState>, admin: Admin, Path(uid): Path<String>) -> Response {
    let result = async {
        admin.server_admin()?;
        admin.client(&state, &uid)?;
        state.store.client_delete(&uid).await.map_err(|e| ApiError::internal(&e))?;
        state.reload_everywhere().await.map_err(|e| ApiError::internal(&e))?;
        tracing::info!(admin = %admin.0.username, client = %uid, "client deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(result)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

fn setting_error(e: SettingError) -> ApiError {
    let code = match e {
        SettingError::Unknown(_) => "unknown_setting",
        SettingError::Invalid { .. } => "invalid_setting",
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
}

/// A client as the admin panel shows it.
fn view(state: &AppState, headers: &HeaderMap, client: &ClientRuntime, changes: &[(String, &str)]) -> Value {
    let base = base_url(state, headers);
    let uid = &client.row.uid;
    let groups: Vec<Value> = Group::ALL
        .iter()
        .map(|g| {
            let settings: Vec<Value> =
                SETTINGS.iter().filter(|d| d.group == *g).map(|d| json!(FieldView::new(d, &client.settings))).collect();
            json!({"id": g.id(), "label": g.label(), "settings": settings})
        })
        .collect();
    let mut view = json!({
        "uid": uid,
        "createdAt": crate::realtime::protocol::rfc3339_ms(client.row.created_at),
        "settingsVersion": client.row.settings_version,
        "knowledgeEntries": client.knowledge.entries().len(),
        "groups": groups,
        "connectCode": connect_code(&base, uid, &client.settings),
        "webhookUrl": format!("{base}/api/webhook/{uid}"),
        "listsUrl": format!("{base}/api/tasks/lists?clientUid={uid}"),
    });
    if !changes.is_empty() {
        view["changes"] = changes.iter().map(|(k, what)| json!({"key": k, "change": what})).collect();
    }
    view
}

/// One setting as the panel shows it: its control, constraints and value (for secrets only
/// whether one is set). The API sends it as JSON; the pages render it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldView {
    pub key: &'static str,
    #[serde(rename = "type")]
    pub control: &'static str,
    pub help: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_default: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// One offered value of a select or suggested field.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
}

impl FieldView {
    /// A readable label from the key: `trello_label_ids` → "Trello label IDs".
    pub fn label(&self) -> String {
        let words: Vec<String> = self
            .key
            .split('_')
            .enumerate()
            .map(|(i, w)| match w {
                "url" => "URL".into(),
                "id" => "ID".into(),
                "ids" => "IDs".into(),
                "graphql" => "GraphQL".into(),
                "api" => "API".into(),
                "bg" => {
                    if i == 0 {
                        "Background".into()
                    } else {
                        "background".into()
                    }
                }
                w if i == 0 => w[..1].to_uppercase() + &w[1..],
                w => w.to_string(),
            })
            .collect();
        words.join(" ")
    }

    /// The value as text ("" for secrets).
    pub fn text(&self) -> &str {
        self.value.as_deref().unwrap_or("")
    }

    /// A color as `#rrggbb`, the only form `<input type=color>` takes.
    pub fn hex6(&self) -> String {
        let v = self.text();
        match v.len() {
            4 => v.chars().skip(1).fold("#".to_string(), |mut s, c| {
                s.push(c);
                s.push(c);
                s
            }),
            _ => v.to_string(),
        }
    }

    /// The entries of a list.
    pub fn items(&self) -> Vec<&str> {
        crate::clients::origin::split_list(self.text()).collect()
    }

    /// Whether a secret is set.
    pub fn is_set(&self) -> bool {
        self.set == Some(true)
    }

    /// The view of `def` for a client's settings.
    pub fn new(def: &'static SettingDef, settings: &ClientSettings) -> FieldView {
        let mut f = FieldView {
            key: def.key,
            control: def.kind.control(),
            help: def.help,
            value: None,
            default: None,
            is_default: None,
            set: None,
            follows: None,
            options: Vec::new(),
            max_length: None,
            min: None,
            max: None,
        };
        if def.secret() {
            f.set = Some(settings.is_set(def.key));
            f.follows = def.follows;
            return f;
        }
        f.value = Some(settings.get(def.key).to_string());
        f.default = Some(def.default);
        f.is_default = Some(!settings.is_set(def.key));
        match def.kind {
            Kind::Select(options) => f.options = options.iter().map(|o| Choice { value: o, label: o }).collect(),
            Kind::Suggested { max, options } => {
                f.max_length = Some(max);
                f.options = options.iter().map(|(value, label)| Choice { value, label }).collect();
            }
            Kind::Text { max } | Kind::Multiline { max } => f.max_length = Some(max),
            Kind::Int { min, max } => (f.min, f.max) = (Some(min), Some(max)),
            _ => {}
        }
        f
    }
}
