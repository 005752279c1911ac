//! S4: REST batch status. `GET /api/v1/users/status?user_ids=<100 ids>` with
//! a user JWT, open loop at each rate, latency from the intended send time;
//! the floor is the same SELECT the server's store runs (`… WHERE id IN
//! (…)` on SQLite, `… WHERE id = ANY($1)` on PostgreSQL), issued directly
//! with sqlx against the same database on the same schedule.
//!
//! The users are inserted straight into the database (as a chat backend that
//! shares it would have them), so the server has never cached them: the
//! **cold** phase asks for every user once (each 100-id batch new to the
//! server: profile loads plus each subject's contacts and conversations),
//! the **warm** phases ask random 100-id windows of the same users.
//!
//! CPU: the presence server's from `/proc/<pid>`; on PostgreSQL also the
//! database backends serving it (found through its sockets) and those
//! serving the direct floor pool. The direct floor on SQLite runs inside
//! this process, so its CPU is this process's (an upper bound).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::json;
use sqlx::{PgPool, Row, SqlitePool};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::net::token;
use crate::procstat;
use crate::s2::new_histogram;

#[derive(Clone, Debug)]
pub struct S4Config {
    /// The server's database (the floor's too).
    pub database_url: String,
    pub users: usize,
    pub batch: usize,
    /// Queries per second of each warm run.
    pub rates: Vec<f64>,
    pub duration: Duration,
    /// Requests in flight at most (a later one waits; its latency still
    /// counts from its intended time).
    pub max_in_flight: usize,
    /// Cold phase rate (every user once).
    pub cold_rate: f64,
    /// Connections of the floor's pool.
    pub floor_pool: u32,
    pub pid: Option<u32>,
}

impl Default for S4Config {
    fn default() -> Self {
        S4Config {
            database_url: String::new(),
            users: 10_000,
            batch: 100,
            rates: vec![200.0],
            duration: Duration::from_secs(5),
            max_in_flight: 64,
            cold_rate: 50.0,
            floor_pool: 4,
            pid: None,
        }
    }
}

/// One schedule against one target.
#[derive(Clone, Debug)]
pub struct S4Run {
    pub target: &'static str,
    pub phase: &'static str,
    pub rate: f64,
    pub queries: u64,
    pub errors: u64,
    /// Status objects returned (presence) or rows (direct), all queries.
    pub rows: u64,
    pub late: u64,
    pub queries_per_sec: f64,
    pub histogram: Histogram<u64>,
    /// The serving process's CPU (server, or this process for direct SQLite).
    pub cpu_sec: Option<f64>,
    /// PostgreSQL backends' CPU serving this target.
    pub db_cpu_sec: Option<f64>,
}

impl S4Run {
    pub fn p(&self, q: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_quantile(q)
        }
    }

    pub fn queries_per_cpu_sec(&self) -> Option<f64> {
        if self.cpu_sec.is_none() && self.db_cpu_sec.is_none() {
            return None;
        }
        let cpu = self.cpu_sec.unwrap_or(0.0) + self.db_cpu_sec.unwrap_or(0.0);
        (cpu > 0.0).then(|| self.queries as f64 / cpu)
    }

    pub fn json(&self, backend: &str) -> serde_json::Value {
        json!({
            "scenario": "s4",
            "backend": backend,
            "target": self.target,
            "phase": self.phase,
            "rate": self.rate,
            "queries": self.queries,
            "errors": self.errors,
            "rows": self.rows,
            "late": self.late,
            "queries_per_s": self.queries_per_sec,
            "latency_us": {"p50": self.p(0.5), "p99": self.p(0.99), "p999": self.p(0.999),
                           "max": self.histogram.max(), "count": self.histogram.len()},
            "cpu_s": self.cpu_sec,
            "db_cpu_s": self.db_cpu_sec,
            "queries_per_cpu_s": self.queries_per_cpu_sec(),
        })
    }
}

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

const USER_COLUMNS: &str =
    "id, username, display_name, status, last_seen, show_last_seen, last_seen_visibility";

