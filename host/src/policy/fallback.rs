//! What the host answers when a plugin call fails (trap, deadline, memory
//! cap, unusable answer). Typing and status fall back to the behaviour of the
//! default plugins (`plugins/typing`, `plugins/status`); privacy fails
//! closed: the status stays visible but last seen is hidden.

use std::time::Duration;

use super::{LastSeenView, TypingDecision, View, WatcherScope};

/// A typing state lasts 5 s without renewal (`plugins/typing` `LEASE_MS`).
pub const TYPING_LEASE: Duration = Duration::from_millis(5_000);
/// At most one typing broadcast per user and conversation per second
/// (`plugins/typing` `RATE_WINDOW_MS`).
pub const TYPING_RATE_WINDOW: Duration = Duration::from_millis(1_000);
/// A quick reconnect within 3 s produces no offline/online flap.
pub const STATUS_OFFLINE_GRACE: Duration = Duration::from_millis(3_000);
/// Five idle minutes make a connected user away.
pub const STATUS_AWAY_AFTER: Duration = Duration::from_millis(300_000);
/// The server pings every 20 s.
pub const STATUS_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(20_000);
/// `last_seen` of connected users is written behind every 30 s.
pub const STATUS_LAST_SEEN_FLUSH: Duration = Duration::from_millis(30_000);
/// Only users who have the subject as a contact hear about their status.
pub const STATUS_WATCHERS: WatcherScope = WatcherScope::Contacts;

/// Every start is announced with the default lease, like the default plugin.
pub(super) fn typing_decision() -> TypingDecision {
    TypingDecision {
        broadcast: true,
        lease: TYPING_LEASE,
    }
}

/// The default plugin's English summary, whatever the locale: a fallback
/// should be understandable, not localised.
pub(super) fn format_typers(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [a] => format!("{a} is typing…"),
        [a, b] => format!("{a} and {b} are typing…"),
        [a, b, rest @ ..] => {
            let n = rest.len();
            let others = if n == 1 { "other" } else { "others" };
            format!("{a}, {b} and {n} {others} are typing…")
        }
    }
}

/// Fail closed: hiding a last seen that should show is a nuisance; showing
/// one that should be hidden is a privacy leak.
pub(super) fn privacy_view() -> View {
    View {
        show_status: true,
        last_seen: LastSeenView::Hidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_fallback_matches_the_default_plugin() {
        assert_eq!(format_typers(&[]), "");
        assert_eq!(format_typers(&["John"]), "John is typing…");
        assert_eq!(
            format_typers(&["John", "Sarah"]),
            "John and Sarah are typing…"
        );
        assert_eq!(
            format_typers(&["John", "Sarah", "Mike"]),
            "John, Sarah and 1 other are typing…"
        );
        assert_eq!(
            format_typers(&["John", "Sarah", "Mike", "Ann"]),
            "John, Sarah and 2 others are typing…"
        );
    }

    /// The constants document the default plugins; keep them equal.
    #[test]
    fn constants_are_what_the_default_plugins_answer() {
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
        for names in [
            &[][..],
            &["John"],
            &["John", "Sarah"],
            &["A", "B", "C"],
            &["A", "B", "C", "D"],
        ] {
            assert_eq!(policies.format_typers(names, "en"), format_typers(names));
        }
    }

    #[test]
    fn privacy_fallback_hides_last_seen() {
        assert_eq!(privacy_view().last_seen, LastSeenView::Hidden);
    }
}
