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
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::catalog_fake::FakeCatalog;
use crate::chatwoot_fake::{FakeChatwoot, INBOX_SECRET};
use crate::model_fake::{FakeModel, text_stream};
use crate::support::{TestApp, count_run, http, loud_skip};
use crate::trello_fake::FakeTrello;

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The demo client's button color `#1a73e8` as browsers compute it.
const DEMO_BLUE: &str = "rgb(26, 115, 232)";
/// The longest any one wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// A bound on the whole run, so a stuck browser fails the test instead of hanging it.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Whether Chromium and chromedriver are installed; if not, the group is skipped loudly and
/// its `counter` says 0 (scripts/test then fails).
pub(crate) fn browser_present(group: &str, counter: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if !missing.is_empty() {
        let why = format!("{} not installed (Debian: apt-get install chromium chromium-driver)", missing.join(" and "));
        loud_skip(group, &why);
        count_run(counter, 0);
    }
    missing.is_empty()
}

/// Runs `checks` in one fresh Chromium session within `limit`, counting how many passed in
/// `counter`; a failure leaves `{group}-failure.png` and the browser console in the output.
pub(crate) async fn in_browser<F>(group: &str, counter: &str, limit: Duration, checks: F)
where
    F: for<'a> FnOnce(&'a Client) -> futures_util::future::BoxFuture<'a, usize>,
{
    let started = Instant::now();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities(profile.path()))
        .connect(&driver.url)
        .await
        .expect("a Chromium session from chromedriver");
    let outcome = AssertUnwindSafe(tokio::time::timeout(limit, checks(&client))).catch_unwind().await;
    if !matches!(outcome, Ok(Ok(_))) {
        save_screenshot(&client, &format!("{group}-failure.png")).await;
        eprintln!("{group}: the console at the failure: {:#?}", browser_log(&client).await);
    }
    let _ = client.close().await;
    drop(driver);
    match outcome {
        Ok(Ok(n)) => {
            count_run(counter, n);
            eprintln!("{group}: {n} checks passed in {:.1} s", started.elapsed().as_secs_f64());
        }
        Ok(Err(_)) => panic!("the {group} checks did not finish within {limit:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_in_a_real_browser() {
    if !browser_present("browser", "BROWSER_TESTS_RUN") {
        return;
    }
    let app = TestApp::spawn().await;
    // Two sites embedding the connect code, reached by real-looking names that Chromium resolves
    // to loopback: shop.com, which the demo client allows, and evilshop.com, which it doesn't.
    let code = connect_code(&app).await;
    let evil =
        serve_page("127.0.0.1:0", format!("<!doctype html><title>elsewhere</title><p>Not allowed.</p>{code}")).await;
    let forbidden = format!("http://evilshop.com:{}/", evil.port());
    let shop = serve_site("127.0.0.1:0", shop_pages(&app, &code)).await;
    let shop = format!("http://shop.com:{}", shop.port());
    app.set_client("demo", &["allowed_domains=127.0.0.1,localhost,shop.com"]).await;

    in_browser("browser", "BROWSER_TESTS_RUN", RUN_LIMIT, |client| {
        Box::pin(async move {
            let n = checks(client, &app, &forbidden).await + site_checks(client, &app, &shop).await;
            let n = n + host_api_checks(client, &app, &shop).await + operator_check(client, &app, &shop).await;
            let n = n + tasks_check(client, &app, &shop).await + catalog_check(client, &app, &shop).await;
            let n = n + privacy_check(client, &app, &shop).await;
            n + restart_check(client, app, &shop).await
        })
    })
    .await;
}

/// Every check, in order; returns how many ran.
async fn checks(client: &Client, app: &TestApp, forbidden: &str) -> usize {
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

    // 3b. The size budget of [widget], as this browser fetched it: load, open, one answer.
    let sizes = widget_transfer(client).await;
    let (loader, total) = (sizes.of("/js/ChatBot.js"), sizes.total());
    eprintln!("widget-size: {}", serde_json::to_string(&sizes.report()).unwrap());
    assert!(loader > 0 && loader <= 4096, "the loader took {loader} bytes (budget 4096): {sizes:?}");
    assert!(total <= 20 * 1024, "the widget took {total} bytes (budget 20480): {sizes:?}");
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
    client.goto(forbidden).await.unwrap();
    let ran = client.execute("return typeof window.AIAChat;", vec![]).await.unwrap();
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

/// The connect code as site owners paste it, in each place and way it may be pasted, plus the
/// strict-CSP page and the renderer's page (a WebSocket stand-in that the test feeds frames).
fn shop_pages(app: &TestApp, code: &str) -> Vec<Page> {
    let with = |attr: &str| code.replacen("<script src=", &format!("<script {attr} src="), 1);
    let head = |title: &str, code: &str| {
        format!(
            "<!doctype html><html lang=\"en\"><head><title>{title}</title>{code}</head><body><h1>Shop</h1></body></html>"
        )
    };
    let body = |title: &str, code: &str| {
        format!(
            "<!doctype html><html lang=\"en\"><head><title>{title}</title></head><body><h1>Shop</h1>{code}</body></html>"
        )
    };
    let ws = app.base.replacen("http://", "ws://", 1);
    let nonce = "n0nce4test";
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}' {host}; connect-src {host} {ws}; img-src {host} https:; \
         style-src 'nonce-{nonce}'; require-trusted-types-for 'script'",
        host = app.base
    );
    let watch = format!(
        "<script nonce=\"{nonce}\">window.__violations = []; document.addEventListener('securitypolicyviolation', \
         (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));</script>"
    );
    let fake_ws = "<script>window.__sockets = []; window.WebSocket = class { constructor(url) { this.url = url; \
        this.sent = []; window.__ws = this; __sockets.push(this); setTimeout(() => this.onopen && this.onopen(), 0); } \
        send(s) { this.sent.push(JSON.parse(s)); } close() {} push(f) { this.onmessage({ data: JSON.stringify(f) }); } };</script>";
    vec![
        Page::new("/head", head("In head", code)),
        Page::new("/body", body("In body", code)),
        Page::new("/async", body("Async", &with("async"))),
        Page::new("/defer", head("Defer", &with("defer"))),
        Page { path: "/csp".into(), csp: Some(csp), html: head("Strict CSP", &format!("{watch}{code}")) },
        Page::new("/renderer", body("Renderer", &format!("{fake_ws}{code}"))),
    ]
}

