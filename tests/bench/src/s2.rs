//! S2: typing fan-out. Groups of G connected members; in each group one member
//! (or `typers_per_group`) alternates `typing_start` / `typing_stop` on an
//! open-loop schedule; every other member receives a `user_typing` per event.
//!
//! Open loop: event k of typer i is due at `start + i/R + k·interval`, whatever
//! happened before. Its latency is measured at each receiver from that
//! *intended* time, so a late sender (or a stalled server) shows up in the
//! percentiles instead of silently slowing the schedule (no coordinated
//! omission).
//!
//! The default typing policy broadcasts at most once per second per user and
//! conversation and coalesces transitions inside that window; a state also
//! ends by itself after a 5 s lease. So each typer sends one transition every
//! `interval` (1.1 s ≤ interval < 5 s, default 1.5 s) and the total rate R is
//! reached by spreading events over R·interval typers: R events/s needs
//! R·interval groups (with one typer each) and R·interval·G connections. Each
//! typer sends an even number of events (ending with `typing_stop`) so no
//! lease expiry adds a delivery. With these rules every event is delivered to
//! exactly G−1 members; fewer means the server coalesced or lost some.
//!
//! Against the floor (S0) the sender sends the `user_typing` frame a receiver
//! would get, and group membership is a join message instead of the admin API;
//! the receiving path is the same code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::net::{Admin, Sources, Target, Ws, connect_client, token};
use crate::procstat;

/// Parameters of one S2 run (one group size).
#[derive(Clone, Debug)]
pub struct S2Config {
    pub group_size: usize,
    /// Events per second, all typers together.
    pub rate: f64,
    /// Schedule length (rounded to whole start/stop pairs per typer).
    pub duration: Duration,
    /// Time between two events of one typer.
    pub interval: Duration,
    pub typers_per_group: usize,
    /// Refuse to open more connections than this.
    pub max_connections: usize,
    /// Connects in flight during setup.
    pub connect_concurrency: usize,
    /// Number of 127.0.0.x source addresses (None: from the connection count).
    pub source_addrs: Option<usize>,
    /// How long to wait after the last send for outstanding deliveries.
    pub drain: Duration,
    /// Server pid for CPU and RSS (None: not measured).
    pub pid: Option<u32>,
}

impl Default for S2Config {
    fn default() -> Self {
        S2Config {
            group_size: 10,
            rate: 100.0,
            duration: Duration::from_secs(6),
            interval: Duration::from_millis(1500),
            typers_per_group: 1,
            max_connections: 8000,
            connect_concurrency: 64,
            source_addrs: None,
            drain: Duration::from_secs(5),
            pid: None,
        }
    }
}

/// The plan derived from a config.
#[derive(Clone, Debug, PartialEq)]
pub struct S2Plan {
    pub typers: usize,
    pub groups: usize,
    pub connections: usize,
    pub events_per_typer: usize,
    /// Length of the send schedule: events_per_typer × interval.
    pub span: Duration,
}

impl S2Config {
    pub fn plan(&self) -> anyhow::Result<S2Plan> {
        if self.group_size < 2 {
            bail!("group size must be at least 2");
        }
        if !self.rate.is_finite() || self.rate <= 0.0 {
            bail!("rate must be positive");
        }
        let iv = self.interval.as_secs_f64();
        if !(1.1..5.0).contains(&iv) {
            bail!(
                "interval {iv}s: must be within [1.1 s, 5 s) — inside the 1 s rate window the \
                 server coalesces, past the 5 s lease it stops typing by itself"
            );
        }
        let tpg = self.typers_per_group.clamp(1, self.group_size);
        let typers = ((self.rate * iv).round() as usize).max(1);
        let groups = typers.div_ceil(tpg);
        let typers = groups * tpg;
        let connections = groups * self.group_size;
        if connections > self.max_connections {
            bail!(
                "group {}: rate {} ev/s needs {typers} typers × interval {iv}s → {connections} \
                 connections, over the cap of {}; lower --rate or raise --connections",
                self.group_size,
                self.rate,
                self.max_connections
            );
        }
        let pairs = ((self.duration.as_secs_f64() / (2.0 * iv)).round() as usize).max(1);
        let events_per_typer = 2 * pairs;
        Ok(S2Plan {
            typers,
            groups,
            connections,
            events_per_typer,
            span: self.interval * events_per_typer as u32,
        })
    }
}

