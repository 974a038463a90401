"""GET /v1/audit/...: the trail with combined filters, paging and exports; keys as of any
time (REST and CLI); last use."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import Identities, key_policy_doc
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import AUDITOR_POLICY, request_id
from tests.conftest import ACCOUNT_ID, Service

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rest(service: Service) -> Iterator[RestClient]:
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    yield client
    client.http.close()


def _events(rest: RestClient, **params: Any) -> dict[str, Any]:
    response = rest.get("/v1/audit/events", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_filters_combine(rest: RestClient, kms: Any, identities: Identities) -> None:
    start = rest.service.runtime.clock.now() - timedelta(seconds=1)
    key = kms.create_key()["KeyMetadata"]
    other = kms.create_key()["KeyMetadata"]
    for key_arn, tenant in ((key["Arn"], "acme"), (other["Arn"], "acme"), (key["Arn"], None)):
        context = {"tenant": tenant} if tenant else {"project": "x"}
        kms.encrypt(KeyId=key_arn, Plaintext=b"x", EncryptionContext=context)
    stranger = identities.principal(ACCOUNT_ID)
    with pytest.raises(Exception):  # noqa: B017 (AccessDenied, recorded)
        stranger.kms.decrypt(
            CiphertextBlob=kms.encrypt(KeyId=key["Arn"], Plaintext=b"y")["CiphertextBlob"]
        )
    found = _events(
        rest,
        key=key["Arn"],
        event_name="Encrypt",
        encryption_context_key="tenant",
        start_time=start.isoformat(),
    )["events"]
    assert len(found) == 1
    assert found[0]["requestParameters"]["encryptionContext"] == {"tenant": "acme"}
    denied = _events(
        rest,
        principal_arn=stranger.arn,
        error_code="AccessDenied",
        source_ip="127.0.0.1",
        key=key["KeyId"],
    )["events"]
    assert [(r["eventName"], r["errorCode"]) for r in denied] == [("Decrypt", "AccessDenied")]
    assert _events(rest, principal_arn=stranger.arn, error_code="*")["events"] == denied
    assert _events(rest, principal_arn=stranger.arn, source_ip="203.0.113.9")["events"] == []
    later = _events(rest, key=key["Arn"], start_time=(start + timedelta(days=1)).isoformat())
    assert later["events"] == []


def test_pages_and_exports(rest: RestClient, kms: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    for n in range(4):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"n": str(n)})
    pages, token = [], None
    while True:
        params: dict[str, Any] = {"key": key["Arn"], "limit": 2}
        if token:
            params["next_token"] = token
        page = _events(rest, **params)
        pages.append([r["eventName"] for r in page["events"]])
        token = page["next_token"]
        if token is None:
            break
    assert pages == [["Encrypt", "Encrypt"], ["Encrypt", "Encrypt"], ["CreateKey"]]
    jsonl = rest.get("/v1/audit/events", params={"key": key["Arn"], "format": "jsonl"})
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [r["eventName"] for r in lines] == ["CreateKey"] + ["Encrypt"] * 4  # oldest first
    exported = rest.get("/v1/audit/events", params={"key": key["Arn"], "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["eventName"] for r in rows] == ["CreateKey"] + ["Encrypt"] * 4
    assert rows[1]["encryptionContextKeys"] == "n"
    assert rows[0]["resources"] == key["Arn"]


def test_an_account_reads_its_own_trail_only(
    service: Service, identities: Identities, kms: Any
) -> None:
    account = identities.account()
    auditor = identities.principal(account, policies={"Audit": AUDITOR_POLICY})
    own = auditor.kms.create_key()["KeyMetadata"]
    foreign = kms.create_key()["KeyMetadata"]
    client = RestClient(service, auditor.access_key_id, auditor.secret)
    try:
        mine = client.get("/v1/audit/events", params={"event_name": "CreateKey"}).json()
        assert {r["recipientAccountId"] for r in mine["events"]} == {account}
        assert own["Arn"] in {r["resources"][0]["ARN"] for r in mine["events"]}
        assert (
            client.get(
                "/v1/audit/events", params={"key": foreign["Arn"], "account": ACCOUNT_ID}
            ).json()["events"]
            == []
        )
        assert (
            client.get(
                f"/v1/audit/keys/{foreign['KeyId']}/as-of", params={"at": "2100-01-01T00:00:00Z"}
            ).status_code
            == 404
        )
    finally:
        client.http.close()


@pytest.fixture
def key_history(service: Service, kms: Any, identities: Identities) -> dict[str, Any]:
    """A key whose policy, grants, tags and state changed after ``before``."""
    grantee = identities.principal(ACCOUNT_ID)
    key = kms.create_key(Description="first", Tags=[{"TagKey": "stage", "TagValue": "one"}])
    metadata = key["KeyMetadata"]
    before = service.runtime.clock.now()
    policy = key_policy_doc(
        {
            "Sid": "Grantee may decrypt",
            "Effect": "Allow",
            "Principal": {"AWS": grantee.arn},
            "Action": "kms:Decrypt",
            "Resource": "*",
        }
    )
    kms.put_key_policy(KeyId=metadata["KeyId"], PolicyName="default", Policy=policy)
    grant = kms.create_grant(
        KeyId=metadata["KeyId"], GranteePrincipal=grantee.arn, Operations=["Decrypt"]
    )
    kms.update_key_description(KeyId=metadata["KeyId"], Description="second")
    kms.tag_resource(KeyId=metadata["KeyId"], Tags=[{"TagKey": "stage", "TagValue": "two"}])
    kms.encrypt(KeyId=metadata["KeyId"], Plaintext=b"x")
    kms.disable_key(KeyId=metadata["KeyId"])
    after = service.runtime.clock.now()
    kms.schedule_key_deletion(KeyId=metadata["KeyId"], PendingWindowInDays=7)
    return {
        "key": metadata,
        "before": before,
        "after": after,
        "policy": policy,
        "grant_id": grant["GrantId"],
    }


def test_a_key_as_of_any_time(rest: RestClient, key_history: dict[str, Any]) -> None:
    key = key_history["key"]

    def as_of(at: Any) -> Any:
        return rest.get(f"/v1/audit/keys/{key['Arn']}/as-of", params={"at": at.isoformat()})

    then = as_of(key_history["before"]).json()
    assert (then["key_state"], then["description"], then["tags"]) == (
        "Enabled",
        "first",
        {"stage": "one"},
    )
    assert then["grants"] == []
    assert "Grantee may decrypt" not in then["policy"]
    assert then["last_used_at"] is None
    later = as_of(key_history["after"]).json()
    assert (later["key_state"], later["description"], later["tags"]) == (
        "Disabled",
        "second",
        {"stage": "two"},
    )
    assert later["policy"] == key_history["policy"]
    assert [g["grant_id"] for g in later["grants"]] == [key_history["grant_id"]]
    assert later["last_used_operation"] == "Encrypt"
    now = as_of(key_history["after"] + timedelta(hours=1)).json()
    assert now["key_state"] == "PendingDeletion"
    missing = as_of(key_history["before"] - timedelta(days=1))
    assert missing.status_code == 404, missing.text


def test_the_cli_tells_a_key_as_of_a_time(service: Service, key_history: dict[str, Any]) -> None:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": service.runtime.database_url}
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "audit",
            "key",
            key_history["key"]["KeyId"],
            "--at",
            key_history["before"].isoformat(),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    answer = json.loads(process.stdout)
    assert (answer["key_state"], answer["description"]) == ("Enabled", "first")


def test_last_usage_over_rest(rest: RestClient, kms: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    answer = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    usage = rest.get(f"/v1/audit/keys/{key['KeyId']}/last-usage").json()
    assert usage["operation"] == "GenerateDataKey"
    assert usage["request_id"] == request_id(answer)


def test_rest_calls_are_recorded_like_their_aws_twins(
    rest: RestClient, cloudtrail: Any, identities: Identities
) -> None:
    from tests.audit.conftest import by_request, records

    key = rest.create_key(description="rest audited")
    described = rest.get(f"/v1/keys/{key['key_id']}")
    encrypted = rest.encrypt(key["key_id"], b"rest plaintext", encryption_context={"k": "v"})
    stranger = identities.principal(ACCOUNT_ID)
    denied_client = RestClient(rest.service, stranger.access_key_id, stranger.secret)
    try:
        denied = denied_client.get(f"/v1/keys/{key['arn']}")
    finally:
        denied_client.http.close()
    assert denied.status_code == 403
    found = records(cloudtrail, "ResourceName", key["arn"])
    (describe,) = by_request(found, described.headers["x-amzn-requestid"])
    assert (describe["eventName"], describe["requestParameters"]) == (
        "DescribeKey",
        {"keyId": key["key_id"]},
    )
    (encrypt,) = by_request(found, encrypted.headers["x-amzn-requestid"])
    assert encrypt["requestParameters"]["encryptionContext"] == {"k": "v"}
    (refused,) = by_request(found, denied.headers["x-amzn-requestid"])
    assert (refused["errorCode"], refused["userIdentity"]["arn"]) == ("AccessDenied", stranger.arn)
    assert "rest plaintext" not in json.dumps(found, default=str)


def test_any_encryption_context_key_can_be_searched(rest: RestClient, kms: Any) -> None:
    key = kms.create_key()["KeyMetadata"]
    odd = 'a,b "c" \\d {e} f'
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={odd: "v", "plain": "w"})
    found = _events(rest, key=key["Arn"], encryption_context_key=odd)["events"]
    assert [r["requestParameters"]["encryptionContext"][odd] for r in found] == ["v"]
