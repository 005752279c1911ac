//! One typed configuration, loaded once from a TOML file, then the
//! environment, then command-line flags, and passed down from `main`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Default listen address (SPEC §9).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default database: an SQLite file in the working directory (SPEC §9).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://presence.db";
/// Clock skew tolerated on a token's `exp` and `nbf` by default.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;
/// Where generated secrets are kept when none are configured.
pub const DEFAULT_DATA_DIR: &str = "presence-data";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP and WebSocket server binds.
    pub listen: SocketAddr,
    /// `sqlite://file`, `sqlite::memory:` or `postgres://…`.
    pub database_url: String,
    /// PostgreSQL only: presence's own tables live in this schema (created
    /// if missing) instead of beside the chat's, with `presence_` names.
    pub database_schema: Option<String>,
    /// Redis for cross-node fan-out and live presence: set on every node of
    /// a cluster (with a `postgres://` database); unset, the node runs alone.
    pub redis_url: Option<String>,
    pub cluster: ClusterSettings,
    /// HS256 secret for user tokens; generated into `data_dir` when absent.
    pub jwt_secret: Option<String>,
    /// PEM public key file; when set, tokens are verified with `jwt_algorithm`.
    pub jwt_public_key: Option<PathBuf>,
    /// `HS256` (default), `RS256`, `ES256` or `EdDSA`.
    pub jwt_algorithm: String,
    /// The identity provider's JWKS endpoint: tokens are verified with its
    /// keys (RS256, ES256, EdDSA), chosen by `kid`.
    pub jwt_jwks_url: Option<String>,
    /// When set, a token's `aud` is required and must be one of these.
    pub jwt_audience: Vec<String>,
    /// When set, a token's `iss` is required and must equal it.
    pub jwt_issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// The claim holding the user's UUID.
    pub jwt_user_claim: String,
    /// Bearer key of the admin API; generated into `data_dir` when absent.
    pub admin_key: Option<String>,
    /// A read-only bearer token for `/metrics` alone, so a scraper need not
    /// hold the admin key (which also installs plugins).
    pub metrics_token: Option<String>,
    /// Directory with `typing.wasm`, `status.wasm`, `privacy.wasm` overriding the built-ins.
    pub plugin_dir: Option<PathBuf>,
    /// Holds generated secrets (mode 0600).
    pub data_dir: PathBuf,
    /// Web origins (`https://chat.example.com`) whose pages may call the user
    /// REST API and open `/ws`; `*` for any. Unset: no CORS headers, and any
    /// origin may open `/ws`.
    pub cors_origins: Vec<String>,
    /// Serves the demo page (`/demo`) and mints tokens for its users.
    /// Never on by default; for trying presence out only.
    pub demo: bool,
    /// The chat backend's endpoint for status transitions; unset, none are sent.
    pub webhook_url: Option<String>,
    /// Signs every webhook request (required with `webhook_url`).
    pub webhook_secret: Option<String>,
    pub limits: Limits,
}

/// How a node takes part in a cluster (used only with `redis_url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's name in Redis; a restarted node may keep it. Default: random.
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel, so clusters can share one Redis.
    pub redis_prefix: String,
    /// A node that has not renewed its lease for this long is taken for dead.
    pub lease_ms: u64,
    /// How often a node renews its lease and looks for dead nodes.
    pub heartbeat_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: None,
            redis_prefix: "presence".to_owned(),
            lease_ms: 5_000,
            heartbeat_ms: 1_000,
        }
    }
}

