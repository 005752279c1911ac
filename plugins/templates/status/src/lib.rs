//! my-status: a presence status policy.
//!
//! The host asks it once, when the component is loaded, for the timings of
//! online, away and offline and for who hears about a user. Every method of
//! [`StatusPolicy`] defaults to the default plugin's value
//! ([`DEFAULT_CONFIG`](presence_plugin_sdk::status::DEFAULT_CONFIG)): 3 s
//! offline grace, away after 5 min, 20 s heartbeat, last seen written every
//! 30 s, contacts as watchers. This policy overrides only the offline grace.
//!
//! A policy is a pure function: the host keeps every timer. It has no WASI
//! (any import traps), 10 ms of CPU per call and 16 MiB of memory. The host
//! refuses timings outside its bounds (grace ≤ 10 min, away 1 s–1 day,
//! heartbeat 1 s–5 min, flush 1 s–1 h).

use presence_plugin_sdk::status::StatusPolicy;

/// How long after the last connection closes the user goes offline.
pub const OFFLINE_GRACE_MS: u32 = 10_000;

/// The policy. Override [`StatusPolicy::away_after_ms`],
/// [`StatusPolicy::heartbeat_interval_ms`],
/// [`StatusPolicy::last_seen_flush_ms`] or [`StatusPolicy::watchers`] in the
/// `impl` below as well if you need to.
pub struct MyStatus;

impl StatusPolicy for MyStatus {
    /// After the last connection closes, wait this long before offline, so
    /// a quick reconnect shows no offline/online flap (default 3 s).
    fn offline_grace_ms() -> u32 {
        OFFLINE_GRACE_MS
    }
}

presence_plugin_sdk::export_status_policy!(MyStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::status::{DEFAULT_CONFIG, StatusConfig};

    #[test]
    fn the_offline_grace_is_ten_seconds() {
        assert_eq!(MyStatus::config().offline_grace_ms, 10_000);
    }

    #[test]
    fn every_other_setting_keeps_the_default() {
        assert_eq!(
            MyStatus::config(),
            StatusConfig {
                offline_grace_ms: OFFLINE_GRACE_MS,
                ..DEFAULT_CONFIG
            }
        );
    }
}
