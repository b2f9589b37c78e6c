-- [scale]: which node runs each periodic job (outboxes, schedule, retention, cable). The
-- holder renews `until` on every pass; a lease past `until` is free for any node to take.
CREATE TABLE job_leases (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
