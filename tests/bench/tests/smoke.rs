//! Smoke run of the benchmark suite at tiny sizes: the real presence server
//! in-process (the e2e harness) and the S0 floor server, S1 with 20
//! connections, S2 with groups of 2 and 10 for about a second at a low rate.
//! Asserts only that everything runs and counts agree — no timing thresholds.

use std::time::Duration;

use presence_bench::net::Target;
use presence_bench::s1::{self, S1Config};
use presence_bench::s2::{self, S2Config, S2Result};
use presence_bench::{floor, report};

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
