//! The editor's test buttons over the admin API, against the fakes of the earlier issues:
//! each integration once working and once failing with a diagnosis that names the place and
//! the fix, and never a secret.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::catalog_fake::FakeCatalog;
use crate::embeddings_fake::FakeEmbeddings;
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
