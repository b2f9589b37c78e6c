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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--shutdown-grace", "5s"])
        .env("AIA_DATA_DIR", dir.path())
        .env_remove("AIA_SECRET_KEY")
        .env_remove("AIA_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(crate::support::log_path("sigterm")).unwrap())
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(Some(server));
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = crate::support::http().get(format!("{base}/readyz")).send().await {
            ready = r.status() == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready, "the server never became ready");
    let url = format!("ws://127.0.0.1:{port}/ws?clientUid=demo");
    let mut ws = crate::support::connect_ws(&url, Some("http://localhost")).await.unwrap();
    ws.hello(None).await;
    ws.ask("q", "Do you ship internationally?").await;

    let pid = server.0.as_ref().unwrap().id();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    assert_eq!(ws.next_of("reconnect").await["reason"], "shutdown");
    assert_eq!(ws.close_code().await, Some(1001));
    let mut child = server.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// Kills the server if the test fails before it exits by itself.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
