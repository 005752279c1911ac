//! Autobahn 3.x, reserved bits: with no extension negotiated, any RSV bit
//! fails the connection with 1002; a message before the bad frame is still
//! answered, and a ping after it is not.

use super::*;

/// A message, then the same with `rsv` set, then a ping, written as
/// `write` says: the first is answered, then close 1002 and no pong.
async fn after_a_message(case: &'static str, rsv: u8, write: Write) {
    let mut ws = Ws::open(case).await;
    let frames = [
        text(&ping_event("")),
        frame(true, rsv, OP_TEXT, &ping_event("")),
        frame(true, 0, OP_PING, b""),
    ];
    match write {
        Write::Together => ws.send(&frames.concat()).await,
        Write::FrameWise => {
            for f in &frames {
                ws.send(f).await;
            }
        }
        Write::OctetWise => ws.send_chopped(&frames.concat(), 1).await,
    }
    ws.expect_pong_event().await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_3_1_text_with_rsv_1() {
    let mut ws = Ws::open("3.1").await;
    ws.send(&frame(true, 1, OP_TEXT, b"Hello, world!")).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_3_2_text_then_rsv_2_then_ping() {
    after_a_message("3.2", 2, Write::Together).await;
}

#[tokio::test]
async fn case_3_3_text_then_rsv_3_then_ping_frame_wise() {
    after_a_message("3.3", 3, Write::FrameWise).await;
}

#[tokio::test]
async fn case_3_4_text_then_rsv_4_then_ping_octet_wise() {
    after_a_message("3.4", 4, Write::OctetWise).await;
}

#[tokio::test]
async fn case_3_5_binary_with_rsv_5() {
    let mut ws = Ws::open("3.5").await;
    ws.send(&frame(
        true,
        5,
        OP_BINARY,
        b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff",
    ))
    .await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_3_6_ping_with_rsv_6() {
    let mut ws = Ws::open("3.6").await;
    ws.send(&frame(true, 6, OP_PING, b"Hello, world!")).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_3_7_close_with_rsv_7() {
    let mut ws = Ws::open("3.7").await;
    ws.send(&frame(true, 7, OP_CLOSE, b"")).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}
