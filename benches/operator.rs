//! [operator] benchmark: human hand-off through Chatwoot, end to end on loopback.
//!
//! Why: two targets of the [operator] issue can only be measured with a real server, real
//! visitor sockets and a Chatwoot on the other side:
//!  (a) an operator's reply, received by our webhook, is visible on the visitor's WebSocket
//!      within p99 ≤ 20 ms;
//!  (b) 200 concurrent hand-offs end with no failure a visitor sees (Chatwoot's 429s that the
//!      outbox retries are not failures).
//!
//! What it does: starts the fake Chatwoot of the integration tests in this process (the same
//! file, `tests/it/chatwoot_fake.rs`, not a copy), a fresh release server (`aia-chat serve`,
//! built by cargo for this bench) as a child process on its own data directory, and points the
//! demo client at the fake (`aia-chat client set demo …`). Then:
//!
//! 1. N visitor sockets (default 200, spread over source addresses 127.0.0.2–127.0.0.11 so the
//!    shipped per-IP limits stay on) say hello and ask one FAQ question each, so every
//!    transcript has something in it.
//! 2. The fake starts rate limiting (default: more than 150 calls in a 1 s window get
//!    `429 Retry later` with `Retry-After: 1`), and every visitor asks for a person at the same
//!    moment: even visitors with the widget's `{"type":"handoff"}` frame, odd ones with the words
//!    "Can I talk to a human please?". Each must see the "a person from our team" notice, and
//!    its conversation must be `open` at the fake (the bot's official hand-off) with the
//!    transcript note containing its question. A visitor-visible failure is: an `error` frame,
//!    any other system message (e.g. "we couldn't reach our team"), an answer by the bot, no
//!    notice within 10 s, a closed socket, or no open conversation within 120 s. The 429s are
//!    counted from the server's own log (each one is a retried delivery).
//! 3. Operator replies: for each conversation, ROUNDS times (default 10, so 2,000 samples), the
//!    fake stores an agent's message and gives its `message_created` body, which is POSTed,
//!    signed with the inbox secret, to `/api/webhook`; the latency runs from just before the
//!    POST is sent to the arrival of the `message` frame with role `operator` and that text on
//!    the visitor's socket (so it includes the HTTP client and the request on loopback: an upper
//!    bound of "received by our webhook → visible"). Once sequentially (one reply at a time, a
//!    new one every 12 ms at most, so the shipped limit of 100 webhooks a second from one
//!    address is never hit) and once concurrently (all conversations at once per round, 2.5 s
//!    apart so the limiter's burst of 300 has refilled).
//!
//! One JSON line of results on stdout, progress on stderr.
//!
//!   cargo bench --bench operator [-- --handoffs=200 --rounds=10 --chatwoot-limit=150]
//!   (`--chatwoot-limit=0`: no rate limit at the fake; `scripts/bench-operator` runs this)

#[path = "../tests/it/chatwoot_fake.rs"]
mod chatwoot_fake;
mod common;
#[path = "../tests/it/support.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatwoot_fake::{Delivery, FakeChatwoot, INBOX_SECRET, deliver};
use common::{Server, Ws, cpu_secs, ms, round3, summary};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

const ORIGIN: &str = "http://localhost";
const QUESTION: &str = "How long does shipping take?";
const WORDS: &str = "Can I talk to a human please?";
/// Part of the notice the visitor reads when the hand-off starts.
const NOTICE: &str = "person from our team";
/// Part of the transcript note the agents get.
const TRANSCRIPT: &str = "Hand-off from the website assistant";
/// Sockets per source address (the shipped limits: 64 sockets and 30 new sessions a minute).
const PER_SOURCE: usize = 20;
const STEP: Duration = Duration::from_secs(10);
const NOTICE_WAIT: Duration = Duration::from_secs(10);
const OPEN_WAIT: Duration = Duration::from_secs(120);
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// Sequential replies start at least this far apart (the server allows 100 webhooks a second,
/// burst 300, from one address).
const SEQUENTIAL_GAP: Duration = Duration::from_millis(12);
/// Pause between concurrent rounds (the limiter refills 100 a second).
const ROUND_GAP: Duration = Duration::from_millis(2500);

