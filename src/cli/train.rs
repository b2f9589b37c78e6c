//! `aia-chat train UID`: pull a client's FAQ from its GraphQL source into the database, with a
//! progress bar (or one JSON summary line with `--json`). Writes the database only; a running
//! server swaps to the new knowledge within a second. A failed run writes nothing.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::app::open_store;
use crate::config::StoreArgs;
use crate::knowledge::run::Trainer;
use crate::knowledge::train::Progress;

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

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn describe(p: Progress, started: Instant) -> String {
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let eta = match p.total_pages {
        Some(total) if total > p.pages => {
            format!(", ETA {:.0} s", elapsed / f64::from(p.pages) * f64::from(total - p.pages))
        }
        _ => String::new(),
    };
    let of = p.total_pages.map_or_else(String::new, |t| format!("/{t}"));
    format!("page {}{of}, {} entries, {:.0} entries/s{eta}", p.pages, p.entries, p.entries as f64 / elapsed)
}

/// Runs `train`.
pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = args.store.settings()?;
    let (store, keys) = open_store(&settings).await?;
    let uid = &args.uid;
    let trainer = Trainer::new(store, keys, settings.upstream, Duration::from_secs(args.timeout));
    let owner = format!("cli-{}-{:x}", std::process::id(), rand::random::<u32>());
    let bar = (!args.json).then(progress_bar);
    let outcome = trainer
        .train(uid, &owner, |p| {
            if let Some(bar) = &bar {
                bar.set_message(describe(p, started));
            }
        })
        .await;
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            if let Some(bar) = &bar {
                bar.abandon_with_message("failed");
            }
            bail!("training {uid} failed, the previous knowledge keeps serving: {e}");
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let w = o.written;
    if let Some(bar) = bar {
        bar.finish_and_clear();
        for warning in o.warnings.iter().take(20) {
            eprintln!("warning: {warning}");
        }
        if o.warnings.len() > 20 {
            eprintln!("warning: … and {} more", o.warnings.len() - 20);
        }
        let what = if w.changed {
            format!("{} added, {} updated, {} removed", w.added, w.updated, w.removed)
        } else {
            "no changes, nothing written".to_string()
        };
        println!("trained {uid}: {} entries from {} pages in {seconds:.1} s ({what})", o.entries, o.pages);
    } else {
        let summary = json!({
            "client": uid, "entries": o.entries, "pages": o.pages, "warnings": o.warnings.len(),
            "seconds": (seconds * 1000.0).round() / 1000.0, "changed": w.changed, "added": w.added,
            "updated": w.updated, "removed": w.removed, "unchanged": w.unchanged,
        });
        println!("{summary}");
    }
    Ok(())
}
