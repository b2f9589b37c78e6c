//! The widget in a real browser: headless Chromium, driven over WebDriver by a chromedriver this
//! test starts on loopback, against a real server and its demo page. One browser session runs
//! every check in order, each building on the last (the chat of checks 3 and 4 is the history
//! of check 5). Without Chromium or chromedriver the group is skipped loudly and counted as 0.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::model_fake::{FakeModel, text_stream};
use crate::support::{TestApp, count_run, http, loud_skip};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The demo client's button color `#1a73e8` as browsers compute it.
const DEMO_BLUE: &str = "rgb(26, 115, 232)";
/// The longest any one wait may take.
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// A bound on the whole run, so a stuck browser fails the test instead of hanging it.
const RUN_LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_in_a_real_browser() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if !missing.is_empty() {
        let why = format!("{} not installed (Debian: apt-get install chromium chromium-driver)", missing.join(" and "));
        loud_skip("browser", &why);
        count_run("BROWSER_TESTS_RUN", 0);
        return;
    }
    let started = Instant::now();
    let app = TestApp::spawn().await;
    // A second site, on an origin the demo client does not allow, embedding the same connect code.
    let code = connect_code(&app).await;
    let forbidden =
        serve_page("127.0.0.2:0", format!("<!doctype html><title>elsewhere</title><p>Not allowed.</p>{code}")).await;

    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities(profile.path()))
        .connect(&driver.url)
        .await
        .expect("a Chromium session from chromedriver");

    let run = tokio::time::timeout(RUN_LIMIT, checks(&client, &app, forbidden));
    let outcome = AssertUnwindSafe(run).catch_unwind().await;
    if !matches!(outcome, Ok(Ok(_))) {
        save_screenshot(&client, "browser-failure.png").await;
        eprintln!("browser: the console at the failure: {:#?}", browser_log(&client).await);
    }
    let _ = client.close().await;
    drop(driver);
    match outcome {
        Ok(Ok(n)) => {
            count_run("BROWSER_TESTS_RUN", n);
            eprintln!("browser: {n} checks passed in {:.1} s", started.elapsed().as_secs_f64());
        }
        Ok(Err(_)) => panic!("the browser checks did not finish within {RUN_LIMIT:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Every check, in order; returns how many ran.
async fn checks(client: &Client, app: &TestApp, forbidden: SocketAddr) -> usize {
    let mut n = 0;

    // 1. The demo page shows the launcher in the connect code's color, bottom right.
    client.goto(&format!("{}/", app.base)).await.unwrap();
    let w = wait_for(client, "the launcher on the demo page", |_| true).await;
    assert_eq!(w.launcher.bg, DEMO_BLUE, "launcher color: {w:#?}");
    let (right_gap, bottom_gap) = (w.viewport.width - w.launcher.right, w.viewport.height - w.launcher.bottom);
    assert!((0.0..=40.0).contains(&right_gap), "launcher not at the right edge: {w:#?}");
    assert!((0.0..=40.0).contains(&bottom_gap), "launcher not at the bottom edge: {w:#?}");
    assert!(w.panel_hidden && !w.panel_shown && w.launcher.expanded == "false", "panel open on load: {w:#?}");
    n += 1;

    // 2. Clicking the launcher opens the panel with the greeting.
    part(client, ".aia-launcher").await.click().await.unwrap();
    let w = wait_for(client, "the open panel with its greeting", |w| {
        !w.panel_hidden && w.panel_shown && w.launcher.expanded == "true" && w.greeting.is_some()
    })
    .await;
    let greeting = w.greeting.as_deref().unwrap();
    assert!(greeting.contains("Lumen Home assistant"), "greeting: {greeting:?}");
    assert!(w.messages.is_empty() && w.notices.is_empty(), "a fresh visitor sees only the greeting: {w:#?}");
    n += 1;

    // 3. A FAQ question: the visitor's bubble, then the FAQ answer.
    let question = "How long does shipping take?";
    ask(client, question).await;
    let w = wait_for(client, "the visitor's bubble", |w| w.messages.iter().any(|m| m.is("visitor", question))).await;
    assert_eq!(w.input, "", "the input is cleared after sending");
    let w = wait_for(client, "the FAQ answer", |w| w.answered(question, "working days")).await;
    assert_eq!(w.messages.len(), 2, "one question, one answer: {w:#?}");
    save_screenshot(client, "browser-widget-open.png").await;
    n += 1;

    // 4. An unrelated question gets the honest "I don't know".
    let question = "What is the capital of France?";
    ask(client, question).await;
    let before = wait_for(client, "the fallback answer", |w| w.answered(question, "don't know")).await;
    assert_eq!(before.messages.len(), 4, "two questions, two answers: {before:#?}");
    n += 1;

    // 5. After a reload the session resumes (localStorage) and the chat comes back from history.
    client.refresh().await.unwrap();
    let w = wait_for(client, "the widget after the reload", |_| true).await;
    assert!(w.panel_hidden, "the panel starts closed again: {w:#?}");
    part(client, ".aia-launcher").await.click().await.unwrap();
    let after = wait_for(client, "the history in the reopened panel", |w| {
        !w.panel_hidden && w.messages.iter().filter(|m| m.seq.is_some()).count() >= 4
    })
    .await;
    let chat = |w: &Widget| w.messages.iter().map(|m| (m.seq, m.role.clone(), m.text.clone())).collect::<Vec<_>>();
    assert_eq!(chat(&after), chat(&before), "the history is the same conversation");
    assert!(after.greeting.is_some() && after.notices.is_empty(), "{after:#?}");
    n += 1;

    // 6. Host page styles don't reach into the widget, even !important ones.
    let probe = client
        .execute(
            r#"const s = document.createElement("style");
            s.textContent = "button{background:red !important} *{font:40px/1 serif !important;color:lime !important}";
            document.head.append(s);
            const b = document.createElement("button");
            document.body.append(b);
            const bg = getComputedStyle(b).backgroundColor;
            b.remove();
            return bg;"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(probe, json!("rgb(255, 0, 0)"), "the injected style applies to the host page");
    let w = widget(client).await.expect("the widget is still there");
    assert_eq!(w.launcher.bg, DEMO_BLUE, "the page's button style reached the launcher: {w:#?}");
    for m in &w.messages {
        assert!(
            m.font_size == "14px" && m.color != "rgb(0, 255, 0)",
            "the page's font or color reached a bubble: {m:#?}"
        );
    }
    n += 1;

    // 7. With a model, its answer shows while it is written, and the stored one replaces it.
    let fake = FakeModel::start(vec![text_stream(Duration::from_millis(400))]).await;
    app.set_client("demo", &[&format!("model_url={}", fake.base())]).await;
    let question = "Do you ship to Austria?";
    ask(client, question).await;
    wait_for(client, "the model answer being written", |w| {
        w.messages.iter().any(|m| m.role == "assistant" && m.seq.is_none() && m.text == "Yes, we")
    })
    .await;
    let w = wait_for(client, "the stored model answer", |w| w.answered(question, "Yes, we do.")).await;
    assert!(w.messages.iter().all(|m| m.seq.is_some()), "the streamed bubble is replaced: {w:#?}");
    assert_eq!(w.messages.len(), 6, "three questions, three answers: {w:#?}");
    app.set_client("demo", &["model_url="]).await;
    n += 1;

    // 8. On an origin the client doesn't allow, the script runs but shows nothing and says why.
    let logs = browser_log(client).await; // drains what earlier pages logged
    client.goto(&format!("http://{forbidden}/")).await.unwrap();
    let ran = client.execute("return typeof window.AiaChat;", vec![]).await.unwrap();
    assert_eq!(ran, json!("object"), "the widget script ran on the forbidden page");
    let warnings = match logs {
        Some(_) => Some(wait_for_warning(client).await),
        None => {
            eprintln!("browser: chromedriver returned no console log; checking only that nothing is shown");
            tokio::time::sleep(Duration::from_secs(2)).await;
            None
        }
    };
    let shown = client.execute("return document.getElementById('aia-chat-root') !== null;", vec![]).await.unwrap();
    assert_eq!(shown, json!(false), "the widget appeared on a forbidden origin");
    if let Some(warnings) = warnings {
        assert_eq!(warnings.len(), 1, "one console warning: {warnings:#?}");
        assert!(warnings[0].contains("forbidden_origin"), "{warnings:#?}");
    }
    n += 1;

    n
}

/// What the widget shows, read from its shadow root.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Widget {
    launcher: Launcher,
    viewport: Viewport,
    /// The panel's `hidden` attribute.
    panel_hidden: bool,
    /// Whether the panel is rendered (not `display: none`).
    panel_shown: bool,
    greeting: Option<String>,
    messages: Vec<Bubble>,
    notices: Vec<String>,
    input: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Launcher {
    bg: String,
    right: f64,
    bottom: f64,
    expanded: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Viewport {
    width: f64,
    height: f64,
}

/// A message bubble (the greeting excluded).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bubble {
    role: String,
    seq: Option<u64>,
    text: String,
    font_size: String,
    color: String,
}

impl Bubble {
    fn is(&self, role: &str, text: &str) -> bool {
        self.role == role && self.text == text
    }
}

impl Widget {
    /// Whether `question` is stored and followed by a stored assistant answer containing `needle`.
    fn answered(&self, question: &str, needle: &str) -> bool {
        let Some(q) = self.messages.iter().position(|m| m.is("visitor", question) && m.seq.is_some()) else {
            return false;
        };
        self.messages[q + 1..]
            .iter()
            .any(|m| m.role == "assistant" && m.seq > self.messages[q].seq && m.text.contains(needle))
    }
}

const WIDGET_JS: &str = r#"
const host = document.getElementById("aia-chat-root");
if (!host || !host.shadowRoot) return null;
const r = host.shadowRoot, q = (s) => r.querySelector(s), css = (e) => getComputedStyle(e);
const launcher = q(".aia-launcher"), panel = q(".aia-panel"), rect = launcher.getBoundingClientRect();
const role = (e) => ([...e.classList].find((c) => c.startsWith("aia-msg-")) || "aia-msg-?").slice(8);
return {
  launcher: { bg: css(launcher).backgroundColor, right: rect.right, bottom: rect.bottom,
              expanded: launcher.getAttribute("aria-expanded") },
  viewport: { width: document.documentElement.clientWidth, height: document.documentElement.clientHeight },
  panelHidden: panel.hidden,
  panelShown: css(panel).display !== "none",
  greeting: q(".aia-greeting") ? q(".aia-greeting").textContent : null,
  messages: [...r.querySelectorAll(".aia-msg:not(.aia-greeting)")].map((e) => ({
    role: role(e),
    seq: e.hasAttribute("data-seq") ? +e.getAttribute("data-seq") : null,
    text: e.textContent,
    fontSize: css(e).fontSize,
    color: css(e).color,
  })),
  notices: [...r.querySelectorAll(".aia-notice")].map((e) => e.textContent),
  input: q(".aia-input").value,
};
"#;

/// The widget's state, or `None` while it isn't on the page.
async fn widget(client: &Client) -> Option<Widget> {
    let v = client.execute(WIDGET_JS, vec![]).await.expect("reading the widget");
    serde_json::from_value(v).expect("the widget snapshot")
}

/// Polls the widget until `ok` holds; panics with the last state after `WAIT`.
async fn wait_for(client: &Client, what: &str, ok: impl Fn(&Widget) -> bool) -> Widget {
    let deadline = Instant::now() + WAIT;
    loop {
        let w = widget(client).await;
        if let Some(w) = w.as_ref().filter(|w| ok(w)) {
            return w.clone();
        }
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}; the widget: {w:#?}");
        tokio::time::sleep(POLL).await;
    }
}

/// An element inside the widget's shadow root.
async fn part(client: &Client, css: &str) -> Element {
    let host = client.find(Locator::Css("#aia-chat-root")).await.expect("the widget's host element");
    let root = host.shadow_root().await.expect("the widget's open shadow root");
    root.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css} in the widget: {e}"))
}

/// Types `text` into the widget's input and clicks Send, as a visitor would.
async fn ask(client: &Client, text: &str) {
    part(client, "textarea.aia-input").await.send_keys(text).await.unwrap();
    part(client, "button.aia-send").await.click().await.unwrap();
}

/// The `[aia-chat]` console messages, once at least one arrived (within `WAIT`).
async fn wait_for_warning(client: &Client) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let entries = browser_log(client).await.unwrap_or_default();
        seen.extend(entries.iter().filter_map(|e| e["message"].as_str()).map(str::to_string));
        let ours: Vec<String> = seen.iter().filter(|m| m.contains("[aia-chat]")).cloned().collect();
        if !ours.is_empty() {
            // Anything else the script would log comes in the same task; one more read catches it.
            let late = browser_log(client).await.unwrap_or_default();
            let late = late.iter().filter_map(|e| e["message"].as_str()).filter(|m| m.contains("[aia-chat]"));
            return ours.into_iter().chain(late.map(str::to_string)).collect();
        }
        assert!(Instant::now() < deadline, "no [aia-chat] console message within {WAIT:?}; the console: {seen:#?}");
        tokio::time::sleep(POLL).await;
    }
}

