//! The versioned JSON frames of `docs/protocol.md`. Parsing is strict (unknown fields and
//! types are refused with a stable code) and every server frame is built here, so the schema
//! test covers every shape the server can send.

use serde::{Deserialize, Serialize};

use crate::store::{Feedback, Message, Role};

/// The protocol version this server speaks.
pub const VERSION: u32 = 1;
/// Text frames above this get `too_large` and are ignored.
pub const MAX_TEXT_FRAME: usize = 16 * 1024;
/// Frames above this close the connection with 1009.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest visitor message, in Unicode scalar values (the widget counts the same way).
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Messages per history page.
pub const HISTORY_PAGE: u32 = 50;
/// Longest visitor name `identify` accepts, in Unicode scalar values.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest email address `identify` accepts (the SMTP path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// Stable error codes (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    InvalidFrame,
    BinaryUnsupported,
    TooLarge,
    HelloRequired,
    AlreadyHello,
    UnsupportedVersion,
    EmptyMessage,
    MessageTooLong,
    ControlCharacters,
    InvalidId,
    RateLimited,
    UnknownMessage,
    NoOperator,
    Internal,
}

impl ErrorCode {
    /// A human-readable explanation shown by clients that don't know the code.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "The frame is not a JSON object.",
            ErrorCode::UnknownType => "Unknown or missing frame type.",
            ErrorCode::InvalidFrame => "A field is missing or has the wrong type.",
            ErrorCode::BinaryUnsupported => "Binary frames are not supported; send JSON text.",
            ErrorCode::TooLarge => "The frame is larger than 16 KiB.",
            ErrorCode::HelloRequired => "Send a hello frame first.",
            ErrorCode::AlreadyHello => "This socket already said hello.",
            ErrorCode::UnsupportedVersion => "Unsupported protocol version; this server speaks version 1.",
            ErrorCode::EmptyMessage => "The message is empty.",
            ErrorCode::MessageTooLong => "The message is longer than 4,000 characters.",
            ErrorCode::ControlCharacters => "The message contains control characters.",
            ErrorCode::InvalidId => "The message id must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'.",
            ErrorCode::RateLimited => "Too many messages; please wait a moment and try again.",
            ErrorCode::UnknownMessage => {
                "There is no assistant or operator message with that seq in this conversation."
            }
            ErrorCode::NoOperator => "This chat has no human operator to hand the conversation to.",
            ErrorCode::Internal => {
                "Something went wrong on our side; the message was not stored, please send it again."
            }
        }
    }
}

/// The page the widget runs on, as `hello` (and `message`: a single-page shop changes pages
/// without reconnecting) reports it; every field is optional and checked by
/// [`PageInfo::context`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PageInfo {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub lang: Option<String>,
}

/// What the assistant may know about the visitor's page: the address without its query or
/// fragment (they may carry personal data), a title of at most 200 characters without control
/// characters, and a language tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageContext {
    pub url: Option<String>,
    pub title: Option<String>,
    pub lang: Option<String>,
}

impl PageInfo {
    /// The checked context; fields that don't pass are dropped, never an error.
    pub fn context(&self) -> PageContext {
        let url = self.url.as_deref().filter(|u| u.len() <= 4096).and_then(|u| url::Url::parse(u).ok()).and_then(|u| {
            matches!(u.scheme(), "http" | "https").then(|| {
                let path: String = u.path().chars().take(500).collect();
                format!("{}{}", u.origin().ascii_serialization(), path)
            })
        });
        let title = self
            .title
            .as_deref()
            .map(|t| t.chars().filter(|c| !c.is_control()).take(200).collect::<String>().trim().to_string())
            .filter(|t| !t.is_empty());
        let lang = self
            .lang
            .as_deref()
            .filter(|l| (1..=35).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map(str::to_string);
        PageContext { url, title, lang }
    }
}

/// A frame from the visitor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    Hello {
        v: u32,
        session: Option<String>,
        page: Option<PageInfo>,
    },
    /// `page`, when given, replaces the page context of `hello` for this and later answers.
    Message {
        id: String,
        text: String,
        page: Option<PageInfo>,
    },
    History {
        before: i64,
        limit: Option<u32>,
    },
    /// Rates the assistant or operator message `seq`; `value` must be present (null clears).
    Feedback {
        seq: i64,
        #[serde(deserialize_with = "Option::deserialize")]
        value: Option<Feedback>,
    },
    /// The visitor is (or stopped) writing; for a human operator, never stored.
    Typing {
        on: bool,
    },
    /// Who the host page says the visitor is; checked by [`identity`], UNVERIFIED.
    Identify {
        name: Option<String>,
        email: Option<String>,
    },
    /// The widget's "talk to a human" action.
    Handoff,
    Ping,
}

