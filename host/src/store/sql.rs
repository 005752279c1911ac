//! Statements said once for both backends: SQLite reads `$1` as the first
//! parameter just as PostgreSQL does, and ids bind as each backend stores
//! them (see [`Store`](super::Store)'s `on_backend!`).

pub const PING: &str = "SELECT 1";

pub const MEMBERS: &str =
    "SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id";
pub const CONVERSATIONS_OF: &str = "SELECT conversation_id FROM conversation_members \
     WHERE user_id = $1 ORDER BY conversation_id";
pub const ADD_MEMBER: &str = "INSERT INTO conversation_members (conversation_id, user_id) \
     VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub const REMOVE_MEMBER: &str =
    "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2";

pub const CONTACTS_OF: &str =
    "SELECT contact_id FROM contacts WHERE user_id = $1 ORDER BY contact_id";
pub const WATCHERS_OF: &str = "SELECT user_id FROM contacts WHERE contact_id = $1 ORDER BY user_id";

/// A user's contacts (0), watchers (1) and conversations (2) in one statement.
pub const RELATIONS: &str = "SELECT 0, contact_id FROM contacts WHERE user_id = $1 \
     UNION ALL SELECT 1, user_id FROM contacts WHERE contact_id = $1 \
     UNION ALL SELECT 2, conversation_id FROM conversation_members WHERE user_id = $1";

pub const RESET_STATUSES: &str =
    "UPDATE users SET status = 'offline' WHERE status IN ('online', 'away')";

pub const SAVE_PLUGIN: &str = "INSERT INTO plugin_components (sha256, slot, component) \
     VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING";
pub const SET_ACTIVE_PLUGIN: &str = "INSERT INTO plugin_active (slot, sha256) VALUES ($1, $2) \
     ON CONFLICT (slot) DO UPDATE SET sha256 = excluded.sha256, changed_at = excluded.changed_at";
pub const ACTIVE_PLUGINS: &str = "SELECT slot, sha256 FROM plugin_active ORDER BY slot";
pub const PLUGIN: &str = "SELECT component FROM plugin_components WHERE sha256 = $1";

/// Admin profile upsert; `{columns}` are the backend's user columns.
pub fn upsert_profile(columns: &str) -> String {
    format!(
        "INSERT INTO users (id, username, display_name) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = excluded.username, display_name = excluded.display_name \
         RETURNING {columns}"
    )
}

/// Privacy update, `NULL` meaning unchanged; `{columns}` as above.
pub fn set_privacy(columns: &str) -> String {
    format!(
        "UPDATE users SET \
           show_last_seen = COALESCE(CAST($2 AS BOOLEAN), show_last_seen), \
           last_seen_visibility = COALESCE(CAST($3 AS TEXT), last_seen_visibility) \
         WHERE id = $1 \
         RETURNING {columns}"
    )
}

/// One user by id; `{columns}` as above.
pub fn user(columns: &str) -> String {
    format!("SELECT {columns} FROM users WHERE id = $1")
}
