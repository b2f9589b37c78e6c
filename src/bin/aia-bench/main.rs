#![deny(unsafe_code)]
//! `aia-bench`: the WebSocket load generator of aia-chat. `aia-bench ws` opens N visitor
//! sockets (optionally spread over many loopback source addresses), does `hello` on each, asks
//! every session one demo-FAQ question (phase 1, used for the memory snapshot), then runs an
//! open-loop load phase in which every session asks `rate / N` questions per second on a fixed,
//! staggered schedule. Latency is measured from each question's *scheduled* send time to the
//! arrival of the assistant answer that replies to its `seq`; answers are checked against the
//! FAQ entry that was asked. The result is printed as one JSON line on stdout; progress goes
//! to stderr.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::ORIGIN};
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use url::Url;

mod attack;
mod semantic;

const FAQ_JSON: &str = include_str!("../../../assets/demo-faq.json");
/// An answer slower than this counts as an error (its latency is still recorded).
const LATE: Duration = Duration::from_secs(1);
/// How long after the end of the load phase unanswered questions are still awaited.
const GRACE: Duration = Duration::from_secs(5);
/// Timeout of each setup step (connect, handshake, `welcome`, phase-1 answer).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(20);
const CLOCK_TICKS: f64 = 100.0;
const PAGE: i64 = 4096;

type Ws = WebSocketStream<TcpStream>;
/// A connection step's outcome; the error is the kind counted in `error_kinds`.
type Step<T = ()> = std::result::Result<T, String>;

#[derive(Parser)]
#[command(name = "aia-bench", version, about = "Load generator for the aia-chat server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// WebSocket benchmark: N sessions, open-loop questions, latency and memory report.
    Ws(WsArgs),
    /// Serve a synthetic FAQ of N entries over GraphQL (Magento-style paging) on loopback, as
    /// the training source of `scripts/bench-train`.
    GraphqlSource(SourceArgs),
    Retrieve(RetrieveArgs),
    ModelServer(ModelServerArgs),
    /// Serve a Magento-style product catalog (`products`) on loopback that answers after a
    /// fixed delay, for `scripts/bench-catalog`.
    CatalogServer(CatalogServerArgs),
    /// Product answers over the widget's socket: cache misses then hits, with the server's
    /// own histogram (`/api/metrics/catalog`) read at the end.
    Catalog(CatalogArgs),
    /// Local embedding speed: bulk texts/s on short texts, against the bare matmuls of the
    /// same shapes, and one query's latency.
    Embed(semantic::EmbedArgs),
    /// Floods and abuse: each abuse kind from its own address at a capped rate, and how the
    /// server refused it (statuses, error codes, close codes, cuts, metric deltas).
    Attack(attack::AttackArgs),
    /// Hybrid retrieval: fusion settings over the development files, and the confidence fit.
    HybridTune(semantic::TuneArgs),
    /// Hybrid retrieval latency at N entries (vectors of the synthetic entries are random).
    HybridRetrieve(semantic::HybridRetrieveArgs),
    /// Embedding N entries' texts into a fresh store with the local model, then again unchanged.
    EmbedTrain(semantic::EmbedTrainArgs),
}

/// `aia-bench catalog-server`: `POST /graphql` answers with four products after `--delay-ms`.
#[derive(Args)]
struct CatalogServerArgs {
    #[arg(long, default_value = "127.0.0.1:3018")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
}

/// `aia-bench catalog`: each of `--connections` visitors asks `--questions` product
/// questions no one asked before (each a cache miss: a distinct price limit), then the same
/// ones again (cache hits), one at a time.
#[derive(Args)]
struct CatalogArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    client: String,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, default_value_t = 4)]
    questions: usize,
    /// The server's admin token, to read its histogram.
    #[arg(long, env = "AIA_ADMIN_TOKEN")]
    admin_token: String,
    /// Source IPv4 addresses: a range `127.0.0.2-127.0.0.40` or a comma list.
    #[arg(long)]
    source_addrs: Option<String>,
    #[arg(long, default_value = "http://localhost")]
    origin: String,
    /// Spread the visitors' first questions evenly over this many milliseconds, so their
    /// questions arrive spread out as independent visitors' do; 0 (the default) starts them
    /// all at once, in lockstep: a burst of simultaneous questions each round.
    #[arg(long, default_value_t = 0)]
    stagger_ms: u64,
}

/// The answer `aia-bench model-server` streams, word by word.
const MODEL_ANSWER: &str = "Yes, we ship to every EU country within 2 to 4 working days.";

/// `aia-bench model-server`: an OpenAI-compatible chat-completions server for load tests. It
/// waits `--delay-ms` before its first chunk, then streams [`MODEL_ANSWER`] a word every
/// `--gap-ms`, a usage chunk and `[DONE]`.
#[derive(Args)]
struct ModelServerArgs {
    #[arg(long, default_value = "127.0.0.1:3017")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
}

/// `aia-bench retrieve`: retrieval latency in-process at a knowledge-base size: the FAQs of
/// every benchmark file in `--data` plus synthetic entries up to `--entries`, queried with
/// every query of those files (in scope and out of scope), typo correction on.
#[derive(Args)]
struct RetrieveArgs {
    /// Folder of benchmark files (the `shared/data` format).
    #[arg(long)]
    data: std::path::PathBuf,
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Passes over the queries (the first warms the caches and is not measured).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Args)]
struct SourceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3016")]
    addr: SocketAddr,
    /// Number of FAQ entries.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Change every entry's answer (a second version of the source, for changed re-trains).
    #[arg(long)]
    revision: Option<u32>,
}

