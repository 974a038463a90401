-- Custom key stores in the auditors' views (projections/key_views.py, written by the
-- audit_trail projection and rebuilt by keyledger audit replay).

-- Where each key of a custom key store lives (NULL for every other key).
ALTER TABLE audit_keys
    ADD COLUMN IF NOT EXISTS custom_key_store_id   text,
    ADD COLUMN IF NOT EXISTS cloud_hsm_cluster_id  text,   -- AWS_CLOUDHSM stores
    ADD COLUMN IF NOT EXISTS xks_key_id            text;   -- EXTERNAL_KEY_STORE stores
CREATE INDEX IF NOT EXISTS audit_keys_by_custom_key_store
    ON audit_keys (custom_key_store_id) WHERE custom_key_store_id IS NOT NULL;

-- The view lists audit_keys' columns as they were when it was made: made again.
DROP VIEW IF EXISTS audit_key_state;
CREATE VIEW audit_key_state AS
    SELECT k.*, u.operation AS last_used_operation, u.used_at AS last_used_at,
           u.event_id AS last_used_event_id, u.request_id AS last_used_request_id
    FROM audit_keys k LEFT JOIN audit_key_last_usage u USING (key_id);

-- Every custom key store, deleted ones included: its configuration (never a secret: no
-- KeyStorePassword, no XKS secret access key) and where its connection stands.
CREATE TABLE IF NOT EXISTS audit_custom_key_stores (
    store_aggregate_id                    uuid PRIMARY KEY,
    store_id                              text NOT NULL,   -- cks-...
    account_id                            text NOT NULL,
    region                                text NOT NULL,
    name                                  text NOT NULL,
    store_type                            text NOT NULL,   -- AWS_CLOUDHSM, EXTERNAL_KEY_STORE
    cloud_hsm_cluster_id                  text,
    xks_proxy_uri_endpoint                text,
    xks_proxy_uri_path                    text,
    xks_proxy_connectivity                text,
    xks_proxy_vpc_endpoint_service_name   text,
    xks_proxy_vpc_endpoint_service_owner  text,
    xks_proxy_access_key_id               text,
    connection_state                      text NOT NULL,
    connection_error_code                 text,
    creation_date                         timestamptz NOT NULL,
    created_by                            text NOT NULL,
    deleted_at                            timestamptz,
    deleted_by                            text,
    updated_at                            timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_custom_key_stores_by_account
    ON audit_custom_key_stores (account_id, region, store_id);

-- Each store's connection timeline: every event that set its connection state, the
-- attempts' outcomes (Connected, ConnectionFailed: KeyLedger's, no caller) included.
CREATE TABLE IF NOT EXISTS audit_custom_key_store_states (
    store_aggregate_id     uuid NOT NULL,
    version                bigint NOT NULL,
    changed_at             timestamptz NOT NULL,
    connection_state       text NOT NULL,
    connection_error_code  text,
    event_name             text NOT NULL,
    principal_arn          text NOT NULL,   -- '' for the outcome of a connection attempt
    PRIMARY KEY (store_aggregate_id, version)
);

-- A view added after the trail had passed events it needs: the trail applies those
-- events to it once (up to up_to, where the trail stood when the view was made), then
-- deletes the row. A new database (or a replay's scratch schema) needs none.
CREATE TABLE IF NOT EXISTS audit_view_backfills (
    view_name  text PRIMARY KEY,
    up_to      bigint NOT NULL
);
INSERT INTO audit_view_backfills (view_name, up_to)
    SELECT 'audit_custom_key_stores', notification_id FROM projection_tracking
    WHERE projection_name = 'audit_trail' AND notification_id > 0
    ON CONFLICT DO NOTHING;
