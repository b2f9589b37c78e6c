//! The embeddings endpoint client against the fake OpenAI-compatible server over loopback:
//! the request as the contract prescribes it (§7), batches, credentials (bearer, Azure's
//! `api-key`), the answer sorted and checked, retries only where they can help (§5, §6), and
//! no token in any error. Also: the fake itself answers as the contract says.

use std::time::{Duration, Instant};

use aia_chat::clients::UpstreamPolicy;
use aia_chat::semantic::endpoint::{BATCH, EmbeddingEndpoint, EndpointError};
use aia_chat::semantic::{EmbedError, Embedder};
use serde_json::{Value, json};

use crate::embeddings_fake::{Failure, FakeEmbeddings, INVALID_INPUT, INVALID_KEY, embed_like_fake};

const MODEL: &str = "text-embedding-3-small";
const TOKEN: &str = "sk-test-embeddings-0123456789abcdef";

fn http() -> reqwest::Client {
    aia_chat::outbound::client(UpstreamPolicy::default(), Duration::from_secs(5))
}

/// A client of `url` with `token` that retries in milliseconds.
fn endpoint(url: &str, token: &str) -> EmbeddingEndpoint {
    EmbeddingEndpoint::new(http(), url, token, MODEL).unwrap().with_backoff(Duration::from_millis(10))
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn endpoint_error(e: EmbedError) -> EndpointError {
    match e {
        EmbedError::Endpoint(e) => e,
        other => panic!("not an endpoint error: {other}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn embeddings_come_back_in_input_order() {
    let fake = FakeEmbeddings::start_with_token(TOKEN).await;
    let client = endpoint(&fake.url(), TOKEN);
    let inputs = texts(&["How long does shipping take?", "Return policy", "How long does shipping to Canada take?"]);
    let vectors = client.embed(&inputs).await.unwrap();
    let expected: Vec<Vec<f32>> = inputs.iter().map(|t| embed_like_fake(t)).collect();
    assert_eq!(vectors, expected, "sorted by index although the fake reverses `data`");
    assert_eq!((fake.requests().len(), fake.inputs_embedded()), (1, 3));

    // Same words, same vector; shared words, close vectors.
    let again = client.embed(&texts(&["shipping take long does how"])).await.unwrap();
    assert!((cosine(&again[0], &vectors[0]) - 1.0).abs() < 1e-6);
    assert!(cosine(&vectors[0], &vectors[2]) > cosine(&vectors[0], &vectors[1]));
}

#[tokio::test]
async fn embeddings_request_body_and_bearer_header() {
    let fake = FakeEmbeddings::start_with_token(TOKEN).await;
    endpoint(&fake.url(), TOKEN).embed(&texts(&["Return policy", "Opening hours"])).await.unwrap();
    let seen = fake.requests().pop().unwrap();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(
        seen.body,
        json!({"model": MODEL, "input": ["Return policy", "Opening hours"], "encoding_format": "float"})
    );
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(seen.header("api-key"), None);
    assert!(seen.header("content-type").unwrap().starts_with("application/json"));

    // A full endpoint URL is taken as it is; no token, no header.
    let open = FakeEmbeddings::start().await;
    endpoint(&format!("{}/embeddings", open.url()), "").embed(&texts(&["hi"])).await.unwrap();
    let seen = open.requests().pop().unwrap();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!((seen.header("authorization"), seen.header("api-key")), (None, None));
}

#[tokio::test]
async fn embeddings_batches_of_at_most_128() {
    let fake = FakeEmbeddings::start().await;
    let inputs: Vec<String> = (0..300).map(|i| format!("question number {i} word{i}")).collect();
    let vectors = endpoint(&fake.url(), "").embed(&inputs).await.unwrap();
    assert_eq!(vectors.len(), 300);
    for (text, vector) in inputs.iter().zip(&vectors) {
        assert_eq!(vector, &embed_like_fake(text), "{text}: order kept across batches");
    }
    let sizes: Vec<usize> = fake.requests().iter().map(|s| s.inputs().len()).collect();
    assert_eq!(sizes, [BATCH, BATCH, 300 - 2 * BATCH]);
    let sent: Vec<String> = fake.requests().iter().flat_map(|s| s.inputs()).collect();
    assert_eq!(sent, inputs, "batches in order, sequentially");
    assert_eq!(fake.inputs_embedded(), 300);
}

#[tokio::test]
async fn embeddings_blank_inputs_go_as_a_space() {
    let fake = FakeEmbeddings::start().await;
    let vectors = endpoint(&fake.url(), "").embed(&texts(&["", "Return policy", "  \n"])).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert_eq!(fake.requests()[0].inputs(), [" ", "Return policy", " "], "OpenAI refuses empty strings");
    assert_eq!(vectors[0], vectors[2]);
}

#[tokio::test]
async fn embeddings_nothing_to_embed_sends_nothing() {
    let fake = FakeEmbeddings::start().await;
    assert!(endpoint(&fake.url(), "").embed(&[]).await.unwrap().is_empty());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn embeddings_azure_api_key_header() {
    let fake = FakeEmbeddings::start_with_token(TOKEN).await;
    let client = endpoint(&fake.azure_url("emb-small"), TOKEN);
    assert!(!client.space().contains("api-version") && !client.space().contains(TOKEN), "{}", client.space());
    let vectors = client.embed(&texts(&["Return policy"])).await.unwrap();
    assert_eq!(vectors, [embed_like_fake("Return policy")]);
    let seen = fake.requests().pop().unwrap();
    assert_eq!(seen.path, "/openai/deployments/emb-small/embeddings?api-version=2024-10-21");
    assert_eq!(seen.header("api-key"), Some(TOKEN));
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn embeddings_retry_after_429_then_500() {
    let fake = FakeEmbeddings::start().await;
    // A long own backoff: only honouring `Retry-After: 0` makes this quick.
    let client = EmbeddingEndpoint::new(http(), &fake.url(), "", MODEL).unwrap().with_backoff(Duration::from_secs(10));
    fake.fail_next(1, Failure::rate_limited(0));
    let started = Instant::now();
    assert_eq!(client.embed(&texts(&["a b"])).await.unwrap(), [embed_like_fake("a b")]);
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    assert_eq!(fake.requests().len(), 2);

    fake.clear_requests();
    fake.fail_next(1, Failure::status(500));
    fake.fail_next(1, Failure::status(502));
    let vectors = endpoint(&fake.url(), "").embed(&texts(&["c d"])).await.unwrap();
    assert_eq!(vectors, [embed_like_fake("c d")]);
    assert_eq!(fake.requests().len(), 3, "two server errors, then the answer");
}

#[tokio::test]
async fn embeddings_give_up_after_four_attempts() {
    let fake = FakeEmbeddings::start().await;
    fake.fail_next(4, Failure::status(503));
    let e = endpoint_error(endpoint(&fake.url(), "").embed(&texts(&["x"])).await.unwrap_err());
    assert_eq!(
        e,
        EndpointError::Http {
            status: 503,
            message: "Our servers are currently overloaded. Please try again later.".into()
        }
    );
    assert_eq!(fake.requests().len(), 4);
    assert_eq!(fake.inputs_embedded(), 0);

    // A proxy's HTML page: its start is the message.
    fake.clear_requests();
    fake.fail_next(4, Failure::status(504));
    let e = endpoint_error(endpoint(&fake.url(), "").embed(&texts(&["x"])).await.unwrap_err());
    assert!(
        matches!(&e, EndpointError::Http { status: 504, message } if message.contains("504 Gateway Timeout")),
        "{e}"
    );
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn embeddings_client_errors_are_not_retried() {
    let fake = FakeEmbeddings::start().await;
    fake.fail_next(1, Failure::quota());
    let e = endpoint_error(endpoint(&fake.url(), "").embed(&texts(&["x"])).await.unwrap_err());
    assert!(matches!(&e, EndpointError::Http { status: 429, message } if message.contains("quota")), "{e}");
    assert_eq!(fake.requests().len(), 1, "a spent quota is not retried");

    fake.clear_requests();
    fake.fail_next(1, Failure::answer(404, r#"{"error":{"message":"The model `x` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#));
    let e = endpoint_error(endpoint(&fake.url(), "").embed(&texts(&["x"])).await.unwrap_err());
    assert!(matches!(&e, EndpointError::Http { status: 404, message } if message.contains("does not exist")), "{e}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn embeddings_401_fails_at_once_without_the_token() {
    let fake = FakeEmbeddings::start_with_token(TOKEN).await;
    let wrong = "sk-wrong-token-fedcba9876543210";
    let started = Instant::now();
    let error = endpoint(&fake.url(), wrong).embed(&texts(&["x"])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.requests().len(), 1, "no retry on 401");
    let message: Value = serde_json::from_str(INVALID_KEY).unwrap();
    let message = message["error"]["message"].as_str().unwrap().to_string();
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(shown.contains(&message), "the API's message: {shown}");
        assert!(!shown.contains(wrong) && !shown.contains(TOKEN), "a token shows in {shown}");
    }
    assert_eq!(endpoint_error(error), EndpointError::Http { status: 401, message });

    // Azure's shape of the same refusal.
    let e = endpoint_error(endpoint(&fake.azure_url("emb"), wrong).embed(&texts(&["x"])).await.unwrap_err());
    assert!(matches!(&e, EndpointError::Http { status: 401, message } if message.starts_with("Access denied")), "{e}");
}

#[tokio::test]
async fn embeddings_dead_port_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = endpoint(&format!("http://{addr}/v1"), TOKEN);
    let started = Instant::now();
    let e = endpoint_error(client.embed(&texts(&["x"])).await.unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(&e, EndpointError::Transport(reason) if !reason.contains("http://")), "{e}");
    assert!(!format!("{e} {e:?}").contains(TOKEN));
}

#[tokio::test]
async fn embeddings_malformed_answers() {
    let fake = FakeEmbeddings::start().await;
    fake.fail_next(1, Failure::Short);
    let e = endpoint_error(endpoint(&fake.url(), "").embed(&texts(&["a", "b"])).await.unwrap_err());
    assert!(matches!(&e, EndpointError::Malformed(what) if what.contains("1 embeddings for 2 inputs")), "{e}");
    assert_eq!(fake.requests().len(), 1, "a broken answer is not retried");

    let cases = [
        (r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[]}],"model":"m"}"#, "empty"),
        (r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1e39]}],"model":"m"}"#, "finite"),
        (r#"{"object":"list","data":[{"object":"embedding","index":3,"embedding":[1.0]}],"model":"m"}"#, "indices"),
        ("<html>maintenance</html>", "not JSON"),
    ];
    for (body, what) in cases {
        fake.fail_next(1, Failure::answer(200, body));
        let e = endpoint_error(endpoint(&fake.url(), "").embed(&texts(&["a"])).await.unwrap_err());
        assert!(matches!(&e, EndpointError::Malformed(m) if m.contains(what)), "{body}: {e}");
    }

    // Batches of different dimensions cannot be used together.
    fake.fail_next(1, Failure::Normal);
    fake.fail_next(
        1,
        Failure::answer(
            200,
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}],"model":"m"}"#,
        ),
    );
    let mut inputs: Vec<String> = (0..BATCH).map(|i| format!("w{i}")).collect();
    inputs.push("last".into());
    let e = endpoint_error(endpoint(&fake.url(), "").embed(&inputs).await.unwrap_err());
    assert!(matches!(&e, EndpointError::Malformed(m) if m.contains("2 dimensions, others 64")), "{e}");
}

