//! Output: a readable table on stdout plus one JSON line per scenario
//! (lines starting with `{`, for charts: `grep '^{'`).

use crate::s1::S1Result;
use crate::s2::S2Result;

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub fn s2_header() {
    println!(
        "{:<5} {:<9} {:>4} {:>6} {:>8} {:>10} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>11} {:>6} {:>5}",
        "scen",
        "target",
        "G",
        "conns",
        "events",
        "deliveries",
        "events/s",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "cpu s",
        "deliv/cpu-s",
        "errors",
        "ok"
    );
}

/// True when every event reached exactly G−1 members with nothing unexpected.
pub fn s2_consistent(r: &S2Result) -> bool {
    r.deliveries == r.expected_deliveries
        && r.unmatched == 0
        && r.typers_off == 0
        && r.errors == 0
        && r.histogram.len() == r.deliveries
}

pub fn s2_row(r: &S2Result) {
    println!(
        "{:<5} {:<9} {:>4} {:>6} {:>8} {:>10} {:>9.1} {:>10.1} {:>8} {:>8} {:>8} {:>7} {:>11} {:>6} {:>5}",
        if r.target == "floor" { "S0" } else { "S2" },
        r.target,
        r.group_size,
        r.plan.connections,
        r.events_sent,
        r.deliveries,
        r.events_per_sec,
        r.deliveries_per_sec,
        ms(r.latency_us(0.5)),
        ms(r.latency_us(0.99)),
        ms(r.latency_us(0.999)),
        opt(r.server_cpu_sec, 2),
        opt(r.deliveries_per_cpu_sec(), 0),
        r.errors + r.unmatched,
        if s2_consistent(r) { "yes" } else { "NO" },
    );
}

/// presence ÷ floor for the same group size.
pub fn s2_ratio(presence: &S2Result, floor: &S2Result) -> serde_json::Value {
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let eff = div(
        presence.deliveries_per_cpu_sec(),
        floor.deliveries_per_cpu_sec(),
    );
    let p99 = div(
        Some(presence.latency_us(0.99) as f64),
        Some(floor.latency_us(0.99) as f64),
    );
    println!(
        "ratio presence/floor, G={}: deliveries per CPU-second {} · p99 latency {}",
        presence.group_size,
        opt(eff, 3),
        opt(p99, 2)
    );
    serde_json::json!({
        "scenario": "s2_vs_s0",
        "group_size": presence.group_size,
        "deliveries_per_cpu_s_ratio": eff,
        "p99_ratio": p99,
    })
}

pub fn s1_table(r: &S1Result) {
    println!(
        "S1 {} · {} connections ({} users, {} on two devices)",
        r.target, r.connections, r.users, r.two_device_users
    );
    println!(
        "  connects: {:.2} s, {:.0}/s, server CPU {} s → {} connects per CPU-second",
        r.connect_time.as_secs_f64(),
        r.connects_per_sec,
        opt(r.connect_cpu_sec, 2),
        opt(r.connects_per_cpu_sec(), 0),
    );
    println!(
        "  server RSS: {} KiB → {} KiB, {} KiB per connection",
        r.rss_before_kib.map_or("-".into(), |v| v.to_string()),
        r.rss_after_kib.map_or("-".into(), |v| v.to_string()),
        opt(r.rss_per_connection_kib(), 2),
    );
    println!(
        "  idle: server CPU {} % of a core; {} frames after ready; {} connections lost",
        opt(r.idle_cpu_share.map(|s| s * 100.0), 2),
        r.frames,
        r.errors
    );
}

pub fn json_line(v: &serde_json::Value) {
    println!("{v}");
}
