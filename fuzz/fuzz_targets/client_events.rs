//! The client-event decoder (`presence::protocol::ClientEvent::parse`) on
//! arbitrary text, as a WebSocket text frame would carry it.
//!
//! Asserts: no panic; an accepted event's kind is the frame's `type`, its
//! `data` (when it has any) is an object, and the event written back as the
//! SPEC's JSON parses to the same event; a refused one names the frame's
//! `type` when it had one, and the `error` frame the session answers it
//! with is valid JSON carrying that name.

#![no_main]

use libfuzzer_sys::fuzz_target;
use presence::protocol::{BadFrame, ClientEvent, ManualStatus, error_frame};
use serde_json::{Value, json};

/// The event as the SPEC (§4, §10) says a client writes it.
fn encode(event: &ClientEvent) -> String {
    let data = match event {
        ClientEvent::TypingStart {
            conversation_id,
            user_id,
        }
        | ClientEvent::TypingStop {
            conversation_id,
            user_id,
        } => match user_id {
            Some(u) => json!({"conversation_id": conversation_id, "user_id": u}),
            None => json!({"conversation_id": conversation_id}),
        },
        ClientEvent::SetStatus { status } => json!({"status": match status {
            ManualStatus::Online => "online",
            ManualStatus::Away => "away",
        }}),
        ClientEvent::Activity | ClientEvent::Ping => json!({}),
        ClientEvent::Auth { token } => json!({"token": token}),
    };
    json!({"type": event.kind(), "data": data}).to_string()
}

fuzz_target!(|text: &str| {
    // The frame as strict JSON. serde_json skips the fields a struct ignores
    // without decoding them, so a frame whose unknown field holds a lone
    // surrogate (`"\uDBBB"`) is read though it is no `Value`: then there is
    // nothing to compare with.
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        if let Err(bad) = ClientEvent::parse(text) {
            error_answer(&bad);
        }
        return;
    };
    let frame_type = frame["type"].as_str();
    match ClientEvent::parse(text) {
        Ok(event) => {
            assert_eq!(Some(event.kind()), frame_type);
            if !matches!(event, ClientEvent::Activity | ClientEvent::Ping) {
                let data = &frame["data"];
                assert!(data.is_object(), "data is an object, not {data}");
            }
            let again = ClientEvent::parse(&encode(&event)).expect("a re-encoded event parses");
            assert_eq!(again, event);
        }
        Err(bad) => {
            if bad.ref_type.is_some() {
                assert_eq!(
                    bad.ref_type.as_deref(),
                    frame_type,
                    "ref_type is the frame's type"
                );
            }
            error_answer(&bad);
        }
    }
});

/// The `error` frame the session answers a refused frame with is JSON that
/// carries the refused frame's type.
fn error_answer(bad: &BadFrame) {
    let answer = error_frame("bad_request", &bad.message, bad.ref_type.as_deref());
    let answer: Value = serde_json::from_slice(answer.as_bytes()).expect("the error frame is JSON");
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["data"]["code"], "bad_request");
    assert_eq!(answer["data"]["ref_type"].as_str(), bad.ref_type.as_deref());
}
