//! S3: status churn. `subjects` users each watched by `watchers_per_subject`
//! connected watchers (a watcher of X is a user with X among their contacts,
//! set through `PUT /api/v1/admin/users/{id}/contacts`), plus a heavy tail of
//! `tail_subjects` users watched by `tail_watchers` each. Every subject
//! connects and disconnects on an open-loop schedule: cycle k of subject i
//! connects at `start + i·period/subjects + k·period` and closes `hold`
//! later. Each connect is one `user_status online` to every watcher, each
//! disconnect one `offline`, sent by the server after its offline grace
//! (the default status policy: 3 s), so:
//!
//! - an `online` delivery is measured from the connect's **intended** time:
//!   TCP + WebSocket handshake + JWT + `ready` + fan-out, what a watcher
//!   waits from the moment the subject opens the app;
//! - an `offline` delivery is measured from the intended disconnect time
//!   **plus the grace** (`grace`, which must match the server's policy): the
//!   server's timer precision and the fan-out, not the grace itself.
//!
//! The period leaves the grace time to run out before the next connect
//! (else the server rightly suppresses the offline/online flap), so every
//! cycle must reach every watcher exactly twice; the `ok` column checks it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::net::{Admin, Sources, Target, Ws, connect_client, token};
use crate::procstat;
use crate::s2::new_histogram;

#[derive(Clone, Debug)]
pub struct S3Config {
    /// Users whose status churns, each with `watchers_per_subject` watchers.
    pub subjects: usize,
    pub watchers_per_subject: usize,
    /// Heavy tail: this many more subjects with `tail_watchers` watchers each.
    pub tail_subjects: usize,
    pub tail_watchers: usize,
    /// Connected watcher pool (0: just enough for the largest watcher set).
    pub watchers: usize,
    /// One connect/disconnect cycle of a subject.
    pub period: Duration,
    /// How long a subject stays connected in a cycle.
    pub hold: Duration,
    /// The server's offline grace (status policy; default 3 s).
    pub grace: Duration,
    /// Schedule length, rounded to whole periods (at least one).
    pub duration: Duration,
    pub connect_concurrency: usize,
    pub source_addrs: Option<usize>,
    /// Wait after the last expected offline for stragglers.
    pub drain: Duration,
    pub pid: Option<u32>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            subjects: 200,
            watchers_per_subject: 100,
            tail_subjects: 2,
            tail_watchers: 5000,
            watchers: 0,
            period: Duration::from_secs(6),
            hold: Duration::from_secs(1),
            grace: Duration::from_secs(3),
            duration: Duration::from_secs(12),
            connect_concurrency: 64,
            source_addrs: None,
            drain: Duration::from_secs(5),
            pid: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct S3Plan {
    pub watchers: usize,
    pub subjects: usize,
    pub cycles: usize,
    /// Watchers of each subject, tail subjects last.
    pub watcher_sets: Vec<usize>,
    pub span: Duration,
}

impl S3Config {
    pub fn plan(&self) -> anyhow::Result<S3Plan> {
        if self.subjects + self.tail_subjects == 0 {
            bail!("no subjects");
        }
        if self.watchers_per_subject == 0 {
            bail!("watchers per subject must be at least 1");
        }
        if self.period < self.hold + self.grace + Duration::from_millis(500) {
            bail!(
                "period {:?} must exceed hold {:?} + grace {:?} + 0.5 s, or the server \
                 (rightly) suppresses the offline/online flap",
                self.period,
                self.hold,
                self.grace
            );
        }
        let largest = if self.tail_subjects > 0 {
            self.tail_watchers.max(self.watchers_per_subject)
        } else {
            self.watchers_per_subject
        };
        let watchers = if self.watchers == 0 {
            largest
        } else {
            self.watchers
        };
        let mut watcher_sets = vec![self.watchers_per_subject.min(watchers); self.subjects];
        watcher_sets.extend(std::iter::repeat_n(
            self.tail_watchers.min(watchers),
            self.tail_subjects,
        ));
        let cycles =
            ((self.duration.as_secs_f64() / self.period.as_secs_f64()).round() as usize).max(1);
        Ok(S3Plan {
            watchers,
            subjects: self.subjects + self.tail_subjects,
            cycles,
            watcher_sets,
            span: self.period * cycles as u32,
        })
    }
}

#[derive(Clone, Debug)]
pub struct S3Result {
    pub plan: S3Plan,
    pub tail_subjects: usize,
    pub tail_watchers: usize,
    pub connects: u64,
    pub disconnects: u64,
    pub status_changes_per_sec: f64,
    pub online_deliveries: u64,
    pub offline_deliveries: u64,
    pub expected_deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Subjects whose watchers got other than 2 × cycles × watchers frames.
    pub subjects_off: u64,
    /// `user_status` frames not matching a subject's expected state.
    pub unmatched: u64,
    pub errors: u64,
    pub late_connects: u64,
    pub online: Histogram<u64>,
    pub offline: Histogram<u64>,
    /// Both kinds, tail subjects only.
    pub tail: Histogram<u64>,
    /// Subjects' connect → `ready`, from the intended connect time.
    pub connect: Histogram<u64>,
    pub server_cpu_sec: Option<f64>,
    pub server_cpu_share: Option<f64>,
    /// This load generator's CPU seconds per wall second.
    pub generator_cpu_share: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub setup: Duration,
}

fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

impl S3Result {
    pub fn deliveries(&self) -> u64 {
        self.online_deliveries + self.offline_deliveries
    }

