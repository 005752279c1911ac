//! Persistent storage: the one place that talks SQL.
//!
//! Presence keeps, on either backend — SQLite (`sqlite://path`, the single-node
//! default) or PostgreSQL (`postgres://…`, the cluster setup, often the chat
//! backend's own database) — each user's stored status, `last_seen`, privacy
//! settings and profile names, conversation membership, contact lists and the
//! cluster's plugins.
//!
//! The `users` table may belong to the chat backend ([`Layout`]). Presence then
//! adds only the seed's columns to it, writes only those columns of rows that
//! exist, and never inserts or deletes there; profile names and everything about
//! users the chat's table lacks live in `presence_users`. When presence created
//! `users` itself, it owns it and keeps every user there. Every other table of
//! presence's is `presence_`-prefixed (or in `PRESENCE_DATABASE_SCHEMA`): a chat's
//! own `conversation_members`, `contacts` or any other table is never touched.
//! `schema` runs the migrations and adopts deployments of older versions.
//!
//! Not stored here, ever: typing state and live connection state. `last_seen` and
//! status arrive written-behind in batches through [`Store::write_presence`], which
//! never moves a stored `last_seen` backwards.
//!
//! Membership and contacts have no foreign key to `users`: the chat backend may sync
//! them before the profiles. Input id lists may contain duplicates; they are
//! deduplicated. Lists of ids come back sorted ascending.
//!
//! A statement both backends run alike is said once (`sql`) and run by one body
//! typed for each backend (`on_backend!`); `sqlite` and `postgres` hold only the
//! statements that differ between them.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::config::redact_url;
use crate::model::{PrivacySettings, Status, Transition, Visibility};

/// Runs `$body` on whichever pool the store has, with `Id` naming how that
/// backend stores an id (PostgreSQL's `uuid`, SQLite's hyphenated text) and
/// `backend` its module (for what differs): one body for both, typed once per
/// backend.
macro_rules! on_backend {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                #[allow(dead_code, unused_imports)]
                use $crate::store::sqlite as backend;
                #[allow(dead_code)]
                type Id = uuid::fmt::Hyphenated;
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                #[allow(dead_code, unused_imports)]
                use $crate::store::postgres as backend;
                #[allow(dead_code)]
                type Id = uuid::Uuid;
                $body
            }
        }
    };
}
/// Calls the backend's own version of a statement that differs between them.
macro_rules! dispatch {
    ($store:expr, $f:ident($($arg:expr),*)) => {
        match &$store.pool {
            Pool::Sqlite(pool) => sqlite::$f(pool, $($arg),*).await,
            Pool::Postgres(pool) => postgres::$f(pool, $($arg),*).await,
        }
    };
}

mod postgres;
mod schema;
mod sql;
mod sqlite;

/// A connection pool on one of the supported backends, and what the migrations
/// found of the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// Set by [`Store::migrate`], or read back from the database on first use.
    layout: Arc<OnceLock<Layout>>,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Where presence keeps what it knows of a user, decided when the schema is
/// migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Presence created `users` and keeps every user there; otherwise `users`
    /// is the chat backend's and presence writes only the seed's columns of
    /// its rows.
    pub owned: bool,
    /// The chat's `users` has a `username` column: read when presence has no
    /// name of its own for the user.
    pub chat_username: bool,
    /// Likewise `display_name`.
    pub chat_display_name: bool,
}

impl Layout {
    /// The table presence writes profile names to, and every user `users`
    /// has no row for.
    fn own_table(self) -> &'static str {
        if self.owned {
            "users"
        } else {
            "presence_users"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    #[error(
        "PRESENCE_DATABASE_SCHEMA {0:?}: use lowercase letters, digits and '_', starting with a letter (PostgreSQL only)"
    )]
    BadSchema(String),
    #[error("the database has not been migrated: run `presence migrate`")]
    NotMigrated,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A two-column id table read in one direction: each `key` id and its
/// `value` ids. [`Store::pairs`] reads one for many keys at once, and
/// [`Store::replace_members`] / [`Store::replace_contacts`] replace the
/// values one key owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    table: &'static str,
    key: &'static str,
    value: &'static str,
}

impl Edge {
    /// user → their contacts
    pub const CONTACTS: Edge = Edge {
        table: "presence_contacts",
        key: "user_id",
        value: "contact_id",
    };
    /// user → their conversations
    pub const CONVERSATIONS: Edge = Edge {
        table: "presence_conversation_members",
        key: "user_id",
        value: "conversation_id",
    };
    /// conversation → its members
    pub const MEMBERS: Edge = Edge {
        table: "presence_conversation_members",
        key: "conversation_id",
        value: "user_id",
    };

