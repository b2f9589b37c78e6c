//! The way to the operator's service, nothing lost: a hand-off and every visitor message
//! after it go into the durable outbox first, and one worker delivers them to Chatwoot in
//! order per conversation, retrying with backoff through outages and rate limits. Each effect
//! happens once at Chatwoot: messages carry our `source_id` (a duplicate is refused and counts
//! as done), and a hand-off looks for the contact and conversation it may already have made.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::chatwoot::{Chatwoot, ChatwootConfig, ChatwootError, Direction, NewContact, NewConversation, NewMessage};
use super::handoff::{self, Trigger};
use crate::app::AppState;
use crate::ids::now_ms;
use crate::realtime::protocol::ServerFrame;
use crate::registry::ClientRuntime;
use crate::store::{HandoffState, Inserted, OperatorLink, OutboxItem, Role, StoreError};

/// After this long an item is dead-lettered (kept for the admin) and the visitor told.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Items delivered concurrently in one pass of the worker.
const PASS: u32 = 100;

/// What the visitor reads when the hand-off starts.
const HANDING_OFF: &str =
    "I'm asking a person from our team to join. They'll reply right here; you can keep writing in the meantime.";
/// What the visitor reads when the operator's service could not be reached in time.
const UNREACHABLE: &str =
    "Sorry, we couldn't reach our team just now. The assistant is back; please try again a little later.";
/// What the visitor reads when the hand-off cap is reached.
const CAPPED: &str = "Our team has already been asked to join this conversation; please wait for their reply.";

/// The hand-off work item.
#[derive(Debug, Serialize, Deserialize)]
struct HandoffJob {
    why: String,
    page: Option<String>,
}

/// A visitor message to forward.
#[derive(Debug, Serialize, Deserialize)]
struct MessageJob {
    seq: i64,
    text: String,
}

/// Whether `client` has a human operator set up (its service URL, token and inbox).
pub fn configured(client: &ClientRuntime) -> bool {
    let s = &client.settings;
    !s.get("operator_url").is_empty() && s.is_set("operator_token") && !s.get("operator_inbox_id").is_empty()
}

/// Who answers `session` now (`Bot` without a link).
pub async fn state_of(state: &AppState, session: i64) -> Result<HandoffState, StoreError> {
    Ok(state.store.operator_link(session).await?.map_or(HandoffState::Bot, |l| l.state))
}

/// Starts a hand-off: the session waits for a person, the visitor is told, and the work is
/// queued — all in one write, with `with` (the model's answer that asked for a person)
/// stored before the notice; gives back `with` as stored (and shown). A session that used up
/// `handoff_max_per_session` is told so instead. `asked_in` is the visitor message that asked
/// for a person, if one did: the notice replies to it, which marks that message as dealt
/// with (a resend or a restart leaves it alone).
pub async fn start_handoff(
    state: &AppState,
    client: &ClientRuntime,
    session: i64,
    why: Trigger,
    page: Option<String>,
    asked_in: Option<i64>,
    with: Option<&crate::store::NewMessage>,
) -> Result<Option<crate::store::Message>, StoreError> {
    let max = client.settings.get("handoff_max_per_session").parse::<i64>().unwrap_or(3);
    let existing = state.store.operator_link(session).await?;
    let conversation = match &existing {
        Some(_) => String::new(),
        None => state.store.session_by_id(session).await?.map(|s| s.conversation_id).unwrap_or_default(),
    };
    let mut link = existing.unwrap_or(OperatorLink {
        session_id: session,
        client_id: client.row.id,
        // Our public conversation id, never the session token.
        source_id: format!("{}s-{conversation}", super::webhook::SOURCE_PREFIX),
        contact_id: None,
        conversation_id: None,
        state: HandoffState::Bot,
        handoffs: 0,
        updated_at: 0,
    });
    let capped = link.handoffs >= max;
    if link.state != HandoffState::Bot || capped {
        let with = match with {
            Some(m) => match state.store.message_insert(m).await? {
                Inserted::New(m) => Some(shown(state, &client.row.uid, m)),
                Inserted::Duplicate(_) => None,
            },
            None => None,
        };
        if capped && link.state == HandoffState::Bot {
            let mut notice = server_message(session, Role::System, CAPPED);
            notice.reply_to = asked_in;
            show(state, &client.row.uid, &notice).await?;
        }
        return Ok(with);
    }
    link.state = HandoffState::Waiting;
    link.handoffs += 1;
    link.updated_at = now_ms();
    let job = serde_json::to_string(&HandoffJob { why: format!("{why:?}"), page }).expect("plain JSON");
    let mut notice = server_message(session, Role::System, HANDING_OFF);
    notice.reply_to = asked_in;
    let messages: Vec<_> = with.cloned().into_iter().chain([notice]).collect();
    let mut stored = state.store.handoff_queue(&link, &job, &messages).await?;
    state.wake(crate::cluster::Job::Operator);
    tracing::info!(client = %client.row.uid, session, why = why.describe(), "hand-off to a person queued");
    let notice = stored.pop().expect("the notice was stored");
    let with = stored.pop().map(|m| shown(state, &client.row.uid, m));
    shown(state, &client.row.uid, notice);
    Ok(with)
}

