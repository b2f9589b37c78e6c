-- The last time a client's model failed and why, for `client show` (and the admin panel): a
-- refused token or a missing model is the shop owner's to fix, and visitors never see it.
CREATE TABLE model_status (
    client_id     BIGINT PRIMARY KEY REFERENCES clients(id) ON DELETE CASCADE,
    last_error_at BIGINT NOT NULL,
    last_error    TEXT NOT NULL
);
