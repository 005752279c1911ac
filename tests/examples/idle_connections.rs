//! Measures server memory per idle connection: opens N WebSocket connections
//! (distinct users) to a running `presence serve` and reads its RSS.
//!
//! `cargo run --release -p presence-e2e --example idle_connections -- <pid> <ws-base> <jwt-secret> <n>`
//! e.g. `… -- $(pgrep -f 'presence serve') ws://127.0.0.1:8080 $(cat presence-data/jwt_secret) 1000`

use std::time::Duration;

use futures_util::StreamExt;
use uuid::Uuid;

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, pid, base, secret, n] = &args[..] else {
        eprintln!("usage: idle_connections <pid> <ws-base> <jwt-secret> <n>");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("n");
    let before = rss_kib(pid);
    let started = std::time::Instant::now();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let claims = serde_json::json!({"sub": Uuid::new_v4(), "exp": chrono::Utc::now().timestamp() + 3600});
        let token = presence_e2e::sign(&claims, secret);
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/ws?token={token}"))
            .await
            .expect("connect");
        ws.next().await.expect("ready").expect("ready");
        sockets.push(ws);
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "{n} connections in {:.2}s ({:.0}/s, sequential); RSS {before} KiB -> {after} KiB: {:.2} KiB per connection",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        (after - before) as f64 / n as f64
    );
}
