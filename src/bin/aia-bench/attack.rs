//! `aia-bench attack`: the abusers of issue #13's "floods and abuse" benchmark. Each kind runs
//! from its own loopback source address at a capped rate (so, run under `nice -n 19`, the
//! benchmark measures isolation, not starvation) and records how every attempt was refused:
//! HTTP statuses with their error codes, error codes in frames, close codes, and connections the
//! server cut and after how long. The server's refusal counters are scraped before and after
//! (`--metrics-url`), so each refusal is shown in the metric that counts it. One JSON line on
//! stdout; `scripts/bench-flood` runs it next to `aia-bench ws`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until, timeout, timeout_at};
use tokio_tungstenite::client_async_with_config;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::ORIGIN};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{STEP_TIMEOUT, Ws, cpu_secs, handshake_kind, parse_sources, percentile, raise_nofile, tcp_connect, ws_url};

/// The abuse kinds, in the order they take source addresses from `--source-addrs`.
const KINDS: [&str; 6] = ["messages", "sockets", "config", "webhook", "oversized", "slowloris"];
/// Requests of one kind in flight at once: past this the attacker (not the server) is the
/// bottleneck, and the attempt is counted as `skipped` instead of queued.
const IN_FLIGHT: usize = 256;
/// What `oversized` declares or streams: far over every body limit of the server.
const HUGE_BODY: usize = 10 << 20;
/// A WebSocket text frame over the 64 KiB frame limit, and one over the 16 KiB text limit.
const HUGE_FRAME: usize = 100 << 10;
const LARGE_FRAME: usize = 20 << 10;
/// A request head larger than the server's head buffer.
const HUGE_HEAD: usize = 100 << 10;

/// `aia-bench attack`.
#[derive(Args)]
pub struct AttackArgs {
    /// HTTP base URL of the server, e.g. http://127.0.0.1:3015
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "demo")]
    client: String,
    /// `all`, or a comma list of: messages, sockets, config, webhook, oversized, slowloris.
    #[arg(long, default_value = "all")]
    kind: String,
    /// Seconds each kind runs.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Source IPv4 addresses (a range `127.0.3.1-127.0.3.20` or a comma list); kind i uses the
    /// i-th (wrapping), so each abuser is one address of its own.
    #[arg(long)]
    source_addrs: Option<String>,
    /// `Origin` of the socket and config requests (an allowed one: the abuse is not refused
    /// for its origin).
    #[arg(long, default_value = "http://localhost")]
    origin: String,
    /// The server's Prometheus endpoint, scraped before and after for the refusal counters.
    #[arg(long)]
    metrics_url: Option<String>,
    /// `messages`: message frames a second on one visitor socket.
    #[arg(long, default_value_t = 100.0)]
    message_rate: f64,
    /// `sockets`: sockets one address opens (spread over the duration, at most 100 a second)
    /// and holds.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// `config`: config requests a second.
    #[arg(long, default_value_t = 200.0)]
    config_rate: f64,
    /// `webhook`: webhook posts a second (unsigned, badly signed, garbage).
    #[arg(long, default_value_t = 300.0)]
    webhook_rate: f64,
    /// `oversized`: oversized requests and frames a second (each variant in turn).
    #[arg(long, default_value_t = 5.0)]
    oversized_rate: f64,
    /// `slowloris`: connections held at once that dribble a byte a second (half a head, half a
    /// body), opened at 50 a second; each one the server cuts is opened again.
    #[arg(long, default_value_t = 200)]
    slowloris: usize,
}

/// What one kind saw.
#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
    /// Milliseconds from opening to the server cutting the connection.
    cut_ms: Mutex<Vec<f32>>,
    held_at_end: AtomicU64,
}

impl Tally {
    fn attempt(&self) {
        self.attempts.fetch_add(1, Relaxed);
    }

