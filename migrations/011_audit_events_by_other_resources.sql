-- A record may name several keys (ReEncrypt: the source, then the destination key); a
-- lookup by resource finds it by any of them. audit_events_by_resource covers the first
-- resource; this small partial index the records with more than one.
CREATE INDEX IF NOT EXISTS audit_events_by_other_resources
    ON audit_events USING gin (resources) WHERE cardinality(resources) > 1;
