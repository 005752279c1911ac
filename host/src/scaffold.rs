//! `presence plugin new`: writes a standalone policy plugin crate for one
//! slot — a trait impl of the plugin SDK with one override, its export macro,
//! a native unit test, the toolchain file that declares `wasm32-wasip2`, and
//! a README with the build, check and install commands.
//!
//! The crate has its own `[workspace]` table so it builds wherever it lives,
//! and depends on the SDK by absolute path (the SDK is not published).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::policy::Slot;

/// The Rust target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Where the SDK sat when this binary was built; [`default_sdk`] checks it
/// is still there.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk");

/// The SDK's package name, looked for in `--sdk`'s `Cargo.toml`.
const SDK_PACKAGE: &str = "presence-plugin-sdk";

/// Longest crate name accepted.
const MAX_NAME_LEN: usize = 64;

/// Rust keywords (cargo refuses them as package names) and the names of the
/// built-in crates a package may not shadow.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "std",
    "test",
    "proc-macro",
    SDK_PACKAGE,
];

/// Type names the generated `lib.rs` already uses; a policy struct named
/// like one of them gets a `Plugin` suffix instead of shadowing it.
const TAKEN_IDENTS: &[&str] = &[
    "TypingPolicy",
    "StatusPolicy",
    "PrivacyPolicy",
    "StatusConfig",
    "LastSeenView",
    "Relationship",
    "Settings",
    "ViewRequest",
    "Visibility",
    "String",
    "Vec",
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "Box",
    "Default",
    "Clone",
    "Copy",
];

/// A crate written by [`create`].
#[derive(Debug, Clone)]
pub struct Created {
    pub slot: Slot,
    pub name: String,
    /// The crate directory, as given (`<dir>/<name>`).
    pub dir: PathBuf,
    /// The files written, relative to [`dir`](Self::dir).
    pub files: Vec<&'static str>,
}

impl Created {
    /// Where `cargo build --release --target wasm32-wasip2` puts the
    /// component, relative to the crate directory.
    pub fn wasm(&self) -> String {
        wasm_path(&self.name)
    }

    /// What to run next, one command a line.
    pub fn next_steps(&self) -> Vec<String> {
        let wasm = self.wasm();
        let slot = self.slot;
        vec![
            format!("cd {}", self.dir.display()),
            "cargo test".to_owned(),
            format!("cargo build --release --target {WASM_TARGET}"),
            format!("presence plugin check {wasm} --slot {slot}"),
            format!("presence plugin install {slot} {wasm}"),
        ]
    }

    /// The report `presence plugin new` prints.
    pub fn report(&self) -> String {
        let mut out = format!(
            "created {} plugin `{}` in {}:\n",
            self.slot,
            self.name,
            self.dir.display()
        );
        for f in &self.files {
            let _ = writeln!(out, "  {f}");
        }
        out.push_str("next:\n");
        for step in self.next_steps() {
            let _ = writeln!(out, "  {step}");
        }
        out
    }
}

/// The component's path relative to the crate directory.
pub fn wasm_path(name: &str) -> String {
    format!(
        "target/{WASM_TARGET}/release/{}.wasm",
        name.replace('-', "_")
    )
}

/// Checks a plugin crate name: lowercase ASCII letters, digits and `-`,
/// starting with a letter, not ending with `-`, and not a Rust keyword or
/// a built-in crate.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let rule = "use lowercase letters, digits and '-', starting with a letter";
    if name.is_empty() {
        bail!("the plugin name is empty; {rule}");
    }
    if name.len() > MAX_NAME_LEN {
        bail!("the plugin name `{name}` is longer than {MAX_NAME_LEN} characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        bail!("the plugin name `{name}` contains {c:?}; {rule}");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("the plugin name `{name}` must start with a letter; {rule}");
    }
    if name.ends_with('-') {
        bail!("the plugin name `{name}` must not end with '-'");
    }
    if RESERVED.contains(&name) {
        bail!("`{name}` cannot be a plugin name: it is a Rust keyword or an existing crate");
    }
    Ok(())
}

