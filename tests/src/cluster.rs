//! Several real `presence` processes sharing one PostgreSQL schema and one
//! Redis (cluster mode), for the tests in `tests/cluster/`.
//!
//! A [`Cluster`] runs `presence serve` children on free loopback ports with
//! node ids `node-a`, `node-b`, …, one data directory each, and a Redis key
//! prefix of its own so that tests running in parallel on the shared Redis
//! never see each other. Each [`Node`] is also an [`Api`], so the harness
//! helpers (`user`, `conversation`, `contacts`, `connect`, `get_as`, …) work on
//! it. A node can be killed with SIGKILL, stopped with SIGTERM and restarted
//! with the same id, port, data directory and environment. [`PrivateRedis`]
//! is a `redis-server` of a test's own, to take Redis away and bring it back.
//!
//! Children are killed when the cluster is dropped, also on a panic; a failing
//! test prints the tail of every node's log (stdout and stderr of the process,
//! `node.log` in its directory) and keeps the node directories. The schema and
//! the test's Redis keys are removed on drop too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Index;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use uuid::Uuid;

use crate::{ADMIN_KEY, Api, JWT_SECRET, PgSchema};

/// Node lease TTL the tests run with (the server's default is 5 s).
pub const LEASE_MS: u64 = 2_000;
/// Node heartbeat the tests run with (the server's default is 1 s).
pub const HEARTBEAT_MS: u64 = 300;
/// Longest a node may take from spawn to `/healthz` 200.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a SIGTERM'd node may take to flush and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often [`eventually`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// `RUST_LOG` of the nodes unless `PRESENCE_TEST_CLUSTER_LOG` says otherwise.
const NODE_LOG_FILTER: &str = "presence=debug,warn";
/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// What differs between clusters.
#[derive(Debug, Clone)]
pub struct Options {
    /// Redis to use instead of `PRESENCE_TEST_REDIS_URL` (a [`PrivateRedis`]).
    pub redis_url: Option<String>,
    /// Put the quick status policy (`tests/plugins/quick-status`: 0.5 s
    /// grace, away after 1.5 s, 1 s heartbeat, co-members as watchers) in
    /// every node's plugin directory as `status.wasm`. A plugin installed
    /// in the cluster (the database) wins over the directory.
    pub quick_status: bool,
    /// Give every node an (empty) plugin directory, `Node::plugin_dir`.
    pub plugin_dir: bool,
    /// `PRESENCE_CLUSTER_LEASE_MS`.
    pub lease_ms: u64,
    /// `PRESENCE_CLUSTER_HEARTBEAT_MS`.
    pub heartbeat_ms: u64,
    /// More environment for every node.
    pub env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            redis_url: None,
            quick_status: false,
            plugin_dir: false,
            lease_ms: LEASE_MS,
            heartbeat_ms: HEARTBEAT_MS,
            env: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// `PRESENCE_REDIS_PREFIX` of every node: `t<uuid>`, unique to the test.
    pub prefix: String,
    pub redis_url: String,
    /// The node lease TTL the nodes were given.
    pub lease: Duration,
    /// The node heartbeat the nodes were given.
    pub heartbeat: Duration,
    /// Shared by every node; dropped with the cluster.
    schema: Option<PgSchema>,
}

impl Cluster {
    /// `n` nodes on a fresh schema and a fresh Redis prefix, each answering
    /// `/healthz` 200; `None` (after printing `skipped: …`) when
    /// `PRESENCE_TEST_POSTGRES_URL` or `PRESENCE_TEST_REDIS_URL` is unset.
    pub async fn start(test: &str, n: usize, options: Options) -> Option<Cluster> {
        if skip(test) {
            return None;
        }
        let redis_url = match options.redis_url.clone() {
            Some(url) => url,
            None => std::env::var("PRESENCE_TEST_REDIS_URL").expect("checked above"),
        };
        let binary = presence_binary().to_path_buf();
        let schema = PgSchema::create(test).await?;
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let mut cluster = Cluster {
            nodes: Vec::with_capacity(n),
            prefix: prefix.clone(),
            redis_url: redis_url.clone(),
            lease: Duration::from_millis(options.lease_ms),
            heartbeat: Duration::from_millis(options.heartbeat_ms),
            schema: None,
        };
        let shared = SharedEnv {
            database_url: schema.url.clone(),
            redis_url,
            prefix,
            options,
        };
        cluster.schema = Some(schema);
        for i in 0..n {
            let id = format!("node-{}", char::from(b'a' + i as u8));
            cluster.nodes.push(Node::new(&binary, id, &shared));
        }
        // The first node migrates the schema alone; the others join it.
        if let Some((first, rest)) = cluster.nodes.split_first() {
            first.spawn();
            first.wait_healthy().await;
            for node in rest {
                node.spawn();
            }
            for node in rest {
                node.wait_healthy().await;
            }
        }
        Some(cluster)
    }

