//! An example typing policy for large groups: broadcasts at most every 3 s
//! with a 3 s lease, names at most three typers, and in crowds (over 200
//! members) stops announcing new typers once five are already typing — a
//! sixth "is typing" changes nothing the summary does not already say.

use presence_plugin_sdk::typing::{
    self, Decision, TypingLimits, TypingPolicy, TypingStart, language_is,
};

/// Both the lease and the broadcast window, in milliseconds.
pub const WINDOW_MS: u32 = 3_000;
/// Conversations with more members than this are crowds.
pub const CROWD_MEMBERS: u32 = 200;
/// In a crowd, starts are not announced once this many others are typing.
pub const CROWD_TYPERS: u32 = 5;
/// Summaries name typers up to this many, then say "several".
pub const MAX_NAMED: usize = 3;

/// The policy.
pub struct LargeGroupsTyping;

impl TypingPolicy for LargeGroupsTyping {
    fn limits() -> TypingLimits {
        TypingLimits {
            lease_ms: WINDOW_MS,
            rate_window_ms: WINDOW_MS,
        }
    }

    fn on_typing_start(event: TypingStart) -> Decision {
        let crowded = event.member_count > CROWD_MEMBERS && event.other_typers >= CROWD_TYPERS;
        Decision {
            broadcast: !crowded,
            lease_ms: WINDOW_MS,
        }
    }

    fn format_typers(names: &[String], locale: &str) -> String {
        match (names.len() > MAX_NAMED, language_is(locale, "th")) {
            (false, _) => typing::default_format_typers(names, locale),
            (true, false) => "Several people are typing…".into(),
            (true, true) => "หลายคนกำลังพิมพ์...".into(),
        }
    }
}

presence_plugin_sdk::export_typing_policy!(LargeGroupsTyping);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn start(member_count: u32, other_typers: u32) -> TypingStart {
        TypingStart {
            member_count,
            other_typers,
            renewal: false,
        }
    }

    #[test]
    fn lease_and_rate_window_are_three_seconds() {
        let limits = LargeGroupsTyping::limits();
        assert_eq!((limits.lease_ms, limits.rate_window_ms), (3_000, 3_000));
    }

    #[test]
    fn up_to_three_typers_are_named_as_usual() {
        let three = names(&["John", "Sarah", "Mike"]);
        assert_eq!(
            LargeGroupsTyping::format_typers(&three, "en"),
            "John, Sarah and 1 other are typing…"
        );
        assert_eq!(
            LargeGroupsTyping::format_typers(&names(&["John"]), "th"),
            "John กำลังพิมพ์..."
        );
        assert_eq!(LargeGroupsTyping::format_typers(&[], "en"), "");
    }

    #[test]
    fn more_than_three_typers_are_several_people() {
        let four = names(&["John", "Sarah", "Mike", "Ann"]);
        assert_eq!(
            LargeGroupsTyping::format_typers(&four, "en-US"),
            "Several people are typing…"
        );
        assert_eq!(
            LargeGroupsTyping::format_typers(&four, "th-TH"),
            "หลายคนกำลังพิมพ์..."
        );
    }

    #[test]
    fn a_crowd_with_five_typers_hears_no_new_start() {
        assert!(!LargeGroupsTyping::on_typing_start(start(201, 5)).broadcast);
        assert!(!LargeGroupsTyping::on_typing_start(start(5_000, 40)).broadcast);
    }

    #[test]
    fn smaller_groups_and_quieter_crowds_hear_every_start() {
        assert!(LargeGroupsTyping::on_typing_start(start(200, 50)).broadcast);
        assert!(LargeGroupsTyping::on_typing_start(start(201, 4)).broadcast);
        assert_eq!(
            LargeGroupsTyping::on_typing_start(start(201, 5)).lease_ms,
            3_000
        );
    }
}