#[derive(Args)]
struct WsArgs {
    /// HTTP base URL of the server, e.g. http://127.0.0.1:3015
    #[arg(long)]
    url: String,
    /// Client uid (`clientUid` query parameter).
    #[arg(long)]
    client: String,
    /// Number of sessions (one socket each).
    #[arg(long)]
    connections: usize,
    /// Aggregate questions per second; 0 only holds the sessions (memory benchmark).
    #[arg(long)]
    rate: f64,
    /// Measured seconds (after the warm-up).
    #[arg(long)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Source IPv4 addresses: a range `127.0.0.2-127.0.0.40` or a comma list.
    #[arg(long)]
    source_addrs: Option<String>,
    /// Server process id, for RSS and CPU readings from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `Origin` header sent with the handshake.
    #[arg(long, default_value = "http://localhost")]
    origin: String,
    /// Expect streamed model answers (from `aia-bench model-server`) instead of FAQ answers,
    /// and also measure the time to each answer's first delta.
    #[arg(long)]
    expect_model: bool,
}

#[derive(Deserialize)]
struct FaqEntry {
    id: String,
    question: String,
}

/// The load phase: questions are scheduled in `[t0, end)`, measured from `measure_from`.
#[derive(Clone, Copy)]
struct Schedule {
    t0: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Schedule {
    fn mode(&self, at: Instant) -> Mode {
        if at >= self.measure_from { Mode::Measured } else { Mode::Warm }
    }
}

#[derive(Default)]
struct Counters {
    ready: AtomicUsize,
    failed: AtomicUsize,
    open: AtomicUsize,
    /// Measured questions not yet answered.
    outstanding: AtomicI64,
}

/// State shared by all connection tasks.
struct Shared {
    addr: SocketAddr,
    url: String,
    origin: HeaderValue,
    sources: Vec<Ipv4Addr>,
    entry_ids: Vec<String>,
    expect_model: bool,
    /// Each question's `text` already JSON-encoded.
    questions: Vec<String>,
    n: usize,
    rate: f64,
    c: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
    start: watch::Receiver<Option<Schedule>>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn count(&self, kind: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(kind.to_owned()).or_default() += 1;
    }

    fn source(&self, i: usize) -> Option<Ipv4Addr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    First,
    Warm,
    Measured,
}

struct Pending {
    k: u32,
    entry: u32,
    mode: Mode,
    seq: Option<u64>,
    sched: Instant,
    /// When it was really sent (the bench's own timer may fire late): time to first token
    /// is what the visitor waits after sending.
    sent: Instant,
    /// When the first `delta` of its answer arrived (model answers).
    first_delta: Option<Instant>,
}

/// `got` for a correct model answer.
const MODEL_OK: u32 = u32::MAX;

/// One visitor socket and its unanswered questions.
struct Conn<'a> {
    sh: &'a Shared,
    ws: Ws,
    pending: Vec<Pending>,
    /// Answers that arrived before the `ack` naming their question: (replyTo, entry, time).
    orphans: Vec<(u64, Option<u32>, Instant)>,
    lat: Vec<f32>,
    /// Time to the first delta of measured model answers, ms.
    ttft: Vec<f32>,
    answered: u64,
    first_done: bool,
}

