CREATE INDEX outbox_by_source ON outbox (source, status);
CREATE TABLE soft_bounces (
    address_hash TEXT PRIMARY KEY, count BIGINT NOT NULL, last_at BIGINT NOT NULL
);
