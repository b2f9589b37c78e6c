//! A fake Magento 2 product catalog on loopback that follows `shared/contracts/graphql-magento.md`
//! (§6): a real GraphQL server (async-graphql) with Magento's `products(search, filter,
//! pageSize, currentPage, sort)` query, the `ProductInterface` types of §3.2 (`SimpleProduct`,
//! `ConfigurableProduct`), field errors as partial data (`null` at the failing field, the error
//! with its `path`), string-valued filters (`sku`, `name`, `price`, `url_key`,
//! `category_uid`), the three paging errors with their exact messages, Magento's HTTP statuses
//! (§5.2: 200 for GraphQL errors, 400 for syntax errors and unparseable bodies, 401 for a bad
//! token, 415 for a wrong content type, 500/503 on demand), the `Store` header, and
//! integer-looking floats (`29`, not `29.0`).
//!
//! The catalog: ten products of an invented kitchen-and-lamp shop, prices in EUR, images on the
//! fake's own host, one product without an image (Magento's placeholder), one out of stock. The
//! contract's §3.3 example (`red kettle`, price up to `"40"`, page size 3) answers exactly the
//! contract's example response (with the images on this host).
//!
//! Search is full-text-ish: the term's words, case-insensitive, as substrings of name, SKU or
//! description; a product matches on any word and ranks by how many it matches, then by
//! position (Magento's relevance order, roughly).
//!
//! Controls for tests: fail the next requests ([`Failure`]), answer slowly, break one product's
//! image (partial data), hide out-of-stock products, put a product of the test's own first, go
//! down and come back on the same port, and every request seen.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aia_chat::catalog::search::{Catalog, CatalogConfig};
use aia_chat::clients::UpstreamPolicy;
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, Error, ErrorExtensions, ID, InputObject, Interface, Object,
    Schema, SimpleObject,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Store-view codes the fake knows (§2 `Store`); both serve the same catalog. Any other code is
/// `Requested store is not found`.
pub const STORES: &[&str] = &["default", "de_de"];
/// The one bearer token the fake accepts; any other `Authorization` is a 401 (§5.2).
pub const VALID_TOKEN: &str = "fake-integration-token-0f1e2d3c";
/// Category uids (base64 of Magento's numeric ids, like real `category_uid`s).
pub const KITCHEN: &str = "Mw==";
pub const LIGHTING: &str = "NA==";
/// Every product's `url_suffix` (the store's config).
pub const URL_SUFFIX: &str = ".html";
/// The product without its own image (Magento answers its placeholder) and the one out of stock.
pub const NO_IMAGE_SKU: &str = "KT-RETRO";
pub const OUT_OF_STOCK_SKU: &str = "KT-MINI-RED";
/// `product_max_results` in [`FakeCatalog::client_settings`].
pub const MAX_RESULTS: u32 = 4;
/// The contract's messages (§3.1, §5).
pub const SEARCH_OR_FILTER: &str = "'search' or 'filter' input argument is required.";
pub const STORE_NOT_FOUND: &str = "Requested store is not found";
pub const WRONG_CONTENT_TYPE: &str = "Request content type must be application/json";
pub const INTERNAL: &str = "Internal server error";
/// What a broken product's `small_image.url` fails with ([`FakeCatalog::break_product`]).
pub const BROKEN_IMAGE: &str = "Internal error while loading the product image.";

/// One product of the fake shop.
#[derive(Clone, Debug)]
pub struct FakeProduct {
    pub typename: &'static str,
    pub uid: &'static str,
    pub name: &'static str,
    pub sku: &'static str,
    pub url_key: &'static str,
    pub description: &'static str,
    pub regular: f64,
    pub price: f64,
    pub in_stock: bool,
    /// The image's file under the media cache; `None`: Magento's placeholder.
    pub image: Option<&'static str>,
    /// The image's label (`None`: JSON null).
    pub label: Option<&'static str>,
    pub category: &'static str,
}

