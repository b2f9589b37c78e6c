//! Embeddings from an OpenAI-compatible `POST {base}/embeddings` endpoint
//! (`shared/contracts/openai.md` §7): OpenAI itself, Ollama, vLLM, OpenRouter, and Azure
//! OpenAI's deployment URLs with their `api-key` header (§8.4). Inputs go in batches, passing
//! failures (rate limits, server errors, dropped connections) are retried with backoff, and
//! every answer is checked before a vector is trusted: a wrong count or a broken vector would
//! silently corrupt retrieval, so it is an error instead.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::{EmbedError, Embedder};
use crate::model::endpoint::{Auth, OPENAI_BASE, is_azure};
use crate::model::openai::error_fields;

/// The most inputs sent in one request: far below OpenAI's 2048, so a request stays well
/// within its 300 000-token limit and a slow local server answers each one in time.
pub const BATCH: usize = 128;

/// Retries after the first attempt (4 attempts in all).
const RETRIES: u32 = 3;
/// The first wait between attempts when the server names none; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured: training waits, but not for minutes.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(20);
/// The path every embeddings endpoint ends in.
const TAIL: &str = "/embeddings";

/// Why the endpoint gave no usable vectors. No variant ever carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// `embedding_url` is not an http(s) URL; fix the setting.
    #[error("embedding_url is not an http(s) URL: {0}")]
    BadUrl(String),
    /// The request never got an answer (refused, reset, timed out), after the retries.
    #[error("could not reach it: {0}")]
    Transport(String),
    /// A non-2xx answer, with the API's own error message (or the start of the body).
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// A 2xx answer that is not the embeddings of the inputs sent (what is wrong with it).
    #[error("unusable answer: {0}")]
    Malformed(String),
}

/// An OpenAI-compatible embeddings endpoint as an [`Embedder`], for clients whose
/// `embedding_url` names one instead of the in-process model.
#[derive(Clone)]
pub struct EmbeddingEndpoint {
    http: reqwest::Client,
    url: Url,
    auth: Auth,
    model: String,
    space: String,
    backoff: Duration,
}

impl EmbeddingEndpoint {
    /// An endpoint from a client's `embedding_url` (a base such as `http://localhost:11434/v1`
    /// gets `/embeddings` appended, a full `…/embeddings` URL is kept, empty means OpenAI),
    /// its token (empty: no auth header; Azure URLs send it as `api-key`) and model. Requests
    /// go through `http`, which callers build with [`crate::outbound::client`] so the upstream
    /// address policy applies.
    pub fn new(http: reqwest::Client, url: &str, token: &str, model: &str) -> Result<EmbeddingEndpoint, EndpointError> {
        let url = embeddings_url(url)?;
        let auth = match token.trim() {
            "" => Auth::None,
            t if is_azure(&url) => Auth::ApiKey(t.to_string()),
            t => Auth::Bearer(t.to_string()),
        };
        let model = model.trim().to_string();
        let space = format!("endpoint:{}#{model}", shown(&url));
        Ok(EmbeddingEndpoint { http, url, auth, model, space, backoff: FIRST_BACKOFF })
    }

