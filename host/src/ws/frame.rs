//! RFC 6455 framing, server side. Client frames are parsed straight from the
//! bytes one read returned, so an idle connection holds no buffer: only a
//! frame split across reads is kept, and only until it is complete.

use super::CloseCode;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Longest header a server frame needs (no mask).
pub const MAX_HEADER: usize = 10;
/// Control frames carry at most this much payload.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A complete client message.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Text(String),
    /// Binary messages are refused; their payload is not kept.
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client closes, with this code if it gave one.
    Close(Option<u16>),
}

/// Why the connection must close, and with which code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A message over the size limit (1009).
    TooBig,
    /// Not a valid client frame sequence (1002).
    Protocol,
    /// A text message that is not UTF-8 (1007).
    BadUtf8,
}

impl Violation {
    pub fn close(self) -> (CloseCode, &'static str) {
        match self {
            Violation::TooBig => (CloseCode::Size, "frame too large"),
            Violation::Protocol => (CloseCode::Protocol, "protocol error"),
            Violation::BadUtf8 => (CloseCode::Invalid, "text is not UTF-8"),
        }
    }
}

/// Reassembles client messages from whatever the socket returned.
#[derive(Debug)]
pub struct Inbound {
    max_message: usize,
    /// The start of a frame the last read did not complete.
    partial: Vec<u8>,
    /// A fragmented message in progress: its opcode and payload so far.
    message: Option<(u8, Vec<u8>)>,
    /// The text message in progress, checked as its bytes arrive: invalid
    /// UTF-8 fails the connection at once, not when the message completes.
    utf8: Utf8Check,
    /// Payload bytes of the incomplete frame in `partial` already checked.
    checked: usize,
}

struct Header {
    fin: bool,
    opcode: u8,
    len: usize,
    mask: [u8; 4],
    size: usize,
}

impl Inbound {
    pub fn new(max_message: usize) -> Inbound {
        Inbound {
            max_message,
            partial: Vec::new(),
            message: None,
            utf8: Utf8Check::default(),
            checked: 0,
        }
    }

    /// Parses `data` (the bytes following everything pushed before) and
    /// appends each complete message to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Incoming>) -> Result<(), Violation> {
        if self.partial.is_empty() {
            let used = self.parse(data, out)?;
            if used < data.len() {
                self.partial = data[used..].to_vec();
            }
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(data);
        let used = self.parse(&buf, out)?;
        if used < buf.len() {
            buf.drain(..used);
            self.partial = buf;
        }
        Ok(())
    }

    /// Parses complete frames from the front of `buf`; returns the bytes used.
    fn parse(&mut self, buf: &[u8], out: &mut Vec<Incoming>) -> Result<usize, Violation> {
        let mut at = 0;
        while let Some(h) = self.header(&buf[at..])? {
            let start = at + h.size;
            if buf.len() - start < h.len {
                if self.is_text(&h) {
                    // Fail fast: check what arrived of the payload so far.
                    self.check_text(&h, &buf[start..])?;
                }
                break;
            }
            self.frame(&h, &buf[start..start + h.len], out)?;
            self.checked = 0;
            at = start + h.len;
            if matches!(out.last(), Some(Incoming::Close(_))) {
                // Nothing may follow a close; the rest is discarded.
                return Ok(buf.len());
            }
        }
        Ok(at)
    }

