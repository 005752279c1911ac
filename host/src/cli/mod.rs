//! The `presence` command line. `serve` runs the server ([`crate::app`]);
//! `migrate`, `token` and `admin-key` are small tools on the same
//! configuration; `plugin …` scaffolds a plugin crate ([`scaffold`]),
//! validates a component as the server would ([`check`]), and installs,
//! lists and rolls back plugins on a running server through its admin API
//! ([`client`]).

pub mod check;
pub mod client;
pub mod scaffold;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::app::Application;
use crate::auth::Auth;
use crate::config::Config;
use crate::policy::Slot;
use crate::store::{Store, StoreOptions};

#[derive(Parser)]
#[command(
    name = "presence",
    version,
    about = "Real-time presence for chat products"
)]
pub struct Cli {
    /// TOML configuration file; every setting can also come from PRESENCE_* variables.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (overrides PRESENCE_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Database URL (overrides PRESENCE_DATABASE_URL).
        #[arg(long)]
        database_url: Option<String>,
        /// Serve the demo page at /demo, with three demo users and tokens
        /// minted for anyone who asks. For trying presence out only.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Mint a user token from the configured (or generated) secret, for trying it out.
    Token {
        #[arg(long)]
        user: Uuid,
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Print the admin key in use (generated on first start when none is configured).
    AdminKey,
    /// Scaffold, check, install, list and roll back policy plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate for a slot in <dir>/<name>, ready to build; inside
    /// a Cargo workspace, as a member of it.
    New {
        /// typing, status or privacy.
        slot: Slot,
        /// The crate's name and directory: lowercase letters, digits and '-'.
        name: String,
        /// Where to create the crate directory; by default the current directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin SDK crate (plugins/sdk of a presence checkout); by default
        /// the one this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Validate a component for a slot exactly as the server would, without a server.
    Check {
        /// The component (`.wasm`) to validate.
        file: PathBuf,
        /// typing, status or privacy; by default taken from the file name (`typing.wasm`).
        #[arg(long)]
        slot: Option<Slot>,
    },
    /// Upload a component to a running server, which validates and swaps it in.
    Install {
        /// The slot to serve: typing, status or privacy.
        slot: Slot,
        /// The component (`.wasm`) to upload.
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// What runs in each slot of a running server, as a table.
    List {
        /// Print the admin API's answer as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: Server,
    },
    /// Return a slot of a running server to its previous component.
    Rollback {
        /// The slot to roll back: typing, status or privacy.
        slot: Slot,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(clap::Args)]
pub struct Server {
    /// Base URL of the server; by default the configured listen address.
    #[arg(long)]
    pub server: Option<String>,
    /// Admin key; by default the configured one, or the one the server
    /// generated in its data directory (PRESENCE_DATA_DIR).
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

/// Runs one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            listen,
            database_url,
            demo,
        } => {
            config.demo |= demo;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(u) = database_url {
                config.database_url = u;
            }
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            let options = StoreOptions {
                schema: config.database_schema.clone(),
            };
            let store = Store::connect_with(&config.database_url, &options).await?;
            let layout = store.migrate().await.context("running migrations")?;
            let users = if layout.owned {
                "presence owns `users`"
            } else {
                "`users` is the chat's: presence added only the seed's columns"
            };
            println!("migrations applied ({}; {users})", store.backend());
            Ok(())
        }
        Command::Token { user, name, ttl } => {
            let auth = Auth::from_config(&config)?;
            println!("{}", auth.mint(user, name, Duration::from_secs(ttl))?);
            Ok(())
        }
        Command::AdminKey => {
            println!("{}", admin_key(&config)?);
            Ok(())
        }
        Command::Plugin(command) => plugin(command, &config).await,
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The admin key a client command sends: the configured one, or the one the
/// server generated in its data directory. Never generates one: a key made
/// here would only be refused.
pub fn existing_admin_key(config: &Config) -> anyhow::Result<String> {
    if let Some(k) = &config.admin_key {
        return Ok(k.clone());
    }
    let path = config.data_dir.join("admin_key");
    match std::fs::read_to_string(&path) {
        Ok(k) => Ok(k.trim().to_owned()),
        Err(_) => anyhow::bail!(
            "no admin key: pass --admin-key or set PRESENCE_ADMIN_KEY, or point \
             PRESENCE_DATA_DIR at the server's data directory (no {} here)",
            path.display()
        ),
    }
}

pub fn admin_key(config: &Config) -> anyhow::Result<String> {
    Ok(match &config.admin_key {
        Some(k) => k.clone(),
        None => {
            Auth::from_config(config)?;
            std::fs::read_to_string(config.data_dir.join("admin_key"))?
                .trim()
                .to_owned()
        }
    })
}

async fn plugin(command: PluginCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        PluginCommand::Check { file, slot } => check::run(&file, slot, config),
        PluginCommand::New {
            slot,
            name,
            dir,
            sdk,
        } => new_plugin(slot, &name, dir.as_deref(), sdk.as_deref()),
        PluginCommand::Install { slot, file, server } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            client::install(&server, config, slot, bytes).await
        }
        PluginCommand::List { json, server } => client::list(&server, config, json).await,
        PluginCommand::Rollback { slot, server } => client::rollback(&server, config, slot).await,
    }
}

/// Writes a plugin crate and says what to run next.
fn new_plugin(
    slot: Slot,
    name: &str,
    dir: Option<&std::path::Path>,
    sdk: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    scaffold::validate_name(name)?;
    let sdk = match sdk {
        Some(path) => scaffold::resolve_sdk(path)?,
        None => scaffold::default_sdk()?,
    };
    let created = scaffold::create(slot, name, dir.unwrap_or(std::path::Path::new("")), &sdk)?;
    print!("{}", created.report());
    Ok(())
}
