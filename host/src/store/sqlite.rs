//! SQLite backend. Ids are stored as hyphenated lowercase UUID text, times as
//! RFC 3339 UTC text with milliseconds (text order is time order), booleans as 0/1.
//! Id lists travel as one JSON array (`json_each`), so no statement grows with them.
//!
//! Write transactions start with `BEGIN IMMEDIATE` so two writers queue on the busy
//! timeout instead of failing on a read-to-write lock upgrade.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, Sqlite, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::{Edge, Layout, Result, UserRecord, UserRow, sorted};
use crate::model::Status;

/// How many connections a file database gets (WAL: many readers, one writer).
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for the lock before failing with SQLITE_BUSY.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The owned `users` table (see the file).
pub(super) const CREATE_USERS: &str = include_str!("../../../migrations/sqlite/users.sql");
/// Presence's own tables, by version.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "presence_tables",
        include_str!("../../../migrations/sqlite/0001_presence_tables.sql"),
    ),
    (
        2,
        "webhook_outbox",
        include_str!("../../../migrations/sqlite/0002_webhook_outbox.sql"),
    ),
];
/// What presence adds to a `users` table it did not create, one column at a
/// time (SQLite has no `ADD COLUMN IF NOT EXISTS`), and its indexes.
const SEED_COLUMNS: [(&str, &str); 4] = [
    ("status", "VARCHAR(20) DEFAULT 'offline'"),
    ("last_seen", "TEXT"),
    ("show_last_seen", "INTEGER DEFAULT 1"),
    ("last_seen_visibility", "VARCHAR(16) DEFAULT 'everyone'"),
];
pub(super) const USERS_INDEXES: &str = "\
     CREATE INDEX IF NOT EXISTS idx_users_status ON users(status); \
     CREATE INDEX IF NOT EXISTS idx_users_last_seen ON users(last_seen DESC)";

/// Every presence column of `users` (alias `u`).
const OWNED_COLUMNS: &str = "u.id, u.username, u.display_name, u.status, u.last_seen, \
     u.show_last_seen, u.last_seen_visibility";

pub(super) async fn connect(url: &str) -> Result<SqlitePool> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let mut options: SqliteConnectOptions = url.parse()?;
    options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
    Ok(if in_memory {
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
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?
    })
}

fn time_text(at: DateTime<Utc>) -> String {
    // Fixed width and `Z`, so text order is time order (sqlx would write `+00:00`).
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Ids as one JSON array of hyphenated lowercase text, for `json_each`.
fn id_array(ids: &[Uuid]) -> String {
    serde_json::to_string(ids).expect("ids serialize")
}

async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// A migration transaction: the write lock keeps other processes out.
pub(super) async fn begin_migration(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    begin_write(pool).await
}

/// A transaction that claims outbox events (the write lock serialises them).
pub(super) async fn begin_claim(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    begin_write(pool).await
}

/// The columns of `table`; empty if there is none.
pub(super) async fn columns(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
        .bind(table)
        .fetch_all(conn)
        .await?)
}

/// Adds the seed's columns `users` lacks.
pub(super) async fn add_seed_columns(
    conn: &mut SqliteConnection,
    present: &[String],
) -> Result<()> {
    for (column, definition) in SEED_COLUMNS {
        if !present.iter().any(|c| c == column) {
            conn.execute(format!("ALTER TABLE users ADD COLUMN {column} {definition}").as_str())
                .await?;
        }
    }
    Ok(())
}

/// Gives a table of an older version its `presence_` name.
pub(super) async fn adopt_table(conn: &mut SqliteConnection, old: &str, new: &str) -> Result<()> {
    conn.execute(format!("ALTER TABLE {old} RENAME TO {new}").as_str())
        .await?;
    Ok(())
}

/// Drops an index of an older version (SQLite cannot rename one; the
/// migration creates it again under its new name).
pub(super) async fn rename_index(conn: &mut SqliteConnection, old: &str, _new: &str) -> Result<()> {
    conn.execute(format!("DROP INDEX IF EXISTS {old}").as_str())
        .await?;
    Ok(())
}

