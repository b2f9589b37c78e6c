//! One streamed chat completion over HTTP, with the failure rules of
//! `shared/contracts/openai.md` §5–§6 and the product's "degrade, never die": the status is
//! checked before any byte is treated as SSE; error bodies are read in every shape servers
//! use; rate limits and server errors are retried only while nothing has reached the visitor
//! and only within a retry budget counted from the first failure, so the caller can fall back
//! in time; every read is timed (first token, then silence between tokens).

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::anthropic;
use super::chat::{Completion, StreamError};
use super::endpoint::{Auth, Endpoint, Provider};
use super::openai::error_fields;
use super::sse::{SseError, SseParser};

/// The largest line or event accepted from a model server.
const MAX_EVENT: usize = 4 << 20;

/// How long each phase may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (used when the HTTP client is built).
    pub connect: Duration,
    /// From sending the request to the response headers and the first event.
    pub first_token: Duration,
    /// Between two reads once the stream has started (comments and pings count).
    pub idle: Duration,
    /// Retries stop this long after the first failure, so the visitor gets the fallback
    /// soon after a failure shows.
    pub retry_budget: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            first_token: Duration::from_secs(15),
            idle: Duration::from_secs(10),
            retry_budget: Duration::from_secs(4),
        }
    }
}

/// Why no completion came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// 401/403: the token (or the account) is refused; an admin has to act.
    #[error("the model server refused the credentials (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// 402, or 429 `insufficient_quota`: billing, not load; never retried.
    #[error("the model account has no quota or credit left (HTTP {status}): {message}")]
    Quota { status: u16, message: String },
    /// 429 `rate_limit_exceeded`.
    #[error("the model server is rate limiting (HTTP 429): {message}")]
    RateLimited { message: String, retry_after: Option<Duration> },
    /// Any other non-2xx answer.
    #[error("the model server answered HTTP {status}: {message}")]
    Http { status: u16, message: String, retry_after: Option<Duration> },
    #[error("the model server did not answer within {}s ({phase})", .after.as_secs_f32())]
    Timeout { phase: &'static str, after: Duration },
    #[error("could not reach the model server: {0}")]
    Transport(String),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the model stream is unreadable: {0}")]
    Sse(#[from] SseError),
}

impl ModelError {
    /// Whether trying again may help (before anything was forwarded).
    pub fn retryable(&self) -> bool {
        match self {
            ModelError::RateLimited { .. } | ModelError::Transport(_) => true,
            ModelError::Http { status, .. } => matches!(status, 408 | 409 | 500..=599),
            ModelError::Stream(StreamError::Truncated) => true,
            // OpenAI's and Anthropic's names for a passing server failure.
            ModelError::Stream(StreamError::Upstream { kind, .. }) => {
                matches!(kind.as_deref(), Some("server_error" | "api_error" | "overloaded_error"))
            }
            _ => false,
        }
    }

    /// Whether the provider itself is in trouble (down, slow, broken), which is what the
    /// circuit breaker counts; refused credentials and quotas are configuration matters.
    pub fn provider_trouble(&self) -> bool {
        match self {
            ModelError::Transport(_) | ModelError::Timeout { .. } | ModelError::Stream(_) | ModelError::Sse(_) => true,
            ModelError::Http { status, .. } => matches!(status, 408 | 500..=599),
            _ => false,
        }
    }

    /// Whether the server refused the request because of its tools: vLLM without a tool
    /// parser ("\"auto\" tool choice requires --enable-auto-tool-choice …"), Ollama models
    /// without tool support ("… does not support tools").
    pub fn refuses_tools(&self) -> bool {
        matches!(self, ModelError::Http { status: 400 | 422, message, .. } if message.to_ascii_lowercase().contains("tool"))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::RateLimited { retry_after, .. } | ModelError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Streams one completion of `body` (the request JSON, `stream: true` included) from
/// `endpoint`, calling `on_delta` with each piece of text as it arrives.
pub async fn stream_chat(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    body: &Value,
    timeouts: &Timeouts,
    mut on_delta: impl FnMut(&str) + Send,
) -> Result<Completion, ModelError> {
    let mut deadline: Option<Instant> = None;
    for attempt in 0u32.. {
        let mut forwarded = false;
        let result = attempt_once(http, endpoint, body, timeouts, deadline, &mut |d| {
            forwarded = true;
            on_delta(d)
        })
        .await;
        let error = match result {
            Ok(c) => return Ok(c),
            Err(e) if forwarded || !e.retryable() => return Err(e),
            Err(e) => e,
        };
        let now = Instant::now();
        let deadline = *deadline.get_or_insert(now + timeouts.retry_budget);
        // The server's own wait when it names one (a longer one than the budget means fall
        // back now), else exponential backoff from 250 ms.
        let wait = error.retry_after().unwrap_or(Duration::from_millis(250) * 2u32.pow(attempt.min(4)));
        if now + wait >= deadline {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
    }
    unreachable!("the loop returns")
}

async fn attempt_once(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    body: &Value,
    timeouts: &Timeouts,
    deadline: Option<Instant>,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<Completion, ModelError> {
    // A retry may not outlast the retry budget.
    let cap = |d: Duration| match deadline {
        Some(end) => d.min(end.saturating_duration_since(Instant::now())),
        None => d,
    };
    let mut request = http
        .post(endpoint.url.clone())
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .json(body);
    request = match &endpoint.auth {
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::ApiKey(key) => request.header("api-key", key),
        Auth::XApiKey(key) => request.header("x-api-key", key),
        Auth::None => request,
    };
    if endpoint.provider == Provider::Anthropic {
        request = request.header("anthropic-version", anthropic::VERSION);
    }
    let first = cap(timeouts.first_token);
    let started = Instant::now();
    let mut response = tokio::time::timeout(first, request.send())
        .await
        .map_err(|_| ModelError::Timeout { phase: "waiting for the response", after: first })?
        .map_err(|e| ModelError::Transport(transport_reason(&e)))?;
    let status = response.status().as_u16();
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !(200..300).contains(&status) || !is_sse {
        let retry_after = retry_after(response.headers());
        let body = tokio::time::timeout(cap(timeouts.idle), response.bytes())
            .await
            .map_err(|_| ModelError::Timeout { phase: "reading an error", after: timeouts.idle })?
            .unwrap_or_default();
        return Err(http_error(if (200..300).contains(&status) { 502 } else { status }, &body, retry_after));
    }
    let mut parser = SseParser::new(MAX_EVENT);
    let mut decoder = endpoint.provider.protocol().decoder();
    let mut waited_for_first = true;
    loop {
        let wait = if waited_for_first { cap(first.saturating_sub(started.elapsed())) } else { timeouts.idle };
        let phase = if waited_for_first { "waiting for the first token" } else { "silent between tokens" };
        let chunk = tokio::time::timeout(wait, response.chunk())
            .await
            .map_err(|_| ModelError::Timeout { phase, after: if waited_for_first { first } else { wait } })?
            .map_err(|e| ModelError::Transport(transport_reason(&e)))?;
        let Some(bytes) = chunk else { break };
        waited_for_first = false;
        // Pieces that arrived in one read go to the visitor as one delta: fewer frames and
        // wake-ups, and nothing is held back that had already arrived.
        let mut arrived = String::new();
        for event in parser.push(&bytes)? {
            match decoder.event(&event) {
                Ok(Some(text)) => arrived.push_str(&text),
                Ok(None) => {}
                Err(e) => {
                    if !arrived.is_empty() {
                        on_delta(&arrived);
                    }
                    return Err(e.into());
                }
            }
        }
        if !arrived.is_empty() {
            on_delta(&arrived);
        }
    }
    if let Some(event) = parser.finish()
        && let Some(text) = decoder.event(&event)?
    {
        on_delta(&text);
    }
    Ok(decoder.finish()?)
}

/// `retry-after-ms` (preferred, as the official SDKs do) or `retry-after` in seconds. A
/// value no `Duration` holds (negative, NaN, infinite, astronomically large) is ignored: the
/// server's headers must never panic the answer.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    number("retry-after-ms")
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .or_else(|| number("retry-after").and_then(|s| Duration::try_from_secs_f64(s).ok()))
}

/// Maps a non-2xx answer to its error, reading the body in every shape servers use.
fn http_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> ModelError {
    let (message, kind, code) = error_body(body);
    let quota = [kind.as_deref(), code.as_deref()].contains(&Some("insufficient_quota"));
    match status {
        401 | 403 => ModelError::Unauthorized { status, message },
        402 => ModelError::Quota { status, message },
        429 if quota => ModelError::Quota { status, message },
        429 => ModelError::RateLimited { message, retry_after },
        _ => ModelError::Http { status, message, retry_after },
    }
}

/// (message, type, code) of an error body: `{"error": {...}}`, `{"error": "text"}`, old
/// vLLM's `{"object": "error", ...}`, or anything else as (truncated) text.
fn error_body(body: &[u8]) -> (String, Option<String>, Option<String>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (message, kind, code) = parsed
        .as_ref()
        .and_then(|v| {
            let object = v.get("object").and_then(Value::as_str);
            error_fields(v.get("error"), object, v.get("message"), v.get("type"), v.get("code"))
        })
        .unwrap_or_default();
    let message = message.unwrap_or_else(|| {
        let raw: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(200).collect();
        if raw.trim().is_empty() { "(empty body)".into() } else { raw.trim().to_string() }
    });
    (message, kind, code)
}

fn transport_reason(e: &reqwest::Error) -> String {
    let text = crate::outbound::error_text(e);
    match std::error::Error::source(e) {
        Some(source) => format!("{text}: {source}"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_headers_no_duration_holds_are_ignored() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = reqwest::header::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "850")])), Some(Duration::from_millis(850)));
        assert_eq!(retry_after(&headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        for bad in ["1e400", "1e300", "-5", "NaN", "inf"] {
            assert_eq!(retry_after(&headers(&[("retry-after-ms", bad), ("retry-after", bad)])), None, "{bad}");
        }
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "1e300"), ("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn error_bodies_in_every_shape() {
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-test***0000.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert!(
            matches!(http_error(401, openai, None), ModelError::Unauthorized { status: 401, message } if message.starts_with("Incorrect API key"))
        );
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = http_error(429, quota, Some(Duration::from_secs(1)));
        assert!(matches!(e, ModelError::Quota { .. }) && !e.retryable(), "quota is never retried");
        let rate = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = http_error(429, rate, Some(Duration::from_millis(850)));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(850)));
        assert!(e.retryable());
        let vllm = br#"{"error":"Unauthorized"}"#;
        assert!(
            matches!(http_error(401, vllm, None), ModelError::Unauthorized { message, .. } if message == "Unauthorized")
        );
        let azure = br#"{"error":{"code":"429","message":"Please retry after 6 seconds."}}"#;
        assert!(matches!(http_error(429, azure, None), ModelError::RateLimited { .. }));
        let html = b"<html><body><h1>502 Bad Gateway</h1></body></html>";
        let e = http_error(502, html, None);
        assert!(e.retryable() && e.to_string().contains("502 Bad Gateway"), "{e}");
        let legacy =
            br#"{"object":"error","message":"model not found","type":"NotFoundError","param":null,"code":404}"#;
        assert!(
            matches!(http_error(404, legacy, None), ModelError::Http { status: 404, message, .. } if message == "model not found")
        );
        assert!(!http_error(400, b"", None).retryable());
        assert!(matches!(http_error(402, b"{}", None), ModelError::Quota { .. }));
    }

    #[test]
    fn retry_after_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "850".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(850)), "milliseconds win");
        let mut date = reqwest::header::HeaderMap::new();
        date.insert("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&date), None, "a date is not a wait we honour");
    }
}
