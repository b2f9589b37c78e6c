//! Training from GraphQL: through the CLI while the server runs, every paging style, CMS HTML,
//! and the failures that must leave the previous knowledge serving.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aia_chat::clients::UpstreamPolicy;
use aia_chat::knowledge::extract::Mapping;
use aia_chat::knowledge::graphql::{Source, SourceError};
use aia_chat::knowledge::train::{Fetched, TrainSource, fetch_all};

use crate::graphql_fake::{FakeShop, hotel_faqs};
use crate::support::TestApp;

const PAGED: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";

async fn answer_to(app: &TestApp, question: &str) -> serde_json::Value {
    let (mut ws, _) = app.visitor(None).await;
    ws.ask("t", question).await.1
}

/// A server whose demo client trains from a fake shop with `n` FAQs, plus `extra` settings.
async fn app_with_source(n: usize, extra: &str) -> (TestApp, FakeShop) {
    let app = TestApp::spawn_with(|s| s.limits.sessions_per_minute = 1000).await;
    let fake = FakeShop::start(hotel_faqs(n)).await;
    let url = fake.url("/graphql");
    let set =
        app.cli(&["client", "set", "demo", &format!("graphql_url={url}"), &format!("graphql_query={PAGED}"), extra]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    (app, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_through_the_cli_then_a_failed_run_keeps_the_old_answers() {
    let (app, fake) = app_with_source(5, "chunk_size=2").await;

    let out = app.cli(&["train", "demo", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["entries"].as_u64(), summary["pages"].as_u64()), (Some(5), Some(3)));
    assert_eq!((summary["changed"].as_bool(), summary["added"].as_u64()), (Some(true), Some(5)));

    let started = Instant::now();
    loop {
        let answer = answer_to(&app, "Is there a sauna at the hotel?").await;
        if answer["entryId"] == "h0" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the server did not swap within 2 s: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("training             idle") && show.contains("(5 entries)"), "{show}");

    // One run per client: a held lease refuses a second run.
    let client_id = app.state.store.client_get("demo").await.unwrap().unwrap().id;
    let now = aia_chat::ids::now_ms();
    assert!(app.state.store.training_lease(client_id, "server-x", now, now + 60_000).await.unwrap());
    let out = app.cli(&["train", "demo"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"), "{out:?}");
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("training             running since"), "{show}");
    app.state.store.training_finish(client_id, "server-x", now, Ok(5)).await.unwrap();

    // A re-train with no changes writes nothing.
    let version = app.state.store.client_get("demo").await.unwrap().unwrap().knowledge_version;
    let out = app.cli(&["train", "demo", "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["changed"].as_bool(), summary["unchanged"].as_u64()), (Some(false), Some(5)));
    assert_eq!(app.state.store.client_get("demo").await.unwrap().unwrap().knowledge_version, version);

    // A run that fails on page 2 writes nothing: the old answers keep serving.
    *fake.shop.fail_page.lock().unwrap() = Some(2);
    fake.shop.faqs.lock().unwrap()[0].answer = "Changed answer that must not appear.".into();
    let out = app.cli(&["train", "demo"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("page 2") && err.contains("Internal error while loading FAQs") && err.contains("(at faqs)"),
        "{err}"
    );
    assert!(err.contains("previous knowledge keeps serving"), "{err}");
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("last error") && show.contains("page 2"), "{show}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = answer_to(&app, "Is there a sauna at the hotel?").await;
    assert_eq!(answer["text"], "Yes, the sauna is available daily. (entry 0)");
}

async fn fetch(
    fake: &FakeShop,
    path: &str,
    query: &str,
    chunk: u32,
    timeout: Duration,
) -> Result<Fetched, SourceError> {
    let client = aia_chat::outbound::client(UpstreamPolicy::default(), timeout);
    let url = fake.url(path);
    let source = TrainSource {
        source: Source { client: &client, url: &url, query, headers: &[] },
        chunk_size: chunk,
        mapping: Mapping::default(),
    };
    fetch_all(&source, |_| {}).await
}

#[tokio::test]
async fn every_paging_style_and_cms_html() {
    let fake = FakeShop::start(hotel_faqs(7)).await;
    let t = Duration::from_secs(5);
    let ids = |f: &Fetched| f.entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let all: Vec<String> = (0..7).map(|i| format!("h{i}")).collect();

    let once = fetch(&fake, "/graphql", "query { faq { id question answer } }", 2, t).await.unwrap();
    assert_eq!((ids(&once), once.pages), (all.clone(), 1));
    let paged = fetch(&fake, "/graphql", PAGED, 3, t).await.unwrap();
    assert_eq!((ids(&paged), paged.pages), (all.clone(), 3));
    let relay = "query($first: Int!, $after: String) { faqConnection(first: $first, after: $after) { edges { node { id question answer } } pageInfo { hasNextPage endCursor } } }";
    let relay = fetch(&fake, "/graphql", relay, 3, t).await.unwrap();
    assert_eq!((ids(&relay), relay.pages), (all.clone(), 3));
    let offset =
        "query($limit: Int!, $offset: Int!) { faqList(limit: $limit, offset: $offset) { id question answer } }";
    let offset = fetch(&fake, "/graphql", offset, 3, t).await.unwrap();
    assert_eq!((ids(&offset), offset.pages), (all, 3));
    // The product's example page size is clamped to 1,000 rather than sent as 128,000.
    assert_eq!(fetch(&fake, "/graphql", PAGED, 128_000, t).await.unwrap().pages, 1);

    *fake.shop.cms_html.lock().unwrap() =
        "<h1>FAQ</h1><h3>How long does shipping take?</h3><p>2&ndash;4 working days.</p><h3>Can I pay by invoice?</h3><p>Yes, up to 500 EUR.</p>".into();
    let cms = fetch(&fake, "/graphql", "query { cmsPage(identifier: \"faq\") { identifier title content } }", 100, t)
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = cms.entries.iter().map(|e| (e.question.as_str(), e.answer.as_str())).collect();
    assert_eq!(
        pairs,
        [("How long does shipping take?", "2&ndash;4 working days."), ("Can I pay by invoice?", "Yes, up to 500 EUR.")]
    );
}

#[tokio::test]
async fn failures_say_what_and_where_and_transient_ones_are_retried() {
    let fake = FakeShop::start(hotel_faqs(3)).await;
    let t = Duration::from_secs(5);

    fake.shop.unavailable.store(2, Ordering::SeqCst);
    let ok = fetch(&fake, "/graphql", PAGED, 10, t).await.unwrap();
    assert_eq!(ok.entries.len(), 3);
    assert_eq!(fake.shop.requests.load(Ordering::SeqCst), 3, "two 503s, then success");

    fake.shop.unavailable.store(10, Ordering::SeqCst);
    let err = fetch(&fake, "/graphql", PAGED, 10, t).await.unwrap_err();
    assert!(matches!(err, SourceError::Http { page: 1, status: 503, .. }), "{err}");
    fake.shop.unavailable.store(0, Ordering::SeqCst);

    let err = fetch(&fake, "/graphql", "query { cmsPage(identifier: \"nope\") { content } }", 10, t).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "page 1: GraphQL errors: The CMS page with the \"nope\" ID doesn't exist. (at cmsPage)"
    );
    // Magento's status codes: a refused token is a 401, data the credentials may not read a
    // 403; both carry GraphQL errors, are reported with their status, and are not retried.
    *fake.shop.token.lock().unwrap() = Some("right".into());
    let before = fake.shop.requests.load(Ordering::SeqCst);
    let client = aia_chat::outbound::client(UpstreamPolicy::default(), t);
    let url = fake.url("/graphql");
    let headers = [("Authorization".to_string(), "Bearer wrong".to_string())];
    let source = TrainSource {
        source: Source { client: &client, url: &url, query: PAGED, headers: &headers },
        chunk_size: 10,
        mapping: Mapping::default(),
    };
    let err = fetch_all(&source, |_| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "page 1: GraphQL errors (HTTP 401: the store refused the credentials in graphql_headers): \
         The request is allowed for logged in customer"
    );
    assert_eq!(fake.shop.requests.load(Ordering::SeqCst), before + 1, "a 401 is not retried");
    let headers = [("Authorization".to_string(), "Bearer right".to_string())];
    let source = TrainSource { source: Source { headers: &headers, ..source.source }, ..source };
    assert_eq!(fetch_all(&source, |_| {}).await.unwrap().entries.len(), 3, "the right token passes");
    *fake.shop.token.lock().unwrap() = None;
    let err = fetch(&fake, "/graphql", "query { customer }", 10, t).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "page 1: GraphQL errors (HTTP 403: these credentials may not read this data): \
         The current customer isn't authorized. (at customer)"
    );

    // A syntax error (400) and an internal error (500) carry GraphQL errors: reported with
    // their status and not retried; an unknown field is Magento's 200 with errors.
    let before = fake.shop.requests.load(Ordering::SeqCst);
    let err = fetch(&fake, "/graphql", "query { faq { question", 10, t).await.unwrap_err();
    assert!(err.to_string().starts_with("page 1: GraphQL errors (HTTP 400): Syntax Error:"), "{err}");
    fake.shop.broken.store(1, Ordering::SeqCst);
    let err = fetch(&fake, "/graphql", PAGED, 10, t).await.unwrap_err();
    assert_eq!(err.to_string(), "page 1: GraphQL errors (HTTP 500): Internal server error");
    assert_eq!(fake.shop.requests.load(Ordering::SeqCst), before + 2, "neither is retried");
    let err = fetch(&fake, "/graphql", "query { faq { colour } }", 10, t).await.unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
    let err = fetch(&fake, "/not-json", PAGED, 10, t).await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidJson { page: 1, .. }), "{err}");
    let err = fetch(&fake, "/slow", PAGED, 10, Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(err.to_string(), "page 1: timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_trains_on_its_schedule() {
    let (app, fake) = app_with_source(4, "train_interval=6h").await;
    let started = Instant::now();
    loop {
        let answer = answer_to(&app, "Is there parking at the hotel?").await;
        if answer["entryId"] == "h1" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no scheduled training within 5 s: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let show = String::from_utf8_lossy(&app.cli(&["client", "show", "demo"]).stdout).into_owned();
    assert!(show.contains("(4 entries)"), "{show}");
    // Not due again for six hours: no second run.
    let requests = fake.shop.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.shop.requests.load(Ordering::SeqCst), requests);
    let bad = app.cli(&["client", "set", "demo", "train_interval=10s"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("train_interval: must be at least 1m"));
}
