//! One WebSocket connection: a reader (this task) that parses and applies
//! client frames, and a writer task that owns the socket's sink, sends
//! `ready` first, then batches queued frames into one flush, and pings.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::{ClientEvent, Frame, ManualStatus, error_frame, pong_frame};
use crate::auth;
use crate::metrics::METRICS;
use crate::presence::Presence;
use crate::presence::registry::{Outbound, SessionHandle};

/// Frames written before one flush.
const WRITE_BATCH: usize = 64;
/// How long a closed session's writer may take to drain before it is cut.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing handshake may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Runs a connection until either side closes it or `shutdown` fires.
pub async fn run(
    socket: WebSocket,
    presence: Arc<Presence>,
    user: auth::User,
    locale: Arc<str>,
    shutdown: CancellationToken,
) {
    let limits = presence.limits.clone();
    let heartbeat = presence.policies.status_config().heartbeat_interval;
    let kill = shutdown.child_token();
    let (tx, rx) = mpsc::channel(limits.send_queue);
    let (ready_tx, ready_rx) = oneshot::channel();
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, ready_rx, rx, kill.clone(), heartbeat));

    let id = presence.registry.next_session_id();
    let handle = SessionHandle {
        id,
        tx: tx.clone(),
        locale,
        kill: kill.clone(),
    };
    match presence.connect(&user, handle.clone()).await {
        Ok((_, ready)) => {
            let _ = ready_tx.send(ready);
            let mut reader = Reader {
                presence: &presence,
                user: user.id,
                out: &handle,
                bucket: TokenBucket::new(limits.frames_per_sec, limits.frame_burst),
                flood: None,
                flood_close_after: limits.flood_close_after,
            };
            reader.run(stream, &kill, heartbeat).await;
        }
        Err(e) => {
            tracing::error!(error = %e, user = %user.id, "connect failed");
            let _ = tx.try_send(Outbound::Close(1011, "internal error"));
        }
    }
    presence.disconnect(user.id, id);
    drop(tx);
    // The writer ends once the queue is drained or the connection is killed.
    drop(handle);
    // The writer drains what is queued and closes; a peer that stopped
    // reading (zero window) must not keep it, its socket and queue alive.
    let mut writer = writer;
    if tokio::time::timeout(WRITER_DRAIN_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        kill.cancel();
        let _ = writer.await;
    }
}

struct Reader<'a> {
    presence: &'a Arc<Presence>,
    user: uuid::Uuid,
    /// Replies go through the session's own handle: a full queue drops the
    /// connection, as for any other frame.
    out: &'a SessionHandle,
    bucket: TokenBucket,
    /// Frames refused since this flood began.
    flood: Option<u32>,
    flood_close_after: u32,
}

