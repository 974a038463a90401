"""Audited calls: the record of an API call that changed nothing in the ledger.

Calls that change a key are audited from the key's own events (a ``Used`` event is the
record of its Encrypt). Every other call (DescribeKey, the List and Get operations,
GenerateRandom, denied calls, calls refused by validation, failed authentication with a
known access key) is recorded as one ``CallRecorded`` event in a stream of its own, so it
is durable before the answer and never bloats a key's stream.

The values are what an auditor may see: request parameters arrive already redacted
(no plaintext, ciphertext, key material or policy text).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain.actors import Actor, ActorRecord
from domain.errors import InvalidMarkerError, ValidationError
from domain.identifiers import NAMESPACE

KMS_SOURCE = "kms.amazonaws.com"
CLOUDTRAIL_SOURCE = "cloudtrail.amazonaws.com"
IAM_SOURCE = "iam.amazonaws.com"  # identity administration, as CloudTrail records IAM's calls
STS_SOURCE = "sts.amazonaws.com"  # GetCallerIdentity, AssumeRole
# STS calls CloudTrail records as read-only (its AssumeRole records carry readOnly: true).
READ_ONLY_STS_CALLS = frozenset({"AssumeRole", "GetCallerIdentity"})
# KeyLedger's own endpoints (explain, the denial log, reports, keys as of a time, accounts,
# service designations): named like AWS's sources, after the IAM prefix of its own actions
# ("keyledger:DesignateServicePrincipal").
KEYLEDGER_SOURCE = "keyledger.amazonaws.com"
# The XKS Proxy API KeyLedger serves (app.entrypoints.xks): its calls are recorded under the
# proxy's operation names (GetKeyMetadata, Encrypt, Decrypt, GetHealthStatus).
XKS_SOURCE = "xks-proxy.keyledger.amazonaws.com"
# The console's sign-in (app.entrypoints.console): recorded as AWS records a sign-in to its
# console, ConsoleLogin from signin.amazonaws.com, whose records' eventType is AwsConsoleSignIn.
SIGNIN_SOURCE = "signin.amazonaws.com"
CONSOLE_LOGIN = "ConsoleLogin"
# Used.operation of a use through the XKS Proxy API -> its record's eventName.
XKS_USES = {"XksEncrypt": "Encrypt", "XksDecrypt": "Decrypt"}
# CloudTrail's Event history: LookupEvents sees the last 90 days of management events.
LOOKUP_EVENTS_WINDOW = timedelta(days=90)
CRYPTOGRAPHIC_CALLS = frozenset(
    {
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateRandom",
        "GenerateMac",
        "VerifyMac",
        "Sign",
        "Verify",
        "DeriveSharedSecret",
        "Encapsulate",
        "Decapsulate",
    }
)
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Lookup", "Simulate", "Explain")


def is_read_only(event_name: str) -> bool:
    """CloudTrail's readOnly for a call: cryptographic calls and Describe/Get/List (and the
    questions that change nothing: LookupEvents, IAM's Simulate..., KeyLedger's Explain...)."""
    return (
        event_name.startswith(READ_ONLY_PREFIXES)
        or event_name in CRYPTOGRAPHIC_CALLS
        or event_name in READ_ONLY_STS_CALLS
    )


def audited_call_id(request_id: str, sequence: int = 0) -> uuid.UUID:
    """The stream of a request's ``sequence``-th call record (almost always the only one)."""
    return uuid.uuid5(NAMESPACE, f"call:{request_id}:{sequence}")


class AuditedCall(Aggregate):
    """One API call that appended nothing else: its single event is its record."""

    write_once = True  # recorded, never loaded again (the writer does not cache it)

    class CallRecorded(Aggregate.Created):
        event_name: str  # the API action ("DescribeKey")
        event_source: str  # "kms.amazonaws.com"
        actor: ActorRecord  # as on key events: principal ARN, account, access key, ...
        request_parameters: dict[str, Any] | None  # AWS's shape, lowerCamelCase, redacted
        error_code: str | None  # the API's __type ("AccessDeniedException"), None on success
        error_message: str | None
        resources: list[dict[str, str]]  # [{"arn": key ARN, "account_id": key's account}]
        read_only: bool
        # What CloudTrail shows of the answer and beside the request, for the few calls
        # whose record holds more than their parameters (CreateCustomKeyStore's new id,
        # a store's name and cluster): None for the rest, and in records made before.
        response_elements: dict[str, Any] | None = None
        additional_event_data: dict[str, Any] | None = None

    def __init__(
        self,
        *,
        event_name: str,
        event_source: str,
        actor: ActorRecord,
        request_parameters: dict[str, Any] | None,
        error_code: str | None,
        error_message: str | None,
        resources: list[dict[str, str]],
        read_only: bool,
        response_elements: dict[str, Any] | None = None,
        additional_event_data: dict[str, Any] | None = None,
    ) -> None:
        self.event_name = event_name
        self.event_source = event_source
        self.actor = actor
        self.request_parameters = request_parameters
        self.error_code = error_code
        self.error_message = error_message
        self.resources = resources
        self.read_only = read_only
        self.response_elements = response_elements
        self.additional_event_data = additional_event_data

    @classmethod
    def record(
        cls,
        *,
        call_id: uuid.UUID,
        now: datetime,
        event_name: str,
        event_source: str,
        actor: Actor,
        request_parameters: dict[str, Any] | None,
        error_code: str | None,
        error_message: str | None,
        resources: list[dict[str, str]],
        read_only: bool,
        response_elements: dict[str, Any] | None = None,
        additional_event_data: dict[str, Any] | None = None,
    ) -> AuditedCall:
        return cls._create(
            cls.CallRecorded,
            id=call_id,
            timestamp=now,
            event_name=event_name,
            event_source=event_source,
            actor=actor.record(),
            request_parameters=request_parameters,
            error_code=error_code,
            error_message=error_message,
            resources=list(resources),
            read_only=read_only,
            response_elements=response_elements,
            additional_event_data=additional_event_data,
        )


# ==== errors of the audit queries (CloudTrail's LookupEvents names them) ===============
class InvalidTimeRangeError(ValidationError):
    """The start time is after the end time, or a time is outside the possible values."""


class InvalidLookupAttributesError(ValidationError):
    """More than one lookup attribute, a key CloudTrail does not know, or a bad value."""


class InvalidMaxResultsError(ValidationError):
    """MaxResults is not between 1 and 50."""


class InvalidEventCategoryError(ValidationError):
    """An EventCategory other than ``insight``."""


class InvalidNextTokenError(InvalidMarkerError):
    """The paging token was not issued for this query."""
