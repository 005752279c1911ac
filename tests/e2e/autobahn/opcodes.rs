//! Autobahn 4.x, opcodes: reserved non-control (3–7) and control (11–15)
//! opcodes fail the connection with 1002; a message before them is still
//! answered, and a ping after them is not.

use super::*;

async fn reserved_alone(case: &'static str, opcode: u8, payload: &[u8]) {
    let mut ws = Ws::open(case).await;
    ws.send(&frame(true, 0, opcode, payload)).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

async fn after_a_message(case: &'static str, opcode: u8, payload: &[u8], octet_wise: bool) {
    let mut ws = Ws::open(case).await;
    let bytes = [
        text(&ping_event("")),
        frame(true, 0, opcode, payload),
        frame(true, 0, OP_PING, b""),
    ]
    .concat();
    if octet_wise {
        ws.send_chopped(&bytes, 1).await;
    } else {
        ws.send(&bytes).await;
    }
    ws.expect_pong_event().await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_4_1_1_opcode_3() {
    reserved_alone("4.1.1", 3, b"").await;
}

#[tokio::test]
async fn case_4_1_2_opcode_4_with_payload() {
    reserved_alone("4.1.2", 4, b"reserved opcode payload").await;
}

#[tokio::test]
async fn case_4_1_3_text_then_opcode_5_then_ping() {
    after_a_message("4.1.3", 5, b"", false).await;
}

#[tokio::test]
async fn case_4_1_4_text_then_opcode_6_with_payload_then_ping() {
    after_a_message("4.1.4", 6, b"Hello, world!", false).await;
}

#[tokio::test]
async fn case_4_1_5_text_then_opcode_7_then_ping_octet_wise() {
    after_a_message("4.1.5", 7, b"Hello, world!", true).await;
}

#[tokio::test]
async fn case_4_2_1_opcode_11() {
    reserved_alone("4.2.1", 11, b"").await;
}

#[tokio::test]
async fn case_4_2_2_opcode_12_with_payload() {
    reserved_alone("4.2.2", 12, b"reserved opcode payload").await;
}

#[tokio::test]
async fn case_4_2_3_text_then_opcode_13_then_ping() {
    after_a_message("4.2.3", 13, b"", false).await;
}

#[tokio::test]
async fn case_4_2_4_text_then_opcode_14_with_payload_then_ping() {
    after_a_message("4.2.4", 14, b"Hello, world!", false).await;
}

#[tokio::test]
async fn case_4_2_5_text_then_opcode_15_then_ping_octet_wise() {
    after_a_message("4.2.5", 15, b"Hello, world!", true).await;
}
