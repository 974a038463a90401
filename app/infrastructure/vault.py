"""Key material custody: the root key, per-key wrapping keys, and crypto-shredding.

Three layers, so that events can be immutable while deletion is real:

* the root key lives outside the database (env var or file);
* each KMS key has a wrapping key, stored wrapped under the root key in the mutable
  ``wrapping_keys`` table;
* each material version is stored, in events, wrapped under its key's wrapping key.

Destroying a key's wrapping key (crypto-shredding) makes every version of its material,
and so every ciphertext under it, undecryptable, while the event history stays intact.
Rotating the root key re-wraps only the ``wrapping_keys`` rows.

The cryptography is the Vault's; where the rows live is a `WrappingKeyStore`'s:
`PostgresWrappingKeys` (the ``wrapping_keys`` table, the default) or the in-memory one in
app/infrastructure/memory/wrapping_keys.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from app.infrastructure.root_keys import (
    ROOT_KEY_BYTES,
    AesGcmRootKey,
    RootKey,
    RootKeyError,
    opens_in_process,
    retire_previous,
    wrap_with_id,
)
from app.ports import NeedsLoad
from app.support.lru import BoundedLru
from app.support.metrics import cache_counters
from domain.keys import KeyMaterial

log = logging.getLogger("keyledger.vault")
_T = TypeVar("_T")

IDENTITY_WRAPPING_KEY_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
# The ledger's checkpoint-signing key (app/infrastructure/ledger_signing.py): its 32 bytes
# are an Ed25519 seed, stored as a wrapping key is, so that it is wrapped under the root
# key and re-wrapped with it.
LEDGER_SIGNING_KEY_OWNER = uuid.UUID("00000000-0000-4000-8000-000000000002")
# The key that MACs grant tokens (Vault.grant_token_mac), stored the same way.
GRANT_TOKEN_KEY_OWNER = uuid.UUID("00000000-0000-4000-8000-000000000003")
DEFAULT_CACHE_SIZE = 10_000  # keys whose wrapping key and materials stay unwrapped
# Work a writer command leaves to the writer (see Vault._defer).
READ, CREATE, IMPORT, SHRED, SHRED_IMPORTED = "read", "create", "import", "shred", "shred-imported"
DONE_SECONDS = 10.0  # the longest a change done for a command waits for its commit
ABSENT_SECONDS = 2.0  # a wrapping key read as missing is taken as missing this long
FRESH_SECONDS = 1.0  # a wrapping key read this recently is not read again when it fails
STOCK_SIZE, STOCK_LOW = 32, 8  # new keys' stored wrapping keys (see Vault.new_key_id)

INSERT_WRAPPING_KEY = (
    "INSERT INTO wrapping_keys (owner_id, wrapped_key, root_key_id, parent_id)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (owner_id) DO NOTHING"
)
# A fresh import's wrapping key: created, or created anew after a deletion or expiry.
UPSERT_IMPORTED_WRAPPING_KEY = (
    "INSERT INTO wrapping_keys (owner_id, wrapped_key, root_key_id, parent_id)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (owner_id) DO UPDATE SET"
    " wrapped_key = EXCLUDED.wrapped_key, root_key_id = EXCLUDED.root_key_id,"
    " destroyed_at = NULL WHERE wrapping_keys.wrapped_key IS NULL"
)
SELECT_WRAPPING_KEY = "SELECT wrapped_key FROM wrapping_keys WHERE owner_id = %s"
SHRED_OWNER = "UPDATE wrapping_keys SET wrapped_key = NULL, destroyed_at = %s WHERE owner_id = %s"
# parent_id: the wrapping keys of the key's imported materials go with it.
SHRED_KEY = (
    "UPDATE wrapping_keys SET wrapped_key = NULL, destroyed_at = %s"
    " WHERE owner_id = %s OR parent_id = %s RETURNING owner_id"
)


class WrappingKeyRow(NamedTuple):
    """One ``wrapping_keys`` row as written: the key wrapped under the root key."""

    owner_id: uuid.UUID
    wrapped_key: bytes
    root_key_id: str
    parent_id: uuid.UUID | None = None  # the key an imported material's wrapping key belongs to


class WrappingKeyStore(Protocol):
    """Where wrapped wrapping keys are kept (the Vault does all the cryptography).

    A row's ``wrapped_key`` is None once shredded. The synchronous methods are for threads;
    the ``*_on`` ones run on the writer's event loop, on the connection its event store gave
    (None in memory)."""

    def count_sealed_by_others(self, root_key_ids: Sequence[str]) -> int:
        """Rows wrapped under a root key none of ``root_key_ids`` names."""
        ...

    def read(self, owner_id: uuid.UUID, *, create: WrappingKeyRow | None = None) -> Any:
        """The owner's wrapped key (None: none, or shredded), after inserting ``create``
        unless the owner has a row."""
        ...

    def insert_many(self, rows: Sequence[WrappingKeyRow]) -> None:
        """Insert rows whose owners have none (others are left as they are)."""
        ...

    def delete(self, owner_ids: Sequence[uuid.UUID]) -> None: ...

    def replace_imported(self, row: WrappingKeyRow) -> None:
        """A fresh import's row: inserted, or replacing a shredded one (a live one stays)."""
        ...

    def shred(self, owner_id: uuid.UUID, at: datetime) -> None: ...

    def shred_key(self, key_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        """Shred the key's row and its imported materials' (parent_id); their owners."""
        ...

    def rewrap_batch(
        self,
        rewrap: Callable[[uuid.UUID, bytes], bytes],
        root_key_id: str,
        limit: int,
        *,
        wait: bool = False,
    ) -> int:
        """Move up to ``limit`` rows not under ``root_key_id`` to it (a live row's key
        re-wrapped by ``rewrap(owner, wrapped)``; a shredded row just relabelled), in one
        transaction; how many moved (0: none left that no other transaction holds; with
        ``wait``, those are waited for)."""
        ...

    async def read_live_on(
        self, conn: Any, owner_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, Any]]:
        """(owner, wrapped key) of those owners whose row is not shredded."""
        ...

    async def read_on(
        self, conn: Any, owner_id: uuid.UUID, *, create: WrappingKeyRow | None = None
    ) -> Any: ...

    async def replace_imported_on(self, conn: Any, row: WrappingKeyRow) -> None: ...

    async def shred_on(self, conn: Any, owner_id: uuid.UUID, at: datetime) -> None: ...

    async def shred_key_on(self, conn: Any, key_id: uuid.UUID, at: datetime) -> list[uuid.UUID]: ...


