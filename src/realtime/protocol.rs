//! The versioned JSON frames of `docs/protocol.md`. Parsing is strict (unknown fields and
//! types are refused with a stable code) and every server frame is built here, so the schema
//! test covers every shape the server can send.

use serde::{Deserialize, Serialize};

use crate::store::{Message, Role};

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
            ErrorCode::Internal => {
                "Something went wrong on our side; the message was not stored, please send it again."
            }
        }
    }
}

/// The page the widget runs on, as `hello` reports it; every field is optional and checked
/// by [`PageInfo::context`].
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
    Hello { v: u32, session: Option<String>, page: Option<PageInfo> },
    Message { id: String, text: String },
    History { before: i64, limit: Option<u32> },
    Ping,
}

const TYPES: &[&str] = &["hello", "message", "history", "ping"];

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

/// A message as sent in frames.
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
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        MessageView {
            seq: m.seq,
            role: m.role,
            text: &m.text,
            ts: rfc3339_ms(m.created_at),
            client_id: m.client_msg_id.as_deref(),
            reply_to: m.reply_to,
            source: m.source.as_deref(),
            entry_id: m.entry_id.as_deref(),
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
}
