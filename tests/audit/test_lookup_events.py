"""LookupEvents through boto3's own CloudTrail client: every call a test makes, allowed,
denied, read-only or refused, is there with the fields CloudTrail sets."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.access.conftest import Identities, Principal, key_policy_doc
from tests.audit.conftest import (
    KMS_ALL,
    by_request,
    cloudtrail_of,
    records,
    request_id,
)
from tests.aws.conftest import RawSender, aws_error
from tests.conftest import ACCOUNT_ID, REGION, Service

PLAINTEXT = b"the secret order 4111-1111-1111-1111"


def _since(service: Service) -> datetime:
    """A moment just before now on the service's clock (tests elsewhere move it ahead)."""
    return service.runtime.clock.now() - timedelta(seconds=2)


@pytest.fixture
def calls(service: Service, kms: Any, identities: Identities) -> dict[str, Any]:
    """Calls of every kind on one new key: create, encrypt, decrypt, describe, a denial."""
    since = _since(service)
    created = kms.create_key(Description="audited")
    key = created["KeyMetadata"]
    encrypted = kms.encrypt(
        KeyId=key["KeyId"], Plaintext=PLAINTEXT, EncryptionContext={"tenant": "acme"}
    )
    decrypted = kms.decrypt(
        CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext={"tenant": "acme"}
    )
    described = kms.describe_key(KeyId=key["KeyId"])
    stranger = identities.principal(ACCOUNT_ID)  # no identity policy: may do nothing
    with pytest.raises(ClientError) as denied:
        stranger.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x", EncryptionContext={"t": "1"})
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    return {
        "since": since,
        "key": key,
        "stranger": stranger,
        "create": request_id(created),
        "encrypt": request_id(encrypted),
        "decrypt": request_id(decrypted),
        "describe": request_id(described),
        "denied": denied.value.response["ResponseMetadata"]["RequestId"],
        "ciphertext": encrypted["CiphertextBlob"],
    }


def test_each_lookup_attribute_finds_the_calls_just_made(
    cloudtrail: Any, calls: dict[str, Any]
) -> None:
    since, key, stranger = calls["since"], calls["key"], calls["stranger"]

    def find(attribute: str, value: str) -> list[dict[str, Any]]:
        return records(cloudtrail, attribute, value, StartTime=since)

    def request_ids(found: list[dict[str, Any]]) -> set[str]:
        return {r.get("requestID", "") for r in found}

    mine = {calls[name] for name in ("create", "encrypt", "decrypt", "describe")}
    assert mine <= request_ids(find("ResourceName", key["Arn"]))
    assert mine | {calls["denied"]} <= request_ids(find("ResourceType", "AWS::KMS::Key"))
    assert mine | {calls["denied"]} <= request_ids(find("EventSource", "kms.amazonaws.com"))
    assert {calls["encrypt"], calls["denied"]} <= request_ids(find("EventName", "Encrypt"))
    read_only = request_ids(find("ReadOnly", "true"))
    assert {calls["encrypt"], calls["decrypt"], calls["describe"], calls["denied"]} <= read_only
    assert calls["create"] in request_ids(find("ReadOnly", "false"))
    assert calls["create"] not in read_only
    name = stranger.arn.rsplit("/", 1)[-1]
    assert request_ids(find("Username", name)) == {calls["denied"]}
    assert request_ids(find("AccessKeyId", stranger.access_key_id)) == {calls["denied"]}
    decrypt = by_request(find("ResourceName", key["Arn"]), calls["decrypt"])[0]
    by_id = find("EventId", decrypt["eventID"])
    assert [r["requestID"] for r in by_id] == [calls["decrypt"]]


def test_a_denied_call_is_recorded_as_cloudtrail_records_it(
    cloudtrail: Any, calls: dict[str, Any]
) -> None:
    stranger, key = calls["stranger"], calls["key"]
    (record,) = by_request(
        records(cloudtrail, "AccessKeyId", stranger.access_key_id, StartTime=calls["since"]),
        calls["denied"],
    )
    assert record["eventVersion"] == "1.11"
    identity = record["userIdentity"]
    assert identity["type"] == "IAMUser"
    assert identity["arn"] == stranger.arn
    assert identity["accountId"] == ACCOUNT_ID
    assert identity["accessKeyId"] == stranger.access_key_id
    assert identity["userName"] == stranger.arn.rsplit("/", 1)[-1]
    assert identity["principalId"].startswith("AIDA")
    assert record["eventSource"] == "kms.amazonaws.com"
    assert record["eventName"] == "Encrypt"
    assert record["awsRegion"] == REGION
    assert record["sourceIPAddress"] == "127.0.0.1"
    assert record["userAgent"].startswith("Boto3/")
    assert record["errorCode"] == "AccessDenied"
    assert record["errorMessage"].startswith(f"User: {stranger.arn} is not authorized to perform")
    assert record["requestParameters"] == {"keyId": key["Arn"], "encryptionContext": {"t": "1"}}
    assert record["responseElements"] is None
    assert record["requestID"] == calls["denied"]
    assert record["readOnly"] is True
    assert record["resources"] == [
        {"accountId": ACCOUNT_ID, "type": "AWS::KMS::Key", "ARN": key["Arn"]}
    ]
    assert record["eventType"] == "AwsApiCall"
    assert record["managementEvent"] is True
    assert record["recipientAccountId"] == ACCOUNT_ID
    assert record["eventCategory"] == "Management"
    entry = record["_entry"]
    assert entry["EventId"] == record["eventID"]
    assert entry["ReadOnly"] == "true"
    assert entry["Username"] == identity["userName"]
    assert entry["AccessKeyId"] == stranger.access_key_id
    assert entry["EventSource"] == "kms.amazonaws.com"
    assert entry["Resources"] == [{"ResourceType": "AWS::KMS::Key", "ResourceName": key["Arn"]}]


