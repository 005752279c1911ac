//! Time-driven status rules in real time, under a status policy with
//! second-scale timings (`tests/plugins/quick-status`) loaded from the
//! plugin directory.

use presence_e2e::*;
use serde_json::json;

#[tokio::test]
async fn an_idle_user_becomes_away_and_activity_brings_them_back() {
    let app = spawn_quick_app().await;
    let Watching { ann, mut b, .. } = app.bob_watching_ann().await;
    let mut a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    let started = std::time::Instant::now();
    let away = b.next_of("user_status").await;
    assert_eq!(away["status"], "away");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_000),
        "only after away_after"
    );
    assert!(away["last_seen"].is_string());
    a.send("activity", json!({})).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
}

#[tokio::test]
async fn the_heartbeat_drops_a_peer_that_stopped_answering() {
    let app = spawn_quick_app().await;
    let Watching { ann, mut b, .. } = app.bob_watching_ann().await;
    // Ann's client never reads again, so it never answers the server's pings.
    let _silent = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    let offline = loop {
        let s = b.next_of("user_status").await;
        if s["status"] == "offline" {
            break s;
        }
    };
    assert_eq!(offline["user_id"], json!(ann));
    // Bob, who reads (and so answers pings), is still connected.
    assert!(b.drain().await.iter().all(|f| f["type"] != "error"));
}

#[tokio::test]
async fn co_members_are_watchers_when_the_status_policy_says_so() {
    let app = spawn_quick_app().await;
    let (ann, cid) = (app.user("Ann").await, app.user("Cid").await);
    app.conversation(&[ann, cid]).await; // no contacts at all
    let mut c = app.connect(cid).await;
    assert_eq!(
        c.ready["contacts"][0]["user_id"],
        json!(ann),
        "co-members are in the snapshot"
    );
    let _a = app.connect(ann).await;
    let s = c.next_of("user_status").await;
    assert_eq!(
        (s["user_id"].clone(), s["status"].clone()),
        (json!(ann), json!("online"))
    );
}

#[tokio::test]
async fn a_user_who_reconnected_within_the_grace_period_still_goes_away_when_idle() {
    let app = spawn_quick_app().await;
    let Watching { ann, mut b, .. } = app.bob_watching_ann().await;
    let a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    a.close().await;
    let _back = app.connect(ann).await; // within the 0.5 s grace: no flap
    let next = b.next_of("user_status").await;
    assert_eq!(next["status"], "away", "idle after the reconnect: {next}");
}
