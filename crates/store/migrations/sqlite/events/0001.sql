CREATE TABLE events (
    seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL,
    origin_profile_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX events_by_profile_time ON events (profile_id, ts, seq);
