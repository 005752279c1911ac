//! Autobahn 7.x, the closing handshake: the server answers a close with a
//! close echoing the client's code and then ends the connection; nothing
//! after a close is read; a message sent with the close is still answered;
//! close payloads are checked (length, code, UTF-8 reason).

use super::*;

#[tokio::test]
async fn case_7_1_1_message_then_clean_close() {
    let mut ws = Ws::open("7.1.1").await;
    ws.send(&text(&ping_event("Hello World!"))).await;
    ws.expect_pong_event().await;
    ws.close_normally().await;
}

/// The client's close and something after it, in one write: the server
/// answers the close (echoing 1000) and nothing else.
async fn something_after_close(case: &'static str, after: Vec<u8>) {
    let mut ws = Ws::open(case).await;
    ws.send(&[close_frame(NORMAL, b""), after].concat()).await;
    ws.expect_close_reply(Some(NORMAL)).await;
}

#[tokio::test]
async fn case_7_1_2_close_twice() {
    something_after_close("7.1.2", frame(true, 0, OP_CLOSE, b"")).await;
}

#[tokio::test]
async fn case_7_1_3_ping_after_close() {
    something_after_close("7.1.3", frame(true, 0, OP_PING, b"")).await;
}

#[tokio::test]
async fn case_7_1_4_text_after_close() {
    something_after_close("7.1.4", text(&ping_event("Hello World!"))).await;
}

#[tokio::test]
async fn case_7_1_5_close_between_fragments() {
    let mut ws = Ws::open("7.1.5").await;
    let event = ping_event("fragment1fragment2");
    let (a, b) = event.split_at(10);
    let frames = [
        frame(false, 0, OP_TEXT, a),
        close_frame(NORMAL, b""),
        frame(true, 0, OP_CONT, b),
    ];
    ws.send(&frames.concat()).await;
    ws.expect_close_reply(Some(NORMAL)).await;
}

/// Autobahn only informs on 7.1.6 (a message processed before the close, or
/// not); the answer to a message sent with the close is what clients rely
/// on, so here it is required: Autobahn's OK branch. The 256 KiB junk text
/// is scaled to 10 KiB, under the default message limit.
#[tokio::test]
async fn case_7_1_6_messages_sent_with_the_close_are_answered_first() {
    let mut ws = Ws::open("7.1.6").await;
    let junk = b"BAsd7&jh23".repeat(1024);
    let frames = [
        text(&junk),
        text(&ping_event("Hello World!")),
        close_frame(NORMAL, b""),
        frame(true, 0, OP_PING, b""),
    ];
    ws.send(&frames.concat()).await;
    ws.expect_bad_request().await;
    ws.expect_pong_event().await;
    ws.expect_close_reply(Some(NORMAL)).await;
}

#[tokio::test]
async fn case_7_3_1_close_without_payload() {
    let mut ws = Ws::open("7.3.1").await;
    ws.send(&frame(true, 0, OP_CLOSE, b"")).await;
    ws.expect_close_reply(None).await;
}

#[tokio::test]
async fn case_7_3_2_close_with_a_one_octet_payload() {
    let mut ws = Ws::open("7.3.2").await;
    ws.send(&frame(true, 0, OP_CLOSE, b"a")).await;
    ws.expect_close_reply(Some(PROTOCOL_ERROR)).await;
}

async fn echoed(case: impl Into<String>, code: u16, reason: &[u8]) {
    let mut ws = Ws::open(case).await;
    ws.send(&close_frame(code, reason)).await;
    ws.expect_close_reply(Some(code)).await;
}

#[tokio::test]
async fn case_7_3_3_close_with_code_only() {
    echoed("7.3.3", NORMAL, b"").await;
}

#[tokio::test]
async fn case_7_3_4_close_with_code_and_reason() {
    echoed("7.3.4", NORMAL, b"Hello World!").await;
}

#[tokio::test]
async fn case_7_3_5_close_with_code_and_123_octet_reason() {
    echoed("7.3.5", NORMAL, &[b'*'; 123]).await;
}

#[tokio::test]
async fn case_7_3_6_close_with_124_octet_reason_is_too_long() {
    let mut ws = Ws::open("7.3.6").await;
    ws.send(&close_frame(NORMAL, &[b'*'; 124])).await;
    ws.expect_close_reply(Some(PROTOCOL_ERROR)).await;
}

#[tokio::test]
async fn case_7_5_1_close_with_an_invalid_utf8_reason() {
    let mut ws = Ws::open("7.5.1").await;
    let reason =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
    ws.send(&close_frame(NORMAL, reason)).await;
    ws.expect_close_reply(Some(INVALID_PAYLOAD)).await;
}

/// 7.7.1–7.7.13: every code a client may send is echoed.
#[tokio::test]
async fn case_7_7_x_valid_close_codes_are_echoed() {
    let codes = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ];
    for (i, code) in codes.into_iter().enumerate() {
        echoed(format!("7.7.{} (code {code})", i + 1), code, b"").await;
    }
}

/// 7.9.1–7.9.9 and 7.13.1–7.13.2 (informational in Autobahn; refused here
/// as RFC 6455 §7.4 has no such codes): invalid codes fail with 1002.
#[tokio::test]
async fn case_7_9_x_and_7_13_x_invalid_close_codes_fail_with_1002() {
    let cases = [
        ("7.9.1", 0),
        ("7.9.2", 999),
        ("7.9.3", 1004),
        ("7.9.4", 1005),
        ("7.9.5", 1006),
        ("7.9.6", 1016),
        ("7.9.7", 1100),
        ("7.9.8", 2000),
        ("7.9.9", 2999),
        ("7.13.1", 5000),
        ("7.13.2", 65535),
        // Not in Autobahn: 1015 only ever describes a connection.
        ("RFC 6455 §7.4.1 (1015)", 1015),
    ];
    for (case, code) in cases {
        let mut ws = Ws::open(format!("{case} (code {code})")).await;
        ws.send(&close_frame(code, b"")).await;
        ws.expect_close_reply(Some(PROTOCOL_ERROR)).await;
    }
}
