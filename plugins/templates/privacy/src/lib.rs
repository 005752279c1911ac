//! my-privacy: a presence privacy policy.
//!
//! For one viewer and one subject the host asks whether the subject's
//! online/away status is shown and how their last seen reads (hidden, exact
//! or an approximate label such as "recently"). Every method of
//! [`PrivacyPolicy`] defaults to the default plugin's behaviour (status
//! always shown; last seen per the subject's `everyone` / `contacts` /
//! `nobody` setting); this policy adds one rule to last seen.
//!
//! A policy is a pure function of its inputs: the host looks up the
//! relationship and both users' settings. It has no WASI (any import traps),
//! 10 ms of CPU per call and 16 MiB of memory; if it fails, the host hides
//! last seen (privacy fails closed).

use presence_plugin_sdk::privacy::{self, LastSeenView, PrivacyPolicy, Relationship, ViewRequest};

/// The policy. Override [`PrivacyPolicy::show_status`] in the `impl` below
/// as well to hide online/away from some viewers.
pub struct MyPrivacy;

impl PrivacyPolicy for MyPrivacy {
    /// How the subject's last seen reads to the viewer.
    fn last_seen(request: &ViewRequest) -> LastSeenView {
        // Your rules go here. This one is reciprocal: who hides their own
        // last seen sees nobody else's (everyone always sees their own).
        let self_view = request.relationship.contains(Relationship::SELF_VIEW);
        if !self_view && request.viewer.hides_last_seen() {
            return LastSeenView::Hidden;
        }
        // Everything else: the SDK default, the subject's own setting.
        privacy::default_last_seen(request)
    }
}

presence_plugin_sdk::export_privacy_policy!(MyPrivacy);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::privacy::{Settings, Visibility};

    const OPEN: Settings = Settings {
        show_last_seen: true,
        last_seen_visibility: Visibility::Everyone,
    };
    const HIDDEN: Settings = Settings {
        show_last_seen: false,
        last_seen_visibility: Visibility::Nobody,
    };

    fn last_seen(relationship: Relationship, viewer: Settings, subject: Settings) -> LastSeenView {
        MyPrivacy::view(&ViewRequest {
            relationship,
            viewer,
            subject,
            last_seen_age_secs: Some(60),
        })
        .last_seen
    }

    #[test]
    fn an_open_subject_shows_last_seen_to_an_open_viewer() {
        let seen = last_seen(Relationship::empty(), OPEN, OPEN);
        assert_eq!(seen, LastSeenView::Exact);
    }

    #[test]
    fn who_hides_their_last_seen_sees_nobodys() {
        let contact = Relationship::IN_SUBJECT_CONTACTS;
        assert_eq!(last_seen(contact, HIDDEN, OPEN), LastSeenView::Hidden);
    }

    #[test]
    fn everyone_sees_their_own() {
        let me = last_seen(Relationship::SELF_VIEW, HIDDEN, HIDDEN);
        assert_eq!(me, LastSeenView::Exact);
    }

    #[test]
    fn the_subjects_contacts_setting_still_applies() {
        let contacts = Settings {
            last_seen_visibility: Visibility::Contacts,
            ..OPEN
        };
        let stranger = last_seen(Relationship::IN_VIEWER_CONTACTS, OPEN, contacts);
        assert_eq!(stranger, LastSeenView::Hidden);
        let contact = last_seen(Relationship::IN_SUBJECT_CONTACTS, OPEN, contacts);
        assert_eq!(contact, LastSeenView::Exact);
    }
}
