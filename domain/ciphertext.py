"""The symmetric ciphertext blob: self-describing, versioned, authenticated.

Format 1, every key's but those in external key stores (49 bytes of overhead)::

    format (1) = 1 | key id (16) | material version (4, big endian) | nonce (12)
    | AES-256-GCM ct+tag

The header and the canonical encryption context are the associated data, so a blob
cannot be moved to another key, material version or context without failing.

Format 3, multi-Region keys: format 1's layout, but the 16 key id bytes are the hex digits
of the ``mrk-`` key id, which is the same in every Region of the set, instead of one
key's aggregate id. Every key of the set has the same materials under the same versions,
so a blob sealed in one Region opens in any other: Decrypt finds the key of the caller's
Region from the key id (domain.multi_region). The format byte is in the associated data,
so a format 3 blob never opens as another format, nor the other way round.

Format 2, keys in external key stores (AWS's double encryption): the format 1 blob of the
key's own KMS material (the *inner* blob) encrypted again by the external key store's
proxy under the external key, whose answer is kept whole, as AWS KMS keeps it::

    format (1) = 2 | key id (16) | material version (4)       <- the header
    | IV length (1) | IV (12 or 16) | tag (16)
    | metadata length (1) | ciphertextMetadata (0-20)
    | the proxy's ciphertext of the inner blob (as long as the inner blob)

The header is the proxy's additional authenticated data (it authenticates its own
ciphertextMetadata besides), so neither layer can be moved to another key; the inner
blob's own header must name the same key and version. Opening takes the proxy first, then
the key's material with the encryption context. A format 2 blob never opens as format 1
(its header differs, so the GCM tag fails) and a key in an external key store accepts
only format 2: its KMS material alone decrypts nothing.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import InvalidCiphertextError
from domain.xks import MAX_CIPHERTEXT_METADATA, TAG_BYTES, XksCiphertext

FORMAT_VERSION = 1
EXTERNAL_FORMAT = 2
MULTI_REGION_FORMAT = 3
_HEADER = struct.Struct(">B16sI")
HEADER_SIZE = _HEADER.size
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
HEADER_CACHE_SIZE = 4096  # headers kept parsed (read_header): one per key material version
EXTERNAL_IV_SIZES = (12, 16)  # the XKS spec allows either
# The least a format 2 blob holds: header, a 12-byte IV and its length, tag, an empty
# metadata's length, and an inner blob of an empty plaintext.
EXTERNAL_OVERHEAD = HEADER_SIZE + 1 + 12 + TAG_BYTES + 1


@dataclass(frozen=True)
class CiphertextHeader:
    key_id: uuid.UUID
    material_version: int
    external: bool = False  # format 2: a key in an external key store sealed it
    # format 3: ``key_id`` holds a multi-Region key id's 16 bytes, not an aggregate id
    multi_region: bool = False


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
    if len(blob) < OVERHEAD:
        raise InvalidCiphertextError()
    format_version = blob[0]
    if format_version in (FORMAT_VERSION, MULTI_REGION_FORMAT) or (
        format_version == EXTERNAL_FORMAT and len(blob) >= EXTERNAL_OVERHEAD + OVERHEAD
    ):
        return _parsed_header(bytes(blob[:HEADER_SIZE]))
    raise InvalidCiphertextError()


@lru_cache(maxsize=HEADER_CACHE_SIZE)
def _parsed_header(header: bytes) -> CiphertextHeader:
    """A header of a known format, parsed once: every blob of one key's material version
    has the same header (Decrypt reads it twice a call), and the header is immutable."""
    format_version, key_bytes, material_version = _HEADER.unpack(header)
    return CiphertextHeader(
        uuid.UUID(bytes=key_bytes),
        material_version,
        external=format_version == EXTERNAL_FORMAT,
        multi_region=format_version == MULTI_REGION_FORMAT,
    )


def seal(
    cipher: AESGCM,
    *,
    key_id: uuid.UUID,
    material_version: int,
    plaintext: bytes,
    encryption_context: Mapping[str, str] | None,
    nonce: bytes,
    format_version: int = FORMAT_VERSION,
) -> bytes:
    """``format_version`` MULTI_REGION_FORMAT with ``key_id`` the 16 bytes of a
    multi-Region key id; FORMAT_VERSION with every other key's aggregate id."""
    header = _HEADER.pack(format_version, key_id.bytes, material_version)
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


# ==== format 2: keys in external key stores =================================================
def external_header(key_id: uuid.UUID, material_version: int) -> bytes:
    """A format 2 blob's header: what the proxy authenticates as additional data."""
    return _HEADER.pack(EXTERNAL_FORMAT, key_id.bytes, material_version)


def wrap_external(header: bytes, outer: XksCiphertext) -> bytes:
    """The format 2 blob of the proxy's encryption ``outer`` of an inner blob."""
    iv, metadata = outer.initialization_vector, outer.ciphertext_metadata or b""
    if (
        len(header) != HEADER_SIZE
        or header[0] != EXTERNAL_FORMAT
        or len(iv) not in EXTERNAL_IV_SIZES
        or len(outer.authentication_tag) != TAG_BYTES
        or len(metadata) > MAX_CIPHERTEXT_METADATA
    ):
        raise ValueError("not a format 2 header or not a proxy's ciphertext")
    return b"".join(
        (
            header,
            bytes((len(iv),)),
            iv,
            outer.authentication_tag,
            bytes((len(metadata),)),
            metadata,
            outer.ciphertext,
        )
    )


def unwrap_external(blob: bytes) -> tuple[bytes, XksCiphertext]:
    """(header, the proxy's ciphertext) of a format 2 blob; InvalidCiphertextError when it
    is not one."""
    if len(blob) < EXTERNAL_OVERHEAD + OVERHEAD or blob[0] != EXTERNAL_FORMAT:
        raise InvalidCiphertextError()
    at = HEADER_SIZE
    iv_size = blob[at]
    if iv_size not in EXTERNAL_IV_SIZES:
        raise InvalidCiphertextError()
    iv = blob[at + 1 : at + 1 + iv_size]
    at += 1 + iv_size
    tag = blob[at : at + TAG_BYTES]
    at += TAG_BYTES
    metadata_size = blob[at]  # within the least length checked above
    if metadata_size > MAX_CIPHERTEXT_METADATA:
        raise InvalidCiphertextError()
    metadata = blob[at + 1 : at + 1 + metadata_size]
    ciphertext = blob[at + 1 + metadata_size :]
    if len(ciphertext) < OVERHEAD:  # the inner blob is a format 1 blob
        raise InvalidCiphertextError()
    return blob[:HEADER_SIZE], XksCiphertext(ciphertext, iv, tag, metadata or None)


def check_inner(inner: bytes, header: bytes) -> None:
    """The inner blob the proxy gave back must be a format 1 blob of the same key and
    material version as the format 2 header."""
    if len(inner) < OVERHEAD or inner[0] != FORMAT_VERSION or inner[1:HEADER_SIZE] != header[1:]:
        raise InvalidCiphertextError()
