"""The Auditor: every API call leaves a record in the ledger, in one place.

Calls that change a key are audited from the events they append (the projection turns a
``Used`` event into the Encrypt record, ``Disabled`` into DisableKey's). Every other call
(read-only calls, denied calls, failures, calls that changed nothing) is recorded here as
one ``CallRecorded`` event (``domain.audit.AuditedCall``):

* A service call runs inside ``Auditor.call(...)`` (an async context manager). Within it,
  every command the use cases run (through ``AuditedCommands``, their command runner) goes
  to the writer with the call's hooks (``app.ports.CommandHooks``): a read-only
  call's record is added to the very batch that answers it, and a failed command's record to the
  batch that fails it, so the record is durable before the answer and costs no extra
  commit. Commands of cryptographic calls do nothing more when they succeed (their ``Used``
  event is the record).
* A failure the writer never saw (authentication, an unknown operation, validation, a check
  before the first command) is recorded when the call ends, before the error is answered;
  except a failure because the database did not answer in time: its 503 is answered at
  once and its record made meanwhile (it lands if the writer reaches the database within
  its deadline), since waiting for the record would wait for the database a second time.
* A call refused before its caller is known (authentication, an oversized body) is
  recorded only when it names one of our access keys, and then with what the request could
  not choose freely: the operation if it is one of the protocol's (else a placeholder),
  the error code and the constant part of its message, the source IP, the access key id
  and a Region name. Never its body, parameters or user agent: its record has a constant
  bound whatever was sent.
* A call refused over its account's request quota (app.usecases.quotas) is recorded only
  when its refusal is the sample the quotas chose (one a minute per account, Region and
  quota): a flood of throttled calls is counted, never recorded one by one.

Request parameters are kept in AWS's shape (lowerCamelCase member names) with KMS's logging
rules applied: no plaintext, ciphertext, message, signature, MAC, key material, import
token or public key (the model's sensitive and blob members), and no policy text. Adapters
hand over what they parsed; they never shape records.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from botocore.model import Shape

from app.auth.credentials import Caller
from app.auth.sigv4 import is_region_name
from app.aws.errors import aws_error
from app.aws.model import service_model
from app.ports import (
    Clock,
    Command,
    CommandFailed,
    HookedCommandRunner,
    Unavailability,
    UnitOfWork,
)
from app.support.logs import CALLS_LOGGER, call_message, write_call_line
from app.support.metrics import observe_call
from app.support.request_ids import new_request_id
from domain.audit import (
    CLOUDTRAIL_SOURCE,
    CRYPTOGRAPHIC_CALLS,
    IAM_SOURCE,
    KMS_SOURCE,
    STS_SOURCE,
    XKS_SOURCE,
    XKS_USES,
    AuditedCall,
    audited_call_id,
    is_read_only,
)
from domain.custom_key_stores import CustomKeyStore
from domain.errors import (
    QuotaExceededError,
    SerializationError,
    ThrottlingError,
    UnknownOperationError,
)
from domain.keys import Key

if TYPE_CHECKING:
    from app.auth.credentials import IdentityDirectory

log = logging.getLogger("keyledger.audit")
calls_log = logging.getLogger(CALLS_LOGGER)
SOURCE_LABELS = {  # the event source's short name in metrics and log lines
    KMS_SOURCE: "kms",
    CLOUDTRAIL_SOURCE: "cloudtrail",
    IAM_SOURCE: "iam",
    STS_SOURCE: "sts",
    XKS_SOURCE: "xks",
}
T = TypeVar("T")

# The botocore model a source's request parameters are shaped and redacted by. A source
# without one (KeyLedger's own endpoints) hands over parameters already in AWS's shape.
SERVICE_OF_SOURCE = {
    KMS_SOURCE: "kms",
    CLOUDTRAIL_SOURCE: "cloudtrail",
    IAM_SOURCE: "iam",
    STS_SOURCE: "sts",
}
# Calls whose success appends key events: those events are their records.
EVENT_AUDITED_CALLS = (CRYPTOGRAPHIC_CALLS - {"GenerateRandom"}) | frozenset(
    {
        "CreateKey",
        "EnableKey",
        "DisableKey",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
        "UpdateKeyDescription",
        "TagResource",
        "UntagResource",
        "PutKeyPolicy",
        "EnableKeyRotation",
        "DisableKeyRotation",
        "RotateKeyOnDemand",
        "CreateAlias",
        "UpdateAlias",
        "DeleteAlias",
        "CreateGrant",
        "RetireGrant",
        "RevokeGrant",
        "GetParametersForImport",
        "ImportKeyMaterial",
        "DeleteImportedKeyMaterial",
        "ReplicateKey",
        "UpdatePrimaryRegion",
    }
)
# Identity administration whose success appends events the trail describes (a principal's
# PolicyPut, an AccessKey's Created): those events are their records too.
EVENT_AUDITED_IAM_CALLS = frozenset(
    {
        "PutUserPolicy",
        "PutRolePolicy",
        "DeleteUserPolicy",
        "DeleteRolePolicy",
        "CreateAccessKey",
        "UpdateAccessKey",
        "UpdateAssumeRolePolicy",
    }
)
EVENT_AUDITED = {
    KMS_SOURCE: EVENT_AUDITED_CALLS,
    IAM_SOURCE: EVENT_AUDITED_IAM_CALLS,
    XKS_SOURCE: frozenset(XKS_USES.values()),  # their Used events (XksEncrypt, XksDecrypt)
}
# Never in a record, whatever the model says: the policy text (KMS logs no GetKeyPolicy
# answer, and a refused policy is not the key's) and grant tokens (bearer values).
WITHHELD_MEMBERS = frozenset({"Policy", "GrantTokens", "GrantToken"})
# The custom key store operations as KMS logs them (AWS's CloudTrail samples, e.g.
# developerguide/ct-create-keystore.html): the cluster is ``clusterId``; neither the trust
# anchor nor any credential is logged (KeyStorePassword and both members of
# XksProxyAuthenticationCredential are sensitive: not even an empty structure is left).
LOGGED_AS = {"CloudHsmClusterId": "clusterId"}
WITHHELD_BY_OPERATION = {
    "CreateCustomKeyStore": frozenset(
        {"TrustAnchorCertificate", "XksProxyAuthenticationCredential"}
    ),
    "UpdateCustomKeyStore": frozenset({"XksProxyAuthenticationCredential"}),
}
STORE_CALLS_NAMING_THE_STORE = frozenset(
    {
        "UpdateCustomKeyStore",
        "ConnectCustomKeyStore",
        "DisconnectCustomKeyStore",
        "DeleteCustomKeyStore",
    }
)
# The calls whose record names the store they acted on (app/usecases/custom_key_stores.py).
STORE_CALLS = STORE_CALLS_NAMING_THE_STORE | {"CreateCustomKeyStore"}
MAX_MESSAGE = 1024
# KMS calls that do more after their authorizing command (read a view, check a marker):
# recorded when they end, at the cost of a commit of their own (none is on the hot path).
KMS_CALLS_RECORDED_WHEN_DONE = frozenset(
    {
        "ListKeys",
        "ListAliases",
        "ListGrants",
        "ListRetirableGrants",
        "ListKeyPolicies",
        "ListResourceTags",
        "ListKeyRotations",
        # Custom key stores: a store's events are no CloudTrail records; the call is.
        "CreateCustomKeyStore",
        "DescribeCustomKeyStores",
        "UpdateCustomKeyStore",
        "ConnectCustomKeyStore",
        "DisconnectCustomKeyStore",
        "DeleteCustomKeyStore",
    }
)
# What a record of a call refused before its caller was known may hold of the request.
UNKNOWN_OPERATION = "UnknownOperation"
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{1,128}")  # AWS's AccessKeyIdType: at most 128
_OPERATION_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")
# The constant beginnings of refusal messages: a refused call's record keeps only these (the
# rest of a message may echo what the request sent: a header, a date, a Region).
REFUSAL_MESSAGES = (
    "Request is missing Authentication Token",
    "The security token included in the request is invalid.",
    "The request signature we calculated does not match the signature you provided.",
    "Signature expired",
    "Signature not yet current",
    "Credential should be scoped to a valid region",
    "Request body exceeds the maximum size",
)
_CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/\d{8}/([a-z0-9-]+)/")
_QUERY_CREDENTIAL = re.compile(
    r"(?:^|&)X-Amz-Credential=([A-Za-z0-9]+)(?:%2F|/)\d{8}(?:%2F|/)([a-z0-9-]+)"
)


def error_code_of(error: BaseException) -> tuple[str, str]:
    """(CloudTrail errorCode, errorMessage) of a failed call: the API's __type, except that
    CloudTrail writes a denial as ``AccessDenied``."""
    if isinstance(error, UnknownOperationError):
        return "UnknownOperationException", ""
    if isinstance(error, SerializationError):
        code, message = "SerializationException", error.message
    elif isinstance(error, Exception):
        code, _, message = aws_error(error)
    else:
        code, message = "InternalFailure", ""
    if code == "AccessDeniedException":
        code = "AccessDenied"
    return code, message[:MAX_MESSAGE]


# ==== request parameters as CloudTrail logs them ===============================================
def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _redacted_value(shape: Shape, value: Any) -> Any:
    """``value`` as logged, or ``_DROP`` when it must not (or cannot) appear."""
    if shape.metadata.get("sensitive") or shape.type_name == "blob":
        return _DROP
    kind = shape.type_name
    if kind == "structure":
        return _redacted_structure(shape, value) if isinstance(value, dict) else _DROP
    if kind == "list":
        if not isinstance(value, list):
            return _DROP
        member = shape.member  # type: ignore[attr-defined]
        items = [_redacted_value(member, item) for item in value]
        return [item for item in items if item is not _DROP]
    if kind == "map":
        if not isinstance(value, dict):
            return _DROP
        return {str(k): v for k, v in value.items() if isinstance(v, str | int | float | bool)}
    if kind == "string":
        return value if isinstance(value, str) else _DROP
    if kind in ("integer", "long", "float", "double", "timestamp"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return value if ok else _DROP
    if kind == "boolean":
        return value if isinstance(value, bool) else _DROP
    return _DROP


def _redacted_structure(
    shape: Shape, body: dict[str, Any], withheld: frozenset[str] = frozenset()
) -> dict[str, Any]:
    members = shape.members  # type: ignore[attr-defined]
    logged: dict[str, Any] = {}
    for name, value in body.items():
        member = members.get(name)
        if member is None or name in WITHHELD_MEMBERS or name in withheld or value is None:
            continue
        shown = _redacted_value(member, value)
        if shown is not _DROP:
            logged[LOGGED_AS.get(name) or _lower_camel(name)] = shown
    return logged


_DROP: Any = object()


def plain_parameters(params: Any) -> dict[str, Any] | None:
    """The parameters of a call no botocore model describes (KeyLedger's own endpoints),
    handed over in AWS's shape: only plain values (text, numbers, flags, lists and maps of
    them), never a withheld member (policy text, grant tokens)."""
    if not isinstance(params, dict):
        return None
    withheld = {_lower_camel(name) for name in WITHHELD_MEMBERS} | WITHHELD_MEMBERS
    logged: dict[str, Any] = {}
    for name, value in params.items():
        if value is None or name in withheld:
            continue
        shown = _plain_value(value)
        if shown is not _DROP:
            logged[str(name)] = shown
    return logged


def _plain_value(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str | int | float | bool)]
    if isinstance(value, dict):
        return {
            str(k): v
            for k, v in value.items()
            if isinstance(v, str | int | float | bool)
            or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        }
    return _DROP


def request_parameters(service: str, operation: str, params: Any) -> dict[str, Any] | None:
    """A request's members as CloudTrail logs them, from the parsed (or raw JSON) request:
    lowerCamelCase names, the model's sensitive and binary members and the policy text left
    out. None when the operation is unknown or the request not an object."""
    model = service_model(service)
    if operation not in model.operation_names or not isinstance(params, dict):
        return None
    shape = model.operation_model(operation).input_shape
    if shape is None:
        return {}
    return _redacted_structure(shape, params, WITHHELD_BY_OPERATION.get(operation, frozenset()))


# ==== what a custom key store call's record shows beyond its parameters ======================
@dataclass(frozen=True)
class StoreFacts:
    """The custom key store a call acted on, as its record names it."""

    store_id: str
    name: str
    cluster_id: str | None  # AWS_CLOUDHSM stores only

    @classmethod
    def of(cls, store: CustomKeyStore) -> StoreFacts:
        cluster = store.settings.get("cluster_id") if store.is_cloudhsm else None
        return cls(store.store_id, store.name, cluster or None)


def store_call_details(
    event_name: str, store: StoreFacts | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(responseElements, additionalEventData) of a successful custom key store call, as
    KMS logs them: CreateCustomKeyStore answers the new store's id; Update, Connect,
    Disconnect and Delete name the store (and its cluster) beside their parameters."""
    if store is None:
        return None, None
    if event_name == "CreateCustomKeyStore":
        return {"customKeyStoreId": store.store_id}, None
    if event_name in STORE_CALLS_NAMING_THE_STORE:
        additional: dict[str, Any] = {"customKeyStoreName": store.name}
        if store.cluster_id:
            additional["clusterId"] = store.cluster_id
        return None, additional
    return None, None


