-- keyledger_append serialises appends with a transaction-level advisory lock instead of
-- the events table's EXCLUSIVE lock (migrations/010-021, as the eventsourcing library
-- does). Both give the same order: one append at a time from its lock to its commit, so
-- notification ids commit in order and a reader never passes a gap filled in later.
--
-- But the table lock also conflicts with autovacuum and autoanalyze (SHARE UPDATE
-- EXCLUSIVE). Once the events table had grown enough for either to start (about once a
-- minute under load), the next append waited for it until deadlock_timeout (100 ms) made
-- PostgreSQL cancel it: every writer stalled ~100 ms together, the suite's occasional
-- p99 of 87-90 ms ("canceling autovacuum task" in the server's log each time), and the
-- table was never vacuumed under load. An anti-wraparound vacuum, which is not cancelled,
-- would have stopped every append for its whole run. The advisory lock conflicts with
-- neither; the INSERT's own ROW EXCLUSIVE lock does not either.
--
-- An append of the old body still running while this migration commits holds the table
-- lock, which conflicts with the INSERT's ROW EXCLUSIVE lock: old and new bodies stay in
-- order between themselves too. Every append goes through this function (the 5-argument
-- one calls this one); the key is KeyLedger's alone in its database (app/ holds the others:
-- projection leaders, checkpointer, migrations).
CREATE OR REPLACE FUNCTION keyledger_append(
    ids uuid[], versions int8[], topics text[], states bytea[], commutative text[],
    contended uuid[]
) RETURNS TABLE (new_notification_id bigint, new_originator_id uuid, new_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    shifted uuid[];  -- the aggregates whose events are renumbered
    shifts int8[];   -- by how much, in the same order
BEGIN
    SET LOCAL lock_timeout = '5s';
    PERFORM pg_advisory_xact_lock(1802264944);  -- 0x6B6C6170, "klap" (app: APPEND_LOCK_ID)
    NOTIFY keyledger_events;
    IF cardinality(contended) > 0 THEN
        SELECT s.shifted, s.shifts INTO shifted, shifts
        FROM keyledger_settle(ids, versions, commutative, contended) s;
    END IF;
    BEGIN
        RETURN QUERY SELECT * FROM keyledger_insert(ids, versions, topics, states, shifted, shifts);
        RETURN;
    EXCEPTION WHEN unique_violation THEN
        NULL;  -- an append the hint did not foresee: settle every aggregate below
    END;
    SELECT s.shifted, s.shifts INTO shifted, shifts
    FROM keyledger_settle(ids, versions, commutative, NULL) s;
    RETURN QUERY SELECT * FROM keyledger_insert(ids, versions, topics, states, shifted, shifts);
END;
$$;

-- 019's settling rule, for the aggregates in `only` (all of the batch's when NULL): an
-- aggregate whose events were checked against version `expected` (its first version in
-- the batch, minus 1), that existed then, and that others appended only commutative
