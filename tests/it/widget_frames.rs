//! The complete widget's frames beyond questions and answers: ratings (`feedback`), typing
//! indicators both ways, the visitor's identity (`identify`), the page sent with each message,
//! and what the public config says about them. Every frame is checked against the schema by
//! the `support` client.

use std::sync::Arc;
use std::time::Duration;

use aia_chat::ids::token_hash;
use aia_chat::store::{Feedback, Inserted, NewMessage, Role, SessionRow, Store};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::model_fake::{FakeModel, text_stream};
use crate::support::{TestApp, Ws, loud_skip};

async fn expect_error(ws: &mut Ws, code: &str) {
    let f = ws.next_of("error").await;
    assert_eq!(f["code"], code, "{f}");
}

/// The stored session of the demo client behind `token`.
async fn session_row(app: &TestApp, token: &str) -> SessionRow {
    let client = app.state.registry.get("demo").unwrap().row.id;
    app.state.store.session_find(client, &token_hash(token)).await.unwrap().expect("the session is stored")
}

/// The message with `seq` in a list of message objects.
fn find(messages: &Value, seq: i64) -> &Value {
    messages.as_array().unwrap().iter().find(|m| m["seq"] == seq).unwrap_or_else(|| panic!("seq {seq} in {messages}"))
}

/// Frames until (and with) the `message` answering `seq`.
async fn until_answer(ws: &mut Ws, seq: &Value) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let f = ws.next().await.expect("socket open");
        let done = f["type"] == "message" && f["message"]["replyTo"] == *seq;
        frames.push(f);
        if done {
            return frames;
        }
    }
}

