-- A session's link to its human-operator conversation (Chatwoot). `source_id` is our own
-- identifier for the contact's session in the inbox (never the session token); the contact and
-- conversation ids are Chatwoot's, known once the hand-off has been delivered.
CREATE TABLE operator_links (
    session_id      BIGINT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    client_id       BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    source_id       TEXT NOT NULL UNIQUE,
    contact_id      BIGINT,
    conversation_id BIGINT,
    state           TEXT NOT NULL CHECK (state IN ('bot', 'waiting', 'human')),
    handoffs        BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX operator_links_conversation ON operator_links (client_id, conversation_id);

-- Work for the operator's service that must survive restarts and outages: hand-offs and
-- forwarded messages, first-in first-out per session, retried with backoff until done or
-- dead-lettered (dead_at set, kept for the admin to see).
CREATE TABLE operator_outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    session_id  BIGINT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    next_at     BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    dead_at     BIGINT
);
CREATE INDEX operator_outbox_due ON operator_outbox (dead_at, next_at);
CREATE INDEX operator_outbox_session ON operator_outbox (session_id, id);

-- Webhook deliveries already handled (X-Chatwoot-Delivery), kept about a day: a repeat is
-- answered 200 and not processed again.
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (received_at);

-- Operator messages: who wrote them (as the operator's service says) and their attachments
-- (a JSON array of {name, url}, http and https only). A Chatwoot message id is kept as the
-- message's client id `chatwoot#ID` (a form visitor ids can't take), so a webhook delivered
-- twice stores its message once.
ALTER TABLE messages ADD COLUMN author_name TEXT;
ALTER TABLE messages ADD COLUMN author_avatar TEXT;
ALTER TABLE messages ADD COLUMN attachments TEXT;
