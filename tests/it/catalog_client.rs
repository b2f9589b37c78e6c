//! The product-search client against the fake Magento catalog (`catalog_fake`): the request as
//! the contract prescribes it, products as cards, filters as strings, pages, the cache, the
//! empty-term rule, every failure classified (secrets never in an error), slow and absent
//! stores. Also: the fake itself answers the contract's example byte for byte.

use std::time::{Duration, Instant};

use aia_chat::catalog::search::{
    CacheStats, Catalog, CatalogError, DEFAULT_QUERY, Filters, Lookup, MAX_BODY, ProductMapping,
};
use aia_chat::clients::UpstreamPolicy;
use aia_chat::realtime::protocol::ProductView;
use serde_json::{Value, json};

use crate::catalog_fake::{
    BROKEN_IMAGE, Failure, FakeCatalog, KITCHEN, LIGHTING, MAX_RESULTS, NO_IMAGE_SKU, OUT_OF_STOCK_SKU,
    SEARCH_OR_FILTER, STORE_NOT_FOUND, VALID_TOKEN, WRONG_CONTENT_TYPE,
};

/// The contract's §3.3 example response, literally.
const CONTRACT_EXAMPLE: &str = include_str!("../data/magento-products-example.json");

fn names(products: &[aia_chat::catalog::search::Product]) -> Vec<&str> {
    products.iter().map(|p| p.name.as_str()).collect()
}

/// Posts `body` to the fake as it is.
async fn raw(fake: &FakeCatalog, content_type: &str, body: String) -> (u16, Value) {
    let response = Catalog::http_client(UpstreamPolicy::default())
        .post(fake.endpoint())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn catalog_search_finds_products_as_cards() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog();

    let products = catalog.search("  Kettle\n", &Filters::default()).await.unwrap();
    assert_eq!(names(&products), ["Kettle Classic Red", "Kettle Retro", "Travel Kettle Mini Red", "Glass Kettle"]);
    let first = &products[0];
    assert_eq!(first.url, fake.product_url("kettle-classic-red"));
    assert_eq!((first.price, first.regular_price, first.currency.as_deref()), (Some(34.9), Some(39.9), Some("EUR")));
    assert!(first.discounted());
    assert_eq!(first.image_url.as_deref(), Some(fake.image_url("k/t/kt-cl-red.jpg").as_str()));
    assert_eq!((first.sku.as_deref(), first.in_stock), (Some("KT-CL-RED"), Some(true)));
    let retro = products.iter().find(|p| p.sku.as_deref() == Some(NO_IMAGE_SKU)).unwrap();
    assert_eq!((retro.price, retro.image_url.as_deref()), (Some(29.0), None), "29 read as a price; no placeholder");
    let mini = products.iter().find(|p| p.sku.as_deref() == Some(OUT_OF_STOCK_SKU)).unwrap();
    assert_eq!(mini.in_stock, Some(false));

    let view = ProductView::from(first);
    assert_eq!(view, first.to_view());
    let card = serde_json::to_value(&view).unwrap();
    assert_eq!(
        card,
        json!({"name": "Kettle Classic Red", "url": fake.product_url("kettle-classic-red"), "price": 34.9,
               "currency": "EUR", "imageUrl": fake.image_url("k/t/kt-cl-red.jpg"), "inStock": true})
    );

    // The request (§1.1, §2): JSON POST, the term only in variables, no token.
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.body["query"], DEFAULT_QUERY);
    assert_eq!(seen.body["operationName"], "ProductSearch");
    assert_eq!(seen.variables(), &json!({"search": "Kettle", "pageSize": MAX_RESULTS, "currentPage": 1}));

    let none = catalog.search("zebra", &Filters::default()).await.unwrap();
    assert!(none.is_empty(), "no match is an empty list, not an error");
}

