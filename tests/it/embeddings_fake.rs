//! A fake OpenAI-compatible embeddings server on loopback that follows
//! `shared/contracts/openai.md` §7: `POST /v1/embeddings` and Azure's
//! `POST /openai/deployments/{name}/embeddings?api-version=…` (§8.4), answering the contract's
//! response shape with `data` in reversed index order (clients must sort by `index`), and its
//! §5 error bodies: 400 for an empty input, 401 for a wrong token, 404 for an Azure URL without
//! `api-version`.
//!
//! Vectors are deterministic bag-of-words hashes ([`embed_like_fake`]): texts with the same
//! words get the same vector (cosine 1), texts sharing words are close. Controls for tests:
//! fail the next requests with a status, headers and body (or answer one embedding short),
//! the requests seen, and how many inputs were embedded in all.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

/// The dimension of the fake's vectors.
pub const DIM: usize = 64;

/// The most inputs one request may carry (OpenAI's limit, §7).
pub const MAX_INPUTS: usize = 2048;

/// The contract's 401 (§5.2).
pub const INVALID_KEY: &str = r#"{"error":{"message":"Incorrect API key provided: sk-test***0000. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
/// The contract's 429 rate limit (§5.2), sent with `Retry-After` (§6).
pub const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached for text-embedding-3-small in organization org-test on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 850ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
/// The contract's 429 for a spent quota, which must not be retried (§5.2).
pub const QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
/// The contract's 500 (§5.2).
pub const SERVER_ERROR: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#;
/// The contract's 503 (§5.2).
pub const OVERLOADED: &str = r#"{"error":{"message":"Our servers are currently overloaded. Please try again later.","type":"service_unavailable_error","param":null,"code":"server_is_overloaded"}}"#;
/// OpenAI's 400 for an empty string among the inputs (§7).
pub const INVALID_INPUT: &str = r#"{"error":{"message":"'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.","type":"invalid_request_error","param":null,"code":null}}"#;
/// Azure's 401 (§8.4): no `type` or `param`, the status as a string `code`.
pub const AZURE_DENIED: &str = r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#;
/// Azure's 404 for a missing `api-version` (§8.4).
pub const AZURE_NOT_FOUND: &str = r#"{"error":{"code":"404","message":"Resource not found"}}"#;

/// A forced answer to a coming request.
#[derive(Clone, Debug)]
pub enum Failure {
    /// This status, headers and body instead of the embeddings.
    Answer { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// A 200 in the contract's shape but one embedding short.
    Short,
    /// The normal answer (to script a later request, not the next one).
    Normal,
}

#[allow(dead_code)]
impl Failure {
    /// `status` with the contract's body for it (§5.2; 502/504 as a proxy's HTML page).
    pub fn status(status: u16) -> Failure {
        let body = match status {
            400 => INVALID_INPUT.to_string(),
            401 => INVALID_KEY.to_string(),
            429 => RATE_LIMITED.to_string(),
            500 => SERVER_ERROR.to_string(),
            503 => OVERLOADED.to_string(),
            s => {
                let reason = StatusCode::from_u16(s).ok().and_then(|c| c.canonical_reason()).unwrap_or("Error");
                format!("<html><body><h1>{s} {reason}</h1></body></html>")
            }
        };
        Failure::answer(status, &body)
    }

    /// A rate limit (§6) asking for a wait of `retry_after` seconds.
    pub fn rate_limited(retry_after: u32) -> Failure {
        Failure::status(429).header("retry-after", &retry_after.to_string())
    }

    /// 429 `insufficient_quota`.
    pub fn quota() -> Failure {
        Failure::answer(429, QUOTA)
    }

    /// Any answer, e.g. a 200 the real server would never send.
    pub fn answer(status: u16, body: &str) -> Failure {
        Failure::Answer { status, headers: Vec::new(), body: body.to_string() }
    }

    /// Adds a header to an [`Failure::Answer`].
    pub fn header(mut self, name: &'static str, value: &str) -> Failure {
        if let Failure::Answer { headers, .. } = &mut self {
            headers.push((name, value.to_string()));
        }
        self
    }
}

/// What the fake was sent.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
}

