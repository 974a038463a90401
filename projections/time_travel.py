"""Time travel: a key as its events left it at any moment, computed from the event log.

Read-only. The key's stream is replayed up to the moment (events carry their times).
``Used`` events change nothing but "last used", so they are skipped during the replay and
only the last one before the moment is read: a key used a million times travels as fast
as a new one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from domain.keys import Key

USED_TOPIC = get_topic(Key.Used)
CHUNK = 500


@dataclass(frozen=True)
class MaterialAsOf:
    version: int
    material_id: str
    created: datetime
    rotation_type: str | None
    imported: bool


@dataclass(frozen=True)
class KeyAsOf:
    """What was true of a key at ``as_of`` (the state its last event before then left)."""

    key_id: str
    arn: str
    account_id: str
    region: str
    as_of: datetime
    version: int  # the key's event version at that moment
    last_changed: datetime
    key_state: str
    enabled: bool
    description: str
    key_spec: str
    key_usage: str
    origin: str
    key_manager: str
    creation_date: datetime
    deletion_date: datetime | None
    rotation_enabled: bool
    rotation_period_days: int | None
    next_rotation_date: datetime | None
    materials: tuple[MaterialAsOf, ...]
    aliases: tuple[str, ...]
    tags: dict[str, str]
    policy: str
    grants: tuple[dict[str, Any], ...]
    last_used_at: datetime | None
    last_used_operation: str | None
    # Where a key of a custom key store lives (its store never changes).
    custom_key_store_id: str | None = None
    cloud_hsm_cluster_id: str | None = None
    xks_key_id: str | None = None


class TimeTravel:
    """Rebuilds keys as of past moments, straight from the event store."""

    def __init__(self, ledger: Application, pool: ConnectionPool) -> None:
        self._mapper = ledger.mapper
        self._pool = pool
        recorder: Any = ledger.recorder
        table = SQL("{0}.{1}").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
        )
        self._state_events = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {0}"
            " WHERE originator_id = %s AND originator_version > %s AND topic <> %s"
            " ORDER BY originator_version LIMIT %s"
        ).format(table)
        self._used_events = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {0}"
            " WHERE originator_id = %s AND topic = %s AND originator_version < %s"
            " ORDER BY originator_version DESC LIMIT %s"
        ).format(table)

    def _decode(self, row: Any) -> Any:
        return self._mapper.to_domain_event(
            StoredEvent(
                originator_id=row[0], originator_version=row[1], topic=row[2], state=bytes(row[3])
            )
        )

    def key_as_of(self, key_id: uuid.UUID, at: datetime) -> KeyAsOf | None:
        """The key at ``at``, or None if it did not exist yet (or is no key)."""
        aggregate: Any = None
        after, version, last_event = 0, 0, None
        done = False
        with self._pool.connection() as conn:
            while not done:
                rows = conn.execute(
                    self._state_events, (key_id, after, USED_TOPIC, CHUNK)
                ).fetchall()
                for row in rows:
                    event = self._decode(row)
                    if event.timestamp > at:
                        done = True
                        break
                    if aggregate is not None:
                        aggregate.version = event.originator_version - 1  # Used skipped
                    aggregate = event.mutate(aggregate)
                    version, last_event = event.originator_version, event
                after = rows[-1][1] if rows else after
                done = done or len(rows) < CHUNK
            if not isinstance(aggregate, Key) or last_event is None:
                return None
            last_used = self._last_use(conn, key_id, at)
        return _as_of(aggregate, at, version, last_event.timestamp, last_used)

    def _last_use(self, conn: Any, key_id: uuid.UUID, at: datetime) -> Any:
        """The key's last Used event at or before ``at`` (scanning back from the newest)."""
        before = 2**62
        while True:
            rows = conn.execute(self._used_events, (key_id, USED_TOPIC, before, CHUNK)).fetchall()
            for row in rows:
                event = self._decode(row)
                if event.timestamp <= at:
                    return event
            if len(rows) < CHUNK:
                return None
            before = rows[-1][1]


def _as_of(key: Key, at: datetime, version: int, changed: datetime, used: Any) -> KeyAsOf:
    return KeyAsOf(
        key_id=key.key_id,
        arn=key.arn,
        account_id=key.account_id,
        region=key.region,
        as_of=at,
        version=version,
        last_changed=changed,
        key_state=key.state,
        enabled=key.state == "Enabled",
        description=key.description,
        key_spec=key.key_spec,
        key_usage=key.key_usage,
        origin=key.origin,
        key_manager=key.key_manager,
        creation_date=key.creation_date,
        deletion_date=key.deletion_date,
        rotation_enabled=key.rotation_enabled,
        rotation_period_days=key.rotation_period_days,
        next_rotation_date=key.next_rotation_date,
        materials=tuple(
            MaterialAsOf(m.version, m.material_id, m.created, m.rotation_type, m.imported)
            for m in key.materials
        ),
        aliases=tuple(key.aliases),
        tags=dict(key.tags),
        policy=key.policy,
        grants=tuple(
            {name: value for name, value in grant.items()} for grant in key.grants.values()
        ),
        last_used_at=used.timestamp if used is not None else None,
        last_used_operation=used.operation if used is not None else None,
        **_store_of(key),
    )


def _store_of(key: Key) -> dict[str, str | None]:
    store = key.store
    if store is None:
        return {}
    return {
        "custom_key_store_id": store["custom_key_store_id"],
        "cloud_hsm_cluster_id": store.get("cloud_hsm_cluster_id"),
        "xks_key_id": store.get("xks_key_id"),
    }
