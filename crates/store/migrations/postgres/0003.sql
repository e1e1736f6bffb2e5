CREATE TABLE documents (
    kind TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL, body JSONB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
