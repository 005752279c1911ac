//! Cluster mode: several nodes share PostgreSQL (storage) and Redis
//! (cross-node fan-out and live presence). Set `PRESENCE_REDIS_URL` and a
//! `postgres://` database; without a Redis URL none of this runs.
//!
//! This is a layer beneath the node's presence state and knows nothing of
//! it: it publishes, subscribes, keeps the node's lease and its live
//! presence in Redis, and hands everything that arrives up as an [`Event`]
//! through a channel the presence state reads. The one thing it asks of the
//! node above is a snapshot of its users ([`LocalUsers`]), to republish
//! after Redis lost them.
//!
//! - `subscriptions`: which channels this node listens to, and why.
//! - `lease`: the node's lease, dead nodes, and the sync of this node's
//!   live presence to Redis (`scripts` holds the Lua).
//! - `link`: the pub/sub connection, kept subscribed, read in order.
//! - `publisher`: queued messages published in pipelines.
//! - `wire`: the messages and the key and channel names.
//!
//! Live presence is one Redis hash per user with a field per node that has
//! the user (connected or in the grace period); the scripts change it
//! atomically and publish the user's `user_status` when the cluster-wide
//! status changes. docs/architecture.md has the keys, the channels and the
//! failure cases.

mod lease;
mod link;
mod publisher;
pub mod scripts;
mod subscriptions;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::ClusterKind;
use crate::model::{Live, Status, StatusChange, Transition};
use lease::Pending;
use scripts::Scripts;
use subscriptions::Interest;
use wire::{Message, Names};

/// A Redis command slower than this counts as Redis being unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The scripts may walk every user of a node; they get longer.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting to be published; beyond this they are dropped (counted).
const OUTBOX: usize = 65_536;
/// Events waiting for the presence state; beyond this the link stops reading.
const EVENT_QUEUE: usize = 4_096;
/// Most reconnect backoff for the pub/sub link.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// Prefix of every key and channel, so clusters can share one Redis.
    pub prefix: String,
    pub node_id: String,
    /// A node whose lease is this old is taken for dead.
    pub lease: Duration,
    /// How often the lease is renewed and dead nodes are looked for.
    pub heartbeat: Duration,
}

/// A user's presence across the cluster, as Redis holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteLive {
    /// Online or away on some node; `None` when offline everywhere.
    pub live: Option<Live>,
    /// When they went offline everywhere, if Redis still remembers.
    pub seen: Option<DateTime<Utc>>,
}

/// What the cluster hands up to the node's presence state, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message from another node, or a status change Redis announced.
    Message(Message),
    /// Redis found `user` offline on every node as of this time.
    OfflineEverywhere(Uuid, DateTime<Utc>),
    /// A user's status changed for the whole cluster, seen by this node
    /// alone (it ran the script that made the change).
    Transition(Transition),
    /// A local change Redis could not take while it was down: this node's
    /// watchers have not heard it yet.
    Undelivered(Uuid, StatusChange),
    /// The subscription came back: messages published meanwhile were
    /// missed, so what they would have changed must be reloaded.
    Relinked,
    /// This node's state was republished after Redis lost it; once the
    /// other nodes have done the same (`settle`), correct what watchers
    /// here missed.
    Republished { settle: Duration },
}

/// The users this node has (connected or in their grace period), asked for
/// when its whole state must be republished.
pub trait LocalUsers: Send + Sync {
    fn local_users(&self) -> Vec<(Uuid, Live)>;
}