#[tokio::test]
async fn catalog_fake_answers_the_contracts_example() {
    let fake = FakeCatalog::start().await;
    let request = json!({
        "query": "query ProductSearch($search: String!, $filter: ProductAttributeFilterInput, $pageSize: Int!, $currentPage: Int!) { products(search: $search, filter: $filter, pageSize: $pageSize, currentPage: $currentPage) { total_count page_info { current_page page_size total_pages } items { __typename uid name sku url_key url_suffix stock_status small_image { url label } price_range { minimum_price { regular_price { value currency } final_price { value currency } discount { amount_off percent_off } } } } } }",
        "variables": { "search": "red kettle", "filter": { "price": { "to": "40" } }, "pageSize": 3, "currentPage": 1 },
        "operationName": "ProductSearch"
    });
    let (status, body) = raw(&fake, "application/json", request.to_string()).await;
    assert_eq!(status, 200);
    let expected = CONTRACT_EXAMPLE.replace("https://shop.example.com", &fake.store_url());
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(body, expected);
    // Integer-looking floats as the contract shows them.
    let retro = &body["data"]["products"]["items"][1]["price_range"]["minimum_price"]["final_price"]["value"];
    assert_eq!(retro.to_string(), "29");

    let (_, body) =
        raw(&fake, "application/json", json!({"query": "{ products(search: \"\") { total_count } }"}).to_string())
            .await;
    assert_eq!(body["errors"][0]["message"], SEARCH_OR_FILTER);
    assert_eq!(body["errors"][0]["extensions"]["category"], "graphql-input");
    assert_eq!(body["data"], json!({"products": null}));
    let (status, body) = raw(&fake, "text/plain", request.to_string()).await;
    assert_eq!((status, body["errors"][0]["message"].as_str()), (415, Some(WRONG_CONTENT_TYPE)));
    let (status, body) =
        raw(&fake, "application/json", json!({"query": "{ products(search: \"x\") {"}).to_string()).await;
    assert_eq!((status, body["errors"][0]["extensions"]["category"].as_str()), (400, Some("graphql")));
    assert!(body.get("data").is_none());
    // Filters are strings: a number for `to` is a validation error, nothing runs.
    let numeric = json!({"query": request["query"], "variables": {"search": "kettle", "filter": {"price": {"to": 40}}, "pageSize": 3, "currentPage": 1}});
    let (status, body) = raw(&fake, "application/json", numeric.to_string()).await;
    assert_eq!((status, body["errors"][0]["extensions"]["category"].as_str()), (200, Some("graphql")));
    assert!(body.get("data").is_none(), "{body}");
    for (size, page, message) in [
        (0, 1, "pageSize value must be greater than 0."),
        (3, 0, "currentPage value must be greater than 0."),
        (3, 3, "currentPage value 3 specified is greater than the 2 page(s) available."),
    ] {
        let mut r = request.clone();
        r["variables"]["pageSize"] = json!(size);
        r["variables"]["currentPage"] = json!(page);
        let (status, body) = raw(&fake, "application/json", r.to_string()).await;
        assert_eq!((status, body["errors"][0]["message"].as_str()), (200, Some(message)));
    }
}

#[tokio::test]
async fn catalog_filters_go_out_as_strings() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog();
    let cheap = catalog.search("kettle", &Filters::max_price(30.0)).await.unwrap();
    assert_eq!(names(&cheap), ["Kettle Retro", "Travel Kettle Mini Red"]);
    assert_eq!(fake.seen()[0].variables()["filter"], json!({"price": {"to": "30"}}));

    let filters = Filters { min_price: Some(39.0), max_price: Some(99.5), category_uid: None };
    let mid = catalog.search("kettle", &filters).await.unwrap();
    assert_eq!(names(&mid), ["Glass Kettle", "Kettle Steel Pro"]);
    assert_eq!(fake.seen()[1].variables()["filter"], json!({"price": {"from": "39", "to": "99.5"}}));

    let lamps = Filters { category_uid: Some(LIGHTING.into()), ..Filters::default() };
    let found = catalog.search("lamp bulb", &lamps).await.unwrap();
    assert_eq!(names(&found), ["LED Bulb E27 Warm", "Arc Floor Lamp", "Desk Lamp Brass", "Bedside Lamp Linen"]);
    let kitchen = Filters { category_uid: Some(KITCHEN.into()), ..Filters::default() };
    assert!(catalog.search("lamp", &kitchen).await.unwrap().is_empty());

    let e = catalog.search("kettle", &Filters { min_price: Some(50.0), max_price: Some(10.0), category_uid: None });
    assert!(matches!(e.await, Err(CatalogError::InvalidFilter(_))));
    assert_eq!(fake.requests(), 4, "an invalid filter is not sent");
}

