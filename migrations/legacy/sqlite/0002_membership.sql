-- Conversation membership and contact lists, synced by the chat backend through the
-- admin API. No foreign key to users: membership may arrive before profiles.
CREATE TABLE IF NOT EXISTS conversation_members (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_conversation_members_user
    ON conversation_members(user_id, conversation_id);

-- `user_id` has `contact_id` in their contact list; the watchers of X are the
-- user_ids of the rows whose contact_id is X.
CREATE TABLE IF NOT EXISTS contacts (
    user_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_contacts_contact
    ON contacts(contact_id, user_id);
