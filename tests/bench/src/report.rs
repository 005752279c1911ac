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
        "{:<5} {:<9} {:>4} {:>6} {:>8} {:>10} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>11} {:>6} {:>5} {:>5}",
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
        "ok",
        "gen%"
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
        "{:<5} {:<9} {:>4} {:>6} {:>8} {:>10} {:>9.1} {:>10.1} {:>8} {:>8} {:>8} {:>7} {:>11} {:>6} {:>5} {:>5}",
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
        opt(r.generator_cpu_share.map(|g| g * 100.0), 0),
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
    println!(
        "  reconnect storm: all {} dropped and back with ready in {:.2} s ({:.0}/s), server CPU {} s → {} per CPU-second",
        r.connections,
        r.storm_time.as_secs_f64(),
        r.connections as f64 / r.storm_time.as_secs_f64(),
        opt(r.storm_cpu_sec, 2),
        opt(r.storm_per_cpu_sec(), 0),
    );
}

pub fn json_line(v: &serde_json::Value) {
    println!("{v}");
}

fn pct(h: &hdrhistogram::Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".to_owned()
    } else {
        ms(h.value_at_quantile(q))
    }
}

fn triple(h: &hdrhistogram::Histogram<u64>) -> String {
    format!("{} / {} / {}", pct(h, 0.5), pct(h, 0.99), pct(h, 0.999))
}

pub fn s3_table(r: &crate::s3::S3Result) {
    println!(
        "S3 status churn · {} subjects ({} with {} watchers), {} watcher connections, {} cycles over {:.1} s",
        r.plan.subjects,
        r.tail_subjects,
        r.tail_watchers.min(r.plan.watchers),
        r.plan.watchers,
        r.plan.cycles,
        r.plan.span.as_secs_f64()
    );
    println!(
        "  status changes: {} connects + {} disconnects = {:.1}/s",
        r.connects, r.disconnects, r.status_changes_per_sec
    );
    println!(
        "  deliveries: {} online + {} offline of {} expected, {:.0}/s, server CPU {} s ({} % of a core; generator {} %) → {} per CPU-second",
        r.online_deliveries,
        r.offline_deliveries,
        r.expected_deliveries,
        r.deliveries_per_sec,
        opt(r.server_cpu_sec, 2),
        opt(r.server_cpu_share.map(|s| s * 100.0), 0),
        opt(r.generator_cpu_share.map(|s| s * 100.0), 0),
        opt(r.deliveries_per_cpu_sec(), 0),
    );
    println!(
        "  latency p50 / p99 / p99.9 ms: online from intended connect {} · offline after grace {} · tail subjects {} · connect→ready {}",
        triple(&r.online),
        triple(&r.offline),
        triple(&r.tail),
        triple(&r.connect)
    );
    println!(
        "  server RSS {} KiB · late connects {} · subjects off {} · unmatched {} · errors {} · ok {}",
        r.server_rss_kib.map_or("-".into(), |v| v.to_string()),
        r.late_connects,
        r.subjects_off,
        r.unmatched,
        r.errors,
        if r.consistent() { "yes" } else { "NO" }
    );
}

pub fn s4_header() {
    println!(
        "{:<4} {:<9} {:<9} {:<5} {:>7} {:>7} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>6} {:>5}",
        "scen",
        "backend",
        "target",
        "phase",
        "rate",
        "queries",
        "queries/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "cpu s",
        "db cpu",
        "q/cpu-s",
        "errors",
        "late"
    );
}

pub fn s4_row(backend: &str, r: &crate::s4::S4Run) {
    println!(
        "{:<4} {:<9} {:<9} {:<5} {:>7.0} {:>7} {:>9.1} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>6} {:>5}",
        "S4",
        backend,
        r.target,
        r.phase,
        r.rate,
        r.queries,
        r.queries_per_sec,
        ms(r.p(0.5)),
        ms(r.p(0.99)),
        ms(r.p(0.999)),
        opt(r.cpu_sec, 2),
        opt(r.db_cpu_sec, 2),
        opt(r.queries_per_cpu_sec(), 0),
        r.errors,
        r.late
    );
}

/// presence ÷ direct for each (phase, rate) pair, printed and as JSON.
pub fn s4_ratios(backend: &str, runs: &[crate::s4::S4Run]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in runs.iter().filter(|r| r.target == "presence") {
        let Some(d) = runs
            .iter()
            .find(|d| d.target == "direct" && d.phase == p.phase && d.rate == p.rate)
        else {
            continue;
        };
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        let p50 = div(p.p(0.5) as f64, d.p(0.5) as f64);
        let p99 = div(p.p(0.99) as f64, d.p(0.99) as f64);
        let eff = match (p.queries_per_cpu_sec(), d.queries_per_cpu_sec()) {
            (Some(a), Some(b)) => div(a, b),
            _ => None,
        };
        println!(
            "ratio presence/direct, {backend} {} {:.0}/s: p50 {} · p99 {} · queries per CPU-second {}",
            p.phase,
            p.rate,
            opt(p50, 2),
            opt(p99, 2),
            opt(eff, 3)
        );
        out.push(serde_json::json!({
            "scenario": "s4_vs_direct", "backend": backend, "phase": p.phase, "rate": p.rate,
            "p50_ratio": p50, "p99_ratio": p99, "queries_per_cpu_s_ratio": eff,
        }));
    }
    out
}

