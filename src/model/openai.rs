//! The OpenAI chat-completions wire format, which compatible servers share: the request
//! (`shared/contracts/openai.md` §2) and what its stream means, event by event (§4): text deltas to forward at once, tool calls assembled from
//! fragments keyed by index and parsed only at the end, the finish reason wherever a server
//! puts it, the usage chunk with empty `choices`, `[DONE]`, and errors that arrive inside a
//! 200 stream in any of their shapes. Every field is optional and unknown ones are ignored,
//! because compatible servers differ.

use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{Chat, ChatRequest, Completion, Decoder, FinishReason, Protocol, StreamError, ToolCall, Turn, Usage};
use super::sse::SseEvent;

/// The OpenAI chat-completions wire format (and every compatible server's).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAi;

impl Protocol for OpenAi {
    fn body(&self, request: &ChatRequest<'_>) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": messages(request.chat),
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some((field, n)) = request.max_tokens {
            body[field] = n.into();
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {"name": t.name, "description": t.description,
                        "parameters": t.parameters}})
                })
                .collect();
            body["tools"] = tools.into();
            body["tool_choice"] = "auto".into();
        }
        body
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::<StreamDecoder>::default()
    }
}

/// The `messages` array: the system text first, tool calls on assistant messages (content
/// null when the model said nothing) and one `tool` message per result.
fn messages(chat: &Chat) -> Vec<Value> {
    let mut out = vec![json!({"role": "system", "content": chat.system})];
    for turn in &chat.turns {
        match turn {
            Turn::User(text) => out.push(json!({"role": "user", "content": text})),
            Turn::Assistant { text, calls } if calls.is_empty() => {
                out.push(json!({"role": "assistant", "content": text}))
            }
            Turn::Assistant { text, calls } => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.raw_arguments}})
                    })
                    .collect();
                let content = if text.is_empty() { Value::Null } else { text.as_str().into() };
                out.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
            }
            Turn::ToolResults(results) => out.extend(
                results.iter().map(|r| json!({"role": "tool", "tool_call_id": r.call_id, "content": r.content})),
            ),
        }
    }
    out
}

fn finish_reason(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        // The legacy functions API is treated like tools.
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// A data event: a chunk, or one of the error shapes (parsed in one pass).
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CallFragment>,
}

#[derive(Deserialize)]
struct CallFragment {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Default)]
struct PartialCall {
    index: Option<usize>,
    id: String,
    name: String,
    arguments: String,
}

/// Follows one stream. Feed it every SSE event, forward what it returns, then call
/// [`StreamDecoder::finish`].
#[derive(Debug, Default)]
pub struct StreamDecoder {
    text: String,
    calls: Vec<PartialCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl StreamDecoder {
    /// Interprets one event; returns the text to show the visitor now, if any.
    pub fn event(&mut self, event: &SseEvent) -> Result<Option<String>, StreamError> {
        if event.data.trim() == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let chunk: Chunk = serde_json::from_str(&event.data)
            .map_err(|e| StreamError::Malformed(format!("{e} in {}", snippet(&event.data))))?;
        if let Some(error) = stream_error(&chunk) {
            return Err(error);
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut forwarded = String::new();
        // One choice is asked for; `choices` is empty in the usage chunk.
        if let Some(choice) = chunk.choices.into_iter().next() {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text.push_str(&text);
                forwarded = text;
            }
            for fragment in delta.tool_calls {
                self.fragment(fragment);
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
                if reason == "error" {
                    return Err(StreamError::Upstream {
                        message: "the provider failed mid-answer".into(),
                        kind: None,
                        code: None,
                    });
                }
                self.finish = Some(finish_reason(&reason));
            }
        }
        Ok((!forwarded.is_empty()).then_some(forwarded))
    }

    /// The slot a fragment belongs to: its index, except that a new id on an index whose
    /// call already has another id starts a new call, and a fragment without an index
    /// continues the last call unless it brings an id.
    fn fragment(&mut self, f: CallFragment) {
        let id = f.id.filter(|id| !id.is_empty());
        let slot = match f.index {
            Some(index) => {
                let last = self.calls.iter().rposition(|c| c.index == Some(index));
                match (last, &id) {
                    (Some(i), Some(id)) if !self.calls[i].id.is_empty() && self.calls[i].id != *id => None,
                    (found, _) => found,
                }
            }
            None if id.is_none() && !self.calls.is_empty() => Some(self.calls.len() - 1),
            None => None,
        };
        let slot = slot.unwrap_or_else(|| {
            self.calls.push(PartialCall { index: f.index, ..Default::default() });
            self.calls.len() - 1
        });
        let call = &mut self.calls[slot];
        if let Some(id) = id
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(function) = f.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(piece) = function.arguments {
                call.arguments.push_str(&piece);
            }
        }
    }

