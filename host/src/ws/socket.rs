//! A WebSocket over a TCP stream, driven by readiness: reads go through a
//! buffer on the stack and writes go straight from the shared frame bytes
//! (one `writev` for a batch), so an idle connection owns no buffers.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frame::{self, Inbound, Incoming, Violation};
use crate::protocol::Frame;

/// Bytes read per `read` call; on the stack, never kept.
const READ_CHUNK: usize = 4096;
/// Reads before the messages so far are handled (fairness under floods).
const READS_PER_TURN: usize = 8;
/// Frames per `writev`: two slices each, well under `IOV_MAX`.
const WRITE_BATCH: usize = 32;
/// A send queue that grew past this many slots is freed once drained.
const SHRINK_ABOVE: usize = 16;
/// Pongs waiting to be written before a new one replaces the newest
/// instead: a burst of pings gets a pong each (as Autobahn 2.10 expects),
/// and a peer that pings but never reads cannot grow the queue.
const MAX_UNSENT_PONGS: usize = 16;

/// Something accepted for sending.
#[derive(Debug)]
enum Item {
    /// A text frame: the header is written in front of the shared bytes.
    Text(Frame),
    /// A whole control frame, header included, and its opcode.
    Control(u8, Bytes),
}

impl Item {
    fn parts<'a>(&'a self, header: &'a mut [u8; frame::MAX_HEADER]) -> (&'a [u8], &'a [u8]) {
        match self {
            Item::Text(f) => {
                let body = f.as_bytes();
                let n = frame::header(frame::OP_TEXT, body.len(), header);
                (&header[..n], body)
            }
            Item::Control(_, b) => (&[], b),
        }
    }
}

pub enum ReadError {
    Io,
    Violation(Violation),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Still open; more may be waiting (readiness says when).
    Open,
    Eof,
}

pub struct Socket {
    tcp: TcpStream,
    inbound: Inbound,
    queue: VecDeque<Item>,
    /// Bytes of the first queued item already written.
    written: usize,
    /// Bytes arrived since [`Socket::take_heard`] was last called.
    heard: bool,
}

impl Socket {
    pub fn new(tcp: TcpStream, max_message: usize) -> Socket {
        Socket {
            tcp,
            inbound: Inbound::new(max_message),
            queue: VecDeque::new(),
            written: 0,
            heard: false,
        }
    }

