//! Online and offline when a user's connections are spread over nodes.

use std::time::{Duration, Instant};

use presence_e2e::cluster::{Cluster, Options};
use presence_e2e::*;
use serde_json::json;

use crate::{GRACE, SLACK, quiet_for, same_everywhere, statuses};

#[tokio::test]
async fn a_user_is_online_while_any_node_holds_a_connection_and_every_node_says_so() {
    let Some(c) = Cluster::start(
        "a_user_is_online_while_any_node_holds_a_connection_and_every_node_says_so",
        3,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b, node_c) = (&c[0], &c[1], &c[2]);
    let nodes = c.all();
    let (ann, bob) = (a.user("Ann").await, a.user("Bob").await);
    b.contacts(bob, &[ann]).await;
    let mut bob_b = b.connect(bob).await;
    assert_eq!(bob_b.ready["contacts"][0]["user_id"], json!(ann));
    assert_eq!(bob_b.ready["contacts"][0]["status"], "offline");
    let one = format!("/api/v1/users/{ann}/status");
    let batch = format!("/api/v1/users/status?user_ids={ann},{bob}");

    // First connection, on A: Bob on B sees her come online.
    let ann_a = a.connect(ann).await;
    let online = bob_b.next_of("user_status").await;
    assert_eq!(online["user_id"], json!(ann), "{online}");
    assert_eq!(online["status"], "online", "{online}");
    let s = same_everywhere(&nodes, bob, &one).await;
    assert_eq!(s["data"]["status"], "online", "{s}");
    assert_eq!(s["data"]["is_online"], true, "{s}");
    assert!(s["data"]["last_seen"].is_null(), "{s}");
    let list = same_everywhere(&nodes, bob, &batch).await;
    assert_eq!(list["data"][0]["user_id"], json!(ann), "{list}");
    assert_eq!(list["data"][0]["status"], "online", "{list}");
    assert_eq!(
        list["data"][1]["status"], "online",
        "Bob is connected to B, and A and C know it: {list}"
    );

    // A second connection on C, then the one on A closes: still online.
    let ann_c = node_c.connect(ann).await;
    ann_a.close().await;
    quiet_for(GRACE + SLACK).await;
    let frames = bob_b.drain().await;
    assert!(
        statuses(&frames).is_empty(),
        "Ann is still connected to C: no offline, no flap: {frames:?}"
    );
    let s = same_everywhere(&nodes, bob, &one).await;
    assert_eq!(s["data"]["status"], "online", "{s}");
    // A fresh connection's snapshot, on a node Ann is not connected to.
    let bob_a = a.connect(bob).await;
    assert_eq!(bob_a.ready["contacts"][0]["status"], "online");
    bob_a.close().await;

    // The last connection, on C, closes: one offline after the grace period.
    let closed_at = chrono::Utc::now();
    let started = Instant::now();
    ann_c.close().await;
    let offline = bob_b.next_of("user_status").await;
    let took = started.elapsed();
    eprintln!("offline reached Bob on B {took:?} after Ann's last connection (on C) closed");
    assert_eq!(offline["user_id"], json!(ann), "{offline}");
    assert_eq!(offline["status"], "offline", "{offline}");
    assert!(
        took >= GRACE - Duration::from_millis(100),
        "not before the {GRACE:?} grace: {took:?}"
    );
    let last_seen = offline["last_seen"]
        .as_str()
        .unwrap_or_else(|| panic!("offline carries last_seen: {offline}"));
    let last_seen = chrono::DateTime::parse_from_rfc3339(last_seen)
        .unwrap()
        .to_utc();
    assert!(
        (last_seen - closed_at).num_milliseconds().abs() <= 1_500,
        "last_seen {last_seen} is when the last connection closed ({closed_at})"
    );
    let s = same_everywhere(&nodes, bob, &one).await;
    assert_eq!(s["data"]["status"], "offline", "{s}");
    assert_eq!(s["data"]["is_online"], false, "{s}");
    assert_eq!(s["data"]["last_seen"], offline["last_seen"], "{s}");
    let list = same_everywhere(&nodes, bob, &batch).await;
    assert_eq!(list["data"][0]["status"], "offline", "{list}");
    assert_eq!(list["data"][0]["last_seen"], offline["last_seen"], "{list}");
    assert_eq!(list["data"][1]["status"], "online", "{list}");

    quiet_for(SLACK).await;
    let frames = bob_b.drain().await;
    assert!(
        statuses(&frames).is_empty(),
        "one offline, not one per node: {frames:?}"
    );
}

#[tokio::test]
async fn status_events_from_another_node_pass_each_watchers_privacy() {
    let Some(c) = Cluster::start(
        "status_events_from_another_node_pass_each_watchers_privacy",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, fay, sam) = (
        a.user("Ann").await,
        a.user("Fay").await,
        a.user("Sam").await,
    );
    // Both watch Ann; only Fay is in Ann's own contacts, and Ann shows her
    // last seen to her contacts only (set through A).
    a.contacts(fay, &[ann]).await;
    a.contacts(sam, &[ann]).await;
    a.contacts(ann, &[fay]).await;
    let r = a
        .http
        .put(a.url("/api/v1/users/me/privacy"))
        .bearer_auth(token_for(ann, None))
        .json(&json!({"last_seen_visibility": "contacts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut fay_b = b.connect(fay).await;
    let mut sam_b = b.connect(sam).await;

    a.connect(ann).await.close().await;
    for watcher in [&mut fay_b, &mut sam_b] {
        assert_eq!(watcher.next_of("user_status").await["status"], "online");
    }
    let to_fay = fay_b.next_of("user_status").await;
    let to_sam = sam_b.next_of("user_status").await;
    assert_eq!(to_fay["status"], "offline", "{to_fay}");
    assert!(
        to_fay["last_seen"].is_string(),
        "Fay is Ann's contact: {to_fay}"
    );
    assert_eq!(to_sam["status"], "offline", "{to_sam}");
    assert!(
        to_sam["last_seen"].is_null(),
        "hidden from Sam, who is not Ann's contact: {to_sam}"
    );
    let s = same_everywhere(&c.all(), sam, &format!("/api/v1/users/{ann}/status")).await;
    assert!(s["data"]["last_seen"].is_null(), "{s}");
    assert_eq!(s["data"]["show_last_seen"], false, "{s}");
}
