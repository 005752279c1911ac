//! Autobahn 6.x, UTF-8 handling: text is UTF-8 or the connection fails with
//! 1007, however the message is split into frames or TCP writes, and fails
//! as soon as the bytes so far cannot start valid UTF-8 (6.4). Cases 6.5 to
//! 6.23 are Autobahn's table (Markus Kuhn's UTF-8 decoder test), one test
//! per group, each vector on its own connection and named by its case
//! number in assertion messages.
//!
//! A valid payload is carried in the `pad` of a `ping` event (JSON-escaped
//! where JSON requires it) and answered with `pong`; an invalid one is put
//! there raw, so the text frame holds exactly the bytes under test.

use super::*;

/// The text of a `ping` event whose pad holds `bytes`: escaped by JSON if
/// they are UTF-8, else as they are.
fn event_with(bytes: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(s) => ping_event(s),
        Err(_) => [
            &br#"{"type":"ping","data":{"pad":""#[..],
            bytes,
            &br#""}}"#[..],
        ]
        .concat(),
    }
}

/// The message whole (6.2.1, 6.3.1, 6.5–6.23) or one octet per frame (6.2.3,
/// 6.2.4, 6.3.2): answered with `pong` if `bytes` are UTF-8, else failed 1007.
async fn utf8_case(case: String, bytes: &[u8], one_octet_frames: bool) {
    let valid = std::str::from_utf8(bytes).is_ok();
    let mut ws = Ws::open(case).await;
    let event = event_with(bytes);
    if one_octet_frames {
        let last = event.len() - 1;
        let frames: Vec<Vec<u8>> = event
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let op = if i == 0 { OP_TEXT } else { OP_CONT };
                frame(i == last, 0, op, &[*b])
            })
            .collect();
        ws.send(&frames.concat()).await;
    } else {
        ws.send(&text(&event)).await;
    }
    if valid {
        ws.expect_pong_event().await;
        ws.close_normally().await;
    } else {
        ws.expect_failed(INVALID_PAYLOAD).await;
    }
}

const HELLO: &str = "Hello-µ@ßöäüàá-UTF-8!!";
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
/// κόσμε, a lone surrogate (invalid exactly at its second byte), "edited".
const KOSME_SURROGATE: &[u8] =
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";