/// chromedriver's console log since the last read (`POST /session/{id}/se/log`), or `None`
/// when this chromedriver doesn't offer it.
async fn browser_log(client: &Client) -> Option<Vec<Value>> {
    match client.issue_cmd(BrowserLog).await {
        Ok(Value::Array(entries)) => Some(entries),
        _ => None,
    }
}

#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// The demo page's connect code (its `<script>` tag), as a site owner would paste it.
async fn connect_code(app: &TestApp) -> String {
    let page = app.get("/", None).await.text().await.unwrap();
    let start =
        page.find(&format!("<script src=\"{}/js/ChatBot.js?", app.base)).expect("the connect code on the demo page");
    let len = page[start..].find("</script>").expect("the connect code's end") + "</script>".len();
    page[start..start + len].to_string()
}

/// Serves `html` at `/` from `addr` (a loopback address) until the test ends.
async fn serve_page(addr: &str, html: String) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let (status, body) =
                    if request.starts_with(b"GET / ") { ("200 OK", html.as_str()) } else { ("404 Not Found", "") };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    local
}

/// Chromium's session capabilities: headless, no background traffic, a fresh profile.
fn capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("--user-data-dir={}", profile.display()), "--window-size=1280,900".to_string()])
    .collect::<Vec<_>>();
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(caps) = caps else { unreachable!() };
    caps
}

/// Writes a screenshot of the page to the test's scratch directory.
async fn save_screenshot(client: &Client, name: &str) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    match client.screenshot().await {
        Ok(png) => match std::fs::write(&path, png) {
            Ok(()) => eprintln!("browser: screenshot {}", path.display()),
            Err(e) => eprintln!("browser: cannot write {}: {e}", path.display()),
        },
        Err(e) => eprintln!("browser: no screenshot: {e}"),
    }
}

/// A chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver and waits until it reports ready (a few tries if the port got taken).
    async fn start() -> Driver {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver");
            let mut driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
            if driver.ready().await {
                return driver;
            }
        }
        panic!("chromedriver did not start");
    }

    /// Whether `/status` says ready within `WAIT`; false if chromedriver exited.
    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(r) = http().get(format!("{}/status", self.url)).send().await
                && let Ok(status) = r.json::<Value>().await
                && status["value"]["ready"] == json!(true)
            {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("chromedriver at {} did not answer within {WAIT:?}", self.url);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