    /// The completion, once the stream has ended. Without `[DONE]` it still counts if a
    /// finish reason came; otherwise the stream broke mid-answer.
    pub fn finish(self) -> Result<Completion, StreamError> {
        let finish = match (self.finish, self.done) {
            (Some(f), _) => f,
            (None, true) if !self.calls.is_empty() => FinishReason::ToolCalls,
            (None, true) => FinishReason::Stop,
            (None, false) => return Err(StreamError::Truncated),
        };
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| ToolCall::assembled(i, c.id, c.name, c.arguments))
            .collect();
        Ok(Completion { text: self.text, tool_calls, finish, usage: self.usage })
    }
}

impl Decoder for StreamDecoder {
    fn event(&mut self, event: &SseEvent) -> Result<Option<String>, StreamError> {
        StreamDecoder::event(self, event)
    }

    fn finish(self: Box<Self>) -> Result<Completion, StreamError> {
        StreamDecoder::finish(*self)
    }
}

/// An error inside a 200 stream: `{"error": {...}}` (OpenAI, vLLM, OpenRouter),
/// `{"error": "text"}`, or old vLLM's `{"object": "error", "message": ...}`.
fn stream_error(chunk: &Chunk) -> Option<StreamError> {
    let (message, kind, code) = error_fields(
        chunk.error.as_ref(),
        chunk.object.as_deref(),
        chunk.message.as_ref(),
        chunk.kind.as_ref(),
        chunk.code.as_ref(),
    )?;
    let message = message.filter(|m| !m.is_empty()).unwrap_or_else(|| "(no message)".to_string());
    Some(StreamError::Upstream { message, kind, code })
}

/// (message, type, code) of an error in any shape model servers use, from a JSON object's
/// `error`, `object` and top-level `message`, `type`, `code` fields: `{"error": {...}}`,
/// `{"error": "text"}`, or old vLLM's `{"object": "error", "message": ...}`; `None` when the
/// object is no error. Codes may be strings or numbers. Shared by stream events and error
/// bodies.
pub(crate) fn error_fields(
    error: Option<&Value>,
    object: Option<&str>,
    message: Option<&Value>,
    kind: Option<&Value>,
    code: Option<&Value>,
) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    match (error, object) {
        (Some(Value::String(message)), _) => Some((Some(message.clone()), None, None)),
        (Some(e @ Value::Object(_)), _) => Some((text(e.get("message")), text(e.get("type")), text(e.get("code")))),
        (_, Some("error")) => Some((text(message), text(kind), text(code))),
        _ => None,
    }
}

