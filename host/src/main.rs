//! The `presence` binary: wires configuration to the server and the tools.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use presence::app::Application;
use presence::auth::Auth;
use presence::config::Config;
use presence::policy::{Policies, PolicyConfig, Slot};
use presence::scaffold;
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
    /// Scaffold, check, install, list and roll back policy plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate for a slot in <dir>/<name>, ready to build.
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
        file: PathBuf,
        /// typing, status or privacy; by default taken from the file name (`typing.wasm`).
        #[arg(long)]
        slot: Option<Slot>,
    },
    /// Upload a component to a running server, which validates and swaps it in.
    Install {
        slot: Slot,
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// What runs in each slot of a running server.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Return a slot of a running server to its previous component.
    Rollback {
        slot: Slot,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(clap::Args)]
struct Server {
    /// Base URL of the server; by default the configured listen address.
    #[arg(long)]
    server: Option<String>,
    /// Admin key; by default the configured or generated one.
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

/// mimalloc keeps memory per connection lower than the system allocator:
/// many small, long-lived allocations per connection, freed in any order.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn admin_key(config: &Config) -> anyhow::Result<String> {
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
    let (server, method, path, body) = match command {
        PluginCommand::Check { file, slot } => return check(&file, slot, config),
        PluginCommand::New {
            slot,
            name,
            dir,
            sdk,
        } => return new_plugin(slot, &name, dir.as_deref(), sdk.as_deref()),
        PluginCommand::Install { slot, file, server } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            (
                server,
                reqwest::Method::PUT,
                format!("/api/v1/admin/plugins/{slot}"),
                Some(bytes),
            )
        }
        PluginCommand::List { server } => (
            server,
            reqwest::Method::GET,
            "/api/v1/admin/plugins".to_owned(),
            None,
        ),
        PluginCommand::Rollback { slot, server } => (
            server,
            reqwest::Method::POST,
            format!("/api/v1/admin/plugins/{slot}/rollback"),
            None,
        ),
    };
    let base = server
        .server
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let key = match server.admin_key {
        Some(k) => k,
        None => admin_key(config)?,
    };
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(bytes) = body {
        request = request
            .header("content-type", "application/wasm")
            .body(bytes);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("reaching {base}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the answer")?;
    if !status.is_success() {
        anyhow::bail!(
            "{status}: {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    println!("{}", serde_json::to_string_pretty(&body["data"])?);
    Ok(())
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

/// Loads the component into a private runtime, as the server would.
fn check(file: &std::path::Path, slot: Option<Slot>, config: &Config) -> anyhow::Result<()> {
    let slot = match slot {
        Some(s) => s,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .context("name the slot with --slot (typing, status or privacy)")?,
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let policies = Policies::load(&PolicyConfig {
        plugin_dir: None,
        call_deadline: config.plugin_call_deadline(),
        memory_limit: config.limits.plugin_memory_bytes,
        cache_dir: None,
    })?;
    let started = std::time::Instant::now();
    match policies.check(slot, &bytes) {
        Ok(report) => {
            let us = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e6);
            println!(
                "ok: {} is a valid {slot} plugin ({} bytes, sha256 {}); {} conformance vectors passed in {:.1} ms\n\
                 calls: {}, p50 {:.1} µs, p99 {:.1} µs; peak memory {} KiB",
                file.display(),
                bytes.len(),
                report.info.sha256,
                report.vectors,
                started.elapsed().as_secs_f64() * 1e3,
                report.info.calls,
                us(report.info.latency_p50),
                us(report.info.latency_p99),
                report.info.peak_memory / 1024,
            );
            Ok(())
        }
        Err(rejected) => anyhow::bail!("refused: {rejected}"),
    }
}
