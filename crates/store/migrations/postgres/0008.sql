-- The journey step that decided a message, so that messages can be listed per step.
ALTER TABLE outbox ADD COLUMN step TEXT;
-- Messages of a journey or broadcast, newest first.
CREATE INDEX outbox_by_source_time ON outbox (source, created_at, id COLLATE "C");