struct Args {
    handoffs: usize,
    rounds: usize,
    /// Calls a second the fake allows before answering 429 (0: no limit).
    chatwoot_limit: usize,
}

fn args() -> Args {
    let (mut handoffs, mut rounds, mut chatwoot_limit) = (200, 10, 150);
    common::numeric_args(&mut [
        ("--handoffs", &mut handoffs),
        ("--rounds", &mut rounds),
        ("--chatwoot-limit", &mut chatwoot_limit),
    ]);
    Args { handoffs, rounds, chatwoot_limit }
}

macro_rules! progress {
    ($($t:tt)*) => { eprintln!("operator bench: {}", format_args!($($t)*)) };
}

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Visitors
// ---------------------------------------------------------------------------------------

/// One visitor socket: the write half, and waiters for what its reader task will see.
struct Visitor {
    conversation: String,
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    /// `assistant`, `notice`, or an operator reply's text → when the frame arrived.
    waiters: Mutex<HashMap<String, oneshot::Sender<Instant>>>,
    /// Operator replies seen (each should be awaited once).
    replies: Mutex<usize>,
}

/// What visitors saw that they should not have: (kind, example).
#[derive(Default)]
struct Failures(Mutex<BTreeMap<String, (u64, String)>>);

impl Failures {
    fn add(&self, kind: &str, example: impl Into<String>) {
        let mut f = self.0.lock().unwrap();
        let entry = f.entry(kind.to_string()).or_insert_with(|| (0, example.into()));
        entry.0 += 1;
    }

    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().map(|(n, _)| n).sum()
    }

    fn json(&self) -> Value {
        let f = self.0.lock().unwrap();
        Value::Object(f.iter().map(|(k, (n, _))| (k.clone(), json!(n))).collect())
    }

    fn examples(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(k, (n, e))| format!("{k} ×{n}: {e}")).collect()
    }
}

impl Visitor {
    fn wait_for(&self, key: &str) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(key.to_string(), tx);
        rx
    }

    async fn send(&self, frame: Value) -> Result<(), String> {
        self.sink.lock().await.send(Message::text(frame.to_string())).await.map_err(|e| format!("send: {e}"))
    }
}

/// Connects visitor `i`, says hello, starts its reader and asks one FAQ question.
async fn visitor(server: SocketAddr, i: usize, failures: Arc<Failures>) -> Result<Arc<Visitor>, String> {
    let src = Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8);
    let (ws, conversation) = common::hello(server, src, ORIGIN, STEP).await?;
    let (sink, stream) = ws.split();
    let v = Arc::new(Visitor {
        conversation,
        sink: tokio::sync::Mutex::new(sink),
        waiters: Mutex::default(),
        replies: Mutex::new(0),
    });
    tokio::spawn(read(v.clone(), stream, failures));
    let answered = v.wait_for("assistant");
    v.send(json!({"type": "message", "id": "q1", "text": QUESTION})).await?;
    timeout(STEP, answered).await.map_err(|_| "no answer to the FAQ question")?.map_err(|_| "reader ended")?;
    Ok(v)
}

