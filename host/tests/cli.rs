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
        .env("PRESENCE_DATA_DIR", dir.join("data"))
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied (sqlite)"));
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
    let secret = dir.path().join("data/jwt_secret");
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
    let out = presence(dir.path())
        .args(["plugin", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("valid typing plugin") && said.contains("conformance vectors passed"),
        "{said}"
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
        said.contains("refused") && said.contains("privacy-policy"),
        "{said}"
    );
}
