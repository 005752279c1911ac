//! `GET /ws`: authenticates (`?token=` or `Authorization: Bearer`) before
//! upgrading, with small buffers and the frame size limit.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::bearer;
use crate::error::ApiError;
use crate::ws::session;

/// Read buffer per connection: tungstenite's 128 KiB default would dominate
/// the memory of an idle connection.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Bytes buffered before a write is pushed to the socket.
pub const WRITE_BUFFER_BYTES: usize = 4 * 1024;
/// Longest locale tag accepted from `?locale=`.
const MAX_LOCALE_LEN: usize = 35;

pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = query
        .get("token")
        .map(String::as_str)
        .or_else(|| bearer(&headers));
    let Some(user) = token.and_then(|t| state.auth.verify_user(t).ok()) else {
        return ApiError::Unauthorized.into_response();
    };
    let locale: Arc<str> = query
        .get("locale")
        .filter(|l| !l.is_empty() && l.len() <= MAX_LOCALE_LEN)
        .map(|l| Arc::from(l.as_str()))
        .unwrap_or_else(|| Arc::from("en"));
    let max = state.presence.limits.max_frame_bytes;
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let token = state.sessions.token();
            async move {
                session::run(socket, state.presence, user, locale, state.shutdown).await;
                drop(token);
            }
        })
}
