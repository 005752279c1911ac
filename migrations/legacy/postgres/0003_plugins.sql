-- Policy components installed through the admin API in a cluster, so every
-- node can fetch the one another node installed, and which one each slot serves.
CREATE TABLE IF NOT EXISTS plugin_components (
    sha256 TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    component BYTEA NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS plugin_active (
    slot TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
