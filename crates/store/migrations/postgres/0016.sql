-- The console's overview reads the messages that failed lately (domains refusing mail,
-- templates that no longer render).
CREATE INDEX outbox_failed ON outbox (next_attempt_at) WHERE status = 'failed';
