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
//! - `s3`: status churn: subjects with 100 watchers (and a heavy tail with
//!   5,000) connect and disconnect on a schedule; status changes/s,
//!   `user_status` latency (online from the intended connect, offline from
//!   the intended disconnect + the server's 3 s grace).
//! - `s4`: 100-id `GET /api/v1/users/status` against the server and the same
//!   SELECT run directly with sqlx on its database (SQLite or PostgreSQL).
//! - `s5`: S2 at a steady load while the typing plugin is swapped every few
//!   seconds; p99 during swaps against steady state, events lost.
//! - `s6`: S2 while 10 % of the clients stop reading: drops, RSS, the
//!   others' latency before and after.
//! - `s7`: soak: S2 at a steady rate with connect/disconnect churn for 30
//!   minutes (`--minutes`); server RSS, open fds and tasks at the start,
//!   after the churn and after everyone left, against a warmed baseline.
//! - `chart`: SVG charts from the JSON lines of earlier runs.
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
//! export PRESENCE_ADMIN_KEY=bench-admin-key PRESENCE_JWT_SECRET=bench-jwt-secret-0123456789abcdef
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
//! S3–S6 and the charts: see `docs/performance.md` for the commands.
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
use presence_bench::s3::S3Config;
use presence_bench::s4::S4Config;
use presence_bench::s5::S5Config;
use presence_bench::s7::S7Config;
use presence_bench::{
    FloorChild, chart, floor, report, s1, s2, s3, s4, s5, s6, s7, spawn_floor_child,
};

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
    /// S3: status churn.
    S3 {
        #[command(flatten)]
        target: TargetArgs,
        /// Subjects with --watchers-per-subject watchers each.
        #[arg(long, default_value_t = 200)]
        subjects: usize,
        #[arg(long, default_value_t = 100)]
        watchers_per_subject: usize,
        /// Heavy tail: subjects with --tail-watchers watchers each.
        #[arg(long, default_value_t = 2)]
        tail_subjects: usize,
        #[arg(long, default_value_t = 5000)]
        tail_watchers: usize,
        /// Watcher connections (0: the largest watcher set).
        #[arg(long, default_value_t = 0)]
        watchers: usize,
        /// Seconds of one connect/disconnect cycle per subject.
        #[arg(long, default_value_t = 6.0)]
        period: f64,
        /// Seconds a subject stays connected per cycle.
        #[arg(long, default_value_t = 1.0)]
        hold: f64,
        /// The server's offline grace in seconds (status policy).
        #[arg(long, default_value_t = 3.0)]
        grace: f64,
        #[arg(long, default_value_t = 12.0)]
        duration: f64,
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// S4: REST batch status against the server and the direct query.
    S4 {
        #[command(flatten)]
        target: TargetArgs,
        /// The server's database (sqlite:… or postgres:…), for setup and the floor.
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Queries per second of each warm run.
        #[arg(long, value_delimiter = ',', default_value = "200,1000")]
        rate: Vec<f64>,
        /// Queries per second of the cold pass (every user once).
        #[arg(long, default_value_t = 50.0)]
        cold_rate: f64,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 64)]
        max_in_flight: usize,
        /// Connections of the direct floor's pool.
        #[arg(long, default_value_t = 4)]
        floor_pool: u32,
    },
    /// S5: S2 at a steady load while the typing plugin is swapped.
    S5 {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        s2: S2Args,
        /// Seconds between swaps.
        #[arg(long, default_value_t = 3.0)]
        swap_every: f64,
        /// Seconds after a swap's answer that still count as "during".
        #[arg(long, default_value_t = 0.5)]
        settle: f64,
        /// The component put back last: `builtin`, `large-groups` or a path.
        #[arg(long, default_value = "builtin")]
        plugin_a: String,
        /// The other component.
        #[arg(long, default_value = "large-groups")]
        plugin_b: String,
    },
    /// S6: S2 while a share of the clients stops reading.
    S6 {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        s2: S2Args,
        /// Share of all connections that stop reading.
        #[arg(long, default_value_t = 0.1)]
        slow_share: f64,
        /// Seconds after the schedule's start when they stop.
        #[arg(long, default_value_t = 5.0)]
        slow_after: f64,
        /// SO_RCVBUF of the slow clients (0: the system default).
        #[arg(long, default_value_t = 16384)]
        slow_rcvbuf: u32,
    },
    /// S7: soak — S2 with connect/disconnect churn for a long time.
    S7 {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        s2: S2Args,
        /// Minutes of soak (the hard bound grows to fit).
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Users that connect and disconnect throughout.
        #[arg(long, default_value_t = 500)]
        churners: usize,
        /// Seconds a churner holds one connection.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        /// Seconds of the warm-up round before the baseline (long enough
        /// for the allocator to reach the load's high-water mark).
        #[arg(long, default_value_t = 180.0)]
        warmup: f64,
        /// Longest wait, in seconds, for the server to settle after a leave.
        #[arg(long, default_value_t = 60.0)]
        settle: f64,
    },
    /// SVG charts (latency against load, memory against connections) from
    /// the JSON lines of earlier runs.
    Chart {
        /// Files with the runs' output (lines starting with `{` are read).
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<std::path::PathBuf>,
        #[arg(long, default_value = "target/bench-charts")]
        out_dir: std::path::PathBuf,
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

fn s2_configs(a: &S2Args, pid: Option<u32>, renew: bool) -> anyhow::Result<Vec<S2Config>> {
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
            renew,
            ..S2Config::default()
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
            let cfgs = s2_configs(&s2, pid, false)?;
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
            let cfgs = s2_configs(&s2, target.pid, false)?;
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
        Command::S3 {
            target,
            subjects,
            watchers_per_subject,
            tail_subjects,
            tail_watchers,
            watchers,
            period,
            hold,
            grace,
            duration,
            drain,
            common,
        } => {
            let cfg = S3Config {
                subjects,
                watchers_per_subject,
                tail_subjects,
                tail_watchers,
                watchers,
                period: Duration::from_secs_f64(period),
                hold: Duration::from_secs_f64(hold),
                grace: Duration::from_secs_f64(grace),
                duration: Duration::from_secs_f64(duration),
                connect_concurrency: common.concurrency,
                source_addrs: common.source_addrs,
                drain: Duration::from_secs_f64(drain),
                pid: target.pid,
            };
            cfg.plan()?;
            let r = s3::run(&target.target()?, &cfg).await.context("S3")?;
            report::s3_table(&r);
            report::json_line(&r.json());
        }
        Command::S4 {
            target,
            database_url,
            users,
            batch,
            rate,
            cold_rate,
            duration,
            max_in_flight,
            floor_pool,
        } => {
            let addr = loopback_addr(&target.url)?;
            let cfg = S4Config {
                database_url,
                users,
                batch,
                rates: rate,
                duration: Duration::from_secs_f64(duration),
                max_in_flight,
                cold_rate,
                floor_pool,
                pid: target.pid,
            };
            report::s4_header();
            let runs = s4::run(addr, &target.jwt_secret, &cfg, report::s4_row)
                .await
                .context("S4")?;
            let backend = if cfg.database_url.starts_with("sqlite") {
                "sqlite"
            } else {
                "postgres"
            };
            for r in &runs {
                report::json_line(&r.json(backend));
            }
            for v in report::s4_ratios(backend, &runs) {
                report::json_line(&v);
            }
        }
        Command::S5 {
            target,
            s2,
            swap_every,
            settle,
            plugin_a,
            plugin_b,
        } => {
            let mut cfgs = s2_configs(&s2, target.pid, true)?;
            if cfgs.len() != 1 {
                bail!("S5 runs one group size");
            }
            if s2.interval < 3.1 {
                bail!(
                    "S5 needs --interval ≥ 3.1 (e.g. 3.2): the large-groups policy allows one \
                     broadcast per 3 s, and the renewal halfway keeps its 3 s lease alive"
                );
            }
            let mut cfg = S5Config::with_s2(cfgs.remove(0));
            cfg.swap_every = Duration::from_secs_f64(swap_every);
            cfg.settle = Duration::from_secs_f64(settle);
            cfg.a = s5::component(&plugin_a)?;
            cfg.b = s5::component(&plugin_b)?;
            let r = s5::run(&target.target()?, &cfg).await.context("S5")?;
            report::s5_table(&r);
            report::json_line(&r.json());
        }
        Command::S6 {
            target,
            s2,
            slow_share,
            slow_after,
            slow_rcvbuf,
        } => {
            let mut cfgs = s2_configs(&s2, target.pid, false)?;
            if cfgs.len() != 1 {
                bail!("S6 runs one group size");
            }
            let mut cfg = cfgs.remove(0);
            cfg.slow_share = slow_share;
            cfg.slow_after = Duration::from_secs_f64(slow_after);
            cfg.slow_recv_buffer = (slow_rcvbuf > 0).then_some(slow_rcvbuf);
            cfg.plan()?;
            let r = s6::run(&target.target()?, &cfg).await.context("S6")?;
            report::s6_table(&r);
            report::json_line(&r.json());
        }
        Command::S7 {
            target,
            s2,
            minutes,
            churners,
            hold,
            warmup,
            settle,
        } => {
            let mut cfgs = s2_configs(&s2, target.pid, false)?;
            if cfgs.len() != 1 {
                bail!("S7 runs one group size (--groups 10)");
            }
            let mut steady = cfgs.remove(0);
            steady.duration = Duration::from_secs_f64(minutes * 60.0);
            steady.plan()?;
            let cfg = S7Config {
                s2: steady,
                churners,
                hold: Duration::from_secs_f64(hold),
                warmup: Duration::from_secs_f64(warmup),
                settle: Duration::from_secs_f64(settle),
            };
            let r = s7::run(&target.target()?, &cfg).await.context("S7")?;
            report::s7_table(&r);
            report::json_line(&r.json());
        }
        Command::Chart { input, out_dir } => {
            let mut runs = Vec::new();
            for f in &input {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                runs.extend(chart::json_lines(&text));
            }
            let written = chart::write_charts(&runs, &out_dir)?;
            if written.is_empty() {
                bail!("no S1 or S2 lines in the input: nothing to chart");
            }
            for p in written {
                println!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut limit = Duration::from_secs(cli.max_seconds);
    if let Command::S7 {
        minutes,
        warmup,
        settle,
        ..
    } = &cli.command
    {
        // Two runs of setup and drain besides the soak itself.
        let needed = minutes * 60.0 + warmup + 2.0 * settle + 600.0;
        limit = limit.max(Duration::from_secs_f64(needed));
    }
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