/// The SDK this binary was built next to, canonicalized; an error saying
/// to pass `--sdk` when it is not there any more.
pub fn default_sdk() -> anyhow::Result<PathBuf> {
    let built = Path::new(BUILT_SDK);
    match built.canonicalize() {
        Ok(path) if is_sdk(&path) => Ok(path),
        _ => bail!(
            "the plugin SDK is not where this binary was built ({}); \
             pass --sdk PATH to the plugins/sdk directory of a presence checkout",
            built.display()
        ),
    }
}

/// `path` canonicalized, if it is the SDK crate.
pub fn resolve_sdk(path: &Path) -> anyhow::Result<PathBuf> {
    let resolved = path
        .canonicalize()
        .with_context(|| format!("--sdk {}", path.display()))?;
    if !is_sdk(&resolved) {
        bail!(
            "--sdk {}: no {SDK_PACKAGE} crate there; pass the plugins/sdk directory of a presence checkout",
            path.display()
        );
    }
    Ok(resolved)
}

fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| {
        manifest
            .lines()
            .any(|l| l.replace(' ', "") == format!("name=\"{SDK_PACKAGE}\""))
    })
}

/// Writes the crate `<parent>/<name>` for `slot`, depending on the SDK at
/// `sdk` (an absolute path). Refuses an invalid name and an existing
/// non-empty directory; creates `parent` if needed.
pub fn create(slot: Slot, name: &str, parent: &Path, sdk: &Path) -> anyhow::Result<Created> {
    validate_name(name)?;
    let dir = parent.join(name);
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} already exists and is not empty", dir.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            if dir.exists() {
                bail!("{} already exists and is not a directory", dir.display());
            }
            return Err(e).with_context(|| format!("reading {}", dir.display()));
        }
    }
    let files = files(slot, name, sdk)?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.join("src").display()))?;
    for (file, text) in &files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Created {
        slot,
        name: name.to_owned(),
        dir,
        files: files.iter().map(|(f, _)| *f).collect(),
    })
}

/// The crate's files, path relative to the crate directory and contents.
pub fn files(slot: Slot, name: &str, sdk: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    validate_name(name)?;
    let sdk = sdk
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", sdk.display()))?;
    let lib = match slot {
        Slot::Typing => TYPING_LIB,
        Slot::Status => STATUS_LIB,
        Slot::Privacy => PRIVACY_LIB,
    };
    let fill = |template: &str| {
        template
            .replace("__NAME__", name)
            .replace("__STRUCT__", &struct_name(name))
            .replace("__SLOT__", slot.as_str())
            .replace("__WASM__", &wasm_path(name))
            .replace("__TARGET__", WASM_TARGET)
            .replace("__SDK__", &toml_string(sdk))
            .replace("__SDK_PATH__", sdk)
    };
    Ok(vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("rust-toolchain.toml", fill(TOOLCHAIN)),
        ("README.md", fill(README)),
        (".gitignore", "/target\n".to_owned()),
        ("src/lib.rs", fill(lib)),
    ])
}

