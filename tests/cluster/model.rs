//! Status across two nodes under any sequence: one user's devices connect
//! to and close on two real nodes in random order, with pauses inside and
//! past the grace, while a watcher on each node records every status it
//! hears about her. Real processes, Redis and time (the default policy's
//! grace), so few cases by default; `PROPTEST_CASES` raises them.
//!
//! What each watcher hears must be: `online` at her first connection; for
//! every stretch with no connection anywhere, nothing if it was well inside
//! the grace (no flap), `offline` then `online` if it was well past it
//! (either, in between), `offline` never before the grace has run, and
//! `offline` at the end; both watchers the same, and REST on both nodes too.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use presence_e2e::cluster::{Cluster, Node, Options};
use presence_e2e::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::{CONVERGE, GRACE, SLACK, same_everywhere};

/// Device `d` connects to node `d % 2`: two on the first node, so a close
/// there is not always the user's last on that node.
const DEVICES: usize = 3;
const DEFAULT_CASES: u32 = 6;
/// A stretch without connections shorter than this must not flap: far
/// enough inside the grace for the other node's connect to reach Redis.
const SHORT: Duration = Duration::from_secs(2);
/// How early, at most, an `offline` may arrive relative to the grace.
const EARLY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
enum Step {
    Open(usize),
    Close(usize),
    /// Time passes with nothing done: a second (inside the grace), or past
    /// the grace and the slack.
    Pause {
        past_grace: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let device = 0..DEVICES;
    prop_oneof![
        4 => device.clone().prop_map(Step::Open),
        4 => device.prop_map(Step::Close),
        2 => Just(Step::Pause { past_grace: false }),
        1 => Just(Step::Pause { past_grace: true }),
    ]
}

/// A stretch with no connection anywhere: from the close (before it was
/// sent, after the server answered it) to the next open (before it was
/// sent, after `ready`).
#[derive(Debug)]
struct Gap {
    closed: (Instant, Instant),
    reopened: Option<(Instant, Instant)>,
}

impl Gap {
    fn shortest(&self) -> Option<Duration> {
        self.reopened.map(|r| r.0.duration_since(self.closed.1))
    }

    fn longest(&self) -> Option<Duration> {
        self.reopened.map(|r| r.1.duration_since(self.closed.0))
    }
}

/// A `user_status` about the subject, as a watcher heard it.
#[derive(Debug, Clone)]
struct Heard {
    at: Instant,
    status: String,
    last_seen: Option<DateTime<Utc>>,
}

/// Every `user_status` about the subject reaching one watcher.
struct Recorder {
    rx: mpsc::UnboundedReceiver<Heard>,
    task: tokio::task::AbortHandle,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(mut client: Client, subject: Uuid) -> Recorder {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(Ok(msg)) = client.ws.next().await {
            let Message::Text(text) = msg else { continue };
            let frame: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let data = &frame["data"];
            if frame["type"] != "user_status" || data["user_id"] != subject.to_string() {
                continue;
            }
            let heard = Heard {
                at: Instant::now(),
                status: data["status"].as_str().expect("a status").to_owned(),
                last_seen: data["last_seen"]
                    .as_str()
                    .map(|s| s.parse().expect("RFC 3339")),
            };
            if tx.send(heard).is_err() {
                return;
            }
        }
    });
    Recorder {
        rx,
        task: task.abort_handle(),
    }
}

