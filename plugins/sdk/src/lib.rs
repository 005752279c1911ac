//! Write a presence policy plugin as one trait impl and one macro call.
//!
//! The host (SPEC §7) has three policy slots, each a WebAssembly component of
//! one world of `presence:policy@0.1.0` (`wit/policy.wit` in this crate). This crate owns
//! the generated bindings for all three and hands plugin authors plain types,
//! a trait per slot whose default methods behave exactly like the default
//! plugin, and an export macro per slot. A plugin overrides only what it
//! changes.
//!
//! # Layout
//! - [`typing`]: leases, broadcast rate and typer summaries —
//!   [`TypingPolicy`](typing::TypingPolicy), [`export_typing_policy!`].
//! - [`status`]: offline grace, away, heartbeat, flush, watchers —
//!   [`StatusPolicy`](status::StatusPolicy), [`export_status_policy!`].
//! - [`privacy`]: who sees whose status and last seen —
//!   [`PrivacyPolicy`](privacy::PrivacyPolicy), [`export_privacy_policy!`].
//!
//! # A complete plugin
//! `Cargo.toml`:
//! ```toml
//! [package]
//! name = "my-typing-policy"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib is the component, rlib runs unit tests
//!
//! [dependencies]
//! presence-plugin-sdk = { path = "../sdk" }
//! ```
//! `src/lib.rs`:
//! ```
//! use presence_plugin_sdk::typing::{self, TypingLimits, TypingPolicy};
//!
//! pub struct Mine;
//!
//! impl TypingPolicy for Mine {
//!     fn limits() -> TypingLimits {
//!         TypingLimits { lease_ms: 3_000, rate_window_ms: 3_000 }
//!     }
//!
//!     fn format_typers(names: &[String], locale: &str) -> String {
//!         match names {
//!             [_, _, _, _, ..] => "Several people are typing…".into(),
//!             _ => typing::default_format_typers(names, locale),
//!         }
//!     }
//! }
//!
//! presence_plugin_sdk::export_typing_policy!(Mine);
//! # fn main() {
//! #     assert_eq!(Mine::format_typers(&["Ann".into()], "en"), "Ann is typing…");
//! # }
//! ```
//! Build the component with
//! `cargo build --release --target wasm32-wasip2 -p my-typing-policy`; the
//! file is `target/wasm32-wasip2/release/my_typing_policy.wasm`. Native
//! builds export nothing, so `cargo test` needs no wasm runtime.

pub mod privacy;
pub mod status;
pub mod typing;

#[cfg(test)]
mod version {
    /// SDK 0.1.x speaks `presence:policy@0.1.0`: authors pick the SDK by the
    /// contract their servers accept.
    #[test]
    fn the_sdk_version_is_the_wit_version_it_speaks() {
        let wit = include_str!("../wit/policy.wit");
        let package = wit
            .lines()
            .find_map(|l| l.trim().strip_prefix("package presence:policy@"))
            .expect("a package line")
            .trim_end_matches(';');
        let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        assert_eq!(minor(package), minor(env!("CARGO_PKG_VERSION")));
    }
}
