"""Helpers for the AWS-compatibility specifications: raw signed requests, a client that
skips botocore's own checks, second accounts, and error/ledger assertions."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from eventsourcing.utils import get_topic

from domain.audit import AuditedCall
from tests.conftest import REGION, Service
from tests.support.signing import sign_request

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


def new_alias() -> str:
    """A unique alias name: the server is shared by the whole session."""
    return f"alias/spec-{uuid.uuid4().hex}"


def service_now(service: Service) -> datetime:
    return service.runtime.clock.now()


@contextmanager
def aws_error(code: str, message: str | None = None) -> Iterator[dict[str, Any]]:
    """Expect a ClientError with ``code`` (and exactly ``message`` if given); never a 5xx."""
    details: dict[str, Any] = {}
    with pytest.raises(ClientError) as excinfo:
        yield details
    error = excinfo.value.response["Error"]
    status = excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]
    details.update(code=error["Code"], message=error.get("Message", ""), status=status)
    assert (error["Code"], status) == (code, 400), error
    if message is not None:
        assert error.get("Message", "") == message


def ledger_position(service: Service) -> int:
    return int(service.runtime.ledger.recorder.max_notification_id() or 0)


@contextmanager
def ledger_unchanged(service: Service) -> Iterator[None]:
    """The block must change nothing: no event at all but the audit records of its calls
    (``CallRecorded``, each in a stream of its own: domain/audit.py)."""
    before = ledger_position(service)
    yield
    after = ledger_position(service)
    appended = (
        service.runtime.ledger.recorder.select_notifications(
            start=before + 1, limit=max(after - before, 1), stop=after
        )
        if after > before
        else []
    )
    assert [n.topic for n in appended if n.topic != get_topic(AuditedCall.CallRecorded)] == []


@dataclass
class RawResponse:
    status: int
    headers: httpx.Headers
    body: dict[str, Any]

    @property
    def error_type(self) -> str:
        return str(self.body.get("__type", ""))

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


RawSender = Callable[..., RawResponse]


@pytest.fixture
def raw(service: Service) -> RawSender:
    """POST / with a body boto3 would refuse to send, signed (or not) as asked."""

    def send(
        target: str,
        body: bytes | dict[str, Any],
        *,
        sign: bool = True,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        now: datetime | None = None,
        region: str = REGION,
        extra_headers: dict[str, str] | None = None,
    ) -> RawResponse:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        url = service.endpoint + "/"
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": target}
        if sign:
            headers = sign_request(
                "POST",
                url,
                headers,
                payload,
                access_key_id=access_key_id or service.access_key_id,
                secret_access_key=secret_access_key or service.secret_access_key,
                region=region,
                service="kms",
                now=now or datetime.now(UTC),
            )
        headers.update(extra_headers or {})
        response = httpx.post(url, content=payload, headers=headers, timeout=10)
        parsed = response.json() if response.content else {}
        return RawResponse(response.status_code, response.headers, parsed)

    return send


@pytest.fixture
def unvalidated_kms(service: Service):  # type: ignore[no-untyped-def]
    """A boto3 client that sends what botocore's client-side validation would refuse."""
    return boto3.client(
        "kms",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=service.access_key_id,
        aws_secret_access_key=service.secret_access_key,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


# Like an IAM user, a new principal may do nothing until an identity policy allows it.
KMS_FULL_ACCESS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
    }
)
ON_BEHALF_OF = "X-KeyLedger-On-Behalf-Of"


def client_on_behalf_of(
    service: Service, access_key_id: str, secret: str, principal_arn: str, **overrides: str
) -> Any:
    """A KMS client signed by a trusted service principal acting for ``principal_arn``
    (the header is added before signing, so the signature covers it)."""
    client = service.client(
        "kms", access_key_id=access_key_id, secret_access_key=secret, **overrides
    )

    def add_header(request: Any, **_: Any) -> None:
        request.headers[ON_BEHALF_OF] = principal_arn

    client.meta.events.register("before-sign.kms.*", add_header)
    return client


@dataclass
class OtherAccount:
    account_id: str
    principal_arn: str
    kms: Any


@pytest.fixture
def other_account(service: Service) -> OtherAccount:
    """A second account with its own principal (allowed kms:* by its identity policy)."""
    identity = service.runtime.identity
    account_id = "".join(secrets.choice("0123456789") for _ in range(12))
    identity.create_account(account_id)
    principal = identity.create_principal(
        account_id, f"user{uuid.uuid4().hex[:8]}", policies={"KmsFullAccess": KMS_FULL_ACCESS}
    )
    access_key_id, secret = identity.create_access_key(principal)
    client = service.client("kms", access_key_id=access_key_id, secret_access_key=secret)
    return OtherAccount(account_id, principal, client)
