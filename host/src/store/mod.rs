//! Persistent storage: the one place that talks SQL.
//!
//! Owns the `users` presence columns (profile names, stored status, `last_seen`, privacy
//! settings), conversation membership and contact lists, on either backend:
//! SQLite (`sqlite://path`, the single-node default) or PostgreSQL (`postgres://…`, the
//! cluster setup, possibly the chat backend's own database). The schema lives in
//! `migrations/sqlite` and `migrations/postgres` and is embedded into the binary.
//!
//! Not stored here, ever: typing state and live connection state. `last_seen` and status
//! arrive written-behind in batches through [`Store::write_presence`], which never moves
//! a stored `last_seen` backwards.
//!
//! Membership and contacts have no foreign key to `users`: the chat backend may sync them
//! before the profiles. Input id lists may contain duplicates; they are deduplicated.
//! Lists of ids come back sorted ascending.
//!
//! A statement both backends run alike is said once (`sql`) and run by one body
//! typed for each backend (`on_backend!`); `sqlite` and `postgres` hold only the
//! statements that differ between them.

mod postgres;
mod sql;
mod sqlite;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

use crate::config::redact_url;
use crate::model::{PrivacySettings, Status, Visibility};

/// Runs `$body` on whichever pool the store has, with `Id` naming how that
/// backend stores an id (PostgreSQL's `uuid`, SQLite's hyphenated text) and
/// `backend` its module (how it reads a user row): one body for both, typed
/// once per backend.
macro_rules! on_backend {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => {
                #[allow(dead_code, unused_imports)]
                use sqlite as backend;
                #[allow(dead_code)]
                type Id = uuid::fmt::Hyphenated;
                $body
            }
            Store::Postgres($pool) => {
                #[allow(dead_code, unused_imports)]
                use postgres as backend;
                #[allow(dead_code)]
                type Id = Uuid;
                $body
            }
        }
    };
}

/// Calls the backend's own version of a statement that differs between them.
macro_rules! dispatch {
    ($store:expr, $f:ident($($arg:expr),*)) => {
        match $store {
            Store::Sqlite(pool) => sqlite::$f(pool, $($arg),*).await,
            Store::Postgres(pool) => postgres::$f(pool, $($arg),*).await,
        }
    };
}

/// A connection pool on one of the supported backends. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
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
        table: "contacts",
        key: "user_id",
        value: "contact_id",
    };
    /// user → their conversations
    pub const CONVERSATIONS: Edge = Edge {
        table: "conversation_members",
        key: "user_id",
        value: "conversation_id",
    };
    /// conversation → its members
    pub const MEMBERS: Edge = Edge {
        table: "conversation_members",
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

/// One row of `users` as the rest of the host sees it.
///
/// Read defensively, since on PostgreSQL the table may belong to the chat backend:
/// a NULL or unknown status reads as offline, a NULL `show_last_seen` as true, an empty
/// name as `None`, and an unrecognised visibility as `nobody` (fail closed).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub status: Status,
    pub last_seen: Option<DateTime<Utc>>,
    pub privacy: PrivacySettings,
}

/// A `users` row as either backend returns it (`I`: how it stores ids).
#[derive(sqlx::FromRow)]
pub(super) struct UserRow<I> {
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

/// How many SQLite connections a file database gets (WAL: many readers, one writer).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// How many PostgreSQL connections one node keeps at most.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long a SQLite writer waits for the lock before failing with SQLITE_BUSY.
const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    /// `sqlite://path` (file created if missing, WAL, foreign keys on) or `sqlite::memory:`,
    /// or `postgres://…`/`postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let mut options: SqliteConnectOptions = url.parse()?;
            options = options.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
            let pool = if in_memory {
                // One connection that never closes: the database lives as long as it does.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(options)
                    .await?
            } else {
                options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                SqlitePoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .connect_with(options)
                    .await?
            };
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options: PgConnectOptions = url.parse()?;
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Runs the embedded migrations for the backend: `migrations/sqlite` or
    /// `migrations/postgres`. Idempotent.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
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
        on_backend!(self, pool => {
            let row: Option<UserRow<Id>> = sqlx::query_as(&sql::user(backend::USER_COLUMNS))
                .bind(Id::from(id))
                .fetch_optional(pool)
                .await?;
            Ok(row.map(UserRecord::from))
        })
    }

    /// The known users among `ids`, any order; unknown ids omitted, duplicates once.
    pub async fn users(&self, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, users(&ids))
    }

    /// Inserts the user if missing with these names. An existing row keeps its names,
    /// except that a NULL (or empty) username / display name is filled in. Returns the row.
    pub async fn ensure_user(
        &self,
        id: Uuid,
        username: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<UserRecord> {
        if let Some(existing) = self.user(id).await? {
            let fills_username = existing.username.is_none() && username.is_some();
            let fills_display = existing.display_name.is_none() && display_name.is_some();
            if !fills_username && !fills_display {
                return Ok(existing);
            }
        }
        dispatch!(self, ensure_user(id, username, display_name))
    }

    /// Admin profile create-or-update: sets username and display_name, keeps everything
    /// else. Returns the row.
    pub async fn upsert_profile(
        &self,
        id: Uuid,
        username: &str,
        display_name: &str,
    ) -> Result<UserRecord> {
        on_backend!(self, pool => {
            let row: UserRow<Id> = sqlx::query_as(&sql::upsert_profile(backend::USER_COLUMNS))
                .bind(Id::from(id))
                .bind(username)
                .bind(display_name)
                .fetch_one(pool)
                .await?;
            Ok(row.into())
        })
    }

    /// Updates the given privacy fields; `None` = unchanged. `Ok(None)` if the user does
    /// not exist.
    pub async fn set_privacy(
        &self,
        id: Uuid,
        show_last_seen: Option<bool>,
        visibility: Option<Visibility>,
    ) -> Result<Option<UserRecord>> {
        on_backend!(self, pool => {
            let row: Option<UserRow<Id>> = sqlx::query_as(&sql::set_privacy(backend::USER_COLUMNS))
                .bind(Id::from(id))
                .bind(show_last_seen)
                .bind(visibility.map(Visibility::as_str))
                .fetch_optional(pool)
                .await?;
            Ok(row.map(UserRecord::from))
        })
    }

    /// Write-behind flush: sets status and last_seen for every entry in one transaction.
    /// An unknown user id is inserted as a bare row so its last_seen is not lost. A stored
    /// `last_seen` never moves backwards (the greater of stored and new is kept). When an
    /// id appears several times, its last entry's status and its greatest time win.
    pub async fn write_presence(&self, entries: &[(Uuid, Status, DateTime<Utc>)]) -> Result<()> {
        let entries = merge_presence(entries);
        if entries.is_empty() {
            return Ok(());
        }
        dispatch!(self, write_presence(&entries))
    }

    /// Marks every user whose stored status is online or away as offline (single-node
    /// start after a crash). Returns how many rows changed.
    pub async fn reset_statuses(&self) -> Result<u64> {
        Ok(on_backend!(self, pool => sqlx::query(sql::RESET_STATUSES)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?)
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
