//! Plain domain types shared by the store, the policies, the cluster and
//! the wire protocol.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A sorted id list shared by every reader.
pub type Ids = Arc<[Uuid]>;

/// Who may see a user's last seen (`users.last_seen_visibility`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Everyone,
    /// Only the users in the subject's own contact list (WhatsApp's "My contacts").
    Contacts,
    Nobody,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Everyone => "everyone",
            Visibility::Contacts => "contacts",
            Visibility::Nobody => "nobody",
        }
    }
}

impl FromStr for Visibility {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "everyone" => Ok(Visibility::Everyone),
            "contacts" => Ok(Visibility::Contacts),
            "nobody" => Ok(Visibility::Nobody),
            _ => Err(UnknownValue),
        }
    }
}

/// A user's presence as clients see it (`users.status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    #[default]
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }
}

impl FromStr for Status {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "online" => Ok(Status::Online),
            "away" => Ok(Status::Away),
            "offline" => Ok(Status::Offline),
            _ => Err(UnknownValue),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownValue;

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown value")
    }
}

impl std::error::Error for UnknownValue {}

/// A user's last-seen privacy settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacySettings {
    pub show_last_seen: bool,
    pub last_seen_visibility: Visibility,
}

/// A user's live status while connected somewhere (or in their grace period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    pub status: Status,
    /// Wall time of the last activity: an away user's `last_seen`.
    pub last_activity_at: DateTime<Utc>,
}

/// A status change every watcher should hear about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusChange {
    /// Orders the changes of one user: an older change never overtakes a
    /// newer one. A node takes it while the user's entry is locked; in a
    /// cluster, Redis numbers the changes it announces.
    pub seq: u64,
    pub status: Status,
    pub at: DateTime<Utc>,
    /// For away: the last activity; for offline: the last disconnect.
    pub last_seen: Option<DateTime<Utc>>,
}

/// A user's status changed for everyone (across every node): what the chat
/// backend hears of through its webhook.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub user: Uuid,
    pub status: Status,
    pub at: DateTime<Utc>,
    /// For away: the last activity; for offline: when they left; none for online.
    pub last_seen: Option<DateTime<Utc>>,
}
