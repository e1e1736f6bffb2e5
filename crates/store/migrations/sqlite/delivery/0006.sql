-- Ties among messages due at the same time (a broadcast queues all of its messages with one
-- time) are taken in the order they were queued (the rowid, which every index entry ends
-- with), not by message id: the id is a hash, so a round taken in id order touched a random
-- table page, and a random `outbox_by_source` page, for each message it updated; in rowid
-- order a round's updates fall on a few neighbouring pages.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (lane, next_attempt_at) WHERE status = 'queued';
