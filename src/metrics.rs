//! Prometheus metrics: what the server is doing, for the people who run it. Events are
//! recorded through the `metrics` facade where they happen (the functions below, so names and
//! labels live in one place) and rendered on a listener of their own (`--metrics-addr`,
//! loopback by default), never on the public port. Labels are bounded and public — client
//! uids, answer sources, queues, outcomes — never a secret, a URL or a message text.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;

/// Histogram buckets in seconds: from a cached FAQ answer (a millisecond) to a slow model.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Training runs take from a second to many minutes.
const TRAINING_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// The process's recorder, installed on first use: the facade has one global recorder, so
/// servers that share a process (the tests) share their metrics too.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("aia_training_duration_seconds".into()), TRAINING_BUCKETS)
            })
            .expect("non-empty buckets")
            .install_recorder()
            .expect("the only metrics recorder");
        describe();
        handle
    })
}

fn describe() {
    describe_gauge!("aia_sockets_open", "Visitor WebSockets open on this node.");
    describe_counter!(
        "aia_messages_total",
        "Messages stored, by client and direction (in: visitor; out: bot, operator, system)."
    );
    describe_counter!("aia_answers_total", "Answers to visitor messages, by where they came from.");
    describe_histogram!("aia_reply_seconds", Unit::Seconds, "From a visitor message's ack to the stored answer.");
    describe_histogram!(
        "aia_model_first_token_seconds",
        Unit::Seconds,
        "From a model request to its first streamed token."
    );
    describe_counter!("aia_model_tokens_total", "Model tokens spent, by client and kind (prompt, completion).");
    describe_counter!(
        "aia_model_failures_total",
        "Model calls that failed (the visitor got the knowledge base's answer)."
    );
    describe_counter!("aia_training_runs_total", "Training runs, by client and outcome.");
    describe_histogram!("aia_training_duration_seconds", Unit::Seconds, "How long training runs took.");
    describe_gauge!("aia_outbox_pending", "Outbox items waiting for their service (read when scraped).");
    describe_gauge!("aia_outbox_dead", "Outbox items given up on, waiting for an admin (read when scraped).");
    describe_counter!("aia_outbox_retries_total", "Outbox deliveries that failed and were scheduled again.");
    describe_counter!("aia_outbox_dead_letters_total", "Outbox items given up on.");
    describe_counter!("aia_webhook_deliveries_total", "Operator webhooks received, by outcome.");
    describe_counter!("aia_rate_limited_total", "Requests refused by a rate limit, by limit.");
    describe_counter!(
        "aia_refused_total",
        "Requests, frames and connections refused or cut for their size or slowness, by reason."
    );
}

/// Counts a visitor socket that joined a conversation in `aia_sockets_open` for as long as
/// it lives: a guard, so every way a socket ends is counted.
#[derive(Debug)]
pub struct OpenSocket(metrics::Gauge);

impl OpenSocket {
    /// A socket of `client` joined.
    pub fn new(client: &str) -> OpenSocket {
        let gauge = gauge!("aia_sockets_open", "client" => client.to_string());
        gauge.increment(1.0);
        OpenSocket(gauge)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Who wrote a stored message, as the metrics name it.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// The visitor's own message.
    In,
    /// Anything the visitor receives: the bot's, an operator's, a system line.
    Out,
}

/// A message was stored for `client`.
pub fn message(client: &str, direction: Direction) {
    let direction = match direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    counter!("aia_messages_total", "client" => client.to_string(), "direction" => direction).increment(1);
}

/// A visitor message was answered from `source` (`knowledge`, `model`, `fallback`,
/// `catalog`, or `operator` when a person has the conversation), `elapsed` after its ack.
pub fn answered(client: &str, source: &'static str, elapsed: Option<Duration>) {
    counter!("aia_answers_total", "client" => client.to_string(), "source" => source).increment(1);
    if let Some(elapsed) = elapsed {
        histogram!("aia_reply_seconds", "client" => client.to_string(), "source" => source).record(elapsed);
    }
}

/// A model's stream produced its first token `elapsed` after the request.
pub fn model_first_token(client: &str, elapsed: Duration) {
    histogram!("aia_model_first_token_seconds", "client" => client.to_string()).record(elapsed);
}

/// Tokens a model answer cost.
pub fn model_tokens(client: &str, prompt: i64, completion: i64) {
    let add = |kind: &'static str, n: i64| {
        counter!("aia_model_tokens_total", "client" => client.to_string(), "kind" => kind).increment(n.max(0) as u64);
    };
    add("prompt", prompt);
    add("completion", completion);
}

/// A model call failed and the answer fell back.
pub fn model_failed(client: &str) {
    counter!("aia_model_failures_total", "client" => client.to_string()).increment(1);
}

/// A training run of `client` ended.
pub fn training(client: &str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!("aia_training_runs_total", "client" => client.to_string(), "outcome" => outcome).increment(1);
    histogram!("aia_training_duration_seconds", "client" => client.to_string(), "outcome" => outcome).record(elapsed);
}

/// The outboxes the metrics name: Chatwoot's and the task board's.
#[derive(Debug, Clone, Copy)]
pub enum Queue {
    Operator,
    Tasks,
}

impl Queue {
    fn as_str(self) -> &'static str {
        match self {
            Queue::Operator => "operator",
            Queue::Tasks => "tasks",
        }
    }
}

/// An outbox delivery failed and will be tried again.
pub fn outbox_retry(queue: Queue) {
    counter!("aia_outbox_retries_total", "queue" => queue.as_str()).increment(1);
}

/// An outbox item was given up on.
pub fn outbox_dead_letter(queue: Queue) {
    counter!("aia_outbox_dead_letters_total", "queue" => queue.as_str()).increment(1);
}

/// An operator webhook was answered with `outcome` (`accepted`, `duplicate`, or the error's
/// code such as `bad_signature`).
pub fn webhook(outcome: &'static str) {
    counter!("aia_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// A request was refused by the `limit` rate limit.
pub fn rate_limited(limit: &'static str) {
    counter!("aia_rate_limited_total", "limit" => limit).increment(1);
}

/// A request, frame or connection was refused or cut for its size or slowness (`reason`):
/// `head_timeout` (no complete request head in time: slow-loris, or an idle connection),
/// `body_timeout` (408), `head_too_large` (431), `body_too_large` (413, on any route),
/// `frame_too_large` (a text frame over 16 KiB: an error frame) or `frame_over_limit` (a frame
/// over 64 KiB: the socket closed with 1009). Rate limits are `aia_rate_limited_total`'s.
pub fn refused(reason: &'static str) {
    counter!("aia_refused_total", "reason" => reason).increment(1);
}

/// Serves `GET /metrics` on `listener` until the server stops.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(state);
    axum::serve(listener, app).await
}

/// Binds the metrics listener; logs where it listens.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(addr = %listener.local_addr()?, "metrics at http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}

/// The Prometheus text, with the outbox depths read from the store at scrape time.
async fn scrape(State(state): State<AppState>) -> Response {
    match state.store.outbox_depth().await {
        Ok(depth) => {
            gauge!("aia_outbox_pending", "queue" => "operator").set(depth.operator_pending as f64);
            gauge!("aia_outbox_dead", "queue" => "operator").set(depth.operator_dead as f64);
            gauge!("aia_outbox_pending", "queue" => "tasks").set(depth.tasks_pending as f64);
            gauge!("aia_outbox_dead", "queue" => "tasks").set(depth.tasks_failed as f64);
        }
        Err(e) => tracing::warn!(error = %e, "reading the outbox depth for metrics failed"),
    }
    let text = handle().render();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
