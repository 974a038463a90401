-- keyledger_append with a sixth argument, `contended`: the batch's aggregates the writer
-- expects another writer to have appended to since it read them (their last append here
-- had to be renumbered). Their versions are settled before the insert, by 019's rule,
-- instead of after a failed one.
--
-- Two workers using one hot key alternate on the table lock, so each finds the other's
-- Used events above what it read: with 019 about 70% of their batches inserted once,
-- met the taken version, rolled the subtransaction back, settled and inserted again.
-- Settling first costs one probe of the aggregate's head. Aggregates not named are
-- inserted as sent, and a conflict the hint did not foresee still settles after the
-- failed insert, as in 019: the hint changes the cost, never the outcome. The 5-argument
-- function (019) becomes this one without a hint, for callers that give none. The helpers
-- are PL/pgSQL so that their plans are cached per session, as the caller's are.
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
    LOCK TABLE keyledger_events IN EXCLUSIVE MODE;
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
-- events to since, is shifted to follow its head.
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
        SELECT 1 FROM keyledger_events e
        WHERE e.originator_id = a.originator_id
          AND e.originator_version > a.expected
          AND e.topic <> ALL(commutative));
END;
$$;

-- The batch inserted in batch order, each aggregate's versions shifted as settled; the
-- answer sorted by notification id (which sorts every inserted row before returning one:
-- a failed insert leaves nothing in the result).
CREATE OR REPLACE FUNCTION keyledger_insert(
    ids uuid[], versions int8[], topics text[], states bytea[], shifted uuid[], shifts int8[]
) RETURNS TABLE (new_notification_id bigint, new_originator_id uuid, new_version bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO keyledger_events (originator_id, originator_version, topic, state)
        SELECT b.originator_id, b.originator_version + coalesce(s.by, 0), b.topic, b.state
        FROM unnest(ids, versions, topics, states)
            WITH ORDINALITY AS b(originator_id, originator_version, topic, state, ord)
        LEFT JOIN unnest(shifted, shifts) AS s(originator_id, by) USING (originator_id)
        ORDER BY b.ord
        RETURNING keyledger_events.notification_id, keyledger_events.originator_id,
            keyledger_events.originator_version
    )
    SELECT i.notification_id, i.originator_id, i.originator_version::bigint
    FROM inserted i ORDER BY i.notification_id;
END;
$$;

CREATE OR REPLACE FUNCTION keyledger_append(
    ids uuid[], versions int8[], topics text[], states bytea[], commutative text[]
) RETURNS TABLE (new_notification_id bigint, new_originator_id uuid, new_version bigint)
LANGUAGE sql AS $$
    SELECT * FROM keyledger_append(ids, versions, topics, states, commutative, '{}'::uuid[]);
$$;
