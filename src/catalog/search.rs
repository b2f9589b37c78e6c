//! Product search through a shop's GraphQL catalog (`shared/contracts/graphql-magento.md`):
//! Magento 2's `products(search:, filter:, pageSize:, currentPage:)` query by default (§3), any
//! other schema through a [`ProductMapping`] of where the items and their fields are.
//!
//! The request follows §1–§2: a JSON POST with the visitor's words only in `variables` (never in
//! the query text), `Content-Type`/`Accept: application/json`, the configured extra headers
//! (`Store`, `Content-Currency`, …; they are secret: never in an error or a `Debug` output), and
//! no `Authorization` of ours. An empty search term is never sent (§3.1): [`Catalog::search`]
//! refuses it with [`CatalogError::EmptyTerm`] before any request — "no term" is not "no products".
//!
//! The answer is read as §1.3 and §5.2 say: a body that parses as a JSON object with `data` or
//! `errors` is interpreted whatever the HTTP status; GraphQL `errors` with HTTP 200 are errors
//! (classified by `extensions.category`, or the old top-level `category`, §5.1); partial data
//! drops only the items the error paths point at (§1.3); asking past the last page is an empty
//! page, not a failure (§3.1); only 502/503/504, timeouts and connection failures are
//! [retryable](CatalogError::retryable) (§5.2). No retries happen here: a chat answer should not
//! wait for them, the caller decides. Each request has its own time limit
//! ([`REQUEST_TIMEOUT`], connecting included) and each answer a size limit, so a slow or
//! babbling store can't hang or flood the caller.
//!
//! Links (§3.2): a product's page is `{store_url}/{url_key}{url_suffix}` (a null suffix is `""`),
//! else its relative `canonical_url` under `store_url`. Without a `store_url` the GraphQL
//! endpoint's origin stands in — right for most shops, wrong for headless ones (§3.2: the
//! GraphQL host need not be the storefront's), which must set it. Links and images are kept only
//! when they are http(s); Magento's placeholder image (`…/placeholder/…`, served when a product
//! has none) is dropped.
//!
//! Results are cached per [`Catalog`] (and its clones) for [`CACHE_TTL`], at most
//! [`CACHE_CAPACITY`] searches, keyed by the normalised term (whitespace collapsed, lower case),
//! the filters and the page: the same question within the minute costs the store nothing.
//! Errors are not cached.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use url::Url;

use crate::clients::UpstreamPolicy;
use crate::realtime::protocol::ProductView;

/// Magento 2's product search (§3.1, §3.3): the visitor's words as `$search`, optional
/// attribute filters (strings, §3.1), one page of `$pageSize`; the §3.2 fields a product card
/// needs, the regular price for a discount flag, and the relative `canonical_url` for products
/// without a `url_key`.
pub const DEFAULT_QUERY: &str = "query ProductSearch($search: String!, $filter: ProductAttributeFilterInput, \
$pageSize: Int!, $currentPage: Int!) { products(search: $search, filter: $filter, pageSize: $pageSize, \
currentPage: $currentPage) { total_count page_info { current_page page_size total_pages } items { __typename \
uid name sku url_key url_suffix canonical_url stock_status small_image { url label } price_range { \
minimum_price { regular_price { value currency } final_price { value currency } } } } } }";
/// How long connecting to the store may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one search may take, from connecting to the last byte: a visitor is waiting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// Products asked for when the configuration names no number (`product_max_results`).
pub const DEFAULT_MAX_RESULTS: u32 = 4;
/// The most products asked for in one request (recent Magento caps `pageSize`, §2).
pub const MAX_PAGE_SIZE: u32 = 50;
/// How long a search result is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How many searches one [`Catalog`] remembers; the least recently used goes first.
pub const CACHE_CAPACITY: usize = 256;
/// The longest search term sent, in characters (a search box's worth; the rest is cut).
pub const MAX_TERM_CHARS: usize = 128;
/// The largest answer read.
pub const MAX_BODY: usize = 2 << 20;
const REDACTED: &str = "[redacted]";

/// Why a search failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The configuration can't work (bad endpoint, store URL, header, mapping, or a query that
    /// lacks a variable it needs). Not retryable.
    #[error("the product search is misconfigured: {0}")]
    Config(String),
    /// The term is empty after trimming: nothing was sent (§3.1 forbids `search: ""`).
    #[error("no search term given")]
    EmptyTerm,
    /// A filter value that can't be sent (a negative or non-finite price, min above max).
    #[error("invalid product filter: {0}")]
    InvalidFilter(String),
    /// The store refused the query or its input: categories `graphql-input`, `graphql`
    /// (schema validation, syntax), `graphql-no-such-entity`, `graphql-already-exists`, or a
    /// 400/415 (§5.1, §5.2). The same request fails again: not retryable.
    #[error("the store refused the product query{}: {message}", category_note(.category))]
    Rejected { category: Option<String>, message: String },
    /// `graphql-authentication` / `graphql-authorization`, HTTP 401/403 (§5.1): the headers
    /// sent don't fit the store. Not retryable.
    #[error("the store refused the credentials (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// An unexpected exception in the store (category `internal` or none, e.g. HTTP 500
    /// `Internal server error`). The contract retries only 502/503/504 and timeouts (§5.2):
    /// not retryable.
    #[error("the store failed (HTTP {status}): {message}")]
    Internal { status: u16, message: String },
    /// 502/503/504 (maintenance, proxy), a timeout, a refused or dropped connection: retryable.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Another HTTP status without a GraphQL body (an HTML error page, a redirect elsewhere).
    #[error("the store answered HTTP {status} without a GraphQL body{detail}")]
    Http { status: u16, detail: String },
    /// A 2xx answer we can't read: not JSON, no `data`, no items where they should be, too big.
    #[error("the store's answer is unreadable: {0}")]
    Protocol(String),
}

fn category_note(category: &Option<String>) -> String {
    category.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
}

impl CatalogError {
    /// Whether the same search may succeed later (§5.2): 502/503/504, timeouts and connection
    /// failures only — never GraphQL errors with HTTP 200, nor 400/401/403/415.
    pub fn retryable(&self) -> bool {
        matches!(self, CatalogError::Unavailable(_))
    }

    fn map_text(self, f: impl Fn(String) -> String) -> CatalogError {
        match self {
            CatalogError::Config(t) => CatalogError::Config(f(t)),
            CatalogError::InvalidFilter(t) => CatalogError::InvalidFilter(f(t)),
            CatalogError::Rejected { category, message } => CatalogError::Rejected { category, message: f(message) },
            CatalogError::Unauthorized { status, message } => {
                CatalogError::Unauthorized { status, message: f(message) }
            }
            CatalogError::Internal { status, message } => CatalogError::Internal { status, message: f(message) },
            CatalogError::Unavailable(t) => CatalogError::Unavailable(f(t)),
            CatalogError::Http { status, detail } => CatalogError::Http { status, detail: f(detail) },
            CatalogError::Protocol(t) => CatalogError::Protocol(f(t)),
            CatalogError::EmptyTerm => CatalogError::EmptyTerm,
        }
    }
}

