"""Requests from botocore's model of AWS KMS: member paths, valid values, wire values.

A member path names one leaf of an operation's input, step by step: a structure member's
name, ``[]`` for a list's item, ``{key}`` / ``{value}`` for a map's key / value. `Requests`
builds a valid-ish request for any operation (its required members, naming the
fixtures) and puts a given value at any path, creating the containers on the way with
their own required members.
"""

from __future__ import annotations

import base64
import datetime
import re
from functools import cache
from typing import Any

from botocore.model import OperationModel, Shape

from tools.chaos.clients import kms_model
from tools.chaos.fixtures import Fixtures

ITEM = "[]"
MAP_KEY = "{key}"
MAP_VALUE = "{value}"
MAX_DEPTH = 6
MemberPath = tuple[str, ...]

KEY_MEMBERS = frozenset({"KeyId", "TargetKeyId", "DestinationKeyId", "SourceKeyId"})
CONTEXT_MEMBERS = frozenset(
    {
        "EncryptionContext",
        "SourceEncryptionContext",
        "DestinationEncryptionContext",
        "EncryptionContextEquals",
        "EncryptionContextSubset",
    }
)
PRINCIPAL_MEMBERS = frozenset({"GranteePrincipal", "RetiringPrincipal"})
# Members AWS does not mark required but without which the call cannot succeed.
NEEDED: dict[str, tuple[str, ...]] = {
    "GenerateDataKey": ("KeySpec",),
    "GenerateDataKeyWithoutPlaintext": ("KeySpec",),
    "GenerateRandom": ("NumberOfBytes",),
}
# Chosen for the fixtures' keys (the model allows others the keys do not support).
ENUM_CHOICES: dict[str, str] = {
    "KeyPairSpec": "ECC_NIST_P256",
    "SigningAlgorithm": "RSASSA_PSS_SHA_256",
    "MacAlgorithm": "HMAC_SHA_256",
    "KeyAgreementAlgorithm": "ECDH",
    "MessageType": "RAW",
    "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
    "WrappingKeySpec": "RSA_2048",
    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
}
NUMBERS: dict[str, int] = {
    "NumberOfBytes": 32,
    "PendingWindowInDays": 7,
    "RotationPeriodInDays": 365,
    "Limit": 10,
}


def operation(name: str) -> OperationModel:
    return kms_model().operation_model(name)


def members_of(shape: Shape) -> dict[str, Shape]:
    return dict(getattr(shape, "members", {}))


def required_of(shape: Shape) -> list[str]:
    return list(getattr(shape, "required_members", []))


def string_paths(shape: Shape | None, depth: int = 0) -> list[MemberPath]:
    """Every string leaf under ``shape`` (enums included), as member paths."""
    if shape is None or depth > MAX_DEPTH:
        return []
    kind = shape.type_name
    if kind == "string":
        return [()]
    found: list[MemberPath] = []
    if kind == "structure":
        for name, member in members_of(shape).items():
            found += [(name, *rest) for rest in string_paths(member, depth + 1)]
    elif kind == "list":
        member = shape.member  # type: ignore[attr-defined]
        found += [(ITEM, *rest) for rest in string_paths(member, depth + 1)]
    elif kind == "map":
        found += [(MAP_KEY, *rest) for rest in string_paths(shape.key, depth + 1)]  # type: ignore[attr-defined]
        found += [(MAP_VALUE, *rest) for rest in string_paths(shape.value, depth + 1)]  # type: ignore[attr-defined]
    return found


def shape_at(shape: Shape, path: MemberPath) -> Shape:
    for step in path:
        if step == ITEM:
            shape = shape.member  # type: ignore[attr-defined]
        elif step == MAP_KEY:
            shape = shape.key  # type: ignore[attr-defined]
        elif step == MAP_VALUE:
            shape = shape.value  # type: ignore[attr-defined]
        else:
            shape = members_of(shape)[step]
    return shape


