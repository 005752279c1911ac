//! PostgreSQL backend. The `users` table may be the chat backend's own: reads cast every
//! presence column to the type we expect, and inserts name only the columns they must so
//! the chat backend's defaults fill the rest.
//!
//! Writers that touch many rows lock them in id order (write-behind flushes) or take a
//! transaction-scoped advisory lock per conversation / contact list (replacements), so
//! concurrent nodes neither deadlock nor interleave two replacements.

use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgPool};
use uuid::Uuid;

use super::{Edge, Result, UserRecord, UserRow, sorted};
use crate::model::Status;

pub(super) const USER_COLUMNS: &str = "id, username::text AS username, display_name::text AS display_name, \
     status::text AS status, last_seen::timestamptz AS last_seen, show_last_seen, \
     last_seen_visibility::text AS last_seen_visibility";

/// Advisory lock namespaces (first key of `pg_advisory_xact_lock(int4, int4)`).
const LOCK_MEMBERS: i32 = 0x7072_0001;
const LOCK_CONTACTS: i32 = 0x7072_0002;

/// A 32-bit key for an advisory lock on one id.
fn lock_key(id: Uuid) -> i32 {
    let v = id.as_u128();
    (v as u32 ^ (v >> 32) as u32 ^ (v >> 64) as u32 ^ (v >> 96) as u32) as i32
}

pub(super) async fn users(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
    let rows: Vec<UserRow<Uuid>> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(UserRecord::from).collect())
}

pub(super) async fn ensure_user(
    pool: &PgPool,
    id: Uuid,
    username: Option<&str>,
    display_name: Option<&str>,
) -> Result<UserRecord> {
    let mut tx = pool.begin().await?;
    // Only the columns we have values for: a chat table's own defaults fill the rest.
    let mut columns = String::from("id");
    let mut values = String::from("$1");
    let mut n = 1;
    for (name, value) in [("username", username), ("display_name", display_name)] {
        if value.is_some() {
            n += 1;
            columns.push_str(", ");
            columns.push_str(name);
            values.push_str(&format!(", ${n}"));
        }
    }
    let sql =
        format!("INSERT INTO users ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING");
    let mut insert = sqlx::query(&sql).bind(id);
    for value in [username, display_name].into_iter().flatten() {
        insert = insert.bind(value);
    }
    insert.execute(&mut *tx).await?;
    let row: UserRow<Uuid> = sqlx::query_as(&format!(
        "UPDATE users SET \
           username = COALESCE(NULLIF(username, ''), $2::text, username), \
           display_name = COALESCE(NULLIF(display_name, ''), $3::text, display_name) \
         WHERE id = $1 \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(username)
    .bind(display_name)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// `entries` has one entry per id, sorted by id (merged by the caller).
pub(super) async fn write_presence(
    pool: &PgPool,
    entries: &[(Uuid, Status, DateTime<Utc>)],
) -> Result<()> {
    let ids: Vec<Uuid> = entries.iter().map(|e| e.0).collect();
    let statuses: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
    let times: Vec<DateTime<Utc>> = entries.iter().map(|e| e.2).collect();

    let mut tx = pool.begin().await?;
    // Lock the existing rows in id order: two nodes flushing overlapping batches queue
    // instead of deadlocking.
    let mut existing: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
    existing.sort_unstable();
    if !existing.is_empty() {
        sqlx::query(
            "UPDATE users AS u SET \
               status = v.status, \
               last_seen = GREATEST(u.last_seen, v.last_seen) \
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, status, last_seen) \
             WHERE u.id = v.id",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }
    if existing.len() < ids.len() {
        // Unknown users get a bare row so their last_seen is kept. ON CONFLICT covers a
        // row created meanwhile by someone else.
        let missing: Vec<usize> = (0..entries.len())
            .filter(|&i| existing.binary_search(&ids[i]).is_err())
            .collect();
        let m_ids: Vec<Uuid> = missing.iter().map(|&i| ids[i]).collect();
        let m_statuses: Vec<&str> = missing.iter().map(|&i| statuses[i]).collect();
        let m_times: Vec<DateTime<Utc>> = missing.iter().map(|&i| times[i]).collect();
        // In a savepoint: a chat backend's users table may refuse bare rows (NOT NULL
        // columns without defaults); that must not cost the updates above.
        let mut savepoint = tx.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, status, last_seen) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) \
             ON CONFLICT (id) DO UPDATE SET \
               status = EXCLUDED.status, \
               last_seen = GREATEST(users.last_seen, EXCLUDED.last_seen)",
        )
        .bind(&m_ids)
        .bind(&m_statuses)
        .bind(&m_times)
        .execute(&mut *savepoint)
        .await;
        match inserted {
            Ok(_) => savepoint.commit().await?,
            Err(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("23")) => {
                savepoint.rollback().await?;
                tracing::warn!(
                    users = m_ids.len(),
                    error = %e,
                    "users table refuses bare rows: presence of unknown users not stored"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Replaces the list `key` owns in one transaction, touching only the rows
/// that change; returns the previous list. `values` is deduplicated by the
/// caller.
pub(super) async fn replace_list(
    pool: &PgPool,
    edge: Edge,
    key: Uuid,
    values: &[Uuid],
) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    // Two replacements of one list queue rather than interleave.
    let namespace = if edge == Edge::MEMBERS {
        LOCK_MEMBERS
    } else {
        LOCK_CONTACTS
    };
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(namespace)
        .bind(lock_key(key))
        .execute(&mut *tx)
        .await?;
    let Edge {
        table,
        key: key_column,
        value: value_column,
    } = edge;
    let previous: Vec<Uuid> = sqlx::query_scalar(&edge.values_sql())
        .bind(key)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "DELETE FROM {table} WHERE {key_column} = $1 AND NOT ({value_column} = ANY($2))"
    ))
    .bind(key)
    .bind(values)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {table} ({key_column}, {value_column}) \
         SELECT $1, v FROM UNNEST($2::uuid[]) AS v ON CONFLICT DO NOTHING"
    ))
    .bind(key)
    .bind(values)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(sorted(previous))
}

/// `(key, value)` of the rows of a membership table whose `key` is among `keys`.
pub(super) async fn pairs(pool: &PgPool, of: Edge, keys: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
    let Edge { table, key, value } = of;
    Ok(sqlx::query_as(&format!(
        "SELECT {key}, {value} FROM {table} WHERE {key} = ANY($1)"
    ))
    .bind(keys)
    .fetch_all(pool)
    .await?)
}
