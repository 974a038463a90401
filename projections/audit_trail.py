"""The audit trail: every event of the ledger as a CloudTrail record, plus usage rollups,
each key's last use, and (projections.key_views) the key state auditors read.

A batched consumer of ALL events (projections.batched): a ``Used`` event becomes the record
of its Encrypt, Decrypt, Sign..., a ``Disabled`` event DisableKey's, a ``CallRecorded``
event (domain.audit) the record of a call that changed nothing (read-only, denied, failed).
Records are written with COPY, rollups and last use as one upsert per batch, all in the
batch's transaction with the tracking position: exactly once, resumable after a crash,
and identical when rebuilt from the event store (``keyledger audit replay``), since every
value (event ids included) derives from the events alone.

A cross-account call gets one copy per account that receives it (the caller's, and the
key owner's unless it was refused), as CloudTrail delivers it.

The hot path, a use of one key through KMS (``_simple_use``), skips the general one's
per-event work where the result is the same: Used rows decoded with orjson
(``decode_used``), each caller's record parts stored once per key and operation as a
template (``_UseTemplate``, audit_record_templates) and the record composed when read by
the view audit_events (migrations/024), COPY text without per-value escaping when nothing
needs it. Every shortcut reads back as the general path's bytes, or steps aside for it
(tests/audit/test_record_bytes.py pins them; tests/audit/test_audit_use_templates.py and
tests/unit/test_audit_*.py compare both paths).

An event the trail cannot apply even alone is set aside (projections.batched); in its
place the trail holds an ``AuditRecordUnavailable`` record (eventSource
keyledger.amazonaws.com) under the same notification id: the gap is in the trail itself.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import sha1, sha256
from typing import Any, ClassVar

import orjson
import psycopg
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    Notification,
    StoredEvent,
)
from eventsourcing.utils import get_topic

from domain.audit import (
    KEYLEDGER_SOURCE,
    KMS_SOURCE,
    SIGNIN_SOURCE,
    XKS_SOURCE,
    XKS_USES,
    AuditedCall,
    is_read_only,
)
from domain.custody import RootKeyCustody
from domain.identity import AccessKey, Account, Principal, principal_id
from domain.key_specs import key_algorithms
from domain.keys import AWS_MANAGED, SOURCE_USE, Alias, Key, KeyStoreLocation
from domain.policy import default_key_policy
from projections import key_views
from projections.batched import BatchedProjection, error_type
from projections.pg_text import without_nul

log = logging.getLogger("keyledger.audit")

PROJECTION_NAME = "audit_trail"
LEADER_LOCK_ID = 0x6B6C6174  # "klat"
EVENT_VERSION = "1.11"
KEY_RESOURCE = "AWS::KMS::Key"
IAM_SOURCE = "iam.amazonaws.com"
AWS_INTERNAL = "AWS Internal"
# eventIDs are name-based UUIDs of the ledger event (and the receiving account for a copy).
EVENT_ID_NAMESPACE = uuid.UUID("0c7a1f9e-5d2b-4c1e-9a57-6b6579a0d17e")
_EVENT_ID_PREFIX = EVENT_ID_NAMESPACE.bytes
MAX_CACHED = 20_000  # facts of keys, aliases...: the rest are read back per batch
MAX_USER_AGENT = 1024
# The record written in place of one the trail could not write (projections.batched).
UNAVAILABLE_EVENT_NAME = "AuditRecordUnavailable"

COLUMNS = (
    "notification_id",
    "recipient_account_id",
    "event_id",
    "shared_event_id",
    "event_time",
    "event_source",
    "event_name",
    "read_only",
    "account_id",
    "principal_arn",
    "username",
    "access_key_id",
    "source_ip",
    "region",
    "request_id",
    "error_code",
    "resource_type",
    "resource_arn",
    "resources",
    "encryption_context_keys",
    "record",
    "template_id",
    "record_members",
)
# The rows behind the view audit_events (migrations/024): a record is either whole (record)
# or composed when read from a template and the row's own members (_UseTemplate).
COPY_SQL = f"COPY audit_event_rows ({', '.join(COLUMNS)}) FROM STDIN"
TEMPLATES_SQL = (
    "INSERT INTO audit_record_templates (template_id, head, middle, tail)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (template_id) DO NOTHING"
)
# COPY's text format is written directly: a few times cheaper than adapting each value.
ROLLUP_SQL = (
    "INSERT INTO audit_usage_hourly (hour, key_arn, principal_arn, operation,"
    " caller_account_id, key_account_id, requests, errors) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (hour, key_arn, principal_arn, operation) DO UPDATE SET"
    " requests = audit_usage_hourly.requests + EXCLUDED.requests,"
    " errors = audit_usage_hourly.errors + EXCLUDED.errors"
)
LAST_USED_SQL = (
    "INSERT INTO audit_key_last_usage (key_id, operation, used_at, event_id, request_id)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key_id) DO UPDATE SET"
    " operation = EXCLUDED.operation, used_at = EXCLUDED.used_at,"
    " event_id = EXCLUDED.event_id, request_id = EXCLUDED.request_id"
    " WHERE audit_key_last_usage.used_at <= EXCLUDED.used_at"
)  # the latest use wins: a ReEncrypt's source key is noted at its destination's event

# Views a migration added after the trail had passed their events (audit_view_backfills):
# the handlers that build each, and the topics of the events they need.
BACKFILLS: dict[str, tuple[dict[type, Any], tuple[str, ...]]] = {
    "audit_custom_key_stores": (
        key_views.STORE_HANDLERS,
        tuple(get_topic(kind) for kind in key_views.STORE_HANDLERS),
    ),
}

# Used.operation -> (eventName, keyId member, context member, algorithm member or None)
USED_SHAPES: dict[str, tuple[str, str, str, str | None]] = {
    "Encrypt": ("Encrypt", "keyId", "encryptionContext", "encryptionAlgorithm"),
    "Decrypt": ("Decrypt", "keyId", "encryptionContext", "encryptionAlgorithm"),
    "ReEncryptFrom": (
        "ReEncrypt",
        "sourceKeyId",
        "sourceEncryptionContext",
        "sourceEncryptionAlgorithm",
    ),
    "ReEncryptTo": (
        "ReEncrypt",
        "destinationKeyId",
        "destinationEncryptionContext",
        "destinationEncryptionAlgorithm",
    ),
    "GenerateDataKey": ("GenerateDataKey", "keyId", "encryptionContext", None),
    "GenerateDataKeyWithoutPlaintext": (
        "GenerateDataKeyWithoutPlaintext",
        "keyId",
        "encryptionContext",
        None,
    ),
    "GenerateDataKeyPair": ("GenerateDataKeyPair", "keyId", "encryptionContext", None),
    "GenerateDataKeyPairWithoutPlaintext": (
        "GenerateDataKeyPairWithoutPlaintext",
        "keyId",
        "encryptionContext",
        None,
    ),
    "Sign": ("Sign", "keyId", "", "signingAlgorithm"),
    "Verify": ("Verify", "keyId", "", "signingAlgorithm"),
    "GenerateMac": ("GenerateMac", "keyId", "", "macAlgorithm"),
    "VerifyMac": ("VerifyMac", "keyId", "", "macAlgorithm"),
    "DeriveSharedSecret": ("DeriveSharedSecret", "keyId", "", "keyAgreementAlgorithm"),
    "Encapsulate": ("Encapsulate", "keyId", "", "encapsulationAlgorithm"),
    "Decapsulate": ("Decapsulate", "keyId", "", "encapsulationAlgorithm"),
    # Uses through the XKS Proxy API KeyLedger serves: recorded under XKS_SOURCE.
    **{
        operation: (name, "externalKeyId", "", "encryptionAlgorithm")
        for operation, name in XKS_USES.items()
    },
}
CONTEXT_MEMBERS = ("encryptionContext", "sourceEncryptionContext", "destinationEncryptionContext")


def event_time(moment: datetime) -> str:
    """CloudTrail's eventTime: UTC to the second."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_time_of(iso: str, moment: datetime) -> str:
    """event_time(moment), given ``moment.isoformat()`` (which the row needs anyway): its
    first 19 characters are the same fields, for any year of four digits (strftime writes
    earlier years unpadded)."""
    if moment.year >= 1000:
        return iso[:19] + "Z"
    return event_time(moment)