pub struct Cluster {
    pub node: Arc<str>,
    pub names: Names,
    client: redis::Client,
    conn: ConnectionManager,
    scripts: Scripts,
    lease: Duration,
    heartbeat: Duration,
    /// The pub/sub connection is subscribed and reading.
    link_up: AtomicBool,
    /// Why the pub/sub link is down, when Redis said why.
    link_error: parking_lot::Mutex<Option<String>>,
    /// The last command on the command connection succeeded.
    redis_up: AtomicBool,
    link_changed: Notify,
    /// The next state pass republishes this node's whole state.
    resync: AtomicBool,
    /// Redis lost this node's lease: the resync announces every user again.
    lease_lost: AtomicBool,
    /// No reaping before this: after Redis comes back, the other nodes get
    /// one lease to renew theirs before anyone is taken for dead.
    reap_from: parking_lot::Mutex<tokio::time::Instant>,
    /// Asks the link task to drop its connection and resubscribe.
    relink: Notify,
    /// Users a previous run of this node id left in Redis, now offline.
    left_behind: parking_lot::Mutex<Vec<(Uuid, DateTime<Utc>)>>,
    interest: tokio::sync::Mutex<Interest>,
    /// Local status changes not yet written to Redis, latest per user.
    dirty: parking_lot::Mutex<HashMap<Uuid, Pending>>,
    wake: Notify,
    outbox: mpsc::Sender<(String, String)>,
    outbox_rx: parking_lot::Mutex<Option<mpsc::Receiver<(String, String)>>>,
}

/// What [`Cluster::start`] returns: the tasks, and the events they hand up.
pub struct Started {
    pub tasks: Vec<JoinHandle<()>>,
    pub events: mpsc::Receiver<Event>,
}

/// What the cluster's tasks share: where events go, and the node above.
#[derive(Clone)]
struct Up {
    events: mpsc::Sender<Event>,
    local: Weak<dyn LocalUsers>,
}

impl Up {
    /// Hands an event to the presence state; false once it is gone.
    async fn send(&self, event: Event) -> bool {
        self.events.send(event).await.is_ok()
    }
}

async fn timed<T>(f: impl Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    timed_for(COMMAND_TIMEOUT, f).await
}

async fn timed_for<T>(
    limit: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(limit, f)
        .await
        .context("Redis did not answer in time")??)
}

impl Cluster {
    /// Connects to Redis and clears whatever a previous run of this node id
    /// left there, so a node that comes back never revives stale presence.
    pub async fn connect(config: ClusterConfig) -> anyhow::Result<Arc<Cluster>> {
        let client =
            redis::Client::open(config.redis_url.as_str()).context("parsing the Redis URL")?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(SCRIPT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(MAX_BACKOFF);
        let conn = timed(client.get_connection_manager_with_config(manager))
            .await
            .context("connecting to Redis")?;
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        let cluster = Arc::new(Cluster {
            node: Arc::from(config.node_id.as_str()),
            names: Names::new(&config.prefix),
            client,
            conn,
            scripts: Scripts::default(),
            lease: config.lease,
            heartbeat: config.heartbeat,
            link_up: AtomicBool::new(false),
            link_error: parking_lot::Mutex::new(None),
            redis_up: AtomicBool::new(true),
            link_changed: Notify::new(),
            resync: AtomicBool::new(false),
            lease_lost: AtomicBool::new(false),
            reap_from: parking_lot::Mutex::new(tokio::time::Instant::now()),
            relink: Notify::new(),
            left_behind: Default::default(),
            interest: Default::default(),
            dirty: Default::default(),
            wake: Notify::new(),
            outbox,
            outbox_rx: parking_lot::Mutex::new(Some(outbox_rx)),
        });
        cluster.register().await?;
        tracing::info!(node = %cluster.node, prefix = cluster.names.prefix(), "joined the cluster");
        Ok(cluster)
    }

    /// Redis answers and this node is subscribed: events cross nodes.
    pub fn is_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst) && self.redis_up.load(Ordering::SeqCst)
    }

    /// Why the node is not up, as far as it knows.
    pub fn down_reason(&self) -> String {
        if !self.redis_up.load(Ordering::SeqCst) {
            return "Redis is unreachable".into();
        }
        match &*self.link_error.lock() {
            Some(e) => format!("the Redis subscription failed: {e}"),
            None => "the Redis subscription is not up yet".into(),
        }
    }

    /// Waits (at most `limit`) until the node is subscribed, so the first
    /// clients' events already cross nodes.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.link_changed.notified();
            if self.is_up() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_up();
            }
        }
    }

    /// Starts the link, the lease and the publisher. Everything that
    /// arrives comes out of the returned receiver, in order; `local`
    /// answers for this node's users when its state must be republished.
    pub fn start(
        self: &Arc<Self>,
        local: Weak<dyn LocalUsers>,
        stop: CancellationToken,
    ) -> Started {
        let rx = self.outbox_rx.lock().take().expect("started once");
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let up = Up { events, local };
        Started {
            tasks: vec![
                tokio::spawn(self.clone().link(up.clone(), stop.clone())),
                tokio::spawn(self.clone().state(up, stop.clone())),
                tokio::spawn(self.clone().publisher(rx, stop)),
            ],
            events: events_rx,
        }
    }

    /// The cluster-wide presence of `users`, in one round trip.
    pub async fn lives(&self, users: &[Uuid]) -> anyhow::Result<Vec<RemoteLive>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.hgetall(self.names.live(*u));
        }
        let mut conn = self.conn.clone();
        let maps: Vec<HashMap<String, String>> = timed(pipe.query_async(&mut conn)).await?;
        Ok(maps.iter().map(parse_live).collect())
    }

    /// The nodes that have `user` now.
    pub async fn nodes_of(&self, user: Uuid) -> anyhow::Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let fields: Vec<String> = timed(
            redis::cmd("HKEYS")
                .arg(self.names.live(user))
                .query_async(&mut conn),
        )
        .await?;
        Ok(fields.into_iter().filter(|f| !f.starts_with('_')).collect())
    }

    /// A command failed: Redis is taken for down until a heartbeat answers,
    /// and the whole state is republished then.
    fn lost(&self, error: &anyhow::Error) {
        if self.redis_up.swap(false, Ordering::SeqCst) {
            tracing::error!(error = %format_args!("{error:#}"), "Redis unreachable: serving local users only");
        }
        self.resync.store(true, Ordering::SeqCst);
    }
}