impl Db {
    fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    async fn connect(url: &str, size: u32) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(size)
                .min_connections(size)
                .connect(url)
                .await
                .with_context(|| format!("opening {url}"))?;
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(size)
                .min_connections(size)
                .connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Db::Postgres(pool))
        } else {
            bail!("--database-url must be sqlite:… or postgres:…");
        }
    }

    /// Inserts the users the way a chat backend sharing the database would.
    async fn insert_users(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for (i, id) in ids.iter().enumerate() {
                    sqlx::query("INSERT INTO users (id, username, display_name) VALUES (?, ?, ?)")
                        .bind(id.hyphenated().to_string())
                        .bind(format!("r{i}"))
                        .bind(format!("R{i}"))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                for chunk in ids.chunks(5000) {
                    let names: Vec<String> = chunk.iter().map(|u| format!("r{u}")).collect();
                    sqlx::query(
                        "INSERT INTO users (id, username, display_name) \
                         SELECT * FROM UNNEST($1::uuid[], $2::text[], $2::text[])",
                    )
                    .bind(chunk)
                    .bind(&names)
                    .execute(pool)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// The store's batch SELECT; returns the rows decoded as the store does.
    async fn batch(&self, ids: &[Uuid]) -> anyhow::Result<u64> {
        match self {
            Db::Sqlite(pool) => {
                let marks = vec!["?"; ids.len()].join(", ");
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id IN ({marks})");
                let mut q = sqlx::query(&sql);
                for id in ids {
                    q = q.bind(id.hyphenated().to_string());
                }
                let rows = q.fetch_all(pool).await?;
                for r in &rows {
                    let id: String = r.try_get("id")?;
                    let _: Uuid = id.parse()?;
                    let _: Option<String> = r.try_get("username")?;
                    let _: Option<String> = r.try_get("display_name")?;
                    let _: Option<String> = r.try_get("status")?;
                    let _: Option<String> = r.try_get("last_seen")?;
                    let _: Option<bool> = r.try_get("show_last_seen")?;
                    let _: Option<String> = r.try_get("last_seen_visibility")?;
                }
                Ok(rows.len() as u64)
            }
            Db::Postgres(pool) => {
                let rows = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)"
                ))
                .bind(ids)
                .fetch_all(pool)
                .await?;
                for r in &rows {
                    let _: Uuid = r.try_get("id")?;
                    let _: Option<String> = r.try_get("username")?;
                    let _: Option<String> = r.try_get("display_name")?;
                    let _: Option<String> = r.try_get("status")?;
                    let _: Option<sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>> =
                        r.try_get("last_seen")?;
                    let _: Option<bool> = r.try_get("show_last_seen")?;
                    let _: Option<String> = r.try_get("last_seen_visibility")?;
                }
                Ok(rows.len() as u64)
            }
        }
    }

    /// Backend pids of every connection of this pool (PostgreSQL).
    async fn own_backends(&self, size: u32) -> anyhow::Result<Vec<u32>> {
        let Db::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        let mut held = Vec::new();
        let mut pids = Vec::new();
        for _ in 0..size {
            let mut c = pool.acquire().await?;
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *c)
                .await?;
            pids.push(pid as u32);
            held.push(c);
        }
        Ok(pids)
    }

    /// PostgreSQL backends whose client is a socket of process `pid`.
    async fn backends_of(&self, pid: u32) -> anyhow::Result<Vec<u32>> {
        let Db::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        let ports = client_ports(pid);
        let rows: Vec<(i32, Option<i32>)> =
            sqlx::query_as("SELECT pid, client_port FROM pg_stat_activity")
                .fetch_all(pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, port)| port.is_some_and(|p| ports.contains(&(p as u16))))
            .map(|(p, _)| p as u32)
            .collect())
    }
}

/// Local TCP ports of process `pid`'s sockets (from /proc/<pid>/fd and
/// /proc/<pid>/net/tcp).
fn client_ports(pid: u32) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(link) = std::fs::read_link(e.path()) {
                let l = link.to_string_lossy();
                if let Some(n) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(n.to_owned());
                }
            }
        }
    }
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && inodes.contains(f[9])
                && let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

fn cpu_of(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    Some(
        pids.iter()
            .filter_map(|p| procstat::sample(*p))
            .map(|s| s.cpu_ticks)
            .sum(),
    )
}

/// A tiny deterministic generator for batch offsets.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

enum Caller {
    Presence {
        http: reqwest::Client,
        base: String,
        tokens: Vec<String>,
    },
    Direct(Db),
}

impl Caller {
    async fn call(&self, ids: &[Uuid], k: usize) -> anyhow::Result<u64> {
        match self {
            Caller::Presence { http, base, tokens } => {
                let list: Vec<String> = ids.iter().map(|u| u.to_string()).collect();
                let resp = http
                    .get(format!(
                        "{base}/api/v1/users/status?user_ids={}",
                        list.join(",")
                    ))
                    .bearer_auth(&tokens[k % tokens.len()])
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                if !status.is_success() {
                    bail!("{status}: {}", String::from_utf8_lossy(&body));
                }
                // Count the objects without parsing the whole answer.
                let needle = b"\"user_id\"";
                Ok(body.windows(needle.len()).filter(|w| w == needle).count() as u64)
            }
            Caller::Direct(db) => db.batch(ids).await,
        }
    }
}