def test_cryptographic_records_log_the_context_and_never_plaintext_or_ciphertext(
    cloudtrail: Any, calls: dict[str, Any]
) -> None:
    found = records(cloudtrail, "ResourceName", calls["key"]["Arn"], StartTime=calls["since"])
    (encrypt,) = by_request(found, calls["encrypt"])
    (decrypt,) = by_request(found, calls["decrypt"])
    (create,) = by_request(found, calls["create"])
    assert encrypt["requestParameters"] == {  # keyId as given; resources name the key ARN
        "keyId": calls["key"]["KeyId"],
        "encryptionContext": {"tenant": "acme"},
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    assert [r["ARN"] for r in encrypt["resources"]] == [calls["key"]["Arn"]]
    assert encrypt["responseElements"] is None
    assert len(encrypt["additionalEventData"]["keyMaterialId"]) == 64
    assert decrypt["requestParameters"] == {  # called without a KeyId: none logged
        "encryptionContext": {"tenant": "acme"},
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    assert create["responseElements"]["keyMetadata"]["keyId"] == calls["key"]["KeyId"]
    assert create["readOnly"] is False
    text = json.dumps(found, default=str)
    for secret in (PLAINTEXT, calls["ciphertext"]):
        assert secret.decode("latin-1") not in text
        assert base64.b64encode(secret).decode() not in text


def test_read_only_calls_are_recorded_and_get_key_policy_answers_are_not(
    service: Service, kms: Any, cloudtrail: Any
) -> None:
    since = _since(service)
    key = kms.create_key(Policy=key_policy_doc(), Description="policy")["KeyMetadata"]
    answers = {
        "GetKeyPolicy": kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default"),
        "ListKeys": kms.list_keys(Limit=1),
        "GenerateRandom": kms.generate_random(NumberOfBytes=16),
        "GetKeyRotationStatus": kms.get_key_rotation_status(KeyId=key["KeyId"]),
        "ListResourceTags": kms.list_resource_tags(KeyId=key["KeyId"]),
    }
    found = records(cloudtrail, "ReadOnly", "true", StartTime=since)
    for name, answer in answers.items():
        (record,) = by_request(found, request_id(answer))
        assert record["eventName"] == name
        assert record["responseElements"] is None
    policy_record = by_request(found, request_id(answers["GetKeyPolicy"]))[0]
    assert policy_record["resources"][0]["ARN"] == key["Arn"]
    assert "Enable IAM User Permissions" not in json.dumps(policy_record, default=str)
    random_record = by_request(found, request_id(answers["GenerateRandom"]))[0]
    assert random_record["requestParameters"] == {"numberOfBytes": 16}
    random_bytes = answers["GenerateRandom"]["Plaintext"]
    assert base64.b64encode(random_bytes).decode() not in json.dumps(random_record, default=str)


def test_calls_refused_by_validation_and_failed_calls_are_recorded(
    service: Service, kms: Any, cloudtrail: Any, raw: RawSender
) -> None:
    since = _since(service)
    refused = raw("TrentService.DescribeKey", {"KeyId": ""})
    assert refused.error_type == "ValidationException"
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    with aws_error("DisabledException") as failure:
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    found = records(cloudtrail, "EventSource", "kms.amazonaws.com", StartTime=since)
    (validation,) = by_request(found, refused.headers["x-amzn-requestid"])
    assert validation["eventName"] == "DescribeKey"
    assert validation["errorCode"] == "ValidationException"
    assert validation["requestParameters"] == {"keyId": ""}
    disabled = [r for r in found if r.get("errorCode") == "DisabledException"]
    assert any(r["resources"][0]["ARN"] == key["Arn"] for r in disabled), failure


def test_a_failed_signature_with_a_known_access_key_is_recorded(
    service: Service, cloudtrail: Any, identities: Identities, raw: RawSender
) -> None:
    since = _since(service)
    principal = identities.principal(ACCOUNT_ID, policies={"All": KMS_ALL})
    answer = raw(
        "TrentService.ListKeys",
        {},
        access_key_id=principal.access_key_id,
        secret_access_key="not-the-secret",
    )
    assert answer.error_type == "InvalidSignatureException"
    (record,) = records(cloudtrail, "AccessKeyId", principal.access_key_id, StartTime=since)
    assert record["eventName"] == "ListKeys"
    assert record["errorCode"] == "InvalidSignatureException"
    assert record["userIdentity"]["arn"] == principal.arn


def test_lookups_are_newest_first_and_page_with_next_token(
    service: Service, kms: Any, cloudtrail: Any
) -> None:
    since = _since(service)
    key = kms.create_key()["KeyMetadata"]
    for n in range(5):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"n": str(n)})
    attribute = [{"AttributeKey": "ResourceName", "AttributeValue": key["Arn"]}]
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        extra = {"NextToken": token} if token else {}
        page = cloudtrail.lookup_events(LookupAttributes=attribute, MaxResults=2, **extra)
        assert len(page["Events"]) <= 2
        seen.extend(page["Events"])
        token = page.get("NextToken")
        if not token:
            break
    names = [event["EventName"] for event in seen]
    assert names == ["Encrypt"] * 5 + ["CreateKey"]
    assert len({event["EventId"] for event in seen}) == 6
    times = [event["EventTime"] for event in seen]
    assert times == sorted(times, reverse=True)
    contexts = [
        json.loads(e["CloudTrailEvent"])["requestParameters"]["encryptionContext"]["n"]
        for e in seen[:5]
    ]
    assert contexts == ["4", "3", "2", "1", "0"]
    window = cloudtrail.lookup_events(
        LookupAttributes=attribute,
        StartTime=since,
        EndTime=service.runtime.clock.now() + timedelta(1),
    )
    assert len(window["Events"]) == 6
    before = cloudtrail.lookup_events(LookupAttributes=attribute, EndTime=since)
    assert before["Events"] == []


