-- Merges are followed by position (outbound webhooks' profile.merged): a position must never
-- be reused, also after an erasure deleted the newest merge, so merges get an AUTOINCREMENT
-- key, numbered as their rowids were.
CREATE TABLE merges_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    from_id TEXT NOT NULL, into_id TEXT NOT NULL, at INTEGER NOT NULL, cause TEXT NOT NULL
);
INSERT INTO merges_log (seq, from_id, into_id, at, cause)
    SELECT rowid, from_id, into_id, at, cause FROM merges ORDER BY rowid;
DROP TABLE merges;
ALTER TABLE merges_log RENAME TO merges;
CREATE INDEX merges_from ON merges (from_id);
CREATE INDEX merges_into ON merges (into_id);
