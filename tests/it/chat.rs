//! Conversations over the socket: answers, resume, deduplication, several tabs, paging.

use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn demo_question_gets_the_faq_answer_and_unrelated_gets_dont_know() {
    let app = TestApp::spawn().await;
    let (mut ws, welcome) = app.visitor(None).await;
    assert_eq!(welcome["resumed"], false);
    assert_eq!(welcome["bot"]["name"], "Lumen Assistant");
    assert!(welcome["session"].as_str().unwrap().len() >= 32);
    assert!(welcome["conversationId"].as_str().unwrap().starts_with("c_"));

    let (ack, answer) = ws.ask("q1", "How long does shipping take?").await;
    assert_eq!(ack["duplicate"], false);
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["source"], "knowledge");
    assert_eq!(answer["entryId"], "shipping-time");
    assert!(answer["text"].as_str().unwrap().contains("working days"));

    let (_, answer) = ws.ask("q2", "What is the capital of France?").await;
    assert_eq!(answer["source"], "fallback");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("don't know"), "{text}");
    assert!(text.contains("support@lumen-home.example"), "offers the client's contact_text: {text}");
}

#[tokio::test]
async fn resume_replays_history_and_pages_older_messages() {
    let app = TestApp::spawn_with(|s| s.limits.message_burst = 100).await;
    let (mut ws, welcome) = app.visitor(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    for i in 0..30 {
        ws.ask(&format!("m{i}"), "Which payment methods do you accept?").await;
    }
    drop(ws);

    let (mut ws, welcome) = app.visitor(Some(&token)).await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(welcome["session"], token.as_str());
    let history = welcome["history"].as_array().unwrap();
    assert_eq!(history.len(), 50, "the last 50 of 60 messages");
    assert_eq!(welcome["hasMore"], true);
    let seqs: Vec<i64> = history.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(history.last().unwrap()["role"], "assistant");

    ws.send(json!({"type": "history", "before": seqs[0], "limit": 50})).await;
    let older = ws.next_of("history").await;
    let older = older["messages"].as_array().unwrap().clone();
    assert_eq!(older.len(), 10);
    assert_eq!(older[0]["clientId"], "m0");
    assert!(older.iter().all(|m| m["seq"].as_i64().unwrap() < seqs[0]));

    // An unknown token starts a fresh session rather than failing.
    let (_, welcome) = app.visitor(Some("not-a-real-session-token")).await;
    assert_eq!(welcome["resumed"], false);
    assert_ne!(welcome["session"], token.as_str());
}

#[tokio::test]
async fn a_resend_with_the_same_id_is_answered_once() {
    let app = TestApp::spawn().await;
    let (mut ws, welcome) = app.visitor(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    let (ack, _) = ws.ask("same-id", "Do you sell gift cards?").await;
    ws.send(json!({"type": "message", "id": "same-id", "text": "Do you sell gift cards?"})).await;
    let again = ws.next_of("ack").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], ack["seq"]);
    // The next thing this socket sees is the pong, not a second answer.
    ws.send(json!({"type": "ping"})).await;
    let next = ws.next().await.unwrap();
    assert_eq!(next["type"], "pong", "no second answer: {next}");
    drop(ws);
    let (_, welcome) = app.visitor(Some(&token)).await;
    assert_eq!(welcome["history"].as_array().unwrap().len(), 2, "one question, one answer");
}

#[tokio::test]
async fn two_sockets_on_one_session_both_get_each_event() {
    let app = TestApp::spawn().await;
    let (mut a, welcome) = app.visitor(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    let (mut b, _) = app.visitor(Some(&token)).await;
    let (_, answer) = a.ask("tab-a", "Can I pay by invoice?").await;
    let echoed = b.next_of("message").await;
    assert_eq!(echoed["message"]["role"], "visitor");
    assert_eq!(echoed["message"]["clientId"], "tab-a");
    let answered = b.next_of("message").await;
    assert_eq!(answered["message"]["seq"], answer["seq"]);
    assert_eq!(answered["message"]["entryId"], "payment-invoice");
}

#[tokio::test]
async fn every_accepted_message_is_stored_even_unanswerable_ones() {
    let app = TestApp::spawn().await;
    let (mut ws, welcome) = app.visitor(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    let long = "é".repeat(4000);
    let (ack, answer) = ws.ask("long", &long).await;
    assert_eq!(answer["source"], "fallback");
    drop(ws);
    let (_, welcome) = app.visitor(Some(&token)).await;
    let first = &welcome["history"][0];
    assert_eq!(first["seq"], ack["seq"]);
    assert_eq!(first["text"].as_str().unwrap().chars().count(), 4000);
}
