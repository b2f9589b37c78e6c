//! What a Chatwoot webhook means for the visitor (contract §5.3–5.6). Bodies are parsed
//! leniently — fields we don't use are ignored, `message_type` may be a string or an integer —
//! and each event becomes one [`Effect`]: show an operator reply, show a notice, show or hide
//! typing, hand the conversation back to the bot, or nothing (with the reason, for the log).

use serde::{Deserialize, Deserializer};

/// Prefix of every `source_id` we give Chatwoot: our own posts come back as webhooks and are
/// recognised by it.
pub const SOURCE_PREFIX: &str = "aia-";

/// Chatwoot's message types: strings in webhooks, integers in REST and nested payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Incoming,
    Outgoing,
    Activity,
    Template,
    Other,
}

impl<'de> Deserialize<'de> for MessageType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Int(0) => MessageType::Incoming,
            Raw::Int(1) => MessageType::Outgoing,
            Raw::Int(2) => MessageType::Activity,
            Raw::Int(3) => MessageType::Template,
            Raw::Text(t) => match t.as_str() {
                "incoming" => MessageType::Incoming,
                "outgoing" => MessageType::Outgoing,
                "activity" => MessageType::Activity,
                "template" => MessageType::Template,
                _ => MessageType::Other,
            },
            Raw::Int(_) => MessageType::Other,
        })
    }
}

/// `{id, name}` of an account or inbox.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ref {
    pub id: Option<i64>,
}

/// Who wrote a message or is typing. Contacts have no `type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Sender {
    pub id: Option<i64>,
    pub name: Option<String>,
    pub available_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub avatar_url: Option<String>,
    pub thumbnail: Option<String>,
}

/// The contact's session in our inbox.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactInbox {
    pub contact_id: Option<i64>,
    pub inbox_id: Option<i64>,
    pub source_id: Option<String>,
}

/// The conversation, top level in `conversation_*` events and nested in message events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Conversation {
    pub id: Option<i64>,
    pub inbox_id: Option<i64>,
    pub status: Option<String>,
    pub account: Option<Ref>,
    pub contact_inbox: Option<ContactInbox>,
}

/// A file on a message; shown to the visitor as a link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    pub data_url: Option<String>,
    pub file_type: Option<String>,
    pub extension: Option<String>,
    pub file_size: Option<u64>,
    pub content_type: Option<String>,
}

/// One webhook body, every event kind in one lenient shape.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Webhook {
    #[serde(default)]
    pub event: String,
    pub id: Option<i64>,
    pub content: Option<String>,
    pub content_type: Option<String>,
    pub message_type: Option<MessageType>,
    #[serde(default)]
    pub private: bool,
    pub source_id: Option<String>,
    pub sender: Option<Sender>,
    pub inbox: Option<Ref>,
    pub account: Option<Ref>,
    /// Nested on message and typing events.
    pub conversation: Option<Conversation>,
    /// Top-level on `conversation_*` events and on ActionCable's messages.
    pub inbox_id: Option<i64>,
    /// ActionCable's flat ids (push form; webhooks nest them).
    pub account_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub status: Option<String>,
    pub contact_inbox: Option<ContactInbox>,
    pub attachments: Option<Vec<Attachment>>,
    pub content_attributes: Option<serde_json::Value>,
    /// Typing events.
    pub user: Option<Sender>,
    #[serde(default)]
    pub is_private: bool,
}

/// Where a webhook points: what must belong to the client whose secret verified it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub account_id: Option<i64>,
    pub inbox_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub source_id: Option<String>,
}

/// Whose turn it is in a conversation, from its Chatwoot status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `pending`: the bot answers.
    Bot,
    /// `open` or `snoozed`: a person has it.
    Human,
    /// `resolved`: closed; the bot takes over again.
    Resolved,
}

/// An operator's message as the visitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message_id: i64,
    pub text: String,
    pub operator_name: Option<String>,
    pub avatar_url: Option<String>,
    /// http(s) links only.
    pub attachments: Vec<(String, String)>,
}

/// What a webhook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A person (or Chatwoot's automation) wrote to the visitor.
    Reply(Reply),
    /// A greeting, out-of-office or satisfaction-survey message: a system notice.
    Notice { message_id: i64, text: String },
    /// An operator started or stopped typing.
    Typing(bool),
    /// The conversation changed hands.
    Status(Owner),
    /// Nothing for the visitor, and why.
    Ignore(&'static str),
}