/// Counts and sends a message just stored; gives it back.
fn shown(state: &AppState, uid: &str, m: crate::store::Message) -> crate::store::Message {
    crate::metrics::message(uid, crate::metrics::Direction::Out);
    state.hub.send(m.session_id, &ServerFrame::Message { message: (&m).into() }.encode());
    m
}

/// Whether `m` is a person's message or one of the notices that open or close a person's
/// part of the conversation (asked for, unreachable, ended): visitor messages before it
/// were that part's, with no answer of the assistant to wait for.
pub fn ends_assistant_part(m: &crate::store::Message) -> bool {
    m.role == Role::Operator
        || (m.role == Role::System
            && [HANDING_OFF, UNREACHABLE, super::inbound::BACK_TO_BOT].contains(&m.text.as_str()))
}

/// Queues a stored visitor message for the person who has (or is about to have) the
/// conversation.
pub async fn forward(state: &AppState, client_id: i64, session: i64, seq: i64, text: &str) -> Result<(), StoreError> {
    let job = serde_json::to_string(&MessageJob { seq, text: text.to_string() }).expect("plain JSON");
    state.store.outbox_push(client_id, session, "message", &job, now_ms()).await?;
    state.wake(crate::cluster::Job::Operator);
    Ok(())
}

/// A message from our side of the conversation (a notice, an operator's reply): the fields a
/// visitor message or an answer would carry are empty.
pub fn server_message(session: i64, role: Role, text: &str) -> crate::store::NewMessage {
    crate::store::NewMessage {
        session_id: session,
        role,
        text: text.to_string(),
        client_msg_id: None,
        reply_to: None,
        source: None,
        entry_id: None,
        created_at: now_ms(),
        usage: None,
        author: None,
        attachments: Vec::new(),
        products: Vec::new(),
    }
}

/// Stores `message` and sends it to every socket of its session; `false` when it was stored
/// before (the same Chatwoot message delivered twice).
pub async fn show(state: &AppState, uid: &str, message: &crate::store::NewMessage) -> Result<bool, StoreError> {
    match state.store.message_insert(message).await? {
        Inserted::New(m) => {
            shown(state, uid, m);
            Ok(true)
        }
        Inserted::Duplicate(_) => Ok(false),
    }
}

