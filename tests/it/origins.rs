//! The origin rules table, row by row, on the public config endpoint and the socket.

use crate::support::TestApp;

#[tokio::test]
async fn origin_rules_on_both_endpoints() {
    let app = TestApp::spawn().await;
    let out = app.cli(&["client", "add", "shop"]);
    assert!(out.status.success(), "{out:?}");
    let out = app.cli(&["client", "set", "shop", "allowed_domains=shop.com, *.shop.com, Bücher.example."]);
    assert!(out.status.success(), "{out:?}");
    wait_for_domains(&app).await;

    let rows: &[(Option<&str>, u16)] = &[
        (Some("https://shop.com"), 200),
        (Some("http://shop.com"), 200),
        (Some("https://shop.com:8443"), 200),
        (Some("https://SHOP.COM"), 200),
        (Some("https://shop.com."), 200),
        (Some("https://a.b.shop.com"), 200),
        (Some("https://www.shop.com"), 200),
        (Some("https://xn--bcher-kva.example"), 200),
        (Some("https://evilshop.com"), 403),
        (Some("https://shop.com.evil.net"), 403),
        (Some("https://shop.com@evil.net"), 403),
        (Some("https://evil.net/shop.com"), 403),
        (Some("null"), 403),
        (None, 403),
    ];
    for (origin, expected) in rows {
        let config = app.get("/api/data/ai_chat_bot?clientUid=shop", *origin).await;
        assert_eq!(config.status().as_u16(), *expected, "config, origin {origin:?}");
        let allow = config.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());
        if *expected == 200 {
            assert_eq!(allow.as_deref(), *origin, "CORS for the allowed origin only");
        }
        let body: serde_json::Value = config.json().await.unwrap();
        let socket = app.connect("shop", *origin).await;
        match (expected, socket) {
            (200, Ok(_)) => assert!(body["socketUrl"].as_str().unwrap().ends_with("/ws")),
            (403, Err((status, err))) => {
                assert_eq!(status, 403, "socket, origin {origin:?}");
                let code = if origin.is_some() { "forbidden_origin" } else { "origin_required" };
                assert_eq!(err["error"]["code"], code);
                assert_eq!(body["error"]["code"], code);
            }
            (_, other) => panic!("socket, origin {origin:?}: unexpected {:?}", other.err()),
        }
    }

    // An empty list accepts no browser origin; `*` accepts any.
    let out = app.cli(&["client", "add", "closed"]);
    assert!(out.status.success());
    let out = app.cli(&["client", "show", "closed"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("allowed_domains is empty"));
    let out = app.cli(&["client", "add", "open"]);
    assert!(out.status.success());
    app.cli(&["client", "set", "open", "allowed_domains=*"]);
    for _ in 0..50 {
        if app.state.registry.get("open").is_some_and(|c| !c.origins.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/api/data/ai_chat_bot?clientUid=closed", Some("http://localhost")).await.status(), 403);
    assert_eq!(app.get("/api/data/ai_chat_bot?clientUid=open", Some("https://any.example")).await.status(), 200);
    assert_eq!(app.get("/api/data/ai_chat_bot?clientUid=nobody", Some("http://localhost")).await.status(), 404);
    assert_eq!(app.get("/api/data/ai_chat_bot", Some("http://localhost")).await.status(), 400);

    // A browser's same-origin request carries no Origin: the server's own host is checked.
    let same_origin = |host: &str| {
        crate::support::http()
            .get(format!("{}/api/data/ai_chat_bot?clientUid=demo", app.base))
            .header("host", host)
            .header("sec-fetch-site", "same-origin")
            .send()
    };
    assert_eq!(same_origin("localhost:3015").await.unwrap().status(), 200);
    assert_eq!(same_origin("evil.example").await.unwrap().status(), 403);
    let (status, body) = app.connect("nobody", Some("http://localhost")).await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (404, "unknown_client"));
}

async fn wait_for_domains(app: &TestApp) {
    for _ in 0..100 {
        if app.state.registry.get("shop").is_some_and(|c| !c.origins.is_empty()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the server never saw the new allowed_domains");
}
