//! The admin panel in a real browser (headless Chromium over WebDriver, as in `browser`): sign
//! in with the keyboard, slowed down after wrong passwords; change colors and position and see
//! the connect code follow before saving and the demo page's widget after; lists and secrets;
//! a forged form refused; a client admin who sees only its own client; sign out. Without
//! Chromium or chromedriver the group is skipped loudly and counted as 0.

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::browser::{browser_present, in_browser, save_screenshot, wait_for, wait_until};
use crate::support::{ADMIN_PASSWORD, TestApp};

const RUN_LIMIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_panel_in_a_real_browser() {
    if !browser_present("admin browser", "ADMIN_BROWSER_TESTS_RUN") {
        return;
    }
    let app = TestApp::spawn().await;
    in_browser("admin", "ADMIN_BROWSER_TESTS_RUN", RUN_LIMIT, |client| {
        Box::pin(async move {
            let n = sign_in_checks(client, &app).await;
            let n = n + editor_checks(client, &app).await;
            let n = n + test_button_checks(client, &app).await;
            let n = n + operations_checks(client, &app).await;
            let n = n + conversation_checks(client, &app).await;
            let n = n + tablet_checks(client, &app).await;
            n + client_admin_checks(client, &app).await
        })
    })
    .await;
}

/// Types `text` into whatever has focus.
async fn type_text(client: &Client, text: &str) {
    client.active_element().await.unwrap().send_keys(text).await.unwrap();
}

async fn press(client: &Client, key: Key) {
    client.active_element().await.unwrap().send_keys(&char::from(key).to_string()).await.unwrap();
}

/// Clicks an element after scrolling it to the middle of the window (clear of the sticky bars).
async fn click(client: &Client, css: &str) {
    let el = client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("{css} on the page"));
    let arg = serde_json::to_value(&el).unwrap();
    client.execute("arguments[0].scrollIntoView({block: 'center'})", vec![arg]).await.unwrap();
    el.click().await.unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("{css} on the page")).text().await.unwrap()
}

