CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT
);
CREATE TABLE profiles (
    id TEXT PRIMARY KEY, version BIGINT NOT NULL, merged_into TEXT,
    updated_at BIGINT NOT NULL, body JSONB NOT NULL
);
CREATE TABLE identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_by_profile ON identities (profile_id);
-- seq is assigned by the engine (arrival order), not by the database.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
    profile_id TEXT NOT NULL, origin_profile_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    ts BIGINT NOT NULL, received_at BIGINT NOT NULL, body JSONB NOT NULL
);
CREATE INDEX events_by_profile_time ON events (profile_id, ts, seq);
CREATE TABLE profile_versions (
    profile_id TEXT NOT NULL, version BIGINT NOT NULL, recorded_at BIGINT NOT NULL,
    cause TEXT NOT NULL, diff JSONB NOT NULL, snapshot JSONB,
    PRIMARY KEY (profile_id, version)
);
-- seq stands in for SQLite's rowid: merges of the same instant list in the order recorded.
CREATE TABLE merges (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id TEXT NOT NULL, into_id TEXT NOT NULL, at BIGINT NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX merges_from ON merges (from_id);
CREATE INDEX merges_into ON merges (into_id);