class PostgresWrappingKeys:
    """The ``wrapping_keys`` table, through ``pool`` (threads) or the writer's connection."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def count_sealed_by_others(self, root_key_ids: Sequence[str]) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM wrapping_keys WHERE root_key_id <> ALL(%s)",
                (list(root_key_ids),),
            ).fetchone()
        return int(row[0]) if row else 0

    def read(self, owner_id: uuid.UUID, *, create: WrappingKeyRow | None = None) -> Any:
        with self.pool.connection() as conn:
            if create is not None:
                conn.execute(INSERT_WRAPPING_KEY, create)
            row = conn.execute(SELECT_WRAPPING_KEY, (owner_id,)).fetchone()
        return row[0] if row is not None else None

    def insert_many(self, rows: Sequence[WrappingKeyRow]) -> None:
        with self.pool.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(INSERT_WRAPPING_KEY, rows)

    def delete(self, owner_ids: Sequence[uuid.UUID]) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM wrapping_keys WHERE owner_id = ANY(%s)", (list(owner_ids),))

    def replace_imported(self, row: WrappingKeyRow) -> None:
        with self.pool.connection() as conn:
            conn.execute(UPSERT_IMPORTED_WRAPPING_KEY, row)

    def shred(self, owner_id: uuid.UUID, at: datetime) -> None:
        with self.pool.connection() as conn:
            conn.execute(SHRED_OWNER, (at, owner_id))

    def shred_key(self, key_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        with self.pool.connection() as conn:
            return [owner for (owner,) in conn.execute(SHRED_KEY, (at, key_id, key_id)).fetchall()]

    def rewrap_batch(
        self,
        rewrap: Callable[[uuid.UUID, bytes], bytes],
        root_key_id: str,
        limit: int,
        *,
        wait: bool = False,
    ) -> int:
        with self.pool.connection() as conn, conn.transaction():
            # Locked: a shred or a fresh import of the same row waits for this batch; rows
            # they hold are skipped, then waited for (``wait``) once only they are left.
            rows = conn.execute(
                "SELECT owner_id, wrapped_key FROM wrapping_keys WHERE root_key_id <> %s"
                " ORDER BY owner_id LIMIT %s FOR UPDATE" + ("" if wait else " SKIP LOCKED"),
                (root_key_id, limit),
            ).fetchall()
            for owner_id, wrapped in rows:
                fresh = None if wrapped is None else rewrap(owner_id, bytes(wrapped))
                conn.execute(
                    "UPDATE wrapping_keys SET wrapped_key = %s, root_key_id = %s"
                    " WHERE owner_id = %s",
                    (fresh, root_key_id, owner_id),
                )
        return len(rows)

    async def read_live_on(
        self, conn: Any, owner_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, Any]]:
        cursor = await conn.execute(
            "SELECT owner_id, wrapped_key FROM wrapping_keys"
            " WHERE owner_id = ANY(%s) AND wrapped_key IS NOT NULL",
            (list(owner_ids),),
        )
        return [(owner_id, wrapped) for owner_id, wrapped in await cursor.fetchall()]

    async def read_on(
        self, conn: Any, owner_id: uuid.UUID, *, create: WrappingKeyRow | None = None
    ) -> Any:
        if create is not None:
            await conn.execute(INSERT_WRAPPING_KEY, create)
        cursor = await conn.execute(SELECT_WRAPPING_KEY, (owner_id,))
        row = await cursor.fetchone()
        return row[0] if row is not None else None

    async def replace_imported_on(self, conn: Any, row: WrappingKeyRow) -> None:
        await conn.execute(UPSERT_IMPORTED_WRAPPING_KEY, row)

    async def shred_on(self, conn: Any, owner_id: uuid.UUID, at: datetime) -> None:
        await conn.execute(SHRED_OWNER, (at, owner_id))

    async def shred_key_on(self, conn: Any, key_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        cursor = await conn.execute(SHRED_KEY, (at, key_id, key_id))
        return [owner for (owner,) in await cursor.fetchall()]


def load_root_key(*, data_dir: Path, embedded: bool) -> bytes:
    """The development root key in ``data_dir``, generated on first use (embedded only).

    Production sets KEYLEDGER_ROOT_KEY or KEYLEDGER_ROOT_KEY_FILE (see app.settings).
    """
    if not embedded:
        raise RootKeyError(
            "KEYLEDGER_ROOT_KEY or KEYLEDGER_ROOT_KEY_FILE must be set when "
            "KEYLEDGER_DATABASE_URL points at a database."
        )
    path = data_dir / "root.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(ROOT_KEY_BYTES)).decode() + "\n")
        log.warning(
            "\n%s\nGENERATED A DEVELOPMENT ROOT KEY at %s (mode 0600).\n"
            "It protects every key in this ledger. Do not use it in production: set\n"
            "KEYLEDGER_ROOT_KEY (or KEYLEDGER_ROOT_KEY_FILE) from a secret store instead.\n%s",
            "!" * 78,
            path,
            "!" * 78,
        )
    return _decode_root_key(path.read_text().strip(), str(path))


def _decode_root_key(value: str, source: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        raise RootKeyError(f"the root key in {source} is not base64") from None
    if len(key) != ROOT_KEY_BYTES:
        raise RootKeyError(f"the root key in {source} must be {ROOT_KEY_BYTES} bytes")
    return key


def material_owner(key_id: uuid.UUID, material: KeyMaterial) -> uuid.UUID:
    """Whose wrapping key wraps ``material``: the key's, or its own when imported."""
    if material.imported:
        return uuid.uuid5(key_id, "imported:" + material.material_id)
    return key_id


