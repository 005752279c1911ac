//! The policy runtime with its built-in components: what the defaults answer,
//! how a plugin directory overrides them, and what is refused.

use std::time::{Duration, Instant};

use presence::model::{PrivacySettings, Visibility};
use presence::policy::{
    BUILTIN_SOURCE, LastSeenView, Policies, PolicyConfig, Relationship, Slot, StatusConfig,
    TypingDecision, TypingLimits, TypingStart, View, ViewRequest, WatcherScope, canonical_locale,
};

fn builtin() -> Policies {
    Policies::load(&PolicyConfig::default()).expect("the built-in policies load")
}

fn with_plugin_dir(files: &[(&str, &[u8])]) -> (tempfile::TempDir, anyhow::Result<Policies>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let config = PolicyConfig {
        plugin_dir: Some(dir.path().to_owned()),
        ..PolicyConfig::default()
    };
    let policies = Policies::load(&config);
    (dir, policies)
}

#[test]
fn locale_tags_are_put_in_canonical_case_and_cut_to_language_script_region() {
    for (asked, canonical) in [
        ("th", Some("th")),
        ("TH_th", Some("th-TH")),
        ("zh-hant-tw", Some("zh-Hant-TW")),
        ("es-419", Some("es-419")),
        ("en-GB-oxendict", Some("en-GB")),
        ("de-x-private", Some("de")),
        ("en-latn-latn", Some("en-Latn")),
        ("x-private", None),
        ("e", None),
        ("engl", None),
        ("e1", None),
        ("", None),
    ] {
        assert_eq!(canonical_locale(asked).as_deref(), canonical, "{asked}");
    }
}

/// A client's `?locale=` becomes the least specific tag the typing policy
/// words the same way, and English when it words it as English, so made-up
/// locales cannot multiply the wording calls of a broadcast.
#[test]
fn locales_are_reduced_to_what_the_typing_policy_words() {
    let policies = builtin();
    for (asked, settled) in [
        (Some("th"), "th"),
        (Some("th-TH"), "th"),
        (Some("TH_th"), "th"),
        (Some("th-Thai-TH-x-private"), "th"),
        (Some("en"), "en"),
        (Some("en-GB"), "en"),
        (Some("pt-BR"), "en"),
        (Some("zz"), "en"),
        (Some("qaa"), "en"),
        (Some("../../etc/passwd"), "en"),
        (Some("a"), "en"),
        (Some(""), "en"),
        (None, "en"),
    ] {
        assert_eq!(&*policies.locale(asked), settled, "{asked:?}");
    }
    let long = "x".repeat(100_000);
    assert_eq!(&*policies.locale(Some(&long)), "en");
}

#[test]
fn builtin_typing_policy_words_english_summaries() {
    let policies = builtin();
    assert_eq!(policies.format_typers(&[], "en"), "");
    assert_eq!(policies.format_typers(&["John"], "en"), "John is typing…");
    assert_eq!(
        policies.format_typers(&["John", "Sarah"], "en"),
        "John and Sarah are typing…"
    );
    assert_eq!(
        policies.format_typers(&["John", "Sarah", "Mike"], "en"),
        "John, Sarah and 1 other are typing…"
    );
    assert_eq!(
        policies.format_typers(&["John", "Sarah", "Mike", "Ann"], "en"),
        "John, Sarah and 2 others are typing…"
    );
}

#[test]
fn builtin_typing_policy_words_thai_summaries() {
    let policies = builtin();
    assert_eq!(policies.format_typers(&["John"], "th"), "John กำลังพิมพ์...");
    assert_eq!(
        policies.format_typers(&["John", "Sarah"], "th"),
        "John และ Sarah กำลังพิมพ์..."
    );
    assert_eq!(
        policies.format_typers(&["John", "Sarah", "Mike", "Ann"], "th"),
        "John, Sarah และอีก 2 คนกำลังพิมพ์..."
    );
}

#[test]
fn builtin_typing_policy_leases_five_seconds_and_broadcasts_once_a_second() {
    let policies = builtin();
    assert_eq!(
        policies.typing_limits(),
        TypingLimits {
            lease: Duration::from_secs(5),
            rate_window: Duration::from_secs(1),
        }
    );
    let start = TypingStart {
        member_count: 3,
        other_typers: 1,
        renewal: false,
    };
    assert_eq!(
        policies.on_typing_start(start),
        TypingDecision {
            broadcast: true,
            lease: Duration::from_secs(5),
        }
    );
}

#[test]
fn builtin_status_policy_matches_the_documented_defaults() {
    assert_eq!(
        builtin().status_config(),
        StatusConfig {
            offline_grace: Duration::from_secs(3),
            away_after: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(20),
            last_seen_flush: Duration::from_secs(30),
            watchers: WatcherScope::Contacts,
        }
    );
}

