-- Training history: one row per finished run (the newest 50 per client are kept), for the
-- admin panel. owner is who ran it (the CLI, the schedule, an admin).
CREATE TABLE training_runs (
    id          INTEGER PRIMARY KEY,
    client_id   INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    owner       TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    pages       INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX training_runs_client ON training_runs (client_id, finished_at);
