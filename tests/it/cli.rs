//! The `aia-chat` command line against a running server: `client` writes reach the server
//! through the database, secrets follow their URL host and never print, a foreign key is
//! refused, and `ask` behaves as documented.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestApp;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn client_set_reaches_the_running_server_within_a_second() {
    let app = TestApp::spawn().await;
    let before = app.get("/api/data/ai_chat_bot?clientUid=demo", Some("http://localhost")).await;
    assert_eq!(before.json::<serde_json::Value>().await.unwrap()["buttonColor"], "#1a73e8");
    let started = Instant::now();
    let out = app.cli(&["client", "set", "demo", "button_color=#FF0000", "position=top-left"]);
    assert!(out.status.success(), "{}", stderr(&out));
    loop {
        let config: serde_json::Value =
            app.get("/api/data/ai_chat_bot?clientUid=demo", Some("http://localhost")).await.json().await.unwrap();
        if config["buttonColor"] == "#ff0000" {
            assert_eq!(config["position"], "top-left");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "not seen within a second");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn validation_errors_name_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    for (pair, field) in [
        ("button_color=red", "button_color"),
        ("position=middle", "position"),
        ("model_url=not a url", "model_url"),
        ("model_url=http://169.254.169.254/latest", "model_url"),
        ("allowed_domains=shop.com/path", "allowed_domains"),
        ("chunk_size=0", "chunk_size"),
        ("no_such_setting=1", "no_such_setting"),
    ] {
        let out = app.cli(&["client", "set", "demo", "bot_name=Changed", pair]);
        assert!(!out.status.success(), "{pair} accepted");
        assert!(stderr(&out).contains(field), "{pair}: {}", stderr(&out));
    }
    let out = app.cli(&["client", "show", "demo"]);
    assert!(stdout(&out).contains("Lumen Assistant"), "nothing was written");
}

