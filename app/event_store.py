"""The event store's PostgreSQL recorder, tuned for group commit and several writers.

Same tables, same rows, same table lock and NOTIFY as eventsourcing's recorder (so
notification ids commit in order and the library's subscribers see every event), with
two changes:

* rows travel as four binary arrays instead of an array of composite values, whose text
  encoding costs ~50 us of regular-expression escaping per event;
* versions are settled inside the table lock. When another process appended to one of
  our aggregates since we read it, and everything it appended commutes with state
  checks (``Used`` events only change "last used"), our events are renumbered to follow
  its events instead of failing. Anything else it appended (``Disabled``, say) leaves
  our versions as they are, so the insert fails on the unique key as before, and the
  writer reloads and re-checks. Several processes can so share a hot key without
  retry storms, and a state check is still never overtaken by a state change.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.keys import Key

# Events that no state check reads: others' may precede ours without a conflict.
COMMUTATIVE_TOPICS = (get_topic(Key.Used),)

INSERT_WITH_SETTLED_VERSIONS = """
WITH batch AS (
    SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[])
        WITH ORDINALITY AS b(originator_id, originator_version, topic, state, ord)
), expected AS (
    SELECT originator_id, min(originator_version) - 1 AS version
    FROM batch GROUP BY originator_id
), shift AS (
    SELECT x.originator_id,
        CASE WHEN x.version >= 1
            AND NOT EXISTS (
                SELECT 1 FROM {schema}.{table} e
                WHERE e.originator_id = x.originator_id AND e.originator_version > x.version
                  AND e.topic <> ALL(%b::text[]))
        THEN coalesce((
            SELECT max(e.originator_version) FROM {schema}.{table} e
            WHERE e.originator_id = x.originator_id), x.version) - x.version
        ELSE 0 END AS by
    FROM expected x
)
INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
SELECT b.originator_id, b.originator_version + s.by, b.topic, b.state
FROM batch b JOIN shift s USING (originator_id)
ORDER BY b.ord
RETURNING notification_id, originator_id, originator_version
"""


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.insert_rows_statement = SQL(INSERT_WITH_SETTLED_VERSIONS).format(  # type: ignore[arg-type]
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        self._settled = threading.local()

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_rows_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
                list(COMMUTATIVE_TOPICS),
            ),
            prepare=True,
        )

    def _fetch_ids_after_insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        rows = curs.fetchall()
        heads: dict[uuid.UUID, int] = {}
        for row in rows:
            heads[row["originator_id"]] = row["originator_version"]
        self._settled.heads = heads
        return [row["notification_id"] for row in rows]

    def settled_heads(self) -> dict[uuid.UUID, int]:
        """Each aggregate's last version as the latest insert (on this thread) stored it."""
        heads: dict[uuid.UUID, int] = getattr(self._settled, "heads", {})
        self._settled.heads = {}
        return heads


class LedgerPostgresFactory(PostgresFactory):
    application_recorder_class = LedgerRecorder