def material_aad(key_id: uuid.UUID, version: int, material_id: str) -> bytes:
    return b"keyledger:material:" + key_id.bytes + struct.pack(">I", version) + material_id.encode()


class Vault:
    """Wraps, unwraps and shreds. Unwrapped material exists only in this process's memory.

    Writer commands run on the event loop and must not wait on the database there: a
    command that needs a wrapping key this process does not hold (to read, create or
    shred) leaves that work to the writer and raises NeedsLoad; the writer reads, calls
    ``prefetch`` (its after_load hook), which does the work on the writer's own
    asynchronous connection, and runs the command again. Off the event loop (the CLI,
    threads) the same calls use the connection pool directly.

    ``store`` keeps the rows: a pool (the ``wrapping_keys`` table) or a `WrappingKeyStore`.
    """

    def __init__(
        self,
        root_key: bytes | RootKey,
        store: ConnectionPool | WrappingKeyStore,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._root: RootKey = AesGcmRootKey(root_key) if isinstance(root_key, bytes) else root_key
        self._rows: WrappingKeyStore = (
            PostgresWrappingKeys(store) if isinstance(store, ConnectionPool) else store
        )
        # Raw key bytes, not AESGCM objects: each of those holds ~2.4 KB of native state,
        # while building one per use costs ~1.5 us.
        # Both least-recently-used and bounded (as the writer's key cache is), so a
        # process's memory does not grow with the number of keys ever used. Room for a
        # rotated key's older versions beside every cached key's current one.
        self._wrapping_keys: BoundedLru[uuid.UUID, _Unwrapped] = BoundedLru(cache_size)
        self._materials: BoundedLru[tuple[uuid.UUID, int], bytes] = BoundedLru(2 * cache_size)
        # keyledger_cache_lookups_total: a wrapping key found cached, or unwrapped under the
        # root key; a material found cached, or unwrapped under its wrapping key.
        self._wrapping_key_hits, self._wrapping_key_misses = cache_counters("wrapping_keys")
        self._material_hits, self._material_misses = cache_counters("materials")
        # Wrapping keys read just now and found missing (shredded): for the re-runs.
        self._absent: BoundedLru[uuid.UUID, bool] = BoundedLru(cache_size, ttl=ABSENT_SECONDS)
        # Work left to the writer, and the changes it made for commands not yet committed:
        # (kind, owner) -> the key they concern, forgotten when that key commits or is
        # read again (see prefetch), so that none outlives the state it was made against.
        self._deferred: dict[tuple[str, uuid.UUID], _Deferred] = {}
        self._done: BoundedLru[tuple[str, uuid.UUID], uuid.UUID] = BoundedLru(
            cache_size, ttl=DONE_SECONDS
        )
        # Fresh key ids whose wrapping keys are stored already (see new_key_id).
        self._stock: deque[tuple[uuid.UUID, bytes]] = deque()
        self._stocking = False
        self._lock = threading.Lock()
        # Grant tokens are MACed under a stored secret (see grant_token_mac), read by start().
        self._grant_token_key: Any = None
        self._session_token_key: Any = None

    # --- start-up ----------------------------------------------------------------
    @property
    def _root_key_id(self) -> str:
        return self._root.key_id

    @property
    def root(self) -> RootKey:
        """The root key this vault wraps under (its provider, never its bytes)."""
        return self._root

    @property
    def root_key_id(self) -> str:
        """The id of the root key this vault wraps under (never the key)."""
        return self._root.key_id

    def check_root_key(self) -> None:
        """Refuse a root key the database's rows were not wrapped under, then read the
        secrets the vault keeps at hand (blocks: call it off the event loop)."""
        self.refuse_foreign_rows()
        self._load_grant_token_key()

    def refuse_foreign_rows(self) -> None:
        """The half of check_root_key a sealed root key allows: its id is known, its key
        is not (app/infrastructure/shamir_root_key.py)."""
        if self._rows.count_sealed_by_others(self._root.known_ids):
            raise RootKeyError(
                "this database was sealed with a different root key; refusing to start "
                f"(this root key's id is {self._root_key_id})"
            )

    def forget(self) -> None:
        """Drop every key this process unwrapped (a seal): wrapping keys, materials, the
        grant-token key and the stock of new wrapping keys (whose unused rows are deleted).
        Python cannot wipe the bytes; it drops every reference to them."""
        self.close()
        for cache in (self._wrapping_keys, self._materials, self._absent, self._done):
            cache.clear()
        self._deferred = {}
        self._grant_token_key = None
        self._session_token_key = None

    def _load_grant_token_key(self) -> None:
        owner = GRANT_TOKEN_KEY_OWNER
        wrapped = self._rows.read(owner, create=self._new_row(owner))
        if wrapped is None:
            raise RootKeyError("the grant-token key has been destroyed")
        key = self._unwrap_under_root(owner, bytes(wrapped))
        self._grant_token_key = hmac.new(key, b"keyledger grant tokens", hashlib.sha256)
        # STS session tokens: the same stored secret, another label (domain separation).
        self._session_token_key = hmac.new(key, b"keyledger session tokens", hashlib.sha256)

    # --- wrapping keys -----------------------------------------------------------
    def _wrap_under_root(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        return self._root.wrap(owner_id, key)

    def _unwrap_under_root(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        return self._root.unwrap(owner_id, wrapped)

    def _wrapping_key(self, owner_id: uuid.UUID, *, create: bool = False) -> AESGCM | None:
        """The owner's wrapping key (created first if ``create``); None once shredded.
        On the event loop, one this process does not hold is left to the writer."""
        cached = self._wrapping_keys.get(owner_id)
        if cached is not None:
            self._wrapping_key_hits.inc()
            return AESGCM(cached.key)
        if _on_event_loop():
            if owner_id in self._absent:
                return None
            self._defer(_Deferred(CREATE if create else READ, owner_id))
        return self._read_wrapping_key(owner_id, create=create)

    def _read_wrapping_key(self, owner_id: uuid.UUID, *, create: bool) -> AESGCM | None:
        """The wrapping key from the database, through the pool (blocks the caller)."""
        wrapped = self._rows.read(owner_id, create=self._new_row(owner_id) if create else None)
        key = self._keep_row(owner_id, wrapped)
        return AESGCM(key) if key is not None else None

    def _new_row(self, owner_id: uuid.UUID, parent_id: uuid.UUID | None = None) -> WrappingKeyRow:
        return self._row(owner_id, AESGCM.generate_key(256), parent_id)

    def _row(
        self, owner_id: uuid.UUID, key: bytes, parent_id: uuid.UUID | None = None
    ) -> WrappingKeyRow:
        """``key`` wrapped, labelled with the root key that wrapped it (read together)."""
        wrapped, root_key_id = wrap_with_id(self._root, owner_id, key)
        return WrappingKeyRow(owner_id, wrapped, root_key_id, parent_id)

    def _keep_row(self, owner_id: uuid.UUID, wrapped: Any) -> bytes | None:
        """Cache a wrapping_keys row's key (or that it has none: never made, or shredded)."""
        key = None if wrapped is None else self._unwrap_under_root(owner_id, bytes(wrapped))
        self._keep_opened(owner_id, key)
        return key

    def _keep_opened(self, owner_id: uuid.UUID, key: bytes | None) -> None:
        """Cache a row's unwrapped key, or that the row has none."""
        if key is None:
            self._wrapping_keys.pop(owner_id)
            self._absent.put(owner_id, True)
            return
        self._wrapping_key_misses.inc()  # unwrapped under the root key just now
        self._keep_wrapping_key(owner_id, key)

    def _keep_wrapping_key(self, owner_id: uuid.UUID, key: bytes) -> None:
        self._wrapping_keys.put(owner_id, _Unwrapped(key, time.monotonic()))
        self._absent.pop(owner_id)

    def _defer(self, work: _Deferred) -> NoReturn:
        """Leave ``work`` to the writer: it reads, runs it (prefetch), runs the command again."""
        self._deferred[(work.kind, work.owner)] = work
        raise NeedsLoad(work.owner)

    def _done_for(self, kind: str, owner_id: uuid.UUID) -> bool:
        return (kind, owner_id) in self._done

    async def prefetch(self, conn: Any, owner_ids: list[uuid.UUID]) -> None:
        """The writer's after_load hook, on its connection: unwrap in one query the wrapping
        keys of keys just read into the writer's cache (so their first use reads nothing
        more), then do the work commands left (see _defer) before they run again."""
        self._forget_done(owner_ids)  # a key read again is checked again
        missing = [owner_id for owner_id in owner_ids if owner_id not in self._wrapping_keys]
        if missing:
            rows = await self._rows.read_live_on(conn, missing)
            for owner_id, key in await self._off_loop(self._open_rows, rows):
                self._keep_opened(owner_id, key)
        work, self._deferred = list(self._deferred.values()), {}
        for item in work:
            await self._run_deferred(conn, item)

    async def _run_deferred(self, conn: Any, work: _Deferred) -> None:
        owner = work.owner
        if work.kind == SHRED:  # the key's wrapping key and those of its imported materials
            assert work.at is not None
            for shredded in await self._rows.shred_key_on(conn, owner, work.at):
                self._drop(shredded)
                self._done.pop((IMPORT, shredded))
            self._done.put((SHRED, owner), owner)
            return
        if work.kind == SHRED_IMPORTED:
            assert work.at is not None
            await self._rows.shred_on(conn, owner, work.at)
            self._drop(owner)
            self._done.pop((IMPORT, owner))
            self._done.put((SHRED_IMPORTED, owner), work.parent or owner)
            return
        if work.kind == IMPORT:
            row = await self._off_loop(self._new_row, owner, work.parent)
            await self._rows.replace_imported_on(conn, row)
            self._done.pop((SHRED_IMPORTED, owner))
            self._done.put((IMPORT, owner), work.parent or owner)
        create = await self._off_loop(self._new_row, owner) if work.kind == CREATE else None
        wrapped = await self._rows.read_on(conn, owner, create=create)
        for owner_id, key in await self._off_loop(self._open_rows, [(owner, wrapped)]):
            self._keep_opened(owner_id, key)

    async def _off_loop(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work`` (wrapping or unwrapping under the root key) in a thread when the root
        key is a token's, whose calls take milliseconds; in line when it is in memory."""
        if opens_in_process(self._root):
            return work(*args)
        return await asyncio.to_thread(work, *args)

    def _open_rows(
        self, rows: Sequence[tuple[uuid.UUID, Any]]
    ) -> list[tuple[uuid.UUID, bytes | None]]:
        """Each row's wrapping key unwrapped (None for a row without one)."""
        return [
            (owner, None if wrapped is None else self._unwrap_under_root(owner, bytes(wrapped)))
            for owner, wrapped in rows
        ]

    def committed(self, _notification_id: int, events: list[Any]) -> None:
        """A writer commit listener: what was done for a key's commands is done with."""
        if len(self._done):
            self._forget_done({event.originator_id for event in events})

    def _forget_done(self, key_ids: Any) -> None:
        if len(self._done):
            wanted = set(key_ids)
            self._done.pop_where(lambda _, key_id: key_id in wanted)

    def _drop(self, owner_id: uuid.UUID) -> None:
        self._wrapping_keys.pop(owner_id)
        self._absent.put(owner_id, True)

    def new_key_id(self) -> uuid.UUID:
        """An id for a new key whose wrapping key is stored already, taken from a stock
        that a thread refills: creating the key then waits on no database (on the event
        loop, where writer commands run). Unused stock is deleted by ``close``."""
        with self._lock:
            taken = self._stock.popleft() if self._stock else None
            refill = len(self._stock) < STOCK_LOW and not self._stocking
            self._stocking = self._stocking or refill
        if refill:
            threading.Thread(target=self._refill_stock, name="vault-stock", daemon=True).start()
        if taken is None:
            return uuid.uuid4()  # new_material stores its wrapping key itself
        owner_id, key = taken
        self._keep_wrapping_key(owner_id, key)
        return owner_id

    def _refill_stock(self) -> None:
        try:
            fresh = [(uuid.uuid4(), AESGCM.generate_key(256)) for _ in range(STOCK_SIZE)]
            rows = [self._row(owner_id, key) for owner_id, key in fresh]
            self._rows.insert_many(rows)
            with self._lock:
                self._stock.extend(fresh)
        except Exception as error:  # new keys then store their wrapping keys themselves
            log.warning("wrapping key stock not refilled: %s", type(error).__name__)
        finally:
            with self._lock:
                self._stocking = False

    def close(self) -> None:
        """Delete the stock's unused wrapping keys (they wrap nothing)."""
        with self._lock:
            unused, self._stock = [owner_id for owner_id, _ in self._stock], deque()
        if not unused:
            return
        try:
            self._rows.delete(unused)
        except Exception as error:  # they wrap nothing: left behind, they cost a row each
            log.warning("%d unused wrapping key(s) not deleted: %s", len(unused), error)

    # --- key material ------------------------------------------------------------
    def new_material(
        self,
        key_id: uuid.UUID,
        *,
        version: int,
        now: datetime,
        rotation_type: str | None,
        plaintext: bytes | None = None,
        material_id: str | None = None,
        imported: bool = False,
    ) -> KeyMaterial:
        """Wrap ``plaintext`` (default: fresh AES-256 material) as ``key_id``'s material.

        Any material: AES or HMAC key bytes, a PKCS#8 private key. Imported material gets
        a wrapping key of its own, so that deleting or expiring it shreds only it.
        """
        material_id = material_id or secrets.token_hex(32)
        if imported:
            wrapping_key = self._material_wrapping_key(key_id, material_id)
        elif version == 1:
            wrapping_key = self._new_key_wrapping_key(key_id)
        else:
            wrapping_key = self._wrapping_key(key_id, create=True)
        if wrapping_key is None:
            raise RootKeyError(f"key {key_id} has been shredded")
        if plaintext is None:
            plaintext = AESGCM.generate_key(256)
        nonce = secrets.token_bytes(12)
        wrapped = nonce + wrapping_key.encrypt(
            nonce, plaintext, material_aad(key_id, version, material_id)
        )
        self._materials.put((key_id, version), plaintext)
        return KeyMaterial(version, material_id, wrapped, now, rotation_type, imported)

    def _new_key_wrapping_key(self, key_id: uuid.UUID) -> AESGCM | None:
        """A new key's wrapping key: from the stock (new_key_id), else stored now. A new
        key's id changes each time its command runs, so its creation cannot be left to the
        writer: an id from new_key_id is what keeps the event loop from waiting here."""
        cached = self._wrapping_keys.get(key_id)
        if cached is not None:
            return AESGCM(cached.key)
        return self._read_wrapping_key(key_id, create=True)

    def cipher(self, key_id: uuid.UUID, material: KeyMaterial) -> AESGCM | None:
        """The AES-GCM cipher of one material version; None once the key is shredded."""
        plaintext = self.unwrap_material(key_id, material)
        return AESGCM(plaintext) if plaintext is not None else None

    def unwrap_material(self, key_id: uuid.UUID, material: KeyMaterial) -> bytes | None:
        """One material version's bytes; None once it (or its key) is shredded."""
        cached = self._materials.get((key_id, material.version))
        if cached is not None:
            self._material_hits.inc()
            return cached
        self._material_misses.inc()
        owner = material_owner(key_id, material)
        aad = material_aad(key_id, material.version, material.material_id)
        wrapped = material.wrapped
        for _attempt in range(2):
            wrapping_key = self._wrapping_key(owner)
            if wrapping_key is None:
                return None
            try:
                plaintext = wrapping_key.decrypt(wrapped[:12], wrapped[12:], aad)
            except InvalidTag:
                # Re-imported material has a new wrapping key: drop the cached one and read
                # it again, unless it was read just now.
                held = self._wrapping_keys.pop(owner)
                if held is not None and time.monotonic() - held.read_at < FRESH_SECONDS:
                    self._wrapping_keys.put(owner, held)
                    return None
                continue
            self._materials.put((key_id, material.version), plaintext)
            return plaintext
        return None

    def _material_wrapping_key(self, key_id: uuid.UUID, material_id: str) -> AESGCM | None:
        """The wrapping key of one imported material, created (or, after it was shredded by
        a deletion or expiry, created anew) for a fresh import."""
        owner = uuid.uuid5(key_id, "imported:" + material_id)
        if _on_event_loop():
            cached = self._wrapping_keys.get(owner)
            if cached is None or not self._done_for(IMPORT, owner):
                self._defer(_Deferred(IMPORT, owner, parent=key_id))
            return AESGCM(cached.key)
        self._rows.replace_imported(self._new_row(owner, key_id))
        self._wrapping_keys.pop(owner)
        return self._wrapping_key(owner)

    def shred_material(self, key_id: uuid.UUID, material: KeyMaterial, now: datetime) -> None:
        """Destroy one imported material's wrapping key (DeleteImportedKeyMaterial, expiry)."""
        owner = material_owner(key_id, material)
        if owner == key_id:
            raise ValueError("only imported material can be shredded on its own")
        if _on_event_loop():
            if not self._done_for(SHRED_IMPORTED, owner):
                self._defer(_Deferred(SHRED_IMPORTED, owner, parent=key_id, at=now))
        else:
            self._rows.shred(owner, now)
        self._drop(owner)
        self._materials.pop((key_id, material.version))

    def seal_for_key(self, key_id: uuid.UUID, label: bytes, data: bytes) -> bytes:
        """Wrap a secret that belongs to a key (an import wrapping key) under the key's
        wrapping key: it is shredded with the key."""
        wrapping_key = self._wrapping_key(key_id, create=True)
        if wrapping_key is None:
            raise RootKeyError(f"key {key_id} has been shredded")
        nonce = secrets.token_bytes(12)
        return nonce + wrapping_key.encrypt(nonce, data, b"keyledger:" + label + key_id.bytes)

    def open_for_key(self, key_id: uuid.UUID, label: bytes, wrapped: bytes) -> bytes | None:
        wrapping_key = self._wrapping_key(key_id)
        if wrapping_key is None:
            return None
        aad = b"keyledger:" + label + key_id.bytes
        return wrapping_key.decrypt(wrapped[:12], wrapped[12:], aad)

    def shred(self, key_id: uuid.UUID, now: datetime) -> None:
        """Destroy the key's wrapping key: no byte anywhere opens its material again."""
        if not _on_event_loop():
            for owner in self._rows.shred_key(key_id, now):
                self._drop(owner)
        elif not self._done_for(SHRED, key_id):
            self._defer(_Deferred(SHRED, key_id, at=now))
        self._drop(key_id)
        self._materials.pop_where(lambda cache_key, _: cache_key[0] == key_id)

    # --- access key secrets ------------------------------------------------------
    def wrap_secret(self, access_key_id: str, secret: str) -> bytes:
        wrapping_key = self._wrapping_key(IDENTITY_WRAPPING_KEY_ID, create=True)
        assert wrapping_key is not None
        nonce = secrets.token_bytes(12)
        aad = b"keyledger:secret:" + access_key_id.encode()
        return nonce + wrapping_key.encrypt(nonce, secret.encode(), aad)

    def unwrap_secret(self, access_key_id: str, wrapped: bytes) -> str:
        wrapping_key = self._wrapping_key(IDENTITY_WRAPPING_KEY_ID)
        if wrapping_key is None:
            raise RootKeyError("the identity wrapping key is missing")
        aad = b"keyledger:secret:" + access_key_id.encode()
        return wrapping_key.decrypt(wrapped[:12], wrapped[12:], aad).decode()

    # --- the ledger's signing key ------------------------------------------------
    def ledger_signing_seed(self) -> bytes:
        """The 32-byte seed of the ledger's Ed25519 checkpoint-signing key, made (and
        stored wrapped under the root key) the first time any process asks. Blocks: call
        it from a thread, never on the event loop."""
        if _on_event_loop():
            raise RuntimeError("ledger_signing_seed reads the database: call it off the loop")
        owner = LEDGER_SIGNING_KEY_OWNER
        wrapped = self._rows.read(owner, create=self._new_row(owner))
        if wrapped is None:
            raise RootKeyError("the ledger's signing key has been destroyed")
        return self._unwrap_under_root(owner, bytes(wrapped))

    # --- grant tokens --------------------------------------------------------------
    def grant_token_mac(self, payload: bytes) -> bytes:
        """HMAC-SHA256 of a grant token's payload, under a secret stored wrapped like a
        wrapping key (so it outlives a root-key rotation, as AWS's grant tokens do)."""
        if self._grant_token_key is None:
            if _on_event_loop():
                raise RootKeyError("the vault has not been started (check_root_key)")
            self._load_grant_token_key()
        mac = self._grant_token_key.copy()
        mac.update(payload)
        return mac.digest()

    def session_token_mac(self, payload: bytes) -> bytes:
        """HMAC-SHA256 for STS session tokens and their derived secrets (domain/sts.py):
        under the grant-token secret with a label of its own, so every process holding the
        root key verifies a session without a read, and nobody without it forges one."""
        if self._session_token_key is None:
            if _on_event_loop():
                raise RootKeyError("the vault has not been started (check_root_key)")
            self._load_grant_token_key()
        mac = self._session_token_key.copy()
        mac.update(payload)
        return mac.digest()

    # --- root key rotation -------------------------------------------------------
    def rows_to_rewrap(self) -> int:
        """Wrapping-key rows not yet under the current root key (a rotation's work left)."""
        return self._rows.count_sealed_by_others((self._root.key_id,))

    @property
    def previous_root_key_ids(self) -> tuple[str, ...]:
        return tuple(i for i in self._root.known_ids if i != self._root.key_id)

    def rewrap_batch(self, limit: int, *, wait: bool = False) -> int:
        """Re-wrap up to ``limit`` rows under the current root key (unwrapped under a
        previous one); ciphertexts and events are untouched. Blocks: off the event loop.
        Rows another transaction holds are skipped, or with ``wait`` waited for."""

        def rewrap(owner_id: uuid.UUID, wrapped: bytes) -> bytes:
            return self._root.wrap(owner_id, self._root.unwrap(owner_id, wrapped))

        return self._rows.rewrap_batch(rewrap, self._root.key_id, limit, wait=wait)

    def retire_previous_root_keys(self) -> list[str]:
        """Destroy the previous root keys the provider keeps that no row needs (a Shamir
        seal's old keys); their ids. Blocks: off the event loop."""
        return retire_previous(self._root)


@dataclass(frozen=True, slots=True)
class _Unwrapped:
    key: bytes
    read_at: float  # time.monotonic() when it was read (or made)


@dataclass(frozen=True, slots=True)
class _Deferred:
    """Database work a writer command needs, left to the writer (Vault._defer)."""

    kind: str  # READ, CREATE, IMPORT, SHRED or SHRED_IMPORTED
    owner: uuid.UUID
    parent: uuid.UUID | None = None  # the key an imported material belongs to
    at: datetime | None = None  # when it is shredded


def _on_event_loop() -> bool:
    """Whether this thread runs an event loop (writer commands run on one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
