"""The key directory: keys and aliases by account and Region, for listing and scheduling.

A batched consumer of the ledger's notification log. Each batch of events and the
tracking position are written in one transaction, so the view is exactly-once and
resumes where it stopped after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import psycopg
from eventsourcing.utils import get_topic

from domain import key_states
from domain.keys import Alias, Key
from projections.batched import BatchedProjection
from projections.grants import GRANT_HANDLERS

log = logging.getLogger("keyledger.projections")

PROJECTION_NAME = "key_directory"
BATCH_SIZE = 1000
# Only one process writes the view; the others read it.
LEADER_LOCK_ID = 0x6B6C6472  # "kldr"

Handler = Callable[[psycopg.Connection[Any], Any], None]


def _key_created(conn: psycopg.Connection[Any], event: Key.Created) -> None:
    state = key_states.ENABLED if event.material is not None else key_states.PENDING_IMPORT
    conn.execute(
        "INSERT INTO kms_keys (key_id, account_id, region, arn, key_state, key_manager, key_spec,"
        " key_usage, description, creation_date, rotation_enabled, next_rotation_date)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        "  CASE WHEN %s THEN %s::timestamptz + interval '365 days' END)"
        " ON CONFLICT (key_id) DO NOTHING",
        (
            event.originator_id,
            event.account_id,
            event.region,
            event.arn,
            state,
            event.key_manager,
            event.key_spec,
            event.key_usage,
            event.description,
            event.timestamp,
            event.key_manager == "AWS",
            event.key_manager == "AWS",
            event.timestamp,
        ),
    )


def _key_replicated(conn: psycopg.Connection[Any], event: Key.Replicated) -> None:
    """A replica: enabled, with its primary's rotation setting (its primary rotates it)."""
    conn.execute(
        "INSERT INTO kms_keys (key_id, account_id, region, arn, key_state, key_manager, key_spec,"
        " key_usage, description, creation_date, rotation_enabled)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (key_id) DO NOTHING",
        (
            event.originator_id,
            event.account_id,
            event.region,
            event.arn,
            key_states.ENABLED,
            event.key_manager,
            event.key_spec,
            event.key_usage,
            event.description,
            event.timestamp,
            event.rotation_enabled,
        ),
    )


def _replica_removed(conn: psycopg.Connection[Any], event: Key.ReplicaRemoved) -> None:
    if event.deletion_date is not None:  # a primary's own window starts
        conn.execute(
            "UPDATE kms_keys SET key_state = %s, deletion_date = %s WHERE key_id = %s",
            (key_states.PENDING_DELETION, event.deletion_date, event.originator_id),
        )


def _primary_region_updated(conn: psycopg.Connection[Any], event: Key.PrimaryRegionUpdated) -> None:
    conn.execute(
        "UPDATE kms_keys SET next_rotation_date = %s WHERE key_id = %s",
        (event.next_rotation_date, event.originator_id),
    )


def _synchronized(conn: psycopg.Connection[Any], event: Key.Synchronized) -> None:
    conn.execute(
        "UPDATE kms_keys SET rotation_enabled = %s WHERE key_id = %s",
        (event.rotation_enabled, event.originator_id),
    )
    if event.material is not None:
        conn.execute(
            "INSERT INTO kms_rotations (key_id, material_id, rotation_date, rotation_type)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                event.originator_id,
                event.material.material_id,
                event.timestamp,
                event.material.rotation_type or "AUTOMATIC",
            ),
        )


def _set_state(state: str) -> Handler:
    def handler(conn: psycopg.Connection[Any], event: Any) -> None:
        conn.execute(
            "UPDATE kms_keys SET key_state = %s, deletion_date = NULL WHERE key_id = %s",
            (state, event.originator_id),
        )

    return handler


