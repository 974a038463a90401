-- Per-key wrapping keys, wrapped under the root key. Mutable on purpose: setting
-- wrapped_key to NULL is crypto-shredding (the events stay, the material is gone).
CREATE TABLE IF NOT EXISTS wrapping_keys (
    owner_id     uuid PRIMARY KEY,
    wrapped_key  bytea,
    root_key_id  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz
);
