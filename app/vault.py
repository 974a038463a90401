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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from domain.keys import KeyMaterial

log = logging.getLogger("keyledger.vault")

ROOT_KEY_BYTES = 32
IDENTITY_WRAPPING_KEY_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
MATERIAL_CACHE_SIZE = 200_000


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


def material_aad(key_id: uuid.UUID, version: int, material_id: str) -> bytes:
    return b"keyledger:material:" + key_id.bytes + struct.pack(">I", version) + material_id.encode()


class Vault:
    """Wraps, unwraps and shreds. Unwrapped material exists only in this process's memory."""

    def __init__(self, root_key: bytes, pool: ConnectionPool) -> None:
        self._root = AESGCM(root_key)
        self._root_key_id = root_key_id(root_key)
        self._pool = pool
        # Raw key bytes, not AESGCM objects: each of those holds ~2.4 KB of native state,
        # while building one per use costs ~1.5 us.
        self._wrapping_keys: dict[uuid.UUID, bytes] = {}
        self._materials: OrderedDict[tuple[uuid.UUID, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

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
        cached = self._wrapping_keys.get(owner_id)
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
        with self._lock:
            self._wrapping_keys[owner_id] = key
        return AESGCM(key)

    # --- key material ------------------------------------------------------------
    def new_material(
        self, key_id: uuid.UUID, *, version: int, now: datetime, rotation_type: str | None
    ) -> KeyMaterial:
        """Generate fresh AES-256 material for ``key_id``, returned wrapped."""
        wrapping_key = self._wrapping_key(key_id, create=True)
        if wrapping_key is None:
            raise RootKeyError(f"key {key_id} has been shredded")
        material_id = secrets.token_hex(32)
        plaintext = AESGCM.generate_key(256)
        nonce = secrets.token_bytes(12)
        wrapped = nonce + wrapping_key.encrypt(
            nonce, plaintext, material_aad(key_id, version, material_id)
        )
        self._remember((key_id, version), plaintext)
        return KeyMaterial(version, material_id, wrapped, now, rotation_type)

    def cipher(self, key_id: uuid.UUID, material: KeyMaterial) -> AESGCM | None:
        """The AES-GCM cipher of one material version; None once the key is shredded."""
        cached = self._materials.get((key_id, material.version))
        if cached is not None:
            return AESGCM(cached)
        wrapping_key = self._wrapping_key(key_id)
        if wrapping_key is None:
            return None
        wrapped = material.wrapped
        plaintext = wrapping_key.decrypt(
            wrapped[:12], wrapped[12:], material_aad(key_id, material.version, material.material_id)
        )
        self._remember((key_id, material.version), plaintext)
        return AESGCM(plaintext)

    def _remember(self, cache_key: tuple[uuid.UUID, int], material: bytes) -> None:
        with self._lock:
            self._materials[cache_key] = material
            if len(self._materials) > MATERIAL_CACHE_SIZE:
                self._materials.popitem(last=False)

    def shred(self, key_id: uuid.UUID, now: datetime) -> None:
        """Destroy the key's wrapping key: no byte anywhere opens its material again."""
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE wrapping_keys SET wrapped_key = NULL, destroyed_at = %s "
                "WHERE owner_id = %s",
                (now, key_id),
            )
        with self._lock:
            self._wrapping_keys.pop(key_id, None)
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