def show_path(path: MemberPath) -> str:
    return ".".join(path) or "(body)"


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def plain_string(shape: Shape) -> str:
    """A short string the shape's length and pattern accept (as far as simple tries go)."""
    enum = getattr(shape, "enum", None)
    if enum:
        return str(enum[0])
    low = int(shape.metadata.get("min", 0))
    high = int(shape.metadata.get("max", 64))
    pattern = shape.metadata.get("pattern")
    for candidate in ("chaos", "chaos-1", "chaos_1", "a", "1", "A1"):
        text = (candidate * (low // len(candidate) + 1))[:high]
        if len(text) >= low and (not pattern or _regex(pattern).fullmatch(text)):
            return text
    return "chaos"[:high] or "c"


def to_wire(shape: Shape, value: Any) -> Any:
    """A Python-level request value as JSON puts it on the wire (blobs in base64)."""
    kind = shape.type_name
    if value is None:
        return None
    if kind == "blob" and isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if kind == "timestamp" and isinstance(value, datetime.datetime):
        return value.timestamp()
    if kind == "structure" and isinstance(value, dict):
        members = members_of(shape)
        return {k: to_wire(members[k], v) if k in members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [to_wire(shape.member, v) for v in value]  # type: ignore[attr-defined]
    if kind == "map" and isinstance(value, dict):
        return {k: to_wire(shape.value, v) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


class Requests:
    """Valid-ish requests for every KMS operation, naming the fixtures."""

    def __init__(self, fixtures: Fixtures) -> None:
        self.fixtures = fixtures

    def base(self, op: str) -> dict[str, Any]:
        """The operation's required members (and the few it needs in practice)."""
        shape = operation(op).input_shape
        if shape is None:
            return {}
        request = self.fill(op, shape)
        members = members_of(shape)
        for name in NEEDED.get(op, ()):
            request[name] = self.value(op, name, members[name])
        return request

    def fill(self, op: str, shape: Shape) -> dict[str, Any]:
        members = members_of(shape)
        return {name: self.value(op, name, members[name]) for name in required_of(shape)}

    def value(self, op: str, name: str, shape: Shape) -> Any:
        """A valid value for member ``name`` of shape ``shape`` in operation ``op``."""
        f = self.fixtures
        if name in KEY_MEMBERS:
            return f.symmetric if name == "SourceKeyId" else f.key_for(op)
        if name == "AliasName":
            return f.fresh_alias() if op == "CreateAlias" else f.alias
        if name == "GrantId":
            return f.grant_id
        if name == "GrantToken":
            return f.grant_token
        if name == "GrantTokens":
            return [f.grant_token]
        if name in ("CiphertextBlob", "SourceCiphertextBlob"):
            return f.ciphertext
        if name == "Policy":
            return f.policy
        if name == "PolicyName":
            return "default"
        if name in PRINCIPAL_MEMBERS:
            return f.admin_arn
        if name == "PublicKey":
            return f.peer_public_key
        if name == "Operations":
            return ["Encrypt", "Decrypt"]
        if name == "Tags":
            return [{"TagKey": "chaos", "TagValue": "value"}]
        if name == "TagKeys":
            return ["chaos"]
        if name == "Name" and op == "CreateGrant":
            return "chaos-grant"
        if name in CONTEXT_MEMBERS:
            return {"purpose": "chaos"}
        if name == "KeySpec":
            return "AES_256" if op.startswith("GenerateDataKey") else "SYMMETRIC_DEFAULT"
        if name in ENUM_CHOICES:
            return ENUM_CHOICES[name]
        if name in NUMBERS:
            return NUMBERS[name]
        if name in ("Plaintext", "Message"):
            return b"chaos"
        return self.generic(op, shape)

    def generic(self, op: str, shape: Shape) -> Any:
        kind = shape.type_name
        low = shape.metadata.get("min")
        high = shape.metadata.get("max")
        if kind == "string":
            return plain_string(shape)
        if kind == "blob":
            return b"chaos" * max(1, int(low or 1) // 5 + 1)
        if kind in ("integer", "long"):
            value = 1
            if low is not None:
                value = max(value, int(low))
            if high is not None:
                value = min(value, int(high))
            return value
        if kind == "boolean":
            return False
        if kind == "timestamp":
            return datetime.datetime.now(datetime.UTC)
        if kind == "list":
            member = shape.member  # type: ignore[attr-defined]
            return [self.value(op, member.name, member)]
        if kind == "map":
            return {"chaos": self.generic(op, shape.value)}  # type: ignore[attr-defined]
        if kind == "structure":
            return self.fill(op, shape)
        return None

    def with_value(self, op: str, path: MemberPath, value: Any) -> dict[str, Any]:
        """The operation's base request with ``value`` at ``path``."""
        shape = operation(op).input_shape
        request = self.base(op)
        if shape is None or not path:
            return request
        built = self._build(op, shape, path, value, "")
        assert isinstance(built, dict)
        request[path[0]] = built[path[0]]
        return request

    def _build(self, op: str, shape: Shape, path: MemberPath, value: Any, name: str) -> Any:
        if not path:
            return value
        step, rest = path[0], path[1:]
        kind = shape.type_name
        if kind == "structure":
            container = self.fill(op, shape)
            member = members_of(shape)[step]
            container[step] = self._build(op, member, rest, value, step)
            return container
        if kind == "list":
            return [self._build(op, shape.member, rest, value, name)]  # type: ignore[attr-defined]
        if kind == "map":
            if step == MAP_KEY:
                key = self._build(op, shape.key, rest, value, name)  # type: ignore[attr-defined]
                return {key: self.generic(op, shape.value)}  # type: ignore[attr-defined]
            return {"chaos": self._build(op, shape.value, rest, value, name)}  # type: ignore[attr-defined]
        return value