/// The fake's ten products, by position.
pub fn products() -> Vec<FakeProduct> {
    let p = |typename, uid, name, sku, url_key, description, regular, price, in_stock, image, label, category| {
        FakeProduct { typename, uid, name, sku, url_key, description, regular, price, in_stock, image, label, category }
    };
    vec![
        p(
            "SimpleProduct",
            "MTQ1",
            "Kettle Classic Red",
            "KT-CL-RED",
            "kettle-classic-red",
            "A 1.7 l kettle with a classic look.",
            39.9,
            34.9,
            true,
            Some("k/t/kt-cl-red.jpg"),
            Some("Kettle Classic Red"),
            KITCHEN,
        ),
        p(
            "ConfigurableProduct",
            "MjAz",
            "Kettle Retro",
            NO_IMAGE_SKU,
            "kettle-retro",
            "Retro kettle in red, cream or mint.",
            29.0,
            29.0,
            true,
            None,
            Some("Kettle Retro"),
            KITCHEN,
        ),
        p(
            "SimpleProduct",
            "MjEx",
            "Travel Kettle Mini Red",
            OUT_OF_STOCK_SKU,
            "travel-kettle-mini-red",
            "0.5 l for the road.",
            19.5,
            19.5,
            false,
            Some("k/t/kt-mini-red.jpg"),
            None,
            KITCHEN,
        ),
        p(
            "SimpleProduct",
            "MjE1",
            "Glass Kettle",
            "KT-GLASS",
            "glass-kettle",
            "Borosilicate glass, blue light while it boils.",
            39.0,
            39.0,
            true,
            Some("k/t/kt-glass.jpg"),
            Some("Glass Kettle"),
            KITCHEN,
        ),
        p(
            "SimpleProduct",
            "MjE2",
            "Kettle Steel Pro",
            "KT-STEEL-PRO",
            "kettle-steel-pro",
            "Brushed steel, temperature control.",
            89.0,
            89.0,
            true,
            Some("k/t/kt-steel-pro.jpg"),
            Some("Kettle Steel Pro"),
            KITCHEN,
        ),
        p(
            "SimpleProduct",
            "MjE3",
            "Teapot Ceramic",
            "TP-CER",
            "teapot-ceramic",
            "A white ceramic teapot, 1 l.",
            24.9,
            24.9,
            true,
            Some("t/p/tp-cer.jpg"),
            Some("Teapot Ceramic"),
            KITCHEN,
        ),
        p(
            "ConfigurableProduct",
            "MzAx",
            "Arc Floor Lamp",
            "LMP-ARC",
            "arc-floor-lamp",
            "An arching floor lamp with a marble foot.",
            149.0,
            129.9,
            true,
            Some("l/m/lmp-arc.jpg"),
            Some("Arc Floor Lamp"),
            LIGHTING,
        ),
        p(
            "SimpleProduct",
            "MzAy",
            "Desk Lamp Brass",
            "LMP-DESK-BR",
            "desk-lamp-brass",
            "Adjustable brass desk lamp.",
            59.0,
            59.0,
            true,
            Some("l/m/lmp-desk-br.jpg"),
            Some("Desk Lamp Brass"),
            LIGHTING,
        ),
        p(
            "SimpleProduct",
            "MzAz",
            "Bedside Lamp Linen",
            "LMP-BED-LN",
            "bedside-lamp-linen",
            "A small lamp with a linen shade.",
            45.5,
            45.5,
            true,
            Some("l/m/lmp-bed-ln.jpg"),
            Some("Bedside Lamp Linen"),
            LIGHTING,
        ),
        p(
            "SimpleProduct",
            "MzA0",
            "LED Bulb E27 Warm",
            "BLB-E27-W",
            "led-bulb-e27-warm",
            "Warm white, 806 lm, fits every lamp here.",
            4.99,
            4.99,
            true,
            Some("b/l/blb-e27-w.jpg"),
            Some("LED Bulb E27 Warm"),
            LIGHTING,
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Controls and state
// ---------------------------------------------------------------------------------------

/// How the next request fails, before any GraphQL runs.
#[derive(Clone, Debug)]
pub enum Failure {
    /// HTTP 200 with `errors` and no `data` (e.g. `graphql-input`, or `None`: an internal error
    /// without a category).
    Graphql { message: String, category: Option<String> },
    /// HTTP 500 `Internal server error` (category `internal`).
    Internal,
    /// HTTP 503 with an HTML maintenance page.
    Maintenance,
    /// Anything: a status, a content type and a body.
    Raw { status: u16, content_type: &'static str, body: String },
}

impl Failure {
    /// A GraphQL error with `category`, HTTP 200, no data.
    pub fn graphql(message: &str, category: &str) -> Failure {
        Failure::Graphql { message: message.into(), category: Some(category.into()) }
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub content_type: Option<String>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn variables(&self) -> &Value {
        &self.body["variables"]
    }

    /// `variables.search`, if a string.
    pub fn search(&self) -> Option<&str> {
        self.body["variables"]["search"].as_str()
    }
}

struct World {
    addr: SocketAddr,
    products: Vec<FakeProduct>,
    failures: VecDeque<Failure>,
    delay: Option<Duration>,
    broken_name: Option<String>,
    show_out_of_stock: bool,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<World>>;

// ---------------------------------------------------------------------------------------
// Schema (§3.1, §3.2)
// ---------------------------------------------------------------------------------------

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "ProductStockStatus")]
enum ProductStockStatus {
    InStock,
    OutOfStock,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "CurrencyEnum")]
enum CurrencyEnum {
    Eur,
}

#[derive(SimpleObject, Clone)]
struct Money {
    value: Option<f64>,
    currency: Option<CurrencyEnum>,
}

#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "snake_case")]
struct ProductDiscount {
    amount_off: Option<f64>,
    percent_off: Option<f64>,
}

#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "snake_case")]
struct ProductPrice {
    regular_price: Money,
    final_price: Money,
    discount: Option<ProductDiscount>,
}

#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "snake_case")]
struct PriceRange {
    minimum_price: ProductPrice,
    maximum_price: Option<ProductPrice>,
}

/// `small_image`; its `url` fails for a broken product ([`FakeCatalog::break_product`]).
struct ProductImage {
    url: String,
    label: Option<String>,
    broken: bool,
}

#[Object]
impl ProductImage {
    async fn url(&self) -> Result<Option<String>, Error> {
        if self.broken {
            return Err(Error::new(BROKEN_IMAGE).extend_with(|_, e| e.set("category", "internal")));
        }
        Ok(Some(self.url.clone()))
    }
    async fn label(&self) -> Option<String> {
        self.label.clone()
    }
    async fn position(&self) -> Option<i32> {
        Some(1)
    }
    async fn disabled(&self) -> Option<bool> {
        Some(false)
    }
}

#[derive(SimpleObject, Clone)]
struct ComplexTextValue {
    html: String,
}

/// One product as the schema resolves it.
struct Item {
    p: FakeProduct,
    host: SocketAddr,
    broken: bool,
}

impl Item {
    fn uid(&self) -> ID {
        ID(self.p.uid.into())
    }

    fn image(&self) -> ProductImage {
        let path = match self.p.image {
            Some(file) => format!("cache/3f9a2c/{file}"),
            None => "placeholder/default/small_image.jpg".into(),
        };
        ProductImage {
            url: format!("http://{}/media/catalog/product/{path}", self.host),
            label: self.p.label.map(str::to_string),
            broken: self.broken,
        }
    }

    fn price_range(&self) -> PriceRange {
        let money = |v: f64| Money { value: Some(v), currency: Some(CurrencyEnum::Eur) };
        let off = ((self.p.regular - self.p.price) * 100.0).round() / 100.0;
        let percent = if self.p.regular > 0.0 { (off / self.p.regular * 10_000.0).round() / 100.0 } else { 0.0 };
        let price = ProductPrice {
            regular_price: money(self.p.regular),
            final_price: money(self.p.price),
            discount: Some(ProductDiscount { amount_off: Some(off), percent_off: Some(percent) }),
        };
        PriceRange { minimum_price: price.clone(), maximum_price: Some(price) }
    }
}

macro_rules! product_type {
    ($name:ident) => {
        struct $name(Item);

        #[Object(rename_fields = "snake_case")]
        impl $name {
            async fn uid(&self) -> ID {
                self.0.uid()
            }
            async fn name(&self) -> Option<String> {
                Some(self.0.p.name.into())
            }
            async fn sku(&self) -> Option<String> {
                Some(self.0.p.sku.into())
            }
            async fn url_key(&self) -> Option<String> {
                Some(self.0.p.url_key.into())
            }
            async fn url_suffix(&self) -> Option<String> {
                Some(URL_SUFFIX.into())
            }
            /// Relative; empty unless the merchant enabled canonical links (here: never).
            async fn canonical_url(&self) -> Option<String> {
                None
            }
            async fn stock_status(&self) -> Option<ProductStockStatus> {
                Some(if self.0.p.in_stock { ProductStockStatus::InStock } else { ProductStockStatus::OutOfStock })
            }
            async fn small_image(&self) -> Option<ProductImage> {
                Some(self.0.image())
            }
            async fn price_range(&self) -> PriceRange {
                self.0.price_range()
            }
            async fn short_description(&self) -> Option<ComplexTextValue> {
                Some(ComplexTextValue { html: format!("<p>{}</p>", self.0.p.description) })
            }
        }
    };
}

product_type!(SimpleProduct);
product_type!(ConfigurableProduct);

// The same `ty` on several fields is what an interface is, not a copy-paste slip.
#[allow(clippy::duplicated_attributes)]
#[derive(Interface)]
#[graphql(
    name = "ProductInterface",
    rename_fields = "snake_case",
    field(name = "uid", ty = "ID"),
    field(name = "name", ty = "Option<String>"),
    field(name = "sku", ty = "Option<String>"),
    field(name = "url_key", ty = "Option<String>"),
    field(name = "url_suffix", ty = "Option<String>"),
    field(name = "canonical_url", ty = "Option<String>"),
    field(name = "stock_status", ty = "Option<ProductStockStatus>"),
    field(name = "small_image", ty = "Option<ProductImage>"),
    field(name = "price_range", ty = "PriceRange"),
    field(name = "short_description", ty = "Option<ComplexTextValue>")
)]
enum ProductInterface {
    SimpleProduct(SimpleProduct),
    ConfigurableProduct(ConfigurableProduct),
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
struct SearchResultPageInfo {
    page_size: Option<i32>,
    current_page: Option<i32>,
    total_pages: Option<i32>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
struct Products {
    items: Option<Vec<Option<ProductInterface>>>,
    page_info: Option<SearchResultPageInfo>,
    total_count: Option<i32>,
}

#[derive(InputObject)]
struct FilterEqualTypeInput {
    eq: Option<String>,
    #[graphql(name = "in")]
    in_: Option<Vec<Option<String>>>,
}

impl FilterEqualTypeInput {
    fn accepts(&self, value: &str) -> bool {
        self.eq.as_deref().is_none_or(|eq| eq == value)
            && self.in_.as_ref().is_none_or(|list| list.iter().flatten().any(|v| v == value))
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
enum FilterMatchTypeEnum {
    Full,
    Partial,
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
struct FilterMatchTypeInput {
    #[graphql(name = "match")]
    match_: Option<String>,
    match_type: Option<FilterMatchTypeEnum>,
}

#[derive(InputObject)]
struct FilterRangeTypeInput {
    from: Option<String>,
    to: Option<String>,
}

#[derive(InputObject)]
#[graphql(name = "ProductAttributeFilterInput", rename_fields = "snake_case")]
struct ProductAttributeFilterInput {
    sku: Option<FilterEqualTypeInput>,
    name: Option<FilterMatchTypeInput>,
    price: Option<FilterRangeTypeInput>,
    url_key: Option<FilterEqualTypeInput>,
    category_uid: Option<FilterEqualTypeInput>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "SortEnum")]
enum SortEnum {
    Asc,
    Desc,
}

#[derive(InputObject)]
#[graphql(name = "ProductAttributeSortInput")]
struct ProductAttributeSortInput {
    relevance: Option<SortEnum>,
    position: Option<SortEnum>,
    name: Option<SortEnum>,
    price: Option<SortEnum>,
}

fn input_error(message: String) -> Error {
    Error::new(message).extend_with(|_, e| e.set("category", "graphql-input"))
}

fn bound(text: &Option<String>, which: &str) -> Result<Option<f64>, Error> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| input_error(format!("Invalid price {which} value: \"{t}\"."))),
    }
}

struct Query;

#[Object]
impl Query {
    async fn products(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        filter: Option<ProductAttributeFilterInput>,
        #[graphql(name = "pageSize", default = 20)] page_size: i32,
        #[graphql(name = "currentPage", default = 1)] current_page: i32,
        sort: Option<ProductAttributeSortInput>,
    ) -> Result<Option<Products>, Error> {
        let world = ctx.data_unchecked::<Shared>().lock().unwrap();
        let words: Vec<String> = search.as_deref().unwrap_or("").split_whitespace().map(str::to_lowercase).collect();
        if words.is_empty() && filter.is_none() {
            return Err(input_error(SEARCH_OR_FILTER.into()));
        }
        if page_size < 1 {
            return Err(input_error("pageSize value must be greater than 0.".into()));
        }
        if current_page < 1 {
            return Err(input_error("currentPage value must be greater than 0.".into()));
        }
        let (from, to) = match filter.as_ref().and_then(|f| f.price.as_ref()) {
            Some(r) => (bound(&r.from, "from")?, bound(&r.to, "to")?),
            None => (None, None),
        };
        let mut found: Vec<(usize, usize, &FakeProduct)> = Vec::new();
        for (position, p) in world.products.iter().enumerate() {
            if !p.in_stock && !world.show_out_of_stock {
                continue;
            }
            let haystack = format!("{} {} {}", p.name, p.sku, p.description).to_lowercase();
            let score = words.iter().filter(|w| haystack.contains(w.as_str())).count();
            if !words.is_empty() && score == 0 {
                continue;
            }
            if let Some(f) = &filter {
                let name_ok = f.name.as_ref().and_then(|m| m.match_.as_deref()).is_none_or(|m| {
                    let full = f.name.as_ref().and_then(|n| n.match_type) == Some(FilterMatchTypeEnum::Full);
                    if full {
                        p.name.eq_ignore_ascii_case(m)
                    } else {
                        p.name.to_lowercase().contains(&m.to_lowercase())
                    }
                });
                if !(name_ok
                    && f.sku.as_ref().is_none_or(|e| e.accepts(p.sku))
                    && f.url_key.as_ref().is_none_or(|e| e.accepts(p.url_key))
                    && f.category_uid.as_ref().is_none_or(|e| e.accepts(p.category))
                    && from.is_none_or(|from| p.price >= from)
                    && to.is_none_or(|to| p.price <= to))
                {
                    continue;
                }
            }
            found.push((score, position, p));
        }
        // Relevance (desc) with a search, position (asc) without (§3.1); or the sort asked for.
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(sort) = &sort {
            let dir = |d: SortEnum, o: std::cmp::Ordering| if d == SortEnum::Desc { o.reverse() } else { o };
            if let Some(d) = sort.price {
                found.sort_by(|a, b| dir(d, a.2.price.total_cmp(&b.2.price)));
            } else if let Some(d) = sort.name {
                found.sort_by(|a, b| dir(d, a.2.name.cmp(b.2.name)));
            } else if let Some(d) = sort.position {
                found.sort_by(|a, b| dir(d, a.1.cmp(&b.1)));
            }
        }
        let total = found.len() as i32;
        let total_pages = (total + page_size - 1) / page_size;
        if total > 0 && current_page > total_pages {
            return Err(input_error(format!(
                "currentPage value {current_page} specified is greater than the {total_pages} page(s) available."
            )));
        }
        let start = ((current_page - 1) as usize).saturating_mul(page_size as usize);
        let broken = world.broken_name.clone();
        let items = found
            .iter()
            .skip(start)
            .take(page_size as usize)
            .map(|(_, _, p)| {
                let item = Item { p: (*p).clone(), host: world.addr, broken: broken.as_deref() == Some(p.sku) };
                Some(if p.typename == "ConfigurableProduct" {
                    ProductInterface::ConfigurableProduct(ConfigurableProduct(item))
                } else {
                    ProductInterface::SimpleProduct(SimpleProduct(item))
                })
            })
            .collect();
        Ok(Some(Products {
            items: Some(items),
            page_info: Some(SearchResultPageInfo {
                page_size: Some(page_size),
                current_page: Some(current_page),
                total_pages: Some(total_pages),
            }),
            total_count: Some(total),
        }))
    }
}

type CatalogSchema = Schema<Query, EmptyMutation, EmptySubscription>;

// ---------------------------------------------------------------------------------------
// HTTP (§2, §5.2)
// ---------------------------------------------------------------------------------------

fn errors(status: StatusCode, errors: Value) -> Response {
    (status, axum::Json(json!({ "errors": errors }))).into_response()
}

async fn handle(State((schema, world)): State<(CatalogSchema, Shared)>, headers: HeaderMap, body: String) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (delay, failure) = {
        let mut w = world.lock().unwrap();
        w.seen.push(Seen {
            content_type: content_type.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        });
        (w.delay, w.failures.pop_front())
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match failure {
        Some(Failure::Graphql { message, category }) => {
            let mut error = json!({ "message": message });
            if let Some(category) = category {
                error["extensions"] = json!({ "category": category });
            }
            return errors(StatusCode::OK, json!([error]));
        }
        Some(Failure::Internal) => {
            return errors(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!([{ "message": INTERNAL, "extensions": { "category": "internal" } }]),
            );
        }
        Some(Failure::Maintenance) => {
            let page = "<!doctype html><html><body><h1>Service Temporarily Unavailable</h1>\
                        <p>The server is temporarily unable to service your request due to maintenance downtime.</p></body></html>";
            return (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/html")], page).into_response();
        }
        Some(Failure::Raw { status, content_type, body }) => {
            return (StatusCode::from_u16(status).unwrap(), [("content-type", content_type)], body).into_response();
        }
        None => {}
    }
    if !content_type.as_deref().is_some_and(|t| t.trim_start().starts_with("application/json")) {
        return errors(StatusCode::UNSUPPORTED_MEDIA_TYPE, json!([{ "message": WRONG_CONTENT_TYPE }]));
    }
    if let Some(given) = headers.get("authorization")
        && given.to_str().ok() != Some(format!("Bearer {VALID_TOKEN}").as_str())
    {
        return errors(
            StatusCode::UNAUTHORIZED,
            json!([{
                "message": "The request is allowed for logged in customer",
                "extensions": { "category": "graphql-authentication" }
            }]),
        );
    }
    if let Some(store) = headers.get("store")
        && !STORES.contains(&store.to_str().unwrap_or_default())
    {
        return errors(
            StatusCode::OK,
            json!([{ "message": STORE_NOT_FOUND, "extensions": { "category": "graphql-input" } }]),
        );
    }
    let request: async_graphql::Request = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return errors(
                StatusCode::BAD_REQUEST,
                json!([{ "message": format!("Unable to parse the request: {e}"), "extensions": { "category": "graphql" } }]),
            );
        }
    };
    if let Err(e) = async_graphql::parser::parse_query(&request.query) {
        return errors(
            StatusCode::BAD_REQUEST,
            json!([{ "message": format!("Syntax Error: {e}"), "extensions": { "category": "graphql" } }]),
        );
    }
    let mut response = serde_json::to_value(schema.execute(request).await).unwrap();
    magento_style(&mut response);
    (crate::graphql_fake::magento_status(&response), axum::Json(response)).into_response()
}

/// async-graphql's answer as Magento's (and the GraphQL spec's): validation errors (no `path`)
/// get category `graphql` and no `data` key (nothing executed); a failed nullable field is
/// `null` in `data` (async-graphql leaves it out, and `data` null when no root field is left);
/// whole floats print as integers (`29`, §3.3).
fn magento_style(response: &mut Value) {
    let Some(object) = response.as_object_mut() else { return };
    let mut request_error = false;
    let mut paths = Vec::new();
    if let Some(errors) = object.get_mut("errors").and_then(Value::as_array_mut) {
        for error in errors.iter_mut() {
            match error.get("path").and_then(Value::as_array) {
                Some(path) => paths.push(path.clone()),
                None => {
                    request_error = true;
                    if error["extensions"]["category"].is_null() {
                        error["extensions"] = json!({ "category": "graphql" });
                    }
                }
            }
        }
    }
    if request_error && object.get("data").is_some_and(Value::is_null) {
        object.remove("data");
    } else if let Some(data) = object.get_mut("data") {
        if data.is_null() && !paths.is_empty() {
            *data = json!({});
        }
        for path in &paths {
            null_at(data, path);
        }
    }
    integers(response);
}

/// Puts `null` at `path` when the key is missing; objects on the way that async-graphql
/// turned into `null` (every selected field failed) become objects again.
fn null_at(data: &mut Value, path: &[Value]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = data;
    for (i, segment) in parents.iter().enumerate() {
        let object_next = matches!(path[i + 1], Value::String(_));
        let next = match (segment, current) {
            (Value::String(key), Value::Object(o)) => {
                let v = o.entry(key.clone()).or_insert(Value::Null);
                if v.is_null() && object_next {
                    *v = json!({});
                }
                Some(v)
            }
            (Value::Number(n), Value::Array(a)) => n.as_u64().and_then(|n| a.get_mut(n as usize)),
            _ => None,
        };
        match next {
            Some(v) if !v.is_null() => current = v,
            _ => return,
        }
    }
    if let (Value::String(key), Value::Object(o)) = (last, current) {
        o.entry(key.clone()).or_insert(Value::Null);
    }
}

fn integers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15) {
                *value = json!(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integers),
        Value::Object(o) => o.values_mut().for_each(integers),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The running fake
// ---------------------------------------------------------------------------------------

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A running fake catalog.
pub struct FakeCatalog {
    pub addr: SocketAddr,
    world: Shared,
    schema: CatalogSchema,
    server: Mutex<Option<Server>>,
}

impl FakeCatalog {
    /// Starts the fake with [`products`] on `127.0.0.1:0`.
    pub async fn start() -> FakeCatalog {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let world = Arc::new(Mutex::new(World {
            addr,
            products: products(),
            failures: VecDeque::new(),
            delay: None,
            broken_name: None,
            show_out_of_stock: true,
            seen: Vec::new(),
        }));
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription).data(world.clone()).finish();
        let fake = FakeCatalog { addr, world, schema, server: Mutex::new(None) };
        fake.serve(listener);
        fake
    }

    fn serve(&self, listener: TcpListener) {
        let app = Router::new()
            .route("/graphql", post(handle))
            .fallback(axum::routing::get(storefront))
            .with_state((self.schema.clone(), self.world.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        *self.server.lock().unwrap() = Some(Server { stop, task });
    }

    /// The GraphQL endpoint (`product_graphql_url`).
    pub fn endpoint(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// The storefront's base (`store_url`): the fake's own host.
    pub fn store_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A product's page on the storefront.
    pub fn product_url(&self, url_key: &str) -> String {
        format!("{}/{url_key}{URL_SUFFIX}", self.store_url())
    }

    /// A product image's URL (`file` under the media cache).
    pub fn image_url(&self, file: &str) -> String {
        format!("http://{}/media/catalog/product/cache/3f9a2c/{file}", self.addr)
    }

    /// The client configuration for this fake: Magento's query, the store URL,
    /// [`MAX_RESULTS`], no headers.
    pub fn config(&self) -> CatalogConfig {
        let mut config = CatalogConfig::new(url::Url::parse(&self.endpoint()).unwrap());
        config.store_url = Some(url::Url::parse(&self.store_url()).unwrap());
        config.max_results = MAX_RESULTS;
        config
    }

    /// A client of this fake.
    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.config(), Catalog::http_client(UpstreamPolicy::default())).unwrap()
    }

    /// The `client set` pairs that point a chat client at this fake.
    pub fn client_settings(&self) -> Vec<String> {
        vec![
            format!("product_graphql_url={}", self.endpoint()),
            format!("store_url={}", self.store_url()),
            format!("product_max_results={MAX_RESULTS}"),
        ]
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    // --- controls -----------------------------------------------------------------------

    /// Every request so far (failed ones included).
    pub fn seen(&self) -> Vec<Seen> {
        self.world().seen.clone()
    }

    /// How many requests came.
    pub fn requests(&self) -> usize {
        self.world().seen.len()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.world().seen.clear();
    }

    /// The next request gets `failure`.
    pub fn fail_next(&self, failure: Failure) {
        self.world().failures.push_back(failure);
    }

    /// The next `n` requests get `failure`.
    pub fn fail_next_n(&self, n: usize, failure: Failure) {
        self.world().failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Every request waits `delay` before it is answered (`None`: answers at once again).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.world().delay = delay;
    }

    /// The product `sku`'s `small_image.url` fails (a field error: partial data with `null`
    /// there and an error whose path goes through the item); `None` mends it.
    pub fn break_product(&self, sku: Option<&str>) {
        self.world().broken_name = sku.map(str::to_string);
    }

    /// Puts `p` first in the catalog, ahead of the ten (so it wins ties in relevance): e.g. a
    /// product whose name carries injected text. The contract's example answer no longer holds
    /// for this fake afterwards.
    pub fn feature(&self, p: FakeProduct) {
        self.world().products.insert(0, p);
    }

    /// Whether out-of-stock products are found ("Display Out of Stock Products", on by default
    /// here; Magento's own default is off, §3.2).
    pub fn show_out_of_stock(&self, show: bool) {
        self.world().show_out_of_stock = show;
    }

    /// Goes down: stops listening and closes idle connections (an answer in progress is cut
    /// after a second).
    pub async fn down(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(Server { stop, mut task }) = server {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(1), &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Comes back up on the same port.
    pub async fn up(&self) {
        if self.server.lock().unwrap().is_some() {
            return;
        }
        self.serve(crate::support::rebind(self.addr).await);
    }
}

/// The storefront beside the API, so links and images in a browser work: product pages
/// (`{url_key}.html`) and images under `/media/` (a 1×1 PNG).
async fn storefront(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    const PIXEL: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1,
        8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf,
        0xc0, 0xf0, 0x1f, 0, 0x05, 0, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae,
        0x42, 0x60, 0x82,
    ];
    let path = uri.path();
    if path.starts_with("/media/") {
        return ([("content-type", "image/png")], PIXEL).into_response();
    }
    let key = path.trim_start_matches('/').strip_suffix(URL_SUFFIX).unwrap_or_default();
    match products().into_iter().find(|p| p.url_key == key) {
        Some(p) => {
            axum::response::Html(format!("<!doctype html><title>{0}</title><h1>{0}</h1>", p.name)).into_response()
        }
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}
