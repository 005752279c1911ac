//! What crosses nodes in a cluster: typing events this node's clients send
//! go to the other nodes with members, which run the same typing rules on
//! them; status changes come back from Redis; changes to the directory and
//! to plugins reach every node. Alone (no cluster), each of these is the
//! plain local operation.

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Presence;
use super::directory::{Ids, Profile};
use super::status::Change;
use crate::cluster::Kind;
use crate::cluster::wire::{self, DirectoryChange, Message};
use crate::model::Status;
use crate::policy::{Policies, Slot};
use crate::store::{self, Store};

impl Presence {
    /// `typing_start` from a client of this node.
    pub fn typing_start(&self, conversation: Uuid, profile: Arc<Profile>, members: Ids) -> bool {
        let user = profile.id;
        let started = self
            .typing
            .start(self, conversation, profile, members, None);
        if started {
            self.publish_typing(conversation, user, true);
        }
        started
    }

    /// `typing_stop` from a client of this node, or a sent message.
    pub fn typing_stop(&self, conversation: Uuid, user: Uuid) {
        self.typing.stop(self, conversation, user);
        self.publish_typing(conversation, user, false);
    }

    /// The user's last connection here closed: what they typed through
    /// this node stops, here and on every node.
    pub(super) fn stop_typing_from_here(&self, user: Uuid) {
        for c in self.typing.stop_from(self, user, None) {
            self.publish_typing(c, user, false);
        }
    }

    fn publish_typing(&self, conversation: Uuid, user: Uuid, start: bool) {
        if let Some(c) = &self.cluster {
            c.publish(
                Kind::Typing,
                c.names.typing(conversation),
                wire::typing(user, start, &c.node),
            );
        }
    }

    /// Applies a change the admin or REST API made, here and on every node.
    pub async fn directory_changed(&self, change: DirectoryChange) -> store::Result<()> {
        self.apply_directory_change(&change, true).await?;
        if let Some(c) = &self.cluster {
            c.publish(
                Kind::Directory,
                c.names.bus(),
                wire::directory(&c.node, &change),
            );
        }
        Ok(())
    }

