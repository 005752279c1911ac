//! S1: idle connections. N connections from N/1.3 users — 30 % of the users
//! on two devices — opened `connect_concurrency` at a time, each waiting for
//! `ready` (so a connect includes the server's JWT verification, session
//! setup and the status fan-out it causes). Reports connects per second,
//! connects per server CPU-second, server RSS per connection (after a short
//! settle) and the server's CPU use while the connections sit idle. Then the
//! reconnect storm: every client drops at once and reconnects at once (as
//! after a network blip), timed until every one has its `ready` again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::net::{Admin, Sources, Target, Ws, connect_client, token};
use crate::procstat;

#[derive(Clone, Debug)]
pub struct S1Config {
    pub connections: usize,
    /// Share of users with a second connection.
    pub two_device_share: f64,
    pub connect_concurrency: usize,
    /// How long the connections are held idle after the settle.
    pub hold: Duration,
    /// Wait after the last connect before reading RSS.
    pub settle: Duration,
    pub source_addrs: Option<usize>,
    pub pid: Option<u32>,
}

impl Default for S1Config {
    fn default() -> Self {
        S1Config {
            connections: 2000,
            two_device_share: 0.3,
            connect_concurrency: 64,
            hold: Duration::from_secs(3),
            settle: Duration::from_secs(2),
            source_addrs: None,
            pid: None,
        }
    }
}

impl S1Config {
    /// (users, users with two connections) for the connection count.
    pub fn users(&self) -> (usize, usize) {
        let users = ((self.connections as f64 / (1.0 + self.two_device_share)).round() as usize)
            .clamp(1, self.connections.max(1));
        (users, self.connections - users)
    }
}

#[derive(Clone, Debug)]
pub struct S1Result {
    pub target: &'static str,
    pub connections: usize,
    pub users: usize,
    pub two_device_users: usize,
    pub connect_time: Duration,
    pub connects_per_sec: f64,
    pub connect_cpu_sec: Option<f64>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// Server CPU seconds per wall second while idle-holding.
    pub idle_cpu_share: Option<f64>,
    /// Connections that ended while they should have been held.
    pub errors: u64,
    /// Frames received after `ready` (status fan-out and such).
    pub frames: u64,
    /// From the drop of every connection until all have `ready` again.
    pub storm_time: Duration,
    pub storm_cpu_sec: Option<f64>,
}

impl S1Result {
    pub fn rss_per_connection_kib(&self) -> Option<f64> {
        match (self.rss_before_kib, self.rss_after_kib) {
            (Some(b), Some(a)) => Some((a as f64 - b as f64) / self.connections as f64),
            _ => None,
        }
    }

    pub fn connects_per_cpu_sec(&self) -> Option<f64> {
        self.connect_cpu_sec
            .filter(|c| *c > 0.0)
            .map(|c| self.connections as f64 / c)
    }

    pub fn storm_per_cpu_sec(&self) -> Option<f64> {
        self.storm_cpu_sec
            .filter(|c| *c > 0.0)
            .map(|c| self.connections as f64 / c)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "s1",
            "target": self.target,
            "connections": self.connections,
            "users": self.users,
            "two_device_users": self.two_device_users,
            "connect_s": self.connect_time.as_secs_f64(),
            "connects_per_s": self.connects_per_sec,
            "connect_cpu_s": self.connect_cpu_sec,
            "connects_per_cpu_s": self.connects_per_cpu_sec(),
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "rss_per_connection_kib": self.rss_per_connection_kib(),
            "idle_cpu_share": self.idle_cpu_share,
            "errors": self.errors,
            "frames": self.frames,
            "storm_s": self.storm_time.as_secs_f64(),
            "storm_cpu_s": self.storm_cpu_sec,
            "storm_connects_per_cpu_s": self.storm_per_cpu_sec(),
        })
    }
}

