//! Smoke run of the benchmark suite at tiny sizes: the real presence server
//! in-process (the e2e harness) and the S0 floor server, S1 with 20
//! connections, S2 with groups of 2 and 10 for about a second at a low rate,
//! then S3 (status churn), S4 (REST batch), S5 (swap under load), S6 (slow
//! consumers), S7 (soak) and the charts at tiny sizes.
//! Asserts only that everything runs and counts agree — no timing thresholds.

use std::time::Duration;

use presence_bench::net::Target;
use presence_bench::s1::{self, S1Config};
use presence_bench::s2::{self, S2Config, S2Result};
use presence_bench::s3::{self, S3Config};
use presence_bench::s4::{self, S4Config, S4Run};
use presence_bench::s5::{self, S5Config};
use presence_bench::s7::{self, S7Config};
use presence_bench::{chart, floor, report, s6};

fn presence_target(app: &presence_e2e::TestApp) -> Target {
    Target::Presence {
        addr: app.addr,
        admin_key: presence_e2e::ADMIN_KEY.to_owned(),
        jwt_secret: presence_e2e::JWT_SECRET.to_owned(),
    }
}

fn small_s2(group_size: usize) -> S2Config {
    S2Config {
        group_size,
        // 4 typers, one start and one stop each: 8 events over ~1.2 s.
        rate: 4.0 / 1.2,
        duration: Duration::from_millis(1200),
        interval: Duration::from_millis(1200),
        max_connections: 100,
        connect_concurrency: 8,
        drain: Duration::from_secs(10),
        pid: Some(std::process::id()),
        ..S2Config::default()
    }
}

