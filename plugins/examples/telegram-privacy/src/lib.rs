//! An example privacy policy, Telegram-style. Other viewers see a bucket
//! ("recently", "within_week", "within_month", "long_ago") instead of the
//! exact time, so nobody can track someone's habits to the minute; only the
//! user sees their own exact time. The subject's own setting still decides
//! whether anything is shown, and it is reciprocal: a viewer who hides their
//! last seen sees nobody's. Online/away status stays visible either way.

use presence_plugin_sdk::privacy::{
    LastSeenView, PrivacyPolicy, Relationship, ViewRequest, subject_shares_last_seen,
};

const DAY_SECS: u64 = 24 * 60 * 60;

/// Age limits (inclusive) and the label shown up to each; older is `long_ago`.
pub const BUCKETS: [(u64, &str); 3] = [
    (3 * DAY_SECS, "recently"),
    (7 * DAY_SECS, "within_week"),
    (30 * DAY_SECS, "within_month"),
];
/// The label past the last bucket.
pub const LONG_AGO: &str = "long_ago";

/// The policy; status visibility keeps the SDK default (always shown).
pub struct TelegramPrivacy;

impl PrivacyPolicy for TelegramPrivacy {
    fn last_seen(request: &ViewRequest) -> LastSeenView {
        if request.relationship.contains(Relationship::SELF_VIEW) {
            return LastSeenView::Exact;
        }
        if request.viewer.hides_last_seen() || !subject_shares_last_seen(request) {
            return LastSeenView::Hidden;
        }
        // The host passes no age while the subject is online (it then shows
        // no time at all); online is as recent as it gets.
        let age = request.last_seen_age_secs.unwrap_or(0);
        LastSeenView::Approximate(bucket(age).into())
    }
}

/// The label for a last seen `age_secs` ago.
pub fn bucket(age_secs: u64) -> &'static str {
    BUCKETS
        .iter()
        .find(|(limit, _)| age_secs <= *limit)
        .map_or(LONG_AGO, |(_, label)| label)
}

presence_plugin_sdk::export_privacy_policy!(TelegramPrivacy);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::privacy::{PrivacyView, Settings, Visibility};

    const OPEN: Settings = Settings {
        show_last_seen: true,
        last_seen_visibility: Visibility::Everyone,
    };

    fn view(rel: Relationship, viewer: Settings, subject: Settings, age: u64) -> PrivacyView {
        TelegramPrivacy::view(&ViewRequest {
            relationship: rel,
            viewer,
            subject,
            last_seen_age_secs: Some(age),
        })
    }

    fn approx(label: &str) -> LastSeenView {
        LastSeenView::Approximate(label.into())
    }

    #[test]
    fn others_see_a_bucket_instead_of_the_time() {
        let at = |age| view(Relationship::empty(), OPEN, OPEN, age).last_seen;
        assert_eq!(at(0), approx("recently"));
        assert_eq!(at(3 * DAY_SECS), approx("recently"));
        assert_eq!(at(3 * DAY_SECS + 1), approx("within_week"));
        assert_eq!(at(7 * DAY_SECS), approx("within_week"));
        assert_eq!(at(30 * DAY_SECS), approx("within_month"));
        assert_eq!(at(30 * DAY_SECS + 1), approx("long_ago"));
    }

    #[test]
    fn users_see_their_own_exact_time() {
        let hidden = Settings {
            show_last_seen: false,
            last_seen_visibility: Visibility::Nobody,
        };
        let me = view(Relationship::SELF_VIEW, hidden, hidden, 90 * DAY_SECS);
        assert_eq!(me.last_seen, LastSeenView::Exact);
    }

    #[test]
    fn the_subjects_setting_still_hides_last_seen() {
        let contacts = Settings {
            last_seen_visibility: Visibility::Contacts,
            ..OPEN
        };
        let nobody = Settings {
            last_seen_visibility: Visibility::Nobody,
            ..OPEN
        };
        let off = Settings {
            show_last_seen: false,
            ..OPEN
        };
        let stranger = Relationship::IN_VIEWER_CONTACTS;
        let contact = Relationship::IN_SUBJECT_CONTACTS;
        assert_eq!(
            view(stranger, OPEN, contacts, 60).last_seen,
            LastSeenView::Hidden
        );
        assert_eq!(
            view(contact, OPEN, contacts, 60).last_seen,
            approx("recently")
        );
        assert_eq!(
            view(contact, OPEN, nobody, 60).last_seen,
            LastSeenView::Hidden
        );
        assert_eq!(view(contact, OPEN, off, 60).last_seen, LastSeenView::Hidden);
    }

    #[test]
    fn who_hides_their_last_seen_sees_nobodys_but_still_sees_status() {
        let contact = Relationship::IN_SUBJECT_CONTACTS;
        for viewer in [
            Settings {
                show_last_seen: false,
                ..OPEN
            },
            Settings {
                last_seen_visibility: Visibility::Nobody,
                ..OPEN
            },
        ] {
            let seen = view(contact, viewer, OPEN, 60);
            assert_eq!(seen.last_seen, LastSeenView::Hidden);
            assert!(seen.show_status);
        }
    }

    #[test]
    fn an_online_subject_reads_as_recently() {
        let online = TelegramPrivacy::view(&ViewRequest {
            relationship: Relationship::empty(),
            viewer: OPEN,
            subject: OPEN,
            last_seen_age_secs: None,
        });
        assert_eq!(online.last_seen, approx("recently"));
    }
}
