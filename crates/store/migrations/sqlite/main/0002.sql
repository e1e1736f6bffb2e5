CREATE TABLE segments (
    name TEXT PRIMARY KEY, expression TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
);
CREATE TABLE segment_members (
    segment TEXT NOT NULL, profile_id TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (segment, profile_id)
) WITHOUT ROWID;
CREATE TABLE segment_changes (
    profile_id TEXT NOT NULL, segment TEXT NOT NULL, entered INTEGER NOT NULL, at INTEGER NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX segment_changes_by_profile ON segment_changes (profile_id, at);
