//! `aia-chat visitor …`: answer a visitor's access and erasure requests from the command line,
//! by a conversation id or by the email the host page gave (`identify`). The work is
//! `privacy`'s; this prints it. A running server ends an erased visitor's socket when it next
//! writes (the admin API ends it at once).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::app::open_store;
use crate::config::StoreArgs;
use crate::privacy::{self, Subject, Upstream};

/// The `visitor` subcommands.
#[derive(Debug, Subcommand)]
pub enum VisitorCommand {
    /// Everything kept about a visitor, as JSON (an access request).
    Export {
        /// A conversation id (c_…) or the email the visitor gave.
        #[arg(value_name = "ID_OR_EMAIL")]
        subject: String,
        /// Only this client's conversations (an email is searched in every client otherwise).
        #[arg(long, value_name = "UID")]
        client: Option<String>,
        /// Write to FILE (created readable by its owner only) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Delete a visitor's conversations everywhere we keep them (an erasure request).
    Delete {
        /// A conversation id (c_…) or the email the visitor gave.
        #[arg(value_name = "ID_OR_EMAIL")]
        subject: String,
        /// Only this client's conversations (an email is searched in every client otherwise).
        #[arg(long, value_name = "UID")]
        client: Option<String>,
        /// Delete; without it, only list what would be deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `visitor` subcommand.
pub async fn run(args: &StoreArgs, command: VisitorCommand) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let (store, _keys) = open_store(&settings).await?;
    match command {
        VisitorCommand::Export { subject, client, out } => {
            let subject = Subject::parse(&subject)?;
            let matched = privacy::find(store.as_ref(), &subject, client.as_deref()).await?;
            let export = privacy::export(store.as_ref(), &matched).await?;
            let json = serde_json::to_string_pretty(&export)? + "\n";
            match out {
                Some(path) => {
                    private_file(&path)?
                        .write_all(json.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("exported {} conversation(s) to {}", matched.len(), path.display());
                }
                None => std::io::stdout().write_all(json.as_bytes())?,
            }
        }
        VisitorCommand::Delete { subject, client, yes } => {
            let subject = Subject::parse(&subject)?;
            let matched = privacy::find(store.as_ref(), &subject, client.as_deref()).await?;
            if !yes {
                println!("would delete {} conversation(s):", matched.len());
                for m in &matched {
                    println!("  {}\t{}", m.client.uid, m.session.conversation_id);
                }
                bail!("nothing deleted: run again with --yes");
            }
            let erasure = privacy::erase(store.as_ref(), &matched).await?;
            println!("deleted {} conversation(s):", erasure.conversations.len());
            for c in &erasure.conversations {
                println!("  {}\t{}", c.client, c.conversation_id);
            }
            let rows: Vec<String> = erasure.deleted.iter().map(|(table, n)| format!("{table} {n}")).collect();
            println!("rows deleted: {}", rows.join(", "));
            print_upstream(&erasure.upstream);
        }
    }
    Ok(())
}

/// What the operator still has to delete at their services.
fn print_upstream(upstream: &Upstream) {
    if upstream.chatwoot_conversations.is_empty() && upstream.trello_cards.is_empty() {
        println!("nothing at Chatwoot or Trello");
        return;
    }
    println!("still at the operator's services (aia-chat does not delete there; delete them yourself):");
    for c in &upstream.chatwoot_conversations {
        let contact = c.chatwoot_contact_id.map(|id| format!(", contact {id}")).unwrap_or_default();
        let url = c.url.as_deref().unwrap_or("set operator_account_id for a link");
        println!(
            "  Chatwoot conversation {}{contact} ({} {}): {url}",
            c.chatwoot_conversation_id, c.client, c.conversation_id
        );
    }
    // The reference, not the title: a title quotes the visitor, and this listing never does.
    for card in &upstream.trello_cards {
        let reference = card.reference.as_deref().unwrap_or("-");
        println!("  Trello card {reference} ({} {}): {}", card.client, card.conversation_id, card.url);
    }
}

/// Creates `path` readable and writable by its owner only: an export is personal data.
fn private_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("creating {}", path.display()))
}
