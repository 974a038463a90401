-- Audit records composed when read. Most of a use's CloudTrail record (who called, from
-- where, with which client, on which key, for which account) is the same for every use of
-- one key by one caller and operation: the audit trail writes those parts once, as a
-- template (audit_record_templates, named by the SHA-256 of its text), and each use's row
-- holds only what varies: its requestParameters to requestID (record_members), beside the
-- time, event id and shared event id it has as columns anyway. The view audit_events puts
-- the record back together, byte for byte the text the trail used to store (tests pin
-- it), so every reader (LookupEvents, the REST API, exports, replay) reads it unchanged.
-- A record not written from a template (any other call, a use the template path does not
-- take) keeps its whole text in record, as before; so do the rows written before this.
-- Measured under Encrypt: about half of each row and a quarter of the WAL per use
-- (docs/performance.md).
ALTER TABLE audit_events RENAME TO audit_event_rows;
ALTER TABLE audit_event_rows ALTER COLUMN record DROP NOT NULL;
ALTER TABLE audit_event_rows ADD COLUMN template_id uuid, ADD COLUMN record_members text;
ALTER TABLE audit_event_rows ADD CONSTRAINT audit_event_rows_whole_or_templated CHECK (
    (record IS NOT NULL AND template_id IS NULL AND record_members IS NULL)
    OR (record IS NULL AND template_id IS NOT NULL AND record_members IS NOT NULL)
) NOT VALID;  -- (every existing row has a record: nothing to check)

CREATE TABLE audit_record_templates (
    template_id  uuid PRIMARY KEY,  -- the first 16 bytes of the SHA-256 of the parts
    head         text NOT NULL,     -- the record up to the eventTime value
    middle       text NOT NULL,     -- after the eventTime value, up to requestParameters
    tail         text NOT NULL      -- after the eventID value, up to recipientAccountId's
);

CREATE VIEW audit_events AS
SELECT r.notification_id, r.recipient_account_id, r.event_id, r.shared_event_id,
       r.event_time, r.event_source, r.event_name, r.read_only, r.account_id,
       r.principal_arn, r.username, r.access_key_id, r.source_ip, r.region, r.request_id,
       r.error_code, r.resource_type, r.resource_arn, r.resources, r.encryption_context_keys,
       COALESCE(
           r.record,
           t.head || to_char(r.event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || 'Z' || t.middle || r.record_members || ',"eventID":"' || r.event_id::text
           || '"' || t.tail
           || CASE WHEN r.shared_event_id IS NULL THEN ''
                   ELSE ',"sharedEventID":"' || r.shared_event_id::text || '"' END
           || ',"eventCategory":"Management"}'
       ) AS record
FROM audit_event_rows r
LEFT JOIN audit_record_templates t ON t.template_id = r.template_id;

-- A process of the version before (still running while another upgrades the database)
-- COPYs whole records into audit_events: they land in audit_event_rows unchanged.
CREATE FUNCTION audit_events_insert_whole() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_event_rows (
        notification_id, recipient_account_id, event_id, shared_event_id, event_time,
        event_source, event_name, read_only, account_id, principal_arn, username,
        access_key_id, source_ip, region, request_id, error_code, resource_type,
        resource_arn, resources, encryption_context_keys, record
    ) VALUES (
        NEW.notification_id, NEW.recipient_account_id, NEW.event_id, NEW.shared_event_id,
        NEW.event_time, NEW.event_source, NEW.event_name, NEW.read_only, NEW.account_id,
        NEW.principal_arn, NEW.username, NEW.access_key_id, NEW.source_ip, NEW.region,
        NEW.request_id, NEW.error_code, NEW.resource_type, NEW.resource_arn, NEW.resources,
        NEW.encryption_context_keys, NEW.record
    );
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_insert_whole INSTEAD OF INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_insert_whole();
