//! RFC 6455 §4, the opening handshake as the server must play it: which
//! requests become a WebSocket (`101` with the right `Sec-WebSocket-Accept`,
//! no subprotocol or extension the server does not speak) and what the
//! others get: `400` with the SPEC §8 envelope for a malformed request,
//! `426` naming version 13 for another protocol version, `401` without a
//! token.

use serde_json::Value;
use tokio::net::TcpStream;

use super::*;

/// An HTTP answer: status, headers (names lower-cased) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The connection, for what follows a 101.
    ws: Ws,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A refusal in the SPEC envelope with this status and code.
    fn assert_refused(&self, case: &str, status: u16, code: &str) {
        assert_eq!(self.status, status, "{case}: status; body {}", self.body);
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{case}: a JSON body ({e}): {:?}", self.body));
        assert_eq!(v["success"], false, "{case}: {v}");
        assert_eq!(v["error"]["code"], code, "{case}: {v}");
        assert!(v["error"]["message"].is_string(), "{case}: {v}");
    }
}

/// Sends raw request bytes on a new connection and reads the answer.
async fn request(case: &str, raw: &[u8]) -> Answer {
    let addr = Server::Default.addr();
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let mut ws = Ws {
        case: case.to_owned(),
        tcp,
        buf: Vec::new(),
    };
    ws.send(raw).await;
    let head = ws.read_head().await;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{case}: a status line, got {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while ws.buf.len() < len {
        assert!(ws.fill().await, "{case}: the whole body");
    }
    let body = String::from_utf8(ws.buf.drain(..len).collect()).expect("a UTF-8 body");
    Answer {
        status,
        headers,
        body,
        ws,
    }
}

/// An upgrade request for a fresh user, with `edit` applied to its lines.
async fn upgrade(case: &str, edit: impl FnOnce(&mut Vec<String>)) -> Answer {
    let addr = Server::Default.addr();
    let token = user_token(addr).await;
    let mut lines: Vec<String> = upgrade_request(addr, &token, &[])
        .trim_end()
        .split("\r\n")
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let raw = format!("{}\r\n\r\n", lines.join("\r\n"));
    request(case, raw.as_bytes()).await
}

fn without(lines: &mut Vec<String>, name: &str) {
    lines.retain(|l| !l.to_ascii_lowercase().starts_with(&format!("{name}:")));
}

fn replace(lines: &mut Vec<String>, name: &str, value: &str) {
    without(lines, &name.to_ascii_lowercase());
    lines.push(format!("{name}: {value}"));
}

#[tokio::test]
async fn rfc_4_2_2_a_valid_request_is_switched_with_the_accept_key() {
    let a = upgrade("§4.2.2", |_| {}).await;
    assert_eq!(a.status, 101);
    // RFC 6455 §1.3's worked example.
    assert_eq!(
        a.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert!(
        a.header("upgrade")
            .unwrap()
            .eq_ignore_ascii_case("websocket")
    );
    assert!(
        a.header("connection")
            .unwrap()
            .eq_ignore_ascii_case("upgrade")
    );
    let mut ws = a.ws;
    assert!(matches!(ws.next().await, Got::Text(v) if v["type"] == "ready"));
    ws.close_normally().await;
}

#[tokio::test]
async fn rfc_4_2_1_header_tokens_are_case_insensitive_and_may_be_listed() {
    let a = upgrade("§4.2.1 tokens", |l| {
        replace(l, "Connection", "keep-alive, Upgrade");
        replace(l, "Upgrade", "WebSocket");
    })
    .await;
    assert_eq!(a.status, 101, "{}", a.body);
}

#[tokio::test]
async fn rfc_4_2_1_no_upgrade_or_connection_token_is_refused_with_400() {
    let a = upgrade("§4.2.1 Upgrade", |l| without(l, "upgrade")).await;
    a.assert_refused("§4.2.1 Upgrade", 400, "bad_request");
    let a = upgrade("§4.2.1 Connection", |l| {
        replace(l, "Connection", "keep-alive")
    })
    .await;
    a.assert_refused("§4.2.1 Connection", 400, "bad_request");
}

#[tokio::test]
async fn rfc_4_2_1_a_missing_key_is_refused_with_400() {
    let a = upgrade("§4.2.1 no key", |l| without(l, "sec-websocket-key")).await;
    a.assert_refused("§4.2.1 no key", 400, "bad_request");
}

#[tokio::test]
async fn rfc_4_2_1_a_key_that_is_not_16_bytes_in_base64_is_refused_with_400() {
    let keys = [
        ("empty", ""),
        ("not base64", "not a base64 key!"),
        ("15 bytes", "AAAAAAAAAAAAAAAAAAAA"),
        ("17 bytes", "AAAAAAAAAAAAAAAAAAAAAAA="),
        ("16 bytes unpadded", "dGhlIHNhbXBsZSBub25jZQ"),
    ];
    for (what, key) in keys {
        let case = format!("§4.2.1 key {what}");
        let a = upgrade(&case, |l| replace(l, "Sec-WebSocket-Key", key)).await;
        a.assert_refused(&case, 400, "bad_request");
    }
}

#[tokio::test]
async fn rfc_4_2_2_another_version_gets_426_naming_version_13() {
    for version in [Some("8"), Some("12"), Some("14"), Some("thirteen"), None] {
        let case = format!("§4.2.2 version {version:?}");
        let a = upgrade(&case, |l| match version {
            Some(v) => replace(l, "Sec-WebSocket-Version", v),
            None => without(l, "sec-websocket-version"),
        })
        .await;
        a.assert_refused(&case, 426, "upgrade_required");
        assert_eq!(a.header("sec-websocket-version"), Some("13"), "{case}");
        // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
        assert_eq!(a.header("upgrade"), Some("websocket"), "{case}");
    }
}

#[tokio::test]
async fn rfc_4_2_1_a_request_without_host_is_refused_with_400() {
    let a = upgrade("§4.2.1 Host", |l| without(l, "host")).await;
    a.assert_refused("§4.2.1 Host", 400, "bad_request");
}

#[tokio::test]
async fn rfc_4_1_only_a_get_is_upgraded() {
    let a = upgrade("§4.1 method", |l| {
        l[0] = l[0].replacen("GET", "POST", 1);
    })
    .await;
    a.assert_refused("§4.1 method", 405, "method_not_allowed");
}

#[tokio::test]
async fn rfc_4_1_an_http_1_0_request_is_refused_with_400() {
    let a = upgrade("§4.1 HTTP/1.0", |l| {
        l[0] = l[0].replacen("HTTP/1.1", "HTTP/1.0", 1);
    })
    .await;
    a.assert_refused("§4.1 HTTP/1.0", 400, "bad_request");
}

#[tokio::test]
async fn rfc_4_2_1_without_a_token_the_upgrade_is_refused_with_401() {
    let a = upgrade("§4.2.1 token", |l| {
        l[0] = "GET /ws HTTP/1.1".into();
    })
    .await;
    a.assert_refused("§4.2.1 token", 401, "unauthorized");
}

#[tokio::test]
async fn rfc_4_2_2_no_subprotocol_or_extension_the_server_does_not_speak_is_chosen() {
    let case = "§4.2.2 protocol, extensions";
    let a = upgrade(case, |l| {
        l.push("Sec-WebSocket-Protocol: chat, superchat".into());
        l.push("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits".into());
    })
    .await;
    assert_eq!(a.status, 101, "{case}");
    assert_eq!(a.header("sec-websocket-protocol"), None, "{case}");
    assert_eq!(a.header("sec-websocket-extensions"), None, "{case}");
    let mut ws = a.ws;
    assert!(matches!(ws.next().await, Got::Text(v) if v["type"] == "ready"));
    // permessage-deflate was not agreed: a compressed (RSV1) frame fails.
    ws.send(&frame(true, 4, OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00"))
        .await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn rfc_4_2_2_frames_sent_right_behind_the_request_are_read() {
    let addr = Server::Default.addr();
    let token = user_token(addr).await;
    let mut raw = upgrade_request(addr, &token, &[]).into_bytes();
    raw.extend(text(&ping_event("early")));
    let a = request("§4.2.2 early frames", &raw).await;
    assert_eq!(a.status, 101);
    let mut ws = a.ws;
    assert!(matches!(ws.next().await, Got::Text(v) if v["type"] == "ready"));
    ws.expect_pong_event().await;
    ws.close_normally().await;
}
