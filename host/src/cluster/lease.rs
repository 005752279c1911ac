//! The node's lease and the sync of its live presence to Redis. One task
//! renews the lease every heartbeat (and reaps the nodes whose lease ran
//! out), writes the local status changes recorded since, and republishes
//! the node's whole state whenever Redis may have lost it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Cluster, Event, SCRIPT_TIMEOUT, Up, timed, timed_for, wire};
use crate::model::{Status, StatusChange, Transition};

/// One local status change waiting to be written to Redis.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    change: StatusChange,
    /// Watchers on this node already heard it (Redis was down at the time).
    delivered: bool,
}

/// Users per script call of a full sync.
const SYNC_CHUNK: usize = 1_000;

/// What the update script is given per user: the field value (empty for
/// gone) and, for gone, when.
type Entry = (Uuid, String, Option<DateTime<Utc>>);

/// Users offline everywhere now, and since when.
type Gone = Vec<(Uuid, DateTime<Utc>)>;

/// The Redis field value of a local status: `o`/`a` and the last activity.
fn value_of(status: Status, last_activity: DateTime<Utc>) -> String {
    let tag = if status == Status::Away { 'a' } else { 'o' };
    format!("{tag}{}", last_activity.timestamp_millis())
}

/// What a script returns after its lease flag: the users now offline
/// everywhere, then (after `#`) the status changes it made.
#[derive(Debug, Default)]
struct Outcome {
    gone: Gone,
    changes: Vec<Transition>,
}

fn outcome(out: &[String]) -> Outcome {
    let split = out.iter().position(|s| s == "#").unwrap_or(out.len());
    let gone = out[..split]
        .chunks_exact(2)
        .filter_map(|p| Some((p[0].parse().ok()?, wire::millis(&p[1])?)))
        .collect();
    let changes = out
        .get(split + 1..)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let mut f = c.split('|');
            let (user, status, at, seen) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(Transition {
                user: user.parse().ok()?,
                status: status.parse().ok()?,
                at: wire::millis(at)?,
                last_seen: wire::millis(seen),
            })
        })
        .collect();
    Outcome { gone, changes }
}

/// The update script calls that publish a whole state: flags and users.
fn whole_state_calls(force: bool, entries: Vec<Entry>) -> Vec<(String, Vec<Entry>)> {
    let chunks = entries.len().div_ceil(SYNC_CHUNK).max(1);
    let mut entries = entries.into_iter();
    (0..chunks)
        .map(|i| {
            let mut flags = String::from("r");
            if force {
                flags.push('f');
            }
            if i == 0 {
                flags.push('b');
            }
            if i + 1 == chunks {
                flags.push('e');
            }
            (flags, entries.by_ref().take(SYNC_CHUNK).collect())
        })
        .collect()
}

impl Cluster {
    /// Clears what a previous run under this node id left in Redis (its
    /// users are handed up as offline once the node runs) and tells every
    /// node that what it owned is gone.
    pub(super) async fn register(&self) -> anyhow::Result<()> {
        let left = self
            .update_whole(false, Vec::new())
            .await
            .context("registering the node in Redis")?;
        *self.left_behind.lock() = left.gone;
        self.announce_gone().await.context("announcing the node")
    }

    /// A local status change: written to Redis by the state task, which
    /// announces it cluster-wide if the user's status there changed.
    /// `delivered`: this node's watchers heard it already.
    pub fn record(&self, user: Uuid, change: StatusChange, delivered: bool) {
        self.dirty
            .lock()
            .insert(user, Pending { change, delivered });
        self.wake.notify_one();
    }