    /// Takes bytes that arrived with the upgrade request.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Incoming>) -> Result<(), Violation> {
        self.inbound.push(bytes, out)
    }

    pub fn send_text(&mut self, frame: Frame) {
        self.queue.push_back(Item::Text(frame));
    }

    pub fn send_close(&mut self, bytes: Vec<u8>) {
        self.queue
            .push_back(Item::Control(frame::OP_CLOSE, Bytes::from(bytes)));
    }

    /// Answers a ping. Once [`MAX_UNSENT_PONGS`] answers wait unwritten, the
    /// newest of them is replaced by this one (RFC 6455 §5.5.3 allows
    /// answering only the latest ping).
    pub fn send_pong(&mut self, payload: &[u8]) {
        let pong = Bytes::from(frame::control(frame::OP_PONG, payload));
        let full = self
            .unsent_controls(frame::OP_PONG)
            .skip(MAX_UNSENT_PONGS - 1);
        if let Some(newest) = full.last() {
            *newest = pong;
            return;
        }
        self.queue.push_back(Item::Control(frame::OP_PONG, pong));
    }

    /// Pings, unless the last ping is still unsent.
    pub fn send_ping(&mut self) {
        const PING: [u8; 2] = [0x80 | frame::OP_PING, 0];
        if self.unsent_controls(frame::OP_PING).next().is_none() {
            self.queue
                .push_back(Item::Control(frame::OP_PING, Bytes::from_static(&PING)));
        }
    }

    /// The queued control frames of this kind of which nothing is written yet.
    fn unsent_controls(&mut self, opcode: u8) -> impl Iterator<Item = &mut Bytes> {
        let written = self.written;
        self.queue
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, item)| match item {
                Item::Control(op, bytes) if *op == opcode && (i > 0 || written == 0) => Some(bytes),
                _ => None,
            })
    }

    /// Whether bytes arrived since the last call.
    pub fn take_heard(&mut self) -> bool {
        std::mem::take(&mut self.heard)
    }

    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.tcp.poll_read_ready(cx)).await
    }

    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.tcp.poll_write_ready(cx)).await
    }

    /// Reads what the kernel has and parses it into `out`. On a violation,
    /// `out` still holds the messages that came before it.
    pub fn read(&mut self, out: &mut Vec<Incoming>) -> Result<Read, ReadError> {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_TURN {
            match self.tcp.try_read(&mut buf) {
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => {
                    self.heard = true;
                    self.inbound
                        .push(&buf[..n], out)
                        .map_err(ReadError::Violation)?;
                    if matches!(out.last(), Some(Incoming::Close(_))) {
                        return Ok(Read::Open);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Io),
            }
        }
        Ok(Read::Open)
    }

    /// Writes queued frames until done (`true`) or the kernel is full
    /// (`false`: wait for [`Socket::writable`]).
    pub fn write(&mut self) -> io::Result<bool> {
        while !self.queue.is_empty() {
            let wrote = {
                let mut headers = [[0u8; frame::MAX_HEADER]; WRITE_BATCH];
                let mut slices = [IoSlice::new(&[]); 2 * WRITE_BATCH];
                let mut n = 0;
                let mut skip = self.written;
                for (item, header) in self.queue.iter().zip(headers.iter_mut()) {
                    let (head, body) = item.parts(header);
                    for part in [head, body] {
                        let done = skip.min(part.len());
                        skip -= done;
                        let part = &part[done..];
                        if !part.is_empty() {
                            slices[n] = IoSlice::new(part);
                            n += 1;
                        }
                    }
                }
                match self.tcp.try_write_vectored(&slices[..n]) {
                    Ok(w) => w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if wrote == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(wrote);
        }
        if self.queue.capacity() > SHRINK_ABOVE {
            self.queue = VecDeque::new();
        }
        Ok(true)
    }

    /// Drops what `n` more written bytes completed.
    fn advance(&mut self, mut n: usize) {
        let mut header = [0u8; frame::MAX_HEADER];
        while let Some(item) = self.queue.front() {
            let (head, body) = item.parts(&mut header);
            let left = head.len() + body.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.queue.pop_front();
        }
    }

    /// Half-closes after the close frame, then waits (bounded by the
    /// caller) for the peer's close or end of stream, discarding data. After
    /// a violation the stream is not parsed, only drained.
    pub async fn linger(&mut self, parse: bool) {
        let _ = self.tcp.shutdown().await;
        let mut parse = parse;
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            if self.readable().await.is_err() {
                return;
            }
            if parse {
                match self.read(&mut seen) {
                    Ok(Read::Eof) | Err(ReadError::Io) => return,
                    Ok(_) if seen.iter().any(|m| matches!(m, Incoming::Close(_))) => return,
                    Ok(_) => seen.clear(),
                    Err(ReadError::Violation(_)) => parse = false,
                }
                continue;
            }
            match self.tcp.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Small, so writes run into a full kernel buffer.
        socket2::SockRef::from(&server)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        (Socket::new(server, 1024), client)
    }

    #[tokio::test]
    async fn a_peer_that_pings_but_never_reads_gets_a_bounded_number_of_pongs() {
        let (mut socket, mut client) = pair().await;
        for i in 0..1000u32 {
            socket.send_pong(&i.to_be_bytes());
            socket.send_ping();
        }
        assert_eq!(socket.queue.len(), MAX_UNSENT_PONGS + 1, "pongs, one ping");
        assert!(socket.write().unwrap());
        let pong = |i: u32| [[0x8A, 4].as_slice(), &i.to_be_bytes()].concat();
        let mut want = pong(0);
        want.extend([0x89, 0]);
        for i in 1..MAX_UNSENT_PONGS as u32 - 1 {
            want.extend(pong(i));
        }
        want.extend(pong(999));
        let mut got = vec![0u8; want.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(
            got, want,
            "the first pongs in order, the last for the latest ping"
        );
    }

    #[tokio::test]
    async fn frames_written_across_full_buffers_arrive_whole_and_in_order() {
        let (mut socket, mut client) = pair().await;
        let frames: Vec<String> = (0..300)
            .map(|i| format!("{i:05}").repeat(2000 + i))
            .collect();
        let mut want = Vec::new();
        for f in &frames {
            let mut h = [0; frame::MAX_HEADER];
            let n = frame::header(frame::OP_TEXT, f.len(), &mut h);
            want.extend_from_slice(&h[..n]);
            want.extend_from_slice(f.as_bytes());
            socket.send_text(Frame::from(f.clone()));
        }
        let reader = tokio::spawn(async move {
            let mut got = vec![0; want.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == want, "the byte stream is the frames in order");
        });
        let mut waits = 0;
        while !socket.write().unwrap() {
            waits += 1;
            socket.writable().await.unwrap();
        }
        assert!(waits > 0, "the kernel buffer filled at least once");
        reader.await.unwrap();
    }
}
