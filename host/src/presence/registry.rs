//! Who is connected to this node: every user's open sessions, their live
//! status and activity clock. Fan-out reads it to find recipients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::METRICS;
use crate::model::Status;
use crate::ws::protocol::Frame;

/// What a session's writer task sends next.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

/// The handle fan-out uses to reach one WebSocket connection.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    /// Bounded: a reader too slow to drain it is dropped, never buffered without end.
    pub tx: mpsc::Sender<Outbound>,
    /// Locale for policy-worded text (`?locale=` on `/ws`).
    pub locale: Arc<str>,
    /// Cancelled to drop the connection (slow reader, shutdown).
    pub kill: CancellationToken,
}

impl SessionHandle {
    /// Queues a frame; a full queue means a slow reader, which is dropped.
    pub fn send(&self, frame: Frame) {
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Counted once per connection, not per frame refused after.
                if !self.kill.is_cancelled() {
                    METRICS.send_queue_drops.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        session = self.id,
                        "send queue full: dropping slow connection"
                    );
                    self.kill.cancel();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// One user's presence on this node.
#[derive(Debug)]
pub struct UserEntry {
    pub sessions: Vec<SessionHandle>,
    /// Online or away while connected (or within the offline grace period).
    pub status: Status,
    /// Monotonic time of the last activity, for the idle timer.
    pub last_activity: Instant,
    /// Wall time of the last activity: an away user's `last_seen`.
    pub last_activity_at: DateTime<Utc>,
    /// Set while the last connection is closed and the grace period runs.
    pub disconnected_at: Option<DateTime<Utc>>,
}

/// A user's live status as other code needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    pub status: Status,
    pub last_activity_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct Registry {
    pub(crate) users: DashMap<Uuid, UserEntry>,
    next_session: AtomicU64,
}

impl Registry {
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Live status: present while connected or within the grace period.
    pub fn live(&self, user: &Uuid) -> Option<Live> {
        self.users.get(user).map(|e| Live {
            status: e.status,
            last_activity_at: e.last_activity_at,
        })
    }

    pub fn is_connected(&self, user: &Uuid) -> bool {
        self.users.get(user).is_some_and(|e| !e.sessions.is_empty())
    }

    /// Calls `f` for each of the user's sessions on this node.
    pub fn for_each_session(&self, user: &Uuid, mut f: impl FnMut(&SessionHandle)) {
        if let Some(e) = self.users.get(user) {
            e.sessions.iter().for_each(&mut f);
        }
    }

    /// Sends one frame to every session of `user`; returns how many.
    pub fn send(&self, user: &Uuid, frame: &Frame) -> u64 {
        let mut sent = 0;
        self.for_each_session(user, |s| {
            s.send(frame.clone());
            sent += 1;
        });
        sent
    }

    pub fn connected_users(&self) -> Vec<(Uuid, Status)> {
        self.users
            .iter()
            .filter(|e| !e.sessions.is_empty())
            .map(|e| (*e.key(), e.status))
            .collect()
    }

    pub fn session_count(&self) -> usize {
        self.users.iter().map(|e| e.sessions.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_lets_its_queue_fill_is_dropped_not_buffered() {
        let (tx, mut rx) = mpsc::channel(2);
        let handle = SessionHandle {
            id: 1,
            tx,
            locale: Arc::from("en"),
            kill: CancellationToken::new(),
        };
        handle.send(Frame::from_static("1"));
        handle.send(Frame::from_static("2"));
        assert!(!handle.kill.is_cancelled());
        handle.send(Frame::from_static("3"));
        assert!(handle.kill.is_cancelled(), "the connection is cut");
        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(f)) if f.as_str() == "1"));
        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(f)) if f.as_str() == "2"));
        assert!(rx.try_recv().is_err(), "nothing beyond the bound was kept");
    }
}
