//! A PostgreSQL server of a test's own: `initdb` into a temporary directory
//! and `pg_ctl` on a free loopback port, so a test can stop and start the
//! database under a running presence server without touching the shared one.
//! As root, the server runs as the `postgres` user (PostgreSQL refuses root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private PostgreSQL; stopped at once on drop.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// A running server; `None` (after printing `skipped: …`) when
    /// `PRESENCE_TEST_POSTGRES_URL` is unset or PostgreSQL's server binaries
    /// are not installed.
    pub fn start(test: &str) -> Option<PrivatePostgres> {
        let skip = |why: &str| {
            let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
        };
        if std::env::var("PRESENCE_TEST_POSTGRES_URL").is_err() {
            skip("PRESENCE_TEST_POSTGRES_URL is not set");
            return None;
        }
        let Some(bin) = server_bin() else {
            skip("no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = tempfile::Builder::new()
            .prefix("presence-pg-")
            .tempdir()
            .expect("temporary directory");
        if as_postgres {
            chown_postgres(dir.path());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = PrivatePostgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast shutdown, as a restart does: clients are disconnected.
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-D", &self.data(), "-m", "fast", "-w"]);
    }

    /// Starts the stopped server again on the same port and data.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &self.data(),
                "-w",
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-D", &data, "-m", "immediate", "-w"])
            .output();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `pg_ctl` in it.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn chown_postgres(dir: &Path) {
    let ok = Command::new("chown")
        .args(["postgres:", &dir.display().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown postgres {}", dir.display());
}
