//! The full loop with a person, against the fake Chatwoot on loopback: the visitor asks for a
//! human, the hand-off reaches Chatwoot (contact, conversation, the transcript as a private
//! note, the official bot hand-off), the visitor's next messages go to the agent, the agent's
//! reply comes back through the signed webhook, and resolving gives the bot back. Then an
//! outage: everything waits in the outbox and arrives exactly once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::chatwoot_fake::{FakeChatwoot, FakeConversation, INBOX_SECRET};
use crate::model_fake::{FakeModel, Script, text_stream, tool_stream};
use crate::support::{TestApp, Ws};

async fn operator_app(fake: &FakeChatwoot) -> TestApp {
    let app = TestApp::spawn().await;
    let pairs = fake.client_settings();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    app
}

/// Waits (up to `limit`) until `ok` holds for the fake's state.
async fn eventually<T>(limit: Duration, what: &str, mut ok: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The next stored message frame's message.
async fn next_message(ws: &mut Ws) -> serde_json::Value {
    ws.next_of("message").await["message"].clone()
}

fn open_conversation(fake: &FakeChatwoot) -> Option<FakeConversation> {
    fake.conversations().into_iter().find(|c| c.status == "open")
}

#[tokio::test]
async fn ask_hand_off_reply_resolve_and_the_bot_again() {
    let fake = FakeChatwoot::start().await;
    let app = operator_app(&fake).await;
    let config: serde_json::Value =
        app.get("/api/data/ai_chat_bot?clientUid=demo", Some("http://localhost")).await.json().await.unwrap();
    assert_eq!(config["operator"], true, "the widget may offer a person: {config}");

    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("q1", "How long does shipping take?").await;
    assert_eq!(answer["role"], "assistant");

    // Plain words ask for a person: no bot answer, the visitor is told what happens next.
    ws.send(json!({"type": "message", "id": "q2", "text": "Can I talk to a human please?"})).await;
    let echo = next_message(&mut ws).await;
    assert_eq!((echo["role"].as_str(), echo["clientId"].as_str()), (Some("visitor"), Some("q2")));
    let told = next_message(&mut ws).await;
    assert_eq!(told["role"], "system");
    assert!(told["text"].as_str().unwrap().contains("person from our team"), "{told}");

    // Chatwoot gets a contact (unverified details in attributes), a conversation, the
    // transcript as a private note by the bot, and the official hand-off.
    let conversation =
        eventually(Duration::from_secs(5), "the hand-off at Chatwoot", || open_conversation(&fake)).await;
    assert_eq!(conversation.toggled_by.as_deref(), Some("agent_bot"), "{conversation:?}");
    let contact = fake.contacts().into_iter().find(|c| c.id == conversation.contact_id).expect("the contact");
    assert_eq!(contact.email, None, "never an email the visitor typed");
    let notes = fake.messages(conversation.id);
    let note = notes.iter().find(|m| m.private).expect("the transcript note");
    let text = note.content.as_deref().unwrap();
    assert!(text.contains("Visitor: How long does shipping take?") && text.contains("Can I talk to a human"), "{text}");
    assert!(note.source_id.as_deref().is_some_and(|s| s.starts_with("aia-")), "{note:?}");

    // The visitor's next message goes to the agent, not to the bot.
    ws.send(json!({"type": "message", "id": "q3", "text": "My order 1001 is late."})).await;
    let ack = ws.next_of("ack").await;
    let source = format!("aia-m-{}", ack["seq"]);
    let forwarded = eventually(Duration::from_secs(5), "the forwarded message", || {
        fake.messages(conversation.id).into_iter().find(|m| m.source_id.as_deref() == Some(source.as_str()))
    })
    .await;
    assert_eq!((forwarded.message_type, forwarded.content.as_deref()), (0, Some("My order 1001 is late.")));

    // The visitor's typing shows to the agent (the Client API, as the contact).
    ws.send(json!({"type": "typing", "on": true})).await;
    eventually(Duration::from_secs(5), "the visitor's typing at Chatwoot", || {
        fake.conversation(conversation.id).and_then(|c| c.contact_typing).filter(|on| *on)
    })
    .await;

    // The agent answers; the signed webhook brings it to the visitor live.
    let webhook = format!("{}/api/webhook", app.base);
    let reply = fake.agent_writes(conversation.id, "Hi, I'm Sam. Your parcel left today.");
    let delivered = fake.send_webhook(&webhook, &reply, Some(INBOX_SECRET)).await;
    assert_eq!(delivered.status, Some(200), "{delivered:?}");
    let shown = loop {
        let m = next_message(&mut ws).await;
        if m["role"] == "operator" {
            break m;
        }
        assert_ne!(m["role"], "assistant", "the bot must stay quiet while a person has it: {m}");
    };
    assert_eq!(shown["text"], "Hi, I'm Sam. Your parcel left today.");

    // Resolved: the visitor is told, and the bot answers again.
    let resolved = fake.agent_sets_status(conversation.id, "resolved");
    assert_eq!(fake.send_webhook(&webhook, &resolved, Some(INBOX_SECRET)).await.status, Some(200));
    let back = next_message(&mut ws).await;
    assert!(back["text"].as_str().unwrap().contains("assistant is here again"), "{back}");
    let (_, again) = ws.ask("q4", "Do you ship to Austria?").await;
    assert_eq!(again["role"], "assistant", "{again}");
}

#[tokio::test]
async fn an_outage_delays_the_hand_off_and_every_message_arrives_once() {
    let fake = FakeChatwoot::start().await;
    let app = operator_app(&fake).await;
    let (mut ws, _) = app.visitor(None).await;
    fake.down().await;
    ws.send(json!({"type": "handoff"})).await;
    let told = next_message(&mut ws).await;
    assert!(told["text"].as_str().unwrap().contains("person from our team"), "{told}");
    let mut sources = Vec::new();
    for (i, text) in ["First while you are away.", "Second.", "Third."].iter().enumerate() {
        ws.send(json!({"type": "message", "id": format!("o{i}"), "text": text})).await;
        let ack = ws.next_of("ack").await;
        sources.push(format!("aia-m-{}", ack["seq"]));
    }
    // A resend of the same message during the outage is not forwarded twice.
    ws.send(json!({"type": "message", "id": "o0", "text": "First while you are away."})).await;
    assert_eq!(ws.next_of("ack").await["duplicate"], true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake.conversations().is_empty(), "nothing reached Chatwoot while it was down");
    fake.up().await;
    let conversation =
        eventually(Duration::from_secs(15), "the hand-off after the outage", || open_conversation(&fake)).await;
    let all = eventually(Duration::from_secs(15), "every forwarded message", || {
        let messages = fake.messages(conversation.id);
        sources.iter().all(|s| messages.iter().any(|m| m.source_id.as_deref() == Some(s.as_str()))).then_some(messages)
    })
    .await;
    for s in &sources {
        let n = all.iter().filter(|m| m.source_id.as_deref() == Some(s.as_str())).count();
        assert_eq!(n, 1, "{s} arrived {n} times");
    }
    let texts: Vec<&str> = all.iter().filter(|m| m.message_type == 0).filter_map(|m| m.content.as_deref()).collect();
    assert_eq!(texts, ["First while you are away.", "Second.", "Third."], "in order");
    let show = String::from_utf8(app.cli(&["client", "show", "demo"]).stdout).unwrap();
    assert!(!show.contains("operator failures"), "nothing was lost: {show}");
}

#[tokio::test]
async fn a_refused_hand_off_is_dead_lettered_the_visitor_told_and_the_admin_shown() {
    let fake = FakeChatwoot::start().await;
    let app = operator_app(&fake).await;
    // A wrong token: Chatwoot answers 401, which no retry will fix.
    app.set_client("demo", &["operator_token=not-a-valid-token"]).await;
    let (mut ws, _) = app.visitor(None).await;
    ws.send(json!({"type": "handoff"})).await;
    assert!(next_message(&mut ws).await["text"].as_str().unwrap().contains("person from our team"));
    let sorry = next_message(&mut ws).await;
    assert!(sorry["text"].as_str().unwrap().contains("couldn't reach our team"), "{sorry}");
    let show = String::from_utf8(app.cli(&["client", "show", "demo"]).stdout).unwrap();
    assert!(show.contains("operator failures") && show.contains("1 undelivered"), "{show}");
    assert!(!show.contains("not-a-valid-token"), "{show}");
    // The bot answers again.
    let (_, answer) = ws.ask("d1", "How long does shipping take?").await;
    assert_eq!(answer["role"], "assistant");
}

#[tokio::test]
async fn without_an_operator_the_handoff_frame_is_refused() {
    let app = TestApp::spawn().await;
    let (mut ws, _) = app.visitor(None).await;
    ws.send(json!({"type": "handoff"})).await;
    assert_eq!(ws.next_of("error").await["code"], "no_operator");
    // And "human" is just a word: the bot answers it.
    let (_, answer) = ws.ask("h1", "Can I talk to a human?").await;
    assert_eq!(answer["role"], "assistant");
}

/// The model's `handoff_to_human` call, in the contract's tool-call stream shape.
fn handoff_call() -> Script {
    let Script::Stream(pieces) = tool_stream() else { unreachable!("tool_stream is a stream") };
    let renamed = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap().replace("search_products", "handoff_to_human");
    Script::Stream(pieces.into_iter().map(|(pause, bytes)| (pause, renamed(bytes).into_bytes())).collect())
}

#[tokio::test]
async fn the_model_hands_off_when_a_person_can_take_over() {
    let fake = FakeChatwoot::start().await;
    let model = FakeModel::start(vec![handoff_call(), text_stream(Duration::ZERO)]).await;
    let app = operator_app(&fake).await;
    app.set_client("demo", &[&format!("model_url={}", model.base())]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("m1", "My lamp arrived broken and I want my money back.").await;
    assert_eq!((answer["source"].as_str(), answer["text"].as_str()), (Some("model"), Some("Yes, we do.")));
    let told = next_message(&mut ws).await;
    assert!(told["text"].as_str().unwrap().contains("person from our team"), "{told}");
    let conversation =
        eventually(Duration::from_secs(5), "the hand-off at Chatwoot", || open_conversation(&fake)).await;
    let note = fake.messages(conversation.id).into_iter().find(|m| m.private).expect("the transcript");
    assert!(note.content.unwrap().contains("the assistant decided a person should take over"));
}

/// Only the URL, the token and the inbox: the account comes from the token's profile and the
/// webhook secret from the inbox, so the first webhook is already verified.
#[tokio::test]
async fn the_account_and_the_webhook_secret_are_read_from_chatwoot() {
    let fake = FakeChatwoot::start().await;
    let app = TestApp::spawn().await;
    let pairs: Vec<String> = fake
        .client_settings()
        .into_iter()
        .filter(|p| !p.starts_with("operator_webhook_secret=") && !p.starts_with("operator_account_id="))
        .collect();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (mut ws, _) = app.visitor(None).await;
    ws.send(json!({"type": "handoff"})).await;
    next_message(&mut ws).await;
    let conversation =
        eventually(Duration::from_secs(5), "the hand-off at Chatwoot", || open_conversation(&fake)).await;
    let seen = fake.seen();
    assert!(seen.iter().any(|r| r.path == "/api/v1/profile"), "the account from the profile");
    assert!(seen.iter().any(|r| r.path == "/api/v1/accounts/2/inboxes/7"), "the inbox was read");
    let show = String::from_utf8(app.cli(&["client", "show", "demo"]).stdout).unwrap();
    let line = show.lines().find(|l| l.contains("operator_webhook_secret")).expect("the secret's row");
    assert!(line.contains("set") && !show.contains(INBOX_SECRET), "kept, never shown: {line}");
    // Signed with the inbox's secret: accepted at once.
    let reply = fake.agent_writes(conversation.id, "Hello from Sam.");
    let delivered = fake.send_webhook(&format!("{}/api/webhook", app.base), &reply, Some(INBOX_SECRET)).await;
    assert_eq!(delivered.status, Some(200), "{delivered:?}");
    assert_eq!(next_message(&mut ws).await["text"], "Hello from Sam.");
    // A second hand-off later does not ask Chatwoot about the inbox again.
    fake.clear_seen();
    let resolved = fake.agent_sets_status(conversation.id, "resolved");
    fake.send_webhook(&format!("{}/api/webhook", app.base), &resolved, Some(INBOX_SECRET)).await;
    next_message(&mut ws).await;
    ws.send(json!({"type": "handoff"})).await;
    eventually(Duration::from_secs(5), "the second hand-off", || {
        fake.seen().iter().any(|r| r.path.ends_with("/toggle_status")).then_some(())
    })
    .await;
    assert!(!fake.seen().iter().any(|r| r.path.contains("/inboxes/") || r.path == "/api/v1/profile"));
}

/// An inbox that isn't an API channel can't relay the visitor's words: refused with a message
/// that says what to do, the visitor gets the bot back.
#[tokio::test]
async fn a_hand_off_into_a_non_api_inbox_is_refused_clearly() {
    let fake = FakeChatwoot::start().await;
    fake.add_inbox(9, "Channel::WebWidget", None);
    let app = operator_app(&fake).await;
    app.set_client("demo", &["operator_inbox_id=9"]).await;
    let (mut ws, _) = app.visitor(None).await;
    ws.send(json!({"type": "handoff"})).await;
    next_message(&mut ws).await;
    let sorry = next_message(&mut ws).await;
    assert!(sorry["text"].as_str().unwrap().contains("couldn't reach our team"), "{sorry}");
    let show = String::from_utf8(app.cli(&["client", "show", "demo"]).stdout).unwrap();
    assert!(show.contains("Channel::WebWidget") && show.contains("API-channel inbox"), "{show}");
    assert!(fake.conversations().is_empty());
}
