-- The ledger's checkpoint signers (issue 13; docs/verifiable-ledger.md): the public half
-- of each Ed25519 key that signs checkpoints, published so that auditors pin it. The
-- private half is a row of wrapping_keys (owner LEDGER_SIGNING_KEY_OWNER in
-- app/infrastructure/ledger_signing.py), wrapped under the root key like all key material.
-- Append-only, like the checkpoints: a signer once published stays published.
CREATE TABLE IF NOT EXISTS ledger_signers (
    key_name    text NOT NULL CHECK (key_name <> '' AND key_name !~ '[[:space:]+]'),
    key_id      bytea NOT NULL CHECK (octet_length(key_id) = 4),
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    vkey        text NOT NULL,   -- <name>+<hex key ID>+<base64(0x01 || public key)>
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_name, key_id)
);

DROP TRIGGER IF EXISTS ledger_signers_append_only ON ledger_signers;
CREATE TRIGGER ledger_signers_append_only BEFORE UPDATE OR DELETE ON ledger_signers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- Leaves by event position: inclusion proofs by notification id (or by a record's eventID,
-- through audit_events.notification_id).
CREATE UNIQUE INDEX IF NOT EXISTS ledger_tree_leaves_by_position
    ON ledger_tree_nodes (notification_id) WHERE level = 0;
