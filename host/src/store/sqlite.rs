//! SQLite backend. Ids are stored as hyphenated lowercase UUID text, `last_seen` as
//! RFC 3339 UTC text with milliseconds (text order is time order), booleans as 0/1.
//!
//! Write transactions start with `BEGIN IMMEDIATE` so two writers queue on the busy
//! timeout instead of failing on a read-to-write lock upgrade.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::{Edge, Result, UserRecord, UserRow, sorted};
use crate::model::Status;

pub(super) const USER_COLUMNS: &str =
    "id, username, display_name, status, last_seen, show_last_seen, last_seen_visibility";

/// Rows per multi-row statement (3 binds each, well under SQLite's variable limit).
const CHUNK: usize = 300;

fn time_text(at: DateTime<Utc>) -> String {
    // Fixed width and `Z`, so text order is time order (sqlx would write `+00:00`).
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

pub(super) async fn users(pool: &SqlitePool, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id IN ("));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id.hyphenated());
        }
        query.push(")");
        let rows: Vec<UserRow<Hyphenated>> = query.build_query_as().fetch_all(pool).await?;
        out.extend(rows.into_iter().map(UserRecord::from));
    }
    Ok(out)
}

pub(super) async fn ensure_user(
    pool: &SqlitePool,
    id: Uuid,
    username: Option<&str>,
    display_name: Option<&str>,
) -> Result<UserRecord> {
    let row: UserRow<Hyphenated> = sqlx::query_as(&format!(
        "INSERT INTO users (id, username, display_name) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = COALESCE(NULLIF(users.username, ''), excluded.username, users.username), \
           display_name = COALESCE(NULLIF(users.display_name, ''), excluded.display_name, users.display_name) \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id.hyphenated())
    .bind(username)
    .bind(display_name)
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

/// `entries` has one entry per id (merged by the caller).
pub(super) async fn write_presence(
    pool: &SqlitePool,
    entries: &[(Uuid, Status, DateTime<Utc>)],
) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    for chunk in entries.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new("INSERT INTO users (id, status, last_seen) ");
        query.push_values(chunk, |mut row, (id, status, at)| {
            row.push_bind(id.hyphenated())
                .push_bind(status.as_str())
                .push_bind(time_text(*at));
        });
        // MAX() would return NULL when the stored value is NULL: compare by hand.
        query.push(
            " ON CONFLICT (id) DO UPDATE SET \
               status = excluded.status, \
               last_seen = CASE \
                 WHEN users.last_seen IS NULL OR users.last_seen < excluded.last_seen \
                 THEN excluded.last_seen ELSE users.last_seen END",
        );
        query.build().execute(&mut *tx).await?;
    }
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
    for chunk in values.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {} ({}, {}) ",
            edge.table, edge.key, edge.value
        ));
        query.push_values(chunk, |mut row, value| {
            row.push_bind(key).push_bind(value.hyphenated());
        });
        query.push(" ON CONFLICT DO NOTHING");
        query.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(sorted(previous))
}

/// `(key, value)` of the rows of a membership table whose `key` is among `keys`.
pub(super) async fn pairs(pool: &SqlitePool, of: Edge, keys: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
    let Edge { table, key, value } = of;
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {key}, {value} FROM {table} WHERE {key} IN ("
        ));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id.hyphenated());
        }
        query.push(")");
        let rows: Vec<(Hyphenated, Hyphenated)> = query.build_query_as().fetch_all(pool).await?;
        out.extend(
            rows.into_iter()
                .map(|(k, v)| (k.into_uuid(), v.into_uuid())),
        );
    }
    Ok(out)
}
