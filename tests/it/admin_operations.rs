//! The Operations page's API: a training run started by an admin and followed to its end in the
//! history, token use per day, and an undelivered operator item retried; all of it only for the
//! admins of the client.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::graphql_fake::{FakeShop, hotel_faqs};
use crate::support::{ADMIN_PASSWORD, TestApp};

const PAGED: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_trains_and_sees_the_run_in_the_history() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (status, body) = admin.call(Method::POST, "/api/admin/clients/demo/training", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("training_not_configured")));

    let shop = FakeShop::start(hotel_faqs(7)).await;
    let url = shop.url("/graphql");
    app.set_client("demo", &[&format!("graphql_url={url}"), &format!("graphql_query={PAGED}"), "chunk_size=3"]).await;
    let (status, body) = admin.call(Method::POST, "/api/admin/clients/demo/training", json!({})).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let training = loop {
        let (_, t) = admin.get("/api/admin/clients/demo/training").await;
        if t["runs"].as_array().is_some_and(|r| !r.is_empty()) {
            break t;
        }
        assert!(Instant::now() < deadline, "no finished run: {t:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run = &training["runs"][0];
    assert_eq!(
        (run["owner"].as_str(), run["entries"].as_i64(), run["pages"].as_i64()),
        (Some("admin:admin"), Some(7), Some(3))
    );
    assert!(run["error"].is_null());
    assert_eq!(training["status"]["running"], false);
    assert_eq!(training["status"]["entryCount"], 7);

    // A failing source: the run is in the history with its reason.
    app.set_client("demo", &["graphql_url=http://127.0.0.1:9/graphql"]).await;
    assert_eq!(admin.call(Method::POST, "/api/admin/clients/demo/training", json!({})).await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, t) = admin.get("/api/admin/clients/demo/training").await;
        if t["runs"].as_array().unwrap().len() == 2 {
            assert!(!t["runs"][0]["error"].as_str().unwrap().is_empty(), "{t:#}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed run: {t:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn usage_per_day_and_undelivered_items_with_retry() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (status, usage) = admin.get("/api/admin/clients/demo/usage").await;
    assert_eq!(status, 200);
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 14);
    let today = &aia_chat::realtime::protocol::rfc3339_ms(aia_chat::ids::now_ms())[..10];
    assert_eq!(days[0]["day"], today, "newest first");
    assert_eq!(days[0]["totalTokens"], 0);

    // An item Chatwoot never took (made directly: the operator flow is tested elsewhere).
    let store = &app.state.store;
    let client = app.state.registry.get("demo").unwrap().row.id;
    let session = store.session_create(client, "hash-ops", "c_ops", 1).await.unwrap();
    let item = store.outbox_push(client, session.id, "handoff", "{}", 1).await.unwrap();
    store.outbox_dead(item, 2, "Chatwoot answered 404: inbox not found").await.unwrap();
    let (_, outbox) = admin.get("/api/admin/clients/demo/outbox").await;
    let dead: &Value = &outbox["deadLetters"][0];
    assert_eq!((dead["id"].as_i64(), dead["kind"].as_str()), (Some(item), Some("handoff")));
    assert_eq!(dead["lastError"], "Chatwoot answered 404: inbox not found");

    let owner = app.add_client_admin("owner", "owner-password-1", &["other"]);
    assert!(!owner.status.success(), "no such client yet");
    assert!(app.cli(&["client", "add", "other"]).status.success());
    let add = app.add_client_admin("owner", "owner-password-1", &["other"]);
    assert!(add.status.success());
    let owner = app.admin("owner", "owner-password-1").await;
    for path in ["/api/admin/clients/demo/outbox", "/api/admin/clients/demo/usage", "/api/admin/clients/demo/training"]
    {
        assert_eq!(owner.get(path).await.0, 404, "{path}: another shop's operations");
    }
    let retry = format!("/api/admin/clients/demo/outbox/{item}/retry");
    assert_eq!(owner.request(Method::POST, &retry).send().await.unwrap().status(), 404);

    let r = admin.request(Method::POST, &retry).send().await.unwrap();
    assert_eq!(r.status(), 204);
    // The relay takes it at once; the demo has no Chatwoot, so it is given up again, later.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, outbox) = admin.get("/api/admin/clients/demo/outbox").await;
        match outbox["deadLetters"].as_array().unwrap().first() {
            Some(d) if d["deadAt"] != "1970-01-01T00:00:00.002Z" => {
                assert!(d["lastError"].as_str().unwrap().contains("operator_url"), "{d}");
                break;
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "the retry was not attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown = admin.request(Method::POST, "/api/admin/clients/demo/outbox/999999/retry").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_listed_searched_and_read_by_their_admins_only() {
    let app = TestApp::spawn().await;
    let (mut ws, _) = app.visitor(None).await;
    ws.ask("q1", "How long does shipping take?").await;
    let (mut other, _) = app.visitor(None).await;
    other.ask("q2", "Are returns free?").await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;

    let (status, list) = admin.get("/api/admin/clients/demo/conversations").await;
    assert_eq!(status, 200);
    let rows = list["conversations"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list:#}");
    assert_eq!(rows[0]["firstQuestion"], "Are returns free?", "newest activity first");
    assert_eq!((rows[1]["messages"].as_i64(), rows[1]["handoff"].is_null()), (Some(2), true));
    let (_, found) = admin.get("/api/admin/clients/demo/conversations?q=SHIPPING").await;
    assert_eq!(found["conversations"].as_array().unwrap().len(), 1);
    let id = found["conversations"][0]["conversationId"].as_str().unwrap().to_string();
    let (_, none) = admin.get("/api/admin/clients/demo/conversations?q=teleport").await;
    assert!(none["conversations"].as_array().unwrap().is_empty());

    let (status, t) = admin.get(&format!("/api/admin/clients/demo/conversations/{id}")).await;
    assert_eq!(status, 200);
    let roles: Vec<&str> = t["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["visitor", "assistant"]);
    assert!(t["messages"][1]["text"].as_str().unwrap().contains("working day"), "{t:#}");
    assert_eq!(t["visitor"]["verified"], false);
    let (status, _) = admin.get("/api/admin/clients/demo/conversations/c_nothing").await;
    assert_eq!(status, 404);
    let page = admin.request(Method::GET, "/admin/clients/demo/conversations?q=shipping").send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("How long does shipping take?") && !html.contains("Are returns free?"), "{html}");

    assert!(app.cli(&["client", "add", "other"]).status.success());
    let add = app.add_client_admin("owner", "owner-password-1", &["other"]);
    assert!(add.status.success());
    let owner = app.admin("owner", "owner-password-1").await;
    assert_eq!(owner.get("/api/admin/clients/demo/conversations").await.0, 404, "another shop's conversations");
    assert_eq!(owner.get(&format!("/api/admin/clients/demo/conversations/{id}")).await.0, 404);
    assert_eq!(
        owner.get(&format!("/api/admin/clients/other/conversations/{id}")).await.0,
        404,
        "not through another client"
    );
    let page = owner.request(Method::GET, "/admin/clients/demo/conversations").send().await.unwrap();
    assert_eq!(page.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_past_their_retention_are_deleted_and_newer_ones_kept() {
    let app = TestApp::spawn_with(|s| s.retention_interval = Duration::from_millis(200)).await;
    let (mut ws, _) = app.visitor(None).await;
    ws.ask("n1", "Are returns free?").await;
    // A conversation from 40 days ago.
    let store = &app.state.store;
    let client = app.state.registry.get("demo").unwrap().row.id;
    let long_ago = aia_chat::ids::now_ms() - 40 * 86_400_000;
    let old = store.session_create(client, "hash-old", "c_old", long_ago).await.unwrap();
    let message = aia_chat::store::NewMessage {
        session_id: old.id,
        role: aia_chat::store::Role::Visitor,
        text: "An old question".into(),
        client_msg_id: Some("o1".into()),
        reply_to: None,
        source: None,
        entry_id: None,
        created_at: long_ago,
        usage: None,
        author: None,
        attachments: Vec::new(),
        products: Vec::new(),
    };
    store.message_insert(&message).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.session_by_conversation(client, "c_old").await.unwrap().is_some(), "kept while retention is 0");

    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (status, view) =
        admin.call(Method::PATCH, "/api/admin/clients/demo", json!({"settings": {"retention_days": "30"}})).await;
    assert_eq!(status, 200, "{view}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.session_by_conversation(client, "c_old").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the old conversation was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, list) = admin.get("/api/admin/clients/demo/conversations").await;
    let rows = list["conversations"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list:#}");
    assert_eq!(rows[0]["firstQuestion"], "Are returns free?", "the recent one stays");
}
