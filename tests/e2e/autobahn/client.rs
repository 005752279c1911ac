//! The raw client: masked frames made by hand, one TCP connection per
//! case, server frames parsed and checked (never masked, no RSV bits), and
//! every read bounded by [`FRAME_TIMEOUT`].

use std::net::SocketAddr;

use presence_e2e::FRAME_TIMEOUT;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{Server, user_token};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const NORMAL: u16 = 1000;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const TOO_BIG: u16 = 1009;
/// A masked client frame; `rsv` is the three reserved bits (0–7).
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![u8::from(fin) << 7 | (rsv & 7) << 4 | opcode];
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
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

/// A whole, final text frame.
pub fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, 0, OP_TEXT, payload)
}

/// A close frame with a code and a reason (raw bytes, so it can be invalid).
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    frame(true, 0, OP_CLOSE, &p)
}

/// The app-level `ping` event, padded to `pad` extra characters.
pub fn ping_event(pad: &str) -> Vec<u8> {
    json!({"type": "ping", "data": {"pad": pad}})
        .to_string()
        .into_bytes()
}

/// A text payload of exactly `len` bytes and the answer it gets: a `ping`
/// event padded to `len` (answered with `pong`, the echo), or `*`s when
/// `len` is too short for an event (answered with `bad_request`).
pub fn text_of_len(len: usize) -> (Vec<u8>, Expect) {
    let empty = ping_event("").len();
    if len < empty {
        (vec![b'*'; len], Expect::BadRequest)
    } else {
        (ping_event(&"*".repeat(len - empty)), Expect::Pong)
    }
}

/// What the server sends back for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The `pong` event: a text message the server understood.
    Pong,
    /// `error{code:"bad_request"}`: valid UTF-8 that is not an event, or binary.
    BadRequest,
}

/// Something the server sent.
#[derive(Debug, PartialEq)]
pub enum Got {
    Text(Value),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: its code (if any) and reason.
    Close(Option<u16>, String),
    /// The server ended the TCP connection (or reset it).
    Eof,
}

/// One raw WebSocket connection to a shared server, already upgraded and
/// past `ready`.
pub struct Ws {
    /// The Autobahn case, for assertion messages.
    pub(super) case: String,
    pub(super) tcp: TcpStream,
    /// Bytes read but not yet parsed into a frame.
    pub(super) buf: Vec<u8>,
}

impl Ws {
    pub async fn open(case: impl Into<String>) -> Ws {
        Ws::open_on(Server::Default, case).await
    }

