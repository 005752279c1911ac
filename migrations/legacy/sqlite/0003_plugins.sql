-- Policy components installed through the admin API in a cluster (kept on
-- SQLite too so both backends have one schema).
CREATE TABLE IF NOT EXISTS plugin_components (
    sha256 TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    component BLOB NOT NULL,
    stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS plugin_active (
    slot TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
