//! Checks of a client's integrations: each tries one integration with the client's saved
//! settings, through the same HTTP clients the server uses, and says what works, or what
//! failed, where, and what to change — never more than a short excerpt of an upstream's answer
//! (our error types already cut it) and never a secret. One implementation for the admin
//! panel's test buttons (`http::admin::checks`) and `aia-chat doctor` (`cli::doctor`); the
//! doctor adds the [`database`] check, which the panel needs no button for.

mod catalog;
pub mod database;
mod embeddings;
mod graphql;
mod model;
mod operator;
mod tasks;

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::app::AppState;
use crate::clients::{ClientSettings, SecretBox, UpstreamPolicy};
use crate::registry::Registry;

/// The integrations a check can try, by the name the admin API and the doctor use.
pub const INTEGRATIONS: &[&str] = &["model", "graphql", "embeddings", "tasks", "catalog", "operator"];

/// What a check found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Which check (one of [`INTEGRATIONS`], or `database`).
    pub integration: &'static str,
    /// Nothing failed (a skipped check did not fail).
    pub ok: bool,
    /// The doctor skipped it: the integration is not configured (never set by the panel).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// One sentence for the admin.
    pub summary: String,
    /// What failed, where, and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// What was found (lists, products, the reply…).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
    /// How long the check took.
    pub elapsed_ms: u64,
    /// Whether the integration is set up at all: a button pressed for one that is not fails
    /// with what to set; the doctor skips it instead.
    #[serde(skip)]
    pub configured: bool,
    /// Findings worth a line each in a terminal (`details` carries them for programs).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Report {
    /// The report of a check the doctor did not run because nothing is configured for it.
    pub fn skipped(self) -> Report {
        Report { ok: true, skipped: true, problem: None, details: Value::Null, notes: Vec::new(), ..self }
    }
}

/// Why a check failed.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The service and the setting that names it.
    #[serde(rename = "where")]
    pub place: String,
    /// What went wrong (at most a short excerpt of an upstream's answer).
    pub what: String,
    /// What to change.
    pub fix: String,
}

/// What the checks reach the integrations with: the server key and the outbound HTTP clients
/// the server itself uses (so a check goes out exactly as the server would), and this server's
/// address for Chatwoot's webhook.
pub struct Toolkit<'a> {
    /// Opens the client's secrets.
    pub keys: &'a SecretBox,
    /// Which upstream addresses are allowed (the training source's URL is checked first).
    pub upstream: UpstreamPolicy,
    /// Knows how a client's embeddings are reached (its endpoint or the server's model).
    pub embeddings: &'a Registry,
    /// Streams from language models.
    pub model_http: &'a reqwest::Client,
    /// Fetches the GraphQL training source.
    pub training_http: &'a reqwest::Client,
    /// Searches product catalogs.
    pub catalog_http: &'a reqwest::Client,
    /// Calls Chatwoot.
    pub operator_http: &'a reqwest::Client,
    /// Calls Trello.
    pub tasks_http: &'a reqwest::Client,
    /// The server's configured public URL (`--public-url`), without a trailing slash: where
    /// Chatwoot's webhooks must go. `None`: unknown, so the inbox's webhook URL is not compared.
    pub public_url: Option<String>,
    /// The base URL shown in the webhook URL to set (the public URL, or the panel's own host).
    pub base_url: String,
}

impl<'a> Toolkit<'a> {
    /// The running server's own clients; `base_url` is how the admin reached it.
    pub fn of(state: &'a AppState, base_url: String) -> Toolkit<'a> {
        Toolkit {
            keys: &state.keys,
            upstream: state.trainer.policy,
            embeddings: &state.registry,
            model_http: &state.model_http,
            training_http: &state.trainer.client,
            catalog_http: &state.catalog_http,
            operator_http: &state.operator_http,
            tasks_http: &state.tasks_http,
            public_url: state.settings.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string()),
            base_url,
        }
    }
}

/// The client a check is for: its uid (secrets are sealed to it) and its saved settings.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The client's uid.
    pub uid: &'a str,
    /// Its saved settings, secrets still sealed.
    pub settings: &'a ClientSettings,
}

/// Runs the check of `integration` (one of [`INTEGRATIONS`]) for `client`; `catalog_query` is
/// the catalog's sample search term.
pub async fn run(
    integration: &'static str,
    kit: &Toolkit<'_>,
    client: Subject<'_>,
    catalog_query: Option<&str>,
) -> Report {
    let started = Instant::now();
    let outcome = match integration {
        "model" => model::check(kit, client).await,
        "graphql" => graphql::check(kit, client).await,
        "embeddings" => embeddings::check(kit, client).await,
        "tasks" => tasks::check(kit, client).await,
        "operator" => operator::check(kit, client).await,
        "catalog" => catalog::check(kit, client, catalog_query).await,
        other => unreachable!("no check named {other}"),
    };
    outcome.report(integration, started)
}

/// A check's result before it is timed and named.
struct Outcome {
    ok: bool,
    configured: bool,
    summary: String,
    problem: Option<Problem>,
    details: Value,
    notes: Vec<String>,
}

impl Outcome {
    fn report(self, integration: &'static str, started: Instant) -> Report {
        Report {
            integration,
            ok: self.ok,
            skipped: false,
            summary: self.summary,
            problem: self.problem,
            details: self.details,
            elapsed_ms: started.elapsed().as_millis() as u64,
            configured: self.configured,
            notes: self.notes,
        }
    }

    /// The same failure, marked as "nothing is configured for this integration".
    fn unconfigured(self) -> Outcome {
        Outcome { configured: false, ..self }
    }

    fn with_details(self, details: Value) -> Outcome {
        Outcome { details, ..self }
    }

    fn with_notes(self, notes: Vec<String>) -> Outcome {
        Outcome { notes, ..self }
    }
}

fn passed(summary: String, details: Value) -> Outcome {
    Outcome { ok: true, configured: true, summary, problem: None, details, notes: Vec::new() }
}

fn failed(summary: &str, place: impl Into<String>, what: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        ok: false,
        configured: true,
        summary: summary.to_string(),
        problem: Some(Problem { place: place.into(), what: what.into(), fix: fix.into() }),
        details: Value::Null,
        notes: Vec::new(),
    }
}

/// Text with every secret value replaced: upstream errors should never echo one, but a check's
/// report must not carry it even if they do.
fn scrub(text: String, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| s.len() >= 4).fold(text, |text, s| text.replace(s, "[redacted]"))
}

/// `"a is"` / `"a and b are"`: the settings of a list that are empty.
fn are_empty(keys: &[&str], joiner: &str) -> String {
    format!("{} {} empty", keys.join(joiner), if keys.len() == 1 { "is" } else { "are" })
}
