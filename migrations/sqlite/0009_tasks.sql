-- Follow-up tasks made from chats. A row is both the record kept with the conversation (the
-- card's id, short reference and link once created) and the durable work item: a queued task
-- is retried with backoff until it is created or failed. The marker (one per visitor message)
-- is unique, so one request never makes two tasks, and it is written into the card, so a retry
-- after a lost answer finds the card instead of making another.
CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    marker      TEXT NOT NULL UNIQUE,
    category    TEXT,
    title       TEXT NOT NULL,
    summary     TEXT NOT NULL,
    contact     TEXT,
    page        TEXT,
    state       TEXT NOT NULL CHECK (state IN ('proposed', 'queued', 'created', 'declined', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    provider_id TEXT,
    reference   TEXT,
    url         TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX tasks_due ON tasks (state, next_at);
CREATE INDEX tasks_session ON tasks (session_id, created_at);
CREATE INDEX tasks_client ON tasks (client_id, state);