#[tokio::test]
async fn case_6_1_1_empty_text() {
    let mut ws = Ws::open("6.1.1").await;
    ws.send(&text(b"")).await;
    ws.expect_bad_request().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_6_1_2_three_empty_fragments() {
    let mut ws = Ws::open("6.1.2").await;
    let frames = [
        frame(false, 0, OP_TEXT, b""),
        frame(false, 0, OP_CONT, b""),
        frame(true, 0, OP_CONT, b""),
    ];
    ws.send(&frames.concat()).await;
    ws.expect_bad_request().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_6_1_3_empty_fragments_around_a_payload() {
    let mut ws = Ws::open("6.1.3").await;
    let frames = [
        frame(false, 0, OP_TEXT, b""),
        frame(false, 0, OP_CONT, &ping_event("middle frame payload")),
        frame(true, 0, OP_CONT, b""),
    ];
    ws.send(&frames.concat()).await;
    ws.expect_pong_event().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_6_2_1_valid_utf8_in_one_fragment() {
    utf8_case("6.2.1".into(), HELLO.as_bytes(), false).await;
}

#[tokio::test]
async fn case_6_2_2_valid_utf8_in_two_fragments_split_on_a_code_point() {
    let mut ws = Ws::open("6.2.2").await;
    let event = ping_event(HELLO);
    // Right after "ä", the boundary Autobahn splits on.
    let at = event.windows(2).position(|w| w == "ä".as_bytes()).unwrap() + 2;
    let frames = [
        frame(false, 0, OP_TEXT, &event[..at]),
        frame(true, 0, OP_CONT, &event[at..]),
    ];
    ws.send(&frames.concat()).await;
    ws.expect_pong_event().await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_6_2_3_valid_utf8_in_one_octet_fragments() {
    utf8_case("6.2.3".into(), HELLO.as_bytes(), true).await;
}

#[tokio::test]
async fn case_6_2_4_valid_kosme_in_one_octet_fragments() {
    utf8_case("6.2.4".into(), KOSME, true).await;
}

#[tokio::test]
async fn case_6_3_1_invalid_utf8_in_one_fragment() {
    utf8_case("6.3.1".into(), KOSME_SURROGATE, false).await;
}

#[tokio::test]
async fn case_6_3_2_invalid_utf8_in_one_octet_fragments() {
    utf8_case("6.3.2".into(), KOSME_SURROGATE, true).await;
}

/// 6.4: a text message whose first part is valid and whose second part
/// makes it invalid: the server fails the connection on the second part,
/// before the third (the rest of the message) is ever sent.
async fn fails_fast(case: &'static str, parts: [&[u8]; 3], as_frames: bool) {
    let mut ws = Ws::open(case).await;
    let head = br#"{"type":"ping","data":{"pad":""#;
    let first = [&head[..], parts[0]].concat();
    if as_frames {
        ws.send(&frame(false, 0, OP_TEXT, &first)).await;
        // Autobahn waits a second for no close here; a pong shows it.
        ws.expect_open().await;
        ws.send(&frame(false, 0, OP_CONT, parts[1])).await;
    } else {
        // One frame whose payload arrives in writes; the third never goes.
        let payload = [&first[..], parts[1], parts[2], b"\"}}"].concat();
        let f = frame(true, 0, OP_TEXT, &payload);
        let first_end = f.len() - payload.len() + first.len();
        ws.send(&f[..first_end]).await;
        ws.send(&f[first_end..first_end + parts[1].len()]).await;
    }
    ws.expect_failed(INVALID_PAYLOAD).await;
}

/// κόσμε, then U+110000 (not a code point), then "edited".
const PART1: &[u8] = KOSME;
const PART2: &[u8] = b"\xf4\x90\x80\x80";
const PART3: &[u8] = b"edited";
/// The same bytes, the second part being only the octet (0x90) after which
/// no valid UTF-8 can follow.
const SPLIT_ON_THE_BAD_OCTET: [&[u8]; 3] = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
    b"\x90",
    b"\x80\x80edited",
];

#[tokio::test]
async fn case_6_4_1_invalid_second_fragment_fails_fast() {
    fails_fast("6.4.1", [PART1, PART2, PART3], true).await;
}

#[tokio::test]
async fn case_6_4_2_invalid_octet_in_second_fragment_fails_fast() {
    // The second fragment is only the octet that makes the text invalid.
    fails_fast("6.4.2", SPLIT_ON_THE_BAD_OCTET, true).await;
}

#[tokio::test]
async fn case_6_4_3_invalid_second_chop_of_one_frame_fails_fast() {
    fails_fast("6.4.3", [PART1, PART2, PART3], false).await;
}

#[tokio::test]
async fn case_6_4_4_invalid_octet_in_second_chop_of_one_frame_fails_fast() {
    fails_fast("6.4.4", SPLIT_ON_THE_BAD_OCTET, false).await;
}

/// Runs every vector of an Autobahn 6.x group on its own connection.
async fn group(number: u32, vectors: Vec<Vec<u8>>) {
    for (i, bytes) in vectors.iter().enumerate() {
        utf8_case(format!("6.{number}.{}", i + 1), bytes, false).await;
    }
}

fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|b| b.to_vec()).collect()
}

#[tokio::test]
async fn case_6_5_some_valid_utf8_sequences() {
    group(
        5,
        v(&[
            b"hello\x24world",
            b"hello\xC2\xA2world",
            b"hello\xE2\x82\xACworld",
            b"hello\xF0\xA4\xAD\xA2world",
            KOSME,
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_6_all_prefixes_of_a_valid_multi_byte_string() {
    group(6, (1..=KOSME.len()).map(|i| KOSME[..i].to_vec()).collect()).await;
}

#[tokio::test]
async fn case_6_7_first_possible_sequence_of_each_length() {
    group(
        7,
        v(&[b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"]),
    )
    .await;
}

#[tokio::test]
async fn case_6_8_first_possible_sequence_of_length_5_and_6() {
    group(
        8,
        v(&[b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]),
    )
    .await;
}

#[tokio::test]
async fn case_6_9_last_possible_sequence_of_each_length() {
    group(
        9,
        v(&[b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]),
    )
    .await;
}

#[tokio::test]
async fn case_6_10_last_possible_sequence_of_length_4_to_6() {
    group(
        10,
        v(&[
            b"\xf7\xbf\xbf\xbf",
            b"\xfb\xbf\xbf\xbf\xbf",
            b"\xfd\xbf\xbf\xbf\xbf\xbf",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_11_other_boundary_conditions() {
    group(
        11,
        v(&[
            b"\xed\x9f\xbf",
            b"\xee\x80\x80",
            b"\xef\xbf\xbd",
            b"\xf4\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_12_unexpected_continuation_bytes() {
    let mut vectors = v(&[
        b"\x80",
        b"\xbf",
        b"\x80\xbf",
        b"\x80\xbf\x80",
        b"\x80\xbf\x80\xbf",
        b"\x80\xbf\x80\xbf\x80",
        b"\x80\xbf\x80\xbf\x80\xbf",
    ]);
    vectors.push((0x80..0xbf).collect());
    group(12, vectors).await;
}

#[tokio::test]
async fn case_6_13_lonely_start_characters() {
    let ranges = [
        (0xc0, 0xdf),
        (0xe0, 0xef),
        (0xf0, 0xf7),
        (0xf8, 0xfb),
        (0xfc, 0xfd),
    ];
    let vectors = ranges
        .iter()
        .map(|&(from, to)| (from..to).flat_map(|b: u8| [b, 0x20]).collect())
        .collect();
    group(13, vectors).await;
}

const MISSING_LAST: [&[u8]; 10] = [
    b"\xc0",
    b"\xe0\x80",
    b"\xf0\x80\x80",
    b"\xf8\x80\x80\x80",
    b"\xfc\x80\x80\x80\x80",
    b"\xdf",
    b"\xef\xbf",
    b"\xf7\xbf\xbf",
    b"\xfb\xbf\xbf\xbf",
    b"\xfd\xbf\xbf\xbf\xbf",
];

#[tokio::test]
async fn case_6_14_sequences_with_the_last_continuation_byte_missing() {
    group(14, v(&MISSING_LAST)).await;
}

#[tokio::test]
async fn case_6_15_concatenated_incomplete_sequences() {
    group(15, vec![MISSING_LAST.concat()]).await;
}

#[tokio::test]
async fn case_6_16_impossible_bytes() {
    group(16, v(&[b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"])).await;
}

#[tokio::test]
async fn case_6_17_overlong_ascii() {
    group(
        17,
        v(&[
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf8\x80\x80\x80\xaf",
            b"\xfc\x80\x80\x80\x80\xaf",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_18_maximum_overlong_sequences() {
    group(
        18,
        v(&[
            b"\xc1\xbf",
            b"\xe0\x9f\xbf",
            b"\xf0\x8f\xbf\xbf",
            b"\xf8\x87\xbf\xbf\xbf",
            b"\xfc\x83\xbf\xbf\xbf\xbf",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_19_overlong_nul() {
    group(
        19,
        v(&[
            b"\xc0\x80",
            b"\xe0\x80\x80",
            b"\xf0\x80\x80\x80",
            b"\xf8\x80\x80\x80\x80",
            b"\xfc\x80\x80\x80\x80\x80",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_20_single_utf16_surrogates() {
    group(
        20,
        v(&[
            b"\xed\xa0\x80",
            b"\xed\xad\xbf",
            b"\xed\xae\x80",
            b"\xed\xaf\xbf",
            b"\xed\xb0\x80",
            b"\xed\xbe\x80",
            b"\xed\xbf\xbf",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_21_paired_utf16_surrogates() {
    group(
        21,
        v(&[
            b"\xed\xa0\x80\xed\xb0\x80",
            b"\xed\xa0\x80\xed\xbf\xbf",
            b"\xed\xad\xbf\xed\xb0\x80",
            b"\xed\xad\xbf\xed\xbf\xbf",
            b"\xed\xae\x80\xed\xb0\x80",
            b"\xed\xae\x80\xed\xbf\xbf",
            b"\xed\xaf\xbf\xed\xb0\x80",
            b"\xed\xaf\xbf\xed\xbf\xbf",
        ]),
    )
    .await;
}

#[tokio::test]
async fn case_6_22_non_character_code_points_are_valid() {
    let mut vectors = v(&[b"\xef\xbf\xbe", b"\xef\xbf\xbf"]);
    for z1 in [0xf0u8, 0xf1, 0xf2, 0xf3, 0xf4] {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            if z1 == 0xf4 && z2 != 0x8f {
                continue; // above U+10FFFF
            }
            for z3 in [0xbeu8, 0xbf] {
                if z1 == 0xf0 && z2 == 0x8f {
                    continue; // overlong
                }
                vectors.push(vec![z1, z2, 0xbf, z3]);
            }
        }
    }
    assert_eq!(vectors.len(), 34, "Autobahn's 6.22.1–6.22.34");
    group(22, vectors).await;
}

#[tokio::test]
async fn case_6_23_unicode_specials() {
    group(
        23,
        v(&[
            b"\xef\xbf\xb9",
            b"\xef\xbf\xba",
            b"\xef\xbf\xbb",
            b"\xef\xbf\xbc",
            b"\xef\xbf\xbd",
            b"\xef\xbf\xbe",
            b"\xef\xbf\xbf",
        ]),
    )
    .await;
}