#[tokio::test]
async fn embeddings_fake_follows_the_contract() {
    let fake = FakeEmbeddings::start_with_token(TOKEN).await;
    let http = crate::support::http();
    let post = |url: String, body: Value| http.post(url).bearer_auth(TOKEN).json(&body).send();

    let response =
        post(format!("{}/embeddings", fake.url()), json!({"model": MODEL, "input": ["a", "b c"]})).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], MODEL);
    assert_eq!(answer["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let indices: Vec<u64> = answer["data"].as_array().unwrap().iter().map(|d| d["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [1, 0], "reversed, so clients must sort");
    assert_eq!(answer["data"][0]["object"], "embedding");
    assert_eq!(answer["data"][0]["embedding"].as_array().unwrap().len(), 64);

    let response =
        post(format!("{}/embeddings", fake.url()), json!({"model": MODEL, "input": ["a", ""]})).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), INVALID_INPUT);

    let response = http.post(format!("{}/embeddings", fake.url())).json(&json!({"model": MODEL, "input": "a"})).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.unwrap(), INVALID_KEY);

    let no_version = format!("http://{}/openai/deployments/emb/embeddings", fake.addr);
    assert_eq!(post(no_version, json!({"input": "a"})).await.unwrap().status(), 404);
    assert_eq!(fake.inputs_embedded(), 2, "only the answered inputs count");
}