impl<'a> Conn<'a> {
    async fn open(sh: &'a Shared, src: Option<Ipv4Addr>) -> Step<Conn<'a>> {
        let tcp = timeout(STEP_TIMEOUT, tcp_connect(sh.addr, src))
            .await
            .map_err(|_| "connect_timeout".to_owned())?
            .map_err(|_| "connect".to_owned())?;
        let mut req = sh.url.as_str().into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut().insert(ORIGIN, sh.origin.clone());
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(1 << 20)
            .max_message_size(Some(1 << 20));
        let (ws, _) = timeout(STEP_TIMEOUT, client_async_with_config(req, tcp, Some(cfg)))
            .await
            .map_err(|_| "handshake_timeout".to_owned())?
            .map_err(handshake_kind)?;
        let mut conn = Conn {
            sh,
            ws,
            pending: Vec::new(),
            orphans: Vec::new(),
            lat: Vec::new(),
            ttft: Vec::new(),
            answered: 0,
            first_done: false,
        };
        conn.hello().await?;
        Ok(conn)
    }

    async fn hello(&mut self) -> Step {
        self.send(r#"{"type":"hello","v":1}"#.to_owned()).await?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let msg = timeout_at(deadline, self.ws.next()).await.map_err(|_| "welcome_timeout")?;
            if let Message::Text(text) = read_ok(msg)? {
                let f = serde_json::from_str::<Value>(&text).unwrap_or_default();
                match f["type"].as_str() {
                    Some("welcome") => return Ok(()),
                    Some("error") => {
                        return Err(format!("error:{}", f["code"].as_str().unwrap_or("")));
                    }
                    _ => {}
                }
            }
        }
    }

    async fn send(&mut self, text: String) -> Step {
        self.ws.send(Message::text(text)).await.map_err(|_| "io".to_owned())
    }

    async fn ask(&mut self, k: u32, entry: usize, mode: Mode, sched: Instant) -> Step {
        if mode == Mode::Measured {
            self.sh.c.outstanding.fetch_add(1, Relaxed);
        }
        let sent = Instant::now();
        self.pending.push(Pending { k, entry: entry as u32, mode, seq: None, sched, sent, first_delta: None });
        let frame = format!(r#"{{"type":"message","id":"q{k}","text":{}}}"#, self.sh.questions[entry]);
        self.send(frame).await
    }

    /// Phase 1: one question, answer awaited (not part of the latency statistics).
    async fn first_question(&mut self, entry: usize) -> Step {
        self.ask(0, entry, Mode::First, Instant::now()).await?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !self.first_done {
            match timeout_at(deadline, self.ws.next()).await {
                Ok(msg) => self.on_ws(msg)?,
                Err(_) => break, // still pending: counted as missing if it never comes
            }
        }
        Ok(())
    }

    fn on_ws(&mut self, msg: Option<Result<Message, WsError>>) -> Step {
        if let Message::Text(text) = read_ok(msg)? {
            self.on_text(&text, Instant::now());
        }
        Ok(())
    }

    fn on_text(&mut self, text: &str, now: Instant) {
        let Ok(f) = serde_json::from_str::<Value>(text) else {
            return self.sh.count("bad_frame");
        };
        let (m, k) = (&f["message"], f["id"].as_str().and_then(parse_k));
        match (f["type"].as_str().unwrap_or(""), m["role"].as_str()) {
            ("ack", _) => {
                if let (Some(k), Some(seq)) = (k, f["seq"].as_u64()) {
                    self.set_seq(k, seq);
                }
            }
            ("message", Some("visitor")) => {
                let k = m["clientId"].as_str().and_then(parse_k);
                if let (Some(k), Some(seq)) = (k, m["seq"].as_u64()) {
                    self.set_seq(k, seq);
                }
            }
            ("delta", _) => {
                let reply_to = f["replyTo"].as_u64();
                if let Some(p) = self.pending.iter_mut().find(|p| p.seq.is_some() && p.seq == reply_to) {
                    p.first_delta.get_or_insert(now);
                }
            }
            ("message", Some("assistant")) => {
                let Some(reply_to) = m["replyTo"].as_u64() else {
                    return;
                };
                let ids = &self.sh.entry_ids;
                let got = if self.sh.expect_model {
                    (m["source"] == "model" && m["text"] == MODEL_ANSWER).then_some(MODEL_OK)
                } else {
                    (m["source"] == "knowledge")
                        .then(|| ids.iter().position(|e| m["entryId"] == e.as_str()))
                        .flatten()
                        .map(|p| p as u32)
                };
                match self.pending.iter().position(|p| p.seq == Some(reply_to)) {
                    Some(i) => self.resolve(i, got, now),
                    None => self.orphans.push((reply_to, got, now)),
                }
            }
            ("error", _) => {
                let kind = format!("error:{}", f["code"].as_str().unwrap_or(""));
                match k.and_then(|k| self.pending.iter().position(|p| p.k == k)) {
                    Some(i) => {
                        let p = self.pending.swap_remove(i);
                        self.first_done |= p.mode == Mode::First;
                        self.settle(&p, &kind);
                    }
                    None => self.sh.count(&kind),
                }
            }
            _ => {} // welcome, pong, history, reconnect, other roles
        }
    }

    fn set_seq(&mut self, k: u32, seq: u64) {
        let Some(i) = self.pending.iter().position(|p| p.k == k) else {
            return;
        };
        self.pending[i].seq.get_or_insert(seq);
        if let Some(o) = self.orphans.iter().position(|o| o.0 == seq) {
            let (_, got, at) = self.orphans.swap_remove(o);
            self.resolve(i, got, at);
        }
    }

    fn resolve(&mut self, i: usize, got: Option<u32>, at: Instant) {
        let p = self.pending.swap_remove(i);
        let waited = at.saturating_duration_since(p.sched);
        match p.mode {
            Mode::Warm => return,
            Mode::First => self.first_done = true,
            Mode::Measured => {
                self.answered += 1;
                self.lat.push(waited.as_secs_f32() * 1000.0);
                if !self.sh.expect_model && waited > LATE {
                    self.sh.count("late");
                }
                if self.sh.expect_model {
                    match p.first_delta {
                        Some(at) => self.ttft.push(at.saturating_duration_since(p.sent).as_secs_f32() * 1000.0),
                        None => self.sh.count("no_delta"),
                    }
                }
            }
        }
        let right = if self.sh.expect_model { got == Some(MODEL_OK) } else { got == Some(p.entry) };
        if !right {
            self.settle(&p, "wrong_answer");
        } else if p.mode == Mode::Measured {
            self.sh.c.outstanding.fetch_sub(1, Relaxed);
        }
    }

    /// A question ended badly: count `kind` unless it was a warm-up question.
    fn settle(&self, p: &Pending, kind: &str) {
        if p.mode == Mode::Measured {
            self.sh.c.outstanding.fetch_sub(1, Relaxed);
        }
        if p.mode != Mode::Warm {
            self.sh.count(kind);
        }
    }

    fn finish(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            self.settle(&p, "missing");
        }
    }

    /// Phase 1, wait for the start signal, then the load (or ping) schedule until shutdown.
    async fn drive(&mut self, i: usize) -> Step {
        let faq_len = self.sh.questions.len();
        self.first_question(i % faq_len).await?;
        self.sh.c.ready.fetch_add(1, Relaxed);
        let mut start = self.sh.start.clone();
        let mut shutdown = self.sh.shutdown.clone();
        let sched = loop {
            if let Some(s) = *start.borrow_and_update() {
                break s;
            }
            tokio::select! {
                r = start.changed() => r.map_err(|_| "aborted")?,
                msg = self.ws.next() => self.on_ws(msg)?,
            }
        };
        let (n, rate) = (self.sh.n as f64, self.sh.rate);
        let period = if rate > 0.0 { Duration::from_secs_f64(n / rate) } else { PING_EVERY };
        let mut next = sched.t0 + period.mul_f64(i as f64 / n);
        let mut active = rate == 0.0 || next < sched.end;
        let mut k = 1u32;
        let timer = sleep_until(next);
        tokio::pin!(timer);
        loop {
            if *shutdown.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                biased;
                r = shutdown.changed() => r.map_err(|_| "aborted")?,
                msg = self.ws.next() => self.on_ws(msg)?,
                () = &mut timer, if active => {
                    if rate > 0.0 {
                        self.ask(k, (i + k as usize) % faq_len, sched.mode(next), next).await?;
                        k += 1;
                        next += period;
                        active = next < sched.end;
                        self.orphans.retain(|o| o.2.elapsed() < GRACE * 2);
                    } else {
                        self.send(r#"{"type":"ping"}"#.to_owned()).await?;
                        next += period;
                    }
                    timer.as_mut().reset(next);
                }
            }
        }
    }
}

/// One connection task: open, hello, drive until shutdown, report.
async fn run_conn(sh: Arc<Shared>, i: usize) -> (Vec<f32>, u64, Vec<f32>) {
    let mut conn = match Conn::open(&sh, sh.source(i)).await {
        Ok(conn) => conn,
        Err(kind) => {
            sh.c.failed.fetch_add(1, Relaxed);
            sh.count(&kind);
            return (Vec::new(), 0, Vec::new());
        }
    };
    sh.c.open.fetch_add(1, Relaxed);
    let result = conn.drive(i).await;
    sh.c.open.fetch_sub(1, Relaxed);
    if let Err(kind) = result {
        sh.count(&kind);
        if !conn.first_done {
            sh.c.failed.fetch_add(1, Relaxed);
        }
    } else {
        let _ = timeout(Duration::from_secs(1), conn.ws.close(None)).await;
    }
    conn.finish();
    (conn.lat, conn.answered, conn.ttft)
}

fn read_ok(msg: Option<Result<Message, WsError>>) -> Step<Message> {
    match msg {
        Some(Ok(Message::Close(_))) => Err("closed".to_owned()),
        None | Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => Err("dropped".to_owned()),
        Some(Err(WsError::Protocol(_))) => Err("protocol".to_owned()),
        Some(Err(_)) => Err("io".to_owned()),
        Some(Ok(m)) => Ok(m),
    }
}

fn parse_k(id: &str) -> Option<u32> {
    id.strip_prefix('q')?.parse().ok()
}

/// `http_403:forbidden_origin` for a refused handshake, else a short kind.
fn handshake_kind(e: WsError) -> String {
    match e {
        WsError::Http(resp) => {
            let code = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            format!("http_{}:{}", resp.status().as_u16(), code.unwrap_or_default())
        }
        WsError::Io(_) => "handshake_io".to_owned(),
        _ => "handshake".to_owned(),
    }
}

/// A TCP connection, bound to `src` (port 0) first when given; `TCP_NODELAY` on.
async fn tcp_connect(addr: SocketAddr, src: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let Some(src) = src else {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    };
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    sock.bind(&SocketAddr::from((src, 0)).into())?;
    TcpSocket::from_std_stream(sock.into()).connect(addr).await
}

fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>> {
    let ip = |a: &str| a.trim().parse::<Ipv4Addr>().with_context(|| format!("--source-addrs: {a:?}"));
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (u32::from(ip(a)?), u32::from(ip(b)?));
        ensure!(a <= b && b - a < 1 << 20, "--source-addrs: bad range");
        return Ok((a..=b).map(Ipv4Addr::from).collect());
    }
    s.split(',').map(ip).collect()
}

