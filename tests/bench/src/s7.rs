//! S7: soak. The S2 driver at a steady rate (half of saturation, by the
//! caller's `--rate`) for a long schedule, while a second population of
//! users connects and disconnects over and over (each holds its connection
//! for `hold`, then reconnects), with contacts among them so every connect
//! and disconnect is a status fan-out.
//!
//! The server's RSS, open file descriptors and runtime tasks
//! (`presence_tasks`) are read four times:
//! - `baseline`: after a warm-up round (the same users and load for
//!   `warmup`, then everyone gone and settled), so the allocator's first
//!   growth and what the server keeps per user it has seen (profiles,
//!   caches) are not counted as a leak;
//! - `start`: the S2 population connected, before the churn;
//! - `after_churn`: the same population still connected, churners gone;
//! - `after_leave`: everyone gone and settled.
//!
//! `after_leave` must come back to `baseline` (within 5 %): what a long run
//! leaves behind shows as the difference. `after_churn` is compared with
//! `start` for information: it holds the load's working set (queues in
//! flight), which `start`, read before the load, does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::net::{self, Admin, Sources, Target};
use crate::procstat;
use crate::s2::{self, S2Config, S2Result};

/// Each churner has this many contacts among the other churners.
const CONTACTS_PER_CHURNER: usize = 5;
/// How often the settle wait looks at `/metrics`.
const SETTLE_POLL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct S7Config {
    /// The steady load; its `duration` is the soak's length.
    pub s2: S2Config,
    /// Users that connect and disconnect throughout.
    pub churners: usize,
    /// How long a churner keeps one connection.
    pub hold: Duration,
    /// Length of the warm-up round before the baseline.
    pub warmup: Duration,
    /// Longest wait for the server to settle once everyone has left (the
    /// offline grace and the `last_seen` flush run in it).
    pub settle: Duration,
}

/// One reading of the server process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    pub tasks: Option<u64>,
}

impl Reading {
    fn json(&self) -> serde_json::Value {
        json!({"rss_kib": self.rss_kib, "fds": self.fds, "tasks": self.tasks})
    }
}

#[derive(Clone, Debug)]
pub struct S7Result {
    pub s2: S2Result,
    pub baseline: Reading,
    pub start: Reading,
    pub after_churn: Reading,
    pub after_leave: Reading,
    /// Churner connections opened and closed during the soak.
    pub churn_cycles: u64,
    pub churn_errors: u64,
    pub soak_s: f64,
}

/// `later` against `earlier` in per cent (positive: grew).
pub fn growth(earlier: Option<u64>, later: Option<u64>) -> Option<f64> {
    let (e, l) = (earlier? as f64, later? as f64);
    (e > 0.0).then(|| (l - e) / e * 100.0)
}

impl S7Result {
    /// Whether the server came back to its baseline after everyone left:
    /// RSS, fds and tasks within `pct` per cent. (`after_churn` against
    /// `start` is the load's working set, reported but not judged.)
    pub fn within(&self, pct: f64) -> bool {
        let (a, b) = (self.baseline, self.after_leave);
        [(a.rss_kib, b.rss_kib), (a.fds, b.fds), (a.tasks, b.tasks)]
            .iter()
            .all(|&(x, y)| growth(x, y).is_none_or(|g| g <= pct))
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "s7",
            "target": self.s2.target,
            "group_size": self.s2.group_size,
            "connections": self.s2.plan.connections,
            "soak_s": self.soak_s,
            "events_sent": self.s2.events_sent,
            "deliveries": self.s2.deliveries,
            "expected_deliveries": self.s2.expected_deliveries,
            "deliveries_per_s": self.s2.deliveries_per_sec,
            "server_cpu_share": self.s2.server_cpu_share,
            "latency_us": {"p50": self.s2.latency_us(0.5), "p99": self.s2.latency_us(0.99)},
            "churn_cycles": self.churn_cycles,
            "churn_errors": self.churn_errors,
            "baseline": self.baseline.json(),
            "start": self.start.json(),
            "after_churn": self.after_churn.json(),
            "after_leave": self.after_leave.json(),
            "within_5_percent": self.within(5.0),
        })
    }
}

/// A seed for this run's ids: unique per run, like random ids.
fn rand_seed() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

/// Open file descriptors of `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

async fn read(admin: Option<&Admin>, pid: Option<u32>) -> Reading {
    let tasks = match admin {
        Some(a) => a.metric("presence_tasks").await.ok().flatten(),
        None => None,
    };
    Reading {
        rss_kib: pid.and_then(procstat::sample).map(|s| s.rss_kib),
        fds: pid.and_then(open_fds),
        tasks: tasks.map(|t| t as u64),
    }
}

