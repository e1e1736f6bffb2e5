CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER
);
CREATE TABLE profiles (
    id TEXT PRIMARY KEY, version INTEGER NOT NULL, merged_into TEXT,
    updated_at INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE identities (
    kind TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX identities_by_profile ON identities (profile_id);
-- A rowid table: versions are appended in commit order; the index finds a profile's.
CREATE TABLE profile_versions (
    profile_id TEXT NOT NULL, version INTEGER NOT NULL, recorded_at INTEGER NOT NULL,
    cause TEXT NOT NULL, diff TEXT NOT NULL, snapshot TEXT
);
CREATE UNIQUE INDEX profile_versions_by_profile ON profile_versions (profile_id, version);
CREATE TABLE merges (
    from_id TEXT NOT NULL, into_id TEXT NOT NULL, at INTEGER NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX merges_from ON merges (from_id);
CREATE INDEX merges_into ON merges (into_id);