/// What one S2 run measured.
#[derive(Clone, Debug)]
pub struct S2Result {
    pub target: &'static str,
    pub group_size: usize,
    pub plan: S2Plan,
    pub events_sent: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    /// Deliveries not matching a typer of this run, or with the wrong state.
    pub unmatched: u64,
    /// Typers whose receivers got a count other than sent × (G−1).
    pub typers_off: u64,
    /// Error frames, send failures and connections lost during the run.
    pub errors: u64,
    /// Sends that started more than 10 ms after their intended time.
    pub late_sends: u64,
    pub histogram: Histogram<u64>,
    pub events_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub server_cpu_sec: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub setup: Duration,
}

impl S2Result {
    pub fn deliveries_per_cpu_sec(&self) -> Option<f64> {
        self.server_cpu_sec
            .filter(|c| *c > 0.0)
            .map(|c| self.deliveries as f64 / c)
    }

    /// Latency percentile in microseconds.
    pub fn latency_us(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": if self.target == "floor" { "s0" } else { "s2" },
            "target": self.target,
            "group_size": self.group_size,
            "groups": self.plan.groups,
            "typers": self.plan.typers,
            "connections": self.plan.connections,
            "span_s": self.plan.span.as_secs_f64(),
            "events_sent": self.events_sent,
            "deliveries": self.deliveries,
            "expected_deliveries": self.expected_deliveries,
            "unmatched": self.unmatched,
            "typers_off": self.typers_off,
            "errors": self.errors,
            "late_sends": self.late_sends,
            "events_per_s": self.events_per_sec,
            "deliveries_per_s": self.deliveries_per_sec,
            "latency_us": {
                "p50": self.latency_us(0.5),
                "p99": self.latency_us(0.99),
                "p999": self.latency_us(0.999),
                "max": self.histogram.max(),
                "count": self.histogram.len(),
            },
            "server_cpu_s": self.server_cpu_sec,
            "deliveries_per_cpu_s": self.deliveries_per_cpu_sec(),
            "server_rss_kib": self.server_rss_kib,
            "setup_s": self.setup.as_secs_f64(),
        })
    }
}

/// One typer: who, where, and the intended send time (ns after `epoch`) of
/// its latest start (index 1) and stop (index 0).
struct Typer {
    conversation: Uuid,
    intended: [AtomicU64; 2],
    sent: AtomicU64,
    received: AtomicU64,
}

const SHARDS: usize = 16;

struct Shared {
    epoch: Instant,
    typers: Vec<Typer>,
    by_user: HashMap<Uuid, usize>,
    histograms: Vec<Mutex<Histogram<u64>>>,
    deliveries: AtomicU64,
    unmatched: AtomicU64,
    errors: AtomicU64,
    stopping: AtomicBool,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    data: Option<FrameData>,
}

#[derive(Deserialize)]
struct FrameData {
    conversation_id: Option<Uuid>,
    user_id: Option<Uuid>,
    is_typing: Option<bool>,
}

impl Shared {
    fn on_text(&self, text: &str, shard: usize) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match frame.kind {
            "user_typing" => {}
            "error" => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Status changes, pongs: not ours to count.
            _ => return,
        }
        let data = frame.data.unwrap_or(FrameData {
            conversation_id: None,
            user_id: None,
            is_typing: None,
        });
        let (Some(conv), Some(user), Some(typing)) =
            (data.conversation_id, data.user_id, data.is_typing)
        else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(&i) = self.by_user.get(&user) else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let typer = &self.typers[i];
        let intended = typer.intended[typing as usize].load(Ordering::Acquire);
        if typer.conversation != conv || intended == 0 {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let latency_us = now.saturating_sub(intended) / 1000;
        self.histograms[shard % SHARDS]
            .lock()
            .unwrap()
            .saturating_record(latency_us.max(1));
        typer.received.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }
}

