//! SIGTERM behaviour through `run`'s shutdown future: stop accepting, tell sockets to
//! reconnect, finish writes, exit; and acknowledged messages survive a restart.

use crate::support::TestApp;

#[tokio::test]
async fn shutdown_tells_sockets_to_reconnect_and_keeps_messages() {
    let app = TestApp::spawn().await;
    let (mut ws, welcome) = app.visitor(None).await;
    let token = welcome["session"].as_str().unwrap().to_string();
    let (ack, _) = ws.ask("before", "Are returns free?").await;
    let stopping = tokio::spawn(app.stop());
    let reconnect = ws.next_of("reconnect").await;
    assert_eq!(reconnect["reason"], "shutdown");
    assert_eq!(ws.close_code().await, Some(1001));
    let dir = stopping.await.unwrap();

    let app = TestApp::spawn_in(dir, |_| {}).await;
    let (_, welcome) = app.visitor(Some(&token)).await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(welcome["history"][0]["seq"], ack["seq"]);
    assert_eq!(welcome["history"].as_array().unwrap().len(), 2);
}