/// What narrows a search (§3.1 filter inputs; values go out as strings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// `filter: {price: {from: "…"}}`, inclusive.
    pub min_price: Option<f64>,
    /// `filter: {price: {to: "…"}}`, inclusive.
    pub max_price: Option<f64>,
    /// `filter: {category_uid: {eq: "…"}}`.
    pub category_uid: Option<String>,
}

impl Filters {
    /// Only products costing at most `price`.
    pub fn max_price(price: f64) -> Filters {
        Filters { max_price: Some(price), ..Filters::default() }
    }

    /// Whether nothing narrows the search.
    pub fn is_empty(&self) -> bool {
        self.min_price.is_none() && self.max_price.is_none() && self.category().is_none()
    }

    fn category(&self) -> Option<&str> {
        self.category_uid.as_deref().map(str::trim).filter(|c| !c.is_empty())
    }

    fn check(&self) -> Result<(), CatalogError> {
        for (what, price) in [("minimum", self.min_price), ("maximum", self.max_price)] {
            if let Some(p) = price
                && !(p.is_finite() && p >= 0.0)
            {
                return Err(CatalogError::InvalidFilter(format!("the {what} price {p} is not a price")));
            }
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price)
            && min > max
        {
            return Err(CatalogError::InvalidFilter(format!("the minimum price {min} is above the maximum {max}")));
        }
        Ok(())
    }

    /// The `$filter` variable (`ProductAttributeFilterInput`), `None` when nothing filters.
    pub fn variable(&self) -> Option<Value> {
        let mut filter = Map::new();
        let mut price = Map::new();
        if let Some(min) = self.min_price {
            price.insert("from".into(), json!(price_text(min)));
        }
        if let Some(max) = self.max_price {
            price.insert("to".into(), json!(price_text(max)));
        }
        if !price.is_empty() {
            filter.insert("price".into(), Value::Object(price));
        }
        if let Some(category) = self.category() {
            filter.insert("category_uid".into(), json!({ "eq": category }));
        }
        (!filter.is_empty()).then_some(Value::Object(filter))
    }

    fn key(&self) -> String {
        let p = |v: Option<f64>| v.map(price_text).unwrap_or_default();
        format!("{}|{}|{}", p(self.min_price), p(self.max_price), self.category().unwrap_or_default())
    }
}

/// A price as Magento's filters take it: a string, `40` rather than `40.0`.
fn price_text(price: f64) -> String {
    let rounded = (price * 100.0).round() / 100.0;
    format!("{rounded}")
}

/// Where products and their fields are in a non-Magento answer: dot-separated paths, `items`
/// from `data`, the rest from each item. A field left out keeps Magento's path (the link, when
/// `url` is left out, is built from `url_key`/`url_suffix`/`canonical_url`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductMapping {
    pub items: Option<String>,
    pub name: Option<String>,
    pub sku: Option<String>,
    /// An absolute link, or a path under the store URL.
    pub url: Option<String>,
    pub price: Option<String>,
    pub regular_price: Option<String>,
    pub currency: Option<String>,
    /// An absolute image URL, or a path under the store URL.
    pub image: Option<String>,
    /// A boolean, a quantity, or a status like `IN_STOCK` / `OUT_OF_STOCK`.
    pub stock: Option<String>,
}

const MAPPING_KEYS: &str = "items, name, sku, url, price, regular_price, currency, image, stock";

impl ProductMapping {
    /// Parses `key=path,key=path` (keys: items, name, sku, url, price, regular_price,
    /// currency, image, stock), e.g. `items=search.hits,name=title,price=price.amount`.
    pub fn parse(text: &str) -> Result<ProductMapping, String> {
        let mut m = ProductMapping::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, path) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not key=field"))?;
            let path = Some(path.trim().to_string()).filter(|p| !p.is_empty());
            let slot = match key.trim() {
                "items" => &mut m.items,
                "name" => &mut m.name,
                "sku" => &mut m.sku,
                "url" => &mut m.url,
                "price" => &mut m.price,
                "regular_price" => &mut m.regular_price,
                "currency" => &mut m.currency,
                "image" => &mut m.image,
                "stock" => &mut m.stock,
                other => return Err(format!("unknown key '{other}' ({MAPPING_KEYS})")),
            };
            *slot = path;
        }
        Ok(m)
    }
}

/// The paths actually read: the mapping over Magento's.
#[derive(Debug, Clone)]
struct Paths {
    items: Vec<String>,
    name: String,
    sku: String,
    url: Option<String>,
    price: String,
    regular_price: String,
    currency: String,
    image: String,
    stock: String,
}

impl Paths {
    fn new(m: &ProductMapping) -> Paths {
        let or = |p: &Option<String>, default: &str| p.clone().unwrap_or_else(|| default.to_string());
        Paths {
            items: or(&m.items, "products.items").split('.').map(str::to_string).collect(),
            name: or(&m.name, "name"),
            sku: or(&m.sku, "sku"),
            url: m.url.clone(),
            price: or(&m.price, "price_range.minimum_price.final_price.value"),
            regular_price: or(&m.regular_price, "price_range.minimum_price.regular_price.value"),
            currency: or(&m.currency, "price_range.minimum_price.final_price.currency"),
            image: or(&m.image, "small_image.url"),
            stock: or(&m.stock, "stock_status"),
        }
    }
}

/// What a [`Catalog`] is built from (the client's `product_*` settings and `store_url`).
#[derive(Clone)]
pub struct CatalogConfig {
    /// `product_graphql_url`: the full GraphQL URL (a store-code prefix like `/default/graphql`
    /// is kept, §2).
    pub endpoint: Url,
    /// `product_query`: [`DEFAULT_QUERY`] unless the shop's schema needs another. It must
    /// declare `$search`; `$pageSize`, `$currentPage` and `$filter` are sent when declared.
    pub query: String,
    /// Where the products are in a non-Magento answer; `None` reads Magento's shape.
    pub mapping: Option<ProductMapping>,
    /// `store_url`: the storefront's base for links given as paths; `None` uses the endpoint's
    /// origin (wrong for headless shops).
    pub store_url: Option<Url>,
    /// `product_headers`: sent with every request (e.g. `Store: de_de`). Secret.
    pub headers: Vec<(String, String)>,
    /// `product_max_results`: products asked for (`pageSize`), 1 to [`MAX_PAGE_SIZE`].
    pub max_results: u32,
}

