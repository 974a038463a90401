"""The Shamir-sealed root key (issue 14; docs/key-custody.md): Vault's and OpenBao's design.

``keyledger operator init`` makes a 32-byte root key and a 32-byte unseal key, stores the
root key encrypted under the unseal key (AES-256-GCM; table ``root_key_seal``), splits the
unseal key into N shares (any T of which rebuild it: domain/shamir.py) and prints them once.
Neither the unseal key nor a share is ever stored or logged, so the database alone (or a
backup of it) opens nothing.

Three parts:

* `Seal`, the ``root_key_seal`` rows: the current sealed root key; during a rotation from
  one Shamir set to another, the previous root key sealed under the same unseal key; and a
  *pending* new set (``init --rotate``) until its shares have been verified.
* `UnsealAuthority`: one per service (the supervisor's under ``--workers N``, else the
  serving process's). It takes the shares, combines them once T were given, checks the
  result opens the seal (a wrong or foreign share among them: refused, and every share
  given so far forgotten, as Vault does), and keeps the unseal key while the service is
  unsealed so that a worker restarted later can be given it. Shares given while unsealed
  verify the pending set; it becomes the current one (`switch_to_pending`) only when an
  administrator's signed rotation names it: the pending row is written to the database by
  ``init --rotate`` directly, so whoever could write the database must not be able to make
  the service re-seal its root key under an unseal key of their own.
* `ShamirRootKey`: the `RootKey` a process wraps and unwraps with. Sealed until given the
  unseal key (`open`); ``forget`` drops what it opened.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.infrastructure.root_keys import (
    NONCE_BYTES,
    ROOT_KEY_BYTES,
    AesGcmRootKey,
    RootKey,
    RootKeyError,
    RotatingRootKey,
    parts,
    root_key_id,
    wrap_with_id,
)
from domain import shamir
from domain.custody import NoPendingSetError, RotationUnderWayError
from domain.errors import AlreadyExistsError, SealedError, ValidationError

log = logging.getLogger("keyledger.seal")

UNSEAL_KEY_BYTES = 32
SHARE_BYTES = UNSEAL_KEY_BYTES + 1  # y bytes || x
DEFAULT_SHARES, DEFAULT_THRESHOLD = 5, 3  # vault operator init's defaults
SEAL_AAD = b"keyledger:root-key-seal:"
CURRENT, PREVIOUS, PENDING, DESTROYED = "current", "previous", "pending", "destroyed"

SELECT_SEAL = (
    "SELECT root_key_id, sealed_key, shares, threshold, state FROM root_key_seal"
    " WHERE state <> 'destroyed' ORDER BY created_at, root_key_id"
)
INSERT_SEAL = (
    "INSERT INTO root_key_seal (root_key_id, sealed_key, shares, threshold, state)"
    " VALUES (%s, %s, %s, %s, %s)"
)
# Rows wrapped under none of the given root key ids.
COUNT_OTHERS = "SELECT count(*) FROM wrapping_keys WHERE root_key_id <> ALL(%s)"


class AlreadyInitializedError(AlreadyExistsError):
    """``operator init`` on a database that has its sealed root key already."""


class IncorrectSharesError(ValidationError):
    """The shares given combine to a key that does not open the sealed root key."""


@dataclass(frozen=True, slots=True)
class SealRecord:
    """One ``root_key_seal`` row: never the root key, never the unseal key."""

    root_key_id: str
    sealed_key: bytes  # nonce || AES-256-GCM(unseal key, root key, SEAL_AAD || root_key_id)
    shares: int
    threshold: int
    state: str = CURRENT


@dataclass(frozen=True, slots=True)
class Seal:
    """The seal: its current root key, the previous ones rows may still be under (sealed
    under the same unseal key), and a pending new set (under an unseal key of its own)."""

    current: SealRecord
    previous: tuple[SealRecord, ...] = ()
    pending: SealRecord | None = None

    @classmethod
    def of(cls, records: Sequence[SealRecord]) -> Seal | None:
        current = [r for r in records if r.state == CURRENT]
        if not current:
            return None
        pending = [r for r in records if r.state == PENDING]
        previous = tuple(r for r in records if r.state == PREVIOUS)
        return cls(current[0], previous, pending[0] if pending else None)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The root keys the seal opens (the pending set's is not in use yet)."""
        return (self.current.root_key_id, *(r.root_key_id for r in self.previous))