def _credential_scope(headers: Sequence[tuple[str, str]], query_string: str) -> tuple[str, str]:
    """(access key id, Region) the request claims, or ("", "")."""
    for name, value in headers:
        if name.lower() == "authorization":
            match = _CREDENTIAL.search(value)
            if match:
                return match.group(1), match.group(2)
    match = _QUERY_CREDENTIAL.search(query_string)
    if match:
        return match.group(1), match.group(2)
    return "", ""


def refused_operation(event_source: str, name: str) -> str:
    """The operation a refused call is recorded under: ``name`` if it is one of its
    source's operations (those of the source's botocore model, or a plain name for
    KeyLedger's own endpoints, which adapters name themselves), else a placeholder."""
    service = SERVICE_OF_SOURCE.get(event_source)
    if service is not None:
        known = name in service_model(service).operation_names
    else:
        known = _OPERATION_NAME.fullmatch(name) is not None
    return name if known else UNKNOWN_OPERATION


@functools.lru_cache(maxsize=1024)
def _call_labels(event_source: str, name: str) -> tuple[str, str]:
    """The call's source and operation as metric labels: the operation one of its
    protocol's, never whatever a request named (the series a caller could make must be
    bounded). One cached lookup per call for both."""
    return SOURCE_LABELS.get(event_source, "keyledger"), refused_operation(event_source, name)