async fn path(client: &Client) -> String {
    let url = client.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Signs in through the form with the keyboard only.
async fn sign_in(client: &Client, app: &TestApp, username: &str, password: &str) {
    client.goto(&format!("{}/admin/login", app.base)).await.unwrap();
    let user = client.find(Locator::Id("username")).await.unwrap();
    user.clear().await.unwrap();
    user.click().await.unwrap();
    type_text(client, username).await;
    press(client, Key::Tab).await;
    type_text(client, password).await;
    press(client, Key::Enter).await;
}

/// 1-3: a signed-out visit goes to the sign-in page; wrong passwords are refused, then slowed
/// down; the right one lands on the clients.
async fn sign_in_checks(client: &Client, app: &TestApp) -> usize {
    client.goto(&format!("{}/admin/clients/demo", app.base)).await.unwrap();
    assert_eq!(path(client).await, "/admin/login", "signed out: the sign-in page");
    assert_eq!(client.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("username"));

    for _ in 0..=aia_chat::admin::throttle::FREE_FAILURES {
        sign_in(client, app, "admin", "not-the-password").await;
        wait_until(client, "the refusal", || async { client.find(Locator::Id("login-error")).await.is_ok() }).await;
        assert_eq!(text_of(client, "#login-error").await, "Wrong username or password.");
    }
    sign_in(client, app, "admin", ADMIN_PASSWORD).await;
    wait_until(client, "the wait", || async { client.find(Locator::Id("login-error")).await.is_ok() }).await;
    let refusal = text_of(client, "#login-error").await;
    assert!(refusal.starts_with("Too many wrong passwords."), "{refusal}");
    assert_eq!(path(client).await, "/admin/login");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    sign_in(client, app, "admin", ADMIN_PASSWORD).await;
    wait_until(client, "the clients page", || async { path(client).await == "/admin/clients" }).await;
    assert_eq!(text_of(client, "#who").await, "admin server admin");
    assert!(text_of(client, "#clients").await.contains("demo"));
    3
}

/// 4-8: the editor: colors and position change the connect code live; saving reaches the
/// demo page's widget; a list entry added with the keyboard; secrets show only set / not set;
/// a forged form changes nothing.
async fn editor_checks(client: &Client, app: &TestApp) -> usize {
    client.find(Locator::Css("a[href='/admin/clients/demo']")).await.unwrap().click().await.unwrap();
    wait_until(client, "the editor", || async { path(client).await == "/admin/clients/demo" }).await;
    let code = text_of(client, "#connect-code").await;
    assert!(code.contains("buttonColor=#1a73e8"), "{code}");

    // Colors through the hex field and the picker's partner, position through the select.
    let button = client.find(Locator::Id("f-button_color")).await.unwrap();
    button.clear().await.unwrap();
    button.send_keys("#C2185B").await.unwrap();
    let bg = client.find(Locator::Id("f-bg_color")).await.unwrap();
    bg.clear().await.unwrap();
    bg.send_keys("#fff8e1").await.unwrap();
    click(client, "#f-position option[value='top-left']").await;
    let live = text_of(client, "#connect-code").await;
    assert!(live.contains("buttonColor=#c2185b&bgColor=#fff8e1&position=top-left"), "live connect code: {live}");
    let picker: Value =
        client.execute("return document.querySelector('[data-color-for=f-button_color]').value", vec![]).await.unwrap();
    assert_eq!(picker, "#c2185b", "the picker follows the hex field");
    assert_eq!(text_of(client, ".dirty").await, "Unsaved changes");

    // A list entry, with the keyboard: Add, type, and Enter adds the next (left empty).
    click(client, "#f-allowed_domains .add").await;
    type_text(client, "shop.example").await;
    press(client, Key::Enter).await;
    // Secrets: a canary typed into the model token.
    let canary = "sk-canary-browser-5d1e";
    client.find(Locator::Id("f-model_token")).await.unwrap().send_keys(canary).await.unwrap();
    client.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
    wait_until(client, "the save", || async { path(client).await.starts_with("/admin/clients/demo?saved=") }).await;
    assert_eq!(text_of(client, "#saved").await, "Saved: 5 settings changed.");
    let saved = text_of(client, "#connect-code").await;
    assert!(saved.contains("buttonColor=#c2185b&bgColor=#fff8e1&position=top-left"), "{saved}");
    assert_eq!(text_of(client, "#state-model_token").await, "set");
    let source = client.source().await.unwrap();
    assert!(!source.contains(canary), "the secret never comes back to the page");
    let stored = app.state.registry.get("demo").unwrap();
    assert_eq!(stored.settings.get("allowed_domains"), "localhost,127.0.0.1,shop.example");
    assert_eq!(stored.settings.get("position"), "top-left");

    // The demo page's widget wears the new colors in the new corner.
    client.goto(&format!("{}/", app.base)).await.unwrap();
    let w = wait_for(client, "the new launcher", |w| w.launcher.bg == "rgb(194, 24, 91)").await;
    assert!(w.launcher.top < 100.0 && w.launcher.left < 100.0, "top-left: {:?}", w.launcher);

    // A form forged without the CSRF token (as another tab's script would) is refused.
    client.goto(&format!("{}/admin/clients/demo", app.base)).await.unwrap();
    client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/admin/clients/demo';
             const i = document.createElement('input'); i.name = 's:bot_name'; i.value = 'Forged';
             f.append(i); document.body.append(f); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    wait_until(client, "the refusal", || async {
        client.source().await.unwrap_or_default().contains("csrf_token_invalid")
    })
    .await;
    assert_eq!(app.state.registry.get("demo").unwrap().settings.get("bot_name"), "Lumen Assistant");

    // Clearing a secret.
    client.goto(&format!("{}/admin/clients/demo", app.base)).await.unwrap();
    click(client, "input[name='c:model_token']").await;
    client.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
    wait_until(client, "the save", || async { path(client).await == "/admin/clients/demo?saved=1" }).await;
    assert_eq!(text_of(client, "#state-model_token").await, "not set");

    // A refused value keeps what was typed and points at the field.
    let color = client.find(Locator::Id("f-bg_color")).await.unwrap();
    color.clear().await.unwrap();
    color.send_keys("beige").await.unwrap();
    client.find(Locator::Id("f-bot_name")).await.unwrap().send_keys(" Plus").await.unwrap();
    client.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
    wait_until(client, "the error", || async { client.find(Locator::Id("form-error")).await.is_ok() }).await;
    assert!(text_of(client, "#form-error").await.starts_with("bg_color: "));
    assert_eq!(client.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("f-bg_color"));
    let typed = client.find(Locator::Id("f-bot_name")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(typed.as_deref(), Some("Lumen Assistant Plus"), "what was typed stays");
    assert_eq!(app.state.registry.get("demo").unwrap().settings.get("bot_name"), "Lumen Assistant", "nothing saved");
    5
}

/// 9-10: every test button, against the fakes: each says what works, then, with every
/// service gone, what failed and what to change.
async fn test_button_checks(client: &Client, app: &TestApp) -> usize {
    use crate::model_fake::{FakeModel, text_stream};
    let trello = crate::trello_fake::FakeTrello::start().await;
    let chatwoot = crate::chatwoot_fake::FakeChatwoot::start().await;
    let catalog = crate::catalog_fake::FakeCatalog::start().await;
    let embeddings = crate::embeddings_fake::FakeEmbeddings::start().await;
    let model = FakeModel::start(vec![text_stream(Duration::ZERO)]).await;
    let shop = crate::graphql_fake::FakeShop::start(crate::graphql_fake::hotel_faqs(3)).await;
    let query = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";
    let mut pairs = trello.client_settings();
    pairs.extend(chatwoot.client_settings());
    pairs.extend(catalog.client_settings());
    pairs.extend([
        format!("embedding_url={}", embeddings.url()),
        format!("model_url={}", model.base()),
        "model_token=sk-test-browser-0000".to_string(),
        format!("graphql_url={}", shop.url("/graphql")),
        format!("graphql_query={query}"),
    ]);
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    client.goto(&format!("{}/admin/clients/demo", app.base)).await.unwrap();
    let all = ["graphql", "embeddings", "model", "operator", "tasks", "catalog"];
    for name in all {
        click(client, &format!("[data-check={name}]")).await;
    }
    for name in all {
        let css = format!("#check-{name}");
        wait_until(client, &format!("{name}'s test to pass"), || async {
            text_of(client, &css).await.starts_with('✓')
        })
        .await;
    }
    assert!(text_of(client, "#check-tasks").await.contains(crate::trello_fake::LIST_INBOX));
    assert!(text_of(client, "#check-model").await.contains("Reply: Yes, we do."));
    save_screenshot(client, "admin-editor.png").await;

    // Every service gone: each test says where it failed and what to change.
    let dead = [
        "model_url=http://127.0.0.1:9/v1",
        "embedding_url=http://127.0.0.1:9/v1",
        "graphql_url=http://127.0.0.1:9/graphql",
        "operator_url=http://127.0.0.1:9",
        "trello_api_url=http://127.0.0.1:9/1",
        "product_graphql_url=http://127.0.0.1:9/graphql",
    ];
    app.set_client("demo", &dead).await;
    client.refresh().await.unwrap();
    for name in all {
        click(client, &format!("[data-check={name}]")).await;
    }
    for name in all {
        let css = format!("#check-{name}");
        wait_until(client, &format!("{name}'s test to fail"), || async {
            let t = text_of(client, &css).await;
            t.starts_with('✗') && t.contains("Change: ")
        })
        .await;
    }
    let reset: Vec<String> = dead.iter().map(|d| format!("{}=", d.split('=').next().unwrap())).collect();
    app.set_client("demo", &reset.iter().map(String::as_str).collect::<Vec<_>>()).await;
    2
}

/// 11: the Operations page: train now, and the run shows in the history when it ends.
async fn operations_checks(client: &Client, app: &TestApp) -> usize {
    let shop = crate::graphql_fake::FakeShop::start(crate::graphql_fake::hotel_faqs(4)).await;
    let query = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";
    app.set_client("demo", &[&format!("graphql_url={}", shop.url("/graphql")), &format!("graphql_query={query}")])
        .await;
    client.goto(&format!("{}/admin/clients/demo", app.base)).await.unwrap();
    click(client, "#operations-link").await;
    wait_until(client, "the operations page", || async { path(client).await == "/admin/clients/demo/operations" })
        .await;
    assert!(text_of(client, "#training-runs").await.contains("No runs yet."));
    click(client, "#train-now").await;
    wait_until(client, "the run in the history", || async {
        client.find(Locator::Css("#training-runs .chip.set")).await.is_ok()
    })
    .await;
    let runs = text_of(client, "#training-runs").await;
    assert!(runs.contains("admin:admin"), "{runs}");
    assert!(text_of(client, "#training-state").await.contains("4 FAQ entries"), "the new knowledge is live");
    1
}

/// 12: a conversation found by a word of it, and its transcript.
async fn conversation_checks(client: &Client, app: &TestApp) -> usize {
    let (mut ws, _) = app.visitor(None).await;
    ws.ask("c1", "Do you ship internationally?").await;
    // The visitor's words are the client's to choose: markup in them stays text for the admin.
    ws.ask("c2", HOSTILE).await;
    client.goto(&format!("{}/admin/clients/demo", app.base)).await.unwrap();
    click(client, "#conversations-link").await;
    wait_until(client, "the conversations", || async { path(client).await == "/admin/clients/demo/conversations" })
        .await;
    client.find(Locator::Id("q")).await.unwrap().send_keys("internationally").await.unwrap();
    press(client, Key::Enter).await;
    wait_until(client, "the search", || async { path(client).await.contains("q=internationally") }).await;
    assert!(text_of(client, "#conversations").await.contains("Do you ship internationally?"));
    click(client, "#conversations tbody a").await;
    wait_until(client, "the transcript", || async { client.find(Locator::Id("transcript")).await.is_ok() }).await;
    let transcript = text_of(client, "#transcript").await;
    assert!(transcript.contains("visitor") && transcript.contains("Do you ship internationally?"), "{transcript}");
    assert!(transcript.contains("assistant"), "{transcript}");
    assert!(transcript.contains(HOSTILE), "shown as text: {transcript}");
    let injected = client
        .execute("return [!!window.__xss, document.querySelectorAll('.inj, img[src=\"x\"]').length];", vec![])
        .await
        .unwrap();
    assert_eq!(injected, serde_json::json!([false, 0]), "nothing of the visitor's markup runs or renders");
    1
}

/// Markup a visitor may send, which the admin panel must show as text.
const HOSTILE: &str = r#"<img src=x onerror="window.__xss=1"><b class="inj">b</b> [x](javascript:window.__xss=1)"#;

/// 13: on a tablet (768 px wide) no admin page scrolls sideways.
async fn tablet_checks(client: &Client, app: &TestApp) -> usize {
    client.set_window_size(768, 1024).await.unwrap();
    for page in
        ["/admin/clients", "/admin/clients/demo", "/admin/clients/demo/operations", "/admin/clients/demo/conversations"]
    {
        client.goto(&format!("{}{page}", app.base)).await.unwrap();
        let wide: Value = client
            .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
            .await
            .unwrap();
        assert!(wide.as_f64().unwrap() <= 0.0, "{page} scrolls sideways by {wide} px at 768 px");
    }
    client.set_window_size(1280, 900).await.unwrap();
    1
}

/// 14-15: a client admin sees only its client, in the list and by URL; signing out ends it.
async fn client_admin_checks(client: &Client, app: &TestApp) -> usize {
    assert!(app.cli(&["client", "add", "other-shop"]).status.success());
    wait_until(client, "the server to load the new client", || async {
        app.state.registry.get("other-shop").is_some()
    })
    .await;
    client.goto(&format!("{}/admin/clients", app.base)).await.unwrap();
    assert!(text_of(client, "#clients").await.contains("other-shop"), "a server admin sees every client");
    // The owner's account, made on the Accounts page: a client admin of demo only.
    click(client, ".account-links a[href='/admin/accounts']").await;
    wait_until(client, "the accounts page", || async { path(client).await == "/admin/accounts" }).await;
    client.find(Locator::Id("new-username")).await.unwrap().send_keys("owner").await.unwrap();
    client.find(Locator::Id("new-password")).await.unwrap().send_keys("owner-password-1").await.unwrap();
    click(client, "#add-account input[name=client][value=demo]").await;
    click(client, "#add-account button[type=submit]").await;
    wait_until(client, "the new account", || async { client.find(Locator::Id("notice")).await.is_ok() }).await;
    assert_eq!(text_of(client, "#notice").await, "Added owner.");
    assert!(text_of(client, "[data-username=owner]").await.contains("client admin"));
    client.find(Locator::Css(".account button")).await.unwrap().click().await.unwrap();
    wait_until(client, "signed out", || async { path(client).await == "/admin/login" }).await;

    sign_in(client, app, "owner", "owner-password-1").await;
    wait_until(client, "the owner's clients", || async { path(client).await == "/admin/clients" }).await;
    let listed = text_of(client, "#clients").await;
    assert!(listed.contains("demo") && !listed.contains("other-shop"), "{listed}");
    assert!(client.find(Locator::Id("new-uid")).await.is_err(), "no adding clients for a client admin");
    assert!(client.find(Locator::Css(".account-links a[href='/admin/accounts']")).await.is_err(), "no accounts link");
    client.goto(&format!("{}/admin/clients/other-shop", app.base)).await.unwrap();
    let body = client.source().await.unwrap();
    assert!(body.contains("unknown_client") && !body.contains("connect-code"), "{body}");
    2
}
