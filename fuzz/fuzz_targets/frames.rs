//! The WebSocket frame parser (`presence::ws::frame::Inbound`) fed a client
//! byte stream cut into arbitrary reads. Either raw bytes, or well-formed
//! masked client frames with arbitrary fields (so the fuzzer reaches
//! fragmentation and close codes without first guessing masks).
//!
//! Asserts: no panic; no text message longer than the limit; ping payloads
//! within 125 bytes; nothing after a close; and the same messages and the
//! same verdict however the stream is cut into reads.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use presence::ws::frame::{Inbound, Incoming, Violation};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The message size limit, small so the fuzzer meets it.
    max_message: u8,
    /// Lengths of the successive reads (0 ends the list: the rest at once).
    cuts: Vec<u8>,
    stream: Stream,
}

#[derive(Arbitrary, Debug)]
enum Stream {
    Raw(Vec<u8>),
    Frames(Vec<ClientFrame>),
}

#[derive(Arbitrary, Debug)]
struct ClientFrame {
    fin: bool,
    /// Reserved bits, usually zero.
    rsv: u8,
    opcode: u8,
    mask: [u8; 4],
    /// Which length encoding: shortest, or a needlessly long one.
    long_len: u8,
    payload: Vec<u8>,
}

impl ClientFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        let rsv = if self.rsv > 240 {
            (self.rsv & 7) << 4
        } else {
            0
        };
        out.push(if self.fin { 0x80 } else { 0 } | rsv | (self.opcode & 0x0F));
        let n = self.payload.len();
        match (n, self.long_len % 3) {
            (0..=125, 0) => out.push(0x80 | n as u8),
            (_, 0 | 1) if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&self.mask);
        out.extend(
            self.payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ self.mask[i & 3]),
        );
    }
}

/// Everything the parser said before it stopped, and why it stopped.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Incoming>,
    verdict: Result<(), Violation>,
}

/// Feeds `reads` one after the other as a session would: it stops at the
/// first violation or close.
fn run<'a>(max: usize, reads: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut inbound = Inbound::new(max);
    let mut messages = Vec::new();
    for read in reads {
        let before = messages.len();
        let verdict = inbound.push(read, &mut messages);
        if let Some(at) = messages[before..]
            .iter()
            .position(|m| matches!(m, Incoming::Close(_)))
        {
            assert_eq!(
                before + at + 1,
                messages.len(),
                "a message came out after a close"
            );
        }
        if verdict.is_err() || matches!(messages.last(), Some(Incoming::Close(_))) {
            return Outcome { messages, verdict };
        }
    }
    Outcome {
        messages,
        verdict: Ok(()),
    }
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max_message) * 4;
    let bytes = match &input.stream {
        Stream::Raw(bytes) => bytes.clone(),
        Stream::Frames(frames) => {
            let mut bytes = Vec::new();
            for f in frames {
                f.encode(&mut bytes);
            }
            bytes
        }
    };

    let whole = run(max, std::iter::once(&bytes[..]));
    let mut reads = Vec::new();
    let mut rest = &bytes[..];
    for &cut in input.cuts.iter().take_while(|&&c| c != 0) {
        let (read, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    reads.push(rest);
    let split = run(max, reads.into_iter());
    assert_eq!(whole, split, "the cuts between reads changed the outcome");

    for m in &whole.messages {
        match m {
            Incoming::Text(text) => assert!(text.len() <= max, "a {}-byte message", text.len()),
            Incoming::Ping(payload) => assert!(payload.len() <= 125),
            Incoming::Close(Some(code)) => {
                assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999))
            }
            Incoming::Binary | Incoming::Pong | Incoming::Close(None) => {}
        }
    }
});
