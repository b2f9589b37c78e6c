//! aia-chat: a self-hosted AI chat assistant for websites.
//!
//! Layout (one module, one job):
//! - [`admin`]: admin accounts of the panel: passwords, sign-in throttling, roles.
//! - [`config`]: server settings from flags, `AIA_…` environment and a TOML file.
//! - [`clients`]: a client's settings table, validation, origins, secrets at rest.
//! - [`checks`]: tries a client's integrations and says what is wrong and what to change.
//! - [`store`]: persistence behind one trait (SQLite or PostgreSQL).
//! - [`knowledge`]: FAQ entries, training from GraphQL, and their full-text index.
//! - [`catalog`]: product search in the shop's GraphQL catalog, as product cards.
//! - [`outbound`]: the HTTP client for upstream services, with the upstream address policy.
//! - [`assistant`]: the per-message brain (today: the built-in answerer).
//! - [`model`]: language-model wire formats (server-sent events, OpenAI-compatible streams).
//! - [`operator`]: the human operator (Chatwoot): webhook meaning and signatures.
//! - [`tasks`]: tasks made from chats (the Trello client).
//! - [`realtime`]: the frame protocol, the session hub and abuse limits.
//! - [`semantic`]: sentence embeddings (in-process model or an OpenAI-compatible endpoint),
//!   the vectors' search, and its fusion with full-text retrieval.
//! - [`cluster`]: several nodes on one database: the Redis bus, job leases, answer claims and
//!   shared rate limits.
//! - [`registry`]: the running server's view of its clients, rebuilt on change.
//! - [`privacy`]: access and erasure requests about a visitor, and retention.
//! - [`http`]: every route, and the mapping of typed errors to responses.
//! - [`redact`]: secrets masked in every log line.
//! - [`metrics`]: Prometheus metrics on a listener of their own.
//! - [`app`]: start-up, serving and draining; [`cli`]: the `aia-chat` commands.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod assistant;
pub mod catalog;
pub mod checks;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod http;
pub mod ids;
pub mod knowledge;
pub mod metrics;
pub mod model;
pub mod operator;
pub mod outbound;
pub mod privacy;
pub mod realtime;
pub mod redact;
pub mod registry;
pub mod semantic;
pub mod store;
pub mod tasks;

pub use app::{App, AppState};

/// Runs a server on `listener` with `settings` until `shutdown` resolves, then drains.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: config::Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    App::build(settings).await?.run(listener, shutdown).await
}
