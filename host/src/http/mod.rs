//! The HTTP surface: `/ws` (upgrade), the user REST API (`users`), the
//! admin API the chat backend syncs us through (`admin`), `/healthz`,
//! `/metrics` and the client library (`service`), the OpenAPI and AsyncAPI
//! documents (`docs`), CORS (`cors`) and the demo (`demo`). `extract` turns
//! every malformed path, query or body into a 400 envelope.

pub mod admin;
pub mod cors;
pub mod demo;
pub mod docs;
pub mod extract;
pub mod serve;
pub mod service;
pub mod users;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::error::ApiError;
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
        .route("/sdk/presence-client.js", get(service::client_js))
        .route("/api/v1/openapi.json", get(docs::openapi))
        .route("/api/v1/asyncapi.json", get(docs::asyncapi))
        // Set before the CORS layer, so a preflight reaches the layer first.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    if let Some(cors) = state.origins.layer() {
        browser = browser.layer(cors);
    }
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/metrics", get(service::metrics))
        .route("/ws", get(ws::upgrade))
        .route("/demo", get(demo::page))
        .route("/demo/token", get(demo::token))
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
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .merge(browser)
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::body_deadline,
        ))
        .with_state(state)
}
