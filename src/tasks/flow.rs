//! Tasks in the conversation: a request is recorded (proposed to the visitor first when
//! `tasks_require_confirmation` is on, else queued at once), a yes or no settles a proposal,
//! and the worker creates queued tasks at the provider — once each, retried with backoff
//! through outages and rate limits, given up after an hour — and tells the visitor with a
//! reference. The task row is both the record kept with the conversation and the work item.

use std::time::Duration;

use super::card::{self, CardFacts};
use super::detect::{self, Category};
use super::provider::{self, NewTask, TaskProvider};
use crate::app::AppState;
use crate::ids::now_ms;
use crate::operator::relay;
use crate::registry::ClientRuntime;
use crate::store::{NewTaskRecord, Role, StoreError, TaskRecord, TaskState};

/// After this long a queued task is given up (the visitor is told).
pub const MAX_AGE: Duration = Duration::from_secs(3600);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long one attempt owns a task (another worker or a restart waits this long).
const LEASE: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

/// Whether `client` can make tasks: a board with credentials, and a cap above zero.
pub fn configured(client: &ClientRuntime) -> bool {
    let s = &client.settings;
    s.get("tasks_provider") == "trello"
        && s.is_set("trello_key")
        && s.is_set("trello_token")
        && !s.get("trello_board_id").is_empty()
        && s.get("tasks_max_per_session_day").parse::<i64>().unwrap_or(3) > 0
}

/// Whether `client` answers with a language model (then the model's `create_task` decides,
/// not the rule-based detector).
pub fn has_model(client: &ClientRuntime) -> bool {
    !client.settings.get("model_url").trim().is_empty() || client.settings.is_set("model_token")
}

/// What a visitor message does to tasks.
#[derive(Debug)]
pub enum Decision {
    /// It answers the open proposal.
    Confirm(TaskRecord),
    Decline(TaskRecord),
    /// It asks for something the team must do (found without a model).
    Request(detect::Detected),
}

/// What `text` means for tasks in `session`; `None` leaves it to the assistant. An open
/// proposal the visitor doesn't answer is dropped (they moved on).
pub async fn decide(
    state: &AppState,
    client: &ClientRuntime,
    session: i64,
    text: &str,
) -> Result<Option<Decision>, StoreError> {
    if let Some(open) = state.store.task_proposed(session).await? {
        match detect::confirmation(text) {
            Some(true) => return Ok(Some(Decision::Confirm(open))),
            Some(false) => return Ok(Some(Decision::Decline(open))),
            None => state.store.task_set_state(open.id, TaskState::Declined, now_ms()).await?,
        }
    }
    if has_model(client) {
        return Ok(None);
    }
    Ok(detect::detect(text).map(Decision::Request))
}

/// A request as the visitor or the model put it.
#[derive(Debug, Clone)]
pub struct Request {
    pub title: String,
    pub summary: String,
    pub category: Option<Category>,
    pub contact: Option<String>,
    pub page: Option<String>,
}

/// How a request was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Waiting for the visitor's yes.
    Proposed,
    Queued,
    /// The session's tasks for today are used up.
    Capped,
}

/// Records a request made in answer to visitor message `seq`: proposed or queued per the
/// client's settings, within the cap per session and day.
pub async fn take(
    state: &AppState,
    client: &ClientRuntime,
    session: i64,
    seq: i64,
    request: Request,
) -> Result<Taken, StoreError> {
    let cap = client.settings.get("tasks_max_per_session_day").parse::<i64>().unwrap_or(3);
    let now = now_ms();
    if state.store.tasks_since(session, now - DAY_MS).await? >= cap {
        return Ok(Taken::Capped);
    }
    let conversation = state.store.session_by_id(session).await?.map(|s| s.conversation_id).unwrap_or_default();
    let confirm = client.settings.get("tasks_require_confirmation") != "off";
    let record = NewTaskRecord {
        client_id: client.row.id,
        session_id: session,
        marker: card::marker(&conversation, seq),
        category: request.category.map(|c| c.label().to_string()),
        title: request.title,
        summary: request.summary,
        contact: request.contact,
        page: request.page,
        state: if confirm { TaskState::Proposed } else { TaskState::Queued },
        now,
    };
    match state.store.task_insert(&record).await {
        Ok(_) if confirm => Ok(Taken::Proposed),
        Ok(_) => {
            state.wake(crate::cluster::Job::Tasks);
            Ok(Taken::Queued)
        }
        // Taken when this message came before (a crash kept its reply from being stored):
        // the visitor hears what they would have heard then.
        Err(StoreError::Conflict(_)) if confirm => Ok(Taken::Proposed),
        Err(StoreError::Conflict(_)) => Ok(Taken::Queued),
        Err(e) => Err(e),
    }
}

/// The visitor said yes: the task is queued.
pub async fn confirm(state: &AppState, task: &TaskRecord) -> Result<(), StoreError> {
    state.store.task_set_state(task.id, TaskState::Queued, now_ms()).await?;
    state.wake(crate::cluster::Job::Tasks);
    Ok(())
}

/// The visitor said no.
pub async fn decline(state: &AppState, task: &TaskRecord) -> Result<(), StoreError> {
    state.store.task_set_state(task.id, TaskState::Declined, now_ms()).await
}

/// What the visitor reads when a request is taken (`title` quoted).
pub fn taken_text(taken: &Taken, title: &str) -> String {
    match taken {
        Taken::Proposed => format!(
            "I can pass this on to our team as a request: \u{201c}{title}\u{201d}. Shall I? Please answer yes or no."
        ),
        Taken::Queued => format!("I'm passing your request on to our team: \u{201c}{title}\u{201d}."),
        Taken::Capped => "You've already sent us several requests today; our team will get back to you on those. \
                          For anything urgent, please contact the shop directly."
            .into(),
    }
}

