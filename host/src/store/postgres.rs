//! PostgreSQL backend. The `users` table may be the chat backend's own: reads
//! cast every presence column to the type we expect, and writes touch only the
//! seed's columns of its rows.
//!
//! Writers that touch many rows lock them in id order (write-behind flushes) or take a
//! transaction-scoped advisory lock per conversation / contact list (replacements) or
//! for the whole migration, so concurrent nodes neither deadlock nor interleave.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{Edge, Layout, Result, StoreError, UserRecord, UserRow, sorted};
use crate::model::Status;

/// How many connections one node keeps at most.
const MAX_CONNECTIONS: u32 = 10;

/// Advisory lock namespaces (first key of `pg_advisory_xact_lock(int4, int4)`).
const LOCK_MEMBERS: i32 = 0x7072_0001;
const LOCK_CONTACTS: i32 = 0x7072_0002;
const LOCK_MIGRATE: i32 = 0x7072_0003;
const LOCK_OUTBOX: i32 = 0x7072_0004;

/// The owned `users` table (see the file).
pub(super) const CREATE_USERS: &str = include_str!("../../../migrations/postgres/users.sql");
/// Presence's own tables, by version.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "presence_tables",
        include_str!("../../../migrations/postgres/0001_presence_tables.sql"),
    ),
    (
        2,
        "webhook_outbox",
        include_str!("../../../migrations/postgres/0002_webhook_outbox.sql"),
    ),
];
/// What presence adds to a `users` table it did not create: the seed's
/// columns, with the defaults that fill existing rows, and its indexes.
const SEED_COLUMNS: &str = "ALTER TABLE users \
       ADD COLUMN IF NOT EXISTS status VARCHAR(20) DEFAULT 'offline', \
       ADD COLUMN IF NOT EXISTS last_seen TIMESTAMP WITH TIME ZONE, \
       ADD COLUMN IF NOT EXISTS show_last_seen BOOLEAN DEFAULT true, \
       ADD COLUMN IF NOT EXISTS last_seen_visibility VARCHAR(16) DEFAULT 'everyone'";
pub(super) const USERS_INDEXES: &str = "\
     CREATE INDEX IF NOT EXISTS idx_users_status ON users(status); \
     CREATE INDEX IF NOT EXISTS idx_users_last_seen ON users(last_seen DESC)";

/// Every presence column of `users` (alias `u`), as the types we read.
const OWNED_COLUMNS: &str = "u.id, u.username::text AS username, \
     u.display_name::text AS display_name, u.status::text AS status, \
     u.last_seen::timestamptz AS last_seen, u.show_last_seen, \
     u.last_seen_visibility::text AS last_seen_visibility";

/// A `schema` name safe to splice into statements.
fn checked_schema(schema: &str) -> Result<&str> {
    let ok = schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(schema)
    } else {
        Err(StoreError::BadSchema(schema.to_owned()))
    }
}

pub(super) async fn connect(url: &str, schema: Option<&str>) -> Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let mut pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS);
    if let Some(schema) = schema {
        let schema = checked_schema(schema)?.to_owned();
        // Presence's tables resolve (and are created) in its schema first;
        // `users` and everything else as the URL's search path says.
        pool = pool.after_connect(move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                    .await?;
                let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
                    .fetch_one(&mut *conn)
                    .await?;
                conn.execute(format!("SET search_path TO {schema}, {path}").as_str())
                    .await?;
                Ok(())
            })
        });
    }
    Ok(pool.connect_with(options).await?)
}

/// Adds the seed's columns `users` lacks.
pub(super) async fn add_seed_columns(conn: &mut PgConnection, _present: &[String]) -> Result<()> {
    conn.execute(SEED_COLUMNS).await?;
    Ok(())
}

/// A migration transaction; one node migrates at a time.
pub(super) async fn begin_migration(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_MIGRATE)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// A transaction that claims outbox events; one node claims at a time, so a
/// user's events never go out from two nodes at once.
pub(super) async fn begin_claim(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_OUTBOX)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The columns of `table` as the search path finds it; empty if there is none.
pub(super) async fn columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table)
    .fetch_all(conn)
    .await?)
}

