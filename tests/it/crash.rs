//! [hardening] Crash safety. The real binary runs a conversation load — model answers streamed
//! from the fake model, hand-offs to the fake Chatwoot with the agent replying through the
//! signed webhook, call-back requests that become cards at the fake Trello — and is killed
//! with SIGKILL on a seeded schedule, 0–50 ms after its visitors start sending, then started
//! again, at least 100 times; on SQLite and on PostgreSQL.
//!
//! The visitors' own record is the oracle. Like the widget, a visitor keeps every message it
//! has not seen acknowledged and sends it again, with its id, after reconnecting. At the end:
//! - every acknowledged message is in the history once, with the acknowledged seq, in the
//!   order it was first sent;
//! - every acknowledged question has its reply (an answer, a notice, "please ask again"), or
//!   reached the person who took the conversation over: forwarded to Chatwoot once, or in the
//!   hand-off's transcript when the person came before the answer;
//! - every message a visitor was shown, and every operator reply the webhook took with a 200,
//!   is in the history after all the kills, once;
//! - each outbox effect happened once at the fakes: one Chatwoot conversation per hand-off,
//!   one message per forwarded seq, one card per task, each card's confirmation shown once.
//!
//! `AIA_CRASH_SEED=N` replays a schedule; `AIA_CRASH_KILLS=N` changes its length.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::chatwoot_fake::{FakeChatwoot, INBOX_SECRET};
use crate::model_fake::{FakeModel, Script, create_task_stream, text_stream};
use crate::store::fresh_postgres;
use crate::support::{ADMIN_PASSWORD, Ws, assert_valid, connect_ws, count_run, http, loud_skip, plant_secrets};
use crate::trello_fake::FakeTrello;