/// The socket URL as in protocol.md: `http`→`ws`, `/ws` appended unless a ws URL has a path.
fn ws_url(base: &str, client: &str) -> Result<Url> {
    let mut url = Url::parse(base).context("--url")?;
    let keep_path = url.scheme() == "ws" && url.path() != "/";
    match url.scheme() {
        "http" => url.set_scheme("ws").map_err(|()| anyhow::anyhow!("bad --url"))?,
        "ws" => {}
        s => bail!("--url scheme {s} not supported (TLS is not built in; use http://)"),
    }
    if !keep_path {
        let path = format!("{}/ws", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    url.query_pairs_mut().append_pair("clientUid", client);
    Ok(url)
}

/// The number after `key` on the first line of `path` that starts with `line`.
pub(crate) fn proc_value(path: &str, line: &str, key: &str) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.lines().find(|l| l.starts_with(line))?.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()?.parse().ok()
}

/// VmRSS of a process in bytes.
fn rss(pid: u32) -> Option<i64> {
    proc_value(&format!("/proc/{pid}/status"), "VmRSS:", "VmRSS:").map(|kb| kb * 1024)
}

/// Kernel memory used by TCP sockets (all processes) in bytes.
fn sockstat_mem() -> Option<i64> {
    proc_value("/proc/net/sockstat", "TCP:", "mem").map(|pages| pages * PAGE)
}

/// utime + stime of a process in seconds (`self` or a pid).
fn cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s.get(s.rfind(')')? + 1..)?.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / CLOCK_TICKS)
}

