//! Autobahn 1.x, framing: text (1.1) and binary (1.2) messages of every
//! length encoding (7-bit, 16-bit and 64-bit), whole or in 997-octet chops.
//! The 64 KiB cases run on the roomy server, the default one refusing
//! messages over 16 KiB with 1009 (see `limits`). Plus RFC 6455 §5.1: a
//! client frame must be masked.

use super::*;

/// A text message of `len` bytes, in chops of `chop` octets: echoed.
async fn text_case(case: &'static str, len: usize, chop: Option<usize>) {
    let server = if len > 16 * 1024 {
        Server::Roomy
    } else {
        Server::Default
    };
    let mut ws = Ws::open_on(server, case).await;
    let (payload, want) = text_of_len(len);
    let f = text(&payload);
    match chop {
        Some(c) => ws.send_chopped(&f, c).await,
        None => ws.send(&f).await,
    }
    ws.expect(want).await;
    ws.close_normally().await;
}

/// A binary message of `len` bytes: answered with `bad_request`.
async fn binary_case(case: &'static str, len: usize, chop: Option<usize>) {
    let server = if len > 16 * 1024 {
        Server::Roomy
    } else {
        Server::Default
    };
    let mut ws = Ws::open_on(server, case).await;
    let f = frame(true, 0, OP_BINARY, &vec![0xFE; len]);
    match chop {
        Some(c) => ws.send_chopped(&f, c).await,
        None => ws.send(&f).await,
    }
    ws.expect_bad_request().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_1_1_1_text_empty() {
    text_case("1.1.1", 0, None).await;
}

#[tokio::test]
async fn case_1_1_2_text_125() {
    text_case("1.1.2", 125, None).await;
}

#[tokio::test]
async fn case_1_1_3_text_126() {
    text_case("1.1.3", 126, None).await;
}

#[tokio::test]
async fn case_1_1_4_text_127() {
    text_case("1.1.4", 127, None).await;
}

#[tokio::test]
async fn case_1_1_5_text_128() {
    text_case("1.1.5", 128, None).await;
}

#[tokio::test]
async fn case_1_1_6_text_65535() {
    text_case("1.1.6", 65535, None).await;
}

#[tokio::test]
async fn case_1_1_7_text_65536() {
    text_case("1.1.7", 65536, None).await;
}

#[tokio::test]
async fn case_1_1_8_text_65536_in_997_octet_chops() {
    text_case("1.1.8", 65536, Some(997)).await;
}

#[tokio::test]
async fn case_1_2_1_binary_empty() {
    binary_case("1.2.1", 0, None).await;
}

#[tokio::test]
async fn case_1_2_2_binary_125() {
    binary_case("1.2.2", 125, None).await;
}

#[tokio::test]
async fn case_1_2_3_binary_126() {
    binary_case("1.2.3", 126, None).await;
}

#[tokio::test]
async fn case_1_2_4_binary_127() {
    binary_case("1.2.4", 127, None).await;
}

#[tokio::test]
async fn case_1_2_5_binary_128() {
    binary_case("1.2.5", 128, None).await;
}

#[tokio::test]
async fn case_1_2_6_binary_65535() {
    binary_case("1.2.6", 65535, None).await;
}

#[tokio::test]
async fn case_1_2_7_binary_65536() {
    binary_case("1.2.7", 65536, None).await;
}

#[tokio::test]
async fn case_1_2_8_binary_65536_in_997_octet_chops() {
    binary_case("1.2.8", 65536, Some(997)).await;
}

#[tokio::test]
async fn rfc_5_1_an_unmasked_client_frame_fails_the_connection() {
    let mut ws = Ws::open("RFC 6455 §5.1").await;
    // Mask bit clear, no masking key: the payload goes out as is.
    let payload = ping_event("");
    let mut f = vec![0x80 | OP_TEXT, payload.len() as u8];
    f.extend_from_slice(&payload);
    ws.send(&f).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}
