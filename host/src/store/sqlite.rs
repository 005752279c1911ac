//! SQLite backend. Ids are stored as hyphenated lowercase UUID text, `last_seen` as
//! RFC 3339 UTC text with milliseconds (text order is time order), booleans as 0/1.
//!
//! Write transactions start with `BEGIN IMMEDIATE` so two writers queue on the busy
//! timeout instead of failing on a read-to-write lock upgrade.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::{Result, UserRecord, non_empty, parse_status, parse_visibility};
use crate::model::{PrivacySettings, Status, Visibility};

const USER_COLUMNS: &str =
    "id, username, display_name, status, last_seen, show_last_seen, last_seen_visibility";

/// Rows per multi-row statement (3 binds each, well under SQLite's variable limit).
const CHUNK: usize = 300;

fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn parse_id(raw: &str) -> std::result::Result<Uuid, sqlx::Error> {
    Uuid::parse_str(raw).map_err(decode_err)
}

fn record(row: &SqliteRow) -> std::result::Result<UserRecord, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let status: Option<String> = row.try_get("status")?;
    let last_seen: Option<String> = row.try_get("last_seen")?;
    let show_last_seen: Option<bool> = row.try_get("show_last_seen")?;
    let visibility: Option<String> = row.try_get("last_seen_visibility")?;
    let last_seen = match last_seen.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(decode_err)?
                .with_timezone(&Utc),
        ),
    };
    Ok(UserRecord {
        id: parse_id(&id)?,
        username: non_empty(row.try_get("username")?),
        display_name: non_empty(row.try_get("display_name")?),
        status: parse_status(status.as_deref()),
        last_seen,
        privacy: PrivacySettings {
            show_last_seen: show_last_seen.unwrap_or(true),
            last_seen_visibility: parse_visibility(visibility.as_deref()),
        },
    })
}

fn ids(rows: Vec<SqliteRow>) -> Result<Vec<Uuid>> {
    let mut out = rows
        .iter()
        .map(|row| parse_id(row.try_get::<&str, _>(0)?))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Text order of hyphenated lowercase ids is byte order already; sort to be sure.
    out.sort_unstable();
    Ok(out)
}

async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

pub(super) async fn user(pool: &SqlitePool, id: Uuid) -> Result<Option<UserRecord>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
        .bind(id_text(id))
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(record).transpose()?)
}

pub(super) async fn users(pool: &SqlitePool, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id IN ("));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id_text(*id));
        }
        query.push(")");
        for row in query.build().fetch_all(pool).await? {
            out.push(record(&row)?);
        }
    }
    Ok(out)
}

