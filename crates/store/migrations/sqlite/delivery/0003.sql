-- Outbound webhooks (missive_sending::webhooks). The queue holds changes in commit order,
-- without personal data: kinds, ids and names; a payload's personal part is read when it is
-- sent, and only for endpoints allowed it. A (kind, key) pair is queued once, so a cause seen
-- twice (a replayed log, a retried commit) is one notice.
CREATE TABLE webhook_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, key TEXT NOT NULL, profile_id TEXT, endpoint TEXT,
    data TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE UNIQUE INDEX webhook_queue_cause ON webhook_queue (kind, key);
-- Every delivery attempt, kept a week, newest read first per endpoint.
CREATE TABLE webhook_attempts (
    endpoint TEXT NOT NULL, seq INTEGER NOT NULL, webhook_id TEXT NOT NULL, kind TEXT NOT NULL,
    status INTEGER NOT NULL, error TEXT NOT NULL, at INTEGER NOT NULL, duration_ms INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint, at);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);
-- Notices an endpoint did not take within its retry window: a copy, replayable.
CREATE TABLE webhook_dead_letters (
    endpoint TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    profile_id TEXT, data TEXT NOT NULL, queued_at INTEGER NOT NULL,
    reason TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (endpoint, seq)
) WITHOUT ROWID;
