"""NUL in text that the projections write into jsonb columns (tags, grant constraints).

PostgreSQL's jsonb refuses ``\\u0000``; a projection that wrote it as is failed its batch
for ever, and every later call was missing from the trail (and, for grants, from the key
directory). The views hold U+FFFD in its place; the ledger and the trail's records keep
the exact value; the trail and the directory keep going.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.pg_text import REPLACEMENT, json_text
from tests.audit.conftest import by_request, records, request_id
from tests.conftest import Service, running_service
from tests.support.databases import database_backends

NUL_TAG = {"TagKey": "team\x00x", "TagValue": "a\x00b"}


@pytest.fixture(scope="module")
def own_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service of this module's own: a stalled trail here stalls no other module."""
    with running_service(tmp_path_factory.mktemp("nul-json")) as service:
        yield service


@pytest.fixture
def kms(own_service: Service) -> Any:
    return own_service.client("kms")


@pytest.fixture
def cloudtrail(own_service: Service) -> Any:
    return own_service.client("cloudtrail")


def _later_calls_are_recorded_and_listed(kms: Any, cloudtrail: Any) -> None:
    """A call after the awkward one reaches the trail; a key made after it is listed."""
    later = kms.create_key(Description="made after the NUL")
    later_id = later["KeyMetadata"]["KeyId"]
    described = kms.describe_key(KeyId=later_id)
    assert by_request(records(cloudtrail, "EventName", "DescribeKey"), request_id(described))
    listed = [
        k["KeyId"] for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"]
    ]
    assert later_id in listed


def _view(service: Service, sql: str, *params: Any) -> Any:
    with service.runtime.pool.connection() as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_a_tag_with_nul_in_tag_resource_leaves_the_trail_and_directory_going(
    own_service: Service, kms: Any, cloudtrail: Any
) -> None:
    key_id = kms.create_key(Description="tagged with NUL")["KeyMetadata"]["KeyId"]
    tagged = kms.tag_resource(KeyId=key_id, Tags=[NUL_TAG])

    _later_calls_are_recorded_and_listed(kms, cloudtrail)
    (record,) = by_request(records(cloudtrail, "EventName", "TagResource"), request_id(tagged))
    assert record["requestParameters"]["tags"] == [{"tagKey": "team\x00x", "tagValue": "a\x00b"}]
    tags = _view(own_service, "SELECT tags FROM audit_keys WHERE key_id = %s", key_id)
    assert tags == {"team\ufffdx": "a\ufffdb"}


def test_a_tag_with_nul_in_create_key_leaves_the_trail_and_directory_going(
    own_service: Service, kms: Any, cloudtrail: Any
) -> None:
    made = kms.create_key(Description="created with a NUL tag", Tags=[NUL_TAG])
    key_id = made["KeyMetadata"]["KeyId"]

    _later_calls_are_recorded_and_listed(kms, cloudtrail)
    tags = _view(own_service, "SELECT tags FROM audit_keys WHERE key_id = %s", key_id)
    assert tags == {"team\ufffdx": "a\ufffdb"}
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == [NUL_TAG]  # the ledger's value


@pytest.mark.parametrize("member", ["EncryptionContextEquals", "EncryptionContextSubset"])
def test_a_grant_constraint_with_nul_leaves_the_trail_and_directory_going(
    own_service: Service, kms: Any, cloudtrail: Any, member: str
) -> None:
    key_id = kms.create_key(Description=f"granted, {member} with NUL")["KeyMetadata"]["KeyId"]
    grantee = "arn:aws:iam::111122223333:user/admin"
    granted = kms.create_grant(
        KeyId=key_id,
        GranteePrincipal=grantee,
        RetiringPrincipal=grantee,
        Operations=["Encrypt"],
        Constraints={member: {"ten\x00ant": "a\x00b"}},
    )

    _later_calls_are_recorded_and_listed(kms, cloudtrail)
    (record,) = by_request(records(cloudtrail, "EventName", "CreateGrant"), request_id(granted))
    constraint = member[:1].lower() + member[1:]
    assert record["requestParameters"]["constraints"] == {constraint: {"ten\x00ant": "a\x00b"}}
    expected = {member: {"ten\ufffdant": "a\ufffdb"}}
    for table in ("kms_grants", "audit_key_grants"):
        sql = f"SELECT constraints FROM {table} WHERE grant_id = %s"
        assert _view(own_service, sql, granted["GrantId"]) == expected
    retirable = kms.list_retirable_grants(RetiringPrincipal=grantee)["Grants"]
    assert granted["GrantId"] in [g["GrantId"] for g in retirable]


# ==== the NUL-safe JSON text itself =============================================================
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('a\x00\\u0"é\ufffd\U0001f600\n'))
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _without_nul(value: Any) -> Any:
    """``value`` with U+FFFD for each NUL in its strings and keys; numbers as floats (jsonb
    keeps a number's value, not the spelling that tells an int from a float)."""
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT)
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


@pytest.fixture(scope="module")
def plain_conn() -> Iterator[psycopg.Connection[Any]]:
    from tests.support.databases import drop, fresh_database

    url = fresh_database(database_backends()[0])
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn
    finally:
        drop(url)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_json_text_is_valid_jsonb_and_equals_the_value_with_nul_replaced(
    plain_conn: psycopg.Connection[Any], value: Any
) -> None:
    row = plain_conn.execute("SELECT %s::jsonb", (json_text(value),)).fetchone()
    assert row is not None
    assert _without_nul(row[0]) == _without_nul(value)


def test_json_text_keeps_a_literal_backslash_u0000() -> None:
    value = {"\\u0000": "\\u0000", "nul\x00": ["\\\x00"]}
    assert json.loads(json_text(value)) == {"\\u0000": "\\u0000", "nul\ufffd": ["\\\ufffd"]}
