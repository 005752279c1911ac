//! Extractors that authenticate callers and turn malformed input into the
//! API's 400/401 envelope instead of axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use crate::auth;
use crate::error::ApiError;

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An end user authenticated by JWT.
pub struct CurrentUser(pub auth::User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        state
            .auth
            .verify_user(token)
            .await
            .map(CurrentUser)
            .map_err(|_| ApiError::Unauthorized)
    }
}

/// The chat backend, authenticated by the admin key.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        state
            .auth
            .verify_admin(key)
            .map(|_| Admin)
            .map_err(|_| ApiError::Unauthorized)
    }
}

/// The bearer of the admin key or of the read-only metrics token.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        state
            .auth
            .verify_metrics_reader(key)
            .map(|_| MetricsReader)
            .map_err(|_| ApiError::Unauthorized)
    }
}

/// A JSON body whose errors answer 400 with the envelope.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) => return Err(ApiError::BadRequest(e.body_text())),
        };
        // serde would take `[a, b]` for a struct `{a, b}`: a body is an object.
        if !value.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiError::BadRequest(format!("bad body: {e}")))
    }
}

/// Path parameters whose errors (say, a segment that is not UTF-8) answer
/// 400 with the envelope.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

pub fn parse_uuid(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::BadRequest(format!("not a UUID: {s:?}")))
}
