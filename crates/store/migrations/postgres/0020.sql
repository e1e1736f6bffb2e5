-- Cluster mode: which saved segment definitions each partition's profiles have been
-- evaluated against in full (a backfill over the partition finished). A partition's new
-- owner backfills the segments it finds missing or changed here: a backfill cut short by a
-- hand-over or a crash is finished by the next owner. A backfill starting over a partition
-- deletes its row first, so that one cut short leaves none.
CREATE TABLE IF NOT EXISTS partition_backfills (
    partition SMALLINT NOT NULL,
    segment TEXT NOT NULL,
    expression TEXT NOT NULL,
    PRIMARY KEY (partition, segment)
);
