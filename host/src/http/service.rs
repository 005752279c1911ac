//! What serves the service itself rather than users: `/healthz`, `/metrics`
//! and the client library at `/sdk/presence-client.js`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, extract};
use crate::error::{ApiError, Okay, Refused, ok};
use crate::metrics::METRICS;

/// The JavaScript client (`clients/js`), served to pages as `/sdk/presence-client.js`.
const CLIENT_JS: &str = include_str!("../../../clients/js/presence-client.js");

/// What a healthy node says of itself.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    database: &'static str,
    /// `ok`; in a cluster only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    redis: Option<&'static str>,
    /// This node's id; in a cluster only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    node: Option<String>,
}

/// The client library as an ES module.
#[utoipa::path(get, path = "/sdk/presence-client.js", tag = "service",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)))]
pub async fn client_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_JS,
    )
}

/// Prometheus text exposition, scraped with the metrics token or the admin key.
#[utoipa::path(get, path = "/metrics", tag = "service",
    security(("metrics_token" = []), ("admin_key" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "Neither the metrics token nor the admin key", body = Refused),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    _: extract::MetricsReader,
) -> impl IntoResponse {
    let p = &state.presence;
    let users = p.registry.users.len();
    let cluster_up = p.cluster.as_ref().map(|c| c.is_up());
    let body = METRICS.render(p.registry.session_count(), users, &p.policies, cluster_up);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// 200 while the node can serve: the database answers, Redis too in a
/// cluster, and the identity provider's keys have been fetched.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses(
        (status = 200, body = Okay<Health>),
        (status = 503, description = "`unavailable`, and why", body = Refused),
    ))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.presence.store().ping().await {
        tracing::warn!(error = %e, "health check: database unreachable");
        return ApiError::Unavailable("the database is unreachable".into()).into_response();
    }
    if !state.auth.is_ready() {
        return ApiError::Unavailable(
            "no key set fetched from the identity provider yet (PRESENCE_JWT_JWKS_URL)".into(),
        )
        .into_response();
    }
    match &state.presence.cluster {
        None => (
            StatusCode::OK,
            ok(Health {
                database: "ok",
                redis: None,
                node: None,
            }),
        )
            .into_response(),
        Some(c) if c.is_up() => (
            StatusCode::OK,
            ok(Health {
                database: "ok",
                redis: Some("ok"),
                node: Some(c.node.to_string()),
            }),
        )
            .into_response(),
        Some(c) => {
            let reason = c.down_reason();
            tracing::warn!(%reason, "health check: the cluster link is down");
            ApiError::Unavailable(reason.into()).into_response()
        }
    }
}