const KEY: &str = "c4a1e9f07b3d5a2c8e6f1b0d9a7c5e3f2b4d6a8c0e1f3a5b7d9c2e4f6a8b0c1d";
const ORIGIN: &str = "http://localhost:8080";
const VISITORS: usize = 6;
const DEFAULT_SEED: u64 = 0x00c0_ffee_2026;
const ASK_FOR_PERSON: &str = "Can I talk to a human please?";
const CALL_BACK: &str = "Please call me back tomorrow";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_on_sqlite() {
    crash_run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_on_postgres() {
    let Some(database) = fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    crash_run(Some(database)).await;
    count_run("PG_TESTS_RUN", 1);
}

/// The model's part: a call-back request gets the `create_task` call, a tool result its
/// closing words, anything else a streamed answer slow enough to be cut by a kill.
fn route(messages: &Value) -> Script {
    let all = messages.as_array().cloned().unwrap_or_default();
    let last = all.last().cloned().unwrap_or(Value::Null);
    if last["role"] == "tool" {
        return text_stream(Duration::from_millis(2));
    }
    let text = last["content"].as_str().unwrap_or_default();
    if text.starts_with(CALL_BACK) { create_task_stream() } else { text_stream(Duration::from_millis(4)) }
}

/// The server under test: the real binary, killed and started again on one database.
struct Server {
    database: Option<String>,
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
    base: String,
}

impl Server {
    fn new(database: Option<String>) -> Server {
        Server {
            database,
            dir: tempfile::tempdir().unwrap(),
            log: crate::support::log_path("crash-node"),
            child: None,
            base: String::new(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aia-chat"));
        cmd.env("AIA_DATA_DIR", self.dir.path()).env("AIA_SECRET_KEY", KEY).env("NO_COLOR", "1");
        if let Some(db) = &self.database {
            cmd.env("AIA_DATABASE_URL", db);
        }
        cmd
    }

    /// Starts the binary on a fresh port and waits until it is ready.
    async fn start(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = self
            .command()
            .arg("serve")
            .env("AIA_ADDR", format!("127.0.0.1:{port}"))
            .env("AIA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("AIA_METRICS_ADDR", "off")
            .env("AIA_MESSAGES_PER_MINUTE", "100000")
            .env("AIA_LOG", std::env::var("AIA_CRASH_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting aia-chat");
        self.child = Some(child);
        self.base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http().get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("aia-chat exited ({status}):\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "not ready within 60 s:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: no draining, nothing flushed, nothing released.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client_set(&self, pairs: &[String]) {
        let out = self.command().args(["client", "set", "demo"]).args(pairs).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "client set: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Outbox items not yet done (hand-offs, forwards, tasks), read from the database itself.
    async fn outbox_pending(&self) -> i64 {
        use sqlx::Connection;
        const PENDING: &str = "SELECT (SELECT COUNT(*) FROM operator_outbox WHERE dead_at IS NULL) \
                               + (SELECT COUNT(*) FROM tasks WHERE state = 'queued')";
        match &self.database {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let n = sqlx::query_scalar(PENDING).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                n
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir.path().join("aia-chat.db"))
                    .read_only(true);
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
                let n = sqlx::query_scalar(PENDING).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                n
            }
        }
    }

    /// The outboxes' pending rows, for a failure message.
    async fn outbox_rows(&self) -> String {
        use sqlx::Connection;
        const ROWS: &str = "SELECT 'operator ' || kind || ' attempts=' || attempts || ' next_at=' || next_at \
                            || ' error=' || COALESCE(last_error, '-') FROM operator_outbox WHERE dead_at IS NULL \
                            UNION ALL SELECT 'task ' || id || ' attempts=' || attempts || ' next_at=' || next_at \
                            || ' error=' || COALESCE(last_error, '-') FROM tasks WHERE state = 'queued' \
                            UNION ALL SELECT 'lease ' || name || ' ' || owner || ' until=' || until FROM job_leases";
        let rows: Vec<String> = match &self.database {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(ROWS).fetch_all(&mut conn).await.unwrap()
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir.path().join("aia-chat.db"))
                    .read_only(true);
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
                sqlx::query_scalar(ROWS).fetch_all(&mut conn).await.unwrap()
            }
        };
        format!("now={} {rows:#?}", aia_chat::ids::now_ms())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- the end of the server's log ----\n{}", self.log_tail());
        }
    }
}

/// A message as its visitor knows it.
#[derive(Clone, Debug)]
struct Sent {
    id: String,
    text: String,
    /// From the ack, once one came.
    seq: Option<i64>,
}

/// One visitor: its session and its own record of what it sent and was shown.
#[derive(Default)]
struct Visitor {
    name: String,
    session: Option<String>,
    sent: Vec<Sent>,
    /// Every stored message it was shown (live or in a welcome), by seq.
    shown: BTreeMap<i64, Value>,
    count: usize,
}

impl Visitor {
    fn on_frame(&mut self, frame: &Value) {
        assert_valid(frame);
        match frame["type"].as_str().unwrap_or_default() {
            "ack" => {
                let seq = frame["seq"].as_i64().unwrap();
                let id = frame["id"].as_str().unwrap();
                let sent = self.sent.iter_mut().find(|s| s.id == id).expect("an ack for a message sent");
                if let Some(earlier) = sent.seq {
                    assert_eq!(earlier, seq, "{}: the ack of {id} changed its seq", self.name);
                }
                sent.seq = Some(seq);
            }
            "message" => self.show(&frame["message"]),
            "error" => panic!("{}: an error frame: {frame}", self.name),
            _ => {}
        }
    }

    fn show(&mut self, message: &Value) {
        let seq = message["seq"].as_i64().unwrap();
        if let Some(earlier) = self.shown.get(&seq) {
            assert_eq!(earlier["text"], message["text"], "{}: seq {seq} changed", self.name);
        }
        self.shown.insert(seq, message.clone());
    }

    fn unacked(&self) -> Vec<Sent> {
        self.sent.iter().filter(|s| s.seq.is_none()).cloned().collect()
    }

    /// Connects, resumes its session and sends again what it never saw acknowledged.
    async fn join(&mut self, base: &str) -> Ws {
        let url = format!("{}/ws?clientUid=demo", base.replace("http://", "ws://"));
        let mut ws =
            connect_ws(&url, Some(ORIGIN)).await.unwrap_or_else(|e| panic!("{}: socket refused {e:?}", self.name));
        let welcome = ws.hello(self.session.as_deref()).await;
        if self.session.is_some() {
            assert_eq!(welcome["resumed"], true, "{}: the session was lost: {welcome}", self.name);
        }
        self.session = welcome["session"].as_str().map(str::to_string);
        for m in welcome["history"].as_array().unwrap() {
            self.show(m);
        }
        for s in self.unacked() {
            send(&mut ws, &s).await;
        }
        ws
    }
}

async fn send(ws: &mut Ws, s: &Sent) -> bool {
    let frame = json!({"type": "message", "id": s.id, "text": s.text});
    assert_valid(&frame);
    ws.stream.send(Frame::Text(frame.to_string().into())).await.is_ok()
}

/// What one visitor sends in one round: pauses before each message, and the texts.
fn plan(rng: &mut StdRng) -> Vec<(Duration, &'static str)> {
    (0..rng.random_range(1..=3))
        .map(|_| {
            let pause = Duration::from_millis(rng.random_range(0..15));
            let text = match rng.random_range(0..100) {
                0..66 => "Do you ship to Austria?",
                66..80 => CALL_BACK,
                80..84 => ASK_FOR_PERSON,
                _ => "My order is late, where is it?",
            };
            (pause, text)
        })
        .collect()
}

/// One visitor's round: join, wait for the start, read while the server catches up (`warm`),
/// then send the plan while reading, until the socket dies with the server.
async fn round(
    mut v: Visitor,
    base: String,
    warm: Duration,
    plan: Vec<(Duration, &'static str)>,
    go: Arc<tokio::sync::Barrier>,
) -> Visitor {
    let mut ws = v.join(&base).await;
    go.wait().await;
    let mut plan = plan.into_iter();
    let mut next = plan.next();
    let mut at = tokio::time::Instant::now() + warm + next.map_or(Duration::ZERO, |(p, _)| p);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "{}: the server was not killed", v.name);
        tokio::select! {
            frame = ws.stream.next() => match frame {
                Some(Ok(Frame::Text(t))) => v.on_frame(&serde_json::from_str(&t).unwrap()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return v,
            },
            _ = tokio::time::sleep_until(at), if next.is_some() => {
                let (_, text) = next.take().unwrap();
                v.count += 1;
                let sent = Sent { id: format!("{}-{}", v.name, v.count), text: format!("{text} ({}-{})", v.name, v.count), seq: None };
                v.sent.push(sent.clone());
                if !send(&mut ws, &sent).await {
                    return v;
                }
                next = plan.next();
                at = tokio::time::Instant::now() + next.map_or(Duration::ZERO, |(p, _)| p);
            }
        }
    }
}

/// The agent in Chatwoot: replies to open conversations through the signed webhook (and
/// sometimes resolves one), during a round. Returns the replies the webhook took with a 200.
/// Resolutions whose webhook got no 200 are sent again (`resolving`), as an agent would
/// resolve again a conversation that stayed open on the visitor's side.
async fn agent(
    fake: Arc<FakeChatwoot>,
    base: String,
    seed: u64,
    round: usize,
    window: Duration,
    resolving: Arc<Mutex<Vec<i64>>>,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed ^ (round as u64).wrapping_mul(0x9e37_79b9));
    let webhook = format!("{base}/api/webhook");
    let mut delivered = Vec::new();
    let window = window.as_millis() as u64 + 1;
    let again = std::mem::take(&mut *resolving.lock().unwrap());
    for id in again {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..window))).await;
        let body = fake.agent_sets_status(id, "resolved");
        if fake.send_webhook(&webhook, &body, Some(INBOX_SECRET)).await.status != Some(200) {
            resolving.lock().unwrap().push(id);
        }
    }
    let open: Vec<i64> = fake.conversations().into_iter().filter(|c| c.status == "open").map(|c| c.id).collect();
    for (k, id) in open.into_iter().take(3).enumerate() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..window))).await;
        if rng.random_bool(0.4) {
            let body = fake.agent_sets_status(id, "resolved");
            if fake.send_webhook(&webhook, &body, Some(INBOX_SECRET)).await.status != Some(200) {
                resolving.lock().unwrap().push(id);
            }
            continue;
        }
        let text = format!("Operator reply {round}-{k}");
        let body = fake.agent_writes(id, &text);
        if fake.send_webhook(&webhook, &body, Some(INBOX_SECRET)).await.status == Some(200) {
            delivered.push(text);
        }
    }
    delivered
}

