//! A fake model server on loopback that follows `shared/contracts/openai.md`: OpenAI-compatible
//! chat completions (also under Azure's deployment path) and Anthropic Messages. It plays
//! scripted answers (SSE transcripts written piece by piece with a flush and a pause, error
//! statuses with the contract's bodies and headers, a stream that stalls) and records what it
//! was sent, and where.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

/// One scripted answer.
#[derive(Clone)]
pub enum Script {
    /// A 200 SSE stream: each piece is written after its pause.
    Stream(Vec<(Duration, Vec<u8>)>),
    /// A plain answer with a status, headers and body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// The 200 headers, then nothing, ever.
    Stall,
    /// A hostile model's worst case: streams back, as its answer, every message it was sent
    /// (`system`, history, the visitor's), JSON-encoded, in the §4.3 chunk shape.
    Echo,
    /// Picks the script from the request's `messages`, for a load of mixed questions (a
    /// routed script's choice is played as it is).
    Route(fn(&Value) -> Script),
}

/// The §4.3 chunks of an answer whose whole text is `content`.
fn answer_pieces(content: &str) -> Vec<(Duration, Vec<u8>)> {
    let chunk = |delta: Value, finish: Value| {
        serde_json::json!({"id": "chatcmpl-E1", "object": "chat.completion.chunk", "created": 1767225600,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0a1b2c3d4e",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}], "usage": null})
        .to_string()
    };
    let usage = serde_json::json!({"id": "chatcmpl-E1", "object": "chat.completion.chunk", "created": 1767225600,
        "model": "gpt-4o-mini-2024-07-18", "choices": [],
        "usage": {"prompt_tokens": 100, "completion_tokens": 100, "total_tokens": 200}})
    .to_string();
    [
        chunk(serde_json::json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(serde_json::json!({"content": content}), Value::Null),
        chunk(serde_json::json!({}), Value::from("stop")),
        usage,
        "[DONE]".to_string(),
    ]
    .iter()
    .map(|e| (Duration::ZERO, format!("data: {e}\n\n").into_bytes()))
    .collect()
}

/// The contract's §4.3 text stream ("Yes, we do."), each event a piece.
pub fn text_stream(pause: Duration) -> Script {
    Script::Stream(text_pieces(pause))
}

/// The pieces of [`text_stream`], for variants (cut short, stalling).
pub fn text_pieces(pause: Duration) -> Vec<(Duration, Vec<u8>)> {
    let events = [
        r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0a1b2c3d4e","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0a1b2c3d4e","choices":[{"index":0,"delta":{"content":"Yes, we"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0a1b2c3d4e","choices":[{"index":0,"delta":{"content":" do."},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0a1b2c3d4e","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0a1b2c3d4e","choices":[],"usage":{"prompt_tokens":25,"completion_tokens":4,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        "[DONE]",
    ];
    events.iter().map(|e| (pause, format!("data: {e}\n\n").into_bytes())).collect()
}

/// A tool-call stream in the contract's §4.4 shape: one `search_products` call whose
/// arguments arrive in three fragments.
pub fn tool_stream() -> Script {
    let head = r#"{"id":"chatcmpl-B2","object":"chat.completion.chunk","created":1767225700,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":"#;
    let events = [
        r#"{"role":"assistant","content":null,"refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"tool_calls":[{"index":0,"id":"call_k3t7Qm2","type":"function","function":{"name":"search_products","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"que"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"ry\": \"red ket"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"tle\"}"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{},"logprobs":null,"finish_reason":"tool_calls"}]}"#,
    ];
    let mut pieces: Vec<(Duration, Vec<u8>)> =
        events.iter().map(|e| (Duration::ZERO, format!("data: {head}{e}\n\n").into_bytes())).collect();
    pieces.push((Duration::ZERO, b"data: [DONE]\n\n".to_vec()));
    Script::Stream(pieces)
}

/// The model's `create_task` call: [`tool_stream`]'s shape with a call-back request as the
/// arguments.
pub fn create_task_stream() -> Script {
    let Script::Stream(pieces) = tool_stream() else { unreachable!("tool_stream is a stream") };
    let rewrite = |bytes: Vec<u8>| {
        String::from_utf8(bytes).unwrap().replace("search_products", "create_task").replace(
            r#"{\"que"#,
            r#"{\"title\": \"Callback: broken kettle\", \"description\": \"The kettle arrived broken; call back.\", \"category\": \"callback\", \"contact\": \"+49 171 2345678\", \"que"#,
        )
    };
    Script::Stream(pieces.into_iter().map(|(pause, bytes)| (pause, rewrite(bytes).into_bytes())).collect())
}

/// Azure's §8.4 stream: the prompt-filter chunk with empty metadata first, then text with
/// content-filter results on the choices.
pub fn azure_stream() -> Script {
    let events = [
        r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}"#,
        r#"{"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":1767225600,"id":"chatcmpl-Az1","model":"gpt-4o-mini-2024-07-18","object":"chat.completion.chunk","system_fingerprint":"fp_az"}"#,
        r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Yes, we do."},"finish_reason":null,"index":0}],"created":1767225600,"id":"chatcmpl-Az1","model":"gpt-4o-mini-2024-07-18","object":"chat.completion.chunk","system_fingerprint":"fp_az"}"#,
        r#"{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0}],"created":1767225600,"id":"chatcmpl-Az1","model":"gpt-4o-mini-2024-07-18","object":"chat.completion.chunk","system_fingerprint":"fp_az","usage":{"completion_tokens":4,"prompt_tokens":25,"total_tokens":29}}"#,
        "[DONE]",
    ];
    Script::Stream(events.iter().map(|e| (Duration::ZERO, format!("data: {e}\n\n").into_bytes())).collect())
}

/// Anthropic's §9.3 events for a text answer ("Yes, we do."), each event a piece.
pub fn anthropic_text(pause: Duration) -> Script {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01Txt","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type":"ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Yes, we"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" do."}}"#,
        ),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    anthropic_events(&events, pause)
}

/// The contract's §9.3 tool-use transcript, byte for byte: text, then a `search_products`
/// call whose input arrives in pieces.
pub fn anthropic_tool() -> Script {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01XyZ","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":402,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type":"ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me search"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the catalogue."}}"#,
        ),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01Abc","name":"search_products","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"query\": \"red k"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ettle\", \"max_price\": 40}"}}"#,
        ),
        ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":61}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    anthropic_events(&events, Duration::ZERO)
}

