"""The audit trail writes a use of one key through KMS from its caller's template
(projections.audit_trail._UseTemplate): for any caller, key, operation and context, the
rows, rollups and last use are those its general path (Described, _emit) writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import projections.audit_trail as trail
from app.infrastructure.ledger import Ledger
from domain.keys import Key

LEDGER = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
KEY = uuid.UUID("0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01")
OWNER = "111122223333"
ARN = f"arn:aws:kms:us-east-1:{OWNER}:key/{KEY}"
# Text with everything COPY's text format and JSON escape, and a NUL.
TEXT = st.text(max_size=6) | st.sampled_from(["\t", "\n", "\\", '"', "\x00", "é"])
ACCOUNT = st.sampled_from([OWNER, "444455556666", ""])
ACTOR = st.fixed_dictionaries(
    {
        "principal_arn": st.sampled_from(
            [
                f"arn:aws:iam::{OWNER}:user/alice",
                "arn:aws:iam::444455556666:user/bob\tx",
                "arn:aws:sts::444455556666:assumed-role/Deployer/s1",
            ]
        ),
        "account_id": ACCOUNT,
        "region": st.sampled_from(["us-east-1", "eu-west-1", ""]),
        "source_ip": TEXT,
        "user_agent": TEXT,
    },
    optional={
        "access_key_id": TEXT,
        "request_id": TEXT,
        "via_service": st.just("ec2.us-east-1.amazonaws.com"),
        "session_created": st.just("2026-03-01T09:00:00Z"),
    },
)


def _projection() -> trail.AuditTrailProjection:
    projection = trail.AuditTrailProjection(LEDGER, None, "")  # type: ignore[arg-type]
    projection._keys[KEY] = trail.KeyFacts(
        ARN, OWNER, "us-east-1", "SYMMETRIC_DEFAULT", "CUSTOMER", {1: "a" * 64}
    )
    return projection


def _use(
    version: int,
    actor: dict[str, Any],
    operation: str,
    context: dict[str, str],
    parameters: dict[str, Any],
    material_version: int,
    request_id: str,
) -> Key.Used:
    fields: dict[str, Any] = {
        "originator_id": KEY,
        "originator_version": version,
        "timestamp": datetime(2026, 3, 1, 10, 15, version, 123456, tzinfo=UTC),
        "actor": actor,
        "operation": operation,
        "material_version": material_version,
        "encryption_context": context,
        "algorithm": "SYMMETRIC_DEFAULT",
        "request_id": request_id,
        "request_parameters": {"keyId": ARN, **parameters},
    }
    return Key.Used(**fields)


def _write(uses: list[Key.Used]) -> tuple[str, Any, Any]:
    projection = _projection()
    rows: list[trail.Row] = []
    rollups: dict[Any, list[Any]] = {}
    last_used: dict[str, tuple[Any, ...]] = {}
    for index, use in enumerate(uses):
        projection._used(use, 100 + index, rows, rollups, last_used)
    return trail._copy_text(rows), rollups, last_used


@given(
    st.lists(
        st.tuples(
            ACTOR,
            st.sampled_from(sorted(trail.SIMPLE_USES)),
            st.dictionaries(TEXT, TEXT, max_size=3),
            st.dictionaries(TEXT, TEXT, max_size=2),
            st.sampled_from([1, 2]),
            TEXT,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_use_is_written_from_its_template_as_the_general_path_writes_it(
    calls: list[tuple[dict[str, Any], str, dict[str, str], dict[str, Any], int, str]],
) -> None:
    uses = [
        _use(2 + index, actor, operation, context, parameters, material_version, request_id)
        for index, (actor, operation, context, parameters, material_version, request_id) in (
            enumerate(calls)
        )
    ]
    templated = _write(uses)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trail, "SIMPLE_USES", frozenset())  # the general path only
        general = _write(uses)
    assert templated == general
