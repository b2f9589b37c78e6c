//! `/api/webhook` as Chatwoot calls it: signed bodies posted over HTTP to the real server, the
//! visitor's socket watching. The session's link to its Chatwoot conversation is planted in the
//! store, as a delivered hand-off leaves it.

use aia_chat::ids::token_hash;
use aia_chat::operator::signature::sign;
use aia_chat::store::{HandoffState, OperatorLink};
use serde_json::{Value, json};

use crate::support::{TestApp, Ws, http};

const SECRET: &str = "inbox-secret-24chars-xyz";
const SOURCE: &str = "aia-s-webhook-test";
const CONVERSATION: i64 = 311;

/// A visitor of the demo client whose conversation is with Chatwoot (conversation 311).
async fn handed_off(app: &TestApp) -> (Ws, i64) {
    app.set_client(
        "demo",
        &[
            "operator_url=http://chatwoot.example",
            &format!("operator_webhook_secret={SECRET}"),
            "operator_account_id=2",
            "operator_inbox_id=7",
        ],
    )
    .await;
    let (ws, welcome) = app.visitor(None).await;
    let client = app.state.registry.get("demo").unwrap().row.id;
    let token = welcome["session"].as_str().unwrap();
    let session = app.state.store.session_find(client, &token_hash(token)).await.unwrap().unwrap().id;
    let link = OperatorLink {
        session_id: session,
        client_id: client,
        source_id: SOURCE.into(),
        contact_id: Some(1204),
        conversation_id: Some(CONVERSATION),
        state: HandoffState::Waiting,
        handoffs: 1,
        updated_at: 1,
    };
    app.state.store.operator_link_save(&link).await.unwrap();
    (ws, session)
}

fn conversation() -> Value {
    json!({
        "id": CONVERSATION, "inbox_id": 7, "status": "open", "channel": "Channel::Api",
        "account": {"id": 2, "name": "Example Support"},
        "contact_inbox": {"id": 880, "contact_id": 1204, "inbox_id": 7, "source_id": SOURCE, "hmac_verified": false},
        "messages": []
    })
}

/// An agent's reply, the contract's §5.4 shape.
fn agent_reply(id: i64, text: &str) -> Value {
    json!({
        "event": "message_created", "id": id, "content": text, "content_type": "text",
        "content_attributes": {}, "additional_attributes": {}, "message_type": "outgoing", "private": false,
        "source_id": null, "created_at": "2026-06-17T09:12:03.418Z",
        "sender": {"id": 5, "name": "Sam Agent", "email": "sam@support.example", "type": "user"},
        "inbox": {"id": 7, "name": "AI assistant"}, "account": {"id": 2, "name": "Example Support"},
        "conversation": conversation(),
    })
}

fn now() -> i64 {
    aia_chat::ids::now_ms() / 1000
}

