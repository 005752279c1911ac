//! The one error type of the HTTP API: it picks the status code and the
//! envelope `{"success": false, "error": {code, message}}`, and never leaks internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("this page's origin may not use presence (PRESENCE_CORS_ORIGINS)")]
    OriginNotAllowed,
    #[error("user not found")]
    UserNotFound,
    #[error("too many ids: at most {0}")]
    TooManyIds(usize),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// A WebSocket handshake for a protocol version other than 13.
    #[error("only WebSocket version 13 is supported")]
    WebSocketVersion,
    #[error("too many open connections for this user: at most {0}")]
    TooManyConnections(u32),
    /// The node cannot serve; the message says what it waits for.
    #[error("service unavailable: {0}")]
    Unavailable(std::borrow::Cow<'static, str>),
    /// A plugin component was refused; the message says why.
    #[error("{0}")]
    PluginRejected(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::UserNotFound => (StatusCode::NOT_FOUND, "user_not_found"),
            ApiError::TooManyIds(_) => (StatusCode::BAD_REQUEST, "too_many_ids"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::WebSocketVersion => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
            ApiError::TooManyConnections(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_connections")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::PluginRejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "plugin_rejected"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<crate::presence::PluginChange> for ApiError {
    fn from(e: crate::presence::PluginChange) -> Self {
        use crate::presence::PluginChange;
        match e {
            PluginChange::Rejected(..) => ApiError::PluginRejected(e.to_string()),
            PluginChange::NoPrevious(_) => ApiError::Conflict(e.to_string()),
            PluginChange::Store(e) => e.into(),
            PluginChange::Task(e) => ApiError::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = Refused {
            success: false,
            error: RefusedBody {
                code: code.to_owned(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// `{"success": true, "data": …}`: every successful answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Okay<T> {
    /// Always true.
    pub success: bool,
    pub data: T,
}

pub fn ok<T: Serialize>(data: T) -> Json<Okay<T>> {
    Json(Okay {
        success: true,
        data,
    })
}

/// `{"success": false, "error": {code, message}}`: every refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct Refused {
    /// Always false.
    pub success: bool,
    pub error: RefusedBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedBody {
    /// `bad_request`, `unauthorized`, `origin_not_allowed`, `user_not_found`,
    /// `too_many_ids`, `not_found`, `method_not_allowed`, `request_timeout`,
    /// `upgrade_required`, `too_many_connections`, `unavailable`, `plugin_rejected`, `conflict`
    /// or `internal`.
    pub code: String,
    /// For people; never an internal detail.
    pub message: String,
}