    fn saw(&self, what: impl Into<String>) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        *outcomes.entry(what.into()).or_default() += 1;
    }

    /// The server cut a connection `after` it was opened, saying `how`.
    fn cut(&self, after: Duration, how: impl Into<String>) {
        self.saw(how);
        self.cut_ms.lock().unwrap_or_else(|e| e.into_inner()).push(after.as_secs_f32() * 1000.0);
    }

    fn held(&self) {
        self.held_at_end.fetch_add(1, Relaxed);
    }

    fn report(&self, source: Option<Ipv4Addr>, rate: String) -> KindReport {
        let mut cut = std::mem::take(&mut *self.cut_ms.lock().unwrap_or_else(|e| e.into_inner()));
        cut.sort_unstable_by(f32::total_cmp);
        KindReport {
            source: source.map_or_else(|| "default".to_owned(), |s| s.to_string()),
            rate,
            attempts: self.attempts.load(Relaxed),
            outcomes: std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|e| e.into_inner())),
            cut: (!cut.is_empty()).then(|| CutReport {
                count: cut.len(),
                p50_ms: percentile(&cut, 0.5),
                max_ms: percentile(&cut, 1.0),
            }),
            held_at_end: self.held_at_end.load(Relaxed),
        }
    }
}

#[derive(Serialize)]
struct CutReport {
    count: usize,
    p50_ms: Option<f64>,
    max_ms: Option<f64>,
}

#[derive(Serialize)]
struct KindReport {
    source: String,
    /// The cap it ran at.
    rate: String,
    attempts: u64,
    /// How each attempt (or frame, for `messages`) was answered or ended.
    outcomes: BTreeMap<String, u64>,
    /// Connections the server closed, and after how long.
    #[serde(skip_serializing_if = "Option::is_none")]
    cut: Option<CutReport>,
    /// Connections still open when the kind's time was up.
    held_at_end: u64,
}

/// Everything a kind needs.
struct Ctx {
    args: Arc<AttackArgs>,
    addr: SocketAddr,
    origin: HeaderValue,
    source: Option<Ipv4Addr>,
    end: Instant,
    tally: Tally,
}

