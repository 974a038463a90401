"""Read models in memory: the key directory (app.ports.KeyDirectory) and the index of active
access keys (app.ports.ActiveAccessKeys), kept by the same events as their PostgreSQL
tables (projections/key_directory.py, projections/grants.py, projections/key_views.py).

Each follows the Ledger's notification log, as the PostgreSQL projections do: reading it
first catches up with every event committed so far (``wait_for_current``), whichever
writer appended it. Only the columns the queries read are kept.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from eventsourcing.application import Application
from eventsourcing.utils import get_topic

from domain import key_states
from domain.identity import AccessKey
from domain.keys import Alias, Key

BATCH = 1000
AWS_MANAGED_ROTATION = timedelta(days=365)


class LedgerFollower:
    """Applies the Ledger's events of ``handlers``' types, in notification order."""

    handlers: ClassVar[dict[type, str]] = {}  # event type -> method name

    def __init__(self, ledger: Application) -> None:
        self._ledger = ledger
        self._position = 0
        self._lock = threading.RLock()
        self._topics = tuple(get_topic(cls) for cls in self.handlers)

    def wait_for_current(self) -> None:
        """Apply every event committed so far (nothing runs in the background)."""
        recorder: Any = self._ledger.recorder
        with self._lock:
            head = recorder.max_notification_id() or 0
            while self._position < head:
                found = recorder.select_notifications(
                    self._position + 1, BATCH, stop=head, topics=self._topics
                )
                for notification in found:
                    event = self._ledger.mapper.to_domain_event(notification)
                    getattr(self, self.handlers[type(event)])(event)
                if len(found) < BATCH:
                    self._position = head
                else:
                    self._position = found[-1].id


@dataclass
class _KeyRow:
    account_id: str
    region: str
    arn: str
    state: str
    deletion_date: datetime | None = None
    next_rotation_date: datetime | None = None


@dataclass
class _AliasRow:
    target_key_id: str
    created: datetime
    updated: datetime


class MemoryKeyDirectory(LedgerFollower):
    """app.ports.KeyDirectory: kms_keys, kms_key_materials, kms_aliases, alias_names and
    kms_grants, as dictionaries."""

    handlers: ClassVar[dict[type, str]] = {
        Key.Created: "_key_created",
        Key.Replicated: "_key_created",
        Key.ReplicaRemoved: "_replica_removed",
        Key.PrimaryRegionUpdated: "_rotated",
        Key.Enabled: "_enabled",
        Key.Disabled: "_disabled",
        Key.DeletionCancelled: "_disabled",
        Key.DeletionScheduled: "_deletion_scheduled",
        Key.MaterialDestroyed: "_material_destroyed",
        Key.MaterialImported: "_material_imported",
        Key.MaterialExpired: "_material_gone",
        Key.ImportedMaterialDeleted: "_material_gone",
        Key.RotationScheduleChanged: "_rotation_schedule_changed",
        Key.Rotated: "_rotated",
        Key.GrantCreated: "_grant_created",
        Key.GrantRetired: "_grant_ended",
        Key.GrantRevoked: "_grant_ended",
        Alias.Created: "_alias_created",
        Alias.Retargeted: "_alias_retargeted",
        Alias.Deleted: "_alias_deleted",
    }

    def __init__(self, ledger: Application) -> None:
        super().__init__(ledger)
        self._keys: dict[uuid.UUID, _KeyRow] = {}
        # (key, material id) -> (imported, valid to)
        self._materials: dict[tuple[uuid.UUID, str], tuple[bool, datetime | None]] = {}
        self._aliases: dict[tuple[str, str, str], _AliasRow] = {}
        self._alias_names: dict[uuid.UUID, tuple[str, str, str]] = {}
        self._grants: dict[tuple[uuid.UUID, str], tuple[Any, ...]] = {}

    # --- queries (projections/queries.py, app/infrastructure/read_models.py) ---------------
    def list_keys(
        self, account_id: str, region: str, after: str | None, limit: int
    ) -> list[tuple[str, str]]:
        start = uuid.UUID(after) if after is not None else None
        with self._lock:
            rows = sorted(
                (key_id, row.arn)
                for key_id, row in self._keys.items()
                if row.account_id == account_id
                and row.region == region
                and row.state != key_states.DELETED
                and (start is None or key_id > start)
            )
        return [(str(key_id), arn) for key_id, arn in rows[:limit]]

    def list_aliases(
        self,
        account_id: str,
        region: str,
        key_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[tuple[str, str, datetime, datetime]]:
        target = uuid.UUID(key_id) if key_id is not None else None
        with self._lock:
            rows = sorted(
                (name, self._shown_key_id(row.target_key_id), row.created, row.updated)
                for (account, reg, name), row in self._aliases.items()
                if account == account_id
                and reg == region
                and (target is None or uuid.UUID(row.target_key_id) == target)
                and (after is None or name > after)
            )
        return rows[:limit]

    def _shown_key_id(self, target: str) -> str:
        """A target as AWS names it: the id its key's ARN ends with (mrk- keys)."""
        key = self._keys.get(uuid.UUID(target))
        return key.arn.rsplit(":key/", 1)[-1] if key is not None else target

    def keys_due(self, now: datetime) -> list[tuple[uuid.UUID, str]]:
        with self._lock:
            due = [
                (key_id, "delete")
                for key_id, row in self._keys.items()
                if row.state == key_states.PENDING_DELETION
                and row.deletion_date is not None
                and row.deletion_date <= now
            ]
            due += [
                (key_id, "rotate")
                for key_id, row in self._keys.items()
                if row.state == key_states.ENABLED
                and row.next_rotation_date is not None
                and row.next_rotation_date <= now
            ]
            expired = {
                key_id
                for (key_id, _), (imported, valid_to) in self._materials.items()
                if imported and valid_to is not None and valid_to <= now
            }
        return due + [(key_id, "expire") for key_id in sorted(expired)]

    def retirable_grants(self, principal: str, after: Any, limit: int) -> list[Any]:
        start = (uuid.UUID(after[0]), after[1]) if after is not None else None
        with self._lock:
            rows = sorted(
                (where, row)
                for where, row in self._grants.items()
                if row[5] == principal and (start is None or where > start)
            )
        return [row for _, row in rows[:limit]]

    # --- handlers (projections/key_directory.py, projections/grants.py) --------------------
    def _key_created(self, event: Key.Created) -> None:
        if event.originator_id in self._keys:
            return
        replica = isinstance(event, Key.Replicated)
        state = (
            key_states.ENABLED
            if event.material is not None or replica
            else key_states.PENDING_IMPORT
        )
        aws_managed = event.key_manager == "AWS"
        self._keys[event.originator_id] = _KeyRow(
            event.account_id,
            event.region,
            event.arn,
            state,
            next_rotation_date=event.timestamp + AWS_MANAGED_ROTATION if aws_managed else None,
        )

    def _set_state(self, key_id: uuid.UUID, state: str) -> None:
        row = self._keys.get(key_id)
        if row is not None:
            row.state, row.deletion_date = state, None

    def _enabled(self, event: Any) -> None:
        self._set_state(event.originator_id, key_states.ENABLED)

    def _disabled(self, event: Any) -> None:
        self._set_state(event.originator_id, key_states.DISABLED)

    def _deletion_scheduled(self, event: Key.DeletionScheduled) -> None:
        row = self._keys.get(event.originator_id)
        if row is not None and event.awaiting_replicas:
            row.state, row.deletion_date = key_states.PENDING_REPLICA_DELETION, None
        elif row is not None:
            row.state, row.deletion_date = key_states.PENDING_DELETION, event.deletion_date

    def _replica_removed(self, event: Key.ReplicaRemoved) -> None:
        row = self._keys.get(event.originator_id)
        if row is not None and event.deletion_date is not None:
            row.state, row.deletion_date = key_states.PENDING_DELETION, event.deletion_date

    def _material_destroyed(self, event: Key.MaterialDestroyed) -> None:
        key_id = event.originator_id
        row = self._keys.get(key_id)
        if row is not None:
            row.state, row.next_rotation_date = key_states.DELETED, None
        for where in [w for w in self._materials if w[0] == key_id]:
            del self._materials[where]
        for where in [w for w in self._grants if w[0] == key_id]:
            del self._grants[where]

    def _material_imported(self, event: Key.MaterialImported) -> None:
        key_id = event.originator_id
        self._materials[(key_id, event.material.material_id)] = (True, event.valid_to)
        row = self._keys.get(key_id)
        if (
            not event.pending_rotation
            and row is not None
            and row.state == key_states.PENDING_IMPORT
        ):
            row.state = key_states.ENABLED

    def _material_gone(self, event: Any) -> None:
        where = (event.originator_id, event.material_id)
        if where in self._materials:
            self._materials[where] = (False, self._materials[where][1])
        row = self._keys.get(event.originator_id)
        gone_from = (key_states.ENABLED, key_states.DISABLED)
        if event.current and row is not None and row.state in gone_from:
            row.state = key_states.PENDING_IMPORT

    def _rotation_schedule_changed(self, event: Key.RotationScheduleChanged) -> None:
        row = self._keys.get(event.originator_id)
        if row is not None:
            row.next_rotation_date = event.next_rotation_date

    def _rotated(self, event: Key.Rotated) -> None:
        row = self._keys.get(event.originator_id)
        if row is not None:
            row.next_rotation_date = event.next_rotation_date

    def _grant_created(self, event: Key.GrantCreated) -> None:
        grant, key_id = event.grant, event.originator_id
        key = self._keys.get(key_id)
        where = (key_id, grant["grant_id"])
        if key is None or where in self._grants:
            return
        self._grants[where] = (
            key_id,
            grant["grant_id"],
            key.arn,
            grant.get("name") or "",
            grant["grantee_principal"],
            grant.get("retiring_principal"),
            list(grant["operations"]),
            grant.get("constraints") or None,
            grant["issuing_account"],
            event.timestamp,
        )

    def _grant_ended(self, event: Any) -> None:
        self._grants.pop((event.originator_id, event.grant_id), None)

    def _alias_created(self, event: Alias.Created) -> None:
        name = (event.account_id, event.region, event.alias_name)
        self._alias_names.setdefault(event.originator_id, name)
        self._point(name, event.target_key_id, event.timestamp)

    def _alias_retargeted(self, event: Alias.Retargeted) -> None:
        name = self._alias_names.get(event.originator_id)
        if name is not None:  # a re-created alias (deleted, then assigned) has no row yet
            self._point(name, event.target_key_id, event.timestamp)

    def _alias_deleted(self, event: Alias.Deleted) -> None:
        name = self._alias_names.get(event.originator_id)
        if name is not None:
            self._aliases.pop(name, None)

    def _point(self, name: tuple[str, str, str], target: str, at: datetime) -> None:
        row = self._aliases.get(name)
        if row is None:
            self._aliases[name] = _AliasRow(target, at, at)
        else:
            row.target_key_id, row.updated = target, at


class MemoryAccessKeyIndex(LedgerFollower):
    """app.ports.ActiveAccessKeys: the ids of access keys not deactivated (audit_access_keys
    WHERE deactivated_at IS NULL). Call it for the list."""

    handlers: ClassVar[dict[type, str]] = {
        AccessKey.Created: "_created",
        AccessKey.Deactivated: "_deactivated",
    }

    def __init__(self, ledger: Application) -> None:
        super().__init__(ledger)
        self._ids: dict[uuid.UUID, str] = {}
        self._active: set[uuid.UUID] = set()

    def __call__(self) -> list[str]:
        self.wait_for_current()
        with self._lock:
            return sorted(self._ids[aggregate_id] for aggregate_id in self._active)

    def _created(self, event: AccessKey.Created) -> None:
        if event.originator_id not in self._ids:
            self._ids[event.originator_id] = event.access_key_id
            self._active.add(event.originator_id)

    def _deactivated(self, event: AccessKey.Deactivated) -> None:
        self._active.discard(event.originator_id)
