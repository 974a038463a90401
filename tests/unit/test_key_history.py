"""A key's timeline and policy versions from its events (app/usecases/key_history.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.usecases.key_history import key_timeline, public_details
from domain.keys import KeyMaterial

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(name: str, version: int, **fields: Any) -> Any:
    event = type(name, (), {})()
    event.originator_version = version
    event.timestamp = T0 + timedelta(minutes=version)
    event.actor = {"principal_arn": f"arn:aws:iam::111122223333:user/u{version}"}
    for field, value in fields.items():
        setattr(event, field, value)
    return event


def test_the_timeline_leaves_uses_out_and_counts_them() -> None:
    events = [
        _event("Created", 1, policy="p1", description="d"),
        _event("Used", 2, operation="Encrypt"),
        _event("Disabled", 3),
        _event("Used", 4, operation="Decrypt"),
    ]

    timeline = key_timeline(events)

    assert [e.event for e in timeline.entries] == ["Created", "Disabled"]
    assert timeline.uses == 2
    assert timeline.entries[1].principal_arn == "arn:aws:iam::111122223333:user/u3"


def test_policy_versions_are_the_creations_and_each_change_with_who_and_when() -> None:
    events = [
        _event("Created", 1, policy="p1"),
        _event("PolicyChanged", 2, policy="p2", policy_name="default"),
        _event("Tagged", 3, tags={"a": "b"}),
        _event("PolicyChanged", 4, policy="p3", policy_name="default"),
    ]

    versions = key_timeline(events).policies

    assert [(v.version, v.policy) for v in versions] == [(1, "p1"), (2, "p2"), (4, "p3")]
    assert versions[2].principal_arn.endswith("user/u4")
    assert versions[2].timestamp == T0 + timedelta(minutes=4)


def test_an_events_details_never_show_key_material_or_bytes() -> None:
    material = KeyMaterial(
        version=2,
        material_id="ab" * 32,
        wrapped=b"secret wrapped bytes",
        created=T0,
        rotation_type="ON_DEMAND",
    )
    event = _event("Rotated", 5, material=material, raw=b"\x00\x01", policy="text")

    details = public_details(event)

    assert details == {"material": {"version": 2, "material_id": "ab" * 32}}


def test_material_versions_come_from_the_events_that_brought_them() -> None:
    first = KeyMaterial(
        version=1, material_id="01" * 32, wrapped=b"w", created=T0, rotation_type=None
    )
    second = KeyMaterial(
        version=2, material_id="02" * 32, wrapped=b"w", created=T0, rotation_type="AUTOMATIC"
    )
    events = [_event("Created", 1, material=first), _event("Rotated", 2, material=second)]

    materials = key_timeline(events).materials

    assert [(m.version, m.material_id, m.event) for m in materials] == [
        (1, "01" * 32, "Created"),
        (2, "02" * 32, "Rotated"),
    ]
    assert materials[1].rotation_type == "AUTOMATIC"
