"""One-dimensional arrays in PostgreSQL's binary format, packed in bulk for the event store.

psycopg dumps a Python list parameter element by element, a Python call each (its array
dumper is pure Python): for the four arrays of a group commit's rows, ~10 us per event.
These pack each array in one pass (a struct per element, one join), from values the caller
guarantees non-null, and reach the server as the same typed binary parameters.

`register` makes a connection (or adapters map) send them as such; the statement still
casts each parameter (``%b::uuid[]``), so a text client would fail loudly, not silently.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import ClassVar

from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

# The header of a one-dimensional array without nulls: dimensions, has-nulls, element
# type, length, lower bound (1). An empty array has no dimension.
_HEADER = struct.Struct("!iiIii")
_EMPTY = struct.Struct("!iiI")
_LENGTH = struct.Struct("!i")
_INT8 = struct.Struct("!iq")  # its length (8), then the value
_UUID_LENGTH = _LENGTH.pack(16)


class PackedArray(bytes):
    """An array parameter already in PostgreSQL's binary format."""

    oid: ClassVar[int]  # the array type
    element_oid: ClassVar[int]


class UuidArray(PackedArray):
    oid, element_oid = 2951, 2950


class Int8Array(PackedArray):
    oid, element_oid = 1016, 20


class TextArray(PackedArray):
    oid, element_oid = 1009, 25


class ByteaArray(PackedArray):
    oid, element_oid = 1001, 17


def _header(kind: type[PackedArray], count: int) -> bytes:
    if count == 0:
        return _EMPTY.pack(0, 0, kind.element_oid)
    return _HEADER.pack(1, 0, kind.element_oid, count, 1)


def uuid_array(values: Sequence[uuid.UUID | str]) -> UuidArray:
    # A batch names few aggregates, each many times by the same object: each one's bytes
    # are made once, found by identity (a UUID hashes in Python, an id() in C).
    distinct = {id(value): value for value in values}
    packed = {key: _UUID_LENGTH + _uuid_bytes(value) for key, value in distinct.items()}
    return UuidArray(_header(UuidArray, len(values)) + b"".join([packed[id(v)] for v in values]))


def _uuid_bytes(value: uuid.UUID | str) -> bytes:
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(value)).bytes


def int8_array(values: Sequence[int]) -> Int8Array:
    pack = _INT8.pack
    return Int8Array(_header(Int8Array, len(values)) + b"".join([pack(8, v) for v in values]))


def text_array(values: Sequence[str]) -> TextArray:
    packed = {}
    for value in set(values):
        encoded = value.encode()
        packed[value] = _LENGTH.pack(len(encoded)) + encoded
    return TextArray(_header(TextArray, len(values)) + b"".join([packed[v] for v in values]))


def bytea_array(values: Sequence[bytes]) -> ByteaArray:
    parts = [_header(ByteaArray, len(values))]
    pack = _LENGTH.pack
    for value in values:
        parts.append(pack(len(value)))
        parts.append(value)
    return ByteaArray(b"".join(parts))


class _PackedDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: PackedArray) -> bytes:
        return obj  # already in the binary format


_DUMPERS = [
    (kind, type(f"{kind.__name__}Dumper", (_PackedDumper,), {"oid": kind.oid}))
    for kind in (UuidArray, Int8Array, TextArray, ByteaArray)
]


def register(context: AdaptContext) -> None:
    """Send the packed arrays as binary parameters of their array types on ``context``."""
    for kind, dumper in _DUMPERS:
        context.adapters.register_dumper(kind, dumper)


def rows(
    ids: Iterable[uuid.UUID | str],
    versions: Iterable[int],
    topics: Iterable[str],
    states: Iterable[bytes],
) -> tuple[UuidArray, Int8Array, TextArray, ByteaArray]:
    """The four arrays of stored events' rows."""
    return (
        uuid_array(list(ids)),
        int8_array(list(versions)),
        text_array(list(topics)),
        bytea_array(list(states)),
    )
