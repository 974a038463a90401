"""Fixtures for the auditor's console: a real service (tests/conftest.py), principals of
fresh accounts, and an HTTP client that signs in through the console's own form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.access.conftest import Identities, Principal, allow, policy
from tests.conftest import Service

# An auditor: reads every key of its account and the audit trail (cloudtrail:LookupEvents).
AUDITOR_POLICY = policy(
    allow(["kms:Describe*", "kms:Get*", "kms:List*"]), allow("cloudtrail:LookupEvents")
)
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    """A browser-like client of /console: keeps cookies, follows no redirects itself."""

    service: Service
    http: httpx.Client

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(f"/console{path}", params=params or None)

    def csrf(self, path: str = "/sign-in") -> str:
        found = CSRF_FIELD.search(self.get(path).text)
        assert found is not None, "the page carries a CSRF token"
        return found.group(1)

    def sign_in(self, access_key_id: str, secret: str) -> httpx.Response:
        token = self.csrf()
        return self.http.post(
            "/console/sign-in",
            data={"csrf": token, "access_key_id": access_key_id, "secret_access_key": secret},
        )


@pytest.fixture
def identities(service: Service) -> Identities:
    return Identities(service)


@pytest.fixture
def console(service: Service) -> Iterator[Console]:
    with httpx.Client(base_url=service.endpoint, timeout=30, follow_redirects=False) as http:
        yield Console(service, http)


@pytest.fixture
def auditor(identities: Identities) -> Principal:
    """A principal of a fresh account allowed to read keys and the trail."""
    return identities.principal(identities.account(), policies={"Auditor": AUDITOR_POLICY})


def signed_in(service: Service, principal: Principal) -> Console:
    http = httpx.Client(base_url=service.endpoint, timeout=30, follow_redirects=False)
    console = Console(service, http)
    answer = console.sign_in(principal.access_key_id, principal.secret)
    assert answer.status_code == 303, answer.text
    return console