/// The users among `ids` (sorted, deduplicated), wherever presence keeps them.
pub(super) async fn users(
    pool: &SqlitePool,
    layout: Layout,
    ids: &[Uuid],
) -> Result<Vec<UserRecord>> {
    let sql = if layout.owned {
        format!(
            "SELECT {OWNED_COLUMNS} FROM users u \
             WHERE u.id IN (SELECT value FROM json_each($1))"
        )
    } else {
        let chat = |has: bool, column: &str| {
            if has {
                format!("u.{column}")
            } else {
                "NULL".to_owned()
            }
        };
        format!(
            "SELECT ids.value AS id, \
               COALESCE(NULLIF(p.username, ''), {}) AS username, \
               COALESCE(NULLIF(p.display_name, ''), {}) AS display_name, \
               CASE WHEN u.id IS NULL THEN p.status ELSE u.status END AS status, \
               CASE WHEN u.id IS NULL THEN p.last_seen ELSE u.last_seen END AS last_seen, \
               CASE WHEN u.id IS NULL THEN p.show_last_seen ELSE u.show_last_seen END \
                 AS show_last_seen, \
               CASE WHEN u.id IS NULL THEN p.last_seen_visibility \
                 ELSE u.last_seen_visibility END AS last_seen_visibility \
             FROM json_each($1) AS ids \
             LEFT JOIN users u ON u.id = ids.value \
             LEFT JOIN presence_users p ON p.id = ids.value \
             WHERE u.id IS NOT NULL OR p.id IS NOT NULL",
            chat(layout.chat_username, "username"),
            chat(layout.chat_display_name, "display_name"),
        )
    };
    let rows: Vec<UserRow<Hyphenated>> = sqlx::query_as(&sql)
        .bind(id_array(ids))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(UserRecord::from).collect())
}

/// `entries` has one entry per id (merged by the caller).
pub(super) async fn write_presence(
    pool: &SqlitePool,
    own: &str,
    entries: &[(Uuid, Status, DateTime<Utc>)],
) -> Result<()> {
    let rows: Vec<(Uuid, &str, String)> = entries
        .iter()
        .map(|(id, status, at)| (*id, status.as_str(), time_text(*at)))
        .collect();
    let rows = serde_json::to_string(&rows).expect("entries serialize");
    // The entries as a table: v(id, status, last_seen).
    let entries = "(SELECT value ->> 0 AS id, value ->> 1 AS status, value ->> 2 AS last_seen \
         FROM json_each($1))";
    let mut tx = begin_write(pool).await?;
    // MAX() would return NULL when the stored value is NULL: compare by hand.
    sqlx::query(&format!(
        "UPDATE users SET \
           status = v.status, \
           last_seen = CASE WHEN users.last_seen IS NULL OR users.last_seen < v.last_seen \
             THEN v.last_seen ELSE users.last_seen END \
         FROM {entries} AS v WHERE users.id = v.id"
    ))
    .bind(&rows)
    .execute(&mut *tx)
    .await?;
    // Users `users` has no row for, so their last_seen is kept all the same.
    sqlx::query(&format!(
        "INSERT INTO {own} (id, status, last_seen) \
         SELECT v.id, v.status, v.last_seen FROM {entries} AS v \
         WHERE v.id NOT IN (SELECT id FROM users) \
         ON CONFLICT (id) DO UPDATE SET \
           status = excluded.status, \
           last_seen = CASE WHEN {own}.last_seen IS NULL OR {own}.last_seen < excluded.last_seen \
             THEN excluded.last_seen ELSE {own}.last_seen END"
    ))
    .bind(&rows)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces the list `key` owns in one transaction; returns the previous
/// list. `values` is deduplicated by the caller.
pub(super) async fn replace_list(
    pool: &SqlitePool,
    edge: Edge,
    key: Uuid,
    values: &[Uuid],
) -> Result<Vec<Uuid>> {
    let key = key.hyphenated();
    let mut tx = begin_write(pool).await?;
    let previous: Vec<Hyphenated> = sqlx::query_scalar(&edge.values_sql())
        .bind(key)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "DELETE FROM {} WHERE {} = $1",
        edge.table, edge.key
    ))
    .bind(key)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {} ({}, {}) SELECT $1, value FROM json_each($2) WHERE true \
         ON CONFLICT DO NOTHING",
        edge.table, edge.key, edge.value
    ))
    .bind(key)
    .bind(id_array(values))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(sorted(previous))
}

/// `(key, value)` of the rows of a membership table whose `key` is among `keys`.
pub(super) async fn pairs(pool: &SqlitePool, of: Edge, keys: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
    let Edge { table, key, value } = of;
    let rows: Vec<(Hyphenated, Hyphenated)> = sqlx::query_as(&format!(
        "SELECT {key}, {value} FROM {table} WHERE {key} IN (SELECT value FROM json_each($1))"
    ))
    .bind(id_array(keys))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (k.into_uuid(), v.into_uuid()))
        .collect())
}
