//! Autobahn 9.x, limits and performance, scaled down. Autobahn sends text
//! and binary messages of up to 16 MiB and 1000-message round-trip series;
//! presence is a presence service whose clients send events of a few
//! hundred bytes, refuses messages over its limit (16 KiB by default, close
//! 1009) and rate-limits each connection (50 frames/s, bursts of 100). So:
//! - these cases run on the roomy server, whose limit is 1 MiB;
//! - every message size is Autobahn's divided by 16 (64 KiB–16 MiB become
//!   4 KiB–1 MiB, the largest exactly at the limit), fragment and chop sizes
//!   are kept (capped at the message size);
//! - 9.7 and 9.8 send 100 messages per series instead of 1000: the burst a
//!   connection may send before the rate limit answers `rate_limited`.
//!
//! The limit itself is checked at the end: one byte over it fails with 1009.

use super::*;

/// Autobahn's sizes, scaled down 16 times.
const fn scaled(autobahn: usize) -> usize {
    autobahn / 16
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// One message of `len` bytes, as one frame written in `chop`-octet writes
/// or as `fragment`-byte frames: answered (`pong` or `bad_request`).
async fn one_message(case: &'static str, binary: bool, len: usize, how: How) {
    let mut ws = Ws::open_on(Server::Roomy, case).await;
    let (payload, want) = if binary {
        (vec![0xFE; len], Expect::BadRequest)
    } else {
        text_of_len(len)
    };
    let opcode = if binary { OP_BINARY } else { OP_TEXT };
    match how {
        How::Whole => ws.send(&frame(true, 0, opcode, &payload)).await,
        How::Chops(chop) => {
            ws.send_chopped(&frame(true, 0, opcode, &payload), chop)
                .await
        }
        How::Fragments(size) => {
            let parts: Vec<&[u8]> = payload.chunks(size).collect();
            let last = parts.len() - 1;
            let frames: Vec<Vec<u8>> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| frame(i == last, 0, if i == 0 { opcode } else { OP_CONT }, p))
                .collect();
            ws.send(&frames.concat()).await;
        }
    }
    ws.expect(want).await;
    ws.close_normally().await;
}

#[derive(Clone, Copy)]
enum How {
    Whole,
    Chops(usize),
    Fragments(usize),
}

macro_rules! cases {
    ($($name:ident: $case:literal, $binary:expr, $len:expr, $how:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            one_message($case, $binary, $len, $how).await;
        }
    )*};
}

cases! {
    case_9_1_1_text_64k_scaled_to_4k: "9.1.1", false, scaled(64 * KIB), How::Whole;
    case_9_1_2_text_256k_scaled_to_16k: "9.1.2", false, scaled(256 * KIB), How::Whole;
    case_9_1_3_text_1m_scaled_to_64k: "9.1.3", false, scaled(MIB), How::Whole;
    case_9_1_4_text_4m_scaled_to_256k: "9.1.4", false, scaled(4 * MIB), How::Whole;
    case_9_1_5_text_8m_scaled_to_512k: "9.1.5", false, scaled(8 * MIB), How::Whole;
    case_9_1_6_text_16m_scaled_to_1m: "9.1.6", false, scaled(16 * MIB), How::Whole;
    case_9_2_1_binary_64k_scaled_to_4k: "9.2.1", true, scaled(64 * KIB), How::Whole;
    case_9_2_2_binary_256k_scaled_to_16k: "9.2.2", true, scaled(256 * KIB), How::Whole;
    case_9_2_3_binary_1m_scaled_to_64k: "9.2.3", true, scaled(MIB), How::Whole;
    case_9_2_4_binary_4m_scaled_to_256k: "9.2.4", true, scaled(4 * MIB), How::Whole;
    case_9_2_5_binary_8m_scaled_to_512k: "9.2.5", true, scaled(8 * MIB), How::Whole;
    case_9_2_6_binary_16m_scaled_to_1m: "9.2.6", true, scaled(16 * MIB), How::Whole;
    case_9_3_1_text_in_64_byte_fragments: "9.3.1", false, scaled(4 * MIB), How::Fragments(64);
    case_9_3_2_text_in_256_byte_fragments: "9.3.2", false, scaled(4 * MIB), How::Fragments(256);
    case_9_3_3_text_in_1k_fragments: "9.3.3", false, scaled(4 * MIB), How::Fragments(KIB);
    case_9_3_4_text_in_4k_fragments: "9.3.4", false, scaled(4 * MIB), How::Fragments(4 * KIB);
    case_9_3_5_text_in_16k_fragments: "9.3.5", false, scaled(4 * MIB), How::Fragments(16 * KIB);
    case_9_3_6_text_in_64k_fragments: "9.3.6", false, scaled(4 * MIB), How::Fragments(64 * KIB);
    case_9_3_7_text_in_256k_fragments: "9.3.7", false, scaled(4 * MIB), How::Fragments(256 * KIB);
    case_9_3_8_text_in_1m_fragments: "9.3.8", false, scaled(4 * MIB), How::Fragments(MIB);
    case_9_3_9_text_in_4m_fragments: "9.3.9", false, scaled(4 * MIB), How::Fragments(4 * MIB);
    case_9_4_1_binary_in_64_byte_fragments: "9.4.1", true, scaled(4 * MIB), How::Fragments(64);
    case_9_4_2_binary_in_256_byte_fragments: "9.4.2", true, scaled(4 * MIB), How::Fragments(256);
    case_9_4_3_binary_in_1k_fragments: "9.4.3", true, scaled(4 * MIB), How::Fragments(KIB);
    case_9_4_4_binary_in_4k_fragments: "9.4.4", true, scaled(4 * MIB), How::Fragments(4 * KIB);
    case_9_4_5_binary_in_16k_fragments: "9.4.5", true, scaled(4 * MIB), How::Fragments(16 * KIB);
    case_9_4_6_binary_in_64k_fragments: "9.4.6", true, scaled(4 * MIB), How::Fragments(64 * KIB);
    case_9_4_7_binary_in_256k_fragments: "9.4.7", true, scaled(4 * MIB), How::Fragments(256 * KIB);
    case_9_4_8_binary_in_1m_fragments: "9.4.8", true, scaled(4 * MIB), How::Fragments(MIB);
    case_9_4_9_binary_in_4m_fragments: "9.4.9", true, scaled(4 * MIB), How::Fragments(4 * MIB);
    case_9_5_1_text_in_64_octet_chops: "9.5.1", false, scaled(MIB), How::Chops(64);
    case_9_5_2_text_in_128_octet_chops: "9.5.2", false, scaled(MIB), How::Chops(128);
    case_9_5_3_text_in_256_octet_chops: "9.5.3", false, scaled(MIB), How::Chops(256);
    case_9_5_4_text_in_512_octet_chops: "9.5.4", false, scaled(MIB), How::Chops(512);
    case_9_5_5_text_in_1k_chops: "9.5.5", false, scaled(MIB), How::Chops(KIB);
    case_9_5_6_text_in_2k_chops: "9.5.6", false, scaled(MIB), How::Chops(2 * KIB);
    case_9_6_1_binary_in_64_octet_chops: "9.6.1", true, scaled(MIB), How::Chops(64);
    case_9_6_2_binary_in_128_octet_chops: "9.6.2", true, scaled(MIB), How::Chops(128);
    case_9_6_3_binary_in_256_octet_chops: "9.6.3", true, scaled(MIB), How::Chops(256);
    case_9_6_4_binary_in_512_octet_chops: "9.6.4", true, scaled(MIB), How::Chops(512);
    case_9_6_5_binary_in_1k_chops: "9.6.5", true, scaled(MIB), How::Chops(KIB);
    case_9_6_6_binary_in_2k_chops: "9.6.6", true, scaled(MIB), How::Chops(2 * KIB);
}