    pub fn deliveries_per_cpu_sec(&self) -> Option<f64> {
        self.server_cpu_sec
            .filter(|c| *c > 0.0)
            .map(|c| self.deliveries() as f64 / c)
    }

    pub fn consistent(&self) -> bool {
        self.deliveries() == self.expected_deliveries
            && self.subjects_off == 0
            && self.unmatched == 0
            && self.errors == 0
    }

    pub fn json(&self) -> serde_json::Value {
        let h = |h: &Histogram<u64>| {
            json!({"p50": pct(h, 0.5), "p99": pct(h, 0.99), "p999": pct(h, 0.999),
                   "max": h.max(), "count": h.len()})
        };
        json!({
            "scenario": "s3",
            "target": "presence",
            "subjects": self.plan.subjects,
            "tail_subjects": self.tail_subjects,
            "tail_watchers": self.tail_watchers,
            "watchers": self.plan.watchers,
            "cycles": self.plan.cycles,
            "span_s": self.plan.span.as_secs_f64(),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "status_changes_per_s": self.status_changes_per_sec,
            "online_deliveries": self.online_deliveries,
            "offline_deliveries": self.offline_deliveries,
            "expected_deliveries": self.expected_deliveries,
            "deliveries_per_s": self.deliveries_per_sec,
            "subjects_off": self.subjects_off,
            "unmatched": self.unmatched,
            "errors": self.errors,
            "late_connects": self.late_connects,
            "online_latency_us": h(&self.online),
            "offline_after_grace_latency_us": h(&self.offline),
            "tail_latency_us": h(&self.tail),
            "connect_ready_us": h(&self.connect),
            "server_cpu_s": self.server_cpu_sec,
            "server_cpu_share": self.server_cpu_share,
            "generator_cpu_share": self.generator_cpu_share,
            "deliveries_per_cpu_s": self.deliveries_per_cpu_sec(),
            "server_rss_kib": self.server_rss_kib,
            "setup_s": self.setup.as_secs_f64(),
        })
    }
}

struct Subject {
    tail: bool,
    watchers: u64,
    /// Intended connect time (ns after the epoch) of the current cycle.
    online_due: AtomicU64,
    /// Intended disconnect time + grace of the current cycle.
    offline_due: AtomicU64,
    online_received: AtomicU64,
    offline_received: AtomicU64,
    cycles_done: AtomicU64,
}

struct Shared {
    epoch: Instant,
    subjects: Vec<Subject>,
    by_user: HashMap<Uuid, usize>,
    online: Mutex<Histogram<u64>>,
    offline: Mutex<Histogram<u64>>,
    tail: Mutex<Histogram<u64>>,
    connect: Mutex<Histogram<u64>>,
    unmatched: AtomicU64,
    errors: AtomicU64,
    late: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    stopping: AtomicBool,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    data: Option<StatusData<'a>>,
}

#[derive(Deserialize)]
struct StatusData<'a> {
    user_id: Option<Uuid>,
    #[serde(borrow)]
    status: Option<&'a str>,
}

