"""Request validation against AWS's own service model (botocore's JSON model).

botocore validates only types, required members and minimums on the client; a server
must also enforce maximums, patterns and enums, and answer in AWS's words. Reading
the model AWS publishes keeps every operation's constraints exact without copying them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from botocore.model import Shape

from app.aws.model import enum_as_listed, operation_model
from domain.errors import SerializationError, ValidationError


def _pattern(expression: str) -> re.Pattern[str]:
    return re.compile(expression)


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


class RequestParser:
    """Decodes one request body (blobs to bytes) and collects constraint violations."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.violations: list[str] = []

    def parse(self, shape: Shape, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SerializationError("Start of structure or map found where not expected.")
        value = self._structure(shape, body, "")
        if self.violations:
            count = len(self.violations)
            noun = "error" if count == 1 else "errors"
            raise ValidationError(
                f"{count} validation {noun} detected: " + "; ".join(self.violations)
            )
        return value

    def _violation(self, shape: Shape, value: Any, path: str, rule: str) -> None:
        if shape.metadata.get("sensitive") or value is None:
            shown = f"Value at '{path}'" if value is not None else f"Value null at '{path}'"
        else:
            shown = f"Value '{_show(value)}' at '{path}'"
        self.violations.append(f"{shown} failed to satisfy constraint: Member must {rule}")

    def _value(self, shape: Shape, value: Any, path: str) -> Any:
        """A structure's member: null is the member left out (AWS ignores it)."""
        if value is None:
            return None
        return self._present(shape, value, path)

    def _present(self, shape: Shape, value: Any, path: str) -> Any:
        """A value that must be there: a list's item or a map's value. KMS's lists and
        maps are dense (no sparse trait in the model), so null is the wrong JSON type."""
        kind = shape.type_name
        if value is None:
            raise SerializationError(f"Expected {_EXPECTED.get(kind, 'a value')} at '{path}'.")
        if kind == "structure":
            if not isinstance(value, dict):
                raise SerializationError(f"Expected an object at '{path}'.")
            return self._structure(shape, value, path)
        if kind == "list":
            if not isinstance(value, list):
                raise SerializationError(f"Expected a list at '{path}'.")
            self._length(shape, value, len(value), path)
            member = shape.member  # type: ignore[attr-defined]
            return [
                self._present(member, item, f"{path}.{i}.member") for i, item in enumerate(value, 1)
            ]
        if kind == "map":
            if not isinstance(value, dict):
                raise SerializationError(f"Expected an object at '{path}'.")
            self._length(shape, value, len(value), path)
            key_shape, value_shape = shape.key, shape.value  # type: ignore[attr-defined]
            return {
                self._present(key_shape, k, f"{path}.key"): self._present(
                    value_shape, v, f"{path}.value"
                )
                for k, v in value.items()
            }
        if kind == "string":
            if not isinstance(value, str):
                raise SerializationError(f"Expected a string at '{path}'.")
            self._string(shape, value, path)
            return value
        if kind == "blob":
            return self._blob(shape, value, path)
        if kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SerializationError(f"Expected an integer at '{path}'.")
            self._range(shape, value, path)
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

    def _structure(self, shape: Shape, body: dict[str, Any], path: str) -> dict[str, Any]:
        members = shape.members  # type: ignore[attr-defined]
        parsed: dict[str, Any] = {}
        for name in shape.required_members:  # type: ignore[attr-defined]
            if body.get(name) is None:
                self._violation(members[name], None, _path(path, name), "not be null")
        for name, raw in body.items():
            member = members.get(name)
            if member is None:
                continue  # AWS ignores members it does not know
            parsed[name] = self._value(member, raw, _path(path, name))
        return parsed

    def _length(self, shape: Shape, value: Any, length: int, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if high is not None and length > high:
            self._violation(shape, value, path, f"have length less than or equal to {high}")
        elif low is not None and length < low:
            self._violation(shape, value, path, f"have length greater than or equal to {low}")

    def _range(self, shape: Shape, value: int, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if high is not None and value > high:
            self._violation(shape, value, path, f"have value less than or equal to {high}")
        elif low is not None and value < low:
            self._violation(shape, value, path, f"have value greater than or equal to {low}")

    def _string(self, shape: Shape, value: str, path: str) -> None:
        enum = shape.enum  # type: ignore[attr-defined]
        if enum and value not in enum:
            allowed = ", ".join(enum_as_listed(self.service, shape))
            self._violation(shape, value, path, f"satisfy enum value set: [{allowed}]")
            return
        self._length(shape, value, len(value), path)
        pattern = shape.metadata.get("pattern")
        # AWS matches the whole value: '[\w]+' refuses 'a-b', as it does on AWS.
        if pattern and not _pattern(pattern).fullmatch(value):
            rule = f"satisfy regular expression pattern: {pattern}"
            self._violation(shape, value, path, rule)

    def _blob(self, shape: Shape, value: Any, path: str) -> bytes:
        if not isinstance(value, str):
            raise SerializationError(f"Expected a base64 string at '{path}'.")
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SerializationError(f"Value at '{path}' is not valid base64.") from None
        self._length(shape, value, len(decoded), path)
        return decoded


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return str(value)
    return str(value)


def parse_request(service: str, operation: str, body: bytes) -> dict[str, Any]:
    """Parse and validate a request body for ``operation``; raise AWS's errors."""
    import orjson

    model = operation_model(service, operation)
    if not body.strip():
        document: Any = {}
    else:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SerializationError("The request body is not valid JSON.") from None
    shape = model.input_shape
    if shape is None:
        return {}
    return RequestParser(service).parse(shape, document)