/// A mid-stream `overloaded_error` after some text (§9.3).
pub fn anthropic_overloaded() -> Script {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01Err","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Yes, we"}}"#,
        ),
        ("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
    ];
    anthropic_events(&events, Duration::ZERO)
}

fn anthropic_events(events: &[(&str, &str)], pause: Duration) -> Script {
    Script::Stream(
        events.iter().map(|(name, data)| (pause, format!("event: {name}\ndata: {data}\n\n").into_bytes())).collect(),
    )
}

/// Anthropic's §9.4 error answers.
pub fn anthropic_error(status: u16) -> Script {
    let (kind, message) = match status {
        401 => ("authentication_error", "invalid x-api-key"),
        429 => ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    let body = format!(
        r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}}"#
    );
    let headers = if status == 429 { vec![("retry-after", "1".to_string())] } else { Vec::new() };
    Script::Status(status, headers, body)
}

/// The contract's §5.2 error answers.
pub fn error(status: u16) -> Script {
    Script::Status(status, Vec::new(), error_body(status))
}

/// The body of [`error`].
pub fn error_body(status: u16) -> String {
    let body = match status {
        401 => {
            r#"{"error":{"message":"Incorrect API key provided: sk-test***0000. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#
        }
        429 => {
            r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-test on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 850ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#
        }
        500 => {
            r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#
        }
        503 => {
            r#"{"error":{"message":"Our servers are currently overloaded. Please try again later.","type":"service_unavailable_error","param":null,"code":"server_is_overloaded"}}"#
        }
        _ => "<html><body><h1>502 Bad Gateway</h1></body></html>",
    };
    body.to_string()
}

/// 429 `insufficient_quota`, which must not be retried.
pub fn quota() -> Script {
    let body = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    Script::Status(429, Vec::new(), body.into())
}

/// What the fake was sent.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Fake {
    scripts: Mutex<VecDeque<Script>>,
    seen: Mutex<Vec<Seen>>,
}

/// A running fake.
pub struct FakeModel {
    pub addr: SocketAddr,
    fake: Arc<Fake>,
}

impl FakeModel {
    /// Starts the fake; it plays `scripts` in order, one per request (the last one repeats).
    pub async fn start(scripts: Vec<Script>) -> FakeModel {
        let fake = Arc::new(Fake { scripts: Mutex::new(scripts.into()), ..Default::default() });
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/v1/messages", post(answer))
            .route("/openai/deployments/{deployment}/chat/completions", post(answer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeModel { addr, fake }
    }

    /// The base URL, as a shop owner would give it for a local server.
    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.fake.seen.lock().unwrap().clone()
    }
}

async fn answer(State(fake): State<Arc<Fake>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let messages = body["messages"].clone();
    fake.seen.lock().unwrap().push(Seen { path, headers, body });
    let script = {
        let mut scripts = fake.scripts.lock().unwrap();
        if scripts.len() > 1 { scripts.pop_front() } else { scripts.front().cloned() }
    };
    let script = match script.expect("a script for every request") {
        Script::Route(pick) => pick(&messages),
        other => other,
    };
    match script {
        Script::Status(code, headers, body) => {
            let json = body.starts_with('{');
            let mut response = (StatusCode::from_u16(code).unwrap(), body).into_response();
            let h = response.headers_mut();
            h.insert("content-type", if json { "application/json" } else { "text/html" }.parse().unwrap());
            for (name, value) in headers {
                h.insert(name, value.parse().unwrap());
            }
            response
        }
        Script::Stream(pieces) => {
            let stream = futures_util::stream::unfold(pieces.into_iter(), |mut pieces| async move {
                let (pause, bytes) = pieces.next()?;
                tokio::time::sleep(pause).await;
                Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), pieces))
            });
            sse(Body::from_stream(stream))
        }
        Script::Echo => {
            let everything = serde_json::to_string(&messages).unwrap();
            let pieces = answer_pieces(&everything);
            sse(Body::from_stream(futures_util::stream::iter(
                pieces.into_iter().map(|(_, bytes)| Ok::<_, std::io::Error>(Bytes::from(bytes))),
            )))
        }
        Script::Stall => sse(Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>())),
        Script::Route(_) => panic!("a routed script picks a playable one"),
    }
}

fn sse(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert("content-type", "text/event-stream; charset=utf-8".parse().unwrap());
    response
}