/// Reads frames until every message of `v` is acknowledged (the last round, after the kills).
async fn settle_acks(v: &mut Visitor, ws: &mut Ws) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !v.unacked().is_empty() {
        assert!(Instant::now() < deadline, "{}: unacknowledged after the last start: {:?}", v.name, v.unacked());
        match tokio::time::timeout(Duration::from_secs(1), ws.stream.next()).await {
            Ok(Some(Ok(Frame::Text(t)))) => v.on_frame(&serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(e))) => panic!("{}: the socket failed: {e}", v.name),
            Ok(None) => panic!("{}: the socket closed", v.name),
        }
    }
}

/// The whole stored conversation of `v`, oldest first (welcome, then `history` pages).
async fn history(v: &Visitor, base: &str) -> Vec<Value> {
    let url = format!("{}/ws?clientUid=demo", base.replace("http://", "ws://"));
    let mut ws = connect_ws(&url, Some(ORIGIN)).await.unwrap();
    let welcome = ws.hello(v.session.as_deref()).await;
    let mut all: Vec<Value> = welcome["history"].as_array().unwrap().clone();
    let mut more = welcome["hasMore"] == true;
    while more {
        let before = all[0]["seq"].as_i64().unwrap();
        ws.send(json!({"type": "history", "before": before, "limit": 50})).await;
        let page = loop {
            let frame = ws.next().await.expect("the socket stays open");
            match frame["type"].as_str() {
                Some("history") => break frame,
                // History is limited per session (60 a minute, burst 20): wait and ask again.
                Some("error") if frame["code"] == "rate_limited" => {
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                    ws.send(json!({"type": "history", "before": before, "limit": 50})).await;
                }
                Some("error") => panic!("history refused: {frame}"),
                _ => {}
            }
        };
        let mut older = page["messages"].as_array().unwrap().clone();
        more = page["hasMore"] == true;
        older.extend(all);
        all = older;
    }
    all
}