#[allow(dead_code)]
impl Seen {
    /// The inputs of the request (a single string counts as one).
    pub fn inputs(&self) -> Vec<String> {
        match &self.body["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or_default().to_string()).collect(),
            _ => Vec::new(),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Fake {
    token: Option<String>,
    failures: Mutex<VecDeque<Failure>>,
    seen: Mutex<Vec<Seen>>,
    embedded: AtomicUsize,
    delay: Mutex<std::time::Duration>,
}

/// A running fake; stops when dropped.
pub struct FakeEmbeddings {
    pub addr: SocketAddr,
    fake: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

#[allow(dead_code)]
impl FakeEmbeddings {
    /// Starts a fake that needs no token (like Ollama: any or none is accepted).
    pub async fn start() -> FakeEmbeddings {
        Self::serve(None).await
    }

    /// Starts a fake that accepts only `token` (`Authorization: Bearer`, or `api-key` on
    /// Azure paths); anything else gets the 401 of §5.
    pub async fn start_with_token(token: &str) -> FakeEmbeddings {
        Self::serve(Some(token.to_string())).await
    }

    async fn serve(token: Option<String>) -> FakeEmbeddings {
        let fake = Arc::new(Fake {
            token,
            failures: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            embedded: AtomicUsize::new(0),
            delay: Mutex::new(std::time::Duration::ZERO),
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/openai/deployments/{deployment}/embeddings", post(embeddings))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeEmbeddings { addr, fake, task }
    }

    /// The base URL (`embedding_url`), as given for OpenAI-compatible servers.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// An Azure deployment URL for `deployment` (`embedding_url` without `/embeddings`).
    pub fn azure_url(&self, deployment: &str) -> String {
        format!("http://{}/openai/deployments/{deployment}?api-version=2024-10-21", self.addr)
    }

    /// Every request so far, answered or refused.
    pub fn requests(&self) -> Vec<Seen> {
        self.fake.seen.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.fake.seen.lock().unwrap().clear();
    }

    /// How many inputs were embedded in all (answered with a 200).
    pub fn inputs_embedded(&self) -> usize {
        self.fake.embedded.load(Ordering::SeqCst)
    }

    /// Every later answer takes `delay` (a slow provider).
    pub fn set_delay(&self, delay: std::time::Duration) {
        *self.fake.delay.lock().unwrap() = delay;
    }

    /// The next `n` requests get `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.fake.failures.lock().unwrap().extend(std::iter::repeat_n(failure, n));
    }
}

impl Drop for FakeEmbeddings {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake's vector for `text`: each lower-cased alphanumeric word adds 1 to a bucket chosen
/// by its hash, then the vector is L2-normalised. A text without words gets a bucket of its own.
pub fn embed_like_fake(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    let lower = text.to_lowercase();
    let mut words = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).peekable();
    if words.peek().is_none() {
        v[bucket("\0")] = 1.0;
        return v;
    }
    for word in words {
        v[bucket(word)] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// FNV-1a, so vectors are the same in every run and on every platform.
fn bucket(word: &str) -> usize {
    let hash = word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % DIM as u64) as usize
}

fn json_response(status: u16, headers: &[(&'static str, String)], body: &str) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    let h = response.headers_mut();
    let json = body.trim_start().starts_with('{');
    h.insert("content-type", if json { "application/json" } else { "text/html" }.parse().unwrap());
    h.insert("x-request-id", "req_fake_embeddings".parse().unwrap());
    for (name, value) in headers {
        h.insert(*name, value.parse().unwrap());
    }
    response
}

fn invalid(message: &str, param: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
    json_response(400, &[], &body.to_string())
}

async fn embeddings(State(fake): State<Arc<Fake>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    fake.seen.lock().unwrap().push(Seen { path, headers: headers.clone(), body: json_body.clone() });
    let delay = *fake.delay.lock().unwrap();
    tokio::time::sleep(delay).await;

    let azure = uri.path().starts_with("/openai/deployments/");
    if azure && !uri.query().unwrap_or_default().split('&').any(|p| p.starts_with("api-version=")) {
        return json_response(404, &[], AZURE_NOT_FOUND);
    }
    if let Some(token) = &fake.token {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
        let given = if azure { header("api-key").or(bearer) } else { bearer };
        if given.as_deref() != Some(token.as_str()) {
            return json_response(401, &[], if azure { AZURE_DENIED } else { INVALID_KEY });
        }
    }
    let failure = fake.failures.lock().unwrap().pop_front();
    if let Some(Failure::Answer { status, headers, body }) = &failure {
        return json_response(*status, headers, body);
    }

    if json_body.is_null() {
        return invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
        );
    }
    // Azure's deployment decides the model; the body's may be left out there (§8.4).
    let model = match json_body.get("model").and_then(Value::as_str).unwrap_or_default() {
        "" if azure => "text-embedding-3-small",
        "" => return invalid("you must provide a model parameter", None),
        m => m,
    };
    let inputs: Vec<String> = match &json_body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().map(|i| i.as_str().unwrap().to_string()).collect()
        }
        _ => {
            return invalid(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                None,
            );
        }
    };
    if inputs.len() > MAX_INPUTS {
        return invalid(
            &format!("'$.input' is invalid: at most {MAX_INPUTS} inputs are allowed per request."),
            Some("input"),
        );
    }
    if inputs.iter().any(String::is_empty) {
        return json_response(400, &[], INVALID_INPUT);
    }
    let base64 = match json_body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid(
                &format!("Invalid value: '{other}'. Supported values are: 'float' and 'base64'."),
                Some("encoding_format"),
            );
        }
    };

    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed_like_fake(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    // Realism: clients must sort by `index`, not trust the order (§7).
    data.reverse();
    if matches!(failure, Some(Failure::Short)) {
        data.pop();
    }
    fake.embedded.fetch_add(data.len(), Ordering::SeqCst);
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count().max(1)).sum();
    let answer = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    json_response(200, &[], &answer.to_string())
}
