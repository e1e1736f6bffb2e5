-- Two lanes: messages a person's own action triggered (journeys: 0) are taken before bulk
-- sends (broadcasts: 1), so that a broadcast to a million people does not hold up a cart
-- reminder or a password reset queued behind it.
ALTER TABLE outbox ADD COLUMN lane SMALLINT NOT NULL DEFAULT 0;
UPDATE outbox SET lane = 1 WHERE source LIKE 'broadcast:%';
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (lane, next_attempt_at, id COLLATE "C") WHERE status = 'queued';