impl Ctx {
    fn host(&self) -> String {
        self.addr.to_string()
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        timeout(STEP_TIMEOUT, tcp_connect(self.addr, self.source))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// A visitor socket: the handshake's refusal (`http_429:rate_limited`) as the error.
    async fn socket(&self, max_frame: usize) -> std::result::Result<Ws, String> {
        let tcp = self.connect().await.map_err(|_| "connect".to_owned())?;
        let url = ws_url(&self.args.url, &self.args.client).map_err(|e| e.to_string())?;
        let mut req = url.as_str().into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut().insert(ORIGIN, self.origin.clone());
        let cfg = WebSocketConfig::default().max_message_size(Some(max_frame)).max_frame_size(Some(max_frame));
        let (ws, _) = timeout(STEP_TIMEOUT, client_async_with_config(req, tcp, Some(cfg)))
            .await
            .map_err(|_| "handshake_timeout".to_owned())?
            .map_err(handshake_kind)?;
        Ok(ws)
    }
}

/// Runs the chosen kinds side by side and reports each, with the metric deltas.
pub async fn attack(args: AttackArgs) -> Result<Value> {
    ensure!(args.duration > 0.0 && args.duration.is_finite(), "--duration must be > 0");
    let kinds: Vec<&'static str> = if args.kind == "all" {
        KINDS.to_vec()
    } else {
        args.kind
            .split(',')
            .map(|k| KINDS.iter().copied().find(|known| *known == k.trim()).context(format!("unknown kind {k:?}")))
            .collect::<Result<_>>()?
    };
    for rate in [args.message_rate, args.config_rate, args.webhook_rate, args.oversized_rate] {
        ensure!(rate > 0.0 && rate.is_finite(), "rates must be > 0");
    }
    raise_nofile(args.sockets + args.slowloris + 2 * IN_FLIGHT);
    aia_chat::outbound::install_crypto_provider();
    let sources = args.source_addrs.as_deref().map(parse_sources).transpose()?.unwrap_or_default();
    let url = ws_url(&args.url, &args.client)?;
    let addr = *url
        .socket_addrs(|| None)?
        .iter()
        .find(|a| a.is_ipv4() || sources.is_empty())
        .context("no usable server address")?;
    let origin = HeaderValue::from_str(&args.origin).context("--origin")?;
    let metrics_before = match &args.metrics_url {
        Some(url) => Some(scrape(url).await.context("scraping --metrics-url")?),
        None => None,
    };
    let cpu0 = cpu_secs("self");
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration);
    let args = Arc::new(args);
    let mut runs = Vec::new();
    for (i, &kind) in KINDS.iter().enumerate().filter(|(_, k)| kinds.contains(k)) {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let ctx =
            Arc::new(Ctx { args: args.clone(), addr, origin: origin.clone(), source, end, tally: Tally::default() });
        let task = tokio::spawn(run_kind(kind, ctx.clone()));
        runs.push((kind, ctx, task));
    }
    let mut report = serde_json::Map::new();
    for (kind, ctx, task) in runs {
        // Every kind stops at `end`; a straggler is cut off a little after.
        match timeout_at(end + Duration::from_secs(15), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => ctx.tally.saw(format!("attacker_error: {e:#}")),
            Ok(Err(e)) => ctx.tally.saw(format!("attacker_panic: {e}")),
            Err(_) => ctx.tally.saw("attacker_overran"),
        }
        report.insert(kind.to_owned(), serde_json::to_value(ctx.tally.report(ctx.source, rate_of(kind, &args)))?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let attacker_cpu_s = cpu0.zip(cpu_secs("self")).map(|(a, b)| super::round3(b - a));
    let metrics = match (&args.metrics_url, metrics_before) {
        (Some(url), Some(before)) => {
            // The server counts a refusal as it answers it: give the last ones a moment.
            sleep(Duration::from_millis(500)).await;
            Some(delta(&before, &scrape(url).await.context("scraping --metrics-url")?))
        }
        _ => None,
    };
    Ok(json!({
        "duration_s": super::round3(elapsed),
        "attacker_cpu_s": attacker_cpu_s,
        "kinds": report,
        "metrics_delta": metrics,
    }))
}

/// The cap a kind ran at, for the report.
fn rate_of(kind: &str, a: &AttackArgs) -> String {
    match kind {
        "messages" => format!("{}/s on one socket", a.message_rate),
        "sockets" => format!("{} sockets over {} s", a.sockets, a.duration),
        "config" => format!("{}/s", a.config_rate),
        "webhook" => format!("{}/s", a.webhook_rate),
        "oversized" => format!("{}/s", a.oversized_rate),
        _ => format!("{} connections, a byte/s each", a.slowloris),
    }
}

async fn run_kind(kind: &'static str, ctx: Arc<Ctx>) -> Result<()> {
    match kind {
        "messages" => messages(&ctx).await,
        "sockets" => sockets(ctx).await,
        "config" => http_flood(ctx, Flood::Config).await,
        "webhook" => http_flood(ctx, Flood::Webhook).await,
        "oversized" => oversized(ctx).await,
        "slowloris" => slowloris(ctx).await,
        other => bail!("unknown kind {other}"),
    }
}

/// The kind of a frame the server sent: `ack`, `answer`, `error:<code>`, or its type.
fn frame_kind(text: &str) -> String {
    let f: Value = serde_json::from_str(text).unwrap_or_default();
    match (f["type"].as_str().unwrap_or("?"), f["message"]["role"].as_str()) {
        ("error", _) => format!("error:{}", f["code"].as_str().unwrap_or("")),
        ("message", Some("assistant")) => "answer".to_owned(),
        ("message", Some(role)) => format!("message:{role}"),
        (t, _) => t.to_owned(),
    }
}

/// How a socket ended, and whether the server ended it (a close frame or a dropped TCP
/// connection while we were still sending).
fn ws_end(msg: Option<std::result::Result<Message, WsError>>) -> String {
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => format!("close_{}", u16::from(frame.code)),
        Some(Ok(Message::Close(None))) => "close".to_owned(),
        Some(Err(WsError::Capacity(_))) => "frame_over_our_limit".to_owned(),
        Some(Err(_)) | None => "dropped".to_owned(),
        Some(Ok(_)) => "open".to_owned(),
    }
}