/// Shows the person who has `session` that the visitor is typing (or stopped). Typing is
/// fleeting: sent at once or not at all, never queued; a failure is only logged.
pub async fn visitor_typing(state: &AppState, client: &ClientRuntime, session: i64, on: bool) {
    let Ok(Some(link)) = state.store.operator_link(session).await else { return };
    let (HandoffState::Human, Some(conversation)) = (link.state, link.conversation_id) else { return };
    let result = match connect(state, client, &state.operator_http).await {
        Ok((chatwoot, found)) => match found.inbox_identifier {
            Some(inbox) => {
                chatwoot.contact_typing(&inbox, &link.source_id, conversation, on).await.map_err(|e| e.to_string())
            }
            None => Err("the inbox has no Client API identifier".into()),
        },
        Err(Failure::Retry(why, _) | Failure::Dead(why)) => Err(why),
    };
    if let Err(why) = result {
        tracing::debug!(client = %client.row.uid, session, error = %why, "the visitor's typing did not reach the operator");
    }
}

/// Stores a system message for the visitor and sends it to every socket of the session.
async fn notify_visitor(state: &AppState, uid: &str, session: i64, text: &str) -> Result<(), StoreError> {
    show(state, uid, &server_message(session, Role::System, text)).await.map(|_| ())
}

/// The worker: delivers due items until shutdown; woken by new work, else polls each second.
pub async fn run(state: AppState) {
    let http = state.operator_http.clone();
    let mut more = false;
    let mut lease = state.lease(crate::cluster::lease::OPERATOR_OUTBOX, Duration::from_secs(15));
    loop {
        if !more {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = state.operator_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        // One node delivers, so each item goes out once and in order.
        if !lease.hold(state.store.as_ref()).await {
            more = false;
            continue;
        }
        let due = match state.store.outbox_due(now_ms(), PASS).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading the operator outbox failed");
                continue;
            }
        };
        let found = !due.is_empty();
        let deliveries = due.into_iter().map(|item| {
            let (state, http) = (state.clone(), http.clone());
            async move { deliver(&state, &http, item).await }
        });
        let recorded = futures_util::future::join_all(deliveries).await.into_iter().all(|ok| ok);
        // Only each conversation's oldest item is due at a time: after a pass that did work,
        // the next items are due at once (a backlog drains at the service's pace, not one
        // item per conversation a second). Failed items wait for their retry time; a pass
        // whose outcomes could not be stored waits too, rather than spin.
        more = found && recorded && !state.shutdown.is_cancelled();
    }
}

/// Why an item was not delivered this time.
pub enum Failure {
    /// Try again later (outage, 429, 5xx, timeout).
    Retry(String, Option<Duration>),
    /// It can't work (configuration, refused): dead-letter now.
    Dead(String),
}

impl From<ChatwootError> for Failure {
    fn from(e: ChatwootError) -> Failure {
        if e.retryable() { Failure::Retry(e.to_string(), e.retry_after()) } else { Failure::Dead(e.to_string()) }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Retry(format!("store: {e}"), None)
    }
}

/// Delivers one item and records the outcome; `false` when the outcome could not be stored.
async fn deliver(state: &AppState, http: &reqwest::Client, item: OutboxItem) -> bool {
    let Some(client) = state.registry.all().into_iter().find(|c| c.row.id == item.client_id) else {
        return state.store.outbox_dead(item.id, now_ms(), "the client no longer exists").await.is_ok();
    };
    let result = match connect(state, &client, http).await {
        Ok((chatwoot, _)) => match item.kind.as_str() {
            "handoff" => hand_off(state, &chatwoot, &item).await,
            "message" => forward_message(state, &chatwoot, &item).await,
            other => Err(Failure::Dead(format!("unknown work kind {other}"))),
        },
        Err(f) => Err(f),
    };
    let now = now_ms();
    let outcome = match result {
        Ok(()) => state.store.outbox_done(item.id).await,
        Err(Failure::Retry(why, after)) if now - item.created_at < MAX_AGE.as_millis() as i64 => {
            let backoff = Duration::from_secs(1 << item.attempts.clamp(0, 6)).min(MAX_BACKOFF);
            let next = now + after.unwrap_or(backoff).min(MAX_BACKOFF).as_millis() as i64;
            tracing::warn!(client = %client.row.uid, item = item.id, kind = %item.kind, error = %why, "operator delivery failed; retrying");
            crate::metrics::outbox_retry(crate::metrics::Queue::Operator);
            state.store.outbox_retry(item.id, next, &why).await
        }
        Err(Failure::Retry(why, _) | Failure::Dead(why)) => {
            tracing::error!(client = %client.row.uid, item = item.id, kind = %item.kind, error = %why, "operator delivery dead-lettered");
            give_up(state, &client.row.uid, &item, &why).await
        }
    };
    if let Err(e) = &outcome {
        tracing::warn!(error = %e, item = item.id, "recording an operator delivery failed");
    }
    outcome.is_ok()
}