    /// The shared schema's URL, for a test that looks into the database.
    pub fn database_url(&self) -> &str {
        &self
            .schema
            .as_ref()
            .expect("the schema lives as long as the cluster")
            .url
    }

    /// Every node, for loops over "the same on A, B and C".
    pub fn all(&self) -> Vec<&Node> {
        self.nodes.iter().collect()
    }

    /// Each running node's `metric(series)`, summed.
    pub async fn metric_sum(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for node in &self.nodes {
            if node.is_running() {
                sum += node.metric(series).await;
            }
        }
        sum
    }
}

impl Index<usize> for Cluster {
    type Output = Node;

    fn index(&self, i: usize) -> &Node {
        &self.nodes[i]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Dead nodes first: a live one would write keys back, and its
        // connections would hold the schema.
        for node in &self.nodes {
            node.kill_quietly();
        }
        if std::thread::panicking() {
            for node in &mut self.nodes {
                // Kept for a look at the whole log and the data directory.
                node.dir.disable_cleanup(true);
                node.print_log_tail();
            }
        }
        let schema = self.schema.take();
        let (url, prefix) = (self.redis_url.clone(), self.prefix.clone());
        // A thread of its own: drop may run inside the test's runtime.
        let cleanup = std::thread::spawn(move || {
            if let Err(e) = delete_keys(&url, &prefix) {
                eprintln!("cluster cleanup: Redis keys {prefix}* not deleted: {e}");
            }
            if let Some(schema) = schema {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(schema.drop());
            }
        });
        let _ = cleanup.join();
    }
}

/// `DEL` of every key under `prefix` (`SCAN MATCH prefix*`).
fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    use redis::Commands;
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let keys: Vec<String> = conn
        .scan_match::<_, String>(format!("{prefix}*"))?
        .collect::<redis::RedisResult<_>>()?;
    for chunk in keys.chunks(500) {
        redis::cmd("DEL").arg(chunk).query::<()>(&mut conn)?;
    }
    Ok(())
}

/// Whether `test` must be skipped because `PRESENCE_TEST_POSTGRES_URL` or
/// `PRESENCE_TEST_REDIS_URL` is unset; prints `skipped: …` when it must.
pub fn skip(test: &str) -> bool {
    let missing: Vec<&str> = ["PRESENCE_TEST_POSTGRES_URL", "PRESENCE_TEST_REDIS_URL"]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_none())
        .collect();
    if missing.is_empty() {
        return false;
    }
    // Straight to the stderr handle: libtest captures eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {} is not set",
        missing.join("/")
    );
    true
}

/// What every node of one cluster is started with.
struct SharedEnv {
    database_url: String,
    redis_url: String,
    prefix: String,
    options: Options,
}