/// Every hard limit of the server, documented where it is defined.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest client frame; bigger ones close the connection with 1009 (SPEC §8).
    pub max_frame_bytes: usize,
    /// Frames queued for one connection before it counts as a slow reader and is dropped.
    pub send_queue: usize,
    /// Sustained client frames per second per connection (SPEC §8).
    pub frames_per_sec: u32,
    /// Burst of client frames allowed above the sustained rate.
    pub frame_burst: u32,
    /// Frames refused in one flood before the connection is closed with 1008.
    pub flood_close_after: u32,
    /// Ids in one batch status query (SPEC §5).
    pub max_batch_ids: usize,
    /// Open connections one user may hold on a node (devices, tabs).
    pub connections_per_user: u32,
    /// CPU time one plugin call may use before it is interrupted.
    pub plugin_call_deadline_ms: u64,
    /// Linear memory one plugin instance may grow to.
    pub plugin_memory_bytes: usize,
    /// Largest admin or REST JSON body.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive, in all: a body trickled
    /// byte by byte must not hold a connection and a task for ever.
    pub body_read_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024,
            send_queue: 256,
            frames_per_sec: 50,
            frame_burst: 100,
            flood_close_after: 50,
            max_batch_ids: 100,
            connections_per_user: 20,
            plugin_call_deadline_ms: 10,
            plugin_memory_bytes: 16 * 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            body_read_timeout_ms: 30_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_schema: None,
            redis_url: None,
            cluster: ClusterSettings::default(),
            jwt_secret: None,
            jwt_public_key: None,
            jwt_algorithm: "HS256".to_owned(),
            jwt_jwks_url: None,
            jwt_audience: Vec::new(),
            jwt_issuer: None,
            jwt_leeway_secs: DEFAULT_JWT_LEEWAY_SECS,
            jwt_user_claim: "sub".to_owned(),
            admin_key: None,
            metrics_token: None,
            plugin_dir: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            cors_origins: Vec::new(),
            demo: false,
            webhook_url: None,
            webhook_secret: None,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// File (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_from(file, |k| std::env::var(k).ok())
    }

    /// File (if any), then `env` — split out so tests need no process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(v) = get("PRESENCE_LISTEN") {
            self.listen = v.parse().with_context(|| format!("PRESENCE_LISTEN={v}"))?;
        }
        if let Some(v) = get("PRESENCE_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("PRESENCE_DATABASE_SCHEMA") {
            self.database_schema = Some(v);
        }
        if let Some(v) = get("PRESENCE_REDIS_URL") {
            self.redis_url = Some(v);
        }
        if let Some(v) = get("PRESENCE_NODE_ID") {
            self.cluster.node_id = Some(v);
        }
        if let Some(v) = get("PRESENCE_REDIS_PREFIX") {
            self.cluster.redis_prefix = v;
        }
        if let Some(v) = get("PRESENCE_CLUSTER_LEASE_MS") {
            self.cluster.lease_ms = v.parse().context("PRESENCE_CLUSTER_LEASE_MS")?;
        }
        if let Some(v) = get("PRESENCE_CLUSTER_HEARTBEAT_MS") {
            self.cluster.heartbeat_ms = v.parse().context("PRESENCE_CLUSTER_HEARTBEAT_MS")?;
        }
        // Set but empty is a mistake to refuse, not a reason to generate one.
        if let Some(v) = env("PRESENCE_JWT_SECRET") {
            self.jwt_secret = Some(v);
        }
        if let Some(v) = get("PRESENCE_JWT_JWKS_URL") {
            self.jwt_jwks_url = Some(v);
        }
        if let Some(v) = get("PRESENCE_JWT_AUDIENCE") {
            self.jwt_audience = v
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = get("PRESENCE_JWT_ISSUER") {
            self.jwt_issuer = Some(v);
        }
        if let Some(v) = get("PRESENCE_JWT_LEEWAY_SECS") {
            self.jwt_leeway_secs = v.parse().context("PRESENCE_JWT_LEEWAY_SECS")?;
        }
        if let Some(v) = get("PRESENCE_JWT_USER_CLAIM") {
            self.jwt_user_claim = v;
        }
        if let Some(v) = get("PRESENCE_JWT_PUBLIC_KEY") {
            self.jwt_public_key = Some(v.into());
        }
        if let Some(v) = get("PRESENCE_JWT_ALGORITHM") {
            self.jwt_algorithm = v;
        }
        if let Some(v) = get("PRESENCE_ADMIN_KEY") {
            self.admin_key = Some(v);
        }
        if let Some(v) = get("PRESENCE_METRICS_TOKEN") {
            self.metrics_token = Some(v);
        }
        if let Some(v) = get("PRESENCE_PLUGIN_DIR") {
            self.plugin_dir = Some(v.into());
        }
        if let Some(v) = get("PRESENCE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("PRESENCE_CORS_ORIGINS") {
            self.cors_origins = v
                .split(',')
                .map(|o| o.trim().trim_end_matches('/'))
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = get("PRESENCE_WEBHOOK_URL") {
            self.webhook_url = Some(v);
        }
        if let Some(v) = env("PRESENCE_WEBHOOK_SECRET") {
            self.webhook_secret = Some(v);
        }
        if let Some(v) = get("PRESENCE_MAX_FRAME_BYTES") {
            self.limits.max_frame_bytes = v.parse().context("PRESENCE_MAX_FRAME_BYTES")?;
        }
        if let Some(v) = get("PRESENCE_SEND_QUEUE") {
            self.limits.send_queue = v.parse().context("PRESENCE_SEND_QUEUE")?;
        }
        Ok(())
    }

    /// Where webhooks go and how they are signed; `None` when unset, an
    /// error when half set.
    pub fn webhook(&self) -> anyhow::Result<Option<WebhookConfig>> {
        let Some(url) = &self.webhook_url else {
            if self.webhook_secret.is_some() {
                anyhow::bail!(
                    "PRESENCE_WEBHOOK_SECRET (webhook_secret) is set but PRESENCE_WEBHOOK_URL is not"
                );
            }
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("PRESENCE_WEBHOOK_URL (webhook_url) {url:?} is not an http(s) URL");
        }
        match self.webhook_secret.as_deref() {
            None | Some("") => anyhow::bail!(
                "PRESENCE_WEBHOOK_SECRET (webhook_secret) is required with PRESENCE_WEBHOOK_URL"
            ),
            Some(secret) => Ok(Some(WebhookConfig {
                url: url.clone(),
                secret: secret.to_owned(),
            })),
        }
    }

    pub fn plugin_call_deadline(&self) -> Duration {
        Duration::from_millis(self.limits.plugin_call_deadline_ms)
    }
}