impl Shared {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn on_text(&self, text: &str) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match frame.kind {
            "user_status" => {}
            "error" => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
        }
        let Some(StatusData {
            user_id: Some(user),
            status: Some(status),
        }) = frame.data
        else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(&i) = self.by_user.get(&user) else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let s = &self.subjects[i];
        let (due, counter, hist) = match status {
            "online" => (&s.online_due, &s.online_received, &self.online),
            "offline" => (&s.offline_due, &s.offline_received, &self.offline),
            _ => {
                self.unmatched.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let due = due.load(Ordering::Acquire);
        if due == 0 {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let us = (now.saturating_sub(due) / 1000).max(1);
        hist.lock().unwrap().saturating_record(us);
        if s.tail {
            self.tail.lock().unwrap().saturating_record(us);
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

async fn watcher_reader(mut ws: Ws, shared: Arc<Shared>) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => shared.on_text(t.as_str()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if !shared.stopping.load(Ordering::Relaxed) {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn subject_task(
    shared: Arc<Shared>,
    index: usize,
    token: Option<String>,
    target: Target,
    sources: Arc<Sources>,
    first: Instant,
    cfg: S3Config,
    cycles: usize,
) {
    let s = &shared.subjects[index];
    for k in 0..cycles {
        let on = first + cfg.period * k as u32;
        tokio::time::sleep_until(on.into()).await;
        if on.elapsed() > Duration::from_millis(10) {
            shared.late.fetch_add(1, Ordering::Relaxed);
        }
        s.online_due.store(shared.ns(on), Ordering::Release);
        let ws = connect_client(&target, &sources, token.as_deref(), "s3").await;
        let mut ws = match ws {
            Ok(ws) => ws,
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        shared
            .connect
            .lock()
            .unwrap()
            .saturating_record((on.elapsed().as_micros() as u64).max(1));
        shared.connects.fetch_add(1, Ordering::Relaxed);
        let off = on + cfg.hold;
        // Hold: read (and ignore) whatever comes, answering pings.
        let _ = tokio::time::timeout_at(off.into(), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        s.offline_due
            .store(shared.ns(off + cfg.grace), Ordering::Release);
        if ws.close(None).await.is_err() {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        // Until the server's close answer, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        shared.disconnects.fetch_add(1, Ordering::Relaxed);
        s.cycles_done.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn run(target: &Target, cfg: &S3Config) -> anyhow::Result<S3Result> {
    let Target::Presence {
        addr,
        admin_key,
        jwt_secret,
    } = target
    else {
        bail!("S3 needs a presence server (the floor has no status)");
    };
    let plan = cfg.plan()?;
    let setup_started = Instant::now();
    let watcher_ids: Vec<Uuid> = (0..plan.watchers).map(|_| Uuid::new_v4()).collect();
    let subject_ids: Vec<Uuid> = (0..plan.subjects).map(|_| Uuid::new_v4()).collect();
    // Watchers of subject i: a window of the pool starting at i × set size,
    // so every watcher watches about the same number of subjects.
    let mut contacts: Vec<Vec<Uuid>> = vec![Vec::new(); plan.watchers];
    for (i, &n) in plan.watcher_sets.iter().enumerate() {
        let offset = if i < cfg.subjects {
            i * cfg.watchers_per_subject
        } else {
            0
        };
        for j in 0..n {
            contacts[(offset + j) % plan.watchers].push(subject_ids[i]);
        }
    }
    let admin = Admin::new(*addr, admin_key);
    let users: Vec<(Uuid, String)> = watcher_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, format!("W{i}")))
        .chain(
            subject_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, format!("S{i}"))),
        )
        .collect();
    admin.users(&users).await.context("creating users")?;
    let lists: Vec<(Uuid, Vec<Uuid>)> = watcher_ids
        .iter()
        .zip(contacts)
        .filter(|(_, c)| !c.is_empty())
        .map(|(w, c)| (*w, c))
        .collect();
    admin.contacts(&lists).await.context("setting contacts")?;

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        subjects: plan
            .watcher_sets
            .iter()
            .enumerate()
            .map(|(i, &n)| Subject {
                tail: i >= cfg.subjects,
                watchers: n as u64,
                online_due: AtomicU64::new(0),
                offline_due: AtomicU64::new(0),
                online_received: AtomicU64::new(0),
                offline_received: AtomicU64::new(0),
                cycles_done: AtomicU64::new(0),
            })
            .collect(),
        by_user: subject_ids
            .iter()
            .enumerate()
            .map(|(i, u)| (*u, i))
            .collect(),
        online: Mutex::new(new_histogram()),
        offline: Mutex::new(new_histogram()),
        tail: Mutex::new(new_histogram()),
        connect: Mutex::new(new_histogram()),
        unmatched: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        late: AtomicU64::new(0),
        connects: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });

    // Connect the watchers.
    let sources = Sources::new(cfg.source_addrs, plan.watchers + plan.subjects);
    let connected: Vec<anyhow::Result<Ws>> =
        futures_util::stream::iter(watcher_ids.iter().enumerate().map(|(i, u)| {
            let sources = sources.clone();
            let tok = token(jwt_secret, *u, &format!("W{i}"));
            async move { connect_client(target, &sources, Some(&tok), "s3").await }
        }))
        .buffer_unordered(cfg.connect_concurrency.max(1))
        .collect()
        .await;
    let mut readers = JoinSet::new();
    for c in connected {
        readers.spawn(watcher_reader(
            c.context("connecting a watcher")?,
            shared.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup = setup_started.elapsed();

    let before = cfg.pid.and_then(procstat::sample);
    let gen_before = procstat::sample(std::process::id());
    let before_at = Instant::now();
    let start = Instant::now() + Duration::from_millis(200);
    let n = plan.subjects;
    let mut tasks = JoinSet::new();
    for (i, u) in subject_ids.iter().enumerate() {
        let offset = cfg.period.mul_f64(i as f64 / n as f64);
        tasks.spawn(subject_task(
            shared.clone(),
            i,
            Some(token(jwt_secret, *u, &format!("S{i}"))),
            target.clone(),
            sources.clone(),
            start + offset,
            cfg.clone(),
            plan.cycles,
        ));
    }
    while let Some(r) = tasks.join_next().await {
        r.context("subject task")?;
    }
    let expected: u64 = shared
        .subjects
        .iter()
        .map(|s| 2 * s.cycles_done.load(Ordering::Relaxed) * s.watchers)
        .sum();
    let received = |sh: &Shared| -> u64 {
        sh.subjects
            .iter()
            .map(|s| {
                s.online_received.load(Ordering::Relaxed)
                    + s.offline_received.load(Ordering::Relaxed)
            })
            .sum()
    };
    // The last offlines come a grace after the last disconnect.
    let drain_until = Instant::now() + cfg.grace + cfg.drain;
    while received(&shared) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = cfg.pid.and_then(procstat::sample);
    let gen_after = procstat::sample(std::process::id());
    let wall = before_at.elapsed().as_secs_f64();
    shared.stopping.store(true, Ordering::Relaxed);
    readers.abort_all();

    let subjects_off = shared
        .subjects
        .iter()
        .filter(|s| {
            let c = s.cycles_done.load(Ordering::Relaxed) * s.watchers;
            s.online_received.load(Ordering::Relaxed) != c
                || s.offline_received.load(Ordering::Relaxed) != c
        })
        .count() as u64;
    let sum = |f: fn(&Subject) -> &AtomicU64| -> u64 {
        shared
            .subjects
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum()
    };
    let online_deliveries = sum(|s| &s.online_received);
    let offline_deliveries = sum(|s| &s.offline_received);
    let connects = shared.connects.load(Ordering::Relaxed);
    let disconnects = shared.disconnects.load(Ordering::Relaxed);
    let span = plan.span.as_secs_f64();
    let cpu = match (before, after) {
        (Some(b), Some(a)) => Some(b.cpu_seconds_until(&a)),
        _ => None,
    };
    let take = |m: &Mutex<Histogram<u64>>| m.lock().unwrap().clone();
    Ok(S3Result {
        tail_subjects: cfg.tail_subjects,
        tail_watchers: cfg.tail_watchers,
        connects,
        disconnects,
        status_changes_per_sec: (connects + disconnects) as f64 / span,
        online_deliveries,
        offline_deliveries,
        expected_deliveries: expected,
        deliveries_per_sec: (online_deliveries + offline_deliveries) as f64 / span,
        subjects_off,
        unmatched: shared.unmatched.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        late_connects: shared.late.load(Ordering::Relaxed),
        online: take(&shared.online),
        offline: take(&shared.offline),
        tail: take(&shared.tail),
        connect: take(&shared.connect),
        server_cpu_sec: cpu,
        server_cpu_share: cpu.map(|c| c / wall),
        generator_cpu_share: procstat::share(gen_before, gen_after, wall),
        server_rss_kib: after.map(|a| a.rss_kib),
        setup,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_sizes_the_pool_for_the_tail_and_refuses_flapping_periods() {
        let p = S3Config::default().plan().unwrap();
        assert_eq!(p.watchers, 5000);
        assert_eq!(p.subjects, 202);
        assert_eq!(p.cycles, 2);
        assert_eq!(p.watcher_sets[0], 100);
        assert_eq!(p.watcher_sets[201], 5000);
        let cfg = S3Config {
            period: Duration::from_secs(4),
            ..S3Config::default()
        };
        assert!(cfg.plan().is_err());
    }
}