def refusal_message(message: str) -> str | None:
    """The constant part of a refusal's message, or None when it has none."""
    return next((text for text in REFUSAL_MESSAGES if message.startswith(text)), None)


def _source_ip(value: str) -> str:
    """The client address, if it is one (behind a trusted proxy the server takes it from
    X-Forwarded-For, which the client writes)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return ""


# ==== one call ===================================================================================
class AuditedRequest:
    """One API call being audited. The adapter sets ``caller`` once authenticated and
    ``parameters`` once parsed; everything else happens here."""

    def __init__(
        self,
        auditor: Auditor,
        event_name: str,
        *,
        event_source: str,
        request_id: str,
        headers: Sequence[tuple[str, str]],
        query_string: str,
        source_ip: str,
        user_agent: str,
        body: bytes = b"",
    ) -> None:
        self.auditor = auditor
        self.event_name = event_name[:128] or "UnknownOperation"
        self.event_source = event_source
        self.request_id = request_id or new_request_id()
        self.headers = headers
        self.query_string = query_string
        self.source_ip = source_ip
        self.user_agent = user_agent
        self.body = body  # parsed only if the call is refused before ``parameters`` is set
        self._caller: Caller | None = None
        # Where the caller is found once known, when the adapter cannot set it (REST).
        self.resolve_caller: Callable[[], Caller | None] | None = None
        self.parameters: Any = None
        self.event_audited = self.event_name in EVENT_AUDITED.get(event_source, frozenset())
        # Record success once the call is done, not in its first command's batch: for calls
        # whose first command only authorizes (LookupEvents, identity administration,
        # KeyLedger's own endpoints), a later failure must not leave a record saying it
        # succeeded. KMS calls keep their record in the batch that answers them (no extra
        # commit on the hot path).
        self.record_when_done = (
            event_source != KMS_SOURCE or self.event_name in KMS_CALLS_RECORDED_WHEN_DONE
        )
        self.records = 0  # CallRecorded events committed for this call
        self.failure_recorded = False
        self.appended = False  # a command of this call appended key events
        # The keys it touched, if it changed nothing; or what the adapter names (the
        # principal of an IAM call) when it touches no key.
        self.resources: list[dict[str, str]] = []
        self.store: StoreFacts | None = None  # the custom key store it acted on, if any
        # What the record shows of the answer and beside the request, when the use case
        # says (a console sign-in's {"ConsoleLogin": "Success"}); else store_call_details.
        self.response_elements: dict[str, Any] | None = None
        self.additional_event_data: dict[str, Any] | None = None
        self.key_arn: str | None = None  # the key its events were appended to, for its log line
        self._token: Token[AuditedRequest | None] | None = None
        self._started = time.perf_counter()

    @property
    def caller(self) -> Caller | None:
        if self._caller is None and self.resolve_caller is not None:
            self._caller = self.resolve_caller()
        return self._caller

    @caller.setter
    def caller(self, caller: Caller | None) -> None:
        self._caller = caller

    # --- the context --------------------------------------------------------------------------
    async def __aenter__(self) -> AuditedRequest:
        self._token = _current_call.set(self)
        return self

    async def __aexit__(self, exc_type: Any, error: BaseException | None, _tb: Any) -> None:
        if self._token is not None:
            _current_call.reset(self._token)
            self._token = None
        try:
            if error is not None:
                # A throttled call that is not its minute's sample is only counted
                # (app.usecases.quotas): a flood adds no record.
                sampled_out = isinstance(error, QuotaExceededError) and not error.recorded
                if isinstance(error, Exception) and not sampled_out and not self.failure_recorded:
                    if self.auditor.unavailable(error):  # answered now, not after a 2nd wait
                        self.auditor.record_meanwhile(self._record_later(error), self.request_id)
                    else:
                        await self._record_later(error)
            elif not self.records and not (self.event_audited and self.appended):
                await self._record_later(None)  # e.g. DisableKey on a disabled key
        except Exception as failure:  # the call's own answer matters more than its record
            log.error("call %s not recorded: %s", self.request_id, type(failure).__name__)
        self._observe(error)

    def _observe(self, error: BaseException | None) -> None:
        """Count the call and its latency (app.support.metrics) and write its log line."""
        seconds = time.perf_counter() - self._started
        outcome = error_code_of(error)[0] if error is not None else "Success"
        source, operation = _call_labels(self.event_source, self.event_name)
        observe_call(source, operation, outcome, seconds)
        if calls_log.isEnabledFor(logging.INFO):
            self._log(source, operation, outcome, seconds)

    def _log(self, source: str, operation: str, outcome: str, seconds: float) -> None:
        """The call's one line: who, what, on which key, how it ended; never a parameter,
        message or body (docs/operations.md, "Logs")."""
        caller = self.caller
        key_arn = self.key_arn or next((r["arn"] for r in self.resources if "arn" in r), None)
        fields = {
            "request_id": self.request_id,
            "source_ip": self.source_ip,
            "principal_arn": caller.principal_arn if caller is not None else None,
            "source": source,
            "operation": operation,
            "key_arn": key_arn,
            "outcome": outcome,
            "latency_ms": round(seconds * 1000, 3),
        }
        if not write_call_line(fields):  # no writing thread: through `logging`
            calls_log.info("%s", call_message(fields), extra={"call": fields})

    # --- records ---------------------------------------------------------------------------------
    def record(self, resources: list[dict[str, str]], error: BaseException | None) -> AuditedCall:
        caller = self.caller
        assert caller is not None
        code, message = error_code_of(error) if error is not None else (None, None)
        given = self.parameters if self.parameters is not None else raw_parameters(self.body)
        service = SERVICE_OF_SOURCE.get(self.event_source)
        parameters = (
            request_parameters(service, self.event_name, given)
            if service is not None
            else plain_parameters(given)
        )
        response, additional = (
            store_call_details(self.event_name, self.store) if error is None else (None, None)
        )
        response = self.response_elements or response
        additional = self.additional_event_data or additional
        return AuditedCall.record(
            call_id=audited_call_id(caller.request_id or self.request_id, self.records),
            now=self.auditor.clock.now(),
            event_name=self.event_name,
            event_source=self.event_source,
            actor=caller.actor(),
            request_parameters=parameters,
            error_code=code,
            error_message=message,
            resources=resources,
            read_only=is_read_only(self.event_name),
            response_elements=response,
            additional_event_data=additional,
        )

    def add(self, uow: UnitOfWork, resources: list[dict[str, str]], error: Any) -> None:
        """Add this call's record to the batch; count it once the batch commits."""
        uow.add(self.record(resources or self.resources, error))

        def committed() -> None:
            self.records += 1
            if error is not None:
                self.failure_recorded = True

        uow.after_commit.append(committed)

    async def _record_later(self, error: BaseException | None) -> None:
        if self.caller is None:
            if error is not None:
                await self.auditor.authentication_failed(self, error)
            return

        def command(uow: UnitOfWork) -> None:
            self.add(uow, self.resources, error)

        await self.auditor.writer.run(command)


