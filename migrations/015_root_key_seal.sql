-- The Shamir-sealed root key (issue 14; docs/key-custody.md, app/infrastructure/shamir_root_key.py):
-- the root key encrypted (AES-256-GCM) under an unseal key that exists only as the shares
-- `keyledger operator init` printed, never here. One row: one root key a deployment.
CREATE TABLE IF NOT EXISTS root_key_seal (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    root_key_id    text NOT NULL,                      -- root_keys.root_key_id of the key
    sealed_key     bytea NOT NULL CHECK (octet_length(sealed_key) = 12 + 32 + 16),
    shares         smallint NOT NULL CHECK (shares BETWEEN 2 AND 255),
    threshold      smallint NOT NULL CHECK (threshold BETWEEN 2 AND shares),
    created_at     timestamptz NOT NULL DEFAULT now()
);
