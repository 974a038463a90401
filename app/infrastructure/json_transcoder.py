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

`LedgerMapper` stores the hot path's events, ``Key.Used``, without the library's generic
mapping: the state to encode is built from the event's attributes directly, its topic and
class version looked up once. The same bytes, the same checks (anything the checks refuse,
or attributes in another order than the event class's fields, take the library's way).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import (
    Cipher,
    Compressor,
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic

from domain.keys import Key

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


_USED_TOPIC = get_topic(Key.Used)
_USED_CLASS_VERSION: int = Key.Used.class_version
# A Used event's attributes, in the order its dataclass __init__ (and Key.record_use) sets
# them: the order the library's mapper writes them in.
_USED_ATTRIBUTES = (
    "originator_id",
    "originator_version",
    "timestamp",
    "actor",
    "operation",
    "material_version",
    "encryption_context",
    "algorithm",
    "request_id",
    "request_parameters",
)
_new_object = object.__new__
_set_attribute = object.__setattr__


class LedgerMapper(Mapper[Any]):
    """The library's `Mapper`, with ``Key.Used`` events stored by a path of their own that
    writes the same `StoredEvent` (same topic, versions and state bytes)."""

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        super().__init__(transcoder, compressor=compressor, cipher=cipher)
        datetimes = (
            transcoder.types.get(datetime) if isinstance(transcoder, JSONTranscoder) else None
        )
        # The fast path writes what OrjsonTranscoder writes: plain JSON, datetimes as ISO.
        self._datetime_name: str | None = (
            datetimes.name
            if isinstance(transcoder, OrjsonTranscoder)
            and type(datetimes) is DatetimeAsISO
            and compressor is None
            and cipher is None
            else None
        )

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if type(domain_event) is Key.Used and self._datetime_name is not None:
            stored = _stored_used(vars(domain_event), self._datetime_name)
            if stored is not None:
                return stored
        return super().to_stored_event(domain_event)


def _stored_used(attributes: dict[str, Any], datetime_name: str) -> StoredEvent | None:
    """A Used event's StoredEvent as the library's mapper and OrjsonTranscoder write it,
    or None where this path would not write the same bytes."""
    if tuple(attributes) != _USED_ATTRIBUTES:
        return None  # decoded from an older version, say: its own order
    # In _USED_ATTRIBUTES's order, as just checked.
    (
        originator_id,
        originator_version,
        timestamp,
        actor,
        operation,
        material_version,
        context,
        algorithm,
        request_id,
        parameters,
    ) = attributes.values()
    if type(timestamp) is not datetime or timestamp.tzinfo is not UTC:
        return None
    if not (
        type(operation) is str
        and type(algorithm) is str
        and type(request_id) is str
        and type(material_version) in _SCALARS
        and _agreed(actor)
        and _agreed(context)
        and _agreed(parameters)
    ):
        return None
    try:
        state = orjson.dumps(
            {
                "timestamp": {"_type_": datetime_name, "_data_": timestamp},
                "actor": actor,
                "operation": operation,
                "material_version": material_version,
                "encryption_context": context,
                "algorithm": algorithm,
                "request_id": request_id,
                "request_parameters": parameters,
                "class_version": _USED_CLASS_VERSION,
            }
        )
    except orjson.JSONEncodeError:
        return None  # an int beyond 64 bits: the library's encoder writes those
    # Built as the library builds events it decodes: a frozen dataclass's __init__ costs
    # a call of object.__setattr__ per field.
    stored = _new_object(StoredEvent)
    _set_attribute(
        stored,
        "__dict__",
        {
            "originator_id": originator_id,
            "originator_version": originator_version,
            "topic": _USED_TOPIC,
            "state": state,
        },
    )
    return stored
