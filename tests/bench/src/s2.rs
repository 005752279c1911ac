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
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::net::{Admin, Sources, Target, Ws, connect_client_with, token};
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
    /// Renew each typing state halfway through it with a second
    /// `typing_start` (no broadcast expected): keeps a state alive across
    /// intervals longer than a policy's lease (S5: a 3 s lease and a 3 s
    /// window need an interval ≥ 3 s between transitions).
    pub renew: bool,
    /// Share of all connections (taken from non-typers) that stop reading
    /// at `slow_after` (S6). Their frames are not counted as deliveries.
    pub slow_share: f64,
    /// When the slow consumers stop reading, after the schedule's start.
    pub slow_after: Duration,
    /// `SO_RCVBUF` of the slow consumers' sockets (None: the system's).
    pub slow_recv_buffer: Option<u32>,
    /// Keep every delivery's (intended time, latency) for phase splits.
    pub timeline: bool,
    /// Derive user and conversation ids from this seed instead of at random,
    /// so that two runs use the same ones (S7's warm-up and soak).
    pub ids_seed: Option<u64>,
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
            renew: false,
            slow_share: 0.0,
            slow_after: Duration::ZERO,
            slow_recv_buffer: None,
            timeline: false,
            ids_seed: None,
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
        let max = if self.renew { 10.0 } else { 5.0 };
        if !(1.1..max).contains(&iv) {
            bail!(
                "interval {iv}s: must be within [1.1 s, {max} s) — inside the 1 s rate window \
                 the server coalesces, past the 5 s lease (renewed halfway with renew) it stops \
                 typing by itself"
            );
        }
        if !(0.0..0.9).contains(&self.slow_share) {
            bail!("slow share must be within [0, 0.9)");
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
    /// Server CPU seconds per wall second over the measurement (its core's load).
    pub server_cpu_share: Option<f64>,
    /// The same for this load generator: near 1.0 means the generator, not
    /// the server, may be what limits the run.
    pub generator_cpu_share: Option<f64>,
    pub setup: Duration,
    /// Slow consumers (S6), frames they read before stopping and after
    /// resuming, and how many the server had closed by the end.
    pub slow_clients: u64,
    pub slow_frames: u64,
    pub slow_closed: u64,
    /// Slow consumers' connections that ended before they stopped reading.
    pub slow_lost_early: u64,
    /// Schedule start, ns after the epoch of the intended times below.
    pub start_ns: u64,
    /// (intended send time in ns after the epoch, latency µs) of every
    /// counted delivery, when `timeline` was set.
    pub timeline: Vec<(u64, u32)>,
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
            "server_cpu_share": self.server_cpu_share,
            "generator_cpu_share": self.generator_cpu_share,
            "setup_s": self.setup.as_secs_f64(),
            "slow_clients": self.slow_clients,
            "slow_closed": self.slow_closed,
        })
    }
}

/// One typer: who, where, and the intended send time (ns after `epoch`) of
/// its latest start (index 1) and stop (index 0).
struct Typer {
    conversation: Uuid,
    /// Members that read and count this typer's events (G−1 minus slow ones).
    receivers: u64,
    intended: [AtomicU64; 2],
    sent: AtomicU64,
    received: AtomicU64,
}

const SHARDS: usize = 16;

/// (intended send time in ns after the epoch, latency µs) per delivery.
type Timeline = Vec<(u64, u32)>;

struct Shared {
    epoch: Instant,
    typers: Vec<Typer>,
    by_user: HashMap<Uuid, usize>,
    histograms: Vec<Mutex<Histogram<u64>>>,
    /// Per shard, when `timeline` is on.
    timeline: Option<Vec<Mutex<Timeline>>>,
    deliveries: AtomicU64,
    unmatched: AtomicU64,
    errors: AtomicU64,
    stopping: AtomicBool,
    slow_frames: AtomicU64,
    slow_closed: AtomicU64,
    slow_lost_early: AtomicU64,
}

