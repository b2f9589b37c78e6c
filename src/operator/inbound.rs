//! What Chatwoot tells us, acted on — whether it came as a signed webhook or over the
//! ActionCable subscription. The event must point at a conversation of the client it came for;
//! then operator replies and notices are stored and sent live (each Chatwoot message once),
//! typing is relayed, and a resolved conversation goes back to the bot.

use super::relay;
use super::webhook::{Effect, Owner, Webhook};
use crate::app::AppState;
use crate::ids::now_ms;
use crate::realtime::protocol::{ServerFrame, TypingRole};
use crate::registry::ClientRuntime;
use crate::store::{Attachment, Author, HandoffState, NewMessage, OperatorLink, Role, StoreError};

/// What the visitor reads when a person closes the conversation.
pub(crate) const BACK_TO_BOT: &str =
    "The conversation with our team has ended. The assistant is here again if you need anything.";

/// Why an event was not acted on.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The event names an account, inbox, conversation or contact that isn't this client's.
    #[error("the event's {0} does not belong to this chat client's operator settings")]
    Foreign(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that `hook` points at a conversation of `client`, then does what it means; the
/// outcome in words (for the caller's answer and the log).
pub async fn apply(state: &AppState, client: &ClientRuntime, hook: &Webhook) -> Result<&'static str, InboundError> {
    let effect = hook.effect();
    if let Effect::Ignore(why) = effect {
        tracing::debug!(client = %client.row.uid, event = %hook.event, why, "operator event ignored");
        return Ok(why);
    }
    let address = hook.address();
    let configured = |key: &str| client.settings.get(key).parse::<i64>().ok();
    if let (Some(want), Some(got)) = (configured("operator_account_id"), address.account_id)
        && want != got
    {
        return Err(InboundError::Foreign("account"));
    }
    if let (Some(want), Some(got)) = (configured("operator_inbox_id"), address.inbox_id)
        && want != got
    {
        return Err(InboundError::Foreign("inbox"));
    }
    let Some(conversation) = address.conversation_id else { return Err(InboundError::Foreign("conversation")) };
    let Some(mut link) = state.store.operator_link_by_conversation(client.row.id, conversation).await? else {
        return Err(InboundError::Foreign("conversation"));
    };
    if address.source_id.as_deref().is_some_and(|s| s != link.source_id) {
        return Err(InboundError::Foreign("contact (source_id)"));
    }
    let session = link.session_id;
    match effect {
        Effect::Reply(reply) => {
            let author = Author {
                name: reply.operator_name.clone().unwrap_or_else(|| "Operator".to_string()),
                avatar_url: reply.avatar_url.clone(),
            };
            let attachments =
                reply.attachments.iter().map(|(name, url)| Attachment { name: name.clone(), url: url.clone() });
            let message = from_chatwoot(
                session,
                Role::Operator,
                &reply.text,
                Some(reply.message_id),
                Some(author),
                attachments.collect(),
            );
            let stored = relay::show(state, &client.row.uid, &message).await?;
            if stored {
                crate::metrics::answered(&client.row.uid, "operator", None);
            }
            // The first reply means a person has it; a late one (delivered after the resolve
            // that followed it) is shown but doesn't take the conversation from the bot.
            if link.state == HandoffState::Waiting {
                set_state(state, &mut link, HandoffState::Human).await?;
            }
            Ok(if stored { "delivered" } else { "already delivered" })
        }
        Effect::Notice { message_id, text } => {
            let message = from_chatwoot(session, Role::System, &text, Some(message_id), None, Vec::new());
            let stored = relay::show(state, &client.row.uid, &message).await?;
            Ok(if stored { "notice delivered" } else { "already delivered" })
        }
        Effect::Typing(on) => {
            let frame = ServerFrame::Typing { role: TypingRole::Operator, on, reply_to: None }.encode();
            state.hub.send_lossy(session, &frame);
            Ok("typing relayed")
        }
        Effect::Status(Owner::Human) => {
            set_state(state, &mut link, HandoffState::Human).await?;
            Ok("a person has the conversation")
        }
        Effect::Status(Owner::Bot | Owner::Resolved) => {
            if link.state != HandoffState::Bot {
                set_state(state, &mut link, HandoffState::Bot).await?;
                relay::show(state, &client.row.uid, &relay::server_message(session, Role::System, BACK_TO_BOT)).await?;
            }
            Ok("the bot has the conversation")
        }
        Effect::Ignore(why) => Ok(why),
    }
}

async fn set_state(state: &AppState, link: &mut OperatorLink, to: HandoffState) -> Result<(), StoreError> {
    if link.state == to {
        return Ok(());
    }
    link.state = to;
    link.updated_at = now_ms();
    state.store.operator_link_save(link).await
}

/// A message from the operator's side, keyed by its Chatwoot id so that a repeated delivery
/// is stored once ([`relay::show`] then says `false`).
fn from_chatwoot(
    session: i64,
    role: Role,
    text: &str,
    chatwoot_id: Option<i64>,
    author: Option<Author>,
    attachments: Vec<Attachment>,
) -> NewMessage {
    NewMessage {
        client_msg_id: chatwoot_id.map(|id| format!("chatwoot#{id}")),
        author,
        attachments,
        ..relay::server_message(session, role, text)
    }
}