fn snippet(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a transcript through the parser and decoder; returns the forwarded deltas.
    fn run(transcript: &str) -> (Vec<String>, Result<Completion, StreamError>) {
        crate::model::chat::run_transcript(Box::<StreamDecoder>::default(), transcript)
    }

    /// The contract's §4.3 transcript, byte for byte.
    const TEXT: &str = concat!(
        "data: {\"id\":\"chatcmpl-A1\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0a1b2c3d4e\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-A1\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0a1b2c3d4e\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Yes, we\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-A1\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0a1b2c3d4e\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" do.\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-A1\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0a1b2c3d4e\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-A1\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0a1b2c3d4e\",\"choices\":[],\"usage\":{\"prompt_tokens\":25,\"completion_tokens\":4,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    /// The contract's §4.4 transcript (two parallel calls), byte for byte.
    const TOOLS: &str = concat!(
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_k3t7Qm2\",\"type\":\"function\",\"function\":{\"name\":\"search_products\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"que\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ry\\\": \\\"red ket\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"tle\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_P0v9sLe\",\"type\":\"function\",\"function\":{\"name\":\"get_faq\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"topic\\\": \\\"shipping\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-B2\",\"object\":\"chat.completion.chunk\",\"created\":1767225700,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn a_text_stream_forwards_its_deltas_and_keeps_the_usage() {
        let (deltas, completion) = run(TEXT);
        assert_eq!(deltas, ["Yes, we", " do."]);
        let c = completion.unwrap();
        assert_eq!((c.text.as_str(), &c.finish), ("Yes, we do.", &FinishReason::Stop));
        assert_eq!(c.usage, Some(Usage { prompt_tokens: 25, completion_tokens: 4 }));
        assert!(!c.wants_tools());
        // The same with CRLF, comments and the finish reason on the last content chunk.
        let variant = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n: keep-alive\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"!\"},\"finish_reason\":\"length\"}]}\r\n\r\n";
        let (deltas, completion) = run(variant);
        assert_eq!(deltas, ["Hi", "!"]);
        assert_eq!(completion.unwrap().finish, FinishReason::Length, "no [DONE], but finished");
    }

    #[test]
    fn tool_calls_are_assembled_from_fragments() {
        let (deltas, completion) = run(TOOLS);
        assert!(deltas.is_empty());
        let c = completion.unwrap();
        assert_eq!(c.finish, FinishReason::ToolCalls);
        let calls: Vec<(&str, &str, &str)> =
            c.tool_calls.iter().map(|t| (t.id.as_str(), t.name.as_str(), t.raw_arguments.as_str())).collect();
        assert_eq!(
            calls,
            [
                ("call_k3t7Qm2", "search_products", "{\"query\": \"red kettle\"}"),
                ("call_P0v9sLe", "get_faq", "{\"topic\": \"shipping\"}")
            ]
        );
        assert_eq!(c.tool_calls[0].arguments, Ok(serde_json::json!({"query": "red kettle"})));
    }

    #[test]
    fn tool_call_variants_seen_in_the_wild() {
        // Ollama: the whole call in one fragment, finishing with `stop` (variants 2 and 7).
        let ollama = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_x\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let c = run(ollama).1.unwrap();
        assert!(c.wants_tools(), "decided by the calls, not the finish reason");
        assert_eq!(c.tool_calls[0].arguments, Ok(serde_json::json!({"a": 1})));
        // Text before the call, no index at all (5), a second call reusing index 0 with a
        // new id (6), empty and broken arguments.
        let odd = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Let me check.\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"one\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"x\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"b\",\"function\":{\"name\":\"two\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"three\",\"arguments\":\"[1]\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        );
        let (deltas, c) = run(odd);
        let c = c.unwrap();
        assert_eq!(deltas, ["Let me check."]);
        let names: Vec<&str> = c.tool_calls.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["one", "two", "three"]);
        let no_id = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n";
        assert_eq!(run(no_id).1.unwrap().tool_calls[0].id, "call_0", "an id is made up when none came");
        assert!(c.tool_calls[0].arguments.as_ref().unwrap_err().starts_with("arguments were not valid JSON"));
        assert_eq!(c.tool_calls[1].arguments, Ok(serde_json::json!({})), "no arguments means {{}}");
        assert_eq!(c.tool_calls[2].arguments, Err("arguments were not a JSON object".into()));
    }

    #[test]
    fn errors_inside_a_200_stream_and_broken_streams() {
        let openai = "data: {\"choices\":[{\"delta\":{\"content\":\"Hal\"}}]}\n\ndata: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
        let (deltas, result) = run(openai);
        assert_eq!(deltas, ["Hal"]);
        assert_eq!(
            result,
            Err(StreamError::Upstream {
                message: "The server had an error while processing your request.".into(),
                kind: Some("server_error".into()),
                code: None
            })
        );
        let vllm = "data: {\"object\":\"error\",\"message\":\"bad\",\"type\":\"BadRequestError\",\"code\":400}\n\n";
        assert!(matches!(run(vllm).1, Err(StreamError::Upstream { code: Some(c), .. }) if c == "400"));
        let plain = "data: {\"error\":\"Unauthorized\"}\n\n";
        assert!(matches!(run(plain).1, Err(StreamError::Upstream { message, .. }) if message == "Unauthorized"));
        let openrouter = "data: {\"error\":{\"code\":502,\"message\":\"Provider disconnected\"},\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n";
        assert!(
            matches!(run(openrouter).1, Err(StreamError::Upstream { message, .. }) if message == "Provider disconnected")
        );
        let cut = "data: {\"choices\":[{\"delta\":{\"content\":\"Half an ans\"}}]}\n\n";
        assert_eq!(run(cut), (vec!["Half an ans".to_string()], Err(StreamError::Truncated)));
        assert!(matches!(run("data: not json\n\n").1, Err(StreamError::Malformed(_))));
        // Azure's first chunk: empty object name and choices (prompt filter results).
        let azure = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(run(azure).1.unwrap().text, "ok");
    }
}
