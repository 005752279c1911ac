//! What the host answers when a plugin call fails (trap, deadline, memory
//! cap, unusable answer). Typing and status fall back to the default
//! plugins' behaviour, taken from the plugin SDK those plugins are built
//! with, so there is one definition of each default; privacy fails closed:
//! a viewer sees neither the status nor the last seen of anyone but
//! themselves.

use std::time::Duration;

use presence_plugin_sdk::status::DEFAULT_CONFIG;
use presence_plugin_sdk::typing::{DEFAULT_LEASE_MS, DEFAULT_RATE_WINDOW_MS};

use super::{LastSeenView, TypingDecision, View, ViewRequest, WatcherScope};

/// A typing state lasts this long without renewal.
pub const TYPING_LEASE: Duration = Duration::from_millis(DEFAULT_LEASE_MS as u64);
/// At most one typing broadcast per user and conversation per window.
pub const TYPING_RATE_WINDOW: Duration = Duration::from_millis(DEFAULT_RATE_WINDOW_MS as u64);
/// A quick reconnect within this produces no offline/online flap.
pub const STATUS_OFFLINE_GRACE: Duration =
    Duration::from_millis(DEFAULT_CONFIG.offline_grace_ms as u64);
/// Idle this long makes a connected user away.
pub const STATUS_AWAY_AFTER: Duration = Duration::from_millis(DEFAULT_CONFIG.away_after_ms as u64);
/// The server pings this often.
pub const STATUS_HEARTBEAT_INTERVAL: Duration =
    Duration::from_millis(DEFAULT_CONFIG.heartbeat_interval_ms as u64);
/// `last_seen` of connected users is written behind this often.
pub const STATUS_LAST_SEEN_FLUSH: Duration =
    Duration::from_millis(DEFAULT_CONFIG.last_seen_flush_ms as u64);
/// Only users who have the subject as a contact hear about their status.
pub const STATUS_WATCHERS: WatcherScope = WatcherScope::Contacts;

/// Every start is announced with the default lease, like the default plugin.
pub(super) fn typing_decision() -> TypingDecision {
    TypingDecision {
        broadcast: true,
        lease: TYPING_LEASE,
    }
}

/// The default plugin's summary, in its words and languages.
pub(super) fn format_typers(names: &[&str], locale: &str) -> String {
    presence_plugin_sdk::typing::default_format_typers(names, locale)
}

/// Fail closed: hiding a status that should show is a nuisance; showing an
/// invisible user online, or a hidden last seen, is a privacy leak. A user's
/// own status is no secret from them.
pub(super) fn privacy_view(request: &ViewRequest) -> View {
    if request.relationship.self_view {
        return View {
            show_status: true,
            last_seen: LastSeenView::Exact,
        };
    }
    View {
        show_status: false,
        last_seen: LastSeenView::Hidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback is the default plugin: the same answers for every
    /// setting and for the typing vectors in each language it words.
    #[test]
    fn the_fallback_answers_what_the_default_plugins_answer() {
        let policies = super::super::Policies::load(&Default::default()).unwrap();
        let limits = policies.typing_limits();
        assert_eq!(limits.lease, TYPING_LEASE);
        assert_eq!(limits.rate_window, TYPING_RATE_WINDOW);
        let status = policies.status_config();
        assert_eq!(status.offline_grace, STATUS_OFFLINE_GRACE);
        assert_eq!(status.away_after, STATUS_AWAY_AFTER);
        assert_eq!(status.heartbeat_interval, STATUS_HEARTBEAT_INTERVAL);
        assert_eq!(status.last_seen_flush, STATUS_LAST_SEEN_FLUSH);
        assert_eq!(status.watchers, STATUS_WATCHERS);
        assert!(
            matches!(
                DEFAULT_CONFIG.watchers,
                presence_plugin_sdk::status::WatcherScope::Contacts
            ),
            "STATUS_WATCHERS names the SDK's default"
        );
        for names in [
            &[][..],
            &["John"],
            &["John", "Sarah"],
            &["A", "B", "C"],
            &["A", "B", "C", "D"],
        ] {
            for locale in ["en", "en-GB", "th", "th-TH", "pt-BR"] {
                assert_eq!(
                    policies.format_typers(names, locale),
                    format_typers(names, locale),
                    "{names:?} in {locale}"
                );
            }
        }
    }

    #[test]
    fn privacy_fallback_hides_everything_from_everyone_but_the_user() {
        let open = crate::model::PrivacySettings {
            show_last_seen: true,
            last_seen_visibility: crate::model::Visibility::Everyone,
        };
        let mut request = ViewRequest {
            relationship: Default::default(),
            viewer: open,
            subject: open,
            last_seen_age_secs: Some(60),
        };
        request.relationship.in_subject_contacts = true;
        let other = privacy_view(&request);
        assert!(!other.show_status);
        assert_eq!(other.last_seen, LastSeenView::Hidden);
        request.relationship.self_view = true;
        assert!(privacy_view(&request).show_status);
    }
}