async fn crash_run(database: Option<String>) {
    let seed = std::env::var("AIA_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    let kills: usize = std::env::var("AIA_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let db = if database.is_some() { "postgres" } else { "sqlite" };
    eprintln!("crash-safety on {db}: seed {seed}, {kills} kills (AIA_CRASH_SEED / AIA_CRASH_KILLS)");
    let mut rng = StdRng::seed_from_u64(seed);

    let chatwoot = Arc::new(FakeChatwoot::start().await);
    let trello = FakeTrello::start().await;
    let model = FakeModel::start(vec![Script::Route(route)]).await;
    let mut server = Server::new(database);
    server.start().await;
    let mut pairs = chatwoot.client_settings();
    pairs.extend(trello.client_settings());
    plant_secrets(&pairs.iter().map(String::as_str).collect::<Vec<_>>());
    pairs.extend([
        format!("model_url={}", model.base()),
        "tasks_require_confirmation=off".into(),
        "tasks_max_per_session_day=50".into(),
        "handoff_max_per_session=20".into(),
    ]);
    server.client_set(&pairs);
    server.kill();

    let mut visitors: Vec<Visitor> =
        (0..VISITORS).map(|i| Visitor { name: format!("v{i}"), ..Default::default() }).collect();
    let mut replies = Vec::<String>::new();
    let resolving = Arc::new(Mutex::new(Vec::new()));
    let (mut with_unacked, mut with_outbox, mut either) = (0, 0, 0);
    let started = Instant::now();
    for n in 0..kills {
        server.start().await;
        let go = Arc::new(tokio::sync::Barrier::new(VISITORS + 1));
        // Some rounds let the server catch up first (answers, the outboxes), then everyone
        // sends and the kill comes 0–50 ms after the first sends.
        let warm = Duration::from_millis(rng.random_range(0..300));
        let rounds: Vec<_> = std::mem::take(&mut visitors)
            .into_iter()
            .map(|v| tokio::spawn(round(v, server.base.clone(), warm, plan(&mut rng), go.clone())))
            .collect();
        let after = Duration::from_millis(rng.random_range(0..=50));
        let agent_seed = rng.random();
        go.wait().await;
        let operator =
            tokio::spawn(agent(chatwoot.clone(), server.base.clone(), agent_seed, n, warm + after, resolving.clone()));
        tokio::time::sleep(warm + after).await;
        server.kill();
        for r in rounds {
            visitors.push(r.await.expect("a visitor's round"));
        }
        replies.extend(operator.await.unwrap());
        let unacked = visitors.iter().any(|v| !v.unacked().is_empty());
        let pending = server.outbox_pending().await > 0;
        with_unacked += usize::from(unacked);
        with_outbox += usize::from(pending);
        either += usize::from(unacked || pending);
    }
    let killing = started.elapsed();

    // The last start: everyone comes back, sends what was never acknowledged, and the
    // outboxes drain.
    server.start().await;
    for v in &mut visitors {
        let mut ws = v.join(&server.base).await;
        settle_acks(v, &mut ws).await;
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    while server.outbox_pending().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the outboxes did not drain: {}\n{}",
            server.outbox_rows().await,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut stats: HashMap<&str, usize> = HashMap::new();
    let conversations = chatwoot.conversations();
    let forwarded: Vec<String> = conversations
        .iter()
        .flat_map(|c| chatwoot.messages(c.id))
        .filter_map(|m| m.source_id)
        .filter(|s| s.starts_with("aia-m-"))
        .collect();
    // A question still unanswered when a person took over reaches them in the transcript.
    let transcripts: Vec<String> = conversations
        .iter()
        .flat_map(|c| chatwoot.messages(c.id))
        .filter(|m| m.private)
        .filter_map(|m| m.content)
        .collect();
    let mut all_histories = Vec::new();
    for v in &visitors {
        // Every unanswered question is answered once the visitor is back: wait for it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let messages = loop {
            let messages = history(v, &server.base).await;
            let replied: Vec<i64> = messages.iter().filter_map(|m| m["replyTo"].as_i64()).collect();
            let open: Vec<&Sent> = v
                .sent
                .iter()
                .filter(|s| {
                    let seq = s.seq.unwrap();
                    !replied.contains(&seq)
                        && !forwarded.contains(&format!("aia-m-{seq}"))
                        && !transcripts.iter().any(|t| t.contains(&format!("Visitor: {}", s.text)))
                })
                .collect();
            if open.is_empty() {
                break messages;
            }
            if Instant::now() > deadline {
                let around: Vec<String> = open
                    .iter()
                    .flat_map(|s| {
                        let seq = s.seq.unwrap();
                        messages.iter().filter(move |m| (m["seq"].as_i64().unwrap() - seq).abs() <= 8)
                    })
                    .map(|m| m.to_string().chars().take(160).collect())
                    .collect();
                let notes: Vec<String> = transcripts.iter().map(|t| t.chars().take(2000).collect()).collect();
                panic!(
                    "{}: acknowledged but never answered nor forwarded: {open:?}\naround: {around:#?}\ntranscripts: {notes:#?}",
                    v.name
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        check_visitor(v, &messages, &mut stats);
        all_histories.push(messages);
    }
    let forwarded_now: Vec<String> = chatwoot
        .conversations()
        .iter()
        .flat_map(|c| chatwoot.messages(c.id))
        .filter_map(|m| m.source_id)
        .filter(|s| s.starts_with("aia-m-"))
        .collect();
    check_effects(&chatwoot, &trello, &all_histories, &forwarded_now, &replies, &mut stats);

    eprintln!(
        "crash-safety {db}: seed {seed}: {kills} kills in {:.1} s, {either} with work in flight \
         ({with_unacked} with messages unacknowledged, {with_outbox} with outbox items pending); \
         {} messages acknowledged, {} answers, {} hand-offs, {} forwarded, {} operator replies, {} cards: \
         nothing lost, nothing doubled",
        killing.as_secs_f64(),
        stats["acknowledged"],
        stats["answers"],
        stats["handoffs"],
        forwarded_now.len(),
        replies.len(),
        trello.cards().len(),
    );
    assert!(either * 2 >= kills, "only {either} of {kills} kills landed with work in flight");
}

/// One visitor's oracle against its stored conversation.
fn check_visitor(v: &Visitor, messages: &[Value], stats: &mut HashMap<&str, usize>) {
    let name = &v.name;
    let mut by_id: HashMap<&str, Vec<i64>> = HashMap::new();
    for m in messages.iter().filter(|m| m["role"] == "visitor") {
        by_id.entry(m["clientId"].as_str().unwrap()).or_default().push(m["seq"].as_i64().unwrap());
    }
    let mut last = 0;
    for s in &v.sent {
        let seq = s.seq.unwrap();
        assert_eq!(by_id.get(s.id.as_str()), Some(&vec![seq]), "{name}: {} stored once, as acknowledged", s.id);
        assert!(seq > last, "{name}: {} is out of order", s.id);
        last = seq;
    }
    assert_eq!(by_id.len(), v.sent.len(), "{name}: only what the visitor sent");
    let stored: BTreeMap<i64, &Value> = messages.iter().map(|m| (m["seq"].as_i64().unwrap(), m)).collect();
    assert_eq!(stored.len(), messages.len(), "{name}: every seq once");
    for (seq, shown) in &v.shown {
        let kept = stored.get(seq).unwrap_or_else(|| panic!("{name}: shown message {seq} was lost: {shown}"));
        assert_eq!((&kept["role"], &kept["text"]), (&shown["role"], &shown["text"]), "{name}: seq {seq}");
    }
    let mut answers: HashMap<i64, usize> = HashMap::new();
    for m in messages.iter().filter(|m| m["role"] == "assistant") {
        *answers.entry(m["replyTo"].as_i64().expect("an answer replies")).or_default() += 1;
    }
    for (seq, n) in &answers {
        assert_eq!(*n, 1, "{name}: question {seq} answered {n} times");
    }
    *stats.entry("acknowledged").or_default() += v.sent.len();
    *stats.entry("answers").or_default() += answers.len();
}

/// The effects at the fakes, each once, against what the conversations show.
fn check_effects(
    chatwoot: &FakeChatwoot,
    trello: &FakeTrello,
    histories: &[Vec<Value>],
    forwarded: &[String],
    replies: &[String],
    stats: &mut HashMap<&str, usize>,
) {
    let all: Vec<&Value> = histories.iter().flatten().collect();
    // Forwards: each seq once.
    let mut seen = std::collections::HashSet::new();
    for f in forwarded {
        assert!(seen.insert(f), "{f} forwarded twice");
    }
    // Hand-offs: one Chatwoot conversation per visitor who asked (a later hand-off reopens
    // it), and one transcript note per hand-off.
    let handoffs: Vec<usize> = histories
        .iter()
        .map(|h| {
            h.iter()
                .filter(|m| m["role"] == "system" && m["text"].as_str().unwrap().contains("person from our team"))
                .count()
        })
        .collect();
    let conversations = chatwoot.conversations();
    assert_eq!(conversations.len(), handoffs.iter().filter(|n| **n > 0).count(), "one conversation per visitor");
    let notes: usize =
        conversations.iter().map(|c| chatwoot.messages(c.id).into_iter().filter(|m| m.private).count()).sum();
    assert_eq!(notes, handoffs.iter().sum::<usize>(), "one transcript note per hand-off");
    stats.insert("handoffs", notes);
    // Operator replies the webhook took: in the history once.
    for r in replies {
        let n = all.iter().filter(|m| m["role"] == "operator" && m["text"] == r.as_str()).count();
        assert_eq!(n, 1, "operator reply {r:?} stored {n} times");
    }
    // Tasks: one card per marker, and each card's confirmation shown once.
    let cards = trello.cards();
    let mut markers = std::collections::HashSet::new();
    for card in &cards {
        let at = card.desc.find("aia-task:").expect("the card's marker");
        let marker: String = card.desc[at..].chars().take_while(|c| !c.is_whitespace() && *c != '`').collect();
        assert!(markers.insert(marker.clone()), "two cards for {marker}");
        let reference =
            |t: &str| t.ends_with(&format!("(ref {})", card.short_link)) || t.ends_with(&format!("(ref {})", card.id));
        let shown = all.iter().filter(|m| m["task"]["title"].as_str().is_some_and(reference)).count();
        if shown != 1 {
            let confirmations: Vec<String> = all
                .iter()
                .filter(|m| m.get("task").is_some())
                .map(|m| m.to_string().chars().take(200).collect())
                .collect();
            panic!(
                "the confirmation of card {} ({}) shown {shown} times: {confirmations:#?}",
                card.short_link, card.id
            );
        }
    }
    let requests: Vec<&&Value> = all
        .iter()
        .filter(|m| m["role"] == "visitor" && m["text"].as_str().unwrap().starts_with(CALL_BACK))
        // The model asks for the task; a built-in answer (the model's budget spent) makes none.
        .filter(|m| all.iter().any(|a| a["source"] == "model" && a["replyTo"] == m["seq"]))
        .collect();
    let carded = |m: &Value| markers.iter().any(|k| k.ends_with(&format!(":{}", m["seq"])));
    let missing: Vec<String> = requests
        .iter()
        .filter(|m| !carded(m))
        .map(|m| {
            let replies: Vec<&&Value> = all.iter().filter(|a| a["replyTo"] == m["seq"]).collect();
            format!("{m} answered by {replies:?}")
        })
        .collect();
    assert!(missing.is_empty(), "call-back requests the model took without a card: {missing:#?}");
    // And no card for anything else (a card made before a crash may have a built-in answer).
    let asked: Vec<String> = all
        .iter()
        .filter(|m| m["role"] == "visitor" && m["text"].as_str().unwrap().starts_with(CALL_BACK))
        .map(|m| format!(":{}", m["seq"]))
        .collect();
    for marker in &markers {
        assert!(asked.iter().any(|a| marker.ends_with(a.as_str())), "a card nobody asked for: {marker}");
    }
    stats.insert("cards", cards.len());
}
