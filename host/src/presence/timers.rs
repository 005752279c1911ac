//! One task owns every timer of the presence state (typing leases, rate
//! windows, offline grace, idle-away) in a `DelayQueue`, so a million typing
//! states cost a million queue slots, not a million tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue;
use uuid::Uuid;

use super::Presence;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKey {
    /// Re-evaluate one typer: lease expiry, a coalesced broadcast, or cleanup.
    Typing { conversation: Uuid, user: Uuid },
    /// The offline grace period of a user whose last connection closed.
    Grace(Uuid),
    /// Check whether a connected user has been idle long enough to be away.
    Away(Uuid),
}

enum Command {
    Set(TimerKey, Instant),
    Cancel(TimerKey),
}

#[derive(Clone)]
pub struct Timers {
    tx: mpsc::UnboundedSender<Command>,
    armed: Arc<AtomicUsize>,
}

pub struct TimerTask {
    rx: mpsc::UnboundedReceiver<Command>,
    /// How many timers are set, for tests and metrics.
    armed: Arc<AtomicUsize>,
}

impl Timers {
    pub fn new() -> (Timers, TimerTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let armed = Arc::new(AtomicUsize::new(0));
        (
            Timers {
                tx,
                armed: armed.clone(),
            },
            TimerTask { rx, armed },
        )
    }

    /// Timers currently set (as of the last command the timer task applied).
    pub fn armed(&self) -> usize {
        self.armed.load(Ordering::Relaxed)
    }

    /// Sets (or moves) the timer for `key`.
    pub fn set(&self, key: TimerKey, at: Instant) {
        let _ = self.tx.send(Command::Set(key, at));
    }

    pub fn cancel(&self, key: TimerKey) {
        let _ = self.tx.send(Command::Cancel(key));
    }
}

impl TimerTask {
    pub async fn run(mut self, presence: Weak<Presence>, stop: CancellationToken) {
        let mut queue: DelayQueue<TimerKey> = DelayQueue::new();
        let mut keys: HashMap<TimerKey, delay_queue::Key> = HashMap::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                cmd = self.rx.recv() => match cmd {
                    None => break,
                    Some(cmd) => apply(&mut queue, &mut keys, cmd),
                },
                Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                    let key = expired.into_inner();
                    keys.remove(&key);
                    let Some(presence) = presence.upgrade() else { break };
                    presence.on_timer(key);
                }
            }
            self.armed.store(keys.len(), Ordering::Relaxed);
        }
    }
}

fn apply(
    queue: &mut DelayQueue<TimerKey>,
    keys: &mut HashMap<TimerKey, delay_queue::Key>,
    cmd: Command,
) {
    match cmd {
        Command::Set(key, at) => match keys.get(&key) {
            Some(k) => queue.reset_at(k, at),
            None => {
                keys.insert(key, queue.insert_at(key, at));
            }
        },
        Command::Cancel(key) => {
            if let Some(k) = keys.remove(&key) {
                queue.remove(&k);
            }
        }
    }
}
