//! In-memory caches of what the chat backend tells us through the admin API:
//! profiles, conversation members, contacts and watchers. The hot path reads
//! these; the admin API invalidates them; misses load from the store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use crate::auth;
use crate::model::{Ids, PrivacySettings};
use crate::store::{self, Edge, Relations, Store, UserRecord};

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

/// A map filled from the store on a miss, where a change made through the
/// admin API always beats a load that was in flight when it happened: every
/// change bumps the epoch, and a load keeps its result only if the epoch did
/// not move while it ran.
struct Cache<V> {
    map: DashMap<Uuid, V>,
    epoch: AtomicU64,
}

impl<V: Clone> Cache<V> {
    fn new() -> Self {
        Cache {
            map: DashMap::new(),
            epoch: AtomicU64::new(0),
        }
    }

    fn get(&self, key: &Uuid) -> Option<V> {
        self.map.get(key).map(|v| v.clone())
    }

    /// Read before loading; pass to [`fill`](Self::fill).
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a value loaded since `epoch`, unless something changed meanwhile.
    fn fill(&self, key: Uuid, value: V, epoch: u64) {
        self.map.insert(key, value);
        if self.epoch() != epoch {
            // A change raced the load: drop what may be stale; the next read reloads.
            self.map.remove(&key);
        }
    }

    /// An authoritative value (just written to the store).
    fn put(&self, key: Uuid, value: V) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.map.insert(key, value);
    }

    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.map.clear();
    }

    fn invalidate(&self, key: &Uuid) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.map.remove(key);
    }
}

impl Cache<Ids> {
    async fn get_or_load<F>(&self, key: Uuid, load: F) -> store::Result<Ids>
    where
        F: Future<Output = store::Result<Vec<Uuid>>>,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let epoch = self.epoch();
        let ids = load.await?;
        Ok(self.fill_ids(key, ids, epoch))
    }

    /// Caches a list read from the store (as of `epoch`), sorted and without repeats.
    fn fill_ids(&self, key: Uuid, mut ids: Vec<Uuid>, epoch: u64) -> Ids {
        ids.sort_unstable();
        ids.dedup();
        let ids: Ids = ids.into();
        self.fill(key, ids.clone(), epoch);
        ids
    }
}

pub struct Directory {
    store: Store,
    profiles: Cache<Arc<Profile>>,
    /// conversation → members
    members: Cache<Ids>,
    /// user → conversations
    conversations: Cache<Ids>,
    /// user → the user's own contacts
    contacts: Cache<Ids>,
    /// user → users who have them as a contact
    watchers: Cache<Ids>,
}