@dataclass(frozen=True, slots=True)
class SetProgress:
    """A pending new set's verification: its shares given so far, of its threshold, and
    whether T of them opened its root key."""

    root_key_id: str
    progress: int
    threshold: int
    shares: int
    verified: bool = False


@dataclass(frozen=True, slots=True)
class SealStatus:
    sealed: bool
    progress: int  # distinct shares held towards the threshold (0 once unsealed)
    threshold: int
    shares: int
    new_set: SetProgress | None = None

    def public(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "sealed": self.sealed,
            "progress": self.progress,
            "threshold": self.threshold,
            "shares": self.shares,
        }
        if self.new_set is not None:
            answer["new_set"] = {
                "root_key_id": self.new_set.root_key_id,
                "progress": self.new_set.progress,
                "threshold": self.new_set.threshold,
                "shares": self.new_set.shares,
                "verified": self.new_set.verified,
            }
        return answer


# --- the rows ----------------------------------------------------------------------------
def read_seal(conn: psycopg.Connection[Any], *, lock: bool = False) -> Seal | None:
    query = SELECT_SEAL + (" FOR UPDATE" if lock else "")
    records = [
        SealRecord(str(key_id), bytes(sealed), int(shares), int(threshold), str(state))
        for key_id, sealed, shares, threshold, state in conn.execute(query).fetchall()
    ]
    return Seal.of(records)


def load_seal(database_url: str) -> Seal:
    seal = find_seal(database_url)
    if seal is None:
        raise RootKeyError(
            "this service needs the Shamir-sealed root key but the database has none:"
            " run `keyledger operator init` first"
        )
    return seal


def find_seal(database_url: str) -> Seal | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return read_seal(conn)


def _seal_aad(key_id: str) -> bytes:
    return SEAL_AAD + key_id.encode()


def seal_root_key(
    unseal_key: bytes, root_key: bytes, *, shares: int, threshold: int, state: str
) -> SealRecord:
    key_id = root_key_id(root_key)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = nonce + AESGCM(unseal_key).encrypt(nonce, root_key, _seal_aad(key_id))
    return SealRecord(key_id, sealed, shares, threshold, state)


def open_sealed(record: SealRecord, unseal_key: bytes) -> bytes:
    """The root key ``record`` seals; IncorrectSharesError if ``unseal_key`` is not its."""
    sealed = record.sealed_key
    try:
        root_key = AESGCM(unseal_key).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _seal_aad(record.root_key_id)
        )
    except InvalidTag:
        raise IncorrectSharesError(
            "these unseal key shares do not open the root key; the shares given so far"
            " are forgotten: start the unseal again"
        ) from None
    if root_key_id(root_key) != record.root_key_id:  # the AAD binds it; belt and braces
        raise IncorrectSharesError("the unsealed root key is not the one recorded")
    return root_key


def _count_others(conn: psycopg.Connection[Any], key_ids: Sequence[str]) -> int:
    row = conn.execute(COUNT_OTHERS, (list(key_ids),)).fetchone()
    return int(row[0]) if row else 0


def initialize(
    database_url: str,
    shares: int = DEFAULT_SHARES,
    threshold: int = DEFAULT_THRESHOLD,
    *,
    known_ids: Sequence[str] = (),
    rotate: bool = False,
) -> tuple[SealRecord, list[bytes]]:
    """Make and store a sealed root key; the unseal key's shares, to be shown once.

    Without a seal: the current one, on a database whose rows are all under ``known_ids``
    (the file or token keys a rotation into the Shamir provider moves from). With
    ``rotate``: a pending new set beside the current one (replacing a pending set never
    verified, which nothing can be wrapped under), once no row is under a previous key."""
    if not 2 <= threshold <= shares <= shamir.MAX_PARTS:
        raise shamir.InvalidSplitError(
            f"need 2 <= threshold <= shares <= {shamir.MAX_PARTS} (got {threshold} of {shares})"
        )
    root_key = secrets.token_bytes(ROOT_KEY_BYTES)
    unseal_key = AESGCM.generate_key(256)
    state = PENDING if rotate else CURRENT
    record = seal_root_key(unseal_key, root_key, shares=shares, threshold=threshold, state=state)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("LOCK TABLE root_key_seal IN EXCLUSIVE MODE")  # one init at a time
        seal = read_seal(conn)
        if rotate:
            _check_can_rotate(conn, seal)
            conn.execute("DELETE FROM root_key_seal WHERE state = %s", (PENDING,))
        else:
            _check_can_initialize(conn, seal, [record.root_key_id, *known_ids])
        conn.execute(INSERT_SEAL, (*_row(record),))
    return record, shamir.split(unseal_key, shares, threshold)


