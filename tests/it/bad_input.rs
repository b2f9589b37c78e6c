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

/// `aia_refused_total{reason}` as the process's recorder has it now (test servers share it).
fn refused(reason: &str) -> f64 {
    let key = format!("aia_refused_total{{reason=\"{reason}\"}}");
    aia_chat::metrics::handle()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Reads until the server closes the connection (or 5 s pass): what it sent, and when it closed.
async fn until_closed(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> (String, std::time::Instant) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), std::time::Instant::now()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("not closed within 5 s; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// Slow-loris: a request head sent a byte at a time, a connection that sends nothing and a
/// body that never finishes are each cut at their deadline (the body with 408
/// `request_timeout`), and counted; a prompt request is served all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_are_cut_at_their_deadlines() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    let (heads, bodies) = (refused("head_timeout"), refused("body_timeout"));
    let app = TestApp::spawn_with(|s| {
        s.head_timeout = Duration::from_secs(1);
        s.body_timeout = Duration::from_secs(1);
    })
    .await;

    // A head a byte every 100 ms: closed after about a second, unanswered.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    let (mut rd, mut wr) = slow.split();
    let dribble = async {
        for b in b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await;
    };
    let (got, closed) = tokio::select! {
        closed = until_closed(&mut rd) => closed,
        () = dribble => unreachable!(),
    };
    let after = closed - opened;
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(4), "cut after {after:?}");
    assert!(!got.contains("200 OK"), "{got}");

    // Nothing at all: closed the same way.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    let (_, closed) = until_closed(&mut silent).await;
    assert!(closed - opened >= Duration::from_millis(900), "cut after {:?}", closed - opened);

    // A webhook body that stops after 10 of its 100 bytes: 408, then closed.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /api/webhook HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"event\":").await.unwrap();
    let sent = Instant::now();
    let healthy = app.get("/healthz", None).await;
    assert_eq!(healthy.status(), 200, "a prompt request is served meanwhile");
    let (got, closed) = until_closed(&mut slow).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"request_timeout\""), "{got}");
    assert!(closed - sent >= Duration::from_millis(900), "answered after {:?}", closed - sent);

    assert!(refused("head_timeout") >= heads + 2.0, "both slow heads are counted");
    assert!(refused("body_timeout") > bodies, "the slow body is counted");
}
