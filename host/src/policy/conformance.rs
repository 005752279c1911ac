//! Conformance vectors: what a component must answer before it may serve a
//! slot. They encode the contract (SPEC §3, §4, §7), not one policy's taste:
//! any privacy policy must hide last seen where the subject chose to hide
//! it, any typing policy must name who is typing and keep leases sane.

use anyhow::{bail, ensure};

use super::bindings::{PrivacyWorld, StatusWorld, TypingWorld};
use super::slot::Loaded;
use super::{
    AWAY_AFTER_BOUNDS, HEARTBEAT_BOUNDS, LAST_SEEN_FLUSH_BOUNDS, LastSeenView, MAX_RATE_WINDOW,
    MAX_SUMMARY_BYTES, MAX_TYPING_LEASE, MIN_TYPING_LEASE, OFFLINE_GRACE_BOUNDS, Relationship,
    TypingStart, ViewRequest,
};
use crate::model::{PrivacySettings, Visibility};

fn within(
    name: &str,
    value: std::time::Duration,
    (min, max): (std::time::Duration, std::time::Duration),
) -> anyhow::Result<()> {
    ensure!(
        (min..=max).contains(&value),
        "{name} is {value:?}, outside {min:?}..={max:?}"
    );
    Ok(())
}

/// Returns how many vectors passed.
pub(super) fn typing(t: &Loaded<TypingWorld>) -> anyhow::Result<usize> {
    let limits = t.cached();
    within(
        "the lease",
        limits.lease,
        (MIN_TYPING_LEASE, MAX_TYPING_LEASE),
    )?;
    within(
        "the rate window",
        limits.rate_window,
        (Default::default(), MAX_RATE_WINDOW),
    )?;

    let start = TypingStart {
        member_count: 2,
        other_typers: 0,
        renewal: false,
    };
    let decision = match super::typing_start(t, start) {
        Ok(d) => d,
        Err(e) => bail!("on-typing-start failed: {}", e.why),
    };
    within(
        "the lease of a first start",
        decision.lease,
        (MIN_TYPING_LEASE, MAX_TYPING_LEASE),
    )?;

    let summary = |names: &[&str], locale: &str| match super::format_typers(t, names, locale) {
        Ok(s) => Ok(s),
        Err(e) => bail!("format-typers({names:?}, {locale:?}) failed: {}", e.why),
    };
    let nobody = summary(&[], "en")?;
    ensure!(
        nobody.is_empty(),
        "format-typers([]) must be empty when nobody types, got {nobody:?}"
    );
    let one = summary(&["Ann"], "en")?;
    ensure!(
        one.contains("Ann"),
        "format-typers([\"Ann\"]) must name Ann, got {one:?}"
    );
    let many = summary(&["Ann", "Bob", "Cid", "Dan", "Eve"], "th")?;
    ensure!(
        !many.is_empty() && many.len() <= MAX_SUMMARY_BYTES,
        "format-typers of five typers must be a short non-empty text, got {many:?}"
    );
    Ok(6)
}

pub(super) fn status(s: &Loaded<StatusWorld>) -> anyhow::Result<usize> {
    let c = s.cached();
    within("offline-grace", c.offline_grace, OFFLINE_GRACE_BOUNDS)?;
    within("away-after", c.away_after, AWAY_AFTER_BOUNDS)?;
    within("heartbeat-interval", c.heartbeat_interval, HEARTBEAT_BOUNDS)?;
    within("last-seen-flush", c.last_seen_flush, LAST_SEEN_FLUSH_BOUNDS)?;
    Ok(4)
}

pub(super) fn privacy(p: &Loaded<PrivacyWorld>) -> anyhow::Result<usize> {
    let open = PrivacySettings {
        show_last_seen: true,
        last_seen_visibility: Visibility::Everyone,
    };
    let settings = |show, vis| PrivacySettings {
        show_last_seen: show,
        last_seen_visibility: vis,
    };
    let contact = Relationship {
        in_subject_contacts: true,
        in_viewer_contacts: true,
        ..Default::default()
    };
    let stranger = Relationship {
        in_viewer_contacts: true,
        ..Default::default()
    };
    let me = Relationship {
        self_view: true,
        ..Default::default()
    };
    let cases = [
        (
            "a subject who chose `contacts`, seen by a non-contact",
            stranger,
            settings(true, Visibility::Contacts),
            false,
        ),
        (
            "a subject who chose `nobody`, seen by a contact",
            contact,
            settings(true, Visibility::Nobody),
            false,
        ),
        (
            "a subject with show_last_seen false, seen by a contact",
            contact,
            settings(false, Visibility::Everyone),
            false,
        ),
        (
            "a user looking at themselves",
            me,
            settings(false, Visibility::Nobody),
            true,
        ),
    ];
    for (what, relationship, subject, visible) in cases {
        let request = ViewRequest {
            relationship,
            viewer: open,
            subject,
            last_seen_age_secs: Some(120),
        };
        let view = match super::privacy_view(p, &request) {
            Ok(v) => v,
            Err(e) => bail!("view failed for {what}: {}", e.why),
        };
        let shown = !matches!(view.last_seen, LastSeenView::Hidden);
        if visible {
            ensure!(
                shown && view.show_status,
                "{what} must see their own last seen"
            );
        } else {
            ensure!(
                !shown,
                "{what} must not see the last seen, got {:?}",
                view.last_seen
            );
        }
    }
    Ok(cases.len())
}
