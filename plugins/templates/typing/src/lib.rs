//! my-typing: a presence typing policy.
//!
//! The host asks it for the typing lease and broadcast window, whether to
//! announce a `typing_start`, and how the people typing are worded for one
//! recipient. Every method of [`TypingPolicy`] defaults to the default
//! plugin's behaviour (5 s lease, one broadcast per second, English and Thai
//! wording); this policy overrides only the wording.
//!
//! A policy is a pure function of its inputs: the host keeps every timer and
//! counter. It has no WASI (any import traps), 10 ms of CPU per call and
//! 16 MiB of memory.

use presence_plugin_sdk::typing::{self, TypingPolicy};

/// Typers beyond this many are summed up as "several people".
pub const MAX_NAMED: usize = 3;

/// The policy. Override [`TypingPolicy::limits`] (lease and broadcast
/// window) or [`TypingPolicy::on_typing_start`] (announce a start or not)
/// in the `impl` below as well if you need to.
pub struct MyTyping;

impl TypingPolicy for MyTyping {
    /// The summary one recipient sees. `names` are the display names of
    /// everyone typing, in the order they started, the recipient excluded
    /// (empty means nobody: answer ""); `locale` is a BCP 47 tag such as
    /// "en" or "th-TH".
    fn format_typers(names: &[String], locale: &str) -> String {
        // Your wording goes here. This one sums up crowds in English and
        // keeps the SDK's wording (English, Thai) for everything else.
        if names.len() > MAX_NAMED && !typing::language_is(locale, "th") {
            return "Several people are typing…".to_owned();
        }
        typing::default_format_typers(names, locale)
    }
}

presence_plugin_sdk::export_typing_policy!(MyTyping);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nobody_typing_is_an_empty_summary() {
        assert_eq!(MyTyping::format_typers(&[], "en"), "");
    }

    #[test]
    fn a_few_typers_are_named() {
        assert_eq!(
            MyTyping::format_typers(&names(&["John"]), "en"),
            "John is typing…"
        );
        assert_eq!(
            MyTyping::format_typers(&names(&["John", "Sarah", "Mike"]), "en"),
            "John, Sarah and 1 other are typing…"
        );
    }

    #[test]
    fn a_crowd_is_several_people() {
        let four = names(&["John", "Sarah", "Mike", "Ann"]);
        assert_eq!(
            MyTyping::format_typers(&four, "en-GB"),
            "Several people are typing…"
        );
        assert_eq!(
            MyTyping::format_typers(&four, "th"),
            "John, Sarah และอีก 2 คนกำลังพิมพ์..."
        );
    }

    #[test]
    fn limits_keep_the_defaults() {
        let limits = MyTyping::limits();
        assert_eq!((limits.lease_ms, limits.rate_window_ms), (5_000, 1_000));
    }
}
