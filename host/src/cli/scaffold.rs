//! `presence plugin new`: writes a standalone policy plugin crate for one
//! slot — a trait impl of the plugin SDK with one override, its export macro,
//! a native unit test, the toolchain file that declares `wasm32-wasip2`, and
//! a README with the build, check and install commands.
//!
//! The crate has its own `[workspace]` table so it builds wherever it lives,
//! and depends on the SDK by absolute path. Written inside an existing
//! workspace (a `Cargo.toml` with a `[workspace]` table at or above where it
//! goes), it joins that workspace as a member instead, sharing its target
//! directory, so a second plugin builds in seconds.

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
    /// The workspace it joined as a member, if it did.
    pub workspace: Option<PathBuf>,
    /// From the crate directory to the target directory it builds into.
    pub target: String,
}

impl Created {
    /// Where `cargo build --release --target wasm32-wasip2` puts the
    /// component, relative to the crate directory.
    pub fn wasm(&self) -> String {
        format!(
            "{}/{}",
            self.target,
            wasm_path(&self.name).trim_start_matches("target/")
        )
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
        if let Some(w) = &self.workspace {
            let _ = writeln!(
                out,
                "a member of the workspace in {} (its target directory is shared)",
                w.display()
            );
        }
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
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.join("src").display()))?;
    let absolute = dir
        .canonicalize()
        .with_context(|| format!("reading {}", dir.display()))?;
    // The SDK's own workspace (a presence checkout) is not a plugin's.
    let workspace = enclosing_workspace(&absolute).filter(|w| !sdk.starts_with(w));
    let member = workspace
        .as_ref()
        .and_then(|w| absolute.strip_prefix(w).ok().map(Path::to_path_buf));
    let target = match &member {
        Some(m) => {
            let up = m.components().count();
            format!("{}target", "../".repeat(up))
        }
        None => "target".to_owned(),
    };
    let mut files = files(slot, name, sdk)?;
    if member.is_some() {
        let wasm = format!("{target}/{}", wasm_path(name).trim_start_matches("target/"));
        for (file, text) in files.iter_mut() {
            match *file {
                "Cargo.toml" => *text = as_member(text),
                "README.md" => *text = text.replace(&wasm_path(name), &wasm),
                _ => {}
            }
        }
        files.retain(|(f, _)| *f != ".gitignore");
    }
    for (file, text) in &files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(w), Some(m)) = (&workspace, &member) {
        add_member(w, m)?;
    }
    Ok(Created {
        slot,
        name: name.to_owned(),
        dir,
        files: files.iter().map(|(f, _)| *f).collect(),
        workspace,
        target,
    })
}

/// The nearest directory at or above `dir` whose `Cargo.toml` has a
/// `[workspace]` table.
fn enclosing_workspace(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().skip(1).find_map(|d| {
        let manifest = std::fs::read_to_string(d.join("Cargo.toml")).ok()?;
        manifest
            .lines()
            .any(|l| l.trim() == "[workspace]")
            .then(|| d.to_path_buf())
    })
}

/// A standalone crate's manifest without its own `[workspace]` table.
fn as_member(manifest: &str) -> String {
    match manifest.find("\n# A workspace of its own") {
        Some(at) => format!("{}\n", manifest[..at].trim_end()),
        None => manifest.to_owned(),
    }
}

/// Lists `member` (relative to `workspace`) in the workspace's `members`.
fn add_member(workspace: &Path, member: &Path) -> anyhow::Result<()> {
    let path = workspace.join("Cargo.toml");
    let manifest =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let entry = toml_string(
        member
            .to_str()
            .with_context(|| format!("{} is not UTF-8", member.display()))?,
    );
    let table = manifest
        .find("[workspace]")
        .context("no [workspace] table")?;
    let after = table + "[workspace]".len();
    // The `members` key of the workspace table, if it has one.
    let members = manifest[after..]
        .find("\nmembers")
        .map(|i| after + i)
        .filter(|&i| !manifest[after..i].contains("\n["));
    let updated = match members.and_then(|i| manifest[i..].find('[').map(|j| i + j + 1)) {
        Some(open) => {
            let rest = manifest[open..].trim_start();
            let sep = if rest.starts_with(']') { "" } else { ", " };
            format!("{}{entry}{sep}{}", &manifest[..open], &manifest[open..])
        }
        None => format!(
            "{}\nmembers = [{entry}]{}",
            &manifest[..after],
            &manifest[after..]
        ),
    };
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))
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
        ("src/lib.rs", lib.fill(name)),
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

/// The crate's manifest, toolchain file and README, with `__NAME__`-style
/// placeholders.
const CARGO_TOML: &str = include_str!("templates/Cargo.toml.in");
const TOOLCHAIN: &str = include_str!("templates/rust-toolchain.toml.in");
const README: &str = include_str!("templates/README.md.in");

/// A slot's `src/lib.rs`: a real crate of this workspace (`plugins/templates/`),
/// compiled and tested as it is; its name and struct are replaced.
struct LibTemplate {
    text: &'static str,
    name: &'static str,
    struct_name: &'static str,
}

const TYPING_LIB: LibTemplate = LibTemplate {
    text: include_str!("../../../plugins/templates/typing/src/lib.rs"),
    name: "my-typing",
    struct_name: "MyTyping",
};
const STATUS_LIB: LibTemplate = LibTemplate {
    text: include_str!("../../../plugins/templates/status/src/lib.rs"),
    name: "my-status",
    struct_name: "MyStatus",
};
const PRIVACY_LIB: LibTemplate = LibTemplate {
    text: include_str!("../../../plugins/templates/privacy/src/lib.rs"),
    name: "my-privacy",
    struct_name: "MyPrivacy",
};

impl LibTemplate {
    fn fill(&self, name: &str) -> String {
        self.text
            .replace(self.name, name)
            .replace(self.struct_name, &struct_name(name))
    }
}

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
        let files = files(Slot::Privacy, "fast-privacy", Path::new("/sdk")).unwrap();
        let get = |name: &str| &files.iter().find(|(f, _)| *f == name).unwrap().1;
        let manifest = get("Cargo.toml");
        assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
        assert!(manifest.contains(r#"crate-type = ["cdylib", "rlib"]"#));
        assert!(manifest.contains(r#"presence-plugin-sdk = { path = "/sdk" }"#));
        let lib = get("src/lib.rs");
        assert!(lib.contains("impl PrivacyPolicy for FastPrivacy"), "{lib}");
        assert!(lib.contains("export_privacy_policy!(FastPrivacy)"));
        assert!(lib.starts_with("//! fast-privacy: a presence privacy policy."));
        assert!(
            !lib.contains("MyPrivacy") && !lib.contains("my-privacy"),
            "{lib}"
        );
        assert!(!lib.contains("__"), "a placeholder is left: {lib}");
        assert!(get("README.md").contains("target/wasm32-wasip2/release/fast_privacy.wasm"));
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
