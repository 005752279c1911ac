//! The presence state of this node and the rules that change it. The
//! transports call one method per action: a client's (`actions`: typing,
//! status, activity), the chat backend's (`admin`: profiles, membership,
//! contacts, activity) and an operator's (`plugins`). The state is who is
//! online (`status`), who is typing (`typing`), who may see what (`view`)
//! and where events go (`registry`); it lives in memory, and the store is
//! touched only for the caches' misses (`directory`) and the write-behind
//! of `last_seen` (`flush`). Every timer runs in one task (`timers`). In a
//! cluster, `remote` publishes what must cross nodes and applies what the
//! cluster hands up.

pub mod actions;
pub mod admin;
pub mod directory;
pub mod flush;
pub mod plugins;
pub mod registry;
pub mod remote;
pub mod status;
pub mod timers;
pub mod typing;
pub mod view;

use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cluster, LocalUsers};
use crate::config::Limits;
use crate::model::{Live, Status};
use crate::policy::Policies;
use crate::store::Store;
use crate::webhook::Webhooks;
use directory::Directory;
use flush::WriteBehind;
use registry::Registry;
use timers::{TimerKey, Timers};
use typing::Typing;

pub use actions::Refusal;
pub use plugins::PluginChange;

pub struct Presence {
    pub policies: Arc<Policies>,
    pub directory: Directory,
    pub registry: Registry,
    pub typing: Typing,
    pub timers: Timers,
    pub(crate) write_behind: WriteBehind,
    /// Source of [`StatusChange`](crate::model::StatusChange) sequence numbers.
    pub(crate) status_seq: std::sync::atomic::AtomicU64,
    /// Per user, the sequence number and status of the last status change
    /// delivered here (or shown in a `ready`).
    pub(crate) announced: dashmap::DashMap<uuid::Uuid, (u64, Status)>,
    /// Status fan-outs that wait on the store run here; shutdown waits for them.
    pub(crate) tasks: TaskTracker,
    /// Cancelled at shutdown: what retries stops retrying.
    pub(crate) stopping: CancellationToken,
    pub limits: Limits,
    /// Redis fan-out and live presence; `None` on a node that runs alone.
    pub cluster: Option<Arc<Cluster>>,
    /// Where status transitions go for the chat backend, if it wants them.
    pub(crate) webhooks: Option<Arc<Webhooks>>,
}

/// Owns the background tasks of a [`Presence`]; `shutdown` stops them in order.
pub struct PresenceTasks {
    stop: CancellationToken,
    timer_task: JoinHandle<()>,
    flush_task: JoinHandle<()>,
    /// The cluster's own tasks, then the one applying what they hand up.
    cluster_tasks: Vec<JoinHandle<()>>,
}

impl Presence {
    pub fn start(
        store: Store,
        policies: Arc<Policies>,
        limits: Limits,
        cluster: Option<Arc<Cluster>>,
        webhooks: Option<Arc<Webhooks>>,
    ) -> (Arc<Presence>, PresenceTasks) {
        let (timers, timer_task) = Timers::new();
        let stop = CancellationToken::new();
        let presence = Arc::new(Presence {
            policies,
            directory: Directory::new(store),
            registry: Registry::default(),
            typing: Typing::default(),
            timers,
            write_behind: WriteBehind::default(),
            status_seq: Default::default(),
            announced: Default::default(),
            tasks: TaskTracker::new(),
            stopping: stop.clone(),
            limits,
            cluster,
            webhooks,
        });
        let timer_task = tokio::spawn(timer_task.run(Arc::downgrade(&presence), stop.clone()));
        let flush_task = tokio::spawn(status::run_flusher(Arc::downgrade(&presence), stop.clone()));
        if let Some(rollbacks) = presence.policies.take_rollbacks() {
            tokio::spawn(Presence::follow_own_rollbacks(
                Arc::downgrade(&presence),
                rollbacks,
            ));
        }
        let cluster_tasks = match &presence.cluster {
            Some(c) => {
                let local: Weak<dyn LocalUsers> = Arc::downgrade(&presence) as _;
                let started = c.start(local, stop.clone());
                let mut tasks = started.tasks;
                tasks.push(tokio::spawn(remote::follow(
                    Arc::downgrade(&presence),
                    started.events,
                    stop.clone(),
                )));
                tasks
            }
            None => Vec::new(),
        };
        (
            presence,
            PresenceTasks {
                stop,
                timer_task,
                flush_task,
                cluster_tasks,
            },
        )
    }

    pub fn store(&self) -> &Store {
        self.directory.store()
    }

    /// Background work still running (status fan-outs and the like): the
    /// model tests wait for zero before comparing what sessions received.
    pub fn background_work(&self) -> usize {
        self.tasks.len()
    }

    fn on_timer(self: &Arc<Self>, key: TimerKey) {
        match key {
            TimerKey::Typing { conversation, user } => {
                self.typing.on_timer(self, conversation, user)
            }
            TimerKey::Grace(user) => self.grace_expired(user),
            TimerKey::Away(user) => self.idle_check(user),
        }
    }
}

impl LocalUsers for Presence {
    fn local_users(&self) -> Vec<(uuid::Uuid, Live)> {
        self.registry
            .users
            .iter()
            .map(|e| {
                let live = Live {
                    status: e.status,
                    last_activity_at: e.last_activity_at,
                };
                (*e.key(), live)
            })
            .collect()
    }
}

impl PresenceTasks {
    /// Call after every connection has closed: ends the timers, records every
    /// user still known as offline now, and flushes `last_seen` with retries.
    pub async fn shutdown(self, presence: &Arc<Presence>) {
        self.stop.cancel();
        let _ = self.timer_task.await;
        let _ = self.flush_task.await;
        for t in self.cluster_tasks {
            let _ = t.await;
        }
        presence.tasks.close();
        presence.tasks.wait().await;
        presence.record_everyone_offline();
        presence.leave_cluster().await;
        for attempt in 1..=flush::SHUTDOWN_FLUSH_ATTEMPTS {
            if presence.write_behind.flush(&presence.directory).await {
                return;
            }
            tracing::warn!(attempt, "final last_seen flush failed");
            tokio::time::sleep(flush::RETRY_DELAY).await;
        }
        tracing::error!(
            pending = presence.write_behind.pending(),
            "last_seen writes lost at shutdown"
        );
    }
}
