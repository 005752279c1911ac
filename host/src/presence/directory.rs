//! In-memory caches of what the chat backend tells us through the admin API:
//! profiles, conversation members, contacts and watchers. The hot path reads
//! these; the admin API invalidates them; misses load from the store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use crate::auth;
use crate::model::PrivacySettings;
use crate::store::{self, Store, UserRecord};

/// Shown when a typer has neither a display name nor a username.
pub const UNNAMED_USER: &str = "Someone";

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: Uuid,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub privacy: PrivacySettings,
    /// Last seen as stored (or just set on going offline).
    pub last_seen: Option<DateTime<Utc>>,
}

impl Profile {
    /// The name policies word typing summaries with.
    pub fn name(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.username.as_deref().filter(|s| !s.is_empty()))
            .unwrap_or(UNNAMED_USER)
    }
}

impl From<UserRecord> for Profile {
    fn from(r: UserRecord) -> Self {
        Profile {
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            privacy: r.privacy,
            last_seen: r.last_seen,
        }
    }
}

/// A sorted id list shared by every reader.
pub type Ids = Arc<[Uuid]>;

pub struct Directory {
    store: Store,
    profiles: DashMap<Uuid, Arc<Profile>>,
    /// conversation → members
    members: DashMap<Uuid, Ids>,
    /// user → conversations
    conversations: DashMap<Uuid, Ids>,
    /// user → the user's own contacts
    contacts: DashMap<Uuid, Ids>,
    /// user → users who have them as a contact
    watchers: DashMap<Uuid, Ids>,
}

async fn cached<F>(map: &DashMap<Uuid, Ids>, key: Uuid, load: F) -> store::Result<Ids>
where
    F: Future<Output = store::Result<Vec<Uuid>>>,
{
    if let Some(v) = map.get(&key) {
        return Ok(v.clone());
    }
    let mut ids = load.await?;
    ids.sort_unstable();
    ids.dedup();
    let ids: Ids = ids.into();
    map.insert(key, ids.clone());
    Ok(ids)
}

impl Directory {
    pub fn new(store: Store) -> Directory {
        Directory {
            store,
            profiles: DashMap::new(),
            members: DashMap::new(),
            conversations: DashMap::new(),
            contacts: DashMap::new(),
            watchers: DashMap::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cached_profile(&self, id: &Uuid) -> Option<Arc<Profile>> {
        self.profiles.get(id).map(|p| p.clone())
    }

    pub async fn profile(&self, id: Uuid) -> store::Result<Option<Arc<Profile>>> {
        if let Some(p) = self.cached_profile(&id) {
            return Ok(Some(p));
        }
        Ok(self.store.user(id).await?.map(|r| self.put_profile(r)))
    }

    /// Profiles of the known users among `ids`, loading misses in one query.
    pub async fn profiles(&self, ids: &[Uuid]) -> store::Result<HashMap<Uuid, Arc<Profile>>> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.cached_profile(id) {
                Some(p) => {
                    found.insert(*id, p);
                }
                None => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            for r in self.store.users(&missing).await? {
                let p = self.put_profile(r);
                found.insert(p.id, p);
            }
        }
        Ok(found)
    }

    /// The profile of a user who just authenticated, creating the row if the
    /// chat backend has not synced them yet (names from the token).
    pub async fn ensure_profile(&self, user: &auth::User) -> store::Result<Arc<Profile>> {
        if let Some(p) = self.cached_profile(&user.id) {
            return Ok(p);
        }
        let r = self
            .store
            .ensure_user(user.id, user.username.as_deref(), user.name.as_deref())
            .await?;
        Ok(self.put_profile(r))
    }

    pub fn put_profile(&self, record: UserRecord) -> Arc<Profile> {
        let p = Arc::new(Profile::from(record));
        self.profiles.insert(p.id, p.clone());
        p
    }

    /// Records a new last seen in the cached profile, if cached.
    pub fn set_last_seen(&self, id: &Uuid, at: DateTime<Utc>) {
        if let Some(mut p) = self.profiles.get_mut(id)
            && p.last_seen.is_none_or(|t| t < at)
        {
            Arc::make_mut(&mut p).last_seen = Some(at);
        }
    }

    pub async fn members(&self, conversation: Uuid) -> store::Result<Ids> {
        cached(
            &self.members,
            conversation,
            self.store.members(conversation),
        )
        .await
    }

    pub async fn conversations_of(&self, user: Uuid) -> store::Result<Ids> {
        cached(&self.conversations, user, self.store.conversations_of(user)).await
    }

    pub async fn contacts_of(&self, user: Uuid) -> store::Result<Ids> {
        cached(&self.contacts, user, self.store.contacts_of(user)).await
    }

    pub async fn watchers_of(&self, user: Uuid) -> store::Result<Ids> {
        cached(&self.watchers, user, self.store.watchers_of(user)).await
    }

    pub fn set_members(&self, conversation: Uuid, members: Ids) {
        self.members.insert(conversation, members);
    }

    pub fn invalidate_members(&self, conversation: &Uuid) {
        self.members.remove(conversation);
    }

    pub fn invalidate_conversations(&self, user: &Uuid) {
        self.conversations.remove(user);
    }

    pub fn invalidate_contacts(&self, user: &Uuid) {
        self.contacts.remove(user);
    }

    pub fn invalidate_watchers(&self, user: &Uuid) {
        self.watchers.remove(user);
    }
}

/// Whether two sorted id lists share an element.
pub fn intersects(a: &[Uuid], b: &[Uuid]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}
