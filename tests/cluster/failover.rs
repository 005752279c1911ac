//! A node killed with SIGKILL leaves no ghosts: the survivors take its users
//! offline (unless they are connected elsewhere) and end their typing, and
//! the node coming back under the same id brings nothing stale back.

use std::time::{Duration, Instant};

use presence_e2e::cluster::{Cluster, Options};
use presence_e2e::*;
use serde_json::{Value, json};

use crate::{GRACE, SLACK, quiet_for, same_everywhere, statuses};

#[tokio::test]
async fn users_of_a_killed_node_go_offline_everywhere_and_their_typing_ends() {
    let Some(c) = Cluster::start(
        "users_of_a_killed_node_go_offline_everywhere_and_their_typing_ends",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob) = (a.user("Ann").await, a.user("Bob").await);
    a.contacts(bob, &[ann]).await;
    let conv = a.conversation(&[ann, bob]).await;
    let mut bob_b = b.connect(bob).await;
    let connected_at = chrono::Utc::now();
    let mut ann_a = a.connect(ann).await;
    assert_eq!(bob_b.next_of("user_status").await["status"], "online");
    ann_a
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(bob_b.next_of("user_typing").await["is_typing"], true);

    let killed = Instant::now();
    a.kill9().await;
    let (mut typing_end, mut offline): (Option<Duration>, Option<(Duration, Value)>) = (None, None);
    while typing_end.is_none() || offline.is_none() {
        let Ok(f) = tokio::time::timeout(FRAME_TIMEOUT, bob_b.next()).await else {
            panic!(
                "{FRAME_TIMEOUT:?} after A was killed Bob has typing end {typing_end:?}, \
                 offline {offline:?}"
            );
        };
        match f["type"].as_str() {
            Some("user_typing") => {
                assert_eq!(f["data"]["user_id"], json!(ann), "{f}");
                assert_eq!(f["data"]["is_typing"], false, "{f}");
                assert!(typing_end.is_none(), "a second typing end: {f}");
                typing_end = Some(killed.elapsed());
            }
            Some("user_status") => {
                assert_eq!(f["data"]["user_id"], json!(ann), "{f}");
                assert_eq!(f["data"]["status"], "offline", "{f}");
                assert!(offline.is_none(), "a second status: {f}");
                offline = Some((killed.elapsed(), f["data"].clone()));
            }
            _ => {}
        }
    }
    let (typing_end, (detected, offline)) = (typing_end.unwrap(), offline.unwrap());
    eprintln!(
        "kill -9 of A: Bob on B saw Ann's typing end after {typing_end:?} and Ann offline \
         after {detected:?} (node lease {:?} + grace {GRACE:?})",
        c.lease
    );
    assert!(
        detected <= c.lease + GRACE + SLACK,
        "offline within lease + grace + {SLACK:?}, not {detected:?}"
    );
    assert!(
        typing_end <= c.lease + SLACK,
        "typing through the dead node ends once its lease is gone, not {typing_end:?} \
         later (as the 5 s typing lease alone would end it)"
    );
    let last_seen = offline["last_seen"]
        .as_str()
        .unwrap_or_else(|| panic!("offline carries last_seen: {offline}"));
    let last_seen = chrono::DateTime::parse_from_rfc3339(last_seen)
        .unwrap()
        .to_utc();
    assert!(
        last_seen >= connected_at - chrono::Duration::seconds(1) && last_seen <= chrono::Utc::now(),
        "last_seen {last_seen} lies between her connecting ({connected_at}) and now"
    );
    let s = same_everywhere(&[b], bob, &format!("/api/v1/users/{ann}/status")).await;
    assert_eq!(s["data"]["status"], "offline", "{s}");
    assert_eq!(s["data"]["last_seen"], offline["last_seen"], "{s}");

    quiet_for(SLACK).await;
    let frames = bob_b.drain().await;
    assert!(
        statuses(&frames).is_empty(),
        "one offline, not one per survivor: {frames:?}"
    );
}

#[tokio::test]
async fn a_user_connected_to_a_survivor_stays_online_when_a_node_is_killed() {
    let Some(c) = Cluster::start(
        "a_user_connected_to_a_survivor_stays_online_when_a_node_is_killed",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob) = (a.user("Ann").await, a.user("Bob").await);
    a.contacts(bob, &[ann]).await;
    let mut bob_b = b.connect(bob).await;
    let _ann_a = a.connect(ann).await;
    assert_eq!(bob_b.next_of("user_status").await["status"], "online");
    let mut ann_b = b.connect(ann).await;

    a.kill9().await;
    quiet_for(c.lease + GRACE + SLACK).await;
    let frames = bob_b.drain().await;
    assert!(
        statuses(&frames).is_empty(),
        "Ann is still connected to B: no offline, no flap: {frames:?}"
    );
    let s = same_everywhere(&[b], bob, &format!("/api/v1/users/{ann}/status")).await;
    assert_eq!(s["data"]["status"], "online", "{s}");
    // Her connection to B was not disturbed.
    assert!(ann_b.drain().await.iter().all(|f| f["type"] != "error"));
}

#[tokio::test]
async fn a_node_restarted_under_the_same_id_brings_back_no_stale_presence() {
    let Some(c) = Cluster::start(
        "a_node_restarted_under_the_same_id_brings_back_no_stale_presence",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob, cid) = (
        a.user("Ann").await,
        a.user("Bob").await,
        a.user("Cid").await,
    );
    a.contacts(bob, &[ann]).await;
    a.contacts(cid, &[ann]).await;
    let mut bob_b = b.connect(bob).await;
    let _ann_a = a.connect(ann).await;
    assert_eq!(bob_b.next_of("user_status").await["status"], "online");

    // Back at once, most likely before its lease ran out: the restarted
    // node must not take over the dead process's connections.
    let killed = Instant::now();
    a.kill9().await;
    a.restart().await;
    let back = killed.elapsed();
    let offline = bob_b.next_of("user_status").await;
    let detected = killed.elapsed();
    eprintln!(
        "kill -9 and restart of A: back after {back:?}; Ann offline for Bob after {detected:?}"
    );
    assert_eq!(offline["user_id"], json!(ann), "{offline}");
    assert_eq!(offline["status"], "offline", "{offline}");
    assert!(
        detected <= c.lease + GRACE + SLACK,
        "offline within lease + grace + {SLACK:?}, not {detected:?}"
    );
    assert!(offline["last_seen"].is_string(), "{offline}");

    let s = same_everywhere(&c.all(), bob, &format!("/api/v1/users/{ann}/status")).await;
    assert_eq!(s["data"]["status"], "offline", "{s}");
    assert_eq!(s["data"]["last_seen"], offline["last_seen"], "{s}");
    // A watcher connecting to the restarted node is not shown a ghost.
    let cid_a = a.connect(cid).await;
    assert_eq!(cid_a.ready["contacts"][0]["user_id"], json!(ann));
    assert_eq!(cid_a.ready["contacts"][0]["status"], "offline");

    quiet_for(c.lease + SLACK).await;
    let frames = bob_b.drain().await;
    assert!(
        statuses(&frames).is_empty(),
        "no stale online, no second offline: {frames:?}"
    );
}
