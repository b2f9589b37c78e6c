//! `aia-chat admin …`: admin accounts of the panel, in the server's database. Passwords are
//! read from `AIA_NEW_PASSWORD` or a line of standard input (never an argument: arguments show
//! in `ps`), or generated and printed once.

use std::io::BufRead;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::admin::accounts;
use crate::admin::password;
use crate::app::open_store;
use crate::config::StoreArgs;
use crate::store::AdminRole;

/// An account's role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Every client, and the accounts.
    Server,
    /// Only the clients granted with --client or `admin grant`.
    Client,
}

/// The `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List accounts with their role and clients.
    List,
    /// Add an account. The password comes from AIA_NEW_PASSWORD or standard input
    /// (`--generate` makes one and prints it once).
    Add {
        username: String,
        #[arg(long, value_enum, default_value = "client")]
        role: RoleArg,
        /// A client the account manages (repeatable; client admins only).
        #[arg(long = "client", value_name = "UID")]
        clients: Vec<String>,
        /// Generate the password and print it.
        #[arg(long)]
        generate: bool,
    },
    /// Set an account's password (signs it out everywhere).
    Passwd {
        username: String,
        #[arg(long)]
        generate: bool,
    },
    /// Let a client admin manage a client.
    Grant { username: String, uid: String },
    /// Take a client away from a client admin.
    Revoke { username: String, uid: String },
    /// Delete an account.
    Remove { username: String },
}

/// Runs an `admin` subcommand.
pub async fn run(args: &StoreArgs, command: AdminCommand) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let (store, _keys) = open_store(&settings).await?;
    let store = store.as_ref();
    match command {
        AdminCommand::List => {
            for row in store.admin_list().await? {
                let clients = match row.role {
                    AdminRole::Server => "(all clients)".to_string(),
                    AdminRole::Client => store.admin_grants(row.id).await?.join(","),
                };
                println!("{}\t{}\t{clients}", row.username, row.role.as_str());
            }
        }
        AdminCommand::Add { username, role, clients, generate } => {
            let role = match role {
                RoleArg::Server => AdminRole::Server,
                RoleArg::Client => AdminRole::Client,
            };
            let (password, generated) = new_password(generate)?;
            let row = accounts::create(store, &username, &password, role, &clients).await?;
            println!("added {} ({})", row.username, role.as_str());
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::Passwd { username, generate } => {
            let (password, generated) = new_password(generate)?;
            accounts::set_password(store, &settings.data_dir, &username, &password).await?;
            println!("password changed; {username} is signed out everywhere");
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::Grant { username, uid } => {
            accounts::grant(store, &username, &uid, true).await?;
            println!("{username} manages {uid}");
        }
        AdminCommand::Revoke { username, uid } => {
            accounts::grant(store, &username, &uid, false).await?;
            println!("{username} no longer manages {uid}");
        }
        AdminCommand::Remove { username } => {
            accounts::remove(store, &username).await?;
            println!("removed {username}");
        }
    }
    Ok(())
}

/// The new password and whether it was generated.
fn new_password(generate: bool) -> anyhow::Result<(String, bool)> {
    if generate {
        return Ok((password::generate(), true));
    }
    if let Ok(p) = std::env::var("AIA_NEW_PASSWORD") {
        return Ok((p, false));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!line.is_empty(), "give the password on standard input or in AIA_NEW_PASSWORD, or use --generate");
    Ok((line, false))
}
