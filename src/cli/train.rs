//! `aia-chat train UID`: pull a client's FAQ from its GraphQL source into the database, with a
//! progress bar (or one JSON summary line with `--json`). Writes the database only; a running
//! server swaps to the new knowledge within a second. A failed run writes nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::app::open_store;
use crate::clients::ClientSettings;
use crate::config::StoreArgs;
use crate::ids::now_ms;
use crate::knowledge::extract::Mapping;
use crate::knowledge::graphql::Source;
use crate::knowledge::train::{Progress, TrainSource, fetch_all};

/// How long a run's lease holds without progress (a crashed run frees it after this).
const LEASE_MS: i64 = 120_000;

/// Arguments of `aia-chat train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The client to train.
    uid: String,
    /// Print one JSON summary line instead of a progress bar.
    #[arg(long)]
    json: bool,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Runs `train`.
pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = args.store.settings()?;
    let (store, keys) = open_store(&settings).await?;
    let uid = &args.uid;
    let row = store.client_get(uid).await?.with_context(|| format!("no client '{uid}'"))?;
    let s = ClientSettings::from_stored(store.settings_get(row.id).await?);
    let url = s.get("graphql_url");
    if url.is_empty() {
        bail!("client '{uid}' has no training source: set graphql_url and graphql_query");
    }
    settings.upstream.check_url(url).map_err(|e| anyhow::anyhow!("graphql_url {e}"))?;
    let query = s.get("graphql_query");
    if query.trim().is_empty() {
        bail!("client '{uid}' has no graphql_query");
    }
    let headers: Vec<(String, String)> = match s.secret(&keys, uid, "graphql_headers") {
        Some(text) => serde_json::from_str::<std::collections::BTreeMap<String, String>>(&text?)
            .context("graphql_headers")?
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let mapping = Mapping::parse(s.get("graphql_fields")).map_err(anyhow::Error::msg)?;
    // One run per client at a time: the lease lives in the database, so a CLI run, the
    // server's schedule and other nodes never overlap. A run renews it with every page.
    let owner = format!("cli-{}-{:x}", std::process::id(), rand::random::<u32>());
    if !store.training_lease(row.id, &owner, now_ms(), now_ms() + LEASE_MS).await? {
        bail!("a training run of {uid} is already running; try again when it has finished");
    }
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(Progress::default());
    let recorder = {
        let (store, owner, client_id) = (store.clone(), owner.clone(), row.id);
        tokio::spawn(async move {
            while progress_rx.changed().await.is_ok() {
                let p = *progress_rx.borrow_and_update();
                let _ = store
                    .training_progress(client_id, &owner, i64::from(p.pages), p.entries as i64, now_ms() + LEASE_MS)
                    .await;
            }
        })
    };
    let client = crate::outbound::client(settings.upstream, Duration::from_secs(args.timeout));
    let source = TrainSource {
        source: Source { client: &client, url, query, headers: &headers },
        chunk_size: s.get("chunk_size").parse().unwrap_or(100),
        mapping,
    };
    let bar = (!args.json).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let on_page = |p: Progress| {
        let _ = progress_tx.send(p);
        if let Some(bar) = &bar {
            let rate = p.entries as f64 / started.elapsed().as_secs_f64().max(0.001);
            let eta = match p.total_pages {
                Some(total) if total > p.pages => {
                    let per_page = started.elapsed().as_secs_f64() / f64::from(p.pages);
                    format!(", ETA {:.0} s", per_page * f64::from(total - p.pages))
                }
                _ => String::new(),
            };
            let of = p.total_pages.map_or_else(String::new, |t| format!("/{t}"));
            bar.set_message(format!("page {}{of}, {} entries, {rate:.0} entries/s{eta}", p.pages, p.entries));
        }
    };
    let outcome = async {
        let fetched = fetch_all(&source, on_page).await?;
        if fetched.entries.is_empty() {
            bail!("found no FAQ entries in the source");
        }
        let written = store.knowledge_replace(row.id, &fetched.entries).await?;
        Ok((fetched, written))
    }
    .await;
    drop(progress_tx);
    let _ = recorder.await;
    let result = outcome.as_ref().map(|(f, _)| f.entries.len() as i64).map_err(|e| format!("{e:#}"));
    store.training_finish(row.id, &owner, now_ms(), result.as_ref().map(|n| *n).map_err(String::as_str)).await?;
    let (fetched, written) = match outcome {
        Ok(done) => done,
        Err(e) => {
            if let Some(bar) = &bar {
                bar.abandon_with_message("failed");
            }
            bail!("training {uid} failed, the previous knowledge keeps serving: {e:#}");
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
        for w in fetched.warnings.iter().take(20) {
            eprintln!("warning: {w}");
        }
        if fetched.warnings.len() > 20 {
            eprintln!("warning: … and {} more", fetched.warnings.len() - 20);
        }
        let what = if written.changed {
            format!("{} added, {} updated, {} removed", written.added, written.updated, written.removed)
        } else {
            "no changes, nothing written".to_string()
        };
        println!(
            "trained {uid}: {} entries from {} pages in {seconds:.1} s ({what})",
            fetched.entries.len(),
            fetched.pages
        );
    } else {
        let summary = json!({
            "client": uid, "entries": fetched.entries.len(), "pages": fetched.pages,
            "warnings": fetched.warnings.len(), "seconds": (seconds * 1000.0).round() / 1000.0,
            "changed": written.changed, "added": written.added, "updated": written.updated,
            "removed": written.removed, "unchanged": written.unchanged,
        });
        println!("{summary}");
    }
    Ok(())
}
