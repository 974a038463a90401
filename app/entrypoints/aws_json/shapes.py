"""Request validation against AWS's own service model (botocore's JSON model).

botocore validates only types, required members and minimums on the client; a server
must also enforce maximums, patterns and enums, and answer in AWS's words. Reading
the model AWS publishes keeps every operation's constraints exact without copying them.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

import orjson
from botocore.model import Shape

from app.aws.model import enum_as_listed, operation_model
from domain.errors import SerializationError, ValidationError

# What each JSON type check of RequestParser expects, for a null where a value must be.
_EXPECTED = {
    "structure": "an object",
    "map": "an object",
    "list": "a list",
    "string": "a string",
    "blob": "a base64 string",
    "integer": "an integer",
    "long": "an integer",
    "boolean": "a boolean",
    "timestamp": "a timestamp (epoch seconds)",
}


def _path(parent: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


class _Rule:
    """One shape's constraints, read from the botocore model once (its properties and
    metadata lookups cost more than the checks): what RequestParser checks a value by."""

    __slots__ = (
        "enum",
        "high",
        "item",
        "key",
        "kind",
        "low",
        "members",
        "pattern",
        "pattern_text",
        "required",
        "shape",
        "value",
    )

    def __init__(self, shape: Shape) -> None:
        metadata = shape.metadata
        self.shape = shape
        self.kind: str = shape.type_name
        self.low: int | None = metadata.get("min")
        self.high: int | None = metadata.get("max")
        self.pattern_text: str | None = metadata.get("pattern")
        self.pattern = _compiled(self.pattern_text) if self.pattern_text else None
        enum = getattr(shape, "enum", None)
        self.enum: frozenset[str] | None = frozenset(enum) if enum else None
        # Filled by _rule (a structure's members may name the structure again).
        self.members: dict[str, tuple[_Rule, str]] = {}
        self.required: tuple[str, ...] = ()
        self.item: _Rule | None = None
        self.key: _Rule | None = None
        self.value: _Rule | None = None


# By service and shape name: the models' shapes are a fixed set, so this stays small.
_RULES: dict[tuple[str, str], _Rule] = {}


def _compiled(pattern: str) -> re.Pattern[str] | None:
    r"""The model's pattern as a Python expression; None for one Python cannot read (Java's
    ``\p{L}`` classes, in STS's tag shapes): such a member goes unchecked, not refused."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _rule(service: str, shape: Shape) -> _Rule:
    """The shape's rule, built on first use (the model's shapes are few and fixed)."""
    cache_key = (service, shape.name)
    found = _RULES.get(cache_key)
    if found is not None:
        return found
    rule = _RULES[cache_key] = _Rule(shape)
    try:
        _fill(service, shape, rule)
    except BaseException:
        del _RULES[cache_key]  # never a half-built rule
        raise
    return rule


def _fill(service: str, shape: Shape, rule: _Rule) -> None:
    if rule.kind == "structure":
        members = shape.members  # type: ignore[attr-defined]
        rule.required = tuple(shape.required_members)  # type: ignore[attr-defined]
        rule.members = {
            name: (_rule(service, member), name[:1].lower() + name[1:])
            for name, member in members.items()
        }
    elif rule.kind == "list":
        rule.item = _rule(service, shape.member)  # type: ignore[attr-defined]
    elif rule.kind == "map":
        rule.key = _rule(service, shape.key)  # type: ignore[attr-defined]
        rule.value = _rule(service, shape.value)  # type: ignore[attr-defined]


