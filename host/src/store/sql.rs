//! Statements said once for both backends: SQLite reads `$1` as the first
//! parameter just as PostgreSQL does, and ids bind as each backend stores
//! them (see `on_backend!`).

pub const PING: &str = "SELECT 1";

pub const MEMBERS: &str = "SELECT user_id FROM presence_conversation_members \
     WHERE conversation_id = $1 ORDER BY user_id";
pub const CONVERSATIONS_OF: &str = "SELECT conversation_id FROM presence_conversation_members \
     WHERE user_id = $1 ORDER BY conversation_id";
pub const ADD_MEMBER: &str = "INSERT INTO presence_conversation_members \
     (conversation_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub const REMOVE_MEMBER: &str =
    "DELETE FROM presence_conversation_members WHERE conversation_id = $1 AND user_id = $2";

pub const CONTACTS_OF: &str =
    "SELECT contact_id FROM presence_contacts WHERE user_id = $1 ORDER BY contact_id";
pub const WATCHERS_OF: &str =
    "SELECT user_id FROM presence_contacts WHERE contact_id = $1 ORDER BY user_id";

/// A user's contacts (0), watchers (1) and conversations (2) in one statement.
pub const RELATIONS: &str = "SELECT 0, contact_id FROM presence_contacts WHERE user_id = $1 \
     UNION ALL SELECT 1, user_id FROM presence_contacts WHERE contact_id = $1 \
     UNION ALL SELECT 2, conversation_id FROM presence_conversation_members WHERE user_id = $1";

pub const SAVE_PLUGIN: &str = "INSERT INTO presence_plugin_components (sha256, slot, component) \
     VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING";
pub const SET_ACTIVE_PLUGIN: &str = "INSERT INTO presence_plugin_active (slot, sha256) \
     VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE \
     SET sha256 = excluded.sha256, changed_at = excluded.changed_at";
pub const ACTIVE_PLUGINS: &str = "SELECT slot, sha256 FROM presence_plugin_active ORDER BY slot";
pub const PLUGIN: &str = "SELECT component FROM presence_plugin_components WHERE sha256 = $1";

/// Makes a user known in `own` (presence's table for users), filling in a
/// missing name and keeping one that is there.
pub fn ensure_user(own: &str) -> String {
    format!(
        "INSERT INTO {own} (id, username, display_name) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = COALESCE(NULLIF({own}.username, ''), excluded.username, {own}.username), \
           display_name = COALESCE(NULLIF({own}.display_name, ''), excluded.display_name, \
             {own}.display_name)"
    )
}

/// The admin API's profile names, in `own`.
pub fn upsert_profile(own: &str) -> String {
    format!(
        "INSERT INTO {own} (id, username, display_name) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET \
           username = excluded.username, display_name = excluded.display_name"
    )
}

/// Privacy settings of the user's row in `table`, `NULL` meaning unchanged.
pub fn set_privacy(table: &str) -> String {
    format!(
        "UPDATE {table} SET \
           show_last_seen = COALESCE(CAST($2 AS BOOLEAN), show_last_seen), \
           last_seen_visibility = COALESCE(CAST($3 AS TEXT), last_seen_visibility) \
         WHERE id = $1"
    )
}

/// Everyone online or away in `table` is offline.
pub fn reset_statuses(table: &str) -> String {
    format!("UPDATE {table} SET status = 'offline' WHERE status IN ('online', 'away')")
}

pub const OUTBOX_PUSH: &str = "INSERT INTO presence_webhook_outbox \
     (id, user_id, status, at_ms, last_seen_ms, created_ms, next_attempt_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";
/// Claims (until `$2`) up to `$3` events due at `$1`, in order, skipping a
/// user whose earlier event waits for a retry or is out with another node.
pub const OUTBOX_CLAIM: &str = "UPDATE presence_webhook_outbox SET claimed_until_ms = $2 \
     WHERE seq IN (SELECT o.seq FROM presence_webhook_outbox o \
       WHERE o.next_attempt_ms <= $1 \
         AND (o.claimed_until_ms IS NULL OR o.claimed_until_ms <= $1) \
         AND NOT EXISTS (SELECT 1 FROM presence_webhook_outbox e \
           WHERE e.user_id = o.user_id AND e.seq < o.seq \
             AND (e.next_attempt_ms > $1 OR e.claimed_until_ms > $1)) \
       ORDER BY o.seq LIMIT $3) \
     RETURNING seq, id, user_id, status, at_ms, last_seen_ms, created_ms, attempts";
pub const OUTBOX_DONE: &str = "DELETE FROM presence_webhook_outbox WHERE seq = $1";
pub const OUTBOX_RETRY: &str = "UPDATE presence_webhook_outbox \
     SET attempts = attempts + 1, next_attempt_ms = $2, claimed_until_ms = NULL WHERE seq = $1";
pub const OUTBOX_LEN: &str = "SELECT COUNT(*) FROM presence_webhook_outbox";