def event_id(name: str) -> str:
    """str(uuid.uuid5(EVENT_ID_NAMESPACE, name)), without building the UUID (one per record
    on the hot path): SHA-1 of the namespace and the name, version 5, RFC 4122 variant."""
    digest = bytearray(sha1(_EVENT_ID_PREFIX + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def user_identity(actor: dict[str, Any], account_id: str) -> tuple[dict[str, Any], str]:
    """CloudTrail's userIdentity for an event's actor, and the user (or role) name (shared
    by every record of the same caller: never to be changed)."""
    return _user_identity(
        str(actor.get("principal_arn") or ""),
        str(actor.get("account_id") or account_id),
        str(actor.get("access_key_id") or ""),
        str(actor.get("via_service") or ""),
        str(actor.get("session_created") or ""),
    )


@lru_cache(maxsize=65536)
def _user_identity(
    arn: str, account: str, access_key: str, via: str, session_created: str = ""
) -> tuple[dict[str, Any], str]:
    if not arn.startswith("arn:"):
        return {"type": "Unknown", "accountId": account}, ""
    resource = arn.split(":", 5)[-1]
    name = resource.rsplit("/", 1)[-1]
    identity: dict[str, Any]
    if resource.startswith("assumed-role/"):
        identity, name = _assumed_role_identity(arn, account, session_created)
    elif resource == "root":
        identity = {"type": "Root", "principalId": account, "arn": arn, "accountId": account}
        name = "root"
    else:
        kind = "Role" if resource.startswith("role/") else "IAMUser"
        identity = {
            "type": kind,
            "principalId": principal_id(arn),
            "arn": arn,
            "accountId": account,
        }
    if access_key:
        identity["accessKeyId"] = access_key
    if identity["type"] == "IAMUser":
        identity["userName"] = name
    if via:
        identity["invokedBy"] = via.split(".", 1)[0] + ".amazonaws.com"
    return identity, name


def _assumed_role_identity(
    arn: str, account: str, session_created: str
) -> tuple[dict[str, Any], str]:
    """An assumed-role session as CloudTrail names it: type AssumedRole, principalId
    ``AROA...:SESSION``, and the role that issued it in sessionContext.sessionIssuer."""
    partition = arn.split(":", 2)[1]
    _, role_name, session_name = arn.split(":", 5)[-1].split("/", 2)
    role_arn = f"arn:{partition}:iam::{account}:role/{role_name}"
    role_id = principal_id(role_arn)
    identity: dict[str, Any] = {
        "type": "AssumedRole",
        "principalId": f"{role_id}:{session_name}",
        "arn": arn,
        "accountId": account,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": role_id,
                "arn": role_arn,
                "accountId": account,
                "userName": role_name,
            },
            "attributes": {"creationDate": session_created, "mfaAuthenticated": "false"},
        },
    }
    return identity, session_name  # LookupEvents' Username of a session: its name


@dataclass
class KeyFacts:
    """What the trail needs of a key beyond its events: ARN, owner, spec, materials."""

    arn: str
    account_id: str
    region: str
    key_spec: str
    key_manager: str
    materials: dict[int, str] = field(default_factory=dict)
    store: KeyStoreLocation | None = None  # a key of a custom key store


@dataclass
class AliasFacts:
    alias_name: str
    account_id: str
    region: str
    target_key_id: str | None


@dataclass
class Described:
    """One API call (or service event), before it is shaped into record copies."""

    event_name: str
    actor: dict[str, Any]
    account_id: str  # the account of a service event, or of an actor without one
    region: str
    request_parameters: dict[str, Any] | None
    resources: list[tuple[str, str, str]]  # (ARN, account id, type)
    read_only: bool
    event_source: str = KMS_SOURCE
    response_elements: dict[str, Any] | None = None
    additional: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    service_event: bool = False
    service_details: dict[str, Any] | None = None
    context_keys: list[str] = field(default_factory=list)
    # Usage rollups count the call under its first resource, or under each key it names.
    count_each_resource: bool = False


def store_metadata(store: KeyStoreLocation) -> dict[str, str]:
    """KeyMetadata's members naming where a key of a custom key store lives."""
    found = {"customKeyStoreId": store["custom_key_store_id"]}
    if store.get("cloud_hsm_cluster_id"):
        found["cloudHsmClusterId"] = str(store["cloud_hsm_cluster_id"])
    return found


def store_event_data(store: KeyStoreLocation) -> dict[str, str]:
    """additionalEventData of a cryptographic call with a key of a custom key store: the
    store, and for an external key store the external key (AWS's records name both)."""
    found = {"customKeyStoreId": store["custom_key_store_id"]}
    if store.get("xks_key_id"):
        found["xksKeyId"] = str(store["xks_key_id"])
    return found


def _is_service_actor(actor: dict[str, Any] | None) -> bool:
    return bool(actor) and bool(actor.get("service"))  # type: ignore[union-attr]


def _text(value: str | None) -> str:
    if value is None:
        return "\\N"
    value = without_nul(value)  # the JSON record keeps (escapes) it
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value or "\r" in value or "\t" in value:
        value = value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return value


# An audit_events row: its values (COLUMNS order), or its line of COPY text already written.
Row = tuple[Any, ...] | str


def _copy_text(rows: list[Row]) -> str:
    return "".join(row if isinstance(row, str) else _copy_line(row) for row in rows)


def _copy_line(row: tuple[Any, ...]) -> str:
    """One audit_events row (COLUMNS order, the event time as ISO text) in COPY's text format."""
    (
        notification_id,
        recipient,
        record_id,
        shared_id,
        moment,
        event_source,
        event_name,
        read_only,
        account,
        principal,
        username,
        access_key,
        source_ip,
        region,
        request_id,
        error_code,
        resource_type,
        resource_arn,
        resources,
        context_keys,
        record,
    ) = row
    if error_code is None and resource_type is not None:  # every use, nearly every call
        try:
            texts = "".join(
                (
                    recipient,
                    event_source,
                    event_name,
                    account,
                    principal,
                    username,
                    access_key,
                    source_ip,
                    region,
                    request_id,
                    resource_type,
                    resource_arn,
                    resources,
                    context_keys,
                    record,
                )
            )
        except TypeError:  # a value that is not text: the general path says how to write it
            texts = "\\"
        # One scan of all the text for what COPY reads as special: when none is there, each
        # value is written as is (the bytes _escaped_copy_line writes, a few times faster).
        if not _copy_special(texts):
            shared = NULL if shared_id is None else shared_id
            flag = "t" if read_only else "f"
            return (
                f"{notification_id}\t{recipient}\t{record_id}\t{shared}\t{moment}\t"
                f"{event_source}\t{event_name}\t{flag}\t{account}\t{principal}\t{username}\t"
                f"{access_key}\t{source_ip}\t{region}\t{request_id}\t{NULL}\t{resource_type}\t"
                f"{resource_arn}\t{resources}\t{context_keys}\t{record}\t{NULL}\t{NULL}\n"
            )
    return _escaped_copy_line(row)


NULL = "\\N"  # COPY's text format


def _copy_special(text: str) -> bool:
    """Whether ``text`` holds what COPY's text format escapes, or a NUL (which a text
    column cannot hold). (Five substring scans: several times faster than one regex.)"""
    return "\\" in text or "\t" in text or "\n" in text or "\r" in text or "\x00" in text


def _escaped_copy_line(row: tuple[Any, ...]) -> str:
    """_copy_line, escaping each text value."""
    (notification_id, recipient, record_id, shared_id, moment, *texts, record) = row
    event_source, event_name, read_only = texts[0], texts[1], texts[2]
    fields = [
        str(notification_id),
        _text(recipient),
        str(record_id),
        "\\N" if shared_id is None else str(shared_id),
        moment,
        _text(event_source),
        _text(event_name),
        "t" if read_only else "f",
        *(_text(value) for value in texts[3:]),
        _text(record),
        NULL,  # template_id, record_members: a whole record
        NULL,
    ]
    return "\t".join(fields) + "\n"


def _array(items: list[str]) -> str:
    """A PostgreSQL text[] literal (every element quoted)."""
    if not items:
        return "{}"
    plain = "".join(items)
    if not ("\\" in plain or '"' in plain or "\x00" in plain):  # nothing to escape
        return '{"' + '","'.join(items) + '"}'
    quoted = (without_nul(item).replace("\\", "\\\\").replace('"', '\\"') for item in items)
    return "{" + ",".join(f'"{item}"' for item in quoted) + "}"


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class _SetAside:
    """What a record needs of an event that was set aside (it may not even decode)."""

    originator_id: uuid.UUID | str
    originator_version: int
    timestamp: datetime


