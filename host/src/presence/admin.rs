//! What the chat backend tells us through the admin API (profiles,
//! membership, contacts, activity) and what a user changes of their own
//! (privacy). Each change is written to the store, then applied here and
//! announced to every node: caches drop what it changed, members who left
//! stop typing, and connected users follow their new conversations and
//! contacts.

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::Presence;
use super::directory::Profile;
use crate::auth;
use crate::cluster::wire::DirectoryChange;
use crate::model::{Status, Visibility};
use crate::store;

/// Sorted and without repeats: the users one change touched.
fn union(a: Vec<Uuid>, b: &[Uuid]) -> Vec<Uuid> {
    let mut all: Vec<Uuid> = a.into_iter().chain(b.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    all
}

impl Presence {
    /// Creates or updates a profile.
    pub async fn set_profile(
        &self,
        user: Uuid,
        username: &str,
        display_name: &str,
    ) -> store::Result<Arc<Profile>> {
        let record = self
            .store()
            .upsert_profile(user, username, display_name)
            .await?;
        let profile = self.directory.put_profile(record);
        self.directory_changed(DirectoryChange::Profile { user })
            .await?;
        Ok(profile)
    }

    /// Changes the given privacy settings of `user` (`None`: unchanged);
    /// `None` if the user is gone.
    pub async fn set_privacy(
        &self,
        user: &auth::User,
        show_last_seen: Option<bool>,
        visibility: Option<Visibility>,
    ) -> store::Result<Option<Arc<Profile>>> {
        self.directory.ensure_profile(user).await?;
        let Some(record) = self
            .store()
            .set_privacy(user.id, show_last_seen, visibility)
            .await?
        else {
            return Ok(None);
        };
        let profile = self.directory.put_profile(record);
        self.directory_changed(DirectoryChange::Profile { user: user.id })
            .await?;
        Ok(Some(profile))
    }

    /// Replaces the member set; returns how many members it has now.
    pub async fn replace_members(
        &self,
        conversation: Uuid,
        users: &[Uuid],
    ) -> store::Result<usize> {
        let previous = self.store().replace_members(conversation, users).await?;
        self.members_changed(conversation, union(previous, users))
            .await?;
        Ok(self.directory.members(conversation).await?.len())
    }

    /// Adds one member; true if they were not one already.
    pub async fn add_member(&self, conversation: Uuid, user: Uuid) -> store::Result<bool> {
        let added = self.store().add_member(conversation, user).await?;
        self.members_changed(conversation, vec![user]).await?;
        Ok(added)
    }

    /// Removes one member (their typing there stops); true if they were one.
    pub async fn remove_member(&self, conversation: Uuid, user: Uuid) -> store::Result<bool> {
        let removed = self.store().remove_member(conversation, user).await?;
        self.members_changed(conversation, vec![user]).await?;
        Ok(removed)
    }

    /// Replaces `user`'s contact list; returns how many contacts they have now.
    pub async fn replace_contacts(&self, user: Uuid, contacts: &[Uuid]) -> store::Result<usize> {
        let previous = self.store().replace_contacts(user, contacts).await?;
        let affected = union(previous, contacts);
        self.directory_changed(DirectoryChange::Contacts { user, affected })
            .await?;
        Ok(self.directory.contacts_of(user).await?.len())
    }

    /// Activity the chat backend saw: resets the idle clock of a connected
    /// user (on whichever node), or moves an offline user's last seen
    /// forward. `sent_in`: the user sent a message there, which ends their
    /// typing there.
    pub async fn backend_activity(self: &Arc<Self>, user: Uuid, sent_in: Option<Uuid>) {
        let elsewhere = self.forward_activity(user).await;
        if self.registry.is_connected(&user) {
            self.activity(user);
        } else if self.registry.live(&user).is_none() && !elsewhere {
            let now = Utc::now();
            self.directory.set_last_seen(&user, now);
            self.write_behind.record(user, Status::Offline, now);
        }
        if let Some(conversation) = sent_in {
            self.stop_typing(conversation, user);
        }
    }

    /// Reloads the member set on every node and stops the typing of anyone
    /// who left; `users` joined or left.
    async fn members_changed(&self, conversation: Uuid, users: Vec<Uuid>) -> store::Result<()> {
        self.directory_changed(DirectoryChange::Members {
            conversation,
            users,
        })
        .await
    }

    /// Applies a change here, then on every node.
    async fn directory_changed(&self, change: DirectoryChange) -> store::Result<()> {
        self.apply_directory_change(&change, true).await?;
        self.publish_directory_change(&change);
        Ok(())
    }

    /// Drops what the caches held of the change, stops the typing of
    /// members who left, and re-subscribes for the connected users whose
    /// conversations or watched users changed. `here`: the change was made
    /// on this node (whose caches already hold the new profile).
    pub(super) async fn apply_directory_change(
        &self,
        change: &DirectoryChange,
        here: bool,
    ) -> store::Result<()> {
        let d = &self.directory;
        let mut affected = match change {
            DirectoryChange::Profile { user } => {
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
}