/// Reads visitor frames until the socket closes: fires waiters, counts what is wrong.
async fn read(v: Arc<Visitor>, mut stream: SplitStream<Ws>, failures: Arc<Failures>) {
    while let Some(frame) = stream.next().await {
        let at = Instant::now();
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Ok(f) = serde_json::from_str::<Value>(&text) else {
            failures.add("bad_frame", text.to_string());
            continue;
        };
        let key = match f["type"].as_str() {
            Some("message") => {
                let m = &f["message"];
                let body = m["text"].as_str().unwrap_or_default().to_string();
                match m["role"].as_str() {
                    Some("visitor") => continue,
                    Some("assistant") => "assistant".to_string(),
                    Some("system") if body.contains(NOTICE) => "notice".to_string(),
                    Some("operator") => {
                        *v.replies.lock().unwrap() += 1;
                        body
                    }
                    _ => {
                        failures.add("system_message", body);
                        continue;
                    }
                }
            }
            Some("error") => {
                failures.add(&format!("error_frame:{}", f["code"].as_str().unwrap_or("")), text.to_string());
                continue;
            }
            _ => continue,
        };
        match v.waiters.lock().unwrap().remove(&key) {
            Some(tx) => {
                let _ = tx.send(at);
            }
            None => failures
                .add(&format!("unexpected_{}", if key == "notice" { "notice" } else { "message" }), text.to_string()),
        }
    }
    failures.add("socket_closed", v.conversation.clone());
}

// ---------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------

/// A server log line of a delivery to Chatwoot that got 429 and will be retried.
fn is_retried_429(line: &str) -> bool {
    line.contains("HTTP 429") && line.contains("retrying")
}

