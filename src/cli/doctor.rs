//! `aia-chat doctor UID [--json]`: checks every configured integration of a client in turn —
//! the database and key first, then the model, the GraphQL training source, the catalog,
//! embeddings, Chatwoot and Trello — and prints for each `ok`, `skip` (not configured) or
//! `FAIL` with where, what and the fix. Exit 0 when nothing failed, 1 when something did, 2
//! when the client or the arguments are wrong. The checks are `crate::checks`, the same the
//! admin panel's test buttons run; nothing is written.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::checks::database::{self, Database};
use crate::checks::{Report, Subject, Toolkit};
use crate::config::{ServeArgs, StoreArgs};

/// The integrations after the database, in the order they are checked and printed.
const ORDER: [&str; 6] = ["model", "graphql", "catalog", "embeddings", "operator", "tasks"];

/// Arguments of `aia-chat doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The client to check.
    uid: String,
    /// Print one JSON document `{client, ok, checks}` instead of lines for people.
    #[arg(long)]
    json: bool,
    /// This server's public URL, as `serve` is given it: Chatwoot's webhook URL must point here.
    #[arg(long, env = "AIA_PUBLIC_URL", value_name = "URL")]
    public_url: Option<url::Url>,
    /// The server's sentence-embedding model directory, as `serve` is given it (for clients
    /// without an embedding_url).
    #[arg(long, env = "AIA_EMBEDDING_MODEL", value_name = "DIR")]
    embedding_model: Option<PathBuf>,
}

/// Runs `doctor`.
pub async fn run(args: DoctorArgs) -> ExitCode {
    match examine(&args).await {
        Ok(reports) => {
            let failed = reports.iter().any(|r| !r.ok);
            if args.json {
                let doc = json!({"client": args.uid, "ok": !failed, "checks": reports});
                println!("{}", serde_json::to_string_pretty(&doc).expect("reports serialize"));
            } else {
                print!("{}", human(&args.uid, &reports));
            }
            if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Every check's report, the database's first; `Err` for a usage error (no such client).
async fn examine(args: &DoctorArgs) -> Result<Vec<Report>, String> {
    // The same layering as `serve` (flags, environment, the TOML file) for what it is told
    // about itself.
    let serve = ServeArgs {
        store: args.store.clone(),
        public_url: args.public_url.clone(),
        embedding_model: args.embedding_model.clone(),
        no_demo: true,
        ..Default::default()
    };
    let settings = serve.settings().map_err(|e| format!("{e:#}"))?;
    let (report, store, keys, client) = match database::check(&settings.store, &args.uid).await {
        Database::NoClient => {
            return Err(format!("no client '{}' in this database; `aia-chat client list` shows them", args.uid));
        }
        Database::Broken(report) => return Ok(vec![report]),
        Database::Ready { report, store, keys, settings } => (report, store, keys, settings),
    };
    let local = match &settings.embedding_model {
        Some(dir) => Some(
            crate::semantic::LocalModel::load(dir).map_err(|e| format!("--embedding-model {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    let policy = settings.store.upstream;
    let timeout = std::time::Duration::from_secs(30);
    let embeddings = crate::registry::Registry::with_embedding(crate::registry::Embedding {
        local,
        http: crate::outbound::client(policy, timeout),
        keys: keys.clone(),
        store,
        lease_owner: None,
    });
    let (model_http, training_http, catalog_http, operator_http, tasks_http) = (
        crate::outbound::streaming_client(policy, crate::model::client::Timeouts::default().connect),
        crate::outbound::client(policy, timeout),
        crate::catalog::search::Catalog::http_client(policy),
        crate::operator::chatwoot::Chatwoot::http_client(policy),
        crate::tasks::trello::Trello::http_client(policy),
    );
    let public_url = settings.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string());
    let kit = Toolkit {
        keys: &keys,
        upstream: policy,
        embeddings: &embeddings,
        model_http: &model_http,
        training_http: &training_http,
        catalog_http: &catalog_http,
        operator_http: &operator_http,
        tasks_http: &tasks_http,
        base_url: public_url.clone().unwrap_or_else(|| "https://<this server's public address>".into()),
        public_url,
    };
    let subject = Subject { uid: &args.uid, settings: &client };
    let mut reports = vec![report];
    for integration in ORDER {
        let report = crate::checks::run(integration, &kit, subject, None).await;
        reports.push(if report.configured { report } else { report.skipped() });
    }
    Ok(reports)
}

/// How a check is named for people.
fn label(integration: &str) -> String {
    match integration {
        "operator" => "operator (Chatwoot)".into(),
        "tasks" => "tasks (Trello)".into(),
        "graphql" => "graphql (training source)".into(),
        other => other.into(),
    }
}

/// One block per check, then a summary line.
fn human(uid: &str, reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let name = label(r.integration);
        match &r.problem {
            _ if r.skipped => out.push_str(&format!("skip  {name}: not configured\n")),
            None => out.push_str(&format!("ok    {name}: {}\n", r.summary)),
            Some(p) => {
                out.push_str(&format!("FAIL  {name}: {}\n", r.summary));
                out.push_str(&format!("      where: {}\n      what:  {}\n      fix:   {}\n", p.place, p.what, p.fix));
            }
        }
        for note in &r.notes {
            out.push_str(&format!("      {note}\n"));
        }
    }
    let failed: Vec<&str> = reports.iter().filter(|r| !r.ok).map(|r| r.integration).collect();
    let skipped = reports.iter().filter(|r| r.skipped).count();
    let passed = reports.len() - failed.len() - skipped;
    out.push_str(&if reports.len() == 1 && !failed.is_empty() {
        format!("{uid}: the database check failed; the integrations need it and were not checked.\n")
    } else if failed.is_empty() {
        format!("{uid}: nothing failed ({passed} ok, {skipped} skipped).\n")
    } else {
        format!("{uid}: {} failed ({}); {passed} ok, {skipped} skipped.\n", failed.len(), failed.join(", "))
    });
    out
}
