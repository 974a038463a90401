"""The exact bytes the audit trail writes for cryptographic uses: every column of each
audit_events row (the CloudTrail record's JSON text included), the usage rollups and the
last-use rows. Records are evidence: an export signed yesterday must match the row read
today, so the shaping's hot path may get faster but never write one byte differently.

The events are built with fixed ids and times and stored as the service stores them; the
trail then projects them on a database of its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.utils import get_topic

from app.bootstrap import Runtime
from domain.keys import SOURCE_USE, Key, KeyMaterial
from projections.audit_trail import AuditTrailProjection

pytestmark = pytest.mark.postgres

OWNER = "111122223333"
OTHER = "444455556666"
KEY_A = uuid.UUID("0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01")
KEY_B = uuid.UUID("7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02")
ARN_A = f"arn:aws:kms:us-east-1:{OWNER}:key/{KEY_A}"
ARN_B = f"arn:aws:kms:us-east-1:{OTHER}:key/{KEY_B}"
MATERIAL_A = "a" * 64
MATERIAL_B = "b" * 64
USER = {
    "principal_arn": f"arn:aws:iam::{OWNER}:user/alice",
    "account_id": OWNER,
    "access_key_id": "AKLGALICE00000000001",
    "region": "us-east-1",
    "source_ip": "192.0.2.10",
    "user_agent": "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.8.0",
}
ROLE_VIA_SERVICE = {
    "principal_arn": f"arn:aws:sts::{OTHER}:assumed-role/Deployer/session-1",
    "account_id": OTHER,
    "access_key_id": "ASIAROLE000000000001",
    "region": "us-east-1",
    "source_ip": "198.51.100.7",
    "user_agent": "aws-sdk-go/1.44",
    "via_service": "ec2.us-east-1.amazonaws.com",
    "service_principal_arn": "ec2.amazonaws.com",
    "session_created": "2026-03-01T09:00:00Z",
}
AT = datetime(2026, 3, 1, 10, 15, 30, 123456, tzinfo=UTC)


def _actor(base: dict[str, Any], request_id: str, **changes: str) -> dict[str, Any]:
    return {**base, "request_id": request_id, **changes}


def _created(key: uuid.UUID, arn: str, account: str, material_id: str) -> Key.Created:
    fields: dict[str, Any] = {  # (the library's Created takes them as keywords)
        "originator_id": key,
        "originator_version": 1,
        "timestamp": datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC),
        "originator_topic": get_topic(Key),
        "actor": _actor({**USER, "account_id": account}, f"create-{key}"),
        "arn": arn,
        "account_id": account,
        "region": "us-east-1",
        "description": "pinned",
        "key_spec": "SYMMETRIC_DEFAULT",
        "key_usage": "ENCRYPT_DECRYPT",
        "origin": "AWS_KMS",
        "key_manager": "CUSTOMER",
        "policy": "{}",
        "tags": {},
        "material": KeyMaterial(1, material_id, b"\x00" * 40, AT, None),
    }
    return Key.Created(**fields)


def _used(key: uuid.UUID, version: int, seconds: int, **fields: Any) -> Key.Used:
    given = {
        "operation": "Encrypt",
        "material_version": 1,
        "encryption_context": {},
        "algorithm": "SYMMETRIC_DEFAULT",
        "request_id": "",
        "request_parameters": {"keyId": str(key)},
    } | fields
    return Key.Used(
        originator_id=key,
        originator_version=version,
        timestamp=AT.replace(second=seconds),
        **given,
    )


def _events() -> list[Any]:
    return [
        _created(KEY_A, ARN_A, OWNER, MATERIAL_A),
        _created(KEY_B, ARN_B, OTHER, MATERIAL_B),
        _used(
            KEY_A,
            2,
            31,
            actor=_actor(USER, "req-encrypt"),
            encryption_context={"tenant": "acme", "order": "42"},
            request_id="req-encrypt",
            request_parameters={"keyId": "alias/orders"},
        ),
        _used(
            KEY_A,
            3,
            32,
            operation="Decrypt",
            actor=_actor(USER, "req-decrypt"),
            encryption_context={"tenant": "acme"},
            request_id="req-decrypt",
            request_parameters={},
        ),
        _used(
            KEY_A,
            4,
            33,
            operation="GenerateDataKey",
            actor=_actor(USER, "req-gdk"),
            encryption_context={"purpose": 'tab\there, line\nbreak, back\\slash, "quote"'},
            request_id="req-gdk",
            request_parameters={"keyId": ARN_A, "keySpec": "AES_256"},
        ),
        # A cross-account ReEncrypt: one record, delivered to both accounts.
        _used(
            KEY_B,
            2,
            34,
            operation="ReEncryptFrom",
            actor=_actor(ROLE_VIA_SERVICE, "req-reencrypt"),
            request_id="req-reencrypt",
            request_parameters={},
        ),
        _used(
            KEY_A,
            5,
            34,
            operation="ReEncryptTo",
            actor=_actor(ROLE_VIA_SERVICE, "req-reencrypt"),
            encryption_context={"to": "a"},
            request_id="req-reencrypt",
            request_parameters={
                "sourceKeyId": ARN_B,
                "sourceEncryptionContext": {"from": "b"},
                "sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "destinationKeyId": ARN_A,
                "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                SOURCE_USE: [str(KEY_B), 1],
            },
        ),
        # Recorded before request parameters were kept (class version 1), a NUL in the
        # user agent, no context; the same second as the one before.
        _used(
            KEY_A,
            6,
            34,
            actor=_actor(USER, "req-old", user_agent="agent\x00with nul"),
            request_id="req-old",
            request_parameters=None,
        ),
        # Another account's role, through a service: a copy for each account.
        _used(
            KEY_A,
            7,
            35,
            actor=_actor(ROLE_VIA_SERVICE, "req-cross"),
            encryption_context={"app": "billing"},
            request_id="req-cross",
            request_parameters={"keyId": ARN_A},
        ),
        # A use whose record logs no context, and the signing algorithm.
        _used(
            KEY_A,
            8,
            36,
            operation="Sign",
            actor=_actor(USER, "req-sign"),
            algorithm="RSASSA_PSS_SHA_256",
            request_id="req-sign",
            request_parameters={"keyId": str(KEY_A), "messageType": "RAW"},
        ),
        # A material the trail does not know, and an actor without a request id.
        _used(
            KEY_A,
            9,
            37,
            operation="GenerateDataKeyWithoutPlaintext",
            actor=dict(USER),
            material_version=9,
            encryption_context={"k": "v"},
            request_id="req-event-only",
            request_parameters={"keyId": str(KEY_A), "numberOfBytes": 32},
        ),
        # The owner's user with the other account's key; then the same caller again.
        _used(
            KEY_B,
            3,
            37,
            operation="Decrypt",
            actor=_actor(USER, "req-other-key"),
            encryption_context={"from": "b"},
            request_id="req-other-key",
            request_parameters={"keyId": ARN_B},
        ),
        _used(
            KEY_A,
            10,
            37,
            actor=_actor(USER, "req-again"),
            encryption_context={"tenant": "acme", "order": "43"},
            request_id="req-again",
            request_parameters={"keyId": "alias/orders"},
        ),
    ]


def _project(runtime: Runtime) -> None:
    ledger = runtime.ledger
    ledger.recorder.insert_events([ledger.mapper.to_stored_event(e) for e in _events()])
    AuditTrailProjection(ledger, runtime.pool, runtime.database_url).catch_up_to()


def _rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[str, ...]]:
    with psycopg.connect(url, options="-c TimeZone=UTC") as conn:  # times as text: in UTC
        return [tuple(row) for row in conn.execute(query, params).fetchall()]


AUDIT_COLUMNS = (
    "recipient_account_id, event_id::text, shared_event_id::text, event_time::text,"
    " event_source, event_name, read_only::text, account_id, principal_arn, username,"
    " access_key_id, source_ip, region, request_id, error_code, resource_type, resource_arn,"
    " resources::text, encryption_context_keys::text, record"
)
# The records' JSON text, one a line (JSON text holds no line break), in the rows' order.
PINNED_RECORDS = Path(__file__).with_name("pinned_use_records.jsonl")

# Written by the trail before its hot path was made cheaper (issue 17): never to change.
EXPECTED_ROWS: list[tuple[str | None, ...]] = [
    (
        "111122223333",
        "b86f17f3-0ddb-54f9-a9e0-9aa69b5709c8",
        None,
        "2026-03-01 10:15:31.123456+00",
        "kms.amazonaws.com",
        "Encrypt",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-encrypt",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{tenant,order}",
    ),
    (
        "111122223333",
        "af498d11-a38c-5aa4-b49a-c99007cebc2b",
        None,
        "2026-03-01 10:15:32.123456+00",
        "kms.amazonaws.com",
        "Decrypt",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-decrypt",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{tenant}",
    ),
    (
        "111122223333",
        "05f0d288-18e4-5bdd-b8dc-6c4ee7e9545e",
        None,
        "2026-03-01 10:15:33.123456+00",
        "kms.amazonaws.com",
        "GenerateDataKey",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-gdk",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{purpose}",
    ),
    (
        "111122223333",
        "0a4af163-fb43-5525-8b0d-3fde666ca376",
        "38524b9a-b79a-5db0-bd9c-2daa8316b7bc",
        "2026-03-01 10:15:34.123456+00",
        "kms.amazonaws.com",
        "ReEncrypt",
        "true",
        "444455556666",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "session-1",
        "ASIAROLE000000000001",
        "ec2.amazonaws.com",
        "us-east-1",
        "req-reencrypt",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "{arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02,arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{from,to}",
    ),
    (
        "444455556666",
        "38524b9a-b79a-5db0-bd9c-2daa8316b7bc",
        "38524b9a-b79a-5db0-bd9c-2daa8316b7bc",
        "2026-03-01 10:15:34.123456+00",
        "kms.amazonaws.com",
        "ReEncrypt",
        "true",
        "444455556666",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "session-1",
        "ASIAROLE000000000001",
        "ec2.amazonaws.com",
        "us-east-1",
        "req-reencrypt",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "{arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02,arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{from,to}",
    ),
    (
        "111122223333",
        "50bb4ede-7ce5-58cd-8c66-852e6de2acd5",
        None,
        "2026-03-01 10:15:34.123456+00",
        "kms.amazonaws.com",
        "Encrypt",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-old",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{}",
    ),
    (
        "111122223333",
        "5a3cd50e-0aed-522e-a6d8-abd3dc360422",
        "de724ac2-85a2-5236-bcc7-b7bdf0eb020a",
        "2026-03-01 10:15:35.123456+00",
        "kms.amazonaws.com",
        "Encrypt",
        "true",
        "444455556666",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "session-1",
        "ASIAROLE000000000001",
        "ec2.amazonaws.com",
        "us-east-1",
        "req-cross",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{app}",
    ),
    (
        "444455556666",
        "de724ac2-85a2-5236-bcc7-b7bdf0eb020a",
        "de724ac2-85a2-5236-bcc7-b7bdf0eb020a",
        "2026-03-01 10:15:35.123456+00",
        "kms.amazonaws.com",
        "Encrypt",
        "true",
        "444455556666",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "session-1",
        "ASIAROLE000000000001",
        "ec2.amazonaws.com",
        "us-east-1",
        "req-cross",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{app}",
    ),
    (
        "111122223333",
        "790bb2e0-3dd0-5a5a-a93d-43972e18ee7e",
        None,
        "2026-03-01 10:15:36.123456+00",
        "kms.amazonaws.com",
        "Sign",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-sign",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{}",
    ),
    (
        "111122223333",
        "0a17fb9d-00b2-561e-87c6-42e05f0df72e",
        None,
        "2026-03-01 10:15:37.123456+00",
        "kms.amazonaws.com",
        "GenerateDataKeyWithoutPlaintext",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{k}",
    ),
    (
        "111122223333",
        "ecf4994b-f019-56a8-9d26-66c753ffb418",
        "ecf4994b-f019-56a8-9d26-66c753ffb418",
        "2026-03-01 10:15:37.123456+00",
        "kms.amazonaws.com",
        "Decrypt",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-other-key",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "{arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02}",
        "{from}",
    ),
    (
        "444455556666",
        "0380baa9-3bdb-59de-83e4-8d75af2e0521",
        "ecf4994b-f019-56a8-9d26-66c753ffb418",
        "2026-03-01 10:15:37.123456+00",
        "kms.amazonaws.com",
        "Decrypt",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-other-key",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "{arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02}",
        "{from}",
    ),
    (
        "111122223333",
        "017f1dd9-6f9c-5940-82ec-4c4a92e0c0b1",
        None,
        "2026-03-01 10:15:37.123456+00",
        "kms.amazonaws.com",
        "Encrypt",
        "true",
        "111122223333",
        "arn:aws:iam::111122223333:user/alice",
        "alice",
        "AKLGALICE00000000001",
        "192.0.2.10",
        "us-east-1",
        "req-again",
        None,
        "AWS::KMS::Key",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "{arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01}",
        "{tenant,order}",
    ),
]
EXPECTED_ROLLUPS: list[tuple[str, ...]] = [
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:iam::111122223333:user/alice",
        "Decrypt",
        "111122223333",
        "111122223333",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:iam::111122223333:user/alice",
        "Encrypt",
        "111122223333",
        "111122223333",
        "3",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:iam::111122223333:user/alice",
        "GenerateDataKey",
        "111122223333",
        "111122223333",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:iam::111122223333:user/alice",
        "GenerateDataKeyWithoutPlaintext",
        "111122223333",
        "111122223333",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:iam::111122223333:user/alice",
        "Sign",
        "111122223333",
        "111122223333",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "Encrypt",
        "444455556666",
        "111122223333",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:111122223333:key/0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "ReEncrypt",
        "444455556666",
        "111122223333",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "arn:aws:iam::111122223333:user/alice",
        "Decrypt",
        "111122223333",
        "444455556666",
        "1",
        "0",
    ),
    (
        "2026-03-01 10:00:00+00",
        "arn:aws:kms:us-east-1:444455556666:key/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "arn:aws:sts::444455556666:assumed-role/Deployer/session-1",
        "ReEncrypt",
        "444455556666",
        "444455556666",
        "1",
        "0",
    ),
]
EXPECTED_LAST_USED: list[tuple[str, ...]] = [
    (
        "0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01",
        "Encrypt",
        "2026-03-01 10:15:37.123456+00",
        "017f1dd9-6f9c-5940-82ec-4c4a92e0c0b1",
        "req-again",
    ),
    (
        "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e02",
        "Decrypt",
        "2026-03-01 10:15:37.123456+00",
        "0380baa9-3bdb-59de-83e4-8d75af2e0521",
        "req-other-key",
    ),
]


def test_the_trail_writes_each_use_exactly_as_pinned(quiet_ledger: Runtime) -> None:
    _project(quiet_ledger)
    url = quiet_ledger.database_url
    records = _rows(
        url,
        f"SELECT {AUDIT_COLUMNS} FROM audit_events WHERE resource_arn = ANY(%s)"
        " AND event_name <> 'CreateKey' ORDER BY notification_id, recipient_account_id",
        ([ARN_A, ARN_B],),
    )
    rollups = _rows(
        url,
        "SELECT hour::text, key_arn, principal_arn, operation, caller_account_id,"
        " key_account_id, requests::text, errors::text FROM audit_usage_hourly"
        " WHERE key_arn = ANY(%s) AND operation <> 'CreateKey' ORDER BY 1, 2, 3, 4",
        ([ARN_A, ARN_B],),
    )
    last_used = _rows(
        url,
        "SELECT key_id::text, operation, used_at::text, event_id::text, request_id"
        " FROM audit_key_last_usage WHERE key_id = ANY(%s) ORDER BY 1",
        ([KEY_A, KEY_B],),
    )
    assert [row[:-1] for row in records] == EXPECTED_ROWS
    assert [row[-1] for row in records] == PINNED_RECORDS.read_text().splitlines()
    assert rollups == EXPECTED_ROLLUPS
    assert last_used == EXPECTED_LAST_USED