/// One `presence serve` process; also an [`Api`].
pub struct Node {
    /// `PRESENCE_NODE_ID`: `node-a`, `node-b`, …; kept across restarts.
    pub id: String,
    /// Kept across restarts.
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// Data directory (`data/`), plugin directory (`plugins/`) and `node.log`.
    pub dir: tempfile::TempDir,
    binary: PathBuf,
    /// The whole environment of the process (nothing is inherited).
    env: Vec<(&'static str, String)>,
    /// `None` while the node is down.
    child: Mutex<Option<Child>>,
}

impl Api for Node {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Node {
    fn new(binary: &Path, id: String, shared: &SharedEnv) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("presence-{id}-"))
            .tempdir()
            .expect("temp dir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let data = dir.path().join("data");
        let mut env = vec![
            ("PRESENCE_LISTEN", addr.to_string()),
            ("PRESENCE_DATABASE_URL", shared.database_url.clone()),
            ("PRESENCE_REDIS_URL", shared.redis_url.clone()),
            ("PRESENCE_REDIS_PREFIX", shared.prefix.clone()),
            ("PRESENCE_NODE_ID", id.clone()),
            (
                "PRESENCE_CLUSTER_LEASE_MS",
                shared.options.lease_ms.to_string(),
            ),
            (
                "PRESENCE_CLUSTER_HEARTBEAT_MS",
                shared.options.heartbeat_ms.to_string(),
            ),
            ("PRESENCE_JWT_SECRET", JWT_SECRET.to_owned()),
            ("PRESENCE_ADMIN_KEY", ADMIN_KEY.to_owned()),
            ("PRESENCE_DATA_DIR", data.display().to_string()),
            (
                "RUST_LOG",
                std::env::var("PRESENCE_TEST_CLUSTER_LOG")
                    .unwrap_or_else(|_| NODE_LOG_FILTER.to_owned()),
            ),
            ("RUST_BACKTRACE", "1".to_owned()),
        ];
        env.extend(shared.options.env.iter().cloned());
        if shared.options.quick_status || shared.options.plugin_dir {
            let plugins = dir.path().join("plugins");
            std::fs::create_dir_all(&plugins).expect("plugin dir");
            if shared.options.quick_status {
                std::fs::copy(
                    env!("PRESENCE_TEST_QUICK_STATUS_WASM"),
                    plugins.join("status.wasm"),
                )
                .expect("quick status policy copied");
            }
            env.push(("PRESENCE_PLUGIN_DIR", plugins.display().to_string()));
        }
        Node {
            id,
            addr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            dir,
            binary: binary.to_path_buf(),
            env,
            child: Mutex::new(None),
        }
    }

    /// Where the process's stdout and stderr go, across restarts.
    /// The node's plugin directory (with [`Options::plugin_dir`]).
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    fn spawn(&self) {
        let mut slot = self.child.lock().unwrap();
        assert!(slot.is_none(), "{} is already running", self.id);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("node log");
        let _ = writeln!(log, "=== test harness: starting {} ===", self.id);
        let child = Command::new(&self.binary)
            .arg("serve")
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        *slot = Some(child);
    }

    /// Polls `/healthz` until 200; panics with the log if the process exits
    /// or does not get there in [`START_TIMEOUT`].
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().expect("child status").map(|s| s.to_string()))
            {
                panic!(
                    "{} exited while starting ({status}):\n{}",
                    self.id,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer /healthz 200 within {START_TIMEOUT:?}:\n{}",
                self.id,
                self.log_tail(LOG_TAIL_LINES)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.lock().unwrap().is_some()
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> StatusCode {
        match self.http.get(self.url("/healthz")).send().await {
            Ok(r) => r.status(),
            Err(e) => panic!("{} /healthz unreachable: {e}", self.id),
        }
    }

    /// The whole `/metrics` scrape.
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} /metrics unreachable: {e}", self.id));
        assert_eq!(r.status(), StatusCode::OK, "{} /metrics", self.id);
        r.text().await.expect("metrics text")
    }

