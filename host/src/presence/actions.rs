//! What a connected client does: type, set its status, show activity. The
//! WebSocket session calls one method per client event; each checks the
//! event against the rules (the user's own id, membership) and either
//! applies it or says why not.

use std::sync::Arc;

use uuid::Uuid;

use super::Presence;
use super::directory::Profile;
use crate::model::Ids;
use crate::protocol::ManualStatus;

/// Why a client's event was refused; the client gets an `error` event
/// with [`code`](Self::code) and the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The event names a `user_id` that is not the token's.
    Forbidden,
    /// Typing in a conversation the user is not a member of.
    NotMember,
    /// The store failed (logged where it happened).
    Internal,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Forbidden => "forbidden",
            Refusal::NotMember => "not_member",
            Refusal::Internal => "internal",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Forbidden => "user_id must be your own",
            Refusal::NotMember => "you are not a member of this conversation",
            Refusal::Internal => "internal error",
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "event failed");
    Refusal::Internal
}

impl Presence {
    /// `typing_start` (`typing: true`) or `typing_stop` from `user`'s
    /// client; `claimed` is the `user_id` the event named, if any.
    pub async fn typing(
        self: &Arc<Self>,
        user: Uuid,
        claimed: Option<Uuid>,
        conversation: Uuid,
        typing: bool,
    ) -> Result<(), Refusal> {
        if claimed.is_some_and(|u| u != user) {
            return Err(Refusal::Forbidden);
        }
        // Checked against the sender's own conversations first, so made-up
        // ids cost no member lookup and leave nothing cached.
        let mine = self
            .directory
            .conversations_of(user)
            .await
            .map_err(internal)?;
        if mine.binary_search(&conversation).is_err() {
            return Err(Refusal::NotMember);
        }
        if typing {
            // Recipients; `start` re-checks membership under its lock.
            let members = self
                .directory
                .members(conversation)
                .await
                .map_err(internal)?;
            let profile = self
                .directory
                .profile(user)
                .await
                .map_err(internal)?
                .ok_or_else(|| internal("profile vanished"))?;
            if !self.start_typing(conversation, profile, members) {
                return Err(Refusal::NotMember);
            }
        } else {
            self.stop_typing(conversation, user);
        }
        self.activity(user);
        Ok(())
    }

    /// `set_status` from one of `user`'s connections here.
    pub fn set_status(self: &Arc<Self>, user: Uuid, status: ManualStatus) {
        match status {
            ManualStatus::Away => self.set_away(user),
            ManualStatus::Online => self.activity(user),
        }
    }

    /// `PUT /users/me/status`: wherever the user is connected.
    pub async fn set_status_everywhere(self: &Arc<Self>, user: Uuid, status: ManualStatus) {
        self.forward_status(user, status).await;
        self.set_status(user, status);
    }

    /// A typing start through this node, here and on every node.
    fn start_typing(&self, conversation: Uuid, profile: Arc<Profile>, members: Ids) -> bool {
        let user = profile.id;
        let started = self
            .typing
            .start(self, conversation, profile, members, None);
        if let Some(stamp) = started {
            self.publish_typing(conversation, user, Some(stamp));
        }
        started.is_some()
    }

    /// A typing stop through this node (or a sent message), here and on
    /// every node.
    pub(super) fn stop_typing(&self, conversation: Uuid, user: Uuid) {
        self.typing.stop(self, conversation, user);
        self.publish_typing(conversation, user, None);
    }
}
