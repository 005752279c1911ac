//! Redis goes away and comes back (empty, as after a crash of a Redis
//! without persistence): nodes keep serving their own users, say they are
//! unhealthy, and reconcile afterwards without inventing or losing status
//! events.

use std::time::{Duration, Instant};

use presence_e2e::cluster::{self, Cluster, Node, Options, PrivateRedis, eventually};
use presence_e2e::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::{CONVERGE, GRACE, SLACK, quiet_for, same_everywhere, statuses};

/// Longest a node may take to notice Redis is back (client reconnect back-off).
const RECONNECT: Duration = Duration::from_secs(20);

async fn all_answer(nodes: &[&Node], want: StatusCode) -> Option<()> {
    for node in nodes {
        if node.health().await != want {
            return None;
        }
    }
    Some(())
}

async fn all_up(nodes: &[&Node], up: f64) -> Option<()> {
    for node in nodes {
        if node.metric("presence_cluster_up").await != up {
            return None;
        }
    }
    Some(())
}

/// `n` nodes on a Redis of the test's own, to take away and bring back;
/// `None` (after printing `skipped: …`) without the test databases.
async fn on_private_redis(test: &str, n: usize) -> Option<(PrivateRedis, Cluster)> {
    if cluster::skip(test) {
        return None;
    }
    let redis = PrivateRedis::new().await;
    let options = Options {
        redis_url: Some(redis.url()),
        ..Options::default()
    };
    let c = Cluster::start(test, n, options).await?;
    Some((redis, c))
}