    /// The values of the key bound to `$1`, in no order.
    fn values_sql(self) -> String {
        let Edge { table, key, value } = self;
        format!("SELECT {value} FROM {table} WHERE {key} = $1")
    }
}

/// The kinds of row [`Store::relations`] returns.
pub struct Relations;

impl Relations {
    pub const CONTACTS: i32 = 0;
    pub const WATCHERS: i32 = 1;
    pub const CONVERSATIONS: i32 = 2;
}

/// What presence knows of one user, as the rest of the host sees it.
///
/// Read defensively, since the `users` table may belong to the chat backend: a
/// NULL or unknown status reads as offline, a NULL `show_last_seen` as true, an
/// empty name as `None`, and an unrecognised visibility as `nobody` (fail closed).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub status: Status,
    pub last_seen: Option<DateTime<Utc>>,
    pub privacy: PrivacySettings,
}

/// A user as either backend returns it (`I`: how it stores ids).
#[derive(sqlx::FromRow)]
struct UserRow<I> {
    id: I,
    username: Option<String>,
    display_name: Option<String>,
    status: Option<String>,
    last_seen: Option<DateTime<Utc>>,
    show_last_seen: Option<bool>,
    last_seen_visibility: Option<String>,
}

impl<I: Into<Uuid>> From<UserRow<I>> for UserRecord {
    fn from(row: UserRow<I>) -> UserRecord {
        UserRecord {
            id: row.id.into(),
            username: non_empty(row.username),
            display_name: non_empty(row.display_name),
            status: parse_status(row.status.as_deref()),
            last_seen: row.last_seen,
            privacy: PrivacySettings {
                show_last_seen: row.show_last_seen.unwrap_or(true),
                last_seen_visibility: parse_visibility(row.last_seen_visibility.as_deref()),
            },
        }
    }
}

/// A status transition waiting in the webhook outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Delivery order.
    pub seq: i64,
    /// The event's id, the same on every attempt.
    pub id: Uuid,
    pub user: Uuid,
    pub status: Status,
    pub at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    /// When it was written to the outbox.
    pub created: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// An outbox row as either backend returns it.
#[derive(sqlx::FromRow)]
struct OutboxRow<I> {
    seq: i64,
    id: I,
    user_id: I,
    status: String,
    at_ms: i64,
    last_seen_ms: Option<i64>,
    created_ms: i64,
    attempts: i32,
}

impl<I: Into<Uuid>> From<OutboxRow<I>> for OutboxEvent {
    fn from(r: OutboxRow<I>) -> OutboxEvent {
        let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        OutboxEvent {
            seq: r.seq,
            id: r.id.into(),
            user: r.user_id.into(),
            status: parse_status(Some(&r.status)),
            at: time(r.at_ms),
            last_seen: r.last_seen_ms.map(time),
            created: time(r.created_ms),
            attempts: u32::try_from(r.attempts).unwrap_or(0),
        }
    }
}

/// How presence's own tables are kept apart from the chat's.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// PostgreSQL only: presence's own tables live in this schema (created if
    /// missing); `users` is still found through the connection's search path.
    pub schema: Option<String>,
}