#[tokio::test]
async fn catalog_never_sends_an_empty_term() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog();
    for term in ["", "   ", "\n\t", "\u{7}"] {
        let e = catalog.search(term, &Filters::default()).await.unwrap_err();
        assert_eq!(e, CatalogError::EmptyTerm);
        assert!(!e.retryable());
    }
    assert_eq!(fake.requests(), 0);
    assert_eq!(catalog.cache_stats(), CacheStats::default());
}

#[tokio::test]
async fn catalog_caches_the_same_search_briefly() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog();
    let (first, lookup) = catalog.search_with_lookup("Red Kettle", &Filters::default()).await.unwrap();
    assert_eq!(lookup, Lookup::Miss);
    let (again, lookup) = catalog.search_with_lookup("  red   KETTLE ", &Filters::default()).await.unwrap();
    assert_eq!((lookup, &again), (Lookup::Hit, &first));
    let clone = catalog.clone();
    assert_eq!(clone.search_with_lookup("red kettle", &Filters::default()).await.unwrap().1, Lookup::Hit);
    assert_eq!(fake.requests(), 1, "the cache answered");
    let (_, lookup) = catalog.search_with_lookup("red kettle", &Filters::max_price(30.0)).await.unwrap();
    assert_eq!(lookup, Lookup::Miss, "other filters, another search");
    assert_eq!(catalog.cache_stats(), CacheStats { hits: 2, misses: 2, entries: 2 });
    assert_eq!(fake.requests(), 2);

    // Another catalog has its own cache.
    assert_eq!(fake.catalog().search_with_lookup("red kettle", &Filters::default()).await.unwrap().1, Lookup::Miss);

    // Errors are not cached.
    fake.fail_next(Failure::Maintenance);
    assert!(catalog.search("teapot", &Filters::default()).await.unwrap_err().retryable());
    assert_eq!(names(&catalog.search("teapot", &Filters::default()).await.unwrap()), ["Teapot Ceramic"]);
    assert_eq!(fake.requests(), 5);

    // Entries expire.
    let short = fake.catalog().with_cache(Duration::from_millis(150), 8);
    short.search("lamp", &Filters::default()).await.unwrap();
    assert_eq!(short.search_with_lookup("lamp", &Filters::default()).await.unwrap().1, Lookup::Hit);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(short.search_with_lookup("lamp", &Filters::default()).await.unwrap().1, Lookup::Miss);
    catalog.clear_cache();
    assert_eq!(catalog.search_with_lookup("red kettle", &Filters::default()).await.unwrap().1, Lookup::Miss);
}

#[tokio::test]
async fn catalog_pages_and_past_the_last_one() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog();
    let first = catalog.search_page("kettle", &Filters::default(), 1).await.unwrap();
    assert_eq!((first.products.len(), first.total_count, first.total_pages), (4, Some(5), Some(2)));
    let second = catalog.search_page("kettle", &Filters::default(), 2).await.unwrap();
    assert_eq!((names(&second.products), second.current_page), (vec!["Kettle Steel Pro"], 2));
    let past = catalog.search_page("kettle", &Filters::default(), 3).await.unwrap();
    assert!(past.products.is_empty());
    assert_eq!((past.current_page, past.total_pages), (3, Some(2)), "the store's error said 2 pages");
    assert_eq!(fake.seen()[2].variables()["currentPage"], 3);
    let nothing = catalog.search_page("zebra", &Filters::default(), 7).await.unwrap();
    assert_eq!((nothing.products.len(), nothing.total_count), (0, Some(0)), "zero matches: any page is empty");
    assert!(catalog.search_page("kettle", &Filters::default(), 0).await.is_err());
}