/// The checks on the shop's own pages (origin `shop`): every way of pasting the code, a
/// keyboard-only conversation, a second tab, a phone-sized screen, a strict CSP, every message
/// kind of the protocol, the four corners and the contrast of every text over a grid of colors.
async fn site_checks(client: &Client, app: &TestApp, shop: &str) -> usize {
    let mut n = 0;

    // 9. The script in <head>, in <body>, async and defer: the launcher shows each time.
    for path in ["/head", "/body", "/async", "/defer"] {
        client.goto(&format!("{shop}{path}")).await.unwrap();
        let w = wait_for(client, &format!("the launcher on {path}"), |_| true).await;
        assert_eq!(w.launcher.bg, DEMO_BLUE, "{path}: {w:#?}");
        n += 1;
    }

    // 10. Keyboard only: Tab reaches the launcher, Enter opens with the focus in the input,
    // Enter sends, Escape closes and gives the focus back to the launcher.
    client.goto(&format!("{shop}/body")).await.unwrap();
    wait_for(client, "the launcher", |_| true).await;
    keys(client, &Key::Tab.to_string()).await;
    assert_eq!(focused(client).await, "aia-launcher", "Tab reaches the launcher");
    keys(client, &Key::Enter.to_string()).await;
    wait_for(client, "the panel opened by Enter", |w| w.panel_shown).await;
    wait_until(client, "the focus in the input", || async { focused(client).await == "aia-input" }).await;
    let question = "How long does shipping take?";
    keys(client, &format!("{question}{}", Key::Enter)).await;
    wait_for(client, "the answer to a keyboard question", |w| w.answered(question, "working days")).await;
    keys(client, &Key::Escape.to_string()).await;
    wait_for(client, "the panel closed by Escape", |w| w.panel_hidden).await;
    assert_eq!(focused(client).await, "aia-launcher", "the focus goes back to the launcher");
    n += 1;

    // 11. A second tab of the same site shows the same conversation, and both stay live.
    let first = client.window().await.unwrap();
    let second = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second.clone()).await.unwrap();
    client.goto(&format!("{shop}/body")).await.unwrap();
    part(client, ".aia-launcher").await.click().await.unwrap();
    let w = wait_for(client, "the history in the second tab", |w| w.answered(question, "working days")).await;
    assert_eq!(w.messages.len(), 2, "the same conversation: {w:#?}");
    let question2 = "Which payment methods do you accept?";
    ask(client, question2).await;
    wait_for(client, "the answer in the second tab", |w| w.answered(question2, "")).await;
    client.switch_to_window(first.clone()).await.unwrap();
    let w = wait_for(client, "the second tab's question in the first", |w| w.answered(question2, "")).await;
    assert_eq!(w.messages.len(), 4, "each message once: {w:#?}");
    // The first tab's panel is closed: the answer it received live shows as unread.
    assert!(w.panel_hidden && w.badge.as_deref() == Some("1"), "the unread badge: {w:#?}");
    part(client, ".aia-launcher").await.click().await.unwrap();
    wait_for(client, "the badge cleared on open", |w| w.panel_shown && w.badge.is_none()).await;
    client.switch_to_window(second).await.unwrap();
    client.close_window().await.unwrap();
    client.switch_to_window(first).await.unwrap();
    n += 1;

    // 12. On a 375 px wide screen the open panel takes the whole viewport.
    client.set_window_size(375, 740).await.unwrap();
    client.goto(&format!("{shop}/body")).await.unwrap();
    part(client, ".aia-launcher").await.click().await.unwrap();
    wait_for(client, "the panel on a phone", |w| w.panel_shown).await;
    let rect = client
        .execute(
            r#"const p = document.getElementById("aia-chat-root").shadowRoot.querySelector(".aia-panel").getBoundingClientRect();
            return [p.left, p.top, p.width, p.height, document.documentElement.clientWidth, innerHeight];"#,
            vec![],
        )
        .await
        .unwrap();
    let r: Vec<f64> = serde_json::from_value(rect).unwrap();
    assert!(
        r[0] == 0.0 && r[1] == 0.0 && (r[2] - r[4]).abs() < 1.0 && (r[3] - r[5]).abs() < 2.0,
        "not full screen: {r:?}"
    );
    client.set_window_size(1280, 900).await.unwrap();
    n += 1;

    // 13. Under the strict Content-Security-Policy of docs/widget.md: shown, opened, answered,
    // and not one violation.
    client.goto(&format!("{shop}/csp")).await.unwrap();
    wait_for(client, "the launcher under a strict CSP", |_| true).await;
    part(client, ".aia-launcher").await.click().await.unwrap();
    let question3 = "Can I return an item?";
    ask(client, question3).await;
    wait_for(client, "an answer under a strict CSP", |w| w.answered(question3, "")).await;
    let violations = client.execute("return window.__violations;", vec![]).await.unwrap();
    assert_eq!(violations, json!([]), "CSP violations");
    n += 1;

    // 14. The corner of the connect code's position.
    for position in ["bottom-left", "top-left", "top-right"] {
        app.set_client("demo", &[&format!("position={position}")]).await;
        client.goto(&format!("{shop}/body")).await.unwrap();
        let w = wait_for(client, position, |_| true).await;
        let (vertical, side) = position.split_once('-').unwrap();
        let x = if side == "left" { w.launcher.left } else { w.viewport.width - w.launcher.right };
        let y = if vertical == "top" { w.launcher.top } else { w.viewport.height - w.launcher.bottom };
        assert!((0.0..=40.0).contains(&x) && (0.0..=40.0).contains(&y), "{position}: {w:#?}");
    }
    app.set_client("demo", &["position=bottom-right"]).await;
    n += 1;

    // 15. Every text keeps a contrast of at least 4.5:1 (WCAG AA), whatever the colors.
    let grid = ["#000", "#fff", "#ff0", "#777", "#888", "#1a73e8", "#ffffff"];
    let pairs = grid.iter().map(|c| (*c, "#ffffff")).chain(grid.iter().map(|c| ("#1a73e8", *c)));
    for (button, bg) in pairs.chain([("#777", "#888"), ("#888", "#777"), ("#ff0", "#000")]) {
        app.set_client("demo", &[&format!("button_color={button}"), &format!("bg_color={bg}")]).await;
        client.goto(&format!("{shop}/body")).await.unwrap();
        wait_for(client, "the launcher", |_| true).await;
        part(client, ".aia-launcher").await.click().await.unwrap();
        wait_for(client, "the history", |w| w.messages.len() >= 4).await;
        let v = client.execute(CONTRAST_JS, vec![]).await.unwrap();
        let ratios: Vec<(String, f64)> = serde_json::from_value(v).unwrap();
        assert!(ratios.len() >= 8, "texts measured: {ratios:?}");
        let worst = ratios.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert!(worst.1 >= 4.5, "button {button}, background {bg}: {worst:?} in {ratios:?}");
    }
    app.set_client("demo", &["button_color=#1a73e8", "bg_color=#ffffff"]).await;
    n += 1;

    // 16. Every message kind, rendered from protocol frames (a WebSocket stand-in): Markdown,
    // product cards, operator messages, task confirmations, attachments, typing, feedback; and
    // hostile text from every source (the bot's name and greeting from the config and the
    // `welcome`, visitor, model, operator and system texts, the operator's name, product
    // fields, task titles, attachment names, a streamed piece, a live message) stays text,
    // with every link http(s) or mailto.
    let (name, greeting) = {
        let demo = app.state.registry.get("demo").unwrap();
        (demo.settings.get("bot_name").to_string(), demo.settings.get("greeting").to_string())
    };
    app.set_client("demo", &[&format!("bot_name={HOSTILE_NAME}"), &format!("greeting={HOSTILE} **hi**")]).await;
    client.goto(&format!("{shop}/renderer")).await.unwrap();
    part(client, ".aia-launcher").await.click().await.unwrap();
    wait_until(client, "the stand-in socket's hello", || async {
        client.execute("return !!window.__ws && window.__ws.sent.length > 0;", vec![]).await.unwrap() == json!(true)
    })
    .await;
    client.execute(RENDERER_FRAMES, vec![json!(HOSTILE)]).await.unwrap();
    let seen = client.execute(RENDERED_JS, vec![json!(HOSTILE)]).await.unwrap();
    let expected = json!({
        "xss": false, "scripts": 0,
        "visitorText": "<img src=x onerror=\"window.__xss=1\"> **not bold**",
        "strong": ["hi", "Bold", "sys", "op"], "em": ["it", "streaming"], "code": ["code"], "items": ["one", "two"],
        "links": ["https://shop.example/p", "https://files.example/i.pdf", "https://tasks.example/c/1",
            "mailto:help@shop.example", "mailto:files@shop.example"],
        "badLinkText": true,
        "product": ["Desk lamp", "€19.90", "In stock", "https://img.example/lamp.png", "https://shop.example/lamp"],
        "operator": ["Anna", "https://img.example/anna.png"], "status": "A person is answering",
        "task": "Task createdCall back about order 1001", "typing": true,
        "feedbackUp": "true",
        // Hostile text from every source.
        "injected": 0, "handlers": 0,
        "title": HOSTILE_NAME, "label": HOSTILE_NAME, "greeting": true,
        "system": true, "visitor": HOSTILE, "model": true, "droppedLinks": ["data link", "vb link"],
        "cards": [["DIV", HOSTILE, HOSTILE, "Out of stock", 0], ["DIV", "Data card", "€5.00", "", 0]],
        "operatorName": [HOSTILE, 0], "operatorText": true,
        "files": [HOSTILE, "vb", "data"], "taskTitle": format!("Task created{HOSTILE}"),
        "streamed": true, "live": format!("Live {HOSTILE}"),
        "schemes": ["https:", "mailto:"], "images": ["https:"]
    });
    assert_eq!(seen, expected, "the renderer");
    part(client, ".aia-fb-down").await.click().await.unwrap();
    let sent = client.execute("return window.__ws.sent[window.__ws.sent.length - 1];", vec![]).await.unwrap();
    assert_eq!(sent, json!({"type": "feedback", "seq": 2, "value": "down"}), "feedback sent");
    app.set_client("demo", &[&format!("bot_name={name}"), &format!("greeting={greeting}")]).await;
    n += 1;

    n
}

