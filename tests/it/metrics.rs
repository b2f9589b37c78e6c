//! Prometheus metrics from the real binary: they move with the traffic the test makes, stay
//! off the public port, and carry no secret and no message text. The scrape is kept for
//! `promtool check metrics` (scripts/test).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::LoggingServer;
use crate::graphql_fake::{FakeShop, hotel_faqs};
use crate::model_fake::{FakeModel, text_stream};
use crate::support::{ADMIN_PASSWORD, canary, connect_ws, http, sign_in};

const PAGED: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";
const ORIGIN: &str = "http://localhost:8080";

/// The samples of a scrape, by `name{labels}` exactly as written.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect()
}

async fn scrape(url: &str) -> String {
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    r.text().await.unwrap()
}

/// Waits until the sample `key` has `want` (metrics are recorded just after the frames go out).
async fn expect(url: &str, key: &str, want: f64) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(url).await;
        let got = samples(&text);
        if got.get(key) == Some(&want) {
            return got;
        }
        assert!(Instant::now() < deadline, "{key} is {:?}, not {want}:\n{text}", got.get(key));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_traffic_and_stay_off_the_public_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut server = LoggingServer::start(&["--metrics-addr", &metrics_addr, "--sessions-per-minute", "3"]);
    let listening = server.wait_for("metrics at");
    assert_eq!(listening["addr"], metrics_addr.as_str(), "{listening}");
    let url = format!("http://{metrics_addr}/metrics");
    let base = server.base.clone();
    let ws_url = format!("{}/ws?clientUid=demo", base.replace("http://", "ws://"));

    // Never on the public port.
    let public = http().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);

    // Knowledge and fallback answers from one socket.
    let message = canary("metrics canary question 5d1c9e: where is my order?");
    let mut a = connect_ws(&ws_url, Some(ORIGIN)).await.unwrap();
    a.hello(None).await;
    a.ask("k1", "How long does shipping take?").await;
    a.ask("f1", &message).await;
    expect(&url, r#"aia_answers_total{client="demo",source="knowledge"}"#, 1.0).await;
    expect(&url, r#"aia_answers_total{client="demo",source="fallback"}"#, 1.0).await;
    expect(&url, r#"aia_sockets_open{client="demo"}"#, 1.0).await;

    // A model answer: its first token, its tokens, and a training run through the admin API.
    let model = FakeModel::start(vec![text_stream(Duration::from_millis(20))]).await;
    let shop = FakeShop::start(hotel_faqs(3)).await;
    let token = canary("sk-metrics-canary-8a2f41");
    let out = crate::support::cli(
        server.dir.path(),
        &[
            "client",
            "set",
            "demo",
            &format!("model_url={}", model.base()),
            &format!("model_token={token}"),
            &format!("graphql_url={}", shop.url("/graphql")),
            &format!("graphql_query={PAGED}"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = sign_in(&base, "admin", ADMIN_PASSWORD).await;
    // The server loads the change within its reload interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin.call(reqwest::Method::POST, "/api/admin/clients/demo/training", json!({})).await;
        if status == 200 || status == 202 {
            break;
        }
        assert!(status == 409 && Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expect(&url, r#"aia_training_runs_total{client="demo",outcome="ok"}"#, 1.0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = connect_ws(&ws_url, Some(ORIGIN)).await.unwrap();
    b.hello(None).await;
    loop {
        let (_, answer) = b.ask(&format!("m{}", deadline.elapsed().as_nanos()), "Do you have a sauna?").await;
        if answer["source"] == "model" {
            break;
        }
        assert!(Instant::now() < deadline, "no model answer: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = expect(&url, r#"aia_answers_total{client="demo",source="model"}"#, 1.0).await;
    assert_eq!(got[r#"aia_model_first_token_seconds_count{client="demo"}"#], 1.0);
    assert_eq!(got[r#"aia_reply_seconds_count{client="demo",source="model"}"#], 1.0);
    assert_eq!(got[r#"aia_model_tokens_total{client="demo",kind="prompt"}"#], 25.0);
    assert_eq!(got[r#"aia_model_tokens_total{client="demo",kind="completion"}"#], 4.0);
    assert_eq!(got[r#"aia_sockets_open{client="demo"}"#], 2.0);
    assert_eq!(got[r#"aia_training_duration_seconds_count{client="demo",outcome="ok"}"#], 1.0);

    // A third new session is allowed, the fourth refused (3 a minute).
    let mut c = connect_ws(&ws_url, Some(ORIGIN)).await.unwrap();
    c.hello(None).await;
    let mut d = connect_ws(&ws_url, Some(ORIGIN)).await.unwrap();
    d.send(json!({"type": "hello", "v": 1})).await;
    assert_eq!(d.next_of("error").await["code"], "rate_limited");
    expect(&url, r#"aia_rate_limited_total{limit="sessions"}"#, 1.0).await;

    // Webhooks by outcome.
    let hook = http().post(format!("{base}/api/webhook/no-such-client")).body("{}").send().await.unwrap();
    assert_eq!(hook.status(), 404);
    expect(&url, r#"aia_webhook_deliveries_total{outcome="unknown_client"}"#, 1.0).await;
    // Cut before it is read, by its declared length, and counted.
    let big = http().post(format!("{base}/api/webhook")).body(vec![b' '; 300 * 1024]).send().await.unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(big.json::<serde_json::Value>().await.unwrap()["error"]["code"], "too_large");
    expect(&url, r#"aia_webhook_deliveries_total{outcome="too_large"}"#, 1.0).await;

    // Sockets that close leave the gauge.
    drop((a, c, d));
    let got = expect(&url, r#"aia_sockets_open{client="demo"}"#, 1.0).await;
    assert_eq!(got[r#"aia_messages_total{client="demo",direction="in"}"#], 3.0);
    assert!(got[r#"aia_messages_total{client="demo",direction="out"}"#] >= 3.0);
    assert_eq!(got[r#"aia_outbox_pending{queue="operator"}"#], 0.0);
    assert_eq!(got[r#"aia_outbox_pending{queue="tasks"}"#], 0.0);

    let text = scrape(&url).await;
    assert!(!text.contains(&token) && !text.contains(&message), "a secret or a message text in the metrics");
    for line in text.lines().filter(|l| l.starts_with("# HELP aia_")) {
        assert!(line.len() > "# HELP aia_x ".len() + 10, "every metric says what it counts: {line}");
    }
    // For `promtool check metrics` in scripts/test.
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("metrics.prom"), &text).unwrap();
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_default_metrics_address_is_a_warning_and_an_explicit_one_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["serve", "--addr", "127.0.0.1:0", "--metrics-addr", &addr])
        .env("AIA_DATA_DIR", dir.path())
        .env_remove("AIA_DATABASE_URL")
        .env_remove("AIA_SECRET_KEY")
        .env_remove("AIA_REDIS_URL")
        .output()
        .unwrap();
    crate::support::keep_output("metrics-taken", &out);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&format!("error: binding the metrics address {addr}")), "{text}");

    let bad = crate::support::cli(dir.path(), &["serve", "--metrics-addr", "everywhere"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("'everywhere' is not an address like 127.0.0.1:9315, or off"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
