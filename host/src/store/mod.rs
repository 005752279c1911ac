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

mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

use crate::model::{PrivacySettings, Status, Visibility};

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

/// What [`Store::pairs`] reads for many users at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    /// user → their contacts
    Contacts,
    /// user → their conversations
    Conversations,
}

impl Pairs {
    /// Table, key column, value column.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Pairs::Contacts => ("contacts", "user_id", "contact_id"),
            Pairs::Conversations => ("conversation_members", "user_id", "conversation_id"),
        }
    }
}

/// The kinds of row [`Store::relations`] returns.
pub struct Relations;

impl Relations {
    pub const CONTACTS: i32 = 0;
    pub const WATCHERS: i32 = 1;
    pub const CONVERSATIONS: i32 = 2;
}

/// The three lists in one statement; `$1`/`?1` is the user.
const RELATIONS_SQL: &str = "SELECT 0, contact_id FROM contacts WHERE user_id = $1 \
     UNION ALL SELECT 1, user_id FROM contacts WHERE contact_id = $1 \
     UNION ALL SELECT 2, conversation_id FROM conversation_members WHERE user_id = $1";

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
        match self {
            Store::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Store::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for checked-out connections to come back. Later calls fail.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }

    /// Keeps a policy component (by its hash) for other nodes to fetch.
    pub async fn save_plugin(&self, sha256: &str, slot: &str, component: &[u8]) -> Result<()> {
        match self {
            Store::Sqlite(pool) => {
                sqlx::query("INSERT OR IGNORE INTO plugin_components (sha256, slot, component) VALUES (?, ?, ?)")
                    .bind(sha256)
                    .bind(slot)
                    .bind(component)
                    .execute(pool)
                    .await?;
            }
            Store::Postgres(pool) => {
                sqlx::query("INSERT INTO plugin_components (sha256, slot, component) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING")
                    .bind(sha256)
                    .bind(slot)
                    .bind(component)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Records which component `slot` serves across the cluster.
    pub async fn set_active_plugin(&self, slot: &str, sha256: &str) -> Result<()> {
        match self {
            Store::Sqlite(pool) => {
                sqlx::query("INSERT INTO plugin_active (slot, sha256) VALUES (?, ?) ON CONFLICT (slot) DO UPDATE SET sha256 = excluded.sha256, changed_at = excluded.changed_at")
                    .bind(slot)
                    .bind(sha256)
                    .execute(pool)
                    .await?;
            }
            Store::Postgres(pool) => {
                sqlx::query("INSERT INTO plugin_active (slot, sha256) VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE SET sha256 = excluded.sha256, changed_at = now()")
                    .bind(slot)
                    .bind(sha256)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// `(slot, sha256)` of every slot an operator changed.
    pub async fn active_plugins(&self) -> Result<Vec<(String, String)>> {
        const SQL: &str = "SELECT slot, sha256 FROM plugin_active ORDER BY slot";
        Ok(match self {
            Store::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
            Store::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
        })
    }

    /// The stored component with this hash.
    pub async fn plugin(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar("SELECT component FROM plugin_components WHERE sha256 = ?")
                    .bind(sha256)
                    .fetch_optional(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT component FROM plugin_components WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_optional(pool)
                    .await?
            }
        })
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<UserRecord>> {
        match self {
            Store::Sqlite(pool) => sqlite::user(pool, id).await,
            Store::Postgres(pool) => postgres::user(pool, id).await,
        }
    }

    /// The known users among `ids`, any order; unknown ids omitted, duplicates once.
    pub async fn users(&self, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(pool) => sqlite::users(pool, &ids).await,
            Store::Postgres(pool) => postgres::users(pool, &ids).await,
        }
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
        match self {
            Store::Sqlite(pool) => sqlite::ensure_user(pool, id, username, display_name).await,
            Store::Postgres(pool) => postgres::ensure_user(pool, id, username, display_name).await,
        }
    }

    /// Admin profile create-or-update: sets username and display_name, keeps everything
    /// else. Returns the row.
    pub async fn upsert_profile(
        &self,
        id: Uuid,
        username: &str,
        display_name: &str,
    ) -> Result<UserRecord> {
        match self {
            Store::Sqlite(pool) => sqlite::upsert_profile(pool, id, username, display_name).await,
            Store::Postgres(pool) => {
                postgres::upsert_profile(pool, id, username, display_name).await
            }
        }
    }

    /// Updates the given privacy fields; `None` = unchanged. `Ok(None)` if the user does
    /// not exist.
    pub async fn set_privacy(
        &self,
        id: Uuid,
        show_last_seen: Option<bool>,
        visibility: Option<Visibility>,
    ) -> Result<Option<UserRecord>> {
        match self {
            Store::Sqlite(pool) => sqlite::set_privacy(pool, id, show_last_seen, visibility).await,
            Store::Postgres(pool) => {
                postgres::set_privacy(pool, id, show_last_seen, visibility).await
            }
        }
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
        match self {
            Store::Sqlite(pool) => sqlite::write_presence(pool, &entries).await,
            Store::Postgres(pool) => postgres::write_presence(pool, &entries).await,
        }
    }

    /// Marks every user whose stored status is online or away as offline (single-node
    /// start after a crash). Returns how many rows changed.
    pub async fn reset_statuses(&self) -> Result<u64> {
        match self {
            Store::Sqlite(pool) => sqlite::reset_statuses(pool).await,
            Store::Postgres(pool) => postgres::reset_statuses(pool).await,
        }
    }

    /// The members of a conversation, sorted ascending.
    pub async fn members(&self, conversation: Uuid) -> Result<Vec<Uuid>> {
        match self {
            Store::Sqlite(pool) => sqlite::members(pool, conversation).await,
            Store::Postgres(pool) => postgres::members(pool, conversation).await,
        }
    }

    /// The conversations a user is a member of, sorted ascending.
    pub async fn conversations_of(&self, user: Uuid) -> Result<Vec<Uuid>> {
        match self {
            Store::Sqlite(pool) => sqlite::conversations_of(pool, user).await,
            Store::Postgres(pool) => postgres::conversations_of(pool, user).await,
        }
    }

    /// Replaces the member set in one transaction; returns the previous members (sorted).
    pub async fn replace_members(&self, conversation: Uuid, users: &[Uuid]) -> Result<Vec<Uuid>> {
        let users = dedup(users);
        match self {
            Store::Sqlite(pool) => sqlite::replace_members(pool, conversation, &users).await,
            Store::Postgres(pool) => postgres::replace_members(pool, conversation, &users).await,
        }
    }

    /// Adds one member; true if newly added.
    pub async fn add_member(&self, conversation: Uuid, user: Uuid) -> Result<bool> {
        match self {
            Store::Sqlite(pool) => sqlite::add_member(pool, conversation, user).await,
            Store::Postgres(pool) => postgres::add_member(pool, conversation, user).await,
        }
    }

    /// Removes one member; true if it was there.
    pub async fn remove_member(&self, conversation: Uuid, user: Uuid) -> Result<bool> {
        match self {
            Store::Sqlite(pool) => sqlite::remove_member(pool, conversation, user).await,
            Store::Postgres(pool) => postgres::remove_member(pool, conversation, user).await,
        }
    }

    /// [`contacts_of`](Self::contacts_of) or
    /// [`conversations_of`](Self::conversations_of) of many users in one
    /// query: `(user, id)` pairs, any order; users without any are absent.
    pub async fn pairs(&self, of: Pairs, users: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
        let users = dedup(users);
        if users.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Sqlite(pool) => sqlite::pairs(pool, of, &users).await,
            Store::Postgres(pool) => postgres::pairs(pool, of, &users).await,
        }
    }

    /// A user's contacts, watchers and conversations in one round trip, as
    /// `(Relations::CONTACTS | WATCHERS | CONVERSATIONS, id)` rows.
    pub async fn relations(&self, user: Uuid) -> Result<Vec<(i32, Uuid)>> {
        match self {
            Store::Sqlite(pool) => sqlite::relations(pool, user).await,
            Store::Postgres(pool) => postgres::relations(pool, user).await,
        }
    }

    /// The user's own contact list, sorted.
    pub async fn contacts_of(&self, user: Uuid) -> Result<Vec<Uuid>> {
        match self {
            Store::Sqlite(pool) => sqlite::contacts_of(pool, user).await,
            Store::Postgres(pool) => postgres::contacts_of(pool, user).await,
        }
    }

    /// Users who have `user` in their contact list (the user's watchers), sorted.
    pub async fn watchers_of(&self, user: Uuid) -> Result<Vec<Uuid>> {
        match self {
            Store::Sqlite(pool) => sqlite::watchers_of(pool, user).await,
            Store::Postgres(pool) => postgres::watchers_of(pool, user).await,
        }
    }

    /// Replaces `user`'s contact list in one transaction; returns the previous list
    /// (sorted). A user is never their own contact: that entry is dropped silently.
    pub async fn replace_contacts(&self, user: Uuid, contacts: &[Uuid]) -> Result<Vec<Uuid>> {
        let mut contacts = dedup(contacts);
        contacts.retain(|c| *c != user);
        match self {
            Store::Sqlite(pool) => sqlite::replace_contacts(pool, user, &contacts).await,
            Store::Postgres(pool) => postgres::replace_contacts(pool, user, &contacts).await,
        }
    }
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

/// The URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
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

    #[test]
    fn redacts_password() {
        assert_eq!(redact_url("mysql://u:secret@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact_url("redis://h/0"), "redis://h/0");
    }
}
