//! What the end-to-end benchmarks share: the release server as a child process, sockets from
//! chosen loopback source addresses, and the figures (percentiles, CPU time).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep};

/// The release server as a child process; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// `aia-chat serve` on a free port with its own data directory; `env` adds or replaces
    /// environment variables (without them: SQLite in `data`, a key of its own).
    pub fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = data.join(format!("server-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aia-chat"));
        cmd.args(["serve", "--addr", &addr.to_string()])
            .env("AIA_DATA_DIR", data)
            .env("AIA_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("AIA_SECRET_KEY")
            .env_remove("AIA_DATABASE_URL")
            .env_remove("AIA_REDIS_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start aia-chat serve");
        Server { child, base: format!("http://{addr}"), addr, log }
    }

    /// Waits until `/readyz` says ready (up to `limit`).
    pub async fn ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = crate::support::http().get(format!("{}/readyz", self.base)).send().await;
            if ok.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the server was not ready within {limit:?}:\n{}", self.log());
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the running server offers a person to the demo widget (the settings
    /// written by `client set` are loaded).
    pub async fn operator_loaded(&self, origin: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let config = crate::support::http()
                .get(format!("{}/api/data/ai_chat_bot?clientUid=demo", self.base))
                .header("origin", origin)
                .send()
                .await;
            if let Ok(r) = config
                && let Ok(v) = r.json::<Value>().await
                && v["operator"] == true
            {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not load the operator settings in time");
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// utime + stime in seconds.
    pub fn cpu(&self) -> f64 {
        cpu_secs(&self.child.id().to_string())
    }

    /// Resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection from loopback source address `src`.
pub async fn tcp_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    sock.bind(&SocketAddr::from((src, 0)).into())?;
    TcpSocket::from_std_stream(sock.into()).connect(to).await
}

/// p50/p95/p99/max (nearest rank) of samples in ms.
pub fn summary(samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return json!({ "samples": 0 });
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        (samples[rank - 1] * 100.0).round() / 100.0
    };
    json!({
        "samples": samples.len(), "p50_ms": pick(0.5), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    })
}

/// utime + stime of a process (`self` or a pid) in seconds.
pub fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A visitor socket as the benchmarks use it (no TLS).
pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens the demo widget's socket from `src` with `origin` and says hello; the socket and its
/// conversation id, each step within `step`.
pub async fn hello(server: SocketAddr, src: Ipv4Addr, origin: &str, step: Duration) -> Result<(Ws, String), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio::time::timeout;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = timeout(step, tcp_from(src, server)).await.map_err(|_| "connect timeout")?.map_err(|e| e.to_string())?;
    let mut request = format!("ws://{server}/ws?clientUid=demo").into_client_request().unwrap();
    request.headers_mut().insert("origin", origin.parse().unwrap());
    let (mut ws, _) = timeout(step, tokio_tungstenite::client_async(request, tcp))
        .await
        .map_err(|_| "handshake timeout")?
        .map_err(|e| e.to_string())?;
    ws.send(Message::text(r#"{"type":"hello","v":1}"#)).await.map_err(|e| e.to_string())?;
    loop {
        let frame = timeout(step, ws.next()).await.map_err(|_| "no welcome")?.ok_or("closed before welcome")?;
        if let Ok(Message::Text(t)) = frame {
            let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
            match v["type"].as_str() {
                Some("welcome") => {
                    let conversation = v["conversationId"].as_str().ok_or("no conversationId")?.to_string();
                    return Ok((ws, conversation));
                }
                Some("error") => return Err(format!("hello refused: {v}")),
                _ => {}
            }
        }
    }
}

/// Reads `--name=N` options into `options` (cargo's own `--bench` is skipped); panics on
/// anything else, naming what is known.
pub fn numeric_args(options: &mut [(&str, &mut usize)]) {
    for arg in std::env::args().skip(1) {
        let Some((key, value)) = arg.split_once('=') else { continue };
        let n = value.parse().unwrap_or_else(|_| panic!("{arg}: not a number"));
        match options.iter_mut().find(|(name, _)| *name == key) {
            Some((_, slot)) => **slot = n,
            None => {
                let known: Vec<String> = options.iter().map(|(name, _)| format!("{name}=N")).collect();
                panic!("unknown option {arg} ({})", known.join(" "))
            }
        }
    }
}
