"""Compliance reports, each on a ledger built to make it say something: a fresh account
whose keys and principals fail (and pass) what each report checks."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.usecases.auditors import AuditService
from projections import reports
from projections.reports import FAILED, NOT_APPLICABLE, PASSED, Report
from tests.access.conftest import Identities, Principal, allow, policy, root
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import AUDITOR_POLICY, run
from tests.conftest import Service

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Estate:
    account: str
    owner: Principal
    keys: dict[str, dict[str, Any]]
    principals: dict[str, Principal]


def _policy_with(account: str, *statements: dict[str, Any]) -> str:
    return policy(
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": root(account)},
            "Action": "kms:*",
            "Resource": "*",
        },
        *statements,
    )


@pytest.fixture(scope="module")
def estate(service: Service) -> Estate:
    """One account with keys and principals that each report has something to say about."""
    identities = Identities(service)
    account = identities.account()
    owner = identities.principal(account, name="owner", policies={"Audit": AUDITOR_POLICY})
    broad = identities.principal(
        account, name="broad", policies={"Decrypt": policy(allow("kms:Decrypt"))}
    )
    app = identities.principal(account, name="app", role=True)
    conditional = identities.principal(account, name="conditional")
    grantee = identities.principal(account, name="grantee")
    nobody = identities.principal(account, name="nobody")
    kms = owner.kms
    keys: dict[str, dict[str, Any]] = {}

    def new(name: str, **kwargs: Any) -> dict[str, Any]:
        keys[name] = dict(kms.create_key(Description=name, **kwargs)["KeyMetadata"])
        return keys[name]

    new("rotating")
    kms.enable_key_rotation(KeyId=keys["rotating"]["KeyId"])
    kms.rotate_key_on_demand(KeyId=keys["rotating"]["KeyId"])
    kms.rotate_key_on_demand(KeyId=keys["rotating"]["KeyId"])
    new("not-rotating")
    kms.encrypt(KeyId=keys["not-rotating"]["KeyId"], Plaintext=b"x")
    new("pending")
    kms.schedule_key_deletion(KeyId=keys["pending"]["KeyId"], PendingWindowInDays=7)
    new(
        "public",
        Policy=policy(
            {
                "Sid": "Everyone",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "kms:*",
                "Resource": "*",
            }
        ),
    )
    kms.enable_key_rotation(KeyId=keys["public"]["KeyId"])
    new("signing", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    shared = new(
        "shared",
        Policy=_policy_with(
            account,
            {
                "Sid": "App decrypts",
                "Effect": "Allow",
                "Principal": {"AWS": app.arn},
                "Action": "kms:Decrypt",
                "Resource": "*",
            },
            {
                "Sid": "Tenant acme only",
                "Effect": "Allow",
                "Principal": {"AWS": conditional.arn},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "acme"}},
            },
        ),
    )
    kms.enable_key_rotation(KeyId=shared["KeyId"])
    kms.create_grant(KeyId=shared["KeyId"], GranteePrincipal=grantee.arn, Operations=["Decrypt"])
    principals = {
        "broad": broad,
        "app": app,
        "conditional": conditional,
        "grantee": grantee,
        "nobody": nobody,
    }
    return Estate(account, owner, keys, principals)


def _report(service: Service, estate: Estate, name: str, **kwargs: Any) -> Report:
    audit = service.runtime.audit_service
    assert isinstance(audit, AuditService)
    if "now" in kwargs:  # the same ledger, judged at another moment
        now = kwargs.pop("now")
        service.runtime.audit.wait_for_current()
        return reports.report(name, service.runtime.pool, estate.account, now, **kwargs)
    return run(audit.report(None, name, account=estate.account, **kwargs))


def _status(report: Report, control: str, resource: str) -> str:
    (row,) = [r for r in report.rows if r["control"] == control and r["resource"] == resource]
    return str(row["status"])


def test_security_hub_kms_controls(service: Service, estate: Estate) -> None:
    found = _report(service, estate, "security-hub")
    keys, people = estate.keys, estate.principals
    assert [r["status"] for r in found.rows if r["control"] == "KMS.1"] == [NOT_APPLICABLE]
    assert _status(found, "KMS.2", people["broad"].arn) == FAILED
    assert _status(found, "KMS.2", estate.owner.arn) == FAILED  # kms:* on "*" includes Decrypt
    assert _status(found, "KMS.2", people["app"].arn) == PASSED
    assert _status(found, "KMS.3", keys["pending"]["Arn"]) == FAILED
    assert _status(found, "KMS.3", keys["rotating"]["Arn"]) == PASSED
    assert _status(found, "KMS.4", keys["not-rotating"]["Arn"]) == FAILED
    assert _status(found, "KMS.4", keys["rotating"]["Arn"]) == PASSED
    assert not [
        r
        for r in found.rows
        if r["control"] == "KMS.4"
        and r["resource"] in (keys["pending"]["Arn"], keys["signing"]["Arn"])
    ]
    assert _status(found, "KMS.5", keys["public"]["Arn"]) == FAILED
    assert _status(found, "KMS.5", keys["shared"]["Arn"]) == PASSED
    assert found.summary["KMS.5"] == {PASSED: 5, FAILED: 1}


def test_cis_rotation(service: Service, estate: Estate) -> None:
    found = _report(service, estate, "cis-rotation")
    statuses = {row["key_arn"]: row["status"] for row in found.rows}
    assert statuses == {
        estate.keys["rotating"]["Arn"]: PASSED,
        estate.keys["not-rotating"]["Arn"]: FAILED,
        estate.keys["public"]["Arn"]: PASSED,
        estate.keys["shared"]["Arn"]: PASSED,
    }
    assert found.summary["status"] == FAILED


def test_keys_pending_deletion(service: Service, estate: Estate) -> None:
    found = _report(service, estate, "pending-deletion")
    (row,) = found.rows
    assert row["key_arn"] == estate.keys["pending"]["Arn"]
    assert row["scheduled_by"] == estate.owner.arn
    assert 6.9 < row["days_left"] <= 7


def test_unused_keys(service: Service, estate: Estate) -> None:
    assert _report(service, estate, "unused-keys", days=30).rows == []
    later = service.runtime.clock.now() + timedelta(days=40)
    found = _report(service, estate, "unused-keys", days=30, now=later)
    rows = {row["key_arn"]: row for row in found.rows}
    used = rows[estate.keys["not-rotating"]["Arn"]]
    assert (used["never_used"], used["last_used_operation"]) == (False, "Encrypt")
    assert rows[estate.keys["signing"]["Arn"]]["never_used"] is True
    assert rows[estate.keys["signing"]["Arn"]]["days_unused"] >= 39


def test_keys_past_their_cryptoperiod(service: Service, estate: Estate) -> None:
    assert not any(r["past_cryptoperiod"] for r in _report(service, estate, "cryptoperiod").rows)
    later = service.runtime.clock.now() + timedelta(days=800)  # symmetric 730 days, signature 1095
    found = _report(service, estate, "cryptoperiod", now=later)
    past = {row["key_arn"]: row["past_cryptoperiod"] for row in found.rows}
    assert past[estate.keys["not-rotating"]["Arn"]] is True
    assert past[estate.keys["signing"]["Arn"]] is False
    assert estate.keys["pending"]["Arn"] not in past
    longer = _report(
        service, estate, "cryptoperiod", now=later, cryptoperiods={"symmetric-encryption": 1000}
    )
    assert not any(r["past_cryptoperiod"] for r in longer.rows)


def test_who_can_decrypt(service: Service, estate: Estate) -> None:
    found = _report(service, estate, "who-can-decrypt", key=estate.keys["shared"]["Arn"])
    access = {row["principal"]: row["access"] for row in found.rows}
    people = estate.principals
    assert access[estate.owner.arn] == "yes"  # the root statement, then its identity policy
    assert access[people["broad"].arn] == "yes"
    assert access[people["app"].arn] == "yes"  # named by the key policy
    assert access[people["grantee"].arn] == "yes"  # by its grant
    assert access[people["conditional"].arn] == "conditional"
    assert (
        "kms:encryptioncontext:tenant"
        in next(
            r["basis"] for r in found.rows if r["principal"] == people["conditional"].arn
        ).lower()
    )
    assert people["nobody"].arn not in access
    public = _report(service, estate, "who-can-decrypt", key=estate.keys["public"]["KeyId"])
    assert {"principal": "*", "account_id": "*", "access": "yes"}.items() <= next(
        r for r in public.rows if r["principal"] == "*"
    ).items()


def test_who_can_decrypt_lists_a_principal_whose_identity_policy_it_cannot_parse(
    service: Service, estate: Estate
) -> None:
    """A policy the evaluator cannot read (one stored before the parser grew stricter) may
    allow or deny: the principal is listed as "could not evaluate", naming the policy, never
    left out (a report that under-reports access misleads its auditor)."""
    suspect = Identities(service).principal(estate.account, name="unreadable-policy")
    service.runtime.audit.wait_for_current()
    pool = service.runtime.pool
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO audit_principal_policies (principal_id, policy_name, policy, updated_at)"
            ' SELECT principal_id, \'Legacy\', \'{"Version": "2008-10-17", "Statement": []}\','
            " now() FROM audit_principals WHERE arn = %s",
            (suspect.arn,),
        )
    try:
        found = _report(service, estate, "who-can-decrypt", key=estate.keys["shared"]["Arn"])
    finally:
        with pool.connection() as conn:
            conn.execute(
                "DELETE FROM audit_principal_policies WHERE policy_name = 'Legacy' AND"
                " principal_id = (SELECT principal_id FROM audit_principals WHERE arn = %s)",
                (suspect.arn,),
            )
    (row,) = [r for r in found.rows if r["principal"] == suspect.arn]
    assert row["access"] == reports.COULD_NOT_EVALUATE
    assert "identity policy Legacy" in row["basis"]
    assert found.summary["could_not_evaluate"] == 1
    access = {r["principal"]: r["access"] for r in found.rows}
    assert access[estate.principals["broad"].arn] == "yes"  # the others are still evaluated


def test_inventory_with_rotation_history(service: Service, estate: Estate) -> None:
    found = _report(service, estate, "inventory")
    rows = {row["key_arn"]: row for row in found.rows}
    rotating = rows[estate.keys["rotating"]["Arn"]]
    assert rotating["rotations"] == 2
    assert [m["rotation_type"] for m in rotating["rotation_history"]] == [
        "ORIGINAL",
        "ON_DEMAND",
        "ON_DEMAND",
    ]
    assert rotating["rotation_enabled"] is True
    assert rows[estate.keys["pending"]["Arn"]]["key_state"] == "PendingDeletion"
    assert len(rows) == len(estate.keys)


def test_monthly_cost_estimate(service: Service, estate: Estate) -> None:
    found = _report(service, estate, "cost")
    (row,) = found.rows
    assert row["account_id"] == estate.account
    assert row["customer_managed_keys"] == len(estate.keys)
    assert 0 < row["key_storage_usd"] < len(estate.keys)
    assert row["rotation_usd"] > 0  # "rotating" was rotated twice this month
    assert row["symmetric_requests"] >= 1
    assert row["free_tier_requests"] == row["symmetric_requests"] + row["asymmetric_requests"]
    assert row["requests_usd"] == 0  # inside the free tier
    parts = row["key_storage_usd"] + row["rotation_usd"]
    assert row["total_usd"] == pytest.approx(parts, abs=0.011)


def test_key_months_follow_aws_pricing_rules() -> None:
    start, end = reports.month_bounds("2026-02")
    created = [(start - timedelta(days=30), "Enabled")]
    rotations = [start - timedelta(days=20), start - timedelta(days=10), start - timedelta(days=5)]
    assert reports._key_month_charges(created, rotations, start, end) == (1.0, 2.0)  # $3 cap
    halfway = start + (end - start) / 2
    pending = [*created, (halfway, "PendingDeletion")]
    base, surcharge = reports._key_month_charges(pending, [], start, end)
    assert base == pytest.approx(0.5)
    assert surcharge == 0


def test_reports_over_rest_as_json_and_csv(service: Service, estate: Estate) -> None:
    client = RestClient(service, estate.owner.access_key_id, estate.owner.secret)
    try:
        answer = client.get("/v1/audit/reports/cis-rotation")
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == estate.account
        exported = client.get("/v1/audit/reports/security-hub", params={"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert {"control", "resource", "status"} <= set(rows[0])
        assert any(r["control"] == "KMS.5" and r["status"] == FAILED for r in rows)
        unknown = client.get("/v1/audit/reports/nonsense")
        assert unknown.status_code == 400
    finally:
        client.http.close()


def test_reports_from_the_cli(service: Service, estate: Estate) -> None:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": service.runtime.database_url}
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "audit",
            "report",
            "pending-deletion",
            "--account",
            estate.account,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    (row,) = json.loads(process.stdout)["rows"]
    assert row["key_arn"] == estate.keys["pending"]["Arn"]


def test_a_re_encrypt_is_billed_as_one_request(service: Service, identities: Identities) -> None:
    account = identities.account()
    owner = identities.principal(account, policies={"Audit": AUDITOR_POLICY})
    source, destination = (owner.kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    blob = owner.kms.encrypt(KeyId=source, Plaintext=b"moved")["CiphertextBlob"]
    audit = service.runtime.audit_service
    assert isinstance(audit, AuditService)

    def billed() -> int:
        (row,) = run(audit.report(None, "cost", account=account)).rows
        return int(row["symmetric_requests"])

    before = billed()
    owner.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=destination)
    assert billed() == before + 1  # one call, though it uses two keys
