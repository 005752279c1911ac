//! Webhooks from a cluster: each transition is reported by the one node
//! that observed it, and what the outbox holds survives a node killed with
//! SIGKILL while the receiver is down.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use presence_e2e::cluster::{Cluster, Options, eventually};
use presence_e2e::webhook::{Receiver, SECRET};
use presence_e2e::*;
use serde_json::Value;
use uuid::Uuid;

/// Polls a node's metric until it reaches `at_least`.
async fn metric_reaches(node: &presence_e2e::cluster::Node, series: &str, at_least: f64) {
    eventually(series, Duration::from_secs(20), async || {
        (node.metric(series).await >= at_least).then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_transition_arrives_once_per_id_in_order_across_a_sigkill() {
    let receiver = Receiver::start().await;
    receiver.set_down(true);
    let Some(c) = Cluster::start(
        "every_transition_arrives_once_per_id_in_order_across_a_sigkill",
        2,
        Options {
            // The default status policy: nobody idles into away meanwhile.
            env: vec![
                ("PRESENCE_WEBHOOK_URL", receiver.url()),
                ("PRESENCE_WEBHOOK_SECRET", SECRET.to_owned()),
            ],
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob, cat) = (
        a.user("Ann").await,
        a.user("Bob").await,
        a.user("Cat").await,
    );
    // Ann on A only, Bob on both nodes, Cat comes and goes on B.
    let _ann_a = a.connect(ann).await;
    let _bob_a = a.connect(bob).await;
    let _bob_b = b.connect(bob).await;
    let cat_b = b.connect(cat).await;
    cat_b.close().await;
    // Online ×3 and Cat's offline wait in the shared outbox.
    metric_reaches(b, "presence_webhook_backlog", 4.0).await;

    // A dies with the receiver down; its users go offline (Bob stays online
    // on B); A comes back under the same id.
    a.kill9().await;
    metric_reaches(b, "presence_webhook_backlog", 5.0).await;
    a.restart().await;
    receiver.set_down(false);

    let expected: HashMap<Uuid, Vec<&str>> = [
        (ann, vec!["user.online", "user.offline"]),
        (bob, vec!["user.online"]),
        (cat, vec!["user.online", "user.offline"]),
    ]
    .into();
    let accepted = eventually("every transition", Duration::from_secs(30), async || {
        let got = receiver.accepted();
        let complete = expected.iter().all(|(user, types)| {
            got.iter()
                .filter(|e| e["user_id"] == user.to_string())
                .count()
                >= types.len()
        });
        complete.then_some(got)
    })
    .await;
    assert_eq!(receiver.forged(), 0);
    for (user, types) in &expected {
        // At least once, but a repeat carries the same id: deduplicate by id.
        let mut seen = HashSet::new();
        let events: Vec<&Value> = accepted
            .iter()
            .filter(|e| e["user_id"] == user.to_string())
            .filter(|e| seen.insert(e["id"].as_str().unwrap().to_owned()))
            .collect();
        let got: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            &got, types,
            "in order, each transition once per id, for {user}"
        );
    }
    // Nothing more arrives: no transition was reported by two nodes.
    crate::quiet_for(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.accepted().len(),
        accepted.len(),
        "{:?}",
        receiver.accepted()
    );
}