/// The metrics kind of a message.
fn kind_of(m: &Message) -> ClusterKind {
    match m {
        Message::Typing { .. } => ClusterKind::Typing,
        Message::Status(_) => ClusterKind::Status,
        Message::Directory { .. } => ClusterKind::Directory,
        Message::Plugin { .. } => ClusterKind::Plugin,
        Message::NodeGone { .. } | Message::Activity { .. } | Message::Away { .. } => {
            ClusterKind::Node
        }
    }
}

fn parse_live(fields: &HashMap<String, String>) -> RemoteLive {
    let mut status = None;
    let mut last_activity = 0i64;
    let mut seen = None;
    for (field, value) in fields {
        if field == "_seen" {
            seen = wire::millis(value);
            continue;
        }
        let ms: i64 = value.get(1..).and_then(|v| v.parse().ok()).unwrap_or(0);
        last_activity = last_activity.max(ms);
        status = match (status, value.starts_with('o')) {
            (_, true) | (Some(Status::Online), _) => Some(Status::Online),
            _ => Some(Status::Away),
        };
    }
    RemoteLive {
        live: status.map(|status| Live {
            status,
            last_activity_at: wire::millis(&last_activity.to_string()).unwrap_or_default(),
        }),
        seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_presence_reads_online_over_away_and_the_latest_activity() {
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let l = parse_live(&fields(&[("a", "a1000"), ("b", "o500")]));
        assert_eq!(l.live.unwrap().status, Status::Online);
        assert_eq!(l.live.unwrap().last_activity_at.timestamp_millis(), 1000);
        let l = parse_live(&fields(&[("a", "a1000"), ("b", "a2000")]));
        assert_eq!(l.live.unwrap().status, Status::Away);
        let l = parse_live(&fields(&[("_seen", "3000")]));
        assert_eq!(l.live, None);
        assert_eq!(l.seen.unwrap().timestamp_millis(), 3000);
    }
}