/// Posts `body` as Chatwoot does: exact bytes, delivery id, timestamp and signature.
async fn post(app: &TestApp, path: &str, body: &Value, secret: Option<&str>, delivery: &str, ts: i64) -> (u16, Value) {
    let bytes = body.to_string();
    let mut req = http()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("x-chatwoot-delivery", delivery);
    if let Some(secret) = secret {
        let ts = ts.to_string();
        req =
            req.header("x-chatwoot-timestamp", &ts).header("x-chatwoot-signature", sign(secret, &ts, bytes.as_bytes()));
    }
    let resp = req.body(bytes).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn link_state(app: &TestApp, session: i64) -> HandoffState {
    app.state.store.operator_link(session).await.unwrap().unwrap().state
}

#[tokio::test]
async fn an_operator_reply_reaches_the_visitor_live_once() {
    let app = TestApp::spawn().await;
    let (mut ws, session) = handed_off(&app).await;
    let reply = agent_reply(90230, "Hi, I'm Sam from billing. I've refunded the duplicate charge.");
    let (status, body) = post(&app, "/api/webhook", &reply, Some(SECRET), "d-1", now()).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("delivered")), "{body}");
    let m = ws.next_of("message").await["message"].clone();
    assert_eq!((m["role"].as_str(), m["text"].as_str()), (Some("operator"), reply["content"].as_str()));
    assert_eq!(m["operator"], json!({"name": "Sam Agent"}));
    assert!(m.get("clientId").is_none(), "internal ids stay inside: {m}");
    assert_eq!(link_state(&app, session).await, HandoffState::Human, "a person has it now");

    // The same delivery again, and the same message in a new delivery: nothing new.
    let (status, body) = post(&app, "/api/webhook", &reply, Some(SECRET), "d-1", now()).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("duplicate delivery")));
    let (status, body) = post(&app, "/api/webhook/demo", &reply, Some(SECRET), "d-2", now()).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("already delivered")));

    // Typing is relayed; a private note and our own echo are not shown.
    let typing = json!({"event": "conversation_typing_on", "is_private": false,
        "user": {"id": 5, "name": "Sam Agent", "type": "user"}, "conversation": conversation()});
    assert_eq!(post(&app, "/api/webhook", &typing, Some(SECRET), "d-3", now()).await.0, 200);
    let t = ws.next_of("typing").await;
    assert_eq!((t["role"].as_str(), t["on"].as_bool()), (Some("operator"), Some(true)));
    let mut note = agent_reply(90231, "internal: customer is grumpy");
    note["private"] = json!(true);
    let mut echo = agent_reply(90232, "our own post");
    echo["source_id"] = json!("aia-m-7");
    for (i, body) in [note, echo].iter().enumerate() {
        let (status, r) = post(&app, "/api/webhook", body, Some(SECRET), &format!("d-4{i}"), now()).await;
        assert_eq!(status, 200, "{r}");
    }
    // A template (satisfaction survey) with an integer message type: a system notice.
    let mut survey = agent_reply(90233, "Please rate the conversation: https://chat.example/survey/responses/abc");
    survey["message_type"] = json!(3);
    survey["content_type"] = json!("input_csat");
    assert_eq!(post(&app, "/api/webhook", &survey, Some(SECRET), "d-5", now()).await.0, 200);
    let notice = ws.next_of("message").await["message"].clone();
    assert_eq!((notice["role"].as_str(), notice["text"].as_str()), (Some("system"), survey["content"].as_str()));

    // Resolved: the bot has it again, and the visitor is told.
    let resolved = json!({"event": "conversation_status_changed", "changed_attributes": null,
        "id": CONVERSATION, "inbox_id": 7, "status": "resolved", "account": {"id": 2},
        "contact_inbox": {"source_id": SOURCE, "inbox_id": 7}});
    assert_eq!(post(&app, "/api/webhook", &resolved, Some(SECRET), "d-6", now()).await.0, 200);
    let back = ws.next_of("message").await["message"].clone();
    assert_eq!(back["role"], "system");
    assert!(back["text"].as_str().unwrap().contains("assistant is here again"), "{back}");
    assert_eq!(link_state(&app, session).await, HandoffState::Bot);

    // Everything shown was stored: a new socket of the session replays it, private note excluded.
    let (page, _) = app.state.store.messages_page(session, None, 50).await.unwrap();
    let texts: Vec<&str> = page.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("grumpy") || t.contains("own post")), "{texts:?}");
}

#[tokio::test]
async fn forged_stale_unsigned_and_foreign_webhooks_are_refused() {
    let app = TestApp::spawn().await;
    let (_ws, session) = handed_off(&app).await;
    let reply = agent_reply(1, "hello");
    let code = |r: &(u16, Value)| (r.0, r.1["error"]["code"].as_str().unwrap_or_default().to_string());

    let forged = post(&app, "/api/webhook", &reply, Some("not-the-secret"), "f-1", now()).await;
    assert_eq!(code(&forged), (401, "bad_signature".into()), "{forged:?}");
    let stale = post(&app, "/api/webhook", &reply, Some(SECRET), "f-2", now() - 600).await;
    assert_eq!(code(&stale), (401, "bad_signature".into()));
    assert!(stale.1["error"]["message"].as_str().unwrap().contains("5 minutes"), "{stale:?}");
    let unsigned = post(&app, "/api/webhook", &reply, None, "f-3", now()).await;
    assert_eq!(code(&unsigned), (401, "bad_signature".into()));
    assert!(unsigned.1["error"]["message"].as_str().unwrap().contains("not signed"), "{unsigned:?}");

    // Well signed, but about somebody else's account, inbox, conversation or contact.
    let mut other_account = reply.clone();
    other_account["account"]["id"] = json!(3);
    let mut other_inbox = reply.clone();
    other_inbox["inbox"]["id"] = json!(8);
    let mut other_conversation = reply.clone();
    other_conversation["conversation"]["id"] = json!(999);
    let mut other_contact = reply.clone();
    other_contact["conversation"]["contact_inbox"]["source_id"] = json!("aia-s-someone-else");
    for (i, body) in [other_account, other_inbox, other_conversation, other_contact].iter().enumerate() {
        let r = post(&app, "/api/webhook", body, Some(SECRET), &format!("f-4{i}"), now()).await;
        assert_eq!(code(&r), (422, "not_this_client".into()), "case {i}: {r:?}");
    }
    let garbage = post(&app, "/api/webhook", &json!("not an object"), Some(SECRET), "f-5", now()).await;
    assert_eq!(code(&garbage), (400, "invalid_webhook".into()));
    assert!(app.state.store.messages_page(session, None, 50).await.unwrap().0.is_empty(), "nothing stored");

    // Unsigned is accepted only where the admin allowed it (Chatwoot older than 4.13).
    app.set_client("demo", &["operator_allow_unsigned_webhooks=on"]).await;
    let allowed = post(&app, "/api/webhook", &reply, None, "f-6", now()).await;
    assert_eq!(allowed.0, 200, "{allowed:?}");

    // Too big: refused before anything reads it.
    let big = json!({"event": "message_created", "content": "x".repeat(300 * 1024)});
    assert_eq!(post(&app, "/api/webhook", &big, Some(SECRET), "f-7", now()).await.0, 413);
}

