-- Cluster mode: what each partition's profiles have been evaluated against in full: a saved
-- segment's definition (kind `segment`: its expression) after a backfill over the partition,
-- an active model (kind `model`: its version and when it was last scored in batch) after
-- scoring the partition. A partition's new owner finishes what it finds missing or changed
-- here, so a backfill or a scoring cut short by a hand-over or a crash is finished by the
-- next owner. A segment backfill starting over a partition deletes its row first.
CREATE TABLE IF NOT EXISTS partition_backfills (
    partition SMALLINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (partition, kind, name)
);