fn settings(show_last_seen: bool, last_seen_visibility: Visibility) -> PrivacySettings {
    PrivacySettings {
        show_last_seen,
        last_seen_visibility,
    }
}

fn request(relationship: Relationship, subject: PrivacySettings) -> ViewRequest {
    ViewRequest {
        relationship,
        viewer: settings(true, Visibility::Everyone),
        subject,
        last_seen_age_secs: Some(120),
    }
}

const CONTACT: Relationship = Relationship {
    self_view: false,
    in_subject_contacts: true,
    in_viewer_contacts: true,
    shared_conversation: true,
};

const STRANGER: Relationship = Relationship {
    self_view: false,
    in_subject_contacts: false,
    in_viewer_contacts: false,
    shared_conversation: false,
};

const SELF: Relationship = Relationship {
    self_view: true,
    in_subject_contacts: false,
    in_viewer_contacts: false,
    shared_conversation: false,
};

fn last_seen(
    policies: &Policies,
    relationship: Relationship,
    subject: PrivacySettings,
) -> LastSeenView {
    let view = policies.privacy_view(&request(relationship, subject));
    assert!(
        view.show_status,
        "the default policy always shows the status"
    );
    view.last_seen
}

#[test]
fn contacts_setting_shows_last_seen_only_to_the_subjects_contacts() {
    let policies = builtin();
    let contacts = settings(true, Visibility::Contacts);
    assert_eq!(last_seen(&policies, CONTACT, contacts), LastSeenView::Exact);
    assert_eq!(
        last_seen(&policies, STRANGER, contacts),
        LastSeenView::Hidden
    );
    let only_viewer_has_subject = Relationship {
        in_subject_contacts: false,
        ..CONTACT
    };
    assert_eq!(
        last_seen(&policies, only_viewer_has_subject, contacts),
        LastSeenView::Hidden
    );
}

#[test]
fn nobody_setting_hides_last_seen_from_everyone_but_the_subject() {
    let policies = builtin();
    let nobody = settings(true, Visibility::Nobody);
    assert_eq!(last_seen(&policies, CONTACT, nobody), LastSeenView::Hidden);
    assert_eq!(last_seen(&policies, STRANGER, nobody), LastSeenView::Hidden);
    assert_eq!(last_seen(&policies, SELF, nobody), LastSeenView::Exact);
    let off = settings(false, Visibility::Everyone);
    assert_eq!(last_seen(&policies, CONTACT, off), LastSeenView::Hidden);
    assert_eq!(last_seen(&policies, SELF, off), LastSeenView::Exact);
}

#[test]
fn everyone_setting_shows_last_seen_to_strangers() {
    let policies = builtin();
    let everyone = settings(true, Visibility::Everyone);
    assert_eq!(
        last_seen(&policies, STRANGER, everyone),
        LastSeenView::Exact
    );
    assert_eq!(last_seen(&policies, CONTACT, everyone), LastSeenView::Exact);
}

#[test]
fn slots_report_the_builtins_with_their_calls() {
    let policies = builtin();
    policies.format_typers(&["John"], "en");
    policies.format_typers(&["Sarah"], "en");
    policies.format_typers(&["John"], "en");
    policies.privacy_view(&request(SELF, settings(true, Visibility::Nobody)));

    let slots = policies.slots();
    let slot_names: Vec<_> = slots.iter().map(|info| info.slot).collect();
    assert_eq!(slot_names, Slot::ALL);
    for info in &slots {
        assert_eq!(info.source, BUILTIN_SOURCE);
        assert_eq!(info.sha256.len(), 64);
        assert_eq!(info.failures, 0);
        assert!(info.world.contains(&format!("{}-policy", info.slot)));
    }
    assert_eq!(
        slots[0].calls, 2,
        "a summary already worded is not asked again"
    );
    assert_eq!(slots[1].calls, 0, "status config is asked once, at load");
    assert_eq!(slots[2].calls, 1);
}

#[test]
fn a_plugin_dir_without_components_keeps_the_builtins() {
    let (_dir, policies) = with_plugin_dir(&[]);
    let policies = policies.unwrap();
    assert!(
        policies
            .slots()
            .iter()
            .all(|info| info.source == BUILTIN_SOURCE)
    );
}