fn assert_counts(r: &S2Result) {
    let g = r.group_size as u64;
    assert_eq!(r.plan.typers, 4, "{r:?}");
    assert_eq!(r.events_sent, 8, "{}", r.json());
    assert_eq!(r.deliveries, r.events_sent * (g - 1), "{}", r.json());
    assert_eq!(r.expected_deliveries, r.deliveries, "{}", r.json());
    assert_eq!(r.histogram.len(), r.deliveries, "{}", r.json());
    assert_eq!(r.errors, 0, "{}", r.json());
    assert_eq!(r.unmatched, 0, "{}", r.json());
    assert_eq!(r.typers_off, 0, "{}", r.json());
    assert!(report::s2_consistent(r));
    assert!(r.server_cpu_sec.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_runs_and_counts_agree() {
    let app = presence_e2e::spawn_app().await;
    let presence = presence_target(&app);
    let (floor_addr, floor_task) = floor::spawn(
        "127.0.0.1:0".parse().unwrap(),
        tokio::time::sleep(Duration::from_secs(120)),
    )
    .await
    .unwrap();
    let floor = Target::Floor { addr: floor_addr };

    // S1: 20 connections, 15 users of whom 5 on two devices.
    let s1cfg = S1Config {
        connections: 20,
        connect_concurrency: 8,
        hold: Duration::from_millis(300),
        settle: Duration::from_millis(300),
        pid: Some(std::process::id()),
        ..S1Config::default()
    };
    for target in [&floor, &presence] {
        let r = s1::run(target, &s1cfg).await.expect("S1 runs");
        assert_eq!(r.connections, 20);
        assert_eq!((r.users, r.two_device_users), (15, 5));
        assert_eq!(r.errors, 0, "{}", r.json());
        assert!(r.rss_after_kib.is_some() && r.connect_cpu_sec.is_some());
        assert!(r.storm_cpu_sec.is_some(), "the reconnect storm ran");
        report::s1_table(&r);
    }

    // S0 and S2 with groups of 2 and 10 through the same driver.
    report::s2_header();
    for g in [2, 10] {
        for target in [&floor, &presence] {
            let r = s2::run(target, &small_s2(g)).await.expect("S2 runs");
            report::s2_row(&r);
            assert_eq!(r.plan.connections, 4 * g);
            assert_counts(&r);
        }
    }
    floor_task.abort();
    app.stop().await.expect("server stops cleanly");
}

/// S3 on a server whose status policy has a 0.5 s offline grace: 4 subjects
/// with 3 watchers and one with 8, two cycles each; every connect and every
/// disconnect must reach every watcher once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_status_churn_counts_agree() {
    let app = presence_e2e::spawn_quick_app().await;
    let cfg = S3Config {
        subjects: 4,
        watchers_per_subject: 3,
        tail_subjects: 1,
        tail_watchers: 8,
        watchers: 0,
        // 1.2 s of slack between the offline and the next connect.
        period: Duration::from_millis(2000),
        hold: Duration::from_millis(300),
        grace: Duration::from_millis(500),
        duration: Duration::from_secs(4),
        connect_concurrency: 8,
        source_addrs: None,
        drain: Duration::from_secs(10),
        pid: Some(std::process::id()),
    };
    let r = s3::run(&presence_target(&app), &cfg)
        .await
        .expect("S3 runs");
    report::s3_table(&r);
    assert_eq!(r.plan.watchers, 8);
    assert_eq!(r.plan.cycles, 2);
    assert_eq!((r.connects, r.disconnects), (10, 10), "{}", r.json());
    // 2 cycles × (4 × 3 + 8) watchers, once online and once offline.
    assert_eq!(r.expected_deliveries, 2 * 2 * (4 * 3 + 8));
    assert_eq!(r.online_deliveries, 40, "{}", r.json());
    assert_eq!(r.offline_deliveries, 40, "{}", r.json());
    assert_eq!(r.online.len() + r.offline.len(), 80);
    assert_eq!(r.tail.len(), 2 * 2 * 8);
    assert!(r.consistent(), "{}", r.json());
    app.stop().await.expect("server stops cleanly");
}

fn tiny_s4(database_url: String) -> S4Config {
    S4Config {
        database_url,
        users: 300,
        batch: 100,
        rates: vec![20.0],
        duration: Duration::from_millis(500),
        cold_rate: 20.0,
        floor_pool: 2,
        pid: Some(std::process::id()),
        ..S4Config::default()
    }
}

fn assert_s4(runs: &[S4Run]) {
    // Cold presence + direct, then direct + presence at the one rate.
    assert_eq!(runs.len(), 4);
    for r in runs {
        let want = if r.phase == "cold" { 3 } else { 10 };
        assert_eq!(r.queries, want, "{}", r.json("-"));
        assert_eq!(r.errors, 0, "{}", r.json("-"));
        assert_eq!(r.rows, r.queries * 100, "{}", r.json("-"));
        assert_eq!(r.histogram.len(), r.queries);
    }
}

/// S4 on SQLite (and on PostgreSQL when `PRESENCE_TEST_POSTGRES_URL` is set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_batch_status_counts_agree() {
    let app = presence_e2e::spawn_app().await;
    report::s4_header();
    let runs = s4::run(
        app.addr,
        presence_e2e::JWT_SECRET,
        &tiny_s4(app.database_url.clone()),
        report::s4_row,
    )
    .await
    .expect("S4 runs on SQLite");
    assert_s4(&runs);
    assert_eq!(report::s4_ratios("sqlite", &runs).len(), 2);
    app.stop().await.expect("server stops cleanly");

    let Some(schema) = presence_e2e::PgSchema::create("s4 on PostgreSQL").await else {
        return;
    };
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = presence_e2e::spawn_app_on(schema.url.clone(), dir, |_| {}).await;
    let runs = s4::run(
        app.addr,
        presence_e2e::JWT_SECRET,
        &tiny_s4(schema.url.clone()),
        report::s4_row,
    )
    .await
    .expect("S4 runs on PostgreSQL");
    assert_s4(&runs);
    // The direct floor's backends were found, so their CPU is counted.
    assert!(runs.iter().any(|r| r.db_cpu_sec.is_some()));
    app.stop().await.expect("server stops cleanly");
    schema.drop().await;
}

/// S5: groups of 3, the typing plugin swapped twice (to large-groups and
/// back) while typers run; nothing may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_swap_under_load_loses_nothing() {
    let app = presence_e2e::spawn_app().await;
    let cfg = S5Config {
        swap_every: Duration::from_millis(2000),
        ..S5Config::with_s2(S2Config {
            group_size: 3,
            rate: 4.0 / 3.2,
            duration: Duration::from_millis(6400),
            interval: Duration::from_millis(3200),
            max_connections: 100,
            connect_concurrency: 8,
            drain: Duration::from_secs(10),
            pid: Some(std::process::id()),
            ..S2Config::default()
        })
    };
    let r = s5::run(&presence_target(&app), &cfg)
        .await
        .expect("S5 runs");
    report::s5_table(&r);
    assert_eq!(r.s2.plan.typers, 4);
    assert_eq!(r.s2.events_sent, 8, "{}", r.json());
    assert_eq!(r.s2.expected_deliveries, 16);
    assert_eq!(r.lost, 0, "{}", r.json());
    assert_eq!(r.s2.deliveries, 16, "{}", r.json());
    assert!(report::s2_consistent(&r.s2), "{}", r.json());
    assert!(r.swaps.len() >= 2, "{}", r.json());
    assert_eq!(r.swaps_ok(), r.swaps.len(), "{}", r.json());
    assert_eq!(r.steady.len() + r.during.len(), r.s2.deliveries);
    app.stop().await.expect("server stops cleanly");
}

