//! PostgreSQL backend. The `users` table may be the chat backend's own: reads cast every
//! presence column to the type we expect, and inserts name only the columns they must so
//! the chat backend's defaults fill the rest.
//!
//! Writers that touch many rows lock them in id order (write-behind flushes) or take a
//! transaction-scoped advisory lock per conversation / contact list (replacements), so
//! concurrent nodes neither deadlock nor interleave two replacements.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Acquire, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::{Result, UserRecord, non_empty, parse_status, parse_visibility};
use crate::model::{PrivacySettings, Status, Visibility};

const USER_COLUMNS: &str = "id, username::text AS username, display_name::text AS display_name, \
     status::text AS status, last_seen::timestamptz AS last_seen, show_last_seen, \
     last_seen_visibility::text AS last_seen_visibility";

/// Advisory lock namespaces (first key of `pg_advisory_xact_lock(int4, int4)`).
const LOCK_MEMBERS: i32 = 0x7072_0001;
const LOCK_CONTACTS: i32 = 0x7072_0002;

fn record(row: &PgRow) -> std::result::Result<UserRecord, sqlx::Error> {
    let status: Option<String> = row.try_get("status")?;
    let show_last_seen: Option<bool> = row.try_get("show_last_seen")?;
    let visibility: Option<String> = row.try_get("last_seen_visibility")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: non_empty(row.try_get("username")?),
        display_name: non_empty(row.try_get("display_name")?),
        status: parse_status(status.as_deref()),
        last_seen: row.try_get("last_seen")?,
        privacy: PrivacySettings {
            show_last_seen: show_last_seen.unwrap_or(true),
            last_seen_visibility: parse_visibility(visibility.as_deref()),
        },
    })
}

/// A 32-bit key for an advisory lock on one id.
fn lock_key(id: Uuid) -> i32 {
    let v = id.as_u128();
    (v as u32 ^ (v >> 32) as u32 ^ (v >> 64) as u32 ^ (v >> 96) as u32) as i32
}

async fn lock(tx: &mut Transaction<'static, Postgres>, namespace: i32, id: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(namespace)
        .bind(lock_key(id))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn user(pool: &PgPool, id: Uuid) -> Result<Option<UserRecord>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(record).transpose()?)
}

pub(super) async fn users(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(record)
        .collect::<std::result::Result<Vec<_>, _>>()?)
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
    let row = sqlx::query(&format!(
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
    Ok(record(&row)?)
}

pub(super) async fn upsert_profile(
    pool: &PgPool,
    id: Uuid,
    username: &str,
    display_name: &str,
) -> Result<UserRecord> {
    let row = sqlx::query(&format!(
        "INSERT INTO users (id, username, display_name) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = EXCLUDED.username, display_name = EXCLUDED.display_name \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(username)
    .bind(display_name)
    .fetch_one(pool)
    .await?;
    Ok(record(&row)?)
}

pub(super) async fn set_privacy(
    pool: &PgPool,
    id: Uuid,
    show_last_seen: Option<bool>,
    visibility: Option<Visibility>,
) -> Result<Option<UserRecord>> {
    let row = sqlx::query(&format!(
        "UPDATE users SET \
           show_last_seen = COALESCE($2::boolean, show_last_seen), \
           last_seen_visibility = COALESCE($3::text, last_seen_visibility) \
         WHERE id = $1 \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(show_last_seen)
    .bind(visibility.map(Visibility::as_str))
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(record).transpose()?)
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

pub(super) async fn reset_statuses(pool: &PgPool) -> Result<u64> {
    let done =
        sqlx::query("UPDATE users SET status = 'offline' WHERE status IN ('online', 'away')")
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

pub(super) async fn members(pool: &PgPool, conversation: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id",
    )
    .bind(conversation)
    .fetch_all(pool)
    .await?)
}

pub(super) async fn conversations_of(pool: &PgPool, user: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT conversation_id FROM conversation_members WHERE user_id = $1 \
         ORDER BY conversation_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?)
}

/// `users` is deduplicated by the caller.
pub(super) async fn replace_members(
    pool: &PgPool,
    conversation: Uuid,
    users: &[Uuid],
) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, LOCK_MEMBERS, conversation).await?;
    let previous: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id",
    )
    .bind(conversation)
    .fetch_all(&mut *tx)
    .await?;
    // Touch only what changes.
    sqlx::query(
        "DELETE FROM conversation_members \
         WHERE conversation_id = $1 AND NOT (user_id = ANY($2))",
    )
    .bind(conversation)
    .bind(users)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id) \
         SELECT $1, u FROM UNNEST($2::uuid[]) AS u \
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(users)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(previous)
}

pub(super) async fn add_member(pool: &PgPool, conversation: Uuid, user: Uuid) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(user)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn remove_member(pool: &PgPool, conversation: Uuid, user: Uuid) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(user)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn contacts_of(pool: &PgPool, user: Uuid) -> Result<Vec<Uuid>> {
    Ok(
        sqlx::query_scalar(
            "SELECT contact_id FROM contacts WHERE user_id = $1 ORDER BY contact_id",
        )
        .bind(user)
        .fetch_all(pool)
        .await?,
    )
}

pub(super) async fn relations(pool: &PgPool, user: Uuid) -> Result<Vec<(i32, Uuid)>> {
    Ok(sqlx::query_as(super::RELATIONS_SQL)
        .bind(user)
        .fetch_all(pool)
        .await?)
}

pub(super) async fn watchers_of(pool: &PgPool, user: Uuid) -> Result<Vec<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM contacts WHERE contact_id = $1 ORDER BY user_id")
            .bind(user)
            .fetch_all(pool)
            .await?,
    )
}

/// `contacts` is deduplicated and without `user` (done by the caller).
pub(super) async fn replace_contacts(
    pool: &PgPool,
    user: Uuid,
    contacts: &[Uuid],
) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, LOCK_CONTACTS, user).await?;
    let previous: Vec<Uuid> = sqlx::query_scalar(
        "SELECT contact_id FROM contacts WHERE user_id = $1 ORDER BY contact_id",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM contacts WHERE user_id = $1 AND NOT (contact_id = ANY($2))")
        .bind(user)
        .bind(contacts)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO contacts (user_id, contact_id) \
         SELECT $1, c FROM UNNEST($2::uuid[]) AS c \
         ON CONFLICT DO NOTHING",
    )
    .bind(user)
    .bind(contacts)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(previous)
}

/// `(key, value)` of the rows of a membership table whose `key` is among `keys`.
pub(super) async fn pairs(
    pool: &PgPool,
    of: super::Pairs,
    keys: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>> {
    let (table, key, value) = of.sql();
    Ok(sqlx::query_as(&format!(
        "SELECT {key}, {value} FROM {table} WHERE {key} = ANY($1)"
    ))
    .bind(keys)
    .fetch_all(pool)
    .await?)
}