const TYPES: &[&str] = &["hello", "message", "history", "feedback", "typing", "identify", "handoff", "ping"];

/// Parses one text frame into a frame or the error code to answer with.
pub fn parse(text: &str) -> Result<ClientFrame, ErrorCode> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| ErrorCode::BadJson)?;
    let Some(kind) = value.as_object().map(|o| o.get("type")) else {
        return Err(ErrorCode::BadJson);
    };
    if !kind.and_then(|t| t.as_str()).is_some_and(|t| TYPES.contains(&t)) {
        return Err(ErrorCode::UnknownType);
    }
    serde_json::from_value(value).map_err(|_| ErrorCode::InvalidFrame)
}

/// Checks a client-generated message id.
pub fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Validates and normalises visitor text (CR LF and lone CR become LF).
pub fn clean_text(text: &str) -> Result<String, ErrorCode> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    if text.trim().is_empty() {
        return Err(ErrorCode::EmptyMessage);
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ErrorCode::MessageTooLong);
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ErrorCode::ControlCharacters);
    }
    Ok(text)
}

/// Who the host page says the visitor is, after [`identity`] checked it. UNVERIFIED: any script
/// on the page can call `window.AIAChat.identify`, so it must be labelled as such wherever it
/// travels (an operator hand-off, a task); the email is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address stays out of any log line that prints the value.
        f.debug_struct("Identity").field("name", &self.name).field("email", &self.email.as_ref().map(|_| "…")).finish()
    }
}

/// Checks an `identify` frame: a name of 1-100 Unicode scalar values without control
/// characters (trimmed), an email of at most 254 characters with one `@` between non-empty
/// parts and no whitespace or control characters, at least one of them; else `invalid_frame`.
pub fn identity(name: Option<&str>, email: Option<&str>) -> Result<Identity, ErrorCode> {
    let name = name
        .map(|n| {
            let n = n.trim();
            let ok = (1..=MAX_NAME_CHARS).contains(&n.chars().count()) && !n.chars().any(char::is_control);
            ok.then(|| n.to_string()).ok_or(ErrorCode::InvalidFrame)
        })
        .transpose()?;
    let email = email
        .map(|e| {
            let ok = e.chars().count() <= MAX_EMAIL_CHARS
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && e.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
            ok.then(|| e.to_string()).ok_or(ErrorCode::InvalidFrame)
        })
        .transpose()?;
    if name.is_none() && email.is_none() {
        return Err(ErrorCode::InvalidFrame);
    }
    Ok(Identity { name, email })
}

/// The human operator who wrote a message, as renderers show them ([operator] fills it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// A product card on an assistant message ([catalog] fills it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub name: String,
    pub url: String,
    /// The amount in `currency`, for display only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// ISO 4217 code, e.g. `EUR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
}

