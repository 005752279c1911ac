//! An example status policy for mobile clients. Phones drop their connection
//! whenever the app is backgrounded and reconnect on the next wake, so the
//! offline grace is long enough to hide those gaps, the heartbeat is slow to
//! spare the battery, and away waits ten minutes. Everything else keeps the
//! SDK defaults.

use presence_plugin_sdk::status::StatusPolicy;

/// A backgrounded app usually reconnects within half a minute.
pub const OFFLINE_GRACE_MS: u32 = 30_000;
/// Each ping wakes the radio; 45 s still drops a dead link within 2 min.
pub const HEARTBEAT_INTERVAL_MS: u32 = 45_000;
/// Phones are used in short bursts: ten minutes idle before away.
pub const AWAY_AFTER_MS: u32 = 10 * 60 * 1_000;

/// The policy; flush (30 s) and watchers (contacts) are the defaults.
pub struct MobileStatus;

impl StatusPolicy for MobileStatus {
    fn offline_grace_ms() -> u32 {
        OFFLINE_GRACE_MS
    }

    fn heartbeat_interval_ms() -> u32 {
        HEARTBEAT_INTERVAL_MS
    }

    fn away_after_ms() -> u32 {
        AWAY_AFTER_MS
    }
}

presence_plugin_sdk::export_status_policy!(MobileStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::status::WatcherScope;

    #[test]
    fn a_backgrounded_phone_gets_thirty_seconds_before_it_goes_offline() {
        assert_eq!(MobileStatus::config().offline_grace_ms, 30_000);
    }

    #[test]
    fn heartbeat_and_away_are_slower_than_on_desktop() {
        let c = MobileStatus::config();
        assert_eq!(c.heartbeat_interval_ms, 45_000);
        assert_eq!(c.away_after_ms, 600_000);
    }

    #[test]
    fn flush_and_watchers_keep_the_defaults() {
        let c = MobileStatus::config();
        assert_eq!(c.last_seen_flush_ms, 30_000);
        assert_eq!(c.watchers, WatcherScope::Contacts);
    }
}