def _deletion_scheduled(conn: psycopg.Connection[Any], event: Key.DeletionScheduled) -> None:
    if event.awaiting_replicas:  # PendingReplicaDeletion: no date until the replicas go
        state, deletion_date = key_states.PENDING_REPLICA_DELETION, None
    else:
        state, deletion_date = key_states.PENDING_DELETION, event.deletion_date
    conn.execute(
        "UPDATE kms_keys SET key_state = %s, deletion_date = %s WHERE key_id = %s",
        (state, deletion_date, event.originator_id),
    )


def _material_destroyed(conn: psycopg.Connection[Any], event: Key.MaterialDestroyed) -> None:
    conn.execute(
        "UPDATE kms_keys SET key_state = %s, next_rotation_date = NULL WHERE key_id = %s",
        (key_states.DELETED, event.originator_id),
    )


def _description_changed(conn: psycopg.Connection[Any], event: Key.DescriptionChanged) -> None:
    conn.execute(
        "UPDATE kms_keys SET description = %s WHERE key_id = %s",
        (event.description, event.originator_id),
    )


def _rotation_schedule_changed(
    conn: psycopg.Connection[Any], event: Key.RotationScheduleChanged
) -> None:
    conn.execute(
        "UPDATE kms_keys SET rotation_enabled = %s, next_rotation_date = %s WHERE key_id = %s",
        (event.rotation_enabled, event.next_rotation_date, event.originator_id),
    )


def _rotated(conn: psycopg.Connection[Any], event: Key.Rotated) -> None:
    conn.execute(
        "UPDATE kms_keys SET next_rotation_date = %s WHERE key_id = %s",
        (event.next_rotation_date, event.originator_id),
    )
    conn.execute(
        "INSERT INTO kms_rotations (key_id, material_id, rotation_date, rotation_type)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            event.originator_id,
            event.material.material_id,
            event.timestamp,
            event.material.rotation_type or "AUTOMATIC",
        ),
    )


def _material_imported(conn: psycopg.Connection[Any], event: Key.MaterialImported) -> None:
    conn.execute(
        "INSERT INTO kms_key_materials (key_id, material_id, imported, valid_to)"
        " VALUES (%s, %s, true, %s) ON CONFLICT (key_id, material_id)"
        " DO UPDATE SET imported = true, valid_to = EXCLUDED.valid_to",
        (event.originator_id, event.material.material_id, event.valid_to),
    )
    if not event.pending_rotation:
        conn.execute(
            "UPDATE kms_keys SET key_state = %s WHERE key_id = %s AND key_state = %s",
            (key_states.ENABLED, event.originator_id, key_states.PENDING_IMPORT),
        )


def _material_gone(conn: psycopg.Connection[Any], event: Any) -> None:
    """MaterialExpired, ImportedMaterialDeleted."""
    conn.execute(
        "UPDATE kms_key_materials SET imported = false WHERE key_id = %s AND material_id = %s",
        (event.originator_id, event.material_id),
    )
    if event.current:
        conn.execute(
            "UPDATE kms_keys SET key_state = %s WHERE key_id = %s AND key_state IN (%s, %s)",
            (
                key_states.PENDING_IMPORT,
                event.originator_id,
                key_states.ENABLED,
                key_states.DISABLED,
            ),
        )


def _key_materials_destroyed(conn: psycopg.Connection[Any], event: Any) -> None:
    conn.execute("DELETE FROM kms_key_materials WHERE key_id = %s", (event.originator_id,))


def _alias_created(conn: psycopg.Connection[Any], event: Alias.Created) -> None:
    conn.execute(
        "INSERT INTO kms_aliases (account_id, region, alias_name, target_key_id, creation_date,"
        " last_updated) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (account_id, region, alias_name) DO UPDATE SET"
        " target_key_id = EXCLUDED.target_key_id, last_updated = EXCLUDED.last_updated",
        (
            event.account_id,
            event.region,
            event.alias_name,
            event.target_key_id,
            event.timestamp,
            event.timestamp,
        ),
    )