/// The task a system message confirms was created ([tasks] fills it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A file attached to a message (e.g. by an operator).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    pub name: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A message as sent in frames. `operator`, `products`, `task` and `attachments` are part of
/// the documented message object so renderers can be built now; nothing stores them yet, so
/// they are always `None` until [operator], [catalog] and [tasks] fill them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView<'a> {
    seq: i64,
    role: Role,
    text: &'a str,
    ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<Feedback>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<OperatorView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    products: Option<Vec<ProductView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<TaskView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<Vec<AttachmentView>>,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        MessageView {
            seq: m.seq,
            role: m.role,
            text: &m.text,
            ts: rfc3339_ms(m.created_at),
            // Only visitors' own ids: other messages may carry an internal one (`chatwoot#…`).
            client_id: m.client_msg_id.as_deref().filter(|_| m.role == Role::Visitor),
            reply_to: m.reply_to,
            // `source` is about answers; a task confirmation says what it is with `task`.
            source: m.source.as_deref().filter(|_| m.role != Role::System),
            entry_id: m.entry_id.as_deref(),
            feedback: m.feedback,
            operator: m
                .author
                .as_ref()
                .filter(|_| m.role == Role::Operator)
                .map(|a| OperatorView { name: a.name.clone(), avatar_url: a.avatar_url.clone() }),
            products: (!m.products.is_empty()).then(|| {
                m.products
                    .iter()
                    .map(|p| ProductView {
                        name: p.name.clone(),
                        url: p.url.clone(),
                        price: p.price.as_deref().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()),
                        currency: p.currency.clone(),
                        image_url: p.image_url.clone(),
                        in_stock: p.in_stock,
                    })
                    .collect()
            }),
            task: (m.role == Role::System && m.source.as_deref() == Some(crate::tasks::flow::TASK_SOURCE))
                .then(|| TaskView { title: m.text.clone(), url: None }),
            attachments: (!m.attachments.is_empty()).then(|| {
                m.attachments
                    .iter()
                    .map(|a| AttachmentView {
                        name: a.name.clone(),
                        url: a.url.clone(),
                        content_type: None,
                        size: None,
                    })
                    .collect()
            }),
        }
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The bot's public face in `welcome`.
#[derive(Debug, Clone, Serialize)]
pub struct BotView<'a> {
    pub name: &'a str,
    pub greeting: &'a str,
}

/// Who a `typing` frame says is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TypingRole {
    /// An answer task is working on a visitor message.
    Assistant,
    /// Reserved for a human operator ([operator]).
    Operator,
}

/// A frame from the server.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    #[serde(rename_all = "camelCase")]
    Welcome {
        v: u32,
        session: &'a str,
        conversation_id: &'a str,
        resumed: bool,
        bot: BotView<'a>,
        history: Vec<MessageView<'a>>,
        has_more: bool,
    },
    Ack {
        id: &'a str,
        seq: i64,
        duplicate: bool,
    },
    Message {
        message: MessageView<'a>,
    },
    /// A piece of a model answer being written; the stored `message` that follows replaces it.
    #[serde(rename_all = "camelCase")]
    Delta {
        reply_to: i64,
        text: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    History {
        messages: Vec<MessageView<'a>>,
        has_more: bool,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
    /// A rating was stored (`value` null: cleared); sent to every socket of the session so
    /// another tab shows it too.
    Feedback {
        seq: i64,
        value: Option<Feedback>,
    },
    /// Someone is writing a reply; for the assistant, the `delta` or `message` with the same
    /// `replyTo` ends it.
    #[serde(rename_all = "camelCase")]
    Typing {
        role: TypingRole,
        on: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
    },
    /// The `identify` frame was stored; only the socket that sent it gets this.
    Identified,
    Pong,
    #[serde(rename_all = "camelCase")]
    Reconnect {
        reason: &'a str,
        after_ms: u64,
    },
}

impl ServerFrame<'_> {
    /// Serialises the frame once; the text is shared by every socket it goes to.
    pub fn encode(&self) -> std::sync::Arc<str> {
        serde_json::to_string(self).expect("server frames always serialise").into()
    }
}

/// The `reconnect` frame that ends an erased session's sockets (an erasure request or
/// retention deleted it): the widget reconnects at once and, its session being unknown,
/// starts a new conversation and clears the old one from the screen.
pub fn erased_frame() -> std::sync::Arc<str> {
    ERASED_FRAME.clone()
}

