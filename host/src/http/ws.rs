//! `GET /ws`: checks the handshake, authenticates (`?token=` or
//! `Authorization: Bearer`) before upgrading, then hands the bare TCP stream
//! to a WebSocket session.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::AppState;
use super::extract::bearer;
use crate::error::ApiError;
use crate::ws::{handshake, session};

pub async fn upgrade(State(state): State<AppState>, mut req: Request) -> Response {
    let accept = match handshake::accept_key(req.headers()) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    if !state.origins.allows_websocket(
        req.headers().get(axum::http::header::ORIGIN),
        req.headers().get(axum::http::header::HOST),
    ) {
        return ApiError::OriginNotAllowed.into_response();
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        // HTTP/1.0 (or a protocol hyper cannot upgrade): RFC 6455 §4.1 needs 1.1.
        return handshake::Refused::Malformed("a WebSocket upgrade needs HTTP/1.1").into_response();
    };
    let query = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let token = query
        .get("token")
        .map(String::as_str)
        .or_else(|| bearer(req.headers()));
    let user = match token {
        Some(t) => state.auth.verify_user(t).await.ok(),
        None => None,
    };
    let Some(user) = user else {
        return ApiError::Unauthorized.into_response();
    };
    let cap = state.presence.limits.connections_per_user;
    let Some(admission) = state.presence.registry.admit(user.id, cap) else {
        return ApiError::TooManyConnections(cap).into_response();
    };
    let locale = state
        .presence
        .policies
        .locale(query.get("locale").map(String::as_str));
    let token = state.sessions.token();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("upgraded connection is not a TCP stream");
            return;
        };
        let tcp = parts.io.into_inner();
        session::run(
            tcp,
            parts.read_buf,
            state.presence,
            state.auth,
            user,
            locale,
            state.shutdown,
        )
        .await;
        drop((admission, token));
    });
    handshake::switching_protocols(accept)
}
