//! A conversation with a language model in the product's own terms, whatever the provider:
//! the request (system text, turns, tools on offer, reply limit), the completion that comes
//! back (text, tool calls, finish reason, usage) and the [`Protocol`] trait each provider's
//! wire format implements. The assistant speaks only these types; `openai` and `anthropic`
//! translate them to and from the wire.

use serde_json::Value;

use super::sse::SseEvent;

/// Why a completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    /// Cut at the token limit: the text is usable, flagged as truncated.
    Length,
    ToolCalls,
    ContentFilter,
    /// Anything a non-standard server sends (`abort`, `eos`, `pause_turn`, …).
    Other(String),
}

/// Token counts of one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// A tool call the model made, complete.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments exactly as streamed (sent back verbatim in the follow-up request).
    pub raw_arguments: String,
    /// The arguments parsed, or why they could not be (told to the model, never a crash).
    pub arguments: Result<Value, String>,
}

impl ToolCall {
    /// A call assembled from streamed pieces: an id is made up when the server sent none (so
    /// the follow-up request stays well-formed), no arguments mean `{}`, and arguments that
    /// are not a JSON object are kept with the reason.
    pub fn assembled(position: usize, id: String, name: String, raw: String) -> ToolCall {
        let id = if id.is_empty() { format!("call_{position}") } else { id };
        let raw = if raw.trim().is_empty() { "{}".to_string() } else { raw };
        let arguments = serde_json::from_str::<Value>(&raw)
            .map_err(|e| format!("arguments were not valid JSON ({e})"))
            .and_then(|v| if v.is_object() { Ok(v) } else { Err("arguments were not a JSON object".into()) });
        ToolCall { id, name, raw_arguments: raw, arguments }
    }
}

/// The whole completion, once the stream has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
    pub usage: Option<Usage>,
}

impl Completion {
    /// Whether the model wants tools run: decided by the calls themselves, since some
    /// servers finish a tool turn with `stop`.
    pub fn wants_tools(&self) -> bool {
        !self.tool_calls.is_empty()
    }
}

/// What went wrong with a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The server reported an error inside the stream.
    #[error("the model server reported an error: {message}")]
    Upstream { message: String, kind: Option<String>, code: Option<String> },
    /// The stream ended before the completion did (retryable if nothing was forwarded).
    #[error("the model stream ended before the answer was complete")]
    Truncated,
    /// A data event that is not a chunk.
    #[error("the model sent an event that is not a chunk: {0}")]
    Malformed(String),
}

/// One turn of the conversation after the system text.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    User(String),
    /// What the model said, with the tools it called.
    Assistant {
        text: String,
        calls: Vec<ToolCall>,
    },
    /// The answers to the calls of the turn before, in order.
    ToolResults(Vec<ToolResult>),
}

/// The answer to one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    pub call_id: String,
    /// JSON text the model reads.
    pub content: String,
}

/// The system text and the turns, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chat {
    pub system: String,
    pub turns: Vec<Turn>,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// One streamed request.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    /// The provider's model id.
    pub model: &'a str,
    pub chat: &'a Chat,
    /// Offered tools; none means the model has to answer in words.
    pub tools: &'a [ToolSpec],
    /// The reply limit: the request field and the number (none: the provider's own).
    pub max_tokens: Option<(&'static str, u32)>,
}

/// Follows one response stream, event by event.
pub trait Decoder: Send {
    /// Interprets one event; returns the text to show the visitor now, if any.
    fn event(&mut self, event: &SseEvent) -> Result<Option<String>, StreamError>;
    /// The completion, once the stream has ended; `Truncated` when it broke mid-answer.
    fn finish(self: Box<Self>) -> Result<Completion, StreamError>;
}

/// A provider's wire format: how a request is written and a response stream read.
pub trait Protocol: Sync {
    /// The JSON body of a streamed request.
    fn body(&self, request: &ChatRequest<'_>) -> Value;
    /// A fresh decoder for one response stream.
    fn decoder(&self) -> Box<dyn Decoder>;
}

/// Runs a whole transcript through the SSE parser and `decoder`: the forwarded deltas and
/// the outcome, for the providers' tests.
#[cfg(test)]
pub(crate) fn run_transcript(
    mut decoder: Box<dyn Decoder>,
    transcript: &str,
) -> (Vec<String>, Result<Completion, StreamError>) {
    let mut parser = super::sse::SseParser::new(1 << 20);
    let mut deltas = Vec::new();
    let mut events = parser.push(transcript.as_bytes()).unwrap();
    events.extend(parser.finish());
    for event in events {
        match decoder.event(&event) {
            Ok(Some(d)) => deltas.push(d),
            Ok(None) => {}
            Err(e) => return (deltas, Err(e)),
        }
    }
    (deltas, decoder.finish())
}
