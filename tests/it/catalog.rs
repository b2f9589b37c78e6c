//! Product search in the conversation, against the fake Magento catalog on loopback: without
//! a model a product request the FAQ can't answer shows the catalog's products as cards; with
//! a model its `search_products` call does, and the cards come with its answer.

use std::time::Duration;

use crate::catalog_fake::FakeCatalog;
use crate::model_fake::{FakeModel, text_stream, tool_stream};
use crate::support::{TestApp, assert_valid};

async fn catalog_app(catalog: &FakeCatalog, extra: &[String]) -> TestApp {
    let app = TestApp::spawn().await;
    let mut pairs = catalog.client_settings();
    pairs.extend(extra.iter().cloned());
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    app
}

#[tokio::test]
async fn without_a_model_a_product_request_shows_cards_and_the_faq_still_answers() {
    let catalog = FakeCatalog::start().await;
    let app = catalog_app(&catalog, &[]).await;
    let (mut ws, welcome) = app.visitor(None).await;

    let (_, faq) = ws.ask("p1", "How long does shipping take?").await;
    assert_eq!(faq["source"], "knowledge", "{faq}");
    assert_eq!(catalog.requests(), 0, "a FAQ question never reaches the catalog");

    let (_, found) = ws.ask("p2", "Do you have a kettle?").await;
    assert_eq!(found["source"], "catalog", "{found}");
    let cards = found["products"].as_array().expect("product cards");
    assert!(!cards.is_empty() && cards.len() <= 4, "{found}");
    for card in cards {
        assert!(card["name"].as_str().unwrap().to_lowercase().contains("kettle"), "{card}");
        assert!(card["url"].as_str().unwrap().starts_with(&catalog.store_url()), "{card}");
        assert_eq!(card["currency"], "EUR", "{card}");
        assert!(card["price"].as_f64().is_some_and(|p| p > 0.0), "{card}");
    }
    assert!(cards.iter().any(|c| c["name"] == "Kettle Classic Red" && c["price"] == 34.9), "{found}");
    let frame = serde_json::json!({"type": "message", "message": found});
    assert_valid(&frame);

    // The same search again is served from the cache.
    let before = catalog.requests();
    let (_, again) = ws.ask("p3", "Do you have a kettle?").await;
    assert_eq!(again["products"], found["products"]);
    assert_eq!(catalog.requests(), before, "a cache hit");

    // Nothing found: said honestly, no cards.
    let (_, none) = ws.ask("p4", "Do you have unicorn saddles?").await;
    assert!(none["text"].as_str().unwrap().contains("couldn't find products"), "{none}");
    assert!(none.get("products").is_none(), "{none}");

    // The cards are stored with the answer, so a reload or another tab shows them too.
    let client = app.state.registry.get("demo").unwrap().row.id;
    let token = welcome["session"].as_str().unwrap();
    let session = app.state.store.session_find(client, &aia_chat::ids::token_hash(token)).await.unwrap().unwrap();
    let (stored, _) = app.state.store.messages_page(session.id, None, 50).await.unwrap();
    let with_cards = stored.iter().find(|m| m.seq == found["seq"].as_i64().unwrap()).expect("the stored answer");
    assert_eq!(with_cards.products.len(), cards.len());
}

#[tokio::test]
async fn a_dead_catalog_leaves_the_faq_answer_and_the_server_serving() {
    let catalog = FakeCatalog::start().await;
    let app = catalog_app(&catalog, &[]).await;
    catalog.down().await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("d1", "Do you have a kettle?").await;
    assert_eq!(answer["role"], "assistant");
    assert!(answer.get("products").is_none(), "{answer}");
    let (_, faq) = ws.ask("d2", "How long does shipping take?").await;
    assert_eq!(faq["source"], "knowledge");
}

#[tokio::test]
async fn the_models_search_products_brings_cards_with_its_answer() {
    let catalog = FakeCatalog::start().await;
    let model = FakeModel::start(vec![tool_stream(), text_stream(Duration::ZERO)]).await;
    let app = catalog_app(&catalog, &[format!("model_url={}", model.base())]).await;
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("m1", "Do you have a red kettle?").await;
    assert_eq!((answer["source"].as_str(), answer["text"].as_str()), (Some("model"), Some("Yes, we do.")));
    let cards = answer["products"].as_array().expect("the search's cards");
    assert!(cards.iter().any(|c| c["name"] == "Kettle Classic Red"), "{answer}");
    assert!(catalog.requests() >= 1);
}

#[tokio::test]
async fn the_servers_own_latency_histogram_is_an_admin_read() {
    use aia_chat::config::AdminToken;
    const ADMIN: &str = "catalog-admin-token-0123";
    let catalog = FakeCatalog::start().await;
    let app = TestApp::spawn_with(|s| s.admin_token = Some(AdminToken::new(ADMIN).unwrap())).await;
    let pairs = catalog.client_settings();
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (mut ws, _) = app.visitor(None).await;
    ws.ask("h1", "Do you have a kettle?").await;
    // The second answer comes from the cache, stored with its question in one write.
    let (_, hit) = ws.ask("h2", "Do you have a kettle?").await;
    assert_eq!((hit["source"].as_str(), catalog.requests()), (Some("catalog"), 1), "{hit}");
    assert!(hit["products"].as_array().is_some_and(|cards| !cards.is_empty()), "{hit}");
    let url = format!("{}/api/metrics/catalog", app.base);
    assert_eq!(crate::support::http().get(&url).send().await.unwrap().status(), 401);
    let metrics: serde_json::Value =
        crate::support::http().get(&url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(metrics["added_over_store"]["count"], 1, "{metrics}");
    assert_eq!(metrics["cache_hit"]["count"], 1, "{metrics}");
    assert!(metrics["cache_hit"]["p99_ms"].as_f64().is_some_and(|ms| ms < 1000.0), "{metrics}");
    assert_eq!(metrics["cache_hit_write"]["count"], 1, "{metrics}");
}