/// Where webhooks go, and how they are signed.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// Signs every request; the receiver checks it.
    pub secret: String,
}

/// A node id goes into Redis keys, hash field names (where `_` starts the
/// host's own fields) and `|`-separated messages.
pub fn check_node_id(id: &str) -> anyhow::Result<()> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > 64 || id.starts_with('_') || !id.chars().all(valid) {
        anyhow::bail!(
            "node id {id:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '_'"
        );
    }
    Ok(())
}

/// A URL without its password, for logs and error messages:
/// `postgres://user:***@host/db`. The password ends at the last `@`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rfind('@').map(|at| rest.split_at(at)) {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_needs_both_an_http_url_and_a_secret() {
        let with = |url: Option<&str>, secret: Option<&str>| Config {
            webhook_url: url.map(str::to_owned),
            webhook_secret: secret.map(str::to_owned),
            ..Config::default()
        };
        assert!(with(None, None).webhook().unwrap().is_none());
        let w = with(Some("https://chat/hooks"), Some("s"))
            .webhook()
            .unwrap()
            .unwrap();
        assert_eq!(
            (w.url.as_str(), w.secret.as_str()),
            ("https://chat/hooks", "s")
        );
        for (url, secret) in [
            (Some("https://chat/hooks"), None),
            (Some("https://chat/hooks"), Some("")),
            (None, Some("s")),
            (Some("ftp://chat"), Some("s")),
        ] {
            let err = with(url, secret).webhook().unwrap_err().to_string();
            assert!(err.contains("PRESENCE_WEBHOOK"), "{err}");
        }
    }

    #[test]
    fn identity_settings_come_from_the_environment() {
        let env = |k: &str| match k {
            "PRESENCE_JWT_AUDIENCE" => Some("web, api".to_owned()),
            "PRESENCE_JWT_ISSUER" => Some("https://idp".to_owned()),
            "PRESENCE_JWT_LEEWAY_SECS" => Some("5".to_owned()),
            "PRESENCE_JWT_USER_CLAIM" => Some("uid".to_owned()),
            "PRESENCE_JWT_JWKS_URL" => Some("https://idp/jwks".to_owned()),
            "PRESENCE_DATABASE_SCHEMA" => Some("presence".to_owned()),
            "PRESENCE_JWT_SECRET" => Some(String::new()),
            _ => None,
        };
        let c = Config::load_from(None, env).unwrap();
        assert_eq!(c.jwt_audience, ["web", "api"]);
        assert_eq!(c.jwt_issuer.as_deref(), Some("https://idp"));
        assert_eq!((c.jwt_leeway_secs, c.jwt_user_claim.as_str()), (5, "uid"));
        assert_eq!(c.jwt_jwks_url.as_deref(), Some("https://idp/jwks"));
        assert_eq!(c.database_schema.as_deref(), Some("presence"));
        assert_eq!(
            c.jwt_secret.as_deref(),
            Some(""),
            "an empty secret is kept, to be refused"
        );
    }

    #[test]
    fn urls_are_logged_without_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("redis://:p@ss@h/0"), "redis://:***@h/0");
        assert_eq!(redact_url("redis://h/0"), "redis://h/0");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://presence.db"), "sqlite://presence.db");
    }

    #[test]
    fn node_ids_that_would_break_keys_or_messages_are_refused() {
        for ok in ["node-a", "eu_1.presence", "a"] {
            assert!(check_node_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_seen", "a|b", "a b", "a:b", &"x".repeat(65)] {
            assert!(check_node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn environment_overrides_the_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("presence.toml");
        std::fs::write(
            &file,
            "database_url = \"sqlite://a.db\"\n[limits]\nsend_queue = 8\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "PRESENCE_LISTEN" => Some("127.0.0.1:0".to_owned()),
            "PRESENCE_ADMIN_KEY" => Some("k".to_owned()),
            _ => None,
        };
        let c = Config::load_from(Some(&file), env).unwrap();
        assert_eq!(c.database_url, "sqlite://a.db");
        assert_eq!(c.limits.send_queue, 8);
        assert_eq!(c.limits.max_frame_bytes, 16 * 1024);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.admin_key.as_deref(), Some("k"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("presence.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        assert!(Config::load_from(Some(&file), |_| None).is_err());
    }
}
