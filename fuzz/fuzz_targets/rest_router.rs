//! The real axum router (`presence::app::Application::router`, on an SQLite
//! file in a temporary directory, default plugins) sent arbitrary requests
//! in process with `tower::ServiceExt::oneshot`: method, a path made of the
//! API's own segments and arbitrary ones, a query, credentials (none, a
//! user token, the admin key, garbage), a few headers and a body.
//!
//! Asserts: no panic; no 5xx but `/healthz`'s 503 (SPEC §5, §8); every
//! 4xx answer of the REST API is the JSON envelope `{"success": false,
//! "error": {"code", "message"}}` (`/ws` handshake refusals excepted); every
//! 2xx answer of `/api/v1/` but the API documents is `{"success": true}`.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use libfuzzer_sys::fuzz_target;
use presence::app::Application;
use presence::auth::Auth;
use presence::config::Config;
use serde_json::Value;
use tokio::runtime::Runtime;
use tower::ServiceExt;

const JWT_SECRET: &str = "fuzz-secret-0123456789abcdef-0123";
const ADMIN_KEY: &str = "fuzz-admin-key";
/// The users and conversations paths and bodies name, so requests meet
/// existing rows as well as unknown ones.
const IDS: [&str; 3] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
];
const SEGMENTS: [&str; 24] = [
    "api",
    "v1",
    "users",
    "status",
    "me",
    "privacy",
    "admin",
    "conversations",
    "members",
    "contacts",
    "activity",
    "plugins",
    "rollback",
    "typing",
    "healthz",
    "metrics",
    "ws",
    "sdk",
    "presence-client.js",
    "openapi.json",
    "asyncapi.json",
    IDS[0],
    IDS[1],
    IDS[2],
];
/// A request that takes longer than this is a hang, not an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    runtime: Runtime,
    router: Router,
    user_token: String,
    /// Keeps the database and the data directory.
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}", dir.path().join("presence.db").display()),
            jwt_secret: Some(JWT_SECRET.to_owned()),
            admin_key: Some(ADMIN_KEY.to_owned()),
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let auth = Auth::from_config(&config).expect("auth");
        let user_token = auth
            .mint(
                IDS[0].parse().unwrap(),
                Some("Fuzz".into()),
                Duration::from_secs(86_400),
            )
            .expect("a token");
        let app = runtime
            .block_on(Application::build(config))
            .expect("the application builds");
        let router = app.router();
        // The application (and its listener) stays alive with its tasks.
        std::mem::forget(app);
        Server {
            runtime,
            router,
            user_token,
            _dir: dir,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Part {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Credentials {
    None,
    User,
    Admin,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: Vec<Part>,
    trailing_slash: bool,
    query: Option<String>,
    credentials: Credentials,
    json: bool,
    origin: Option<String>,
    upgrade: bool,
    body: Vec<u8>,
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::PUT,
    Method::POST,
    Method::DELETE,
    Method::OPTIONS,
    Method::HEAD,
    Method::PATCH,
];

fn request(input: &Input, s: &Server) -> Option<(String, Request<Body>)> {
    let mut path = String::new();
    for part in &input.path {
        path.push('/');
        match part {
            Part::Known(i) => path.push_str(SEGMENTS[usize::from(*i) % SEGMENTS.len()]),
            Part::Raw(raw) => path.push_str(raw),
        }
    }
    if path.is_empty() || input.trailing_slash {
        path.push('/');
    }
    let mut target = path.clone();
    if let Some(q) = &input.query {
        target.push('?');
        target.push_str(q);
    }
    // What hyper would refuse before routing never reaches the router.
    let uri: Uri = target.parse().ok()?;
    let method = &METHODS[usize::from(input.method) % METHODS.len()];
    let mut req = Request::builder().method(method).uri(uri);
    match &input.credentials {
        Credentials::None => {}
        Credentials::User => {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", s.user_token));
        }
        Credentials::Admin => {
            req = req.header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"));
        }
        Credentials::Raw(raw) => req = req.header(header::AUTHORIZATION, raw.as_str()),
    }
    if input.json {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(origin) = &input.origin {
        req = req.header(header::ORIGIN, origin.as_str());
    }
    if input.upgrade {
        req = req
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
    }
    // A header value hyper would not have parsed is refused here too.
    let req = req.body(Body::from(input.body.clone())).ok()?;
    Some((path, req))
}

fuzz_target!(|input: Input| {
    let s = server();
    let Some((path, req)) = request(&input, s) else {
        return;
    };
    // A HEAD answer has no body to check.
    let head = req.method() == Method::HEAD;
    let described = format!("{} {}", req.method(), req.uri());
    let (status, body) = s.runtime.block_on(async {
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, s.router.clone().oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("{described}: no answer in {ANSWER_TIMEOUT:?}"))
            .expect("the router is infallible");
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .expect("an in-memory body");
        (status, body)
    });
    let text = String::from_utf8_lossy(&body);
    if status.is_server_error() {
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE && path == "/healthz",
            "{described}: {status} {text}"
        );
    }
    let rest_api = path.starts_with("/api/");
    if status.is_client_error() && path != "/ws" && !head {
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{described}: {status} is not JSON ({e}): {text}"));
        assert_eq!(v["success"], false, "{described}: {status} {text}");
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{described}: {status} {text}"
        );
    }
    let document = path.ends_with("openapi.json") || path.ends_with("asyncapi.json");
    if status.is_success() && rest_api && !document && !body.is_empty() {
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{described}: {status} is not JSON ({e}): {text}"));
        assert_eq!(v["success"], true, "{described}: {status} {text}");
    }
});
