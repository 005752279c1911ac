//! The server side of the RFC 6455 opening handshake: which requests may
//! become a WebSocket, the `101 Switching Protocols` answer, and what the
//! others get (SPEC §8: the REST envelope).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::error::ApiError;

/// The only protocol version there is (RFC 6455 §4.1).
const VERSION: &str = "13";

/// Why a request cannot become a WebSocket.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid RFC 6455 upgrade request: 400, and why.
    Malformed(&'static str),
    /// Another protocol version, or none: 426 naming version 13 (§4.2.2).
    Version,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Malformed(why) => ApiError::BadRequest(why.to_owned()).into_response(),
            Refused::Version => {
                let mut res = ApiError::WebSocketVersion.into_response();
                let headers = res.headers_mut();
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static(VERSION),
                );
                // A 426 names the protocol to upgrade to (RFC 9110 §15.5.22).
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                res
            }
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a valid RFC 6455 request (§4.2.1).
pub fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, Refused> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(Refused::Malformed(
            "the Connection header does not include 'upgrade'",
        ));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(Refused::Malformed(
            "the Upgrade header does not include 'websocket'",
        ));
    }
    if !headers.contains_key(header::HOST) {
        return Err(Refused::Malformed("the Host header is missing"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(VERSION.as_bytes())
    {
        return Err(Refused::Version);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Refused::Malformed(
            "the Sec-WebSocket-Key header is missing",
        ));
    };
    if !is_16_bytes_in_base64(key.as_bytes()) {
        return Err(Refused::Malformed(
            "the Sec-WebSocket-Key header is not 16 bytes in base64",
        ));
    }
    let accept = derive_accept_key(key.as_bytes());
    Ok(HeaderValue::from_str(&accept).expect("base64 is a valid header value"))
}

/// Whether a `Sec-WebSocket-Key` is base64 of 16 bytes (§4.1): 22 base64
/// digits and the padding `==`.
fn is_16_bytes_in_base64(key: &[u8]) -> bool {
    let digit = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24 && key[..22].iter().all(digit) && key[22..] == *b"=="
}

/// The `101` answer that completes the handshake.
pub fn switching_protocols(accept: HeaderValue) -> Response {
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key(&request()).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_bad_key_is_malformed_and_another_version_is_refused_as_such() {
        for key in [
            "",
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ",
        ] {
            let mut h = request();
            h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static(key));
            assert!(
                matches!(accept_key(&h), Err(Refused::Malformed(_))),
                "{key:?}"
            );
        }
        let mut h = request();
        h.remove(header::SEC_WEBSOCKET_KEY);
        assert!(matches!(accept_key(&h), Err(Refused::Malformed(_))));
        let mut h = request();
        h.remove(header::HOST);
        assert!(matches!(accept_key(&h), Err(Refused::Malformed(_))));
        let mut h = request();
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(accept_key(&h), Err(Refused::Version));
        h.remove(header::SEC_WEBSOCKET_VERSION);
        assert_eq!(accept_key(&h), Err(Refused::Version));
    }
}
