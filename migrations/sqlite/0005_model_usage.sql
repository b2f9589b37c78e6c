-- Model tokens: per answer on the message, and per client and UTC day for budgets and
-- `client show` (kept in step with the messages in the same transaction).
ALTER TABLE messages ADD COLUMN prompt_tokens INTEGER;
ALTER TABLE messages ADD COLUMN completion_tokens INTEGER;

CREATE TABLE model_usage (
    client_id         INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    day               INTEGER NOT NULL, -- days since 1970-01-01, UTC
    answers           INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, day)
);
