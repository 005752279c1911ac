//! Test harness: starts the real presence server on `127.0.0.1:0` and talks
//! to it with real WebSocket and HTTP clients; [`cluster`] runs several real
//! `presence` processes sharing PostgreSQL and Redis.

pub mod cluster;
pub mod postgres;
pub mod proxy;
pub mod webhook;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence::app::Application;
use presence::config::Config;
use presence::presence::Presence;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef-0123";
pub const ADMIN_KEY: &str = "test-admin-key";
/// Upper bound on waiting for any one expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

pub struct TestApp {
    pub addr: SocketAddr,
    pub presence: Arc<Presence>,
    pub http: reqwest::Client,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the SQLite file and the data directory alive.
    pub dir: Arc<tempfile::TempDir>,
}

/// A fresh server on a fresh SQLite database.
pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    spawn_app_on(url, dir, |_| {}).await
}

/// A server on a given database (to restart on the same one) with config tweaks.
pub async fn spawn_app_on(
    database_url: String,
    dir: Arc<tempfile::TempDir>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.clone(),
        jwt_secret: Some(JWT_SECRET.to_owned()),
        admin_key: Some(ADMIN_KEY.to_owned()),
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    tweak(&mut config);
    let app = Application::build(config).await.expect("server builds");
    let addr = app.local_addr();
    let presence = app.presence();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        presence,
        http: reqwest::Client::new(),
        database_url,
        stop: Some(tx),
        server: Some(server),
        dir,
    }
}

/// A fresh PostgreSQL schema on `PRESENCE_TEST_POSTGRES_URL`.
pub struct PgSchema {
    base: String,
    name: String,
    /// A database URL whose connections use the schema.
    pub url: String,
}

impl PgSchema {
    /// `None` (after printing `skipped: …`) when the variable is unset.
    pub async fn create(test: &str) -> Option<PgSchema> {
        let Ok(base) = std::env::var("PRESENCE_TEST_POSTGRES_URL") else {
            // Straight to the stderr handle: libtest captures println!.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: PRESENCE_TEST_POSTGRES_URL is not set"
            );
            return None;
        };
        let name = format!("e2e_{}", Uuid::new_v4().simple());
        Self::execute(&base, &format!("CREATE SCHEMA {name}")).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema { base, name, url })
    }

    pub async fn drop(self) {
        Self::execute(&self.base, &format!("DROP SCHEMA {} CASCADE", self.name)).await;
    }

    async fn execute(url: &str, sql: &str) {
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect(url)
            .await
            .expect("postgres reachable");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
}

/// A server whose status policy is `tests/plugins/quick-status`: 0.5 s grace,
/// away after 1.5 s, a 1 s heartbeat, and co-members as watchers.
pub async fn spawn_quick_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        env!("PRESENCE_TEST_QUICK_STATUS_WASM"),
        plugins.join("status.wasm"),
    )
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    spawn_app_on(url, dir, |c| c.plugin_dir = Some(plugins)).await
}

pub fn token_for(user: Uuid, name: Option<&str>) -> String {
    let exp = jsonwebtoken_exp(3600);
    let mut claims = json!({"sub": user, "exp": exp});
    if let Some(n) = name {
        claims["name"] = json!(n);
    }
    sign(&claims, JWT_SECRET)
}

/// Seconds since the epoch, `ahead` from now.
pub fn jsonwebtoken_exp(ahead: i64) -> i64 {
    chrono::Utc::now().timestamp() + ahead
}

/// HS256-signs arbitrary claims (for forged and expired tokens too).
pub fn sign(claims: &Value, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("signs")
}

/// What a test asks any running server: the in-process one ([`TestApp`]) or
/// a node of a real cluster ([`cluster::Node`]). Implementors give an address
/// and an HTTP client; the helpers are shared.
#[allow(async_fn_in_trait)] // test helpers, awaited where they are called
pub trait Api {
    fn addr(&self) -> SocketAddr;

    fn http(&self) -> &reqwest::Client;

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    fn ws_url(&self, token: &str, locale: Option<&str>) -> String {
        match locale {
            Some(l) => format!("ws://{}/ws?token={token}&locale={l}", self.addr()),
            None => format!("ws://{}/ws?token={token}", self.addr()),
        }
    }

