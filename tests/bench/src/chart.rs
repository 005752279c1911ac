//! SVG charts from the suite's JSON lines, hand-written (no plotting
//! dependency): latency against load from S2/S0 runs at several rates, and
//! server memory against connections from S1 runs at several sizes.
//!
//! `presence-bench chart --input runs.jsonl --out-dir target/bench-charts`
//! reads every line starting with `{` (so whole run logs may be passed).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub dashed: bool,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// About five round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart; `log_y` uses a base-10 axis (values must be > 0).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 10.0);
    }
    x0 = x0.min(0.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let ty = |v: f64| if log_y { v.max(1e-9).log10() } else { v };
    let (ly0, ly1) = if log_y {
        (ty(y0).floor(), ty(y1).ceil().max(ty(y0).floor() + 1.0))
    } else {
        (y0.min(0.0), if y1 > 0.0 { y1 * 1.1 } else { 1.0 })
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (ty(y) - ly0) / (ly1 - ly0) * ph;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // Grid and ticks.
    for t in ticks(x0, x1) {
        let x = sx(t);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            fmt_tick(t)
        );
    }
    let yticks: Vec<f64> = if log_y {
        (ly0 as i32..=ly1 as i32)
            .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
            .filter(|v| ty(*v) <= ly1 + 1e-9)
            .collect()
    } else {
        ticks(ly0, ly1)
    };
    for t in yticks {
        let y = sy(t);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_label)
    );
    // Series and legend.
    for (i, s) in series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            s.color
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                sx(x),
                sy(y),
                s.color
            );
        }
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = LEFT + pw + 12.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 22.0,
            s.color,
            lx + 28.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Every JSON object line of `text`.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// p99 (ms) against deliveries/s, one line per target, group size and
/// typers per group (presence solid, floor dashed in the same colour), from
/// `s2` and `s0` lines.
pub fn latency_vs_load(runs: &[Value]) -> Option<String> {
    // (group size, typers per group) → target → points
    type Points = Vec<(f64, f64)>;
    let mut by: BTreeMap<(u64, u64), BTreeMap<String, Points>> = BTreeMap::new();
    for r in runs {
        let scen = r["scenario"].as_str().unwrap_or("");
        if scen != "s2" && scen != "s0" {
            continue;
        }
        let (Some(x), Some(g), Some(p99)) = (
            r["deliveries_per_s"].as_f64(),
            r["group_size"].as_u64(),
            r["latency_us"]["p99"].as_f64(),
        ) else {
            continue;
        };
        let tpg = match (r["typers"].as_u64(), r["groups"].as_u64()) {
            (Some(t), Some(gr)) if gr > 0 => t / gr,
            _ => 1,
        };
        let target = r["target"].as_str().unwrap_or("?").to_owned();
        by.entry((g, tpg))
            .or_default()
            .entry(target)
            .or_default()
            .push((x, p99 / 1000.0));
    }
    if by.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    for (i, ((g, tpg), targets)) in by.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (target, pts) in targets {
            let pts = median_per_x(pts);
            let typers = if tpg > 1 {
                format!(", {tpg} typers")
            } else {
                String::new()
            };
            series.push(Series {
                dashed: target == "floor",
                name: format!("{target} G={g}{typers}"),
                points: pts,
                color,
            });
        }
    }
    Some(line_chart(
        "Typing delivery p99 against load (S2 solid, S0 floor dashed)",
        "deliveries per second",
        "p99 from intended send, ms (log)",
        &series,
        true,
    ))
}

/// Points sorted by x; repeated runs at one x become their median y.
fn median_per_x(mut pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut i = 0;
    while i < pts.len() {
        let j = pts[i..].iter().take_while(|p| p.0 == pts[i].0).count();
        out.push(pts[i + j / 2]);
        i += j;
    }
    out
}

/// Server RSS growth (MiB) against idle connections from `s1` lines, with
/// the 4 KiB-per-connection target for scale.
pub fn memory_vs_connections(runs: &[Value]) -> Option<String> {
    let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in runs {
        if r["scenario"] != "s1" {
            continue;
        }
        let (Some(n), Some(b), Some(a)) = (
            r["connections"].as_f64(),
            r["rss_before_kib"].as_f64(),
            r["rss_after_kib"].as_f64(),
        ) else {
            continue;
        };
        let target = r["target"].as_str().unwrap_or("?").to_owned();
        by.entry(target).or_default().push((n, (a - b) / 1024.0));
    }
    if by.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    let mut max_n: f64 = 0.0;
    for (i, (target, mut pts)) in by.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        max_n = pts.iter().map(|p| p.0).fold(max_n, f64::max);
        series.push(Series {
            name: target,
            points: pts,
            color: COLORS[i % COLORS.len()],
            dashed: false,
        });
    }
    series.push(Series {
        name: "target 4 KiB/conn".to_owned(),
        points: vec![(0.0, 0.0), (max_n, max_n * 4.0 / 1024.0)],
        color: "#777777",
        dashed: true,
    });
    Some(line_chart(
        "Server memory against idle connections (S1)",
        "connections",
        "RSS growth, MiB",
        &series,
        false,
    ))
}

/// Writes every chart the lines have data for into `dir`; returns the files.
pub fn write_charts(runs: &[Value], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, svg) in [
        ("latency-vs-load.svg", latency_vs_load(runs)),
        ("memory-vs-connections.svg", memory_vs_connections(runs)),
    ] {
        if let Some(svg) = svg {
            let path = dir.join(name);
            std::fs::write(&path, svg)?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_runs_at_one_load_become_their_median() {
        let pts = vec![(2.0, 9.0), (1.0, 5.0), (2.0, 1.0), (2.0, 3.0)];
        assert_eq!(median_per_x(pts), vec![(1.0, 5.0), (2.0, 3.0)]);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 45_000.0).len(), 5);
    }

    #[test]
    fn charts_come_from_json_lines() {
        let text = r#"noise
{"scenario":"s2","target":"presence","group_size":10,"deliveries_per_s":3600,"latency_us":{"p50":1500,"p99":5000}}
{"scenario":"s2","target":"presence","group_size":10,"deliveries_per_s":7200,"latency_us":{"p50":1700,"p99":7000}}
{"scenario":"s1","target":"presence","connections":2000,"rss_before_kib":10000,"rss_after_kib":33000}
"#;
        let runs = json_lines(text);
        assert_eq!(runs.len(), 3);
        let svg = latency_vs_load(&runs).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("presence G=10"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let svg = memory_vs_connections(&runs).unwrap();
        assert!(svg.contains("target 4 KiB/conn"));
        assert!(memory_vs_connections(&runs[..2]).is_none());
    }
}