class RequestParser:
    """Decodes one request body (blobs to bytes) and collects constraint violations."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.violations: list[str] = []

    def parse(self, shape: Shape, body: Any) -> dict[str, Any]:
        return self.parse_with(_rule(self.service, shape), body)

    def parse_with(self, rule: _Rule, body: Any) -> dict[str, Any]:
        """Parse ``body`` against a structure's rule (``_rule``)."""
        if not isinstance(body, dict):
            raise SerializationError("Start of structure or map found where not expected.")
        value = self._structure(rule, body, "")
        if self.violations:
            count = len(self.violations)
            noun = "error" if count == 1 else "errors"
            raise ValidationError(
                f"{count} validation {noun} detected: " + "; ".join(self.violations)
            )
        return value

    def _violation(self, rule: _Rule, value: Any, path: str, constraint: str) -> None:
        if rule.shape.metadata.get("sensitive") or value is None:
            shown = f"Value at '{path}'" if value is not None else f"Value null at '{path}'"
        else:
            shown = f"Value '{_show(value)}' at '{path}'"
        self.violations.append(f"{shown} failed to satisfy constraint: Member must {constraint}")

    def _present(self, rule: _Rule, value: Any, path: str) -> Any:
        """A value that must be there: a list's item or a map's value. KMS's lists and
        maps are dense (no sparse trait in the model), so null is the wrong JSON type."""
        kind = rule.kind
        if value is None:
            raise SerializationError(f"Expected {_EXPECTED.get(kind, 'a value')} at '{path}'.")
        if kind == "string":
            if not isinstance(value, str):
                raise SerializationError(f"Expected a string at '{path}'.")
            self._string(rule, value, path)
            return value
        if kind == "blob":
            return self._blob(rule, value, path)
        if kind == "structure":
            if not isinstance(value, dict):
                raise SerializationError(f"Expected an object at '{path}'.")
            return self._structure(rule, value, path)
        if kind == "list":
            if not isinstance(value, list):
                raise SerializationError(f"Expected a list at '{path}'.")
            self._length(rule, value, len(value), path)
            item = rule.item
            assert item is not None
            return [
                self._present(item, one, f"{path}.{i}.member") for i, one in enumerate(value, 1)
            ]
        if kind == "map":
            if not isinstance(value, dict):
                raise SerializationError(f"Expected an object at '{path}'.")
            self._length(rule, value, len(value), path)
            key_rule, value_rule = rule.key, rule.value
            assert key_rule is not None and value_rule is not None
            return {
                self._present(key_rule, k, f"{path}.key"): self._present(
                    value_rule, v, f"{path}.value"
                )
                for k, v in value.items()
            }
        if kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SerializationError(f"Expected an integer at '{path}'.")
            self._range(rule, value, path)
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise SerializationError(f"Expected a boolean at '{path}'.")
            return value
        if kind == "timestamp":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SerializationError(f"Expected a timestamp (epoch seconds) at '{path}'.")
            return value
        return value

    def _structure(self, rule: _Rule, body: dict[str, Any], path: str) -> dict[str, Any]:
        members = rule.members
        parsed: dict[str, Any] = {}
        for name in rule.required:
            if body.get(name) is None:
                self._violation(members[name][0], None, _path(path, name), "not be null")
        for name, raw in body.items():
            member = members.get(name)
            if member is None:
                continue  # AWS ignores members it does not know
            if raw is None:  # null is the member left out (AWS ignores it)
                parsed[name] = None
                continue
            member_rule, json_name = member
            parsed[name] = self._present(
                member_rule, raw, f"{path}.{json_name}" if path else json_name
            )
        return parsed

    def _length(self, rule: _Rule, value: Any, length: int, path: str) -> None:
        low, high = rule.low, rule.high
        if high is not None and length > high:
            self._violation(rule, value, path, f"have length less than or equal to {high}")
        elif low is not None and length < low:
            self._violation(rule, value, path, f"have length greater than or equal to {low}")

    def _range(self, rule: _Rule, value: int, path: str) -> None:
        low, high = rule.low, rule.high
        if high is not None and value > high:
            self._violation(rule, value, path, f"have value less than or equal to {high}")
        elif low is not None and value < low:
            self._violation(rule, value, path, f"have value greater than or equal to {low}")

    def _string(self, rule: _Rule, value: str, path: str) -> None:
        if rule.enum is not None and value not in rule.enum:
            allowed = ", ".join(enum_as_listed(self.service, rule.shape))
            self._violation(rule, value, path, f"satisfy enum value set: [{allowed}]")
            return
        self._length(rule, value, len(value), path)
        # AWS matches the whole value: '[\w]+' refuses 'a-b', as it does on AWS.
        if rule.pattern is not None and not rule.pattern.fullmatch(value):
            constraint = f"satisfy regular expression pattern: {rule.pattern_text}"
            self._violation(rule, value, path, constraint)

    def _blob(self, rule: _Rule, value: Any, path: str) -> bytes:
        if not isinstance(value, str):
            raise SerializationError(f"Expected a base64 string at '{path}'.")
        try:  # base64.b64decode(value, validate=True) without its wrapper's calls
            decoded = binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            raise SerializationError(f"Value at '{path}' is not valid base64.") from None
        self._length(rule, value, len(decoded), path)
        return decoded


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return str(value)
    return str(value)


def parse_request(service: str, operation: str, body: bytes) -> dict[str, Any]:
    """Parse and validate a request body for ``operation``; raise AWS's errors."""
    rule = _input_rule(service, operation)
    if not body.strip():
        document: Any = {}
    else:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SerializationError("The request body is not valid JSON.") from None
    if rule is None:
        return {}
    return RequestParser(service).parse_with(rule, document)


# The input rule of each operation looked up once (the model's operations are a fixed set;
# an unknown one raises, and is not kept).
_INPUT_RULES: dict[tuple[str, str], _Rule | None] = {}


def _input_rule(service: str, operation: str) -> _Rule | None:
    """The rule of ``operation``'s input shape (None: it takes none); UnknownOperationError
    for an operation the model does not have."""
    cache_key = (service, operation)
    try:
        return _INPUT_RULES[cache_key]
    except KeyError:
        pass
    shape = operation_model(service, operation).input_shape
    rule = _INPUT_RULES[cache_key] = None if shape is None else _rule(service, shape)
    return rule
