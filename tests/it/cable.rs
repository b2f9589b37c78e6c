//! Operator replies without a public URL: with `operator_cable` on, the server listens on the
//! fake Chatwoot's ActionCable as the handed-off contact. Nothing is posted to our webhook in
//! these tests: every reply the visitor sees came over the cable or its catch-up.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::chatwoot_fake::FakeChatwoot;
use crate::support::{TestApp, Ws};

async fn until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn next_message(ws: &mut Ws) -> serde_json::Value {
    ws.next_of("message").await["message"].clone()
}

#[tokio::test]
async fn replies_arrive_over_actioncable_once_even_across_a_dropped_connection() {
    let fake = FakeChatwoot::start().await;
    let app = TestApp::spawn().await;
    let mut pairs = fake.client_settings();
    pairs.push("operator_cable=on".into());
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let (mut ws, _) = app.visitor(None).await;
    ws.send(json!({"type": "handoff"})).await;
    assert!(next_message(&mut ws).await["text"].as_str().unwrap().contains("person from our team"));
    until(Duration::from_secs(5), "the hand-off", || fake.conversations().iter().any(|c| c.status == "open")).await;
    let conversation = fake.conversations()[0].id;
    until(Duration::from_secs(5), "the subscription", || fake.cable_subscriptions() == 1).await;

    let _ = fake.agent_writes(conversation, "Hi, Sam here. How can I help?");
    let reply = next_message(&mut ws).await;
    assert_eq!(
        (reply["role"].as_str(), reply["text"].as_str()),
        (Some("operator"), Some("Hi, Sam here. How can I help?"))
    );
    assert!(reply["operator"]["name"].as_str().is_some_and(|n| n.contains("Sam")), "the agent's name: {reply}");

    // The connection drops; what the agent writes meanwhile arrives after the reconnection,
    // once, and the earlier reply is not repeated.
    fake.cable_drop();
    let _ = fake.agent_writes(conversation, "Are you still there?");
    until(Duration::from_secs(10), "the reconnection", || {
        fake.cable_connections() >= 2 && fake.cable_subscriptions() == 1
    })
    .await;
    let missed = next_message(&mut ws).await;
    assert_eq!((missed["role"].as_str(), missed["text"].as_str()), (Some("operator"), Some("Are you still there?")));
    let _ = fake.agent_writes(conversation, "Live again.");
    assert_eq!(next_message(&mut ws).await["text"], "Live again.", "nothing repeated before it");

    // Resolved over the cable: the bot is back and the room is left.
    let _ = fake.agent_sets_status(conversation, "resolved");
    let back = next_message(&mut ws).await;
    assert!(back["text"].as_str().unwrap().contains("assistant is here again"), "{back}");
    until(Duration::from_secs(5), "leaving the room", || fake.cable_subscriptions() == 0).await;
    let (_, answer) = ws.ask("c1", "How long does shipping take?").await;
    assert_eq!(answer["role"], "assistant");
    assert!(fake.seen().iter().all(|r| r.path != "/api/webhook"), "no webhook involved");
}
