//! A real GraphQL server (async-graphql) on loopback standing in for a shop's FAQ source, in
//! each paging style, with CMS HTML, and with the failures of `contracts/graphql-magento.md`:
//! errors with HTTP 200 and partial data, 415 for a wrong content type, 503 HTML pages, invalid
//! JSON and slow answers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Error, ErrorExtensions, Object, Schema, SimpleObject};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One FAQ of the fake shop.
#[derive(Clone, SimpleObject)]
pub struct Faq {
    pub id: String,
    pub question: String,
    pub answer: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
struct PageInfo {
    total_pages: i32,
    current_page: i32,
    page_size: i32,
}

#[derive(SimpleObject)]
struct FaqPage {
    items: Vec<Faq>,
    #[graphql(name = "page_info")]
    page_info: PageInfo,
    #[graphql(name = "total_count")]
    total_count: i32,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
struct RelayInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(SimpleObject)]
struct Edge {
    node: Faq,
    cursor: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
struct Connection {
    edges: Vec<Edge>,
    page_info: RelayInfo,
}

#[derive(SimpleObject)]
struct CmsPage {
    identifier: String,
    title: String,
    content: String,
}

/// What the fake serves and how it misbehaves; tests change it between runs.
#[derive(Default)]
pub struct Shop {
    pub faqs: Mutex<Vec<Faq>>,
    pub cms_html: Mutex<String>,
    /// Fail `faqs` on this page with a GraphQL error (HTTP 200, partial data).
    pub fail_page: Mutex<Option<i32>>,
    /// Answer this many requests with 503 (an HTML page) before serving.
    pub unavailable: AtomicU32,
    /// Answer this many requests with Magento's 500 (`Internal server error`) before serving.
    pub broken: AtomicU32,
    /// Requests served (for retry assertions).
    pub requests: AtomicU32,
    /// When set, a request whose `Authorization` is not `Bearer <token>` is refused as Magento
    /// refuses an invalid token (HTTP 401, `graphql-authentication`).
    pub token: Mutex<Option<String>>,
}

struct Query;

#[Object]
impl Query {
    async fn faq(&self, ctx: &Context<'_>) -> Vec<Faq> {
        ctx.data_unchecked::<Arc<Shop>>().faqs.lock().unwrap().clone()
    }

    async fn faqs(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "pageSize", default = 20)] page_size: i32,
        #[graphql(name = "currentPage", default = 1)] current_page: i32,
    ) -> Result<FaqPage, Error> {
        let shop = ctx.data_unchecked::<Arc<Shop>>();
        if *shop.fail_page.lock().unwrap() == Some(current_page) {
            return Err(
                Error::new("Internal error while loading FAQs.").extend_with(|_, e| e.set("category", "graphql-input"))
            );
        }
        if page_size < 1 {
            return Err(Error::new("pageSize value must be greater than 0."));
        }
        let all = shop.faqs.lock().unwrap().clone();
        let total_pages = (all.len() as i32 + page_size - 1) / page_size;
        if current_page > total_pages && !all.is_empty() {
            return Err(Error::new(format!(
                "currentPage value {current_page} specified is greater than the {total_pages} page(s) available."
            ))
            .extend_with(|_, e| e.set("category", "graphql-input")));
        }
        let start = ((current_page - 1) * page_size) as usize;
        let items = all.iter().skip(start).take(page_size as usize).cloned().collect();
        Ok(FaqPage {
            items,
            page_info: PageInfo { total_pages, current_page, page_size },
            total_count: all.len() as i32,
        })
    }

    #[graphql(name = "faqConnection")]
    async fn faq_connection(&self, ctx: &Context<'_>, first: i32, after: Option<String>) -> Connection {
        let all = ctx.data_unchecked::<Arc<Shop>>().faqs.lock().unwrap().clone();
        let start = after.and_then(|a| a.parse::<usize>().ok()).map_or(0, |a| a + 1);
        let edges: Vec<Edge> = all
            .iter()
            .enumerate()
            .skip(start)
            .take(first as usize)
            .map(|(i, f)| Edge { node: f.clone(), cursor: i.to_string() })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        let has_next_page = start + edges.len() < all.len();
        Connection { edges, page_info: RelayInfo { has_next_page, end_cursor } }
    }

    #[graphql(name = "faqList")]
    async fn faq_list(&self, ctx: &Context<'_>, limit: i32, offset: i32) -> Vec<Faq> {
        let all = ctx.data_unchecked::<Arc<Shop>>().faqs.lock().unwrap().clone();
        all.into_iter().skip(offset as usize).take(limit as usize).collect()
    }