pub async fn run(target: &Target, cfg: &S1Config) -> anyhow::Result<S1Result> {
    let (n_users, two) = cfg.users();
    let users: Vec<(Uuid, String)> = (0..n_users)
        .map(|i| (Uuid::new_v4(), format!("I{i}")))
        .collect();
    if let Target::Presence {
        addr, admin_key, ..
    } = target
    {
        Admin::new(*addr, admin_key)
            .users(&users)
            .await
            .context("creating users")?;
    }
    // Tokens are signed before the clock starts: the connect rate is the server's.
    let tokens: Vec<Option<String>> = users
        .iter()
        .map(|(id, name)| match target {
            Target::Presence { jwt_secret, .. } => Some(token(jwt_secret, *id, name)),
            Target::Floor { .. } => None,
        })
        .collect();
    // Users 0..two get a second device, opened after all first devices.
    let plan: Vec<usize> = (0..n_users).chain(0..two).collect();
    let sources = Sources::new(cfg.source_addrs, plan.len());
    let frames = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));

    let before = cfg.pid.and_then(procstat::sample);
    let started = Instant::now();
    let connected = connect_all(target, &plan, &tokens, &sources, cfg.connect_concurrency).await;
    let connect_time = started.elapsed();
    let after_connect = cfg.pid.and_then(procstat::sample);

    let mut held = JoinSet::new();
    for c in connected {
        let mut ws = c.context("connecting a client")?;
        let (frames, ended) = (frames.clone(), ended.clone());
        held.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
                if m.is_text() {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
            }
            ended.fetch_add(1, Ordering::Relaxed);
        });
    }
    tokio::time::sleep(cfg.settle).await;
    let settled = cfg.pid.and_then(procstat::sample);
    let hold_started = Instant::now();
    tokio::time::sleep(cfg.hold).await;
    let held_until = cfg.pid.and_then(procstat::sample);
    let hold_time = hold_started.elapsed().as_secs_f64();
    let errors = ended.load(Ordering::Relaxed);

    // The storm: fresh source addresses, since the dropped sockets linger in TIME_WAIT.
    let storm_sources = sources.next_set();
    let storm_before = cfg.pid.and_then(procstat::sample);
    let storm_started = Instant::now();
    held.abort_all();
    while held.join_next().await.is_some() {}
    let again = connect_all(
        target,
        &plan,
        &tokens,
        &storm_sources,
        cfg.connect_concurrency,
    )
    .await;
    let storm_time = storm_started.elapsed();
    let storm_after = cfg.pid.and_then(procstat::sample);
    for c in &again {
        if let Err(e) = c {
            anyhow::bail!("reconnecting in the storm: {e:#}");
        }
    }
    drop(again);

    Ok(S1Result {
        target: target.name(),
        connections: plan.len(),
        users: n_users,
        two_device_users: two,
        connect_time,
        connects_per_sec: plan.len() as f64 / connect_time.as_secs_f64(),
        connect_cpu_sec: match (before, after_connect) {
            (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a)),
            _ => None,
        },
        rss_before_kib: before.map(|s| s.rss_kib),
        rss_after_kib: settled.map(|s| s.rss_kib),
        idle_cpu_share: match (settled, held_until) {
            (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a) / hold_time),
            _ => None,
        },
        errors,
        frames: frames.load(Ordering::Relaxed),
        storm_time,
        storm_cpu_sec: match (storm_before, storm_after) {
            (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a)),
            _ => None,
        },
    })
}

/// Opens a connection for each user in `plan`, `concurrency` at a time, each
/// until its `ready`.
async fn connect_all(
    target: &Target,
    plan: &[usize],
    tokens: &[Option<String>],
    sources: &Arc<Sources>,
    concurrency: usize,
) -> Vec<anyhow::Result<Ws>> {
    futures_util::stream::iter(plan.iter().map(|&u| {
        let tok = tokens[u].as_deref();
        async move { connect_client(target, sources, tok, &format!("idle-{u}")).await }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_percent_of_users_have_two_devices() {
        let cfg = S1Config {
            connections: 1300,
            ..S1Config::default()
        };
        assert_eq!(cfg.users(), (1000, 300));
        let cfg = S1Config {
            connections: 20,
            ..S1Config::default()
        };
        let (u, two) = cfg.users();
        assert_eq!(u + two, 20);
        assert_eq!(u, 15);
    }
}