#[tokio::test]
async fn a_shared_secret_on_the_shared_route_names_the_per_client_url() {
    let app = TestApp::spawn().await;
    let (mut ws, _) = handed_off(&app).await;
    assert!(app.cli(&["client", "add", "shop-2"]).status.success());
    app.set_client("shop-2", &["operator_url=http://chatwoot.example", &format!("operator_webhook_secret={SECRET}")])
        .await;
    let reply = agent_reply(5, "Hello from the per-client URL");
    let (status, body) = post(&app, "/api/webhook", &reply, Some(SECRET), "a-1", now()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("ambiguous_client")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("/api/webhook/{clientUid}"), "{body}");
    let (status, body) = post(&app, "/api/webhook/demo", &reply, Some(SECRET), "a-2", now()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ws.next_of("message").await["message"]["text"], "Hello from the per-client URL");
    let (status, _) = post(&app, "/api/webhook/shop-2", &reply, Some(SECRET), "a-3", now()).await;
    assert_eq!(status, 422, "shop-2 has no such conversation");
    let (status, _) = post(&app, "/api/webhook/nobody", &reply, Some(SECRET), "a-4", now()).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn out_of_order_deliveries_and_another_clients_secret() {
    let app = TestApp::spawn().await;
    let (mut ws, session) = handed_off(&app).await;
    assert!(app.cli(&["client", "add", "shop-2"]).status.success());
    app.set_client("shop-2", &["operator_url=http://chatwoot.example", "operator_webhook_secret=shop-2-secret"]).await;

    // Signed with the other client's secret: not demo's call, and not about shop-2's chats.
    let reply = agent_reply(90250, "Signed by the wrong shop");
    let (status, body) = post(&app, "/api/webhook/demo", &reply, Some("shop-2-secret"), "o-1", now()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("bad_signature")), "{body}");
    let (status, body) = post(&app, "/api/webhook", &reply, Some("shop-2-secret"), "o-2", now()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("not_this_client")), "{body}");

    // The newer reply first, then the older one: both shown, each once.
    for (id, text, delivery) in [(90242, "Second", "o-3"), (90241, "First", "o-4")] {
        let (status, body) = post(&app, "/api/webhook", &agent_reply(id, text), Some(SECRET), delivery, now()).await;
        assert_eq!((status, body["result"].as_str()), (200, Some("delivered")), "{body}");
        assert_eq!(ws.next_of("message").await["message"]["text"], text);
    }
    // Resolved, then a reply written before the resolve arrives late: shown, but the bot
    // keeps the conversation.
    let resolved = json!({"event": "conversation_status_changed", "changed_attributes": null,
        "id": CONVERSATION, "inbox_id": 7, "status": "resolved", "account": {"id": 2},
        "contact_inbox": {"source_id": SOURCE, "inbox_id": 7}});
    assert_eq!(post(&app, "/api/webhook", &resolved, Some(SECRET), "o-5", now()).await.0, 200);
    assert_eq!(ws.next_of("message").await["message"]["role"], "system");
    let late = agent_reply(90243, "Anything else?");
    assert_eq!(post(&app, "/api/webhook", &late, Some(SECRET), "o-6", now()).await.0, 200);
    assert_eq!(ws.next_of("message").await["message"]["text"], "Anything else?");
    assert_eq!(link_state(&app, session).await, HandoffState::Bot, "the bot still has it");
    let (_, answer) = ws.ask("o7", "How long does shipping take?").await;
    assert_eq!(answer["role"], "assistant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_flood_from_one_address_is_throttled_before_its_bodies_are_read() {
    let app = TestApp::spawn().await;
    // 100 a second with a burst of 300: 700 at once cannot all pass.
    let url = format!("{}/api/webhook/demo", app.base);
    let sends = (0..700).map(|_| crate::support::http().post(&url).body(r#"{"event":"message_created"}"#).send());
    let responses = futures_util::future::join_all(sends).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.as_ref().unwrap().status().as_u16()).collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 100, "{limited} of 700 refused");
    assert!(statuses.iter().all(|s| *s == 429 || *s == 401), "refused as unsigned otherwise: {statuses:?}");
    let refused = responses.into_iter().map(Result::unwrap).find(|r| r.status() == 429).unwrap();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}
