//! S6: slow consumers. The S2 driver at a steady rate; at `slow_after` a
//! share of the clients (10 % by default, taken from the non-typers) stops
//! reading its socket. The server's bounded send queue must fill for those
//! and the server drop them (counted from `/metrics`
//! `presence_send_queue_drops_total` and by the slow clients themselves,
//! which resume reading at the end and see whether they were closed), its
//! RSS must stay bounded (sampled every 250 ms) and everyone else's latency
//! must stay as before the slow consumers stopped (both phases reported).
//!
//! The slow consumers' sockets get a small `SO_RCVBUF` (default 16 KiB), so
//! that their kernel buffers fill within a short run: with the system
//! default (128 KiB–32 MiB, autotuned) a client receiving a few frames a
//! second takes many minutes to fill, and the server's heartbeat (a silent
//! client is closed after 2.5 × 20 s) would close it first.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::net::{Admin, Target};
use crate::procstat;
use crate::s2::{self, S2Config, S2Result, new_histogram};

pub const DROPS_METRIC: &str = "presence_send_queue_drops_total";

#[derive(Clone, Debug)]
pub struct S6Result {
    pub s2: S2Result,
    pub steady: Histogram<u64>,
    pub slow_phase: Histogram<u64>,
    pub rss_at_stop_kib: Option<u64>,
    pub rss_max_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// Kernel TCP memory of the whole host (`/proc/net/sockstat`): at the
    /// stop, the most, at the end.
    pub tcp_mem_at_stop_kib: Option<u64>,
    pub tcp_mem_max_kib: Option<u64>,
    pub tcp_mem_end_kib: Option<u64>,
    /// Seconds after the schedule's start (by arrival) in which some
    /// reading client's delivery was over 50 ms late: (second, such
    /// deliveries, worst ms). Shows when a stall happened.
    pub stalls: Vec<(u64, u64, f64)>,
    /// `presence_send_queue_drops_total` over the run (None: not readable).
    pub queue_drops: Option<u64>,
    pub lost: u64,
    pub slow_after_s: f64,
}