#[tokio::test]
async fn a_changed_url_host_clears_its_secret_and_secrets_never_print() {
    let app = TestApp::spawn().await;
    let out = app.cli(&["client", "set", "demo", "model_url=https://api.openai.com/v1", "model_token=sk-very-secret"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let show = stdout(&app.cli(&["client", "show", "demo"]));
    assert!(show.contains("model_token") && show.contains(" set"), "{show}");
    assert!(!show.contains("sk-very-secret"));
    let db = std::fs::read(app.data_dir().join("aia-chat.db")).unwrap();
    assert!(!db.windows(14).any(|w| w == b"sk-very-secret"), "secrets are encrypted at rest");

    let out = app.cli(&["client", "set", "demo", "model_url=https://api.openai.com/v2"]);
    assert!(!stdout(&out).contains("cleared"), "same host keeps the token");
    let out = app.cli(&["client", "set", "demo", "model_url=https://other-host.example/v1"]);
    assert!(stdout(&out).contains("cleared model_token"), "{}", stdout(&out));
    let show = stdout(&app.cli(&["client", "show", "demo"]));
    assert!(show.lines().any(|l| l.contains("model_token") && l.contains("not set")), "{show}");

    // Given again in the same change, it stays.
    app.cli(&["client", "set", "demo", "model_url=https://a.example/v1", "model_token=sk-2"]);
    let show = stdout(&app.cli(&["client", "show", "demo"]));
    assert!(show.lines().any(|l| l.contains("model_token") && l.trim_end().ends_with(" set")), "{show}");
}

#[tokio::test]
async fn a_foreign_secret_key_is_refused() {
    let app = TestApp::spawn().await;
    let dir = app.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["client", "list"])
        .env("AIA_DATA_DIR", dir.path())
        .env("AIA_SECRET_KEY", "11".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not the key this database was created with"), "{}", stderr(&out));
    // A replaced key file is refused the same way, and the server refuses to start.
    std::fs::write(dir.path().join("secret.key"), "22".repeat(32)).unwrap();
    let settings = crate::support::test_settings(dir.path());
    let err = aia_chat::App::build(settings).await.err().expect("refused");
    assert!(format!("{err:#}").contains("not the key this database was created with"));
}

#[tokio::test]
async fn list_add_show() {
    let app = TestApp::spawn().await;
    let out = app.cli(&["client", "add", "shop-2"]);
    assert!(out.status.success());
    let out = app.cli(&["client", "add", "shop-2"]);
    assert!(!out.status.success() && stderr(&out).contains("already exists"));
    let out = app.cli(&["client", "add", "bad uid!"]);
    assert!(!out.status.success());
    let list = stdout(&app.cli(&["client", "list"]));
    assert!(list.contains("demo\tallowed: localhost,127.0.0.1\tknowledge: 30 entries"), "{list}");
    assert!(list.contains("shop-2\tallowed: (none)"), "{list}");
    let show = stdout(&app.cli(&["client", "show", "shop-2"]));
    assert!(show.contains("graphql_url is empty"), "{show}");
    assert!(show.contains("bottom-right (default)"), "{show}");
    assert!(!show.contains("operator_allow_unsigned_webhooks is on"), "{show}");
    let out = app.cli(&["client", "set", "shop-2", "operator_allow_unsigned_webhooks=on"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let show = stdout(&app.cli(&["client", "show", "shop-2"]));
    assert!(show.contains("note: WARNING operator_allow_unsigned_webhooks is on"), "{show}");
}

fn ask(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .arg("ask")
        .arg("--url")
        .arg(&app.base)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_prints_the_reply_and_refusals() {
    let app = TestApp::spawn().await;
    let out = ask(&app, &["How long does shipping take?"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @"Orders placed before 2 pm on a working day leave our warehouse the same day. Standard delivery takes 2–4 working days within the country and 4–8 working days to the rest of the EU.");
    let token = stderr(&out).trim().strip_prefix("session: ").expect("session on stderr").to_string();

    let out = ask(&app, &["--origin", "https://evil.example", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&out), @"refused: forbidden_origin: This website is not in the chat client's allowed domains (allowed_domains).");
    let out = ask(&app, &["--client", "nobody", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&out), @"refused: unknown_client: No chat client with this clientUid exists on this server.");

    // --listen prints what the visitor sees afterwards, one line each, in the fixed format.
    let (base, session) = (app.base.clone(), token.clone());
    let listen = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
            .args(["ask", "--url", &base, "--session", &session, "--listen", "8", "Are returns free?"])
            .output()
            .unwrap()
    });
    // Wait until the listener's own question is answered (its process may start slowly under
    // load), as another tab of the session sees it in its history, then speak from that tab.
    let answered = |m: &serde_json::Value| m["entryId"] == "returns-cost";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut tab = loop {
        let (tab, welcome) = app.visitor(Some(&token)).await;
        if welcome["history"].as_array().unwrap().iter().any(answered) {
            break tab;
        }
        assert!(std::time::Instant::now() < deadline, "the listener's question was not answered within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    tab.send(json!({"type": "message", "id": "other-tab", "text": "What warranty do your products have?"})).await;
    let out = listen.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out), @r"
    Returns within the EU are free with our prepaid label. Returns from outside the EU are at your own cost.
    [you] What warranty do your products have?
    All products have a 2-year warranty against manufacturing defects from the date of delivery. Some brands add their own longer warranty.
    ");
}

#[tokio::test]
async fn ask_times_out_with_a_one_line_reason() {
    // A listener that never completes the WebSocket handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["ask", "--url", &url, "--timeout", "1", "hello?"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(stderr(&out).starts_with("timeout: "), "{}", stderr(&out));
    drop(silent);
}

#[tokio::test]
async fn knowledge_import_is_answered_by_the_running_server() {
    let app = TestApp::spawn().await;
    let file = app.data_dir().join("faq.json");
    std::fs::write(
        &file,
        serde_json::to_string(&json!({
            "name": "tiny",
            "faqs": [
                {"id": "sauna", "question": "Does the hotel have a sauna?", "answer": "Yes, on the roof, open 7-22.",
                 "variants": ["Is there a spa or steam room?"]},
                {"id": "parking", "question": "Where can I park?", "answer": "In the garage under the hotel."}
            ],
            "queries": []
        }))
        .unwrap(),
    )
    .unwrap();
    let out = app.cli(&["knowledge", "import", "demo", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "imported 2 entries into demo\n");
    let started = Instant::now();
    loop {
        let (mut ws, _) = app.visitor(None).await;
        let (_, answer) = ws.ask("spa", "is there a steam room").await;
        if answer["entryId"] == "sauna" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "new knowledge not served: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&file, r#"{"faqs": [{"id": "a", "question": "q"}, {"id": "a", "question": "q2"}]}"#).unwrap();
    let out = app.cli(&["knowledge", "import", "demo", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("duplicate id 'a'"), "{}", stderr(&out));
}

/// `eval` on five FAQs whose figures are worked out by hand:
///
/// * Queries 1–3 are their FAQ's own question: rank 1 each.
/// * `open-a` and `open-b` are the same FAQ twice, so they score exactly the same; query 4's
///   gold is `open-b`, and `open-a` scores >= it: rank 1 + 1 = 2 (ties count against us).
/// * Query 5 shares no word (and no character 4-gram) with any FAQ: score 0, confidence 0.
///
/// top-1 = 3/4 = 0.75; recall@3 = 4/4 = 1; MRR@10 = (1 + 1 + 1 + 1/2) / 4 = 0.875.
/// The four in-scope queries match a whole question (confidence above the shipped 0.87), so
/// only query 5 gets "no answer": no-answer precision = 1/1, recall = 1/1, F1 = 1; in-scope
/// accuracy = answered and right / in scope = 3/4 = 0.75 (query 4 is answered with the twin);
/// AUROC = 1: every in-scope confidence is above the out-of-scope one.
#[test]
fn eval_figures_match_a_hand_computed_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("five.json");
    let fixture = serde_json::json!({
        "name": "five",
        "faqs": [
            {"id": "shipping", "question": "How long does shipping take?", "answer": "Two to four working days."},
            {"id": "payment", "question": "Which payment methods do you accept?", "answer": "Cards and invoice."},
            {"id": "returns", "question": "How do I return an item?", "answer": "Use the return form."},
            {"id": "open-a", "question": "When is the store open?", "answer": "Monday to Friday."},
            {"id": "open-b", "question": "When is the store open?", "answer": "Monday to Friday."}
        ],
        "queries": [
            {"text": "how long does shipping take", "faq_id": "shipping"},
            {"text": "which payment methods do you accept", "faq_id": "payment"},
            {"text": "how do i return an item", "faq_id": "returns"},
            {"text": "when is the store open", "faq_id": "open-b"},
            {"text": "xylophone zebra quantum", "faq_id": null}
        ]
    });
    std::fs::write(&file, fixture.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["eval", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "top1": 0.75, "recall3": 1.0, "mrr10": 0.875,
            "no_answer_precision": 1.0, "no_answer_recall": 1.0, "no_answer_f1": 1.0,
            "in_scope_accuracy": 0.75, "auroc": 1.0
        })
    );
}

/// What a container's health check runs (the image has no curl).
fn healthcheck(url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["healthcheck", "--url", url, "--timeout", "3"])
        .env_remove("AIA_URL")
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_says_ready_or_why_not() {
    let app = TestApp::spawn().await;
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || healthcheck(&base)).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "ready");

    let base = app.base.clone();
    app.stop().await;
    let out = tokio::task::spawn_blocking(move || healthcheck(&base)).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(said.starts_with("not ready: ") && said.contains("/readyz"), "{said}");
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"));
    cmd.args(args).env_remove("AIA_SECRET_KEY").env_remove("AIA_DATABASE_URL").env_remove("AIA_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_under_load_restores_every_conversation() {
    let app = TestApp::spawn().await;
    // Visitors keep writing while the backup runs.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Instant)>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for v in 0..3 {
        let (mut ws, _) = app.visitor(None).await;
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                let id = format!("v{v}-{i}");
                let (ack, _) = ws.ask(&id, "How long does shipping take?").await;
                assert_eq!(ack["duplicate"], false);
                acked.lock().unwrap().push((id, Instant::now()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(150)).await; // under the message limit
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let file = app.dir.path().join("backup.db");
    let (data, target) = (app.data_dir(), file.clone());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(&["backup", target.to_str().unwrap()], &[("AIA_DATA_DIR", data.to_str().unwrap())])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("the secret key is not in it"), "{}", stdout(&out));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
    let before: Vec<String> =
        acked.lock().unwrap().iter().filter(|(_, at)| *at < started).map(|(id, _)| id.clone()).collect();
    assert!(before.len() >= 6, "load before the backup: {before:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let key = std::fs::read_to_string(app.data_dir().join("secret.key")).unwrap();

    // Into an empty directory, with the key: every message acknowledged before the backup.
    let restored = tempfile::tempdir().unwrap();
    let dir = restored.path().join("data");
    let env = [("AIA_DATA_DIR", dir.to_str().unwrap()), ("AIA_SECRET_KEY", key.trim())];
    let out = run_cli(&["restore", file.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = aia_chat::store::open(None, &dir).await.unwrap();
    let client = store.client_get("demo").await.unwrap().unwrap();
    let mut found = Vec::new();
    let mut page = store.conversations(client.id, "", 0, 100).await.unwrap();
    for c in page.drain(..) {
        let (messages, _) = store.messages_page(c.session.id, None, 1000).await.unwrap();
        found.extend(messages.into_iter().filter_map(|m| m.client_msg_id));
    }
    for id in &before {
        assert!(found.contains(id), "{id} acknowledged before the backup is missing");
    }

    // Not twice, not with another key, not without one.
    let again = run_cli(&["restore", file.to_str().unwrap()], &env);
    assert!(!again.status.success() && stderr(&again).contains("empty data directory"), "{}", stderr(&again));
    let other = tempfile::tempdir().unwrap();
    let wrong = "1111111111111111111111111111111111111111111111111111111111111111";
    let out = run_cli(
        &["restore", file.to_str().unwrap()],
        &[("AIA_DATA_DIR", other.path().to_str().unwrap()), ("AIA_SECRET_KEY", wrong)],
    );
    assert!(!out.status.success() && stderr(&out).contains("could not be read"), "{}", stderr(&out));
    let out = run_cli(&["restore", file.to_str().unwrap()], &[("AIA_DATA_DIR", other.path().to_str().unwrap())]);
    assert!(!out.status.success() && stderr(&out).contains("no secret key at hand"), "{}", stderr(&out));
    assert!(!other.path().join("aia-chat.db").exists(), "nothing restored without the key");
}

/// A server as the binary runs it, logging JSON lines to a pipe the test reads.
/// The real binary with JSON logs, whose lines a test can wait for.
pub(crate) struct LoggingServer {
    child: std::process::Child,
    pub(crate) base: String,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    pub(crate) dir: tempfile::TempDir,
}

impl LoggingServer {
    pub(crate) fn start(extra: &[&str]) -> LoggingServer {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
            .args(["serve", "--addr", &addr, "--log-format", "json"])
            .args(extra)
            .env("AIA_DATA_DIR", dir.path())
            .env("AIA_ADMIN_PASSWORD", crate::support::ADMIN_PASSWORD)
            .env("AIA_LOG", "info")
            .env_remove("AIA_DATABASE_URL")
            .env_remove("AIA_SECRET_KEY")
            .env_remove("AIA_REDIS_URL")
            .env_remove("AIA_LOG_MESSAGES")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let mut kept = std::fs::File::create(crate::support::log_path("logging-server")).unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(kept, "{line}");
                let _ = tx.send(line);
            }
        });
        let mut server = LoggingServer { child, base: format!("http://{addr}"), lines: rx, seen: Vec::new(), dir };
        server.wait_for("aia-chat is ready");
        server
    }

    /// Collects what the server logs for `time`.
    fn drain(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(line);
        }
    }

    /// Reads lines until one contains `what` (up to 20 s); returns it parsed.
    pub(crate) fn wait_for(&mut self, what: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(what)) {
                return serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line with {what:?}: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_their_request_or_socket_and_keep_message_texts_out() {
    const CANARY: &str = "canary message text 7f3e9b";
    let mut server = LoggingServer::start(&[]);
    let ready = server.wait_for("aia-chat is ready");
    assert_eq!(ready["clustered"], false, "the event's fields are top-level keys: {ready}");
    assert!(ready["level"].is_string() && ready["timestamp"].is_string() && ready["target"].is_string(), "{ready}");

    // A request's lines carry its id and route, never the query.
    let r = crate::support::http()
        .post(format!("{}/api/admin/login", server.base))
        .json(&json!({"username": "admin", "password": crate::support::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let signed_in = server.wait_for("admin signed in");
    let span = &signed_in["span"];
    assert_eq!(
        (span["name"].as_str(), span["route"].as_str()),
        (Some("request"), Some("/api/admin/login")),
        "{signed_in}"
    );
    assert!(span["id"].as_str().is_some_and(|id| id.starts_with("r-")), "{signed_in}");

    // A visitor's message text stays out of the logs by default.
    let url = format!("{}/ws?clientUid=demo", server.base.replace("http", "ws"));
    let mut ws = crate::support::connect_ws(&url, Some("http://localhost")).await.unwrap();
    ws.hello(None).await;
    ws.ask("m1", CANARY).await;
    drop(ws);
    server.drain(Duration::from_millis(500));
    assert!(server.seen.len() >= 3, "{:#?}", server.seen);
    for line in &server.seen {
        assert!(!line.contains(CANARY), "a message text was logged without --log-messages: {line}");
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_messages_a_socket_s_lines_name_it_and_its_conversation() {
    const TEXT: &str = "Do you ship to Austria? 4d1c";
    let mut server = LoggingServer::start(&["--log-messages"]);
    let url = format!("{}/ws?clientUid=demo", server.base.replace("http", "ws"));
    let mut ws = crate::support::connect_ws(&url, Some("http://localhost")).await.unwrap();
    let welcome = ws.hello(None).await;
    ws.ask("m1", TEXT).await;
    let line = server.wait_for("visitor message");
    assert_eq!(line["text"], TEXT, "{line}");
    let span = &line["span"];
    assert_eq!(span["name"], "socket", "{line}");
    assert!(span["id"].as_str().is_some_and(|id| id.starts_with("s-")), "{line}");
    assert_eq!(
        (span["client"].as_str(), span["conversation"].as_str()),
        (Some("demo"), welcome["conversationId"].as_str())
    );
}

#[tokio::test]
async fn a_privacy_page_is_an_http_link_in_the_public_config() {
    let app = TestApp::spawn().await;
    for bad in ["javascript:alert(1)", "data:text/html,hi", "ftp://shop.example/p", "not a url"] {
        let out = app.cli(&["client", "set", "demo", &format!("privacy_url={bad}")]);
        assert!(!out.status.success(), "{bad} was taken");
        assert!(stderr(&out).contains("privacy_url"), "{}", stderr(&out));
    }
    async fn config(app: &TestApp) -> serde_json::Value {
        app.get("/api/data/ai_chat_bot?clientUid=demo", Some("http://localhost")).await.json().await.unwrap()
    }
    assert!(config(&app).await.get("privacyUrl").is_none(), "absent while not set");
    app.set_client("demo", &["privacy_url=https://shop.example/privacy"]).await;
    assert_eq!(config(&app).await["privacyUrl"], "https://shop.example/privacy");
}
