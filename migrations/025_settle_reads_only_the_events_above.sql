-- keyledger_settle reads only an aggregate's events above the version its batch expected,
-- whatever the planner estimates.
--
-- 021's check that others appended only commutative events since `expected` was
-- `NOT EXISTS (... originator_version > a.expected AND topic <> ALL(commutative))`. The
-- planner cannot see `expected` (it comes out of the batch's array), so it estimates the
-- range at a third of the aggregate's events; once autoanalyze had seen one key holding
-- most of the table, a third of them cost more than reading the whole table, and the
-- check became a (parallel) sequential scan of keyledger_events inside the append lock:
-- ~150 ms for 580,000 events, a hot key's throughput down from ~6,000 to ~140 calls a
-- second, growing with the table (docs/performance.md, 2026-12-08). It struck a minute or
-- two after a start, when autoanalyze ran, and stayed.
--
-- The check now walks the primary key backwards from the head, at most `head - expected`
-- rows: the events above `expected` (versions are contiguous; the range condition keeps it
-- exact if they were not). A LIMIT below an ORDER BY the index gives costs a plan reading
-- the whole table far more than one reading a few index entries, whatever the range is
-- estimated at. The rule and the answer are 021's.
CREATE OR REPLACE FUNCTION keyledger_settle(
    ids uuid[], versions int8[], commutative text[], only_ids uuid[]
) RETURNS TABLE (shifted uuid[], shifts int8[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT array_agg(a.originator_id), array_agg(h.head - a.expected)
    FROM (
        SELECT b.originator_id, min(b.originator_version) - 1 AS expected
        FROM unnest(ids, versions) AS b(originator_id, originator_version)
        WHERE only_ids IS NULL OR b.originator_id = ANY(only_ids)
        GROUP BY b.originator_id
    ) a
    CROSS JOIN LATERAL (
        SELECT max(e.originator_version) AS head FROM keyledger_events e
        WHERE e.originator_id = a.originator_id
    ) h
    WHERE a.expected >= 1 AND h.head > a.expected
      AND NOT EXISTS (
        SELECT 1 FROM (
            SELECT e.topic FROM keyledger_events e
            WHERE e.originator_id = a.originator_id AND e.originator_version > a.expected
            ORDER BY e.originator_version DESC
            LIMIT h.head - a.expected
        ) above
        WHERE above.topic <> ALL(commutative));
END;
$$;