def _row(record: SealRecord) -> tuple[str, bytes, int, int, str]:
    return (record.root_key_id, record.sealed_key, record.shares, record.threshold, record.state)


def _check_can_initialize(
    conn: psycopg.Connection[Any], seal: Seal | None, key_ids: Sequence[str]
) -> None:
    if seal is not None:
        raise AlreadyInitializedError(
            "the root key is initialized already (a new Shamir set for a root-key rotation:"
            " keyledger operator init --rotate)"
        )
    others = _count_others(conn, key_ids)
    if others:
        raise AlreadyInitializedError(
            f"this database holds {others} wrapping key(s) under a root key these settings"
            " do not name: to move it to a Shamir-sealed key, run init with the settings the"
            " service will run with (the old key in KEYLEDGER_PREVIOUS_ROOT_KEYS or"
            " KEYLEDGER_PKCS11_PREVIOUS_KEY_LABELS; docs/key-custody.md)"
        )


def _check_can_rotate(conn: psycopg.Connection[Any], seal: Seal | None) -> None:
    if seal is None:
        raise ValidationError(
            "there is no Shamir set to rotate from: run `keyledger operator init` without"
            " --rotate (docs/key-custody.md)"
        )
    if seal.previous or _count_others(conn, [seal.current.root_key_id]):
        raise RotationUnderWayError(
            "rows are still under a previous root key: finish the rotation under way first"
            " (keyledger operator rotate-root-key --endpoint ...)"
        )