    /// Admin call; panics unless it succeeds.
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.admin_raw(method, path, body).await;
        assert!(status.is_success(), "admin {path} failed: {status} {v}");
        v
    }

    async fn admin_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut req = self
            .http()
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn user(&self, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        let username = name.to_lowercase();
        self.admin(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/users/{id}"),
            Some(json!({"username": username, "display_name": name})),
        )
        .await;
        id
    }

    async fn conversation(&self, members: &[Uuid]) -> Uuid {
        let id = Uuid::new_v4();
        self.admin(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/conversations/{id}/members"),
            Some(json!({"user_ids": members})),
        )
        .await;
        id
    }

    /// Ann and Bob, connected, in a conversation of their own.
    async fn pair(&self) -> Pair {
        let (ann, bob) = (self.user("Ann").await, self.user("Bob").await);
        let conversation = self.conversation(&[ann, bob]).await;
        let a = self.connect(ann).await;
        let b = self.connect(bob).await;
        Pair {
            ann,
            bob,
            conversation,
            a,
            b,
        }
    }

    /// Ann and Bob, where Bob watches Ann (has her as a contact) and is
    /// connected; Ann is not.
    async fn bob_watching_ann(&self) -> Watching {
        let (ann, bob) = (self.user("Ann").await, self.user("Bob").await);
        self.contacts(bob, &[ann]).await;
        let b = self.connect(bob).await;
        Watching { ann, bob, b }
    }

    async fn contacts(&self, user: Uuid, contacts: &[Uuid]) {
        self.admin(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/users/{user}/contacts"),
            Some(json!({"user_ids": contacts})),
        )
        .await;
    }

    /// `PUT /api/v1/admin/plugins/{slot}` with a component's bytes.
    async fn upload_plugin(&self, slot: &str, bytes: Vec<u8>) -> (reqwest::StatusCode, Value) {
        let resp = self
            .http()
            .put(self.url(&format!("/api/v1/admin/plugins/{slot}")))
            .bearer_auth(ADMIN_KEY)
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GET as `user`; returns status and body.
    async fn get_as(&self, user: Uuid, path: &str) -> (reqwest::StatusCode, Value) {
        let resp = self
            .http()
            .get(self.url(path))
            .bearer_auth(token_for(user, None))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn connect(&self, user: Uuid) -> Client {
        self.connect_with(&token_for(user, None), None).await
    }

    async fn connect_with(&self, token: &str, locale: Option<&str>) -> Client {
        Client::connect(&self.ws_url(token, locale)).await
    }
}

impl Api for TestApp {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl TestApp {
    /// Graceful shutdown, as on SIGTERM; returns what the server returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.expect("server task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Watching {
    pub ann: Uuid,
    pub bob: Uuid,
    /// Bob's connection.
    pub b: Client,
}

pub struct Pair {
    pub ann: Uuid,
    pub bob: Uuid,
    pub conversation: Uuid,
    pub a: Client,
    pub b: Client,
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Every server event a test receives must match its JSON Schema in the
/// server's AsyncAPI document.
pub fn check_event(frame: &Value) {
    static VALIDATORS: std::sync::OnceLock<
        std::collections::HashMap<String, jsonschema::Validator>,
    > = std::sync::OnceLock::new();
    let validators = VALIDATORS.get_or_init(|| {
        presence::http::docs::EVENTS
            .iter()
            .map(|e| {
                let schema = presence::http::docs::event_schema(e.kind).expect("a schema");
                let v = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|err| panic!("the schema of {} compiles: {err}", e.kind));
                (e.kind.to_owned(), v)
            })
            .collect()
    });
    let kind = frame["type"].as_str().unwrap_or_default();
    let Some(validator) = validators.get(kind) else {
        panic!("the server sent an event the AsyncAPI document does not know: {frame}");
    };
    if let Err(e) = validator.validate(frame) {
        panic!(
            "{kind} does not match its schema ({e} at {}): {frame}",
            e.instance_path
        );
    }
}

pub struct Client {
    pub ws: Ws,
    /// The `ready` frame's data.
    pub ready: Value,
}

impl Client {
    /// Opens `/ws` at `url` and waits for `ready`.
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let mut c = Client {
            ws,
            ready: Value::Null,
        };
        c.ready = c.next_of("ready").await;
        c
    }

    pub async fn send(&mut self, kind: &str, data: Value) {
        let frame = json!({"type": kind, "data": data}).to_string();
        self.ws.send(Message::text(frame)).await.expect("send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// The next server frame (`{type, data}`), skipping WebSocket pings.
    pub async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("a frame within the timeout")
                .expect("connection open")
                .expect("frame");
            match msg {
                Message::Text(t) => {
                    let frame = serde_json::from_str(&t).expect("server sends JSON");
                    check_event(&frame);
                    return frame;
                }
                Message::Close(c) => panic!("connection closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The data of the next frame of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["type"] == kind {
                return f["data"].clone();
            }
        }
    }

    /// Sends `ping` and returns every frame that arrived before the `pong`:
    /// whatever the server queued for us earlier.
    pub async fn drain(&mut self) -> Vec<Value> {
        self.send("ping", json!({})).await;
        let mut seen = Vec::new();
        loop {
            let f = self.next().await;
            if f["type"] == "pong" {
                return seen;
            }
            seen.push(f);
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("closes in time")
            {
                Some(Ok(Message::Close(c))) => return c.map(|c| c.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Read until the server's close so the disconnect has been seen.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next()).await {}
    }
}
