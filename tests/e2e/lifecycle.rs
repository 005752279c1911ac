//! Starting, stopping and restarting: nothing stored is lost on a clean stop.

use std::sync::Arc;
use std::time::Duration;

use presence_e2e::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_client_stuck_mid_request_does_not_hold_up_shutdown() {
    let app = spawn_app().await;
    let mut stuck = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Headers begun, never finished.
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: presence\r\n")
        .await
        .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), app.stop()).await;
    stopped
        .expect("shutdown finishes despite the stuck client")
        .expect("clean exit");
}

#[tokio::test]
async fn last_seen_survives_a_graceful_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    restart_keeps_last_seen(url, dir).await;
}

#[tokio::test]
async fn last_seen_survives_a_graceful_restart_on_postgres() {
    let Some(schema) = PgSchema::create("last_seen_survives_a_graceful_restart_on_postgres").await
    else {
        return;
    };
    restart_keeps_last_seen(schema.url.clone(), Arc::new(tempfile::tempdir().unwrap())).await;
    schema.drop().await;
}

async fn restart_keeps_last_seen(url: String, dir: Arc<tempfile::TempDir>) {
    let app = spawn_app_on(url.clone(), dir.clone(), |_| {}).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let mut a = app.connect(ann).await;
    // Shutdown closes open connections with 1001 and exits cleanly.
    let stopped_at = chrono::Utc::now();
    let server = tokio::spawn(app.stop());
    assert_eq!(a.closed().await, Some(1001));
    server.await.unwrap().expect("clean exit");

    let app = spawn_app_on(url, dir, |_| {}).await;
    let (_, body) = app
        .get_as(bob, &format!("/api/v1/users/{ann}/status"))
        .await;
    assert_eq!(body["data"]["status"], "offline");
    let seen = body["data"]["last_seen"]
        .as_str()
        .expect("last_seen was flushed on shutdown");
    let seen = chrono::DateTime::parse_from_rfc3339(seen).unwrap().to_utc();
    assert!((seen - stopped_at).num_seconds().abs() <= 2);
    app.stop().await.expect("clean exit");
}