# The audited call the current context runs in (set by ``async with Auditor.call(...)``): the
# calls' commands reach the writer with its hooks through AuditedCommands.
_current_call: ContextVar[AuditedRequest | None] = ContextVar(
    "keyledger_audited_call", default=None
)


class AuditedCommands:
    """The use cases' command runner (app.ports.CommandRunner): a command run within an
    audited call goes to the writer as an _AuditedCommand, with its hooks; any other as is.
    Returns the writer's awaitable itself (no coroutine of its own on the hot path)."""

    __slots__ = ("_writer",)

    def __init__(self, writer: HookedCommandRunner) -> None:
        self._writer = writer

    def run(self, command: Command[T]) -> Awaitable[T]:
        call = _current_call.get()
        if call is None:
            return self._writer.run(command)
        audited = _AuditedCommand(command, call)
        return self._writer.run(audited, audited)

    def run_sync(self, command: Command[T], timeout: float = 30.0) -> T:
        call = _current_call.get()  # (asyncio.to_thread carries the call's context)
        if call is None:
            return self._writer.run_sync(command, timeout)
        audited = _AuditedCommand(command, call)
        return self._writer.run_sync(audited, timeout, audited)


class _AuditedCommand(Generic[T]):
    """A command of an audited call, and its hooks (app.ports.CommandHooks)."""

    __slots__ = ("_call", "_command", "_resources", "_start")

    def __init__(self, command: Command[T], call: AuditedRequest) -> None:
        self._command = command
        self._call = call
        self._start = 0
        self._resources: list[dict[str, str]] = []

    def __call__(self, uow: UnitOfWork) -> T:
        start = self._start = len(uow.accessed)
        try:
            result = self._command(uow)
        except Exception:
            self._resources = _resources(uow, start)
            raise
        call = self._call
        if call.event_audited:
            if _appended(uow, start):  # its events are its record
                uow.after_commit.append(lambda: setattr(call, "appended", True))
                call.key_arn = _first_key_arn(uow, start)
            elif not call.appended:  # it changed nothing: the record made at the end names
                call.resources = _resources(uow, start) or call.resources  # what it touched
        elif call.record_when_done:
            call.resources = _resources(uow, start) or call.resources
            if call.event_name in STORE_CALLS:
                call.store = _store(uow, start) or call.store
        elif not call.records and call.caller is not None:
            call.add(uow, _resources(uow, start), None)
        return result

    def after_failure(self, uow: UnitOfWork, error: Exception) -> None:
        if self._call.caller is not None:
            self._call.add(uow, self._resources, error)

    def failure_retry(self, error: Exception) -> Command[CommandFailed]:
        """The command that records this failure when its batch runs again without it."""
        call, resources = self._call, self._resources

        def record_failure(uow: UnitOfWork) -> CommandFailed:
            if call.caller is not None:
                call.add(uow, resources, error)
            return CommandFailed(error)

        return record_failure


