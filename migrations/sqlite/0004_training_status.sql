-- One row per client: the lease that keeps training runs from overlapping (CLI, schedule, other
-- nodes) and what the last runs did, for `client show`.
CREATE TABLE training_status (
    client_id       INTEGER PRIMARY KEY REFERENCES clients(id) ON DELETE CASCADE,
    lease_owner     TEXT NOT NULL DEFAULT '',
    lease_until     INTEGER NOT NULL DEFAULT 0,
    started_at      INTEGER NOT NULL DEFAULT 0,
    pages           INTEGER NOT NULL DEFAULT 0,
    entries         INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER,
    last_error_at   INTEGER,
    last_error      TEXT,
    entry_count     INTEGER
);
