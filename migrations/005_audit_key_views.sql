-- Read models for auditors, written by the audit_trail projection (projections/audit_trail.py,
-- projections/key_views.py) and rebuilt from the event store at will (keyledger audit replay).

-- Each key as it stands: state, material, rotation schedule, aliases, tags, current policy.
CREATE TABLE IF NOT EXISTS audit_keys (
    key_id                    uuid PRIMARY KEY,
    arn                       text NOT NULL,
    account_id                text NOT NULL,
    region                    text NOT NULL,
    key_state                 text NOT NULL,
    key_manager               text NOT NULL,
    key_spec                  text NOT NULL,
    key_usage                 text NOT NULL,
    origin                    text NOT NULL,
    description               text NOT NULL,
    creation_date             timestamptz NOT NULL,
    deletion_date             timestamptz,
    current_material_version  integer NOT NULL,
    current_material_id       text,
    current_material_created  timestamptz,
    rotation_enabled          boolean NOT NULL,
    rotation_period_days      integer,
    next_rotation_date        timestamptz,
    aliases                   text[] NOT NULL DEFAULT '{}',
    tags                      jsonb NOT NULL DEFAULT '{}',
    policy                    text NOT NULL,
    policy_changed_at         timestamptz NOT NULL,
    policy_changed_by         text NOT NULL,
    updated_at                timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_keys_by_account ON audit_keys (account_id, region, key_id);

-- Every material version of every key: the original, rotations (automatic, on demand) and
-- imported material, with who caused it.
CREATE TABLE IF NOT EXISTS audit_key_materials (
    key_id         uuid NOT NULL,
    version        integer NOT NULL,
    material_id    text NOT NULL,
    created_at     timestamptz NOT NULL,
    rotation_type  text,            -- NULL for the original material
    imported       boolean NOT NULL,
    import_state   text,            -- IMPORTED / PENDING_IMPORT for imported material
    valid_to       timestamptz,
    principal_arn  text NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- Every key policy a key ever had (CreateKey's, then each PutKeyPolicy), with actor and time.
CREATE TABLE IF NOT EXISTS audit_key_policies (
    key_id         uuid NOT NULL,
    version        bigint NOT NULL,  -- the key's event version that set it
    changed_at     timestamptz NOT NULL,
    event_name     text NOT NULL,
    policy_name    text NOT NULL,
    policy         text NOT NULL,
    principal_arn  text NOT NULL,
    account_id     text NOT NULL,
    access_key_id  text NOT NULL,
    request_id     text NOT NULL,
    source_ip      text NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- Every grant ever created, and how it ended (ended_at NULL: in force).
CREATE TABLE IF NOT EXISTS audit_key_grants (
    key_id              uuid NOT NULL,
    grant_id            text NOT NULL,
    key_arn             text NOT NULL,
    name                text NOT NULL,
    grantee_principal   text NOT NULL,
    retiring_principal  text,
    operations          jsonb NOT NULL,
    constraints         jsonb,
    issuing_account     text NOT NULL,
    created_at          timestamptz NOT NULL,
    created_by          text NOT NULL,
    ended_at            timestamptz,
    ended_by            text,
    end_event           text,        -- RetireGrant, RevokeGrant, DeleteKey
    PRIMARY KEY (key_id, grant_id)
);
CREATE INDEX IF NOT EXISTS audit_key_grants_by_grantee ON audit_key_grants (grantee_principal);

-- Each key's state timeline: every event that set its state.
CREATE TABLE IF NOT EXISTS audit_key_states (
    key_id         uuid NOT NULL,
    version        bigint NOT NULL,
    changed_at     timestamptz NOT NULL,
    key_state      text NOT NULL,
    event_name     text NOT NULL,
    principal_arn  text NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- Principals (users, roles), their inline identity policies, and access keys.
CREATE TABLE IF NOT EXISTS audit_principals (
    principal_id    uuid PRIMARY KEY,
    arn             text NOT NULL,
    account_id      text NOT NULL,
    principal_type  text NOT NULL,
    name            text NOT NULL,
    service_name    text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_principals_by_account ON audit_principals (account_id, arn);

CREATE TABLE IF NOT EXISTS audit_principal_policies (
    principal_id  uuid NOT NULL,
    policy_name   text NOT NULL,
    policy        text NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (principal_id, policy_name)
);

CREATE TABLE IF NOT EXISTS audit_access_keys (
    aggregate_id    uuid PRIMARY KEY,
    access_key_id   text NOT NULL,
    principal_arn   text NOT NULL,
    account_id      text NOT NULL,
    created_at      timestamptz NOT NULL,
    deactivated_at  timestamptz
);

-- Alias targets as the trail needs them (a re-created alias is a CreateAlias, not an Update).
CREATE TABLE IF NOT EXISTS audit_alias_targets (
    alias_id       uuid PRIMARY KEY,
    alias_name     text NOT NULL,
    account_id     text NOT NULL,
    region         text NOT NULL,
    target_key_id  uuid
);

-- The last successful cryptographic use of each key (GetKeyLastUsage).
CREATE TABLE IF NOT EXISTS audit_key_last_usage (
    key_id      uuid PRIMARY KEY,
    operation   text NOT NULL,
    used_at     timestamptz NOT NULL,
    event_id    uuid NOT NULL,
    request_id  text NOT NULL
);

-- Key state for auditors in one place.
CREATE OR REPLACE VIEW audit_key_state AS
    SELECT k.*, u.operation AS last_used_operation, u.used_at AS last_used_at,
           u.event_id AS last_used_event_id, u.request_id AS last_used_request_id
    FROM audit_keys k LEFT JOIN audit_key_last_usage u USING (key_id);