@pytest.mark.parametrize(
    ("request_members", "error"),
    [
        ({"MaxResults": 51}, "InvalidMaxResultsException"),
        ({"StartTime": 2_000_000_000, "EndTime": 1_000_000_000}, "InvalidTimeRangeException"),
        (
            {
                "LookupAttributes": [
                    {"AttributeKey": "EventName", "AttributeValue": "Encrypt"},
                    {"AttributeKey": "ReadOnly", "AttributeValue": "true"},
                ]
            },
            "InvalidLookupAttributesException",
        ),
        ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
    ],
)
def test_lookup_errors_are_cloudtrails(
    service: Service, request_members: dict[str, Any], error: str
) -> None:
    unvalidated = boto3.client(  # botocore itself checks only MaxResults' minimum
        "cloudtrail",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=service.access_key_id,
        aws_secret_access_key=service.secret_access_key,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as failure:
        unvalidated.lookup_events(**request_members)
    assert failure.value.response["Error"]["Code"] == error


def test_a_next_token_only_continues_the_query_it_came_from(kms: Any, cloudtrail: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    kms.describe_key(KeyId=key["KeyId"])
    attribute = [{"AttributeKey": "ResourceName", "AttributeValue": key["Arn"]}]
    page = cloudtrail.lookup_events(LookupAttributes=attribute, MaxResults=1)
    other = [{"AttributeKey": "EventName", "AttributeValue": "CreateKey"}]
    with pytest.raises(ClientError) as failure:
        cloudtrail.lookup_events(LookupAttributes=other, NextToken=page["NextToken"])
    assert failure.value.response["Error"]["Code"] == "InvalidNextTokenException"


def test_an_account_sees_its_own_records_only(
    service: Service, kms: Any, identities: Identities
) -> None:
    account = identities.account()
    auditor = identities.principal(
        account,
        policies={
            "Audit": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["cloudtrail:LookupEvents", "kms:*"],
                            "Resource": "*",
                        }
                    ],
                }
            )
        },
    )
    own = auditor.kms.create_key()["KeyMetadata"]
    theirs = kms.create_key()["KeyMetadata"]
    client = cloudtrail_of(service, auditor)
    found = records(client, "EventName", "CreateKey")
    assert {r["recipientAccountId"] for r in found} == {account}
    assert own["Arn"] in {r["resources"][0]["ARN"] for r in found}
    assert records(client, "ResourceName", theirs["Arn"]) == []


def test_lookup_needs_the_auditor_permission(service: Service, identities: Identities) -> None:
    user = identities.principal(ACCOUNT_ID, policies={"Kms": KMS_ALL})
    with pytest.raises(ClientError) as failure:
        cloudtrail_of(service, user).lookup_events()
    assert failure.value.response["Error"]["Code"] == "AccessDeniedException"


