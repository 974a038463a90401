-- Read models for listing and scheduling; rebuilt from the event store at will.
CREATE TABLE IF NOT EXISTS projection_tracking (
    projection_name  text PRIMARY KEY,
    notification_id  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS kms_keys (
    key_id              uuid PRIMARY KEY,
    account_id          text NOT NULL,
    region              text NOT NULL,
    arn                 text NOT NULL,
    key_state           text NOT NULL,
    key_manager         text NOT NULL,
    key_spec            text NOT NULL,
    key_usage           text NOT NULL,
    description         text NOT NULL,
    creation_date       timestamptz NOT NULL,
    deletion_date       timestamptz,
    rotation_enabled    boolean NOT NULL DEFAULT false,
    next_rotation_date  timestamptz,
    last_used_at        timestamptz
);
CREATE INDEX IF NOT EXISTS kms_keys_by_account ON kms_keys (account_id, region, key_id);
CREATE INDEX IF NOT EXISTS kms_keys_due_deletion ON kms_keys (deletion_date)
    WHERE key_state = 'PendingDeletion';
CREATE INDEX IF NOT EXISTS kms_keys_due_rotation ON kms_keys (next_rotation_date)
    WHERE next_rotation_date IS NOT NULL;

CREATE TABLE IF NOT EXISTS kms_aliases (
    account_id     text NOT NULL,
    region         text NOT NULL,
    alias_name     text NOT NULL,
    target_key_id  uuid NOT NULL,
    creation_date  timestamptz NOT NULL,
    last_updated   timestamptz NOT NULL,
    PRIMARY KEY (account_id, region, alias_name)
);
CREATE INDEX IF NOT EXISTS kms_aliases_by_key ON kms_aliases (target_key_id);

CREATE TABLE IF NOT EXISTS kms_rotations (
    key_id         uuid NOT NULL,
    material_id    text NOT NULL,
    rotation_date  timestamptz NOT NULL,
    rotation_type  text NOT NULL,
    PRIMARY KEY (key_id, material_id)
);

-- Alias aggregate ids (derived from names) back to names, for alias events that
-- carry only the id.
CREATE TABLE IF NOT EXISTS alias_names (
    alias_id    uuid PRIMARY KEY,
    account_id  text NOT NULL,
    region      text NOT NULL,
    alias_name  text NOT NULL
);
