//! `presence plugin check`: validates a component for a slot exactly as
//! the server would, in a private runtime, without a server.

use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::policy::{Policies, PolicyConfig, Slot};

/// Loads the component into a private runtime, as the server would.
pub fn run(file: &std::path::Path, slot: Option<Slot>, config: &Config) -> anyhow::Result<()> {
    let slot = match slot {
        Some(s) => s,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .context("name the slot with --slot (typing, status or privacy)")?,
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let policies = Policies::load(&PolicyConfig {
        plugin_dir: None,
        call_deadline: config.plugin_call_deadline(),
        memory_limit: config.limits.plugin_memory_bytes,
        cache_dir: None,
    })?;
    let started = std::time::Instant::now();
    match policies.check(slot, &bytes) {
        Ok(report) => {
            let us = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e6);
            println!(
                "ok: {} is a valid {slot} plugin ({} bytes, sha256 {}); {} conformance vectors passed in {:.1} ms\n\
                 calls: {}, p50 {:.1} µs, p99 {:.1} µs; peak memory {} KiB",
                file.display(),
                bytes.len(),
                report.info.sha256,
                report.vectors,
                started.elapsed().as_secs_f64() * 1e3,
                report.info.calls,
                us(report.info.latency_p50),
                us(report.info.latency_p99),
                report.info.peak_memory / 1024,
            );
            println!("decisions:");
            for line in &report.decisions {
                println!("  {line}");
            }
            Ok(())
        }
        Err(rejected) => anyhow::bail!("refused: {rejected}"),
    }
}
