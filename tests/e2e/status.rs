//! Online, away and offline as watchers see them.

use presence_e2e::*;
use serde_json::json;

#[tokio::test]
async fn watchers_see_online_then_offline_after_the_grace_period() {
    let app = spawn_app().await;
    let Watching { ann, bob, mut b } = app.bob_watching_ann().await;
    assert_eq!(b.ready["contacts"][0]["user_id"], json!(ann));
    assert_eq!(b.ready["contacts"][0]["status"], "offline");

    let a = app.connect(ann).await;
    let online = b.next_of("user_status").await;
    assert_eq!(online["user_id"], json!(ann));
    assert_eq!(online["status"], "online");
    assert!(online["timestamp"].as_str().unwrap().ends_with('Z'));

    let closed_at = chrono::Utc::now();
    let started = std::time::Instant::now();
    a.close().await;
    let offline = b.next_of("user_status").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(2_900),
        "not before the 3 s grace"
    );
    assert_eq!(offline["status"], "offline");
    let last_seen =
        chrono::DateTime::parse_from_rfc3339(offline["last_seen"].as_str().unwrap()).unwrap();
    assert!(
        (last_seen.to_utc() - closed_at).num_seconds().abs() <= 1,
        "last_seen is the disconnect time"
    );

    let (_, body) = app
        .get_as(bob, &format!("/api/v1/users/{ann}/status"))
        .await;
    assert_eq!(body["data"]["status"], "offline");
    assert_eq!(body["data"]["last_seen"], offline["last_seen"]);
}

#[tokio::test]
async fn a_quick_reconnect_produces_no_flap() {
    let app = spawn_app().await;
    let Watching { ann, mut b, .. } = app.bob_watching_ann().await;
    let a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    a.close().await;
    let a2 = app.connect(ann).await;
    // Past the grace period, still nothing: she never went offline.
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let frames = b.drain().await;
    assert!(
        frames.iter().all(|f| f["type"] != "user_status"),
        "no flap: {frames:?}"
    );
    drop(a2);
}

#[tokio::test]
async fn a_user_stays_online_while_any_device_is_connected() {
    let app = spawn_app().await;
    let Watching { ann, bob, mut b } = app.bob_watching_ann().await;
    let phone = app.connect(ann).await;
    let laptop = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    phone.close().await;
    let (_, body) = app
        .get_as(bob, &format!("/api/v1/users/{ann}/status"))
        .await;
    assert_eq!(body["data"]["status"], "online");
    assert_eq!(body["data"]["is_online"], true);
    assert_eq!(body["data"]["last_seen"], serde_json::Value::Null);
    laptop.close().await;
    assert_eq!(b.next_of("user_status").await["status"], "offline");
}

#[tokio::test]
async fn set_status_away_and_activity_bring_watchers_along() {
    let app = spawn_app().await;
    let Watching { ann, bob, mut b } = app.bob_watching_ann().await;
    let mut a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    a.send("set_status", json!({"status": "away"})).await;
    let away = b.next_of("user_status").await;
    assert_eq!(away["status"], "away");
    assert!(away["timestamp"].is_string());
    assert!(away["last_seen"].is_string());
    let (_, body) = app
        .get_as(bob, &format!("/api/v1/users/{ann}/status"))
        .await;
    assert_eq!(body["data"]["status"], "away");
    a.send("activity", json!({})).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
}

#[tokio::test]
async fn last_seen_follows_the_subjects_privacy_choice_per_watcher() {
    let app = spawn_app().await;
    let (ann, friend, stranger) = (
        app.user("Ann").await,
        app.user("Fay").await,
        app.user("Sam").await,
    );
    // Both watch Ann; only Fay is in Ann's own contacts.
    app.contacts(friend, &[ann]).await;
    app.contacts(stranger, &[ann]).await;
    app.contacts(ann, &[friend]).await;
    let resp = app
        .http
        .put(app.url("/api/v1/users/me/privacy"))
        .bearer_auth(token_for(ann, None))
        .json(&json!({"last_seen_visibility": "contacts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut f = app.connect(friend).await;
    let mut s = app.connect(stranger).await;
    app.connect(ann).await.close().await;
    for c in [&mut f, &mut s] {
        assert_eq!(c.next_of("user_status").await["status"], "online");
    }
    let to_friend = f.next_of("user_status").await;
    let to_stranger = s.next_of("user_status").await;
    assert_eq!(to_friend["status"], "offline");
    assert!(to_friend["last_seen"].is_string());
    assert_eq!(to_stranger["status"], "offline");
    assert!(
        to_stranger["last_seen"].is_null(),
        "hidden from non-contacts"
    );

    let (_, body) = app
        .get_as(stranger, &format!("/api/v1/users/{ann}/status"))
        .await;
    assert!(body["data"]["last_seen"].is_null());
    assert_eq!(body["data"]["show_last_seen"], false);
    let (_, body) = app
        .get_as(ann, &format!("/api/v1/users/{ann}/status"))
        .await;
    assert!(
        body["data"]["last_seen"].is_string(),
        "a user always sees their own"
    );
}