/// `messages`: one visitor socket sending `--message-rate` questions a second; reconnects
/// when the server closes it.
async fn messages(ctx: &Ctx) -> Result<()> {
    let period = Duration::from_secs_f64(1.0 / ctx.args.message_rate);
    let mut n = 0u64;
    while Instant::now() < ctx.end {
        let opened = Instant::now();
        let mut ws = match ctx.socket(1 << 20).await {
            Ok(ws) => ws,
            Err(kind) => {
                ctx.tally.saw(kind);
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        ws.send(Message::text(r#"{"type":"hello","v":1}"#)).await?;
        let mut tick = interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                () = sleep_until(ctx.end) => {
                    ctx.tally.held();
                    let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Ok(());
                }
                _ = tick.tick() => {
                    n += 1;
                    ctx.tally.attempt();
                    let frame = json!({"type": "message", "id": format!("m{n}"), "text": "How can I track my order?"});
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        ctx.tally.cut(opened.elapsed(), "send_failed");
                        break;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => ctx.tally.saw(frame_kind(&text)),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        ctx.tally.cut(opened.elapsed(), ws_end(msg));
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    Ok(())
}

/// `sockets`: one address opens `--sockets` sockets (spread over the duration, at most 100 a
/// second), says hello on each that opens, and holds them all until the end.
async fn sockets(ctx: Arc<Ctx>) -> Result<()> {
    let n = ctx.args.sockets.max(1);
    let period = Duration::from_secs_f64((ctx.args.duration / n as f64).max(0.01));
    let mut tick = interval(period);
    let mut held = Vec::new();
    for _ in 0..n {
        tick.tick().await;
        if Instant::now() >= ctx.end {
            break;
        }
        ctx.tally.attempt();
        let ctx = ctx.clone();
        held.push(tokio::spawn(async move {
            let opened = Instant::now();
            let mut ws = match ctx.socket(1 << 20).await {
                Ok(ws) => ws,
                Err(kind) => return ctx.tally.saw(kind),
            };
            if ws.send(Message::text(r#"{"type":"hello","v":1}"#)).await.is_err() {
                return ctx.tally.cut(opened.elapsed(), "dropped");
            }
            let mut greeted = false;
            loop {
                tokio::select! {
                    () = sleep_until(ctx.end) => {
                        ctx.tally.held();
                        let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                        return;
                    }
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(text))) if !greeted => {
                            greeted = true;
                            ctx.tally.saw(format!("hello:{}", frame_kind(&text)));
                        }
                        Some(Ok(Message::Close(_)) | Err(_)) | None => {
                            return ctx.tally.cut(opened.elapsed(), ws_end(msg));
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
        }));
    }
    for h in held {
        let _ = h.await;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Flood {
    Config,
    Webhook,
}

/// `config` and `webhook`: open-loop requests at the kind's rate over a keep-alive pool bound
/// to the kind's address.
async fn http_flood(ctx: Arc<Ctx>, flood: Flood) -> Result<()> {
    let mut builder = reqwest::Client::builder().no_proxy().timeout(STEP_TIMEOUT).pool_max_idle_per_host(IN_FLIGHT);
    if let Some(src) = ctx.source {
        builder = builder.local_address(IpAddr::V4(src));
    }
    let http = builder.build()?;
    let base = ctx.args.url.trim_end_matches('/').to_owned();
    let rate = match flood {
        Flood::Config => ctx.args.config_rate,
        Flood::Webhook => ctx.args.webhook_rate,
    };
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0u64;
    loop {
        tokio::select! {
            () = sleep_until(ctx.end) => break,
            _ = tick.tick() => {}
        }
        i += 1;
        ctx.tally.attempt();
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            ctx.tally.saw("skipped");
            continue;
        };
        let req = match flood {
            Flood::Config => http
                .get(format!("{base}/api/data/ai_chat_bot?clientUid={}", ctx.args.client))
                .header("origin", ctx.origin.clone()),
            Flood::Webhook => webhook_request(&http, &base, i),
        };
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or_default();
                    ctx.tally.saw(format!("http_{status}:{}", body["error"]["code"].as_str().unwrap_or("")));
                }
                Err(e) if e.is_timeout() => ctx.tally.saw("timeout"),
                Err(_) => ctx.tally.saw("request_failed"),
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Forged Chatwoot calls, in turn: unsigned, signed with a made-up secret, and garbage.
fn webhook_request(http: &reqwest::Client, base: &str, i: u64) -> reqwest::RequestBuilder {
    let req = http.post(format!("{base}/api/webhook")).header("x-chatwoot-delivery", format!("flood-{i}"));
    let event = json!({"event": "message_created", "id": i, "message_type": "outgoing", "content": "hi",
        "conversation": {"id": i % 1000}, "account": {"id": 1}})
    .to_string();
    match i % 3 {
        0 => req.header("content-type", "application/json").body(event),
        1 => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            req.header("content-type", "application/json")
                .header("x-chatwoot-timestamp", now.to_string())
                .header("x-chatwoot-signature", format!("sha256={}", "ab".repeat(32)))
                .body(event)
        }
        _ => req.header("content-type", "application/json").body(vec![0xffu8; 4096]),
    }
}

/// `oversized`: in turn, a webhook declaring 10 MiB and sending it, a chunked webhook body of
/// 10 MiB, a 100 KiB request head, a 100 KiB WebSocket frame and a 20 KiB one.
async fn oversized(ctx: Arc<Ctx>) -> Result<()> {
    let mut tick = interval(Duration::from_secs_f64(1.0 / ctx.args.oversized_rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0u64;
    loop {
        tokio::select! {
            () = sleep_until(ctx.end) => break,
            _ = tick.tick() => {}
        }
        ctx.tally.attempt();
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            ctx.tally.saw("skipped");
            continue;
        };
        let ctx = ctx.clone();
        let variant = i % 5;
        i += 1;
        tasks.spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let outcome = match variant {
                0 => huge_body(&ctx, false).await,
                1 => huge_body(&ctx, true).await,
                2 => huge_head(&ctx).await,
                3 => big_frame(&ctx, HUGE_FRAME).await,
                _ => big_frame(&ctx, LARGE_FRAME).await,
            };
            let name =
                ["declared_10MiB", "chunked_10MiB", "head_100KiB", "frame_100KiB", "frame_20KiB"][variant as usize];
            let outcome = format!("{name}:{}", outcome.unwrap_or_else(|e| format!("attacker_error {e}")));
            if outcome.contains("close_") || outcome.contains("http_") {
                ctx.tally.cut(started.elapsed(), outcome);
            } else {
                ctx.tally.saw(outcome);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Posts a 10 MiB webhook (declared, or chunked with no length) and reports the server's
/// answer: it should come before the body is sent, or after the first 256 KiB.
async fn huge_body(ctx: &Ctx, chunked: bool) -> Result<String> {
    let tcp = ctx.connect().await?;
    let (mut rd, mut wr) = tcp.into_split();
    let length = if chunked { "transfer-encoding: chunked".to_owned() } else { format!("content-length: {HUGE_BODY}") };
    let head = format!(
        "POST /api/webhook HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{length}\r\n\r\n",
        ctx.host()
    );
    let send = async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < HUGE_BODY {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                wr.write_all(&chunk).await?;
                wr.write_all(b"\r\n").await?;
            } else {
                wr.write_all(&chunk).await?;
            }
            sent += chunk.len();
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        Ok(wr)
    };
    answer_while_sending(&mut rd, send).await
}

/// The server's answer (or how it ended the connection) while `send` writes a request; the
/// write side stays open after `send` is done, until the answer comes.
async fn answer_while_sending<W>(
    rd: &mut (impl AsyncReadExt + Unpin),
    send: impl Future<Output = std::io::Result<W>>,
) -> Result<String> {
    let answer = read_answer(rd);
    tokio::pin!(answer, send);
    let mut held = None;
    let deadline = sleep(STEP_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            answer = &mut answer => return Ok(answer),
            sent = &mut send, if held.is_none() => match sent {
                Ok(w) => held = Some(w),
                // The server answered and closed while we were still sending: its answer
                // may be waiting to be read.
                Err(_) => {
                    return Ok(timeout(Duration::from_secs(1), answer).await.unwrap_or_else(|_| "cut_while_sending".to_owned()));
                }
            },
            () = &mut deadline => return Ok("no_answer".to_owned()),
        }
    }
}

/// A config request whose head is 100 KiB of headers.
async fn huge_head(ctx: &Ctx) -> Result<String> {
    let mut tcp = ctx.connect().await?;
    let mut head =
        format!("GET /api/data/ai_chat_bot?clientUid={} HTTP/1.1\r\nhost: {}\r\n", ctx.args.client, ctx.host());
    while head.len() < HUGE_HEAD {
        head.push_str(&format!("x-pad-{}: {}\r\n", head.len(), "p".repeat(1000)));
    }
    head.push_str("\r\n");
    let (mut rd, mut wr) = tcp.split();
    let send = async move { wr.write_all(head.as_bytes()).await.map(|()| wr) };
    answer_while_sending(&mut rd, send).await
}

/// One text frame of `size` bytes on a fresh socket (no hello needed: size comes first); what
/// the server answered.
async fn big_frame(ctx: &Ctx, size: usize) -> Result<String> {
    let mut ws = ctx.socket(1 << 20).await.map_err(anyhow::Error::msg)?;
    let frame = json!({"type": "message", "id": "big", "text": "x".repeat(size)}).to_string();
    if ws.send(Message::text(frame)).await.is_err() {
        return Ok("cut_while_sending".to_owned());
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match timeout_at(deadline, ws.next()).await {
            Err(_) => return Ok("no_answer".to_owned()),
            Ok(Some(Ok(Message::Text(text)))) => {
                let _ = timeout(Duration::from_secs(1), ws.close(None)).await;
                return Ok(frame_kind(&text));
            }
            Ok(msg @ (Some(Ok(Message::Close(_)) | Err(_)) | None)) => return Ok(ws_end(msg)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads an HTTP answer's status line and error code, or how the connection ended.
async fn read_answer(rd: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return "closed".to_owned(),
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length.min(16 << 10) {
                break;
            }
        }
        if buf.len() > 64 << 10 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).unwrap_or("?").to_owned();
    let code = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("http_{status}:{code}")
}

/// `slowloris`: `--slowloris` connections (opened at 50 a second) that dribble a byte a
/// second, forever: half a request head (never finished), half a webhook body (head complete,
/// body never). A connection the server cuts is opened again, so the pressure holds.
async fn slowloris(ctx: Arc<Ctx>) -> Result<()> {
    let mut tick = interval(Duration::from_millis(20));
    let mut slots = Vec::new();
    for i in 0..ctx.args.slowloris {
        tick.tick().await;
        let ctx = ctx.clone();
        slots.push(tokio::spawn(async move {
            while Instant::now() < ctx.end {
                ctx.tally.attempt();
                let opened = Instant::now();
                match dribble(&ctx, i % 2 == 1).await {
                    Ok(Some((name, how))) => ctx.tally.cut(opened.elapsed(), format!("{name}:{how}")),
                    Ok(None) => ctx.tally.held(),
                    Err(e) => {
                        ctx.tally.saw(format!("attacker_error {e}"));
                        sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }
    for slot in slots {
        let _ = slot.await;
    }
    Ok(())
}

/// One slow connection until the server cuts it (`Some((variant, how))`) or the time is up.
async fn dribble(ctx: &Ctx, body: bool) -> Result<Option<(&'static str, String)>> {
    let mut tcp = ctx.connect().await?;
    let host = ctx.host();
    let (name, fast, mut slow) = if body {
        let head = format!(
            "POST /api/webhook HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
        );
        ("slow_body", head, b"{\"event\":\"".repeat(10_000))
    } else {
        let head = format!("GET /api/data/ai_chat_bot?clientUid={} HTTP/1.1\r\nhost: {host}\r\n", ctx.args.client);
        ("slow_head", String::new(), format!("{head}{}", "x-slow: loris\r\n".repeat(10_000)).into_bytes())
    };
    slow.truncate(100_000);
    let (mut rd, mut wr) = tcp.split();
    if !fast.is_empty() && wr.write_all(fast.as_bytes()).await.is_err() {
        return Ok(Some((name, "cut_while_sending".to_owned())));
    }
    let mut tick = interval(Duration::from_secs(1));
    let mut at = 0;
    let answer = read_answer(&mut rd);
    tokio::pin!(answer);
    loop {
        tokio::select! {
            () = sleep_until(ctx.end) => return Ok(None),
            how = &mut answer => return Ok(Some((name, how))),
            _ = tick.tick() => {
                if at < slow.len() {
                    if wr.write_all(&slow[at..at + 1]).await.is_err() {
                        return Ok(Some((name, "cut_while_sending".to_owned())));
                    }
                    at += 1;
                }
            }
        }
    }
}

/// The refusal counters: `name{labels}` to value.
async fn scrape(url: &str) -> Result<BTreeMap<String, f64>> {
    let text = reqwest::Client::builder().no_proxy().build()?.get(url).send().await?.error_for_status()?.text().await?;
    Ok(text
        .lines()
        .filter(|l| {
            ["aia_rate_limited_total", "aia_webhook_deliveries_total", "aia_refused_total"]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, v)| (name.clone(), v - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}
