-- Presence columns on the users table.
--
-- Works on an empty database and on an existing chat database that already has
-- `users(id UUID PRIMARY KEY, ...)` with rows: every column is added only if it is
-- missing, and the constant defaults fill the existing rows (status 'offline',
-- show_last_seen true, last_seen_visibility 'everyone') without a table rewrite.
CREATE TABLE IF NOT EXISTS users (
    id UUID PRIMARY KEY
);

ALTER TABLE users
    ADD COLUMN IF NOT EXISTS username TEXT,
    ADD COLUMN IF NOT EXISTS display_name TEXT,
    ADD COLUMN IF NOT EXISTS status VARCHAR(20) DEFAULT 'offline',
    ADD COLUMN IF NOT EXISTS last_seen TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS show_last_seen BOOLEAN DEFAULT true,
    ADD COLUMN IF NOT EXISTS last_seen_visibility VARCHAR(16) NOT NULL DEFAULT 'everyone'
        CHECK (last_seen_visibility IN ('everyone', 'contacts', 'nobody'));

CREATE INDEX IF NOT EXISTS idx_users_status ON users(status);
CREATE INDEX IF NOT EXISTS idx_users_last_seen ON users(last_seen DESC);

COMMENT ON COLUMN users.status IS 'User online status: online, offline, away';
COMMENT ON COLUMN users.last_seen IS 'Last time user was online (for offline users)';
COMMENT ON COLUMN users.show_last_seen IS 'Privacy setting: show/hide last seen to others';
COMMENT ON COLUMN users.last_seen_visibility IS 'Privacy setting: who sees last seen: everyone, contacts, nobody';