/// S6: groups of 10 where one member in ten stops reading, on a server with
/// a 4-frame send queue; the others must get everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_slow_consumers_do_not_cost_the_others() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    let app = presence_e2e::spawn_app_on(url, dir, |c| c.limits.send_queue = 4).await;
    let cfg = S2Config {
        group_size: 10,
        typers_per_group: 5,
        rate: 20.0 / 1.2,
        duration: Duration::from_millis(4800),
        interval: Duration::from_millis(1200),
        max_connections: 100,
        connect_concurrency: 8,
        drain: Duration::from_secs(10),
        pid: Some(std::process::id()),
        slow_share: 0.1,
        slow_after: Duration::from_millis(600),
        slow_recv_buffer: Some(4096),
        ..S2Config::default()
    };
    let r = s6::run(&presence_target(&app), &cfg)
        .await
        .expect("S6 runs");
    report::s6_table(&r);
    assert_eq!(r.s2.plan.connections, 40);
    assert_eq!(r.s2.slow_clients, 4);
    assert_eq!(r.s2.events_sent, 20 * 4, "{}", r.json());
    // Each event reaches the 8 other reading members of its group.
    assert_eq!(r.s2.expected_deliveries, 80 * 8, "{}", r.json());
    assert_eq!(r.lost, 0, "{}", r.json());
    assert!(report::s2_consistent(&r.s2), "{}", r.json());
    assert!(r.s2.slow_closed <= r.s2.slow_clients);
    assert_eq!(r.s2.slow_lost_early, 0, "{}", r.json());
    assert!(r.queue_drops.is_some());
    assert!(r.rss_max_kib.is_some());
    app.stop().await.expect("server stops cleanly");
}

/// S7 at a tiny size: churners come and go while the load runs, and every
/// reading is taken (the bounds themselves are the bench's to judge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_soak_reads_the_server_four_times() {
    let app = presence_e2e::spawn_quick_app().await;
    let cfg = S7Config {
        s2: S2Config {
            duration: Duration::from_millis(2400),
            ..small_s2(10)
        },
        churners: 6,
        hold: Duration::from_millis(300),
        warmup: Duration::from_millis(1200),
        settle: Duration::from_secs(20),
    };
    let r = s7::run(&presence_target(&app), &cfg)
        .await
        .expect("S7 runs");
    report::s7_table(&r);
    assert!(r.churn_cycles >= 6, "{}", r.json());
    assert_eq!(r.churn_errors, 0, "{}", r.json());
    assert_eq!(r.s2.deliveries, r.s2.expected_deliveries, "{}", r.json());
    for reading in [r.baseline, r.start, r.after_churn, r.after_leave] {
        assert!(
            reading.rss_kib.is_some() && reading.fds.is_some(),
            "{}",
            r.json()
        );
        assert!(
            reading.tasks.is_some(),
            "/metrics has presence_tasks: {}",
            r.json()
        );
    }
    app.stop().await.expect("server stops cleanly");
}

/// The charts come out of the JSON lines the scenarios print.
#[test]
fn charts_render_from_scenario_lines() {
    let lines = [
        r#"{"scenario":"s2","target":"presence","group_size":10,"deliveries_per_s":3600.0,"latency_us":{"p50":1500,"p99":5000}}"#,
        r#"{"scenario":"s0","target":"floor","group_size":10,"deliveries_per_s":3600.0,"latency_us":{"p50":900,"p99":2500}}"#,
        r#"{"scenario":"s1","target":"presence","connections":2000,"rss_before_kib":10000,"rss_after_kib":33000}"#,
    ]
    .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let written = chart::write_charts(&chart::json_lines(&lines), dir.path()).unwrap();
    assert_eq!(written.len(), 2);
    for p in written {
        assert!(std::fs::read_to_string(p).unwrap().starts_with("<svg"));
    }
}
