//! A status policy for tests: everything happens within seconds, and
//! co-members of conversations are watchers too.

use presence_plugin_sdk::status::{StatusPolicy, WatcherScope};

pub struct Policy;

impl StatusPolicy for Policy {
    fn offline_grace_ms() -> u32 {
        500
    }

    fn away_after_ms() -> u32 {
        1_500
    }

    fn heartbeat_interval_ms() -> u32 {
        1_000
    }

    fn last_seen_flush_ms() -> u32 {
        1_000
    }

    fn watchers() -> WatcherScope {
        WatcherScope::ContactsAndCoMembers
    }
}

presence_plugin_sdk::export_status_policy!(Policy);
