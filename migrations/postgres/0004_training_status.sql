-- One row per client: the lease that keeps training runs from overlapping (CLI, schedule, other
-- nodes) and what the last runs did, for `client show`.
CREATE TABLE training_status (
    client_id       BIGINT PRIMARY KEY REFERENCES clients(id) ON DELETE CASCADE,
    lease_owner     TEXT NOT NULL DEFAULT '',
    lease_until     BIGINT NOT NULL DEFAULT 0,
    started_at      BIGINT NOT NULL DEFAULT 0,
    pages           BIGINT NOT NULL DEFAULT 0,
    entries         BIGINT NOT NULL DEFAULT 0,
    last_success_at BIGINT,
    last_error_at   BIGINT,
    last_error      TEXT,
    entry_count     BIGINT
);
