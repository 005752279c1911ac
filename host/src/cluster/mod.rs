//! Cluster mode: several nodes share PostgreSQL (storage) and Redis
//! (cross-node fan-out and live presence). Set `PRESENCE_REDIS_URL` and a
//! `postgres://` database; without a Redis URL none of this runs.
//!
//! Live presence is one Redis hash per user with a field per node that has
//! the user (connected or in the grace period); Lua scripts change it
//! atomically and publish the user's `user_status` when the cluster-wide
//! status changes. Each node holds a lease (a score in a sorted set) that its
//! heartbeat renews; any node's heartbeat ends expired leases and takes the
//! dead node's users offline. Typing events and status changes go to
//! per-conversation and per-user channels, which a node subscribes to only
//! while it has members or watchers connected, so an event reaches just the
//! nodes with recipients. docs/architecture.md has the keys, the channels
//! and the failure cases.

pub mod scripts;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::METRICS;
use crate::model::Status;
use crate::presence::Presence;
use crate::presence::directory::Ids;
use crate::presence::status::Change;
use scripts::Scripts;
use wire::{Message, Names};

/// A Redis command slower than this counts as Redis being unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The scripts may walk every user of a node; they get longer.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting to be published; beyond this they are dropped (counted).
const OUTBOX: usize = 65_536;
/// Channels per SUBSCRIBE command when resubscribing everything.
const SUBSCRIBE_CHUNK: usize = 1_000;
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
    pub live: Option<crate::presence::registry::Live>,
    /// When they went offline everywhere, if Redis still remembers.
    pub seen: Option<DateTime<Utc>>,
}

/// One local status change waiting to be written to Redis.
#[derive(Debug, Clone, Copy)]
struct Pending {
    change: Change,
    /// Watchers on this node already heard it (Redis was down at the time).
    delivered: bool,
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
    dirty: parking_lot::Mutex<HashMap<Uuid, Pending>>,
    wake: Notify,
    outbox: mpsc::Sender<(String, String)>,
    outbox_rx: parking_lot::Mutex<Option<mpsc::Receiver<(String, String)>>>,
}

/// The channels this node listens to: typing of every conversation of a
/// connected user, status of everyone a connected user watches.
#[derive(Default)]
struct Interest {
    sink: Option<PubSubSink>,
    users: HashMap<Uuid, (Ids, Ids)>,
    typing: HashMap<Uuid, u32>,
    status: HashMap<Uuid, u32>,
}

impl Interest {
    /// Replaces what `user` needs; returns the channels to subscribe and to
    /// unsubscribe, and the watched users nobody here watches any more.
    fn set(&mut self, names: &Names, user: Uuid, next: Option<(Ids, Ids)>) -> Diff {
        let mut diff = Diff::default();
        if let Some((conversations, watched)) = &next {
            for c in conversations.iter() {
                if bump(&mut self.typing, *c) {
                    diff.subscribe.push(names.typing(*c));
                }
            }
            for w in watched.iter() {
                if bump(&mut self.status, *w) {
                    diff.subscribe.push(names.status(*w));
                }
            }
        }
        let previous = match next {
            Some(n) => self.users.insert(user, n),
            None => self.users.remove(&user),
        };
        if let Some((conversations, watched)) = previous {
            for c in conversations.iter() {
                if drop_ref(&mut self.typing, *c) {
                    diff.unsubscribe.push(names.typing(*c));
                }
            }
            for w in watched.iter() {
                if drop_ref(&mut self.status, *w) {
                    diff.unsubscribe.push(names.status(*w));
                    diff.unwatched.push(*w);
                }
            }
        }
        diff
    }

    fn channels(&self, names: &Names, node: &str) -> Vec<String> {
        let mut all = vec![names.bus(), names.node(node)];
        all.extend(self.typing.keys().map(|c| names.typing(*c)));
        all.extend(self.status.keys().map(|u| names.status(*u)));
        all
    }
}

#[derive(Default)]
struct Diff {
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
    unwatched: Vec<Uuid>,
}

fn bump(refs: &mut HashMap<Uuid, u32>, key: Uuid) -> bool {
    let n = refs.entry(key).or_insert(0);
    *n += 1;
    *n == 1
}