pub(super) async fn ensure_user(
    pool: &SqlitePool,
    id: Uuid,
    username: Option<&str>,
    display_name: Option<&str>,
) -> Result<UserRecord> {
    let row = sqlx::query(&format!(
        "INSERT INTO users (id, username, display_name) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = COALESCE(NULLIF(users.username, ''), excluded.username, users.username), \
           display_name = COALESCE(NULLIF(users.display_name, ''), excluded.display_name, users.display_name) \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id_text(id))
    .bind(username)
    .bind(display_name)
    .fetch_one(pool)
    .await?;
    Ok(record(&row)?)
}

pub(super) async fn upsert_profile(
    pool: &SqlitePool,
    id: Uuid,
    username: &str,
    display_name: &str,
) -> Result<UserRecord> {
    let row = sqlx::query(&format!(
        "INSERT INTO users (id, username, display_name) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = excluded.username, display_name = excluded.display_name \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id_text(id))
    .bind(username)
    .bind(display_name)
    .fetch_one(pool)
    .await?;
    Ok(record(&row)?)
}

pub(super) async fn set_privacy(
    pool: &SqlitePool,
    id: Uuid,
    show_last_seen: Option<bool>,
    visibility: Option<Visibility>,
) -> Result<Option<UserRecord>> {
    let row = sqlx::query(&format!(
        "UPDATE users SET \
           show_last_seen = COALESCE(?2, show_last_seen), \
           last_seen_visibility = COALESCE(?3, last_seen_visibility) \
         WHERE id = ?1 \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id_text(id))
    .bind(show_last_seen)
    .bind(visibility.map(Visibility::as_str))
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(record).transpose()?)
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
            row.push_bind(id_text(*id))
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

pub(super) async fn reset_statuses(pool: &SqlitePool) -> Result<u64> {
    let done =
        sqlx::query("UPDATE users SET status = 'offline' WHERE status IN ('online', 'away')")
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

pub(super) async fn members(pool: &SqlitePool, conversation: Uuid) -> Result<Vec<Uuid>> {
    let rows = sqlx::query(
        "SELECT user_id FROM conversation_members WHERE conversation_id = ? ORDER BY user_id",
    )
    .bind(id_text(conversation))
    .fetch_all(pool)
    .await?;
    ids(rows)
}

pub(super) async fn conversations_of(pool: &SqlitePool, user: Uuid) -> Result<Vec<Uuid>> {
    let rows = sqlx::query(
        "SELECT conversation_id FROM conversation_members WHERE user_id = ? \
         ORDER BY conversation_id",
    )
    .bind(id_text(user))
    .fetch_all(pool)
    .await?;
    ids(rows)
}

/// `users` is deduplicated by the caller.
pub(super) async fn replace_members(
    pool: &SqlitePool,
    conversation: Uuid,
    users: &[Uuid],
) -> Result<Vec<Uuid>> {
    let conversation = id_text(conversation);
    let mut tx = begin_write(pool).await?;
    let previous = sqlx::query(
        "SELECT user_id FROM conversation_members WHERE conversation_id = ? ORDER BY user_id",
    )
    .bind(&conversation)
    .fetch_all(&mut *tx)
    .await?;
    let previous = ids(previous)?;
    sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ?")
        .bind(&conversation)
        .execute(&mut *tx)
        .await?;
    for chunk in users.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO conversation_members (conversation_id, user_id) ",
        );
        query.push_values(chunk, |mut row, user| {
            row.push_bind(conversation.clone())
                .push_bind(id_text(*user));
        });
        query.push(" ON CONFLICT DO NOTHING");
        query.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(previous)
}

pub(super) async fn add_member(pool: &SqlitePool, conversation: Uuid, user: Uuid) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id) VALUES (?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id_text(conversation))
    .bind(id_text(user))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn remove_member(
    pool: &SqlitePool,
    conversation: Uuid,
    user: Uuid,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?")
            .bind(id_text(conversation))
            .bind(id_text(user))
            .execute(pool)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn contacts_of(pool: &SqlitePool, user: Uuid) -> Result<Vec<Uuid>> {
    let rows = sqlx::query("SELECT contact_id FROM contacts WHERE user_id = ? ORDER BY contact_id")
        .bind(id_text(user))
        .fetch_all(pool)
        .await?;
    ids(rows)
}

pub(super) async fn relations(pool: &SqlitePool, user: Uuid) -> Result<Vec<(i32, Uuid)>> {
    let rows = sqlx::query(super::RELATIONS_SQL)
        .bind(id_text(user))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, parse_id(row.try_get::<&str, _>(1)?)?)))
        .collect()
}

pub(super) async fn watchers_of(pool: &SqlitePool, user: Uuid) -> Result<Vec<Uuid>> {
    let rows = sqlx::query("SELECT user_id FROM contacts WHERE contact_id = ? ORDER BY user_id")
        .bind(id_text(user))
        .fetch_all(pool)
        .await?;
    ids(rows)
}

/// `contacts` is deduplicated and without `user` (done by the caller).
pub(super) async fn replace_contacts(
    pool: &SqlitePool,
    user: Uuid,
    contacts: &[Uuid],
) -> Result<Vec<Uuid>> {
    let user = id_text(user);
    let mut tx = begin_write(pool).await?;
    let previous =
        sqlx::query("SELECT contact_id FROM contacts WHERE user_id = ? ORDER BY contact_id")
            .bind(&user)
            .fetch_all(&mut *tx)
            .await?;
    let previous = ids(previous)?;
    sqlx::query("DELETE FROM contacts WHERE user_id = ?")
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    for chunk in contacts.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new("INSERT INTO contacts (user_id, contact_id) ");
        query.push_values(chunk, |mut row, contact| {
            row.push_bind(user.clone()).push_bind(id_text(*contact));
        });
        query.push(" ON CONFLICT DO NOTHING");
        query.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(previous)
}

/// `(key, value)` of the rows of a membership table whose `key` is among `keys`.
pub(super) async fn pairs(
    pool: &SqlitePool,
    of: super::Pairs,
    keys: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>> {
    let (table, key, value) = of.sql();
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {key}, {value} FROM {table} WHERE {key} IN ("
        ));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id_text(*id));
        }
        query.push(")");
        for row in query.build().fetch_all(pool).await? {
            out.push((
                parse_id(row.try_get::<&str, _>(0)?)?,
                parse_id(row.try_get::<&str, _>(1)?)?,
            ));
        }
    }
    Ok(out)
}