#[tokio::test]
async fn catalog_graphql_errors_and_statuses_are_classified() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog().with_cache(Duration::ZERO, 0);
    let no_filters = Filters::default();
    let search = || catalog.search("kettle", &no_filters);

    fake.fail_next(Failure::graphql("Requested store is not found", "graphql-input"));
    let e = search().await.unwrap_err();
    assert_eq!(
        e,
        CatalogError::Rejected {
            category: Some("graphql-input".into()),
            message: "Requested store is not found".into()
        }
    );
    assert!(!e.retryable());
    fake.fail_next(Failure::Graphql { message: "Something broke".into(), category: None });
    let e = search().await.unwrap_err();
    assert_eq!(e, CatalogError::Internal { status: 200, message: "Something broke".into() });
    assert!(!e.retryable(), "never retry 200-with-errors (§5.2)");
    fake.fail_next(Failure::Internal);
    let e = search().await.unwrap_err();
    assert!(matches!(&e, CatalogError::Internal { status: 500, message } if message == "Internal server error"));
    assert!(!e.retryable());
    fake.fail_next(Failure::Maintenance);
    let e = search().await.unwrap_err();
    assert!(e.retryable() && e.to_string().contains("HTTP 503"), "{e}");
    for status in [502, 504] {
        fake.fail_next(Failure::Raw { status, content_type: "text/html", body: "<html>Bad Gateway</html>".into() });
        assert!(search().await.unwrap_err().retryable());
    }
    fake.fail_next(Failure::Raw { status: 500, content_type: "text/html", body: "<b>Fatal error</b>".into() });
    let e = search().await.unwrap_err();
    assert!(matches!(e, CatalogError::Http { status: 500, .. }) && !e.retryable(), "{e:?}");
    fake.fail_next(Failure::Raw { status: 200, content_type: "text/html", body: "<html>hello</html>".into() });
    assert!(matches!(search().await, Err(CatalogError::Protocol(_))));
    assert!(!search().await.unwrap().is_empty(), "the store is back");

    // A query the schema refuses (§5.2: 200, no data, category graphql).
    let mut config = fake.config();
    config.query = "query Q($search: String!) { products(search: $search) { items { name colour } } }".into();
    let odd = Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap();
    let e = odd.search("kettle", &Filters::default()).await.unwrap_err();
    assert!(
        matches!(&e, CatalogError::Rejected { category: Some(c), message } if c == "graphql" && message.contains("colour")),
        "{e:?}"
    );
}

#[tokio::test]
async fn catalog_headers_are_sent_and_stay_secret() {
    let fake = FakeCatalog::start().await;
    let mut config = fake.config();
    config.headers = vec![("Store".into(), "de_de".into()), ("Content-Currency".into(), "EUR".into())];
    let catalog = Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap();
    assert!(!catalog.search("kettle", &Filters::default()).await.unwrap().is_empty());
    let seen = fake.seen().pop().unwrap();
    assert_eq!((seen.header("store"), seen.header("content-currency")), (Some("de_de"), Some("EUR")));
    assert!(!format!("{catalog:?}").contains("de_de"));

    const SECRET_STORE: &str = "xx_secret_store_77";
    let mut config = fake.config();
    config.headers = vec![("Store".into(), SECRET_STORE.into())];
    assert!(!format!("{config:?}").contains(SECRET_STORE));
    let catalog = Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap();
    let e = catalog.search("kettle", &Filters::default()).await.unwrap_err();
    assert!(matches!(&e, CatalogError::Rejected { message, .. } if message == STORE_NOT_FOUND), "{e:?}");
    for shown in [e.to_string(), format!("{e:?}"), format!("{catalog:?}")] {
        assert!(!shown.contains(SECRET_STORE), "{shown}");
    }

    // A token the store refuses (§2: send none): 401, not retryable, the token nowhere.
    const BAD_TOKEN: &str = "Bearer expired-token-123456";
    let mut config = fake.config();
    config.headers = vec![("Authorization".into(), BAD_TOKEN.into())];
    let catalog = Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap();
    let e = catalog.search("kettle", &Filters::default()).await.unwrap_err();
    assert!(matches!(e, CatalogError::Unauthorized { status: 401, .. }) && !e.retryable(), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("expired-token"));
    let mut config = fake.config();
    config.headers = vec![("Authorization".into(), format!("Bearer {VALID_TOKEN}"))];
    let catalog = Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap();
    assert!(catalog.search("kettle", &Filters::default()).await.is_ok());
}

#[tokio::test]
async fn catalog_partial_data_keeps_the_good_products() {
    let fake = FakeCatalog::start().await;
    fake.break_product(Some("KT-CL-RED"));
    let products = fake.catalog().search("kettle", &Filters::default()).await.unwrap();
    assert_eq!(names(&products), ["Kettle Retro", "Travel Kettle Mini Red", "Glass Kettle"]);
    // The fake answered partial data: null at the failing field, the error's path through the item.
    let query = "{ products(search: \"kettle\", pageSize: 2) { items { sku small_image { url } } } }";
    let (status, body) = raw(&fake, "application/json", json!({ "query": query }).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["message"], BROKEN_IMAGE);
    assert_eq!(body["errors"][0]["path"], json!(["products", "items", 0, "small_image", "url"]));
    assert_eq!(body["data"]["products"]["items"][0], json!({"sku": "KT-CL-RED", "small_image": {"url": null}}));
    assert_eq!(body["data"]["products"]["items"][1]["sku"], "KT-RETRO");
}

