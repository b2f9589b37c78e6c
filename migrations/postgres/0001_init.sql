-- Server-wide facts, e.g. the fingerprint of the secret key this database was created with.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per website. The versions let other processes (CLI, other nodes) signal changes.
CREATE TABLE clients (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid               TEXT NOT NULL UNIQUE,
    created_at        BIGINT NOT NULL,
    settings_version  BIGINT NOT NULL DEFAULT 1,
    knowledge_version BIGINT NOT NULL DEFAULT 1
);

-- Settings by key; secrets hold AEAD ciphertext, never plain text.
CREATE TABLE client_settings (
    client_id BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (client_id, key)
);

CREATE TABLE knowledge_entries (
    client_id BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    entry_id  TEXT NOT NULL,
    position  BIGINT NOT NULL,
    question  TEXT NOT NULL,
    answer    TEXT NOT NULL,
    category  TEXT,
    url       TEXT,
    PRIMARY KEY (client_id, entry_id)
);

-- token_hash is the SHA-256 of the visitor's bearer token; conversation_id is the public id.
CREATE TABLE sessions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id       BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    token_hash      TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL
);

CREATE TABLE messages (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id    BIGINT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    text          TEXT NOT NULL,
    client_msg_id TEXT,
    reply_to      BIGINT,
    source        TEXT,
    entry_id      TEXT,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_dedupe ON messages (session_id, client_msg_id);
CREATE INDEX messages_session_seq ON messages (session_id, seq);
