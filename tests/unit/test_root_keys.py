"""Root keys (app/infrastructure/root_keys.py): the in-memory AES-GCM key reads the rows
written since the start, and mid-rotation the current key wraps while any previous key
still unwraps."""

from __future__ import annotations

import secrets
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.infrastructure.memory.wrapping_keys import MemoryWrappingKeys
from app.infrastructure.root_keys import (
    AesGcmRootKey,
    RootKeyError,
    RotatingRootKey,
    file_root_key,
    root_key_id,
)
from app.infrastructure.vault import Vault

OWNER = uuid.UUID("5d1f3e1a-0000-4000-8000-000000000001")


def test_the_stored_format_is_nonce_then_aes_gcm_with_the_owner_in_the_aad() -> None:
    key, secret = secrets.token_bytes(32), secrets.token_bytes(32)
    wrapped = AesGcmRootKey(key).wrap(OWNER, secret)
    aad = b"keyledger:wrapping-key:" + OWNER.bytes
    assert AESGCM(key).decrypt(wrapped[:12], wrapped[12:], aad) == secret


def test_a_row_does_not_open_under_another_key_or_owner() -> None:
    root = AesGcmRootKey(secrets.token_bytes(32))
    wrapped = root.wrap(OWNER, b"k" * 32)
    with pytest.raises(RootKeyError):
        AesGcmRootKey(secrets.token_bytes(32)).unwrap(OWNER, wrapped)
    with pytest.raises(RootKeyError):
        root.unwrap(uuid.uuid4(), wrapped)


def test_mid_rotation_the_new_key_wraps_and_both_unwrap() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    before = AesGcmRootKey(old).wrap(OWNER, b"a" * 32)
    rotating = file_root_key(new, [old])
    assert isinstance(rotating, RotatingRootKey)
    assert rotating.key_id == root_key_id(new)
    assert rotating.known_ids == (root_key_id(new), root_key_id(old))
    assert rotating.unwrap(OWNER, before) == b"a" * 32
    after = rotating.wrap(OWNER, b"b" * 32)
    assert AesGcmRootKey(new).unwrap(OWNER, after) == b"b" * 32
    with pytest.raises(RootKeyError):
        file_root_key(secrets.token_bytes(32), [secrets.token_bytes(32)]).unwrap(OWNER, before)


def test_a_vault_starts_only_with_a_key_that_names_every_row() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    rows = MemoryWrappingKeys()
    Vault(old, rows).check_root_key()  # writes the grant-token key's row under `old`
    with pytest.raises(RootKeyError, match="different root key"):
        Vault(new, rows).check_root_key()
    Vault(file_root_key(new, [old]), rows).check_root_key()
