-- Training history: one row per finished run (the newest 50 per client are kept), for the
-- admin panel. owner is who ran it (the CLI, the schedule, an admin).
CREATE TABLE training_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    owner       TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    pages       BIGINT NOT NULL,
    entries     BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX training_runs_client ON training_runs (client_id, finished_at);