#[test]
fn a_plugin_file_of_the_right_world_replaces_the_builtin() {
    let (dir, policies) = with_plugin_dir(&[("privacy.wasm", Slot::Privacy.builtin_component())]);
    let policies = policies.unwrap();
    let privacy = &policies.slots()[2];
    assert_eq!(
        privacy.source,
        dir.path().join("privacy.wasm").display().to_string()
    );
    let view = policies.privacy_view(&request(CONTACT, settings(true, Visibility::Everyone)));
    assert_eq!(
        view,
        View {
            show_status: true,
            last_seen: LastSeenView::Exact,
        }
    );
}

#[test]
fn a_status_component_is_refused_in_the_typing_slot() {
    let (_dir, policies) = with_plugin_dir(&[("typing.wasm", Slot::Status.builtin_component())]);
    let error = format!("{:#}", policies.expect_err("the load fails"));
    assert!(error.contains("typing.wasm"), "{error}");
    assert!(error.contains("typing slot"), "{error}");
    assert!(
        error.contains("this is a status plugin") && error.contains("into the status slot"),
        "says which slot it is for: {error}"
    );
}

#[test]
fn a_typing_component_is_refused_in_the_privacy_slot() {
    let (_dir, policies) = with_plugin_dir(&[("privacy.wasm", Slot::Typing.builtin_component())]);
    let error = format!("{:#}", policies.expect_err("the load fails"));
    assert!(error.contains("privacy.wasm"), "{error}");
    assert!(error.contains("into the typing slot"), "{error}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused_with_the_file_name() {
    let (_dir, policies) = with_plugin_dir(&[("status.wasm", b"not wasm at all")]);
    let error = format!("{:#}", policies.expect_err("the load fails"));
    assert!(error.contains("status.wasm"), "{error}");
    assert!(
        error.contains("not a WebAssembly component") && error.contains("\\0asm"),
        "says so in one line: {error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_callable_from_tokio_tasks() {
    let policies = std::sync::Arc::new(builtin());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let policies = policies.clone();
            tokio::spawn(async move {
                // Distinct names: a summary already worded is cached.
                let john = format!("John {i}");
                let names = [john.as_str(), "Sarah", "Mike"];
                policies.format_typers(&names[..1 + i % 3], "en")
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().ends_with("typing…"));
    }
    assert_eq!(policies.slots()[0].calls, 8);
    assert_eq!(policies.slots()[0].failures, 0);
}

#[test]
fn concurrent_callers_share_the_instance_pool() {
    let policies = builtin();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let policies = &policies;
            scope.spawn(move || {
                for n in 0..50 {
                    // Distinct names: a summary already worded is cached.
                    let ann = format!("Ann {t}.{n}");
                    assert_eq!(
                        policies.format_typers(&[&ann], "en"),
                        format!("{ann} is typing…")
                    );
                }
            });
        }
    });
    assert_eq!(policies.slots()[0].calls, 200);
    assert_eq!(policies.slots()[0].failures, 0);
}

/// Prints what one call costs; asserts nothing about time. Run with
/// `cargo test --release -p presence --test policy -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test"]
fn measure_call_cost() {
    const CALLS: u32 = 20_000;
    let policies = builtin();
    let names = ["John", "Sarah", "Mike", "Ann"];
    let privacy = request(CONTACT, settings(true, Visibility::Contacts));
    // Warm the instance and the caches.
    for _ in 0..1_000 {
        policies.format_typers(&names, "en");
        policies.privacy_view(&privacy);
    }

    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(policies.format_typers(std::hint::black_box(&names), "en"));
    }
    let format_cached = started.elapsed() / CALLS;

    // Distinct first names defeat the summary cache: the component is called.
    let firsts: Vec<String> = (0..CALLS).map(|i| format!("John {i}")).collect();
    let started = Instant::now();
    for first in &firsts {
        let names = [first.as_str(), "Sarah", "Mike", "Ann"];
        std::hint::black_box(policies.format_typers(std::hint::black_box(&names), "en"));
    }
    let format = started.elapsed() / CALLS;

    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(policies.privacy_view(std::hint::black_box(&privacy)));
    }
    let view = started.elapsed() / CALLS;

    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(policies.typing_limits());
    }
    let limits = started.elapsed() / CALLS;

    let start = TypingStart {
        member_count: 10,
        other_typers: 1,
        renewal: false,
    };
    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(policies.on_typing_start(std::hint::black_box(start)));
    }
    let on_start = started.elapsed() / CALLS;

    println!(
        "on_typing_start: {:.2} µs; format_typers (4 names): {:.2} µs worded, {:.2} µs cached; privacy_view: {:.2} µs, typing_limits: {:.3} µs",
        on_start.as_secs_f64() * 1e6,
        format.as_secs_f64() * 1e6,
        format_cached.as_secs_f64() * 1e6,
        view.as_secs_f64() * 1e6,
        limits.as_secs_f64() * 1e6,
    );
}