impl CatalogConfig {
    /// Magento's query at `endpoint`, no mapping, no store URL, no headers,
    /// [`DEFAULT_MAX_RESULTS`].
    pub fn new(endpoint: Url) -> CatalogConfig {
        CatalogConfig {
            endpoint,
            query: DEFAULT_QUERY.into(),
            mapping: None,
            store_url: None,
            headers: Vec::new(),
            max_results: DEFAULT_MAX_RESULTS,
        }
    }
}

impl fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("endpoint", &shown_url(&self.endpoint))
            .field("query_chars", &self.query.len())
            .field("mapping", &self.mapping)
            .field("store_url", &self.store_url.as_ref().map(shown_url))
            .field("headers", &redacted_headers(self.headers.iter().map(|(n, _)| n.as_str())))
            .field("max_results", &self.max_results)
            .finish()
    }
}

/// A URL for `Debug`: without its query, which may carry credentials.
fn shown_url(url: &Url) -> String {
    let mut url = url.clone();
    if url.query().is_some() {
        url.set_query(Some(REDACTED));
    }
    url.set_fragment(None);
    url.to_string()
}

fn redacted_headers<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names.map(|n| format!("{n}: {REDACTED}")).collect()
}

/// A product found, ready for a card.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub name: String,
    pub sku: Option<String>,
    /// The product page: absolute, http(s).
    pub url: String,
    /// What the customer pays (`final_price`, §3.2), in `currency`.
    pub price: Option<f64>,
    /// The list price (`regular_price`), when the store gives one.
    pub regular_price: Option<f64>,
    /// ISO 4217, e.g. `EUR`.
    pub currency: Option<String>,
    /// A small image: absolute, http(s), never Magento's placeholder.
    pub image_url: Option<String>,
    pub in_stock: Option<bool>,
}

impl Product {
    /// Whether the customer pays less than the list price.
    pub fn discounted(&self) -> bool {
        matches!((self.price, self.regular_price), (Some(p), Some(r)) if p + 0.005 < r)
    }

    /// The card the visitor receives.
    pub fn to_view(&self) -> ProductView {
        ProductView::from(self)
    }
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> ProductView {
        ProductView {
            name: p.name.clone(),
            url: p.url.clone(),
            price: p.price,
            currency: p.currency.clone(),
            image_url: p.image_url.clone(),
            in_stock: p.in_stock,
        }
    }
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub products: Vec<Product>,
    /// The page asked for (1-based).
    pub current_page: u32,
    /// `page_info.total_pages`, when the answer has it (past the last page: what the store's
    /// error message says, if it says).
    pub total_pages: Option<u32>,
    /// `total_count`, when the answer has it.
    pub total_count: Option<u64>,
}

/// Whether a search came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

/// The cache's counters since the [`Catalog`] was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Searches held now (expired ones included until they are looked up or pushed out).
    pub entries: usize,
}

type Key = (String, String, u32);

struct Slot {
    page: Arc<Page>,
    stored: Instant,
    used: u64,
}

