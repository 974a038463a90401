"""The records of cryptographic calls, member for member as AWS writes them: the KeyId as
the caller gave it (resources still name the key ARN), the data key and key pair specs, the
algorithms and message type, ONE record per ReEncrypt naming both keys, and never a secret.
A Used event stored before these members existed still gives its record, as before."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eventsourcing.persistence import StoredEvent

from domain.keys import Key
from projections.replay import replay
from tests.access.conftest import Identities, Principal, key_policy_doc
from tests.audit.conftest import KMS_ALL, by_request, records, request_id
from tests.conftest import ACCOUNT_ID, Service

KEY_RESOURCE = "AWS::KMS::Key"


def _since(service: Service) -> datetime:
    """A moment just before now on the service's clock (tests elsewhere move it ahead)."""
    return service.runtime.clock.now() - timedelta(seconds=2)


def _record(cloudtrail: Any, key_arn: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The one record (the caller's copy) of the call that gave ``answer``."""
    (found,) = by_request(
        records(cloudtrail, "ResourceName", key_arn),
        request_id(answer),
    )
    return found


def _resource(arn: str, account: str = ACCOUNT_ID) -> dict[str, str]:
    return {"accountId": account, "type": KEY_RESOURCE, "ARN": arn}


def _text(record: dict[str, Any]) -> str:
    """The record as stored (without the LookupEvents entry the lookup added)."""
    return json.dumps({name: value for name, value in record.items() if name != "_entry"})


def _wait_for_trail(service: Service) -> None:
    assert service.runtime.audit is not None
    assert service.runtime.audit.wait_for_current()


@pytest.fixture
def key(kms: Any) -> dict[str, Any]:
    return dict(kms.create_key(Description="crypto records")["KeyMetadata"])


@pytest.mark.parametrize(
    ("operation", "size", "logged"),
    [
        ("generate_data_key", {"KeySpec": "AES_256"}, {"keySpec": "AES_256"}),
        ("generate_data_key", {"NumberOfBytes": 24}, {"numberOfBytes": 24}),
        ("generate_data_key_without_plaintext", {"KeySpec": "AES_128"}, {"keySpec": "AES_128"}),
        ("generate_data_key_without_plaintext", {"NumberOfBytes": 64}, {"numberOfBytes": 64}),
    ],
)
def test_a_data_key_record_logs_the_key_spec_or_number_of_bytes_asked_for(
    kms: Any,
    cloudtrail: Any,
    key: dict[str, Any],
    operation: str,
    size: dict[str, Any],
    logged: dict[str, Any],
) -> None:
    answer = getattr(kms, operation)(KeyId=key["KeyId"], EncryptionContext={"t": "1"}, **size)
    record = _record(cloudtrail, key["Arn"], answer)
    assert record["requestParameters"] == {
        "keyId": key["KeyId"],
        "encryptionContext": {"t": "1"},
        **logged,
    }
    assert record["resources"] == [_resource(key["Arn"])]
    text = _text(record)
    assert base64.b64encode(answer["CiphertextBlob"]).decode() not in text
    if "Plaintext" in answer:
        assert base64.b64encode(answer["Plaintext"]).decode() not in text


@pytest.mark.parametrize(
    "operation", ["generate_data_key_pair", "generate_data_key_pair_without_plaintext"]
)
def test_a_data_key_pair_record_logs_the_key_pair_spec(
    kms: Any, cloudtrail: Any, key: dict[str, Any], operation: str
) -> None:
    answer = getattr(kms, operation)(
        KeyId=key["Arn"], KeyPairSpec="ECC_NIST_P256", EncryptionContext={"pair": "yes"}
    )
    record = _record(cloudtrail, key["Arn"], answer)
    assert record["requestParameters"] == {
        "keyId": key["Arn"],
        "keyPairSpec": "ECC_NIST_P256",
        "encryptionContext": {"pair": "yes"},
    }
    text = _text(record)
    for secret in ("PublicKey", "PrivateKeyPlaintext", "PrivateKeyCiphertextBlob"):
        if secret in answer:
            assert base64.b64encode(answer[secret]).decode() not in text


def test_a_call_made_with_an_alias_logs_the_alias_and_names_the_key_in_resources(
    kms: Any, cloudtrail: Any, key: dict[str, Any]
) -> None:
    alias = f"alias/records-{uuid.uuid4().hex[:10]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    by_name = kms.encrypt(KeyId=alias, Plaintext=b"x", EncryptionContext={"a": "b"})
    record = _record(cloudtrail, key["Arn"], by_name)
    assert record["requestParameters"] == {
        "keyId": alias,
        "encryptionContext": {"a": "b"},
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    assert record["resources"] == [_resource(key["Arn"])]
    assert record["_entry"]["Resources"] == [
        {"ResourceType": KEY_RESOURCE, "ResourceName": key["Arn"]}
    ]
    alias_arn = key["Arn"].split(":key/")[0] + ":" + alias
    by_arn = kms.generate_data_key(KeyId=alias_arn, KeySpec="AES_256")
    assert _record(cloudtrail, key["Arn"], by_arn)["requestParameters"]["keyId"] == alias_arn


def test_a_decrypt_logs_the_key_id_only_when_given_and_always_the_algorithm(
    kms: Any, cloudtrail: Any, key: dict[str, Any]
) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    unnamed = kms.decrypt(CiphertextBlob=blob)
    assert _record(cloudtrail, key["Arn"], unnamed)["requestParameters"] == {
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT"
    }
    named = kms.decrypt(CiphertextBlob=blob, KeyId=key["Arn"])
    assert _record(cloudtrail, key["Arn"], named)["requestParameters"] == {
        "keyId": key["Arn"],
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }


def test_sign_and_verify_log_the_message_type_and_signing_algorithm_never_the_message(
    kms: Any, cloudtrail: Any
) -> None:
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    message = b"the message signed, never logged"
    signed = kms.sign(KeyId=key["KeyId"], Message=message, SigningAlgorithm="ECDSA_SHA_256")
    verified = kms.verify(
        KeyId=key["KeyId"],
        Message=message,
        MessageType="RAW",
        Signature=signed["Signature"],
        SigningAlgorithm="ECDSA_SHA_256",
    )
    for answer in (signed, verified):
        record = _record(cloudtrail, key["Arn"], answer)
        assert record["requestParameters"] == {
            "keyId": key["KeyId"],
            "messageType": "RAW",
            "signingAlgorithm": "ECDSA_SHA_256",
        }
        text = _text(record)
        for secret in (message, signed["Signature"]):
            assert base64.b64encode(secret).decode() not in text
        assert message.decode() not in text


def test_mac_and_key_agreement_records_log_their_algorithms_never_the_mac_or_public_key(
    kms: Any, cloudtrail: Any
) -> None:
    hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    mac = kms.generate_mac(KeyId=hmac["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
    verified = kms.verify_mac(
        KeyId=hmac["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac["Mac"]
    )
    for answer in (mac, verified):
        record = _record(cloudtrail, hmac["Arn"], answer)
        assert record["requestParameters"] == {
            "keyId": hmac["KeyId"],
            "macAlgorithm": "HMAC_SHA_256",
        }
        assert base64.b64encode(mac["Mac"]).decode() not in _text(record)
    agreement = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    peer = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    derived = kms.derive_shared_secret(
        KeyId=agreement["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer
    )
    record = _record(cloudtrail, agreement["Arn"], derived)
    assert record["requestParameters"] == {
        "keyId": agreement["KeyId"],
        "keyAgreementAlgorithm": "ECDH",
    }
    text = _text(record)
    for secret in (peer, derived["SharedSecret"]):
        assert base64.b64encode(secret).decode() not in text


# ==== ReEncrypt ================================================================================
def _last_usage(kms: Any, key: dict[str, Any]) -> dict[str, Any]:
    return dict(kms.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"])


def test_a_re_encrypt_is_one_record_naming_both_keys_and_both_contexts(
    service: Service, kms: Any, cloudtrail: Any, key: dict[str, Any]
) -> None:
    destination = kms.create_key(Description="destination")["KeyMetadata"]
    alias = f"alias/archive-{uuid.uuid4().hex[:10]}"
    kms.create_alias(AliasName=alias, TargetKeyId=destination["KeyId"])
    since = _since(service)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"from": "a"})
    moved = kms.re_encrypt(
        CiphertextBlob=blob["CiphertextBlob"],
        SourceEncryptionContext={"from": "a"},
        DestinationKeyId=alias,
        DestinationEncryptionContext={"to": "b"},
    )
    found = by_request(
        records(cloudtrail, "EventName", "ReEncrypt", StartTime=since), request_id(moved)
    )
    assert len(found) == 1
    (record,) = found
    assert record["requestParameters"] == {
        "sourceEncryptionContext": {"from": "a"},
        "sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "destinationKeyId": alias,
        "destinationEncryptionContext": {"to": "b"},
        "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    assert record["resources"] == [_resource(key["Arn"]), _resource(destination["Arn"])]
    assert record["recipientAccountId"] == ACCOUNT_ID and "sharedEventID" not in record
    materials = record["additionalEventData"]
    encrypted = _record(cloudtrail, key["Arn"], blob)["additionalEventData"]["keyMaterialId"]
    assert materials["sourceKeyMaterialId"] == encrypted
    assert len(materials["destinationKeyMaterialId"]) == 64
    assert materials["destinationKeyMaterialId"] != encrypted
    text = _text(record)
    for secret in (blob["CiphertextBlob"], moved["CiphertextBlob"]):
        assert base64.b64encode(secret).decode() not in text
    # Each key's own trail and last use name this one record.
    for arn in (key["Arn"], destination["Arn"]):
        assert (
            by_request(records(cloudtrail, "ResourceName", arn, StartTime=since), request_id(moved))
            == found
        )
    for used in (key, destination):
        last = _last_usage(kms, used)
        assert (last["Operation"], last["KmsRequestId"]) == ("ReEncrypt", request_id(moved))
        assert last["CloudTrailEventId"] == record["eventID"]
    # The hourly usage counts the call once under each key.
    _wait_for_trail(service)
    with psycopg.connect(service.runtime.database_url) as conn:
        counted = conn.execute(
            "SELECT key_arn, requests FROM audit_usage_hourly WHERE operation = 'ReEncrypt'"
            " AND key_arn = ANY(%s)",
            ([key["Arn"], destination["Arn"]],),
        ).fetchall()
    assert sorted(counted) == sorted([(key["Arn"], 1), (destination["Arn"], 1)])


def test_a_re_encrypt_logs_the_source_key_id_as_given(
    kms: Any, cloudtrail: Any, key: dict[str, Any]
) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    moved = kms.re_encrypt(
        CiphertextBlob=blob, SourceKeyId=key["KeyId"], DestinationKeyId=key["Arn"]
    )
    record = _record(cloudtrail, key["Arn"], moved)
    assert record["requestParameters"] == {
        "sourceKeyId": key["KeyId"],
        "sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "destinationKeyId": key["Arn"],
        "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    assert record["resources"] == [_resource(key["Arn"]), _resource(key["Arn"])]


def test_a_cross_account_re_encrypt_is_delivered_to_each_account_once(
    service: Service, kms: Any, cloudtrail: Any, identities: Identities
) -> None:
    account = identities.account()
    user: Principal = identities.principal(account, policies={"Kms": KMS_ALL})
    source = kms.create_key(
        Policy=key_policy_doc(
            {
                "Sid": "Other account",
                "Effect": "Allow",
                "Principal": {"AWS": user.arn},
                "Action": ["kms:ReEncryptFrom"],
                "Resource": "*",
            }
        )
    )["KeyMetadata"]
    destination = user.kms.create_key()["KeyMetadata"]
    since = _since(service)
    blob = kms.encrypt(KeyId=source["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    moved = user.kms.re_encrypt(
        CiphertextBlob=blob, SourceKeyId=source["Arn"], DestinationKeyId=destination["KeyId"]
    )
    copies = by_request(
        records(cloudtrail, "EventName", "ReEncrypt", StartTime=since), request_id(moved)
    )
    assert sorted(c["recipientAccountId"] for c in copies) == sorted([account, ACCOUNT_ID])
    assert len({c["eventID"] for c in copies}) == 2
    assert {c["sharedEventID"] for c in copies} == {copies[0]["sharedEventID"]}
    for copy in copies:
        assert copy["resources"] == [
            _resource(source["Arn"]),
            _resource(destination["Arn"], account),
        ]
        assert copy["requestParameters"]["sourceKeyId"] == source["Arn"]
        assert copy["requestParameters"]["destinationKeyId"] == destination["KeyId"]
    owner_copy = {c["recipientAccountId"]: c["eventID"] for c in copies}
    assert _last_usage(kms, source)["CloudTrailEventId"] == owner_copy[ACCOUNT_ID]
    assert _last_usage(user.kms, destination)["CloudTrailEventId"] == owner_copy[account]


# ==== Used events stored before request parameters were kept ===================================
def test_a_used_event_stored_before_version_2_still_gives_its_record(
    service: Service, kms: Any, cloudtrail: Any, key: dict[str, Any]
) -> None:
    """An Encrypt as version 1 stored it (no request_parameters, no class_version): loaded by
    upcasting, recorded as then (keyId: the key ARN), and the replay agrees."""
    ledger = service.runtime.ledger
    key_uuid = uuid.UUID(key["KeyId"])
    material_version = 1
    event = Key.Used(
        originator_id=key_uuid,
        originator_version=2,
        timestamp=service.runtime.clock.now(),
        actor={
            "principal_arn": f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
            "account_id": ACCOUNT_ID,
            "region": key["Arn"].split(":")[3],
            "request_id": f"v1-{uuid.uuid4()}",
        },
        operation="Encrypt",
        material_version=material_version,
        encryption_context={"old": "event"},
        algorithm="SYMMETRIC_DEFAULT",
        request_id="",
        request_parameters=None,
    )
    stored = ledger.mapper.to_stored_event(event)
    state = orjson.loads(stored.state)
    del state["class_version"], state["request_parameters"]
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, orjson.dumps(state)
    )
    ledger.recorder.insert_events([old])
    (loaded,) = [e for e in ledger.events.get(key_uuid, gt=1) if isinstance(e, Key.Used)]
    assert loaded.request_parameters is None
    _wait_for_trail(service)
    (record,) = [
        r
        for r in records(cloudtrail, "ResourceName", key["Arn"])
        if r.get("requestID") == event.actor["request_id"]
    ]
    assert record["eventName"] == "Encrypt"
    assert record["requestParameters"] == {
        "keyId": key["Arn"],
        "encryptionContext": {"old": "event"},
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    last = kms.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]
    assert last["CloudTrailEventId"] == record["eventID"]
    # the key, with the old event in its history, still works, and the views replay the same
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    _wait_for_trail(service)
    result = replay(ledger, service.runtime.database_url)
    assert result.identical, result.report()