    pub async fn open_on(server: Server, case: impl Into<String>) -> Ws {
        let case = case.into();
        let addr = server.addr();
        let token = user_token(addr).await;
        let tcp = TcpStream::connect(addr).await.expect("connects");
        tcp.set_nodelay(true).unwrap();
        let mut ws = Ws {
            case: case.clone(),
            tcp,
            buf: Vec::new(),
        };
        let request = upgrade_request(addr, &token, &[]);
        ws.tcp.write_all(request.as_bytes()).await.unwrap();
        let head = ws.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{case}: upgraded, got {head}"
        );
        match ws.next().await {
            Got::Text(v) if v["type"] == "ready" => {}
            other => panic!("{case}: ready first, got {other:?}"),
        }
        ws
    }

    /// Reads an HTTP response head; the bytes after it stay buffered.
    pub(super) async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill().await, "{}: a response head", self.case);
        }
    }

    /// Reads more bytes; `false` at end of stream or on a reset.
    pub(super) async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match timeout(FRAME_TIMEOUT, self.tcp.read(&mut chunk)).await {
            Err(_) => panic!("{}: the server answers within {FRAME_TIMEOUT:?}", self.case),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Writes bytes in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write");
    }

    /// Writes bytes in writes of `chop` octets each (Autobahn's `chopsize`).
    pub async fn send_chopped(&mut self, bytes: &[u8], chop: usize) {
        for part in bytes.chunks(chop) {
            self.tcp.write_all(part).await.expect("write");
            self.tcp.flush().await.expect("flush");
        }
    }

    /// The next server frame (heartbeat pings skipped: no case asks for them).
    pub async fn next(&mut self) -> Got {
        loop {
            match self.next_frame().await {
                Got::Ping(p) if p.is_empty() => continue,
                got => return got,
            }
        }
    }

    async fn next_frame(&mut self) -> Got {
        loop {
            if let Some((got, used)) = self.parse() {
                self.buf.drain(..used);
                return got;
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "{}: the stream ended inside a frame",
                    self.case
                );
                return Got::Eof;
            }
        }
    }

    /// A whole server frame at the front of the buffer, and its length.
    fn parse(&self) -> Option<(Got, usize)> {
        let case = &self.case;
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[0] & 0x70, 0, "{case}: server frames have no RSV bits");
        assert_eq!(b[1] & 0x80, 0, "{case}: server frames are not masked");
        assert_ne!(b[0] & 0x80, 0, "{case}: server messages are not fragmented");
        let (len, at) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < at + len {
            return None;
        }
        let payload = b[at..at + len].to_vec();
        let got = match b[0] & 0x0F {
            OP_TEXT => {
                let text = String::from_utf8(payload).expect("server text is UTF-8");
                Got::Text(serde_json::from_str(&text).expect("server text is JSON"))
            }
            OP_BINARY => Got::Binary(payload),
            OP_PING => Got::Ping(payload),
            OP_PONG => Got::Pong(payload),
            OP_CLOSE => match payload.as_slice() {
                [] => Got::Close(None, String::new()),
                [hi, lo, reason @ ..] => Got::Close(
                    Some(u16::from_be_bytes([*hi, *lo])),
                    String::from_utf8(reason.to_vec()).expect("a UTF-8 close reason"),
                ),
                _ => panic!("{case}: a one-byte close payload"),
            },
            op => panic!("{case}: the server sent opcode {op}"),
        };
        Some((got, at + len))
    }

    /// The server answers a message as `want` says.
    pub async fn expect(&mut self, want: Expect) {
        match (want, self.next().await) {
            (Expect::Pong, Got::Text(v)) if v["type"] == "pong" => {}
            (Expect::BadRequest, Got::Text(v))
                if v["type"] == "error" && v["data"]["code"] == "bad_request" => {}
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", self.case),
        }
    }

    pub async fn expect_pong_event(&mut self) {
        self.expect(Expect::Pong).await;
    }

    pub async fn expect_bad_request(&mut self) {
        self.expect(Expect::BadRequest).await;
    }

    /// A WebSocket pong carrying `payload`.
    pub async fn expect_pong(&mut self, payload: &[u8]) {
        let got = self.next().await;
        assert_eq!(got, Got::Pong(payload.to_vec()), "{}", self.case);
    }

    /// Proves the connection is open and everything before was answered:
    /// a ping whose pong must come next.
    pub async fn expect_open(&mut self) {
        self.send(&frame(true, 0, OP_PING, b"still there?")).await;
        self.expect_pong(b"still there?").await;
    }

    /// Autobahn's clean close when the client closes: close 1000 out, the
    /// server's close 1000 back, then the server ends the connection.
    pub async fn close_normally(mut self) {
        self.send(&close_frame(NORMAL, b"")).await;
        self.expect_close_reply(Some(NORMAL)).await;
    }

    /// After the client's close: the server answers with `code` and nothing
    /// else, then ends the connection.
    pub async fn expect_close_reply(mut self, code: Option<u16>) {
        match self.next().await {
            Got::Close(got, _) => assert_eq!(got, code, "{}: the close reply's code", self.case),
            other => panic!("{}: wanted a close reply, got {other:?}", self.case),
        }
        let _ = self.tcp.shutdown().await;
        self.expect_eof().await;
    }

    /// The server fails the connection: its close frame with `code` comes
    /// next (nothing before it); the client answers and the server ends the
    /// connection.
    pub async fn expect_failed(mut self, code: u16) {
        match self.next().await {
            Got::Close(Some(got), _) => assert_eq!(got, code, "{}: the close code", self.case),
            other => panic!("{}: wanted close {code}, got {other:?}", self.case),
        }
        // The client's close may meet a socket the server already shut.
        let _ = self.tcp.write_all(&close_frame(code, b"")).await;
        let _ = self.tcp.shutdown().await;
        self.expect_eof().await;
    }

    async fn expect_eof(&mut self) {
        let got = self.next().await;
        assert_eq!(
            got,
            Got::Eof,
            "{}: the server ends the connection",
            self.case
        );
    }
}

/// How a case's frames go out.
#[derive(Clone, Copy)]
pub enum Write {
    /// All frames in one write.
    Together,
    /// One write per frame (Autobahn's `sync`).
    FrameWise,
    /// One write per octet (Autobahn's `chopsize = 1`).
    OctetWise,
}

impl Ws {
    pub async fn send_frames(&mut self, frames: &[Vec<u8>], write: Write) {
        match write {
            Write::Together => self.send(&frames.concat()).await,
            Write::FrameWise => {
                for f in frames {
                    self.send(f).await;
                }
            }
            Write::OctetWise => self.send_chopped(&frames.concat(), 1).await,
        }
    }
}

/// An upgrade request with extra header lines.
pub fn upgrade_request(addr: SocketAddr, token: &str, extra: &[&str]) -> String {
    let mut r = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        r.push_str(line);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}