def test_a_cross_account_use_is_recorded_in_both_accounts(
    kms: Any, cloudtrail: Any, identities: Identities
) -> None:
    account = identities.account()
    user: Principal = identities.principal(account, policies={"Kms": KMS_ALL})
    key = kms.create_key(
        Policy=key_policy_doc(
            {
                "Sid": "Other account",
                "Effect": "Allow",
                "Principal": {"AWS": user.arn},
                "Action": ["kms:Encrypt"],
                "Resource": "*",
            }
        )
    )["KeyMetadata"]
    answer = user.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")
    copies = by_request(records(cloudtrail, "ResourceName", key["Arn"]), request_id(answer))
    assert {c["recipientAccountId"] for c in copies} == {account, ACCOUNT_ID}
    assert len({c["eventID"] for c in copies}) == 2
    assert {c["sharedEventID"] for c in copies} == {copies[0]["sharedEventID"]}


def test_get_key_last_usage_names_the_last_cryptographic_use(kms: Any, cloudtrail: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    unused = kms.get_key_last_usage(KeyId=key["KeyId"])
    assert unused["KeyLastUsage"] == {}
    assert unused["TrackingStartDate"] == unused["KeyCreationDate"] == key["CreationDate"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    decrypted = kms.decrypt(CiphertextBlob=blob)
    kms.describe_key(KeyId=key["KeyId"])  # not cryptographic: not a use
    usage = kms.get_key_last_usage(KeyId=key["KeyId"])
    last = usage["KeyLastUsage"]
    assert last["Operation"] == "Decrypt"
    assert last["KmsRequestId"] == request_id(decrypted)
    (record,) = by_request(records(cloudtrail, "ResourceName", key["Arn"]), request_id(decrypted))
    assert last["CloudTrailEventId"] == record["eventID"]


def test_management_calls_are_recorded_from_their_events(
    service: Service, kms: Any, cloudtrail: Any, identities: Identities
) -> None:
    key = kms.create_key()["KeyMetadata"]
    other = kms.create_key()["KeyMetadata"]
    alias = f"alias/audited-{key['KeyId'][:8]}"
    grantee = identities.principal(ACCOUNT_ID)
    calls = {
        "CreateAlias": kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"]),
        "UpdateAlias": kms.update_alias(AliasName=alias, TargetKeyId=other["KeyId"]),
        "DeleteAlias": kms.delete_alias(AliasName=alias),
        "EnableKeyRotation": kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90),
        "RotateKeyOnDemand": kms.rotate_key_on_demand(KeyId=key["KeyId"]),
        "CreateGrant": kms.create_grant(
            KeyId=key["KeyId"], GranteePrincipal=grantee.arn, Operations=["Decrypt"]
        ),
        "ScheduleKeyDeletion": kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7),
        "DisableKey": kms.disable_key(KeyId=other["KeyId"]),
    }
    found = records(
        cloudtrail, "ResourceType", "AWS::KMS::Key", StartTime=_since(service) - timedelta(60)
    )
    shaped = {name: by_request(found, request_id(answer)) for name, answer in calls.items()}
    assert {name: [r["eventName"] for r in rs] for name, rs in shaped.items()} == {
        name: [name] for name in calls
    }
    assert shaped["UpdateAlias"][0]["requestParameters"] == {
        "aliasName": alias,
        "targetKeyId": other["KeyId"],
    }
    assert shaped["UpdateAlias"][0]["resources"][0]["ARN"] == other["Arn"]
    assert shaped["EnableKeyRotation"][0]["requestParameters"]["rotationPeriodInDays"] == 90
    rotated = shaped["RotateKeyOnDemand"][0]
    assert len(rotated["additionalEventData"]["keyMaterialId"]) == 64
    granted = shaped["CreateGrant"][0]
    assert granted["responseElements"]["grantId"] == calls["CreateGrant"]["GrantId"]
    assert granted["requestParameters"]["granteePrincipal"] == grantee.arn
    scheduled = shaped["ScheduleKeyDeletion"][0]
    assert scheduled["responseElements"]["keyState"] == "PendingDeletion"
    assert scheduled["requestParameters"]["pendingWindowInDays"] == 7
    assert all(r["readOnly"] is False for rs in shaped.values() for r in rs)
    assert all(r["eventType"] == "AwsApiCall" for rs in shaped.values() for r in rs)


def test_a_call_that_changes_nothing_is_still_recorded(kms: Any, cloudtrail: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    again = kms.disable_key(KeyId=key["KeyId"])  # already disabled: no event on the key
    (record,) = by_request(records(cloudtrail, "ResourceName", key["Arn"]), request_id(again))
    assert record["eventName"] == "DisableKey"
    assert "errorCode" not in record
