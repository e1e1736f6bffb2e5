-- JSON keeps the text as written, key order included (Liquid iterates objects in the order
-- the client wrote them); JSONB reorders keys. Rows stored before keep JSONB's order.
ALTER TABLE events ALTER COLUMN body TYPE JSON USING body::json;
ALTER TABLE profiles ALTER COLUMN body TYPE JSON USING body::json;
ALTER TABLE profile_versions ALTER COLUMN diff TYPE JSON USING diff::json,
    ALTER COLUMN snapshot TYPE JSON USING snapshot::json;
ALTER TABLE documents ALTER COLUMN body TYPE JSON USING body::json;
ALTER TABLE journey_instances ALTER COLUMN context TYPE JSON USING context::json;
ALTER TABLE outbox ALTER COLUMN context TYPE JSON USING context::json;
