//! Process metrics in the Prometheus text format (`GET /metrics`, admin key).
//! Counters are plain atomics in one static, so the hot path pays a relaxed
//! increment and nothing else; plugin figures are read from the slots at
//! scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::policy::{Policies, SlotInfo};

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}"
        );
    }
}

/// Kinds of message between cluster nodes, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterKind {
    Typing = 0,
    Status = 1,
    Directory = 2,
    Plugin = 3,
    Node = 4,
}

impl ClusterKind {
    pub const NAMES: [&'static str; 5] = ["typing", "status", "directory", "plugin", "node"];
}

/// Client frame kinds counted on the way in (`invalid` for refused ones).
pub const EVENT_KINDS: [&str; 7] = [
    "typing_start",
    "typing_stop",
    "set_status",
    "activity",
    "ping",
    "auth",
    "invalid",
];

/// A per-slot counter: name, help, and how to read it from a slot.
type SlotCounter = (&'static str, &'static str, fn(&SlotInfo) -> u64);

pub struct Metrics {
    events_in: [AtomicU64; EVENT_KINDS.len()],
    /// `user_typing` frames queued to connections.
    pub typing_deliveries: AtomicU64,
    /// `user_status` frames queued to connections.
    pub status_deliveries: AtomicU64,
    /// Connections dropped because their send queue was full.
    pub send_queue_drops: AtomicU64,
    /// From a typing transition to every recipient's frame queued.
    pub typing_fanout: Histogram,
    /// From a status change to every watcher's frame queued.
    pub status_fanout: Histogram,
    /// Status fan-outs the store failed, each retried.
    pub status_fanout_failures: AtomicU64,
    /// One write-behind flush of `last_seen`.
    pub flush: Histogram,
    pub flush_failures: AtomicU64,
    /// Cluster messages this node published, by kind ([`ClusterKind::NAMES`]).
    pub cluster_published: [AtomicU64; ClusterKind::NAMES.len()],
    /// Cluster messages this node received from Redis, by kind.
    pub cluster_received: [AtomicU64; ClusterKind::NAMES.len()],
    /// Cluster messages dropped: Redis down or the outbox full.
    pub cluster_dropped: AtomicU64,
    /// Webhook events waiting in the outbox, as last counted.
    pub webhook_backlog: AtomicU64,
    /// Webhook events the receiver took (2xx).
    pub webhook_delivered: AtomicU64,
    /// Webhook POSTs that failed (any other answer, or none in time).
    pub webhook_failures: AtomicU64,
    /// Webhook POSTs that sent events a second time or later.
    pub webhook_retries: AtomicU64,
    /// Transitions dropped because the outbox was at its bound.
    pub webhook_dropped: AtomicU64,
    /// From a transition written to the outbox to the receiver's 2xx.
    pub webhook_latency: Histogram,
}

pub static METRICS: Metrics = Metrics {
    events_in: [const { AtomicU64::new(0) }; EVENT_KINDS.len()],
    typing_deliveries: AtomicU64::new(0),
    status_deliveries: AtomicU64::new(0),
    send_queue_drops: AtomicU64::new(0),
    typing_fanout: Histogram::new(),
    status_fanout: Histogram::new(),
    status_fanout_failures: AtomicU64::new(0),
    flush: Histogram::new(),
    flush_failures: AtomicU64::new(0),
    cluster_published: [const { AtomicU64::new(0) }; ClusterKind::NAMES.len()],
    cluster_received: [const { AtomicU64::new(0) }; ClusterKind::NAMES.len()],
    cluster_dropped: AtomicU64::new(0),
    webhook_backlog: AtomicU64::new(0),
    webhook_delivered: AtomicU64::new(0),
    webhook_failures: AtomicU64::new(0),
    webhook_retries: AtomicU64::new(0),
    webhook_dropped: AtomicU64::new(0),
    webhook_latency: Histogram::new(),
};

impl Metrics {
    pub fn event_in(&self, kind: &str) {
        let i = EVENT_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(EVENT_KINDS.len() - 1);
        self.events_in[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition: these counters, the connection gauges and the plugin slots.
    /// `cluster_up` is `None` on a node that runs alone.
    pub fn render(
        &self,
        connections: usize,
        users: usize,
        policies: &Policies,
        cluster_up: Option<bool>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "presence_connections",
            "Open WebSocket connections.",
            connections as f64,
        );
        gauge(
            &mut out,
            "presence_online_users",
            "Users connected to this node (or within the grace period).",
            users as f64,
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            gauge(
                &mut out,
                "presence_tasks",
                "Tasks alive in the server's runtime (a leak shows as growth).",
                rt.metrics().num_alive_tasks() as f64,
            );
        }
        let _ = writeln!(
            out,
            "# HELP presence_events_in_total Client frames received, by type.\n# TYPE presence_events_in_total counter"
        );
        for (kind, n) in EVENT_KINDS.iter().zip(&self.events_in) {
            let _ = writeln!(
                out,
                "presence_events_in_total{{type=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP presence_deliveries_total Event frames queued to connections, by type.\n# TYPE presence_deliveries_total counter"
        );
        let _ = writeln!(
            out,
            "presence_deliveries_total{{type=\"user_typing\"}} {}",
            self.typing_deliveries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "presence_deliveries_total{{type=\"user_status\"}} {}",
            self.status_deliveries.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "presence_send_queue_drops_total",
            "Connections dropped for a full send queue.",
            self.send_queue_drops.load(Ordering::Relaxed),
        );
        self.typing_fanout.render(
            &mut out,
            "presence_typing_fanout_seconds",
            "Typing transition to every recipient queued.",
        );
        self.status_fanout.render(
            &mut out,
            "presence_status_fanout_seconds",
            "Status change to every watcher queued.",
        );
        counter(
            &mut out,
            "presence_status_fanout_failures_total",
            "Status fan-outs the store failed; each is retried.",
            self.status_fanout_failures.load(Ordering::Relaxed),
        );
        self.flush.render(
            &mut out,
            "presence_last_seen_flush_seconds",
            "One write-behind flush of last_seen.",
        );
        counter(
            &mut out,
            "presence_last_seen_flush_failures_total",
            "Flushes that failed and were retried.",
            self.flush_failures.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "presence_webhook_backlog",
            "Webhook events waiting in the outbox.",
            self.webhook_backlog.load(Ordering::Relaxed) as f64,
        );
        for (name, help, value) in [
            (
                "presence_webhook_delivered_total",
                "Webhook events the receiver took.",
                &self.webhook_delivered,
            ),
            (
                "presence_webhook_failures_total",
                "Webhook POSTs that failed and will be retried.",
                &self.webhook_failures,
            ),
            (
                "presence_webhook_retries_total",
                "Webhook POSTs that sent events again.",
                &self.webhook_retries,
            ),
            (
                "presence_webhook_dropped_total",
                "Transitions dropped because the webhook outbox was full.",
                &self.webhook_dropped,
            ),
        ] {
            counter(&mut out, name, help, value.load(Ordering::Relaxed));
        }
        self.webhook_latency.render(
            &mut out,
            "presence_webhook_delivery_seconds",
            "From a transition written to the outbox to the receiver's 2xx.",
        );

        if let Some(up) = cluster_up {
            gauge(
                &mut out,
                "presence_cluster_up",
                "1 while Redis answers and this node is subscribed.",
                if up { 1.0 } else { 0.0 },
            );
            for (name, help, values) in [
                (
                    "presence_cluster_published_total",
                    "Cluster messages published by this node, by kind (status changes are published by Redis scripts).",
                    &self.cluster_published,
                ),
                (
                    "presence_cluster_received_total",
                    "Cluster messages this node received from Redis, by kind.",
                    &self.cluster_received,
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (kind, n) in ClusterKind::NAMES.iter().zip(values) {
                    let _ = writeln!(
                        out,
                        "{name}{{kind=\"{kind}\"}} {}",
                        n.load(Ordering::Relaxed)
                    );
                }
            }
            counter(
                &mut out,
                "presence_cluster_dropped_total",
                "Cluster messages dropped while Redis was down or the outbox full.",
                self.cluster_dropped.load(Ordering::Relaxed),
            );
        }
        let slots = policies.slots();
        let per_slot: [SlotCounter; 2] = [
            (
                "presence_plugin_calls_total",
                "Plugin calls per slot.",
                |s: &SlotInfo| s.calls,
            ),
            (
                "presence_plugin_failures_total",
                "Plugin calls that failed and got the fallback.",
                |s: &SlotInfo| s.failures,
            ),
        ];
        for (name, help, value) in per_slot {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &slots {
                let _ = writeln!(
                    out,
                    "{name}{{slot=\"{}\",sha256=\"{}\"}} {}",
                    s.slot,
                    s.sha256,
                    value(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP presence_plugin_call_seconds Plugin call latency quantiles per slot.\n# TYPE presence_plugin_call_seconds gauge"
        );
        for s in &slots {
            for (q, v) in [("0.5", s.latency_p50), ("0.99", s.latency_p99)] {
                if let Some(v) = v {
                    let _ = writeln!(
                        out,
                        "presence_plugin_call_seconds{{slot=\"{}\",quantile=\"{q}\"}} {}",
                        s.slot,
                        v.as_secs_f64()
                    );
                }
            }
        }
        out
    }
}
