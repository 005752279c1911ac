//! Builds policy plugin crates of this workspace for `wasm32-wasip2` from a
//! build script, and hands each component's path to the crate being built as
//! a `cargo:rustc-env` variable (the host embeds the defaults; the end-to-end
//! tests load test policies).
//!
//! The guests are built by a nested `cargo build` into their own target
//! directory (`<target>/wasm-plugins`): cargo locks a target directory for the
//! whole build, so sharing the outer one would deadlock. This follows
//! wasmtime's `crates/test-programs/artifacts/build.rs`.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the guests are built for; the host runs them without WASI.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Variables of the outer build that must not leak into the nested one: the
/// host's flags and wrappers, its target and target directory, and the
/// jobserver of the outer cargo (the nested cargo brings its own).
const SCRUBBED_ENV: [&str; 9] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// A plugin crate to build, and the variable its component's path goes into.
pub struct Component {
    /// The cargo package name, e.g. `presence-typing-policy`.
    pub package: &'static str,
    /// Set with `cargo:rustc-env` to the absolute path of the `.wasm`.
    pub env: &'static str,
}

/// Builds `components` (release, `wasm32-wasip2`) and exports their paths.
/// `watch` lists the directories whose changes must rerun the build script.
pub fn build(workspace: &Path, components: &[Component], watch_dirs: &[PathBuf]) {
    for dir in watch_dirs {
        watch(dir);
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = target_dir(workspace).join("wasm-plugins");
    build_plugins(workspace, &target_dir, components);

    let release = target_dir.join(WASM_TARGET).join("release");
    for c in components {
        let wasm = release.join(format!("{}.wasm", c.package.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "building {} succeeded but {} is missing",
            c.package,
            wasm.display()
        );
        println!("cargo:rustc-env={}={}", c.env, wasm.display());
    }
}

/// The workspace target directory: `$CARGO_TARGET_DIR` if set, else the
/// ancestor of `OUT_DIR` that cargo marked with `CACHEDIR.TAG` (or is named
/// `target`), else `<workspace>/target`.
fn target_dir(workspace: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace.join(dir)
        };
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    out_dir
        .ancestors()
        .find(|dir| {
            dir.join("CACHEDIR.TAG").is_file() || dir.file_name() == Some("target".as_ref())
        })
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
}

/// `cargo build --release --target wasm32-wasip2` in `dir` into `target_dir`,
/// run from inside another cargo (a build script or a test) without
/// inheriting its flags, target or jobserver. Add `-p` arguments as needed.
pub fn nested_cargo_build(dir: &Path, target_dir: &Path) -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET]);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.arg("--target-dir").arg(target_dir);
    // The workspace keeps line tables in release for host backtraces; in a
    // guest they would only bloat the binary that embeds it (2.4 MB vs 70 KB)
    // since the engine does not load guest DWARF.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    cmd
}

fn build_plugins(workspace: &Path, target_dir: &Path, components: &[Component]) {
    require_wasm_target();

    let mut cmd = nested_cargo_build(workspace, target_dir);
    for c in components {
        cmd.args(["-p", c.package]);
    }
    eprintln!("running: {cmd:?}");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        status.success(),
        "building the policy plugins failed ({status}); see the output above"
    );
}

/// Fails early with the fix instead of a page of "can't find crate for `core`".
fn require_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let Ok(output) = Command::new(&rustc).args(["--print", "sysroot"]).output() else {
        return; // Let the nested cargo report what is wrong.
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let lib = sysroot.join("lib/rustlib").join(WASM_TARGET);
    if output.status.success() && !lib.is_dir() {
        panic!(
            "the Rust target {WASM_TARGET} is not installed (no {}); \
             run `rustup target add {WASM_TARGET}`",
            lib.display()
        );
    }
}

/// Reruns this script when any file under `dir` changes, or one is added.
fn watch(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
