CREATE TABLE journey_instances (
    id TEXT PRIMARY KEY, journey TEXT NOT NULL, journey_version BIGINT NOT NULL,
    profile_id TEXT NOT NULL, key TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,
    wake_at BIGINT, waiting_for TEXT, context JSONB NOT NULL,
    entered_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
);
CREATE INDEX journey_instances_by_profile ON journey_instances (profile_id, status);
CREATE INDEX journey_instances_due ON journey_instances (wake_at) WHERE status = 'active';
CREATE INDEX journey_instances_by_journey ON journey_instances (journey, entered_at);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, profile_id TEXT NOT NULL,
    template TEXT NOT NULL, class TEXT NOT NULL, source TEXT NOT NULL, context JSONB NOT NULL,
    status TEXT NOT NULL, attempts BIGINT NOT NULL, next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL, sent_at BIGINT, recipient TEXT, detail TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_by_profile ON outbox (profile_id, created_at);
CREATE TABLE suppressions (
    address_hash TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL
);
