//! A typing policy for containment tests. `limits` and `on-typing-start` are
//! those of the default policy; `format-typers` misbehaves according to the
//! recipient's locale, so one conversation can hold a well-served recipient
//! and a hostile call side by side:
//!
//! The locales are private-use language codes (BCP 47 `qaa`–`qtz`), so the
//! host passes them on like any well-formed tag:
//!
//! | locale    | `format-typers` …                                      |
//! |-----------|--------------------------------------------------------|
//! | `qlo` (loop)    | never returns (spins until the host's CPU deadline)    |
//! | `qal` (alloc)   | allocates until the host's memory cap stops it         |
//! | `qpa` (panic)   | panics                                                 |
//! | `qfs` (file)    | reads a file (a WASI import, which the host traps)     |
//! | `qcl` (clock)   | reads the wall clock (a WASI import, likewise)         |
//! | `qga` (garbage) | answers a 5000-byte "summary" (over the host's 1 KiB)  |
//! | `qsp` (spin)     | spins as many rounds as the first name says, then answers as below |
//! | `qhm` (std)     | counts names in a `HashMap`, reads `$HOME`, `eprintln!`s, then answers as below (all work) |
//! | otherwise | answers [`MARKER`]-tagged English, e.g. `Ann is typing… [hostile-typing]` |
//!
//! Every other locale passes the host's conformance vectors, so the
//! component installs like any plugin.

use std::hint::black_box;

use presence_plugin_sdk::typing::{self, TypingPolicy};

/// Ends every summary this policy answers itself, so a test can tell it
/// from the host's built-in fallback.
pub const MARKER: &str = "[hostile-typing]";
/// Bytes of the `garbage` answer: well over the host's 1 KiB summary cap.
pub const GARBAGE_BYTES: usize = 5_000;

/// Limits and `on-typing-start` are the SDK's defaults (the default policy's).
pub struct Policy;

impl TypingPolicy for Policy {
    fn format_typers(names: &[String], locale: &str) -> String {
        match locale {
            "qlo" => spin(),
            "qal" => hoard(),
            "qpa" => panic!("hostile-typing: asked to panic for {} typers", names.len()),
            "qfs" => format!("{:?}", std::fs::read("/etc/hostname")),
            "qhm" => with_std(names),
            "qsp" => {
                let rounds = names.first().and_then(|n| n.parse().ok()).unwrap_or(0);
                for i in 0..rounds {
                    black_box(i);
                }
                summary(names)
            }
            "qcl" => format!("{:?}", std::time::SystemTime::now()),
            "qga" => "x".repeat(GARBAGE_BYTES),
            _ => summary(names),
        }
    }
}

presence_plugin_sdk::export_typing_policy!(Policy);

/// What the standard library offers a plugin: a `HashMap` (its seed), the
/// environment (empty) and stderr (the host's log).
fn with_std(names: &[String]) -> String {
    let mut seen = std::collections::HashMap::new();
    for n in names {
        *seen.entry(n.as_str()).or_insert(0u32) += 1;
    }
    assert!(std::env::var("HOME").is_err(), "the environment is empty");
    eprintln!("hostile-typing: {} distinct names", seen.len());
    summary(names)
}

/// Burns CPU forever; only the host's epoch deadline ends it.
fn spin() -> ! {
    loop {
        black_box(());
    }
}

/// Keeps every allocation alive until the host's memory cap ends the call.
fn hoard() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(black_box(vec![1u8; 64 * 1024]));
        black_box(&kept);
    }
}

/// The default English wording with [`MARKER`] appended; empty for nobody.
pub fn summary(names: &[String]) -> String {
    match typing::default_format_typers(names, "en") {
        text if text.is_empty() => text,
        text => format!("{text} {MARKER}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn well_behaved_locales_get_tagged_english() {
        assert_eq!(Policy::format_typers(&names(&[]), "en"), String::new());
        assert_eq!(
            Policy::format_typers(&names(&["Ann"]), "th"),
            "Ann is typing… [hostile-typing]"
        );
        assert_eq!(
            summary(&names(&["A", "B", "C", "D", "E"])),
            "A, B and 3 others are typing… [hostile-typing]"
        );
    }

    #[test]
    fn garbage_is_over_the_hosts_summary_cap() {
        assert_eq!(
            Policy::format_typers(&names(&["Ann"]), "qga").len(),
            GARBAGE_BYTES
        );
    }
}
