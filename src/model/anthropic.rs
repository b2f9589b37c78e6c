//! The Anthropic Messages wire format (`shared/contracts/openai.md` §9): the system text as a
//! top-level field, only `user` and `assistant` turns (tool results go back in a user turn,
//! tool calls as `tool_use` blocks with an object `input`), `max_tokens` always given; and a
//! stream of named events with no `[DONE]`: text deltas forwarded at once, tool input joined
//! per block and parsed only at the end, cumulative output usage, `ping`s and unknown delta
//! types ignored, `error` events reported.

use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{Chat, ChatRequest, Completion, Decoder, FinishReason, Protocol, StreamError, ToolCall, Turn, Usage};
use super::sse::SseEvent;

/// Anthropic requires a reply limit; this one applies when the client sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// The `anthropic-version` header every request carries.
pub const VERSION: &str = "2023-06-01";

/// The Messages API wire format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

impl Protocol for Anthropic {
    fn body(&self, request: &ChatRequest<'_>) -> Value {
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens.map_or(DEFAULT_MAX_TOKENS, |(_, n)| n),
            "system": request.chat.system,
            "messages": messages(request.chat),
            "stream": true,
        });
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
            body["tools"] = tools.into();
            body["tool_choice"] = json!({"type": "auto"});
        }
        body
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::<MessagesDecoder>::default()
    }
}

/// The `messages` array. Turns of the same role in a row become one message (the API wants
/// them alternating) and a conversation never opens with the assistant (the greeting is the
/// widget's, not the model's).
fn messages(chat: &Chat) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for turn in &chat.turns {
        let (role, blocks): (&'static str, Vec<Value>) = match turn {
            Turn::User(text) => ("user", vec![json!({"type": "text", "text": text})]),
            Turn::Assistant { text, calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                blocks.extend(calls.iter().map(|c| {
                    let input = c.arguments.clone().unwrap_or_else(|_| json!({}));
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
                }));
                ("assistant", blocks)
            }
            Turn::ToolResults(results) => (
                "user",
                results
                    .iter()
                    .map(|r| json!({"type": "tool_result", "tool_use_id": r.call_id, "content": r.content}))
                    .collect(),
            ),
        };
        if blocks.is_empty() || (out.is_empty() && role == "assistant") {
            continue;
        }
        match out.last_mut() {
            // Tool results must open the user turn that follows the calls.
            Some((last, earlier)) if *last == role => earlier.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, blocks)| {
            // A single text block is sent as plain text, as the API's own examples do.
            let content = match blocks.as_slice() {
                [only] if only["type"] == "text" => only["text"].clone(),
                _ => Value::Array(blocks),
            };
            json!({"role": role, "content": content})
        })
        .collect()
}

/// One event's data; the `type` field names it (the `event:` line repeats it).
#[derive(Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    content_block: Option<Block>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    usage: Option<EventUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<EventUsage>,
}

#[derive(Deserialize, Default)]
struct EventUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug)]
struct ToolBlock {
    index: usize,
    id: String,
    name: String,
    input: String,
}

/// Follows one Messages stream.
#[derive(Debug, Default)]
pub struct MessagesDecoder {
    text: String,
    tools: Vec<ToolBlock>,
    /// Input tokens, counting those written to and read from the prompt cache.
    prompt: Option<u64>,
    /// Output tokens so far (the events carry running totals).
    completion: Option<u64>,
    stop: Option<FinishReason>,
    done: bool,
}

