-- A segment backfill not finished yet: resumed from `after` (the last profile id done, in id
-- order) when the engine starts again. Written with the checkpoints of the backfill.
CREATE TABLE segment_backfills (
    segment TEXT PRIMARY KEY, is_new BOOLEAN NOT NULL, after TEXT
);