/// Check 17, the host page's API: `identify` reaches the session (unverified), `close`/`open` drive
/// the panel, and `reset` starts a new conversation.
async fn host_api_checks(client: &Client, app: &TestApp, shop: &str) -> usize {
    client.goto(&format!("{shop}/body")).await.unwrap();
    wait_for(client, "the launcher", |_| true).await;
    client.execute("AIAChat.open();", vec![]).await.unwrap();
    // (The renderer's stand-in left a session the server doesn't know: this is a new one.)
    wait_for(client, "the panel opened by the API", |w| w.panel_shown).await;
    let question = "How long does shipping take?";
    ask(client, question).await;
    wait_for(client, "an answer", |w| w.answered(question, "working days")).await;
    let token = || async {
        let v = client.execute(r#"return localStorage.getItem("aia-chat:session:demo");"#, vec![]).await.unwrap();
        v.as_str().expect("a session token in localStorage").to_string()
    };
    let old = token().await;
    client.execute(r#"AIAChat.identify({ name: "Ada Lovelace", email: "ada@example.com" });"#, vec![]).await.unwrap();
    let demo = app.state.registry.get("demo").unwrap().row.id;
    let store = app.state.store.clone();
    let hash = aia_chat::ids::token_hash(&old);
    wait_until(client, "the identity on the session", || async {
        let row = store.session_find(demo, &hash).await.unwrap().expect("the session");
        row.visitor_name.as_deref() == Some("Ada Lovelace") && row.visitor_email.as_deref() == Some("ada@example.com")
    })
    .await;
    client.execute("AIAChat.close();", vec![]).await.unwrap();
    wait_for(client, "the panel closed by the API", |w| w.panel_hidden).await;
    client.execute("AIAChat.reset(); AIAChat.open();", vec![]).await.unwrap();
    let w = wait_for(client, "a new conversation after reset", |w| w.panel_shown && w.messages.is_empty()).await;
    assert!(w.greeting.is_some(), "the greeting stays: {w:#?}");
    wait_until(client, "a new session token", || async { token().await != old }).await;
    ask(client, question).await;
    wait_for(client, "an answer in the new conversation", |w| w.answered(question, "working days")).await;
    1
}

/// Check 17b, [operator]: the visitor asks for a person with the widget's action, the
/// hand-off reaches the fake Chatwoot, and the agent's reply (a signed webhook) shows in the
/// widget as an operator message with the agent's name; resolving gives the bot back.
async fn operator_check(client: &Client, app: &TestApp, shop: &str) -> usize {
    let fake = FakeChatwoot::start().await;
    open_with_settings(client, app, shop, &fake.client_settings()).await;
    part(client, ".aia-human").await.click().await.unwrap();
    wait_for(client, "the hand-off notice", |w| {
        w.messages.iter().any(|m| m.role == "system" && m.text.contains("person from our team"))
    })
    .await;
    let deadline = Instant::now() + WAIT;
    let conversation = loop {
        if let Some(c) = fake.conversations().into_iter().find(|c| c.status == "open") {
            break c;
        }
        assert!(Instant::now() < deadline, "the hand-off never reached Chatwoot");
        tokio::time::sleep(POLL).await;
    };
    let webhook = format!("{}/api/webhook", app.base);
    let reply = fake.agent_writes(conversation.id, "Hi, I'm Sam from the shop. How can I help?");
    assert_eq!(fake.send_webhook(&webhook, &reply, Some(INBOX_SECRET)).await.status, Some(200));
    wait_for(client, "the operator's reply", |w| {
        w.messages.iter().any(|m| m.role == "operator" && m.text == "Hi, I'm Sam from the shop. How can I help?")
    })
    .await;
    let shown = client
        .execute(
            r#"const r = document.getElementById("aia-chat-root").shadowRoot;
            return [r.querySelector(".aia-msg-operator .aia-who").textContent, r.querySelector(".aia-status").textContent,
                    r.querySelector(".aia-human").hidden];"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!(["Sam Agent", "A person is answering", true]), "the operator's name and the status");
    let resolved = fake.agent_sets_status(conversation.id, "resolved");
    assert_eq!(fake.send_webhook(&webhook, &resolved, Some(INBOX_SECRET)).await.status, Some(200));
    wait_for(client, "the bot back", |w| w.messages.iter().any(|m| m.text.contains("assistant is here again"))).await;
    app.set_client("demo", &["operator_url="]).await;
    1
}

/// The first non-null value `script` returns, polled until [`WAIT`] runs out.
async fn until_js(client: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = client.execute(script, vec![]).await.unwrap();
        if !value.is_null() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} never showed");
        tokio::time::sleep(POLL).await;
    }
}

/// Gives the demo client `pairs`, then opens the widget's panel on the shop page.
async fn open_with_settings(client: &Client, app: &TestApp, shop: &str, pairs: &[String]) {
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    client.goto(&format!("{shop}/body")).await.unwrap();
    wait_for(client, "the launcher", |_| true).await;
    part(client, ".aia-launcher").await.click().await.unwrap();
    wait_for(client, "the panel", |w| w.panel_shown).await;
}

/// [operations]: with `privacy_url` set, the panel's first line links to the shop's privacy
/// page (a new tab, no referrer); without it there is no such line.
async fn privacy_check(client: &Client, app: &TestApp, shop: &str) -> usize {
    let read = r#"const p = document.getElementById("aia-chat-root").shadowRoot.querySelector(".aia-messages");
        const first = p && p.firstElementChild;
        if (!first || !first.classList.contains("aia-privacy")) return null;
        const a = first.querySelector("a");
        return [first.textContent, a.href, a.target, a.rel];"#;
    let url = "https://shop.example/privacy?lang=en".to_string();
    open_with_settings(client, app, shop, &[format!("privacy_url={url}")]).await;
    let line = until_js(client, "the privacy line", read).await;
    assert_eq!(line[0], "How we handle your data", "{line}");
    assert_eq!(line[1], url.as_str(), "{line}");
    assert_eq!((line[2].as_str(), line[3].as_str()), (Some("_blank"), Some("noopener noreferrer nofollow")));
    open_with_settings(client, app, shop, &["privacy_url=".to_string()]).await;
    let none = client
        .execute(
            r#"return document.getElementById("aia-chat-root").shadowRoot.querySelectorAll(".aia-privacy").length;"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(none, 0, "no line without a privacy page");
    1
}

/// Check 17c, [tasks]: the visitor asks to be called back, says yes to the proposal, and the
/// widget shows the task confirmation with the card's reference (and no link to the board).
async fn tasks_check(client: &Client, app: &TestApp, shop: &str) -> usize {
    let trello = FakeTrello::start().await;
    open_with_settings(client, app, shop, &trello.client_settings()).await;
    ask(client, "Please call me back tomorrow morning").await;
    wait_for(client, "the proposal", |w| {
        w.messages.iter().any(|m| m.role == "assistant" && m.text.contains("Shall I?"))
    })
    .await;
    ask(client, "Yes").await;
    let shown = until_js(
        client,
        "the task confirmation",
        r#"const t = document.getElementById("aia-chat-root").shadowRoot.querySelector(".aia-task");
        return t ? [t.textContent, t.querySelectorAll("a").length, t.getAttribute("role")] : null;"#,
    )
    .await;
    let card = trello.cards().pop().expect("the card");
    let text = shown[0].as_str().unwrap();
    assert!(text.starts_with("Task created") && text.contains("Callback: Please call me back"), "{shown}");
    assert!(text.contains(&format!("(ref {})", card.short_link)), "the card's reference: {shown}");
    assert_eq!((shown[1].as_u64(), shown[2].as_str()), (Some(0), Some("note")), "no link to the private board");
    save_screenshot(client, "browser-task-created.png").await;
    app.set_client("demo", &["trello_key="]).await;
    1
}

/// Check 17d, [catalog]: "Do you have a kettle?" shows the fake catalog's products as cards
/// with a loaded image, the price in euros and a link that opens the product page.
async fn catalog_check(client: &Client, app: &TestApp, shop: &str) -> usize {
    let catalog = FakeCatalog::start().await;
    open_with_settings(client, app, shop, &catalog.client_settings()).await;
    ask(client, "Do you have a kettle?").await;
    let cards = until_js(
        client,
        "the product cards",
        r#"const r = document.getElementById("aia-chat-root").shadowRoot;
                const cards = [...r.querySelectorAll("a.aia-product")];
                const ready = cards.length && cards.every((a) => !a.querySelector("img") || a.querySelector("img").complete);
                return ready ? cards.map((a) => ({ href: a.href, target: a.target, name: a.querySelector("b").textContent,
                    price: (a.querySelector(".aia-price") || {}).textContent || "",
                    image: a.querySelector("img") ? a.querySelector("img").naturalWidth : -1 })) : null;"#,
    )
    .await;
    let red = cards.as_array().unwrap().iter().find(|c| c["name"] == "Kettle Classic Red").expect("the red kettle");
    assert_eq!(red["href"], catalog.product_url("kettle-classic-red"), "{red}");
    assert_eq!(red["target"], "_blank");
    assert!(red["price"].as_str().unwrap().contains("34.90") && red["price"].as_str().unwrap().contains('€'), "{red}");
    assert_eq!(red["image"], 1, "the image loaded: {red}");
    let page = http().get(red["href"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(page.status(), 200, "the link works");
    assert!(page.text().await.unwrap().contains("Kettle Classic Red"));
    save_screenshot(client, "browser-product-cards.png").await;
    app.set_client("demo", &["product_graphql_url=", "store_url="]).await;
    1
}

/// Check 18: the server stops and comes back on the same address: the widget says it is
/// reconnecting, keeps what the visitor typed meanwhile, and delivers it exactly once.
async fn restart_check(client: &Client, app: TestApp, shop: &str) -> usize {
    client.goto(&format!("{shop}/body")).await.unwrap();
    wait_for(client, "the launcher", |_| true).await;
    part(client, ".aia-launcher").await.click().await.unwrap();
    let before = wait_for(client, "the conversation", |w| w.panel_shown && w.messages.len() >= 2).await;
    let addr = app.addr;
    let dir = app.stop().await;
    wait_for(client, "the reconnecting notice", |w| w.notices.iter().any(|n| n.contains("reconnecting"))).await;
    let question = "Which payment methods do you accept?";
    ask(client, question).await;
    let w = wait_for(client, "the queued message", |w| w.messages.iter().any(|m| m.is("visitor", question))).await;
    assert!(w.messages.iter().any(|m| m.is("visitor", question) && m.seq.is_none()), "queued, not stored: {w:#?}");
    let app = TestApp::spawn_in(dir, |s| s.addr = addr).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let w = loop {
        let w = widget(client).await.expect("the widget");
        if w.answered(question, "") && w.notices.is_empty() {
            break w;
        }
        assert!(Instant::now() < deadline, "no reconnect within 40 s: {w:#?}");
        tokio::time::sleep(POLL).await;
    };
    let sent = w.messages.iter().filter(|m| m.is("visitor", question)).count();
    assert_eq!((sent, w.messages.len()), (1, before.messages.len() + 2), "delivered once: {w:#?}");
    // And stored once: a fresh page load replays the same conversation.
    client.refresh().await.unwrap();
    wait_for(client, "the launcher", |_| true).await;
    part(client, ".aia-launcher").await.click().await.unwrap();
    let replay = wait_for(client, "the replayed conversation", |w| w.messages.len() >= before.messages.len() + 2).await;
    assert_eq!(replay.messages.iter().filter(|m| m.is("visitor", question)).count(), 1, "{replay:#?}");
    drop(app);
    1
}

/// HTML that would run a script or add an element if any part of the widget parsed it as
/// HTML; every hostile string in check 16 carries it.
const HOSTILE: &str = r#"<img src=x onerror="window.__xss=1"><script>window.__xss=1</script><b class="inj">b</b>"#;
/// The same for the bot's name, within its 60 characters.
const HOSTILE_NAME: &str = r#"<img src=x onerror="window.__xss=1"><b class="inj">Bot</b>"#;

/// Frames a server could send, one of each kind, with hostile text in places (`arguments[0]`:
/// [`HOSTILE`]) and links of every scheme.
const RENDERER_FRAMES: &str = r#"
const ws = window.__ws, H = arguments[0], JS = "javascript:window.__xss=1";
ws.push({ type: "welcome", v: 1, session: "s-test", conversationId: "c-1", resumed: false,
  bot: { name: H, greeting: H }, hasMore: false, history: [
  { seq: 1, role: "visitor", clientId: "x1", ts: "2026-11-26T10:00:00Z",
    text: '<img src=x onerror="window.__xss=1"> **not bold**' },
  { seq: 2, role: "assistant", replyTo: 1, source: "model", ts: "2026-11-26T10:00:01Z",
    text: "**Bold** and *it* with `code`\n\n- one\n- two\n\n[page](https://shop.example/p) [bad](javascript:window.__xss=1) <script>window.__xss=1</script>",
    products: [{ name: "Desk lamp", url: "https://shop.example/lamp", price: 19.9, currency: "EUR",
      imageUrl: "https://img.example/lamp.png", inStock: true }] },
  { seq: 3, role: "operator", ts: "2026-11-26T10:00:02Z", text: "Hello, Anna here.",
    operator: { name: "Anna", avatarUrl: "https://img.example/anna.png" },
    attachments: [{ name: "invoice.pdf", url: "https://files.example/i.pdf" }, { name: "evil", url: "javascript:window.__xss=1" }] },
  { seq: 4, role: "system", ts: "2026-11-26T10:00:03Z", text: "Task created",
    task: { title: "Call back about order 1001", url: "https://tasks.example/c/1" } },
  { seq: 5, role: "system", ts: "2026-11-26T10:00:04Z", text: H + " **sys** [x](" + JS + ")" },
  { seq: 6, role: "visitor", clientId: "x6", ts: "2026-11-26T10:00:05Z", text: H },
  { seq: 7, role: "assistant", replyTo: 6, source: "model", ts: "2026-11-26T10:00:06Z",
    text: H + "\n\n[mail](mailto:help@shop.example) [data link](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==) [vb link](vbscript:window.__xss=1) <a href=\"" + JS + "\" class=\"inj\">raw</a>",
    products: [{ name: H, url: JS, price: H, imageUrl: JS, inStock: false },
      { name: "Data card", url: "data:text/html,<script>window.__xss=1</script>", price: 5, currency: "EUR",
        imageUrl: "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload='window.__xss=1'/>" }] },
  { seq: 8, role: "operator", ts: "2026-11-26T10:00:07Z", text: H + " **op**", operator: { name: H, avatarUrl: JS },
    attachments: [{ name: H, url: "mailto:files@shop.example" }, { name: "vb", url: "vbscript:window.__xss=1" },
      { name: "data", url: "data:text/html,<script>window.__xss=1</script>" }] },
  { seq: 9, role: "system", ts: "2026-11-26T10:00:08Z", text: "Task created", task: { title: H, url: JS } },
] });
ws.push({ type: "delta", replyTo: 11, text: H + " *streaming*" });
ws.push({ type: "message", message: { seq: 10, role: "operator", ts: "2026-11-26T10:00:09Z", text: H,
  operator: { name: "Live " + H, avatarUrl: "data:image/png;base64,iVBORw0KGgo=" } } });
ws.push({ type: "typing", role: "operator", on: true });
ws.push({ type: "feedback", seq: 2, value: "up" });
"#;

const RENDERED_JS: &str = r#"
const H = arguments[0];
const r = document.getElementById("aia-chat-root").shadowRoot, all = (s) => [...r.querySelectorAll(s)];
const texts = (s) => all(s).map((e) => e.textContent);
const bySeq = (n) => r.querySelector(`[data-seq="${n}"]`);
const card = r.querySelector(".aia-product"), op = bySeq(3).querySelector(".aia-who");
const everywhere = (s) => r.querySelectorAll(s).length + document.querySelectorAll(s).length;
const elements = [...document.querySelectorAll("*"), ...r.querySelectorAll("*")];
return {
  xss: !!window.__xss, scripts: all("script").length + all("img[src='x']").length,
  visitorText: bySeq(1).querySelector(".aia-body").textContent,
  strong: texts(".aia-body strong"), em: texts(".aia-body em"), code: texts(".aia-body code"), items: texts(".aia-body li"),
  links: all(".aia-msg a[href], .aia-task a[href]").map((a) => a.href).filter((h) => !h.includes("lamp")),
  badLinkText: bySeq(2).textContent.includes(" bad <script>window.__xss=1</script>"),
  product: [card.querySelector("b").textContent, card.querySelector(".aia-price").textContent.replace(/\s/g, ""),
    card.querySelector("small").textContent, card.querySelector("img").src, card.href],
  operator: [op.textContent, op.querySelector("img").src], status: r.querySelector(".aia-status").textContent,
  task: bySeq(4).textContent.replace("https://tasks.example/c/1", ""), typing: !!r.querySelector(".aia-typing"),
  feedbackUp: bySeq(2).querySelector(".aia-fb-up").getAttribute("aria-pressed"),
  injected: everywhere(".inj") + everywhere("img[src='x']") + everywhere("svg[onload]"),
  handlers: elements.filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length,
  title: r.querySelector(".aia-title").textContent, label: r.querySelector(".aia-panel").getAttribute("aria-label"),
  greeting: r.querySelector(".aia-greeting").textContent.includes(H),
  system: bySeq(5).textContent.startsWith(H) && !bySeq(5).querySelector("a"),
  visitor: bySeq(6).querySelector(".aia-body").textContent,
  model: bySeq(7).querySelector(".aia-body").textContent.startsWith(H)
    && bySeq(7).textContent.includes(`<a href="javascript:window.__xss=1" class="inj">raw</a>`),
  droppedLinks: ["data link", "vb link"].filter((t) => bySeq(7).textContent.includes(t)
    && ![...bySeq(7).querySelectorAll("a")].some((a) => a.textContent === t)),
  cards: [...bySeq(7).querySelectorAll(".aia-product")].map((c) => [c.tagName, c.querySelector("b").textContent,
    c.querySelector(".aia-price").textContent, c.querySelector("small") ? c.querySelector("small").textContent : "",
    c.querySelectorAll("img").length]),
  operatorName: [bySeq(8).querySelector(".aia-who").textContent, bySeq(8).querySelectorAll(".aia-who img").length],
  operatorText: bySeq(8).querySelector(".aia-body").textContent.startsWith(H),
  files: texts(`[data-seq="8"] .aia-files li`),
  taskTitle: bySeq(9).textContent,
  streamed: r.querySelector(".aia-streaming").textContent.includes(H),
  live: bySeq(10).querySelector(".aia-who").textContent,
  schemes: [...new Set(all("a[href]").map((a) => a.protocol))].sort(),
  images: [...new Set(all("img[src]").map((i) => new URL(i.src).protocol))].sort(),
};
"#;

/// The contrast ratio of every visible text in the widget over its actual background.
const CONTRAST_JS: &str = r#"
const r = document.getElementById("aia-chat-root").shadowRoot;
const rgb = (c) => c.match(/[\d.]+/g).map(Number);
const lum = (c) => c.slice(0, 3).map((v) => (v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
  .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
const under = (e) => {
  for (; e; e = e.parentElement || (e.getRootNode() !== document && e.getRootNode().host)) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c;
  }
  return [255, 255, 255];
};
return [...r.querySelectorAll(".aia-body, .aia-title, .aia-send, .aia-notice, .aia-input, .aia-status, .aia-who, .aia-msg-system")]
  .filter((e) => e.getClientRects().length && (e.textContent.trim() || e.value))
  .map((e) => { const a = lum(rgb(getComputedStyle(e).color)), b = lum(under(e));
    return [e.className, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
"#;

/// Sends keys to whatever has the focus, as a keyboard would.
async fn keys(client: &Client, text: &str) {
    client.active_element().await.unwrap().send_keys(text).await.unwrap();
}

/// The class of the focused element inside the widget, or "" when the focus is elsewhere.
async fn focused(client: &Client) -> String {
    let v = client
        .execute(
            r#"const h = document.activeElement;
            return h && h.id === "aia-chat-root" && h.shadowRoot.activeElement ? h.shadowRoot.activeElement.className : "";"#,
            vec![],
        )
        .await
        .unwrap();
    v.as_str().unwrap_or_default().to_string()
}

/// Polls `ok` until it holds; panics after `WAIT`.
pub(crate) async fn wait_until<F: std::future::Future<Output = bool>>(client: &Client, what: &str, ok: impl Fn() -> F) {
    let deadline = Instant::now() + WAIT;
    while !ok().await {
        if Instant::now() >= deadline {
            save_screenshot(client, "browser-wait.png").await;
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What the widget shows, read from its shadow root.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Widget {
    pub(crate) launcher: Launcher,
    viewport: Viewport,
    /// The panel's `hidden` attribute.
    panel_hidden: bool,
    /// Whether the panel is rendered (not `display: none`).
    panel_shown: bool,
    greeting: Option<String>,
    messages: Vec<Bubble>,
    notices: Vec<String>,
    input: String,
    /// The unread badge on the launcher, when shown.
    badge: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Launcher {
    pub(crate) bg: String,
    pub(crate) left: f64,
    pub(crate) top: f64,
    pub(crate) right: f64,
    pub(crate) bottom: f64,
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

/// Bytes on the wire (`transferSize`: headers and compressed body) of each widget request.
#[derive(Debug, Deserialize)]
struct Transfers(Vec<(String, u64)>);

impl Transfers {
    fn of(&self, needle: &str) -> u64 {
        let path = |url: &str| url.split('?').next().unwrap_or_default().to_string();
        self.0.iter().filter(|(url, _)| path(url).contains(needle)).map(|(_, n)| n).sum()
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    fn report(&self) -> Value {
        json!({
            "loader_bytes": self.of("/js/ChatBot.js"),
            "panel_bytes": self.of("/js/chat-panel."),
            "config_bytes": self.of("/api/data/ai_chat_bot"),
            "requests": self.0.len(),
            "total_bytes": self.total(),
        })
    }
}

async fn widget_transfer(client: &Client) -> Transfers {
    let v = client
        .execute(
            r#"return performance.getEntriesByType("resource")
                .filter((e) => /\/js\/|\/api\/data\/ai_chat_bot/.test(e.name))
                .map((e) => [e.name, e.transferSize]);"#,
            vec![],
        )
        .await
        .expect("resource timing");
    serde_json::from_value(v).expect("resource entries")
}

const WIDGET_JS: &str = r#"
const host = document.getElementById("aia-chat-root");
if (!host || !host.shadowRoot) return null;
const r = host.shadowRoot, q = (s) => r.querySelector(s), css = (e) => getComputedStyle(e);
const launcher = q(".aia-launcher"), panel = q(".aia-panel"), rect = launcher.getBoundingClientRect();
const role = (e) => ([...e.classList].find((c) => c.startsWith("aia-msg-")) || "aia-msg-?").slice(8);
return {
  launcher: { bg: css(launcher).backgroundColor, left: rect.left, top: rect.top, right: rect.right, bottom: rect.bottom,
              expanded: launcher.getAttribute("aria-expanded") },
  viewport: { width: document.documentElement.clientWidth, height: document.documentElement.clientHeight },
  panelHidden: !panel || panel.hidden,
  panelShown: !!panel && css(panel).display !== "none",
  greeting: q(".aia-greeting") ? q(".aia-greeting").textContent : null,
  messages: [...r.querySelectorAll(".aia-msg:not(.aia-greeting)")].map((e) => ({
    role: role(e),
    seq: e.hasAttribute("data-seq") ? +e.getAttribute("data-seq") : null,
    text: e.querySelector(".aia-body").textContent,
    fontSize: css(e).fontSize,
    color: css(e).color,
  })),
  notices: [...r.querySelectorAll(".aia-notice")].map((e) => e.textContent),
  input: q(".aia-input") ? q(".aia-input").value : "",
  badge: q(".aia-badge").hidden ? null : q(".aia-badge").textContent,
};
"#;

/// The widget's state, or `None` while it isn't on the page.
pub(crate) async fn widget(client: &Client) -> Option<Widget> {
    let v = client.execute(WIDGET_JS, vec![]).await.expect("reading the widget");
    serde_json::from_value(v).expect("the widget snapshot")
}

/// Polls the widget until `ok` holds; panics with the last state after `WAIT`.
pub(crate) async fn wait_for(client: &Client, what: &str, ok: impl Fn(&Widget) -> bool) -> Widget {
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
pub(crate) async fn browser_log(client: &Client) -> Option<Vec<Value>> {
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
    serve_site(addr, vec![Page::new("/", html)]).await
}

/// A page of a test site: its path, an optional Content-Security-Policy header and its HTML.
#[derive(Clone)]
struct Page {
    path: String,
    csp: Option<String>,
    html: String,
}

impl Page {
    fn new(path: &str, html: String) -> Page {
        Page { path: path.to_string(), csp: None, html }
    }
}

/// Serves `pages` from `addr` (a loopback address) until the test ends.
async fn serve_site(addr: &str, pages: Vec<Page>) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let local = listener.local_addr().unwrap();
    let pages = std::sync::Arc::new(pages);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let pages = pages.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split(' ').nth(1).unwrap_or_default().split('?').next().unwrap_or_default();
                let page = pages.iter().find(|p| p.path == path);
                let (status, body) = page.map_or(("404 Not Found", ""), |p| ("200 OK", p.html.as_str()));
                let csp = page.and_then(|p| p.csp.as_deref()).map(|c| format!("Content-Security-Policy: {c}\r\n"));
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    csp.unwrap_or_default(),
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
pub(crate) fn capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        // Real-looking hostnames on loopback, and nothing else resolves: no test reaches the internet.
        "--host-resolver-rules=MAP shop.com 127.0.0.1, MAP evilshop.com 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
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
pub(crate) async fn save_screenshot(client: &Client, name: &str) {
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
pub(crate) struct Driver {
    child: Child,
    pub(crate) url: String,
}

impl Driver {
    /// Starts chromedriver and waits until it reports ready (a few tries if the port got taken).
    pub(crate) async fn start() -> Driver {
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
