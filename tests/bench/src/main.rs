//! # presence-bench
//!
//! Load generator for any server speaking the presence protocol (README,
//! "Protocol"). Open-loop schedules, latency from the *intended* send time
//! (no coordinated omission), HdrHistogram percentiles, several 127.0.0.x
//! source addresses, server RSS and CPU time from `/proc/<pid>`, and
//! deliveries per server CPU-second beside every rate. Loopback targets only;
//! every run is bounded by connection caps, `--duration` and `--max-seconds`
//! and stops by itself.
//!
//! Scenarios:
//! - `s0`: the floor — the S2 driver against a bare tokio-tungstenite
//!   broadcast server in this crate (`floor-server`), group membership by a
//!   join message. Other numbers are reported as a ratio to it
//!   (`--compare-floor` runs it in the same invocation).
//! - `s1`: N idle connections, 30 % of users on two devices: connects/s
//!   (including JWT verification), connects per server CPU-second, server RSS
//!   per connection, idle CPU.
//! - `s2`: typing fan-out for groups of G (default 2, 10, 100): one typer per
//!   group alternates `typing_start`/`typing_stop`; events/s, deliveries/s,
//!   p50/p99/p99.9 latency, deliveries per server CPU-second. The server's
//!   default typing policy allows one broadcast per second per user and
//!   conversation (transitions inside are coalesced) and a 5 s lease, so each
//!   typer sends one transition per `--interval` (1.1–5 s, default 1.5 s):
//!   R events/s needs R × interval groups, R × interval × G connections
//!   (capped by `--connections`). Each typer ends on `typing_stop`, so every
//!   event must reach exactly G−1 members; the `ok` column checks that.
//!
//! Output: a table, and one JSON line per scenario (`grep '^{'`).
//!
//! ## Running against a release server
//!
//! ```sh
//! cargo build --release -p presence -p presence-bench
//! ulimit -n 20000            # in the shell of the server and of the generator
//! export PRESENCE_ADMIN_KEY=bench-admin-key PRESENCE_JWT_SECRET=bench-jwt-secret
//! rm -rf /tmp/presence-bench && mkdir -p /tmp/presence-bench
//! PRESENCE_DATABASE_URL=sqlite:///tmp/presence-bench/presence.db \
//! PRESENCE_DATA_DIR=/tmp/presence-bench/data RUST_LOG=warn \
//!   taskset -c 0 target/release/presence serve --listen 127.0.0.1:8080 &
//! PID=$!
//!
//! # S0 alone: the floor server is started as a child pinned to CPU 0
//! taskset -c 1 target/release/presence-bench s0 --floor-cpu 0 --groups 2,10,100 --rate 400,400,50
//!
//! # S1: 2000 idle connections (and the same against the floor, for the ratio)
//! taskset -c 1 target/release/presence-bench s1 --url http://127.0.0.1:8080 --pid $PID \
//!   --connections 2000 --compare-floor --floor-cpu 0
//!
//! # S2: groups of 2, 10 and 100, floor first in the same run
//! taskset -c 1 target/release/presence-bench s2 --url http://127.0.0.1:8080 --pid $PID \
//!   --groups 2,10,100 --rate 400,400,50 --duration 6 --compare-floor --floor-cpu 0
//!
//! kill -TERM $PID
//! ```
//!
//! (`cargo run --release -p presence-bench -- s2 …` works the same; the admin
//! key and JWT secret may also be given as `--admin-key` / `--jwt-secret`.)
//! Run S1 on a freshly started server: RSS is a before/after delta, and a
//! server that already served earlier runs reuses freed memory, which makes
//! the per-connection figure look smaller than it is.
//! When the floor runs pinned to CPU 0 the presence server is idle meanwhile
//! (setup is done per run, scenario by scenario), so they do not compete.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use presence_bench::net::{Target, loopback_addr};
use presence_bench::s1::{S1Config, S1Result};
use presence_bench::s2::{S2Config, S2Result};
use presence_bench::{FloorChild, floor, report, s1, s2, spawn_floor_child};