async fn reader(
    mut stream: futures_util::stream::SplitStream<Ws>,
    shared: Arc<Shared>,
    shard: usize,
) {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(t)) => shared.on_text(t.as_str(), shard),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if !shared.stopping.load(Ordering::Relaxed) {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
}

struct Member {
    user: Uuid,
    conversation: Uuid,
    typer: Option<usize>,
}

/// Runs S2 (or S0 when `target` is the floor) for one group size.
pub async fn run(target: &Target, cfg: &S2Config) -> anyhow::Result<S2Result> {
    let plan = cfg.plan()?;
    let g = cfg.group_size;
    let tpg = cfg.typers_per_group.clamp(1, g);
    let setup_started = Instant::now();

    // Groups, members and typers.
    let mut members = Vec::with_capacity(plan.connections);
    let mut typers = Vec::with_capacity(plan.typers);
    let mut convs = Vec::with_capacity(plan.groups);
    for _ in 0..plan.groups {
        let conversation = Uuid::new_v4();
        let users: Vec<Uuid> = (0..g).map(|_| Uuid::new_v4()).collect();
        for (j, &user) in users.iter().enumerate() {
            let typer = (j < tpg).then(|| {
                typers.push((user, conversation));
                typers.len() - 1
            });
            members.push(Member {
                user,
                conversation,
                typer,
            });
        }
        convs.push((conversation, users));
    }
    if let Target::Presence {
        addr, admin_key, ..
    } = target
    {
        let admin = Admin::new(*addr, admin_key);
        let users: Vec<(Uuid, String)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.user, format!("B{i}")))
            .collect();
        admin.users(&users).await.context("creating users")?;
        admin
            .conversations(&convs)
            .await
            .context("creating conversations")?;
    }
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        by_user: typers
            .iter()
            .enumerate()
            .map(|(i, (u, _))| (*u, i))
            .collect(),
        typers: typers
            .iter()
            .map(|(_, c)| Typer {
                conversation: *c,
                intended: [AtomicU64::new(0), AtomicU64::new(0)],
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
            })
            .collect(),
        histograms: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        deliveries: AtomicU64::new(0),
        unmatched: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });

    // Connect everyone, cfg.connect_concurrency at a time.
    let sources = Sources::new(cfg.source_addrs, plan.connections);
    let connected: Vec<anyhow::Result<(usize, Ws)>> =
        futures_util::stream::iter(members.iter().enumerate().map(|(i, m)| {
            let sources = sources.clone();
            async move {
                let tok = match target {
                    Target::Presence { jwt_secret, .. } => {
                        Some(token(jwt_secret, m.user, &format!("B{i}")))
                    }
                    Target::Floor { .. } => None,
                };
                let ws = connect_client(
                    target,
                    &sources,
                    tok.as_deref(),
                    &m.conversation.to_string(),
                )
                .await?;
                Ok((i, ws))
            }
        }))
        .buffer_unordered(cfg.connect_concurrency.max(1))
        .collect()
        .await;
    let mut readers = JoinSet::new();
    let mut sinks: Vec<Option<SplitSink<Ws, Message>>> = (0..members.len()).map(|_| None).collect();
    for c in connected {
        let (i, ws) = c.context("connecting a client")?;
        let (sink, stream) = ws.split();
        sinks[i] = Some(sink);
        readers.spawn(reader(stream, shared.clone(), i));
    }
    // Let connect-time traffic (status fan-out) settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup = setup_started.elapsed();

    let before = cfg.pid.and_then(procstat::sample);
    let start = Instant::now() + Duration::from_millis(200);
    let late = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    let mut idle_sinks = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let sink = sinks[i].take().expect("every member connected");
        let Some(t) = m.typer else {
            idle_sinks.push(sink);
            continue;
        };
        let shared = shared.clone();
        let late = late.clone();
        let offset = Duration::from_secs_f64(t as f64 / cfg.rate);
        let (interval, n, user, conv) =
            (cfg.interval, plan.events_per_typer, m.user, m.conversation);
        let floor = target.is_floor();
        senders.spawn(typer_task(
            sink,
            shared,
            late,
            start + offset,
            interval,
            n,
            t,
            user,
            conv,
            floor,
        ));
    }
    while let Some(r) = senders.join_next().await {
        r.context("sender task")?;
    }
    // Drain: until every expected delivery is in, or the drain time is up.
    let sent: u64 = shared
        .typers
        .iter()
        .map(|t| t.sent.load(Ordering::Relaxed))
        .sum();
    let expected = sent * (g as u64 - 1);
    let drain_until = Instant::now() + cfg.drain;
    while shared.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = cfg.pid.and_then(procstat::sample);
    shared.stopping.store(true, Ordering::Relaxed);
    readers.abort_all();
    drop(idle_sinks);

    let mut histogram = new_histogram();
    for h in &shared.histograms {
        histogram.add(&*h.lock().unwrap()).expect("same bounds");
    }
    let typers_off = shared
        .typers
        .iter()
        .filter(|t| {
            t.received.load(Ordering::Relaxed) != t.sent.load(Ordering::Relaxed) * (g as u64 - 1)
        })
        .count() as u64;
    let deliveries = shared.deliveries.load(Ordering::Relaxed);
    let span = plan.span.as_secs_f64();
    Ok(S2Result {
        target: target.name(),
        group_size: g,
        events_sent: sent,
        deliveries,
        expected_deliveries: expected,
        unmatched: shared.unmatched.load(Ordering::Relaxed),
        typers_off,
        errors: shared.errors.load(Ordering::Relaxed),
        late_sends: late.load(Ordering::Relaxed),
        histogram,
        events_per_sec: sent as f64 / span,
        deliveries_per_sec: deliveries as f64 / span,
        server_cpu_sec: match (before, after) {
            (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a)),
            _ => None,
        },
        server_rss_kib: after.map(|a| a.rss_kib),
        setup,
        plan,
    })
}

