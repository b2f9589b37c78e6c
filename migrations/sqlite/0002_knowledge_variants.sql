-- Alternative phrasings of an entry's question (a JSON array of strings), indexed with it.
ALTER TABLE knowledge_entries ADD COLUMN variants TEXT NOT NULL DEFAULT '[]';
