"""The Shamir-sealed root key (issue 14; docs/key-custody.md): Vault's and OpenBao's design.

``keyledger operator init`` makes a 32-byte root key and a 32-byte unseal key, stores the
root key encrypted under the unseal key (AES-256-GCM; table ``root_key_seal``), splits the
unseal key into N shares (any T of which rebuild it: domain/shamir.py) and prints them once.
Neither the unseal key nor a share is ever stored or logged, so the database alone (or a
backup of it) opens nothing.

`ShamirRootKey` is a `RootKey` that starts sealed: wrap and unwrap raise SealedError until
T distinct shares were given (``submit``); then it opens the sealed root key and holds it
as an `AesGcmRootKey` until ``seal`` drops it. A set of shares that does not open the root
key (a wrong or foreign share among them) is refused and the shares given so far are
forgotten: the operators start again, as with Vault.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.infrastructure.root_keys import (
    NONCE_BYTES,
    ROOT_KEY_BYTES,
    AesGcmRootKey,
    RootKeyError,
    root_key_id,
)
from domain import shamir
from domain.errors import AlreadyExistsError, SealedError, ValidationError

log = logging.getLogger("keyledger.seal")

UNSEAL_KEY_BYTES = 32
SHARE_BYTES = UNSEAL_KEY_BYTES + 1  # y bytes || x
DEFAULT_SHARES, DEFAULT_THRESHOLD = 5, 3  # vault operator init's defaults
SEAL_AAD = b"keyledger:root-key-seal:"

SELECT_SEAL = "SELECT root_key_id, sealed_key, shares, threshold FROM root_key_seal"
INSERT_SEAL = (
    "INSERT INTO root_key_seal (root_key_id, sealed_key, shares, threshold)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (singleton) DO NOTHING RETURNING root_key_id"
)


class AlreadyInitializedError(AlreadyExistsError):
    """``operator init`` on a database that has its sealed root key already."""


class IncorrectSharesError(ValidationError):
    """The shares given combine to a key that does not open the sealed root key."""


@dataclass(frozen=True, slots=True)
class SealRecord:
    """The ``root_key_seal`` row: never the root key, never the unseal key."""

    root_key_id: str
    sealed_key: bytes  # nonce || AES-256-GCM(unseal key, root key, SEAL_AAD || root_key_id)
    shares: int
    threshold: int


@dataclass(frozen=True, slots=True)
class SealStatus:
    sealed: bool
    progress: int  # distinct shares held towards the threshold (0 once unsealed)
    threshold: int
    shares: int

    def public(self) -> dict[str, Any]:
        return {
            "sealed": self.sealed,
            "progress": self.progress,
            "threshold": self.threshold,
            "shares": self.shares,
        }


def read_seal(conn: psycopg.Connection[Any]) -> SealRecord | None:
    row = conn.execute(SELECT_SEAL).fetchone()
    if row is None:
        return None
    return SealRecord(str(row[0]), bytes(row[1]), int(row[2]), int(row[3]))


def _seal_aad(key_id: str) -> bytes:
    return SEAL_AAD + key_id.encode()


def initialize(
    database_url: str, shares: int = DEFAULT_SHARES, threshold: int = DEFAULT_THRESHOLD
) -> tuple[SealRecord, list[bytes]]:
    """Make and store the sealed root key; the unseal key's shares, to be shown once."""
    if not 2 <= threshold <= shares <= shamir.MAX_PARTS:
        raise shamir.InvalidSplitError(
            f"need 2 <= threshold <= shares <= {shamir.MAX_PARTS} (got {threshold} of {shares})"
        )
    root_key = secrets.token_bytes(ROOT_KEY_BYTES)
    unseal_key = AESGCM.generate_key(256)
    key_id = root_key_id(root_key)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = nonce + AESGCM(unseal_key).encrypt(nonce, root_key, _seal_aad(key_id))
    record = SealRecord(key_id, sealed, shares, threshold)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        if read_seal(conn) is not None:
            raise AlreadyInitializedError("the root key is initialized already")
        others = conn.execute(
            "SELECT count(*) FROM wrapping_keys WHERE root_key_id <> %s", (key_id,)
        ).fetchone()
        if others and others[0]:
            raise AlreadyInitializedError(
                f"this database holds {others[0]} wrapping key(s) under another root key:"
                " init seals the root key of a new deployment (docs/key-custody.md)"
            )
        inserted = conn.execute(
            INSERT_SEAL, (key_id, sealed, shares, threshold)
        ).fetchone()  # a concurrent init lost the race: ON CONFLICT returned nothing
        if inserted is None:
            raise AlreadyInitializedError("the root key is initialized already")
    return record, shamir.split(unseal_key, shares, threshold)


def load_seal(database_url: str) -> SealRecord:
    with psycopg.connect(database_url, autocommit=True) as conn:
        record = read_seal(conn)
    if record is None:
        raise RootKeyError(
            "root_key_provider is shamir but this database has no sealed root key:"
            " run `keyledger operator init` first"
        )
    return record


class ShamirRootKey:
    """The root key, sealed until T shares of the unseal key were given (thread-safe)."""

    def __init__(self, record: SealRecord) -> None:
        self.record = record
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._held: AesGcmRootKey | None = None

    @property
    def key_id(self) -> str:
        return self.record.root_key_id

    @property
    def known_ids(self) -> tuple[str, ...]:
        return (self.record.root_key_id,)

    @property
    def sealed(self) -> bool:
        return self._held is None

    def status(self) -> SealStatus:
        with self._lock:
            return self._status()

    def _status(self) -> SealStatus:
        progress = 0 if self._held is not None else len(self._pending)
        return SealStatus(self._held is None, progress, self.record.threshold, self.record.shares)

    def submit(self, share: bytes) -> tuple[SealStatus, bool]:
        """Take one share; (the status after it, whether this share unsealed). A malformed
        or repeated share is refused (ShamirError) and the others kept; a full set that
        does not open the root key is refused (IncorrectSharesError) and forgotten."""
        if len(share) != SHARE_BYTES:
            raise shamir.InvalidShareError(f"an unseal key share is {SHARE_BYTES} bytes")
        with self._lock:
            if self._held is not None:
                return self._status(), False
            shamir.check_shares([*self._pending, share])
            self._pending.append(share)
            if len(self._pending) < self.record.threshold:
                return self._status(), False
            given, self._pending = self._pending, []
            self._held = self._open(given)
            return self._status(), True

    def _open(self, shares: Sequence[bytes]) -> AesGcmRootKey:
        unseal_key = shamir.combine(shares)
        sealed = self.record.sealed_key
        try:
            root_key = AESGCM(unseal_key).decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _seal_aad(self.key_id)
            )
        except InvalidTag:
            raise IncorrectSharesError(
                "these unseal key shares do not open the root key; the shares given so far"
                " are forgotten: start the unseal again"
            ) from None
        if root_key_id(root_key) != self.key_id:  # the AAD binds it; belt and braces
            raise IncorrectSharesError("the unsealed root key is not the one recorded")
        return AesGcmRootKey(root_key)

    def reset(self) -> None:
        """Forget the shares given so far (a wrong one among them)."""
        with self._lock:
            self._pending = []

    def seal(self) -> bool:
        """Forget the root key and any shares given; whether it was unsealed."""
        with self._lock:
            was_open, self._held, self._pending = self._held is not None, None, []
        return was_open

    def _key(self) -> AesGcmRootKey:
        held = self._held
        if held is None:
            raise SealedError()
        return held

    def wrap(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        return self._key().wrap(owner_id, key)

    def unwrap(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        return self._key().unwrap(owner_id, wrapped)