#[derive(Parser)]
#[command(
    name = "presence-bench",
    about = "Load generator for the presence protocol"
)]
struct Cli {
    /// Hard bound on the whole invocation; it exits when this runs out.
    #[arg(long, global = true, default_value_t = 900)]
    max_seconds: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The S0 floor server (bare broadcast); prints `floor listening on ADDR`.
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: SocketAddr,
    },
    /// S0: the S2 driver against the floor server.
    S0 {
        #[command(flatten)]
        floor: FloorArgs,
        #[command(flatten)]
        s2: S2Args,
    },
    /// S1: idle connections.
    S1 {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        floor: FloorArgs,
        /// Connections to open (users = connections / 1.3).
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Seconds to hold the connections idle after they settle.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// S2: typing fan-out.
    S2 {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        floor: FloorArgs,
        #[command(flatten)]
        s2: S2Args,
    },
}

#[derive(Args)]
struct TargetArgs {
    /// The presence server (127.0.0.0/8 only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Server pid, for RSS and CPU time from /proc (omitted: not measured).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args)]
struct FloorArgs {
    /// Also run the same scenario against the floor first and print ratios.
    #[arg(long)]
    compare_floor: bool,
    /// Use a running floor server instead of starting one.
    #[arg(long)]
    floor_url: Option<String>,
    /// Its pid (with --floor-url).
    #[arg(long)]
    floor_pid: Option<u32>,
    /// Pin the floor server this tool starts to this CPU (taskset -c).
    #[arg(long)]
    floor_cpu: Option<usize>,
}

#[derive(Args)]
struct CommonArgs {
    /// Connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// 127.0.0.x source addresses (default: one per 20,000 connections).
    #[arg(long)]
    source_addrs: Option<usize>,
    /// Seconds to pause between runs (lets the server finish disconnects).
    #[arg(long, default_value_t = 4.0)]
    pause: f64,
}

#[derive(Args)]
struct S2Args {
    /// Group sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,10,100")]
    groups: Vec<usize>,
    /// Events per second (all typers), one value or one per group size.
    #[arg(long, value_delimiter = ',', default_value = "200,200,40")]
    rate: Vec<f64>,
    /// Seconds of schedule per group size (rounded to start/stop pairs).
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    /// Seconds between two events of one typer (1.1 ≤ interval < 5).
    #[arg(long, default_value_t = 1.5)]
    interval: f64,
    /// Typers per group.
    #[arg(long, default_value_t = 1)]
    typers_per_group: usize,
    /// Cap on connections per run.
    #[arg(long, default_value_t = 8000)]
    connections: usize,
    /// Seconds to wait for outstanding deliveries after the last send.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    #[command(flatten)]
    common: CommonArgs,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        Ok(Target::Presence {
            addr: loopback_addr(&self.url)?,
            admin_key: self.admin_key.clone(),
            jwt_secret: self.jwt_secret.clone(),
        })
    }
}

/// The floor target and its pid; `_child` keeps a started one alive.
async fn floor_target(
    f: &FloorArgs,
    max_seconds: u64,
) -> anyhow::Result<(Target, Option<u32>, Option<FloorChild>)> {
    if let Some(url) = &f.floor_url {
        return Ok((
            Target::Floor {
                addr: loopback_addr(url)?,
            },
            f.floor_pid,
            None,
        ));
    }
    let child = spawn_floor_child(f.floor_cpu, max_seconds).await?;
    Ok((
        Target::Floor { addr: child.addr },
        Some(child.pid),
        Some(child),
    ))
}

fn s2_configs(a: &S2Args, pid: Option<u32>) -> anyhow::Result<Vec<S2Config>> {
    if a.rate.len() != 1 && a.rate.len() != a.groups.len() {
        bail!("--rate: give one value or one per group size");
    }
    let cfgs: Vec<S2Config> = a
        .groups
        .iter()
        .enumerate()
        .map(|(i, &g)| S2Config {
            group_size: g,
            rate: if a.rate.len() == 1 {
                a.rate[0]
            } else {
                a.rate[i]
            },
            duration: Duration::from_secs_f64(a.duration),
            interval: Duration::from_secs_f64(a.interval),
            typers_per_group: a.typers_per_group,
            max_connections: a.connections,
            connect_concurrency: a.common.concurrency,
            source_addrs: a.common.source_addrs,
            drain: Duration::from_secs_f64(a.drain),
            pid,
        })
        .collect();
    // Check every plan before opening a single connection.
    for c in &cfgs {
        c.plan()?;
    }
    Ok(cfgs)
}

