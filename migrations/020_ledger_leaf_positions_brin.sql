-- Leaves by event position (issue 13): a BRIN index instead of migrations/014's unique
-- B-tree. Positions only increase with the leaf index, and leaves are appended in that
-- order, so each block range holds a narrow, disjoint span of positions: a lookup (an
-- inclusion proof by notification id or eventID, an export's first leaf) reads one range
-- of 16 pages, and an append no longer inserts into a B-tree per event (the Merkle log's
-- largest per-event cost in PostgreSQL after the leaf hash: tools/bench/ledger_profile).
-- Uniqueness was never needed from the index: the log appends positions strictly
-- increasing, and `keyledger audit verify` checks exactly that.
DROP INDEX IF EXISTS ledger_tree_leaves_by_position;
CREATE INDEX IF NOT EXISTS ledger_tree_leaves_by_position_brin
    ON ledger_tree_nodes USING brin (notification_id) WITH (pages_per_range = 16, autosummarize = on)
    WHERE level = 0;
