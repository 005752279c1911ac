//! Autobahn 5.x, fragmentation: control frames are never fragmented, a
//! continuation needs a message to continue and a new message needs the
//! last one finished (all 1002); fragments are joined, written frame-wise
//! or octet-wise, with pings answered in between.

use super::*;

/// The ping event in two fragments.
fn two_fragments() -> (Vec<u8>, Vec<u8>) {
    let event = ping_event("fragment1fragment2");
    let (a, b) = event.split_at(event.len() / 2);
    (frame(false, 0, OP_TEXT, a), frame(true, 0, OP_CONT, b))
}

async fn fails(case: &'static str, frames: &[Vec<u8>], write: Write) {
    let mut ws = Ws::open(case).await;
    ws.send_frames(frames, write).await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_5_1_fragmented_ping() {
    let frames = [
        frame(false, 0, OP_PING, b"fragment1"),
        frame(true, 0, OP_CONT, b"fragment2"),
    ];
    fails("5.1", &frames, Write::Together).await;
}

#[tokio::test]
async fn case_5_2_fragmented_pong() {
    let frames = [
        frame(false, 0, OP_PONG, b"fragment1"),
        frame(true, 0, OP_CONT, b"fragment2"),
    ];
    fails("5.2", &frames, Write::Together).await;
}

async fn joined(case: &'static str, write: Write) {
    let mut ws = Ws::open(case).await;
    let (a, b) = two_fragments();
    ws.send_frames(&[a, b], write).await;
    ws.expect_pong_event().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_5_3_text_in_two_fragments() {
    joined("5.3", Write::Together).await;
}

#[tokio::test]
async fn case_5_4_text_in_two_fragments_frame_wise() {
    joined("5.4", Write::FrameWise).await;
}

#[tokio::test]
async fn case_5_5_text_in_two_fragments_octet_wise() {
    joined("5.5", Write::OctetWise).await;
}

async fn ping_in_between(case: &'static str, write: Write) {
    let mut ws = Ws::open(case).await;
    let (a, b) = two_fragments();
    let ping = frame(true, 0, OP_PING, b"ping payload");
    ws.send_frames(&[a, ping, b], write).await;
    ws.expect_pong(b"ping payload").await;
    ws.expect_pong_event().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_5_6_text_in_two_fragments_with_a_ping_between() {
    ping_in_between("5.6", Write::Together).await;
}

#[tokio::test]
async fn case_5_7_text_in_two_fragments_with_a_ping_between_frame_wise() {
    ping_in_between("5.7", Write::FrameWise).await;
}

#[tokio::test]
async fn case_5_8_text_in_two_fragments_with_a_ping_between_octet_wise() {
    ping_in_between("5.8", Write::OctetWise).await;
}

fn continuation_first(fin: bool) -> [Vec<u8>; 2] {
    [
        frame(fin, 0, OP_CONT, b"non-continuation payload"),
        text(&ping_event("")),
    ]
}

#[tokio::test]
async fn case_5_9_unstarted_final_continuation() {
    fails("5.9", &continuation_first(true), Write::Together).await;
}

#[tokio::test]
async fn case_5_10_unstarted_final_continuation_frame_wise() {
    fails("5.10", &continuation_first(true), Write::FrameWise).await;
}

#[tokio::test]
async fn case_5_11_unstarted_final_continuation_octet_wise() {
    fails("5.11", &continuation_first(true), Write::OctetWise).await;
}

#[tokio::test]
async fn case_5_12_unstarted_continuation() {
    fails("5.12", &continuation_first(false), Write::Together).await;
}

#[tokio::test]
async fn case_5_13_unstarted_continuation_frame_wise() {
    fails("5.13", &continuation_first(false), Write::FrameWise).await;
}

#[tokio::test]
async fn case_5_14_unstarted_continuation_octet_wise() {
    fails("5.14", &continuation_first(false), Write::OctetWise).await;
}

#[tokio::test]
async fn case_5_15_a_message_then_a_continuation_of_nothing() {
    let mut ws = Ws::open("5.15").await;
    let (a, b) = two_fragments();
    let frames = [
        a,
        b,
        frame(false, 0, OP_CONT, b"fragment3"),
        frame(true, 0, OP_TEXT, b"fragment4"),
    ];
    ws.send_frames(&frames, Write::Together).await;
    ws.expect_pong_event().await;
    ws.expect_failed(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_5_16_continuation_then_text_twice() {
    let frames: Vec<Vec<u8>> = (0..2)
        .flat_map(|_| {
            [
                frame(false, 0, OP_CONT, b"fragment1"),
                frame(false, 0, OP_TEXT, b"fragment2"),
                frame(true, 0, OP_CONT, b"fragment3"),
            ]
        })
        .collect();
    fails("5.16", &frames, Write::Together).await;
}

#[tokio::test]
async fn case_5_17_final_continuation_then_text_twice() {
    let frames: Vec<Vec<u8>> = (0..2)
        .flat_map(|_| {
            [
                frame(true, 0, OP_CONT, b"fragment1"),
                frame(false, 0, OP_TEXT, b"fragment2"),
                frame(true, 0, OP_CONT, b"fragment3"),
            ]
        })
        .collect();
    fails("5.17", &frames, Write::Together).await;
}

#[tokio::test]
async fn case_5_18_text_fragment_then_text_again() {
    let frames = [
        frame(false, 0, OP_TEXT, b"fragment1"),
        frame(true, 0, OP_TEXT, b"fragment2"),
    ];
    fails("5.18", &frames, Write::Together).await;
}

/// Five fragments with two pings in between; the first ping is answered
/// before the message is complete (Autobahn waits a second there; here the
/// pong itself is awaited before the rest is sent).
async fn pings_while_fragmented(case: &'static str, write: Write) {
    let mut ws = Ws::open(case).await;
    let event = ping_event("fragment1fragment2fragment3fragment4fragment5");
    let parts: Vec<&[u8]> = event.chunks(event.len().div_ceil(5)).collect();
    assert_eq!(parts.len(), 5);
    let first = [
        frame(false, 0, OP_TEXT, parts[0]),
        frame(false, 0, OP_CONT, parts[1]),
        frame(true, 0, OP_PING, b"pongme 1!"),
    ];
    ws.send_frames(&first, write).await;
    ws.expect_pong(b"pongme 1!").await;
    let rest = [
        frame(false, 0, OP_CONT, parts[2]),
        frame(false, 0, OP_CONT, parts[3]),
        frame(true, 0, OP_PING, b"pongme 2!"),
        frame(true, 0, OP_CONT, parts[4]),
    ];
    ws.send_frames(&rest, write).await;
    ws.expect_pong(b"pongme 2!").await;
    ws.expect_pong_event().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_5_19_pings_between_five_fragments() {
    pings_while_fragmented("5.19", Write::Together).await;
}

#[tokio::test]
async fn case_5_20_pings_between_five_fragments_frame_wise() {
    pings_while_fragmented("5.20", Write::FrameWise).await;
}
