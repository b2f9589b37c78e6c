//! `aia-chat knowledge …`: a client's knowledge from the shell. `import` replaces it with the
//! FAQs of a JSON file in the `shared/data/README.md` format (for clients without a GraphQL
//! source); the running server swaps to it within a second.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::app::open_store;
use crate::config::StoreArgs;
use crate::knowledge::dataset::Dataset;

/// The `knowledge` subcommands.
#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// Replace a client's knowledge with the FAQs of FILE.json.
    Import { uid: String, file: PathBuf },
}

/// Runs a `knowledge` subcommand.
pub async fn run(args: &StoreArgs, command: KnowledgeCommand) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let (store, _) = open_store(&settings).await?;
    match command {
        KnowledgeCommand::Import { uid, file } => {
            let row = store.client_get(&uid).await?.with_context(|| format!("no client '{uid}'"))?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let dataset = Dataset::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
            let entries = dataset.entries();
            let mut seen = HashSet::new();
            for (i, e) in entries.iter().enumerate() {
                if e.id.trim().is_empty() || e.question.trim().is_empty() {
                    bail!("{}: faqs[{i}] needs a non-empty id and question", file.display());
                }
                if !seen.insert(e.id.as_str()) {
                    bail!("{}: faqs[{i}]: duplicate id '{}'", file.display(), e.id);
                }
            }
            let written = store.knowledge_replace(row.id, &entries).await?;
            let what = if written.changed { "" } else { " (no changes, nothing written)" };
            println!("imported {} entries into {uid}{what}", entries.len());
        }
    }
    Ok(())
}
