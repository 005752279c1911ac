//! The `presence` binary itself: its tools, and a clean stop on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use presence::store::Store;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_presence");

fn presence(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        // No data dir: the default (relative to the working directory), as
        // on a fresh machine.
        .env(
            "PRESENCE_DATABASE_URL",
            format!("sqlite://{}", dir.join("p.db").display()),
        )
        .env("RUST_LOG", "warn");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn migrate_applies_the_schema_to_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = presence(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("migrations applied (sqlite; presence owns `users`)"),
        "{said}"
    );
    assert!(dir.path().join("p.db").exists());
}

#[tokio::test]
async fn sigterm_closes_connections_flushes_last_seen_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let user = Uuid::new_v4();
    let token = presence(dir.path())
        .args(["token", "--user", &user.to_string(), "--name", "John"])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let secret = dir.path().join("presence-data/jwt_secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let port = free_port();
    let mut server = presence(dir.path())
        .arg("serve")
        .env("PRESENCE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws?token={token}");
    let mut ws = None;
    for _ in 0..200 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((s, _)) => {
                ws = Some(s);
                break;
            }
            // The process is still starting (compiling nothing: plugins are embedded).
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut ws = ws.expect("server accepts connections");
    let ready = ws.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("\"ready\""));

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(close, Some(1001));
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .unwrap();
    let row = store
        .user(user)
        .await
        .unwrap()
        .expect("the user was recorded");
    assert!(row.last_seen.is_some(), "last_seen flushed before exit");
    assert_eq!(row.status, presence::model::Status::Offline);
    assert_eq!(
        row.display_name.as_deref(),
        Some("John"),
        "name taken from the token"
    );
}

#[test]
fn plugin_check_accepts_a_good_component_and_says_why_it_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("typing.wasm");
    std::fs::write(&good, presence::policy::Slot::Typing.builtin_component()).unwrap();
    let said = check_passes(dir.path(), &good, None);
    assert!(
        said.contains("valid typing plugin") && said.contains("conformance vectors passed"),
        "{said}"
    );
    // What it decided, so an author sees the effect without a server.
    for decision in [
        "limits: lease 5 s, rate window 1 s",
        "first start, 2 members: announced, lease 5 s",
        "en: \"Ann is typing…\" | \"Ann and Bob are typing…\"",
        "th: \"Ann กำลังพิมพ์...\"",
    ] {
        assert!(said.contains(decision), "{decision} in {said}");
    }
    assert!(
        !said.contains("\nde: "),
        "a locale worded as English is not repeated: {said}"
    );

    let wrong = dir.path().join("privacy.wasm");
    std::fs::write(&wrong, presence::policy::Slot::Status.builtin_component()).unwrap();
    let out = presence(dir.path())
        .args(["plugin", "check"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refused") && said.contains("into the status slot"),
        "{said}"
    );
}

/// The workspace root; scaffolded crates build into its `target/scaffold-test`.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn plugin_new_scaffolds_a_crate_that_builds_and_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let new = |name: &str| {
        presence(dir.path())
            .args(["plugin", "new", "typing", name, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = new("my-typing");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for step in [
        "cargo build --release --target wasm32-wasip2",
        "presence plugin check target/wasm32-wasip2/release/my_typing.wasm --slot typing",
        "presence plugin install typing target/wasm32-wasip2/release/my_typing.wasm",
    ] {
        assert!(said.contains(step), "{step:?} missing from:\n{said}");
    }
    let krate = dir.path().join("my-typing");
    for file in [
        "Cargo.toml",
        "rust-toolchain.toml",
        "README.md",
        "src/lib.rs",
    ] {
        assert!(krate.join(file).is_file(), "{file} not written");
    }

    let again = new("my-typing");
    assert!(!again.status.success(), "a non-empty directory is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let bad = new("My_Typing");
    assert!(!bad.status.success(), "an invalid name is refused");
    assert!(!dir.path().join("My_Typing").exists());

    // The workspace's lock file pins the same dependency versions, so the
    // build needs no registry look-up and reuses the shared target directory.
    let workspace = Path::new(WORKSPACE);
    std::fs::copy(workspace.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target_dir = workspace.join("target/scaffold-test");
    let wasm = target_dir.join("wasm32-wasip2/release/my_typing.wasm");
    let _ = std::fs::remove_file(&wasm);
    builds(&krate, &target_dir);
    assert!(wasm.is_file(), "{} not built", wasm.display());
    let said = check_passes(dir.path(), &wasm, Some("typing"));
    assert!(said.contains("valid typing plugin"), "{said}");
}

/// `cargo build --release --target wasm32-wasip2` in `dir` succeeds.
fn builds(dir: &Path, target_dir: &Path) {
    let out = presence_plugin_build::nested_cargo_build(dir, target_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not build:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `presence plugin check` (run in `dir`) accepts `wasm`; returns what it said.
fn check_passes(dir: &Path, wasm: &Path, slot: Option<&str>) -> String {
    let mut cmd = presence(dir);
    cmd.args(["plugin", "check"]).arg(wasm);
    if let Some(slot) = slot {
        cmd.args(["--slot", slot]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `presence plugin new` inside a workspace adds a member (one target
/// directory for every plugin), and the artefact paths it prints are where
/// the build puts the components.
#[test]
fn plugin_new_inside_a_workspace_adds_members_that_build_where_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("Cargo.toml"), "[workspace]\nresolver = \"3\"\n").unwrap();
    // The same dependency versions as this workspace: no registry look-up.
    std::fs::copy(
        Path::new(WORKSPACE).join("Cargo.lock"),
        ws.join("Cargo.lock"),
    )
    .unwrap();
    let mut made = Vec::new();
    for (slot, name, under) in [("privacy", "first", "."), ("typing", "second", "more")] {
        let out = presence(ws)
            .args(["plugin", "new", slot, name, "--dir", under])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("a member of the workspace"), "{said}");
        let check = said
            .lines()
            .find_map(|l| l.trim().strip_prefix("presence plugin check "))
            .unwrap_or_else(|| panic!("no check step in {said}"));
        let wasm = check.split(' ').next().unwrap().to_owned();
        made.push((slot, ws.join(under).join(name), wasm));
    }
    let manifest = std::fs::read_to_string(ws.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("\"first\"") && manifest.contains("\"more/second\""),
        "{manifest}"
    );
    assert!(
        !std::fs::read_to_string(made[0].1.join("Cargo.toml"))
            .unwrap()
            .contains("[workspace]"),
        "a member has no workspace of its own"
    );

    builds(ws, &ws.join("target"));
    for (slot, krate, wasm) in made {
        let path = krate.join(&wasm);
        assert!(path.is_file(), "{} not built", path.display());
        // As printed: relative to the crate directory.
        check_passes(&krate, Path::new(&wasm), Some(slot));
    }
}
