//! The streaming model client against the fake OpenAI-compatible server over loopback:
//! deltas arrive as they are written, the right credentials are sent, and every failure of
//! the contract ends in a typed error within the time the product promises, retried only
//! when that can help and nothing has reached the visitor yet.

use std::time::{Duration, Instant};

use aia_chat::clients::UpstreamPolicy;
use aia_chat::model::chat::{FinishReason, StreamError, Usage};
use aia_chat::model::client::{ModelError, Timeouts, stream_chat};
use aia_chat::model::endpoint::{Provider, chat_endpoint};
use serde_json::json;

use crate::model_fake::{
    FakeModel, Script, anthropic_error, anthropic_overloaded, anthropic_text, anthropic_tool, azure_stream, error,
    error_body, quota, text_pieces, text_stream, tool_stream,
};

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(1),
        first_token: Duration::from_millis(800),
        idle: Duration::from_millis(400),
        retry_budget: Duration::from_secs(2),
    }
}

/// Streams from the fake; returns the deltas with the time each arrived, and the result.
async fn ask(
    fake: &FakeModel,
    token: &str,
    t: Timeouts,
) -> (Vec<(Duration, String)>, Result<aia_chat::model::chat::Completion, ModelError>, Duration) {
    let http = aia_chat::outbound::streaming_client(UpstreamPolicy::default(), t.connect);
    let endpoint = chat_endpoint(Provider::OpenAi, &fake.base(), token).unwrap();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Do you ship to Austria?"}], "stream": true});
    let started = Instant::now();
    let mut deltas = Vec::new();
    let result = stream_chat(&http, &endpoint, &body, &t, |d| deltas.push((started.elapsed(), d.to_string()))).await;
    (deltas, result, started.elapsed())
}

