"""The request context the service builds for the evaluator: which condition keys a request
carries, named and valued as AWS documents them (KMS "AWS KMS condition keys", IAM "AWS
global condition context keys"). Pure: no database."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from app.auth.credentials import Caller
from app.usecases.authorization import AccessRequest, condition_context

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ALICE = "arn:aws:iam::111122223333:user/alice"
KEY = SimpleNamespace(
    arn="arn:aws:kms:us-east-1:111122223333:key/k",
    account_id="111122223333",
    key_spec="SYMMETRIC_DEFAULT",
    key_usage="ENCRYPT_DECRYPT",
    origin="AWS_KMS",
    aliases=["alias/finance", "alias/payroll"],
    tags={"Team": "payments"},
    multi_region=None,
    is_replica=False,
)


def caller(**fields: Any) -> Caller:
    defaults = {
        "account_id": "111122223333",
        "principal_arn": ALICE,
        "access_key_id": "AK",
        "region": "eu-west-2",
        "source_ip": "10.1.2.3",
    }
    return Caller(**{**defaults, **fields})


def test_the_principal_and_the_request_are_described() -> None:
    context = condition_context(caller(), "kms:Encrypt", KEY, None, NOW)  # type: ignore[arg-type]

    assert context["aws:principalarn"] == (ALICE,)
    assert context["aws:principalaccount"] == ("111122223333",)
    assert context["aws:principaltype"] == ("User",)
    assert context["aws:username"] == ("alice",)
    assert context["kms:calleraccount"] == ("111122223333",)
    assert context["aws:sourceip"] == ("10.1.2.3",)
    assert context["aws:currenttime"] == ("2026-06-01T12:00:00Z",)
    assert context["aws:epochtime"] == ("1780315200",)
    assert context["aws:requestedregion"] == ("eu-west-2",)
    assert context["aws:viaawsservice"] == ("false",)
    assert "kms:viaservice" not in context


def test_the_key_is_described() -> None:
    context = condition_context(caller(), "kms:Encrypt", KEY, None, NOW)  # type: ignore[arg-type]

    assert context["kms:keyspec"] == ("SYMMETRIC_DEFAULT",)
    assert context["kms:keyusage"] == ("ENCRYPT_DECRYPT",)
    assert context["kms:keyorigin"] == ("AWS_KMS",)
    assert context["kms:resourcealiases"] == ("alias/finance", "alias/payroll")
    assert context["aws:resourcetag/team"] == ("payments",)


def test_the_encryption_context_becomes_kms_keys() -> None:
    request = AccessRequest({"Tenant": "t1", "order": "42"}, "SYMMETRIC_DEFAULT")

    context = condition_context(caller(), "kms:Decrypt", KEY, request, NOW)  # type: ignore[arg-type]

    assert context["kms:encryptioncontext:tenant"] == ("t1",)
    assert context["kms:encryptioncontext:order"] == ("42",)
    assert context["kms:encryptioncontextkeys"] == ("Tenant", "order")  # keys keep their case
    assert context["kms:encryptionalgorithm"] == ("SYMMETRIC_DEFAULT",)


def test_a_service_acting_for_a_principal_sets_via_service_and_hides_the_source_ip() -> None:
    via = caller(via_service="ec2.eu-west-2.amazonaws.com", service_principal_arn="arn:svc")

    context = condition_context(via, "kms:Decrypt", KEY, None, NOW)  # type: ignore[arg-type]

    assert context["kms:viaservice"] == ("ec2.eu-west-2.amazonaws.com",)
    assert context["aws:viaawsservice"] == ("true",)
    assert context["aws:calledvia"] == ("ec2.amazonaws.com",)
    assert "aws:sourceip" not in context


def test_alias_tags_and_further_keys() -> None:
    grant = {"kms:GrantOperations": ("Decrypt", "Encrypt"), "kms:GrantIsForAWSResource": "false"}
    request = AccessRequest(request_tags={"env": "prod"}, conditions=grant)

    context = condition_context(
        caller(principal_arn="arn:aws:iam::111122223333:role/r"),
        "kms:CreateGrant",
        None,
        request,
        NOW,
        alias_name="alias/finance",
    )

    assert context["kms:requestalias"] == ("alias/finance",)
    assert context["aws:principaltype"] == ("AssumedRole",)
    assert context["aws:requesttag/env"] == ("prod",)
    assert context["aws:tagkeys"] == ("env",)
    assert context["kms:grantoperations"] == ("Decrypt", "Encrypt")
    assert context["kms:grantisforawsresource"] == ("false",)
    assert "kms:keyspec" not in context