    /// The header at the front of `buf`, once all of it has arrived.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, Violation> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved bits (no extension was negotiated), or an unmasked frame.
            return Err(Violation::Protocol);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let (len, mut size) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(Violation::Protocol);
                }
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                let so_far = self.message.as_ref().map_or(0, |(_, m)| m.len() as u64);
                if len.saturating_add(so_far) > self.max_message as u64 {
                    return Err(Violation::TooBig);
                }
            }
            _ => return Err(Violation::Protocol),
        }
        let Some(mask) = buf.get(size..size + 4) else {
            return Ok(None);
        };
        let mask = mask.try_into().expect("4 bytes");
        size += 4;
        Ok(Some(Header {
            fin,
            opcode,
            len: len as usize,
            mask,
            size,
        }))
    }

    /// Whether a frame carries (part of) a text message.
    fn is_text(&self, h: &Header) -> bool {
        match (h.opcode, &self.message) {
            (OP_TEXT, None) => true,
            (OP_CONTINUATION, Some((opcode, _))) => *opcode == OP_TEXT,
            _ => false,
        }
    }

    /// Checks the payload bytes of a text frame not checked yet; `payload`
    /// is all of it that has arrived.
    fn check_text(&mut self, h: &Header, payload: &[u8]) -> Result<(), Violation> {
        let mut chunk = [0u8; 64];
        for (i, part) in payload[self.checked..].chunks(chunk.len()).enumerate() {
            let offset = self.checked + i * chunk.len();
            let chunk = &mut chunk[..part.len()];
            for (j, (b, m)) in chunk.iter_mut().zip(part).enumerate() {
                *b = m ^ h.mask[(offset + j) & 3];
            }
            self.utf8.feed(chunk)?;
        }
        self.checked = payload.len();
        Ok(())
    }

    fn frame(
        &mut self,
        h: &Header,
        payload: &[u8],
        out: &mut Vec<Incoming>,
    ) -> Result<(), Violation> {
        let unmasked = || {
            let mut p = payload.to_vec();
            unmask(&mut p, h.mask);
            p
        };
        match h.opcode {
            OP_PING => out.push(Incoming::Ping(unmasked())),
            OP_PONG => out.push(Incoming::Pong),
            OP_CLOSE => out.push(close_from(&unmasked())?),
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(Violation::Protocol);
                }
                let bytes = unmasked();
                if h.opcode == OP_TEXT {
                    self.utf8.piece(h.fin, &bytes[self.checked..])?;
                }
                if h.fin {
                    out.push(message(h.opcode, bytes)?);
                } else {
                    self.message = Some((h.opcode, bytes));
                }
            }
            _ => {
                let Some((opcode, so_far)) = self.message.as_mut() else {
                    return Err(Violation::Protocol);
                };
                let from = so_far.len();
                so_far.extend_from_slice(payload);
                unmask(&mut so_far[from..], h.mask);
                if *opcode == OP_TEXT {
                    self.utf8.piece(h.fin, &so_far[from + self.checked..])?;
                }
                if h.fin {
                    let (opcode, bytes) = self.message.take().expect("checked above");
                    out.push(message(opcode, bytes)?);
                }
            }
        }
        Ok(())
    }
}

/// Checks UTF-8 split anywhere: a code point cut at the end of one piece
/// is kept (at most 3 bytes) and completed by the next.
#[derive(Debug, Default)]
struct Utf8Check {
    carry: [u8; 4],
    carried: usize,
}

impl Utf8Check {
    /// The frame's payload not checked yet. A message still arriving is
    /// checked piece by piece, so invalid UTF-8 fails at once; the last
    /// frame is left to [`message`], which checks the whole message once
    /// (for the common single-frame event, the only check).
    fn piece(&mut self, fin: bool, fresh: &[u8]) -> Result<(), Violation> {
        if fin {
            *self = Utf8Check::default();
            Ok(())
        } else {
            self.feed(fresh)
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        if self.carried > 0 {
            let width = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (width - self.carried).min(bytes.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&bytes[..take]);
            self.carried += take;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.carry[..self.carried]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_some() => return Err(Violation::BadUtf8),
                // Still cut short: nothing is left of `bytes`.
                Err(_) => return Ok(()),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Violation::BadUtf8),
            Err(e) => {
                let rest = &bytes[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carried = rest.len();
                Ok(())
            }
        }
    }
}

/// Close codes an endpoint may send: the defined ones but those that only
/// ever describe a connection (1004–1006, 1015), and the registered and
/// private ranges (RFC 6455 §7.4, and 1012–1014 as registered since).
fn may_send(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A client's close frame: empty, or a code a client may send and a UTF-8
/// reason.
fn close_from(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(Violation::Protocol),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !may_send(code) {
                return Err(Violation::Protocol);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::BadUtf8);
            }
            Ok(Incoming::Close(Some(code)))
        }
    }
}

