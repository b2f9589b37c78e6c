//! [scale] benchmark: an operator's reply crossing from one node to the other.
//!
//! Why: the [scale] issue's target, cross-node operator reply delivery p99 ≤ 30 ms with two
//! nodes holding 5,000 visitor sessions each, can only be measured on real nodes: two release
//! servers (`aia-chat serve`, child processes) on one fresh PostgreSQL database, linked by a
//! Redis server this bench runs for itself, and the fake Chatwoot of the integration tests
//! (`tests/it/chatwoot_fake.rs`, the same file) in this process.
//!
//! 1. SESSIONS visitor sockets per node (default 5,000, so 10,000 in all) say hello, 25 per
//!    loopback source address (127.0.x.y), so the shipped per-address limits (64 sockets,
//!    30 new sessions a minute) stay on. They stay open to the end.
//! 2. HANDOFFS of them per node (default 500) ask for a person with the widget's
//!    `{"type":"handoff"}`; each must see the notice, and its conversation must open at the
//!    fake (the outbox runs on whichever node holds its lease).
//! 3. For each of those conversations, ROUNDS times (default 3), the fake stores an agent's
//!    reply and its signed `message_created` webhook is POSTed to the *other* node than the
//!    visitor's. The latency runs from just before the POST to the `message` frame on the
//!    visitor's socket: HTTP on loopback, our webhook, the store, Redis pub/sub, the other
//!    node's hub and socket. One reply at a time, at least 12 ms apart (the cluster-wide
//!    limit is 100 webhooks a second from one address).
//!
//! One JSON line of results on stdout, progress on stderr. Needs `TEST_DATABASE_URL` (a
//! role that may create databases) and `redis-server` on the PATH.
//!
//!   cargo bench --bench cluster [-- --sessions=5000 --handoffs=500 --rounds=3]
//!   (`scripts/bench-cluster` runs this)

#[path = "../tests/it/chatwoot_fake.rs"]
mod chatwoot_fake;
mod common;
#[path = "../tests/it/support.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatwoot_fake::{Delivery, FakeChatwoot, INBOX_SECRET, deliver};
use common::{Server, Ws, ms, summary};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

const ORIGIN: &str = "http://localhost";
/// Part of the notice the visitor reads when the hand-off starts.
const NOTICE: &str = "person from our team";
/// Sockets per source address: under the shipped 64 sockets and 30 new sessions a minute.
const PER_SOURCE: usize = 25;
const STEP: Duration = Duration::from_secs(30);
const OPEN_WAIT: Duration = Duration::from_secs(300);
const REPLY_WAIT: Duration = Duration::from_secs(5);
const GAP: Duration = Duration::from_millis(12);

struct Args {
    sessions: usize,
    handoffs: usize,
    rounds: usize,
}

fn args() -> Args {
    let (mut sessions, mut handoffs, mut rounds) = (5000, 500, 3);
    common::numeric_args(&mut [
        ("--sessions", &mut sessions),
        ("--handoffs", &mut handoffs),
        ("--rounds", &mut rounds),
    ]);
    assert!(handoffs <= sessions, "--handoffs must not exceed --sessions");
    Args { sessions, handoffs, rounds }
}

macro_rules! progress {
    ($($t:tt)*) => { eprintln!("cluster bench: {}", format_args!($($t)*)) };
}

/// A Redis server of the bench's own on a free port, keeping nothing on disk.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database on the server of `TEST_DATABASE_URL`.
async fn fresh_database() -> String {
    use sqlx::Connection;
    let url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (scripts/bench-cluster sets it)");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("TEST_DATABASE_URL reachable");
    let name = format!("aia_bench_{:x}", rand::random::<u64>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let mut parsed = url::Url::parse(&url).unwrap();
    parsed.set_path(&name);
    parsed.to_string()
}

/// One visitor socket: the write half, and waiters for texts its reader will see.
struct Visitor {
    conversation: String,
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Instant>>>,
}

impl Visitor {
    fn wait_for(&self, key: &str) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(key.to_string(), tx);
        rx
    }
}

