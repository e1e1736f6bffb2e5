-- The workspace's schema (missive_core::schema): what ingest observed of each trait, event and
-- event property, written with each checkpoint, and what the operator declared.
CREATE TABLE schema_fields (
    kind TEXT NOT NULL,            -- trait, event or property
    event TEXT NOT NULL,           -- a property's event; '' otherwise
    name TEXT NOT NULL,
    types BIGINT,                  -- bits of TypeSet; NULL until observed
    examples TEXT,                 -- JSON array of numbers and booleans
    first_seen BIGINT,             -- microseconds since the epoch
    last_seen BIGINT,
    declared BOOLEAN NOT NULL DEFAULT false,
    declared_type TEXT,            -- NULL: any type
    declared_at BIGINT,
    PRIMARY KEY (kind, event, name)
);