fn message(opcode: u8, bytes: Vec<u8>) -> Result<Incoming, Violation> {
    if opcode == OP_BINARY {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(bytes)
        .map(Incoming::Text)
        .map_err(|_| Violation::BadUtf8)
}

fn unmask(bytes: &mut [u8], mask: [u8; 4]) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Writes the header of an unmasked, final server frame; returns its length.
pub fn header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A whole control frame (close, ping, pong) with its payload.
pub fn control(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut h = [0; MAX_HEADER];
    let n = header(opcode, payload.len(), &mut h);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&h[..n]);
    frame.extend_from_slice(payload);
    frame
}

/// A close frame with a code and a reason.
pub fn close(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut payload = u16::from(code).to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    control(OP_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask);
        f.extend_from_slice(&p);
        f
    }

    fn parse_all(inbound: &mut Inbound, bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut out = Vec::new();
        inbound.push(bytes, &mut out)?;
        Ok(out)
    }

    #[test]
    fn messages_split_anywhere_across_reads_come_out_whole() {
        let mut stream = client(true, OP_TEXT, b"{\"type\":\"ping\"}");
        stream.extend(client(true, OP_PING, b"hi"));
        stream.extend(client(true, OP_TEXT, "é".repeat(200).as_bytes()));
        for cut in 0..stream.len() {
            let mut inbound = Inbound::new(1024);
            let mut out = parse_all(&mut inbound, &stream[..cut]).unwrap();
            out.extend(parse_all(&mut inbound, &stream[cut..]).unwrap());
            assert_eq!(
                out,
                vec![
                    Incoming::Text("{\"type\":\"ping\"}".into()),
                    Incoming::Ping(b"hi".to_vec()),
                    Incoming::Text("é".repeat(200)),
                ],
                "cut at {cut}"
            );
            assert!(inbound.partial.is_empty(), "nothing kept once whole");
        }
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_interleave() {
        let mut stream = client(false, OP_TEXT, b"hel");
        stream.extend(client(true, OP_PONG, b""));
        stream.extend(client(false, OP_CONTINUATION, b"lo "));
        stream.extend(client(true, OP_CONTINUATION, b"world"));
        let out = parse_all(&mut Inbound::new(64), &stream).unwrap();
        assert_eq!(
            out,
            vec![Incoming::Pong, Incoming::Text("hello world".into())]
        );
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header() {
        let big = client(true, OP_TEXT, &[b'a'; 100]);
        // Only the header has arrived: refused before the payload is buffered.
        assert_eq!(
            parse_all(&mut Inbound::new(99), &big[..8]),
            Err(Violation::TooBig)
        );
        let mut fragmented = client(false, OP_TEXT, &[b'a'; 60]);
        fragmented.extend(client(true, OP_CONTINUATION, &[b'a'; 60]));
        assert_eq!(
            parse_all(&mut Inbound::new(99), &fragmented),
            Err(Violation::TooBig)
        );
        assert!(parse_all(&mut Inbound::new(100), &big).is_ok());
    }

    #[test]
    fn protocol_violations_are_named() {
        let mut unmasked = client(true, OP_TEXT, b"x");
        unmasked[1] &= 0x7F;
        let mut reserved = client(true, OP_TEXT, b"x");
        reserved[0] |= 0x40;
        let cases = [
            (unmasked, Violation::Protocol),
            (reserved, Violation::Protocol),
            (client(true, 0x3, b"x"), Violation::Protocol),
            (client(false, OP_PING, b"x"), Violation::Protocol),
            (client(true, OP_PING, &[0; 126]), Violation::Protocol),
            (client(true, OP_CONTINUATION, b"x"), Violation::Protocol),
            (client(true, OP_TEXT, &[0xFF, 0xFE]), Violation::BadUtf8),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_all(&mut Inbound::new(1024), &bytes), Err(want));
        }
        let mut interrupted = client(false, OP_TEXT, b"a");
        interrupted.extend(client(true, OP_TEXT, b"b"));
        assert_eq!(
            parse_all(&mut Inbound::new(1024), &interrupted),
            Err(Violation::Protocol)
        );
    }

    #[test]
    fn close_frames_carry_a_valid_code_and_a_utf8_reason() {
        let close =
            |payload: &[u8]| parse_all(&mut Inbound::new(1024), &client(true, OP_CLOSE, payload));
        assert_eq!(close(&[]), Ok(vec![Incoming::Close(None)]));
        for code in [
            1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4001, 4999,
        ] {
            assert_eq!(
                close(&code.to_be_bytes()),
                Ok(vec![Incoming::Close(Some(code))]),
                "{code}"
            );
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(&code.to_be_bytes()),
                Err(Violation::Protocol),
                "{code}"
            );
        }
        assert_eq!(
            close(&[0x03]),
            Err(Violation::Protocol),
            "a one-byte payload"
        );
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend([0xCE, 0xBA, 0xE1, 0xBD]);
        assert_eq!(close(&bad_reason), Err(Violation::BadUtf8));
    }

    #[test]
    fn invalid_utf8_fails_as_soon_as_its_bytes_arrive() {
        // Fragments: the second makes the text invalid; no final frame yet.
        let mut inbound = Inbound::new(1024);
        let mut first = client(false, OP_TEXT, b"\xce\xba\xf4");
        assert!(parse_all(&mut inbound, &first).unwrap().is_empty());
        assert_eq!(
            parse_all(&mut inbound, &client(false, OP_CONTINUATION, b"\x90")),
            Err(Violation::BadUtf8)
        );
        // One frame whose payload is still arriving.
        first = client(true, OP_TEXT, b"\xce\xba\xf4\x90\x80\x80edited");
        let mut inbound = Inbound::new(1024);
        assert!(parse_all(&mut inbound, &first[..6 + 3]).unwrap().is_empty());
        assert_eq!(
            parse_all(&mut inbound, &first[6 + 3..6 + 4]),
            Err(Violation::BadUtf8)
        );
        // A code point cut at the end of a message is invalid.
        let mut cut = client(false, OP_TEXT, b"a\xce");
        cut.extend(client(true, OP_CONTINUATION, b""));
        assert_eq!(
            parse_all(&mut Inbound::new(1024), &cut),
            Err(Violation::BadUtf8)
        );
    }

    #[test]
    fn binary_and_close_are_reported_and_nothing_after_close_is_parsed() {
        let mut stream = client(true, OP_BINARY, &[1, 2, 3]);
        stream.extend(client(true, OP_CLOSE, &1000u16.to_be_bytes()));
        stream.extend(client(true, OP_TEXT, b"late"));
        let mut inbound = Inbound::new(64);
        let out = parse_all(&mut inbound, &stream).unwrap();
        assert_eq!(out, vec![Incoming::Binary, Incoming::Close(Some(1000))]);
        assert!(inbound.partial.is_empty());
    }

    #[test]
    fn server_headers_use_the_shortest_length_encoding() {
        let mut h = [0; MAX_HEADER];
        assert_eq!(header(OP_TEXT, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 125]);
        assert_eq!(header(OP_TEXT, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x81, 126, 0, 126]);
        assert_eq!(header(OP_TEXT, 70_000, &mut h), 10);
        assert_eq!(&h[2..10], &70_000u64.to_be_bytes());
        assert_eq!(
            close(CloseCode::Size, "big"),
            vec![0x88, 5, 0x03, 0xF1, b'b', b'i', b'g']
        );
    }
}