    /// The value of one series, e.g.
    /// `presence_cluster_received_total{kind="typing"}`; panics (listing the
    /// node's `presence_cluster_*` series) when it is not exported.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        match parse_metric(&text, series) {
            Some(v) => v,
            None => {
                let cluster: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("presence_cluster"))
                    .collect();
                panic!(
                    "{} exports no {series}; its presence_cluster_* series: {cluster:#?}",
                    self.id
                )
            }
        }
    }

    /// SIGKILL, as a crashed machine or `kill -9`; returns once it is dead.
    pub async fn kill9(&self) {
        let child = self.child.lock().unwrap().take();
        let mut child = child.unwrap_or_else(|| panic!("{} is not running", self.id));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        self.note("killed with SIGKILL");
    }

    /// SIGTERM (graceful stop); returns the exit status.
    pub async fn terminate(&self) -> ExitStatus {
        let child = self.child.lock().unwrap().take();
        let mut child = child.unwrap_or_else(|| panic!("{} is not running", self.id));
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {}", child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                self.note(&format!("stopped by SIGTERM: {status}"));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                    self.id,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Starts the node again with the same id, port, data directory and
    /// environment; returns when it answers `/healthz` 200.
    pub async fn restart(&self) {
        self.spawn();
        self.wait_healthy().await;
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn print_log_tail(&self) {
        eprintln!(
            "----- {} ({}) log, last {LOG_TAIL_LINES} lines (whole log kept in {}) -----\n{}\n----- end of {} log -----",
            self.id,
            self.addr,
            self.log_path().display(),
            self.log_tail(LOG_TAIL_LINES),
            self.id
        );
    }

    /// A line in the node's log from the harness, to line up events.
    fn note(&self, what: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(self.log_path()) {
            let _ = writeln!(log, "=== test harness: {} {what} ===", self.id);
        }
    }

    fn kill_quietly(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_quietly();
    }
}

/// `series value` from a Prometheus text scrape.
pub fn parse_metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// Probes every [`POLL_INTERVAL`] until `probe` answers `Some`, for state
/// that converges across processes (plugin versions, health, metrics); panics
/// with `what` after `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A `redis-server` of the test's own on a free port, without persistence,
/// to take away and bring back.
pub struct PrivateRedis {
    pub port: u16,
    /// Its working directory and `redis.log`.
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The Redis server binary ([`PrivateRedis`]).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

impl PrivateRedis {
    /// Starts it and waits until it answers `PING`.
    pub async fn new() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.start().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port, empty) and waits until it
    /// answers `PING`.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("redis log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            // `DEBUG SLEEP` stalls it with its data intact.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {REDIS_SERVER}: {e}"));
        self.child = Some(child);
        let url = self.url();
        eventually(
            "the private redis-server answers PING",
            START_TIMEOUT,
            async || ping(&url).await.then_some(()),
        )
        .await;
    }

    /// SIGKILL; returns once it is dead.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the Redis at `url` answers `PING`.
pub async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Variables of the test's environment the nested `cargo build` must not
/// see: the outer cargo's jobserver, a target directory other than the one
/// the test runs from, and what cargo sets for the running test (its
/// manifest, package, `OUT_DIR`, …) — some build scripts (ring's) rerun when
/// `CARGO_MANIFEST_DIR` changes, which would rebuild half the host on every
/// test run and again on the next plain `cargo build`. Unlike the guests'
/// build (`plugins/build`), the host's flags and target stay: the binary must
/// be the same build as the test, so that sharing its fingerprints keeps the
/// nested build a no-op when nothing changed.
const SCRUBBED_ENV: [&str; 16] = [
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_SBOM_PATH",
    "OUT_DIR",
    "CARGO",
];
/// Prefixes of more variables cargo sets for the running test.
const SCRUBBED_PREFIXES: [&str; 2] = ["CARGO_PKG_", "CARGO_BIN_EXE_"];

/// The `presence` binary of the build the test runs from
/// (`target/<profile>/presence`, beside the test's `deps/`), or
/// `$PRESENCE_TEST_BINARY`. `cargo test -p presence-e2e` builds only the
/// library of `presence`, so the first call of a test process runs
/// `cargo build -p presence --bin presence` once — a no-op when the binary
/// is fresh, and never a stale binary after a change to the host.
pub fn presence_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("PRESENCE_TEST_BINARY") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let binary = profile_dir.join(format!("presence{}", std::env::consts::EXE_SUFFIX));
        build_binary(profile_dir);
        assert!(
            binary.is_file(),
            "cargo built presence but {} is missing",
            binary.display()
        );
        binary
    })
}

fn build_binary(profile_dir: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests live in the workspace");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "presence", "--bin", "presence"]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    cmd.arg("--target-dir").arg(target_dir);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if SCRUBBED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(&var);
        }
    }
    let _ = writeln!(std::io::stderr(), "cluster tests: running {cmd:?}");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        status.success(),
        "building the presence binary failed ({status}); see the output above"
    );
}