/// Connects visitor `k` to `server` and says hello; its reader runs until the socket closes.
async fn visitor(
    server: SocketAddr,
    k: usize,
    errors: Arc<Mutex<BTreeMap<String, u64>>>,
) -> Result<Arc<Visitor>, String> {
    let source = k / PER_SOURCE;
    let src = Ipv4Addr::new(127, 0, (source / 250) as u8, 2 + (source % 250) as u8);
    let (ws, conversation) = common::hello(server, src, ORIGIN, STEP).await?;
    let (sink, stream) = ws.split();
    let v = Arc::new(Visitor { conversation, sink: tokio::sync::Mutex::new(sink), waiters: Mutex::default() });
    tokio::spawn(read(v.clone(), stream, errors));
    Ok(v)
}

/// Fires the waiter of every message text that arrives; counts error frames and closes.
async fn read(v: Arc<Visitor>, mut stream: SplitStream<Ws>, errors: Arc<Mutex<BTreeMap<String, u64>>>) {
    let count = |kind: String| *errors.lock().unwrap().entry(kind).or_default() += 1;
    while let Some(frame) = stream.next().await {
        let at = Instant::now();
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Ok(f) = serde_json::from_str::<Value>(&text) else { continue };
        let key = match f["type"].as_str() {
            Some("message") => {
                let body = f["message"]["text"].as_str().unwrap_or_default();
                if f["message"]["role"] == "system" && body.contains(NOTICE) {
                    NOTICE.to_string()
                } else {
                    body.to_string()
                }
            }
            Some("error") => {
                count(format!("error_frame:{}", f["code"].as_str().unwrap_or("")));
                continue;
            }
            _ => continue,
        };
        if let Some(tx) = v.waiters.lock().unwrap().remove(&key) {
            let _ = tx.send(at);
        }
    }
    count("socket_closed".into());
}