impl Directory {
    pub fn new(store: Store) -> Directory {
        Directory {
            store,
            profiles: Cache::new(),
            members: Cache::new(),
            conversations: Cache::new(),
            contacts: Cache::new(),
            watchers: Cache::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cached_profile(&self, id: &Uuid) -> Option<Arc<Profile>> {
        self.profiles.get(id)
    }

    pub async fn profile(&self, id: Uuid) -> store::Result<Option<Arc<Profile>>> {
        if let Some(p) = self.cached_profile(&id) {
            return Ok(Some(p));
        }
        let epoch = self.profiles.epoch();
        Ok(self
            .store
            .user(id)
            .await?
            .map(|r| self.fill_profile(r, epoch)))
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
            let epoch = self.profiles.epoch();
            for r in self.store.users(&missing).await? {
                let p = self.fill_profile(r, epoch);
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
        let epoch = self.profiles.epoch();
        let r = self
            .store
            .ensure_user(user.id, user.username.as_deref(), user.name.as_deref())
            .await?;
        Ok(self.fill_profile(r, epoch))
    }

    fn fill_profile(&self, record: UserRecord, epoch: u64) -> Arc<Profile> {
        let p = Arc::new(Profile::from(record));
        self.profiles.fill(p.id, p.clone(), epoch);
        p
    }

    /// Caches a profile the store just returned from a write.
    pub fn put_profile(&self, record: UserRecord) -> Arc<Profile> {
        let p = Arc::new(Profile::from(record));
        self.profiles.put(p.id, p.clone());
        p
    }

    /// Records a new last seen in the cached profile, if cached.
    pub fn set_last_seen(&self, id: &Uuid, at: DateTime<Utc>) {
        if let Some(mut p) = self.profiles.map.get_mut(id)
            && p.last_seen.is_none_or(|t| t < at)
        {
            Arc::make_mut(&mut p).last_seen = Some(at);
        }
    }

    /// The member set as cached now, if it is.
    pub fn cached_members(&self, conversation: &Uuid) -> Option<Ids> {
        self.members.get(conversation)
    }

    pub async fn members(&self, conversation: Uuid) -> store::Result<Ids> {
        self.members
            .get_or_load(conversation, self.store.members(conversation))
            .await
    }

    pub async fn conversations_of(&self, user: Uuid) -> store::Result<Ids> {
        self.conversations
            .get_or_load(user, self.store.conversations_of(user))
            .await
    }

    pub async fn contacts_of(&self, user: Uuid) -> store::Result<Ids> {
        self.contacts
            .get_or_load(user, self.store.contacts_of(user))
            .await
    }

    /// Loads the contacts and conversations of those of `users` not cached
    /// yet, two queries in all, so answering about many users costs no
    /// query per user.
    pub async fn prefetch(&self, users: &[Uuid]) -> store::Result<()> {
        for (cache, of) in [
            (&self.contacts, Edge::CONTACTS),
            (&self.conversations, Edge::CONVERSATIONS),
        ] {
            let missing: Vec<Uuid> = users
                .iter()
                .filter(|u| !cache.map.contains_key(u))
                .copied()
                .collect();
            if missing.is_empty() {
                continue;
            }
            let epoch = cache.epoch();
            let mut by_user: HashMap<Uuid, Vec<Uuid>> =
                missing.iter().map(|u| (*u, Vec::new())).collect();
            for (user, id) in self.store.pairs(of, &missing).await? {
                by_user.entry(user).or_default().push(id);
            }
            for (user, ids) in by_user {
                cache.fill_ids(user, ids, epoch);
            }
        }
        Ok(())
    }

    /// Loads a user's contacts, watchers and conversations in one query
    /// when any of them is not cached: a first connect needs all three.
    pub async fn load_relations(&self, user: Uuid) -> store::Result<()> {
        let caches = [
            (&self.contacts, Relations::CONTACTS),
            (&self.watchers, Relations::WATCHERS),
            (&self.conversations, Relations::CONVERSATIONS),
        ];
        if caches.iter().all(|(c, _)| c.map.contains_key(&user)) {
            return Ok(());
        }
        let epochs = caches.map(|(c, kind)| (c, kind, c.epoch()));
        let rows = self.store.relations(user).await?;
        for (cache, kind, epoch) in epochs {
            let ids = rows.iter().filter(|(k, _)| *k == kind).map(|(_, id)| *id);
            cache.fill_ids(user, ids.collect(), epoch);
        }
        Ok(())
    }

    pub async fn watchers_of(&self, user: Uuid) -> store::Result<Ids> {
        self.watchers
            .get_or_load(user, self.store.watchers_of(user))
            .await
    }

    /// Forgets everything cached (changes may have been missed).
    pub fn clear(&self) {
        self.profiles.clear();
        self.members.clear();
        self.conversations.clear();
        self.contacts.clear();
        self.watchers.clear();
    }

    pub fn invalidate_profile(&self, user: &Uuid) {
        self.profiles.invalidate(user);
    }

    pub fn invalidate_members(&self, conversation: &Uuid) {
        self.members.invalidate(conversation);
    }

    pub fn invalidate_conversations(&self, user: &Uuid) {
        self.conversations.invalidate(user);
    }

    pub fn invalidate_contacts(&self, user: &Uuid) {
        self.contacts.invalidate(user);
    }

    pub fn invalidate_watchers(&self, user: &Uuid) {
        self.watchers.invalidate(user);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_that_raced_an_admin_change_is_not_kept() {
        let cache: Cache<u32> = Cache::new();
        let key = Uuid::nil();
        let epoch = cache.epoch();
        cache.invalidate(&key); // the admin API changed it while we loaded
        cache.fill(key, 1, epoch);
        assert_eq!(cache.get(&key), None, "the stale load is dropped");
        let epoch = cache.epoch();
        cache.fill(key, 2, epoch);
        assert_eq!(cache.get(&key), Some(2), "a clean load is kept");
        cache.put(key, 3);
        cache.fill(key, 2, epoch);
        assert_eq!(
            cache.get(&key),
            None,
            "an older load never replaces a newer write"
        );
    }
}
