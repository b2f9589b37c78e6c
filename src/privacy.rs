//! Access and erasure requests about a visitor (GDPR articles 15 and 17), and retention. A
//! request names one conversation by its public id, or a visitor by the email the host page
//! gave through `identify` (every conversation with it). The export is everything we keep
//! about those conversations; the erasure deletes it from every visitor table in one
//! transaction. Both list the Chatwoot conversations and Trello cards made for the visitor:
//! those live at the operator's services, which we do not delete from, so the operator can.
//!
//! The CLI, the admin API and retention all go through here; the server also ends the
//! erased sessions' live sockets (`AppState::erase`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clients::ClientSettings;
use crate::realtime::protocol::rfc3339_ms;
use crate::store::{
    Attachment, ClientRow, Message, OperatorLink, OutboxItem, ProductCard, SessionRow, Store, StoreError, TaskRecord,
};

/// The longest request text accepted (an email address is at most 254 characters).
const MAX_SUBJECT: usize = 320;

/// Who a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One conversation, by the public id the widget and the admin panel show (`c_…`).
    Conversation(String),
    /// Every conversation whose visitor gave this address (trimmed, lower-case).
    Email(String),
}

impl Subject {
    /// Reads a conversation id or an email address (anything with an `@`), trimmed. Only an
    /// empty or overlong text is refused; anything else is looked up, and what cannot match
    /// (blanks, control characters) simply matches nothing.
    pub fn parse(input: &str) -> Result<Subject, PrivacyError> {
        if input.is_empty() || input.chars().count() > MAX_SUBJECT {
            return Err(PrivacyError::Invalid);
        }
        let s = input.trim();
        Ok(if s.contains('@') { Subject::Email(s.to_lowercase()) } else { Subject::Conversation(s.to_string()) })
    }
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Neither a conversation id nor an email address.
    #[error("give a conversation id (c_…) or an email address")]
    Invalid,
    /// No conversation matches (within the client, when one was named).
    #[error("no conversation matches")]
    NotFound,
    /// The named client does not exist.
    #[error("no client '{0}'")]
    UnknownClient(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One conversation a request covers, with its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub client: ClientRow,
    pub session: SessionRow,
}

/// The conversations `subject` names, within client `client` (a uid) when given, else across
/// all clients; oldest first. [`PrivacyError::NotFound`] when there are none.
pub async fn find(store: &dyn Store, subject: &Subject, client: Option<&str>) -> Result<Vec<Matched>, PrivacyError> {
    let scope = match client {
        Some(uid) => Some(store.client_get(uid).await?.ok_or_else(|| PrivacyError::UnknownClient(uid.into()))?),
        None => None,
    };
    let sessions = match subject {
        Subject::Conversation(id) => store.session_by_public_id(id).await?.into_iter().collect(),
        Subject::Email(email) => store.sessions_by_email(scope.as_ref().map(|c| c.id), email).await?,
    };
    let clients: BTreeMap<i64, ClientRow> = store.client_list().await?.into_iter().map(|c| (c.id, c)).collect();
    let matched: Vec<Matched> = sessions
        .into_iter()
        .filter(|s| scope.as_ref().is_none_or(|c| c.id == s.client_id))
        .filter_map(|session| Some(Matched { client: clients.get(&session.client_id)?.clone(), session }))
        .collect();
    if matched.is_empty() {
        return Err(PrivacyError::NotFound);
    }
    Ok(matched)
}

/// Everything kept about a visitor: their conversations grouped by client, and what exists
/// at the operator's services.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    pub exported_at: String,
    pub clients: Vec<ClientExport>,
    pub upstream: Upstream,
}

/// One client's conversations with the visitor.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientExport {
    pub client: String,
    pub conversations: Vec<ConversationExport>,
}

/// One conversation with every row kept about it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationExport {
    pub conversation_id: String,
    pub started_at: String,
    pub visitor: VisitorView,
    pub messages: Vec<MessageExport>,
    pub tasks: Vec<TaskExport>,
    /// The hand-off to a person, if one was asked for.
    pub operator: Option<OperatorExport>,
    /// Deliveries to Chatwoot still queued or given up (their payloads quote messages).
    pub pending_deliveries: Vec<DeliveryExport>,
    /// Model tokens the conversation's answers cost.
    pub tokens: i64,
}

/// Who the host page said the visitor is; never verified.
#[derive(Debug, Clone, Serialize)]
pub struct VisitorView {
    pub name: Option<String>,
    pub email: Option<String>,
    pub verified: bool,
}

