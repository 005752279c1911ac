//! The default typing policy: the SDK's defaults as they are — a 5 s lease,
//! one broadcast per second per user and conversation, and summaries in
//! English and Thai ([`presence_plugin_sdk::typing`] has them and their tests).

use presence_plugin_sdk::typing::TypingPolicy;

pub struct Defaults;

impl TypingPolicy for Defaults {}

presence_plugin_sdk::export_typing_policy!(Defaults);
