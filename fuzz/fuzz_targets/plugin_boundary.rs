//! The plugin boundary: the shipped default components (compiled into the
//! host) called through the host's own policy API, `presence::policy::
//! Policies`, with arbitrary records into every export — typing `limits`,
//! `on-typing-start`, `format-typers` (and the locale settling built on
//! it), status `config`, privacy `view`.
//!
//! Asserts (docs/plugins.md): no panic; leases, windows and status timings
//! clamped to their documented bounds; the component answers exactly what
//! the SDK's defaults answer natively, so no input makes a shipped plugin
//! trap or fail (a summary over 1 KiB is refused and counted, and the
//! fallback answers the same words); a user always sees their own last
//! seen; an approximate label is 1–64 bytes; a settled locale is the
//! default or a prefix of the canonical tag.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use presence::model::{PrivacySettings, Visibility};
use presence::policy::{
    AWAY_AFTER_BOUNDS, DEFAULT_LOCALE, HEARTBEAT_BOUNDS, LAST_SEEN_FLUSH_BOUNDS, LastSeenView,
    MAX_LABEL_BYTES, MAX_RATE_WINDOW, MAX_SUMMARY_BYTES, MAX_TYPING_LEASE, MIN_TYPING_LEASE,
    OFFLINE_GRACE_BOUNDS, Policies, PolicyConfig, Relationship, Slot, TypingStart, ViewRequest,
    canonical_locale,
};
use presence_plugin_sdk::privacy as sdk;
use presence_plugin_sdk::typing::default_format_typers;

/// The call deadline here. The host's deadline is wall-clock epoch ticks
/// (10 ms), so on a loaded CI machine a descheduled call overruns it and is
/// counted as a failure; this target is about answers, not time.
const CALL_DEADLINE: Duration = Duration::from_secs(1);

fn policies() -> &'static Policies {
    static POLICIES: OnceLock<Policies> = OnceLock::new();
    POLICIES.get_or_init(|| {
        Policies::load(&PolicyConfig {
            call_deadline: CALL_DEADLINE,
            ..PolicyConfig::default()
        })
        .expect("the defaults load")
    })
}

#[derive(Arbitrary, Debug)]
struct Settings {
    show_last_seen: bool,
    visibility: u8,
}

impl Settings {
    fn host(&self) -> PrivacySettings {
        PrivacySettings {
            show_last_seen: self.show_last_seen,
            last_seen_visibility: match self.visibility % 3 {
                0 => Visibility::Everyone,
                1 => Visibility::Contacts,
                _ => Visibility::Nobody,
            },
        }
    }

    fn sdk(&self) -> sdk::Settings {
        sdk::Settings {
            show_last_seen: self.show_last_seen,
            last_seen_visibility: match self.visibility % 3 {
                0 => sdk::Visibility::Everyone,
                1 => sdk::Visibility::Contacts,
                _ => sdk::Visibility::Nobody,
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    member_count: u32,
    other_typers: u32,
    renewal: bool,
    names: Vec<String>,
    locale: String,
    /// Self, in subject's contacts, in viewer's contacts, shared conversation.
    relationship: [bool; 4],
    viewer: Settings,
    subject: Settings,
    last_seen_age_secs: Option<u64>,
}

fn typing(p: &Policies, input: &Input) {
    let limits = p.typing_limits();
    assert!((MIN_TYPING_LEASE..=MAX_TYPING_LEASE).contains(&limits.lease));
    assert!(limits.rate_window <= MAX_RATE_WINDOW);

    let decision = p.on_typing_start(TypingStart {
        member_count: input.member_count,
        other_typers: input.other_typers,
        renewal: input.renewal,
    });
    assert!((MIN_TYPING_LEASE..=MAX_TYPING_LEASE).contains(&decision.lease));

    let names: Vec<&str> = input.names.iter().map(String::as_str).collect();
    let failures = p.slot(Slot::Typing).failures;
    let summary = p.format_typers(&names, &input.locale);
    assert_eq!(summary, default_format_typers(&names, &input.locale));
    assert_eq!(
        summary.is_empty(),
        names.is_empty(),
        "empty for nobody only"
    );
    // Only a summary too long to be one is refused; anything else the
    // shipped plugin answers is its own answer.
    let failed = p.slot(Slot::Typing).failures > failures;
    assert!(!failed || summary.len() > MAX_SUMMARY_BYTES, "{summary:?}");

    let settled = p.locale(Some(&input.locale));
    match canonical_locale(&input.locale) {
        Some(tag) => {
            assert!(&*settled == DEFAULT_LOCALE || tag.starts_with(&*settled));
            assert_eq!(canonical_locale(&tag).as_ref(), Some(&tag), "idempotent");
        }
        None => assert_eq!(&*settled, DEFAULT_LOCALE),
    }
}

fn status(p: &Policies) {
    let c = p.status_config();
    let within = |v, (min, max)| (min..=max).contains(&v);
    assert!(within(c.offline_grace, OFFLINE_GRACE_BOUNDS));
    assert!(within(c.away_after, AWAY_AFTER_BOUNDS));
    assert!(within(c.heartbeat_interval, HEARTBEAT_BOUNDS));
    assert!(within(c.last_seen_flush, LAST_SEEN_FLUSH_BOUNDS));
}

fn privacy(p: &Policies, input: &Input) {
    let [
        self_view,
        in_subject_contacts,
        in_viewer_contacts,
        shared_conversation,
    ] = input.relationship;
    let request = ViewRequest {
        relationship: Relationship {
            self_view,
            in_subject_contacts,
            in_viewer_contacts,
            shared_conversation,
        },
        viewer: input.viewer.host(),
        subject: input.subject.host(),
        last_seen_age_secs: input.last_seen_age_secs,
    };
    let failures = p.slot(Slot::Privacy).failures;
    let view = p.privacy_view(&request);
    assert_eq!(
        p.slot(Slot::Privacy).failures,
        failures,
        "the default never fails"
    );

    let mut rel = sdk::Relationship::empty();
    for (set, flag) in [
        (self_view, sdk::Relationship::SELF_VIEW),
        (in_subject_contacts, sdk::Relationship::IN_SUBJECT_CONTACTS),
        (in_viewer_contacts, sdk::Relationship::IN_VIEWER_CONTACTS),
        (shared_conversation, sdk::Relationship::SHARED_CONVERSATION),
    ] {
        if set {
            rel |= flag;
        }
    }
    let expected = sdk::default_last_seen(&sdk::ViewRequest {
        relationship: rel,
        viewer: input.viewer.sdk(),
        subject: input.subject.sdk(),
        last_seen_age_secs: input.last_seen_age_secs,
    });
    assert!(view.show_status, "the default shows every status");
    match (&view.last_seen, expected) {
        (LastSeenView::Hidden, sdk::LastSeenView::Hidden)
        | (LastSeenView::Exact, sdk::LastSeenView::Exact) => {}
        (LastSeenView::Approximate(label), _) => {
            assert!((1..=MAX_LABEL_BYTES).contains(&label.len()), "{label:?}")
        }
        (got, want) => panic!("{got:?}, the SDK says {want:?}"),
    }
    if self_view {
        assert_eq!(view.last_seen, LastSeenView::Exact, "one's own last seen");
    }
}

fuzz_target!(|input: Input| {
    let p = policies();
    typing(p, &input);
    status(p);
    privacy(p, &input);
});
