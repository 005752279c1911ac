//! Autobahn 2.x, pings and pongs: every ping answered with a pong carrying
//! its payload, octet by octet or ten at once; unsolicited pongs ignored;
//! a control frame over 125 octets fails the connection.

use super::*;

async fn ping_case(case: &'static str, payload: &[u8], chop: Option<usize>) {
    let mut ws = Ws::open(case).await;
    let f = frame(true, 0, OP_PING, payload);
    match chop {
        Some(c) => ws.send_chopped(&f, c).await,
        None => ws.send(&f).await,
    }
    ws.expect_pong(payload).await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_2_1_ping_without_payload() {
    ping_case("2.1", b"", None).await;
}

#[tokio::test]
async fn case_2_2_ping_with_small_text_payload() {
    ping_case("2.2", b"Hello, world!", None).await;
}

#[tokio::test]
async fn case_2_3_ping_with_small_binary_payload() {
    ping_case("2.3", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", None).await;
}

#[tokio::test]
async fn case_2_4_ping_with_125_octets() {
    ping_case("2.4", &[0xFE; 125], None).await;
}

#[tokio::test]
async fn case_2_5_ping_with_126_octets_fails_the_connection() {
    let mut ws = Ws::open("2.5").await;
    ws.send(&frame(true, 0, OP_PING, &[0xFE; 126])).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_2_6_ping_with_125_octets_in_octet_chops() {
    ping_case("2.6", &[0xFE; 125], Some(1)).await;
}

#[tokio::test]
async fn case_2_7_unsolicited_pong_without_payload() {
    let mut ws = Ws::open("2.7").await;
    ws.send(&frame(true, 0, OP_PONG, b"")).await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_2_8_unsolicited_pong_with_payload() {
    let mut ws = Ws::open("2.8").await;
    ws.send(&frame(true, 0, OP_PONG, b"unsolicited pong payload"))
        .await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_2_9_unsolicited_pong_then_ping() {
    let mut ws = Ws::open("2.9").await;
    let mut bytes = frame(true, 0, OP_PONG, b"unsolicited pong payload");
    bytes.extend(frame(true, 0, OP_PING, b"ping payload"));
    ws.send(&bytes).await;
    ws.expect_pong(b"ping payload").await;
    ws.close_normally().await;
}

/// Ten pings, each written on its own (Autobahn's `sendFrame` per ping).
async fn ten_pings(case: &'static str, chop: Option<usize>) {
    let mut ws = Ws::open(case).await;
    for i in 0..10 {
        let f = frame(true, 0, OP_PING, format!("payload-{i}").as_bytes());
        match chop {
            Some(c) => ws.send_chopped(&f, c).await,
            None => ws.send(&f).await,
        }
    }
    for i in 0..10 {
        ws.expect_pong(format!("payload-{i}").as_bytes()).await;
    }
    ws.close_normally().await;
}

#[tokio::test]
async fn case_2_10_ten_pings() {
    ten_pings("2.10", None).await;
}

#[tokio::test]
async fn case_2_11_ten_pings_in_octet_chops() {
    ten_pings("2.11", Some(1)).await;
}

#[tokio::test]
async fn case_2_10_ten_pings_in_one_write_each_get_a_pong() {
    // The strictest form of 2.10: all ten arrive in one read.
    let mut ws = Ws::open("2.10 (one write)").await;
    let bytes: Vec<u8> = (0..10)
        .flat_map(|i| frame(true, 0, OP_PING, format!("payload-{i}").as_bytes()))
        .collect();
    ws.send(&bytes).await;
    for i in 0..10 {
        ws.expect_pong(format!("payload-{i}").as_bytes()).await;
    }
    ws.close_normally().await;
}