impl Webhook {
    /// The ids in the body that must belong to the verifying client.
    pub fn address(&self) -> Address {
        let conv = self.conversation.as_ref();
        let contact_inbox = conv.and_then(|c| c.contact_inbox.as_ref()).or(self.contact_inbox.as_ref());
        Address {
            account_id: self
                .account
                .as_ref()
                .and_then(|a| a.id)
                .or_else(|| conv.and_then(|c| c.account.as_ref()).and_then(|a| a.id))
                .or(self.account_id),
            inbox_id: self
                .inbox
                .as_ref()
                .and_then(|i| i.id)
                .or_else(|| conv.and_then(|c| c.inbox_id))
                .or(self.inbox_id)
                .or_else(|| contact_inbox.and_then(|c| c.inbox_id)),
            conversation_id: conv
                .and_then(|c| c.id)
                .or(self.conversation_id)
                .or(if self.event.starts_with("conversation_") { self.id } else { None }),
            source_id: contact_inbox.and_then(|c| c.source_id.clone()),
        }
    }

    /// An ActionCable event (`message.created` with its push-form `data`) as the webhook it
    /// stands for: the same names with `_`, the same lenient reading.
    pub fn from_cable(event: &str, data: serde_json::Value) -> Result<Webhook, serde_json::Error> {
        let mut hook: Webhook = serde_json::from_value(match data {
            serde_json::Value::Object(mut map) => {
                map.remove("event");
                serde_json::Value::Object(map)
            }
            other => other,
        })?;
        hook.event = event.replace('.', "_");
        Ok(hook)
    }

    /// What the event means for the visitor (contract §5.4, "deciding what a message_created
    /// means", in its order).
    pub fn effect(&self) -> Effect {
        match self.event.as_str() {
            "message_created" => self.message_effect(),
            "message_updated" => Effect::Ignore("message updates are not shown"),
            "conversation_typing_on" | "conversation_typing_off" if self.is_private => {
                Effect::Ignore("typing a private note")
            }
            "conversation_typing_on" => Effect::Typing(true),
            "conversation_typing_off" => Effect::Typing(false),
            "conversation_status_changed"
            | "conversation_updated"
            | "conversation_opened"
            | "conversation_resolved" => {
                let status = self.status.as_deref().or_else(|| self.conversation.as_ref()?.status.as_deref());
                match status.and_then(owner) {
                    Some(o) => Effect::Status(o),
                    None => Effect::Ignore("no status in the conversation event"),
                }
            }
            "conversation_created" => Effect::Ignore("our own conversation"),
            _ => Effect::Ignore("an event the visitor doesn't need"),
        }
    }

    fn message_effect(&self) -> Effect {
        let Some(message_id) = self.id else { return Effect::Ignore("a message without an id") };
        if self.private {
            return Effect::Ignore("a private note");
        }
        let ours = self.source_id.as_deref().is_some_and(|s| s.starts_with(SOURCE_PREFIX));
        let text = self.content.clone().unwrap_or_default();
        match self.message_type {
            Some(MessageType::Incoming) => Effect::Ignore("the visitor's own message"),
            Some(MessageType::Outgoing) if ours => Effect::Ignore("the echo of our own post"),
            Some(MessageType::Outgoing) => {
                let sender = self.sender.clone().unwrap_or_default();
                let attachments = self.links();
                if text.trim().is_empty() && attachments.is_empty() {
                    return Effect::Ignore("an empty message");
                }
                let name = sender.available_name.or(sender.name).filter(|n| !n.trim().is_empty());
                let avatar = sender.avatar_url.or(sender.thumbnail).filter(|u| http_url(u));
                Effect::Reply(Reply { message_id, text, operator_name: name, avatar_url: avatar, attachments })
            }
            Some(MessageType::Template) if !text.trim().is_empty() => Effect::Notice { message_id, text },
            Some(MessageType::Template) => Effect::Ignore("an empty template"),
            Some(MessageType::Activity) => Effect::Ignore("an activity note"),
            Some(MessageType::Other) | None => Effect::Ignore("an unknown message type"),
        }
    }

    /// The message's attachments as (name, URL) links; only http and https URLs.
    fn links(&self) -> Vec<(String, String)> {
        let files = self.attachments.as_deref().unwrap_or_default();
        files
            .iter()
            .filter_map(|a| {
                let url = a.data_url.clone().filter(|u| http_url(u))?;
                let name = url
                    .split('?')
                    .next()
                    .and_then(|p| p.rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| a.file_type.clone().unwrap_or_else(|| "file".into()));
                Some((name, url))
            })
            .collect()
    }
}