fn p(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

impl S6Result {
    pub fn rss_growth_kib(&self) -> Option<i64> {
        Some(self.rss_max_kib? as i64 - self.rss_at_stop_kib? as i64)
    }

    pub fn json(&self) -> serde_json::Value {
        let h = |h: &Histogram<u64>| {
            json!({"p50": p(h, 0.5), "p99": p(h, 0.99), "p999": p(h, 0.999),
                   "max": h.max(), "count": h.len()})
        };
        json!({
            "scenario": "s6",
            "target": self.s2.target,
            "group_size": self.s2.group_size,
            "connections": self.s2.plan.connections,
            "slow_clients": self.s2.slow_clients,
            "slow_closed": self.s2.slow_closed,
            "slow_lost_early": self.s2.slow_lost_early,
            "slow_frames": self.s2.slow_frames,
            "queue_drops": self.queue_drops,
            "events_sent": self.s2.events_sent,
            "deliveries": self.s2.deliveries,
            "expected_deliveries": self.s2.expected_deliveries,
            "lost": self.lost,
            "errors": self.s2.errors,
            "unmatched": self.s2.unmatched,
            "deliveries_per_s": self.s2.deliveries_per_sec,
            "server_cpu_s": self.s2.server_cpu_sec,
            "server_cpu_share": self.s2.server_cpu_share,
            "generator_cpu_share": self.s2.generator_cpu_share,
            "deliveries_per_cpu_s": self.s2.deliveries_per_cpu_sec(),
            "steady_latency_us": h(&self.steady),
            "slow_phase_latency_us": h(&self.slow_phase),
            "rss_at_stop_kib": self.rss_at_stop_kib,
            "rss_max_kib": self.rss_max_kib,
            "rss_end_kib": self.rss_end_kib,
            "rss_growth_kib": self.rss_growth_kib(),
            "tcp_mem_at_stop_kib": self.tcp_mem_at_stop_kib,
            "tcp_mem_max_kib": self.tcp_mem_max_kib,
            "tcp_mem_end_kib": self.tcp_mem_end_kib,
            "slow_after_s": self.slow_after_s,
            "stalls": self.stalls,
        })
    }
}

/// `cfg` should have `slow_share`, `slow_after` and `slow_recv_buffer` set;
/// the timeline is switched on here.
pub async fn run(target: &Target, cfg: &S2Config) -> anyhow::Result<S6Result> {
    let mut cfg = cfg.clone();
    cfg.timeline = true;
    let admin = match target {
        Target::Presence {
            addr, admin_key, ..
        } => Some(Admin::new(*addr, admin_key)),
        Target::Floor { .. } => None,
    };
    let drops = |admin: Option<Admin>| async move {
        match admin {
            Some(a) => a.metric(DROPS_METRIC).await.ok().flatten(),
            None => None,
        }
    };
    let drops_before = drops(admin.clone()).await;
    let (pid, slow_after) = (cfg.pid, cfg.slow_after);
    let (r, samples) = s2::run_with(target, &cfg, move |ctx| async move {
        // (ns after the schedule start, server RSS KiB, host TCP memory KiB)
        let mut samples: Vec<(u64, Option<u64>, Option<u64>)> = Vec::new();
        let mut t = ctx.start;
        while t <= ctx.until {
            tokio::time::sleep_until(t.into()).await;
            samples.push((
                (Instant::now() - ctx.start).as_nanos() as u64,
                pid.and_then(procstat::sample).map(|s| s.rss_kib),
                procstat::tcp_mem_kib(),
            ));
            t += Duration::from_millis(250);
        }
        samples
    })
    .await?;
    let drops_after = drops(admin).await;
    let stop_ns = slow_after.as_nanos() as u64;
    let stop_abs = r.start_ns + stop_ns;
    let mut steady = new_histogram();
    let mut slow_phase = new_histogram();
    let mut stalls: std::collections::BTreeMap<u64, (u64, f64)> = Default::default();
    for &(intended, us) in &r.timeline {
        if us > 50_000 {
            let arrived = (intended + us as u64 * 1000).saturating_sub(r.start_ns);
            let e = stalls.entry(arrived / 1_000_000_000).or_default();
            e.0 += 1;
            e.1 = e.1.max(us as f64 / 1000.0);
        }
        let h = if intended < stop_abs {
            &mut steady
        } else {
            &mut slow_phase
        };
        h.saturating_record((us as u64).max(1));
    }
    let rss: Vec<(u64, u64)> = samples
        .iter()
        .filter_map(|(t, r, _)| Some((*t, (*r)?)))
        .collect();
    let tcp: Vec<(u64, u64)> = samples
        .iter()
        .filter_map(|(t, _, m)| Some((*t, (*m)?)))
        .collect();
    let at_stop = |v: &[(u64, u64)]| {
        v.iter()
            .filter(|(t, _)| *t <= stop_ns)
            .map(|(_, r)| *r)
            .next_back()
    };
    let max = |v: &[(u64, u64)]| v.iter().map(|(_, r)| *r).max();
    let end = |v: &[(u64, u64)]| v.last().map(|(_, r)| *r);
    Ok(S6Result {
        rss_at_stop_kib: at_stop(&rss),
        rss_max_kib: max(&rss),
        rss_end_kib: end(&rss),
        tcp_mem_at_stop_kib: at_stop(&tcp),
        tcp_mem_max_kib: max(&tcp),
        tcp_mem_end_kib: end(&tcp),
        queue_drops: match (drops_before, drops_after) {
            (Some(b), Some(a)) => Some((a - b).max(0.0) as u64),
            _ => None,
        },
        lost: r.expected_deliveries.saturating_sub(r.deliveries),
        s2: r,
        steady,
        slow_phase,
        stalls: stalls.into_iter().map(|(s, (n, m))| (s, n, m)).collect(),
        slow_after_s: slow_after.as_secs_f64(),
    })
}