    /// The same endpoint with another first wait between attempts (it doubles per retry;
    /// 0.5 s by default): tests retry in milliseconds.
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// The URL requests are posted to (the token is never part of it).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The embeddings of one batch, retried while retrying can help.
    async fn batch(&self, texts: &[String], dim: Option<usize>) -> Result<Vec<Vec<f32>>, EndpointError> {
        // OpenAI refuses empty inputs with a 400 that would fail the whole batch.
        let input: Vec<&str> = texts.iter().map(|t| if t.trim().is_empty() { " " } else { t.as_str() }).collect();
        let body = json!({ "model": self.model, "input": input, "encoding_format": "float" });
        let mut attempt = 0;
        loop {
            match self.attempt(&body, texts.len(), dim).await {
                Ok(vectors) => return Ok(vectors),
                Err(Failed { error, retry: false, .. }) => return Err(error),
                Err(Failed { error, .. }) if attempt == RETRIES => return Err(error),
                Err(Failed { wait, .. }) => {
                    tokio::time::sleep(wait.unwrap_or(self.backoff * 2u32.pow(attempt))).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One request and its answer, checked.
    async fn attempt(&self, body: &Value, count: usize, dim: Option<usize>) -> Result<Vec<Vec<f32>>, Failed> {
        let request = self.http.post(self.url.clone()).json(body);
        let request = match &self.auth {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::ApiKey(key) => request.header("api-key", key),
            Auth::XApiKey(key) => request.header("x-api-key", key),
            Auth::None => request,
        };
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let wait = server_wait(response.headers());
        let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
        if !(200..300).contains(&status) {
            let (message, quota) = error_message(&bytes);
            let message = self.redact(message);
            // A spent quota is billing, not load: waiting does not help (§5.2).
            let retry = matches!(status, 429 | 500 | 502 | 503 | 504) && !quota;
            return Err(Failed { error: EndpointError::Http { status, message }, retry, wait });
        }
        parse(&bytes, count, dim).map_err(|e| Failed {
            error: EndpointError::Malformed(self.redact(e)),
            retry: false,
            wait: None,
        })
    }

    fn transport(&self, e: &reqwest::Error) -> Failed {
        // Refused, reset, timed out: all may pass. A request that cannot be built won't.
        let retry = !e.is_builder() && !e.is_redirect();
        Failed { error: EndpointError::Transport(self.redact(crate::outbound::error_chain(e))), retry, wait: None }
    }

    /// `text` with the token masked, should a server echo it back.
    fn redact(&self, text: String) -> String {
        match &self.auth {
            Auth::Bearer(t) | Auth::ApiKey(t) | Auth::XApiKey(t) if text.contains(t.as_str()) => text.replace(t, "***"),
            _ => text,
        }
    }
}

impl fmt::Debug for EmbeddingEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token (Auth prints only its kind) nor URL credentials.
        f.debug_struct("EmbeddingEndpoint")
            .field("url", &shown(&self.url))
            .field("model", &self.model)
            .field("auth", &self.auth)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Embedder for EmbeddingEndpoint {
    fn space(&self) -> &str {
        &self.space
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let dim = vectors.first().map(Vec::len);
            vectors.extend(self.batch(batch, dim).await?);
        }
        Ok(vectors)
    }
}

/// A failed attempt: the error, whether another attempt may help, and the wait the server
/// asked for.
struct Failed {
    error: EndpointError,
    retry: bool,
    wait: Option<Duration>,
}

/// The embeddings URL for an `embedding_url` setting (empty: OpenAI's).
fn embeddings_url(given: &str) -> Result<Url, EndpointError> {
    let given = if given.trim().is_empty() { OPENAI_BASE } else { given.trim() };
    let mut url = Url::parse(given).map_err(|e| EndpointError::BadUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EndpointError::BadUrl(format!("scheme {}", url.scheme())));
    }
    let path = url.path().trim_end_matches('/').to_string();
    let tail = if path.ends_with(TAIL) { "" } else { TAIL };
    url.set_path(&format!("{path}{tail}"));
    Ok(url)
}

/// The URL without query, fragment or user info, which may carry credentials.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// The wait the server asks for: `retry-after-ms` (preferred, as the official SDKs do) or
/// `Retry-After` in seconds, at most [`RETRY_AFTER_CAP`].
fn server_wait(headers: &HeaderMap) -> Option<Duration> {
    let ms = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok());
    match ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        // Finite but beyond any Duration (1e300): the longest wait we honour.
        Some(ms) => Some(Duration::try_from_secs_f64(ms / 1000.0).map_or(RETRY_AFTER_CAP, |d| d.min(RETRY_AFTER_CAP))),
        None => crate::outbound::retry_after(headers, RETRY_AFTER_CAP),
    }
}

/// The message of an error body in any §5 shape (else the start of the body), and whether
/// it says the quota is spent.
fn error_message(body: &[u8]) -> (String, bool) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let fields = parsed.as_ref().and_then(|v| {
        error_fields(
            v.get("error"),
            v.get("object").and_then(Value::as_str),
            v.get("message"),
            v.get("type"),
            v.get("code"),
        )
    });
    let (message, kind, code) = fields.unwrap_or_default();
    let quota = [kind.as_deref(), code.as_deref()].contains(&Some("insufficient_quota"));
    let message = message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| crate::outbound::body_snippet(body, 200));
    (message, quota)
}

#[derive(Deserialize)]
struct Answer {
    data: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct Item {
    index: Option<usize>,
    embedding: Option<Embedding>,
}

/// Floats as asked for, or base64 of little-endian f32 from a server that ignores
/// `encoding_format`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Embedding {
    Floats(Vec<f32>),
    Base64(String),
}

