//! Hostile plugins are contained: a policy that loops, allocates without
//! bound, panics, calls an import or answers garbage costs its users the
//! plugin's wording (typing gets the built-in English text, privacy fails
//! closed), never the server. A component that keeps failing is rolled back.
//!
//! The guests are real components built with the tests:
//! `tests/plugins/hostile-typing` misbehaves in `format-typers` according to
//! the recipient's `?locale=`; `tests/plugins/hostile-privacy` panics when
//! the viewer shows their own last seen to nobody.

use presence_e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Locales for which the hostile typing policy's `format-typers` misbehaves:
/// loop, alloc, panic, file, clock, garbage (see `tests/plugins/hostile-typing`).
const BAD_LOCALES: [&str; 6] = ["qlo", "qal", "qpa", "qfs", "qcl", "qga"];
/// The bad locales whose calls trap (garbage returns, and is refused after).
const TRAPPING_LOCALES: [&str; 5] = ["qlo", "qal", "qpa", "qfs", "qcl"];
/// What the host answers when `format-typers` fails (`policy/fallback.rs`).
const FALLBACK_TEXT: &str = "Ann is typing…";
/// What the hostile typing policy answers for a well-behaved locale.
const PLUGIN_TEXT: &str = "Ann is typing… [hostile-typing]";

