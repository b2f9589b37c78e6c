//! `TestApp`: a real server on a random port with a fresh data directory, plus a WebSocket
//! client that validates every frame it sends and receives against `docs/protocol.schema.json`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use aia_chat::config::{ServeArgs, Settings, StoreArgs};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A running server for one test.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub state: aia_chat::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The password of every test server's first admin (`admin`).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A signed-in admin browser: its session cookie and CSRF token.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub cookie: String,
    pub csrf: String,
    pub base: String,
}

impl AdminSession {
    /// A request with the session cookie and, for anything but GET, the CSRF token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = http().request(method.clone(), format!("{}{path}", self.base)).header("cookie", &self.cookie);
        if method != reqwest::Method::GET {
            req = req.header("x-csrf-token", &self.csrf);
        }
        req
    }

    /// `GET` a JSON answer: (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        json_of(self.request(reqwest::Method::GET, path).send().await.unwrap()).await
    }

    /// A JSON call with a body: (status, body).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        json_of(self.request(method, path).json(&body).send().await.unwrap()).await
    }
}

/// Signs in to the admin API of the server at `base`; panics unless it succeeds.
pub async fn sign_in(base: &str, username: &str, password: &str) -> AdminSession {
    let r = http()
        .post(format!("{base}/api/admin/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "sign-in as {username}");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let body: Value = r.json().await.unwrap();
    AdminSession { cookie, csrf: body["csrfToken"].as_str().unwrap().to_string(), base: base.to_string() }
}

/// A response's status and JSON body (`Null` when empty or not JSON).
pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Settings for a test server in `dir` (demo on, SQLite).
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let args = ServeArgs {
        store: StoreArgs { data_dir: Some(dir.to_path_buf()), ..Default::default() },
        addr: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let mut s = args.settings().unwrap();
    s.admin_password = Some(aia_chat::config::Password(ADMIN_PASSWORD.into()));
    s.reload_interval = Duration::from_millis(200);
    s.schedule_interval = Duration::from_millis(200);
    s.shutdown_grace = Duration::from_secs(5);
    s.metrics_addr = aia_chat::config::MetricsAddr::Off;
    s
}

impl TestApp {
    /// Starts a server with the demo client.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted its settings.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        Self::spawn_in(dir, tweak).await
    }

    /// Starts a server on an existing data directory.
    pub async fn spawn_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        init_logs();
        let mut settings = test_settings(dir.path());
        tweak(&mut settings);
        let listener = aia_chat::app::bind(settings.addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = aia_chat::App::build(settings).await.unwrap();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run(listener, async move {
            let _ = rx.await;
        }));
        TestApp { addr, base: format!("http://{addr}"), dir, state, shutdown: Some(tx), handle: Some(handle) }
    }

    /// Signals shutdown and waits for the server to drain.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(15), h).await.expect("server stops").unwrap().unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Signs in to the admin API; panics unless it succeeds.
    pub async fn admin(&self, username: &str, password: &str) -> AdminSession {
        sign_in(&self.base, username, password).await
    }

    /// `aia-chat admin add NAME --client UID…` (a client admin) with `password`.
    pub fn add_client_admin(&self, name: &str, password: &str, clients: &[&str]) -> std::process::Output {
        let mut args = vec!["admin", "add", name, "--role", "client"];
        for uid in clients {
            args.extend(["--client", uid]);
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
            .args(args)
            .env("AIA_DATA_DIR", self.data_dir())
            .env("AIA_NEW_PASSWORD", password)
            .env_remove("AIA_SECRET_KEY")
            .env_remove("AIA_DATABASE_URL")
            .output()
            .unwrap()
    }

    /// The sign-in request, to send as it is or to tweak.
    pub fn admin_login(&self, username: &str, password: &str) -> reqwest::RequestBuilder {
        http().post(format!("{}/api/admin/login", self.base)).json(&json!({"username": username, "password": password}))
    }

    /// The data directory path.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `GET` a path, optionally with an Origin header.
    pub async fn get(&self, path: &str, origin: Option<&str>) -> reqwest::Response {
        let mut req = http().get(format!("{}{path}", self.base));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.unwrap()
    }

    /// `aia-chat client set UID PAIRS…`, then waits (up to 20 s) until the running server has
    /// loaded the change.
    pub async fn set_client(&self, uid: &str, pairs: &[&str]) {
        plant_secrets(pairs);
        let version = || self.state.registry.get(uid).map(|c| c.row.settings_version);
        let before = version();
        let out = self.cli(&[&["client", "set", uid], pairs].concat());
        assert!(out.status.success(), "client set: {}", String::from_utf8_lossy(&out.stderr));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while version() == before {
            assert!(std::time::Instant::now() < deadline, "the server did not load the change within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens the widget's socket for `client` with `origin`, or the refusal (status, body).
    pub async fn connect(&self, client: &str, origin: Option<&str>) -> Result<Ws, (u16, Value)> {
        connect_ws(&format!("ws://{}/ws?clientUid={client}", self.addr), origin).await
    }

    /// Connects as the demo widget on localhost and completes hello.
    pub async fn visitor(&self, session: Option<&str>) -> (Ws, Value) {
        let mut ws = self.connect("demo", Some("http://localhost:8080")).await.expect("demo socket");
        let welcome = ws.hello(session).await;
        (ws, welcome)
    }

    /// Runs the `aia-chat` binary against this server's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        cli(&self.data_dir(), args)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs the `aia-chat` binary with `--data-dir` set; what it prints is kept with the logs.
pub fn cli(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(args)
        .env("AIA_DATA_DIR", data_dir)
        .env_remove("AIA_SECRET_KEY")
        .env_remove("AIA_DATABASE_URL")
        .output()
        .unwrap();
    keep_output(args.first().copied().unwrap_or("cli"), &out);
    out
}

/// Where every test server's log (and every CLI run's output) goes: `scripts/test` scans it
/// after the suite for the canaries the tests planted (`canaries.txt` there).
pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh log file path in [`log_dir`] for a server of `kind`.
pub fn log_path(kind: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    log_dir().join(format!("{kind}-{}-{}.log", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Keeps a CLI run's stdout and stderr with the logs.
pub fn keep_output(kind: &str, out: &std::process::Output) {
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    if !text.is_empty() {
        std::fs::write(log_path(&format!("cli-{kind}")), text).unwrap();
    }
}

/// Sends the logs of every in-process test server to one JSON-lines file in [`log_dir`],
/// through the product's own redacting writer (what operators get), at debug level.
pub fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let file = std::fs::File::create(log_path("in-process")).unwrap();
        let filter = tracing_subscriber::EnvFilter::new("info,aia_chat=debug,sqlx=warn,tantivy=warn");
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(aia_chat::redact::RedactingWriter(file)))
            .try_init();
    });
}

/// Records `value` as a canary: `scripts/test` fails when any test server's log or CLI output
/// contains it. Returns it, for use in place.
pub fn canary(value: &str) -> String {
    use std::io::Write;
    let mut file = std::fs::File::options().create(true).append(true).open(log_dir().join("canaries.txt")).unwrap();
    writeln!(file, "{value}").unwrap();
    value.to_string()
}

/// Plants the values of secret settings among `key=value` pairs as canaries (long enough not
/// to occur by chance): whatever a test configures as a secret must never be logged.
pub fn plant_secrets(pairs: &[&str]) {
    for pair in pairs {
        if let Some((key, value)) = pair.split_once('=')
            && aia_chat::clients::settings::find(key).is_some_and(|d| d.secret())
            && value.len() >= 10
        {
            canary(value);
        }
    }
}

/// A shared HTTP client.
pub fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        aia_chat::outbound::install_crypto_provider();
        reqwest::Client::new()
    })
}

struct Schema {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.schema.json")).unwrap();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.add_resource("protocol.schema.json", serde_json::from_str(&text).unwrap()).unwrap();
        let index = compiler.compile("protocol.schema.json", &mut schemas).unwrap();
        Schema { schemas, index }
    })
}