/// A dead item: kept for the admin; a hand-off that never arrived gives the bot back.
async fn give_up(state: &AppState, uid: &str, item: &OutboxItem, why: &str) -> Result<(), StoreError> {
    state.store.outbox_dead(item.id, now_ms(), why).await?;
    crate::metrics::outbox_dead_letter(crate::metrics::Queue::Operator);
    if let Some(mut link) = state.store.operator_link(item.session_id).await?
        && link.state == HandoffState::Waiting
    {
        link.state = HandoffState::Bot;
        link.updated_at = now_ms();
        state.store.operator_link_save(&link).await?;
        notify_visitor(state, uid, item.session_id, UNREACHABLE).await?;
    }
    Ok(())
}

/// What was learned from Chatwoot about each client's operator settings, per settings
/// version: the token's account (when `operator_account_id` is empty) and the inbox, checked
/// to be an API channel. Asked once per version, not before every delivery.
#[derive(Default)]
pub struct Discovery {
    known: std::sync::Mutex<std::collections::HashMap<i64, Discovered>>,
    /// Held while asking Chatwoot, so the many deliveries of one pass ask once, not each.
    asking: tokio::sync::Mutex<()>,
}

/// One client's discovered facts.
#[derive(Debug, Clone)]
pub struct Discovered {
    settings_version: i64,
    pub account_id: i64,
    /// The inbox's Client API identifier (the ActionCable way needs it).
    pub inbox_identifier: Option<String>,
}

impl Discovery {
    fn get(&self, client: &ClientRuntime) -> Option<Discovered> {
        let known = self.known.lock().expect("discovery lock");
        known.get(&client.row.id).filter(|d| d.settings_version == client.row.settings_version).cloned()
    }

    fn put(&self, client: &ClientRuntime, found: Discovered) {
        self.known.lock().expect("discovery lock").insert(client.row.id, found);
    }
}