/// Messages per round-trip series (Autobahn: 1000), the rate limit's burst.
const SERIES: usize = 100;

/// 9.7.x / 9.8.x: `SERIES` messages of `len` bytes, each sent once the
/// answer to the one before has arrived.
async fn round_trips(case: &'static str, binary: bool, len: usize) {
    let mut ws = Ws::open_on(Server::Roomy, case).await;
    let (payload, want) = if binary {
        (vec![0xFE; len], Expect::BadRequest)
    } else {
        text_of_len(len)
    };
    let f = frame(true, 0, if binary { OP_BINARY } else { OP_TEXT }, &payload);
    for _ in 0..SERIES {
        ws.send(&f).await;
        ws.expect(want).await;
    }
    ws.close_normally().await;
}

macro_rules! series {
    ($($name:ident: $case:literal, $binary:expr, $len:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            round_trips($case, $binary, $len).await;
        }
    )*};
}

series! {
    case_9_7_1_text_round_trips_of_0_bytes: "9.7.1", false, 0;
    case_9_7_2_text_round_trips_of_16_bytes: "9.7.2", false, 16;
    case_9_7_3_text_round_trips_of_64_bytes: "9.7.3", false, 64;
    case_9_7_4_text_round_trips_of_256_bytes: "9.7.4", false, 256;
    case_9_7_5_text_round_trips_of_1k: "9.7.5", false, KIB;
    case_9_7_6_text_round_trips_of_4k: "9.7.6", false, 4 * KIB;
    case_9_8_1_binary_round_trips_of_0_bytes: "9.8.1", true, 0;
    case_9_8_2_binary_round_trips_of_16_bytes: "9.8.2", true, 16;
    case_9_8_3_binary_round_trips_of_64_bytes: "9.8.3", true, 64;
    case_9_8_4_binary_round_trips_of_256_bytes: "9.8.4", true, 256;
    case_9_8_5_binary_round_trips_of_1k: "9.8.5", true, KIB;
    case_9_8_6_binary_round_trips_of_4k: "9.8.6", true, 4 * KIB;
}

#[tokio::test]
async fn a_message_one_byte_over_the_limit_fails_with_1009() {
    let mut ws = Ws::open_on(Server::Roomy, "limit, whole").await;
    ws.send(&text(&vec![b'*'; ROOMY_MAX_MESSAGE + 1])).await;
    ws.expect_failed(TOO_BIG).await;
    let mut ws = Ws::open_on(Server::Roomy, "limit, fragmented").await;
    let half = vec![b'*'; ROOMY_MAX_MESSAGE / 2 + 1];
    let frames = [
        frame(false, 0, OP_TEXT, &half),
        frame(true, 0, OP_CONT, &half),
    ];
    ws.send(&frames.concat()).await;
    ws.expect_failed(TOO_BIG).await;
}