#[tokio::test]
async fn deltas_arrive_as_they_are_written() {
    let fake = FakeModel::start(vec![text_stream(Duration::from_millis(150))]).await;
    let (deltas, result, total) = ask(&fake, "sk-test", timeouts()).await;
    let c = result.unwrap();
    assert_eq!(
        (c.text.as_str(), c.finish, c.usage),
        ("Yes, we do.", FinishReason::Stop, Some(Usage { prompt_tokens: 25, completion_tokens: 4 }))
    );
    let texts: Vec<&str> = deltas.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(texts, ["Yes, we", " do."]);
    assert!(
        deltas[0].0 + Duration::from_millis(400) < total,
        "the first delta came long before the end: {deltas:?} {total:?}"
    );
    let seen = &fake.seen()[0];
    assert_eq!(seen.headers["authorization"], "Bearer sk-test");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    // A local server without a token gets no Authorization header at all.
    let fake = FakeModel::start(vec![text_stream(Duration::ZERO)]).await;
    ask(&fake, "", timeouts()).await.1.unwrap();
    assert!(!fake.seen()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn refused_credentials_and_quota_are_not_retried() {
    let fake = FakeModel::start(vec![error(401)]).await;
    let (_, result, _) = ask(&fake, "sk-wrong", timeouts()).await;
    assert!(
        matches!(result, Err(ModelError::Unauthorized { status: 401, ref message }) if message.starts_with("Incorrect API key"))
    );
    assert_eq!(fake.seen().len(), 1);
    let fake = FakeModel::start(vec![quota()]).await;
    assert!(matches!(ask(&fake, "k", timeouts()).await.1, Err(ModelError::Quota { status: 429, .. })));
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_within_the_budget() {
    let limited =
        Script::Status(429, vec![("retry-after-ms", "120".into()), ("retry-after", "1".into())], error_body(429));
    let fake = FakeModel::start(vec![limited, error(500), error(502), text_stream(Duration::ZERO)]).await;
    let (_, result, total) = ask(&fake, "k", timeouts()).await;
    assert_eq!(result.unwrap().text, "Yes, we do.");
    assert_eq!(fake.seen().len(), 4, "429, 500, 502, then the answer");
    assert!(total >= Duration::from_millis(120), "retry-after-ms was honoured: {total:?}");
    // A server that asks for longer than the budget: fall back now, not later.
    let long = Script::Status(429, vec![("retry-after", "30".into())], "{}".into());
    let fake = FakeModel::start(vec![long, text_stream(Duration::ZERO)]).await;
    let (_, result, total) = ask(&fake, "k", timeouts()).await;
    assert!(matches!(result, Err(ModelError::RateLimited { .. })));
    assert!(total < Duration::from_millis(500), "{total:?}");
    // A provider that keeps failing: the error comes within the budget of the first failure.
    let fake = FakeModel::start(vec![error(503)]).await;
    let (_, result, total) = ask(&fake, "k", timeouts()).await;
    assert!(matches!(result, Err(ModelError::Http { status: 503, .. })));
    assert!(total < timeouts().retry_budget + Duration::from_millis(300), "{total:?}");
    assert!(fake.seen().len() >= 3, "retried with backoff: {}", fake.seen().len());
}

#[tokio::test]
async fn broken_and_silent_streams_end_in_time() {
    // An error event after text reached the visitor: reported, not retried.
    let mut pieces = text_pieces(Duration::ZERO);
    pieces.truncate(2);
    pieces.push((Duration::ZERO, b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n".to_vec()));
    let fake = FakeModel::start(vec![Script::Stream(pieces.clone()), text_stream(Duration::ZERO)]).await;
    let (deltas, result, _) = ask(&fake, "k", timeouts()).await;
    assert_eq!(deltas.len(), 1);
    assert!(matches!(result, Err(ModelError::Stream(StreamError::Upstream { .. }))));
    assert_eq!(fake.seen().len(), 1, "text was forwarded: no retry");
    // The connection drops mid-answer.
    pieces.truncate(2);
    let fake = FakeModel::start(vec![Script::Stream(pieces)]).await;
    assert_eq!(ask(&fake, "k", timeouts()).await.1, Err(ModelError::Stream(StreamError::Truncated)));
    // Headers, then silence: the first-token timeout ends it (then the budget stops retries).
    let fake = FakeModel::start(vec![Script::Stall]).await;
    let t = Timeouts { retry_budget: Duration::ZERO, ..timeouts() };
    let (_, result, total) = ask(&fake, "k", t).await;
    assert!(matches!(result, Err(ModelError::Timeout { .. })), "{result:?}");
    assert!(total >= t.first_token && total < t.first_token + Duration::from_millis(300), "{total:?}");
    // Text, then silence longer than the idle timeout.
    let mut stalling = text_pieces(Duration::ZERO);
    stalling[2].0 = Duration::from_secs(5);
    let fake = FakeModel::start(vec![Script::Stream(stalling)]).await;
    let (deltas, result, total) = ask(&fake, "k", t).await;
    assert_eq!(deltas.len(), 1);
    assert!(matches!(result, Err(ModelError::Timeout { phase: "silent between tokens", .. })), "{result:?}");
    assert!(total < t.idle + Duration::from_millis(300), "{total:?}");
}

/// Asks over the visitor's socket; returns the deltas and the stored answer.
async fn ask_streamed(ws: &mut crate::support::Ws, id: &str, text: &str) -> (Vec<String>, serde_json::Value) {
    ws.send(json!({"type": "message", "id": id, "text": text})).await;
    let seq = ws.next_of("ack").await["seq"].clone();
    let mut deltas = Vec::new();
    loop {
        let f = ws.next().await.expect("socket open");
        match f["type"].as_str() {
            Some("delta") if f["replyTo"] == seq => deltas.push(f["text"].as_str().unwrap().to_string()),
            Some("message") if f["message"]["replyTo"] == seq => return (deltas, f["message"].clone()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_client_with_a_model_streams_grounded_answers_and_falls_back() {
    let fake = FakeModel::start(vec![text_stream(Duration::from_millis(30)), error(401)]).await;
    let app = crate::support::TestApp::spawn().await;
    // Canary values in every secret setting: none may reach a prompt.
    let model_url = format!("model_url={}", fake.base());
    app.set_client(
        "demo",
        &[
            &model_url,
            "model_token=sk-canary-model-7f3a",
            "graphql_headers={\"Authorization\": \"Bearer canary-graphql-51c2\"}",
            "operator_token=canary-operator-93d1",
            "trello_key=canary-trello-key-44e0",
            "trello_token=canary-trello-token-0b9e",
        ],
    )
    .await;
    let mut ws = app.connect("demo", Some("http://localhost:8080")).await.unwrap();
    let page = json!({"url": "http://localhost:8080/lamps/arc?ref=mail#top", "title": "Arc lamps", "lang": "de-AT"});
    ws.send(json!({"type": "hello", "v": 1, "page": page})).await;
    let welcome = ws.next_of("welcome").await;
    let session = welcome["session"].as_str().unwrap().to_string();

    let (deltas, answer) = ask_streamed(&mut ws, "m1", "How long does shipping take?").await;
    assert_eq!(deltas, ["Yes, we", " do."]);
    assert_eq!((answer["text"].as_str(), answer["source"].as_str()), (Some("Yes, we do."), Some("model")));
    let seen = fake.seen();
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-canary-model-7f3a");
    let body = seen[0].body.to_string();
    for canary in ["sk-canary-model-7f3a", "canary-graphql-51c2", "canary-operator-93d1", "canary-trello"] {
        assert!(!body.contains(canary), "{canary} reached the model");
    }
    let system = seen[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("Standard delivery takes 2–4 working days"),
        "the retrieved FAQ is in the prompt: {system}"
    );
    assert!(
        system.contains("<page>title: Arc lamps; address: http://localhost:8080/lamps/arc; language: de-AT</page>"),
        "the page is in the prompt, without its query: {system}"
    );
    assert_eq!(seen[0].body["messages"].as_array().unwrap().last().unwrap()["content"], "How long does shipping take?");
    assert_eq!(seen[0].body["model"], "gpt-4o-mini");
    assert_eq!(seen[0].body["max_tokens"], 800, "a local server gets max_tokens");
    assert!(seen[0].body.get("max_completion_tokens").is_none(), "never both");

    // The model refuses the token: the visitor still gets the built-in answer, the earlier
    // turn goes along as conversation, and the history holds only final messages.
    let (deltas, answer) = ask_streamed(&mut ws, "m2", "How much does shipping cost?").await;
    assert!(deltas.is_empty());
    assert_eq!((answer["source"].as_str(), answer["entryId"].as_str()), (Some("knowledge"), Some("shipping-cost")));
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("model error") && show.contains("(HTTP 401): Incorrect API key provided"), "{show}");
    assert!(!show.contains("sk-canary-model-7f3a"), "{show}");
    let second = &fake.seen()[1].body["messages"];
    assert_eq!(second[1], json!({"role": "user", "content": "How long does shipping take?"}));
    assert_eq!(second[2], json!({"role": "assistant", "content": "Yes, we do."}));
    let (_again, welcome) = app.visitor(Some(&session)).await;
    let texts: Vec<&str> = welcome["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[1], "Yes, we do.");
}

#[tokio::test]
async fn tool_calls_are_answered_and_the_model_goes_on() {
    let fake = FakeModel::start(vec![tool_stream(), text_stream(Duration::ZERO)]).await;
    let app = crate::support::TestApp::spawn().await;
    app.set_client("demo", &[&format!("model_url={}", fake.base())]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ask_streamed(&mut ws, "m1", "Do you have red kettles?").await;
    assert_eq!((answer["text"].as_str(), answer["source"].as_str()), (Some("Yes, we do."), Some("model")));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let tools: Vec<&str> =
        seen[0].body["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["search_products", "handoff_to_human", "create_task"]);
    assert_eq!(seen[0].body["tool_choice"], "auto");
    let messages = seen[1].body["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(
        messages[n - 2],
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_k3t7Qm2", "type": "function",
            "function": {"name": "search_products", "arguments": "{\"query\": \"red kettle\"}"}}]})
    );
    assert_eq!(messages[n - 1]["role"], "tool");
    assert_eq!(messages[n - 1]["tool_call_id"], "call_k3t7Qm2");
    let result: serde_json::Value = serde_json::from_str(messages[n - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["error"], "not_configured", "an honest answer until product search exists");
}

#[tokio::test]
async fn token_budgets_hand_over_to_the_built_in_answers() {
    let fake = FakeModel::start(vec![text_stream(Duration::ZERO)]).await;
    let app = crate::support::TestApp::spawn().await;
    let url = format!("model_url={}", fake.base());
    app.set_client("demo", &[&url, "model_daily_token_budget=30"]).await;
    let (mut ws, _) = app.visitor(None).await;
    // The fake reports 25 + 4 tokens an answer: two answers fit under 30, the third does not.
    for (id, expected) in [("a", "model"), ("b", "model"), ("c", "knowledge")] {
        let (_, answer) = ask_streamed(&mut ws, id, "How long does shipping take?").await;
        assert_eq!(answer["source"], expected, "answer {id}");
    }
    assert_eq!(fake.seen().len(), 2, "the model is not called past the budget");
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("model use today      2 answers, 50 prompt + 8 completion tokens (budget 30)"), "{show}");

    // The session cap: a new visitor gets one model answer under a cap of 20, then built-in ones.
    app.set_client("demo", &["model_daily_token_budget=1000000", "model_session_token_cap=20"]).await;
    let (mut other, _) = app.visitor(None).await;
    let (_, first) = ask_streamed(&mut other, "a", "How long does shipping take?").await;
    let (_, second) = ask_streamed(&mut other, "b", "How long does shipping take?").await;
    assert_eq!((first["source"].as_str(), second["source"].as_str()), (Some("model"), Some("knowledge")));

    // The address cap: this address has used 3 × 29 tokens today; under a cap of 100 a fresh
    // session gets one more model answer, then built-in ones.
    app.set_client("demo", &["model_session_token_cap=1000000", "model_ip_token_cap=100"]).await;
    let (mut third, _) = app.visitor(None).await;
    let (_, first) = ask_streamed(&mut third, "a", "How long does shipping take?").await;
    let (_, second) = ask_streamed(&mut third, "b", "How long does shipping take?").await;
    assert_eq!((first["source"].as_str(), second["source"].as_str()), (Some("model"), Some("knowledge")));
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_left_alone_for_a_while() {
    // A provider that answers garbage: every answer fails at once (nothing to retry).
    let garbage = Script::Stream(vec![(Duration::ZERO, b"data: <html>oops</html>\n\n".to_vec())]);
    let fake = FakeModel::start(vec![garbage]).await;
    let app = crate::support::TestApp::spawn().await;
    app.set_client("demo", &[&format!("model_url={}", fake.base())]).await;
    let (mut ws, _) = app.visitor(None).await;
    for id in ["a", "b", "c", "d", "e"] {
        let (deltas, answer) = ask_streamed(&mut ws, id, "How long does shipping take?").await;
        assert!(deltas.is_empty());
        assert_eq!((answer["source"].as_str(), answer["entryId"].as_str()), (Some("knowledge"), Some("shipping-time")));
    }
    assert_eq!(fake.seen().len(), 3, "after three failures in a row the model is not called");
}

/// Streams from the fake as an Anthropic client would.
async fn ask_anthropic(
    fake: &FakeModel,
    t: Timeouts,
) -> (Vec<String>, Result<aia_chat::model::chat::Completion, ModelError>) {
    let http = aia_chat::outbound::streaming_client(UpstreamPolicy::default(), t.connect);
    let endpoint = chat_endpoint(Provider::Anthropic, &fake.base(), "sk-ant-test").unwrap();
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], "stream": true});
    let mut deltas = Vec::new();
    let result = stream_chat(&http, &endpoint, &body, &t, |d| deltas.push(d.to_string())).await;
    (deltas, result)
}

#[tokio::test]
async fn anthropic_failures_follow_the_same_rules() {
    let fake = FakeModel::start(vec![anthropic_error(401)]).await;
    let (_, result) = ask_anthropic(&fake, timeouts()).await;
    assert!(
        matches!(result, Err(ModelError::Unauthorized { status: 401, ref message }) if message == "invalid x-api-key")
    );
    let seen = &fake.seen()[0];
    assert_eq!((seen.path.as_str(), seen.headers["x-api-key"].to_str().unwrap()), ("/v1/messages", "sk-ant-test"));
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(!seen.headers.contains_key("authorization"));
    // Overloaded (529) and rate limited (429, retry-after 1 s) are retried within the budget.
    let fake = FakeModel::start(vec![anthropic_error(529), anthropic_error(429), anthropic_text(Duration::ZERO)]).await;
    let started = Instant::now();
    let (deltas, result) = ask_anthropic(&fake, timeouts()).await;
    assert_eq!(
        (deltas.concat(), result.unwrap().usage),
        ("Yes, we do.".into(), Some(Usage { prompt_tokens: 25, completion_tokens: 4 }))
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "retry-after was honoured");
    assert_eq!(fake.seen().len(), 3);
    // An error event after text reached the visitor: reported, not retried.
    let fake = FakeModel::start(vec![anthropic_overloaded(), anthropic_text(Duration::ZERO)]).await;
    let (deltas, result) = ask_anthropic(&fake, timeouts()).await;
    assert_eq!(deltas, ["Yes, we"]);
    assert!(
        matches!(result, Err(ModelError::Stream(StreamError::Upstream { kind: Some(ref k), .. })) if k == "overloaded_error")
    );
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn an_anthropic_model_answers_with_tools_over_the_socket() {
    let fake = FakeModel::start(vec![anthropic_tool(), anthropic_text(Duration::from_millis(20))]).await;
    let app = crate::support::TestApp::spawn().await;
    let url = format!("model_url={}", fake.base());
    app.set_client("demo", &["model_provider=anthropic", &url, "model_token=sk-ant-canary-2b7d"]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (deltas, answer) = ask_streamed(&mut ws, "m1", "Do you have red kettles? How long does shipping take?").await;
    let expected = "Let me search the catalogue.\n\nYes, we do.";
    assert_eq!(deltas.concat(), expected, "the rounds' texts are kept apart");
    assert_eq!((answer["text"].as_str(), answer["source"].as_str()), (Some(expected), Some("model")));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.path, "/v1/messages");
    assert_eq!(first.headers["x-api-key"], "sk-ant-canary-2b7d");
    assert_eq!(first.headers["anthropic-version"], "2023-06-01");
    assert_eq!(first.body["model"], "claude-haiku-4-5", "Anthropic's default model");
    assert_eq!((first.body["max_tokens"].as_u64(), first.body["stream"].as_bool()), (Some(800), Some(true)));
    assert!(first.body["system"].as_str().unwrap().contains("Standard delivery takes 2–4 working days"));
    assert!(!first.body.to_string().contains("sk-ant-canary"));
    let tools: Vec<&str> =
        first.body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["search_products", "handoff_to_human", "create_task"]);
    assert_eq!(first.body["tools"][0]["input_schema"]["required"], json!(["query"]));
    assert_eq!(
        first.body["messages"],
        json!([{"role": "user", "content": "Do you have red kettles? How long does shipping take?"}])
    );
    let messages = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me search the catalogue."},
            {"type": "tool_use", "id": "toolu_01Abc", "name": "search_products", "input": {"query": "red kettle", "max_price": 40}}
        ]})
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(messages[2]["content"][0]["type"], "tool_result");
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "toolu_01Abc");
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("1 answers, 427 prompt + 65 completion tokens"), "{show}");
}

