//! The schema, brought up to date in one transaction (one node at a time):
//!
//! 1. `users`: created (and then owned) when the database has none; otherwise
//!    the seed's columns are added where missing, and nothing else of the
//!    chat's changes.
//! 2. A deployment of an older version — recognised by its entries in sqlx's
//!    `_sqlx_migrations`, checked against the migrations it ran, which are kept
//!    in `migrations/legacy/` — is adopted: its tables get their `presence_`
//!    names with their data, and its entries leave `_sqlx_migrations`.
//! 3. Presence's own tables, by version (`presence_migrations`).
//!
//! What it found is kept in `presence_meta`, so a restart decides the same.

use chrono::Utc;
use sha2::{Digest, Sha384};
use sqlx::Executor;

use super::{Layout, Pool, Result, Store};

/// Presence's bookkeeping, the same on both backends.
const META: &str = "\
     CREATE TABLE IF NOT EXISTS presence_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); \
     CREATE TABLE IF NOT EXISTS presence_migrations \
       (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

/// Tables of older versions and the names they have now; adopted only when
/// their columns are exactly the ones those versions created (a chat's own
/// table of the same name has others, and stays as it is).
struct LegacyTable {
    old: &'static str,
    new: &'static str,
    columns: &'static [&'static str],
    /// Its index: the old name and the new.
    index: Option<(&'static str, &'static str)>,
}

const LEGACY_TABLES: [LegacyTable; 4] = [
    LegacyTable {
        old: "conversation_members",
        new: "presence_conversation_members",
        columns: &["conversation_id", "user_id"],
        index: Some((
            "idx_conversation_members_user",
            "idx_presence_conversation_members_user",
        )),
    },
    LegacyTable {
        old: "contacts",
        new: "presence_contacts",
        columns: &["user_id", "contact_id"],
        index: Some(("idx_contacts_contact", "idx_presence_contacts_contact")),
    },
    LegacyTable {
        old: "plugin_components",
        new: "presence_plugin_components",
        columns: &["sha256", "slot", "component", "stored_at"],
        index: None,
    },
    LegacyTable {
        old: "plugin_active",
        new: "presence_plugin_active",
        columns: &["slot", "sha256", "changed_at"],
        index: None,
    },
];
/// The columns of a `users` table an older version created itself.
const LEGACY_OWNED_USERS: [&str; 7] = [
    "id",
    "username",
    "display_name",
    "status",
    "last_seen",
    "show_last_seen",
    "last_seen_visibility",
];

/// The migrations older versions ran through sqlx, per backend.
const LEGACY_SQLITE: [&str; 3] = [
    include_str!("../../../migrations/legacy/sqlite/0001_users.sql"),
    include_str!("../../../migrations/legacy/sqlite/0002_membership.sql"),
    include_str!("../../../migrations/legacy/sqlite/0003_plugins.sql"),
];
const LEGACY_POSTGRES: [&str; 3] = [
    include_str!("../../../migrations/legacy/postgres/0001_users.sql"),
    include_str!("../../../migrations/legacy/postgres/0002_membership.sql"),
    include_str!("../../../migrations/legacy/postgres/0003_plugins.sql"),
];

/// How `presence_meta` spells a layout.
fn layout_text(layout: Layout) -> String {
    let mut parts = vec![if layout.owned { "owned" } else { "attached" }];
    if layout.chat_username {
        parts.push("chat_username");
    }
    if layout.chat_display_name {
        parts.push("chat_display_name");
    }
    parts.join(",")
}

fn parse_layout(text: &str) -> Layout {
    let has = |part: &str| text.split(',').any(|p| p == part);
    Layout {
        owned: has("owned"),
        chat_username: has("chat_username"),
        chat_display_name: has("chat_display_name"),
    }
}

/// The layout a `users` table with these columns gets when presence finds it
/// there: its own (owned) only if an older version of presence made it.
fn found_layout(columns: &[String], from_older_version: bool) -> Layout {
    let has = |name: &str| columns.iter().any(|c| c == name);
    let owned = from_older_version
        && columns
            .iter()
            .all(|c| LEGACY_OWNED_USERS.contains(&c.as_str()));
    Layout {
        owned,
        chat_username: !owned && has("username"),
        chat_display_name: !owned && has("display_name"),
    }
}

