//! A client's operations, in the API and on the panel's Operations page: start a training run
//! and follow it live, the training history, model tokens used per day, and operator messages
//! that could not be delivered (dead letters), each of which an admin may retry.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::pages::{AdminForm, AdminPage, Me, display, page};
use super::{Admin, no_store};
use crate::app::AppState;
use crate::http::ApiError;
use crate::realtime::protocol::rfc3339_ms;
use crate::registry::ClientRuntime;
use crate::store::{TrainingRun, utc_day};

/// Days of token use shown.
pub const USAGE_DAYS: i64 = 14;
/// Training runs shown.
pub const RUNS_SHOWN: u32 = 20;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(&e)
}

/// The training status and history as JSON.
async fn training_json(state: &AppState, client: &ClientRuntime) -> Result<Value, ApiError> {
    let now = crate::ids::now_ms();
    let status = state.store.training_status(client.row.id).await.map_err(internal)?;
    let runs = state.store.training_runs(client.row.id, RUNS_SHOWN).await.map_err(internal)?;
    let when = |ms: Option<i64>| ms.map(rfc3339_ms);
    let status = match status {
        Some(t) => json!({
            "running": t.running(now),
            "startedAt": (t.started_at > 0).then(|| rfc3339_ms(t.started_at)),
            "pages": t.pages,
            "entries": t.entries,
            "lastSuccessAt": when(t.last_success_at),
            "entryCount": t.entry_count,
            "lastErrorAt": when(t.last_error_at),
            "lastError": t.last_error,
        }),
        None => json!({"running": false}),
    };
    let runs: Vec<Value> = runs.iter().map(run_json).collect();
    Ok(json!({
        "configured": training_configured(client),
        "knowledgeEntries": client.knowledge.entries().len(),
        "status": status,
        "runs": runs,
    }))
}

fn run_json(r: &TrainingRun) -> Value {
    json!({
        "owner": r.owner,
        "startedAt": rfc3339_ms(r.started_at),
        "finishedAt": rfc3339_ms(r.finished_at),
        "seconds": ((r.finished_at - r.started_at).max(0) as f64 / 1000.0),
        "pages": r.pages,
        "entries": r.entries,
        "error": r.error,
    })
}

fn training_configured(client: &ClientRuntime) -> bool {
    !client.settings.get("graphql_url").is_empty() && !client.settings.get("graphql_query").trim().is_empty()
}

/// `GET /api/admin/clients/{uid}/training`.
pub async fn training(State(state): State<AppState>, admin: Admin, Path(uid): Path<String>) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        Ok::<_, ApiError>(Json(training_json(&state, &client).await?).into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

/// Starts a training run in the background; refuses when none is configured or one runs.
async fn start_training(state: &AppState, admin: &Admin, client: &ClientRuntime) -> Result<(), ApiError> {
    if !training_configured(client) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "training_not_configured",
            "Set graphql_url and graphql_query (Knowledge settings) first.",
        ));
    }
    let running = state.store.training_status(client.row.id).await.map_err(internal)?;
    if running.is_some_and(|t| t.running(crate::ids::now_ms())) {
        return Err(ApiError::new(StatusCode::CONFLICT, "training_running", "A training run is in progress already."));
    }
    let (state2, uid, owner) = (state.clone(), client.row.uid.clone(), format!("admin:{}", admin.0.username));
    tracing::info!(admin = %admin.0.username, client = %uid, "training started from the admin panel");
    state.tasks.spawn(async move {
        match state2.train(&uid, &owner).await {
            Ok(o) => tracing::info!(client = %uid, entries = o.entries, pages = o.pages, "training finished"),
            Err(crate::knowledge::run::TrainError::Busy(_)) => {}
            Err(e) => {
                tracing::warn!(client = %uid, error = %e, "training failed; the previous knowledge keeps serving")
            }
        }
    });
    Ok(())
}

/// `POST /api/admin/clients/{uid}/training`: 202 once the run has started.
pub async fn train(State(state): State<AppState>, admin: Admin, Path(uid): Path<String>) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        start_training(&state, &admin, &client).await?;
        Ok::<_, ApiError>((StatusCode::ACCEPTED, Json(json!({"started": true}))).into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

/// Model use per UTC day, newest first.
async fn usage_json(state: &AppState, client: &ClientRuntime) -> Result<Vec<Value>, ApiError> {
    let today = utc_day(crate::ids::now_ms());
    let mut days = Vec::new();
    for day in (today - USAGE_DAYS + 1..=today).rev() {
        let u = state.store.usage_day(client.row.id, day).await.map_err(internal)?;
        days.push(json!({
            "day": &rfc3339_ms(day * 86_400_000)[..10],
            "answers": u.answers,
            "promptTokens": u.tokens.prompt,
            "completionTokens": u.tokens.completion,
            "totalTokens": u.tokens.total(),
        }));
    }
    Ok(days)
}

/// `GET /api/admin/clients/{uid}/usage`: model tokens per day, the last 14 days.
pub async fn usage(State(state): State<AppState>, admin: Admin, Path(uid): Path<String>) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        let days = usage_json(&state, &client).await?;
        let budget = client.settings.get("model_daily_token_budget").parse::<i64>().unwrap_or(0);
        Ok::<_, ApiError>(Json(json!({"dailyBudget": budget, "days": days})).into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

async fn dead_letters_json(state: &AppState, client: &ClientRuntime) -> Result<Vec<Value>, ApiError> {
    let dead = state.store.outbox_dead_letters(client.row.id).await.map_err(internal)?;
    Ok(dead
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "kind": d.kind,
                "createdAt": rfc3339_ms(d.created_at),
                "deadAt": d.dead_at.map(rfc3339_ms),
                "attempts": d.attempts,
                "lastError": d.last_error,
            })
        })
        .collect())
}

