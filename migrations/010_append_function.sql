-- One round trip per group commit, with the table lock held only server-side.
--
-- keyledger_append takes the same EXCLUSIVE lock on the library's events table and
-- sends the same NOTIFY as eventsourcing's recorder (so notification ids commit in
-- order and subscribers see every event), then inserts the batch. Called in
-- autocommit mode, the statement is its own transaction: the lock is released at its
-- commit, and no client round trip (or event-loop delay) happens while it is held.
--
-- Versions are settled inside the lock: when every event another writer appended to
-- one of our aggregates since we read it is commutative (a Used event, which no state
-- check reads), our events are renumbered to follow; otherwise they keep their versions
-- and the unique key fails, so the writer reloads and re-checks (see app/event_store.py).
-- The table is the one eventsourcing creates for the application named "keyledger".
CREATE OR REPLACE FUNCTION keyledger_append(
    ids uuid[], versions int8[], topics text[], states bytea[], commutative text[]
) RETURNS TABLE (new_notification_id bigint, new_originator_id uuid, new_version bigint)
LANGUAGE plpgsql AS $$
BEGIN
    SET LOCAL lock_timeout = '5s';
    LOCK TABLE keyledger_events IN EXCLUSIVE MODE;
    NOTIFY keyledger_events;
    RETURN QUERY
    WITH batch AS (
        SELECT * FROM unnest(ids, versions, topics, states)
            WITH ORDINALITY AS b(originator_id, originator_version, topic, state, ord)
    ), expected AS (
        SELECT b.originator_id, min(b.originator_version) - 1 AS version
        FROM batch b GROUP BY b.originator_id
    ), shift AS (
        SELECT x.originator_id,
            CASE WHEN x.version >= 1
                AND NOT EXISTS (
                    SELECT 1 FROM keyledger_events e
                    WHERE e.originator_id = x.originator_id
                      AND e.originator_version > x.version
                      AND e.topic <> ALL(commutative))
            THEN coalesce((
                SELECT max(e.originator_version) FROM keyledger_events e
                WHERE e.originator_id = x.originator_id), x.version) - x.version
            ELSE 0 END AS by
        FROM expected x
    ), inserted AS (
        INSERT INTO keyledger_events (originator_id, originator_version, topic, state)
        SELECT b.originator_id, b.originator_version + s.by, b.topic, b.state
        FROM batch b JOIN shift s USING (originator_id)
        ORDER BY b.ord
        RETURNING keyledger_events.notification_id, keyledger_events.originator_id,
            keyledger_events.originator_version
    )
    SELECT i.notification_id, i.originator_id, i.originator_version::bigint
    FROM inserted i ORDER BY i.notification_id;
END;
$$;
