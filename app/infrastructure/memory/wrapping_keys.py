"""The vault's ``wrapping_keys`` rows in memory (app.infrastructure.vault.WrappingKeyStore).

Same rules as the table's statements in app/infrastructure/vault.py: an insert leaves an
owner's existing row alone, a fresh import replaces only a shredded row, shredding keeps
the row without its key, and shredding a key shreds its imported materials' rows too
(``parent_id``). The cryptography stays the Vault's: rows hold keys wrapped under the root
key, never in clear.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.infrastructure.vault import WrappingKeyRow


@dataclass
class _Row:
    wrapped_key: bytes | None
    root_key_id: str
    parent_id: uuid.UUID | None
    destroyed_at: datetime | None = None


class MemoryWrappingKeys:
    def __init__(self) -> None:
        self._rows: dict[uuid.UUID, _Row] = {}
        self._lock = threading.Lock()

    # --- what tests may look at -------------------------------------------------------
    def stored(self, owner_id: uuid.UUID) -> bytes | None:
        """The owner's wrapped key as stored (None: no row, or shredded)."""
        with self._lock:
            row = self._rows.get(owner_id)
            return row.wrapped_key if row is not None else None

    def destroyed_at(self, owner_id: uuid.UUID) -> datetime | None:
        with self._lock:
            row = self._rows.get(owner_id)
            return row.destroyed_at if row is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    # --- WrappingKeyStore ---------------------------------------------------------------
    def count_sealed_by_others(self, root_key_ids: Sequence[str]) -> int:
        with self._lock:
            return sum(1 for row in self._rows.values() if row.root_key_id not in root_key_ids)

    def read(self, owner_id: uuid.UUID, *, create: WrappingKeyRow | None = None) -> Any:
        with self._lock:
            if create is not None:
                self._insert(create)
            row = self._rows.get(owner_id)
            return row.wrapped_key if row is not None else None

    def insert_many(self, rows: Sequence[WrappingKeyRow]) -> None:
        with self._lock:
            for row in rows:
                self._insert(row)

    def delete(self, owner_ids: Sequence[uuid.UUID]) -> None:
        with self._lock:
            for owner_id in owner_ids:
                self._rows.pop(owner_id, None)

    def replace_imported(self, row: WrappingKeyRow) -> None:
        with self._lock:
            existing = self._rows.get(row.owner_id)
            if existing is None:
                self._insert(row)
            elif existing.wrapped_key is None:  # ... DO UPDATE ... WHERE wrapped_key IS NULL
                existing.wrapped_key = row.wrapped_key
                existing.root_key_id = row.root_key_id
                existing.destroyed_at = None

    def shred(self, owner_id: uuid.UUID, at: datetime) -> None:
        with self._lock:
            row = self._rows.get(owner_id)
            if row is not None:
                row.wrapped_key, row.destroyed_at = None, at

    def shred_key(self, key_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        with self._lock:
            owners = [
                owner_id
                for owner_id, row in self._rows.items()
                if owner_id == key_id or row.parent_id == key_id
            ]
            for owner_id in owners:
                row = self._rows[owner_id]
                row.wrapped_key, row.destroyed_at = None, at
            return owners

    def rewrap_batch(
        self,
        rewrap: Callable[[uuid.UUID, bytes], bytes],
        root_key_id: str,
        limit: int,
        *,
        wait: bool = False,
    ) -> int:
        with self._lock:  # one lock: never a row held elsewhere, so nothing to wait for
            due = [o for o, r in sorted(self._rows.items()) if r.root_key_id != root_key_id]
            due = due[:limit]
            # All or nothing, as the table's transaction: compute every new row first.
            fresh = {o: rewrap(o, w) if (w := self._rows[o].wrapped_key) else None for o in due}
            for owner_id, wrapped in fresh.items():
                self._rows[owner_id].wrapped_key = wrapped
                self._rows[owner_id].root_key_id = root_key_id
            return len(fresh)

    # On the writer's loop: no connection, nothing to wait for.
    async def read_live_on(
        self, conn: Any, owner_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, Any]]:
        with self._lock:
            return [
                (owner_id, row.wrapped_key)
                for owner_id in owner_ids
                if (row := self._rows.get(owner_id)) is not None and row.wrapped_key is not None
            ]

    async def read_on(
        self, conn: Any, owner_id: uuid.UUID, *, create: WrappingKeyRow | None = None
    ) -> Any:
        return self.read(owner_id, create=create)

    async def replace_imported_on(self, conn: Any, row: WrappingKeyRow) -> None:
        self.replace_imported(row)

    async def shred_on(self, conn: Any, owner_id: uuid.UUID, at: datetime) -> None:
        self.shred(owner_id, at)

    async def shred_key_on(self, conn: Any, key_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        return self.shred_key(key_id, at)

    def _insert(self, row: WrappingKeyRow) -> None:  # ON CONFLICT (owner_id) DO NOTHING
        if row.owner_id not in self._rows:
            self._rows[row.owner_id] = _Row(row.wrapped_key, row.root_key_id, row.parent_id)