    /// Drops what the caches held of the change, stops the typing of
    /// members who left, and re-subscribes for the connected users whose
    /// conversations or watched users changed.
    async fn apply_directory_change(
        &self,
        change: &DirectoryChange,
        here: bool,
    ) -> store::Result<()> {
        let d = &self.directory;
        let mut affected = match change {
            DirectoryChange::Profile { user } => {
                // The node that made the change cached the new profile.
                if !here {
                    d.invalidate_profile(user);
                }
                Vec::new()
            }
            DirectoryChange::Members {
                conversation,
                users,
            } => {
                for u in users {
                    d.invalidate_conversations(u);
                }
                d.invalidate_members(conversation);
                let members = d.members(*conversation).await?;
                self.typing
                    .members_changed(self, *conversation, members.clone());
                users.iter().chain(members.iter()).copied().collect()
            }
            DirectoryChange::Contacts { user, affected } => {
                d.invalidate_contacts(user);
                for c in affected {
                    d.invalidate_watchers(c);
                }
                vec![*user]
            }
        };
        if self.cluster.is_some() {
            affected.sort_unstable();
            affected.dedup();
            for user in affected {
                if self.registry.users.contains_key(&user) {
                    self.track(user).await?;
                }
            }
        }
        Ok(())
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
    pub(super) async fn forward(&self, user: Uuid, message: &str) -> bool {
        let Some(c) = self.cluster.as_ref().filter(|c| c.is_up()) else {
            return false;
        };
        match c.nodes_of(user).await {
            Ok(nodes) => {
                let mut elsewhere = false;
                for node in nodes.iter().filter(|n| **n != *c.node) {
                    c.publish(Kind::Node, c.names.node(node), message.to_owned());
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

    /// `PUT /users/me/status` (`away` or `online`), wherever the user is connected.
    pub async fn set_status_anywhere(self: &Arc<Self>, user: Uuid, away: bool) {
        let message = if away {
            wire::away(user)
        } else {
            wire::activity(user)
        };
        self.forward(user, &message).await;
        if away {
            self.set_away(user);
        } else {
            self.activity(user);
        }
    }

    /// A message from another node (or Redis) arrived.
    pub async fn on_cluster_message(self: &Arc<Self>, message: Message) {
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
                if !start {
                    self.typing.stop(self, conversation, user);
                    return;
                }
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
                            Some(origin.into()),
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
                    Change {
                        seq: e.seq,
                        status: e.status,
                        at: e.at,
                        last_seen: e.last_seen,
                    },
                    e.replay,
                );
            }
            // Off the link task: these reload from the database (and a
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
    pub(crate) async fn after_missed_messages(self: &Arc<Self>) {
        self.directory.clear();
        let users: Vec<Uuid> = self.registry.users.iter().map(|e| *e.key()).collect();
        for user in users {
            if let Err(e) = self.track(user).await {
                tracing::warn!(error = %e, %user, "resubscribing failed");
            }
        }
        match self.store().active_plugins().await {
            Ok(active) => {
                for (slot, sha256) in active {
                    if let Ok(slot) = slot.parse() {
                        self.follow_plugin(slot, sha256).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the cluster's plugins failed"),
        }
    }

    /// After Redis came back: every watched user whose status differs from
    /// what this node's watchers were last told gets a correcting event
    /// (a change lost while Redis was away, or a dead node nobody reaped).
    pub(crate) async fn reconcile(self: &Arc<Self>) {
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
                    Change {
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
        for (user, at) in c.leave(users).await {
            self.directory.set_last_seen(&user, at);
        }
    }
}

impl Presence {
    /// An operator installed or rolled back a plugin here: in a cluster the
    /// component is stored where every node can fetch it, and announced.
    pub async fn plugin_changed(
        &self,
        slot: Slot,
        sha256: &str,
        bytes: Option<&[u8]>,
    ) -> store::Result<()> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let store = self.store();
        if let Some(bytes) = bytes {
            store.save_plugin(sha256, slot.as_str(), bytes).await?;
        }
        store.set_active_plugin(slot.as_str(), sha256).await?;
        c.publish(
            Kind::Plugin,
            c.names.bus(),
            wire::plugin(&c.node, slot, sha256),
        );
        Ok(())
    }

    async fn follow_plugin(&self, slot: Slot, sha256: String) {
        if let Err(e) = follow_plugin(&self.policies, self.store(), slot, &sha256).await {
            tracing::error!(%slot, %sha256, error = %format_args!("{e:#}"), "could not follow the cluster's plugin");
        }
    }
}

/// Makes `slot` serve the component with this hash, as another node does:
/// from the rollback history, the built-in, or the components stored in
/// the database.
pub async fn follow_plugin(
    policies: &Arc<Policies>,
    store: &Store,
    slot: Slot,
    sha256: &str,
) -> anyhow::Result<()> {
    if policies.slot(slot).sha256 == sha256 || policies.restore(slot, sha256).is_some() {
        return Ok(());
    }
    let builtin = slot.builtin_component();
    let bytes = if hex::encode(Sha256::digest(builtin)) == sha256 {
        builtin.to_vec()
    } else {
        store
            .plugin(sha256)
            .await?
            .with_context(|| format!("no stored component has sha256 {sha256}"))?
    };
    let policies = policies.clone();
    tokio::task::spawn_blocking(move || policies.install(slot, &bytes, CLUSTER_SOURCE.to_owned()))
        .await??;
    Ok(())
}

/// [`SlotInfo::source`](crate::policy::SlotInfo) of a component installed
/// because another node of the cluster installed it.
pub const CLUSTER_SOURCE: &str = "cluster";
