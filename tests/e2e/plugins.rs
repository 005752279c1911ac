//! Swapping policy plugins while the server runs.

use std::collections::HashMap;

use presence::policy::{Policies, PolicyConfig, Slot};
use presence_e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn quick_status() -> Vec<u8> {
    std::fs::read(env!("PRESENCE_TEST_QUICK_STATUS_WASM")).unwrap()
}

async fn slot(app: &TestApp, name: &str) -> Value {
    let list = app.admin(Method::GET, "/api/v1/admin/plugins", None).await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == name)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn an_uploaded_plugin_serves_at_once_and_rollback_restores_the_old_one() {
    let app = spawn_app().await;
    let builtin = slot(&app, "status").await;
    let (status, body) = app.upload_plugin("status", quick_status()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["source"], "upload");
    assert_ne!(body["data"]["sha256"], builtin["sha256"]);
    assert_eq!(slot(&app, "status").await["sha256"], body["data"]["sha256"]);
    // The new policy's 1 s heartbeat is what a new connection is told.
    let me = app.user("Me").await;
    assert_eq!(app.connect(me).await.ready["heartbeat_interval_ms"], 1000);

    let back = app
        .admin(Method::POST, "/api/v1/admin/plugins/status/rollback", None)
        .await;
    assert_eq!(back["data"]["sha256"], builtin["sha256"]);
    assert_eq!(app.connect(me).await.ready["heartbeat_interval_ms"], 20000);
    let (status, body) = app
        .admin_raw(Method::POST, "/api/v1/admin/plugins/status/rollback", None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nothing left to roll back: {body}"
    );
}

#[tokio::test]
async fn a_refused_plugin_says_why_and_the_old_one_keeps_serving() {
    let app = spawn_app().await;
    let before = slot(&app, "typing").await;
    let (status, body) = app.upload_plugin("typing", quick_status()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "plugin_rejected");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("this is a status plugin") && msg.contains("into the status slot"),
        "says which slot it is for: {msg}"
    );

    let (status, body) = app.upload_plugin("typing", b"\0asm garbage".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component")
    );
    let (status, _) = app.upload_plugin("dance", quick_status()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(slot(&app, "typing").await["sha256"], before["sha256"]);
    let Pair {
        conversation,
        mut a,
        mut b,
        ..
    } = app.pair().await;
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    assert_eq!(b.next_of("user_typing").await["text"], "Ann is typing…");
}