async fn run_case(c: &Cluster, steps: &[Step]) {
    let (a, b) = (&c[0], &c[1]);
    let nodes = c.all();
    let ann = a.user("Ann").await;
    let watchers = [b.user("Bob").await, a.user("Cy").await];
    let mut heard = Vec::new();
    for (w, node) in watchers.iter().zip([a, b]) {
        node.contacts(*w, &[ann]).await;
        let client = node.connect(*w).await;
        assert_eq!(client.ready["contacts"][0]["status"], "offline");
        heard.push(record(client, ann));
    }
    let node_of = |d: usize| -> &Node { &c[d % 2] };

    let mut devices: Vec<Option<Client>> = (0..DEVICES).map(|_| None).collect();
    let mut opened_at = None;
    let mut gaps: Vec<Gap> = Vec::new();
    for step in steps {
        match *step {
            Step::Open(d) if devices[d].is_none() => {
                let before = Instant::now();
                devices[d] = Some(node_of(d).connect(ann).await);
                let after = Instant::now();
                opened_at.get_or_insert(before);
                if let Some(g) = gaps.last_mut().filter(|g| g.reopened.is_none()) {
                    g.reopened = Some((before, after));
                }
            }
            Step::Close(d) if devices[d].is_some() => {
                let before = Instant::now();
                devices[d].take().unwrap().close().await;
                if devices.iter().all(Option::is_none) {
                    gaps.push(Gap {
                        closed: (before, Instant::now()),
                        reopened: None,
                    });
                }
            }
            Step::Pause { past_grace } => {
                let d = if past_grace {
                    GRACE + SLACK + Duration::from_millis(500)
                } else {
                    Duration::from_secs(1)
                };
                tokio::time::sleep(d).await;
            }
            Step::Open(_) | Step::Close(_) => {}
        }
    }
    let Some(opened_at) = opened_at else {
        // She never came online: nobody may have heard a word about her.
        for h in &mut heard {
            assert!(
                h.rx.try_recv().is_err(),
                "a status for a user never connected"
            );
        }
        return;
    };
    let mut last_close = None;
    for client in devices.into_iter().flatten() {
        let before = Instant::now();
        client.close().await;
        last_close = Some((before, Instant::now()));
    }
    if let Some(closed) = last_close {
        gaps.push(Gap {
            closed,
            reopened: None,
        });
    }
    let end = gaps.last().expect("she left").closed.0;

    // Every watcher ends with `offline`, which comes once the grace has run.
    let mut all = Vec::new();
    for (i, r) in heard.iter_mut().enumerate() {
        let mut got: Vec<Heard> = Vec::new();
        let deadline = end + GRACE + CONVERGE;
        while got
            .last()
            .is_none_or(|h| h.status != "offline" || h.at < end)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, r.rx.recv()).await {
                Ok(Some(h)) => got.push(h),
                _ => panic!("watcher {i} heard no final offline: {got:#?}\n{gaps:#?}"),
            }
        }
        check(i, &got, opened_at, &gaps);
        all.push(got.into_iter().map(|h| h.status).collect::<Vec<_>>());
    }
    assert_eq!(all[0], all[1], "both watchers heard the same");
    let s = same_everywhere(&nodes, watchers[0], &format!("/api/v1/users/{ann}/status")).await;
    assert_eq!(s["data"]["status"], "offline", "{s}");
}

/// Matches what watcher `i` heard against the gaps.
fn check(i: usize, got: &[Heard], opened_at: Instant, gaps: &[Gap]) {
    let fail = |why: &str| -> ! { panic!("watcher {i}: {why}\nheard {got:#?}\ngaps {gaps:#?}") };
    let mut heard = got.iter().peekable();
    match heard.next() {
        Some(h) if h.status == "online" && h.at >= opened_at => {}
        _ => fail("the first connection brings `online`"),
    }
    for g in gaps {
        // A stretch she came back from ends in `online` if it had an
        // `offline`; the final `offline` has nothing after it.
        let offline_here = {
            let mut next = heard.clone();
            next.next().is_some_and(|h| h.status == "offline")
                && (g.reopened.is_none() || next.next().is_some_and(|h| h.status == "online"))
        };
        let must = match (g.shortest(), g.longest()) {
            (_, Some(longest)) if longest < SHORT => Some(false),
            (Some(shortest), _) if shortest > GRACE + SLACK => Some(true),
            (None, None) => Some(true),
            _ => None,
        };
        if must.is_some_and(|m| m != offline_here) {
            fail(if offline_here {
                "`offline` though she was back well inside the grace"
            } else {
                "no `offline` though she was gone past the grace"
            });
        }
        if !offline_here {
            continue;
        }
        let off = heard.next().unwrap();
        if off.at < g.closed.0 + GRACE - EARLY {
            fail("`offline` before the grace had run");
        }
        if off.last_seen.is_none() {
            fail("`offline` carries `last_seen`");
        }
        if g.reopened.is_some() {
            match heard.next() {
                Some(h) if h.status == "online" => {}
                _ => fail("`online` again when she came back"),
            }
        }
    }
    if let Some(extra) = heard.next() {
        fail(&format!("more than her comings and goings: {extra:?}"));
    }
}

#[test]
fn status_across_two_nodes_follows_the_model() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(cluster) = rt.block_on(Cluster::start(
        "status_across_two_nodes_follows_the_model",
        2,
        Options::default(),
    )) else {
        return;
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let steps = prop::collection::vec(step(), 1..12);
    let result = runner.run(&steps, |steps| {
        rt.block_on(run_case(&cluster, &steps));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