#[tokio::test]
async fn nodes_serve_their_own_users_through_a_redis_outage_and_reconcile_after_it() {
    const TEST: &str = "nodes_serve_their_own_users_through_a_redis_outage_and_reconcile_after_it";
    let Some((mut redis, c)) = on_private_redis(TEST, 2).await else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let nodes = c.all();
    let [ann, bob, hal, eve, fox, carol, dave] = {
        let mut ids = Vec::new();
        for name in ["Ann", "Bob", "Hal", "Eve", "Fox", "Carol", "Dave"] {
            ids.push(a.user(name).await);
        }
        ids.try_into().unwrap()
    };
    // Bob on B and Hal on A watch Ann (who stays), Eve (who leaves during
    // the outage) and Fox (who arrives during it).
    a.contacts(bob, &[ann, eve, fox]).await;
    a.contacts(hal, &[ann, eve, fox]).await;
    let ann_bob = a.conversation(&[ann, bob]).await;
    let carol_dave = a.conversation(&[carol, dave]).await;
    let mut bob_b = b.connect(bob).await;
    let mut hal_a = a.connect(hal).await;
    let mut ann_a = a.connect(ann).await;
    let eve_a = a.connect(eve).await;
    for watcher in [&mut bob_b, &mut hal_a] {
        let mut online = Vec::new();
        for _ in 0..2 {
            let s = watcher.next_of("user_status").await;
            assert_eq!(s["status"], "online", "{s}");
            online.push(s["user_id"].clone());
        }
        online.sort_by_key(|v| v.to_string());
        let mut want = vec![json!(ann), json!(eve)];
        want.sort_by_key(|v| v.to_string());
        assert_eq!(online, want, "Ann and Eve online, in either order");
    }
    let mut carol_a = a.connect(carol).await;
    let mut dave_a = a.connect(dave).await;
    all_up(&nodes, 1.0)
        .await
        .expect("presence_cluster_up is 1 with Redis up");

    let down = Instant::now();
    redis.kill();
    eventually(
        "both nodes answer /healthz 503 without Redis",
        CONVERGE,
        async || all_answer(&nodes, StatusCode::SERVICE_UNAVAILABLE).await,
    )
    .await;
    eprintln!(
        "Redis killed: /healthz 503 on both nodes after {:?}",
        down.elapsed()
    );
    assert_eq!(a.metric("presence_cluster_up").await, 0.0);

    // Users of one node still see each other: typing, and status changes
    // (Eve leaves, Fox arrives) reach Hal on the same node.
    carol_a
        .send("typing_start", json!({"conversation_id": carol_dave}))
        .await;
    let t = dave_a.next_of("user_typing").await;
    assert_eq!(
        (t["user_id"].clone(), t["is_typing"].clone()),
        (json!(carol), json!(true)),
        "{t}"
    );
    eve_a.close().await;
    let s = hal_a.next_of("user_status").await;
    assert_eq!(
        (s["user_id"].clone(), s["status"].clone()),
        (json!(eve), json!("offline")),
        "Hal, on Eve's node, hears she left during the outage: {s}"
    );
    assert!(s["last_seen"].is_string(), "{s}");
    let eve_last_seen = s["last_seen"].clone();
    let _fox_a = a.connect(fox).await;
    let s = hal_a.next_of("user_status").await;
    assert_eq!(
        (s["user_id"].clone(), s["status"].clone()),
        (json!(fox), json!("online")),
        "Hal, on Fox's node, hears he arrived during the outage: {s}"
    );

    let restarted = Instant::now();
    redis.start().await;
    eventually(
        "both nodes answer /healthz 200 once Redis is back",
        RECONNECT,
        async || all_answer(&nodes, StatusCode::OK).await,
    )
    .await;
    let healthy = restarted.elapsed();
    eventually(
        "presence_cluster_up is 1 on both nodes once Redis is back",
        RECONNECT,
        async || all_up(&nodes, 1.0).await,
    )
    .await;
    eprintln!(
        "Redis back: /healthz 200 on both after {healthy:?}, presence_cluster_up 1 after {:?} \
         (outage {:?})",
        restarted.elapsed(),
        restarted - down
    );

    // What changed during the outage reaches Bob on B, once each; nothing
    // about Ann, who stayed connected throughout.
    let (mut eve_offline, mut fox_online) = (None, None);
    while eve_offline.is_none() || fox_online.is_none() {
        let s = bob_b.next_of("user_status").await;
        let user = s["user_id"].clone();
        if user == json!(eve) && eve_offline.is_none() {
            assert_eq!(s["status"], "offline", "{s}");
            eve_offline = Some(s);
        } else if user == json!(fox) && fox_online.is_none() {
            assert_eq!(s["status"], "online", "{s}");
            fox_online = Some(s);
        } else {
            panic!("after the outage Bob got a status that did not change or a repeat: {s}");
        }
    }
    let eve_offline = eve_offline.unwrap();
    assert_eq!(
        eve_offline["last_seen"], eve_last_seen,
        "the last seen Hal was told on A: {eve_offline}"
    );
    quiet_for(c.lease + GRACE + SLACK).await;
    for (who, watcher) in [("Bob on B", &mut bob_b), ("Hal on A", &mut hal_a)] {
        let frames = watcher.drain().await;
        assert!(
            statuses(&frames).is_empty(),
            "{who}: no duplicate or invented status after the reconciliation: {frames:?}"
        );
    }
    let list = same_everywhere(
        &nodes,
        bob,
        &format!("/api/v1/users/status?user_ids={ann},{eve},{fox}"),
    )
    .await;
    assert_eq!(list["data"][0]["status"], "online", "{list}");
    assert_eq!(list["data"][1]["status"], "offline", "{list}");
    assert_eq!(list["data"][1]["last_seen"], eve_last_seen, "{list}");
    assert_eq!(list["data"][2]["status"], "online", "{list}");

    // Fan-out across nodes works again.
    ann_a
        .send("typing_start", json!({"conversation_id": ann_bob}))
        .await;
    let t = bob_b.next_of("user_typing").await;
    assert_eq!(
        (t["user_id"].clone(), t["is_typing"].clone()),
        (json!(ann), json!(true)),
        "{t}"
    );
}

