//! One WebSocket connection, one task: it sends `ready` first, then reads
//! and applies client frames, writes what fan-out queued (a batch per
//! `writev`) and pings, until either side closes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::CloseCode;
use super::frame::{self, Incoming, Violation};
use super::socket::{Read, ReadError, Socket};
use crate::auth::{self, Auth};
use crate::metrics::METRICS;
use crate::presence::registry::{Outbox, SessionHandle};
use crate::presence::{Presence, Refusal};
use crate::protocol::{AuthOk, ClientEvent, Frame, error_frame, frame, pong_frame};

/// How long a closing session may take to send what is queued.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing handshake may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The most a token is taken to last, whatever its `exp` says.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Closes a connection whose token ran out without a renewal.
pub const CLOSE_TOKEN_EXPIRED: CloseCode = CloseCode::Library(4001);

/// How a session ends.
enum End {
    /// The connection is gone: nothing more can be sent.
    Gone,
    /// The client closed (with this code): send what is queued (the
    /// answers to messages that came with the close), then answer its
    /// close, echoing the code.
    PeerClosed(Option<u16>),
    /// Send what is queued, then close with this code.
    Close(CloseCode, &'static str),
    /// Close with this code without sending what is queued.
    Now(CloseCode, &'static str),
    /// The client broke the protocol: send what is queued, close with the
    /// violation's code, and read nothing more from it.
    Violation(Violation),
}

/// Runs a connection until either side closes it or `shutdown` fires.
/// `early` holds bytes the client sent right behind its upgrade request.
pub async fn run(
    tcp: TcpStream,
    early: Bytes,
    presence: Arc<Presence>,
    auth: Arc<Auth>,
    user: auth::User,
    locale: Arc<str>,
    shutdown: CancellationToken,
) {
    let limits = presence.limits.clone();
    let mut socket = Socket::new(tcp, limits.max_frame_bytes);
    // `early` may hold hyper's whole read buffer: parse it and let it go.
    let mut first = Vec::new();
    let parsed = socket.feed(&early, &mut first);
    drop(early);
    let out = Arc::new(Outbox::new(limits.send_queue));
    let handle = SessionHandle {
        id: presence.registry.next_session_id(),
        out: out.clone(),
        locale,
    };
    // The connect, message and close paths are boxed: a task's future is as
    // large as its largest state, and only the idle wait should stay resident.
    let connected = Box::pin(presence.connect(&user, handle.clone())).await;
    let (user, expires) = (user.id, token_deadline(user.expires_at, auth.leeway()));
    let end = match connected {
        Ok((_, ready)) => {
            socket.send_text(ready);
            let heartbeat = presence.policies.status_config().heartbeat_interval;
            let mut reader = Reader {
                presence: &presence,
                auth: &auth,
                user,
                expires,
                handle: &handle,
                socket: &mut socket,
                bucket: TokenBucket::new(limits.frames_per_sec, limits.frame_burst),
                flood: None,
                flood_close_after: limits.flood_close_after,
            };
            match parsed {
                Ok(()) => reader.run(first, &shutdown, heartbeat).await,
                Err(v) => End::Violation(v),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, %user, "connect failed");
            End::Close(CloseCode::Error, "internal error")
        }
    };
    presence.disconnect(user, handle.id);
    out.close();
    Box::pin(finish(socket, &out, end)).await;
}

/// Sends the closing frames; a peer that stopped reading (zero window) is
/// cut after a timeout rather than keeping the socket alive.
async fn finish(mut socket: Socket, out: &Outbox, end: End) {
    let (code, reason, drain) = match end {
        End::Gone => return,
        End::PeerClosed(code) => (code.map(CloseCode::from), "", true),
        End::Close(code, reason) => (Some(code), reason, true),
        End::Now(code, reason) => (Some(code), reason, false),
        End::Violation(v) => {
            let (code, reason) = v.close();
            (Some(code), reason, true)
        }
    };
    let budget = if drain && !out.is_killed() {
        out.drain(|f| socket.send_text(f));
        DRAIN_TIMEOUT
    } else {
        CLOSE_TIMEOUT
    };
    let close = match code {
        Some(code) => frame::close(code, reason),
        None => frame::control(frame::OP_CLOSE, &[]),
    };
    let peer_closed = matches!(end, End::PeerClosed(_));
    socket.send_close(close);
    if !matches!(timeout(budget, flush(&mut socket)).await, Ok(Ok(()))) {
        return;
    }
    if !peer_closed {
        // The client answers our close; then the connection ends.
        let parse = !matches!(end, End::Violation(_));
        let _ = timeout(CLOSE_TIMEOUT, socket.linger(parse)).await;
    }
}

async fn flush(socket: &mut Socket) -> io::Result<()> {
    while !socket.write()? {
        socket.writable().await?;
    }
    Ok(())
}

/// When a token that expires at `exp` stops being good enough: `exp` plus
/// the leeway, from now (far-future tokens are capped).
fn token_deadline(exp: DateTime<Utc>, leeway: Duration) -> Instant {
    let left = (exp - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + (left + leeway).min(MAX_TOKEN_LIFE)
}

struct Reader<'a> {
    presence: &'a Arc<Presence>,
    auth: &'a Auth,
    user: uuid::Uuid,
    /// The connection's token runs out here, unless the client renews it.
    expires: Instant,
    /// Replies go through the session's own handle: a full queue drops the
    /// connection, as for any other frame.
    handle: &'a SessionHandle,
    socket: &'a mut Socket,
    bucket: TokenBucket,
    /// Frames refused since this flood began.
    flood: Option<u32>,
    flood_close_after: u32,
}

impl Reader<'_> {
    async fn run(
        &mut self,
        first: Vec<Incoming>,
        shutdown: &CancellationToken,
        heartbeat: Duration,
    ) -> End {
        // A peer that sends nothing (not even a pong) for 2.5 intervals is dead.
        let silence_limit = heartbeat * 5 / 2;
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + heartbeat;
        // One timer for both: it wakes at the next ping or when the silence
        // limit would run out, whichever is first (once per interval for a
        // live peer).
        let tick = tokio::time::sleep_until(next_ping.min(self.expires));
        tokio::pin!(tick);
        let stop = shutdown.cancelled();
        tokio::pin!(stop);
        if !first.is_empty()
            && let Some(end) = Box::pin(self.handle(first)).await
        {
            return end;
        }
        loop {
            let backed_up = match self.socket.write() {
                Ok(done) => !done,
                Err(_) => return End::Gone,
            };
            // Unbiased: a steady stream of fan-out must not starve reads
            // (the pongs that keep this connection alive), nor the reverse.
            tokio::select! {
                _ = &mut stop => return End::Now(CloseCode::Away, "going away"),
                _ = self.handle.out.wait(!backed_up) => {
                    if self.handle.out.is_killed() {
                        return End::Now(CloseCode::Away, "going away");
                    }
                    let socket = &mut *self.socket;
                    self.handle.out.drain(|f| socket.send_text(f));
                }
                r = self.socket.writable(), if backed_up => {
                    if r.is_err() {
                        return End::Gone;
                    }
                }
                r = self.socket.readable() => {
                    if r.is_err() {
                        return End::Gone;
                    }
                    let mut incoming = Vec::new();
                    let read = self.socket.read(&mut incoming);
                    if self.socket.take_heard() {
                        last_heard = Instant::now();
                    }
                    // What came before a violation or the end still counts.
                    let expires = self.expires;
                    if let Some(end) = Box::pin(self.handle(incoming)).await {
                        return end;
                    }
                    if self.expires < expires {
                        // A renewal with an earlier expiry.
                        let at = self.expires.min(tick.deadline());
                        tick.as_mut().reset(at);
                    }
                    match read {
                        Ok(Read::Eof) | Err(ReadError::Io) => return End::Gone,
                        Err(ReadError::Violation(v)) => return End::Violation(v),
                        Ok(_) => {}
                    }
                }
                _ = &mut tick => {
                    let now = Instant::now();
                    if now >= self.expires {
                        self.send(error_frame(
                            "token_expired",
                            "the token expired; connect again with a fresh one",
                            None,
                        ));
                        return End::Close(CLOSE_TOKEN_EXPIRED, "token expired");
                    }
                    if now.duration_since(last_heard) >= silence_limit {
                        return End::Close(CloseCode::Away, "heartbeat timeout");
                    }
                    if now >= next_ping {
                        self.socket.send_ping();
                        next_ping = now + heartbeat;
                    }
                    tick.as_mut()
                        .reset(next_ping.min(last_heard + silence_limit).min(self.expires));
                }
            }
        }
    }

    /// Applies client messages in order; returns how the session ends if one ends it.
    async fn handle(&mut self, incoming: Vec<Incoming>) -> Option<End> {
        for msg in incoming {
            if let Incoming::Close(code) = msg {
                return Some(End::PeerClosed(code));
            }
            match self.admit() {
                Admit::Apply => {}
                Admit::Skip => continue,
                Admit::Close => return Some(End::Close(CloseCode::Policy, "rate limit exceeded")),
            }
            match msg {
                Incoming::Text(text) => self.on_text(&text).await,
                Incoming::Binary => self.send(error_frame(
                    "bad_request",
                    "binary frames are not supported",
                    None,
                )),
                Incoming::Ping(payload) => self.socket.send_pong(&payload),
                Incoming::Pong | Incoming::Close(_) => {}
            }
        }
        None
    }

    /// Applies the per-connection frame rate (SPEC §8): one `rate_limited`
    /// error per flood, and close 1008 if the flood goes on.
    fn admit(&mut self) -> Admit {
        if self.bucket.take(Instant::now()) {
            if self.bucket.is_full() {
                self.flood = None;
            }
            return Admit::Apply;
        }
        let refused = self.flood.map_or(1, |n| n + 1);
        self.flood = Some(refused);
        if refused == 1 {
            self.send(error_frame(
                "rate_limited",
                "too many frames; slow down",
                None,
            ));
        }
        if refused > self.flood_close_after {
            return Admit::Close;
        }
        Admit::Skip
    }

    async fn on_text(&mut self, text: &str) {
        match ClientEvent::parse(text) {
            Ok(ClientEvent::Auth { token }) => {
                METRICS.event_in("auth");
                self.renew(&token).await;
            }
            Ok(event) => {
                METRICS.event_in(event.kind());
                if let Err(refusal) = self.apply(&event).await {
                    self.send(error_frame(
                        refusal.code(),
                        refusal.message(),
                        Some(event.kind()),
                    ));
                }
            }
            Err(bad) => {
                METRICS.event_in("invalid");
                self.send(error_frame(
                    "bad_request",
                    &bad.message,
                    bad.ref_type.as_deref(),
                ))
            }
        }
    }

    /// One client event, one call into the presence state.
    async fn apply(&self, event: &ClientEvent) -> Result<(), Refusal> {
        let (p, user) = (self.presence, self.user);
        match *event {
            ClientEvent::TypingStart {
                conversation_id,
                user_id,
            } => p.typing(user, user_id, conversation_id, true).await,
            ClientEvent::TypingStop {
                conversation_id,
                user_id,
            } => p.typing(user, user_id, conversation_id, false).await,
            ClientEvent::SetStatus { status } => {
                p.set_status(user, status);
                Ok(())
            }
            ClientEvent::Activity => {
                p.activity(user);
                Ok(())
            }
            ClientEvent::Ping => {
                self.send(pong_frame());
                Ok(())
            }
            ClientEvent::Auth { .. } => unreachable!("handled by renew"),
        }
    }

    /// A client renews the connection's token: the same user's valid token
    /// extends it; any other keeps the old one.
    async fn renew(&mut self, token: &str) {
        let refused = |code, message| error_frame(code, message, Some("auth"));
        match self.auth.verify_user(token).await {
            Ok(user) if user.id == self.user => {
                self.expires = token_deadline(user.expires_at, self.auth.leeway());
                self.send(frame(
                    "auth_ok",
                    AuthOk {
                        expires_at: user.expires_at,
                    },
                ));
            }
            Ok(_) => self.send(refused("forbidden", "the token is for another user")),
            Err(_) => self.send(refused("unauthorized", "the token is not valid")),
        }
    }

    fn send(&self, frame: Frame) {
        self.handle.send(frame);
    }
}

enum Admit {
    Apply,
    Skip,
    Close,
}

/// A token bucket: `rate` frames per second sustained, `burst` at once.
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            tokens: burst as f64,
            rate: rate as f64,
            burst: burst as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.burst - 1.0
    }
}