/// A message with all it carries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageExport {
    pub seq: i64,
    pub role: &'static str,
    pub text: String,
    pub at: String,
    /// The widget's id of a visitor message (`chatwoot#…` for an operator's).
    pub client_id: Option<String>,
    pub reply_to: Option<i64>,
    pub source: Option<String>,
    pub entry_id: Option<String>,
    pub feedback: Option<&'static str>,
    pub author: Option<AuthorView>,
    pub attachments: Vec<Attachment>,
    pub products: Vec<ProductCard>,
}

/// The person behind an operator message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorView {
    pub name: String,
    pub avatar_url: Option<String>,
}

/// A task request and its card.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExport {
    pub title: String,
    pub summary: String,
    pub category: Option<String>,
    /// Contact details the visitor gave (unverified).
    pub contact: Option<String>,
    pub page: Option<String>,
    pub state: &'static str,
    pub reference: Option<String>,
    /// The Trello card's link.
    pub url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_error: Option<String>,
}

/// The link to the Chatwoot conversation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorExport {
    pub state: &'static str,
    pub handoffs: i64,
    pub chatwoot_contact_id: Option<i64>,
    pub chatwoot_conversation_id: Option<i64>,
    pub updated_at: String,
}

/// A delivery to Chatwoot not done yet (or given up).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryExport {
    pub kind: String,
    /// As queued (JSON).
    pub payload: serde_json::Value,
    pub created_at: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub dead_at: Option<String>,
}

/// What exists at the operator's services for the visitor. We never delete there: the
/// operator does, from these lists.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    pub chatwoot_conversations: Vec<ChatwootConversation>,
    pub trello_cards: Vec<TrelloCard>,
}

/// A Chatwoot conversation (and its contact) made by a hand-off.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootConversation {
    pub client: String,
    pub conversation_id: String,
    pub chatwoot_conversation_id: i64,
    pub chatwoot_contact_id: Option<i64>,
    /// The conversation in Chatwoot's app, when `operator_account_id` is set.
    pub url: Option<String>,
}

/// A Trello card made from a task request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrelloCard {
    pub client: String,
    pub conversation_id: String,
    pub title: String,
    pub reference: Option<String>,
    pub url: String,
}

/// What an erasure deleted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    pub conversations: Vec<ErasedConversation>,
    /// Rows deleted per table.
    pub deleted: BTreeMap<&'static str, u64>,
    /// Still at the operator's services: theirs to delete.
    pub upstream: Upstream,
    /// The erased sessions' ids (for ending their sockets).
    #[serde(skip)]
    pub session_ids: Vec<i64>,
}

/// One erased conversation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasedConversation {
    pub client: String,
    pub conversation_id: String,
}

/// Everything kept about the `matched` conversations.
pub async fn export(store: &dyn Store, matched: &[Matched]) -> Result<Export, PrivacyError> {
    let mut clients: Vec<ClientExport> = Vec::new();
    let mut upstream = Upstream::default();
    for m in matched {
        let (messages, _) = store.messages_page(m.session.id, None, u32::MAX).await?;
        let tasks = store.tasks_of_session(m.session.id).await?;
        let link = store.operator_link(m.session.id).await?;
        let outbox = store.outbox_of_session(m.session.id).await?;
        let tokens = store.session_tokens(m.session.id).await?;
        add_upstream(store, &mut upstream, m, link.as_ref(), &tasks).await?;
        let conversation = ConversationExport {
            conversation_id: m.session.conversation_id.clone(),
            started_at: rfc3339_ms(m.session.created_at),
            visitor: VisitorView {
                name: m.session.visitor_name.clone(),
                email: m.session.visitor_email.clone(),
                verified: false,
            },
            messages: messages.into_iter().map(message_export).collect(),
            tasks: tasks.into_iter().map(task_export).collect(),
            operator: link.map(|l| OperatorExport {
                state: l.state.as_str(),
                handoffs: l.handoffs,
                chatwoot_contact_id: l.contact_id,
                chatwoot_conversation_id: l.conversation_id,
                updated_at: rfc3339_ms(l.updated_at),
            }),
            pending_deliveries: outbox.into_iter().map(delivery_export).collect(),
            tokens,
        };
        match clients.iter_mut().find(|c| c.client == m.client.uid) {
            Some(c) => c.conversations.push(conversation),
            None => clients.push(ClientExport { client: m.client.uid.clone(), conversations: vec![conversation] }),
        }
    }
    Ok(Export { exported_at: rfc3339_ms(crate::ids::now_ms()), clients, upstream })
}

