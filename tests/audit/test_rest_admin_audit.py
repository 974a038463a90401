"""Every REST call is in the trail: identity administration as CloudTrail records IAM's calls,
KeyLedger's own endpoints (accounts, service designations, explain, the denial log, keys as
of a time, reports) under keyledger.amazonaws.com; allowed, denied and refused alike."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.access.conftest import ADMIN_ARN, KMS_ALL, Identities, Principal
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import by_request, records
from tests.conftest import ACCOUNT_ID, REGION, Service
from tests.support.signing import sign_request

IAM = "iam.amazonaws.com"
KEYLEDGER = "keyledger.amazonaws.com"


class RealTimeRest(RestClient):
    """Signs with the real time, as SDKs do: valid whatever the service clock says."""

    def request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        url = str(httpx.URL(self.service.endpoint + path, params=params))
        if content is None:
            content = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(
            method,
            url,
            {"Content-Type": "application/json"} if content else {},
            content,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=REGION,
            service="kms",
            now=datetime.now(UTC),
        )
        return self.http.request(method, url, content=content, headers=headers)


@pytest.fixture
def rest(service: Service) -> Iterator[RealTimeRest]:
    client = RealTimeRest(service, service.access_key_id, service.secret_access_key)
    yield client
    client.http.close()


def rest_of(service: Service, principal: Principal) -> RealTimeRest:
    return RealTimeRest(service, principal.access_key_id, principal.secret)


def _since(service: Service) -> datetime:
    return service.runtime.clock.now() - timedelta(seconds=2)


def _request_id(response: httpx.Response) -> str:
    return response.headers["x-amzn-requestid"]


def _recorded(
    cloudtrail: Any, source: str, since: datetime, response: httpx.Response
) -> list[dict[str, Any]]:
    """The records of one REST call, found with LookupEvents by their event source."""
    return by_request(
        records(cloudtrail, "EventSource", source, StartTime=since), _request_id(response)
    )


def test_identity_administration_is_recorded_as_iam_calls(
    rest: RealTimeRest, cloudtrail: Any, service: Service, identities: Identities
) -> None:
    since = _since(service)
    account = identities.account()
    user_arn = f"arn:aws:iam::{account}:user/app"
    role_arn = f"arn:aws:iam::{account}:role/worker"
    calls = {
        "CreateUser": rest.post("/v1/iam/principals", {"account_id": account, "name": "app"}),
        "CreateRole": rest.post(
            "/v1/iam/principals", {"account_id": account, "name": "worker", "type": "role"}
        ),
        "PutUserPolicy": rest.put(
            f"/v1/iam/principals/{user_arn}/policies/Kms", {"policy": KMS_ALL}
        ),
        "PutRolePolicy": rest.put(
            f"/v1/iam/principals/{role_arn}/policies/Kms", {"policy": KMS_ALL}
        ),
        "PutUserPolicy again": rest.put(
            f"/v1/iam/principals/{user_arn}/policies/Kms", {"policy": KMS_ALL}
        ),  # unchanged: no event
        "GetUser": rest.get(f"/v1/iam/principals/{user_arn}"),
        "GetRole": rest.get(f"/v1/iam/principals/{role_arn}"),
        "CreateAccessKey": rest.post(f"/v1/iam/principals/{user_arn}/access-keys"),
        "DeleteRolePolicy": rest.delete(f"/v1/iam/principals/{role_arn}/policies/Kms"),
    }
    access_key = calls["CreateAccessKey"].json()
    calls["UpdateAccessKey"] = rest.post(
        f"/v1/iam/access-keys/{access_key['access_key_id']}/deactivate"
    )
    assert all(r.status_code < 300 for r in calls.values()), {
        name: r.text for name, r in calls.items() if r.status_code >= 300
    }
    copies = {name: _recorded(cloudtrail, IAM, since, answer) for name, answer in calls.items()}
    # one copy for the caller's account, one for the account whose identity it changed
    assert {name: {r["recipientAccountId"] for r in rs} for name, rs in copies.items()} == {
        name: {ACCOUNT_ID, account} for name in calls
    }
    found = {
        name: [r for r in rs if r["recipientAccountId"] == ACCOUNT_ID]
        for name, rs in copies.items()
    }
    assert {name: [r["eventName"] for r in rs] for name, rs in found.items()} == {
        name: [name.removesuffix(" again")] for name in calls
    }
    for name, (record,) in found.items():
        assert record["userIdentity"]["arn"] == ADMIN_ARN, name
        assert record["eventSource"] == IAM
        assert "errorCode" not in record, name
        assert record["readOnly"] is name.startswith("Get"), name
        assert record["eventType"] == "AwsApiCall"
    assert found["CreateUser"][0]["requestParameters"] == {"userName": "app"}
    assert found["CreateUser"][0]["resources"] == [
        {"accountId": account, "type": "AWS::IAM::User", "ARN": user_arn}
    ]
    assert found["CreateRole"][0]["resources"][0]["type"] == "AWS::IAM::Role"
    assert found["PutUserPolicy"][0]["requestParameters"]["policyDocument"] == KMS_ALL
    assert found["PutUserPolicy again"][0]["requestParameters"] == {
        "userName": "app",
        "policyName": "Kms",
    }
    assert found["GetRole"][0]["requestParameters"] == {"roleName": "worker"}
    issued = found["CreateAccessKey"][0]
    assert issued["responseElements"]["accessKey"]["accessKeyId"] == access_key["access_key_id"]
    assert access_key["secret_access_key"] not in json.dumps(copies, default=str)
    updated = found["UpdateAccessKey"][0]["requestParameters"]
    assert (updated["accessKeyId"], updated["status"]) == (access_key["access_key_id"], "Inactive")


def test_creating_a_principal_with_policies_records_both_calls(
    rest: RealTimeRest, cloudtrail: Any, service: Service, identities: Identities
) -> None:
    since = _since(service)
    account = identities.account()
    body = {"account_id": account, "name": "svc", "policies": {"Kms": KMS_ALL}}
    created = rest.post("/v1/iam/principals", body)
    assert created.status_code == 201, created.text
    found = _recorded(cloudtrail, IAM, since, created)
    mine = sorted(r["eventName"] for r in found if r["recipientAccountId"] == ACCOUNT_ID)
    assert mine == ["CreateUser", "PutUserPolicy"]


def test_keyledger_administration_is_recorded_under_its_own_source(
    rest: RealTimeRest, cloudtrail: Any, service: Service, identities: Identities
) -> None:
    since = _since(service)
    account = "".join(secrets.choice("0123456789") for _ in range(12))  # not created yet
    created = rest.post("/v1/iam/accounts", {"account_id": account, "name": "apps"})
    assert created.status_code == 201, created.text
    principal = identities.principal(account)
    designated = rest.put(
        f"/v1/iam/principals/{principal.arn}/service", {"service_name": "ec2.amazonaws.com"}
    )
    assert designated.status_code == 204, designated.text
    copies = _recorded(cloudtrail, KEYLEDGER, since, created)
    assert {r["recipientAccountId"] for r in copies} == {ACCOUNT_ID, account}
    (account_record,) = [r for r in copies if r["recipientAccountId"] == ACCOUNT_ID]
    assert account_record["eventName"] == "CreateAccount"
    assert account_record["requestParameters"] == {"accountId": account, "accountName": "apps"}
    assert account_record["resources"][0]["ARN"] == f"arn:aws:iam::{account}:root"
    assert account_record["readOnly"] is False
    (designation,) = [
        r
        for r in _recorded(cloudtrail, KEYLEDGER, since, designated)
        if r["recipientAccountId"] == ACCOUNT_ID
    ]
    assert designation["eventName"] == "DesignateServicePrincipal"
    assert designation["requestParameters"] == {
        "principalArn": principal.arn,
        "serviceName": "ec2.amazonaws.com",
    }


def test_explain_denials_as_of_and_reports_are_recorded(
    rest: RealTimeRest, cloudtrail: Any, service: Service, kms: Any, identities: Identities
) -> None:
    since = _since(service)
    key = kms.create_key()["KeyMetadata"]
    user = identities.principal(ACCOUNT_ID)
    calls = {
        "ExplainAccess": rest.post(
            "/v1/authz/explain",
            {
                "principal_arn": user.arn,
                "action": "kms:Decrypt",
                "key_id": key["Arn"],
                "encryption_context": {"tenant": "acme"},
            },
        ),
        "ListAccessDenials": rest.get("/v1/authz/denials", params={"principal_arn": user.arn}),
        "GetKeyAsOf": rest.get(
            f"/v1/audit/keys/{key['Arn']}/as-of",
            params={"at": service.runtime.clock.now().isoformat()},
        ),
        "GetComplianceReport": rest.get("/v1/audit/reports/cis-rotation"),
    }
    assert all(r.status_code == 200 for r in calls.values()), {
        name: r.text for name, r in calls.items() if r.status_code != 200
    }
    found = {name: _recorded(cloudtrail, KEYLEDGER, since, r) for name, r in calls.items()}
    assert {name: [r["eventName"] for r in rs] for name, rs in found.items()} == {
        name: [name] for name in calls
    }
    assert all(rs[0]["readOnly"] is True for rs in found.values())
    explained = found["ExplainAccess"][0]
    assert explained["requestParameters"]["encryptionContext"] == {"tenant": "acme"}
    assert explained["resources"][0]["ARN"] == key["Arn"]
    assert found["GetKeyAsOf"][0]["resources"][0]["ARN"] == key["Arn"]
    assert found["GetComplianceReport"][0]["requestParameters"]["reportName"] == "cis-rotation"
    assert found["ListAccessDenials"][0]["requestParameters"] == {"principalArn": user.arn}


def test_a_denied_administration_call_is_recorded(
    service: Service, cloudtrail: Any, identities: Identities
) -> None:
    since = _since(service)
    stranger = identities.principal(ACCOUNT_ID, policies={"Kms": KMS_ALL})  # no iam:*
    victim = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
    client = rest_of(service, stranger)
    try:
        denied = {
            "CreateUser": client.post(
                "/v1/iam/principals", {"account_id": ACCOUNT_ID, "name": "intruder"}
            ),
            "PutUserPolicy": client.put(
                f"/v1/iam/principals/{victim}/policies/Mine", {"policy": KMS_ALL}
            ),
            "CreateAccount": client.post("/v1/iam/accounts", {"account_id": "999988887777"}),
            "GetComplianceReport": client.get("/v1/audit/reports/inventory"),
        }
    finally:
        client.http.close()
    assert {name: r.status_code for name, r in denied.items()} == dict.fromkeys(denied, 403)
    for name, answer in denied.items():
        source = IAM if name in ("CreateUser", "PutUserPolicy") else KEYLEDGER
        (record,) = _recorded(cloudtrail, source, since, answer)
        assert record["eventName"] == name
        assert record["errorCode"] == "AccessDenied"
        assert record["errorMessage"].startswith(f"User: {stranger.arn} is not authorized")
        assert record["userIdentity"]["arn"] == stranger.arn
        assert record["responseElements"] is None
    (put,) = _recorded(cloudtrail, IAM, since, denied["PutUserPolicy"])
    assert put["requestParameters"] == {"userName": "admin", "policyName": "Mine"}
    assert put["resources"] == [{"accountId": ACCOUNT_ID, "type": "AWS::IAM::User", "ARN": victim}]


def test_administration_calls_refused_by_validation_are_recorded(
    rest: RealTimeRest, cloudtrail: Any, service: Service, identities: Identities
) -> None:
    since = _since(service)
    user = identities.principal(ACCOUNT_ID)
    refused = {
        "ValidationException": rest.post(
            "/v1/iam/principals", {"account_id": "not-an-account", "name": "x"}
        ),
        "SerializationException": rest.post("/v1/iam/principals", content=b'{"account_id": '),
        "MalformedPolicyDocumentException": rest.put(
            f"/v1/iam/principals/{user.arn}/policies/Bad", {"policy": "{not json"}
        ),
        "AlreadyExistsException": rest.post(
            "/v1/iam/principals", {"account_id": ACCOUNT_ID, "name": "admin"}
        ),
    }
    for code, answer in refused.items():
        assert answer.status_code in (400, 409), answer.text
        assert answer.json()["__type"] == code
        found = _recorded(cloudtrail, IAM, since, answer)
        assert len(found) == 1, (code, found)
        (record,) = found
        assert record["errorCode"] == code
        assert record["userIdentity"]["arn"] == ADMIN_ARN
    (invalid,) = _recorded(cloudtrail, IAM, since, refused["ValidationException"])
    assert (invalid["eventName"], invalid["requestParameters"]) == ("CreateUser", {"userName": "x"})
    (malformed,) = _recorded(cloudtrail, IAM, since, refused["MalformedPolicyDocumentException"])
    assert malformed["eventName"] == "PutUserPolicy"
    assert "{not json" not in json.dumps(malformed, default=str)
    report = rest.get("/v1/audit/reports/no-such-report")
    assert report.status_code == 400
    (unknown,) = _recorded(cloudtrail, KEYLEDGER, since, report)
    assert (unknown["eventName"], unknown["errorCode"]) == (
        "GetComplianceReport",
        "ValidationException",
    )