/// `GET /api/admin/clients/{uid}/outbox`: operator deliveries that were given up.
pub async fn outbox(State(state): State<AppState>, admin: Admin, Path(uid): Path<String>) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        Ok::<_, ApiError>(Json(json!({"deadLetters": dead_letters_json(&state, &client).await?})).into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

async fn revive(state: &AppState, admin: &Admin, client: &ClientRuntime, id: i64) -> Result<(), ApiError> {
    if !state.store.outbox_revive(client.row.id, id, crate::ids::now_ms()).await.map_err(internal)? {
        return Err(no_item());
    }
    state.wake(crate::cluster::Job::Operator);
    tracing::info!(admin = %admin.0.username, client = %client.row.uid, item = id, "operator delivery retried");
    Ok(())
}

fn no_item() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_item", "No undelivered item with this id.")
}

/// `POST /api/admin/clients/{uid}/outbox/{id}/retry`: tries a dead-lettered delivery again.
pub async fn retry(State(state): State<AppState>, admin: Admin, Path((uid, id)): Path<(String, String)>) -> Response {
    let result = async {
        let client = admin.client(&state, &uid)?;
        // Not a number is no such item, in the API's own error shape.
        let id = id.parse::<i64>().map_err(|_| no_item())?;
        revive(&state, &admin, &client, id).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    no_store(result.unwrap_or_else(IntoResponse::into_response))
}

#[derive(Template)]
#[template(path = "admin/operations.html")]
struct OperationsPage {
    me: Me,
    uid: String,
    configured: bool,
    running: bool,
    /// Whether the page follows a run (one runs, or one was just started).
    watch: bool,
    /// When the newest run in the history finished ("" for none): the script reloads the
    /// page once a newer one is there.
    last_run: String,
    training: Value,
    usage: Vec<Value>,
    budget: String,
    dead: Vec<Value>,
    notice: Option<String>,
    error: Option<String>,
}

impl OperationsPage {
    /// A JSON value as display text ("" for null).
    fn text(&self, v: &Value) -> String {
        display(v)
    }
}

async fn operations_page(
    state: &AppState,
    me: &crate::admin::Principal,
    client: &ClientRuntime,
    notice: Option<String>,
    error: Option<ApiError>,
    started: bool,
) -> Response {
    let data = async {
        Ok::<_, ApiError>((
            training_json(state, client).await?,
            usage_json(state, client).await?,
            dead_letters_json(state, client).await?,
        ))
    }
    .await;
    let (training, usage, dead) = match data {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    let view = OperationsPage {
        me: Me::from(me),
        uid: client.row.uid.clone(),
        configured: training["configured"] == true,
        running: training["status"]["running"] == true,
        watch: training["status"]["running"] == true || started,
        last_run: training["runs"][0]["finishedAt"].as_str().unwrap_or("").to_string(),
        training,
        usage,
        budget: client.settings.get("model_daily_token_budget").to_string(),
        dead,
        notice,
        error: error.map(|e| e.message),
    };
    page(status, view.render())
}

/// What the page says after a successful post.
#[derive(Debug, serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /admin/clients/{uid}/operations`.
pub async fn operations(
    State(state): State<AppState>,
    AdminPage(me): AdminPage,
    Path(uid): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Done>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("train") => Some("Training started: the progress shows below.".to_string()),
        Some("retry") => Some("The delivery is queued again.".to_string()),
        _ => None,
    };
    match Admin(me.clone()).client(&state, &uid) {
        Ok(client) => operations_page(&state, &me, &client, notice, None, q.done.as_deref() == Some("train")).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /admin/clients/{uid}/operations`: the page's buttons (`action=train` or
/// `action=retry&item=ID`).
pub async fn operations_form(State(state): State<AppState>, Path(uid): Path<String>, form: AdminForm) -> Response {
    let (admin, client) = match form.client(&state, &uid) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let me = &form.me;
    let outcome = match form.field("action") {
        "train" => start_training(&state, &admin, &client).await.map(|()| "train"),
        "retry" => match form.field("item").parse::<i64>().ok() {
            Some(id) => revive(&state, &admin, &client, id).await.map(|()| "retry"),
            None => Err(ApiError::new(StatusCode::BAD_REQUEST, "unknown_item", "No item given.")),
        },
        _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "unknown_action", "Unknown action.")),
    };
    match outcome {
        // After a post, a redirect: reloading the page does not post again.
        Ok(done) => {
            axum::response::Redirect::to(&format!("/admin/clients/{uid}/operations?done={done}")).into_response()
        }
        Err(e) => operations_page(&state, me, &client, None, Some(e), false).await,
    }
}