impl Decoder for MessagesDecoder {
    fn event(&mut self, event: &SseEvent) -> Result<Option<String>, StreamError> {
        let parsed: Event = serde_json::from_str(&event.data).map_err(|e| {
            StreamError::Malformed(format!("{e} in {}", event.data.chars().take(80).collect::<String>()))
        })?;
        match parsed.kind.as_str() {
            "message_start" => {
                if let Some(usage) = parsed.message.and_then(|m| m.usage) {
                    self.usage(&usage);
                }
            }
            "content_block_start" => match parsed.content_block {
                Some(block) if block.kind == "tool_use" => self.tools.push(ToolBlock {
                    index: parsed.index.unwrap_or(usize::MAX),
                    id: block.id.unwrap_or_default(),
                    name: block.name.unwrap_or_default(),
                    input: String::new(),
                }),
                Some(block) => return Ok(self.text(block.text)),
                None => {}
            },
            "content_block_delta" => {
                let Some(delta) = parsed.delta else { return Ok(None) };
                match delta.kind.as_deref() {
                    Some("text_delta") => return Ok(self.text(delta.text)),
                    Some("input_json_delta") => {
                        let index = parsed.index.unwrap_or(usize::MAX);
                        if let Some(tool) = self.tools.iter_mut().rev().find(|t| t.index == index) {
                            tool.input.push_str(delta.partial_json.as_deref().unwrap_or(""));
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta, …
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = parsed.delta.and_then(|d| d.stop_reason) {
                    self.stop = Some(stop_reason(&reason));
                }
                if let Some(usage) = parsed.usage {
                    self.usage(&usage);
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let error = parsed.error.unwrap_or(Value::Null);
                let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
                return Err(StreamError::Upstream {
                    message: text("message").unwrap_or_else(|| "(no message)".into()),
                    kind: text("type"),
                    code: None,
                });
            }
            // ping, content_block_stop and whatever comes next.
            _ => {}
        }
        Ok(None)
    }

    fn finish(self: Box<Self>) -> Result<Completion, StreamError> {
        let this = *self;
        let finish = match (this.stop, this.done) {
            (Some(reason), _) => reason,
            (None, true) if !this.tools.is_empty() => FinishReason::ToolCalls,
            (None, true) => FinishReason::Stop,
            (None, false) => return Err(StreamError::Truncated),
        };
        let usage = (this.prompt.is_some() || this.completion.is_some()).then(|| Usage {
            prompt_tokens: this.prompt.unwrap_or(0),
            completion_tokens: this.completion.unwrap_or(0),
        });
        let tool_calls =
            this.tools.into_iter().enumerate().map(|(i, t)| ToolCall::assembled(i, t.id, t.name, t.input)).collect();
        Ok(Completion { text: this.text, tool_calls, finish, usage })
    }
}

impl MessagesDecoder {
    fn text(&mut self, text: Option<String>) -> Option<String> {
        let text = text.filter(|t| !t.is_empty())?;
        self.text.push_str(&text);
        Some(text)
    }

    fn usage(&mut self, usage: &EventUsage) {
        if let Some(input) = usage.input_tokens {
            let cached = usage.cache_creation_input_tokens.unwrap_or(0) + usage.cache_read_input_tokens.unwrap_or(0);
            self.prompt = Some(input + cached);
        }
        if let Some(output) = usage.output_tokens {
            self.completion = Some(output);
        }
    }
}

/// The contract's mapping of `stop_reason` (§9.2).
fn stop_reason(s: &str) -> FinishReason {
    match s {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::chat::{ToolResult, ToolSpec};

    fn run(transcript: &str) -> (Vec<String>, Result<Completion, StreamError>) {
        crate::model::chat::run_transcript(Anthropic.decoder(), transcript)
    }

    /// The contract's §9.3 transcript, byte for byte.
    const TOOL_TRANSCRIPT: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XyZ\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":402,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me search\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" the catalogue.\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01Abc\",\"name\":\"search_products\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\": \\\"red k\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ettle\\\", \\\"max_price\\\": 40}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":61}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn the_contract_transcript_streams_text_and_assembles_the_tool_call() {
        let (deltas, completion) = run(TOOL_TRANSCRIPT);
        assert_eq!(deltas, ["Let me search", " the catalogue."]);
        let c = completion.unwrap();
        assert_eq!((c.text.as_str(), &c.finish), ("Let me search the catalogue.", &FinishReason::ToolCalls));
        assert_eq!(c.usage, Some(Usage { prompt_tokens: 402, completion_tokens: 61 }), "output is cumulative");
        assert_eq!(c.tool_calls.len(), 1);
        let call = &c.tool_calls[0];
        assert_eq!((call.id.as_str(), call.name.as_str()), ("toolu_01Abc", "search_products"));
        assert_eq!(call.arguments, Ok(json!({"query": "red kettle", "max_price": 40})));
    }

    #[test]
    fn errors_unknown_deltas_and_broken_streams() {
        let overloaded = concat!(
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hal\"}}\n\n",
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        let (deltas, result) = run(overloaded);
        assert_eq!(deltas, ["Hal"]);
        assert_eq!(
            result,
            Err(StreamError::Upstream {
                message: "Overloaded".into(),
                kind: Some("overloaded_error".into()),
                code: None
            })
        );
        // Thinking and citations are not for the visitor; a stream without message_stop
        // is cut; a tool block with no input at all has `{}`.
        let odd = concat!(
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        );
        assert_eq!(run(odd), (vec!["Hi".to_string()], Err(StreamError::Truncated)));
        let bare = concat!(
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"handoff_to_human\",\"input\":{}}}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let c = run(bare).1.unwrap();
        assert_eq!((c.finish, c.tool_calls[0].arguments.clone()), (FinishReason::ToolCalls, Ok(json!({}))));
        assert!(matches!(run("data: <html>\n\n").1, Err(StreamError::Malformed(_))));
    }

    #[test]
    fn requests_follow_the_messages_api() {
        let call = ToolCall::assembled(0, "toolu_01Abc".into(), "search_products".into(), "{\"query\":\"k\"}".into());
        let chat = Chat {
            system: "You are Shopbot.".into(),
            turns: vec![
                Turn::Assistant { text: "Hi! How can I help?".into(), calls: vec![] },
                Turn::User("Kettles?".into()),
                Turn::User("Red ones".into()),
                Turn::Assistant { text: String::new(), calls: vec![call] },
                Turn::ToolResults(vec![ToolResult { call_id: "toolu_01Abc".into(), content: "{\"ok\":false}".into() }]),
            ],
        };
        let tools =
            [ToolSpec { name: "search_products", description: "Search.", parameters: json!({"type": "object"}) }];
        let body =
            Anthropic.body(&ChatRequest { model: "claude-haiku-4-5", chat: &chat, tools: &tools, max_tokens: None });
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS, "always given");
        assert_eq!(body["system"], "You are Shopbot.");
        assert_eq!(
            body["tools"],
            json!([{"name": "search_products", "description": "Search.", "input_schema": {"type": "object"}}])
        );
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Kettles?"}, {"type": "text", "text": "Red ones"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01Abc", "name": "search_products", "input": {"query": "k"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Abc", "content": "{\"ok\":false}"}]},
            ])
        );
        let last =
            Anthropic.body(&ChatRequest { model: "m", chat: &chat, tools: &[], max_tokens: Some(("max_tokens", 300)) });
        assert!(last.get("tools").is_none() && last["max_tokens"] == 300);
    }
}
