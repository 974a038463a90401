"""The symmetric ciphertext blob: self-describing, versioned, authenticated.

Layout (49 bytes of overhead)::

    format (1) | key id (16) | material version (4, big endian) | nonce (12) | AES-256-GCM ct+tag

The header and the canonical encryption context are the associated data, so a blob
cannot be moved to another key, material version or context without failing.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import InvalidCiphertextError

FORMAT_VERSION = 1
_HEADER = struct.Struct(">B16sI")
HEADER_SIZE = _HEADER.size
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE


@dataclass(frozen=True)
class CiphertextHeader:
    key_id: uuid.UUID
    material_version: int


def canonical_encryption_context(context: Mapping[str, str] | None) -> bytes:
    """An unambiguous byte form of the context: pair order never matters, case does."""
    if not context:
        return b""
    parts = []
    for name, value in sorted(context.items()):
        for item in (name.encode(), value.encode()):
            parts.append(struct.pack(">I", len(item)))
            parts.append(item)
    return b"".join(parts)


def read_header(blob: bytes) -> CiphertextHeader:
    if len(blob) < OVERHEAD or blob[0] != FORMAT_VERSION:
        raise InvalidCiphertextError()
    _, key_bytes, material_version = _HEADER.unpack_from(blob)
    return CiphertextHeader(uuid.UUID(bytes=key_bytes), material_version)


def seal(
    cipher: AESGCM,
    *,
    key_id: uuid.UUID,
    material_version: int,
    plaintext: bytes,
    encryption_context: Mapping[str, str] | None,
    nonce: bytes,
) -> bytes:
    header = _HEADER.pack(FORMAT_VERSION, key_id.bytes, material_version)
    aad = header + canonical_encryption_context(encryption_context)
    return header + nonce + cipher.encrypt(nonce, plaintext, aad)


def open_blob(cipher: AESGCM, blob: bytes, encryption_context: Mapping[str, str] | None) -> bytes:
    """Decrypt a blob whose header was read; any mismatch is InvalidCiphertextError."""
    header = blob[:HEADER_SIZE]
    nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
    aad = header + canonical_encryption_context(encryption_context)
    try:
        return cipher.decrypt(nonce, blob[HEADER_SIZE + NONCE_SIZE :], aad)
    except InvalidTag:
        raise InvalidCiphertextError() from None
