//! S5: swap under load. The S2 driver at a steady rate while the typing
//! plugin is replaced every `swap_every` through `PUT
//! /api/v1/admin/plugins/typing`, alternating two components (by default
//! the built-in typing policy and `plugins/examples/large-groups-typing`,
//! both embedded in this binary by its build script).
//!
//! The two policies differ (1 s window / 5 s lease against 3 s / 3 s), so
//! the schedule suits both: one transition per typer every `interval` ≥ 3 s
//! with a renewal halfway through each typing state, which keeps the 3 s
//! lease alive and which neither policy broadcasts. Every event must then
//! reach every other member whichever policy is in place: `lost` counts
//! those that did not.
//!
//! A delivery counts as "during a swap" when it *arrives* between the start
//! of a swap request and `settle` after its answer (it was in flight while
//! the server compiled and switched); all others are steady state.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::net::{Admin, Target};
use crate::s2::{self, S2Config, S2Result, new_histogram};

/// The built-in typing policy (`plugins/typing`).
pub const BUILTIN_TYPING: &[u8] = include_bytes!(env!("PRESENCE_BENCH_TYPING_WASM"));
/// `plugins/examples/large-groups-typing`.
pub const LARGE_GROUPS_TYPING: &[u8] =
    include_bytes!(env!("PRESENCE_BENCH_LARGE_GROUPS_TYPING_WASM"));

#[derive(Clone, Debug)]
pub struct S5Config {
    pub s2: S2Config,
    pub swap_every: Duration,
    pub settle: Duration,
    /// Installed alternately, `b` first; `a` is put back at the end.
    pub a: Vec<u8>,
    pub b: Vec<u8>,
}

impl S5Config {
    /// The S2 config S5 needs: renewals on, timeline on.
    pub fn with_s2(mut s2: S2Config) -> S5Config {
        s2.renew = true;
        s2.timeline = true;
        S5Config {
            s2,
            swap_every: Duration::from_secs(3),
            settle: Duration::from_millis(500),
            a: BUILTIN_TYPING.to_vec(),
            b: LARGE_GROUPS_TYPING.to_vec(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Swap {
    /// ns after the S2 epoch.
    pub begin_ns: u64,
    pub end_ns: u64,
    pub ok: bool,
}

#[derive(Clone, Debug)]
pub struct S5Result {
    pub s2: S2Result,
    pub swaps: Vec<Swap>,
    pub steady: Histogram<u64>,
    pub during: Histogram<u64>,
    /// Expected deliveries that never arrived.
    pub lost: u64,
}

fn p(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

impl S5Result {
    pub fn swaps_ok(&self) -> usize {
        self.swaps.iter().filter(|s| s.ok).count()
    }

    /// p99 during swaps ÷ p99 in steady state.
    pub fn p99_ratio(&self) -> Option<f64> {
        let s = p(&self.steady, 0.99);
        (s > 0 && !self.during.is_empty()).then(|| p(&self.during, 0.99) as f64 / s as f64)
    }

    pub fn swap_ms(&self, q: f64) -> f64 {
        let mut d: Vec<u64> = self
            .swaps
            .iter()
            .map(|s| s.end_ns.saturating_sub(s.begin_ns))
            .collect();
        d.sort_unstable();
        if d.is_empty() {
            return 0.0;
        }
        let i = ((d.len() - 1) as f64 * q).round() as usize;
        d[i] as f64 / 1e6
    }

    pub fn json(&self) -> serde_json::Value {
        let h = |h: &Histogram<u64>| {
            json!({"p50": p(h, 0.5), "p99": p(h, 0.99), "p999": p(h, 0.999),
                   "max": h.max(), "count": h.len()})
        };
        json!({
            "scenario": "s5",
            "group_size": self.s2.group_size,
            "connections": self.s2.plan.connections,
            "events_sent": self.s2.events_sent,
            "deliveries": self.s2.deliveries,
            "expected_deliveries": self.s2.expected_deliveries,
            "lost": self.lost,
            "unmatched": self.s2.unmatched,
            "errors": self.s2.errors,
            "events_per_s": self.s2.events_per_sec,
            "deliveries_per_s": self.s2.deliveries_per_sec,
            "server_cpu_s": self.s2.server_cpu_sec,
            "server_cpu_share": self.s2.server_cpu_share,
            "generator_cpu_share": self.s2.generator_cpu_share,
            "deliveries_per_cpu_s": self.s2.deliveries_per_cpu_sec(),
            "swaps": self.swaps.len(),
            "swaps_ok": self.swaps_ok(),
            "swap_ms_p50": self.swap_ms(0.5),
            "swap_ms_max": self.swap_ms(1.0),
            "steady_latency_us": h(&self.steady),
            "during_swap_latency_us": h(&self.during),
            "p99_ratio": self.p99_ratio(),
        })
    }
}

pub async fn run(target: &Target, cfg: &S5Config) -> anyhow::Result<S5Result> {
    let Target::Presence {
        addr, admin_key, ..
    } = target
    else {
        anyhow::bail!("S5 needs a presence server");
    };
    let admin = Admin::new(*addr, admin_key);
    let (every, a, b) = (cfg.swap_every, cfg.a.clone(), cfg.b.clone());
    let swapper_admin = admin.clone();
    let (r, swaps) = s2::run_with(target, &cfg.s2, move |ctx| async move {
        let mut swaps = Vec::new();
        let mut t = ctx.start + every / 2;
        let mut i = 0usize;
        while t < ctx.until {
            tokio::time::sleep_until(t.into()).await;
            let begin = Instant::now();
            let bytes = if i.is_multiple_of(2) {
                b.clone()
            } else {
                a.clone()
            };
            let ok = swapper_admin.install_plugin("typing", bytes).await.is_ok();
            let end = Instant::now();
            swaps.push(Swap {
                begin_ns: (begin - ctx.epoch).as_nanos() as u64,
                end_ns: (end - ctx.epoch).as_nanos() as u64,
                ok,
            });
            i += 1;
            t += every;
        }
        swaps
    })
    .await?;
    if !swaps.len().is_multiple_of(2) {
        admin.install_plugin("typing", cfg.a.clone()).await?;
    }
    let settle = cfg.settle.as_nanos() as u64;
    let mut steady = new_histogram();
    let mut during = new_histogram();
    for &(intended, us) in &r.timeline {
        let arrived = intended + us as u64 * 1000;
        let in_swap = swaps
            .iter()
            .any(|s| arrived >= s.begin_ns && arrived <= s.end_ns + settle);
        let h = if in_swap { &mut during } else { &mut steady };
        h.saturating_record((us as u64).max(1));
    }
    Ok(S5Result {
        lost: r.expected_deliveries.saturating_sub(r.deliveries),
        s2: r,
        swaps,
        steady,
        during,
    })
}

/// Reads a component from a path, or the embedded ones by name.
pub fn component(spec: &str) -> anyhow::Result<Vec<u8>> {
    match spec {
        "builtin" => Ok(BUILTIN_TYPING.to_vec()),
        "large-groups" => Ok(LARGE_GROUPS_TYPING.to_vec()),
        path => std::fs::read(path).map_err(|e| anyhow::anyhow!("{path}: {e}")),
    }
}

/// The S2 config S5 runs by default: interval 3.2 s with renewals.
pub fn default_interval() -> Duration {
    Duration::from_millis(3200)
}
