//! Webhooks to the chat backend from one node: every transition arrives,
//! signed, in order, batched, and retried with the same ids when the
//! receiver fails or hangs.

use std::sync::Arc;
use std::time::Duration;

use presence_e2e::cluster::{eventually, parse_metric};
use presence_e2e::webhook::{HANG, Receiver, SECRET};
use presence_e2e::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// A server with the quick status policy (0.5 s grace) and a webhook.
async fn app_with_webhook(receiver: &Receiver) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        env!("PRESENCE_TEST_QUICK_STATUS_WASM"),
        plugins.join("status.wasm"),
    )
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let hook = receiver.url();
    spawn_app_on(url, dir, |c| {
        c.plugin_dir = Some(plugins);
        c.webhook_url = Some(hook);
        c.webhook_secret = Some(SECRET.into());
    })
    .await
}

/// The accepted events of `user`, in arrival order.
fn events_of(receiver: &Receiver, user: Uuid) -> Vec<Value> {
    receiver
        .accepted()
        .into_iter()
        .filter(|e| e["user_id"] == user.to_string())
        .collect()
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metric(&text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_reach_the_chat_backend_signed_in_order_and_retried_with_the_same_ids() {
    let receiver = Receiver::start().await;
    receiver.script(&[500, 500]);
    let app = app_with_webhook(&receiver).await;
    let ann = app.user("Ann").await;
    let mut a = app.connect(ann).await;
    a.send("set_status", json!({"status": "away"})).await;
    a.drain().await;
    a.send("set_status", json!({"status": "online"})).await;
    a.drain().await;
    a.close().await;

    let events = eventually("four transitions", Duration::from_secs(20), async || {
        let e = events_of(&receiver, ann);
        (e.len() >= 4).then_some(e)
    })
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["user.online", "user.away", "user.online", "user.offline"]
    );
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "each transition has its own id: {events:?}");
    assert!(events[0]["last_seen"].is_null());
    for e in &events[1..] {
        if e["type"] != "user.online" {
            assert!(e["last_seen"].as_str().unwrap().ends_with('Z'), "{e}");
        }
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // The two refused batches were sent again with the same ids.
    let deliveries = receiver.deliveries();
    let refused: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d.answered == 500)
        .flat_map(|d| &d.events)
        .collect();
    assert!(!refused.is_empty());
    for e in refused {
        assert!(
            ids.contains(e["id"].as_str().unwrap()),
            "{e} retried as another id"
        );
    }
    assert_eq!(receiver.forged(), 0, "every request was signed");
    assert!(metric(&app, "presence_webhook_failures_total").await >= 2.0);
    assert!(metric(&app, "presence_webhook_retries_total").await >= 1.0);
    assert!(metric(&app, "presence_webhook_delivered_total").await >= 4.0);
    eventually("an empty outbox", Duration::from_secs(5), async || {
        (metric(&app, "presence_webhook_backlog").await == 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_is_given_up_on_and_retried() {
    let receiver = Receiver::start().await;
    receiver.script(&[HANG]);
    let app = app_with_webhook(&receiver).await;
    let ann = app.user("Ann").await;
    let a = app.connect(ann).await;
    let events = eventually(
        "the online after a timeout",
        Duration::from_secs(20),
        async || {
            let e = events_of(&receiver, ann);
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(events[0]["type"], "user.online");
    let hung = &receiver.deliveries()[0];
    assert_eq!(hung.answered, HANG, "the first attempt got no answer");
    assert_eq!(
        hung.events[0]["id"], events[0]["id"],
        "and was sent again as it was"
    );
    // The server went on serving meanwhile.
    a.close().await;
    let (status, _) = app.get_as(ann, "/api/v1/users/me/status").await;
    assert!(status.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_connected_at_a_clean_stop_are_reported_offline_after_the_restart() {
    let receiver = Receiver::start().await;
    receiver.set_down(true);
    let app = app_with_webhook(&receiver).await;
    let ann = app.user("Ann").await;
    let _a = app.connect(ann).await;
    let dir = app.dir.clone();
    let url = app.database_url.clone();
    app.stop().await.unwrap();
    assert!(receiver.accepted().is_empty());

    // Back up, with the receiver answering: what the outbox kept goes out.
    receiver.set_down(false);
    let hook = receiver.url();
    let _app = spawn_app_on(url, dir, |c| {
        c.webhook_url = Some(hook);
        c.webhook_secret = Some(SECRET.into());
    })
    .await;
    let events = eventually("online and offline", Duration::from_secs(20), async || {
        let e = events_of(&receiver, ann);
        (e.len() >= 2).then_some(e)
    })
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["user.online", "user.offline"]);
}
