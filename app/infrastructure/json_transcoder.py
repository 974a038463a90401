"""The events' JSON encoding: eventsourcing's own bytes, written by orjson where it can.

The library's `JSONTranscoder` encodes with the standard library (``separators=(",", ":")``,
``ensure_ascii=False``) and calls back into Python for every datetime: ~20 us for a ``Used``
event, the largest share of the writer's own CPU per event. orjson writes the same bytes
for the values both agree on: str, int, bool, None, dicts with str keys (in insertion
order), lists and tuples, with the same escapes and non-ASCII text left as UTF-8; and a UTC
datetime as ``isoformat()`` writes it. So a state (an event's attributes) made only of
those, its datetimes (UTC) at the top level as every event's ``timestamp`` is, is encoded
by orjson, each datetime in the wrapper the library's `DatetimeAsISO` transcoding gives it.
Anything else (a float, a UUID, bytes, a dataclass, a nested or non-UTC datetime...), or a
value orjson refuses (an int beyond 64 bits), goes to the library's encoder.

The stored bytes are therefore exactly the library's: nothing to upcast, old and new rows
read alike, and the Merkle log's leaves, which hash the stored state, do not change.
Decoding is the library's.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder

# Exact types whose JSON the standard library and orjson write alike (a subclass, an Enum
# say, is written differently by the two).
_SCALARS = frozenset({str, int, bool, type(None)})


class OrjsonTranscoder(JSONTranscoder):
    """`JSONTranscoder` with a faster encoder that writes the same bytes."""

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict and type(self.types.get(datetime)) is DatetimeAsISO:
            state = _with_wrapped_datetimes(obj, self.types[datetime].name)
            # orjson refuses an int beyond 64 bits: the library's encoder writes those.
            with contextlib.suppress(orjson.JSONEncodeError):
                if state is not None:
                    return orjson.dumps(state)
        return super().encode(obj)


def _with_wrapped_datetimes(state: dict[Any, Any], name: str) -> dict[str, Any] | None:
    """``state`` with each top-level UTC datetime wrapped as the transcoding wraps it (a
    copy if there is one), or None if orjson would not write it as the library does."""
    wrapped: dict[str, Any] | None = None
    for key, value in state.items():
        kind = type(value)
        if type(key) is not str:
            return None
        if kind is str or kind in _SCALARS:
            continue
        if kind is datetime and value.tzinfo is UTC:
            if wrapped is None:
                wrapped = dict(state)
            wrapped[key] = {"_type_": name, "_data_": value}
        elif not _agreed(value):
            return None
    return state if wrapped is None else wrapped


def _agreed(value: Any) -> bool:
    """Whether orjson writes ``value`` (no datetime in it) as the standard library does."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) is not str and not _agreed(item)):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) is str or _agreed(item) for item in value)
    return False
