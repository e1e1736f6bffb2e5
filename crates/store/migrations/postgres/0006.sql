CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, status INTEGER NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX audit_by_target ON audit_log (target, seq);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE FUNCTION missive_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION missive_audit_log_append_only();
CREATE TABLE erased_identities (hash TEXT PRIMARY KEY, at BIGINT NOT NULL);
-- Data keys: exclude this table from long-lived dumps and back it up on its own, with a
-- short retention (crypto-shredding; see docs/privacy.md).
CREATE TABLE data_keys (
    profile_id TEXT PRIMARY KEY, master_key_id TEXT NOT NULL, wrapped TEXT NOT NULL, created_at BIGINT NOT NULL
);
CREATE INDEX events_by_time ON events (ts);
