-- Access control. Denied requests change nothing in the ledger, so they are kept here: an
-- append-only record per denial (the CloudTrail-shaped audit trail will read it). A request
-- the writer re-runs after a conflict is recorded once (request, action, resource).
CREATE TABLE IF NOT EXISTS access_denials (
    id             bigserial PRIMARY KEY,
    denied_at      timestamptz NOT NULL,
    request_id     text NOT NULL,
    principal_arn  text NOT NULL,
    account_id     text NOT NULL,
    action         text NOT NULL,
    resource_arn   text NOT NULL,
    error_code     text NOT NULL,
    message        text NOT NULL,
    source_ip      text NOT NULL DEFAULT '',
    access_key_id  text NOT NULL DEFAULT '',
    via_service    text NOT NULL DEFAULT '',
    UNIQUE (request_id, action, resource_arn)
);
CREATE INDEX IF NOT EXISTS access_denials_by_principal ON access_denials (principal_arn, denied_at);
CREATE INDEX IF NOT EXISTS access_denials_by_resource ON access_denials (resource_arn, denied_at);

-- Grants by retiring principal, for ListRetirableGrants (read model of the key directory
-- projection; ListGrants reads the Key aggregate itself).
CREATE TABLE IF NOT EXISTS kms_grants (
    key_id              uuid NOT NULL,
    grant_id            text NOT NULL,
    key_arn             text NOT NULL,
    name                text NOT NULL,
    grantee_principal   text NOT NULL,
    retiring_principal  text,
    operations          jsonb NOT NULL,
    constraints         jsonb,
    issuing_account     text NOT NULL,
    creation_date       timestamptz NOT NULL,
    PRIMARY KEY (key_id, grant_id)
);
CREATE INDEX IF NOT EXISTS kms_grants_by_retiring_principal
    ON kms_grants (retiring_principal, key_id, grant_id);
