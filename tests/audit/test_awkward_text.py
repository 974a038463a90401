"""Text PostgreSQL cannot store as is (NUL) still reaches the trail, and the trail keeps
going: a record the projection could not write would stall every record after it."""

from __future__ import annotations

from typing import Any

from tests.audit.conftest import by_request, records, request_id


def test_an_encryption_context_with_nul_is_recorded_and_the_trail_moves_on(
    kms: Any, cloudtrail: Any, key_id: str
) -> None:
    context = {"tenant\x00id": "a\x00b"}
    sealed = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=context)
    after = kms.describe_key(KeyId=key_id)

    (record,) = by_request(records(cloudtrail, "EventName", "Encrypt"), request_id(sealed))
    assert record["requestParameters"]["encryptionContext"] == context
    assert by_request(records(cloudtrail, "EventName", "DescribeKey"), request_id(after))


def test_a_description_with_nul_reaches_the_trail_and_the_key_views(
    kms: Any, cloudtrail: Any, service: Any
) -> None:
    made = kms.create_key(Description="before\x00after")
    key_id = made["KeyMetadata"]["KeyId"]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "before\x00after"

    (record,) = by_request(records(cloudtrail, "EventName", "CreateKey"), request_id(made))
    assert record["requestParameters"]["description"] == "before\x00after"
    with service.runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT description FROM audit_keys WHERE key_id = %s", (key_id,)
        ).fetchone()
    assert row == ("before\ufffdafter",)  # text columns cannot hold NUL