fn raise_nofile(n: usize) {
    use rlimit::Resource;
    match Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if soft < hard && Resource::NOFILE.set(hard, hard).is_err() {
                eprintln!("aia-bench: could not raise the open-file limit to {hard}");
            }
            if hard < n as u64 + 64 {
                eprintln!("aia-bench: open-file limit {hard} is too low for {n} connections");
            }
        }
        Err(e) => eprintln!("aia-bench: getrlimit: {e}"),
    }
}

fn percentile(sorted: &[f32], q: f64) -> Option<f64> {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).map(|v| round3(f64::from(*v)))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize)]
struct Report {
    connections: usize,
    sessions_held: usize,
    answered: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    rss_per_session_bytes: Option<i64>,
    server_rss_baseline_bytes: Option<i64>,
    server_rss_loaded_bytes: Option<i64>,
    kernel_socket_mem_bytes: Option<i64>,
    bench_cpu_s: Option<f64>,
    server_cpu_s: Option<f64>,
    server_cpu_ms_per_answer: Option<f64>,
    /// Scheduled send to the answer's first delta (model answers), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_delta_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_delta_p99_ms: Option<f64>,
    rate_achieved: f64,
}

fn cpu_delta(pid: &str, before: Option<f64>) -> Option<f64> {
    Some(round3(cpu_secs(pid)? - before?))
}

type Senders = (watch::Sender<Option<Schedule>>, watch::Sender<bool>);

fn shared(args: &WsArgs) -> Result<(Arc<Shared>, Senders)> {
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(args.rate >= 0.0 && args.rate.is_finite(), "--rate must be >= 0");
    ensure!(args.duration > 0.0 && args.warmup >= 0.0 && args.ramp > 0.0, "bad timing");
    let url = ws_url(&args.url, &args.client)?;
    let sources = args.source_addrs.as_deref().map(parse_sources).transpose()?;
    let sources = sources.unwrap_or_default();
    let addrs = url.socket_addrs(|| None).context("resolving --url")?;
    let addr = addrs.iter().find(|a| a.is_ipv4() || sources.is_empty());
    let faq: Vec<FaqEntry> = serde_json::from_str(FAQ_JSON).context("embedded FAQ")?;
    ensure!(!faq.is_empty(), "embedded FAQ is empty");
    let questions = faq.iter().map(|e| serde_json::to_string(&e.question));
    let (start_tx, start) = watch::channel(None);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let sh = Shared {
        addr: *addr.context("no usable server address")?,
        url: url.to_string(),
        origin: HeaderValue::from_str(&args.origin).context("--origin")?,
        sources,
        questions: questions.collect::<Result<_, _>>()?,
        entry_ids: faq.into_iter().map(|e| e.id).collect(),
        expect_model: args.expect_model,
        n: args.connections,
        rate: args.rate,
        c: Counters::default(),
        errors: Mutex::default(),
        start,
        shutdown,
    };
    Ok((Arc::new(sh), (start_tx, shutdown_tx)))
}

/// Lets the server allocate whatever it allocates lazily before the RSS baseline is read.
async fn throwaway(sh: &Shared) -> Result<()> {
    eprintln!("aia-bench: throwaway session to {}", sh.url);
    let mut conn = match Conn::open(sh, sh.source(0)).await {
        Ok(conn) => conn,
        Err(kind) => bail!("throwaway connection failed: {kind}"),
    };
    if let Err(kind) = conn.first_question(0).await {
        sh.count(&kind);
    }
    let _ = timeout(Duration::from_secs(1), conn.ws.close(None)).await;
    conn.finish();
    sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn spawn_progress(sh: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let began = Instant::now();
    tokio::spawn(async move {
        loop {
            sleep(Duration::from_secs(1)).await;
            let c = &sh.c;
            eprintln!(
                "aia-bench: [{:6.1}s] open {} ready {} failed {} outstanding {}",
                began.elapsed().as_secs_f64(),
                c.open.load(Relaxed),
                c.ready.load(Relaxed),
                c.failed.load(Relaxed),
                c.outstanding.load(Relaxed)
            );
        }
    })
}

async fn poll_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        sleep(Duration::from_millis(20)).await;
    }
}

