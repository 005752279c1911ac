//! What crosses nodes in a cluster. Typing and directory changes made here
//! are published to the nodes that need them; what the cluster hands up
//! ([`Event`]) is applied here in order: typing from other nodes runs the
//! same typing rules, status changes reach this node's watchers, directory
//! changes and plugin swaps reload. Alone (no cluster), publishing is a
//! no-op and nothing arrives.

use std::sync::{Arc, Weak};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Presence;
use crate::cluster::Event;
use crate::cluster::wire::{self, DirectoryChange, Message};
use crate::metrics::ClusterKind;
use crate::model::{Ids, Status, StatusChange};
use crate::policy::Slot;
use crate::protocol::ManualStatus;
use crate::store;

/// Applies what the cluster hands up, in order, until it stops.
pub(super) async fn follow(
    presence: Weak<Presence>,
    mut events: mpsc::Receiver<Event>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        let (Some(event), Some(p)) = (event, presence.upgrade()) else {
            return;
        };
        p.on_cluster_event(event).await;
    }
}

impl Presence {
    /// A start (with its stamp) or a stop (`None`) made through this node.
    pub(super) fn publish_typing(&self, conversation: Uuid, user: Uuid, start: Option<u64>) {
        if let Some(c) = &self.cluster {
            c.publish(
                ClusterKind::Typing,
                c.names.typing(conversation),
                wire::typing(user, start, &c.node),
            );
        }
    }

    pub(super) fn publish_directory_change(&self, change: &DirectoryChange) {
        if let Some(c) = &self.cluster {
            c.publish(
                ClusterKind::Directory,
                c.names.bus(),
                wire::directory(&c.node, change),
            );
        }
    }

    pub(super) fn publish_plugin(&self, slot: Slot, sha256: &str) {
        if let Some(c) = &self.cluster {
            c.publish(
                ClusterKind::Plugin,
                c.names.bus(),
                wire::plugin(&c.node, slot, sha256),
            );
        }
    }

    /// The user's last connection here closed: what they typed through
    /// this node stops, here and on every node.
    pub(super) fn stop_typing_from_here(&self, user: Uuid) {
        for c in self.typing.stop_from(self, user, None) {
            self.publish_typing(c, user, None);
        }
    }