pub(super) async fn read_layout(store: &Store) -> Result<Option<Layout>> {
    let text: Option<String> = on_backend!(store, pool => {
        let exists = !backend::columns(&mut *pool.acquire().await?, "presence_meta")
            .await?
            .is_empty();
        if !exists {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT value FROM presence_meta WHERE key = 'users'")
            .fetch_optional(pool)
            .await?
    });
    Ok(text.as_deref().map(parse_layout))
}

pub(super) async fn migrate(store: &Store) -> Result<Layout> {
    on_backend!(store, pool => {
        let mut tx = backend::begin_migration(pool).await?;
        tx.execute(META).await?;
        let legacy_sql = match &store.pool {
            Pool::Sqlite(_) => &LEGACY_SQLITE,
            Pool::Postgres(_) => &LEGACY_POSTGRES,
        };
        // Entries of older versions of presence: their version and checksum both match.
        let legacy: Vec<i64> = if backend::columns(&mut tx, "_sqlx_migrations").await?.is_empty() {
            Vec::new()
        } else {
            let applied: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations")
                    .fetch_all(&mut *tx)
                    .await?;
            applied
                .into_iter()
                .filter(|(version, checksum)| {
                    usize::try_from(*version - 1)
                        .ok()
                        .and_then(|i| legacy_sql.get(i))
                        .is_some_and(|sql| Sha384::digest(sql.as_bytes()).as_slice() == checksum)
                })
                .map(|(version, _)| version)
                .collect()
        };

        // 1. users
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT value FROM presence_meta WHERE key = 'users'")
                .fetch_optional(&mut *tx)
                .await?;
        let users = backend::columns(&mut tx, "users").await?;
        let layout = match recorded {
            Some(text) => parse_layout(&text),
            None if users.is_empty() => {
                tx.execute(backend::CREATE_USERS).await?;
                Layout { owned: true, chat_username: false, chat_display_name: false }
            }
            None => found_layout(&users, !legacy.is_empty()),
        };
        if !users.is_empty() {
            backend::add_seed_columns(&mut tx, &users).await?;
        }
        tx.execute(backend::USERS_INDEXES).await?;
        sqlx::query(
            "INSERT INTO presence_meta (key, value) VALUES ('users', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(layout_text(layout))
        .execute(&mut *tx)
        .await?;

        // 2. an older version's tables
        if !legacy.is_empty() {
            for table in LEGACY_TABLES {
                let mut columns = backend::columns(&mut tx, table.old).await?;
                columns.sort_unstable();
                let mut expected: Vec<&str> = table.columns.to_vec();
                expected.sort_unstable();
                if columns != expected || !backend::columns(&mut tx, table.new).await?.is_empty() {
                    continue;
                }
                backend::adopt_table(&mut tx, table.old, table.new).await?;
                if let Some((old, new)) = table.index {
                    backend::rename_index(&mut tx, old, new).await?;
                }
                tracing::info!(table = table.old, now = table.new, "adopted a table of an older version");
            }
        }

        // 3. presence's own tables
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM presence_migrations")
            .fetch_all(&mut *tx)
            .await?;
        for (version, name, sql) in backend::MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.execute(*sql).await?;
            sqlx::query("INSERT INTO presence_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(Utc::now().to_rfc3339())
                .execute(&mut *tx)
                .await?;
        }

        if !legacy.is_empty() {
            // Names an older version kept on a chat's users table now live in
            // presence's own; the columns stay as they are.
            if !layout.owned && layout.chat_username && layout.chat_display_name {
                tx.execute(
                    "INSERT INTO presence_users (id, username, display_name) \
                     SELECT id, username, display_name FROM users \
                     WHERE username IS NOT NULL OR display_name IS NOT NULL \
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            }
            for version in &legacy {
                sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&mut *tx)
                .await?;
            if left == 0 {
                tx.execute("DROP TABLE _sqlx_migrations").await?;
            }
            tracing::info!(?layout, "adopted the schema of an older version of presence");
        }
        tx.commit().await?;
        Ok(layout)
    })
}