fn owner(status: &str) -> Option<Owner> {
    match status {
        "pending" => Some(Owner::Bot),
        "open" | "snoozed" => Some(Owner::Human),
        "resolved" => Some(Owner::Resolved),
        _ => None,
    }
}

fn http_url(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Webhook {
        serde_json::from_str(json).expect("a webhook body")
    }

    /// The contract's §5.4 example, trimmed to what matters.
    const AGENT_REPLY: &str = r#"{
      "event": "message_created", "id": 90230,
      "content": "Hi Dana, I'm Sam from billing. I've refunded the duplicate charge.",
      "content_type": "text", "content_attributes": {}, "additional_attributes": {},
      "message_type": "outgoing", "private": false, "source_id": null,
      "created_at": "2026-06-17T09:12:03.418Z",
      "sender": { "id": 5, "name": "Sam Agent", "email": "sam@support.example", "type": "user" },
      "inbox": { "id": 7, "name": "AI assistant" }, "account": { "id": 2, "name": "Example Support" },
      "conversation": { "id": 311, "inbox_id": 7, "status": "open", "channel": "Channel::Api",
        "account": { "id": 2, "name": "Example Support" },
        "contact_inbox": { "id": 880, "contact_id": 1204, "inbox_id": 7, "source_id": "asst-session-5f1c",
          "hmac_verified": false, "pubsub_token": "Xq3" },
        "messages": [ { "id": 90230, "message_type": 1, "created_at": 1781690123 } ] }
    }"#;

    #[test]
    fn an_agents_reply_reaches_the_visitor() {
        let w = parse(AGENT_REPLY);
        assert_eq!(
            w.effect(),
            Effect::Reply(Reply {
                message_id: 90230,
                text: "Hi Dana, I'm Sam from billing. I've refunded the duplicate charge.".into(),
                operator_name: Some("Sam Agent".into()),
                avatar_url: None,
                attachments: vec![],
            })
        );
        assert_eq!(
            w.address(),
            Address {
                account_id: Some(2),
                inbox_id: Some(7),
                conversation_id: Some(311),
                source_id: Some("asst-session-5f1c".into())
            }
        );
    }

    #[test]
    fn message_types_as_strings_or_integers() {
        for (raw, kind) in [
            ("\"incoming\"", MessageType::Incoming),
            ("0", MessageType::Incoming),
            ("\"outgoing\"", MessageType::Outgoing),
            ("1", MessageType::Outgoing),
            ("2", MessageType::Activity),
            ("\"template\"", MessageType::Template),
            ("3", MessageType::Template),
            ("\"bogus\"", MessageType::Other),
            ("9", MessageType::Other),
        ] {
            let w = parse(&format!(r#"{{"event":"message_created","id":1,"message_type":{raw}}}"#));
            assert_eq!(w.message_type, Some(kind), "{raw}");
        }
    }

    #[test]
    fn what_the_visitor_never_sees() {
        let with = |patch: &str| parse(&AGENT_REPLY.replacen(r#""private": false"#, patch, 1));
        assert_eq!(with(r#""private": true"#).effect(), Effect::Ignore("a private note"));
        let incoming =
            parse(&AGENT_REPLY.replacen(r#""message_type": "outgoing""#, r#""message_type": "incoming""#, 1));
        assert_eq!(incoming.effect(), Effect::Ignore("the visitor's own message"));
        let echo = parse(&AGENT_REPLY.replacen(r#""source_id": null"#, r#""source_id": "aia-m-41""#, 1));
        assert_eq!(echo.effect(), Effect::Ignore("the echo of our own post"));
        let activity = parse(&AGENT_REPLY.replacen(r#""message_type": "outgoing""#, r#""message_type": 2"#, 1));
        assert_eq!(activity.effect(), Effect::Ignore("an activity note"));
        assert_eq!(
            parse(r#"{"event":"contact_created"}"#).effect(),
            Effect::Ignore("an event the visitor doesn't need")
        );
    }

    #[test]
    fn templates_become_notices_and_attachments_links() {
        let survey = parse(
            r#"{"event":"message_created","id":7,"message_type":"template","content_type":"input_csat",
                "content":"Please rate: https://chat.example/survey/responses/abc","private":false}"#,
        );
        assert_eq!(
            survey.effect(),
            Effect::Notice { message_id: 7, text: "Please rate: https://chat.example/survey/responses/abc".into() }
        );
        let file = parse(
            r#"{"event":"message_created","id":8,"message_type":"outgoing","content":null,
                "sender":{"id":5,"name":"Sam","type":"user","avatar_url":"javascript:alert(1)"},
                "attachments":[{"file_type":"file","data_url":"https://chat.example/rails/invoice.pdf?x=1"},
                               {"file_type":"image","data_url":"javascript:alert(1)"}]}"#,
        );
        let Effect::Reply(r) = file.effect() else { panic!("{:?}", file.effect()) };
        assert_eq!(r.attachments, vec![("invoice.pdf".into(), "https://chat.example/rails/invoice.pdf?x=1".into())]);
        assert_eq!(r.avatar_url, None, "only http(s) avatars");
        assert_eq!(r.text, "");
    }

    #[test]
    fn status_and_typing() {
        let status = |s: &str| {
            parse(&format!(
                r#"{{"event":"conversation_status_changed","changed_attributes":null,"id":311,"inbox_id":7,
                    "status":"{s}","account":{{"id":2}},"contact_inbox":{{"source_id":"aia-s-1","inbox_id":7}}}}"#
            ))
        };
        assert_eq!(status("resolved").effect(), Effect::Status(Owner::Resolved));
        assert_eq!(status("open").effect(), Effect::Status(Owner::Human));
        assert_eq!(status("pending").effect(), Effect::Status(Owner::Bot));
        assert_eq!(status("resolved").address().conversation_id, Some(311));
        assert_eq!(status("resolved").address().source_id.as_deref(), Some("aia-s-1"));
        let typing = |on: &str, private: bool| {
            parse(&format!(
                r#"{{"event":"conversation_typing_{on}","is_private":{private},"user":{{"id":5,"type":"user"}},
                    "conversation":{{"id":311,"inbox_id":7}}}}"#
            ))
        };
        assert_eq!(typing("on", false).effect(), Effect::Typing(true));
        assert_eq!(typing("off", false).effect(), Effect::Typing(false));
        assert_eq!(typing("on", true).effect(), Effect::Ignore("typing a private note"));
        assert_eq!(typing("on", false).address().conversation_id, Some(311));
    }

    /// The contract's §6 `message.created` push form: the same reply, with flat ids.
    #[test]
    fn actioncable_events_read_as_webhooks() {
        let data: serde_json::Value = serde_json::from_str(
            r#"{ "id": 90230, "content": "Hi Dana, I'm Sam…", "account_id": 2, "inbox_id": 7, "conversation_id": 311,
                "message_type": 1, "content_type": "text", "status": "sent", "private": false, "source_id": null,
                "sender_type": "User", "sender_id": 5, "content_attributes": {}, "additional_attributes": {},
                "external_source_ids": {}, "processed_message_content": "Hi Dana, I'm Sam…", "sentiment": {},
                "created_at": 1781690123, "updated_at": "2026-06-17T09:12:03.418Z",
                "conversation": { "assignee_id": 5, "unread_count": 0, "last_activity_at": 1781690123,
                                  "contact_inbox": { "source_id": "asst-session-5f1c" } },
                "sender": { "id": 5, "name": "Sam Agent", "available_name": "Sam", "avatar_url": "",
                            "type": "user", "availability_status": "online", "thumbnail": "" },
                "performer": { "id": 5, "name": "Sam Agent", "type": "user" } }"#,
        )
        .unwrap();
        let hook = Webhook::from_cable("message.created", data).unwrap();
        assert_eq!(hook.event, "message_created");
        let Effect::Reply(r) = hook.effect() else { panic!("a reply: {:?}", hook.effect()) };
        assert_eq!((r.message_id, r.operator_name.as_deref()), (90230, Some("Sam")));
        assert_eq!(
            hook.address(),
            Address {
                account_id: Some(2),
                inbox_id: Some(7),
                conversation_id: Some(311),
                source_id: Some("asst-session-5f1c".into())
            }
        );
        let status = serde_json::json!({ "id": 311, "status": "resolved", "inbox_id": 7, "account_id": 2 });
        let hook = Webhook::from_cable("conversation.status_changed", status).unwrap();
        assert_eq!((hook.effect(), hook.address().conversation_id), (Effect::Status(Owner::Resolved), Some(311)));
    }
}