    /// Customer data, which needs a logged-in customer: always `graphql-authorization`.
    async fn customer(&self) -> Result<Option<String>, Error> {
        Err(Error::new("The current customer isn't authorized.")
            .extend_with(|_, e| e.set("category", "graphql-authorization")))
    }

    #[graphql(name = "cmsPage")]
    async fn cms_page(&self, ctx: &Context<'_>, identifier: String) -> Result<CmsPage, Error> {
        if identifier != "faq" {
            return Err(Error::new(format!("The CMS page with the \"{identifier}\" ID doesn't exist."))
                .extend_with(|_, e| e.set("category", "graphql-no-such-entity")));
        }
        let content = ctx.data_unchecked::<Arc<Shop>>().cms_html.lock().unwrap().clone();
        Ok(CmsPage { identifier, title: "Frequently asked questions".into(), content })
    }
}

type ShopSchema = Schema<Query, EmptyMutation, EmptySubscription>;

async fn graphql(State((schema, shop)): State<(ShopSchema, Arc<Shop>)>, headers: HeaderMap, body: String) -> Response {
    shop.requests.fetch_add(1, Ordering::SeqCst);
    if shop.unavailable.load(Ordering::SeqCst) > 0 {
        shop.unavailable.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "<html><body>Maintenance</body></html>").into_response();
    }
    let json_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        let body = r#"{"errors":[{"message":"Request content type must be application/json"}]}"#;
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, [("content-type", "application/json")], body).into_response();
    }
    let token = shop.token.lock().unwrap().clone();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let (Some(token), Some(given)) = (token, authorization)
        && given != format!("Bearer {token}")
    {
        let body = serde_json::json!({"errors": [{
            "message": "The request is allowed for logged in customer",
            "extensions": {"category": "graphql-authentication"}
        }]});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    if shop.broken.load(Ordering::SeqCst) > 0 {
        shop.broken.fetch_sub(1, Ordering::SeqCst);
        let body = serde_json::json!({"errors": [{"message": "Internal server error", "extensions": {"category": "internal"}}]});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    let request: async_graphql::Request = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            let body =
                serde_json::json!({"errors": [{"message": e.to_string(), "extensions": {"category": "graphql"}}]});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    // A syntax error is a 400 with no `data` in current Magento (schema validation errors, such
    // as an unknown field, stay 200).
    if let Err(e) = async_graphql::parser::parse_query(&request.query) {
        let body = serde_json::json!({"errors": [{
            "message": format!("Syntax Error: {e}"),
            "extensions": {"category": "graphql"}
        }]});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let response = serde_json::to_value(schema.execute(request).await).unwrap();
    (magento_status(&response), axum::Json(response)).into_response()
}

/// Magento's controller: authentication errors answer 401, authorization errors 403, the rest
/// 200 (contract §5.2).
pub fn magento_status(response: &serde_json::Value) -> StatusCode {
    let categories: Vec<&str> = response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["extensions"]["category"].as_str())
        .collect();
    if categories.contains(&"graphql-authentication") {
        StatusCode::UNAUTHORIZED
    } else if categories.contains(&"graphql-authorization") {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "{}"
}

async fn not_json() -> (StatusCode, &'static str) {
    (StatusCode::OK, "this is not json")
}

/// A running fake: `url` is its `/graphql` endpoint; `/slow` and `/not-json` misbehave.
pub struct FakeShop {
    pub addr: SocketAddr,
    pub shop: Arc<Shop>,
}

impl FakeShop {
    /// Starts the fake with `faqs`.
    pub async fn start(faqs: Vec<Faq>) -> FakeShop {
        let shop = Arc::new(Shop { faqs: Mutex::new(faqs), ..Default::default() });
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription).data(shop.clone()).finish();
        let app = Router::new()
            .route("/graphql", post(graphql))
            .route("/slow", post(slow))
            .route("/not-json", post(not_json))
            .with_state((schema, shop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeShop { addr, shop }
    }

    /// The URL of a path on the fake.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// `n` FAQs about invented hotel services.
pub fn hotel_faqs(n: usize) -> Vec<Faq> {
    let topics = ["sauna", "parking", "breakfast", "checkout", "pets", "wifi", "gym", "laundry", "shuttle", "pool"];
    (0..n)
        .map(|i| {
            let topic = topics[i % topics.len()];
            Faq {
                id: format!("h{i}"),
                question: format!(
                    "Is there a {topic} at the hotel{}?",
                    if i >= topics.len() { format!(" (wing {i})") } else { String::new() }
                ),
                answer: format!("Yes, the {topic} is available daily. (entry {i})"),
            }
        })
        .collect()
}
