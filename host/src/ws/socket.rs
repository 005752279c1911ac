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
use super::protocol::Frame;

/// Bytes read per `read` call; on the stack, never kept.
const READ_CHUNK: usize = 4096;
/// Reads before the messages so far are handled (fairness under floods).
const READS_PER_TURN: usize = 8;
/// Frames per `writev`: two slices each, well under `IOV_MAX`.
const WRITE_BATCH: usize = 32;
/// A send queue that grew past this many slots is freed once drained.
const SHRINK_ABOVE: usize = 16;

/// Something accepted for sending.
#[derive(Debug)]
enum Item {
    /// A text frame: the header is written in front of the shared bytes.
    Text(Frame),
    /// A whole control frame, header included.
    Raw(Bytes),
}

impl Item {
    fn parts<'a>(&'a self, header: &'a mut [u8; frame::MAX_HEADER]) -> (&'a [u8], &'a [u8]) {
        match self {
            Item::Text(f) => {
                let body = f.as_str().as_bytes();
                let n = frame::header(frame::OP_TEXT, body.len(), header);
                (&header[..n], body)
            }
            Item::Raw(b) => (&[], b),
        }
    }
}

pub enum ReadError {
    Io,
    Violation(Violation),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Everything available was read.
    Drained,
    /// More may be waiting; handle what was read first.
    More,
    Eof,
}

pub struct Socket {
    tcp: TcpStream,
    inbound: Inbound,
    queue: VecDeque<Item>,
    /// Bytes of the first queued item already written.
    written: usize,
}

impl Socket {
    pub fn new(tcp: TcpStream, max_message: usize) -> Socket {
        Socket {
            tcp,
            inbound: Inbound::new(max_message),
            queue: VecDeque::new(),
            written: 0,
        }
    }

    /// Takes bytes that arrived with the upgrade request.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Incoming>) -> Result<(), Violation> {
        self.inbound.push(bytes, out)
    }

    pub fn send_text(&mut self, frame: Frame) {
        self.queue.push_back(Item::Text(frame));
    }

    pub fn send_control(&mut self, bytes: Vec<u8>) {
        self.queue.push_back(Item::Raw(Bytes::from(bytes)));
    }

    pub fn send_ping(&mut self) {
        const PING: [u8; 2] = [0x80 | frame::OP_PING, 0];
        self.queue.push_back(Item::Raw(Bytes::from_static(&PING)));
    }

    /// Whether anything accepted is still unwritten.
    pub fn is_backed_up(&self) -> bool {
        !self.queue.is_empty()
    }

    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.tcp.poll_read_ready(cx)).await
    }

    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.tcp.poll_write_ready(cx)).await
    }

    /// Reads what the kernel has and parses it into `out`.
    pub fn read(&mut self, out: &mut Vec<Incoming>) -> Result<Read, ReadError> {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_TURN {
            match self.tcp.try_read(&mut buf) {
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => self
                    .inbound
                    .push(&buf[..n], out)
                    .map_err(ReadError::Violation)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Io),
            }
        }
        Ok(Read::More)
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
    /// caller) for the peer's close or end of stream, discarding data.
    pub async fn linger(&mut self) {
        let _ = self.tcp.shutdown().await;
        let mut seen = Vec::new();
        loop {
            if self.readable().await.is_err() {
                return;
            }
            match self.read(&mut seen) {
                Ok(Read::Eof) | Err(_) => return,
                Ok(_) if seen.contains(&Incoming::Close) => return,
                Ok(_) => seen.clear(),
            }
        }
    }
}
