"""A key's history as people read it: its state timeline (every event but its uses), its
policy's versions (who set which text, when) and its material versions, from the key's own
events.

Pure: the events come from ``KeyManagement.key_timeline`` (authorized like DescribeKey).
What an entry shows is fail-closed: plain values only, never key material or bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.keys import KeyMaterial

USED = "Used"
_ENVELOPE = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp"})
_NOT_SHOWN = frozenset({"actor", "policy"})  # the policy is shown by its versions
OMITTED: Any = object()


@dataclass(frozen=True)
class TimelineEntry:
    version: int
    timestamp: datetime
    event: str  # the event's name ("Disabled", "PolicyChanged")
    principal_arn: str  # who (as the event's actor records it)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyVersion:
    version: int  # the key event that set it
    timestamp: datetime
    principal_arn: str
    policy: str  # the text as it was put


@dataclass(frozen=True)
class MaterialVersion:
    """A version of the key's material, as the event that brought it names it."""

    version: int  # the material's version (written into ciphertext headers)
    material_id: str
    created: datetime
    event: str  # Created, Rotated, MaterialImported, ...
    rotation_type: str | None


@dataclass(frozen=True)
class KeyTimeline:
    entries: list[TimelineEntry]  # oldest first, uses left out
    policies: list[PolicyVersion]  # oldest first: the creation's policy, then each change
    uses: int  # Used events read (and left out)
    truncated: bool  # the history was longer than was read
    materials: list[MaterialVersion] = field(default_factory=list)  # oldest first


def actor_arn(event: Any) -> str:
    actor = getattr(event, "actor", None)
    if isinstance(actor, dict):
        return str(actor.get("principal_arn") or actor.get("service") or "")
    return str(getattr(actor, "principal_arn", "") or "")


def key_timeline(events: Iterable[Any], *, truncated: bool = False) -> KeyTimeline:
    """The timeline and policy versions of a key's events (oldest first)."""
    entries: list[TimelineEntry] = []
    policies: list[PolicyVersion] = []
    materials: list[MaterialVersion] = []
    uses = 0
    for event in events:
        name = type(event).__name__
        if name == USED:
            uses += 1
            continue
        who = actor_arn(event)
        entries.append(
            TimelineEntry(
                version=event.originator_version,
                timestamp=event.timestamp,
                event=name,
                principal_arn=who,
                details=public_details(event),
            )
        )
        material = getattr(event, "material", None)
        if isinstance(material, KeyMaterial):
            materials.append(
                MaterialVersion(
                    version=material.version,
                    material_id=material.material_id,
                    created=material.created,
                    event=name,
                    rotation_type=material.rotation_type,
                )
            )
        policy = getattr(event, "policy", None)
        if isinstance(policy, str) and policy:
            policies.append(
                PolicyVersion(
                    version=event.originator_version,
                    timestamp=event.timestamp,
                    principal_arn=who,
                    policy=policy,
                )
            )
    return KeyTimeline(entries, policies, uses, truncated, materials)


def public_details(event: Any) -> dict[str, Any]:
    """An event's fields an auditor may see: plain values, key material as its version
    and id only, nothing else (fails closed on any other type)."""
    shown = {}
    for name, value in vars(event).items():
        if name in _ENVELOPE or name in _NOT_SHOWN:
            continue
        public = public_value(value)
        if public is not OMITTED and public not in (None, {}, []):
            shown[name] = public
    return shown


def public_value(value: Any) -> Any:
    """``value`` as an auditor may see it, or OMITTED: plain values, key material as its
    version and id only; fails closed on bytes and any type not known to be harmless."""
    if isinstance(value, KeyMaterial):
        return {"version": value.version, "material_id": value.material_id}
    if value is None or isinstance(value, str | int | float | bool | datetime):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        items = ((str(k), public_value(v)) for k, v in value.items())
        return {k: v for k, v in items if v is not OMITTED}
    if isinstance(value, list | tuple):
        return [v for v in map(public_value, value) if v is not OMITTED]
    return OMITTED
