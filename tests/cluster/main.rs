//! Cluster mode end to end: several real `presence` processes sharing one
//! PostgreSQL schema and Redis, real WebSocket and HTTP clients on different
//! nodes, as behind a load balancer. Each test needs
//! `PRESENCE_TEST_POSTGRES_URL` and `PRESENCE_TEST_REDIS_URL` and prints
//! `skipped: …` without them.

mod admin;
mod crash;
mod failover;
mod model;
mod plugins;
mod redis_outage;
mod status;
mod typing;
mod webhooks;

use std::time::{Duration, Instant};

use presence_e2e::cluster::{Node, POLL_INTERVAL};
use presence_e2e::*;
use serde_json::Value;
use uuid::Uuid;

/// The default status policy's offline grace period.
pub const GRACE: Duration = Duration::from_secs(3);
/// Scheduling, heartbeats and Redis round trips on a busy two-core machine.
pub const SLACK: Duration = Duration::from_secs(2);
/// Longest state replicated through Redis may take to show on another node.
pub const CONVERGE: Duration = Duration::from_secs(5);
/// Longest the nodes may disagree on a REST answer: a client behind the load
/// balancer asks a different node each time.
pub const REST_AGREE: Duration = Duration::from_secs(1);

/// Waits `d` to show that something does *not* happen within the window in
/// which it would; there is no frame to await for an absence.
pub async fn quiet_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// GETs `path` as `viewer` on every node until all give the same answer
/// (within [`REST_AGREE`]), asserts 200, and returns that answer.
pub async fn same_everywhere(nodes: &[&Node], viewer: Uuid, path: &str) -> Value {
    let started = Instant::now();
    loop {
        let mut answers = Vec::new();
        for node in nodes {
            let (status, body) = node.get_as(viewer, path).await;
            assert_eq!(status, 200, "{} {path}: {body}", node.id);
            answers.push((node.id.as_str(), body));
        }
        if answers.iter().all(|(_, b)| *b == answers[0].1) {
            if started.elapsed() > Duration::from_millis(200) {
                eprintln!("{path}: the nodes agreed after {:?}", started.elapsed());
            }
            return answers.swap_remove(0).1;
        }
        assert!(
            started.elapsed() < REST_AGREE,
            "the nodes still answer {path} differently after {REST_AGREE:?}: {answers:#?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The `user_status` frames among `frames`.
pub fn statuses(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "user_status")
        .map(|f| &f["data"])
        .collect()
}

/// The `user_typing` frames among `frames`.
pub fn typings(frames: &[Value]) -> Vec<&Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "user_typing")
        .map(|f| &f["data"])
        .collect()
}