/// Gives a table of an older version its `presence_` name (and presence's
/// schema, when it has one).
pub(super) async fn adopt_table(conn: &mut PgConnection, old: &str, new: &str) -> Result<()> {
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT current_schema() WHERE current_schema() <> \
         (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass($1))",
    )
    .bind(old)
    .fetch_optional(&mut *conn)
    .await?;
    conn.execute(format!("ALTER TABLE {old} RENAME TO {new}").as_str())
        .await?;
    if let Some(schema) = schema {
        conn.execute(format!("ALTER TABLE {new} SET SCHEMA {schema}").as_str())
            .await?;
    }
    Ok(())
}

/// Renames an index of an older version, if it is there.
pub(super) async fn rename_index(conn: &mut PgConnection, old: &str, new: &str) -> Result<()> {
    conn.execute(format!("ALTER INDEX IF EXISTS {old} RENAME TO {new}").as_str())
        .await?;
    Ok(())
}

/// The users among `ids` (sorted, deduplicated), wherever presence keeps them.
pub(super) async fn users(pool: &PgPool, layout: Layout, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
    let sql = if layout.owned {
        format!("SELECT {OWNED_COLUMNS} FROM users u WHERE u.id = ANY($1)")
    } else {
        let chat = |has: bool, column: &str| {
            if has {
                format!("u.{column}::text")
            } else {
                "NULL".to_owned()
            }
        };
        format!(
            "SELECT ids.id AS id, \
               COALESCE(NULLIF(p.username, ''), {}) AS username, \
               COALESCE(NULLIF(p.display_name, ''), {}) AS display_name, \
               CASE WHEN u.id IS NULL THEN p.status ELSE u.status::text END AS status, \
               CASE WHEN u.id IS NULL THEN p.last_seen ELSE u.last_seen::timestamptz END \
                 AS last_seen, \
               CASE WHEN u.id IS NULL THEN p.show_last_seen ELSE u.show_last_seen END \
                 AS show_last_seen, \
               CASE WHEN u.id IS NULL THEN p.last_seen_visibility \
                 ELSE u.last_seen_visibility::text END AS last_seen_visibility \
             FROM UNNEST($1::uuid[]) AS ids(id) \
             LEFT JOIN users u ON u.id = ids.id \
             LEFT JOIN presence_users p ON p.id = ids.id \
             WHERE u.id IS NOT NULL OR p.id IS NOT NULL",
            chat(layout.chat_username, "username"),
            chat(layout.chat_display_name, "display_name"),
        )
    };
    let rows: Vec<UserRow<Uuid>> = sqlx::query_as(&sql).bind(ids).fetch_all(pool).await?;
    Ok(rows.into_iter().map(UserRecord::from).collect())
}

/// `entries` has one entry per id, sorted by id (merged by the caller).
pub(super) async fn write_presence(
    pool: &PgPool,
    own: &str,
    entries: &[(Uuid, Status, DateTime<Utc>)],
) -> Result<()> {
    let ids: Vec<Uuid> = entries.iter().map(|e| e.0).collect();
    let statuses: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
    let times: Vec<DateTime<Utc>> = entries.iter().map(|e| e.2).collect();

    let mut tx = pool.begin().await?;
    // Lock the existing rows in id order: two nodes flushing overlapping batches queue
    // instead of deadlocking.
    sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
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
    // Users `users` has no row for, so their last_seen is kept all the same. ON
    // CONFLICT covers a row created meanwhile by another node.
    sqlx::query(&format!(
        "INSERT INTO {own} (id, status, last_seen) \
         SELECT v.id, v.status, v.last_seen \
         FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, status, last_seen) \
         WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.id = v.id) \
         ORDER BY v.id \
         ON CONFLICT (id) DO UPDATE SET \
           status = excluded.status, \
           last_seen = GREATEST({own}.last_seen, excluded.last_seen)"
    ))
    .bind(&ids)
    .bind(&statuses)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A 32-bit key for an advisory lock on one id.
fn lock_key(id: Uuid) -> i32 {
    let v = id.as_u128();
    (v as u32 ^ (v >> 32) as u32 ^ (v >> 64) as u32 ^ (v >> 96) as u32) as i32
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
