"""Key material custody: the root key, per-key wrapping keys, and crypto-shredding.

Three layers, so that events can be immutable while deletion is real:

* the root key lives outside the database (env var or file);
* each KMS key has a wrapping key, stored wrapped under the root key in the mutable
  ``wrapping_keys`` table;
* each material version is stored, in events, wrapped under its key's wrapping key.

Destroying a key's wrapping key (crypto-shredding) makes every version of its material,
and so every ciphertext under it, undecryptable, while the event history stays intact.
Rotating the root key re-wraps only the ``wrapping_keys`` rows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import struct
import threading
import uuid
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from domain.keys import KeyMaterial

log = logging.getLogger("keyledger.vault")

ROOT_KEY_BYTES = 32
IDENTITY_WRAPPING_KEY_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
DEFAULT_CACHE_SIZE = 10_000  # keys whose wrapping key and materials stay unwrapped


class RootKeyError(RuntimeError):
    """The root key is missing, malformed, or not the one the database was sealed with."""


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
            "!" * 78, path, "!" * 78,
        )  # fmt: skip
    return _decode_root_key(path.read_text().strip(), str(path))


def _decode_root_key(value: str, source: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        raise RootKeyError(f"the root key in {source} is not base64") from None
    if len(key) != ROOT_KEY_BYTES:
        raise RootKeyError(f"the root key in {source} must be {ROOT_KEY_BYTES} bytes")
    return key


def root_key_id(root_key: bytes) -> str:
    """A fingerprint that names the root key without revealing it."""
    return hmac.new(root_key, b"keyledger root key id", hashlib.sha256).hexdigest()[:16]


def material_owner(key_id: uuid.UUID, material: KeyMaterial) -> uuid.UUID:
    """Whose wrapping key wraps ``material``: the key's, or its own when imported."""
    if material.imported:
        return uuid.uuid5(key_id, "imported:" + material.material_id)
    return key_id


def material_aad(key_id: uuid.UUID, version: int, material_id: str) -> bytes:
    return b"keyledger:material:" + key_id.bytes + struct.pack(">I", version) + material_id.encode()