/// Asserts that `frame` is valid under the protocol schema.
pub fn assert_valid(frame: &Value) {
    let s = schema();
    if let Err(e) = s.schemas.validate(frame, s.index) {
        panic!("frame violates docs/protocol.schema.json: {frame}\n{e:#}");
    }
}

/// A WebSocket as the widget uses it.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Opens a socket to `url` with `origin`.
pub async fn connect_ws(url: &str, origin: Option<&str>) -> Result<Ws, (u16, Value)> {
    connect_ws_with(url, origin, &[]).await
}

/// Opens a socket to `url` with `origin` and extra request headers.
pub async fn connect_ws_with(url: &str, origin: Option<&str>, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let mut request = url.into_client_request().unwrap();
    if let Some(o) = origin {
        request.headers_mut().insert("origin", o.parse().unwrap());
    }
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, _)) => Ok(Ws { stream }),
        Err(WsError::Http(resp)) => {
            let body =
                resp.body().as_deref().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("socket connect failed: {e}"),
    }
}

/// The default wait for a frame.
pub const WAIT: Duration = Duration::from_secs(20);

impl Ws {
    /// Sends a frame after checking it against the schema.
    pub async fn send(&mut self, frame: Value) {
        assert_valid(&frame);
        self.send_raw(Message::Text(frame.to_string().into())).await;
    }

    /// Sends anything, unchecked (for bad-input tests).
    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.unwrap();
    }

    /// The next text frame (validated), or `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.stream.next()).await.expect("a frame within 20 s")?;
            match msg {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_valid(&v);
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let f = self.next().await.unwrap_or_else(|| panic!("socket closed while waiting for {kind}"));
            if f["type"] == kind {
                return f;
            }
        }
    }

    /// The close frame's code, skipping text frames.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next()).await.expect("close within 20 s") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Says hello and returns the welcome.
    pub async fn hello(&mut self, session: Option<&str>) -> Value {
        let mut hello = json!({"type": "hello", "v": 1});
        if let Some(s) = session {
            hello["session"] = json!(s);
        }
        self.send(hello).await;
        self.next_of("welcome").await
    }

    /// Sends a message and returns (ack, answer).
    pub async fn ask(&mut self, id: &str, text: &str) -> (Value, Value) {
        self.send(json!({"type": "message", "id": id, "text": text})).await;
        let ack = self.next_of("ack").await;
        let seq = ack["seq"].clone();
        loop {
            let f = self.next_of("message").await;
            if f["message"]["replyTo"] == seq {
                return (ack, f["message"].clone());
            }
        }
    }
}

/// A fake service's listener back on the port it had: the old socket may linger for a moment
/// after the fake went down.
pub async fn rebind(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("the fake could not rebind {addr}: {e}"),
        }
    }
}

/// Records that a group of optional tests ran, for `scripts/test` to check (it fails on 0).
pub fn count_run(counter: &str, n: usize) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-counters");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(counter), n.to_string()).unwrap();
}

/// Prints a loud skip notice (visible with --nocapture and in `scripts/test`'s counter check).
pub fn loud_skip(group: &str, why: &str) {
    eprintln!("\n******** SKIPPED {group}: {why} ********\n");
}