/// One operator reply: the fake stores it and gives the webhook body; the body is POSTed
/// signed. Returns (POST → frame on the visitor's socket, POST → our webhook's 200), in ms.
async fn reply(
    fake: &FakeChatwoot,
    webhook: &str,
    v: &Visitor,
    conversation: i64,
    text: String,
) -> Result<(f64, f64), String> {
    let body = serde_json::to_vec(&fake.agent_writes(conversation, &text)).unwrap();
    let shown = v.wait_for(&text);
    let sent = Instant::now();
    let delivered = deliver(webhook, &body, &Delivery::signed(INBOX_SECRET)).await;
    if delivered.status != Some(200) || !delivered.body.contains("\"delivered\"") {
        v.waiters.lock().unwrap().remove(&text);
        return Err(format!("webhook_{}", delivered.status.map_or("no_answer".into(), |s| s.to_string())));
    }
    match timeout(REPLY_WAIT, shown).await {
        Ok(Ok(at)) => Ok((ms(at - sent), ms(delivered.elapsed))),
        _ => Err("reply_timeout".into()),
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: a benchmark is
    // not a test, so it only says how to run it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator bench: skipped (run it with scripts/bench-operator or cargo bench --bench operator)");
        return;
    }
    let args = args();
    let n = args.handoffs;
    assert!(n <= PER_SOURCE * 200, "at most {} hand-offs", PER_SOURCE * 200);
    let fake = FakeChatwoot::start().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    server.ready(STEP).await;
    let pairs = fake.client_settings();
    let out = support::cli(
        data.path(),
        &[&["client", "set", "demo"], &pairs.iter().map(String::as_str).collect::<Vec<_>>()[..]].concat(),
    );
    assert!(out.status.success(), "client set: {}", String::from_utf8_lossy(&out.stderr));
    server.operator_loaded(ORIGIN, STEP).await;
    progress!("server {} ready, demo client handing off to the fake Chatwoot at {}", server.base, fake.base());

    // 1. Visitors: hello and one FAQ question each.
    let failures = Arc::new(Failures::default());
    let started = Instant::now();
    let opened = futures_util::future::join_all((0..n).map(|i| visitor(server.addr, i, failures.clone()))).await;
    let mut visitors = Vec::new();
    for (i, v) in opened.into_iter().enumerate() {
        match v {
            Ok(v) => visitors.push(v),
            Err(e) => panic!("visitor {i} could not start: {e}"),
        }
    }
    progress!("{n} visitors connected and answered in {:.2} s", started.elapsed().as_secs_f64());

    // 2. Every visitor asks for a person at once, while the fake rate-limits.
    if args.chatwoot_limit > 0 {
        fake.rate_limit(Some((args.chatwoot_limit, Duration::from_secs(1))), Some(1));
    }
    fake.clear_seen();
    let cpu_before = server.cpu();
    let wave = Instant::now();
    let asked = futures_util::future::join_all(visitors.iter().enumerate().map(|(i, v)| {
        let failures = failures.clone();
        async move {
            let notice = v.wait_for("notice");
            let frame = if i % 2 == 0 {
                json!({"type": "handoff"})
            } else {
                json!({"type": "message", "id": "h1", "text": WORDS})
            };
            let sent = Instant::now();
            if let Err(e) = v.send(frame).await {
                failures.add("send_failed", e);
                return None;
            }
            match timeout(NOTICE_WAIT, notice).await {
                Ok(Ok(at)) => Some(ms(at - sent)),
                _ => {
                    failures.add("no_notice_within_10s", v.conversation.clone());
                    None
                }
            }
        }
    }))
    .await;
    let mut notice_ms: Vec<f64> = asked.into_iter().flatten().collect();
    progress!("{} of {n} visitors told a person is coming", notice_ms.len());

    // Each conversation must be open at Chatwoot (the bot's hand-off) with its transcript.
    let by_conversation: HashMap<&str, usize> =
        visitors.iter().enumerate().map(|(i, v)| (v.conversation.as_str(), i)).collect();
    let mut chatwoot_id: Vec<Option<i64>> = vec![None; n];
    let mut open_ms = Vec::new();
    let deadline = wave + OPEN_WAIT;
    while open_ms.len() < n && Instant::now() < deadline {
        for c in fake.conversations() {
            let Some(&i) = c.custom_attributes["aia_conversation"].as_str().and_then(|id| by_conversation.get(id))
            else {
                continue;
            };
            if chatwoot_id[i].is_some() || c.status != "open" {
                continue;
            }
            let noted = fake.messages(c.id).iter().any(|m| {
                m.private && m.content.as_deref().is_some_and(|t| t.contains(TRANSCRIPT) && t.contains(QUESTION))
            });
            if noted {
                chatwoot_id[i] = Some(c.id);
                open_ms.push(ms(wave.elapsed()));
            }
        }
        sleep(Duration::from_millis(20)).await;
    }
    let all_open_s = wave.elapsed().as_secs_f64();
    let handoff_cpu = server.cpu() - cpu_before;
    let seen = fake.seen();
    fake.rate_limit(None, None);
    let not_open = chatwoot_id.iter().filter(|c| c.is_none()).count();
    for _ in 0..not_open {
        failures.add("not_open_at_chatwoot_within_120s", "");
    }
    let log = server.log();
    let retried_429 = log.lines().filter(|l| is_retried_429(l)).count();
    progress!(
        "{} of {n} conversations open at Chatwoot after {all_open_s:.2} s; the fake saw {} calls, {retried_429} answered 429 and retried",
        open_ms.len(),
        seen.len()
    );
    // Anything the outbox would still tell visitors shows up here.
    sleep(Duration::from_millis(1500)).await;
    let handoff_failures = failures.total();
    let handoff_failure_kinds = failures.json();

    // 3. Operator replies → visitor sockets.
    let webhook = format!("{}/api/webhook", server.base);
    let pairs: Vec<(usize, i64)> = chatwoot_id.iter().enumerate().filter_map(|(i, c)| c.map(|c| (i, c))).collect();
    let mut reply_errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut sequential, mut sequential_post) = (Vec::new(), Vec::new());
    let cpu_before = server.cpu();
    let phase = Instant::now();
    for round in 0..args.rounds {
        for &(i, conversation) in &pairs {
            let next = Instant::now() + SEQUENTIAL_GAP;
            let text = format!("Sequential reply {round}.{i}: your parcel left today.");
            match reply(&fake, &webhook, &visitors[i], conversation, text).await {
                Ok((shown, answered)) => {
                    sequential.push(shown);
                    sequential_post.push(answered);
                }
                Err(kind) => *reply_errors.entry(kind).or_default() += 1,
            }
            tokio::time::sleep_until(next).await;
        }
    }
    let sequential_cpu = server.cpu() - cpu_before;
    progress!("{} sequential replies in {:.1} s", sequential.len(), phase.elapsed().as_secs_f64());

    sleep(ROUND_GAP).await;
    let (mut concurrent, mut concurrent_post) = (Vec::new(), Vec::new());
    let (cpu_before, bench_cpu_before) = (server.cpu(), cpu_secs("self"));
    for round in 0..args.rounds {
        let results = futures_util::future::join_all(pairs.iter().map(|&(i, conversation)| {
            let text = format!("Concurrent reply {round}.{i}: your parcel left today.");
            reply(&fake, &webhook, &visitors[i], conversation, text)
        }))
        .await;
        for r in results {
            match r {
                Ok((shown, answered)) => {
                    concurrent.push(shown);
                    concurrent_post.push(answered);
                }
                Err(kind) => *reply_errors.entry(kind).or_default() += 1,
            }
        }
        if round + 1 < args.rounds {
            sleep(ROUND_GAP).await;
        }
    }
    let concurrent_cpu = server.cpu() - cpu_before;
    let concurrent_bench_cpu = cpu_secs("self") - bench_cpu_before;
    progress!("{} concurrent replies in {} rounds", concurrent.len(), args.rounds);

    // Every reply shown exactly once, nothing else; nothing dead-lettered.
    sleep(Duration::from_millis(500)).await;
    let shown: usize = visitors.iter().map(|v| *v.replies.lock().unwrap()).sum();
    let sent = sequential.len() + concurrent.len();
    if shown != sent {
        *reply_errors.entry("replies_shown_not_sent".into()).or_default() += shown.abs_diff(sent) as u64;
    }
    let show = String::from_utf8_lossy(&support::cli(data.path(), &["client", "show", "demo"]).stdout).to_string();
    let log = server.log();
    let other_log: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty() && !is_retried_429(l)).collect();
    for l in other_log.iter().take(10) {
        progress!("server: {l}");
    }
    for e in failures.examples() {
        progress!("failure: {e}");
    }
    let per_reply = |cpu: f64, n: usize| if n == 0 { 0.0 } else { round3(cpu * 1000.0 / n as f64) };
    let result = json!({
        "bench": "operator",
        "handoffs": n,
        "handoff_visitor_failures": handoff_failures,
        "handoff_failure_kinds": handoff_failure_kinds,
        "chatwoot_rate_limit": (args.chatwoot_limit > 0)
            .then(|| json!({ "max_per_window": args.chatwoot_limit, "window_ms": 1000, "retry_after_s": 1 })),
        "chatwoot_calls": seen.len(),
        "chatwoot_429_retried": retried_429,
        "dead_letters": show.contains("operator failures"),
        "notice": summary(&mut notice_ms),
        "open_at_chatwoot": summary(&mut open_ms),
        "all_open_s": round3(all_open_s),
        "handoff_server_cpu_s": round3(handoff_cpu),
        "reply_sequential": summary(&mut sequential),
        "reply_sequential_webhook_200": summary(&mut sequential_post),
        "reply_concurrent": summary(&mut concurrent),
        "reply_concurrent_webhook_200": summary(&mut concurrent_post),
        "reply_errors": reply_errors,
        "visitor_failures_after_handoff": failures.total() - handoff_failures,
        "server_cpu_ms_per_reply": {
            "sequential": per_reply(sequential_cpu, sent - concurrent.len()),
            "concurrent": per_reply(concurrent_cpu, concurrent.len()),
        },
        "bench_cpu_ms_per_concurrent_reply": per_reply(concurrent_bench_cpu, concurrent.len()),
        "server_other_log_lines": other_log.len(),
    });
    println!("{result}");
}
