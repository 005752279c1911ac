-- The users table, when the database has none: presence creates it, owns it,
-- and keeps every user it knows in it. On a database that already has a
-- `users` table, presence only adds the seed's columns to it (status,
-- last_seen, show_last_seen, last_seen_visibility) and never inserts or
-- deletes rows there.
CREATE TABLE users (
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