def _alias_retargeted(conn: psycopg.Connection[Any], event: Alias.Retargeted) -> None:
    # A re-created alias (deleted, then assigned again) has no row: insert it.
    conn.execute(
        "INSERT INTO kms_aliases (account_id, region, alias_name, target_key_id, creation_date,"
        " last_updated) SELECT account_id, region, alias_name, %s, %s, %s FROM alias_names"
        " WHERE alias_id = %s"
        " ON CONFLICT (account_id, region, alias_name) DO UPDATE SET"
        " target_key_id = EXCLUDED.target_key_id, last_updated = EXCLUDED.last_updated",
        (event.target_key_id, event.timestamp, event.timestamp, event.originator_id),
    )


def _alias_deleted(conn: psycopg.Connection[Any], event: Alias.Deleted) -> None:
    conn.execute(
        "DELETE FROM kms_aliases USING alias_names WHERE alias_names.alias_id = %s"
        " AND kms_aliases.account_id = alias_names.account_id"
        " AND kms_aliases.region = alias_names.region"
        " AND kms_aliases.alias_name = alias_names.alias_name",
        (event.originator_id,),
    )


def _alias_name_recorded(conn: psycopg.Connection[Any], event: Alias.Created) -> None:
    conn.execute(
        "INSERT INTO alias_names (alias_id, account_id, region, alias_name)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (event.originator_id, event.account_id, event.region, event.alias_name),
    )


MIN_PASS_INTERVAL = 0.05
IDLE_PASS_INTERVAL = 1.0

HANDLERS: dict[type, list[Handler]] = {
    Key.Created: [_key_created],
    Key.Replicated: [_key_replicated],
    Key.ReplicaRemoved: [_replica_removed],
    Key.PrimaryRegionUpdated: [_primary_region_updated],
    Key.Synchronized: [_synchronized],
    Key.Enabled: [_set_state(key_states.ENABLED)],
    Key.Disabled: [_set_state(key_states.DISABLED)],
    Key.DeletionCancelled: [_set_state(key_states.DISABLED)],
    Key.DeletionScheduled: [_deletion_scheduled],
    Key.MaterialDestroyed: [_material_destroyed, _key_materials_destroyed],
    Key.MaterialImported: [_material_imported],
    Key.MaterialExpired: [_material_gone],
    Key.ImportedMaterialDeleted: [_material_gone],
    Key.DescriptionChanged: [_description_changed],
    Key.RotationScheduleChanged: [_rotation_schedule_changed],
    Key.Rotated: [_rotated],
    Alias.Created: [_alias_name_recorded, _alias_created],
    Alias.Retargeted: [_alias_retargeted],
    Alias.Deleted: [_alias_deleted],
}


# Grants by retiring principal (ListRetirableGrants) live in projections/grants.py.
for _event_type, _grant_handlers in GRANT_HANDLERS.items():
    HANDLERS.setdefault(_event_type, []).extend(_grant_handlers)

RELEVANT_TOPICS = tuple(get_topic(cls) for cls in HANDLERS)


def apply_events(conn: psycopg.Connection[Any], events: Sequence[Any]) -> None:
    """Apply decoded events in order."""
    for event in events:
        for handler in HANDLERS.get(type(event), ()):
            handler(conn, event)


class KeyDirectoryProjection(BatchedProjection):
    """Keys and aliases by account and Region: a batched consumer that skips Used events
    by topic (its tracking still advances to the head, which releases readers waiting
    for read-your-writes)."""

    name: ClassVar[str] = PROJECTION_NAME
    lock_id: ClassVar[int] = LEADER_LOCK_ID
    topics: ClassVar[tuple[str, ...]] = RELEVANT_TOPICS
    batch_size = BATCH_SIZE
    pass_interval = MIN_PASS_INTERVAL  # list calls wait for it: keep it short
    # Only list calls and the rotation scheduler read it, and list calls wake it; a pass
    # per second keeps other processes' writes fresh without scanning Used events 20
    # times a second.
    idle_interval = IDLE_PASS_INTERVAL

    def committed(self, notification_id: int, events: Sequence[Any]) -> None:
        if any(type(event) in HANDLERS for event in events):
            self.notify()

    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        apply_events(conn, events)