/// Deletes the `matched` conversations everywhere we keep them, listing first what exists at
/// the operator's services.
pub async fn erase(store: &dyn Store, matched: &[Matched]) -> Result<Erasure, PrivacyError> {
    let mut upstream = Upstream::default();
    for m in matched {
        let tasks = store.tasks_of_session(m.session.id).await?;
        let link = store.operator_link(m.session.id).await?;
        add_upstream(store, &mut upstream, m, link.as_ref(), &tasks).await?;
    }
    let session_ids: Vec<i64> = matched.iter().map(|m| m.session.id).collect();
    let deleted = store.sessions_erase(&session_ids).await?.into_iter().collect();
    let conversations = matched
        .iter()
        .map(|m| ErasedConversation {
            client: m.client.uid.clone(),
            conversation_id: m.session.conversation_id.clone(),
        })
        .collect();
    Ok(Erasure { conversations, deleted, upstream, session_ids })
}

/// Adds the Chatwoot conversation and the Trello cards of one conversation.
async fn add_upstream(
    store: &dyn Store,
    upstream: &mut Upstream,
    m: &Matched,
    link: Option<&OperatorLink>,
    tasks: &[TaskRecord],
) -> Result<(), PrivacyError> {
    if let Some(id) = link.and_then(|l| l.conversation_id) {
        let settings = ClientSettings::from_stored(store.settings_get(m.client.id).await?);
        let base = settings.get("operator_url").trim_end_matches('/');
        let account = settings.get("operator_account_id");
        upstream.chatwoot_conversations.push(ChatwootConversation {
            client: m.client.uid.clone(),
            conversation_id: m.session.conversation_id.clone(),
            chatwoot_conversation_id: id,
            chatwoot_contact_id: link.and_then(|l| l.contact_id),
            url: (!base.is_empty() && !account.is_empty())
                .then(|| format!("{base}/app/accounts/{account}/conversations/{id}")),
        });
    }
    for t in tasks {
        if let Some(url) = &t.url {
            upstream.trello_cards.push(TrelloCard {
                client: m.client.uid.clone(),
                conversation_id: m.session.conversation_id.clone(),
                title: t.title.clone(),
                reference: t.reference.clone(),
                url: url.clone(),
            });
        }
    }
    Ok(())
}

fn message_export(m: Message) -> MessageExport {
    MessageExport {
        seq: m.seq,
        role: m.role.as_str(),
        text: m.text,
        at: rfc3339_ms(m.created_at),
        client_id: m.client_msg_id,
        reply_to: m.reply_to,
        source: m.source,
        entry_id: m.entry_id,
        feedback: m.feedback.map(|f| f.as_str()),
        author: m.author.map(|a| AuthorView { name: a.name, avatar_url: a.avatar_url }),
        attachments: m.attachments,
        products: m.products,
    }
}

fn task_export(t: TaskRecord) -> TaskExport {
    TaskExport {
        title: t.title,
        summary: t.summary,
        category: t.category,
        contact: t.contact,
        page: t.page,
        state: t.state.as_str(),
        reference: t.reference,
        url: t.url,
        created_at: rfc3339_ms(t.created_at),
        updated_at: rfc3339_ms(t.updated_at),
        last_error: t.last_error,
    }
}

fn delivery_export(o: OutboxItem) -> DeliveryExport {
    DeliveryExport {
        kind: o.kind,
        payload: serde_json::from_str(&o.payload).unwrap_or(serde_json::Value::String(o.payload)),
        created_at: rfc3339_ms(o.created_at),
        attempts: o.attempts,
        last_error: o.last_error,
        dead_at: o.dead_at.map(rfc3339_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_a_conversation_or_an_email() {
        assert_eq!(Subject::parse(" c_0a1b ").unwrap(), Subject::Conversation("c_0a1b".into()));
        assert_eq!(Subject::parse(" Dana@Example.ORG\n").unwrap(), Subject::Email("dana@example.org".into()));
        assert_eq!(Subject::parse("  ").unwrap(), Subject::Conversation(String::new()), "matches nothing");
        assert!(matches!(Subject::parse(""), Err(PrivacyError::Invalid)));
        assert!(matches!(Subject::parse(&"x".repeat(321)), Err(PrivacyError::Invalid)));
        assert!(Subject::parse(&"x".repeat(320)).is_ok(), "as long as the API's schema allows");
    }
}
