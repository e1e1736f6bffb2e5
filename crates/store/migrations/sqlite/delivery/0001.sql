CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE journey_instances (
    id TEXT PRIMARY KEY, journey TEXT NOT NULL, journey_version INTEGER NOT NULL,
    profile_id TEXT NOT NULL, key TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,
    wake_at INTEGER, waiting_for TEXT, context TEXT NOT NULL,
    entered_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
);
CREATE INDEX journey_instances_by_profile ON journey_instances (profile_id, status);
CREATE INDEX journey_instances_due ON journey_instances (wake_at) WHERE status = 'active';
CREATE INDEX journey_instances_by_journey ON journey_instances (journey, entered_at);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL,
    template TEXT NOT NULL, class TEXT NOT NULL, source TEXT NOT NULL, context TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL, sent_at INTEGER, recipient TEXT, detail TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_by_profile ON outbox (profile_id, created_at);
CREATE TABLE suppressions (
    address_hash TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL, at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX outbox_by_source ON outbox (source, status);
CREATE TABLE soft_bounces (
    address_hash TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at INTEGER NOT NULL
) WITHOUT ROWID;