struct Cache {
    ttl: Duration,
    capacity: usize,
    slots: Mutex<HashMap<Key, Slot>>,
    clock: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    fn new(ttl: Duration, capacity: usize) -> Cache {
        Cache {
            ttl,
            capacity,
            slots: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fresh page under `key`, counted as a hit or a miss.
    fn get(&self, key: &Key) -> Option<Arc<Page>> {
        let found = self.peek(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The fresh page under `key`, not counted (a probe that may be followed by a `get`).
    fn peek(&self, key: &Key) -> Option<Arc<Page>> {
        let mut slots = self.slots();
        match slots.get_mut(key) {
            Some(slot) if slot.stored.elapsed() < self.ttl => {
                slot.used = self.clock.fetch_add(1, Ordering::Relaxed);
                Some(slot.page.clone())
            }
            Some(_) => {
                slots.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: Key, page: Arc<Page>) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let mut slots = self.slots();
        if slots.len() >= self.capacity && !slots.contains_key(&key) {
            slots.retain(|_, s| s.stored.elapsed() < self.ttl);
            while slots.len() >= self.capacity {
                let oldest = slots.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => slots.remove(&k),
                    None => break,
                };
            }
        }
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        slots.insert(key, Slot { page, stored: Instant::now(), used });
    }
}

/// One shop's product search. Clones share the connection pool and the cache.
#[derive(Clone)]
pub struct Catalog {
    endpoint: Url,
    query: Arc<str>,
    operation: Option<String>,
    takes_filter: bool,
    takes_page_size: bool,
    takes_current_page: bool,
    paths: Arc<Paths>,
    /// Magento's link rules apply (no `url` mapping).
    magento_links: bool,
    store_base: String,
    headers: HeaderMap,
    secrets: Arc<Vec<String>>,
    page_size: u32,
    http: reqwest::Client,
    timeout: Duration,
    cache: Arc<Cache>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("endpoint", &shown_url(&self.endpoint))
            .field("store_base", &self.store_base)
            .field("headers", &redacted_headers(self.headers.keys().map(HeaderName::as_str)))
            .field("page_size", &self.page_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether `query` declares the variable `$var` (`$var:` with a type).
fn declares(query: &str, var: &str) -> bool {
    let needle = format!("${var}");
    query.match_indices(&needle).any(|(i, _)| {
        let rest = &query[i + needle.len()..];
        !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') && rest.trim_start().starts_with(':')
    })
}

/// The name of the document's operation (`query Name(…)`), sent as `operationName`.
fn operation_name(query: &str) -> Option<String> {
    let rest = query.trim_start().strip_prefix("query")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let name: String = rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

fn http_url(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.host().is_some() && !url.cannot_be_a_base()
}

/// The visitor's words as sent: control characters dropped, whitespace collapsed, at most
/// [`MAX_TERM_CHARS`].
pub fn normalize_term(term: &str) -> String {
    let cleaned: String = term.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let joined = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.chars().take(MAX_TERM_CHARS).collect::<String>().trim_end().to_string()
}

impl Catalog {
    /// A catalog client for `config`, sending over `http` (see [`Catalog::http_client`]).
    pub fn new(config: CatalogConfig, http: reqwest::Client) -> Result<Catalog, CatalogError> {
        if !http_url(&config.endpoint) {
            return Err(CatalogError::Config("the product GraphQL URL must be an http(s) URL".into()));
        }
        let query = if config.query.trim().is_empty() { DEFAULT_QUERY.to_string() } else { config.query };
        if !declares(&query, "search") {
            return Err(CatalogError::Config("the product query must declare $search".into()));
        }
        let store_base = match &config.store_url {
            Some(url) if http_url(url) => {
                let mut url = url.clone();
                url.set_query(None);
                url.set_fragment(None);
                url.as_str().trim_end_matches('/').to_string()
            }
            Some(_) => return Err(CatalogError::Config("the store URL must be an http(s) URL".into())),
            None => config.endpoint.origin().ascii_serialization(),
        };
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| CatalogError::Config(format!("'{}' is not a header name", name.trim())))?;
            let value = value.trim();
            let parsed = HeaderValue::from_str(value)
                .map_err(|_| CatalogError::Config(format!("the value of header {header} is not valid in a header")))?;
            headers.insert(header, parsed);
            if value.len() >= 3 {
                secrets.push(value.to_string());
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mapping = config.mapping.unwrap_or_default();
        Ok(Catalog {
            endpoint: config.endpoint,
            operation: operation_name(&query),
            takes_filter: declares(&query, "filter"),
            takes_page_size: declares(&query, "pageSize"),
            takes_current_page: declares(&query, "currentPage"),
            query: query.into(),
            magento_links: mapping.url.is_none(),
            paths: Arc::new(Paths::new(&mapping)),
            store_base,
            headers,
            secrets: Arc::new(secrets),
            page_size: config.max_results.clamp(1, MAX_PAGE_SIZE),
            http,
            timeout: REQUEST_TIMEOUT,
            cache: Arc::new(Cache::new(CACHE_TTL, CACHE_CAPACITY)),
        })
    }

    /// The outbound client with the catalog's connect timeout (each request is limited to
    /// [`REQUEST_TIMEOUT`] on top). One is enough for every shop.
    pub fn http_client(policy: UpstreamPolicy) -> reqwest::Client {
        crate::outbound::streaming_client(policy, CONNECT_TIMEOUT)
    }

    /// The same client with another limit per request (tests use short ones).
    pub fn with_timeout(mut self, timeout: Duration) -> Catalog {
        self.timeout = timeout;
        self
    }

    /// The same client with a fresh cache of `capacity` searches kept for `ttl` (0 turns it
    /// off).
    pub fn with_cache(mut self, ttl: Duration, capacity: usize) -> Catalog {
        self.cache = Arc::new(Cache::new(ttl, capacity));
        self
    }

    /// Products asked for per search (`pageSize`).
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The base product links are built on (`store_url`, else the endpoint's origin).
    pub fn store_base(&self) -> &str {
        &self.store_base
    }

    /// The first page of products matching `term`, best first. An empty term (after trimming)
    /// is [`CatalogError::EmptyTerm`], and nothing is sent.
    pub async fn search(&self, term: &str, filters: &Filters) -> Result<Vec<Product>, CatalogError> {
        Ok(self.search_with_lookup(term, filters).await?.0)
    }

    /// [`Catalog::search`], saying whether the cache answered.
    pub async fn search_with_lookup(
        &self,
        term: &str,
        filters: &Filters,
    ) -> Result<(Vec<Product>, Lookup), CatalogError> {
        let (page, lookup, _) = self.page_with_lookup(term, filters, 1).await?;
        Ok((page.products.clone(), lookup))
    }

    /// [`Catalog::search`], and how long the store itself took (`None`: a cache hit) — what
    /// the latency histogram subtracts to see our own share.
    pub async fn search_timed(
        &self,
        term: &str,
        filters: &Filters,
    ) -> Result<(Vec<Product>, Option<Duration>), CatalogError> {
        let (page, _, store) = self.page_with_lookup(term, filters, 1).await?;
        Ok((page.products.clone(), store))
    }

    /// The first page of [`Catalog::search`] if the cache holds it, without waiting: an answer
    /// that needs no request can be stored with the question in one write. `None`: ask the
    /// store (an invalid search also says `None`; the full search reports why).
    pub fn search_cached(&self, term: &str, filters: &Filters) -> Option<Vec<Product>> {
        let (_, key) = Self::key(term, filters, 1).ok()?;
        let page = self.cache.peek(&key)?;
        self.cache.hits.fetch_add(1, Ordering::Relaxed);
        Some(page.products.clone())
    }

    /// The cache key of a search, once the search is known to be valid.
    fn key(term: &str, filters: &Filters, page: u32) -> Result<(String, Key), CatalogError> {
        let term = normalize_term(term);
        if term.is_empty() {
            return Err(CatalogError::EmptyTerm);
        }
        filters.check()?;
        if page == 0 {
            return Err(CatalogError::InvalidFilter("pages count from 1".into()));
        }
        let key = (term.to_lowercase(), filters.key(), page);
        Ok((term, key))
    }

    /// Page `page` (1-based) of the search. Past the last page the answer is an empty page
    /// (Magento's `currentPage value … greater than the … page(s) available.`, §3.1).
    pub async fn search_page(&self, term: &str, filters: &Filters, page: u32) -> Result<Page, CatalogError> {
        Ok(self.page_with_lookup(term, filters, page).await?.0.as_ref().clone())
    }

    /// The cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.cache.hits.load(Ordering::Relaxed),
            misses: self.cache.misses.load(Ordering::Relaxed),
            entries: self.cache.slots().len(),
        }
    }

    /// Forgets every cached search.
    pub fn clear_cache(&self) {
        self.cache.slots().clear();
    }

    async fn page_with_lookup(
        &self,
        term: &str,
        filters: &Filters,
        page: u32,
    ) -> Result<(Arc<Page>, Lookup, Option<Duration>), CatalogError> {
        let (term, key) = Self::key(term, filters, page)?;
        if let Some(found) = self.cache.get(&key) {
            return Ok((found, Lookup::Hit, None));
        }
        let variables = self.variables(&term, filters, page)?;
        let asked = std::time::Instant::now();
        let result = self.fetch(&variables, page).await.map_err(|e| self.scrub(e))?;
        let store = asked.elapsed();
        let result = Arc::new(result);
        self.cache.put(key, result.clone());
        Ok((result, Lookup::Miss, Some(store)))
    }

    fn variables(&self, term: &str, filters: &Filters, page: u32) -> Result<Value, CatalogError> {
        let mut variables = Map::new();
        variables.insert("search".into(), json!(term));
        if self.takes_page_size {
            variables.insert("pageSize".into(), json!(self.page_size));
        }
        if self.takes_current_page {
            variables.insert("currentPage".into(), json!(page));
        } else if page > 1 {
            return Err(CatalogError::Config("the product query declares no $currentPage: it has one page".into()));
        }
        if let Some(filter) = filters.variable() {
            if !self.takes_filter {
                return Err(CatalogError::Config("the product query declares no $filter: it can't filter".into()));
            }
            variables.insert("filter".into(), filter);
        }
        Ok(Value::Object(variables))
    }

    /// The request body for `variables` (§1.1).
    fn body(&self, variables: &Value) -> Value {
        let mut body = json!({ "query": &*self.query, "variables": variables });
        if let Some(name) = &self.operation {
            body["operationName"] = json!(name);
        }
        body
    }

    async fn fetch(&self, variables: &Value, page: u32) -> Result<Page, CatalogError> {
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .json(&self.body(variables));
        // A configured Content-Type must not override JSON (Magento answers 415, §2).
        if self.headers.contains_key("content-type") {
            request = request.header("content-type", "application/json");
        }
        let mut response = request.send().await.map_err(|e| transport(e, self.timeout))?;
        let status = response.status().as_u16();
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(e, self.timeout))? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        self.read(status, &bytes, page)
    }

    /// Reads an answer (§1.3, §5.2).
    fn read(&self, status: u16, body: &[u8], page: u32) -> Result<Page, CatalogError> {
        let object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) if o.contains_key("data") || o.contains_key("errors") => o,
            parsed => {
                let detail = if parsed.is_ok() { String::new() } else { format!(": {}", snippet(body)) };
                return Err(match status {
                    502..=504 => CatalogError::Unavailable(format!("HTTP {status}{detail}")),
                    200..=299 => CatalogError::Protocol(match parsed {
                        Ok(_) => "the JSON has neither data nor errors".into(),
                        Err(e) => format!("not JSON ({e}){detail}"),
                    }),
                    _ => CatalogError::Http { status, detail },
                });
            }
        };
        let errors: &[Value] = object.get("errors").and_then(Value::as_array).map_or(&[], Vec::as_slice);
        let data = object.get("data").filter(|d| d.is_object());
        let items = data.and_then(|d| at_path(d, &self.paths.items)).filter(|i| i.is_array());
        if errors.is_empty() {
            if !(200..300).contains(&status) {
                return Err(CatalogError::Http { status, detail: " (data without errors)".into() });
            }
            let Some(data) = data else {
                return Err(CatalogError::Protocol("data is missing or not an object".into()));
            };
            let Some(items) = items else {
                return Err(CatalogError::Protocol(format!("no list at {}", self.paths.items.join("."))));
            };
            return Ok(self.page(data, items, &[], page));
        }
        let error = classify(status, errors);
        if past_last_page(&error) {
            let total_pages = errors.iter().filter_map(|e| e["message"].as_str()).find_map(pages_available);
            return Ok(Page { products: Vec::new(), current_page: page, total_pages, total_count: None });
        }
        match (data, items, &error) {
            // Partial data (§1.3): the items the errors point at go, the rest stays.
            (Some(data), Some(items), CatalogError::Rejected { .. } | CatalogError::Internal { .. })
                if (200..300).contains(&status) =>
            {
                let broken: Vec<usize> = errors.iter().filter_map(|e| self.item_index(e)).collect();
                tracing::warn!(errors = %describe(errors), "the catalog answered partial data");
                Ok(self.page(data, items, &broken, page))
            }
            _ => Err(error),
        }
    }

    /// The item an error's `path` points into (`products.items.N…`).
    fn item_index(&self, error: &Value) -> Option<usize> {
        let path = error.get("path")?.as_array()?;
        let prefix = &self.paths.items;
        if path.len() <= prefix.len() || !prefix.iter().zip(path).all(|(p, v)| v.as_str() == Some(p)) {
            return None;
        }
        path[prefix.len()].as_u64().map(|i| i as usize)
    }

    fn page(&self, data: &Value, items: &Value, broken: &[usize], page: u32) -> Page {
        let products = items
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(i, _)| !broken.contains(i))
            .filter_map(|(_, item)| self.product(item))
            .collect();
        let parent = &self.paths.items[..self.paths.items.len() - 1];
        let container = at_path(data, parent);
        let number = |path: &[&str]| container.and_then(|c| path.iter().try_fold(c, |v, k| v.get(*k))?.as_u64());
        Page {
            products,
            current_page: page,
            total_pages: number(&["page_info", "total_pages"]).map(|n| n.min(u32::MAX as u64) as u32),
            total_count: number(&["total_count"]),
        }
    }

    /// One item as a product; `None` without a name or a usable link.
    fn product(&self, item: &Value) -> Option<Product> {
        if !item.is_object() {
            return None;
        }
        let p = &self.paths;
        let name = text(field(item, &p.name)?)?;
        let url = if self.magento_links {
            self.magento_link(item)?
        } else {
            self.link(&text(field(item, p.url.as_deref()?)?)?)?
        };
        let image_url = field(item, &p.image).and_then(text).and_then(|u| self.link(&u)).filter(|u| !is_placeholder(u));
        Some(Product {
            name,
            sku: field(item, &p.sku).and_then(text),
            url,
            price: field(item, &p.price).and_then(number),
            regular_price: field(item, &p.regular_price).and_then(number),
            currency: field(item, &p.currency).and_then(text),
            image_url,
            in_stock: field(item, &p.stock).and_then(stock),
        })
    }

    /// `{store}/{url_key}{url_suffix}`, else `{store}/{canonical_url}` (§3.2).
    fn magento_link(&self, item: &Value) -> Option<String> {
        if let Some(key) = item.get("url_key").and_then(text) {
            let suffix = item.get("url_suffix").and_then(Value::as_str).unwrap_or("").trim();
            return self.link(&format!("{}{suffix}", key.trim_matches('/')));
        }
        self.link(&item.get("canonical_url").and_then(text)?)
    }

    /// `href` as an absolute http(s) URL: as it is, or under the store's base.
    fn link(&self, href: &str) -> Option<String> {
        let href = href.trim();
        if href.is_empty() || href.starts_with("//") {
            return None;
        }
        let url = match Url::parse(href) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                Url::parse(&format!("{}/{}", self.store_base, href.trim_start_matches('/'))).ok()?
            }
            Err(_) => return None,
        };
        http_url(&url).then(|| url.to_string())
    }

