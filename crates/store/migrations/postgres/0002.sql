CREATE TABLE segments (
    name TEXT PRIMARY KEY, expression TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
);
CREATE TABLE segment_members (
    segment TEXT NOT NULL, profile_id TEXT NOT NULL, since BIGINT NOT NULL,
    PRIMARY KEY (segment, profile_id)
);
CREATE TABLE segment_changes (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    profile_id TEXT NOT NULL, segment TEXT NOT NULL, entered BOOLEAN NOT NULL, at BIGINT NOT NULL, cause TEXT NOT NULL
);
CREATE INDEX segment_changes_by_profile ON segment_changes (profile_id, at);