def _appended(uow: UnitOfWork, start: int) -> bool:
    return any(len(aggregate.pending_events) > count for aggregate, count in uow.accessed[start:])


def _first_key_arn(uow: UnitOfWork, start: int) -> str | None:
    return next((a.arn for a, _ in uow.accessed[start:] if isinstance(a, Key)), None)


def _store(uow: UnitOfWork, start: int) -> StoreFacts | None:
    """The custom key store a command acted on (the last it touched), as it stands now."""
    stores = [a for a, _ in uow.accessed[start:] if isinstance(a, CustomKeyStore)]
    return StoreFacts.of(stores[-1]) if stores else None


def _resources(uow: UnitOfWork, start: int) -> list[dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for aggregate, _ in uow.accessed[start:]:
        if isinstance(aggregate, Key) and aggregate.arn not in found:
            found[aggregate.arn] = {"arn": aggregate.arn, "account_id": aggregate.account_id}
    return list(found.values())


# ==== the auditor ==========================================================================
class Auditor:
    def __init__(
        self,
        writer: HookedCommandRunner,
        identity: IdentityDirectory,
        clock: Clock,
        unavailable: Unavailability,
    ) -> None:
        """``writer`` runs the records' own commands (never audited themselves);
        ``unavailable`` tells a database that did not answer from one that refused."""
        self.writer = writer
        self.identity = identity
        self.clock = clock
        self.unavailable = unavailable
        self._meanwhile: set[asyncio.Task[None]] = set()  # records not awaited by their call

    def record_meanwhile(self, recording: Coroutine[Any, Any, None], request_id: str) -> None:
        """Make a call's record without holding its answer."""

        async def record() -> None:
            try:
                await recording
            except Exception as failure:
                log.error("call %s not recorded: %s", request_id, type(failure).__name__)

        task = asyncio.get_running_loop().create_task(record())
        self._meanwhile.add(task)
        task.add_done_callback(self._meanwhile.discard)

    def call(
        self,
        event_name: str,
        *,
        request_id: str,
        headers: Sequence[tuple[str, str]] = (),
        query_string: str = "",
        source_ip: str = "",
        user_agent: str = "",
        event_source: str = KMS_SOURCE,
        caller: Caller | None = None,
        body: bytes = b"",
    ) -> AuditedRequest:
        """The audit context of one API call (``async with``)."""
        audited = AuditedRequest(
            self,
            event_name,
            event_source=event_source,
            request_id=request_id,
            headers=headers,
            query_string=query_string,
            source_ip=source_ip,
            user_agent=user_agent,
            body=body,
        )
        audited.caller = caller
        return audited

    async def authentication_failed(self, call: AuditedRequest, error: BaseException) -> None:
        """Record a call refused before its caller was known, when the access key it was
        signed with is one of ours: a stored access key, or temporary credentials whose
        session token this service issued (an unknown key names nobody to attribute it
        to). The record is bounded whatever was sent: see ``refusal_record``."""
        access_key_id, region = _credential_scope(call.headers, call.query_string)
        if not _ACCESS_KEY_ID.fullmatch(access_key_id) or isinstance(error, ThrottlingError):
            return  # a refusal for its rate is counted (app.auth.limiter), not recorded
        if self.unavailable(error):  # the credential could not be read just now: no new try
            credential = self.identity.cached_credential(access_key_id)
        else:
            credential = await self.identity.credential_async(access_key_id)
        session = None
        if credential is None:  # temporary credentials: their token names the session
            session = self.identity.session_claim(access_key_id, call.headers, call.query_string)
            if session is None:
                return
            account_id, principal_arn = session.account_id, session.arn
        else:
            account_id, principal_arn = credential.account_id, credential.principal_arn
        claimed = Caller(
            account_id=account_id,
            principal_arn=principal_arn,
            access_key_id=access_key_id,
            region=region if is_region_name(region) else "",
            source_ip=_source_ip(call.source_ip),
            request_id=call.request_id,
            session=session,
        )
        record = self.refusal_record(call, claimed, error)

        def command(uow: UnitOfWork) -> None:
            uow.add(record)

        await self.writer.run(command)

    def refusal_record(
        self, call: AuditedRequest, claimed: Caller, error: BaseException
    ) -> AuditedCall:
        """The record of a refused call: nothing of its body or parameters, an operation
        name only if it is one, the error's code and only the constant part of its
        message (a refusal may echo the request: its Authorization header, its date)."""
        code, message = error_code_of(error)
        name = refused_operation(call.event_source, call.event_name)
        return AuditedCall.record(
            call_id=audited_call_id(call.request_id),
            now=self.clock.now(),
            event_name=name,
            event_source=call.event_source,
            actor=claimed.actor(),
            request_parameters=None,
            error_code=code,
            error_message=refusal_message(message),
            resources=[],
            read_only=is_read_only(name),
        )

    async def refused(
        self,
        event_name: str,
        *,
        event_source: str,
        request_id: str,
        headers: Sequence[tuple[str, str]],
        query_string: str,
        source_ip: str,
        error: BaseException,
    ) -> None:
        """Record a request refused before any handler saw it (an oversized body:
        app.entrypoints.server.asgi) as a refusal at authentication; a failure to record it
        does not stop its answer."""
        call = self.call(
            event_name,
            request_id=request_id,
            headers=headers,
            query_string=query_string,
            source_ip=source_ip,
            event_source=event_source,
        )
        try:
            await self.authentication_failed(call, error)
        except Exception as failure:
            log.error("call %s not recorded: %s", request_id, type(failure).__name__)


def raw_parameters(body: bytes) -> Any:
    """The members of a request body that could not be validated, for its record."""
    try:
        document = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None
