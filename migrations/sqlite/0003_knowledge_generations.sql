-- Knowledge is written as a new generation in small transactions and switched to in one:
-- visitors' writes never wait behind a training run, and readers never see half of one.
CREATE TABLE knowledge_entries_new (
    client_id    INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    generation   INTEGER NOT NULL,
    entry_id     TEXT NOT NULL,
    position     INTEGER NOT NULL,
    question     TEXT NOT NULL,
    answer       TEXT NOT NULL,
    category     TEXT,
    url          TEXT,
    variants     TEXT NOT NULL DEFAULT '[]',
    content_hash TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (client_id, generation, entry_id)
);
INSERT INTO knowledge_entries_new (client_id, generation, entry_id, position, question, answer, category, url, variants)
    SELECT client_id, 0, entry_id, position, question, answer, category, url, variants FROM knowledge_entries;
DROP TABLE knowledge_entries;
ALTER TABLE knowledge_entries_new RENAME TO knowledge_entries;
ALTER TABLE clients ADD COLUMN knowledge_generation INTEGER NOT NULL DEFAULT 0;