/// One open-loop schedule of `batches` at `rate`.
#[allow(clippy::too_many_arguments)]
async fn schedule(
    caller: Arc<Caller>,
    target: &'static str,
    phase: &'static str,
    batches: Vec<Vec<Uuid>>,
    rate: f64,
    max_in_flight: usize,
    cpu_pid: Option<u32>,
    db_pids: &[u32],
) -> S4Run {
    let hist = Arc::new(Mutex::new(new_histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let rows = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut late = 0;
    let expected = batches.first().map_or(0, |b| b.len()) as u64;
    let before = cpu_pid.and_then(procstat::sample);
    let db_before = cpu_of(db_pids);
    let started = Instant::now();
    let start = started + Duration::from_millis(50);
    let n = batches.len();
    let mut tasks = JoinSet::new();
    for (k, ids) in batches.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = sem.clone().acquire_owned().await.expect("open semaphore");
        if due.elapsed() > Duration::from_millis(10) {
            late += 1;
        }
        let (caller, hist, errors, rows) =
            (caller.clone(), hist.clone(), errors.clone(), rows.clone());
        tasks.spawn(async move {
            let r = caller.call(&ids, k).await;
            let us = due.elapsed().as_micros() as u64;
            drop(permit);
            match r {
                Ok(got) => {
                    hist.lock().unwrap().saturating_record(us.max(1));
                    rows.fetch_add(got, Ordering::Relaxed);
                    if got != expected {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let wall = started.elapsed().as_secs_f64();
    let after = cpu_pid.and_then(procstat::sample);
    let db_after = cpu_of(db_pids);
    let histogram = hist.lock().unwrap().clone();
    S4Run {
        target,
        phase,
        rate,
        queries: n as u64,
        errors: errors.load(Ordering::Relaxed),
        rows: rows.load(Ordering::Relaxed),
        late,
        queries_per_sec: n as f64 / wall,
        histogram,
        cpu_sec: match (before, after) {
            (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a)),
            _ => None,
        },
        db_cpu_sec: match (db_before, db_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / procstat::clk_tck()),
            _ => None,
        },
    }
}

/// Runs S4 against the presence server at `addr`: cold, then each rate
/// (direct floor first, then presence). Each finished run is passed to
/// `report` as it ends.
pub async fn run(
    addr: std::net::SocketAddr,
    jwt_secret: &str,
    cfg: &S4Config,
    mut report: impl FnMut(&str, &S4Run),
) -> anyhow::Result<Vec<S4Run>> {
    if cfg.batch == 0 || cfg.users < cfg.batch {
        bail!("need at least one batch of users");
    }
    if cfg.rates.iter().chain([&cfg.cold_rate]).any(|r| *r <= 0.0) {
        bail!("rates must be positive");
    }
    let db = Db::connect(&cfg.database_url, cfg.floor_pool.max(1)).await?;
    let backend = db.backend();
    let ids: Vec<Uuid> = (0..cfg.users).map(|_| Uuid::new_v4()).collect();
    db.insert_users(&ids).await.context("inserting users")?;
    let viewers: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    db.insert_users(&viewers)
        .await
        .context("inserting viewers")?;
    let presence = Arc::new(Caller::Presence {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(cfg.max_in_flight)
            .build()?,
        base: format!("http://{addr}"),
        tokens: viewers
            .iter()
            .enumerate()
            .map(|(i, v)| token(jwt_secret, *v, &format!("V{i}")))
            .collect(),
    });
    let direct = Arc::new(Caller::Direct(db.clone()));
    let floor_pids = db.own_backends(cfg.floor_pool.max(1)).await?;
    let own = std::process::id();
    let floor_cpu_pid = if backend == "sqlite" { Some(own) } else { None };
    // The server's backends: its pool may open more as load grows, so look
    // again before each run.
    let server_backends = |db: Db, pid: Option<u32>| async move {
        match pid {
            Some(p) => db.backends_of(p).await.unwrap_or_default(),
            None => Vec::new(),
        }
    };

    let mut out = Vec::new();
    // Cold: every user once, batches of disjoint ids, presence first (its
    // caches are empty), then the same batches directly.
    let cold: Vec<Vec<Uuid>> = ids.chunks_exact(cfg.batch).map(|c| c.to_vec()).collect();
    let sb = server_backends(db.clone(), cfg.pid).await;
    let r = schedule(
        presence.clone(),
        "presence",
        "cold",
        cold.clone(),
        cfg.cold_rate,
        cfg.max_in_flight,
        cfg.pid,
        &sb,
    )
    .await;
    report(backend, &r);
    out.push(r);
    let r = schedule(
        direct.clone(),
        "direct",
        "cold",
        cold,
        cfg.cold_rate,
        cfg.max_in_flight,
        floor_cpu_pid,
        &floor_pids,
    )
    .await;
    report(backend, &r);
    out.push(r);

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for &rate in &cfg.rates {
        let n = ((rate * cfg.duration.as_secs_f64()).round() as usize).max(1);
        let batches: Vec<Vec<Uuid>> = (0..n)
            .map(|_| {
                let o = (rng.next() % ids.len() as u64) as usize;
                (0..cfg.batch).map(|j| ids[(o + j) % ids.len()]).collect()
            })
            .collect();
        let r = schedule(
            direct.clone(),
            "direct",
            "warm",
            batches.clone(),
            rate,
            cfg.max_in_flight,
            floor_cpu_pid,
            &floor_pids,
        )
        .await;
        report(backend, &r);
        out.push(r);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sb = server_backends(db.clone(), cfg.pid).await;
        let r = schedule(
            presence.clone(),
            "presence",
            "warm",
            batches,
            rate,
            cfg.max_in_flight,
            cfg.pid,
            &sb,
        )
        .await;
        report(backend, &r);
        out.push(r);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(out)
}
