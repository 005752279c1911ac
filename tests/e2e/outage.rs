//! The database going away and coming back: the server says so on
//! `/healthz`, keeps its users' presence, and writes `last_seen` once it can.

use std::sync::Arc;
use std::time::Duration;

use presence_e2e::proxy::{TcpProxy, target_of};
use presence_e2e::*;
use reqwest::StatusCode;

/// Upper bound on a state change the server notices by itself.
const WITHIN: Duration = Duration::from_secs(15);

async fn wait_for_health(app: &TestApp, want: StatusCode) {
    let started = std::time::Instant::now();
    loop {
        let got = app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status();
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < WITHIN,
            "/healthz still {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Failed `last_seen` flushes so far (the counter is process-wide).
async fn flush_failures(app: &TestApp) -> f64 {
    counter(app, "presence_last_seen_flush_failures_total").await
}

/// A counter of `/metrics` (process-wide: other tests may move it too).
async fn counter(app: &TestApp, name: &str) -> f64 {
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
    presence_e2e::cluster::parse_metric(&text, name).expect(name)
}

/// Waits for `user`'s `last_seen` to reach the database at `url` and
/// asserts it is when they left.
async fn assert_last_seen_stored(
    url: &str,
    user: uuid::Uuid,
    left_at: chrono::DateTime<chrono::Utc>,
) {
    let mut conn: sqlx::PgConnection = sqlx::Connection::connect(url).await.unwrap();
    let started = std::time::Instant::now();
    let stored = loop {
        let seen: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT last_seen FROM users WHERE id = $1")
                .bind(user)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if let Some(seen) = seen {
            break seen;
        }
        assert!(
            started.elapsed() < WITHIN,
            "last_seen of {user} never reached the database once it was back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        (stored - left_at).num_seconds().abs() <= 2,
        "the stored last_seen ({stored}) of {user} is when they left ({left_at})"
    );
}

#[tokio::test]
async fn last_seen_written_during_a_database_outage_is_retried_not_lost() {
    let Some(schema) =
        PgSchema::create("last_seen_written_during_a_database_outage_is_retried_not_lost").await
    else {
        return;
    };
    let proxy = TcpProxy::start(target_of(&schema.url)).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_on(proxy.url_for(&schema.url), dir, |_| {}).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    app.contacts(bob, &[ann]).await;
    let mut b = app.connect(bob).await;
    let a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    wait_for_health(&app, StatusCode::OK).await;

    proxy.cut();
    wait_for_health(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let failures_before = flush_failures(&app).await;
    // Presence goes on from memory: Ann leaves and Bob hears it.
    let left_at = chrono::Utc::now();
    a.close().await;
    let offline = b.next_of("user_status").await;
    assert_eq!(offline["status"], "offline", "{offline}");
    let started = std::time::Instant::now();
    while flush_failures(&app).await <= failures_before {
        assert!(
            started.elapsed() < WITHIN,
            "no last_seen write was attempted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.restore();
    wait_for_health(&app, StatusCode::OK).await;
    assert_last_seen_stored(&schema.url, ann, left_at).await;
    app.stop().await.expect("clean exit");
    schema.drop().await;
}

/// A status change whose fan-out needs the store while it is away (here the
/// watchers, just changed through the admin API, are not cached) reaches
/// the watchers once the store is back, instead of being dropped.
#[tokio::test]
async fn a_status_fan_out_that_meets_a_database_outage_is_retried() {
    let Some(schema) =
        PgSchema::create("a_status_fan_out_that_meets_a_database_outage_is_retried").await
    else {
        return;
    };
    let proxy = TcpProxy::start(target_of(&schema.url)).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_on(proxy.url_for(&schema.url), dir, |_| {}).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    app.contacts(bob, &[ann]).await;
    let mut b = app.connect(bob).await;
    let a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    // The same contacts again: Ann's watchers are read afresh next time.
    app.contacts(bob, &[ann]).await;

    proxy.cut();
    wait_for_health(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let failures_before = counter(&app, "presence_status_fanout_failures_total").await;
    a.close().await;
    // After the grace, the fan-out meets the outage.
    let started = std::time::Instant::now();
    while counter(&app, "presence_status_fanout_failures_total").await <= failures_before {
        assert!(started.elapsed() < WITHIN, "no fan-out met the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.drain().await.is_empty(),
        "nothing told while the store is away"
    );
    proxy.restore();
    let offline = b.next_of("user_status").await;
    assert_eq!(offline["status"], "offline", "{offline}");
    assert_eq!(offline["user_id"], ann.to_string());
    drop(b);
    app.stop().await.expect("clean exit");
    schema.drop().await;
}

/// PostgreSQL itself restarted (a private server, stopped and started again
/// on the same port) while users come and go: `/healthz` says so, presence
/// goes on from memory, the pool reconnects, and every `last_seen`
/// recorded meanwhile reaches the database.
#[tokio::test]
async fn last_seen_survives_a_postgresql_restart() {
    let Some(pg) =
        presence_e2e::postgres::PrivatePostgres::start("last_seen_survives_a_postgresql_restart")
    else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_on(pg.url(), dir, |_| {}).await;
    let (ann, bob, carol) = (
        app.user("Ann").await,
        app.user("Bob").await,
        app.user("Carol").await,
    );
    app.contacts(bob, &[ann, carol]).await;
    let mut b = app.connect(bob).await;
    let a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    let c = app.connect(carol).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    wait_for_health(&app, StatusCode::OK).await;

    pg.stop();
    wait_for_health(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let ann_left = chrono::Utc::now();
    a.close().await;
    let offline = b.next_of("user_status").await;
    assert_eq!(offline["user_id"], ann.to_string(), "{offline}");
    assert_eq!(offline["status"], "offline", "{offline}");

    pg.start_again();
    wait_for_health(&app, StatusCode::OK).await;
    let carol_left = chrono::Utc::now();
    c.close().await;
    assert_eq!(b.next_of("user_status").await["status"], "offline");

    for (user, left_at) in [(ann, ann_left), (carol, carol_left)] {
        assert_last_seen_stored(&pg.url(), user, left_at).await;
    }
    app.stop().await.expect("clean exit");
}
