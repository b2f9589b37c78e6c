//! The `aia-chat` command line: `serve`, `client …`, `admin …`, `visitor …`, `ask`, `doctor` and more.
//! Every flag can also come from an `AIA_…` environment variable and the TOML file given with
//! `--config`.

mod admin;
mod ask;
mod backup;
mod client;
mod doctor;
mod eval;
mod healthcheck;
mod knowledge;
mod train;
mod visitor;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ServeArgs, StoreArgs};

/// Self-hosted AI chat assistant for websites.
#[derive(Debug, Parser)]
#[command(name = "aia-chat", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// List, show, add and configure clients (websites) in the server's database.
    Client {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: client::ClientCommand,
    },
    /// Manage the admin panel's accounts (server admins and client admins).
    Admin {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Answer a visitor's access or erasure request: export or delete their conversations, by
    /// conversation id or by the email they gave.
    Visitor {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: visitor::VisitorCommand,
    },
    /// Ask a question over the WebSocket exactly as the widget does, and print the reply.
    Ask(ask::AskArgs),
    /// Pull a client's FAQ from its GraphQL source into its knowledge.
    Train(train::TrainArgs),
    /// Manage a client's knowledge (FAQ entries).
    Knowledge {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: knowledge::KnowledgeCommand,
    },
    /// Measure retrieval quality on a benchmark file (top-1, recall@3, MRR@10, no-answer).
    Eval(eval::EvalArgs),
    /// Copy the SQLite database to FILE while the server runs (consistent; without the key).
    Backup(backup::BackupArgs),
    /// Put a backup into an empty data directory (the key at hand must match the backup's).
    Restore(backup::BackupArgs),
    /// Ask a running server whether it is ready (`/readyz`): exit 0 when it is, 1 with the
    /// reason when not. For container health checks (the image has no curl).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Check every configured integration of a client (database and key, model, GraphQL
    /// source, catalog, embeddings, Chatwoot, Trello): ok, or what is wrong and what to change.
    /// Exit 0 when nothing failed, 1 when something did, 2 for an unknown client.
    Doctor(doctor::DoctorArgs),
}

fn init_logging(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tantivy=warn"));
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::redact::Stderr);
    match format {
        crate::config::LogFormat::Pretty => log.init(),
        // The innermost span's fields (request or socket id, conversation) as `span`.
        crate::config::LogFormat::Json => {
            log.json().flatten_event(true).with_current_span(true).with_span_list(false).init()
        }
    }
}

/// Parses the arguments and runs the command; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                init_logging(args.log_format);
                serve(*args).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Client { store, command } => client::run(&store, command).await.map(|_| ExitCode::SUCCESS),
            Command::Admin { store, command } => admin::run(&store, command).await.map(|_| ExitCode::SUCCESS),
            Command::Visitor { store, command } => visitor::run(&store, command).await.map(|_| ExitCode::SUCCESS),
            Command::Ask(args) => Ok(ask::run(args).await),
            Command::Knowledge { store, command } => knowledge::run(&store, command).await.map(|_| ExitCode::SUCCESS),
            Command::Train(args) => train::run(args).await.map(|_| ExitCode::SUCCESS),
            Command::Eval(args) => eval::run(args).await.map(|_| ExitCode::SUCCESS),
            Command::Healthcheck(args) => Ok(healthcheck::run(args).await),
            Command::Doctor(args) => Ok(doctor::run(args).await),
            Command::Backup(args) => backup::backup(args).map(|_| ExitCode::SUCCESS),
            Command::Restore(args) => backup::restore(args).map(|_| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    settings.remember_secrets();
    // Every visitor socket is a file descriptor: take all the kernel allows this process.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let listener = crate::app::bind(settings.addr).map_err(|e| anyhow::anyhow!("binding {}: {e}", settings.addr))?;
    let addr = listener.local_addr()?;
    let open = settings.public_url.as_ref().map_or_else(
        || {
            format!(
                "http://{}:{}",
                if addr.ip().is_unspecified() { "localhost".into() } else { addr.ip().to_string() },
                addr.port()
            )
        },
        |u| u.as_str().trim_end_matches('/').to_string(),
    );
    let app = crate::App::build(settings).await?;
    if app.state().registry.get(crate::demo::UID).is_some() {
        tracing::info!("open {open} to chat with the demo assistant");
    }
    app.run(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
