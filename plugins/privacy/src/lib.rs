//! The default privacy policy, WhatsApp-style: the SDK's defaults as they
//! are — status is visible to watchers; last seen follows the subject's own
//! setting (everyone / my contacts / nobody), and a user always sees their
//! own ([`presence_plugin_sdk::privacy::default_last_seen`]).

use presence_plugin_sdk::privacy::PrivacyPolicy;

pub struct Defaults;

impl PrivacyPolicy for Defaults {}

presence_plugin_sdk::export_privacy_policy!(Defaults);