#[tokio::test]
async fn azure_deployments_get_their_key_header_and_first_chunk() {
    let fake = FakeModel::start(vec![azure_stream()]).await;
    let app = crate::support::TestApp::spawn().await;
    let url = format!("model_url=http://{}/openai/deployments/gpt4o-shop?api-version=2024-10-21", fake.addr);
    app.set_client("demo", &[&url, "model_token=az-canary-1c4f"]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (deltas, answer) = ask_streamed(&mut ws, "m1", "Do you ship to Austria?").await;
    assert_eq!((deltas.concat().as_str(), answer["text"].as_str()), ("Yes, we do.", Some("Yes, we do.")));
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/openai/deployments/gpt4o-shop/chat/completions?api-version=2024-10-21");
    assert_eq!(seen.headers["api-key"], "az-canary-1c4f");
    assert!(!seen.headers.contains_key("authorization"));
    assert_eq!(seen.body["max_completion_tokens"], 800, "Azure takes the new field");
}

#[tokio::test]
async fn a_resent_message_never_costs_a_second_model_answer() {
    let fake = FakeModel::start(vec![text_stream(Duration::from_millis(10))]).await;
    let app = crate::support::TestApp::spawn().await;
    app.set_client("demo", &[&format!("model_url={}", fake.base())]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ask_streamed(&mut ws, "same", "How long does shipping take?").await;
    assert_eq!(answer["source"], "model");
    ws.send(json!({"type": "message", "id": "same", "text": "How long does shipping take?"})).await;
    assert_eq!(ws.next_of("ack").await["duplicate"], true);
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await.unwrap()["type"], "pong", "no second answer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.seen().len(), 1, "the model was asked once");
}

/// The real-model server's script and its built cache, if this machine has them
/// (`shared/tools/real-model`, STACK.md): `AIA_REAL_MODEL` names the script, else the
/// project's sibling `shared` folder is looked in.
fn real_model() -> Option<std::path::PathBuf> {
    let script = std::env::var_os("AIA_REAL_MODEL").map(std::path::PathBuf::from).or_else(|| {
        [concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools/real-model"), "/work/shared/tools/real-model"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
    })?;
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("AIA_REAL_MODEL_CACHE").unwrap_or_else(|_| {
        let base = std::env::var("XDG_CACHE_HOME").unwrap_or(format!("{home}/.cache"));
        format!("{base}/aia-real-model")
    });
    let built = std::path::Path::new(&cache).join("venv/bin/python").exists()
        && std::path::Path::new(&cache).join("model.gguf").exists();
    built.then_some(script)
}

/// End to end against a real OpenAI-compatible server nobody here wrote (llama.cpp's, with a
/// tiny instruct model): its own streaming, timing and tool handling. Runs when the server
/// has been built on this machine (`shared/tools/real-model` once, about 5 minutes); says so
/// when it is skipped.
#[tokio::test]
async fn a_real_model_server_answers_end_to_end() {
    let Some(script) = real_model() else {
        eprintln!("skipped: the real-model server is not built here (run shared/tools/real-model once)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    /// Stops the server however the test ends (the script `exec`s it, so the pid is its).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Killed(
        std::process::Command::new("bash")
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}/v1");
    let started = Instant::now();
    loop {
        let ready = crate::support::http().get(format!("{base}/models")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the real-model server did not start");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let app = crate::support::TestApp::spawn().await;
    let url = format!("model_url={base}");
    app.set_client("demo", &[&url, "model_type=smollm2", "model_max_tokens=40", "model_first_token_timeout=60"]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (deltas, answer) = ask_streamed(&mut ws, "m1", "How long does shipping take?").await;
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert_eq!(answer["source"], "model", "{answer} {show}");
    let text = answer["text"].as_str().unwrap();
    assert!(!text.is_empty() && !deltas.is_empty(), "{deltas:?}");
    assert_eq!(deltas.concat().trim(), text, "the pieces make the stored answer");
    assert!(show.contains("model use today      1 answers"), "usage is counted: {show}");
}

#[tokio::test]
async fn a_server_without_tool_support_is_asked_again_without_tools() {
    // vLLM started without a tool parser (contract §8.2).
    let refused = Script::Status(
        400,
        Vec::new(),
        r#"{"error":{"message":"\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set","type":"BadRequestError","param":null,"code":400}}"#.into(),
    );
    let fake = FakeModel::start(vec![refused, text_stream(Duration::ZERO)]).await;
    let app = crate::support::TestApp::spawn().await;
    app.set_client("demo", &[&format!("model_url={}", fake.base())]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ask_streamed(&mut ws, "m1", "How long does shipping take?").await;
    assert_eq!((answer["text"].as_str(), answer["source"].as_str()), (Some("Yes, we do."), Some("model")));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].body.get("tools").is_some());
    assert!(seen[1].body.get("tools").is_none() && seen[1].body.get("tool_choice").is_none());
}
