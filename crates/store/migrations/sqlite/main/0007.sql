-- Segment changes are followed by position (journeys, outbound webhooks): a position must
-- never be reused, also after an erasure deleted the newest changes, so they get an
-- AUTOINCREMENT key, numbered as their rowids were.
CREATE TABLE segment_changes_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    profile_id TEXT NOT NULL, segment TEXT NOT NULL, entered INTEGER NOT NULL,
    at INTEGER NOT NULL, cause TEXT NOT NULL
);
INSERT INTO segment_changes_log (seq, profile_id, segment, entered, at, cause)
    SELECT rowid, profile_id, segment, entered, at, cause FROM segment_changes ORDER BY rowid;
DROP TABLE segment_changes;
ALTER TABLE segment_changes_log RENAME TO segment_changes;
CREATE INDEX segment_changes_by_profile ON segment_changes (profile_id, at);
