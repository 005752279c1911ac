-- Presence's own tables. Every name starts with `presence_`, so none of them
-- collides with a chat database's own tables (`conversation_members`,
-- `contacts`, …), which presence never reads or writes. With
-- PRESENCE_DATABASE_SCHEMA they are created in that schema instead.

-- Conversation membership and contact lists, synced by the chat backend
-- through the admin API. No foreign key to users: membership may arrive
-- before profiles.
CREATE TABLE IF NOT EXISTS presence_conversation_members (
    conversation_id UUID NOT NULL,
    user_id UUID NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS idx_presence_conversation_members_user
    ON presence_conversation_members(user_id, conversation_id);

-- `user_id` has `contact_id` in their contact list; the watchers of X are the
-- user_ids of the rows whose contact_id is X.
CREATE TABLE IF NOT EXISTS presence_contacts (
    user_id UUID NOT NULL,
    contact_id UUID NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX IF NOT EXISTS idx_presence_contacts_contact
    ON presence_contacts(contact_id, user_id);

-- Policy components installed through the admin API in a cluster, so every
-- node can fetch the one another node installed, and which one each slot serves.
CREATE TABLE IF NOT EXISTS presence_plugin_components (
    sha256 TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    component BYTEA NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS presence_plugin_active (
    slot TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- When `users` belongs to the chat backend: the profile names the admin API
-- sets (for every user), and everything about users the chat's table has no
-- row for (a token or an admin call naming an unknown id).
CREATE TABLE IF NOT EXISTS presence_users (
    id UUID PRIMARY KEY,
    username TEXT,
    display_name TEXT,
    status VARCHAR(20) DEFAULT 'offline',
    last_seen TIMESTAMPTZ,
    show_last_seen BOOLEAN DEFAULT true,
    last_seen_visibility VARCHAR(16) NOT NULL DEFAULT 'everyone'
        CHECK (last_seen_visibility IN ('everyone', 'contacts', 'nobody'))
);
CREATE INDEX IF NOT EXISTS idx_presence_users_status ON presence_users(status);