fn drop_ref(refs: &mut HashMap<Uuid, u32>, key: Uuid) -> bool {
    match refs.get_mut(&key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            refs.remove(&key);
            true
        }
        None => false,
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

/// The Redis field value of a local status: `o`/`a` and the last activity.
fn value_of(status: Status, last_activity: DateTime<Utc>) -> String {
    let tag = if status == Status::Away { 'a' } else { 'o' };
    format!("{tag}{}", last_activity.timestamp_millis())
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
        // What a previous run under this id left is gone now; recorded
        // (last_seen, status) once the node runs.
        let left = cluster
            .update("r", Vec::new())
            .await
            .context("registering the node in Redis")?
            .unwrap_or_default();
        *cluster.left_behind.lock() = left;
        cluster
            .announce_gone()
            .await
            .context("announcing the node")?;
        tracing::info!(node = %cluster.node, prefix = cluster.names.prefix(), "joined the cluster");
        Ok(cluster)
    }

    /// Redis answers and this node is subscribed: events cross nodes.
    pub fn is_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst) && self.redis_up.load(Ordering::SeqCst)
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

    pub fn start(
        self: &Arc<Self>,
        presence: Weak<Presence>,
        stop: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let rx = self.outbox_rx.lock().take().expect("started once");
        vec![
            tokio::spawn(self.clone().link(presence.clone(), stop.clone())),
            tokio::spawn(self.clone().state(presence, stop.clone())),
            tokio::spawn(self.clone().publisher(rx, stop)),
        ]
    }

    /// Queues a message; dropped (and counted) while Redis is down or the
    /// outbox is full, where local delivery goes on without it. A node whose
    /// subscription is down still publishes: others hear it.
    pub fn publish(&self, kind: Kind, channel: String, payload: String) {
        if !self.redis_up.load(Ordering::SeqCst) {
            METRICS.cluster_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.outbox.try_send((channel, payload)) {
            Ok(()) => METRICS.cluster_published[kind as usize].fetch_add(1, Ordering::Relaxed),
            Err(_) => METRICS.cluster_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// A local status change: written to Redis by the state task, which
    /// announces it cluster-wide if the user's status there changed.
    pub(crate) fn record(&self, user: Uuid, change: Change, delivered: bool) {
        self.dirty
            .lock()
            .insert(user, Pending { change, delivered });
        self.wake.notify_one();
    }

    /// Subscribes to what a newly connected `user` needs (their
    /// conversations' typing, their watched users' status); returns once
    /// Redis confirmed, so nothing published after is missed.
    /// Only if `still_here` says so once the subscriptions are locked, so a
    /// user who left meanwhile leaves nothing subscribed.
    pub async fn track(
        &self,
        user: Uuid,
        conversations: Ids,
        watched: Ids,
        still_here: impl Fn() -> bool,
    ) -> Vec<Uuid> {
        self.set_interest(user, Some((conversations, watched)), still_here)
            .await
    }

    /// `user` left this node (if `still_gone` says so once the subscriptions
    /// are locked, so a reconnect racing this keeps its own); returns the
    /// watched users nobody here watches now.
    pub async fn untrack(&self, user: Uuid, still_gone: impl Fn() -> bool) -> Vec<Uuid> {
        self.set_interest(user, None, still_gone).await
    }

    async fn set_interest(
        &self,
        user: Uuid,
        next: Option<(Ids, Ids)>,
        proceed: impl Fn() -> bool,
    ) -> Vec<Uuid> {
        let mut interest = self.interest.lock().await;
        if !proceed() {
            return Vec::new();
        }
        let diff = interest.set(&self.names, user, next);
        if let Some(sink) = interest.sink.as_mut() {
            let mut ok = true;
            if !diff.subscribe.is_empty() {
                ok &= timed(sink.subscribe(&diff.subscribe)).await.is_ok();
            }
            if ok && !diff.unsubscribe.is_empty() {
                ok &= timed(sink.unsubscribe(&diff.unsubscribe)).await.is_ok();
            }
            if !ok {
                // The link task resubscribes everything when it reconnects.
                tracing::warn!("subscribing failed; dropping the Redis link");
                interest.sink = None;
                self.link_up.store(false, Ordering::SeqCst);
            }
        }
        diff.unwatched
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

    /// Runs the update script; returns the users now offline everywhere,
    /// or `None` when this node holds no lease (nothing was written).
    async fn update(
        &self,
        flags: &str,
        entries: Vec<(Uuid, String, Option<DateTime<Utc>>)>,
    ) -> anyhow::Result<Option<Vec<(Uuid, DateTime<Utc>)>>> {
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
        Ok((out.first().map(String::as_str) == Some("1")).then(|| gone_pairs(&out[1..])))
    }

    /// Renews the lease, reaps dead nodes, writes pending changes, and
    /// republishes everything after Redis was lost.
    async fn state(self: Arc<Self>, presence: Weak<Presence>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.beat(&presence).await,
                _ = self.wake.notified() => {}
            }
            if !self.redis_up.load(Ordering::SeqCst) {
                continue;
            }
            if self.resync.load(Ordering::SeqCst) {
                self.full_sync(&presence).await;
            } else {
                self.write_pending(&presence).await;
            }
        }
    }

    async fn beat(&self, presence: &Weak<Presence>) {
        if let Some(p) = presence.upgrade() {
            for (user, at) in std::mem::take(&mut *self.left_behind.lock()) {
                p.offline_everywhere(user, at);
            }
        }
        self.check_link().await;
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
                if let Some(p) = presence.upgrade() {
                    for (user, at) in gone_pairs(out.get(1..).unwrap_or_default()) {
                        p.offline_everywhere(user, at);
                    }
                }
            }
            Err(e) => self.lost(&e),
        }
    }

    /// A subscription can look alive on a half-open connection: PING it.
    async fn check_link(&self) {
        let mut interest = self.interest.lock().await;
        let Some(sink) = interest.sink.as_mut() else {
            return;
        };
        if timed(sink.ping::<redis::Value>()).await.is_err() {
            tracing::warn!("the Redis subscription did not answer PING; reconnecting");
            interest.sink = None;
            self.link_up.store(false, Ordering::SeqCst);
            self.relink.notify_one();
        }
    }

    fn lost(&self, error: &anyhow::Error) {
        if self.redis_up.swap(false, Ordering::SeqCst) {
            tracing::error!(error = %format_args!("{error:#}"), "Redis unreachable: serving local users only");
        }
        self.resync.store(true, Ordering::SeqCst);
    }

    async fn write_pending(&self, presence: &Weak<Presence>) {
        let batch: Vec<(Uuid, Pending)> = self.dirty.lock().drain().collect();
        if batch.is_empty() {
            return;
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
        let Some(p) = presence.upgrade() else { return };
        match self.update("", entries).await {
            Ok(Some(gone)) => {
                for (user, at) in gone {
                    p.offline_everywhere(user, at);
                }
            }
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
            }
            Err(e) => {
                self.lost(&e);
                // Local watchers still hear what happened here; the resync
                // publishes it once Redis is back.
                let mut dirty = self.dirty.lock();
                for (user, pending) in batch {
                    if !pending.delivered {
                        p.announce_locally(user, pending.change);
                    }
                    dirty.entry(user).or_insert(Pending {
                        delivered: true,
                        ..pending
                    });
                }
            }
        }
    }

    /// Publishes this node's whole state, replacing what Redis holds for it.
    async fn full_sync(&self, presence: &Weak<Presence>) {
        let Some(p) = presence.upgrade() else { return };
        // Forced when Redis lost our lease: other nodes may have announced
        // our users offline, or Redis restarted empty. Receivers drop what
        // they already showed.
        self.resync.store(false, Ordering::SeqCst);
        let lease_lost = self.lease_lost.swap(false, Ordering::SeqCst);
        let pending: Vec<(Uuid, Pending)> = self.dirty.lock().drain().collect();
        let mut entries: Vec<(Uuid, String, Option<DateTime<Utc>>)> = p
            .registry
            .users
            .iter()
            .map(|e| (*e.key(), value_of(e.status, e.last_activity_at), None))
            .collect();
        let here: HashSet<Uuid> = entries.iter().map(|e| e.0).collect();
        for (user, pending) in &pending {
            if pending.change.status == Status::Offline && !here.contains(user) {
                entries.push((*user, String::new(), Some(pending.change.at)));
            }
        }
        let flags = if lease_lost { "rf" } else { "r" };
        match self.update(flags, entries).await {
            Ok(gone) => {
                for (user, at) in gone.unwrap_or_default() {
                    p.offline_everywhere(user, at);
                }
                tracing::info!(
                    users = here.len(),
                    "published this node's presence to Redis"
                );
                let this = p.clone();
                let delay = self.heartbeat * 2;
                p.tasks.spawn(async move {
                    // Other nodes resync too; then correct what watchers here
                    // missed while Redis was away.
                    tokio::time::sleep(delay).await;
                    this.reconcile().await;
                });
            }
            Err(e) => {
                self.lost(&e);
                self.lease_lost.fetch_or(lease_lost, Ordering::SeqCst);
                let mut dirty = self.dirty.lock();
                for (user, p) in pending {
                    dirty.entry(user).or_insert(p);
                }
            }
        }
    }

    /// The watched users this node's watchers hear about.
    pub async fn watched(&self) -> Vec<Uuid> {
        self.interest.lock().await.status.keys().copied().collect()
    }

    /// Keeps one pub/sub connection subscribed to everything this node
    /// needs, reconnecting with backoff, and hands each message on in order.
    async fn link(self: Arc<Self>, presence: Weak<Presence>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut first = true;
        loop {
            let pubsub = tokio::select! {
                _ = stop.cancelled() => return,
                r = timed(self.client.get_async_pubsub()) => r,
            };
            let (mut sink, mut stream) = match pubsub {
                Ok(p) => p.split(),
                Err(e) => {
                    self.lost(&e);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            {
                let mut interest = self.interest.lock().await;
                let channels = interest.channels(&self.names, &self.node);
                let mut ok = true;
                for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                    if timed(sink.subscribe(chunk)).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    continue;
                }
                interest.sink = Some(sink);
            }
            backoff = Duration::from_millis(50);
            self.link_up.store(true, Ordering::SeqCst);
            self.link_changed.notify_waiters();
            if !first {
                tracing::info!("Redis link restored");
                self.resync.store(true, Ordering::SeqCst);
                self.wake.notify_one();
                if let Some(p) = presence.upgrade() {
                    // Messages published while this node was not listening
                    // are lost: what they would have changed is reloaded.
                    let this = p.clone();
                    p.tasks
                        .spawn(async move { this.after_missed_messages().await });
                }
            }
            first = false;
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.relink.notified() => None,
                    m = stream.next() => m,
                };
                let Some(msg) = msg else { break };
                let Some(p) = presence.upgrade() else { return };
                let payload: String = match msg.get_payload() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                match self.names.parse(msg.get_channel_name(), &payload) {
                    Some(m) => {
                        METRICS.cluster_received[Kind::of(&m) as usize]
                            .fetch_add(1, Ordering::Relaxed);
                        p.on_cluster_message(m).await;
                    }
                    None => tracing::warn!(
                        channel = msg.get_channel_name(),
                        "unreadable cluster message"
                    ),
                }
            }
            self.link_up.store(false, Ordering::SeqCst);
            self.interest.lock().await.sink = None;
            tracing::error!("Redis link lost: serving local users only");
        }
    }

    /// Publishes queued messages in order, a pipeline per batch.
    async fn publisher(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, String)>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(256);
        loop {
            let n = tokio::select! {
                _ = stop.cancelled() => return,
                n = rx.recv_many(&mut batch, 256) => n,
            };
            if n == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for (channel, payload) in batch.drain(..) {
                pipe.publish(channel, payload).ignore();
            }
            let mut conn = self.conn.clone();
            if let Err(e) = timed(pipe.query_async::<()>(&mut conn)).await {
                METRICS
                    .cluster_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.lost(&e);
            }
        }
    }

    /// Leaves the cluster on a clean stop: the lease ends now and every
    /// user this node had is handed to the update script as gone.
    pub async fn leave(&self, users: Vec<(Uuid, DateTime<Utc>)>) -> Vec<(Uuid, DateTime<Utc>)> {
        let entries = users
            .into_iter()
            .map(|(u, at)| (u, String::new(), Some(at)))
            .collect();
        // The whole state (`r`): anything else this node still has in Redis
        // goes too, so nothing outlives the lease removed below.
        let gone = match self.update("r", entries).await {
            Ok(gone) => gone.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %format_args!("{e:#}"), "leaving the cluster failed; the lease will expire");
                return Vec::new();
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
        gone
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

/// Message kinds, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Typing = 0,
    Status = 1,
    Directory = 2,
    Plugin = 3,
    Node = 4,
}

