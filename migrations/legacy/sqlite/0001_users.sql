-- Presence users table (embedded SQLite backend).
--
-- Ids are hyphenated lowercase UUID strings. last_seen is RFC 3339 UTC text with
-- milliseconds ('2025-01-29T10:30:00.123Z'), so text order is time order.
-- Booleans are INTEGER 0/1.
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT,
    display_name TEXT,
    -- User online status: online, offline, away
    status VARCHAR(20) DEFAULT 'offline',
    -- Last time user was online (for offline users)
    last_seen TEXT,
    -- Privacy setting: show/hide last seen to others
    show_last_seen INTEGER DEFAULT 1,
    -- Privacy setting: who sees last seen: everyone, contacts, nobody
    last_seen_visibility VARCHAR(16) NOT NULL DEFAULT 'everyone'
        CHECK (last_seen_visibility IN ('everyone', 'contacts', 'nobody'))
);

CREATE INDEX IF NOT EXISTS idx_users_status ON users(status);
CREATE INDEX IF NOT EXISTS idx_users_last_seen ON users(last_seen DESC);