/// `my-typing` → `MyTyping`; a name the template already uses gets a
/// `Plugin` suffix.
pub fn struct_name(name: &str) -> String {
    let camel: String = name
        .split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    if TAKEN_IDENTS.contains(&camel.as_str()) {
        camel + "Plugin"
    } else {
        camel
    }
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const CARGO_TOML: &str = r#"[package]
name = "__NAME__"
description = "A presence __SLOT__ policy plugin."
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib is the WebAssembly component; rlib lets `cargo test` run natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK is not published: it lives in plugins/sdk of a presence checkout.
presence-plugin-sdk = { path = __SDK__ }

# A workspace of its own, so this crate builds wherever it lives.
[workspace]
"#;

const TOOLCHAIN: &str = r#"# Plugins are WebAssembly components built for __TARGET__; where rustup
# does not add the target from this file, run `rustup target add __TARGET__`.
[toolchain]
channel = "stable"
targets = ["__TARGET__"]
"#;

const README: &str = r#"# __NAME__

A presence `__SLOT__` policy plugin: a WebAssembly component of the world
`presence:policy/__SLOT__-policy@0.1.0`, written with the presence plugin SDK
(`src/lib.rs` implements the slot's trait and exports it).

Needs Rust stable with the `__TARGET__` target (`rust-toolchain.toml`
declares it; where rustup does not add targets by itself, run
`rustup target add __TARGET__` once).

```sh
cargo test                                      # the unit tests, natively
cargo build --release --target __TARGET__    # the component
presence plugin check __WASM__ --slot __SLOT__
presence plugin install __SLOT__ __WASM__
```

The component is `__WASM__`.

`presence plugin check` validates it exactly as a server would (the slot's
world, the limits, the conformance vectors), without a server.
`presence plugin install` uploads it to a running server, which validates it
again and swaps it in; `presence plugin rollback __SLOT__` goes back.

The SDK is a path dependency on the presence checkout; if the checkout
moves, change this path in `Cargo.toml`:
`__SDK_PATH__`
"#;

const TYPING_LIB: &str = r#"//! __NAME__: a presence typing policy.
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
pub struct __STRUCT__;

impl TypingPolicy for __STRUCT__ {
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

presence_plugin_sdk::export_typing_policy!(__STRUCT__);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nobody_typing_is_an_empty_summary() {
        assert_eq!(__STRUCT__::format_typers(&[], "en"), "");
    }

    #[test]
    fn a_few_typers_are_named() {
        assert_eq!(
            __STRUCT__::format_typers(&names(&["John"]), "en"),
            "John is typing…"
        );
        assert_eq!(
            __STRUCT__::format_typers(&names(&["John", "Sarah", "Mike"]), "en"),
            "John, Sarah and 1 other are typing…"
        );
    }

    #[test]
    fn a_crowd_is_several_people() {
        let four = names(&["John", "Sarah", "Mike", "Ann"]);
        assert_eq!(
            __STRUCT__::format_typers(&four, "en-GB"),
            "Several people are typing…"
        );
        assert_eq!(
            __STRUCT__::format_typers(&four, "th"),
            "John, Sarah และอีก 2 คนกำลังพิมพ์..."
        );
    }

    #[test]
    fn limits_keep_the_defaults() {
        let limits = __STRUCT__::limits();
        assert_eq!((limits.lease_ms, limits.rate_window_ms), (5_000, 1_000));
    }
}
"#;

const STATUS_LIB: &str = r#"//! __NAME__: a presence status policy.
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
pub struct __STRUCT__;

impl StatusPolicy for __STRUCT__ {
    /// After the last connection closes, wait this long before offline, so
    /// a quick reconnect shows no offline/online flap (default 3 s).
    fn offline_grace_ms() -> u32 {
        OFFLINE_GRACE_MS
    }
}

presence_plugin_sdk::export_status_policy!(__STRUCT__);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::status::{DEFAULT_CONFIG, StatusConfig};

    #[test]
    fn the_offline_grace_is_ten_seconds() {
        assert_eq!(__STRUCT__::config().offline_grace_ms, 10_000);
    }

    #[test]
    fn every_other_setting_keeps_the_default() {
        assert_eq!(
            __STRUCT__::config(),
            StatusConfig {
                offline_grace_ms: OFFLINE_GRACE_MS,
                ..DEFAULT_CONFIG
            }
        );
    }
}
"#;

const PRIVACY_LIB: &str = r#"//! __NAME__: a presence privacy policy.
//!
//! For one viewer and one subject the host asks whether the subject's
//! online/away status is shown and how their last seen reads (hidden, exact
//! or an approximate label such as "recently"). Every method of
//! [`PrivacyPolicy`] defaults to the default plugin's behaviour (status
//! always shown; last seen per the subject's `everyone` / `contacts` /
//! `nobody` setting); this policy adds one rule to last seen.
//!
//! A policy is a pure function of its inputs: the host looks up the
//! relationship and both users' settings. It has no WASI (any import traps),
//! 10 ms of CPU per call and 16 MiB of memory; if it fails, the host hides
//! last seen (privacy fails closed).

use presence_plugin_sdk::privacy::{self, LastSeenView, PrivacyPolicy, Relationship, ViewRequest};

/// The policy. Override [`PrivacyPolicy::show_status`] in the `impl` below
/// as well to hide online/away from some viewers.
pub struct __STRUCT__;

impl PrivacyPolicy for __STRUCT__ {
    /// How the subject's last seen reads to the viewer.
    fn last_seen(request: &ViewRequest) -> LastSeenView {
        // Your rules go here. This one is reciprocal: who hides their own
        // last seen sees nobody else's (everyone always sees their own).
        let self_view = request.relationship.contains(Relationship::SELF_VIEW);
        if !self_view && request.viewer.hides_last_seen() {
            return LastSeenView::Hidden;
        }
        // Everything else: the SDK default, the subject's own setting.
        privacy::default_last_seen(request)
    }
}

presence_plugin_sdk::export_privacy_policy!(__STRUCT__);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::privacy::{Settings, Visibility};

    const OPEN: Settings = Settings {
        show_last_seen: true,
        last_seen_visibility: Visibility::Everyone,
    };
    const HIDDEN: Settings = Settings {
        show_last_seen: false,
        last_seen_visibility: Visibility::Nobody,
    };

    fn last_seen(relationship: Relationship, viewer: Settings, subject: Settings) -> LastSeenView {
        __STRUCT__::view(&ViewRequest {
            relationship,
            viewer,
            subject,
            last_seen_age_secs: Some(60),
        })
        .last_seen
    }

    #[test]
    fn an_open_subject_shows_last_seen_to_an_open_viewer() {
        let seen = last_seen(Relationship::empty(), OPEN, OPEN);
        assert_eq!(seen, LastSeenView::Exact);
    }

    #[test]
    fn who_hides_their_last_seen_sees_nobodys() {
        let contact = Relationship::IN_SUBJECT_CONTACTS;
        assert_eq!(last_seen(contact, HIDDEN, OPEN), LastSeenView::Hidden);
    }

    #[test]
    fn everyone_sees_their_own() {
        let me = last_seen(Relationship::SELF_VIEW, HIDDEN, HIDDEN);
        assert_eq!(me, LastSeenView::Exact);
    }

    #[test]
    fn the_subjects_contacts_setting_still_applies() {
        let contacts = Settings {
            last_seen_visibility: Visibility::Contacts,
            ..OPEN
        };
        let stranger = last_seen(Relationship::IN_VIEWER_CONTACTS, OPEN, contacts);
        assert_eq!(stranger, LastSeenView::Hidden);
        let contact = last_seen(Relationship::IN_SUBJECT_CONTACTS, OPEN, contacts);
        assert_eq!(contact, LastSeenView::Exact);
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_letters_digits_and_hyphens() {
        for ok in ["my-typing", "a", "privacy2", "x-1-y"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "My-typing",
            "my_typing",
            "my typing",
            "1st",
            "-x",
            "x-",
            "../x",
            "fn",
            "test",
            "presence-plugin-sdk",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn struct_names_are_camel_case_and_never_shadow_the_sdk() {
        assert_eq!(struct_name("my-typing"), "MyTyping");
        assert_eq!(struct_name("a2-b"), "A2B");
        assert_eq!(struct_name("typing-policy"), "TypingPolicyPlugin");
        assert_eq!(struct_name("string"), "StringPlugin");
    }

    #[test]
    fn the_sdk_path_is_a_toml_string() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }

    #[test]
    fn the_crate_is_standalone_and_exports_the_slot() {
        let files = files(Slot::Privacy, "my-privacy", Path::new("/sdk")).unwrap();
        let get = |name: &str| &files.iter().find(|(f, _)| *f == name).unwrap().1;
        let manifest = get("Cargo.toml");
        assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
        assert!(manifest.contains(r#"crate-type = ["cdylib", "rlib"]"#));
        assert!(manifest.contains(r#"presence-plugin-sdk = { path = "/sdk" }"#));
        let lib = get("src/lib.rs");
        assert!(lib.contains("impl PrivacyPolicy for MyPrivacy"), "{lib}");
        assert!(lib.contains("export_privacy_policy!(MyPrivacy)"));
        assert!(!lib.contains("__"), "a placeholder is left: {lib}");
        assert!(get("README.md").contains("target/wasm32-wasip2/release/my_privacy.wasm"));
        assert!(get("rust-toolchain.toml").contains(r#"targets = ["wasm32-wasip2"]"#));
    }

    #[test]
    fn an_existing_non_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("taken")).unwrap();
        std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
        let err = create(Slot::Typing, "taken", dir.path(), Path::new("/sdk")).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
            "mine"
        );

        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let made = create(Slot::Status, "empty", dir.path(), Path::new("/sdk")).unwrap();
        assert!(made.dir.join("src/lib.rs").is_file());
    }
}