impl Reader<'_> {
    async fn run(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        kill: &CancellationToken,
        heartbeat: Duration,
    ) {
        // A peer that sends nothing (not even a pong) for 2.5 intervals is dead.
        let silence_limit = heartbeat * 5 / 2;
        let mut last_heard = Instant::now();
        let mut check = tokio::time::interval(heartbeat / 2);
        loop {
            let msg = tokio::select! {
                _ = kill.cancelled() => return,
                _ = check.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        self.close(CLOSE_GOING_AWAY, "heartbeat timeout");
                        return;
                    }
                    continue;
                }
                msg = stream.next() => msg,
            };
            let msg = match msg {
                None => return,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    if is_too_big(e) {
                        self.close(CLOSE_TOO_BIG, "frame too large");
                    }
                    return;
                }
            };
            last_heard = Instant::now();
            if matches!(msg, Message::Close(_)) {
                return;
            }
            match self.admit() {
                Admit::Apply => {}
                Admit::Skip => continue,
                Admit::Close => return,
            }
            match msg {
                Message::Text(text) => self.on_text(&text).await,
                Message::Binary(_) => self.send(error_frame(
                    "bad_request",
                    "binary frames are not supported",
                    None,
                )),
                _ => {}
            }
        }
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
            self.close(CLOSE_POLICY, "rate limit exceeded");
            return Admit::Close;
        }
        Admit::Skip
    }

    async fn on_text(&mut self, text: &str) {
        match ClientEvent::parse(text) {
            Ok(event) => {
                METRICS.event_in(event.kind());
                if let Err((code, message)) = self.apply(&event).await {
                    self.send(error_frame(code, &message, Some(event.kind())));
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

    async fn apply(&mut self, event: &ClientEvent) -> Result<(), (&'static str, String)> {
        let p = self.presence;
        match *event {
            ClientEvent::TypingStart {
                conversation_id,
                user_id,
            }
            | ClientEvent::TypingStop {
                conversation_id,
                user_id,
            } => {
                if user_id.is_some_and(|u| u != self.user) {
                    return Err(("forbidden", "user_id must be your own".to_owned()));
                }
                let not_member = || {
                    (
                        "not_member",
                        "you are not a member of this conversation".to_owned(),
                    )
                };
                // Checked against the sender's own conversations first, so
                // made-up ids cost no member lookup and leave nothing cached.
                let mine = p
                    .directory
                    .conversations_of(self.user)
                    .await
                    .map_err(internal)?;
                if mine.binary_search(&conversation_id).is_err() {
                    return Err(not_member());
                }
                if matches!(event, ClientEvent::TypingStart { .. }) {
                    // Recipients; `start` re-checks membership under its lock.
                    let members = p
                        .directory
                        .members(conversation_id)
                        .await
                        .map_err(internal)?;
                    let profile = p
                        .directory
                        .profile(self.user)
                        .await
                        .map_err(internal)?
                        .ok_or_else(|| internal("profile vanished"))?;
                    if !p.typing_start(conversation_id, profile, members) {
                        return Err(not_member());
                    }
                } else {
                    p.typing_stop(conversation_id, self.user);
                }
                p.activity(self.user);
            }
            ClientEvent::SetStatus {
                status: ManualStatus::Away,
            } => p.set_away(self.user),
            ClientEvent::SetStatus {
                status: ManualStatus::Online,
            }
            | ClientEvent::Activity => p.activity(self.user),
            ClientEvent::Ping => self.send(pong_frame()),
        }
        Ok(())
    }

    fn send(&self, frame: Frame) {
        self.out.send(frame);
    }

    fn close(&self, code: u16, reason: &'static str) {
        if self.out.tx.try_send(Outbound::Close(code, reason)).is_err() {
            self.out.kill.cancel();
        }
    }
}

enum Admit {
    Apply,
    Skip,
    Close,
}

fn internal(e: impl std::fmt::Display) -> (&'static str, String) {
    tracing::error!(error = %e, "event failed");
    ("internal", "internal error".to_owned())
}

fn is_too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    match e.into_inner().downcast::<Error>() {
        Ok(e) => matches!(*e, Error::Capacity(_)),
        Err(other) => other.to_string().contains("Space limit exceeded"),
    }
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

type Sink = SplitSink<WebSocket, Message>;

async fn write_loop(
    mut sink: Sink,
    ready: oneshot::Receiver<Frame>,
    mut rx: mpsc::Receiver<Outbound>,
    kill: CancellationToken,
    heartbeat: Duration,
) {
    let first = tokio::select! {
        r = ready => r.ok(),
        _ = kill.cancelled() => None,
    };
    let Some(first) = first else {
        // Connect failed or was cut short: send what is queued (a close) and stop.
        if let Ok(Outbound::Close(code, reason)) = rx.try_recv() {
            close(&mut sink, code, reason).await;
        }
        return;
    };
    if sink.send(Message::Text(first)).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    loop {
        let item = tokio::select! {
            biased;
            _ = kill.cancelled() => {
                close(&mut sink, CLOSE_GOING_AWAY, "going away").await;
                return;
            }
            item = rx.recv() => item,
            _ = ping.tick() => {
                let sent = tokio::select! {
                    r = sink.send(Message::Ping(Default::default())) => r.is_ok(),
                    _ = kill.cancelled() => false,
                };
                if !sent {
                    return;
                }
                continue;
            }
        };
        let Some(item) = item else {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
            return;
        };
        let written = tokio::select! {
            r = write_batch(&mut sink, &mut rx, item) => r,
            _ = kill.cancelled() => Err(()),
        };
        match written {
            Ok(None) => {}
            Ok(Some((code, reason))) => {
                close(&mut sink, code, reason).await;
                return;
            }
            Err(()) => return,
        }
    }
}

/// Feeds `first` and whatever else is queued, then flushes once. Returns a
/// close request if one was queued.
async fn write_batch(
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Outbound>,
    first: Outbound,
) -> Result<Option<(u16, &'static str)>, ()> {
    let mut next = Some(first);
    let mut fed = 0;
    while let Some(item) = next.take() {
        match item {
            Outbound::Frame(f) => sink.feed(Message::Text(f)).await.map_err(|_| ())?,
            Outbound::Close(code, reason) => {
                sink.flush().await.map_err(|_| ())?;
                return Ok(Some((code, reason)));
            }
        }
        fed += 1;
        if fed < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    sink.flush().await.map_err(|_| ())?;
    Ok(None)
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}
