//! Extractors that authenticate callers and turn malformed input into the
//! API's 400/401 envelope instead of axum's plain-text rejections, and the
//! deadline every request body must arrive within.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::de::DeserializeOwned;
use tokio::time::Sleep;
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

/// The request's bearer key, accepted by `verify`, or 401.
fn keyed(
    parts: &Parts,
    verify: impl FnOnce(&str) -> Result<(), auth::AuthError>,
) -> Result<(), ApiError> {
    let key = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
    verify(key).map_err(|_| ApiError::Unauthorized)
}

/// The chat backend, authenticated by the admin key.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        keyed(parts, |key| state.auth.verify_admin(key)).map(|()| Admin)
    }
}

/// The bearer of the admin key or of the read-only metrics token.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        keyed(parts, |key| state.auth.verify_metrics_reader(key)).map(|()| MetricsReader)
    }
}

/// A JSON body whose errors answer 400 with the envelope.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) if timed_out(&e) => return Err(ApiError::BodyTimeout),
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

/// Raw body bytes (a plugin upload), with the body deadline's answer.
pub struct Upload(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Upload(bytes)),
            Err(e) if timed_out(&e) => Err(ApiError::BodyTimeout.into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Middleware: the whole request body must arrive within
/// `limits.body_read_timeout_ms`, however slowly it trickles.
pub async fn body_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.presence.limits.body_read_timeout_ms);
    let req = req.map(|body| axum::body::Body::new(Deadline::new(body, limit)));
    next.run(req).await
}

/// The error a body reports once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A body that fails with [`BodyTimedOut`] once its deadline passes.
struct Deadline {
    inner: axum::body::Body,
    /// Armed on the first poll, so a handler that never reads pays nothing.
    sleep: Option<Pin<Box<Sleep>>>,
    limit: Duration,
}

impl Deadline {
    fn new(inner: axum::body::Body, limit: Duration) -> Deadline {
        Deadline {
            inner,
            sleep: None,
            limit,
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let limit = this.limit;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