impl Kind {
    pub const NAMES: [&'static str; 5] = ["typing", "status", "directory", "plugin", "node"];

    fn of(m: &Message) -> Kind {
        match m {
            Message::Typing { .. } => Kind::Typing,
            Message::Status(_) => Kind::Status,
            Message::Directory { .. } => Kind::Directory,
            Message::Plugin { .. } => Kind::Plugin,
            Message::NodeGone { .. } | Message::Activity { .. } | Message::Away { .. } => {
                Kind::Node
            }
        }
    }
}

fn gone_pairs(out: &[String]) -> Vec<(Uuid, DateTime<Utc>)> {
    out.chunks_exact(2)
        .filter_map(|p| Some((p[0].parse().ok()?, wire::millis(&p[1])?)))
        .collect()
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
        live: status.map(|status| crate::presence::registry::Live {
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
    fn a_channel_is_subscribed_once_and_dropped_with_its_last_user() {
        let names = Names::new("p");
        let mut interest = Interest::default();
        let (c, w) = (Uuid::new_v4(), Uuid::new_v4());
        let need = || (Ids::from(vec![c]), Ids::from(vec![w]));
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let d = interest.set(&names, ann, Some(need()));
        assert_eq!(d.subscribe, vec![names.typing(c), names.status(w)]);
        assert!(interest.set(&names, bob, Some(need())).subscribe.is_empty());
        let d = interest.set(&names, ann, Some(need()));
        assert!(
            d.subscribe.is_empty() && d.unsubscribe.is_empty(),
            "a refresh changes nothing"
        );
        assert!(interest.set(&names, ann, None).unsubscribe.is_empty());
        let d = interest.set(&names, bob, None);
        assert_eq!(d.unsubscribe, vec![names.typing(c), names.status(w)]);
        assert_eq!(d.unwatched, vec![w]);
    }

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
