//! A node killed with SIGKILL in the middle of a `last_seen` flush: the
//! flush is one transaction, so the database keeps the flush before it and
//! at most one flush interval of `last_seen` is lost.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use presence_e2e::cluster::{Cluster, Options, POLL_INTERVAL};
use presence_e2e::*;
use sqlx::Connection;

/// The quick status policy's `last_seen` flush interval.
const FLUSH: Duration = Duration::from_secs(1);
/// Connected users, so that a flush is a real batch.
const USERS: usize = 50;

#[tokio::test]
async fn kill_9_during_a_last_seen_flush_loses_at_most_one_flush_interval() {
    let Some(c) = Cluster::start(
        "kill_9_during_a_last_seen_flush_loses_at_most_one_flush_interval",
        1,
        Options {
            quick_status: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let node = &c[0];
    let mut users = Vec::with_capacity(USERS);
    let mut clients = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let user = node.user(&format!("U{i}")).await;
        clients.push(node.connect(user).await);
        users.push(user);
    }
    let mut db = sqlx::PgConnection::connect(c.database_url()).await.unwrap();
    let oldest = || {
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT MIN(last_seen) FROM users WHERE id = ANY($1)",
        )
        .bind(&users)
    };
    // Two flushes have written every connected user.
    let connected_at = Utc::now();
    let started = Instant::now();
    while oldest()
        .fetch_one(&mut db)
        .await
        .unwrap()
        .is_none_or(|t| t < connected_at)
    {
        assert!(
            started.elapsed() < 10 * FLUSH,
            "no flush wrote the connected users"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    // Hold one user's row: the next flush blocks inside its transaction.
    let mut holder = sqlx::PgConnection::connect(c.database_url()).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(users[0])
        .execute(&mut *held)
        .await
        .unwrap();
    let started = Instant::now();
    let flush_began = loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query ILIKE '%FOR UPDATE%' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if waiting > 0 {
            break Utc::now();
        }
        assert!(
            started.elapsed() < 10 * FLUSH,
            "no flush reached the held row"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    node.kill9().await;
    let killed_at = Utc::now();
    held.rollback().await.unwrap();

    // What the database kept is the flush before the one killed.
    let kept = oldest().fetch_one(&mut db).await.unwrap().unwrap();
    let lost = (killed_at - kept).to_std().unwrap_or_default();
    let in_flush = (killed_at - flush_began).to_std().unwrap_or_default();
    assert!(
        lost <= FLUSH + in_flush + Duration::from_millis(500),
        "last_seen kept at {kept}: {lost:?} before the kill at {killed_at}, \
         more than one flush interval ({FLUSH:?}) besides the {in_flush:?} the killed flush ran"
    );

    // Back up, the node reports them offline, last seen no later than the kill.
    node.restart().await;
    let watcher = node.user("Watcher").await;
    node.contacts(watcher, &users).await;
    let started = Instant::now();
    loop {
        let (status, body) = node
            .get_as(watcher, &format!("/api/v1/users/{}/status", users[1]))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["data"]["status"] == "offline" {
            let seen: DateTime<Utc> = body["data"]["last_seen"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("offline carries last_seen: {body}"));
            assert!(
                seen >= kept && seen <= killed_at,
                "last_seen {seen} within [{kept}, {killed_at}]"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "still {body}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    drop(clients);
}
