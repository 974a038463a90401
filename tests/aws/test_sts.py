"""AWS STS on the KMS endpoint: GetCallerIdentity, AssumeRole and KMS calls made with the
temporary credentials, authorized and recorded as the assumed role (as on AWS)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.aws.conftest import KMS_FULL_ACCESS, service_now
from tests.conftest import ACCOUNT_ID, Service

ADMIN_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"


def trust(*principals: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": list(principals)},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def new_role(service: Service, trust_policy: str, **kwargs: Any) -> str:
    return service.runtime.identity.create_principal(
        ACCOUNT_ID, f"role{uuid.uuid4().hex[:10]}", "role", trust_policy=trust_policy, **kwargs
    )


def session_clients(service: Service, credentials: dict[str, Any]) -> tuple[Any, Any]:
    def client(name: str) -> Any:
        import boto3

        return boto3.client(
            name,
            endpoint_url=service.endpoint,
            region_name="us-east-1",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    return client("kms"), client("sts")


def assume(service: Service, role_arn: str, name: str = "tests", **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = service.client("sts").assume_role(
        RoleArn=role_arn, RoleSessionName=name, **kwargs
    )
    return answer


def key_allowing(service: Service, principal: str) -> str:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "admin",
                "Effect": "Allow",
                "Principal": {"AWS": ADMIN_ARN},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "role",
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": ["kms:Encrypt", "kms:Decrypt"],
                "Resource": "*",
            },
        ],
    }
    created = service.client("kms").create_key(Policy=json.dumps(policy))
    return str(created["KeyMetadata"]["KeyId"])


def test_get_caller_identity_names_the_signing_user(service: Service) -> None:
    found = service.client("sts").get_caller_identity()
    assert (found["Arn"], found["Account"]) == (ADMIN_ARN, ACCOUNT_ID)
    assert found["UserId"].startswith("AIDA")


def test_assume_role_issues_temporary_credentials_of_the_role(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN))
    answer = assume(service, role, "build-42", DurationSeconds=900)
    credentials, user = answer["Credentials"], answer["AssumedRoleUser"]
    role_name = role.rsplit("/", 1)[-1]
    assert credentials["AccessKeyId"].startswith("ASIA")
    assert credentials["SecretAccessKey"] and credentials["SessionToken"]
    lasts = credentials["Expiration"] - service_now(service)  # the service clock's time
    assert timedelta(minutes=13) < lasts <= timedelta(minutes=15, seconds=5)
    assert user["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/build-42"
    assert user["AssumedRoleId"].startswith("AROA") and user["AssumedRoleId"].endswith(":build-42")
    _, sts = session_clients(service, credentials)
    identity = sts.get_caller_identity()
    assert (identity["Arn"], identity["UserId"]) == (user["Arn"], user["AssumedRoleId"])


def test_assume_role_is_denied_unless_the_trust_policy_allows_the_caller(service: Service) -> None:
    role = new_role(service, trust(f"arn:aws:iam::{ACCOUNT_ID}:user/someone-else"))
    with pytest.raises(ClientError) as raised:
        assume(service, role)
    error, status = raised.value.response["Error"], raised.value.response["ResponseMetadata"]
    assert (error["Code"], error["Type"], status["HTTPStatusCode"]) == (
        "AccessDenied",
        "Sender",
        403,
    )
    assert error["Message"] == (
        f"User: {ADMIN_ARN} is not authorized to perform: sts:AssumeRole on resource: {role}"
    )


def test_assume_role_of_a_missing_role_is_denied_not_revealed(service: Service) -> None:
    with pytest.raises(ClientError) as raised:
        assume(service, f"arn:aws:iam::{ACCOUNT_ID}:role/no-such-role")
    assert raised.value.response["Error"]["Code"] == "AccessDenied"


def test_duration_beyond_the_roles_maximum_is_refused(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN))
    with pytest.raises(ClientError) as raised:
        assume(service, role, DurationSeconds=7200)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "MaxSessionDuration" in error["Message"]


def test_kms_authorizes_the_session_as_the_role_a_key_policy_names(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN))
    key_id = key_allowing(service, role)
    kms, _ = session_clients(service, assume(service, role)["Credentials"])
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"hi")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hi"


def test_kms_denies_the_session_what_neither_key_nor_role_policy_allows(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN))
    key_id = service.client("kms").create_key()["KeyMetadata"]["KeyId"]
    answer = assume(service, role, "denied")
    kms, _ = session_clients(service, answer["Credentials"])
    with pytest.raises(ClientError) as raised:
        kms.encrypt(KeyId=key_id, Plaintext=b"hi")
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"].startswith(
        f"User: {answer['AssumedRoleUser']['Arn']} is not authorized"
    )


def test_the_roles_identity_policies_apply_to_its_sessions(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN), policies={"Kms": KMS_FULL_ACCESS})
    key_id = service.client("kms").create_key()["KeyMetadata"]["KeyId"]
    kms, _ = session_clients(service, assume(service, role)["Credentials"])
    assert kms.encrypt(KeyId=key_id, Plaintext=b"hi")["KeyId"].endswith(key_id)


def test_a_tampered_session_token_is_not_recognized(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN))
    credentials = dict(assume(service, role)["Credentials"])
    token = credentials["SessionToken"]
    credentials["SessionToken"] = token[:-6] + (
        "AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB"
    )
    kms, sts = session_clients(service, credentials)
    with pytest.raises(ClientError) as raised:
        kms.list_keys()
    assert raised.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as raised:
        sts.get_caller_identity()
    assert raised.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_an_expired_session_token_is_refused_as_aws_does(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN), policies={"Kms": KMS_FULL_ACCESS})
    kms, _ = session_clients(service, assume(service, role, DurationSeconds=900)["Credentials"])
    kms.list_keys()
    service.runtime.clock.advance(timedelta(seconds=901))
    try:
        with pytest.raises(ClientError) as raised:
            kms.list_keys()
    finally:  # the clock is shared: later tests sign with it
        service.runtime.clock.advance(timedelta(seconds=-901))
    error = raised.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "ExpiredTokenException",
        "The security token included in the request is expired",
    )


def test_other_sts_and_iam_actions_get_an_xml_invalid_action(service: Service) -> None:
    with pytest.raises(ClientError) as raised:
        service.client("sts").get_session_token()
    error = raised.value.response["Error"]
    assert (error["Code"], error["Type"]) == ("InvalidAction", "Sender")
    assert error["Message"] == "Could not find operation GetSessionToken for version 2011-06-15"
    with pytest.raises(ClientError) as raised:
        service.client("iam").list_users()
    assert raised.value.response["Error"]["Code"] == "InvalidAction"


def test_cloudtrail_names_the_assumed_role_and_its_session(service: Service) -> None:
    role = new_role(service, trust(ADMIN_ARN))
    key_id = key_allowing(service, role)
    answer = assume(service, role, "audited")
    kms, _ = session_clients(service, answer["Credentials"])
    kms.encrypt(KeyId=key_id, Plaintext=b"hi")
    cloudtrail = service.client("cloudtrail")
    access_key_id = answer["Credentials"]["AccessKeyId"]
    events = cloudtrail.lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": access_key_id}]
    )["Events"]
    record = json.loads(next(e for e in events if e["EventName"] == "Encrypt")["CloudTrailEvent"])
    identity = record["userIdentity"]
    assert identity["type"] == "AssumedRole"
    assert identity["arn"] == answer["AssumedRoleUser"]["Arn"]
    assert identity["principalId"] == answer["AssumedRoleUser"]["AssumedRoleId"]
    assert identity["accessKeyId"] == access_key_id
    issuer = identity["sessionContext"]["sessionIssuer"]
    assert (issuer["type"], issuer["arn"]) == ("Role", role)
    assumed = cloudtrail.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}]
    )["Events"]
    assert any(
        json.loads(e["CloudTrailEvent"])["eventSource"] == "sts.amazonaws.com" for e in assumed
    )


def test_a_refused_call_signed_with_temporary_credentials_is_recorded_for_the_session(
    service: Service,
) -> None:
    role = new_role(service, trust(ADMIN_ARN), policies={"Kms": KMS_FULL_ACCESS})
    answer = assume(service, role, "refused")
    credentials = dict(answer["Credentials"], SecretAccessKey="not-the-session-secret")
    kms, _ = session_clients(service, credentials)
    with pytest.raises(ClientError) as raised:
        kms.list_keys()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    access_key_id = answer["Credentials"]["AccessKeyId"]
    events = service.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": access_key_id}]
    )["Events"]
    refused = [json.loads(e["CloudTrailEvent"]) for e in events if e["EventName"] == "ListKeys"]
    assert len(refused) == 1
    assert refused[0]["errorCode"] == "InvalidSignatureException"
    assert refused[0]["userIdentity"]["arn"] == answer["AssumedRoleUser"]["Arn"]
    assert refused[0]["userIdentity"]["type"] == "AssumedRole"
