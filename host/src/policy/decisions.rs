//! What a component decides for representative inputs, so that `presence
//! plugin check` shows a plugin author the effect of their code without a
//! server: one line per decision.

use std::time::Duration;

use super::bindings::{PrivacyWorld, StatusWorld, TypingWorld};
use super::slot::Loaded;
use super::{LastSeenView, Relationship, TypingStart, ViewRequest, WatcherScope};
use crate::model::{PrivacySettings, Visibility};

/// Locales tried for wording; those worded like English are not shown.
const LOCALES: [&str; 14] = [
    "en", "th", "es", "de", "fr", "pt", "it", "nl", "ja", "zh", "ko", "ru", "ar", "id",
];

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn failed(why: &str) -> String {
    format!("failed: {why}")
}

pub(super) fn typing(t: &Loaded<TypingWorld>) -> Vec<String> {
    let limits = t.cached();
    let mut lines = vec![format!(
        "limits: lease {}, rate window {}",
        secs(limits.lease),
        secs(limits.rate_window)
    )];
    let starts = [
        ("first start, 2 members", 2, 0, false),
        (
            "first start, 1,000 members, 5 already typing",
            1_000,
            5,
            false,
        ),
        ("renewal", 2, 0, true),
    ];
    for (what, members, others, renewal) in starts {
        let start = TypingStart {
            member_count: members,
            other_typers: others,
            renewal,
        };
        let decided = match super::typing_start(t, start) {
            // A renewal is never announced, whatever the plugin says.
            Ok(d) if renewal => format!("lease {}", secs(d.lease)),
            Ok(d) => format!(
                "{}, lease {}",
                if d.broadcast { "announced" } else { "silent" },
                secs(d.lease)
            ),
            Err(e) => failed(&e.why),
        };
        lines.push(format!("{what}: {decided}"));
    }
    let typers: [&[&str]; 3] = [
        &["Ann"],
        &["Ann", "Bob"],
        &["Ann", "Bob", "Cid", "Dan", "Eve"],
    ];
    let mut english = None;
    for locale in LOCALES {
        let worded: Vec<String> = typers
            .iter()
            .map(|names| match super::format_typers(t, names, locale) {
                Ok(s) => format!("\"{s}\""),
                Err(e) => failed(&e.why),
            })
            .collect();
        if english.as_ref() == Some(&worded) {
            continue;
        }
        lines.push(format!("{locale}: {}", worded.join(" | ")));
        english.get_or_insert(worded);
    }
    lines
}

pub(super) fn status(s: &Loaded<StatusWorld>) -> Vec<String> {
    let c = s.cached();
    vec![format!(
        "offline grace {}, away after {}, heartbeat {}, last-seen flush {}, watchers: {}",
        secs(c.offline_grace),
        secs(c.away_after),
        secs(c.heartbeat_interval),
        secs(c.last_seen_flush),
        match c.watchers {
            WatcherScope::Contacts => "contacts",
            WatcherScope::ContactsAndCoMembers => "contacts and co-members",
        }
    )]
}

pub(super) fn privacy(p: &Loaded<PrivacyWorld>) -> Vec<String> {
    let relationships = [
        (
            "themselves",
            Relationship {
                self_view: true,
                ..Default::default()
            },
        ),
        (
            "mutual contacts",
            Relationship {
                in_subject_contacts: true,
                in_viewer_contacts: true,
                ..Default::default()
            },
        ),
        (
            "in the subject's contacts",
            Relationship {
                in_subject_contacts: true,
                ..Default::default()
            },
        ),
        (
            "has the subject as a contact",
            Relationship {
                in_viewer_contacts: true,
                ..Default::default()
            },
        ),
        (
            "shares a conversation",
            Relationship {
                shared_conversation: true,
                ..Default::default()
            },
        ),
        ("stranger", Relationship::default()),
    ];
    let settings = [
        ("everyone", true, Visibility::Everyone),
        ("contacts", true, Visibility::Contacts),
        ("nobody", true, Visibility::Nobody),
        ("hidden", false, Visibility::Everyone),
    ];
    let mut lines = vec![format!(
        "what a viewer sees of a subject last seen 2 min ago, who shows last seen to: {} (show_last_seen off)",
        settings.map(|s| s.0).join(" | ")
    )];
    let open = PrivacySettings {
        show_last_seen: true,
        last_seen_visibility: Visibility::Everyone,
    };
    for (who, relationship) in relationships {
        let seen: Vec<String> = settings
            .iter()
            .map(|(_, show, visibility)| {
                let request = ViewRequest {
                    relationship,
                    viewer: open,
                    subject: PrivacySettings {
                        show_last_seen: *show,
                        last_seen_visibility: *visibility,
                    },
                    last_seen_age_secs: Some(120),
                };
                match super::privacy_view(p, &request) {
                    Ok(v) => {
                        let last_seen = match v.last_seen {
                            LastSeenView::Hidden => "hidden".to_owned(),
                            LastSeenView::Exact => "exact".to_owned(),
                            LastSeenView::Approximate(label) => format!("\"{label}\""),
                        };
                        match v.show_status {
                            true => format!("status, {last_seen}"),
                            false => format!("no status, {last_seen}"),
                        }
                    }
                    Err(e) => failed(&e.why),
                }
            })
            .collect();
        lines.push(format!("{who}: {}", seen.join(" | ")));
    }
    lines
}