/// A Chatwoot client for `client`'s settings, with its account and inbox checked once per
/// settings version. An empty `operator_webhook_secret` is filled with the inbox's own secret
/// (read with the admin token), so webhooks are signed without the admin copying it.
pub async fn connect(
    state: &AppState,
    client: &ClientRuntime,
    http: &reqwest::Client,
) -> Result<(Chatwoot, Discovered), Failure> {
    let s = &client.settings;
    let uid = &client.row.uid;
    let secret = |key: &str| match s.secret(&state.keys, uid, key) {
        Some(Ok(v)) if !v.is_empty() => Ok(Some(v)),
        Some(Err(e)) => Err(Failure::Dead(format!("{key}: {e}"))),
        _ => Ok(None),
    };
    let base = url::Url::parse(s.get("operator_url")).map_err(|e| Failure::Dead(format!("operator_url: {e}")))?;
    let admin_token = secret("operator_token")?.ok_or_else(|| Failure::Dead("operator_token is not set".into()))?;
    let inbox_id = s
        .get("operator_inbox_id")
        .parse()
        .map_err(|_| Failure::Dead("operator_inbox_id is not set: no hand-off without an inbox".into()))?;
    let bot_token = secret("operator_bot_token")?;
    let mut _asking = None;
    let mut known = state.operator_discovery.get(client);
    if known.is_none() {
        // One asks; the others wait and find the answer (held until the end of the asking).
        _asking = Some(state.operator_discovery.asking.lock().await);
        known = state.operator_discovery.get(client);
    }
    if let Some(known) = known {
        let config = ChatwootConfig { base, account_id: known.account_id, inbox_id, admin_token, bot_token };
        return Ok((Chatwoot::new(config, http.clone())?, known));
    }
    let account_id = match s.get("operator_account_id").parse() {
        Ok(id) => id,
        Err(_) => Chatwoot::profile_account(http, &base, &admin_token).await?,
    };
    let config = ChatwootConfig { base, account_id, inbox_id, admin_token, bot_token };
    let chatwoot = Chatwoot::new(config, http.clone())?;
    let inbox = chatwoot.inbox(inbox_id).await?;
    inbox.ensure_api()?;
    let mut settings_version = client.row.settings_version;
    if !s.is_set("operator_webhook_secret") {
        match &inbox.secret {
            Some(found) if !found.is_empty() => {
                settings_version = keep_webhook_secret(state, client, found).await?;
                tracing::info!(client = %uid, inbox = inbox_id, "read the inbox's webhook secret from Chatwoot");
            }
            _ if s.get("operator_allow_unsigned_webhooks") != "on" => tracing::warn!(
                client = %uid,
                inbox = inbox_id,
                "the Chatwoot inbox has no webhook secret (Chatwoot before 4.13): its webhooks will be refused \
                 unless operator_allow_unsigned_webhooks=on"
            ),
            _ => {}
        }
    }
    let found = Discovered { settings_version, account_id, inbox_identifier: inbox.inbox_identifier.clone() };
    state.operator_discovery.put(client, found.clone());
    Ok((chatwoot, found))
}

/// Stores the inbox's webhook secret as the client's (sealed) setting and makes the running
/// server use it before the first webhook can arrive; the client's new settings version.
async fn keep_webhook_secret(state: &AppState, client: &ClientRuntime, secret: &str) -> Result<i64, Failure> {
    let updates = [("operator_webhook_secret".to_string(), secret.to_string())];
    let writes = client
        .settings
        .plan(&client.row.uid, &updates, state.settings.store.upstream, &state.keys)
        .map_err(|e| Failure::Dead(format!("operator_webhook_secret: {e}")))?;
    state.store.settings_put(client.row.id, &writes).await?;
    state.reload_everywhere().await?;
    Ok(state.registry.get(&client.row.uid).map_or(client.row.settings_version, |c| c.row.settings_version))
}