pub fn new_histogram() -> Histogram<u64> {
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
        if let Some(t) = &self.timeline {
            t[shard % SHARDS]
                .lock()
                .unwrap()
                .push((intended, latency_us.min(u32::MAX as u64) as u32));
        }
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

/// Phases of the slow consumers: reading, stopped, resumed (to see whether
/// the server closed them).
const SLOW_READING: u8 = 0;
const SLOW_STOPPED: u8 = 1;
const SLOW_RESUMED: u8 = 2;

/// A slow consumer: reads (and discards) until told to stop, then does not
/// touch its socket until told to resume; then reads what is left and
/// records whether the server had closed the connection.
async fn slow_reader(
    mut stream: futures_util::stream::SplitStream<Ws>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<u8>,
) {
    loop {
        tokio::select! {
            _ = phase.wait_for(|p| *p >= SLOW_STOPPED) => break,
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(_))) => {
                    shared.slow_frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    shared.slow_lost_early.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = phase.wait_for(|p| *p >= SLOW_RESUMED).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
            // Quiet and open: the server kept it.
            Err(_) => return,
            Ok(Some(Ok(Message::Text(_)))) => {
                shared.slow_frames.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => {
                shared.slow_closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

struct Member {
    user: Uuid,
    conversation: Uuid,
    typer: Option<usize>,
    slow: bool,
}

/// What a side task run beside the schedule (S5's swapper, S6's sampler)
/// gets to know.
#[derive(Clone, Copy, Debug)]
pub struct SideCtx {
    /// The epoch of intended times (`S2Result::timeline`).
    pub epoch: Instant,
    /// The schedule's first send.
    pub start: Instant,
    /// The schedule's end (start + span); the side task should end by then.
    pub until: Instant,
}

/// Runs S2 (or S0 when `target` is the floor) for one group size.
pub async fn run(target: &Target, cfg: &S2Config) -> anyhow::Result<S2Result> {
    Ok(run_with(target, cfg, |_| async {}).await?.0)
}

/// Runs S2 with `side` started at the schedule's start and awaited after
/// the last send (before the drain).
pub async fn run_with<T, F, Fut>(
    target: &Target,
    cfg: &S2Config,
    side: F,
) -> anyhow::Result<(S2Result, T)>
where
    F: FnOnce(SideCtx) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let plan = cfg.plan()?;
    let g = cfg.group_size;
    let tpg = cfg.typers_per_group.clamp(1, g);
    let setup_started = Instant::now();

    // Groups, members and typers.
    let mut members = Vec::with_capacity(plan.connections);
    let mut typers = Vec::with_capacity(plan.typers);
    let mut convs = Vec::with_capacity(plan.groups);
    // Slow consumers are spread evenly over the non-typers.
    let non_typers = plan.connections - plan.typers;
    let slow_total = ((cfg.slow_share * plan.connections as f64).round() as usize).min(non_typers);
    let slow_per = slow_total as f64 / non_typers.max(1) as f64;
    let mut k = 0usize;
    let mut issued = 0u64;
    let mut next_id = || match cfg.ids_seed {
        Some(seed) => {
            issued += 1;
            Uuid::from_u64_pair(seed, issued)
        }
        None => Uuid::new_v4(),
    };
    for _ in 0..plan.groups {
        let conversation = next_id();
        let users: Vec<Uuid> = (0..g).map(|_| next_id()).collect();
        let first = members.len();
        for (j, &user) in users.iter().enumerate() {
            let typer = (j < tpg).then(|| {
                typers.push((user, conversation, 0u64));
                typers.len() - 1
            });
            let slow = typer.is_none() && {
                let s = ((k + 1) as f64 * slow_per).floor() > (k as f64 * slow_per).floor();
                k += 1;
                s
            };
            members.push(Member {
                user,
                conversation,
                typer,
                slow,
            });
        }
        let readers = members[first..].iter().filter(|m| !m.slow).count() as u64;
        for t in typers.iter_mut().rev().take(tpg) {
            // Every reading member but the typer itself.
            t.2 = readers - 1;
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
            .map(|(i, (u, _, _))| (*u, i))
            .collect(),
        typers: typers
            .iter()
            .map(|(_, c, r)| Typer {
                conversation: *c,
                receivers: *r,
                intended: [AtomicU64::new(0), AtomicU64::new(0)],
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
            })
            .collect(),
        histograms: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        timeline: cfg
            .timeline
            .then(|| (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect()),
        deliveries: AtomicU64::new(0),
        unmatched: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        slow_frames: AtomicU64::new(0),
        slow_closed: AtomicU64::new(0),
        slow_lost_early: AtomicU64::new(0),
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
                let rcvbuf = if m.slow { cfg.slow_recv_buffer } else { None };
                let ws = connect_client_with(
                    target,
                    &sources,
                    tok.as_deref(),
                    &m.conversation.to_string(),
                    rcvbuf,
                )
                .await?;
                Ok((i, ws))
            }
        }))
        .buffer_unordered(cfg.connect_concurrency.max(1))
        .collect()
        .await;
    let mut readers = JoinSet::new();
    let mut slow_readers = JoinSet::new();
    let (slow_phase, slow_rx) = watch::channel(SLOW_READING);
    let mut sinks: Vec<Option<SplitSink<Ws, Message>>> = (0..members.len()).map(|_| None).collect();
    for c in connected {
        let (i, ws) = c.context("connecting a client")?;
        let (sink, stream) = ws.split();
        sinks[i] = Some(sink);
        if members[i].slow {
            slow_readers.spawn(slow_reader(stream, shared.clone(), slow_rx.clone()));
        } else {
            readers.spawn(reader(stream, shared.clone(), i));
        }
    }
    // Let connect-time traffic (status fan-out) settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup = setup_started.elapsed();

    let before = cfg.pid.and_then(procstat::sample);
    let gen_before = procstat::sample(std::process::id());
    let before_at = Instant::now();
    let start = Instant::now() + Duration::from_millis(200);
    let side = tokio::spawn(side(SideCtx {
        epoch: shared.epoch,
        start,
        until: start + plan.span,
    }));
    if slow_total > 0 {
        let at = start + cfg.slow_after;
        let phase = slow_phase.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _ = phase.send(SLOW_STOPPED);
        });
    }
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
            cfg.renew,
        ));
    }
    while let Some(r) = senders.join_next().await {
        r.context("sender task")?;
    }
    let side = side.await.context("side task")?;
    // Drain: until every expected delivery is in, or the drain time is up.
    let sent: u64 = shared
        .typers
        .iter()
        .map(|t| t.sent.load(Ordering::Relaxed))
        .sum();
    let expected: u64 = shared
        .typers
        .iter()
        .map(|t| t.sent.load(Ordering::Relaxed) * t.receivers)
        .sum();
    let drain_until = Instant::now() + cfg.drain;
    while shared.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = cfg.pid.and_then(procstat::sample);
    let gen_after = procstat::sample(std::process::id());
    let wall = before_at.elapsed().as_secs_f64();
    shared.stopping.store(true, Ordering::Relaxed);
    readers.abort_all();
    if slow_total > 0 {
        // Let the slow consumers read what is left and see who was closed.
        let _ = slow_phase.send(SLOW_RESUMED);
        let bound = tokio::time::timeout(Duration::from_secs(30), async {
            while slow_readers.join_next().await.is_some() {}
        });
        let _ = bound.await;
        slow_readers.abort_all();
    }
    drop(idle_sinks);

    let mut histogram = new_histogram();
    for h in &shared.histograms {
        histogram.add(&*h.lock().unwrap()).expect("same bounds");
    }
    let typers_off = shared
        .typers
        .iter()
        .filter(|t| {
            t.received.load(Ordering::Relaxed) != t.sent.load(Ordering::Relaxed) * t.receivers
        })
        .count() as u64;
    let deliveries = shared.deliveries.load(Ordering::Relaxed);
    let span = plan.span.as_secs_f64();
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a)),
        _ => None,
    };
    let timeline = shared
        .timeline
        .as_ref()
        .map(|t| {
            let mut all: Vec<(u64, u32)> = Vec::new();
            for shard in t {
                all.append(&mut shard.lock().unwrap());
            }
            all
        })
        .unwrap_or_default();
    let result = S2Result {
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
        server_cpu_sec: cpu,
        server_rss_kib: after.map(|a| a.rss_kib),
        server_cpu_share: cpu.map(|c| c / wall),
        generator_cpu_share: procstat::share(gen_before, gen_after, wall),
        setup,
        slow_clients: slow_total as u64,
        slow_frames: shared.slow_frames.load(Ordering::Relaxed),
        slow_closed: shared.slow_closed.load(Ordering::Relaxed),
        slow_lost_early: shared.slow_lost_early.load(Ordering::Relaxed),
        start_ns: (start - shared.epoch).as_nanos() as u64,
        timeline,
        plan,
    };
    Ok((result, side))
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
    renew: bool,
) {
    let typer = &shared.typers[index];
    for k in 0..events {
        let due = first + interval * k as u32;
        if renew && k % 2 == 1 && !floor {
            // Halfway through the typing state: a renewal, which the server
            // must not broadcast.
            tokio::time::sleep_until((due - interval / 2).into()).await;
            let frame = json!({"type": "typing_start", "data": {"conversation_id": conversation}});
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
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
