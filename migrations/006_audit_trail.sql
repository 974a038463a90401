-- The audit trail: one CloudTrail record per API call (and per service event), written by
-- the audit_trail projection. A cross-account call has one copy per account that receives
-- it (recipient_account_id), as CloudTrail delivers it; the copies share shared_event_id.
CREATE TABLE IF NOT EXISTS audit_events (
    notification_id          bigint NOT NULL,   -- the ledger event the record comes from
    recipient_account_id     text NOT NULL,
    event_id                 uuid NOT NULL,
    shared_event_id          uuid,
    event_time               timestamptz NOT NULL,
    event_source             text NOT NULL,
    event_name               text NOT NULL,
    read_only                boolean NOT NULL,
    account_id               text NOT NULL,     -- the caller's account (userIdentity.accountId)
    principal_arn            text NOT NULL,
    username                 text NOT NULL,
    access_key_id            text NOT NULL,
    source_ip                text NOT NULL,
    region                   text NOT NULL,
    request_id               text NOT NULL,
    error_code               text,
    resource_type            text,
    resource_arn             text NOT NULL,     -- the first resource ('' for none)
    resources                text[] NOT NULL,
    encryption_context_keys  text[] NOT NULL,
    record                   text NOT NULL,     -- the CloudTrail record, as JSON
    PRIMARY KEY (notification_id, recipient_account_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_by_event_id ON audit_events (event_id);
CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (event_time DESC, notification_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_by_recipient
    ON audit_events (recipient_account_id, event_time DESC, notification_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_by_resource
    ON audit_events (resource_arn, event_time DESC) WHERE resource_arn <> '';
CREATE INDEX IF NOT EXISTS audit_events_by_principal ON audit_events (principal_arn, event_time DESC);

-- Usage rollups: requests per key x principal x operation x hour (key_arn '' for calls
-- without a key), counted once per call (the caller's copy).
CREATE TABLE IF NOT EXISTS audit_usage_hourly (
    hour               timestamptz NOT NULL,
    key_arn            text NOT NULL,
    principal_arn      text NOT NULL,
    operation          text NOT NULL,
    caller_account_id  text NOT NULL,
    key_account_id     text NOT NULL,
    requests           bigint NOT NULL,
    errors             bigint NOT NULL,
    PRIMARY KEY (hour, key_arn, principal_arn, operation)
);
CREATE INDEX IF NOT EXISTS audit_usage_hourly_by_account ON audit_usage_hourly (caller_account_id, hour);
