-- Sentence-embedding vectors of FAQ texts (questions, variants, answers), per client and
-- embedding space (model), keyed by the text's hash: a re-train embeds only new texts.
-- vector: 4-byte little-endian f32 scale, then one signed byte per dimension.
CREATE TABLE knowledge_vectors (
    client_id BIGINT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    space     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector    BYTEA NOT NULL,
    PRIMARY KEY (client_id, space, text_hash)
);
