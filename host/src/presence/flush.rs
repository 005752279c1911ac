//! `last_seen` is written behind: on going offline, and for connected users
//! in batches. A failed write stays pending and is retried; a clean shutdown
//! flushes everything before exit.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use super::directory::Directory;
use crate::metrics::METRICS;
use crate::model::Status;

/// Attempts of the final flush on shutdown before giving up loudly.
pub const SHUTDOWN_FLUSH_ATTEMPTS: u32 = 5;
/// Pause between failed writes.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct WriteBehind {
    pending: Mutex<HashMap<Uuid, (Status, DateTime<Utc>)>>,
    pub(crate) wake: Notify,
}

impl WriteBehind {
    /// Queues a write; the latest time wins.
    pub fn record(&self, user: Uuid, status: Status, at: DateTime<Utc>) {
        let mut pending = self.pending.lock();
        let e = pending.entry(user).or_insert((status, at));
        if at >= e.1 {
            *e = (status, at);
        }
    }

    /// Asks the flusher to write now rather than at the next interval.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }

    /// Writes everything pending in one transaction; on failure it stays
    /// pending. What was written also moves the cached profiles forward, so a
    /// profile cached from the store before this write is not stale after it.
    pub async fn flush(&self, directory: &Directory) -> bool {
        let store = directory.store();
        let batch: Vec<(Uuid, Status, DateTime<Utc>)> = {
            let mut pending = self.pending.lock();
            pending.drain().map(|(u, (s, t))| (u, s, t)).collect()
        };
        if batch.is_empty() {
            return true;
        }
        let started = std::time::Instant::now();
        let written = store.write_presence(&batch).await;
        METRICS.flush.observe(started.elapsed());
        match written {
            Ok(()) => {
                for (u, _, t) in &batch {
                    directory.set_last_seen(u, *t);
                }
                true
            }
            Err(e) => {
                METRICS
                    .flush_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, users = batch.len(), "last_seen write failed; will retry");
                for (u, s, t) in batch {
                    self.record(u, s, t);
                }
                false
            }
        }
    }
}