def _source_use(event: Any) -> tuple[uuid.UUID, int] | None:
    """(source key id, material version) a ReEncryptTo event names, if it does."""
    given = event.request_parameters
    found = given.get(SOURCE_USE) if given else None
    if not found:
        return None
    return uuid.UUID(str(found[0])), int(found[1])


# Uses whose record names one key, through KMS (not the XKS proxy API): _simple_use writes them.
SIMPLE_USES = frozenset(
    operation
    for operation, (_, key_member, context_member, _) in USED_SHAPES.items()
    if key_member == "keyId"
    and operation not in XKS_USES
    and not operation.startswith("ReEncrypt")
    and context_member in ("encryptionContext", "")
)


@lru_cache(maxsize=1024)
def recipient_json(account: str) -> str:
    """An account id as the record's JSON writes it."""
    return orjson.dumps(account).decode()


@dataclass(frozen=True)
class StoredTemplate:
    """The parts of a record a template holds (audit_record_templates, migrations/024): the
    view puts the row's event time between head and middle, and its members and eventID
    between middle and tail. Named by its text, so writing it again changes nothing."""

    template_id: str
    head: str
    middle: str
    tail: str

    @classmethod
    def of(cls, head: str, middle: str, tail: str) -> StoredTemplate:
        digest = sha256("\x00".join((head, middle, tail)).encode()).digest()[:16]
        return cls(str(uuid.UUID(bytes=digest)), head, middle, tail)


@dataclass(frozen=True)
class _UseTemplate:
    """What every record of one caller's uses of one key by one operation shares, as JSON
    and COPY text, written once by _emit's own rules (a record's members are in the order
    _emit writes them; orjson writes an object as its members joined by commas)."""

    recipients: tuple[str, ...]  # the accounts that receive a copy, the caller's first
    copy_before: str  # the COPY text between the event time and the request id
    copy_after: str  # and between the request id and the context keys
    principal_arn: str
    caller_account: str
    key_id: str  # str(the key's UUID), as event ids name it
    stored: tuple[StoredTemplate, ...]  # each recipient's copy's

    @classmethod
    def of(
        cls, actor: dict[str, Any], key_id: uuid.UUID, facts: KeyFacts, operation: str
    ) -> _UseTemplate | None:
        """None when a value needs COPY escaping (the general path writes those)."""
        event_name = USED_SHAPES[operation][0]
        identity, username = user_identity(actor, facts.account_id)
        caller_account = identity["accountId"]
        recipients = [caller_account]
        if facts.account_id and facts.account_id != caller_account:
            recipients.append(facts.account_id)
        via = str(actor.get("via_service") or "")
        source_ip = str((identity.get("invokedBy") if via else actor.get("source_ip")) or "")
        user_agent = str((identity.get("invokedBy") if via else actor.get("user_agent")) or "")
        region = str(actor.get("region") or facts.region)
        principal_arn = str(actor.get("principal_arn") or "")
        head = orjson.dumps({"eventVersion": EVENT_VERSION, "userIdentity": identity}).decode()
        middle = orjson.dumps(
            {
                "eventSource": KMS_SOURCE,
                "eventName": event_name,
                "awsRegion": region,
                "sourceIPAddress": source_ip,
                "userAgent": user_agent[:MAX_USER_AGENT],
            }
        ).decode()
        resources = orjson.dumps(
            {
                "readOnly": True,
                "resources": [
                    {"accountId": facts.account_id, "type": KEY_RESOURCE, "ARN": facts.arn}
                ],
                "eventType": "AwsApiCall",
                "managementEvent": True,
            }
        ).decode()
        access_key = str(actor.get("access_key_id") or "")
        resource_array = _array([facts.arn])
        columns = (caller_account, principal_arn, username, access_key, source_ip, region)
        texts = (head, middle, resources, event_name, *columns, facts.arn, resource_array)
        if any(_copy_special(text) for text in (*texts, *recipients)):
            return None
        before = "\t".join((KMS_SOURCE, event_name, "t", *columns, ""))
        after = "\t".join(("", NULL, KEY_RESOURCE, facts.arn, resource_array, ""))
        # The record up to the eventTime value; from after it up to requestParameters; and
        # from readOnly up to (here, with) recipientAccountId's value.
        record_head = head[:-1] + ',"eventTime":"'
        record_middle = '",' + middle[1:-1] + ","
        record_resources = "," + resources[1:-1] + ',"recipientAccountId":'
        return cls(
            recipients=tuple(recipients),
            copy_before=before,
            copy_after=after,
            principal_arn=principal_arn,
            caller_account=caller_account,
            key_id=str(key_id),
            stored=tuple(
                StoredTemplate.of(
                    record_head, record_middle, record_resources + recipient_json(recipient)
                )
                for recipient in recipients
            ),
        )


_NO_TEMPLATE: Any = object()  # (None is cached too: a caller whose text COPY must escape)


USED_TOPIC = get_topic(Key.Used)


def plain_json_mapper(mapper: Mapper[Any]) -> bool:
    """Whether ``mapper`` stores events as decode_used reads them: JSON, neither
    encrypted nor compressed, decoded by the library's JSONTranscoder (a subclass may
    only encode faster, as the ledger's does), times by the library's ISO transcoding."""
    transcoder = mapper.transcoder
    return (
        mapper.cipher is None
        and mapper.compressor is None
        and isinstance(transcoder, JSONTranscoder)
        and type(transcoder).decode is JSONTranscoder.decode
        and type(transcoder)._decode_obj is JSONTranscoder._decode_obj
        and type(transcoder.names.get("datetime_iso")) is DatetimeAsISO
    )


def decode_used(notification: Notification | StoredEvent) -> Any | None:
    """The ``Key.Used`` event a stored row of its topic holds, exactly as a plain JSON
    mapper (plain_json_mapper) decodes it (same values, types and attribute order), or
    None where it would do more: upcast an older version, or transcode anything but the
    time. The trail's hot path: a few times cheaper than the mapper's object-hook JSON
    decoding."""
    state = notification.state
    # The time is the one transcoded value ({"_type_":..., "_data_":...}); an escaped
    # character (\u...) could spell another: left to the mapper.
    if state.count(b'"_type_"') != 1 or b"\\u" in state:
        return None
    try:
        found = orjson.loads(state)
    except orjson.JSONDecodeError:  # (NaN, integers past 64 bits: Python's json reads them)
        return None
    if type(found) is not dict or found.pop("class_version", 1) != Key.Used.class_version:
        return None
    moment = found.get("timestamp")
    if type(moment) is not dict or len(moment) != 2 or moment.get("_type_") != "datetime_iso":
        return None
    found["timestamp"] = datetime.fromisoformat(moment["_data_"])
    originator_id = notification.originator_id
    if type(originator_id) is not uuid.UUID:
        return None
    found["originator_id"] = originator_id
    found["originator_version"] = notification.originator_version
    event = object.__new__(Key.Used)
    object.__setattr__(event, "__dict__", found)
    return event