/// Opens `n` visitors on `server`, source addresses starting at visitor number `first`.
async fn open(
    server: SocketAddr,
    first: usize,
    n: usize,
    errors: &Arc<Mutex<BTreeMap<String, u64>>>,
) -> Vec<Arc<Visitor>> {
    let opened: Vec<_> = futures_util::stream::iter((first..first + n).map(|k| visitor(server, k, errors.clone())))
        .buffered(100)
        .collect()
        .await;
    opened.into_iter().enumerate().map(|(i, v)| v.unwrap_or_else(|e| panic!("visitor {i}: {e}"))).collect()
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster bench: skipped (run it with scripts/bench-cluster or cargo bench --bench cluster)");
        return;
    }
    let args = args();
    let _ = rlimit::increase_nofile_limit(65_536);
    let redis = Redis::start();
    let database = fresh_database().await;
    let key = hex::encode(rand::random::<[u8; 32]>());
    let redis_url = format!("redis://127.0.0.1:{}/", redis.port);
    let env = [
        ("AIA_DATABASE_URL", database.as_str()),
        ("AIA_REDIS_URL", redis_url.as_str()),
        ("AIA_SECRET_KEY", key.as_str()),
        ("AIA_ADMIN_PASSWORD", "bench-admin-password"),
    ];
    let fake = FakeChatwoot::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(dir_a.path(), &env);
    a.ready(STEP).await;
    let b = Server::start(dir_b.path(), &env);
    b.ready(STEP).await;
    let out = Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["client", "set", "demo"])
        .args(fake.client_settings())
        .env("AIA_DATABASE_URL", &database)
        .env("AIA_SECRET_KEY", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "client set: {}", String::from_utf8_lossy(&out.stderr));
    a.operator_loaded(ORIGIN, STEP).await;
    b.operator_loaded(ORIGIN, STEP).await;
    progress!("nodes {} and {} ready on one database and Redis; the fake Chatwoot at {}", a.base, b.base, fake.base());

    // 1. Sessions on both nodes.
    let errors = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let on_a = open(a.addr, 0, args.sessions, &errors).await;
    let on_b = open(b.addr, args.sessions, args.sessions, &errors).await;
    progress!("{} sessions on each node in {:.1} s", args.sessions, started.elapsed().as_secs_f64());
    let rss = json!({ "a_mib": (a.rss_mib() * 10.0).round() / 10.0, "b_mib": (b.rss_mib() * 10.0).round() / 10.0 });

    // 2. Hand-offs: the first HANDOFFS visitors of each node ask for a person.
    let handing: Vec<(Arc<Visitor>, &Server)> = on_a
        .iter()
        .take(args.handoffs)
        .map(|v| (v.clone(), &b))
        .chain(on_b.iter().take(args.handoffs).map(|v| (v.clone(), &a)))
        .collect();
    let told = futures_util::future::join_all(handing.iter().map(|(v, _)| async move {
        let notice = v.wait_for(NOTICE);
        v.sink.lock().await.send(Message::text(r#"{"type":"handoff"}"#)).await.map_err(|e| e.to_string())?;
        timeout(STEP, notice).await.map_err(|_| "no notice".to_string())?.map_err(|_| "reader ended".to_string())
    }))
    .await;
    let not_told = told.iter().filter(|t| t.is_err()).count();
    let index: HashMap<&str, usize> =
        handing.iter().enumerate().map(|(i, (v, _))| (v.conversation.as_str(), i)).collect();
    let mut chatwoot: Vec<Option<i64>> = vec![None; handing.len()];
    let wave = Instant::now();
    while chatwoot.iter().any(Option::is_none) && wave.elapsed() < OPEN_WAIT {
        for c in fake.conversations() {
            if c.status == "open"
                && let Some(&i) = c.custom_attributes["aia_conversation"].as_str().and_then(|id| index.get(id))
            {
                chatwoot[i] = Some(c.id);
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    let open_count = chatwoot.iter().flatten().count();
    progress!(
        "{open_count} of {} hand-offs open at Chatwoot after {:.1} s",
        handing.len(),
        wave.elapsed().as_secs_f64()
    );

    // 3. Replies through the other node's webhook.
    let mut latencies = Vec::new();
    let mut reply_errors: BTreeMap<String, u64> = BTreeMap::new();
    let (cpu_a, cpu_b) = (a.cpu(), b.cpu());
    let phase = Instant::now();
    for round in 0..args.rounds {
        for (i, (v, other)) in handing.iter().enumerate() {
            let Some(conversation) = chatwoot[i] else { continue };
            let next = Instant::now() + GAP;
            let text = format!("Reply {round}.{i}: your parcel left today.");
            let body = serde_json::to_vec(&fake.agent_writes(conversation, &text)).unwrap();
            let shown = v.wait_for(&text);
            let sent = Instant::now();
            let delivered =
                deliver(&format!("{}/api/webhook", other.base), &body, &Delivery::signed(INBOX_SECRET)).await;
            if delivered.status != Some(200) {
                *reply_errors.entry(format!("webhook_{:?}", delivered.status)).or_default() += 1;
                continue;
            }
            match timeout(REPLY_WAIT, shown).await {
                Ok(Ok(at)) => latencies.push(ms(at - sent)),
                _ => *reply_errors.entry("reply_timeout".into()).or_default() += 1,
            }
            tokio::time::sleep_until(next).await;
        }
    }
    let replies = latencies.len();
    let cpu = a.cpu() - cpu_a + b.cpu() - cpu_b;
    progress!("{replies} cross-node replies in {:.1} s", phase.elapsed().as_secs_f64());
    let socket_errors = errors.lock().unwrap().clone();
    let result = json!({
        "bench": "cluster",
        "nodes": 2,
        "sessions_per_node": args.sessions,
        "handoffs": handing.len(),
        "handoffs_not_told": not_told,
        "handoffs_open_at_chatwoot": open_count,
        "rss_with_sessions": rss,
        "reply_cross_node": summary(&mut latencies),
        "reply_errors": reply_errors,
        "socket_errors": socket_errors,
        "server_cpu_ms_per_reply": if replies == 0 { 0.0 } else { (cpu * 1000.0 / replies as f64 * 1000.0).round() / 1000.0 },
    });
    println!("{result}");
    drop((on_a, on_b));
}
