//! Who is connected to this node: every user's open sessions, their live
//! status and activity clock. Fan-out reads it to find recipients.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::metrics::METRICS;
use crate::model::{Live, Status};
use crate::protocol::Frame;

/// A session's bounded send queue. Fan-out pushes without waiting; the
/// session's task drains it into the socket. It costs nothing until used.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Debug, Default)]
struct OutboxState {
    items: VecDeque<Frame>,
    /// Set to drop the connection (slow reader, shutdown).
    killed: bool,
    /// Set when the session ended: later frames go nowhere.
    closed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Full,
    Closed,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            waker: AtomicWaker::new(),
            capacity,
        }
    }

    pub fn try_send(&self, frame: Frame) -> Result<(), Refused> {
        {
            let mut s = self.state.lock();
            if s.closed {
                return Err(Refused::Closed);
            }
            if s.items.len() >= self.capacity {
                return Err(Refused::Full);
            }
            s.items.push_back(frame);
        }
        self.waker.wake();
        Ok(())
    }

    /// Drops the connection without sending what is queued; true the first
    /// time only.
    pub fn kill(&self) -> bool {
        let first = !std::mem::replace(&mut self.state.lock().killed, true);
        self.waker.wake();
        first
    }

    pub fn is_killed(&self) -> bool {
        self.state.lock().killed
    }

    /// Refuses every later frame.
    pub fn close(&self) {
        self.state.lock().closed = true;
    }

    /// Waits until the connection is killed or, with `items`, until
    /// something is queued.
    pub async fn wait(&self, items: bool) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            let s = self.state.lock();
            if s.killed || (items && !s.items.is_empty()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Hands every queued frame to `f`, in order.
    pub fn drain(&self, f: impl FnMut(Frame)) {
        let mut s = self.state.lock();
        s.items.drain(..).for_each(f);
        if s.items.is_empty() && s.items.capacity() > SHRINK_ABOVE {
            s.items = VecDeque::new();
        }
    }
}

/// A queue that grew past this many slots is freed once drained.
const SHRINK_ABOVE: usize = 16;

/// The handle fan-out uses to reach one WebSocket connection.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    /// Bounded: a reader too slow to drain it is dropped, never buffered without end.
    pub out: Arc<Outbox>,
    /// Locale for policy-worded text (`?locale=` on `/ws`).
    pub locale: Arc<str>,
}

impl SessionHandle {
    /// Queues a frame; a full queue means a slow reader, which is dropped.
    pub fn send(&self, frame: Frame) {
        // Counted once per connection, not per frame refused after.
        if self.out.try_send(frame) == Err(Refused::Full) && self.out.kill() {
            METRICS.send_queue_drops.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                session = self.id,
                "send queue full: dropping slow connection"
            );
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

#[derive(Default)]
pub struct Registry {
    pub(crate) users: DashMap<Uuid, UserEntry>,
    next_session: AtomicU64,
    /// Connections per user from the upgrade on, before their session
    /// registers, so a burst of upgrades cannot slip past the cap.
    admitted: Arc<DashMap<Uuid, u32>>,
}

/// A connection's place under its user's cap; given back on drop.
#[derive(Debug)]
pub struct Admission {
    admitted: Arc<DashMap<Uuid, u32>>,
    user: Uuid,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.remove_if_mut(&self.user, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

impl Registry {
    /// A place for one more connection of `user`, unless they hold `cap`.
    pub fn admit(&self, user: Uuid, cap: u32) -> Option<Admission> {
        let mut n = self.admitted.entry(user).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Admission {
            admitted: self.admitted.clone(),
            user,
        })
    }

    /// Users holding admissions; empty when every connection has closed.
    pub fn admitted_users(&self) -> usize {
        self.admitted.len()
    }

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
        let handle = SessionHandle {
            id: 1,
            out: Arc::new(Outbox::new(2)),
            locale: Arc::from("en"),
        };
        handle.send(Frame::from_static("1"));
        handle.send(Frame::from_static("2"));
        assert!(!handle.out.is_killed());
        handle.send(Frame::from_static("3"));
        assert!(handle.out.is_killed(), "the connection is cut");
        let mut got = Vec::new();
        handle.out.drain(|f| got.push(f.as_str().to_owned()));
        assert_eq!(got, ["1", "2"], "nothing beyond the bound was kept");
    }

    #[test]
    fn admissions_are_capped_per_user_and_given_back() {
        let registry = Registry::default();
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = registry.admit(ann, 2).unwrap();
        let _second = registry.admit(ann, 2).unwrap();
        assert!(registry.admit(ann, 2).is_none(), "over the cap");
        assert!(
            registry.admit(bob, 2).is_some(),
            "another user's cap is theirs"
        );
        drop(first);
        let _third = registry.admit(ann, 2).expect("a place was given back");
        drop(_third);
        drop(_second);
        assert_eq!(registry.admitted_users(), 0, "nothing left behind");
    }

    #[test]
    fn a_closed_outbox_refuses_frames() {
        let out = Outbox::new(4);
        out.close();
        assert_eq!(
            out.try_send(Frame::from_static("late")),
            Err(Refused::Closed)
        );
    }
}
