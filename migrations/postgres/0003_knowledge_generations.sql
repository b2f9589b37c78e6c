-- Knowledge is written as a new generation in small transactions and switched to in one:
-- visitors' writes never wait behind a training run, and readers never see half of one.
ALTER TABLE knowledge_entries ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE knowledge_entries ADD COLUMN content_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE knowledge_entries DROP CONSTRAINT knowledge_entries_pkey;
ALTER TABLE knowledge_entries ADD PRIMARY KEY (client_id, generation, entry_id);
ALTER TABLE clients ADD COLUMN knowledge_generation BIGINT NOT NULL DEFAULT 0;