/// Installs the component at `path` into `slot`; returns its sha256.
async fn install(app: &TestApp, slot: &str, path: &str) -> Value {
    let (status, body) = app.upload_plugin(slot, std::fs::read(path).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "installs: {body}");
    body["data"]["sha256"].clone()
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

/// The next `user_typing` of `conversation`, skipping other conversations'
/// (such as stops of earlier ones whose lease ran out).
async fn typing_in(client: &mut Client, conversation: Uuid) -> Value {
    loop {
        let t = client.next_of("user_typing").await;
        if t["conversation_id"] == json!(conversation) {
            return t;
        }
    }
}

async fn connect_in(app: &TestApp, user: Uuid, locale: &str) -> Client {
    app.connect_with(&token_for(user, None), Some(locale)).await
}

#[tokio::test]
async fn a_looping_or_hostile_typing_plugin_never_takes_the_host_down() {
    let app = spawn_app().await;
    let hostile = install(&app, "typing", env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let mut a = app.connect(ann).await;
    let mut b = connect_in(&app, bob, "en").await;

    // One conversation per bad locale, so no rate window coalesces a start.
    // Each broadcast calls the plugin for Bob ("en", succeeds) and for the
    // victim (fails), after `on-typing-start` (succeeds): a success between
    // any two failures, so the slot never reaches the 5 failures in a row
    // (`AUTO_ROLLBACK_AFTER`) that would roll it back.
    for locale in BAD_LOCALES {
        let victim = app.user(&format!("Vic-{locale}")).await;
        let conversation = app.conversation(&[ann, bob, victim]).await;
        let mut v = connect_in(&app, victim, locale).await;
        a.send("typing_start", json!({"conversation_id": conversation}))
            .await;
        // Within FRAME_TIMEOUT even for `loop`: the call was cut off.
        let to_victim = typing_in(&mut v, conversation).await;
        assert_eq!(to_victim["is_typing"], true, "{locale}: {to_victim}");
        assert_eq!(
            to_victim["text"], FALLBACK_TEXT,
            "a `{locale}` recipient gets the built-in wording"
        );
        assert_eq!(to_victim["typing_user_ids"], json!([ann]));
        let to_bob = typing_in(&mut b, conversation).await;
        assert_eq!(
            to_bob["text"], PLUGIN_TEXT,
            "an `en` recipient of the same broadcast still gets the plugin's wording ({locale})"
        );
        v.close().await;
    }

    let typing = slot(&app, "typing").await;
    assert!(
        typing["failures"].as_u64().unwrap() >= BAD_LOCALES.len() as u64,
        "every hostile call is counted: {typing}"
    );
    assert!(typing["calls"].as_u64().unwrap() > typing["failures"].as_u64().unwrap());
    assert_eq!(
        typing["sha256"], hostile,
        "isolated failures do not roll the slot back: {typing}"
    );

    // Still serving: health, and a fresh typing round with the plugin's text.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let conversation = app.conversation(&[ann, bob]).await;
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    assert_eq!(typing_in(&mut b, conversation).await["text"], PLUGIN_TEXT);
}

#[tokio::test]
async fn repeated_failures_roll_the_slot_back_to_the_last_good_plugin() {
    let app = spawn_app().await;
    let builtin = slot(&app, "typing").await["sha256"].clone();
    let hostile = install(&app, "typing", env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).await;
    assert_ne!(hostile, builtin);
    let ann = app.user("Ann").await;
    let mut a = app.connect(ann).await;

    // Only bad recipients, one per trapping locale (the host calls the plugin
    // once per distinct locale): one broadcast is one successful
    // `on-typing-start` followed by five failed `format-typers`.
    let mut members = vec![ann];
    let mut victims = Vec::new();
    for locale in TRAPPING_LOCALES {
        let victim = app.user(&format!("Vic-{locale}")).await;
        members.push(victim);
        victims.push(connect_in(&app, victim, locale).await);
    }
    let conversation = app.conversation(&members).await;
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    for v in &mut victims {
        assert_eq!(typing_in(v, conversation).await["text"], FALLBACK_TEXT);
    }

    // The fifth failure rolled the slot back before its frame was sent; poll
    // (bounded) only so a regression fails with a message, not a hang.
    let deadline = std::time::Instant::now() + FRAME_TIMEOUT;
    let typing = loop {
        let typing = slot(&app, "typing").await;
        if typing["sha256"] == builtin || std::time::Instant::now() > deadline {
            break typing;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        typing["sha256"], builtin,
        "five failures in a row restore the previous component: {typing}"
    );
    assert_eq!(typing["source"], "builtin");
    let reason = typing["rolled_back"][0]["reason"].as_str().unwrap();
    assert_eq!(reason, "5 failed calls in a row of format-typers");

    // The built-in policy serves the next event: Thai for a Thai recipient
    // (the hostile one answered tagged English, the fallback plain English).
    let panic = TRAPPING_LOCALES.iter().position(|l| *l == "qpa").unwrap();
    let thai = app.user("Tam").await;
    let mut t = connect_in(&app, thai, "th").await;
    let conversation = app.conversation(&[ann, thai, members[1 + panic]]).await;
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    assert_eq!(
        typing_in(&mut t, conversation).await["text"],
        "Ann กำลังพิมพ์..."
    );
    // "panic" means nothing to the built-in policy: plain English, no failure.
    assert_eq!(
        typing_in(&mut victims[panic], conversation).await["text"],
        FALLBACK_TEXT
    );
    assert_eq!(slot(&app, "typing").await["failures"], 0);
}

#[tokio::test]
async fn a_failing_privacy_plugin_fails_closed() {
    let app = spawn_app().await;
    let (ann, bob, nia) = (
        app.user("Ann").await,
        app.user("Bob").await,
        app.user("Nia").await,
    );
    // Ann (last seen visible to everyone) goes offline; Bob watches.
    app.contacts(bob, &[ann]).await;
    let mut b = app.connect(bob).await;
    let a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    a.close().await;
    assert_eq!(b.next_of("user_status").await["status"], "offline");

    // Nia hides her own last seen from everyone; under the default policy
    // that does not hide Ann's from her.
    let resp = app
        .http
        .put(app.url("/api/v1/users/me/privacy"))
        .bearer_auth(token_for(nia, None))
        .json(&json!({"last_seen_visibility": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let path = format!("/api/v1/users/{ann}/status");
    let (_, before) = app.get_as(nia, &path).await;
    assert!(before["data"]["last_seen"].is_string(), "{before}");

    let hostile = install(&app, "privacy", env!("PRESENCE_TEST_HOSTILE_PRIVACY_WASM")).await;
    let (status, to_nia) = app.get_as(nia, &path).await;
    assert_eq!(status, StatusCode::OK, "the request is served: {to_nia}");
    assert_eq!(to_nia["data"]["status"], "offline");
    assert!(
        to_nia["data"]["last_seen"].is_null(),
        "the plugin failed, so last seen is hidden: {to_nia}"
    );
    assert_eq!(to_nia["data"]["show_last_seen"], false);

    let (_, to_bob) = app.get_as(bob, &path).await;
    assert!(
        to_bob["data"]["last_seen"].is_string(),
        "a viewer the plugin answers still sees it: {to_bob}"
    );

    // Ann comes back: the plugin fails for Nia, so Nia must not learn it.
    let _a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    let (_, to_nia) = app.get_as(nia, &path).await;
    assert_eq!(
        to_nia["data"]["status"], "offline",
        "a failing privacy plugin hides the status too: {to_nia}"
    );
    assert_eq!(to_nia["data"]["is_online"], false);
    let _n = app.connect(nia).await;
    let (_, own) = app.get_as(nia, "/api/v1/users/me/status").await;
    assert_eq!(
        own["data"]["status"], "online",
        "her own status is no secret: {own}"
    );
    let privacy = slot(&app, "privacy").await;
    assert!(privacy["failures"].as_u64().unwrap() >= 1, "{privacy}");
    assert_eq!(privacy["sha256"], hostile);
}

/// One misbehaving recipient over several events, or a plugin that only
/// ever answers garbage, is also rolled back: each function keeps its own
/// failure streak, and only an accepted answer ends it.
#[tokio::test]
async fn a_plugin_that_keeps_answering_garbage_is_rolled_back() {
    let app = spawn_app().await;
    let builtin = slot(&app, "typing").await["sha256"].clone();
    install(&app, "typing", env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).await;
    let (ann, vic) = (app.user("Ann").await, app.user("Vic").await);
    let mut a = app.connect(ann).await;
    let mut v = connect_in(&app, vic, "qga").await;
    for _ in 0..presence::policy::AUTO_ROLLBACK_AFTER {
        // A conversation each, so no rate window holds a broadcast back.
        let conversation = app.conversation(&[ann, vic]).await;
        a.send("typing_start", json!({"conversation_id": conversation}))
            .await;
        assert_eq!(typing_in(&mut v, conversation).await["text"], FALLBACK_TEXT);
    }
    let typing = slot(&app, "typing").await;
    assert_eq!(
        typing["sha256"], builtin,
        "rolled back after the streak: {typing}"
    );
}

/// A plugin author sees why their plugin failed: the panic's own message
/// reaches `presence plugin check`, the refused install and the listing.
#[tokio::test]
async fn a_plugins_panic_message_reaches_check_install_and_the_listing() {
    let panicking = env!("PRESENCE_TEST_PANICKING_TYPING_WASM");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(presence_e2e::cluster::presence_binary())
        .args(["plugin", "check", "--slot", "typing", panicking])
        .env("PRESENCE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("format-typers") && said.contains("panicked at") && said.contains("boom"),
        "check says which call panicked and with what: {said}"
    );

    let app = spawn_app().await;
    let (status, body) = app
        .upload_plugin("typing", std::fs::read(panicking).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("boom"), "the refused install says why: {msg}");

    // A serving plugin's failures, each with its cause, in the listing.
    install(&app, "typing", env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).await;
    assert!(slot(&app, "typing").await["last_failure"].is_null());
    let ann = app.user("Ann").await;
    let mut a = app.connect(ann).await;
    for (locale, cause) in [
        ("qpa", "hostile-typing: asked to panic for 1 typers"),
        ("qfs", "wasi:filesystem"),
        ("qcl", "wasi:clocks/wall-clock"),
    ] {
        let victim = app.user(&format!("Vic-{locale}")).await;
        let conversation = app.conversation(&[ann, victim]).await;
        let mut v = connect_in(&app, victim, locale).await;
        a.send("typing_start", json!({"conversation_id": conversation}))
            .await;
        assert_eq!(typing_in(&mut v, conversation).await["text"], FALLBACK_TEXT);
        let failure = &slot(&app, "typing").await["last_failure"];
        assert_eq!(failure["function"], "format-typers", "{failure}");
        let message = failure["message"].as_str().unwrap();
        assert!(message.contains(cause), "`{locale}`: {message}");
        v.close().await;
    }
}

/// What Rust's standard library does by itself works in a plugin: a
/// `HashMap` (seeded by the host), the environment (empty) and `eprintln!`.
#[tokio::test]
async fn a_plugin_may_use_hashmaps_the_environment_and_stderr() {
    let app = spawn_app().await;
    install(&app, "typing", env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let mut a = app.connect(ann).await;
    let mut b = connect_in(&app, bob, "qhm").await;
    let conversation = app.conversation(&[ann, bob]).await;
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    assert_eq!(typing_in(&mut b, conversation).await["text"], PLUGIN_TEXT);
    let typing = slot(&app, "typing").await;
    assert_eq!(typing["failures"], 0, "{typing}");
}

/// A plugin broken for one locale only never fails five calls in a row
/// while other recipients' calls succeed in between; the failure rate rolls
/// it back, and the listing keeps what it did.
#[tokio::test]
async fn a_plugin_broken_for_one_locale_is_rolled_back_by_its_failure_rate() {
    let app = spawn_app().await;
    let builtin = slot(&app, "typing").await["sha256"].clone();
    let hostile = install(&app, "typing", env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).await;
    let (ann, bob, pat) = (
        app.user("Ann").await,
        app.user("Bob").await,
        app.user("Pat").await,
    );
    let mut a = app.connect(ann).await;
    let mut b = connect_in(&app, bob, "en").await;
    let mut p = connect_in(&app, pat, "qpa").await;
    // Each broadcast: `on-typing-start` and Bob's wording succeed, Pat's
    // fails. One conversation each, so no rate window coalesces a start.
    let mut rounds = 0;
    loop {
        let conversation = app.conversation(&[ann, bob, pat]).await;
        a.send("typing_start", json!({"conversation_id": conversation}))
            .await;
        assert_eq!(typing_in(&mut p, conversation).await["text"], FALLBACK_TEXT);
        typing_in(&mut b, conversation).await;
        rounds += 1;
        let typing = slot(&app, "typing").await;
        if typing["sha256"] != hostile || rounds == 40 {
            break;
        }
    }
    let typing = slot(&app, "typing").await;
    assert_eq!(typing["sha256"], builtin, "rolled back: {typing}");
    // Pat's locale was also tried once when Pat connected (to settle it).
    assert_eq!(rounds, 19, "at the 20th failure among its latest calls");
    let gone = &typing["rolled_back"][0];
    assert_eq!(gone["sha256"], hostile, "{typing}");
    let reason = gone["reason"].as_str().unwrap();
    assert!(
        reason.contains("20 of its last 100 calls failed"),
        "{reason}"
    );
    assert_eq!(gone["failures"], 20);
    let why = gone["last_failure"]["message"].as_str().unwrap();
    assert!(why.contains("asked to panic"), "{why}");
}

/// Pins the calling thread to CPU 0 (with `taskset`, by its thread id).
fn pin_to_cpu0() {
    let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = me.file_name().unwrap().to_str().unwrap().to_owned();
    let status = std::process::Command::new("taskset")
        .args(["-pc", "0", &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset runs");
    assert!(status.success(), "taskset -pc 0 {tid}");
}

/// The call deadline counts the CPU a call used, not the time it waited
/// for the CPU: on a busy host a plugin is not cut off for waiting (it was,
/// and then privacy failed closed and typing lost its wording).
#[test]
fn a_call_that_waits_for_the_cpu_is_not_cut_off() {
    use presence::policy::{Policies, PolicyConfig, Slot};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_millis(10);
    let policies = Policies::load(&PolicyConfig {
        plugin_dir: None,
        call_deadline: DEADLINE,
        memory_limit: 64 << 20,
        cache_dir: None,
    })
    .unwrap();
    let hostile = std::fs::read(env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).unwrap();
    policies
        .install(Slot::Typing, &hostile, "test".into())
        .unwrap();
    // Distinct names each call, so no wording comes from the host's cache.
    let mut n = 0;
    let mut call = |rounds: u64| {
        n += 1;
        let (rounds, tag) = (rounds.to_string(), format!("call-{n}"));
        let started = Instant::now();
        let text = policies.format_typers(&[&rounds, &tag], "qsp");
        (started.elapsed(), text)
    };
    // About 4 ms of CPU per call, alone.
    let mut rounds = 1_000_000u64;
    for _ in 0..4 {
        let took = (0..3).map(|_| call(rounds).0).min().unwrap();
        rounds = (rounds as f64 * 4e-3 / took.as_secs_f64()).max(1.0) as u64;
    }

    // Eight busy threads and this one share CPU 0.
    pin_to_cpu0();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to_cpu0();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(());
                }
            })
        })
        .collect();
    let walls: Vec<Duration> = (0..5)
        .map(|_| {
            let (took, text) = call(rounds);
            assert!(
                text.ends_with("[hostile-typing]"),
                "the plugin's wording: {text}"
            );
            took
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    let slow = walls.iter().max().unwrap();
    assert!(
        *slow > DEADLINE,
        "the calls did not wait for the CPU ({walls:?}), so this proves nothing"
    );
    let typing = &policies.slots()[0];
    assert_eq!(typing.failures, 0, "{walls:?}");
}