async fn run_ws(args: WsArgs) -> Result<Report> {
    let n = args.connections;
    raise_nofile(n);
    let (sh, (start_tx, shutdown_tx)) = shared(&args)?;
    let server = args.server_pid.map(|p| p.to_string());
    if let Some(pid) = args.server_pid {
        throwaway(&sh).await?;
        ensure!(rss(pid).is_some(), "cannot read /proc/{pid}/status");
    }
    let (rss_baseline, sock_baseline) = (args.server_pid.and_then(rss), sockstat_mem());

    let progress = spawn_progress(sh.clone());
    let began = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        sleep_until(began + Duration::from_secs_f64(i as f64 / args.ramp)).await;
        handles.push(tokio::spawn(run_conn(sh.clone(), i)));
    }
    let settled = || sh.c.ready.load(Relaxed) + sh.c.failed.load(Relaxed) >= n;
    poll_until(Instant::now() + STEP_TIMEOUT * 4, settled).await;
    let (rss_loaded, sock_loaded) = (args.server_pid.and_then(rss), sockstat_mem());
    let ready = sh.c.ready.load(Relaxed);
    eprintln!("aia-bench: phase 1 done: {ready} of {n} sessions ready");

    let t0 = Instant::now() + Duration::from_millis(200);
    let warmup = if args.rate > 0.0 { args.warmup } else { 0.0 };
    let measure_from = t0 + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    start_tx.send_replace(Some(Schedule { t0, measure_from, end }));
    sleep_until(measure_from).await;
    let (bench_cpu0, server_cpu0) = (cpu_secs("self"), server.as_deref().and_then(cpu_secs));
    eprintln!("aia-bench: measuring for {}s", args.duration);
    sleep_until(end).await;
    let bench_cpu_s = cpu_delta("self", bench_cpu0);
    let server_cpu_s = server.as_deref().and_then(|p| cpu_delta(p, server_cpu0));
    poll_until(end + GRACE, || sh.c.outstanding.load(Relaxed) <= 0).await;
    let sessions_held = sh.c.open.load(Relaxed);
    shutdown_tx.send_replace(true);
    progress.abort();

    let (mut lat, mut answered, mut ttft) = (Vec::new(), 0, Vec::new());
    let join_deadline = Instant::now() + Duration::from_secs(5);
    for mut h in handles {
        match timeout_at(join_deadline, &mut h).await {
            Ok(Ok((l, a, t))) => {
                lat.extend(l);
                answered += a;
                ttft.extend(t);
            }
            _ => h.abort(),
        }
    }
    lat.sort_unstable_by(f32::total_cmp);
    ttft.sort_unstable_by(f32::total_cmp);
    let error_kinds = sh.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let rss_delta = rss_baseline.zip(rss_loaded).map(|(b, l)| l - b);
    Ok(Report {
        connections: n,
        sessions_held,
        answered,
        errors: error_kinds.values().sum(),
        error_kinds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map(|v| round3(f64::from(*v))),
        rss_per_session_bytes: rss_delta.map(|d| d / n as i64),
        server_rss_baseline_bytes: rss_baseline,
        server_rss_loaded_bytes: rss_loaded,
        kernel_socket_mem_bytes: sock_baseline.zip(sock_loaded).map(|(b, l)| l - b),
        bench_cpu_s,
        server_cpu_s,
        server_cpu_ms_per_answer: server_cpu_s
            .filter(|_| answered > 0)
            .map(|c| (c * 1000.0 / answered as f64 * 1000.0).round() / 1000.0),
        first_delta_p50_ms: percentile(&ttft, 0.50),
        first_delta_p99_ms: percentile(&ttft, 0.99),
        rate_achieved: (answered as f64 / args.duration * 100.0).round() / 100.0,
    })
}

fn main() -> Result<()> {
    // SAFETY: first thing in `main`, before this process starts any thread.
    #[allow(unsafe_code)]
    unsafe {
        aia_chat::semantic::pin_rayon_threads()
    };
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(Cli::parse().cmd))
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Ws(args) => {
            let report = run_ws(args).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Cmd::GraphqlSource(args) => serve_source(args).await?,
        Cmd::Retrieve(args) => println!("{}", serde_json::to_string(&retrieve(args)?)?),
        Cmd::ModelServer(args) => serve_model(args).await?,
        Cmd::CatalogServer(args) => serve_catalog(args).await?,
        Cmd::Catalog(args) => println!("{}", serde_json::to_string(&run_catalog(args).await?)?),
        Cmd::Attack(args) => println!("{}", serde_json::to_string(&attack::attack(args).await?)?),
        Cmd::Embed(args) => println!("{}", serde_json::to_string(&semantic::embed(args)?)?),
        Cmd::HybridTune(args) => semantic::tune(args).await?,
        Cmd::HybridRetrieve(args) => println!("{}", serde_json::to_string(&semantic::retrieve(args).await?)?),
        Cmd::EmbedTrain(args) => println!("{}", serde_json::to_string(&semantic::embed_train(args).await?)?),
    }
    Ok(())
}

/// Synthetic FAQ entry `i`: distinct words per entry so retrieval has something to find.
pub(crate) fn synthetic_entry(i: usize, revision: u32) -> serde_json::Value {
    const WORDS: [&str; 16] = [
        "lamp", "shade", "bulb", "cable", "switch", "dimmer", "socket", "stand", "glass", "brass", "linen", "oak",
        "walnut", "marble", "copper", "velvet",
    ];
    let a = WORDS[i % 16];
    let b = WORDS[(i / 16) % 16];
    let c = WORDS[(i / 256) % 16];
    serde_json::json!({
        "id": format!("e{i}"),
        "question": format!("Question {i}: how do I care for the {a} {b} {c} model q{i}?"),
        "answer": format!("Answer {i} (revision {revision}): wipe the {a} {b} {c} model q{i} with a dry cloth."),
    })
}