/// Redis stops answering for longer than a lease but keeps its data (as a
/// stalled or partitioned Redis does): when it answers again watchers see
/// no offline/online flap and everyone is still online. (Whether a node
/// would have been reaped is hidden here by the nodes' own links dropping
/// during the stall; the guards against it are in the HEARTBEAT script and
/// the node's grace after Redis returns.)
#[tokio::test]
async fn a_redis_that_stalls_and_keeps_its_data_takes_nobody_offline() {
    const TEST: &str = "a_redis_that_stalls_and_keeps_its_data_takes_nobody_offline";
    let Some((redis, c)) = on_private_redis(TEST, 2).await else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let nodes = c.all();
    // Each watches the other, so whichever node is wrongly taken for dead,
    // a watcher on the other one would see it.
    let (ann, bob) = (a.user("Ann").await, a.user("Bob").await);
    a.contacts(bob, &[ann]).await;
    a.contacts(ann, &[bob]).await;
    let mut bob_b = b.connect(bob).await;
    let mut ann_a = a.connect(ann).await;
    assert_eq!(bob_b.next_of("user_status").await["status"], "online");

    // DEBUG SLEEP blocks the whole server, data intact, past every lease.
    let stall = c.lease + Duration::from_secs(2);
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "DEBUG", "SLEEP"])
        .arg(stall.as_secs_f64().to_string())
        .output()
        .await
        .expect("redis-cli runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "OK",
        "Redis slept: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("every node up again", RECONNECT, || all_up(&nodes, 1.0)).await;

    quiet_for(c.lease + GRACE + SLACK).await;
    for (who, client) in [("Bob", &mut bob_b), ("Ann", &mut ann_a)] {
        let frames = client.drain().await;
        assert!(
            statuses(&frames).is_empty(),
            "{who}: both stayed connected through the stall: no offline, no online: {frames:?}"
        );
    }
    let s = same_everywhere(&nodes, bob, &format!("/api/v1/users/{ann}/status")).await;
    assert_eq!(s["data"]["status"], "online", "{s}");
}

/// Redis takes the connection but refuses the subscription (an ACL): the
/// node says why on `/healthz`, backs off instead of reconnecting in a
/// tight loop, and links up again once the subscription is allowed.
#[tokio::test]
async fn a_refused_subscription_is_reported_and_retried_with_backoff() {
    const TEST: &str = "a_refused_subscription_is_reported_and_retried_with_backoff";
    let Some((redis, c)) = on_private_redis(TEST, 1).await else {
        return;
    };
    let node = &c[0];
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let cmd = |args: &[&str]| {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c
    };
    let _: () = cmd(&["ACL", "SETUSER", "default", "-subscribe"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = cmd(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .query_async(&mut conn)
        .await
        .unwrap();

    let reason = eventually(
        "/healthz says the subscription is refused",
        RECONNECT,
        async || {
            let r = node.http.get(node.url("/healthz")).send().await.unwrap();
            if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                return None;
            }
            let body: serde_json::Value = r.json().await.unwrap();
            let message = body["error"]["message"].as_str()?.to_owned();
            message.contains("subscription failed").then_some(message)
        },
    )
    .await;
    assert!(
        reason.contains("no permissions"),
        "Redis's own reason: {reason}"
    );

    // Over a few seconds the node tries again a handful of times, not
    // thousands (a tight loop).
    let connections = async |conn: &mut redis::aio::MultiplexedConnection| {
        let info: String = cmd(&["INFO", "stats"]).query_async(conn).await.unwrap();
        cluster::parse_metric(&info.replace(':', " "), "total_connections_received").unwrap()
    };
    let before = connections(&mut conn).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // an observation window
    let tries = connections(&mut conn).await - before;
    assert!(tries <= 10.0, "{tries} connections in 3 s: no backoff");

    let _: () = cmd(&["ACL", "SETUSER", "default", "+subscribe"])
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the node links up again", RECONNECT, async || {
        (node.health().await == StatusCode::OK).then_some(())
    })
    .await;
}
