//! The `presence` binary: wires configuration to the server and the tools.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use presence::app::Application;
use presence::auth::Auth;
use presence::config::Config;
use presence::store::Store;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "presence",
    version,
    about = "Real-time presence for chat products"
)]
struct Cli {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "presence=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            listen,
            database_url,
        } => {
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
            let store = Store::connect(&config.database_url).await?;
            store.migrate().await.context("running migrations")?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Token { user, name, ttl } => {
            let auth = Auth::from_config(&config)?;
            println!("{}", auth.mint(user, name, Duration::from_secs(ttl))?);
            Ok(())
        }
        Command::AdminKey => {
            let key = match &config.admin_key {
                Some(k) => k.clone(),
                None => {
                    Auth::from_config(&config)?;
                    std::fs::read_to_string(config.data_dir.join("admin_key"))?
                        .trim()
                        .to_owned()
                }
            };
            println!("{key}");
            Ok(())
        }
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