def switch_to_pending(database_url: str, unseal_key: bytes, new_unseal_key: bytes) -> Seal:
    """Make the verified pending set current, in one transaction: its root key becomes the
    current one, and the root keys of the old set (``unseal_key``'s) are sealed again under
    ``new_unseal_key`` as previous keys, until the rotation has moved every row off them.
    The old set's shares open nothing afterwards."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        seal = read_seal(conn, lock=True)
        if seal is None or seal.pending is None:
            raise NoPendingSetError(
                "no new Shamir set is pending (keyledger operator init --rotate)"
            )
        pending = seal.pending
        open_sealed(pending, new_unseal_key)  # the shares verified: IncorrectSharesError
        if seal.previous or _count_others(conn, [seal.current.root_key_id]):
            raise RotationUnderWayError(
                "rows are still under a previous root key: finish that rotation first"
            )
        carried = [
            seal_root_key(
                new_unseal_key,
                open_sealed(record, unseal_key),
                shares=pending.shares,
                threshold=pending.threshold,
                state=PREVIOUS,
            )
            for record in (seal.current, *seal.previous)
        ]
        conn.execute("DELETE FROM root_key_seal WHERE state IN (%s, %s)", (CURRENT, PREVIOUS))
        conn.execute("UPDATE root_key_seal SET state = %s WHERE state = %s", (CURRENT, PENDING))
        with conn.cursor() as cursor:
            cursor.executemany(INSERT_SEAL, [_row(record) for record in carried])
        switched = read_seal(conn)
    assert switched is not None
    return switched


def retire(database_url: str, *, whole_seal: bool) -> list[str]:
    """Destroy the sealed root keys no row is under any more; their ids. Only the id of a
    destroyed key is kept (so that no process still holding it can put a new row under
    it: migration 017's trigger). The current one stays, unless the whole seal is a
    previous key (a rotation from Shamir to a file or token key): then the whole seal
    goes, a pending set included, once nothing needs it."""
    destroy = "UPDATE root_key_seal SET state = 'destroyed', sealed_key = NULL"
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        seal = read_seal(conn, lock=True)
        if seal is None:
            return []
        if whole_seal:
            used = conn.execute(
                "SELECT count(*) FROM wrapping_keys WHERE root_key_id = ANY(%s)",
                (list(seal.key_ids),),
            ).fetchone()
            if used and used[0]:
                return []
            gone = conn.execute(
                destroy + " WHERE state <> 'destroyed' RETURNING root_key_id"
            ).fetchall()
        else:
            gone = conn.execute(
                destroy + " WHERE state = 'previous' AND NOT EXISTS"
                " (SELECT 1 FROM wrapping_keys w WHERE w.root_key_id = root_key_seal.root_key_id)"
                " RETURNING root_key_id"
            ).fetchall()
    return [str(key_id) for (key_id,) in gone]


# --- the authority over the shares -----------------------------------------------------------
class UnsealAuthority:
    """Takes the unseal key's shares; holds the unseal key while the service is unsealed.

    Thread-safe. One per service, so that every worker unseals and seals together and a
    worker restarted later is given the key without the keyholders (docs/key-custody.md).
    The shares themselves are kept only until T of them were given, in memory."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._lock = threading.Lock()
        self._given: list[bytes] = []
        self._unseal_key: bytes | None = None
        self._verified: tuple[str, bytes] | None = None  # a pending set's id and unseal key
        self._seal = load_seal(database_url)

    @property
    def unseal_key(self) -> bytes | None:
        """The unseal key while unsealed (to give to a worker); None while sealed."""
        return self._unseal_key

    def status(self) -> SealStatus:
        with self._lock:
            return self._status()

    def _status(self) -> SealStatus:
        current, pending = self._seal.current, self._seal.pending
        sealed = self._unseal_key is None
        new_set = None
        if pending is not None:
            verified = self._verified is not None and self._verified[0] == pending.root_key_id
            progress = pending.threshold if verified else 0 if sealed else len(self._given)
            new_set = SetProgress(
                pending.root_key_id, progress, pending.threshold, pending.shares, verified
            )
        return SealStatus(
            sealed, len(self._given) if sealed else 0, current.threshold, current.shares, new_set
        )

    def submit(self, share: bytes) -> tuple[SealStatus, bytes | None]:
        """Take one share: (the status after it, the unseal key if this share opened the
        seal, else None). While sealed the shares are the current set's; while unsealed, a
        pending new set's, which T of them verify (none pending, or verified already:
        ignored). A malformed or repeated share is refused (ShamirError) and the others
        kept; a full set that does not open is refused (IncorrectSharesError) and
        forgotten."""
        if len(share) != SHARE_BYTES:
            raise shamir.InvalidShareError(f"an unseal key share is {SHARE_BYTES} bytes")
        with self._lock:
            self._seal = load_seal(self._url)  # an init --rotate may have added a set
            target = self._seal.current if self._unseal_key is None else self._seal.pending
            if target is None or (self._unseal_key is not None and self._verified_now()):
                return self._status(), None
            shamir.check_shares([*self._given, share])
            self._given.append(share)
            if len(self._given) < target.threshold:
                return self._status(), None
            given, self._given = self._given, []
            key = shamir.combine(given)
            open_sealed(target, key)  # IncorrectSharesError: the shares are forgotten
            if self._unseal_key is not None:  # the pending set verified, not in use yet
                self._verified = (target.root_key_id, key)
                return self._status(), None
            self._unseal_key = key
            return self._status(), key

    def _verified_now(self) -> bool:
        pending = self._seal.pending
        return (
            pending is not None
            and self._verified is not None
            and self._verified[0] == pending.root_key_id
        )

    def switch(self, root_key_id: str) -> bytes:
        """Make the verified pending set ``root_key_id`` current (what an administrator's
        signed rotation asks for); the new unseal key, for the processes to open the seal
        again with. Current already (a rotation run again to resume): nothing changes."""
        with self._lock:
            if self._unseal_key is None:
                raise SealedError()
            self._seal = load_seal(self._url)
            if self._seal.current.root_key_id == root_key_id:  # made current already: resume
                return self._unseal_key
            pending = self._seal.pending
            if pending is None or pending.root_key_id != root_key_id:
                raise NoPendingSetError(f"no new Shamir set {root_key_id} is pending")
            if not self._verified_now():
                raise NoPendingSetError(
                    f"the new Shamir set {root_key_id} is not verified: {pending.threshold} of"
                    " its shares must be given to the unsealed service first"
                )
            assert self._verified is not None
            key = self._verified[1]
            self._seal = switch_to_pending(self._url, self._unseal_key, key)
            self._unseal_key, self._verified = key, None
            return key

    def reset(self) -> SealStatus:
        """Forget the shares given so far (a wrong one among them)."""
        with self._lock:
            self._given = []
            return self._status()

    def seal(self) -> bool:
        """Forget the unseal key and any share given; whether it was unsealed."""
        with self._lock:
            was_open = self._unseal_key is not None
            self._unseal_key, self._given, self._verified = None, [], None
            return was_open


# --- the root key a process uses ---------------------------------------------------------------
class ShamirRootKey:
    """The root key, sealed until given the unseal key (thread-safe).

    ``previous``: the whole seal is a previous key of a rotation to a file or token key
    (KEYLEDGER_SHAMIR_PREVIOUS); then, once no row is under it, retiring it deletes it."""

    in_process = True  # once unsealed, the key is in memory (sealed, it refuses at once)

    def __init__(self, seal: Seal, database_url: str, *, previous: bool = False) -> None:
        self._seal = seal
        self._url = database_url
        self._previous = previous
        self._lock = threading.Lock()
        self._held: RootKey | None = None

    @property
    def seal_record(self) -> Seal:
        return self._seal

    @property
    def key_id(self) -> str:
        return self._seal.current.root_key_id

    @property
    def known_ids(self) -> tuple[str, ...]:
        return self._seal.key_ids

    @property
    def sealed(self) -> bool:
        return self._held is None

    def open(self, unseal_key: bytes) -> None:
        """Open the seal as the database has it now (a switch to a new set changes it)."""
        seal = load_seal(self._url)
        keys: list[RootKey] = [
            AesGcmRootKey(open_sealed(record, unseal_key))
            for record in (seal.current, *seal.previous)
        ]
        held = keys[0] if len(keys) == 1 else RotatingRootKey(keys[0], keys[1:])
        with self._lock:
            self._seal, self._held = seal, held

    @property
    def previous(self) -> bool:
        """Whether the whole seal is a previous key (KEYLEDGER_SHAMIR_PREVIOUS)."""
        return self._previous

    def missed_a_switch(self) -> bool:
        """Whether the database's seal has another current root key than the one this
        process wraps under: another service on the database switched to a new set.
        (Blocks: reads the database.)"""
        if self._previous or self._held is None:
            return False
        seal = find_seal(self._url)
        return seal is not None and seal.current.root_key_id != self.key_id

    def forget(self) -> bool:
        """Drop the root keys; whether they were held."""
        with self._lock:
            was_open, self._held = self._held is not None, None
        return was_open

    def retire(self) -> list[str]:
        """Delete the sealed root keys no row needs any more (app/usecases/custody.py)."""
        gone = retire(self._url, whole_seal=self._previous)
        if gone and not self._previous:
            with self._lock:
                self._seal = replace(
                    self._seal,
                    previous=tuple(r for r in self._seal.previous if r.root_key_id not in gone),
                )
        return gone

    def _key(self) -> RootKey:
        held = self._held
        if held is None:
            raise SealedError()
        return held

    def wrap(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        return self.wrap_with_id(owner_id, key)[0]

    def wrap_with_id(self, owner_id: uuid.UUID, key: bytes) -> tuple[bytes, str]:
        with self._lock:  # the key and its id from the same seal, even mid-switch
            held = self._key()
            return wrap_with_id(held, owner_id, key)

    def unwrap(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        return self._key().unwrap(owner_id, wrapped)


def sealed_part(key: RootKey) -> ShamirRootKey | None:
    """The Shamir-sealed key among a root key's parts (current or previous), if any."""
    found = [part for part in parts(key) if isinstance(part, ShamirRootKey)]
    return found[0] if found else None