    /// Subscribes this node to what `user` (connected here) needs to hear.
    pub(super) async fn track(&self, user: Uuid) -> store::Result<()> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let conversations = self.directory.conversations_of(user).await?;
        let watched: Ids = self.watched_by(user).await?.into();
        let unwatched = c
            .track(user, conversations, watched, || {
                self.registry.users.contains_key(&user)
            })
            .await;
        self.forget_announced(&unwatched);
        Ok(())
    }

    /// `user` left this node: drops the subscriptions only they needed.
    pub(super) fn untrack(self: &Arc<Self>, user: Uuid) {
        let Some(c) = self.cluster.clone() else {
            return;
        };
        let this = self.clone();
        self.tasks.spawn(async move {
            // They may have come back meanwhile.
            let unwatched = c
                .untrack(user, || !this.registry.users.contains_key(&user))
                .await;
            this.forget_announced(&unwatched);
        });
    }

    fn forget_announced(&self, users: &[Uuid]) {
        for u in users {
            self.announced.remove(u);
        }
    }

    /// Hands `message` to the other nodes `user` is connected to; returns
    /// whether there are any.
    async fn forward(&self, user: Uuid, message: &str) -> bool {
        let Some(c) = self.cluster.as_ref().filter(|c| c.is_up()) else {
            return false;
        };
        match c.nodes_of(user).await {
            Ok(nodes) => {
                let mut elsewhere = false;
                for node in nodes.iter().filter(|n| **n != *c.node) {
                    c.publish(ClusterKind::Node, c.names.node(node), message.to_owned());
                    elsewhere = true;
                }
                elsewhere
            }
            Err(e) => {
                tracing::warn!(error = %format_args!("{e:#}"), "reading the user's nodes failed");
                false
            }
        }
    }

    /// Backend activity for `user`, to the other nodes they are connected
    /// to; returns whether there are any.
    pub(super) async fn forward_activity(&self, user: Uuid) -> bool {
        self.forward(user, &wire::activity(user)).await
    }

    /// A REST status change for `user`, to the other nodes they are
    /// connected to.
    pub(super) async fn forward_status(&self, user: Uuid, status: ManualStatus) {
        let message = match status {
            ManualStatus::Away => wire::away(user),
            ManualStatus::Online => wire::activity(user),
        };
        self.forward(user, &message).await;
    }

    async fn on_cluster_event(self: &Arc<Self>, event: Event) {
        match event {
            Event::Message(m) => self.on_cluster_message(m).await,
            Event::OfflineEverywhere(user, at) => self.offline_everywhere(user, at),
            Event::Transition(t) => self.report(t),
            Event::Undelivered(user, change) => self.spawn_announce(user, change),
            Event::Relinked => {
                // Messages published while this node was not listening are
                // lost: what they would have changed is reloaded.
                let this = self.clone();
                self.tasks
                    .spawn(async move { this.after_missed_messages().await });
            }
            Event::Republished { settle } => {
                let this = self.clone();
                self.tasks.spawn(async move {
                    tokio::time::sleep(settle).await;
                    this.reconcile().await;
                });
            }
        }
    }

    /// A message from another node (or Redis) arrived.
    async fn on_cluster_message(self: &Arc<Self>, message: Message) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let own = |origin: &str| origin == &*cluster.node;
        match message {
            Message::Typing {
                conversation,
                user,
                start,
                origin,
            } => {
                if own(&origin) {
                    return;
                }
                let Some(stamp) = start else {
                    self.typing.stop(self, conversation, user);
                    return;
                };
                let loaded = async {
                    let profile = self.directory.profile(user).await?;
                    let members = self.directory.members(conversation).await?;
                    store::Result::Ok(profile.map(|p| (p, members)))
                };
                match loaded.await {
                    Ok(Some((profile, members))) => {
                        self.typing.start(
                            self,
                            conversation,
                            profile,
                            members,
                            Some((origin.into(), stamp)),
                        );
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "a typing event from another node was lost")
                    }
                }
            }
            Message::Status(e) => {
                if let (Status::Offline, Some(at)) = (e.status, e.last_seen) {
                    self.directory.set_last_seen(&e.user, at);
                }
                self.spawn_announce_as(
                    e.user,
                    StatusChange {
                        seq: e.seq,
                        status: e.status,
                        at: e.at,
                        last_seen: e.last_seen,
                    },
                    e.replay,
                );
            }
            // Off the event task: these reload from the database (and a
            // plugin compiles), which must not hold up typing and status.
            // Reloads read the latest state, so their order does not matter.
            Message::Directory { origin, change } => {
                if !own(&origin) {
                    let this = self.clone();
                    self.tasks.spawn(async move {
                        if let Err(e) = this.apply_directory_change(&change, false).await {
                            tracing::warn!(error = %e, ?change, "applying a directory change failed");
                        }
                    });
                }
            }
            Message::Plugin {
                origin,
                slot,
                sha256,
            } => {
                if !own(&origin) {
                    let this = self.clone();
                    self.tasks
                        .spawn(async move { this.follow_plugin(slot, sha256).await });
                }
            }
            Message::NodeGone { node } => {
                if !own(&node) {
                    self.typing.stop_node(self, &node);
                }
            }
            Message::Activity { user } => self.activity(user),
            Message::Away { user } => self.set_away(user),
        }
    }

    /// The link to Redis was down, so directory changes and plugin swaps
    /// published meanwhile were missed: drop every cache, resubscribe for
    /// every connected user, and serve the cluster's plugins.
    async fn after_missed_messages(self: &Arc<Self>) {
        self.directory.clear();
        let users: Vec<Uuid> = self.registry.users.iter().map(|e| *e.key()).collect();
        for user in users {
            if let Err(e) = self.track(user).await {
                tracing::warn!(error = %e, %user, "resubscribing failed");
            }
        }
        self.follow_plugins().await;
    }

    /// After Redis came back: every watched user whose status differs from
    /// what this node's watchers were last told gets a correcting event
    /// (a change lost while Redis was away, or a dead node nobody reaped).
    async fn reconcile(self: &Arc<Self>) {
        let Some(c) = &self.cluster else { return };
        let watched = c.watched().await;
        for chunk in watched.chunks(500) {
            let Ok(lives) = c.lives(chunk).await else {
                return;
            };
            for (user, remote) in chunk.iter().zip(lives) {
                let status = remote.live.map_or(Status::Offline, |l| l.status);
                let Some((seq, told)) = self.announced.get(user).map(|e| *e) else {
                    continue;
                };
                if told == status {
                    continue;
                }
                let last_seen = match remote.live {
                    Some(l) if l.status == Status::Away => Some(l.last_activity_at),
                    Some(_) => None,
                    None => remote.seen,
                };
                self.spawn_announce(
                    *user,
                    StatusChange {
                        seq: seq + 1,
                        status,
                        at: Utc::now(),
                        last_seen,
                    },
                );
            }
        }
    }

    /// A clean stop in a cluster: this node's users leave Redis now, so
    /// watchers elsewhere hear of it without waiting for the lease.
    pub(super) async fn leave_cluster(&self) {
        let Some(c) = &self.cluster else { return };
        let now = Utc::now();
        let users = self
            .registry
            .users
            .iter()
            .map(|e| (*e.key(), e.disconnected_at.unwrap_or(now)))
            .collect();
        let (gone, changes) = c.leave(users).await;
        for (user, at) in gone {
            self.directory.set_last_seen(&user, at);
        }
        for t in changes {
            self.report(t);
        }
    }
}
