//! The default status policy: the SDK's defaults as they are — 3 s offline
//! grace, away after 5 minutes idle, a 20 s heartbeat, `last_seen` written
//! behind every 30 s, and watchers are the users who have the subject as a
//! contact ([`presence_plugin_sdk::status::DEFAULT_CONFIG`]).

use presence_plugin_sdk::status::StatusPolicy;

pub struct Defaults;

impl StatusPolicy for Defaults {}

presence_plugin_sdk::export_status_policy!(Defaults);
