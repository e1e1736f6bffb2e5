-- The sender takes due messages in (next_attempt_at, id) order. A broadcast queues all its
-- messages with one time, so an index on the time alone left a sort of every queued message
-- of the broadcast for each batch taken: quadratic in the broadcast's size.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id COLLATE "C") WHERE status = 'queued';