#[allow(clippy::too_many_arguments)]
async fn typer_task(
    mut sink: SplitSink<Ws, Message>,
    shared: Arc<Shared>,
    late: Arc<AtomicU64>,
    first: Instant,
    interval: Duration,
    events: usize,
    index: usize,
    user: Uuid,
    conversation: Uuid,
    floor: bool,
) {
    let typer = &shared.typers[index];
    for k in 0..events {
        let due = first + interval * k as u32;
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > Duration::from_millis(10) {
            late.fetch_add(1, Ordering::Relaxed);
        }
        let typing = k % 2 == 0;
        let frame = if floor {
            json!({"type": "user_typing", "data": {
                "conversation_id": conversation, "user_id": user, "is_typing": typing}})
        } else {
            let kind = if typing {
                "typing_start"
            } else {
                "typing_stop"
            };
            json!({"type": kind, "data": {"conversation_id": conversation}})
        };
        let due_ns = (due - shared.epoch).as_nanos() as u64;
        typer.intended[typing as usize].store(due_ns, Ordering::Release);
        if sink.send(Message::text(frame.to_string())).await.is_err() {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        typer.sent.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spreads_the_rate_over_typers() {
        let cfg = S2Config {
            group_size: 10,
            rate: 200.0,
            duration: Duration::from_secs(6),
            ..S2Config::default()
        };
        let p = cfg.plan().unwrap();
        assert_eq!(p.typers, 300);
        assert_eq!(p.groups, 300);
        assert_eq!(p.connections, 3000);
        assert_eq!(p.events_per_typer, 4);
        assert_eq!(p.span, Duration::from_secs(6));
    }

    #[test]
    fn plan_refuses_rates_over_the_connection_cap_and_bad_intervals() {
        let cfg = S2Config {
            group_size: 100,
            rate: 1000.0,
            ..S2Config::default()
        };
        assert!(cfg.plan().is_err());
        let cfg = S2Config {
            interval: Duration::from_millis(900),
            ..S2Config::default()
        };
        assert!(cfg.plan().is_err());
    }
}
