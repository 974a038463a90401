-- The audit trail's time-ordered indexes in ascending order (migrations/006 made them
-- DESC). A record's time only grows, so in ascending order each insert lands at the right
-- end of its range (of the whole index, for audit_events_by_time): B-tree splits are
-- PostgreSQL's append splits (the left page kept full) instead of splits in the middle of
-- a page, which left half-empty pages behind and wrote half a page of WAL each. Measured
-- under Encrypt at 64 connections, those splits were about 9 % of the WAL and most of the
-- audit indexes' size (docs/performance.md). Every query still reads newest first: a
-- B-tree is scanned backwards as cheaply as forwards.
-- Rebuilding them reads the table once per index: on a trail of tens of millions of
-- records, the first start after an upgrade takes minutes (docs/operations.md).
DROP INDEX IF EXISTS audit_events_by_time;
CREATE INDEX audit_events_by_time ON audit_events (event_time, notification_id);
DROP INDEX IF EXISTS audit_events_by_recipient;
CREATE INDEX audit_events_by_recipient
    ON audit_events (recipient_account_id, event_time, notification_id);
DROP INDEX IF EXISTS audit_events_by_resource;
CREATE INDEX audit_events_by_resource
    ON audit_events (resource_arn, event_time) WHERE resource_arn <> '';
DROP INDEX IF EXISTS audit_events_by_principal;
CREATE INDEX audit_events_by_principal ON audit_events (principal_arn, event_time);
