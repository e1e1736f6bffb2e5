-- The console's privacy page lists exports and erasures by their action.
CREATE INDEX audit_by_action ON audit_log (action, seq);