#[tokio::test]
async fn no_typing_event_is_lost_or_duplicated_across_twenty_swaps() {
    let app = spawn_app().await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let mut convs = Vec::new();
    for _ in 0..40 {
        convs.push(app.conversation(&[ann, bob]).await);
    }
    let mut a = app.connect(ann).await;
    let mut b = app.connect(bob).await;

    let swapper = {
        let (url, http) = (app.url("/api/v1/admin/plugins/typing"), app.http.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                let r = http
                    .put(&url)
                    .bearer_auth(ADMIN_KEY)
                    .body(Slot::Typing.builtin_component())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
            }
        })
    };
    for kind in ["typing_start", "typing_stop"] {
        for c in &convs {
            a.send(kind, json!({"conversation_id": c})).await;
        }
        // Each conversation's stop waits for its own rate window, so both
        // passes together take about a second.
        let mut seen: HashMap<String, usize> = HashMap::new();
        while seen.len() < convs.len() {
            let t = b.next_of("user_typing").await;
            assert_eq!(t["is_typing"], kind == "typing_start");
            *seen
                .entry(t["conversation_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert!(
            seen.values().all(|n| *n == 1),
            "each exactly once: {seen:?}"
        );
        a.drain().await;
    }
    swapper.await.unwrap();
    assert!(
        b.drain().await.iter().all(|f| f["type"] != "user_typing"),
        "no duplicates arrive late"
    );
}

#[tokio::test]
async fn a_file_renamed_into_the_plugin_directory_is_swapped_in() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    let app = spawn_app_on(url, dir.clone(), |c| c.plugin_dir = Some(plugins.clone())).await;
    let builtin = slot(&app, "status").await["sha256"].clone();
    // Deploy tools write elsewhere and rename into place.
    let staged = dir.path().join("status.wasm.tmp");
    std::fs::write(&staged, quick_status()).unwrap();
    std::fs::rename(&staged, plugins.join("status.wasm")).unwrap();
    // The watcher polls once a second; wait (bounded) for the swap to show.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let s = slot(&app, "status").await;
        if s["sha256"] != builtin {
            assert!(s["source"].as_str().unwrap().ends_with("status.wasm"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the file was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn install_example(app: &TestApp, slot: &str, path: &str) {
    let (status, body) = app.upload_plugin(slot, std::fs::read(path).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_telegram_privacy_example_turns_exact_times_into_buckets_without_a_restart() {
    let app = spawn_app().await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    app.connect(ann).await.close().await;
    let path = format!("/api/v1/users/{ann}/status");
    // Wait out the grace period through the event rather than a sleep.
    app.contacts(bob, &[ann]).await;
    let mut b = app.connect(bob).await;
    let (_, exact) = app.get_as(bob, &path).await;
    if exact["data"]["status"] != "offline" {
        // Her earlier "online" may reach Bob first, in order.
        while b.next_of("user_status").await["status"] != "offline" {}
    }
    let (_, exact) = app.get_as(bob, &path).await;
    assert!(exact["data"]["last_seen"].is_string());

    install_example(
        &app,
        "privacy",
        env!("PRESENCE_EXAMPLE_TELEGRAM_PRIVACY_WASM"),
    )
    .await;
    let (_, bucket) = app.get_as(bob, &path).await;
    assert!(bucket["data"]["last_seen"].is_null());
    assert_eq!(bucket["data"]["last_seen_approx"], "recently");
    let (_, own) = app.get_as(ann, &path).await;
    assert!(
        own["data"]["last_seen"].is_string(),
        "exact for the user themselves"
    );
}

#[tokio::test]
async fn the_large_groups_example_summarises_many_typers_without_a_restart() {
    let app = spawn_app().await;
    install_example(
        &app,
        "typing",
        env!("PRESENCE_EXAMPLE_LARGE_GROUPS_TYPING_WASM"),
    )
    .await;
    let mut ids = Vec::new();
    for n in ["Ann", "Bob", "Cid", "Dan", "Eve"] {
        ids.push(app.user(n).await);
    }
    let conv = app.conversation(&ids).await;
    let mut watcher = app.connect(ids[4]).await;
    let mut typers = Vec::new();
    for id in &ids[..4] {
        let mut c = app.connect(*id).await;
        c.send("typing_start", json!({"conversation_id": conv}))
            .await;
        typers.push(c);
    }
    let mut last = Value::Null;
    for _ in 0..4 {
        last = watcher.next_of("user_typing").await;
    }
    assert_eq!(last["text"], "Several people are typing…");
}

#[tokio::test]
async fn the_mobile_status_example_lengthens_the_heartbeat_without_a_restart() {
    let app = spawn_app().await;
    install_example(&app, "status", env!("PRESENCE_EXAMPLE_MOBILE_STATUS_WASM")).await;
    let me = app.user("Me").await;
    assert_eq!(app.connect(me).await.ready["heartbeat_interval_ms"], 45000);
}

/// Summaries are cached per typing component (policies are pure), so a
/// swap must word them afresh.
#[test]
fn a_swapped_typing_component_words_the_summaries_afresh() {
    let policies = Policies::load(&PolicyConfig::default()).expect("the built-in policies load");
    let names = ["John", "Sarah", "Mike", "Ann"];
    let default = policies.format_typers(&names, "en");
    assert_eq!(default, "John, Sarah and 2 others are typing…");
    policies
        .install(
            Slot::Typing,
            &std::fs::read(env!("PRESENCE_EXAMPLE_LARGE_GROUPS_TYPING_WASM")).unwrap(),
            "test".into(),
        )
        .expect("the example installs");
    assert_eq!(
        policies.format_typers(&names, "en"),
        "Several people are typing…",
        "not the old component's cached words"
    );
    policies
        .rollback(Slot::Typing)
        .expect("the built-in is kept");
    assert_eq!(policies.format_typers(&names, "en"), default);
}

/// `presence plugin install|list|rollback` against a running server, as an
/// operator types them: what they print, and what they say when they fail.
#[tokio::test]
async fn the_plugin_commands_talk_to_a_server_and_say_what_to_do_when_they_cannot() {
    let app = spawn_app().await;
    let server = format!("http://{}", app.addr);
    let hostile = env!("PRESENCE_TEST_HOSTILE_TYPING_WASM");
    let data_dir = tempfile::tempdir().unwrap();
    // The server runs on this test's runtime: the commands must not block it.
    let run = async |args: &[&str], key: Option<&str>| {
        let mut cmd = tokio::process::Command::new(presence_e2e::cluster::presence_binary());
        cmd.args(["plugin"])
            .args(args)
            .env_remove("PRESENCE_ADMIN_KEY")
            .env("PRESENCE_DATA_DIR", data_dir.path())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "warn");
        if let Some(k) = key {
            cmd.env("PRESENCE_ADMIN_KEY", k);
        }
        let out = cmd.output().await.unwrap();
        let said = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), said(&out.stdout), said(&out.stderr))
    };
    let with_key = Some(ADMIN_KEY);

    let (ok, out, err) = run(
        &["install", "typing", hostile, "--server", &server],
        with_key,
    )
    .await;
    assert!(ok, "{err}");
    let sha256 = serde_json::from_str::<Value>(&out).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out, err) = run(
        &["install", "typing", hostile, "--server", &server],
        with_key,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("already active"), "{out}");

    let (ok, out, _) = run(&["list", "--server", &server], with_key).await;
    assert!(ok);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("SLOT") && header.contains("LAST FAILURE"),
        "{out}"
    );
    let typing = lines.find(|l| l.starts_with("typing")).unwrap();
    assert!(
        typing.contains("upload") && typing.contains(&sha256[..12]),
        "{out}"
    );
    let (_, json, _) = run(&["list", "--json", "--server", &server], with_key).await;
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap()[0]["slot"],
        "typing"
    );

    // The second upload added no history: one rollback reaches the built-in.
    let (ok, _, err) = run(&["rollback", "typing", "--server", &server], with_key).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["rollback", "typing", "--server", &server], with_key).await;
    assert!(!ok && err.contains("409"), "{err}");

    // Failures say what to try, on one line, without a backtrace.
    let closed = format!("http://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let (ok, _, err) = run(&["list", "--server", &closed], with_key).await;
    assert!(!ok && err.contains("--server"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
    let (ok, _, err) = run(&["list", "--server", &server], Some("wrong")).await;
    assert!(!ok && err.contains("refused the admin key"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
    let (ok, _, err) = run(&["list", "--server", &server], None).await;
    assert!(
        !ok && err.contains("no admin key") && err.contains("PRESENCE_DATA_DIR"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(data_dir.path()).unwrap().next().is_none(),
        "a client command created no secret"
    );
    let (_, _, err) = run(&["check", "--slot", "privacy", hostile], None).await;
    assert!(err.contains("install it into the typing slot"), "{err}");
    let (_, help, _) = run(&["rollback", "--help"], None).await;
    assert!(help.contains("The slot to roll back"), "{help}");
}