/// Contact, conversation, the transcript for the agents, and the official hand-off.
async fn hand_off(state: &AppState, chatwoot: &Chatwoot, item: &OutboxItem) -> Result<(), Failure> {
    let job: HandoffJob = serde_json::from_str(&item.payload).map_err(|e| Failure::Dead(format!("bad job: {e}")))?;
    let Some(mut link) = state.store.operator_link(item.session_id).await? else {
        return Err(Failure::Dead("the session has no operator link".into()));
    };
    let session = state.store.session_by_id(item.session_id).await?;
    let visitor = session.as_ref().and_then(|s| match (&s.visitor_name, &s.visitor_email) {
        (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
        (Some(n), None) => Some(n.clone()),
        (None, Some(e)) => Some(e.clone()),
        (None, None) => None,
    });
    let conversation_ref = session.as_ref().map(|s| s.conversation_id.clone()).unwrap_or_default();
    if link.contact_id.is_none() {
        let contact = chatwoot
            .find_or_create_contact(&NewContact {
                inbox_id: chatwoot.inbox_id(),
                source_id: link.source_id.clone(),
                identifier: Some(link.source_id.clone()),
                name: Some(match &session.as_ref().and_then(|s| s.visitor_name.clone()) {
                    Some(n) => format!("{n} (unverified)"),
                    None => "Website visitor".to_string(),
                }),
                custom_attributes: json!({
                    "aia_conversation": conversation_ref,
                    "unverified_name": session.as_ref().and_then(|s| s.visitor_name.clone()),
                    "unverified_email": session.as_ref().and_then(|s| s.visitor_email.clone()),
                }),
            })
            .await?;
        link.contact_id = Some(contact.id);
        state.store.operator_link_save(&link).await?;
    }
    let contact_id = link.contact_id.expect("set above");
    if link.conversation_id.is_none() {
        // A conversation made by an earlier attempt whose answer was lost is reused.
        let earlier = chatwoot
            .conversations_of_contact(contact_id)
            .await?
            .into_iter()
            .find(|c| c.inbox_id == Some(chatwoot.inbox_id()) && c.status != "resolved");
        let conversation = match earlier {
            Some(c) => c,
            None => {
                chatwoot
                    .create_conversation(&NewConversation {
                        inbox_id: chatwoot.inbox_id(),
                        contact_id,
                        source_id: link.source_id.clone(),
                        additional_attributes: json!({ "origin": "aia-chat", "page": job.page }),
                        custom_attributes: json!({ "aia_conversation": conversation_ref }),
                        first_message: None,
                    })
                    .await?
            }
        };
        link.conversation_id = Some(conversation.id);
        state.store.operator_link_save(&link).await?;
    }
    let conversation = link.conversation_id.expect("set above");
    // The conversation up to the hand-off, however late this delivery comes: what was
    // written after it reaches the person as messages of their own.
    let (page, _) = state.store.messages_page(item.session_id, None, 200).await?;
    let mut history: Vec<_> = page.into_iter().filter(|m| m.created_at <= item.created_at).collect();
    history.drain(..history.len().saturating_sub(50));
    let why = match job.why.as_str() {
        "Asked" => Trigger::Asked,
        "Model" => Trigger::Model,
        "Unanswered" => Trigger::Unanswered,
        _ => Trigger::Keyword,
    };
    let note = handoff::transcript(&history, why, job.page.as_deref(), visitor.as_deref());
    let source = format!("{}h-{}", super::webhook::SOURCE_PREFIX, item.id);
    post_once(
        chatwoot,
        conversation,
        NewMessage { content: note, message_type: Direction::Outgoing, private: true, source_id: Some(source) },
        true,
    )
    .await?;
    chatwoot.toggle_status(conversation, "open", true).await?;
    if link.state == HandoffState::Waiting {
        link.state = HandoffState::Human;
        link.updated_at = now_ms();
        state.store.operator_link_save(&link).await?;
    }
    Ok(())
}

/// A visitor message to the conversation, as the customer's words.
async fn forward_message(state: &AppState, chatwoot: &Chatwoot, item: &OutboxItem) -> Result<(), Failure> {
    let job: MessageJob = serde_json::from_str(&item.payload).map_err(|e| Failure::Dead(format!("bad job: {e}")))?;
    let link = state.store.operator_link(item.session_id).await?;
    let Some(conversation) = link.and_then(|l| l.conversation_id) else {
        // Behind a hand-off that is still on its way (FIFO keeps it behind), or one that died.
        return Err(Failure::Dead("no operator conversation for this session".into()));
    };
    let source = format!("{}m-{}", super::webhook::SOURCE_PREFIX, job.seq);
    let message =
        NewMessage { content: job.text, message_type: Direction::Incoming, private: false, source_id: Some(source) };
    post_once(chatwoot, conversation, message, false).await
}

/// Posts a message whose `source_id` makes it once-only: Chatwoot refusing a duplicate
/// `source_id` means an earlier attempt got through.
async fn post_once(chatwoot: &Chatwoot, conversation: i64, message: NewMessage, as_bot: bool) -> Result<(), Failure> {
    match chatwoot.post_message(conversation, &message, as_bot).await {
        Ok(_) => Ok(()),
        Err(ChatwootError::Invalid(why)) if why.contains("source_id") => Ok(()),
        Err(e) => Err(e.into()),
    }
}