/// Waits until no user is left within the offline grace (every online user
/// has a connection), the connections are `conns` if given, and the task
/// count stopped moving; or until `limit` passed.
async fn settle(admin: Option<&Admin>, conns: Option<f64>, limit: Duration) {
    let Some(admin) = admin else { return };
    let until = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < until {
        let read = admin
            .metrics(&[
                "presence_connections",
                "presence_online_users",
                "presence_tasks",
            ])
            .await;
        let [c, users, tasks] = read
            .ok()
            .and_then(|v| v.try_into().ok())
            .unwrap_or_default();
        let quiet = c.is_some() && users == c && conns.is_none_or(|n| c == Some(n));
        if quiet && tasks.is_some() && tasks == last {
            return;
        }
        last = tasks;
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// The churners: users with contacts among each other.
async fn churn_setup(target: &Target, n: usize) -> anyhow::Result<Vec<Uuid>> {
    let users: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    if let Target::Presence {
        addr, admin_key, ..
    } = target
    {
        let admin = Admin::new(*addr, admin_key);
        let named: Vec<(Uuid, String)> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (*u, format!("C{i}")))
            .collect();
        admin.users(&named).await.context("creating churners")?;
        let lists: Vec<(Uuid, Vec<Uuid>)> = (0..n)
            .map(|i| {
                let contacts = (1..=CONTACTS_PER_CHURNER.min(n.saturating_sub(1)))
                    .map(|k| users[(i + k) % n])
                    .collect();
                (users[i], contacts)
            })
            .collect();
        admin.contacts(&lists).await.context("churners' contacts")?;
    }
    Ok(users)
}

/// Connects, holds and closes each churner's connection until `until`,
/// staggered so connects spread over one `hold`.
async fn churn(target: Target, users: Vec<Uuid>, hold: Duration, until: Instant) -> (u64, u64) {
    let Target::Presence { jwt_secret, .. } = &target else {
        return (0, 0);
    };
    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let sources = Sources::new(None, users.len());
    let n = users.len().max(1) as u32;
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            let token = net::token(jwt_secret, user, &format!("C{i}"));
            let (target, sources) = (target.clone(), sources.clone());
            let (cycles, errors) = (cycles.clone(), errors.clone());
            tokio::spawn(async move {
                tokio::time::sleep(hold * i as u32 / n).await;
                // The last connection must be closed by `until`.
                while Instant::now() + hold < until {
                    match net::connect_client(&target, &sources, Some(&token), "").await {
                        Ok(mut ws) => {
                            let held = tokio::time::sleep(hold);
                            tokio::pin!(held);
                            loop {
                                tokio::select! {
                                    _ = &mut held => break,
                                    m = ws.next() => if m.is_none_or(|m| m.is_err()) { break },
                                }
                            }
                            let _ = ws.send(Message::Close(None)).await;
                            while let Ok(Some(Ok(_))) =
                                tokio::time::timeout(Duration::from_secs(5), ws.next()).await
                            {
                            }
                            cycles.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(hold).await;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (
        cycles.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    )
}

pub async fn run(target: &Target, cfg: &S7Config) -> anyhow::Result<S7Result> {
    let admin = match target {
        Target::Presence {
            addr, admin_key, ..
        } => Some(Admin::new(*addr, admin_key)),
        Target::Floor { .. } => None,
    };
    let pid = cfg.s2.pid;
    let churners = churn_setup(target, cfg.churners).await?;

    // Warm-up: the same users, load and churn, briefly, so that what the
    // server keeps per user it has seen is in the baseline.
    let steady = S2Config {
        ids_seed: Some(rand_seed()),
        ..cfg.s2.clone()
    };
    let warm = S2Config {
        duration: cfg.warmup,
        ..steady.clone()
    };
    let (t, c, hold) = (target.clone(), churners.clone(), cfg.hold);
    s2::run_with(target, &warm, move |ctx| churn(t, c, hold, ctx.until))
        .await
        .context("S7 warm-up")?;
    settle(admin.as_ref(), Some(0.0), cfg.settle).await;
    let baseline = read(admin.as_ref(), pid).await;

    let (t, a, limit) = (target.clone(), admin.clone(), cfg.settle);
    let (r, (start, after_churn, cycles, errors)) =
        s2::run_with(target, &steady, move |ctx| async move {
            let start = read(a.as_ref(), pid).await;
            let (cycles, errors) = churn(t, churners, hold, ctx.until).await;
            settle(a.as_ref(), None, limit).await;
            let after_churn = read(a.as_ref(), pid).await;
            (start, after_churn, cycles, errors)
        })
        .await
        .context("S7 soak")?;
    settle(admin.as_ref(), Some(0.0), cfg.settle).await;
    let after_leave = read(admin.as_ref(), pid).await;
    Ok(S7Result {
        soak_s: cfg.s2.duration.as_secs_f64(),
        s2: r,
        baseline,
        start,
        after_churn,
        after_leave,
        churn_cycles: cycles,
        churn_errors: errors,
    })
}