async fn serve_source(args: SourceArgs) -> Result<()> {
    use axum::routing::post;
    let entries = args.entries;
    let revision = args.revision.unwrap_or(0);
    let app = axum::Router::new().route(
        "/graphql",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| async move {
            let size = body["variables"]["pageSize"].as_u64().unwrap_or(20).max(1) as usize;
            let page = body["variables"]["currentPage"].as_u64().unwrap_or(1).max(1) as usize;
            let total_pages = entries.div_ceil(size);
            let items: Vec<serde_json::Value> =
                ((page - 1) * size..(page * size).min(entries)).map(|i| synthetic_entry(i, revision)).collect();
            axum::Json(serde_json::json!({"data": {"faqs": {
                "items": items,
                "page_info": {"current_page": page, "page_size": size, "total_pages": total_pages},
                "total_count": entries,
            }}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!("aia-bench: serving {entries} FAQ entries on http://{}/graphql", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Builds the index and times `search(query, 5)` for every query, `rounds - 1` measured passes.
fn retrieve(args: RetrieveArgs) -> Result<Value> {
    use aia_chat::knowledge::{KnowledgeEntry, KnowledgeIndex, dataset::Dataset};
    let mut files: Vec<_> = std::fs::read_dir(&args.data)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut entries, mut queries) = (Vec::new(), Vec::new());
    for file in &files {
        let dataset = Dataset::parse(&std::fs::read_to_string(file)?)?;
        entries.extend(dataset.entries());
        queries.extend(dataset.queries.into_iter().map(|q| q.text));
    }
    ensure!(!queries.is_empty(), "no benchmark files in {}", args.data.display());
    let real = entries.len();
    for i in real..args.entries {
        entries.push(serde_json::from_value::<KnowledgeEntry>(synthetic_entry(i, 0))?);
    }
    let started = std::time::Instant::now();
    let index = KnowledgeIndex::build(entries, "en")?;
    let build_s = started.elapsed().as_secs_f64();
    let mut micros = Vec::new();
    for round in 0..args.rounds.max(2) {
        for q in &queries {
            let t = std::time::Instant::now();
            std::hint::black_box(index.search(q, 5));
            if round > 0 {
                micros.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    micros.sort_by(f64::total_cmp);
    let at = |p: f64| micros[((micros.len() as f64 * p) as usize).min(micros.len() - 1)].round();
    Ok(serde_json::json!({
        "entries": index.entries().len(), "benchmark_faqs": real, "queries": queries.len(),
        "searches": micros.len(), "build_s": (build_s * 100.0).round() / 100.0,
        "p50_us": at(0.50), "p99_us": at(0.99), "max_us": micros.last().copied().unwrap_or(0.0).round(),
        "peak_rss_mib": proc_value("/proc/self/status", "VmHWM:", "VmHWM:").map(|kb| (kb as f64 / 1024.0 * 10.0).round() / 10.0),
    }))
}

/// Wakes waiters at exact instants. Tokio's timer has millisecond ticks and fires up to a
/// couple of milliseconds late, which would count as our server's overhead in the first-token
/// figure; this thread sleeps to the exact deadline (futex precision, tens of microseconds).
#[derive(Clone)]
struct PreciseTimer(std::sync::mpsc::Sender<(std::time::Instant, tokio::sync::oneshot::Sender<()>)>);

impl PreciseTimer {
    fn start() -> PreciseTimer {
        let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, tokio::sync::oneshot::Sender<()>)>();
        std::thread::spawn(move || {
            let mut due: Vec<(std::time::Instant, tokio::sync::oneshot::Sender<()>)> = Vec::new();
            loop {
                let now = std::time::Instant::now();
                let (ready, later): (Vec<_>, Vec<_>) = due.drain(..).partition(|(at, _)| *at <= now);
                due = later;
                for (_, waiter) in ready {
                    let _ = waiter.send(());
                }
                let next = due.iter().map(|(at, _)| *at).min();
                let got = match next {
                    Some(at) => rx.recv_timeout(at.saturating_duration_since(now)),
                    None => rx.recv().map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(entry) => due.push(entry),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        PreciseTimer(tx)
    }

    async fn sleep_until(&self, at: std::time::Instant) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.0.send((at, tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn serve_model(args: ModelServerArgs) -> Result<()> {
    use axum::routing::post;
    let (delay, gap) = (Duration::from_millis(args.delay_ms), Duration::from_millis(args.gap_ms));
    let chunk = |delta: Value, finish: Value| {
        let c = serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
            "model": "bench", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut pieces = vec![(delay, chunk(serde_json::json!({"role": "assistant", "content": ""}), Value::Null))];
    for (i, word) in MODEL_ANSWER.split_inclusive(' ').enumerate() {
        pieces.push((
            if i == 0 { Duration::ZERO } else { gap },
            chunk(serde_json::json!({"content": word}), Value::Null),
        ));
    }
    pieces.push((Duration::ZERO, chunk(serde_json::json!({}), "stop".into())));
    let usage = serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
        "model": "bench", "choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 14, "total_tokens": 314}});
    pieces.push((Duration::ZERO, format!("data: {usage}\n\ndata: [DONE]\n\n")));
    let pieces = Arc::new(pieces);
    let timer = PreciseTimer::start();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let pieces = pieces.clone();
            let timer = timer.clone();
            // D counts from the request's arrival, exactly.
            let arrived = std::time::Instant::now();
            async move {
                let stream = futures_util::stream::unfold(0usize, move |i| {
                    let pieces = pieces.clone();
                    let timer = timer.clone();
                    async move {
                        let (wait, text) = pieces.get(i)?.clone();
                        if i == 0 {
                            timer.sleep_until(arrived + wait).await;
                        } else if !wait.is_zero() {
                            // A zero sleep would still wait for the timer's next tick.
                            tokio::time::sleep(wait).await;
                        }
                        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(text)), i + 1))
                    }
                });
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!("aia-bench: model server on http://{}/v1 (first chunk after {delay:?})", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve_catalog(args: CatalogServerArgs) -> Result<()> {
    use axum::routing::post;
    let delay = Duration::from_millis(args.delay_ms);
    let item = |i: u32, name: &str, price: f64| {
        serde_json::json!({"__typename": "SimpleProduct", "uid": format!("MT{i}"), "name": name, "sku": format!("BENCH-{i}"),
            "url_key": format!("bench-{i}"), "url_suffix": ".html", "canonical_url": null, "stock_status": "IN_STOCK",
            "small_image": {"url": format!("http://{}/media/catalog/product/b{i}.jpg", args.addr), "label": name},
            "price_range": {"minimum_price": {"regular_price": {"value": price, "currency": "EUR"},
                                              "final_price": {"value": price, "currency": "EUR"}}}})
    };
    let body = serde_json::json!({"data": {"products": {"total_count": 4,
        "page_info": {"current_page": 1, "page_size": 4, "total_pages": 1},
        "items": [item(1, "Kettle Classic Red", 34.9), item(2, "Kettle Retro", 29.0),
                  item(3, "Kettle Mini", 19.5), item(4, "Kettle Steel", 44.0)]}}})
    .to_string();
    let app = axum::Router::new().route(
        "/graphql",
        post(move || {
            let body = body.clone();
            async move {
                tokio::time::sleep(delay).await;
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!("catalog server on {} (answers after {} ms)", args.addr, args.delay_ms);
    axum::serve(listener, app).await?;
    Ok(())
}

/// One visitor of the catalog benchmark: its answer latencies (miss, hit), in ms.
async fn catalog_visitor(args: &CatalogArgs, i: usize, src: Option<Ipv4Addr>) -> Result<(Vec<f32>, Vec<f32>)> {
    let url = ws_url(&args.url, &args.client)?;
    let addr = url.socket_addrs(|| None)?.into_iter().next().context("the server's address")?;
    let tcp = tcp_connect(addr, src).await?;
    let mut req = url.as_str().into_client_request()?;
    req.headers_mut().insert(ORIGIN, HeaderValue::from_str(&args.origin)?);
    let (mut ws, _) = client_async_with_config(req, tcp, None).await?;
    ws.send(Message::text(r#"{"type":"hello","v":1}"#)).await?;
    sleep(Duration::from_millis(args.stagger_ms * i as u64 / args.connections.max(1) as u64)).await;
    let (mut misses, mut hits) = (Vec::new(), Vec::new());
    let questions: Vec<String> =
        (0..args.questions).map(|q| format!("Do you have a kettle under {}?", 1000 + i * 100 + q)).collect();
    for (round, out) in [(0, &mut misses), (1, &mut hits)] {
        for (q, text) in questions.iter().enumerate() {
            let id = format!("c{round}-{q}");
            let sent = Instant::now();
            ws.send(Message::text(serde_json::json!({"type": "message", "id": id, "text": text}).to_string())).await?;
            let deadline = sent + STEP_TIMEOUT;
            let mut seq = None;
            loop {
                let Message::Text(frame) = timeout_at(deadline, ws.next()).await?.context("closed")?? else { continue };
                let f: Value = serde_json::from_str(&frame)?;
                match f["type"].as_str() {
                    Some("ack") if f["id"] == id.as_str() => seq = f["seq"].as_i64(),
                    Some("message") if seq.is_some() && f["message"]["replyTo"].as_i64() == seq => {
                        ensure!(
                            f["message"]["products"].as_array().is_some_and(|p| !p.is_empty()),
                            "no cards: {frame}"
                        );
                        out.push(sent.elapsed().as_secs_f32() * 1000.0);
                        break;
                    }
                    Some("error") => bail!("error frame: {frame}"),
                    _ => {}
                }
            }
            // Stay under the per-session message limit (burst 10, 60 a minute).
            sleep(Duration::from_millis(50)).await;
        }
    }
    Ok((misses, hits))
}

async fn run_catalog(args: CatalogArgs) -> Result<Value> {
    let sources = args.source_addrs.as_deref().map(parse_sources).transpose()?.unwrap_or_default();
    let args = Arc::new(args);
    let runs = (0..args.connections).map(|i| {
        let args = args.clone();
        let src = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        tokio::spawn(async move { catalog_visitor(&args, i, src).await })
    });
    let (mut misses, mut hits, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for run in futures_util::future::join_all(runs).await {
        match run? {
            Ok((m, h)) => {
                misses.extend(m);
                hits.extend(h);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    misses.sort_by(f32::total_cmp);
    hits.sort_by(f32::total_cmp);
    let summary = |v: &[f32]| serde_json::json!({"count": v.len(), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99), "max_ms": percentile(v, 1.0)});
    aia_chat::outbound::install_crypto_provider();
    let metrics: Value = reqwest::Client::new()
        .get(format!("{}/api/metrics/catalog", args.url.trim_end_matches('/')))
        .bearer_auth(&args.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    errors.truncate(5);
    Ok(serde_json::json!({
        "server": metrics,
        "visitor_round_trip": {"miss": summary(&misses), "hit": summary(&hits)},
        "errors": errors,
    }))
}