/// The vectors of a 2xx body for `count` inputs, in input order (sorted by `index`), all of
/// one non-zero dimension (`dim` when earlier batches fixed it) with finite values; else what
/// is wrong.
fn parse(body: &[u8], count: usize, dim: Option<usize>) -> Result<Vec<Vec<f32>>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| format!("not JSON: {}", crate::outbound::body_snippet(body, 200)))?;
    let answer: Answer = serde_json::from_value(value.clone()).map_err(|e| format!("unexpected shape: {e}"))?;
    let Some(data) = answer.data else {
        let object = value.get("object").and_then(Value::as_str);
        return Err(match error_fields(value.get("error"), object, value.get("message"), None, None) {
            Some((Some(message), ..)) => format!("an error instead of embeddings: {message}"),
            _ => "no `data`".to_string(),
        });
    };
    if data.len() != count {
        return Err(format!("{} embeddings for {count} inputs", data.len()));
    }
    let mut indexed = Vec::with_capacity(count);
    for (position, item) in data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        let vector = match item.embedding {
            Some(Embedding::Floats(v)) => v,
            Some(Embedding::Base64(text)) => {
                let bytes = B64.decode(text.trim()).map_err(|_| format!("embedding {index} is not base64"))?;
                if bytes.len() % 4 != 0 {
                    return Err(format!("embedding {index} is not a whole number of f32"));
                }
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            None => return Err(format!("item {position} has no embedding")),
        };
        indexed.push((index, vector));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let mut dim = dim;
    let mut vectors = Vec::with_capacity(count);
    for (position, (index, vector)) in indexed.into_iter().enumerate() {
        if index != position {
            return Err(format!("indices are not 0..{count} (duplicate or out of range: {index})"));
        }
        let expected = *dim.get_or_insert(vector.len());
        if vector.is_empty() {
            return Err(format!("embedding {index} is empty"));
        }
        if vector.len() != expected {
            return Err(format!("embedding {index} has {} dimensions, others {expected}", vector.len()));
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(format!("embedding {index} has a value that is not a finite number"));
        }
        vectors.push(vector);
    }
    Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_no_duration_holds_is_the_longest_we_honour() {
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", "1e300".parse().unwrap());
        assert_eq!(server_wait(&h), Some(RETRY_AFTER_CAP));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_millis(1500)));
    }

    fn http() -> reqwest::Client {
        crate::outbound::client(crate::clients::UpstreamPolicy::default(), Duration::from_secs(5))
    }

    fn endpoint(url: &str, token: &str) -> EmbeddingEndpoint {
        EmbeddingEndpoint::new(http(), url, token, "text-embedding-3-small").unwrap()
    }

    fn url(given: &str) -> String {
        endpoint(given, "k").url().to_string()
    }

    #[test]
    fn bases_full_endpoints_and_azure_deployments() {
        assert_eq!(url(""), "https://api.openai.com/v1/embeddings");
        assert_eq!(url("  "), "https://api.openai.com/v1/embeddings");
        assert_eq!(url("https://api.openai.com/v1"), "https://api.openai.com/v1/embeddings");
        assert_eq!(url("https://api.openai.com/v1/embeddings"), "https://api.openai.com/v1/embeddings");
        assert_eq!(url("http://localhost:11434/v1"), "http://localhost:11434/v1/embeddings");
        assert_eq!(url("http://localhost:11434/v1/"), "http://localhost:11434/v1/embeddings");
        assert_eq!(url("http://localhost:11434/v1/embeddings/"), "http://localhost:11434/v1/embeddings");
        assert_eq!(url("https://openrouter.ai/api/v1"), "https://openrouter.ai/api/v1/embeddings");
        assert_eq!(
            url("https://x.openai.azure.com/openai/deployments/emb?api-version=2024-10-21"),
            "https://x.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
        );
        assert_eq!(
            url("https://x.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"),
            "https://x.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
        );
        assert_eq!(url("https://x.openai.azure.com/openai/v1"), "https://x.openai.azure.com/openai/v1/embeddings");
        for bad in ["ftp://x/v1", "not a url", "localhost:11434/v1", "file:///etc/passwd"] {
            let e = EmbeddingEndpoint::new(http(), bad, "", "m").unwrap_err();
            assert!(matches!(e, EndpointError::BadUrl(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn the_header_follows_the_host() {
        assert_eq!(endpoint("", "sk-1").auth, Auth::Bearer("sk-1".into()));
        assert_eq!(endpoint("http://localhost:11434/v1", " ").auth, Auth::None);
        let azure = endpoint("https://x.openai.azure.com/openai/deployments/emb?api-version=2024-10-21", "az-1");
        assert_eq!(azure.auth, Auth::ApiKey("az-1".into()));
        let gateway = endpoint("http://127.0.0.1:9/openai/deployments/emb?api-version=2024-10-21", "az-2");
        assert_eq!(gateway.auth, Auth::ApiKey("az-2".into()), "Azure behind a gateway, by its path");
    }

    #[test]
    fn the_token_never_shows() {
        let secret = "sk-secret-0123456789";
        for given in [
            "",
            "http://localhost:11434/v1",
            "https://x.openai.azure.com/openai/deployments/emb?api-version=2024-10-21",
            "https://user:pass@example.com/v1",
        ] {
            let e = endpoint(given, secret);
            for shown in [format!("{e:?}"), e.space().to_string()] {
                assert!(!shown.contains(secret) && !shown.contains("pass"), "{shown}");
            }
        }
        assert_eq!(
            endpoint("", secret).space(),
            "endpoint:https://api.openai.com/v1/embeddings#text-embedding-3-small"
        );
        let azure = endpoint("https://x.openai.azure.com/openai/deployments/emb?api-version=2024-10-21", secret);
        assert_eq!(
            azure.space(),
            "endpoint:https://x.openai.azure.com/openai/deployments/emb/embeddings#text-embedding-3-small"
        );
        assert_eq!(endpoint("http://h/v1", "").space(), endpoint("http://h/v1/embeddings", "").space(), "one space");
        let echoed = endpoint("", secret).redact(format!("Incorrect API key provided: {secret}."));
        assert_eq!(echoed, "Incorrect API key provided: ***.");
    }

    #[test]
    fn answers_are_sorted_and_checked() {
        let body = br#"{"object":"list","data":[
            {"object":"embedding","index":1,"embedding":[0.5,0.5]},
            {"object":"embedding","index":0,"embedding":[1.0,0.0]}],
            "model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        assert_eq!(parse(body, 2, None).unwrap(), [vec![1.0, 0.0], vec![0.5, 0.5]]);
        assert!(parse(body, 3, None).unwrap_err().contains("2 embeddings for 3 inputs"));
        assert!(parse(body, 2, Some(3)).unwrap_err().contains("dimensions"), "batches share one dimension");
        let ragged = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":1,"embedding":[1.0,2.0]}]}"#;
        assert!(parse(ragged, 2, None).unwrap_err().contains("dimensions"));
        let empty = br#"{"data":[{"index":0,"embedding":[]}]}"#;
        assert!(parse(empty, 1, None).unwrap_err().contains("empty"));
        let huge = br#"{"data":[{"index":0,"embedding":[1e39]}]}"#;
        assert!(parse(huge, 1, None).unwrap_err().contains("finite"));
        let twice = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[1.0]}]}"#;
        assert!(parse(twice, 2, None).unwrap_err().contains("indices"));
        let no_index = br#"{"data":[{"embedding":[1.0]},{"embedding":[2.0]}]}"#;
        assert_eq!(parse(no_index, 2, None).unwrap(), [vec![1.0], vec![2.0]], "array order without indices");
        let b64 = format!(
            r#"{{"data":[{{"index":0,"embedding":"{}"}}]}}"#,
            B64.encode([1.5f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat())
        );
        assert_eq!(parse(b64.as_bytes(), 1, None).unwrap(), [vec![1.5, 2.0]]);
        assert!(parse(b"<html>oops</html>", 1, None).unwrap_err().contains("not JSON: <html>oops</html>"));
        assert!(
            parse(br#"{"error":{"message":"model not loaded"}}"#, 1, None).unwrap_err().contains("model not loaded")
        );
        assert!(parse(br#"{"data":[{"index":0,"embedding":[null]}]}"#, 1, None).is_err());
    }

    #[test]
    fn error_bodies_in_every_shape() {
        let openai = br#"{"error":{"message":"Incorrect API key provided: sk-test***0000.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(error_message(openai), ("Incorrect API key provided: sk-test***0000.".into(), false));
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(error_message(quota).1);
        assert_eq!(error_message(br#"{"error":"Unauthorized"}"#).0, "Unauthorized");
        let legacy = br#"{"object":"error","message":"model not found","type":"NotFoundError","code":404}"#;
        assert_eq!(error_message(legacy).0, "model not found");
        assert_eq!(error_message(b"<html><h1>502 Bad Gateway</h1></html>").0, "<html><h1>502 Bad Gateway</h1></html>");
        assert_eq!(error_message(b"").0, "(empty body)");
    }

    #[test]
    fn waits_the_server_asks_for() {
        let mut h = HeaderMap::new();
        assert_eq!(server_wait(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "850".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_millis(850)), "milliseconds win");
        h.insert("retry-after-ms", "600000".parse().unwrap());
        assert_eq!(server_wait(&h), Some(RETRY_AFTER_CAP));
    }
}