/// Where the CPU went in an S2-driven run, as S5 and S6 print it.
fn cpu_summary(s: &S2Result) -> String {
    format!(
        "server CPU {} % of a core (generator {} %), {} deliveries per CPU-second",
        opt(s.server_cpu_share.map(|c| c * 100.0), 0),
        opt(s.generator_cpu_share.map(|c| c * 100.0), 0),
        opt(s.deliveries_per_cpu_sec(), 0)
    )
}

pub fn s5_table(r: &crate::s5::S5Result) {
    let s = &r.s2;
    println!(
        "S5 swap under load · G={} · {} connections · {:.1} events/s, {:.0} deliveries/s · {}",
        s.group_size,
        s.plan.connections,
        s.events_per_sec,
        s.deliveries_per_sec,
        cpu_summary(s)
    );
    println!(
        "  swaps: {} ({} accepted), request p50 {:.0} ms, max {:.0} ms",
        r.swaps.len(),
        r.swaps_ok(),
        r.swap_ms(0.5),
        r.swap_ms(1.0)
    );
    println!(
        "  latency p50 / p99 / p99.9 ms: steady {} ({} deliveries) · during swaps {} ({} deliveries) · p99 ratio {}",
        triple(&r.steady),
        r.steady.len(),
        triple(&r.during),
        r.during.len(),
        opt(r.p99_ratio(), 2)
    );
    println!(
        "  events {} → deliveries {} of {} expected: lost {} · unmatched {} · errors {}",
        s.events_sent, s.deliveries, s.expected_deliveries, r.lost, s.unmatched, s.errors
    );
}

pub fn s6_table(r: &crate::s6::S6Result) {
    let s = &r.s2;
    println!(
        "S6 slow consumers · {} · G={} · {} connections, {} stop reading · {:.0} deliveries/s to the others · {}",
        s.target,
        s.group_size,
        s.plan.connections,
        s.slow_clients,
        s.deliveries_per_sec,
        cpu_summary(s)
    );
    println!(
        "  slow consumers closed by the server: {} of {} (queue-full drops in /metrics: {}); {} ended before they stopped reading",
        s.slow_closed,
        s.slow_clients,
        r.queue_drops.map_or("-".into(), |d| d.to_string()),
        s.slow_lost_early
    );
    println!(
        "  server RSS KiB: {} when they stopped, max {}, end {} (growth {})",
        r.rss_at_stop_kib.map_or("-".into(), |v| v.to_string()),
        r.rss_max_kib.map_or("-".into(), |v| v.to_string()),
        r.rss_end_kib.map_or("-".into(), |v| v.to_string()),
        r.rss_growth_kib().map_or("-".into(), |v| v.to_string()),
    );
    let kib = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    println!(
        "  host TCP socket memory KiB (kernel buffers, /proc/net/sockstat): {} when they stopped, max {}, end {}",
        kib(r.tcp_mem_at_stop_kib),
        kib(r.tcp_mem_max_kib),
        kib(r.tcp_mem_end_kib),
    );
    println!(
        "  others' latency p50 / p99 / p99.9 ms: before {} ({}) · while slow {} ({})",
        triple(&r.steady),
        r.steady.len(),
        triple(&r.slow_phase),
        r.slow_phase.len()
    );
    if !r.stalls.is_empty() {
        let list: Vec<String> = r
            .stalls
            .iter()
            .map(|(sec, n, m)| format!("{sec}s: {n} (≤{m:.0} ms)"))
            .collect();
        println!(
            "  deliveries over 50 ms late by second after the start (slow consumers stop at {:.0}s): {}",
            r.slow_after_s,
            list.join(", ")
        );
    }
    println!(
        "  events {} → deliveries {} of {} expected: lost {} · unmatched {} · errors {}",
        s.events_sent, s.deliveries, s.expected_deliveries, r.lost, s.unmatched, s.errors
    );
}

pub fn s7_table(r: &crate::s7::S7Result) {
    use crate::s7::{Reading, growth};
    let s = &r.s2;
    println!(
        "S7 soak · {} · G={} · {} connections for {:.0} s, {} churn cycles ({} failed) · {:.0} deliveries/s · {}",
        s.target,
        s.group_size,
        s.plan.connections,
        r.soak_s,
        r.churn_cycles,
        r.churn_errors,
        s.deliveries_per_sec,
        cpu_summary(s)
    );
    let v = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let pct =
        |a: Option<u64>, b: Option<u64>| growth(a, b).map_or("-".into(), |g| format!("{g:+.1} %"));
    let row = |name: &str, x: &Reading, vs: Option<&Reading>| {
        let d = |f: fn(&Reading) -> Option<u64>| {
            vs.map_or(String::new(), |b| format!(" ({})", pct(f(b), f(x))))
        };
        println!(
            "  {name:<12} RSS {} KiB{} · fds {}{} · tasks {}{}",
            v(x.rss_kib),
            d(|r| r.rss_kib),
            v(x.fds),
            d(|r| r.fds),
            v(x.tasks),
            d(|r| r.tasks),
        );
    };
    row("baseline", &r.baseline, None);
    row("start", &r.start, None);
    row("after churn", &r.after_churn, Some(&r.start));
    row("after leave", &r.after_leave, Some(&r.baseline));
    println!(
        "  lost deliveries {} · p99 {} µs · back within 5 % of the baseline after the leave: {}",
        s.expected_deliveries.saturating_sub(s.deliveries),
        s.latency_us(0.99),
        if r.within(5.0) { "yes" } else { "NO" }
    );
}
