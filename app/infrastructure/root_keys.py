"""Root keys: what wraps every per-key wrapping key (issue 14; docs/key-custody.md).

The Vault never holds a root key itself: it asks a `RootKey` to wrap or unwrap a wrapping
key for an owner. Providers differ in where the key lives:

* `AesGcmRootKey`: 32 bytes in this process (from KEYLEDGER_ROOT_KEY, a file, or the
  embedded development key): AES-256-GCM, a random 96-bit nonce before the ciphertext, the
  owner's id in the additional data. The format every stored row has had since the start.
* `Pkcs11RootKey` (pkcs11_root_key.py): a non-extractable key in a PKCS#11 token (an
  HSM), which wraps and unwraps inside the token.
* `ShamirRootKey` (shamir_root_key.py): sealed in the database until T shares of its
  unseal key were given.

``key_id`` names the key without revealing it; it is stored beside every wrapped row
(``wrapping_keys.root_key_id``), which is how a rotation knows what is left to re-wrap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT_KEY_BYTES = 32
NONCE_BYTES = 12


class RootKeyError(RuntimeError):
    """The root key is missing, malformed, sealed, or not the one a row was wrapped under."""


class RootKey(Protocol):
    """Wraps and unwraps wrapping keys; the key itself may never be in this process."""

    @property
    def key_id(self) -> str: ...

    @property
    def known_ids(self) -> tuple[str, ...]:
        """Every root key id rows may be wrapped under (more than one mid-rotation)."""
        ...

    def wrap(self, owner_id: uuid.UUID, key: bytes) -> bytes: ...

    def unwrap(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        """The key; RootKeyError when `wrapped` does not open under this root key."""
        ...


def wrapping_aad(owner_id: uuid.UUID) -> bytes:
    return b"keyledger:wrapping-key:" + owner_id.bytes


def root_key_id(root_key: bytes) -> str:
    """A fingerprint that names a root key held as bytes without revealing it."""
    return hmac.new(root_key, b"keyledger root key id", hashlib.sha256).hexdigest()[:16]


class AesGcmRootKey:
    """A root key held in this process's memory (file, environment, development key)."""

    in_process = True  # wraps and unwraps in microseconds, without I/O

    def __init__(self, key: bytes) -> None:
        if len(key) != ROOT_KEY_BYTES:
            raise RootKeyError(f"a root key is {ROOT_KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._key_id = root_key_id(key)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def known_ids(self) -> tuple[str, ...]:
        return (self._key_id,)

    def wrap(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, wrapping_aad(owner_id))

    def unwrap(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], wrapping_aad(owner_id)
            )
        except (InvalidTag, ValueError):
            raise RootKeyError(
                f"wrapping key {owner_id} does not open under root key {self._key_id}"
            ) from None


class RotatingRootKey:
    """Mid-rotation: wraps under the current key, unwraps under it or any previous one
    (``keyledger operator rotate-root-key`` moves every row to the current key)."""

    def __init__(self, current: RootKey, previous: Sequence[RootKey]) -> None:
        self.current = current
        self.previous = tuple(previous)

    @property
    def key_id(self) -> str:
        return self.current.key_id

    @property
    def known_ids(self) -> tuple[str, ...]:
        ids = [*self.current.known_ids, *(i for key in self.previous for i in key.known_ids)]
        return tuple(dict.fromkeys(ids))

    def wrap(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        return self.current.wrap(owner_id, key)

    def wrap_with_id(self, owner_id: uuid.UUID, key: bytes) -> tuple[bytes, str]:
        return wrap_with_id(self.current, owner_id, key)

    def unwrap(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        try:
            return self.current.unwrap(owner_id, wrapped)
        except RootKeyError:
            for key in self.previous:
                try:
                    return key.unwrap(owner_id, wrapped)
                except RootKeyError:
                    continue
            raise


def wrap_with_id(root: RootKey, owner_id: uuid.UUID, key: bytes) -> tuple[bytes, str]:
    """``key`` wrapped, and the id of the root key that wrapped it, taken together: a
    Shamir-sealed key switched to a new set while the service runs changes its current
    key, and a row must never be labelled with another key than the one it is under."""
    together = getattr(root, "wrap_with_id", None)
    if callable(together):
        wrapped, key_id = together(owner_id, key)
        return bytes(wrapped), str(key_id)
    return root.wrap(owner_id, key), root.key_id


def parts(key: RootKey) -> list[RootKey]:
    """The providers a root key is made of: itself, or a rotation's current and previous."""
    if isinstance(key, RotatingRootKey):
        return [found for part in (key.current, *key.previous) for found in parts(part)]
    return [key]


def opens_in_process(key: RootKey) -> bool:
    """Whether every provider of ``key`` wraps and unwraps in this process's memory (a
    token's call may take milliseconds, and is kept off an event loop)."""
    return all(getattr(part, "in_process", False) for part in parts(key))


def retire_previous(key: RootKey) -> list[str]:
    """Destroy what only a rotation's previous keys needed and the provider itself keeps
    (a Shamir seal's old root key); the ids destroyed. File and token keys are the
    operator's to destroy (docs/key-custody.md)."""
    destroyed: list[str] = []
    for part in parts(key):
        retire = getattr(part, "retire", None)
        if callable(retire):
            destroyed.extend(retire())
    return destroyed


def file_root_key(current: bytes, previous: Sequence[bytes] = ()) -> RootKey:
    """The root key held as bytes, with the previous ones of a rotation in progress."""
    key = AesGcmRootKey(current)
    if not previous:
        return key
    return RotatingRootKey(key, [AesGcmRootKey(old) for old in previous])


def close_root_key(key: RootKey) -> None:
    """Release what a provider holds (a token session); a key in memory holds nothing."""
    if isinstance(key, RotatingRootKey):
        for part in parts(key):
            close_root_key(part)
        return
    close = getattr(key, "close", None)
    if callable(close):
        close()