#[tokio::test]
async fn catalog_out_of_stock_products_may_be_hidden() {
    let fake = FakeCatalog::start().await;
    fake.show_out_of_stock(false);
    let products = fake.catalog().search("mini kettle", &Filters::default()).await.unwrap();
    assert!(products.iter().all(|p| p.in_stock == Some(true)), "{products:?}");
}

#[tokio::test]
async fn catalog_a_slow_store_does_not_hang_the_caller() {
    let fake = FakeCatalog::start().await;
    fake.set_delay(Some(Duration::from_secs(3)));
    let catalog = fake.catalog().with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let e = catalog.search("kettle", &Filters::default()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert!(matches!(&e, CatalogError::Unavailable(m) if m.contains("no answer within")), "{e:?}");
    assert!(e.retryable());
    fake.set_delay(None);
    assert!(catalog.search("kettle", &Filters::default()).await.is_ok());
}

#[tokio::test]
async fn catalog_a_store_that_is_down_is_retryable() {
    let fake = FakeCatalog::start().await;
    let catalog = fake.catalog().with_cache(Duration::ZERO, 0);
    assert!(catalog.search("kettle", &Filters::default()).await.is_ok());
    fake.down().await;
    let e = catalog.search("kettle", &Filters::default()).await.unwrap_err();
    assert!(matches!(e, CatalogError::Unavailable(_)) && e.retryable(), "{e:?}");
    fake.up().await;
    assert!(catalog.search("kettle", &Filters::default()).await.is_ok());
}

#[tokio::test]
async fn catalog_an_oversized_answer_is_refused() {
    let fake = FakeCatalog::start().await;
    let huge = json!({"data": {"products": {"items": [{"name": "x".repeat(MAX_BODY + 10), "url_key": "x"}]}}});
    fake.fail_next(Failure::Raw { status: 200, content_type: "application/json", body: huge.to_string() });
    let e = fake.catalog().search("kettle", &Filters::default()).await.unwrap_err();
    assert!(matches!(&e, CatalogError::Protocol(m) if m.contains("larger than")), "{e:?}");
}

#[tokio::test]
async fn catalog_another_schema_through_a_mapping() {
    let fake = FakeCatalog::start().await;
    let mut config = fake.config();
    config.query =
        "query Find($search: String!, $pageSize: Int!) { found: products(search: $search, pageSize: $pageSize) \
                    { hits: items { title: name link: url_key stock: stock_status pic: small_image { src: url } \
                    cost: price_range { minimum_price { final_price { amount: value code: currency } } } } } }"
            .into();
    config.mapping = Some(
        ProductMapping::parse(
            "items=found.hits, name=title, url=link, price=cost.minimum_price.final_price.amount, \
             currency=cost.minimum_price.final_price.code, image=pic.src, stock=stock",
        )
        .unwrap(),
    );
    let catalog = Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap();
    let products = catalog.search("glass", &Filters::default()).await.unwrap();
    assert_eq!(names(&products), ["Glass Kettle"]);
    let glass = &products[0];
    assert_eq!(glass.url, format!("{}/glass-kettle", fake.store_url()), "a path under the store URL");
    assert_eq!((glass.price, glass.currency.as_deref(), glass.in_stock), (Some(39.0), Some("EUR"), Some(true)));
    assert_eq!(glass.image_url.as_deref(), Some(fake.image_url("k/t/kt-glass.jpg").as_str()));
    let seen = fake.seen().pop().unwrap();
    assert_eq!(seen.body["operationName"], "Find");
    assert_eq!(seen.variables(), &json!({"search": "glass", "pageSize": MAX_RESULTS}));
    assert!(matches!(catalog.search("glass", &Filters::max_price(10.0)).await, Err(CatalogError::Config(_))));
}

#[tokio::test]
async fn catalog_fake_client_settings() {
    let fake = FakeCatalog::start().await;
    assert_eq!(
        fake.client_settings(),
        [
            format!("product_graphql_url=http://{}/graphql", fake.addr),
            format!("store_url=http://{}", fake.addr),
            format!("product_max_results={MAX_RESULTS}"),
        ]
    );
}
