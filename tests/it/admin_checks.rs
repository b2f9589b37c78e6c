//! The editor's test buttons over the admin API, against the fakes of the earlier issues:
//! each integration once working and once failing with a diagnosis that names the place and
//! the fix, and never a secret.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::catalog_fake::FakeCatalog;
use crate::chatwoot_fake::{ACCOUNT_ID, ADMIN_TOKEN, BOT_TOKEN, FakeChatwoot, INBOX_ID, INBOX_SECRET};
use crate::embeddings_fake::FakeEmbeddings;
use crate::graphql_fake::{FakeShop, hotel_faqs};
use crate::model_fake::{FakeModel, error, text_stream};
use crate::support::{ADMIN_PASSWORD, AdminSession, TestApp};
use crate::trello_fake::FakeTrello;

async fn check(admin: &AdminSession, integration: &str, body: Value) -> Value {
    let (status, report) =
        admin.call(Method::POST, &format!("/api/admin/clients/demo/checks/{integration}"), body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["integration"], integration);
    report
}

fn assert_failed(report: &Value, place: &str, fix: &str) {
    assert_eq!(report["ok"], false, "{report:#}");
    let problem = &report["problem"];
    assert!(problem["where"].as_str().unwrap().contains(place), "where: {report:#}");
    assert!(!problem["what"].as_str().unwrap().is_empty(), "what: {report:#}");
    assert!(problem["fix"].as_str().unwrap().contains(fix), "fix: {report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_board_test_lists_the_board_and_names_what_is_wrong() {
    let trello = FakeTrello::start().await;
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let report = check(&admin, "tasks", json!({})).await;
    assert_failed(&report, "Tasks (Trello) settings", "Set trello_key");

    let pairs = trello.client_settings();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let report = check(&admin, "tasks", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["summary"].as_str().unwrap().starts_with("The board answered: "), "{report:#}");
    assert!(report["details"]["lists"].as_array().unwrap().iter().any(|l| l["id"] == crate::trello_fake::LIST_INBOX));

    app.set_client("demo", &["trello_list_id=0123456789abcdef01234567"]).await;
    let report = check(&admin, "tasks", json!({})).await;
    assert_failed(&report, "trello_list_id", "Pick one of the board's lists");
    assert!(report["details"]["lists"].is_array(), "the lists to pick from: {report:#}");

    let token = "ATTAnot-the-right-token-0000000000000000";
    app.set_client("demo", &[&format!("trello_token={token}")]).await;
    let report = check(&admin, "tasks", json!({})).await;
    assert_failed(&report, &format!("Trello ({})", trello.base()), "trello_token");
    assert!(!report.to_string().contains(token), "no secret in the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_test_makes_one_short_round_trip() {
    let fake = FakeModel::start(vec![text_stream(Duration::ZERO), error(401)]).await;
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let report = check(&admin, "model", json!({})).await;
    assert_failed(&report, "AI model settings", "model_token");

    let token = "sk-test-canary-00000000000000000000";
    app.set_client("demo", &[&format!("model_url={}", fake.base()), &format!("model_token={token}")]).await;
    let report = check(&admin, "model", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["details"]["reply"], "Yes, we do.");
    // The second answer of the fake is a 401.
    let report = check(&admin, "model", json!({})).await;
    assert_failed(&report, &format!("model API ({})", fake.base()), "model_token");
    assert!(!report.to_string().contains(token));

    app.set_client("demo", &["model_url=http://127.0.0.1:9/v1"]).await;
    let report = check(&admin, "model", json!({})).await;
    assert_failed(&report, "model API (http://127.0.0.1:9/v1)", "model_url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embeddings_and_catalog_tests_try_one_request_each() {
    let embeddings = FakeEmbeddings::start_with_token("right-token-123").await;
    let catalog = FakeCatalog::start().await;
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let report = check(&admin, "embeddings", json!({})).await;
    assert_failed(&report, "Knowledge settings", "embedding_url");
    let report = check(&admin, "catalog", json!({})).await;
    assert_failed(&report, "Products (catalog) settings", "product_graphql_url");

    app.set_client("demo", &[&format!("embedding_url={}", embeddings.url()), "embedding_token=right-token-123"]).await;
    let report = check(&admin, "embeddings", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["details"]["dimensions"].as_u64().unwrap() > 0);
    app.set_client("demo", &["embedding_token=wrong-token-456"]).await;
    let report = check(&admin, "embeddings", json!({})).await;
    assert_failed(&report, &format!("embeddings API ({})", embeddings.url()), "embedding_token");
    assert!(!report.to_string().contains("wrong-token-456"));

    let pairs = catalog.client_settings();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let report = check(&admin, "catalog", json!({"query": "kettle"})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["details"]["query"], "kettle");
    assert!(!report["details"]["products"].as_array().unwrap().is_empty(), "{report:#}");
    app.set_client("demo", &["product_graphql_url=http://127.0.0.1:9/graphql"]).await;
    let report = check(&admin, "catalog", json!({})).await;
    assert_failed(&report, "product catalog (http://127.0.0.1:9/graphql)", "product_graphql_url");

    let (status, body) = admin.call(Method::POST, "/api/admin/clients/demo/checks/teleport", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_integration")));
    let unsigned = crate::support::http().post(format!("{}/api/admin/clients/demo/checks/model", app.base));
    assert_eq!(
        unsigned.header("cookie", &admin.cookie).send().await.unwrap().status(),
        403,
        "a test needs the CSRF token"
    );
}

const PAGED: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_test_previews_the_first_page_without_training() {
    let shop = FakeShop::start(hotel_faqs(5)).await;
    *shop.shop.token.lock().unwrap() = Some("shop-token-right-7Yq2".into());
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let report = check(&admin, "graphql", json!({})).await;
    assert_failed(&report, "Knowledge settings", "Set graphql_url");
    assert!(report["problem"]["what"].as_str().unwrap().contains("graphql_url and graphql_query are empty"));

    let client_id = app.state.store.client_get("demo").await.unwrap().unwrap().id;
    let knowledge_before = app.state.store.knowledge_list(client_id).await.unwrap();
    let url = shop.url("/graphql");
    let place = format!("GraphQL source ({url})");
    app.set_client(
        "demo",
        &[
            &format!("graphql_url={url}"),
            &format!("graphql_query={PAGED}"),
            "chunk_size=2",
            r#"graphql_headers={"Authorization": "Bearer shop-token-right-7Yq2"}"#,
        ],
    )
    .await;
    let requests = shop.shop.requests.load(std::sync::atomic::Ordering::SeqCst);
    let report = check(&admin, "graphql", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["summary"], "The first page gave 2 entries (page 1 of 3).");
    let d = &report["details"];
    assert_eq!((d["entries"].as_u64(), d["total_pages"].as_u64()), (Some(2), Some(3)), "{report:#}");
    assert_eq!(d["fields"]["list"], "faqs.items");
    assert_eq!(
        (d["fields"]["question"].as_str(), d["fields"]["answer"].as_str(), d["fields"]["id"].as_str()),
        (Some("faqs.items[].question"), Some("faqs.items[].answer"), Some("faqs.items[].id"))
    );
    assert_eq!(d["preview"][0]["question"], "Is there a sauna at the hotel?");
    assert_eq!(d["preview"][1]["answer"], "Yes, the parking is available daily. (entry 1)");
    assert_eq!(shop.shop.requests.load(std::sync::atomic::Ordering::SeqCst), requests + 1, "the first page only");
    assert!(!report.to_string().contains("shop-token-right-7Yq2"), "no secret in the report");
    assert_eq!(app.state.store.knowledge_list(client_id).await.unwrap(), knowledge_before, "nothing trained");
    assert!(app.state.store.training_status(client_id).await.unwrap().is_none(), "no training run");

    // A token the shop refuses: the headers are named, their values are not shown.
    app.set_client("demo", &[r#"graphql_headers={"Authorization": "Bearer shop-token-wrong-3Kp9"}"#]).await;
    let report = check(&admin, "graphql", json!({})).await;
    assert_failed(&report, &place, "graphql_headers");
    assert!(report["problem"]["what"].as_str().unwrap().contains("HTTP 401"), "{report:#}");
    assert!(!report.to_string().contains("shop-token-wrong-3Kp9"), "no secret in the report");
    *shop.shop.token.lock().unwrap() = None;

    // Fields the automatic mapping does not know: what was looked for, and graphql_fields.
    let aliased = "query { faqs(pageSize: 2) { items { key: id heading: question reply: answer } } }";
    app.set_client("demo", &[&format!("graphql_query={aliased}")]).await;
    let report = check(&admin, "graphql", json!({})).await;
    assert_failed(&report, &place, "graphql_fields");
    let what = report["problem"]["what"].as_str().unwrap();
    assert!(what.contains("one of question, title") && what.contains("one of answer, content"), "{what}");
    assert!(report["details"]["data"].as_str().unwrap().contains("items [{ heading key reply }]"), "{report:#}");
    app.set_client("demo", &["graphql_fields=question=heading,answer=reply,id=key"]).await;
    let report = check(&admin, "graphql", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["details"]["fields"]["mapped"], true);
    assert_eq!(report["details"]["fields"]["id"], "faqs.items[].key");
    assert_eq!(report["details"]["paging"], "none: the query runs once");
    assert_eq!(report["details"]["preview"][0]["id"], "h0");

    // A query the server refuses, and a server that is not there.
    app.set_client("demo", &["graphql_query=query { faq { colour } }", "graphql_fields="]).await;
    let report = check(&admin, "graphql", json!({})).await;
    assert_failed(&report, &place, "graphql_query");
    assert!(report["problem"]["what"].as_str().unwrap().contains("GraphQL errors"), "{report:#}");
    app.set_client("demo", &["graphql_url=http://127.0.0.1:9/graphql"]).await;
    let report = check(&admin, "graphql", json!({})).await;
    assert_failed(&report, "GraphQL source (http://127.0.0.1:9/graphql)", "graphql_url");
    assert_eq!(app.state.store.knowledge_list(client_id).await.unwrap(), knowledge_before, "still nothing trained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chatwoot_test_finds_the_account_and_the_inbox_as_the_relay_would() {
    let fake = FakeChatwoot::start().await;
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, "Operator (Chatwoot) settings", "Set operator_url");
    let no_secret = |report: &Value| {
        let text = report.to_string();
        for secret in [ADMIN_TOKEN, BOT_TOKEN, INBOX_SECRET, "hM4cT0k3nXy9"] {
            assert!(!text.contains(secret), "no secret in the report: {report:#}");
        }
    };

    // Only the URL, the token and the inbox: the account from the profile, the secret from the
    // inbox (read, never stored by the test).
    let pairs: Vec<String> = fake
        .client_settings()
        .into_iter()
        .filter(|p| !p.starts_with("operator_webhook_secret=") && !p.starts_with("operator_account_id="))
        .collect();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let report = check(&admin, "operator", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        report["summary"],
        format!("Chatwoot answered: account {ACCOUNT_ID}, API inbox \"AI assistant\" ({INBOX_ID}).")
    );
    let d = &report["details"];
    assert_eq!(
        (d["account_id"].as_i64(), d["account_from"].as_str()),
        (Some(ACCOUNT_ID), Some("the token's only account"))
    );
    assert_eq!(
        (d["inbox"]["name"].as_str(), d["inbox"]["channel_type"].as_str()),
        (Some("AI assistant"), Some("Channel::Api"))
    );
    assert!(d["webhook_secret"].as_str().unwrap().starts_with("taken from the inbox"), "{report:#}");
    assert!(d["webhook_url"].as_str().unwrap().ends_with("/api/webhook/demo"), "{report:#}");
    assert_eq!(d["bot_token"], true);
    no_secret(&report);
    assert!(fake.seen().iter().any(|r| r.path == "/api/v1/profile"));
    assert!(
        !app.state.registry.get("demo").unwrap().settings.is_set("operator_webhook_secret"),
        "the test writes no setting"
    );

    // A token with several accounts: name the one to use.
    fake.set_profile_accounts(&[ACCOUNT_ID, 3]);
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, "the token's profile", "Set operator_account_id");
    no_secret(&report);
    fake.set_profile_accounts(&[ACCOUNT_ID]);

    // All settings of the fake: the configured account, the secret set.
    let pairs = fake.client_settings();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let report = check(&admin, "operator", json!({})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["details"]["account_from"], "operator_account_id");
    assert_eq!(report["details"]["webhook_secret"], "operator_webhook_secret is set");
    no_secret(&report);

    // A secret that is not the inbox's would refuse every agent's reply.
    app.set_client("demo", &["operator_webhook_secret=not-the-inbox-secret-41"]).await;
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, "operator_webhook_secret", "Clear operator_webhook_secret");
    assert!(!report.to_string().contains("not-the-inbox-secret-41"));
    no_secret(&report);
    app.set_client("demo", &[&format!("operator_webhook_secret={INBOX_SECRET}")]).await;

    // An unknown inbox (404), then one that is not an API channel.
    app.set_client("demo", &["operator_inbox_id=9"]).await;
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, &format!("account {ACCOUNT_ID}, inbox 9"), "operator_inbox_id");
    assert!(report["problem"]["what"].as_str().unwrap().contains("404"), "{report:#}");
    fake.add_inbox(9, "Channel::WebWidget", None);
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, "operator_inbox_id", "Create an API inbox");
    assert!(report["problem"]["what"].as_str().unwrap().contains("Channel::WebWidget"), "{report:#}");
    assert_eq!(report["details"]["inbox"]["name"], "Inbox 9");

    // A token Chatwoot refuses (401), then Chatwoot down.
    app.set_client("demo", &[&format!("operator_inbox_id={INBOX_ID}"), "operator_token=not-a-valid-token-5521"]).await;
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, &format!("Chatwoot ({})", fake.base()), "operator_token");
    assert!(!report.to_string().contains("not-a-valid-token-5521"));
    no_secret(&report);
    app.set_client("demo", &[&format!("operator_token={ADMIN_TOKEN}")]).await;
    fake.down().await;
    let report = check(&admin, "operator", json!({})).await;
    assert_failed(&report, &format!("Chatwoot ({})", fake.base()), "operator_url");
    no_secret(&report);
}
