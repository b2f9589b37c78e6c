-- Admin accounts of the panel. role: 'server' (every client) or 'client' (only the clients
-- granted in admin_clients). Passwords are Argon2id PHC strings, never plain text.
CREATE TABLE admins (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE admin_clients (
    admin_id  INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    client_id INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    PRIMARY KEY (admin_id, client_id)
);

-- Signed-in browsers: only the hash of the cookie's token is stored; csrf is the token every
-- state-changing request of that session must repeat.
CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    admin_id   INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);