#[tokio::test]
async fn feedback_is_stored_shown_in_every_tab_and_replayed() {
    let app = TestApp::spawn().await;
    let (mut a, welcome) = app.visitor(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    let (mut b, _) = app.visitor(Some(&token)).await;
    let (ack, answer) = a.ask("q1", "How long does shipping take?").await;
    until_answer(&mut b, &ack["seq"]).await;
    let seq = answer["seq"].as_i64().unwrap();
    assert!(answer.get("feedback").is_none(), "no rating yet: {answer}");

    a.send(json!({"type": "feedback", "seq": seq, "value": "up"})).await;
    let echo = json!({"type": "feedback", "seq": seq, "value": "up"});
    assert_eq!(a.next_of("feedback").await, echo, "the rating tab hears it too");
    assert_eq!(b.next_of("feedback").await, echo, "and so does the second tab");

    // Only answers of this conversation can be rated.
    a.send(json!({"type": "feedback", "seq": ack["seq"], "value": "down"})).await;
    expect_error(&mut a, "unknown_message").await;
    let (mut other, _) = app.visitor(None).await;
    let (_, elsewhere) = other.ask("o1", "Can I pay by invoice?").await;
    a.send(json!({"type": "feedback", "seq": elsewhere["seq"], "value": "down"})).await;
    expect_error(&mut a, "unknown_message").await;
    other.send(json!({"type": "feedback", "seq": seq, "value": "down"})).await;
    expect_error(&mut other, "unknown_message").await;
    a.send(json!({"type": "feedback", "seq": 999_999_999, "value": "down"})).await;
    expect_error(&mut a, "unknown_message").await;
    // The refusals changed nothing, and the other visitor's tab heard nothing of it.
    other.send(json!({"type": "ping"})).await;
    assert_eq!(other.next().await.unwrap()["type"], "pong");

    let session = session_row(&app, &token).await;
    let (stored, _) = app.state.store.messages_page(session.id, None, 50).await.unwrap();
    let rated: Vec<_> = stored.iter().map(|m| (m.seq, m.feedback)).collect();
    assert_eq!(rated, [(ack["seq"].as_i64().unwrap(), None), (seq, Some(Feedback::Up))], "stored durably");
    drop((a, b));

    // A later visit shows it, in the welcome history and in older pages.
    let (mut c, welcome) = app.visitor(Some(&token)).await;
    assert_eq!(find(&welcome["history"], seq)["feedback"], "up");
    assert!(find(&welcome["history"], ack["seq"].as_i64().unwrap()).get("feedback").is_none());
    c.send(json!({"type": "history", "before": seq + 1})).await;
    assert_eq!(find(&c.next_of("history").await["messages"], seq)["feedback"], "up");

    // Changed, then cleared with null.
    c.send(json!({"type": "feedback", "seq": seq, "value": "down"})).await;
    assert_eq!(c.next_of("feedback").await["value"], "down");
    c.send(json!({"type": "feedback", "seq": seq, "value": null})).await;
    assert_eq!(c.next_of("feedback").await, json!({"type": "feedback", "seq": seq, "value": null}));
    drop(c);
    let (_, welcome) = app.visitor(Some(&token)).await;
    assert!(find(&welcome["history"], seq).get("feedback").is_none(), "cleared: {welcome}");
}

#[tokio::test]
async fn feedback_and_identify_have_their_own_rate_limit() {
    let app = TestApp::spawn_with(|s| {
        s.limits.messages_per_minute = 1;
        s.limits.message_burst = 2;
    })
    .await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("q1", "Do you sell gift cards?").await;
    for value in ["up", "down"] {
        ws.send(json!({"type": "feedback", "seq": answer["seq"], "value": value})).await;
        assert_eq!(ws.next_of("feedback").await["value"], value);
    }
    ws.send(json!({"type": "feedback", "seq": answer["seq"], "value": "up"})).await;
    expect_error(&mut ws, "rate_limited").await;
    ws.send(json!({"type": "identify", "name": "Ann"})).await;
    expect_error(&mut ws, "rate_limited").await;
    // The visitor's messages were not used up by the ratings.
    let (_, answer) = ws.ask("q2", "Can I pay by invoice?").await;
    assert_eq!(answer["role"], "assistant");
}

#[tokio::test]
async fn the_visitors_typing_is_checked_and_gets_no_reply() {
    let app = TestApp::spawn().await;
    let mut ws = app.connect("demo", Some("http://localhost")).await.unwrap();
    ws.send(json!({"type": "typing", "on": true})).await;
    expect_error(&mut ws, "hello_required").await;
    ws.hello(None).await;
    ws.send(json!({"type": "typing", "on": true})).await;
    ws.send(json!({"type": "typing", "on": false})).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next().await.unwrap(), json!({"type": "pong"}), "nothing answers typing");
    ws.send_raw(Message::Text(r#"{"type":"typing"}"#.into())).await;
    expect_error(&mut ws, "invalid_frame").await;
    ws.send_raw(Message::Text(r#"{"type":"typing","on":"yes"}"#.into())).await;
    expect_error(&mut ws, "invalid_frame").await;
}

#[tokio::test]
async fn an_answer_known_at_once_follows_the_question_in_every_tab_without_typing() {
    let app = TestApp::spawn().await;
    let (mut a, welcome) = app.visitor(None).await;
    let (mut b, _) = app.visitor(Some(welcome["session"].as_str().unwrap())).await;
    a.send(json!({"type": "message", "id": "t1", "text": "How can I track my order?"})).await;
    let seq = a.next_of("ack").await["seq"].clone();

    // Without a model the FAQ's answer is stored with the question in one write: nothing to
    // wait for, so no typing indicator.
    let frames = until_answer(&mut b, &seq).await;
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "message"], "{frames:?}");
    assert_eq!(frames[0]["message"]["seq"], seq, "the visitor's own message first");
    assert_eq!(frames[1]["message"]["entryId"], "order-tracking");
    assert_eq!(frames[1]["message"]["replyTo"], seq);
    let frames = until_answer(&mut a, &seq).await;
    assert_eq!(frames.iter().filter(|f| f["type"] == "typing").count(), 0, "{frames:?}");
    // A resend of the answered question is acknowledged as a duplicate and not answered again.
    a.send(json!({"type": "message", "id": "t1", "text": "How can I track my order?"})).await;
    let ack = a.next_of("ack").await;
    assert_eq!((ack["seq"].clone(), ack["duplicate"].clone()), (seq, json!(true)));
    a.send(json!({"type": "ping"})).await;
    assert_eq!(a.next().await.unwrap(), json!({"type": "pong"}), "no second answer");
}

#[tokio::test]
async fn a_message_carries_the_page_into_the_prompt_and_typing_precedes_the_pieces() {
    let fake = FakeModel::start(vec![text_stream(Duration::from_millis(30)), text_stream(Duration::ZERO)]).await;
    let app = TestApp::spawn().await;
    app.set_client("demo", &[&format!("model_url={}", fake.base()), "model_token=sk-test-page"]).await;
    let mut ws = app.connect("demo", Some("http://localhost:8080")).await.unwrap();
    let home = json!({"url": "http://localhost:8080/", "title": "Lumen Home", "lang": "en"});
    ws.send(json!({"type": "hello", "v": 1, "page": home})).await;
    let welcome = ws.next_of("welcome").await;
    let (mut tab, _) = app.visitor(Some(welcome["session"].as_str().unwrap())).await;

    // The shop moved to another page without reconnecting.
    let lamp = json!({"url": "http://localhost:8080/lamps/arc?ref=mail#top", "title": "Arc lamps"});
    ws.send(json!({"type": "message", "id": "p1", "text": "Is this one dimmable?", "page": lamp})).await;
    let seq = ws.next_of("ack").await["seq"].clone();
    let frames = until_answer(&mut tab, &seq).await;
    let typing = frames.iter().position(|f| f["type"] == "typing").expect("typing");
    let first_delta = frames.iter().position(|f| f["type"] == "delta").expect("streamed");
    assert!(typing < first_delta, "the indicator comes before the first piece: {frames:?}");
    assert_eq!(frames[typing]["replyTo"], seq);
    assert_eq!(frames.last().unwrap()["message"]["source"], "model");

    let system = |i: usize| fake.seen()[i].body["messages"][0]["content"].as_str().unwrap().to_string();
    let first = system(0);
    assert!(
        first.contains("<page>title: Arc lamps; address: http://localhost:8080/lamps/arc</page>"),
        "the message's page replaced hello's, checked the same way: {first}"
    );
    // A message without a page keeps the last one.
    let (_, answer) = ws.ask("p2", "And the price?").await;
    assert_eq!(answer["source"], "model");
    assert!(system(1).contains("<page>title: Arc lamps;"), "{}", system(1));
}

#[tokio::test]
async fn identify_is_stored_unverified_on_the_session_and_checked() {
    let app = TestApp::spawn().await;
    let mut ws = app.connect("demo", Some("http://localhost")).await.unwrap();
    ws.send(json!({"type": "identify", "name": "Ann"})).await;
    expect_error(&mut ws, "hello_required").await;
    let welcome = ws.hello(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    let fresh = session_row(&app, &token).await;
    assert_eq!((fresh.visitor_name, fresh.visitor_email), (None, None));

    ws.send(json!({"type": "identify", "name": "  Ann Lee ", "email": "ann@example.com"})).await;
    assert_eq!(ws.next().await.unwrap(), json!({"type": "identified"}));
    let row = session_row(&app, &token).await;
    assert_eq!(row.visitor_name.as_deref(), Some("Ann Lee"), "trimmed");
    assert_eq!(row.visitor_email.as_deref(), Some("ann@example.com"));

    // Refused as invalid_frame (sent raw: the schema refuses them too), nothing changes.
    for bad in [
        json!({"type": "identify", "email": "not an address"}),
        json!({"type": "identify", "email": "ann@@example.com"}),
        json!({"type": "identify", "email": format!("{}@example.com", "a".repeat(250))}),
        json!({"type": "identify", "name": "Ann", "email": "ann"}),
        json!({"type": "identify", "name": "   "}),
        json!({"type": "identify", "name": "x".repeat(101)}),
        json!({"type": "identify", "name": "Ann\u{1b}[31m"}),
        json!({"type": "identify"}),
        json!({"type": "identify", "name": "Ann", "phone": "123"}),
    ] {
        ws.send_raw(Message::Text(bad.to_string().into())).await;
        let f = ws.next_of("error").await;
        assert_eq!(f["code"], "invalid_frame", "{bad} -> {f}");
    }
    assert_eq!(session_row(&app, &token).await, row);

    // A field left out keeps what was stored.
    ws.send(json!({"type": "identify", "email": "ann.lee@example.com"})).await;
    ws.next_of("identified").await;
    let row = session_row(&app, &token).await;
    assert_eq!(
        (row.visitor_name.as_deref(), row.visitor_email.as_deref()),
        (Some("Ann Lee"), Some("ann.lee@example.com"))
    );
}

#[tokio::test]
async fn the_public_config_says_what_the_widget_may_offer() {
    let app = TestApp::spawn().await;
    let config: Value =
        app.get("/api/data/ai_chat_bot?clientUid=demo", Some("http://localhost")).await.json().await.unwrap();
    assert_eq!(config["feedback"], true, "{config}");
    assert_eq!(config["operator"], false, "no human operator yet: {config}");
}

/// What the store promises for ratings and identities, on SQLite and (when
/// `TEST_DATABASE_URL` is set) PostgreSQL.
async fn feedback_and_identity(store: Arc<dyn Store>) {
    let client = store.client_create("shop", 1).await.unwrap();
    let s1 = store.session_create(client.id, "hash-1", "c_1", 5).await.unwrap();
    let s2 = store.session_create(client.id, "hash-2", "c_2", 5).await.unwrap();
    assert_eq!((s1.visitor_name.as_deref(), s1.visitor_email.as_deref()), (None, None));
    let message = |session: i64, role: Role, id: Option<&str>| NewMessage {
        session_id: session,
        role,
        text: "text".into(),
        client_msg_id: id.map(Into::into),
        reply_to: None,
        source: None,
        entry_id: None,
        created_at: 1_700_000_000_000,
        usage: None,
        author: None,
        attachments: Vec::new(),
        products: Vec::new(),
    };
    let stored = |m: Inserted| match m {
        Inserted::New(m) => m,
        other => panic!("{other:?}"),
    };
    let question = stored(store.message_insert(&message(s1.id, Role::Visitor, Some("q"))).await.unwrap());
    let answer = stored(store.message_insert(&message(s1.id, Role::Assistant, None)).await.unwrap());
    let operator = stored(store.message_insert(&message(s1.id, Role::Operator, None)).await.unwrap());
    let system = stored(store.message_insert(&message(s1.id, Role::System, None)).await.unwrap());
    let elsewhere = stored(store.message_insert(&message(s2.id, Role::Assistant, None)).await.unwrap());
    assert_eq!(answer.feedback, None);

    assert!(store.message_feedback(s1.id, answer.seq, Some(Feedback::Up)).await.unwrap());
    assert!(store.message_feedback(s1.id, operator.seq, Some(Feedback::Down)).await.unwrap());
    assert!(!store.message_feedback(s1.id, question.seq, Some(Feedback::Up)).await.unwrap(), "a visitor message");
    assert!(!store.message_feedback(s1.id, system.seq, Some(Feedback::Up)).await.unwrap(), "a system message");
    assert!(!store.message_feedback(s1.id, elsewhere.seq, Some(Feedback::Up)).await.unwrap(), "another session");
    assert!(!store.message_feedback(s1.id, i64::MAX, None).await.unwrap(), "no such message");
    let (page, _) = store.messages_page(s1.id, None, 50).await.unwrap();
    let rated: Vec<_> = page.iter().map(|m| m.feedback).collect();
    assert_eq!(rated, [None, Some(Feedback::Up), Some(Feedback::Down), None]);
    assert_eq!(store.messages_page(s2.id, None, 50).await.unwrap().0[0].feedback, None);
    assert!(store.message_feedback(s1.id, answer.seq, None).await.unwrap(), "cleared");
    assert_eq!(store.reply_to(s1.id, question.seq).await.unwrap(), None);
    assert_eq!(store.messages_page(s1.id, None, 50).await.unwrap().0[1].feedback, None);

    store.session_identify(s1.id, Some("Ann"), None).await.unwrap();
    store.session_identify(s1.id, None, Some("ann@example.com")).await.unwrap();
    let found = store.session_find(client.id, "hash-1").await.unwrap().unwrap();
    assert_eq!((found.visitor_name.as_deref(), found.visitor_email.as_deref()), (Some("Ann"), Some("ann@example.com")));
    store.session_identify(s1.id, Some("Ann Lee"), None).await.unwrap();
    let found = store.session_find(client.id, "hash-1").await.unwrap().unwrap();
    assert_eq!(
        (found.visitor_name.as_deref(), found.visitor_email.as_deref()),
        (Some("Ann Lee"), Some("ann@example.com"))
    );
    let other = store.session_find(client.id, "hash-2").await.unwrap().unwrap();
    assert_eq!((other.visitor_name, other.visitor_email), (None, None), "only that session");
}

#[tokio::test]
async fn feedback_and_identity_are_stored_alike_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    feedback_and_identity(aia_chat::store::open(None, dir.path()).await.unwrap()).await;
    let Some(url) = crate::store::fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    feedback_and_identity(aia_chat::store::open(Some(&url), std::path::Path::new("/nonexistent")).await.unwrap()).await;
}
