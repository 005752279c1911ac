-- Status transitions waiting to be POSTed to the chat backend's webhook
-- (PRESENCE_WEBHOOK_URL). A transition is written here before the first
-- attempt and deleted once the receiver answered 2xx, so a restart or a
-- crash loses none. Times are milliseconds since the epoch.
CREATE TABLE IF NOT EXISTS presence_webhook_outbox (
    -- Delivery order; a user's events are sent in this order.
    seq BIGSERIAL PRIMARY KEY,
    -- The event's id: the same on every retry.
    id UUID NOT NULL UNIQUE,
    user_id UUID NOT NULL,
    -- online, away or offline: sent as user.online, user.away, user.offline
    status TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    last_seen_ms BIGINT,
    created_ms BIGINT NOT NULL,
    -- Failed attempts so far; the next is due at next_attempt_ms.
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    -- A node sending it holds it until then.
    claimed_until_ms BIGINT
);
CREATE INDEX IF NOT EXISTS idx_presence_webhook_outbox_user
    ON presence_webhook_outbox(user_id, seq);