class AuditTrailProjection(BatchedProjection):
    name: ClassVar[str] = PROJECTION_NAME
    lock_id: ClassVar[int] = LEADER_LOCK_ID
    # Short passes: a pass's Python work runs at a higher priority than the workers
    # (app/entrypoints/server/supervisor.py), and 0.25 s of events at a time (~1,200 at full load)
    # held a core for tens of milliseconds, which showed in the requests' p99. At 0.05 s the
    # trail's lag p99 was also 0.2 s instead of 0.6 s, for the same throughput.
    pass_interval = idle_interval = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: dict[uuid.UUID, KeyFacts] = {}
        self._aliases: dict[uuid.UUID, AliasFacts] = {}
        self._principals: dict[uuid.UUID, tuple[str, str, str]] = {}  # arn, account, type
        self._access_keys: dict[uuid.UUID, tuple[str, str, str]] = {}  # id, principal, account
        self._describers: dict[type, Callable[[Any], Described | None]] = self._describer_table()
        self._backfills_checked = False  # True once audit_view_backfills was read and applied
        self._plain_mapper = plain_json_mapper(self._ledger.mapper)
        self._templates: dict[tuple[Any, ...], _UseTemplate | None] = {}
        self._stored_templates: set[str] = set()  # ids in audit_record_templates
        self._new_templates: dict[str, StoredTemplate] = {}  # for this batch to store

    def _decode(self, notification: Notification | StoredEvent) -> Any:
        if self._plain_mapper and notification.topic == USED_TOPIC:
            used = decode_used(notification)
            if used is not None:
                return used
        return super()._decode(notification)

    def reset(self) -> None:
        self._templates.clear()
        self._stored_templates.clear()  # (a failed batch's were rolled back)
        self._new_templates.clear()
        self._keys.clear()
        self._aliases.clear()
        self._principals.clear()
        self._access_keys.clear()
        self._backfills_checked = False  # (asked again after a failure: cheap)

    # ==== the batch ===========================================================================
    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        caches = (self._keys, self._templates, self._stored_templates)
        if max(len(cache) for cache in caches) > MAX_CACHED:
            self.reset()
        self._prefetch(conn, events)
        rows: list[Row] = []
        rollups: dict[tuple[datetime, str, str, str], list[Any]] = {}
        last_used: dict[str, tuple[Any, ...]] = {}
        used = Key.Used
        handlers = key_views.HANDLERS
        for event, notification_id in zip(events, ids, strict=True):
            if type(event) is used:
                self._used(event, notification_id, rows, rollups, last_used)
                continue
            describe = self._describers.get(type(event))
            described = describe(event) if describe is not None else self._generic(event)
            handler = handlers.get(type(event))
            if handler is not None:
                handler(conn, event)
            self._learn(event)
            if described is not None:
                self._emit(event, notification_id, described, rows, rollups)
        if rows:
            self.store_templates(conn)  # (before the rows that name them)
            with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                copy.write(_copy_text(rows))
        if rollups:
            with conn.cursor() as cursor:
                cursor.executemany(
                    ROLLUP_SQL, [(*group, *totals) for group, totals in rollups.items()]
                )
        if last_used:
            with conn.cursor() as cursor:
                cursor.executemany(
                    LAST_USED_SQL,
                    [
                        (key, op, at, uuid.UUID(copy_id), rid)
                        for key, op, at, copy_id, rid in last_used.values()
                    ],
                )

    def store_templates(self, conn: psycopg.Connection[Any]) -> None:
        """Write the templates this batch's rows name that the table may not hold yet."""
        if not self._new_templates:
            return
        new = self._new_templates.values()
        with conn.cursor() as cursor:
            cursor.executemany(
                TEMPLATES_SQL, [(t.template_id, t.head, t.middle, t.tail) for t in new]
            )
        self._stored_templates.update(self._new_templates)
        self._new_templates.clear()

    # ==== views added after the trail passed their events ========================================
    def catch_up(self, stop: int | None = None) -> int:
        if not self._backfills_checked:  # first: later events may change what it adds
            with self._pool.connection() as conn, conn.transaction():
                self._backfill(conn)
            self._backfills_checked = True
        return super().catch_up(stop)

    def _backfill(self, conn: psycopg.Connection[Any]) -> None:
        """Apply to each view a migration added (audit_view_backfills) the events the trail
        had passed when it was made, and forget it, in one transaction. Only the view's
        own handlers run: the trail's records of those events exist already."""
        pending = conn.execute(
            "SELECT view_name, up_to FROM audit_view_backfills ORDER BY view_name FOR UPDATE"
        ).fetchall()
        for view, up_to in pending:
            handlers, topics = BACKFILLS.get(view, ({}, ()))
            start = 1
            while handlers and start <= up_to:
                notifications = self._ledger.recorder.select_notifications(
                    start=start, limit=self.batch_size, stop=up_to, topics=topics
                )
                for notification in notifications:
                    event = self._ledger.mapper.to_domain_event(notification)
                    handlers[type(event)](conn, event)
                if len(notifications) < self.batch_size:
                    break
                start = notifications[-1].id + 1
            conn.execute("DELETE FROM audit_view_backfills WHERE view_name = %s", (view,))
            log.info("audit trail: view %s caught up to event %s", view, up_to)

    # ==== a gap in the trail ====================================================================
    def set_aside(
        self,
        conn: psycopg.Connection[Any],
        notification: Notification,
        event: Any | None,
        error: BaseException,
    ) -> None:
        """In place of the record of an event set aside, one that says it is missing: a
        KeyLedger service event under the same notification id (so it sorts where the
        missing record would) and eventID, naming the event, its key if known, and why."""
        described = self._unavailable(conn, notification, event, error)
        moment = event.timestamp if event is not None else self._time_before(conn, notification)
        stand_in = _SetAside(notification.originator_id, notification.originator_version, moment)
        rows: list[Row] = []
        self._emit(stand_in, notification.id, described, rows, {})
        with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            copy.write(_copy_text(rows))

    def _unavailable(
        self,
        conn: psycopg.Connection[Any],
        notification: Notification,
        event: Any | None,
        error: BaseException,
    ) -> Described:
        actor = getattr(event, "actor", None) or {}
        account = str(actor.get("account_id") or getattr(event, "account_id", "") or "")
        region = str(actor.get("region") or getattr(event, "region", "") or "")
        resources: list[tuple[str, str, str]] = []
        key = conn.execute(
            "SELECT arn, account_id, region FROM audit_keys WHERE key_id = %s",
            (notification.originator_id,),
        ).fetchone()
        if key is not None:  # the key's owner receives it, as it receives the key's events
            resources, account, region = [(key[0], key[1], KEY_RESOURCE)], key[1], key[2]
        elif isinstance(event, Key.Created):
            resources = [(event.arn, event.account_id, KEY_RESOURCE)]
        elif isinstance(event, AuditedCall.CallRecorded):
            resources = [
                (r["arn"], r.get("account_id", ""), r.get("type") or KEY_RESOURCE)
                for r in event.resources
            ]
        details = {
            "notificationId": notification.id,
            "originatorId": str(notification.originator_id),
            "originatorVersion": notification.originator_version,
            "topic": notification.topic,
            "errorType": error_type(error),
            "reason": "The audit trail could not apply this ledger event: its record (and"
            " its change to the audit views) is missing. The ledger holds the event.",
        }
        return Described(
            event_name=UNAVAILABLE_EVENT_NAME,
            actor={},
            account_id=account,
            region=region,
            request_parameters=None,
            resources=resources,
            read_only=True,
            event_source=KEYLEDGER_SOURCE,
            service_event=True,
            service_details=details,
        )

    @staticmethod
    def _time_before(conn: psycopg.Connection[Any], notification: Notification) -> datetime:
        """An event that does not decode has no time of its own: the record before it's."""
        row = conn.execute(
            "SELECT event_time FROM audit_events WHERE notification_id < %s"
            " ORDER BY notification_id DESC LIMIT 1",
            (notification.id,),
        ).fetchone()
        return row[0] if row is not None else datetime.now(UTC)

    # ==== facts ===============================================================================
    def _prefetch(self, conn: psycopg.Connection[Any], events: Sequence[Any]) -> None:
        """Load, in one query per kind, the facts the batch's events need and lack."""
        keys: set[uuid.UUID] = set()
        aliases: set[uuid.UUID] = set()
        access_keys: set[uuid.UUID] = set()
        principals: set[uuid.UUID] = set()
        used = Key.Used
        for event in events:
            oid = event.originator_id
            if isinstance(event, Key.Event):
                if oid not in self._keys and not isinstance(event, Key.Created):
                    keys.add(oid)
                if type(event) is used and event.operation == "ReEncryptTo":
                    source = _source_use(event)
                    if source is not None and source[0] not in self._keys:
                        keys.add(source[0])
            elif isinstance(event, Alias.Event):
                if oid not in self._aliases and not isinstance(event, Alias.Created):
                    aliases.add(oid)
            elif isinstance(event, AccessKey.Deactivated):
                if oid not in self._access_keys:
                    access_keys.add(oid)
            elif (
                type(event).__qualname__.startswith("Principal.")
                and not isinstance(event, Principal.Created)
                and oid not in self._principals
            ):
                principals.add(oid)
        if keys:
            for row in conn.execute(
                "SELECT k.key_id, k.arn, k.account_id, k.region, k.key_spec, k.key_manager,"
                " coalesce(jsonb_object_agg(m.version, m.material_id)"
                "  FILTER (WHERE m.version IS NOT NULL), '{}'::jsonb),"
                " k.custom_key_store_id, k.cloud_hsm_cluster_id, k.xks_key_id"
                " FROM audit_keys k LEFT JOIN audit_key_materials m USING (key_id)"
                " WHERE k.key_id = ANY(%s) GROUP BY k.key_id",
                (list(keys),),
            ):
                materials = {int(version): str(mid) for version, mid in row[6].items()}
                store = key_views.store_location(row[7], row[8], row[9])
                self._keys[row[0]] = KeyFacts(
                    row[1], row[2], row[3], row[4], row[5], materials, store
                )
        if aliases:
            for row in conn.execute(
                "SELECT alias_id, alias_name, account_id, region, target_key_id::text"
                " FROM audit_alias_targets WHERE alias_id = ANY(%s)",
                (list(aliases),),
            ):
                self._aliases[row[0]] = AliasFacts(row[1], row[2], row[3], row[4])
        if access_keys:
            for row in conn.execute(
                "SELECT aggregate_id, access_key_id, principal_arn, account_id"
                " FROM audit_access_keys WHERE aggregate_id = ANY(%s)",
                (list(access_keys),),
            ):
                self._access_keys[row[0]] = (row[1], row[2], row[3])
        if principals:
            for row in conn.execute(
                "SELECT principal_id, arn, account_id, principal_type FROM audit_principals"
                " WHERE principal_id = ANY(%s)",
                (list(principals),),
            ):
                self._principals[row[0]] = (row[1], row[2], row[3])

    def _learn(self, event: Any) -> None:
        """Update the facts after an event (records are described from the facts before)."""
        kind = type(event)
        oid = event.originator_id
        if kind is Key.Created or kind is Key.Replicated:
            materials = (
                {event.material.version: event.material.material_id} if event.material else {}
            )
            for material in getattr(event, "materials", None) or []:
                materials[material.version] = material.material_id
            self._keys[oid] = KeyFacts(
                event.arn,
                event.account_id,
                event.region,
                event.key_spec,
                event.key_manager,
                materials,
                event.store,
            )
        elif (kind is Key.Synchronized and event.material is not None) or kind in (
            Key.Rotated,
            Key.MaterialImported,
        ):
            facts = self._keys.get(oid)
            if facts is not None:
                facts.materials[event.material.version] = event.material.material_id
        elif kind is Alias.Created:
            self._aliases[oid] = AliasFacts(
                event.alias_name, event.account_id, event.region, event.target_key_id
            )
        elif kind is Alias.Retargeted:
            alias = self._aliases.get(oid)
            if alias is not None:
                alias.target_key_id = event.target_key_id
        elif kind is Alias.Deleted:
            alias = self._aliases.get(oid)
            if alias is not None:
                alias.target_key_id = None
        elif kind is Principal.Created:
            self._principals[oid] = (event.arn, event.account_id, event.principal_type)
        elif kind is AccessKey.Created:
            self._access_keys[oid] = (event.access_key_id, event.principal_arn, event.account_id)

    def _key(self, event: Any, key_id: uuid.UUID | None = None) -> KeyFacts:
        """The facts of the event's key (or of ``key_id``, a key the event names)."""
        key = event.originator_id if key_id is None else key_id
        facts = self._keys.get(key)
        if facts is None:  # never expected: a key's Created precedes its other events
            actor = getattr(event, "actor", None) or {}
            log.warning("audit trail: no facts for key %s", key)
            facts = KeyFacts(
                f"arn:aws:kms:{actor.get('region', '')}:{actor.get('account_id', '')}:key/{key}",
                str(actor.get("account_id", "")),
                str(actor.get("region", "")),
                "",
                "",
            )
            self._keys[key] = facts
        return facts

    # ==== the hot path: Used ==================================================================
    def _used(
        self,
        event: Any,
        notification_id: int,
        rows: list[Row],
        rollups: dict[tuple[datetime, str, str, str], list[Any]],
        last_used: dict[str, tuple[Any, ...]],
    ) -> None:
        given: dict[str, Any] | None = event.request_parameters
        operation = event.operation
        if given is not None and operation == "ReEncryptFrom":
            return  # the ReEncryptTo event of the same call writes its record (domain.keys.Used)
        facts = self._key(event)
        if (
            given is not None
            and facts.store is None  # (a custom key store's use names the store too)
            and operation in SIMPLE_USES
            and self._simple_use(event, facts, given, notification_id, rows, rollups, last_used)
        ):
            return
        shape = USED_SHAPES.get(operation)
        if shape is None:
            shape = (operation, "keyId", "encryptionContext", None)
        event_name, key_member, context_member, algorithm_member = shape
        if given is None:  # recorded before the caller's parameters were kept
            parameters: dict[str, Any] = {key_member: facts.arn}
        else:
            parameters = dict(given)
        context = event.encryption_context
        if context_member and context:
            parameters[context_member] = context
        if algorithm_member is not None:
            parameters[algorithm_member] = event.algorithm
        material_id = facts.materials.get(event.material_version)
        resources = [(facts.arn, facts.account_id, KEY_RESOURCE)]
        additional: dict[str, Any] | None = {"keyMaterialId": material_id} if material_id else None
        if facts.store is not None:  # KMS names the store (and external key) of its keys
            additional = {**(additional or {}), **store_event_data(facts.store)}
        context_keys = list(context) if context else []
        source = _source_use(event) if operation == "ReEncryptTo" else None
        source_facts: KeyFacts | None = None
        if source is not None:  # the call's one ReEncrypt record: source key first
            del parameters[SOURCE_USE]
            source_facts = self._key(event, source[0])
            resources.insert(0, (source_facts.arn, source_facts.account_id, KEY_RESOURCE))
            additional = {}
            source_material = source_facts.materials.get(source[1])
            if source_material:
                additional["sourceKeyMaterialId"] = source_material
            if material_id:
                additional["destinationKeyMaterialId"] = material_id
            source_context = parameters.get("sourceEncryptionContext") or {}
            context_keys = list(dict.fromkeys([*source_context, *context_keys]))
        described = Described(
            event_name=event_name,
            actor=event.actor,
            account_id=facts.account_id,
            region=facts.region,
            request_parameters=parameters,
            resources=resources,
            read_only=True,
            event_source=XKS_SOURCE if operation in XKS_USES else KMS_SOURCE,
            additional=additional or None,
            context_keys=context_keys,
            count_each_resource=source is not None,
        )
        copies = self._emit(event, notification_id, described, rows, rollups)
        request_id = str(event.actor.get("request_id") or event.request_id or "")
        keys = [(event.originator_id, facts)]
        if source is not None and source_facts is not None:
            keys.append((source[0], source_facts))
        for key_id, key in keys:  # each key's last use: the copy its owner receives
            use = (
                key_id,
                event_name,
                event.timestamp,
                copies.get(key.account_id, copies[None]),
                request_id,
            )
            known = last_used.get(key.arn)  # (keyed by ARN, one per key: its hash is kept)
            if known is None or known[2] <= use[2]:
                last_used[key.arn] = use

    def _simple_use(
        self,
        event: Any,
        facts: KeyFacts,
        given: dict[str, Any],
        notification_id: int,
        rows: list[Row],
        rollups: dict[tuple[datetime, str, str, str], list[Any]],
        last_used: dict[str, tuple[Any, ...]],
    ) -> bool:
        """The record of a use of one key through KMS (Encrypt, Decrypt, GenerateDataKey...),
        written from its caller's template (_UseTemplate): the bytes _used's general path
        writes, with a few dict lookups and one small JSON encoding per use. False, with
        nothing written, when the template does not apply (the general path then writes it)."""
        actor = event.actor
        get = actor.get
        caller = (
            get("principal_arn"),
            get("account_id"),
            get("access_key_id"),
            get("region"),
            get("source_ip"),
            get("user_agent"),
            get("via_service"),
            get("session_created"),
            facts.arn,  # (a str: its hash is kept, a UUID's is computed in Python)
            event.operation,
        )
        template = self._templates.get(caller, _NO_TEMPLATE)
        if template is _NO_TEMPLATE:
            template = self._templates[caller] = _UseTemplate.of(
                actor, event.originator_id, facts, event.operation
            )
        if template is None:
            return False
        event_name, _, context_member, algorithm_member = USED_SHAPES[event.operation]
        parameters = dict(given)
        context = event.encryption_context
        if context_member and context:
            parameters[context_member] = context
        if algorithm_member is not None:
            parameters[algorithm_member] = event.algorithm
        varying: dict[str, Any] = {"requestParameters": parameters, "responseElements": None}
        material_id = facts.materials.get(event.material_version)
        if material_id:
            varying["additionalEventData"] = {"keyMaterialId": material_id}
        request_id = str(get("request_id") or "")
        if request_id:
            varying["requestID"] = request_id
        members = orjson.dumps(varying).decode()[1:-1]  # (its members, in the record's order)
        context_keys = _array(list(context)) if context else "{}"
        if _copy_special(request_id) or _copy_special(context_keys) or _copy_special(members):
            return False  # text COPY must escape: the general path does
        moment = event.timestamp
        iso = moment.isoformat()
        if moment.year < 1000 or not iso.endswith("+00:00"):
            return False  # the view writes eventTime from the UTC time: the general path does
        base = f"{template.key_id}:{event.originator_version}"
        base_id = event_id(base)
        shared = len(template.recipients) > 1
        owner_copy = base_id
        stored_templates = self._stored_templates
        for index, recipient in enumerate(template.recipients):
            copy_id = base_id if index == 0 else event_id(f"{base}:{recipient}")
            if recipient == facts.account_id:
                owner_copy = copy_id
            stored = template.stored[index]
            if stored.template_id not in stored_templates:
                self._new_templates[stored.template_id] = stored
            # The record is composed when read (audit_events): no record, its template,
            # and what only this use's record says.
            rows.append(
                f"{notification_id}\t{recipient}\t{copy_id}\t{base_id if shared else NULL}\t"
                f"{iso}\t{template.copy_before}{request_id}{template.copy_after}{context_keys}\t"
                f"{NULL}\t{stored.template_id}\t{members}\n"
            )
        group = (_hour(moment), facts.arn, template.principal_arn, event_name)
        totals = rollups.get(group)
        if totals is None:
            rollups[group] = [template.caller_account, facts.account_id or "", 1, 0]
        else:
            totals[2] += 1
        key_id = event.originator_id
        use = (
            key_id,
            event_name,
            moment,
            owner_copy,
            str(get("request_id") or event.request_id or ""),
        )
        known = last_used.get(facts.arn)
        if known is None or known[2] <= moment:
            last_used[facts.arn] = use
        return True

    # ==== records =============================================================================
    def _emit(
        self,
        event: Any,
        notification_id: int,
        described: Described,
        rows: list[Row],
        rollups: dict[tuple[datetime, str, str, str], list[Any]],
    ) -> dict[str | None, str]:
        """Append the record's copies to ``rows`` and count it; return the eventID of the
        copy each account receives (None: the caller's copy)."""
        actor = described.actor or {}
        service = described.service_event
        if service:
            identity: dict[str, Any] = {
                "accountId": described.account_id,
                "invokedBy": AWS_INTERNAL,
            }
            username, caller_account = "", described.account_id
        else:
            identity, username = user_identity(actor, described.account_id)
            caller_account = identity["accountId"]
        base = f"{event.originator_id}:{event.originator_version}"
        base_id = event_id(base)
        moment = event.timestamp
        iso = moment.isoformat()  # the row's event_time, and the record's eventTime
        recipients = [caller_account]
        if described.error_code is None and not service:
            for _, resource_account, _ in described.resources:
                if resource_account and resource_account not in recipients:
                    recipients.append(resource_account)
        via = str(actor.get("via_service") or "")
        source_ip = identity.get("invokedBy") if via else actor.get("source_ip")
        user_agent = identity.get("invokedBy") if via else actor.get("user_agent")
        record: dict[str, Any] = {
            "eventVersion": EVENT_VERSION,
            "userIdentity": identity,
            "eventTime": _event_time_of(iso, moment),
            "eventSource": described.event_source,
            "eventName": described.event_name,
            "awsRegion": str(actor.get("region") or described.region),
            "sourceIPAddress": AWS_INTERNAL if service else str(source_ip or ""),
            "userAgent": AWS_INTERNAL if service else str(user_agent or "")[:MAX_USER_AGENT],
        }
        if described.error_code is not None:
            record["errorCode"] = described.error_code
            record["errorMessage"] = described.error_message or ""
        record["requestParameters"] = None if service else described.request_parameters
        record["responseElements"] = described.response_elements
        if described.additional:
            record["additionalEventData"] = described.additional
        request_id = (
            "" if service and not actor.get("request_id") else str(actor.get("request_id") or "")
        )
        if request_id:
            record["requestID"] = request_id
        record["eventID"] = ""
        record["readOnly"] = described.read_only
        record["resources"] = [
            {"accountId": account, "type": kind, "ARN": arn}
            for arn, account, kind in described.resources
        ]
        record["eventType"] = (
            "AwsServiceEvent"
            if service
            else "AwsConsoleSignIn"
            if described.event_source == SIGNIN_SOURCE
            else "AwsApiCall"
        )
        record["managementEvent"] = True
        record["recipientAccountId"] = ""
        if len(recipients) > 1:
            record["sharedEventID"] = base_id
        record["eventCategory"] = "Management"
        if described.service_details is not None:
            record["serviceEventDetails"] = described.service_details
        first = described.resources[0] if described.resources else ("", "", None)
        principal_arn = "" if service else str(actor.get("principal_arn") or "")
        copies: dict[str | None, str] = {None: base_id}
        for index, recipient in enumerate(recipients):
            copy_id = base_id if index == 0 else event_id(f"{base}:{recipient}")
            copies[recipient] = copy_id
            record["eventID"] = copy_id
            record["recipientAccountId"] = recipient
            rows.append(
                (
                    notification_id,
                    recipient,
                    copy_id,
                    base_id if len(recipients) > 1 else None,
                    iso,
                    described.event_source,
                    described.event_name,
                    described.read_only,
                    caller_account,
                    principal_arn,
                    username,
                    str(actor.get("access_key_id") or "") if not service else "",
                    record["sourceIPAddress"],
                    record["awsRegion"],
                    request_id,
                    described.error_code,
                    first[2],
                    first[0],
                    _array([arn for arn, _, _ in described.resources]),
                    _array(described.context_keys),
                    orjson.dumps(record).decode(),
                )
            )
        if not service and described.event_source == KMS_SOURCE:
            counted = [first]
            if described.count_each_resource:  # once per key (a ReEncrypt uses two)
                counted = list({r[0]: r for r in described.resources}.values())
            for key_arn, key_account, _ in counted:
                group = (_hour(moment), key_arn, principal_arn, described.event_name)
                totals = rollups.get(group)
                if totals is None:
                    rollups[group] = [
                        caller_account,
                        key_account or "",
                        1,
                        0 if described.error_code is None else 1,
                    ]
                else:
                    totals[2] += 1
                    if described.error_code is not None:
                        totals[3] += 1
        return copies

    # ==== describing each event ==================================================================
    def _describer_table(self) -> dict[type, Callable[[Any], Described | None]]:
        return {
            AuditedCall.CallRecorded: self._call_recorded,
            Key.Created: self._key_created,
            # ReplicateKey: CreateKey in the replica's Region, ReplicateKey in the primary's
            # (AWS logs both); synchronizing a replica is a service event there.
            Key.Replicated: self._key_created,
            Key.ReplicaAdded: self._replica_added,
            Key.ReplicaRemoved: lambda e: None,  # the replica's DeleteKey is the record
            Key.PrimaryRegionUpdated: self._primary_region_updated,
            Key.Synchronized: self._service_event("SynchronizeMultiRegionKey"),
            Key.Enabled: self._key_call("EnableKey"),
            Key.Disabled: self._key_call("DisableKey"),
            Key.DeletionScheduled: self._deletion_scheduled,
            Key.DeletionCancelled: self._key_call("CancelKeyDeletion", respond=True),
            Key.MaterialDestroyed: self._service_event("DeleteKey"),
            Key.DescriptionChanged: self._key_call(
                "UpdateKeyDescription", lambda e: {"description": e.description}
            ),
            Key.Tagged: self._key_call(
                "TagResource",
                lambda e: {"tags": [{"tagKey": k, "tagValue": v} for k, v in e.tags.items()]},
            ),
            Key.Untagged: self._key_call("UntagResource", lambda e: {"tagKeys": list(e.tag_keys)}),
            Key.PolicyChanged: self._key_call(
                "PutKeyPolicy",
                lambda e: {
                    "policyName": e.policy_name,
                    "policy": e.policy,
                    "bypassPolicyLockoutSafetyCheck": False,
                },
            ),
            Key.GrantCreated: self._grant_created,
            Key.GrantRetired: self._key_call("RetireGrant", lambda e: {"grantId": e.grant_id}),
            Key.GrantRevoked: self._key_call("RevokeGrant", lambda e: {"grantId": e.grant_id}),
            Key.AliasAdded: lambda e: None,  # the alias's own events are the records
            Key.AliasRemoved: lambda e: None,
            Key.RotationScheduleChanged: self._rotation_schedule,
            Key.Rotated: self._rotated,
            Key.ImportParametersIssued: self._key_call(
                "GetParametersForImport",
                lambda e: {
                    "wrappingAlgorithm": e.wrapping_algorithm,
                    "wrappingKeySpec": e.wrapping_key_spec,
                },
                respond=False,
            ),
            Key.MaterialImported: self._material_imported,
            Key.MaterialExpired: self._service_event("DeleteExpiredKeyMaterial"),
            Key.ImportedMaterialDeleted: self._key_call(
                "DeleteImportedKeyMaterial", lambda e: {"keyMaterialId": e.material_id}
            ),
            Alias.Created: self._alias_call,
            Alias.Retargeted: self._alias_call,
            Alias.Deleted: self._alias_call,
            Account.Created: lambda e: None,  # made by the operator's CLI, with no actor
            Principal.Created: lambda e: None,
            Principal.PolicyPut: self._principal_policy("Put"),
            Principal.PolicyDeleted: self._principal_policy("Delete"),
            Principal.ServiceDesignated: lambda e: None,
            Principal.TrustPolicySet: self._trust_policy_set,
            AccessKey.Created: self._access_key_created,
            AccessKey.Deactivated: self._access_key_deactivated,
            RootKeyCustody.Created: lambda e: None,
            RootKeyCustody.RotationStarted: self._root_key_rotation("started"),
            RootKeyCustody.RotationCompleted: self._root_key_rotation("completed"),
        }

    def _root_key_rotation(self, state: str) -> Callable[[Any], Described]:
        """A root-key rotation (app/usecases/custody.py): the operator's call, delivered to
        the operator's account, naming the root keys by id."""

        def describe(event: Any) -> Described:
            details: dict[str, Any] = {
                "rootKeyRotation": state,
                "fromRootKeyIds": list(event.from_key_ids),
                "toRootKeyId": event.to_key_id,
            }
            if state == "started":
                details["wrappingKeysToRewrap"] = event.wrapping_keys
            else:
                details["wrappingKeysRewrapped"] = event.rewrapped
            return Described(
                event_name="RotateRootKey",
                actor=event.actor,
                account_id=event.account_id,
                region=event.region,
                request_parameters=None,
                resources=[],
                read_only=False,
                event_source=KEYLEDGER_SOURCE,
                service_event=True,
                service_details=details,
            )

        return describe

    def _generic(self, event: Any) -> Described | None:
        """An event this version does not know: recorded under its own name, never lost."""
        if not isinstance(event, Key.Event):
            return None
        facts = self._key(event)
        return self._on_key(event, facts, type(event).__name__, {"keyId": facts.arn})

    def _on_key(
        self,
        event: Any,
        facts: KeyFacts,
        event_name: str,
        parameters: dict[str, Any] | None,
        response: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Described:
        return Described(
            event_name=event_name,
            actor=getattr(event, "actor", None) or {},
            account_id=facts.account_id,
            region=facts.region,
            request_parameters=parameters,
            resources=[(facts.arn, facts.account_id, KEY_RESOURCE)],
            read_only=is_read_only(event_name),
            response_elements=response,
            **extra,
        )

    def _key_call(
        self,
        event_name: str,
        parameters: Callable[[Any], dict[str, Any]] | None = None,
        *,
        respond: bool = True,
    ) -> Callable[[Any], Described]:
        def describe(event: Any) -> Described:
            facts = self._key(event)
            if _is_service_actor(event.actor):
                return self._service(event, facts, event_name)
            given = {"keyId": facts.arn, **(parameters(event) if parameters else {})}
            response = {"keyId": facts.arn} if respond else None
            return self._on_key(event, facts, event_name, given, response)

        return describe

    def _service(self, event: Any, facts: KeyFacts, event_name: str, **extra: Any) -> Described:
        return Described(
            event_name=event_name,
            actor={},
            account_id=facts.account_id,
            region=facts.region,
            request_parameters=None,
            resources=[(facts.arn, facts.account_id, KEY_RESOURCE)],
            read_only=False,
            service_event=True,
            **extra,
        )

    def _service_event(self, event_name: str) -> Callable[[Any], Described]:
        def describe(event: Any) -> Described:
            facts = self._key(event)
            details: dict[str, Any] = {"keyId": str(event.originator_id)}
            material_id = getattr(event, "material_id", None)
            if material_id:
                details["keyMaterialId"] = material_id
            return self._service(event, facts, event_name, service_details=details)

        return describe

    def _call_recorded(self, event: AuditedCall.CallRecorded) -> Described:
        parameters = event.request_parameters
        context_keys: list[str] = []
        if parameters:
            for member in CONTEXT_MEMBERS:
                found = parameters.get(member)
                if isinstance(found, dict):
                    context_keys.extend(found)
        actor = event.actor or {}
        return Described(
            event_name=event.event_name,
            actor=actor,
            account_id=str(actor.get("account_id") or ""),
            region=str(actor.get("region") or ""),
            request_parameters=parameters,
            resources=[
                (r["arn"], r.get("account_id", ""), r.get("type") or KEY_RESOURCE)
                for r in event.resources
            ],  # a key, unless the call names a type
            read_only=event.read_only,
            event_source=event.event_source,
            # (records made before these existed have neither)
            response_elements=getattr(event, "response_elements", None),
            additional=getattr(event, "additional_event_data", None),
            error_code=event.error_code,
            error_message=event.error_message,
            context_keys=context_keys,
        )

    def _key_created(self, event: Key.Created) -> Described:
        facts = KeyFacts(
            event.arn,
            event.account_id,
            event.region,
            event.key_spec,
            event.key_manager,
            store=event.store,
        )
        if event.key_manager == AWS_MANAGED:  # made by KMS on first use of alias/aws/...
            return self._service(
                event, facts, "CreateKey", service_details={"keyId": str(event.originator_id)}
            )
        parameters: dict[str, Any] = {
            "description": event.description,
            "keySpec": event.key_spec,
            "customerMasterKeySpec": event.key_spec,
            "keyUsage": event.key_usage,
            "origin": event.origin,
            "bypassPolicyLockoutSafetyCheck": False,
            "multiRegion": event.multi_region is not None,
        }
        store = event.store
        if store is not None:
            parameters["customKeyStoreId"] = store["custom_key_store_id"]
            if store.get("xks_key_id"):
                parameters["xksKeyId"] = store["xks_key_id"]
        partition = event.arn.split(":", 2)[1]
        if event.policy != default_key_policy(partition, event.account_id):
            parameters["policy"] = event.policy
        if event.tags:
            parameters["tags"] = [{"tagKey": k, "tagValue": v} for k, v in event.tags.items()]
        algorithms = key_algorithms(event.key_spec, event.key_usage)
        metadata: dict[str, Any] = {
            "AWSAccountId": event.account_id,
            "keyId": event.arn.rsplit("/", 1)[1],  # a multi-Region key's is its mrk- id
            "arn": event.arn,
            "creationDate": event_time(event.timestamp),
            "enabled": event.material is not None,
            "description": event.description,
            "keyUsage": event.key_usage,
            "keyState": "Enabled" if event.material is not None else "PendingImport",
            "origin": event.origin,
            **(store_metadata(store) if store is not None else {}),
            "keyManager": event.key_manager,
            "customerMasterKeySpec": event.key_spec,
            "keySpec": event.key_spec,
        }
        for name, values in (
            ("encryptionAlgorithms", algorithms.encryption),
            ("signingAlgorithms", algorithms.signing),
            ("macAlgorithms", algorithms.mac),
            ("keyAgreementAlgorithms", algorithms.key_agreement),
        ):
            if values:
                metadata[name] = list(values)
        metadata["multiRegion"] = event.multi_region is not None
        if store is not None and store.get("xks_key_id"):
            metadata["xksKeyConfiguration"] = {"id": store["xks_key_id"]}
        return self._on_key(event, facts, "CreateKey", parameters, {"keyMetadata": metadata})

    def _deletion_scheduled(self, event: Key.DeletionScheduled) -> Described:
        facts = self._key(event)
        parameters = {"keyId": facts.arn, "pendingWindowInDays": event.pending_window_days}
        response: dict[str, Any] = {"keyId": facts.arn}
        if event.awaiting_replicas:
            response["keyState"] = "PendingReplicaDeletion"
        else:
            response["deletionDate"] = event_time(event.deletion_date)
            response["keyState"] = "PendingDeletion"
        response["pendingWindowInDays"] = event.pending_window_days
        return self._on_key(event, facts, "ScheduleKeyDeletion", parameters, response)

    def _replica_added(self, event: Key.ReplicaAdded) -> Described | None:
        """ReplicateKey's record in the primary's Region (its CreateKey record is the
        replica's Replicated event)."""
        if not event.by_call:
            return None
        facts = self._key(event)
        parameters = {"keyId": facts.arn, "replicaRegion": event.region}
        return self._on_key(
            event, facts, "ReplicateKey", parameters, {"replicaKeyArn": event.replica_arn}
        )

    def _primary_region_updated(self, event: Key.PrimaryRegionUpdated) -> Described | None:
        """UpdatePrimaryRegion's record, on the old primary and the new one."""
        facts = self._key(event)
        if facts.region not in (event.primary_region, event.previous_primary_region):
            return None
        old_primary = facts.arn.replace(
            f":kms:{facts.region}:", f":kms:{event.previous_primary_region}:", 1
        )
        parameters = {"keyId": old_primary, "primaryRegion": event.primary_region}
        return self._on_key(event, facts, "UpdatePrimaryRegion", parameters, None)

    def _grant_created(self, event: Key.GrantCreated) -> Described:
        facts = self._key(event)
        grant = event.grant
        parameters: dict[str, Any] = {
            "keyId": facts.arn,
            "granteePrincipal": grant["grantee_principal"],
            "operations": list(grant["operations"]),
        }
        if grant.get("retiring_principal"):
            parameters["retiringPrincipal"] = grant["retiring_principal"]
        if grant.get("constraints"):
            parameters["constraints"] = {
                name[:1].lower() + name[1:]: value for name, value in grant["constraints"].items()
            }
        if grant.get("name"):
            parameters["name"] = grant["name"]
        response = {"grantId": grant["grant_id"], "keyId": facts.arn}
        return self._on_key(event, facts, "CreateGrant", parameters, response)

    def _rotation_schedule(self, event: Key.RotationScheduleChanged) -> Described:
        facts = self._key(event)
        if not event.rotation_enabled:
            return self._on_key(
                event, facts, "DisableKeyRotation", {"keyId": facts.arn}, {"keyId": facts.arn}
            )
        parameters = {"keyId": facts.arn, "rotationPeriodInDays": event.rotation_period_days}
        return self._on_key(event, facts, "EnableKeyRotation", parameters, {"keyId": facts.arn})

    def _rotated(self, event: Key.Rotated) -> Described:
        facts = self._key(event)
        additional = {"keyMaterialId": event.material.material_id}
        if _is_service_actor(event.actor) or event.material.rotation_type == "AUTOMATIC":
            return self._service(
                event,
                facts,
                "RotateKey",
                service_details={"keyId": str(event.originator_id)},
                additional=additional,
            )
        return self._on_key(
            event,
            facts,
            "RotateKeyOnDemand",
            {"keyId": facts.arn},
            {"keyId": facts.arn},
            additional=additional,
        )

    def _material_imported(self, event: Key.MaterialImported) -> Described:
        facts = self._key(event)
        parameters: dict[str, Any] = {
            "keyId": facts.arn,
            "expirationModel": event.expiration_model,
            "importType": event.import_type,
        }
        if event.valid_to is not None:
            parameters["validTo"] = event_time(event.valid_to)
        if event.description:
            parameters["keyMaterialDescription"] = event.description
        return self._on_key(
            event,
            facts,
            "ImportKeyMaterial",
            parameters,
            {"keyId": facts.arn},
            additional={"keyMaterialId": event.material.material_id},
        )

    def _alias_call(self, event: Any) -> Described | None:
        kind = type(event)
        if kind is Alias.Created:
            alias = AliasFacts(
                event.alias_name, event.account_id, event.region, event.target_key_id
            )
            event_name, target = "CreateAlias", event.target_key_id
        else:
            found = self._aliases.get(event.originator_id)
            if found is None:
                return None
            alias = found
            if kind is Alias.Deleted:
                event_name, target = "DeleteAlias", alias.target_key_id
            else:
                event_name = "UpdateAlias" if alias.target_key_id else "CreateAlias"
                target = event.target_key_id
        actor = event.actor or {}
        if _is_service_actor(actor):
            return None  # aliases deleted with their key: the DeleteKey record covers them
        partition = str(actor.get("principal_arn") or "arn:aws:").split(":", 2)[1] or "aws"
        target_facts = self._keys.get(uuid.UUID(target)) if target else None
        key_arn = (
            target_facts.arn
            if target_facts is not None
            else f"arn:{partition}:kms:{alias.region}:{alias.account_id}:key/{target}"
        )
        parameters: dict[str, Any] = {"aliasName": alias.alias_name}
        if event_name != "DeleteAlias":
            parameters["targetKeyId"] = target
        service = alias.alias_name.startswith("alias/aws/")
        described = Described(
            event_name=event_name,
            actor={} if service else actor,
            account_id=alias.account_id,
            region=alias.region,
            request_parameters=parameters,
            resources=[(key_arn, alias.account_id, KEY_RESOURCE)] if target else [],
            read_only=False,
            service_event=service,
        )
        return described

    def _principal_policy(self, verb: str) -> Callable[[Any], Described | None]:
        def describe(event: Any) -> Described | None:
            found = self._principals.get(event.originator_id)
            if found is None:
                return None
            arn, account, principal_type = found
            noun = "Role" if principal_type == "role" else "User"
            name = arn.rsplit("/", 1)[-1]
            parameters: dict[str, Any] = {
                f"{noun.lower()}Name": name,
                "policyName": event.policy_name,
            }
            if verb == "Put":
                parameters["policyDocument"] = event.policy
            return Described(
                event_name=f"{verb}{noun}Policy",
                actor=event.actor or {},
                account_id=account,
                region="us-east-1",
                request_parameters=parameters,
                resources=[(arn, account, f"AWS::IAM::{noun}")],
                read_only=False,
                event_source=IAM_SOURCE,
            )

        return describe

    def _trust_policy_set(self, event: Any) -> Described | None:
        """A role's trust policy set: IAM's UpdateAssumeRolePolicy, as CloudTrail logs it."""
        found = self._principals.get(event.originator_id)
        if found is None:
            return None
        arn, account, _ = found
        return Described(
            event_name="UpdateAssumeRolePolicy",
            actor=event.actor or {},
            account_id=account,
            region="us-east-1",
            request_parameters={
                "roleName": arn.rsplit("/", 1)[-1],
                "policyDocument": event.policy,
            },
            resources=[(arn, account, "AWS::IAM::Role")],
            read_only=False,
            event_source=IAM_SOURCE,
        )

    def _access_key_created(self, event: AccessKey.Created) -> Described:
        name = event.principal_arn.rsplit("/", 1)[-1]
        return Described(
            event_name="CreateAccessKey",
            actor=event.actor,
            account_id=event.account_id,
            region="us-east-1",
            request_parameters={"userName": name},
            resources=[(event.principal_arn, event.account_id, "AWS::IAM::AccessKey")],
            read_only=False,
            event_source=IAM_SOURCE,
            response_elements={
                "accessKey": {
                    "accessKeyId": event.access_key_id,
                    "status": "Active",
                    "userName": name,
                }
            },
        )

    def _access_key_deactivated(self, event: AccessKey.Deactivated) -> Described | None:
        found = self._access_keys.get(event.originator_id)
        if found is None:
            return None
        access_key_id, principal_arn, account = found
        return Described(
            event_name="UpdateAccessKey",
            actor=event.actor,
            account_id=account,
            region="us-east-1",
            request_parameters={
                "accessKeyId": access_key_id,
                "status": "Inactive",
                "userName": principal_arn.rsplit("/", 1)[-1],
            },
            resources=[(principal_arn, account, "AWS::IAM::AccessKey")],
            read_only=False,
            event_source=IAM_SOURCE,
        )