class Vault:
    """Wraps, unwraps and shreds. Unwrapped material exists only in this process's memory."""

    def __init__(
        self, root_key: bytes, pool: ConnectionPool, *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self._root = AESGCM(root_key)
        self._root_key_id = root_key_id(root_key)
        self._pool = pool
        # Raw key bytes, not AESGCM objects: each of those holds ~2.4 KB of native state,
        # while building one per use costs ~1.5 us.
        # Both least-recently-used and bounded (as the writer's key cache is), so a
        # process's memory does not grow with the number of keys ever used.
        self._cache_size = cache_size
        self._wrapping_keys: OrderedDict[uuid.UUID, bytes] = OrderedDict()
        self._materials: OrderedDict[tuple[uuid.UUID, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        # Grant tokens are MACed under a key derived from the root key (see grant_token_mac).
        self._grant_token_key = hmac.new(root_key, b"keyledger grant tokens", hashlib.sha256)

    # --- start-up ----------------------------------------------------------------
    def check_root_key(self) -> None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM wrapping_keys WHERE root_key_id <> %s", (self._root_key_id,)
            ).fetchone()
        if row and row[0]:
            raise RootKeyError(
                "this database was sealed with a different root key; refusing to start "
                f"(this root key's id is {self._root_key_id})"
            )

    # --- wrapping keys -----------------------------------------------------------
    def _wrap_under_root(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._root.encrypt(nonce, key, b"keyledger:wrapping-key:" + owner_id.bytes)

    def _unwrap_under_root(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        aad = b"keyledger:wrapping-key:" + owner_id.bytes
        try:
            return self._root.decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag:
            raise RootKeyError(
                f"wrapping key {owner_id} does not open under the root key"
            ) from None

    def _wrapping_key(self, owner_id: uuid.UUID, *, create: bool = False) -> AESGCM | None:
        cached = _recall(self._wrapping_keys, owner_id)
        if cached is not None:
            return AESGCM(cached)
        with self._pool.connection() as conn:
            if create:
                conn.execute(
                    "INSERT INTO wrapping_keys (owner_id, wrapped_key, root_key_id) "
                    "VALUES (%s, %s, %s) ON CONFLICT (owner_id) DO NOTHING",
                    (owner_id, self._wrap_under_root(owner_id, AESGCM.generate_key(256)),
                     self._root_key_id),
                )  # fmt: skip
            row = conn.execute(
                "SELECT wrapped_key FROM wrapping_keys WHERE owner_id = %s", (owner_id,)
            ).fetchone()
        if row is None or row[0] is None:
            return None  # never created, or shredded
        key = self._unwrap_under_root(owner_id, bytes(row[0]))
        self._keep_wrapping_key(owner_id, key)
        return AESGCM(key)

    def _keep_wrapping_key(self, owner_id: uuid.UUID, key: bytes) -> None:
        with self._lock:
            self._wrapping_keys[owner_id] = key
            self._wrapping_keys.move_to_end(owner_id)
            while len(self._wrapping_keys) > self._cache_size:
                self._wrapping_keys.popitem(last=False)

    async def prefetch(self, conn: Any, owner_ids: list[uuid.UUID]) -> None:
        """Unwrap, in one query on the writer's connection, the wrapping keys of keys just
        read into the writer's cache, so their first use reads nothing more."""
        missing = [owner_id for owner_id in owner_ids if owner_id not in self._wrapping_keys]
        if not missing:
            return
        cursor = await conn.execute(
            "SELECT owner_id, wrapped_key FROM wrapping_keys"
            " WHERE owner_id = ANY(%s) AND wrapped_key IS NOT NULL",
            (missing,),
        )
        for owner_id, wrapped in await cursor.fetchall():
            self._keep_wrapping_key(owner_id, self._unwrap_under_root(owner_id, bytes(wrapped)))

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
        self._remember((key_id, version), plaintext)
        return KeyMaterial(version, material_id, wrapped, now, rotation_type, imported)

    def cipher(self, key_id: uuid.UUID, material: KeyMaterial) -> AESGCM | None:
        """The AES-GCM cipher of one material version; None once the key is shredded."""
        plaintext = self.unwrap_material(key_id, material)
        return AESGCM(plaintext) if plaintext is not None else None

    def unwrap_material(self, key_id: uuid.UUID, material: KeyMaterial) -> bytes | None:
        """One material version's bytes; None once it (or its key) is shredded."""
        cached = _recall(self._materials, (key_id, material.version))
        if cached is not None:
            return cached
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
                # Re-imported material has a new wrapping key: drop the cached one, re-read.
                with self._lock:
                    self._wrapping_keys.pop(owner, None)
                continue
            self._remember((key_id, material.version), plaintext)
            return plaintext
        return None

    def _material_wrapping_key(self, key_id: uuid.UUID, material_id: str) -> AESGCM | None:
        """The wrapping key of one imported material, created (or, after it was shredded by
        a deletion or expiry, created anew) for a fresh import."""
        owner = uuid.uuid5(key_id, "imported:" + material_id)
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO wrapping_keys (owner_id, wrapped_key, root_key_id, parent_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (owner_id) DO UPDATE SET "
                "wrapped_key = EXCLUDED.wrapped_key, root_key_id = EXCLUDED.root_key_id, "
                "destroyed_at = NULL WHERE wrapping_keys.wrapped_key IS NULL",
                (owner, self._wrap_under_root(owner, AESGCM.generate_key(256)),
                 self._root_key_id, key_id),
            )  # fmt: skip
        with self._lock:
            self._wrapping_keys.pop(owner, None)
        return self._wrapping_key(owner)

    def shred_material(self, key_id: uuid.UUID, material: KeyMaterial, now: datetime) -> None:
        """Destroy one imported material's wrapping key (DeleteImportedKeyMaterial, expiry)."""
        owner = material_owner(key_id, material)
        if owner == key_id:
            raise ValueError("only imported material can be shredded on its own")
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE wrapping_keys SET wrapped_key = NULL, destroyed_at = %s "
                "WHERE owner_id = %s",
                (now, owner),
            )
        with self._lock:
            self._wrapping_keys.pop(owner, None)
            self._materials.pop((key_id, material.version), None)

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

    def _remember(self, cache_key: tuple[uuid.UUID, int], material: bytes) -> None:
        with self._lock:
            self._materials[cache_key] = material
            self._materials.move_to_end(cache_key)
            # Room for a rotated key's older versions beside every cached key's current one.
            while len(self._materials) > 2 * self._cache_size:
                self._materials.popitem(last=False)

    def shred(self, key_id: uuid.UUID, now: datetime) -> None:
        """Destroy the key's wrapping key: no byte anywhere opens its material again."""
        with self._pool.connection() as conn:
            # parent_id: the wrapping keys of the key's imported materials go with it.
            owners = conn.execute(
                "UPDATE wrapping_keys SET wrapped_key = NULL, destroyed_at = %s "
                "WHERE owner_id = %s OR parent_id = %s RETURNING owner_id",
                (now, key_id, key_id),
            ).fetchall()
        with self._lock:
            self._wrapping_keys.pop(key_id, None)
            for (owner,) in owners:
                self._wrapping_keys.pop(owner, None)
            for cache_key in [k for k in self._materials if k[0] == key_id]:
                del self._materials[cache_key]

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

    # --- grant tokens --------------------------------------------------------------
    def grant_token_mac(self, payload: bytes) -> bytes:
        """HMAC-SHA256 of a grant token's payload; tokens die with a root-key rotation."""
        mac = self._grant_token_key.copy()
        mac.update(payload)
        return mac.digest()

    # --- root key rotation -------------------------------------------------------
    def rewrap_all(self, new_root_key: bytes) -> int:
        """Re-wrap every live wrapping key under ``new_root_key``; ciphertexts are untouched."""
        new_root, new_id = AESGCM(new_root_key), root_key_id(new_root_key)
        count = 0
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT owner_id, wrapped_key FROM wrapping_keys "
                "WHERE wrapped_key IS NOT NULL FOR UPDATE"
            ).fetchall()
            for owner_id, wrapped in rows:
                key = self._unwrap_under_root(owner_id, bytes(wrapped))
                nonce = secrets.token_bytes(12)
                aad = b"keyledger:wrapping-key:" + owner_id.bytes
                conn.execute(
                    "UPDATE wrapping_keys SET wrapped_key = %s, root_key_id = %s "
                    "WHERE owner_id = %s",
                    (nonce + new_root.encrypt(nonce, key, aad), new_id, owner_id),
                )
                count += 1
        return count


def _recall(cache: OrderedDict[Any, bytes], key: Any) -> bytes | None:
    """A cached value, marked most recently used. Lock-free: another thread may evict
    the entry between the two steps, which only makes this a miss."""
    value = cache.get(key)
    if value is not None:
        with contextlib.suppress(KeyError):
            cache.move_to_end(key)
    return value
