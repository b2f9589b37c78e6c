//! Bad input and abuse: each gets an error frame with a stable code, and the connection stays
//! usable where that makes sense; nothing panics and the server keeps serving.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestApp, connect_ws_with};

async fn expect_error(ws: &mut crate::support::Ws, code: &str) {
    let f = ws.next_of("error").await;
    assert_eq!(f["code"], code, "{f}");
}

#[tokio::test]
async fn bad_frames_get_stable_codes_and_the_socket_stays_usable() {
    let app = TestApp::spawn().await;
    let mut ws = app.connect("demo", Some("http://localhost")).await.unwrap();

    ws.send(json!({"type": "message", "id": "early", "text": "hi"})).await;
    expect_error(&mut ws, "hello_required").await;
    ws.send_raw(Message::Text("{not json".into())).await;
    expect_error(&mut ws, "bad_json").await;
    ws.send_raw(Message::Text("[1,2]".into())).await;
    expect_error(&mut ws, "bad_json").await;
    ws.send_raw(Message::Text(r#"{"type":"dance"}"#.into())).await;
    expect_error(&mut ws, "unknown_type").await;
    ws.send_raw(Message::Text(r#"{"type":"message","id":5}"#.into())).await;
    expect_error(&mut ws, "invalid_frame").await;
    ws.send_raw(Message::Binary(vec![1u8, 2, 3].into())).await;
    expect_error(&mut ws, "binary_unsupported").await;

    ws.hello(None).await;
    ws.send_raw(Message::Text(r#"{"type":"hello","v":1}"#.into())).await;
    expect_error(&mut ws, "already_hello").await;

    for (text, code) in [
        ("", "empty_message"),
        ("   \n\t ", "empty_message"),
        ("bell\u{7}", "control_characters"),
        ("esc\u{1b}[31m", "control_characters"),
    ] {
        ws.send(json!({"type": "message", "id": "bad", "text": text})).await;
        let f = ws.next_of("error").await;
        assert_eq!((f["code"].as_str().unwrap(), f["id"].as_str()), (code, Some("bad")));
    }
    ws.send(json!({"type": "message", "id": "long", "text": "a".repeat(4001)})).await;
    expect_error(&mut ws, "message_too_long").await;
    ws.send_raw(Message::Text(json!({"type": "message", "id": "bad id!", "text": "x"}).to_string().into())).await;
    expect_error(&mut ws, "invalid_id").await;

    // Over 16 KiB: refused, connection open.
    let big = json!({"type": "message", "id": "big", "text": "b".repeat(20_000)}).to_string();
    ws.send_raw(Message::Text(big.into())).await;
    expect_error(&mut ws, "too_large").await;

    // Still usable after all of that.
    let (_, answer) = ws.ask("ok", "How can I track my order?").await;
    assert_eq!(answer["entryId"], "order-tracking");

    // Over 64 KiB: closed with 1009.
    let huge = "x".repeat(70 * 1024);
    ws.send_raw(Message::Text(huge.into())).await;
    assert_eq!(ws.close_code().await, Some(1009));

    // The server keeps serving.
    let (mut ws, _) = app.visitor(None).await;
    ws.ask("after", "Do you have a showroom?").await;
}

#[tokio::test]
async fn unsupported_version_closes_with_policy() {
    let app = TestApp::spawn().await;
    let mut ws = app.connect("demo", Some("http://localhost")).await.unwrap();
    ws.send_raw(Message::Text(r#"{"type":"hello","v":2}"#.into())).await;
    expect_error(&mut ws, "unsupported_version").await;
    assert_eq!(ws.close_code().await, Some(1008));
}

#[tokio::test]
async fn rate_limits_hold_with_documented_codes() {
    let app = TestApp::spawn_with(|s| {
        s.limits.message_burst = 3;
        s.limits.messages_per_minute = 3;
        s.limits.sockets_per_ip = 4;
        s.limits.sessions_per_minute = 2;
    })
    .await;
    let (mut ws, _) = app.visitor(None).await;
    for i in 0..3 {
        ws.ask(&format!("ok{i}"), "What are your opening hours?").await;
    }
    ws.send(json!({"type": "message", "id": "over", "text": "one more"})).await;
    let f = ws.next_of("error").await;
    assert_eq!((f["code"].as_str().unwrap(), f["id"].as_str()), ("rate_limited", Some("over")));

    // New sessions per IP per minute: the second was used above? one so far; one more is fine.
    let (_ws2, _) = app.visitor(None).await;
    let mut ws3 = app.connect("demo", Some("http://localhost")).await.unwrap();
    ws3.send(json!({"type": "hello", "v": 1})).await;
    assert_eq!(ws3.next_of("error").await["code"], "rate_limited");

    // Sockets per IP: four are open (ws, ws2, ws3 and this one); the fifth is refused.
    let _ws4 = app.connect("demo", Some("http://localhost")).await.unwrap();
    let (status, body) = app.connect("demo", Some("http://localhost")).await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (429, "rate_limited"));
}

#[tokio::test]
async fn per_ip_limits_use_forwarded_for_only_from_trusted_proxies() {
    let url = |app: &TestApp| format!("ws://{}/ws?clientUid=demo", app.addr);
    let origin = Some("http://localhost");
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];

    let app = TestApp::spawn_with(|s| {
        s.limits.sockets_per_ip = 2;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let _a = connect_ws_with(&url(&app), origin, &xff("203.0.113.5")).await.unwrap();
    let _b = connect_ws_with(&url(&app), origin, &xff("198.51.100.1, 203.0.113.5")).await.unwrap();
    let refused = connect_ws_with(&url(&app), origin, &xff("203.0.113.5")).await.err().unwrap();
    assert_eq!(refused.0, 429, "the third socket of the same visitor address");
    let _c = connect_ws_with(&url(&app), origin, &xff("203.0.113.6")).await.unwrap();

    // Without trusted proxies the header is ignored: every socket is the peer's.
    let app = TestApp::spawn_with(|s| s.limits.sockets_per_ip = 2).await;
    let _a = connect_ws_with(&url(&app), origin, &xff("203.0.113.5")).await.unwrap();
    let _b = connect_ws_with(&url(&app), origin, &xff("203.0.113.6")).await.unwrap();
    let refused = connect_ws_with(&url(&app), origin, &xff("203.0.113.7")).await.err().unwrap();
    assert_eq!(refused.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_polling_the_config_and_a_socket_looping_on_history_are_cut_off() {
    let app = TestApp::spawn().await;
    // 120 a minute per address with a burst of 60: a loop of 80 is cut off with the typed error.
    let mut limited = None;
    for i in 0..80 {
        let r = app.get("/api/data/ai_chat_bot?clientUid=demo", Some("http://localhost:8080")).await;
        if r.status() == 429 {
            assert!(i >= 60, "refused after {i} only");
            let body: serde_json::Value = r.json().await.unwrap();
            limited = Some(body["error"]["code"].as_str().unwrap().to_string());
            break;
        }
        assert_eq!(r.status(), 200);
    }
    assert_eq!(limited.as_deref(), Some("rate_limited"));

    // 60 history pages a minute per session with a burst of 20.
    let (mut ws, _) = app.visitor(None).await;
    let mut refused = None;
    for i in 0..30 {
        ws.send(json!({"type": "history", "before": 1_000_000})).await;
        let f = ws.next().await.unwrap();
        if f["type"] == "error" {
            refused = Some((i, f["code"].as_str().unwrap().to_string()));
            break;
        }
        assert_eq!(f["type"], "history", "{f}");
    }
    assert_eq!(refused, Some((20, "rate_limited".to_string())));
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_of("pong").await["type"], "pong", "the socket stays open");
}
