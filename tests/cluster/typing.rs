//! Typing indicators between users on different nodes, and fan-out that
//! only reaches the nodes hosting recipients.

use std::time::{Duration, Instant};

use presence_e2e::cluster::{Cluster, Options};
use presence_e2e::*;
use serde_json::json;

use crate::{SLACK, typings};

/// The default typing policy's lease.
const TYPING_LEASE: Duration = Duration::from_secs(5);
/// The default typing policy's rate window (one broadcast per user and
/// conversation per window; a stop inside it waits for its end).
const RATE_WINDOW: Duration = Duration::from_secs(1);

#[tokio::test]
async fn typing_reaches_members_on_every_node_once_and_stops_from_another_node() {
    let Some(c) = Cluster::start(
        "typing_reaches_members_on_every_node_once_and_stops_from_another_node",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob, carol) = (
        a.user("Ann").await,
        a.user("Bob").await,
        a.user("Carol").await,
    );
    let conv = a.conversation(&[ann, bob, carol]).await;
    let mut ann_a = a.connect(ann).await;
    let mut bob_b = b.connect(bob).await;
    let mut carol_a = a.connect(carol).await;

    ann_a
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    for (who, client) in [("bob on B", &mut bob_b), ("carol on A", &mut carol_a)] {
        let t = client.next_of("user_typing").await;
        assert_eq!(t["conversation_id"], json!(conv), "{who}: {t}");
        assert_eq!(t["user_id"], json!(ann), "{who}: {t}");
        assert_eq!(t["display_name"], "Ann", "{who}: {t}");
        assert_eq!(t["is_typing"], true, "{who}: {t}");
        assert_eq!(t["typing_user_ids"], json!([ann]), "{who}: {t}");
        assert_eq!(t["text"], "Ann is typing…", "{who}: {t}");
    }

    // Ann on her second device, on the other node: a start there renews the
    // same typing state (silently), and a stop there ends it for everyone,
    // coalesced into the rate window the start on A opened.
    let mut ann_b = b.connect(ann).await;
    ann_b
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    let stopped = Instant::now();
    ann_b
        .send("typing_stop", json!({"conversation_id": conv}))
        .await;
    for (who, client) in [("bob on B", &mut bob_b), ("carol on A", &mut carol_a)] {
        let t = client.next_of("user_typing").await;
        let after = stopped.elapsed();
        assert_eq!(t["user_id"], json!(ann), "{who}: {t}");
        assert_eq!(
            t["is_typing"], false,
            "{who}: after a (silent) renewal and a stop on B, the stop: {t}"
        );
        assert!(
            after <= RATE_WINDOW + SLACK,
            "{who}: the stop on B arrived {after:?} later, as if only the lease ended it"
        );
        assert_eq!(t["typing_user_ids"], json!([]), "{who}: {t}");
        assert_eq!(t["text"], "", "{who}: {t}");
    }

    for (who, client) in [("bob on B", &mut bob_b), ("carol on A", &mut carol_a)] {
        let rest = client.drain().await;
        assert!(
            typings(&rest).is_empty(),
            "{who}: exactly one start and one stop, the renewal on B was silent: {rest:?}"
        );
    }
    for (where_, client) in [("on A", &mut ann_a), ("on B", &mut ann_b)] {
        let got = client.drain().await;
        assert!(
            typings(&got).is_empty(),
            "Ann {where_} never gets her own typing: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_typing_lease_renewed_on_another_node_ends_at_the_same_time_everywhere() {
    let Some(c) = Cluster::start(
        "a_typing_lease_renewed_on_another_node_ends_at_the_same_time_everywhere",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob, carol) = (
        a.user("Ann").await,
        a.user("Bob").await,
        a.user("Carol").await,
    );
    let conv = a.conversation(&[ann, bob, carol]).await;
    let mut ann_a = a.connect(ann).await;
    let mut ann_b = b.connect(ann).await;
    let mut bob_b = b.connect(bob).await;
    let mut carol_a = a.connect(carol).await;

    ann_a
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    for client in [&mut bob_b, &mut carol_a] {
        assert_eq!(client.next_of("user_typing").await["is_typing"], true);
    }
    // She goes on typing on her other device, connected to B, before the
    // lease runs out: the renewal must hold on A as well as on B.
    const PAUSE: Duration = Duration::from_secs(3);
    tokio::time::sleep(PAUSE).await;
    let renewed = Instant::now();
    ann_b
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    for (who, client) in [("bob on B", &mut bob_b), ("carol on A", &mut carol_a)] {
        let t = client.next_of("user_typing").await;
        let after = renewed.elapsed();
        eprintln!("typing lease renewed on B ended for {who} {after:?} after the renewal");
        assert_eq!(t["is_typing"], false, "{who}: the renewal is silent: {t}");
        assert!(
            after >= TYPING_LEASE - Duration::from_millis(200),
            "{who}: typing ended {after:?} after a renewal on B, before the {TYPING_LEASE:?} lease"
        );
        assert!(
            after <= TYPING_LEASE + SLACK,
            "{who}: typing ended only {after:?} after the renewal"
        );
    }
    for (who, client) in [("bob on B", &mut bob_b), ("carol on A", &mut carol_a)] {
        let rest = client.drain().await;
        assert!(typings(&rest).is_empty(), "{who}: one stop: {rest:?}");
    }
    for client in [&mut ann_a, &mut ann_b] {
        assert!(typings(&client.drain().await).is_empty());
    }
}

#[tokio::test]
async fn a_node_hosting_no_member_of_a_conversation_receives_none_of_its_typing() {
    let Some(c) = Cluster::start(
        "a_node_hosting_no_member_of_a_conversation_receives_none_of_its_typing",
        3,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b, node_c) = (&c[0], &c[1], &c[2]);
    let (ann, bob, cid) = (
        a.user("Ann").await,
        a.user("Bob").await,
        a.user("Cid").await,
    );
    let conv = a.conversation(&[ann, bob]).await;
    // Cid shares another conversation with Ann and is connected to C: C has
    // a reason to hear from Ann, just not about the first conversation.
    let other = a.conversation(&[ann, cid]).await;
    let mut ann_a = a.connect(ann).await;
    let mut bob_b = b.connect(bob).await;
    let mut cid_c = node_c.connect(cid).await;

    const PUBLISHED: &str = "presence_cluster_published_total{kind=\"typing\"}";
    const RECEIVED: &str = "presence_cluster_received_total{kind=\"typing\"}";
    let published_before = c.metric_sum(PUBLISHED).await;
    let received_before = c.metric_sum(RECEIVED).await;
    let b_before = b.metric(RECEIVED).await;
    let c_before = node_c.metric(RECEIVED).await;

    const CYCLES: usize = 3;
    for _ in 0..CYCLES {
        for (kind, typing) in [("typing_start", true), ("typing_stop", false)] {
            ann_a.send(kind, json!({"conversation_id": conv})).await;
            let t = bob_b.next_of("user_typing").await;
            assert_eq!(t["is_typing"], typing, "{t}");
        }
    }
    let events = (2 * CYCLES) as f64;
    // Bob saw every transition, so B has received every message for them.
    let published = c.metric_sum(PUBLISHED).await - published_before;
    let received = c.metric_sum(RECEIVED).await - received_before;
    let b_got = b.metric(RECEIVED).await - b_before;
    eprintln!(
        "fan-out: {events} typing events between A and B: {published} published, \
         {received} received ({b_got} by B): {:.2} Redis messages per event",
        (published + received) / events
    );
    assert!(
        b_got >= events,
        "B hosts Bob: it received {b_got} typing messages for {events} events"
    );

    // One start in the conversation Cid is in. Ann's messages leave A in
    // order, so once Cid has it, C has also handled anything A sent it
    // about the first conversation.
    ann_a
        .send("typing_start", json!({"conversation_id": other}))
        .await;
    let t = cid_c.next_of("user_typing").await;
    assert_eq!(t["conversation_id"], json!(other), "{t}");
    let c_got = node_c.metric(RECEIVED).await - c_before;
    assert_eq!(
        c_got, 1.0,
        "C hosts no member of the first conversation: it should have received only the \
         start in the second one, yet received {c_got} typing messages"
    );
    let seen = cid_c.drain().await;
    assert!(
        typings(&seen).is_empty(),
        "Cid is no member of the first conversation: {seen:?}"
    );
}

/// Cross-node typing latency: starts sent on A, each in its own
/// conversation (no rate window in the way), received on B. Prints p50 and
/// p99 (run with `PRESENCE_TEST_BINARY=target/release/presence` for release
/// figures); asserts only that every start arrived once.
#[tokio::test]
async fn cross_node_typing_latency_is_measured() {
    const TYPERS: usize = 10;
    const CONVERSATIONS: usize = 20;
    let Some(c) = Cluster::start(
        "cross_node_typing_latency_is_measured",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let bob = a.user("Bob").await;
    let mut typers = Vec::new();
    for i in 0..TYPERS {
        typers.push(a.user(&format!("Typer {i}")).await);
    }
    let mut conversations = Vec::new();
    for _ in 0..CONVERSATIONS {
        let mut members = typers.clone();
        members.push(bob);
        conversations.push(a.conversation(&members).await);
    }
    let mut bob_b = b.connect(bob).await;
    let mut clients = Vec::new();
    for t in &typers {
        clients.push(a.connect(*t).await);
    }
    let mut samples = Vec::new();
    for conv in &conversations {
        for client in clients.iter_mut() {
            let sent = Instant::now();
            client
                .send("typing_start", json!({"conversation_id": conv}))
                .await;
            let t = bob_b.next_of("user_typing").await;
            samples.push(sent.elapsed());
            assert_eq!(t["conversation_id"], json!(conv), "{t}");
            assert_eq!(t["is_typing"], true, "{t}");
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "cross-node typing latency (A → Redis → B), {} starts: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    assert_eq!(samples.len(), TYPERS * CONVERSATIONS);
    assert!(
        typings(&bob_b.drain().await).is_empty(),
        "each start reached Bob once"
    );
}

/// As nodes are added, a typing event still costs one publish plus one
/// delivery per node hosting a member: nodes without members get nothing.
#[tokio::test]
async fn messages_per_typing_event_do_not_grow_with_the_cluster() {
    const PUBLISHED: &str = "presence_cluster_published_total{kind=\"typing\"}";
    const RECEIVED: &str = "presence_cluster_received_total{kind=\"typing\"}";
    for n in [2, 3, 4] {
        let Some(c) = Cluster::start(
            "messages_per_typing_event_do_not_grow_with_the_cluster",
            n,
            Options::default(),
        )
        .await
        else {
            return;
        };
        let (a, b) = (&c[0], &c[1]);
        let (ann, bob) = (a.user("Ann").await, a.user("Bob").await);
        let conv = a.conversation(&[ann, bob]).await;
        let mut ann_a = a.connect(ann).await;
        let mut bob_b = b.connect(bob).await;
        // Every other node has a user of its own, busy elsewhere.
        let mut others = Vec::new();
        for node in &c.nodes[2..] {
            let u = a.user("Other").await;
            a.conversation(&[u, ann]).await;
            others.push(node.connect(u).await);
        }
        let published_before = c.metric_sum(PUBLISHED).await;
        let received_before = c.metric_sum(RECEIVED).await;
        const EVENTS: usize = 4;
        for i in 0..EVENTS {
            let (kind, typing) = if i % 2 == 0 {
                ("typing_start", true)
            } else {
                ("typing_stop", false)
            };
            ann_a.send(kind, json!({"conversation_id": conv})).await;
            assert_eq!(bob_b.next_of("user_typing").await["is_typing"], typing);
        }
        let published = c.metric_sum(PUBLISHED).await - published_before;
        let received = c.metric_sum(RECEIVED).await - received_before;
        let per_event = (published + received) / EVENTS as f64;
        eprintln!(
            "{n} nodes, members on 2: {published} published, {received} received for \
             {EVENTS} typing events: {per_event:.2} Redis messages per event"
        );
        for node in &c.nodes[2..] {
            assert_eq!(
                node.metric(RECEIVED).await,
                0.0,
                "{} hosts no member of the conversation",
                node.id
            );
        }
        assert_eq!(per_event, 3.0, "1 publish + 1 delivery to each of 2 nodes");
    }
}
