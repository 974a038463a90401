"""The canonical leaf of a stored event: what the ledger's Merkle tree commits to.

One leaf per stored event, in the order of its position (the notification id PostgreSQL
gives it). The leaf is these bytes, concatenated without separators (all integers are
unsigned, big-endian)::

    offset  size  field
    0       8     position: the notification id (uint64)
    8       16    originator id: the aggregate's UUID, its 16 bytes (RFC 9562 byte order)
    24      8     version: the event's originator version (uint64)
    32      4     topic length L: the number of bytes of the topic's UTF-8 (uint32)
    36      L     topic: the event's topic, UTF-8
    36+L    32    state hash: SHA-256 of the stored state bytes, exactly as stored

so a leaf is 68 + L bytes. Every field has a fixed size or a length prefix, so the bytes
decode in one way only: two different events never share a leaf, and changing any field
of a row changes its leaf (and deleting, inserting or reordering rows changes positions or
the leaves' order, hence the tree). The state hash covers the stored bytes (compressed
and/or encrypted by the event store's transcoder, if it is), so the tree never needs a
key to check, and crypto-shredding a wrapping key changes no stored event and no leaf.

The Merkle tree hashes each leaf as RFC 9162 does, SHA-256(0x00 || leaf) (`leaf_hash`).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass

from domain.ledger_errors import LeafEncodingError
from domain.merkle import leaf_hash

_HEAD = struct.Struct(">Q16sQI")
_STATE_HASH_SIZE = 32
_U64_MAX = 2**64 - 1
_U32_MAX = 2**32 - 1
MIN_LEAF_SIZE = _HEAD.size + _STATE_HASH_SIZE


@dataclass(frozen=True, slots=True)
class LeafFields:
    """The fields of a leaf, decoded (what a verifier names when a leaf differs)."""

    position: int
    originator_id: uuid.UUID
    version: int
    topic: str
    state_hash: bytes


def encode_leaf(
    position: int, originator_id: uuid.UUID, version: int, topic: str, state_hash: bytes
) -> bytes:
    """The leaf of an event whose state bytes hash to `state_hash` (SHA-256)."""
    if not 0 <= position <= _U64_MAX:
        raise LeafEncodingError(f"position {position} is not a uint64")
    if not 0 <= version <= _U64_MAX:
        raise LeafEncodingError(f"version {version} is not a uint64")
    if not isinstance(originator_id, uuid.UUID):
        raise LeafEncodingError("the originator id is not a UUID")
    if len(state_hash) != _STATE_HASH_SIZE:
        raise LeafEncodingError(f"a state hash is {_STATE_HASH_SIZE} bytes")
    try:
        topic_bytes = topic.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LeafEncodingError("the topic is not encodable as UTF-8") from exc
    if len(topic_bytes) > _U32_MAX:
        raise LeafEncodingError("the topic is too long")
    head = _HEAD.pack(position, originator_id.bytes, version, len(topic_bytes))
    return head + topic_bytes + bytes(state_hash)


def leaf_of(
    position: int, originator_id: uuid.UUID, version: int, topic: str, state_bytes: bytes
) -> bytes:
    """The leaf of a stored event, from its stored state bytes."""
    return encode_leaf(
        position, originator_id, version, topic, hashlib.sha256(state_bytes).digest()
    )


def leaf_hash_of(
    position: int, originator_id: uuid.UUID, version: int, topic: str, state_bytes: bytes
) -> bytes:
    """The Merkle leaf hash, SHA-256(0x00 || leaf), of a stored event."""
    return leaf_hash(leaf_of(position, originator_id, version, topic, state_bytes))


def decode_leaf(leaf: bytes) -> LeafFields:
    """The fields of leaf bytes; LeafEncodingError unless they are exactly one leaf."""
    if len(leaf) < MIN_LEAF_SIZE:
        raise LeafEncodingError(f"a leaf is at least {MIN_LEAF_SIZE} bytes, not {len(leaf)}")
    position, originator, version, topic_size = _HEAD.unpack_from(leaf)
    end = _HEAD.size + topic_size
    if len(leaf) != end + _STATE_HASH_SIZE:
        raise LeafEncodingError("the topic length does not match the leaf's size")
    try:
        topic = leaf[_HEAD.size : end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LeafEncodingError("the topic is not UTF-8") from exc
    return LeafFields(position, uuid.UUID(bytes=originator), version, topic, leaf[end:])