impl Store {
    /// `sqlite://path` (file created if missing, WAL, foreign keys on) or `sqlite::memory:`,
    /// or `postgres://…`/`postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store> {
        let pool = if url.starts_with("sqlite:") {
            if let Some(schema) = &options.schema {
                return Err(StoreError::BadSchema(schema.clone()));
            }
            Pool::Sqlite(sqlite::connect(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(postgres::connect(url, options.schema.as_deref()).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        Ok(Store {
            pool,
            layout: Arc::default(),
        })
    }

    /// Brings the schema up to date (idempotent; concurrent nodes take turns):
    /// `users` created or given the seed's columns, presence's own tables, and
    /// a deployment of an older version adopted with its data. Returns what it
    /// found.
    pub async fn migrate(&self) -> Result<Layout> {
        let layout = schema::migrate(self).await?;
        let _ = self.layout.set(layout);
        Ok(layout)
    }

    /// Where presence keeps users in this database.
    pub async fn layout(&self) -> Result<Layout> {
        if let Some(layout) = self.layout.get() {
            return Ok(*layout);
        }
        let layout = schema::read_layout(self)
            .await?
            .ok_or(StoreError::NotMigrated)?;
        Ok(*self.layout.get_or_init(|| layout))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL pool, for tests and tools that look at the database itself.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.pool {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, likewise.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.pool {
            Pool::Sqlite(pool) => Some(pool),
            Pool::Postgres(_) => None,
        }
    }

    /// `SELECT 1`: is the database reachable?
    pub async fn ping(&self) -> Result<()> {
        on_backend!(self, pool => sqlx::query(sql::PING).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Closes the pool, waiting for checked-out connections to come back. Later calls fail.
    pub async fn close(&self) {
        on_backend!(self, pool => pool.close().await)
    }

    /// Keeps a policy component (by its hash) for other nodes to fetch.
    pub async fn save_plugin(&self, sha256: &str, slot: &str, component: &[u8]) -> Result<()> {
        on_backend!(self, pool => sqlx::query(sql::SAVE_PLUGIN)
            .bind(sha256)
            .bind(slot)
            .bind(component)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Records which component `slot` serves across the cluster.
    pub async fn set_active_plugin(&self, slot: &str, sha256: &str) -> Result<()> {
        on_backend!(self, pool => sqlx::query(sql::SET_ACTIVE_PLUGIN)
            .bind(slot)
            .bind(sha256)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// `(slot, sha256)` of every slot an operator changed.
    pub async fn active_plugins(&self) -> Result<Vec<(String, String)>> {
        Ok(on_backend!(self, pool => sqlx::query_as(sql::ACTIVE_PLUGINS).fetch_all(pool).await)?)
    }

    /// The stored component with this hash.
    pub async fn plugin(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(on_backend!(self, pool => sqlx::query_scalar(sql::PLUGIN)
            .bind(sha256)
            .fetch_optional(pool)
            .await)?)
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<UserRecord>> {
        Ok(self.users(&[id]).await?.pop())
    }

    /// The known users among `ids`, any order; unknown ids omitted, duplicates once.
    pub async fn users(&self, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let layout = self.layout().await?;
        dispatch!(self, users(layout, &ids))
    }

    /// Makes the user known if they are not, with these names. Names already
    /// known are kept; a missing one is filled in. Returns the user.
    pub async fn ensure_user(
        &self,
        id: Uuid,
        username: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<UserRecord> {
        let existing = self.user(id).await?;
        // Only what is missing: a name the chat's table has stays the name.
        let (username, display_name) = match &existing {
            Some(e) => (
                username.filter(|_| e.username.is_none()),
                display_name.filter(|_| e.display_name.is_none()),
            ),
            None => (username, display_name),
        };
        if let Some(e) = existing
            && username.is_none()
            && display_name.is_none()
        {
            return Ok(e);
        }
        let own = self.layout().await?.own_table();
        on_backend!(self, pool => sqlx::query(&sql::ensure_user(own))
            .bind(Id::from(id))
            .bind(username)
            .bind(display_name)
            .execute(pool)
            .await
            .map(drop))?;
        self.user(id)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Admin profile create-or-update: sets username and display_name, keeps everything
    /// else. Returns the user.
    pub async fn upsert_profile(
        &self,
        id: Uuid,
        username: &str,
        display_name: &str,
    ) -> Result<UserRecord> {
        let own = self.layout().await?.own_table();
        on_backend!(self, pool => sqlx::query(&sql::upsert_profile(own))
            .bind(Id::from(id))
            .bind(username)
            .bind(display_name)
            .execute(pool)
            .await
            .map(drop))?;
        self.user(id)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Updates the given privacy fields; `None` = unchanged. `Ok(None)` if the user does
    /// not exist.
    pub async fn set_privacy(
        &self,
        id: Uuid,
        show_last_seen: Option<bool>,
        visibility: Option<Visibility>,
    ) -> Result<Option<UserRecord>> {
        // The chat's row if there is one, else presence's own.
        for table in ["users", "presence_users"] {
            let changed = on_backend!(self, pool => sqlx::query(&sql::set_privacy(table))
                .bind(Id::from(id))
                .bind(show_last_seen)
                .bind(visibility.map(Visibility::as_str))
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
            if changed > 0 {
                return self.user(id).await;
            }
        }
        Ok(None)
    }

    /// Write-behind flush: sets status and last_seen for every entry in one transaction,
    /// in `users` where it has the user and in presence's own table otherwise, so an
    /// unknown user's last_seen is not lost. A stored `last_seen` never moves backwards
    /// (the greater of stored and new is kept). When an id appears several times, its
    /// last entry's status and its greatest time win.
    pub async fn write_presence(&self, entries: &[(Uuid, Status, DateTime<Utc>)]) -> Result<()> {
        let entries = merge_presence(entries);
        if entries.is_empty() {
            return Ok(());
        }
        let own = self.layout().await?.own_table();
        dispatch!(self, write_presence(own, &entries))
    }

    /// Marks every user whose stored status is online or away as offline (single-node
    /// start after a crash). Returns how many rows changed.
    pub async fn reset_statuses(&self) -> Result<u64> {
        let mut changed = 0;
        for table in ["users", "presence_users"] {
            changed += on_backend!(self, pool => sqlx::query(&sql::reset_statuses(table))
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))?;
        }
        Ok(changed)
    }

    /// The members of a conversation, sorted ascending.
    pub async fn members(&self, conversation: Uuid) -> Result<Vec<Uuid>> {
        self.ids(sql::MEMBERS, conversation).await
    }

    /// The conversations a user is a member of, sorted ascending.
    pub async fn conversations_of(&self, user: Uuid) -> Result<Vec<Uuid>> {
        self.ids(sql::CONVERSATIONS_OF, user).await
    }

    /// Replaces the member set in one transaction; returns the previous members (sorted).
    pub async fn replace_members(&self, conversation: Uuid, users: &[Uuid]) -> Result<Vec<Uuid>> {
        let users = dedup(users);
        dispatch!(self, replace_list(Edge::MEMBERS, conversation, &users))
    }

    /// Adds one member; true if newly added.
    pub async fn add_member(&self, conversation: Uuid, user: Uuid) -> Result<bool> {
        self.change_member(sql::ADD_MEMBER, conversation, user)
            .await
    }

    /// Removes one member; true if it was there.
    pub async fn remove_member(&self, conversation: Uuid, user: Uuid) -> Result<bool> {
        self.change_member(sql::REMOVE_MEMBER, conversation, user)
            .await
    }

    /// [`contacts_of`](Self::contacts_of) or
    /// [`conversations_of`](Self::conversations_of) of many users in one
    /// query: `(user, id)` pairs, any order; users without any are absent.
    pub async fn pairs(&self, of: Edge, users: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
        let users = dedup(users);
        if users.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, pairs(of, &users))
    }

    /// A user's contacts, watchers and conversations in one round trip, as
    /// `(Relations::CONTACTS | WATCHERS | CONVERSATIONS, id)` rows.
    pub async fn relations(&self, user: Uuid) -> Result<Vec<(i32, Uuid)>> {
        on_backend!(self, pool => {
            let rows: Vec<(i32, Id)> = sqlx::query_as(sql::RELATIONS)
                .bind(Id::from(user))
                .fetch_all(pool)
                .await?;
            Ok(rows.into_iter().map(|(kind, id)| (kind, uuid(id))).collect())
        })
    }

    /// The user's own contact list, sorted.
    pub async fn contacts_of(&self, user: Uuid) -> Result<Vec<Uuid>> {
        self.ids(sql::CONTACTS_OF, user).await
    }

    /// Users who have `user` in their contact list (the user's watchers), sorted.
    pub async fn watchers_of(&self, user: Uuid) -> Result<Vec<Uuid>> {
        self.ids(sql::WATCHERS_OF, user).await
    }

    /// Replaces `user`'s contact list in one transaction; returns the previous list
    /// (sorted). A user is never their own contact: that entry is dropped silently.
    pub async fn replace_contacts(&self, user: Uuid, contacts: &[Uuid]) -> Result<Vec<Uuid>> {
        let mut contacts = dedup(contacts);
        contacts.retain(|c| *c != user);
        dispatch!(self, replace_list(Edge::CONTACTS, user, &contacts))
    }

    /// Writes events to the webhook outbox, in this order, all or none.
    pub async fn outbox_push(&self, events: &[Transition]) -> Result<()> {
        let created = Utc::now().timestamp_millis();
        on_backend!(self, pool => {
            let mut tx = pool.begin().await?;
            for t in events {
                sqlx::query(sql::OUTBOX_PUSH)
                    .bind(Id::from(Uuid::new_v4()))
                    .bind(Id::from(t.user))
                    .bind(t.status.as_str())
                    .bind(t.at.timestamp_millis())
                    .bind(t.last_seen.map(|t| t.timestamp_millis()))
                    .bind(created)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Claims up to `limit` events due now, in delivery order, for `lease`;
    /// a user's later event waits while an earlier one is out or retrying.
    pub async fn outbox_claim(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEvent>> {
        let now = Utc::now().timestamp_millis();
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let mut events: Vec<OutboxEvent> = on_backend!(self, pool => {
            let mut tx = backend::begin_claim(pool).await?;
            let rows: Vec<OutboxRow<Id>> = sqlx::query_as(sql::OUTBOX_CLAIM)
                .bind(now)
                .bind(until)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows.into_iter().map(OutboxEvent::from).collect()
        });
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// Delivered: the events leave the outbox.
    pub async fn outbox_done(&self, seqs: &[i64]) -> Result<()> {
        on_backend!(self, pool => {
            let mut tx = pool.begin().await?;
            for seq in seqs {
                sqlx::query(sql::OUTBOX_DONE).bind(seq).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Not delivered: the events are due again at `next`, one attempt more.
    pub async fn outbox_retry(&self, seqs: &[i64], next: DateTime<Utc>) -> Result<()> {
        on_backend!(self, pool => {
            let mut tx = pool.begin().await?;
            for seq in seqs {
                sqlx::query(sql::OUTBOX_RETRY)
                    .bind(seq)
                    .bind(next.timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// How many events wait in the outbox.
    pub async fn outbox_len(&self) -> Result<u64> {
        let n: i64 =
            on_backend!(self, pool => sqlx::query_scalar(sql::OUTBOX_LEN).fetch_one(pool).await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The ids a one-key statement selects, sorted.
    async fn ids(&self, statement: &'static str, key: Uuid) -> Result<Vec<Uuid>> {
        on_backend!(self, pool => {
            let ids: Vec<Id> = sqlx::query_scalar(statement)
                .bind(Id::from(key))
                .fetch_all(pool)
                .await?;
            Ok(sorted(ids))
        })
    }

    /// Runs a membership insert or delete; true if a row changed.
    async fn change_member(
        &self,
        statement: &'static str,
        conversation: Uuid,
        user: Uuid,
    ) -> Result<bool> {
        Ok(on_backend!(self, pool => sqlx::query(statement)
            .bind(Id::from(conversation))
            .bind(Id::from(user))
            .execute(pool)
            .await
            .map(|done| done.rows_affected() > 0))?)
    }
}

/// An id as read from either backend.
fn uuid(id: impl Into<Uuid>) -> Uuid {
    id.into()
}

/// Ids as read from either backend, sorted ascending.
fn sorted<I: Into<Uuid>>(ids: Vec<I>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.into_iter().map(uuid).collect();
    ids.sort_unstable();
    ids
}

/// Sorted, without duplicates.
fn dedup(ids: &[Uuid]) -> Vec<Uuid> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One entry per user: the last status given, the greatest time given.
fn merge_presence(entries: &[(Uuid, Status, DateTime<Utc>)]) -> Vec<(Uuid, Status, DateTime<Utc>)> {
    let mut merged: BTreeMap<Uuid, (Status, DateTime<Utc>)> = BTreeMap::new();
    for &(id, status, at) in entries {
        merged
            .entry(id)
            .and_modify(|(s, t)| {
                *s = status;
                if at > *t {
                    *t = at;
                }
            })
            .or_insert((status, at));
    }
    merged.into_iter().map(|(id, (s, t))| (id, s, t)).collect()
}

/// Stored status text to [`Status`]: NULL or unknown reads as offline.
fn parse_status(raw: Option<&str>) -> Status {
    raw.and_then(|s| s.parse().ok()).unwrap_or(Status::Offline)
}

/// Stored visibility text to [`Visibility`]: NULL is the default (everyone), an
/// unrecognised value fails closed (nobody).
fn parse_visibility(raw: Option<&str>) -> Visibility {
    match raw {
        None => Visibility::default(),
        Some(s) => s.parse().unwrap_or(Visibility::Nobody),
    }
}

/// Empty names read as missing.
fn non_empty(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_last_status_and_greatest_time() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let t1 = DateTime::from_timestamp_millis(1_000).unwrap();
        let t2 = DateTime::from_timestamp_millis(2_000).unwrap();
        let merged = merge_presence(&[
            (b, Status::Online, t1),
            (a, Status::Online, t2),
            (a, Status::Offline, t1),
        ]);
        assert_eq!(
            merged,
            vec![(a, Status::Offline, t2), (b, Status::Online, t1)]
        );
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(parse_status(None), Status::Offline);
        assert_eq!(parse_status(Some("active")), Status::Offline);
        assert_eq!(parse_status(Some("away")), Status::Away);
        assert_eq!(parse_visibility(None), Visibility::Everyone);
        assert_eq!(parse_visibility(Some("friends")), Visibility::Nobody);
        assert_eq!(parse_visibility(Some("contacts")), Visibility::Contacts);
        assert_eq!(non_empty(Some(String::new())), None);
    }
}
