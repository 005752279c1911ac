//! The HTTP surface: `/ws` (upgrade), the user REST API (`users`), the
//! admin API the chat backend syncs us through (`admin`), and `/healthz`.
//! `extract` turns every malformed path, query or body into a 400 envelope.

pub mod admin;
pub mod cors;
pub mod demo;
pub mod extract;
pub mod serve;
pub mod users;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::error::{ApiError, ok};
use crate::metrics::METRICS;
use crate::policy::MAX_COMPONENT_BYTES;
use crate::presence::Presence;

#[derive(Clone)]
pub struct AppState {
    pub presence: Arc<Presence>,
    pub auth: Arc<Auth>,
    /// Cancelled on shutdown; every WebSocket session watches it.
    pub shutdown: CancellationToken,
    /// Sessions hold a token of this tracker so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Which browser origins may call us.
    pub origins: Arc<cors::Origins>,
    /// `presence serve --demo`: `/demo` and its tokens are served.
    pub demo: bool,
}

/// The JavaScript client (`clients/js`), served to pages as `/sdk/presence-client.js`.
const CLIENT_JS: &str = include_str!("../../../clients/js/presence-client.js");

pub fn router(state: AppState) -> Router {
    let max_body = state.presence.limits.max_body_bytes;
    // What a browser page calls, under the CORS policy.
    let mut browser = Router::new()
        .route("/api/v1/users/status", get(users::batch_status))
        .route(
            "/api/v1/users/me/privacy",
            get(users::get_privacy).put(users::put_privacy),
        )
        .route(
            "/api/v1/users/me/status",
            get(users::my_status).put(users::put_status),
        )
        .route("/api/v1/users/{id}/status", get(users::status))
        .route("/sdk/presence-client.js", get(client_js));
    if let Some(cors) = state.origins.layer() {
        browser = browser.layer(cors);
    }
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws::upgrade))
        .route("/demo", get(demo::page))
        .route("/demo/token", get(demo::token))
        .merge(browser)
        .route("/api/v1/admin/users/{id}", put(admin::put_user))
        .route(
            "/api/v1/admin/users/{id}/contacts",
            put(admin::put_contacts),
        )
        .route(
            "/api/v1/admin/conversations/{id}/members",
            put(admin::put_members),
        )
        .route(
            "/api/v1/admin/conversations/{id}/members/{user_id}",
            post(admin::add_member).delete(admin::remove_member),
        )
        .route("/api/v1/admin/activity", post(admin::activity))
        .route("/api/v1/admin/plugins", get(admin::plugins))
        .route(
            "/api/v1/admin/plugins/{slot}",
            put(admin::install_plugin).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/api/v1/admin/plugins/{slot}/rollback",
            post(admin::rollback_plugin),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// `GET /sdk/presence-client.js`: the client library as an ES module.
async fn client_js() -> impl IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_JS,
    )
}

/// Prometheus text exposition; scraped with the admin key as bearer token.
async fn metrics(State(state): State<AppState>, _: extract::Admin) -> impl IntoResponse {
    let p = &state.presence;
    let users = p.registry.users.len();
    let cluster_up = p.cluster.as_ref().map(|c| c.is_up());
    let body = METRICS.render(p.registry.session_count(), users, &p.policies, cluster_up);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

/// 200 while the node can serve: the database answers, Redis too in a
/// cluster, and the identity provider's keys have been fetched.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.presence.store().ping().await {
        tracing::warn!(error = %e, "health check: database unreachable");
        return ApiError::Unavailable("the database is unreachable").into_response();
    }
    if !state.auth.is_ready() {
        return ApiError::Unavailable(
            "no key set fetched from the identity provider yet (PRESENCE_JWT_JWKS_URL)",
        )
        .into_response();
    }
    match &state.presence.cluster {
        None => (StatusCode::OK, ok(serde_json::json!({"database": "ok"}))).into_response(),
        Some(c) if c.is_up() => (
            StatusCode::OK,
            ok(serde_json::json!({"database": "ok", "redis": "ok", "node": &*c.node})),
        )
            .into_response(),
        Some(_) => {
            tracing::warn!("health check: Redis unreachable");
            ApiError::Unavailable("Redis is unreachable").into_response()
        }
    }
}
