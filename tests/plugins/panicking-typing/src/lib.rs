//! A typing policy whose `format-typers` always panics with `boom`: it
//! fails the conformance vectors, so `presence plugin check` and an install
//! refuse it, and they must say why.

use presence_plugin_sdk::typing::TypingPolicy;

pub struct Policy;

impl TypingPolicy for Policy {
    fn format_typers(_names: &[String], _locale: &str) -> String {
        panic!("boom")
    }
}

presence_plugin_sdk::export_typing_policy!(Policy);