async fn run_s2_set(
    target: &Target,
    cfgs: &[S2Config],
    pause: f64,
) -> anyhow::Result<Vec<S2Result>> {
    let mut out = Vec::new();
    for (i, cfg) in cfgs.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        }
        let r = s2::run(target, cfg)
            .await
            .with_context(|| format!("{} G={}", target.name(), cfg.group_size))?;
        report::s2_row(&r);
        out.push(r);
    }
    Ok(out)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::FloorServer { listen } => {
            if !listen.ip().is_loopback() {
                bail!("the floor server listens on 127.0.0.0/8 only");
            }
            let (addr, task) = floor::spawn(listen, std::future::pending()).await?;
            println!("floor listening on {addr}");
            task.await?;
        }
        Command::S0 { floor, s2 } => {
            let (target, pid, _child) = floor_target(&floor, cli.max_seconds).await?;
            let cfgs = s2_configs(&s2, pid)?;
            report::s2_header();
            let results = run_s2_set(&target, &cfgs, s2.common.pause).await?;
            for r in &results {
                report::json_line(&r.json());
            }
        }
        Command::S1 {
            target,
            floor,
            connections,
            duration,
            common,
        } => {
            let cfg = |pid| S1Config {
                connections,
                connect_concurrency: common.concurrency,
                hold: Duration::from_secs_f64(duration),
                source_addrs: common.source_addrs,
                pid,
                ..S1Config::default()
            };
            let mut floor_result: Option<S1Result> = None;
            if floor.compare_floor {
                let (ft, fpid, child) = floor_target(&floor, cli.max_seconds).await?;
                let r = s1::run(&ft, &cfg(fpid)).await.context("S1 floor")?;
                drop(child);
                report::s1_table(&r);
                report::json_line(&r.json());
                floor_result = Some(r);
                tokio::time::sleep(Duration::from_secs_f64(common.pause)).await;
            }
            let r = s1::run(&target.target()?, &cfg(target.pid))
                .await
                .context("S1")?;
            report::s1_table(&r);
            report::json_line(&r.json());
            if let Some(f) = floor_result {
                let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                    _ => None,
                };
                let v = serde_json::json!({
                    "scenario": "s1_vs_s0",
                    "rss_per_connection_ratio": ratio(r.rss_per_connection_kib(), f.rss_per_connection_kib()),
                    "connects_per_cpu_s_ratio": ratio(r.connects_per_cpu_sec(), f.connects_per_cpu_sec()),
                });
                println!(
                    "ratio presence/floor: RSS per connection {} · connects per CPU-second {}",
                    v["rss_per_connection_ratio"], v["connects_per_cpu_s_ratio"]
                );
                report::json_line(&v);
            }
        }
        Command::S2 { target, floor, s2 } => {
            let presence = target.target()?;
            let cfgs = s2_configs(&s2, target.pid)?;
            report::s2_header();
            let mut floor_results = Vec::new();
            if floor.compare_floor {
                let (ft, fpid, child) = floor_target(&floor, cli.max_seconds).await?;
                let fcfgs: Vec<S2Config> = cfgs
                    .iter()
                    .map(|c| S2Config {
                        pid: fpid,
                        ..c.clone()
                    })
                    .collect();
                floor_results = run_s2_set(&ft, &fcfgs, s2.common.pause).await?;
                drop(child);
                tokio::time::sleep(Duration::from_secs_f64(s2.common.pause)).await;
            }
            let results = run_s2_set(&presence, &cfgs, s2.common.pause).await?;
            for r in floor_results.iter().chain(&results) {
                report::json_line(&r.json());
            }
            for (p, f) in results.iter().zip(&floor_results) {
                let v = report::s2_ratio(p, f);
                report::json_line(&v);
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let limit = Duration::from_secs(cli.max_seconds);
    match tokio::time::timeout(limit, run(cli)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("presence-bench: {e:#}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("presence-bench: --max-seconds reached, stopping");
            std::process::exit(3);
        }
    }
}