/// Whether `frame` is the [`erased_frame`]: the socket closes after sending it. Frames reach
/// sockets as text (from this node's hub or another node's bus), so this is how the socket
/// learns it.
pub fn is_erased_frame(frame: &str) -> bool {
    frame == &**ERASED_FRAME
}

static ERASED_FRAME: std::sync::LazyLock<std::sync::Arc<str>> =
    std::sync::LazyLock::new(|| ServerFrame::Reconnect { reason: "erased", after_ms: 0 }.encode());

/// An `error` frame for `code`.
pub fn error_frame(code: ErrorCode, id: Option<&str>) -> std::sync::Arc<str> {
    ServerFrame::Error { code, message: code.describe(), id }.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_codes() {
        assert_eq!(parse("nope"), Err(ErrorCode::BadJson));
        assert_eq!(parse("[1]"), Err(ErrorCode::BadJson));
        assert_eq!(parse(r#"{"type":"dance"}"#), Err(ErrorCode::UnknownType));
        assert_eq!(parse(r#"{"x":1}"#), Err(ErrorCode::UnknownType));
        assert_eq!(parse(r#"{"type":"message","id":3}"#), Err(ErrorCode::InvalidFrame));
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(clean_text(" \n "), Err(ErrorCode::EmptyMessage));
        assert_eq!(clean_text("a\u{7}b"), Err(ErrorCode::ControlCharacters));
        assert_eq!(clean_text(&"é".repeat(4000)).unwrap().chars().count(), 4000);
        assert_eq!(clean_text(&"é".repeat(4001)), Err(ErrorCode::MessageTooLong));
        assert_eq!(clean_text("a\r\nb").unwrap(), "a\nb");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn the_erased_frame_is_recognised_and_nothing_else() {
        assert!(is_erased_frame(&erased_frame()));
        assert_eq!(&*erased_frame(), r#"{"type":"reconnect","reason":"erased","afterMs":0}"#);
        let shutdown = ServerFrame::Reconnect { reason: "shutdown", after_ms: 1000 }.encode();
        assert!(!is_erased_frame(&shutdown));
        let quoted = ServerFrame::Error { code: ErrorCode::Internal, message: r#""reason":"erased""#, id: None };
        assert!(!is_erased_frame(&quoted.encode()), "a message quoting it is not it");
    }

    #[test]
    fn parse_widget_frames() {
        let page = PageInfo { url: Some("https://shop.example/a?x=1".into()), title: Some("A".into()), lang: None };
        assert_eq!(
            parse(
                r#"{"type":"message","id":"m1","text":"hi","page":{"url":"https://shop.example/a?x=1","title":"A"}}"#
            ),
            Ok(ClientFrame::Message { id: "m1".into(), text: "hi".into(), page: Some(page.clone()) })
        );
        assert_eq!(page.context().url.as_deref(), Some("https://shop.example/a"), "checked like hello.page");
        assert_eq!(
            parse(r#"{"type":"message","id":"m1","text":"hi"}"#),
            Ok(ClientFrame::Message { id: "m1".into(), text: "hi".into(), page: None })
        );
        assert_eq!(parse(r#"{"type":"message","id":"m1","text":"hi","page":"x"}"#), Err(ErrorCode::InvalidFrame));

        assert_eq!(
            parse(r#"{"type":"feedback","seq":7,"value":"up"}"#),
            Ok(ClientFrame::Feedback { seq: 7, value: Some(Feedback::Up) })
        );
        assert_eq!(
            parse(r#"{"type":"feedback","seq":7,"value":"down"}"#),
            Ok(ClientFrame::Feedback { seq: 7, value: Some(Feedback::Down) })
        );
        assert_eq!(
            parse(r#"{"type":"feedback","seq":7,"value":null}"#),
            Ok(ClientFrame::Feedback { seq: 7, value: None })
        );
        for bad in [
            r#"{"type":"feedback","seq":7}"#,
            r#"{"type":"feedback","seq":7,"value":"meh"}"#,
            r#"{"type":"feedback","seq":"7","value":"up"}"#,
            r#"{"type":"feedback","value":"up"}"#,
            r#"{"type":"feedback","seq":7,"value":"up","extra":1}"#,
        ] {
            assert_eq!(parse(bad), Err(ErrorCode::InvalidFrame), "{bad}");
        }

        assert_eq!(parse(r#"{"type":"typing","on":true}"#), Ok(ClientFrame::Typing { on: true }));
        assert_eq!(parse(r#"{"type":"typing","on":false}"#), Ok(ClientFrame::Typing { on: false }));
        assert_eq!(parse(r#"{"type":"typing"}"#), Err(ErrorCode::InvalidFrame));
        assert_eq!(parse(r#"{"type":"typing","on":1}"#), Err(ErrorCode::InvalidFrame));

        assert_eq!(
            parse(r#"{"type":"identify","name":"Ann","email":"ann@example.com"}"#),
            Ok(ClientFrame::Identify { name: Some("Ann".into()), email: Some("ann@example.com".into()) })
        );
        assert_eq!(parse(r#"{"type":"identify"}"#), Ok(ClientFrame::Identify { name: None, email: None }));
        assert_eq!(parse(r#"{"type":"identify","phone":"1"}"#), Err(ErrorCode::InvalidFrame));
        assert_eq!(parse(r#"{"type":"identify","name":5}"#), Err(ErrorCode::InvalidFrame));
    }

    #[test]
    fn identity_checks() {
        let ok = |n: Option<&str>, e: Option<&str>| identity(n, e).unwrap();
        assert_eq!(ok(Some("  Ann Lee "), None), Identity { name: Some("Ann Lee".into()), email: None });
        assert_eq!(ok(None, Some("a@b")).email.as_deref(), Some("a@b"));
        assert_eq!(ok(Some(&"é".repeat(100)), None).name.unwrap().chars().count(), 100);
        assert_eq!(ok(None, Some(&format!("{}@example.com", "a".repeat(242)))).email.unwrap().len(), 254);
        let too_long_name = "é".repeat(101);
        let too_long_email = format!("{}@example.com", "a".repeat(243));
        for (name, email) in [
            (None, None),
            (Some(""), None),
            (Some("   "), None),
            (Some(too_long_name.as_str()), None),
            (Some("Ann\u{7}"), None),
            (Some("Ann\nLee"), None),
            (Some("Ann"), Some("")),
            (None, Some("ann")),
            (None, Some("ann@@example.com")),
            (None, Some("ann@b@example.com")),
            (None, Some("@example.com")),
            (None, Some("ann@")),
            (None, Some("ann lee@example.com")),
            (None, Some(" ann@example.com")),
            (None, Some("ann@example.com\u{0}")),
            (None, Some(too_long_email.as_str())),
        ] {
            assert_eq!(identity(name, email), Err(ErrorCode::InvalidFrame), "{name:?} {email:?}");
        }
        let debug = format!("{:?}", ok(Some("Ann"), Some("secret@example.com")));
        assert!(!debug.contains("secret"), "the email stays out of logs: {debug}");
    }

    /// Every shape the server can send (including the message fields nothing fills yet)
    /// against `docs/protocol.schema.json`; the integration tests check the frames they see.
    #[test]
    fn server_frames_match_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../docs/protocol.schema.json")).unwrap();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.add_resource("protocol.schema.json", schema).unwrap();
        let index = compiler.compile("protocol.schema.json", &mut schemas).unwrap();
        let valid = |frame: &str| {
            let value: serde_json::Value = serde_json::from_str(frame).unwrap();
            if let Err(e) = schemas.validate(&value, index) {
                panic!("{frame} violates the schema: {e:#}");
            }
        };

        let stored = Message {
            seq: 42,
            session_id: 1,
            role: Role::Assistant,
            text: "Orders ship in 1-2 days.".into(),
            client_msg_id: None,
            reply_to: Some(41),
            source: Some("knowledge".into()),
            entry_id: Some("shipping".into()),
            created_at: 1_700_000_000_123,
            feedback: Some(Feedback::Down),
            author: None,
            attachments: Vec::new(),
            products: Vec::new(),
        };
        let plain = MessageView::from(&stored);
        let mut full = plain.clone();
        full.operator = Some(OperatorView { name: "Ann".into(), avatar_url: Some("https://x.example/a.png".into()) });
        full.products = Some(vec![
            ProductView {
                name: "Arc lamp".into(),
                url: "https://shop.example/arc".into(),
                price: Some(129.9),
                currency: Some("EUR".into()),
                image_url: Some("https://shop.example/arc.jpg".into()),
                in_stock: Some(true),
            },
            ProductView {
                name: "Bulb".into(),
                url: "https://shop.example/bulb".into(),
                price: None,
                currency: None,
                image_url: None,
                in_stock: None,
            },
        ]);
        full.task = Some(TaskView { title: "Call back".into(), url: None });
        full.attachments = Some(vec![AttachmentView {
            name: "invoice.pdf".into(),
            url: "https://x.example/i.pdf".into(),
            content_type: Some("application/pdf".into()),
            size: Some(1234),
        }]);
        let encoded = ServerFrame::Message { message: full.clone() }.encode();
        for field in ["\"feedback\"", "\"operator\"", "\"products\"", "\"task\"", "\"attachments\"", "\"inStock\""] {
            assert!(encoded.contains(field), "{field} in {encoded}");
        }
        let unrated = Message { feedback: None, ..stored.clone() };
        let unrated = ServerFrame::Message { message: (&unrated).into() }.encode();
        assert!(!unrated.contains("feedback") && !unrated.contains("products"), "omitted when unset: {unrated}");

        let session = "s".repeat(43);
        let frames = [
            ServerFrame::Welcome {
                v: VERSION,
                session: &session,
                conversation_id: "c_0123456789",
                resumed: true,
                bot: BotView { name: "Bot", greeting: "Hi" },
                history: vec![plain.clone(), full.clone()],
                has_more: false,
            },
            ServerFrame::Ack { id: "m1", seq: 41, duplicate: false },
            ServerFrame::Message { message: plain.clone() },
            ServerFrame::Message { message: full.clone() },
            ServerFrame::Delta { reply_to: 41, text: "Orders" },
            ServerFrame::History { messages: vec![full], has_more: true },
            ServerFrame::Feedback { seq: 42, value: Some(Feedback::Up) },
            ServerFrame::Feedback { seq: 42, value: None },
            ServerFrame::Typing { role: TypingRole::Assistant, on: true, reply_to: Some(41) },
            ServerFrame::Typing { role: TypingRole::Operator, on: false, reply_to: None },
            ServerFrame::Identified,
            ServerFrame::Pong,
            ServerFrame::Reconnect { reason: "shutdown", after_ms: 1000 },
        ];
        for frame in &frames {
            valid(&frame.encode());
        }
        assert_eq!(
            &*ServerFrame::Feedback { seq: 42, value: None }.encode(),
            r#"{"type":"feedback","seq":42,"value":null}"#
        );
        assert_eq!(
            &*ServerFrame::Typing { role: TypingRole::Assistant, on: true, reply_to: Some(41) }.encode(),
            r#"{"type":"typing","role":"assistant","on":true,"replyTo":41}"#
        );
        for code in [ErrorCode::UnknownMessage, ErrorCode::InvalidFrame, ErrorCode::RateLimited, ErrorCode::Internal] {
            valid(&error_frame(code, Some("m1")));
        }

        // The client frames the widget sends parse and match the schema alike.
        for frame in [
            r#"{"type":"message","id":"m1","text":"hi","page":{"url":"https://shop.example/","title":"Shop","lang":"en"}}"#,
            r#"{"type":"feedback","seq":42,"value":"up"}"#,
            r#"{"type":"feedback","seq":42,"value":null}"#,
            r#"{"type":"typing","on":true}"#,
            r#"{"type":"identify","name":"Ann","email":"ann@example.com"}"#,
            r#"{"type":"identify","email":"ann@example.com"}"#,
        ] {
            valid(frame);
            assert!(parse(frame).is_ok(), "{frame}");
        }
    }
}