/// What the visitor reads after a yes or a no.
pub fn settled_text(confirmed: bool) -> &'static str {
    if confirmed {
        "Thank you, I'm passing it on to our team now."
    } else {
        "All right, I won't pass it on. Is there anything else I can help with?"
    }
}

/// The worker: creates due tasks until shutdown; woken by new work, else polls each second.
pub async fn run(state: AppState) {
    let mut lease = state.lease(crate::cluster::lease::TASKS_OUTBOX, Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = state.tasks_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // One node makes the cards, so each is made once.
        if !lease.hold(state.store.as_ref()).await {
            continue;
        }
        let due = match state.store.tasks_due(now_ms(), 50).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading the due tasks failed");
                continue;
            }
        };
        let work = due.into_iter().map(|task| {
            let state = state.clone();
            async move { deliver(&state, task).await }
        });
        futures_util::future::join_all(work).await;
    }
}

async fn deliver(state: &AppState, task: TaskRecord) {
    let Some(client) = state.registry.all().into_iter().find(|c| c.row.id == task.client_id) else {
        let _ = state.store.task_failed(task.id, now_ms(), "the client no longer exists").await;
        return;
    };
    // Recorded before the call: after a crash mid-call the next attempt looks for the card first.
    let lease = now_ms() + LEASE.as_millis() as i64;
    if let Err(e) = state.store.task_attempt(task.id, lease).await {
        tracing::warn!(error = %e, task = task.id, "recording a task attempt failed");
        return;
    }
    let result = match provider::for_client(&client.settings, &state.keys, &client.row.uid, state.tasks_http.clone()) {
        Ok(board) => create(state, &board, &task).await,
        Err(e) => Err((e.to_string(), false, None)),
    };
    let now = now_ms();
    let outcome = match result {
        Ok(created) => {
            let text = format!("{} (ref {})", task.title, created.reference);
            let mut message = relay::server_message(task.session_id, Role::System, &text);
            message.source = Some(TASK_SOURCE.into());
            message.entry_id = Some(created.reference.clone());
            message.client_msg_id = Some(format!("task#{}", task.id));
            tracing::info!(client = %client.row.uid, task = task.id, reference = %created.reference, "task created");
            // The visitor's confirmation first: its id makes it once-only, so a crash before
            // the task is marked created repeats neither it nor the card (found by marker).
            match relay::show(state, &client.row.uid, &message).await {
                Ok(_) => state.store.task_created(task.id, &created.id, &created.reference, &created.url, now).await,
                Err(e) => Err(e),
            }
        }
        Err((why, true, after)) if now - task.created_at < MAX_AGE.as_millis() as i64 => {
            let backoff = Duration::from_secs(1 << task.attempts.clamp(0, 6)).min(MAX_BACKOFF);
            let next = now + after.unwrap_or(backoff).min(MAX_BACKOFF).as_millis() as i64;
            tracing::warn!(client = %client.row.uid, task = task.id, error = %why, "creating the task failed; retrying");
            crate::metrics::outbox_retry(crate::metrics::Queue::Tasks);
            state.store.task_retry(task.id, next, &why).await
        }
        Err((why, _, _)) => {
            tracing::error!(client = %client.row.uid, task = task.id, error = %why, "the task could not be created");
            crate::metrics::outbox_dead_letter(crate::metrics::Queue::Tasks);
            let mut message = relay::server_message(task.session_id, Role::System, NOT_PASSED);
            message.client_msg_id = Some(format!("task#{}", task.id));
            match relay::show(state, &client.row.uid, &message).await {
                Ok(_) => state.store.task_failed(task.id, now, &why).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, task = task.id, "recording a task's outcome failed");
    }
}

/// The `source` of the system message that confirms a created task.
pub const TASK_SOURCE: &str = "task";
/// What the visitor reads when a task could not be created.
const NOT_PASSED: &str = "Sorry, I couldn't pass your request on to our team just now. \
                          Please try again later or contact the shop directly.";

/// The card for `task`, created once: (why, retryable, wait) on failure.
async fn create(
    state: &AppState,
    board: &dyn TaskProvider,
    task: &TaskRecord,
) -> Result<provider::CreatedTask, (String, bool, Option<Duration>)> {
    let store = |e: StoreError| (format!("store: {e}"), true, None);
    let session = state.store.session_by_id(task.session_id).await.map_err(store)?;
    let (history, _) = state.store.messages_page(task.session_id, None, 20).await.map_err(store)?;
    let conversation = session.as_ref().map(|s| s.conversation_id.clone()).unwrap_or_default();
    let mut contact: Vec<String> = task.contact.iter().cloned().collect();
    if let Some(s) = &session {
        contact.extend(s.visitor_name.clone());
        contact.extend(s.visitor_email.clone());
    }
    let text = card::compose(&CardFacts {
        title: &task.title,
        summary: &task.summary,
        contact,
        page: task.page.as_deref(),
        conversation: &conversation,
        // No page shows a conversation yet ([admin] adds one): the id finds it.
        conversation_url: None,
        history: &history,
        marker: &task.marker,
    });
    let category = task.category.as_deref().and_then(Category::parse);
    let new = NewTask {
        name: text.name,
        description: text.desc,
        tag_names: category.map(|c| c.label_names().iter().map(|n| n.to_string()).collect()).unwrap_or_default(),
        marker: task.marker.clone(),
    };
    board.create_once(&new, task.attempts > 0).await.map_err(|e| (e.to_string(), e.retryable(), e.retry_after()))
}
