-- The ledger's Merkle log (issue 13; docs/verifiable-ledger.md), written by the merkle_log
-- projection (projections/merkle_log.py) in the same transaction as its tracking position.
--
-- ledger_tree_nodes: every perfect node of the RFC 9162 tree over the ledger's events, in
-- notification-id order. NodeId(level, index) covers leaves [index * 2^level,
-- (index + 1) * 2^level) (domain/merkle.py); level 0 is the leaf hash of the index-th
-- event, whose notification id (the leaf's position, encoded in the leaf) is kept beside
-- it so that a verifier names a missing or an inserted event exactly. A node is written
-- once, when its last leaf arrives, and never changes: UPDATE and DELETE are refused.
CREATE TABLE IF NOT EXISTS ledger_tree_nodes (
    level            smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    index            bigint NOT NULL CHECK (index >= 0),
    hash             bytea NOT NULL CHECK (octet_length(hash) = 32),
    notification_id  bigint CHECK ((level = 0) = (notification_id IS NOT NULL)),
    PRIMARY KEY (level, index)
);

-- The tree's size (leaves), the last leaf's notification id and the root at that size:
-- one row, moved by each batch of the projection.
CREATE TABLE IF NOT EXISTS ledger_tree (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    size             bigint NOT NULL CHECK (size >= 0),
    notification_id  bigint NOT NULL CHECK (notification_id >= 0),
    root             bytea NOT NULL CHECK (octet_length(root) = 32),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger_tree (id, size, notification_id, root)
VALUES (true, 0, 0, sha256(''::bytea))  -- MTH({}) = SHA-256 of the empty string
ON CONFLICT (id) DO NOTHING;

-- Signed checkpoints (c2sp.org/tlog-checkpoint; domain/checkpoints.py): one row per
-- checkpoint, never rewritten. Nothing writes them yet; the verifier checks those there are.
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size       bigint PRIMARY KEY CHECK (size >= 0),
    root       bytea NOT NULL CHECK (octet_length(root) = 32),
    note       text NOT NULL,            -- the signed note, exactly as signed
    signed_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only: rows are inserted, never updated or deleted (TRUNCATE, by the tables'
-- owner, remains the way to rebuild the log from the events).
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

DROP TRIGGER IF EXISTS ledger_tree_nodes_append_only ON ledger_tree_nodes;
CREATE TRIGGER ledger_tree_nodes_append_only BEFORE UPDATE OR DELETE ON ledger_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_checkpoints_append_only ON ledger_checkpoints;
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