    /// Runs the update script; returns what changed, or `None` when this
    /// node holds no lease (nothing was written).
    async fn update(&self, flags: &str, entries: Vec<Entry>) -> anyhow::Result<Option<Outcome>> {
        let mut call = self.scripts.update.prepare_invoke();
        call.arg(self.names.prefix())
            .arg(&*self.node)
            .arg(flags)
            .arg(self.lease.as_millis() as u64);
        for (user, value, seen) in &entries {
            call.arg(user.to_string()).arg(value).arg(
                seen.map(|t| t.timestamp_millis().to_string())
                    .unwrap_or_default(),
            );
        }
        let mut conn = self.conn.clone();
        let out: Vec<String> = timed_for(SCRIPT_TIMEOUT, call.invoke_async(&mut conn)).await?;
        Ok((out.first().map(String::as_str) == Some("1")).then(|| outcome(&out[1..])))
    }

    /// Renews the lease, reaps dead nodes, writes pending changes, and
    /// republishes everything after Redis was lost.
    pub(super) async fn state(self: Arc<Self>, up: Up, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let alive = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.beat(&up).await,
                _ = self.wake.notified() => true,
            };
            if !alive {
                return;
            }
            if !self.redis_up.load(Ordering::SeqCst) {
                continue;
            }
            let alive = if self.resync.load(Ordering::SeqCst) {
                self.full_sync(&up).await
            } else {
                self.write_pending(&up).await
            };
            if !alive {
                return;
            }
        }
    }

    /// Hands up what a script changed; false once nobody listens.
    async fn hand_up(&self, up: &Up, outcome: Outcome) -> bool {
        for (user, at) in outcome.gone {
            if !up.send(Event::OfflineEverywhere(user, at)).await {
                return false;
            }
        }
        for change in outcome.changes {
            if !up.send(Event::Transition(change)).await {
                return false;
            }
        }
        true
    }

    /// Renews the lease first: nothing else this node does (subscribing,
    /// handing events up) may hold it back until others take it for dead.
    async fn beat(&self, up: &Up) -> bool {
        let alive = self.renew(up).await;
        let gone = std::mem::take(&mut *self.left_behind.lock());
        let left = Outcome {
            gone,
            changes: Vec::new(),
        };
        if !alive || !self.hand_up(up, left).await {
            return false;
        }
        self.check_link().await;
        true
    }

    async fn renew(&self, up: &Up) -> bool {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.heartbeat.prepare_invoke();
        let reap = tokio::time::Instant::now() >= *self.reap_from.lock();
        call.arg(self.names.prefix())
            .arg(&*self.node)
            .arg(self.lease.as_millis() as u64)
            .arg(if reap { "1" } else { "0" });
        match timed_for(SCRIPT_TIMEOUT, call.invoke_async::<Vec<String>>(&mut conn)).await {
            Ok(out) => {
                if !self.redis_up.swap(true, Ordering::SeqCst) {
                    tracing::info!("Redis is back");
                    // Redis may have kept every lease, now stale: give the
                    // other nodes one lease to renew theirs.
                    *self.reap_from.lock() = tokio::time::Instant::now() + self.lease;
                    self.resync.store(true, Ordering::SeqCst);
                }
                if out.first().map(String::as_str) == Some("1") {
                    tracing::warn!("this node's lease was gone; publishing its state again");
                    self.lease_lost.store(true, Ordering::SeqCst);
                    self.resync.store(true, Ordering::SeqCst);
                }
                self.hand_up(up, outcome(out.get(1..).unwrap_or_default()))
                    .await
            }
            Err(e) => {
                self.lost(&e);
                true
            }
        }
    }

    async fn write_pending(&self, up: &Up) -> bool {
        let batch: Vec<(Uuid, Pending)> = self.dirty.lock().drain().collect();
        if batch.is_empty() {
            return true;
        }
        let entries = batch
            .iter()
            .map(|(user, p)| {
                let c = p.change;
                match c.status {
                    Status::Offline => (*user, String::new(), Some(c.at)),
                    Status::Away => (
                        *user,
                        value_of(Status::Away, c.last_seen.unwrap_or(c.at)),
                        None,
                    ),
                    Status::Online => (*user, value_of(Status::Online, c.at), None),
                }
            })
            .collect();
        match self.update("", entries).await {
            Ok(Some(done)) => self.hand_up(up, done).await,
            Ok(None) => {
                // Taken for dead meanwhile: republish everything, these too.
                tracing::warn!("this node's lease was gone; publishing its state again");
                self.lease_lost.store(true, Ordering::SeqCst);
                self.resync.store(true, Ordering::SeqCst);
                self.wake.notify_one();
                let mut dirty = self.dirty.lock();
                for (user, pending) in batch {
                    dirty.entry(user).or_insert(pending);
                }
                true
            }
            Err(e) => {
                self.lost(&e);
                // Local watchers still hear what happened here; the resync
                // publishes it once Redis is back.
                let mut undelivered = Vec::new();
                {
                    let mut dirty = self.dirty.lock();
                    for (user, pending) in batch {
                        if !pending.delivered {
                            undelivered.push((user, pending.change));
                        }
                        dirty.entry(user).or_insert(Pending {
                            delivered: true,
                            ..pending
                        });
                    }
                }
                for (user, change) in undelivered {
                    if !up.send(Event::Undelivered(user, change)).await {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Replaces what Redis holds for this node with `entries`, a script
    /// call per [`SYNC_CHUNK`] users so no single call holds Redis for long:
    /// the first call starts the sync, the last drops the node's users no
    /// call listed. Every call renews the lease.
    async fn update_whole(&self, force: bool, entries: Vec<Entry>) -> anyhow::Result<Outcome> {
        let mut total = Outcome::default();
        for (flags, chunk) in whole_state_calls(force, entries) {
            let done = self.update(&flags, chunk).await?.unwrap_or_default();
            total.gone.extend(done.gone);
            total.changes.extend(done.changes);
        }
        Ok(total)
    }

    /// Publishes this node's whole state, replacing what Redis holds for it.
    async fn full_sync(&self, up: &Up) -> bool {
        let Some(local) = up.local.upgrade() else {
            return false;
        };
        // Forced when Redis lost our lease: other nodes may have announced
        // our users offline, or Redis restarted empty. Receivers drop what
        // they already showed.
        self.resync.store(false, Ordering::SeqCst);
        let lease_lost = self.lease_lost.swap(false, Ordering::SeqCst);
        let pending: Vec<(Uuid, Pending)> = self.dirty.lock().drain().collect();
        let mut entries: Vec<Entry> = local
            .local_users()
            .into_iter()
            .map(|(user, l)| (user, value_of(l.status, l.last_activity_at), None))
            .collect();
        drop(local);
        let here: HashSet<Uuid> = entries.iter().map(|e| e.0).collect();
        for (user, pending) in &pending {
            if pending.change.status == Status::Offline && !here.contains(user) {
                entries.push((*user, String::new(), Some(pending.change.at)));
            }
        }
        let count = entries.len();
        match self.update_whole(lease_lost, entries).await {
            Ok(gone) => {
                if !self.hand_up(up, gone).await {
                    return false;
                }
                tracing::info!(users = count, "published this node's presence to Redis");
                // Other nodes resync too; then what watchers here missed
                // while Redis was away can be corrected.
                up.send(Event::Republished {
                    settle: self.heartbeat * 2,
                })
                .await
            }
            Err(e) => {
                self.lost(&e);
                self.lease_lost.fetch_or(lease_lost, Ordering::SeqCst);
                let mut dirty = self.dirty.lock();
                for (user, p) in pending {
                    dirty.entry(user).or_insert(p);
                }
                true
            }
        }
    }

    /// Leaves the cluster on a clean stop: the lease ends now and every
    /// user this node had is handed to the update script as gone; returns
    /// the users now offline everywhere, and those changes.
    pub async fn leave(&self, users: Vec<(Uuid, DateTime<Utc>)>) -> (Gone, Vec<Transition>) {
        let entries = users
            .into_iter()
            .map(|(u, at)| (u, String::new(), Some(at)))
            .collect();
        // The whole state: anything else this node still has in Redis goes
        // too, so nothing outlives the lease removed below.
        let done = match self.update_whole(false, entries).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %format_args!("{e:#}"), "leaving the cluster failed; the lease will expire");
                return Default::default();
            }
        };
        let mut conn = self.conn.clone();
        let _: anyhow::Result<()> = timed(
            redis::cmd("ZREM")
                .arg(format!("{}:nodes", self.names.prefix()))
                .arg(&*self.node)
                .query_async(&mut conn),
        )
        .await;
        let _ = self.announce_gone().await;
        (done.gone, done.changes)
    }

    /// Tells every node that what this node id owned is gone (its typing).
    async fn announce_gone(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        timed(
            redis::cmd("PUBLISH")
                .arg(self.names.bus())
                .arg(wire::node_gone(&self.node))
                .query_async(&mut conn),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_scripts_answer_reads_as_users_gone_and_status_changes() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let out: Vec<String> = [
            a.to_string(),
            "1000".into(),
            "#".into(),
            format!("{a}|offline|1500|1000"),
            format!("{b}|online|1600|"),
            "garbage".into(),
        ]
        .into();
        let o = outcome(&out);
        assert_eq!(o.gone.len(), 1);
        assert_eq!(o.changes.len(), 2);
        assert_eq!(o.changes[1].status, Status::Online);
        assert_eq!(o.changes[1].last_seen, None);
        assert_eq!(o.changes[0].last_seen.unwrap().timestamp_millis(), 1000);
        assert!(
            outcome(&[]).changes.is_empty(),
            "an early return has no changes"
        );
    }

    /// A node on the test Redis under a prefix of its own; `None` (after
    /// printing `skipped: …`) without `PRESENCE_TEST_REDIS_URL`.
    async fn node(test: &str) -> Option<(Arc<Cluster>, redis::aio::MultiplexedConnection)> {
        node_as(test, &format!("t{}", Uuid::new_v4().simple()), "a").await
    }

    /// Node `id` of the cluster under `prefix`.
    async fn node_as(
        test: &str,
        prefix: &str,
        id: &str,
    ) -> Option<(Arc<Cluster>, redis::aio::MultiplexedConnection)> {
        let Ok(url) = std::env::var("PRESENCE_TEST_REDIS_URL") else {
            println!("skipped: {test}: PRESENCE_TEST_REDIS_URL is not set");
            return None;
        };
        let config = super::super::ClusterConfig {
            redis_url: url.clone(),
            prefix: prefix.to_owned(),
            node_id: id.into(),
            lease: std::time::Duration::from_secs(5),
            heartbeat: std::time::Duration::from_secs(1),
        };
        let cluster = Cluster::connect(config).await.unwrap();
        let conn = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Some((cluster, conn))
    }

    fn online(users: &[Uuid]) -> Vec<Entry> {
        let now = Utc::now();
        users
            .iter()
            .map(|u| (*u, value_of(Status::Online, now), None))
            .collect()
    }

    /// A whole state of 2,500 users goes to Redis in three script calls (no
    /// single call holds Redis for all of them) and all arrive; the next,
    /// smaller one drops the users it no longer lists.
    #[tokio::test]
    async fn a_whole_state_is_published_in_chunks_and_replaces_the_last() {
        let Some((node, mut conn)) = node("a_whole_state_is_published_in_chunks").await else {
            return;
        };
        let users: Vec<Uuid> = (0..2_500).map(|_| Uuid::new_v4()).collect();
        let calls = whole_state_calls(true, online(&users));
        let shape: Vec<(&str, usize)> = calls.iter().map(|(f, c)| (f.as_str(), c.len())).collect();
        assert_eq!(shape, [("rfb", 1_000), ("rf", 1_000), ("rfe", 500)]);
        assert_eq!(
            whole_state_calls(false, Vec::new())[0].0,
            "rbe",
            "an empty state is one call"
        );
        node.update_whole(false, online(&users)).await.unwrap();
        let members = format!("{}:node:a", node.names.prefix());
        let count: usize = redis::cmd("SCARD")
            .arg(&members)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(count, 2_500);

        let gone = node.update_whole(false, online(&users[..5])).await.unwrap();
        let count: usize = redis::cmd("SCARD")
            .arg(&members)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(count, 5, "the users no part listed were dropped");
        assert_eq!(gone.gone.len(), 2_495, "and are offline everywhere");
        let live = format!("{}:live:{}", node.names.prefix(), users[0]);
        let field: Option<String> = redis::cmd("HGET")
            .arg(&live)
            .arg("a")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(field.is_some());
        let sync: bool = redis::cmd("EXISTS")
            .arg(format!("{}:sync:a", node.names.prefix()))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!sync, "the sync set is gone once the state is whole");
        node.update_whole(false, Vec::new()).await.unwrap();
    }

    /// A user leaves node A, then node B, but B's offline reaches Redis
    /// last with the earlier last seen (B's grace ran first; A's write
    /// came first): the cluster announces the later one, which A's users
    /// were shown, so every node says the same.
    #[tokio::test]
    async fn a_user_leaving_two_nodes_was_last_seen_when_the_later_left() {
        let test = "a_user_leaving_two_nodes_was_last_seen_when_the_later_left";
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let Some((a, _)) = node_as(test, &prefix, "a").await else {
            return;
        };
        let (b, _) = node_as(test, &prefix, "b").await.unwrap();
        a.register().await.unwrap();
        b.register().await.unwrap();
        let user = Uuid::new_v4();
        let at = |ms| Utc.timestamp_millis_opt(ms).unwrap();
        let left = |ms| vec![(user, String::new(), Some(at(ms)))];
        a.update("", online(&[user])).await.unwrap().unwrap();
        b.update("", online(&[user])).await.unwrap().unwrap();
        let a_left = a.update("", left(2_000)).await.unwrap().unwrap();
        assert!(a_left.changes.is_empty(), "still online on B");
        let b_left = b.update("", left(1_000)).await.unwrap().unwrap();
        assert_eq!(b_left.changes.len(), 1);
        assert_eq!(b_left.changes[0].status, Status::Offline);
        assert_eq!(
            b_left.changes[0].last_seen.map(|t| t.timestamp_millis()),
            Some(2_000)
        );
        a.update_whole(false, Vec::new()).await.unwrap();
        b.update_whole(false, Vec::new()).await.unwrap();
    }

    /// A burst of connections keeps the subscriptions busy (here: their
    /// lock held throughout); the lease is renewed all the same.
    #[tokio::test]
    async fn the_lease_is_renewed_while_subscriptions_are_busy() {
        let Some((node, mut conn)) =
            node("the_lease_is_renewed_while_subscriptions_are_busy").await
        else {
            return;
        };
        let (events, _rx) = tokio::sync::mpsc::channel(16);
        let local: std::sync::Weak<dyn super::super::LocalUsers> = std::sync::Weak::<Nobody>::new();
        let up = Up { events, local };
        let nodes = format!("{}:nodes", node.names.prefix());
        let before: f64 = redis::cmd("ZSCORE")
            .arg(&nodes)
            .arg("a")
            .query_async(&mut conn)
            .await
            .unwrap();
        let busy = node.interest.lock().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await; // Redis time moves on
        let beat = tokio::time::timeout(std::time::Duration::from_secs(3), node.beat(&up)).await;
        drop(busy);
        assert_eq!(
            beat.ok(),
            Some(true),
            "the heartbeat did not wait on the subscriptions"
        );
        let after: f64 = redis::cmd("ZSCORE")
            .arg(&nodes)
            .arg("a")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(after > before, "the lease was renewed");
        node.update_whole(false, Vec::new()).await.unwrap();
    }

    struct Nobody;

    impl super::super::LocalUsers for Nobody {
        fn local_users(&self) -> Vec<(Uuid, crate::model::Live)> {
            Vec::new()
        }
    }
}
