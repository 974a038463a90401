"""Fixtures for the audit trail: CloudTrail clients, principals of fresh accounts, lookups."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.access.conftest import KMS_ALL, Identities, Principal, allow, policy
from tests.aws.conftest import raw
from tests.conftest import ACCOUNT_ID, REGION, Service

AUDITOR_POLICY = policy(allow("cloudtrail:LookupEvents"), allow("kms:*"))

__all__ = ["ACCOUNT_ID", "KMS_ALL", "REGION", "Principal", "raw"]


@pytest.fixture
def identities(service: Service) -> Identities:
    return Identities(service)


@pytest.fixture
def cloudtrail(service: Service) -> Any:
    """The administrator's boto3 CloudTrail client (operator account: every account)."""
    return service.client("cloudtrail")


def cloudtrail_of(service: Service, principal: Principal) -> Any:
    return service.client(
        "cloudtrail", access_key_id=principal.access_key_id, secret_access_key=principal.secret
    )


def records(
    client: Any, key: str | None = None, value: str | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every record LookupEvents finds (all pages), each with its Events entry as ``_entry``."""
    if key is not None:
        kwargs["LookupAttributes"] = [{"AttributeKey": key, "AttributeValue": value}]
    found = []
    for page in client.get_paginator("lookup_events").paginate(**kwargs):
        for entry in page["Events"]:
            record = json.loads(entry["CloudTrailEvent"])
            record["_entry"] = entry
            found.append(record)
    return found


def by_request(found: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [r for r in found if r.get("requestID") == request_id]


def request_id(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["RequestId"])


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def auditor(identities: Identities) -> Iterator[Principal]:
    """A principal of a fresh account allowed kms:* and cloudtrail:LookupEvents."""
    account = identities.account()
    yield identities.principal(account, policies={"Auditor": AUDITOR_POLICY})