    fn scrub(&self, e: CatalogError) -> CatalogError {
        e.map_text(|t| self.secrets.iter().fold(t, |t, s| t.replace(s.as_str(), REDACTED)))
    }
}

fn at_path<'v, S: AsRef<str>>(value: &'v Value, path: &[S]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.get(key.as_ref()))
}

fn field<'v>(item: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(item, |v, key| v.get(key)).filter(|v| !v.is_null())
}

fn text(value: &Value) -> Option<String> {
    let t = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!t.is_empty()).then_some(t)
}

/// A price from any JSON number (`29` and `29.0` alike, §3.3) or a numeric string.
fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        Value::Object(o) => return o.get("value").and_then(number),
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// `IN_STOCK` / `OUT_OF_STOCK` (§3.2), a boolean, or a quantity.
fn stock(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|q| q > 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "in_stock" | "instock" | "available" | "true" | "yes" => Some(true),
            "out_of_stock" | "outofstock" | "sold_out" | "unavailable" | "false" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Magento's stand-in image for products without one (§3.2: "placeholder image if none").
fn is_placeholder(url: &str) -> bool {
    url.contains("/placeholder/")
}

fn too_big() -> CatalogError {
    CatalogError::Protocol(format!("the answer is larger than {} MiB", MAX_BODY >> 20))
}

fn transport(e: reqwest::Error, timeout: Duration) -> CatalogError {
    let e = e.without_url();
    if e.is_timeout() {
        return CatalogError::Unavailable(format!("no answer within {}s", timeout.as_secs_f32()));
    }
    if e.is_redirect() {
        return CatalogError::Http { status: 302, detail: format!(": {}", crate::outbound::error_text(&e)) };
    }
    let reason = crate::outbound::error_chain(&e);
    CatalogError::Unavailable(reason)
}

/// An error's category: `extensions.category`, or the top-level `category` of old servers
/// (§1.2).
fn category(error: &Value) -> Option<&str> {
    error["extensions"]["category"].as_str().or_else(|| error["category"].as_str()).filter(|c| !c.is_empty())
}

/// The errors' messages, with their paths, cut short.
fn describe(errors: &[Value]) -> String {
    let text = crate::knowledge::graphql::describe_errors(errors, 3);
    text.chars().filter(|c| !c.is_control()).take(400).collect()
}

/// The error GraphQL `errors` mean, with the HTTP status they came with (§5.1, §5.2).
pub fn classify(status: u16, errors: &[Value]) -> CatalogError {
    let message = describe(errors);
    let categories: Vec<&str> = errors.iter().filter_map(category).collect();
    if status == 401
        || status == 403
        || categories.iter().any(|c| matches!(*c, "graphql-authentication" | "graphql-authorization"))
    {
        let status = if matches!(status, 401 | 403) {
            status
        } else if categories.contains(&"graphql-authentication") {
            401
        } else {
            403
        };
        return CatalogError::Unauthorized { status, message };
    }
    if matches!(status, 502..=504) {
        return CatalogError::Unavailable(format!("HTTP {status}: {message}"));
    }
    match categories.first().copied() {
        Some(c @ ("graphql-input" | "graphql" | "graphql-no-such-entity" | "graphql-already-exists")) => {
            CatalogError::Rejected { category: Some(c.to_string()), message }
        }
        None | Some("internal") if !matches!(status, 400 | 405 | 406 | 413 | 415 | 422) => {
            CatalogError::Internal { status, message }
        }
        other => CatalogError::Rejected { category: other.map(str::to_string), message },
    }
}

/// Whether `error` is Magento's "past the last page" (§3.1).
fn past_last_page(error: &CatalogError) -> bool {
    matches!(error, CatalogError::Rejected { message, .. }
        if message.starts_with("currentPage value") && message.contains("specified is greater than the"))
}

/// `m` in `currentPage value n specified is greater than the m page(s) available.`
fn pages_available(message: &str) -> Option<u32> {
    let rest = message.split("greater than the ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn snippet(body: &[u8]) -> String {
    crate::outbound::body_snippet(body, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's §3.3 response, literally.
    const EXAMPLE: &str = include_str!("../../tests/data/magento-products-example.json");

    const EMPTY: &str = r#"{ "data": { "products": { "total_count": 0, "page_info": { "current_page": 1, "page_size": 3, "total_pages": 0 }, "items": [] } } }"#;

    const MISSING_SEARCH: &str = r#"{
  "errors": [
    {
      "message": "'search' or 'filter' input argument is required.",
      "locations": [ { "line": 1, "column": 3 } ],
      "path": [ "products" ],
      "extensions": { "category": "graphql-input" }
    }
  ],
  "data": { "products": null }
}"#;

    const UNKNOWN_FIELD: &str = r#"{
  "errors": [
    {
      "message": "Cannot query field \"colour\" on type \"ProductInterface\".",
      "locations": [ { "line": 1, "column": 112 } ],
      "extensions": { "category": "graphql" }
    }
  ]
}"#;

    fn config() -> CatalogConfig {
        let mut c = CatalogConfig::new(Url::parse("https://api.shop.example.com/graphql").unwrap());
        c.store_url = Some(Url::parse("https://shop.example.com/de/").unwrap());
        c.headers = vec![("Store".into(), "de_de".into()), ("X-Api-Key".into(), "s3cr3t-k3y".into())];
        c
    }

    fn catalog(config: CatalogConfig) -> Catalog {
        Catalog::new(config, Catalog::http_client(UpstreamPolicy::default())).unwrap()
    }

    #[test]
    fn reads_the_contracts_example() {
        let c = catalog(config());
        let page = c.read(200, EXAMPLE.as_bytes(), 1).unwrap();
        assert_eq!((page.total_count, page.total_pages, page.current_page), (Some(4), Some(2), 1));
        let first = &page.products[0];
        assert_eq!(
            first,
            &Product {
                name: "Kettle Classic Red".into(),
                sku: Some("KT-CL-RED".into()),
                url: "https://shop.example.com/de/kettle-classic-red.html".into(),
                price: Some(34.9),
                regular_price: Some(39.9),
                currency: Some("EUR".into()),
                image_url: Some("https://shop.example.com/media/catalog/product/cache/3f9a2c/k/t/kt-cl-red.jpg".into()),
                in_stock: Some(true),
            }
        );
        assert!(first.discounted());
        let retro = &page.products[1];
        assert_eq!(retro.price, Some(29.0), "an integer-looking float");
        assert_eq!(retro.image_url, None, "the placeholder image is dropped");
        assert!(!retro.discounted());
        let mini = &page.products[2];
        assert_eq!(mini.in_stock, Some(false));
        assert!(mini.image_url.is_some(), "a null label does not matter");

        let view = first.to_view();
        assert_eq!(view.name, "Kettle Classic Red");
        assert_eq!(view.url, first.url);
        assert_eq!((view.price, view.currency.as_deref(), view.in_stock), (Some(34.9), Some("EUR"), Some(true)));
        assert_eq!(ProductView::from(mini).image_url, mini.image_url);

        let empty = c.read(200, EMPTY.as_bytes(), 1).unwrap();
        assert_eq!(empty, Page { products: Vec::new(), current_page: 1, total_pages: Some(0), total_count: Some(0) });
    }

    #[test]
    fn errors_of_the_contract() {
        let c = catalog(config());
        let e = c.read(200, MISSING_SEARCH.as_bytes(), 1).unwrap_err();
        assert_eq!(
            e,
            CatalogError::Rejected {
                category: Some("graphql-input".into()),
                message: "'search' or 'filter' input argument is required. (at products)".into()
            }
        );
        assert!(!e.retryable());
        let e = c.read(200, UNKNOWN_FIELD.as_bytes(), 1).unwrap_err();
        assert!(matches!(&e, CatalogError::Rejected { category: Some(c), .. } if c == "graphql"), "{e:?}");
        assert!(e.to_string().contains("Cannot query field \"colour\""), "{e}");

        // The old top-level category, and status codes of §5.2.
        let store = r#"{"errors":[{"message":"Requested store is not found","category":"graphql-input"}]}"#;
        for status in [200, 500] {
            let e = c.read(status, store.as_bytes(), 1).unwrap_err();
            assert!(matches!(&e, CatalogError::Rejected { message, .. } if message == "Requested store is not found"));
        }
        let auth = r#"{"errors":[{"message":"The request is allowed for logged in customer","extensions":{"category":"graphql-authentication"}}]}"#;
        let e = c.read(401, auth.as_bytes(), 1).unwrap_err();
        assert!(matches!(e, CatalogError::Unauthorized { status: 401, .. }) && !e.retryable());
        let forbidden = r#"{"errors":[{"message":"The current customer isn't authorized.","extensions":{"category":"graphql-authorization"}}],"data":{"products":null}}"#;
        assert!(matches!(c.read(403, forbidden.as_bytes(), 1), Err(CatalogError::Unauthorized { status: 403, .. })));
        let internal = r#"{"errors":[{"message":"Internal server error","extensions":{"category":"internal"}}]}"#;
        let e = c.read(500, internal.as_bytes(), 1).unwrap_err();
        assert_eq!(e, CatalogError::Internal { status: 500, message: "Internal server error".into() });
        assert!(!e.retryable(), "the contract retries only 502/503/504 and timeouts");
        let syntax = r#"{"errors":[{"message":"Syntax Error: Expected Name, found <EOF>","locations":[{"line":1,"column":9}],"extensions":{"category":"graphql"}}]}"#;
        assert!(matches!(c.read(400, syntax.as_bytes(), 1), Err(CatalogError::Rejected { .. })));
        let media = r#"{"errors":[{"message":"Request content type must be application/json"}]}"#;
        let e = c.read(415, media.as_bytes(), 1).unwrap_err();
        assert!(matches!(&e, CatalogError::Rejected { category: None, .. }) && !e.retryable(), "{e:?}");

        let e = c.read(503, b"<html><body>Service Temporarily Unavailable</body></html>", 1).unwrap_err();
        assert!(e.retryable() && e.to_string().contains("503"), "{e}");
        for status in [502, 504] {
            assert!(c.read(status, b"", 1).unwrap_err().retryable());
        }
        let e = c.read(500, b"<html>Fatal error</html>", 1).unwrap_err();
        assert!(matches!(e, CatalogError::Http { status: 500, .. }) && !e.retryable());
        assert!(matches!(c.read(200, b"not json", 1), Err(CatalogError::Protocol(_))));
        assert!(matches!(c.read(200, b"{\"ok\":true}", 1), Err(CatalogError::Protocol(_))));
        assert!(matches!(c.read(200, b"{\"data\":{\"other\":1}}", 1), Err(CatalogError::Protocol(_))));
    }

    #[test]
    fn past_the_last_page_is_an_empty_page() {
        let c = catalog(config());
        let body = r#"{"errors":[{"message":"currentPage value 4 specified is greater than the 2 page(s) available.","path":["products"],"extensions":{"category":"graphql-input"}}],"data":{"products":null}}"#;
        let page = c.read(200, body.as_bytes(), 4).unwrap();
        assert_eq!(page, Page { products: Vec::new(), current_page: 4, total_pages: Some(2), total_count: None });
        let old = r#"{"errors":[{"message":"currentPage value 3 specified is greater than the number of pages available.","extensions":{"category":"graphql-input"}}]}"#;
        assert_eq!(c.read(200, old.as_bytes(), 3).unwrap().total_pages, None);
    }

    #[test]
    fn partial_data_drops_only_the_failed_items() {
        let c = catalog(config());
        let mut body: Value = serde_json::from_str(EXAMPLE).unwrap();
        body["data"]["products"]["items"][1]["name"] = Value::Null;
        body["data"]["products"]["items"][2] = Value::Null;
        body["errors"] = json!([
            {"message": "Internal error while loading the name.", "path": ["products", "items", 1, "name"], "extensions": {"category": "internal"}},
            {"message": "Boom", "path": ["products", "items", 2], "extensions": {"category": "internal"}}
        ]);
        let page = c.read(200, body.to_string().as_bytes(), 1).unwrap();
        let names: Vec<&str> = page.products.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Kettle Classic Red"]);
        // An error elsewhere keeps every item; data null at the root is an error.
        let mut body: Value = serde_json::from_str(EXAMPLE).unwrap();
        body["errors"] = json!([{"message": "x", "path": ["products", "aggregations"]}]);
        assert_eq!(c.read(200, body.to_string().as_bytes(), 1).unwrap().products.len(), 3);
        let body = r#"{"errors":[{"message":"Internal server error","path":["products"]}],"data":null}"#;
        assert!(matches!(c.read(200, body.as_bytes(), 1), Err(CatalogError::Internal { status: 200, .. })));
    }

    #[test]
    fn links_and_images() {
        let c = catalog(config());
        let item = |v: Value| c.product(&v);
        let base = json!({"name": "Lamp", "url_key": "arc-lamp", "url_suffix": null});
        assert_eq!(item(base.clone()).unwrap().url, "https://shop.example.com/de/arc-lamp", "null suffix is empty");
        let mut v = base.clone();
        v["url_suffix"] = json!("");
        assert_eq!(item(v).unwrap().url, "https://shop.example.com/de/arc-lamp");
        let v = json!({"name": "Lamp", "url_key": null, "canonical_url": "lamps/arc-lamp.html"});
        assert_eq!(item(v).unwrap().url, "https://shop.example.com/de/lamps/arc-lamp.html");
        assert_eq!(item(json!({"name": "Lamp"})), None, "no link, no card");
        assert_eq!(item(json!({"name": " ", "url_key": "x"})), None, "no name, no card");
        assert_eq!(item(json!(null)), None);
        let v = json!({"name": "Lamp", "url_key": "a", "small_image": {"url": "javascript:alert(1)"}});
        assert_eq!(item(v).unwrap().image_url, None);
        let v = json!({"name": "Lamp", "url_key": "a", "small_image": {"url": "/media/a.jpg"}});
        assert_eq!(item(v).unwrap().image_url.as_deref(), Some("https://shop.example.com/de/media/a.jpg"));

        // Without a store URL, the endpoint's origin.
        let mut conf = config();
        conf.store_url = None;
        let c2 = catalog(conf);
        assert_eq!(c2.store_base(), "https://api.shop.example.com");
        assert_eq!(c2.product(&base).unwrap().url, "https://api.shop.example.com/arc-lamp");

        // A mapping for another schema.
        let mut conf = config();
        conf.mapping = Some(
            ProductMapping::parse(
                "items=search.hits, name=title, url=link, price=price.amount, currency=price.code, image=img, stock=qty",
            )
            .unwrap(),
        );
        let c3 = catalog(conf);
        let body = json!({"data": {"search": {"hits": [
            {"title": "Arc", "link": "https://shop.example.com/p/arc", "price": {"amount": "129.90", "code": "EUR"}, "img": "ftp://x/a.jpg", "qty": 0},
            {"title": "Bulb", "link": "/p/bulb", "price": {"amount": 4}, "qty": 3},
            {"title": "Evil", "link": "javascript:alert(1)"}
        ]}}});
        let page = c3.read(200, body.to_string().as_bytes(), 1).unwrap();
        assert_eq!(page.products.len(), 2);
        assert_eq!(page.products[0].price, Some(129.9));
        assert_eq!((page.products[0].image_url.as_deref(), page.products[0].in_stock), (None, Some(false)));
        assert_eq!(page.products[1].url, "https://shop.example.com/de/p/bulb");
        assert_eq!(page.total_count, None);
        assert!(ProductMapping::parse("colour=x").is_err());
        assert!(ProductMapping::parse("name").is_err());
    }

    #[test]
    fn requests_and_configuration() {
        let c = catalog(config());
        assert_eq!(operation_name(DEFAULT_QUERY).as_deref(), Some("ProductSearch"));
        assert_eq!(operation_name("query($search: String!) { x }"), None);
        assert_eq!(operation_name("{ products { total_count } }"), None);
        let filters = Filters { min_price: Some(10.0), max_price: Some(40.0), category_uid: Some(" Mw== ".into()) };
        let vars = c.variables("red kettle", &filters, 1).unwrap();
        assert_eq!(
            vars,
            json!({"search": "red kettle", "pageSize": 4, "currentPage": 1,
                   "filter": {"price": {"from": "10", "to": "40"}, "category_uid": {"eq": "Mw=="}}})
        );
        assert_eq!(Filters::max_price(39.9).variable(), Some(json!({"price": {"to": "39.9"}})));
        assert_eq!(Filters::default().variable(), None);
        let body = c.body(&vars);
        assert_eq!(body["operationName"], "ProductSearch");
        assert_eq!(body["query"], DEFAULT_QUERY);
        assert!(!DEFAULT_QUERY.contains("red kettle"));

        assert!(Filters::max_price(-1.0).check().is_err());
        assert!(Filters::max_price(f64::NAN).check().is_err());
        assert!(Filters { min_price: Some(50.0), max_price: Some(10.0), ..Filters::default() }.check().is_err());

        let mut conf = config();
        conf.query = "query($q: String!) { products(search: $q) { items { name } } }".into();
        assert!(matches!(Catalog::new(conf, reqwest::Client::new()), Err(CatalogError::Config(_))));
        let mut conf = config();
        conf.query = "query($search: String!) { products(search: $search) { items { name url_key } } }".into();
        let c2 = catalog(conf);
        assert_eq!(c2.variables("x", &Filters::default(), 1).unwrap(), json!({"search": "x"}));
        assert!(matches!(c2.variables("x", &Filters::max_price(1.0), 1), Err(CatalogError::Config(_))));
        assert!(matches!(c2.variables("x", &Filters::default(), 2), Err(CatalogError::Config(_))));
        let mut conf = config();
        conf.max_results = 500;
        assert_eq!(catalog(conf).page_size(), MAX_PAGE_SIZE);
        let mut conf = config();
        conf.endpoint = Url::parse("file:///etc/passwd").unwrap();
        assert!(Catalog::new(conf, reqwest::Client::new()).is_err());
        let mut conf = config();
        conf.headers = vec![("Bad Header".into(), "x".into())];
        assert!(matches!(Catalog::new(conf, reqwest::Client::new()), Err(CatalogError::Config(_))));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let c = catalog(config());
        for shown in [format!("{c:?}"), format!("{:?}", config())] {
            assert!(!shown.contains("s3cr3t-k3y") && !shown.contains("de_de"), "{shown}");
            assert!(shown.contains("X-Api-Key") || shown.contains("x-api-key"), "{shown}");
        }
        let body = r#"{"errors":[{"message":"Unknown key s3cr3t-k3y for store de_de","extensions":{"category":"graphql-input"}}]}"#;
        let e = c.scrub(c.read(200, body.as_bytes(), 1).unwrap_err());
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains("s3cr3t-k3y") && !shown.contains("de_de"), "{shown}");
        }
    }

    #[test]
    fn terms_are_normalised_and_never_empty() {
        assert_eq!(normalize_term("  red \t kettle\n"), "red kettle");
        assert_eq!(normalize_term("\u{0}\u{7}"), "");
        assert_eq!(normalize_term(&"a".repeat(500)).len(), MAX_TERM_CHARS);
        let c = catalog(config());
        let run = |term: &'static str| {
            let c = c.clone();
            async move { c.search(term, &Filters::default()).await }
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for term in ["", "   ", "\n\t"] {
            assert_eq!(rt.block_on(run(term)), Err(CatalogError::EmptyTerm));
        }
        assert_eq!(c.cache_stats(), CacheStats::default(), "not even a cache lookup");
    }

    fn page(name: &str) -> Arc<Page> {
        Arc::new(Page {
            products: vec![Product {
                name: name.into(),
                sku: None,
                url: format!("https://x.example/{name}"),
                price: None,
                regular_price: None,
                currency: None,
                image_url: None,
                in_stock: None,
            }],
            current_page: 1,
            total_pages: None,
            total_count: None,
        })
    }

    fn key(term: &str) -> Key {
        (term.into(), String::new(), 1)
    }

    #[test]
    fn cache_hits_expires_and_evicts_the_least_recently_used() {
        let cache = Cache::new(Duration::from_secs(60), 3);
        assert!(cache.get(&key("a")).is_none());
        for k in ["a", "b", "c"] {
            cache.put(key(k), page(k));
        }
        assert_eq!(cache.get(&key("a")).unwrap().products[0].name, "a");
        cache.put(key("d"), page("d"));
        assert!(cache.get(&key("b")).is_none(), "b was used least recently");
        assert!(cache.get(&key("a")).is_some() && cache.get(&key("c")).is_some() && cache.get(&key("d")).is_some());
        assert_eq!(cache.slots().len(), 3);
        assert_eq!((cache.hits.load(Ordering::Relaxed), cache.misses.load(Ordering::Relaxed)), (4, 2));

        let short = Cache::new(Duration::from_millis(30), 3);
        short.put(key("a"), page("a"));
        assert!(short.get(&key("a")).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(short.get(&key("a")).is_none(), "expired");
        assert!(short.slots().is_empty());

        let off = Cache::new(Duration::from_secs(60), 0);
        off.put(key("a"), page("a"));
        assert!(off.get(&key("a")).is_none());
    }

    #[test]
    fn cache_keys_ignore_case_and_spacing_but_not_filters() {
        let f = Filters::max_price(40.0);
        assert_eq!(f.key(), Filters { max_price: Some(40.00001), ..Filters::default() }.key());
        assert_ne!(f.key(), Filters::default().key());
        assert_ne!(f.key(), Filters { min_price: Some(40.0), ..Filters::default() }.key());
        assert_eq!(normalize_term("  Red   KETTLE ").to_lowercase(), normalize_term("red kettle"));
    }
}
