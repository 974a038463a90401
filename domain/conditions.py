"""IAM condition operators, as AWS evaluates them against a request context.

A condition block is ``{"<operator>": {"<key>": <value or values>}}``. Operators may carry a
set qualifier (``ForAnyValue:`` / ``ForAllValues:``) and an ``IfExists`` suffix. Context keys
are case-insensitive; the request context maps each lower-cased key to its values (a tuple:
single-valued keys have one). Pure functions, no I/O.

Rules implemented (IAM User Guide, "Condition operators" and "Multivalued context keys"):

* within one condition, several values for a key are ORed; several keys and several
  operators are ANDed;
* a key missing from the request makes a positive operator false and a negated operator
  (``StringNotEquals``, ``ArnNotLike``, ``NotIpAddress``, ...) true; ``...IfExists`` makes any
  operator true for a missing key; ``Null`` tests presence itself;
* ``ForAnyValue:`` is true when at least one request value satisfies the operator (false
  for a missing key); ``ForAllValues:`` when every request value does (true for a missing
  or empty key);
* without a qualifier, a multivalued key satisfies a positive operator when any value does,
  and a negated operator when no value matches.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

ContextValues = tuple[str, ...]
RequestContext = Mapping[str, ContextValues]

QUALIFIERS = ("ForAnyValue", "ForAllValues")
IF_EXISTS = "IfExists"


# ==== value matching ========================================================================
@lru_cache(maxsize=8192)
def _glob_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: ``*`` any run of characters, ``?`` exactly one."""
    if pattern == "*":
        return True
    if "*" not in pattern and "?" not in pattern:
        return pattern.casefold() == value.casefold() if ignore_case else pattern == value
    return _glob_regex(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, value: str) -> bool:
    """ARN matching: the six colon-separated parts are matched one by one, with wildcards.

    A wildcard never crosses a colon (an ARN pattern of fewer parts matches no ARN); ``*``
    alone matches any value; values that are not ARNs are matched as plain strings.
    """
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    value_parts = value.split(":", 5)
    if len(value_parts) != 6 or not value.startswith("arn:"):
        return glob_match(pattern, value)
    if len(pattern_parts) != 6:
        return False
    return all(glob_match(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_date(text: str) -> datetime | None:
    """An ISO 8601 date or date-time (``Z`` or an offset), or epoch seconds."""
    value = text.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ip_in(request_value: str, policy_value: str) -> bool:
    try:
        address = ipaddress.ip_address(request_value.strip())
        network = ipaddress.ip_network(policy_value.strip(), strict=False)
    except ValueError:
        return False
    return address.version == network.version and address in network


def _binary_equals(request_value: str, policy_value: str) -> bool:
    try:
        return base64.b64decode(request_value, validate=True) == base64.b64decode(
            policy_value, validate=True
        )
    except (binascii.Error, ValueError):
        return False


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def matches(request_value: str, policy_value: str) -> bool:
        left, right = _number(request_value), _number(policy_value)
        return left is not None and right is not None and compare(left, right)

    return matches


def _dated(compare: Callable[[datetime, datetime], bool]) -> Callable[[str, str], bool]:
    def matches(request_value: str, policy_value: str) -> bool:
        left, right = parse_date(request_value), parse_date(policy_value)
        return left is not None and right is not None and compare(left, right)

    return matches


# Positive operators: (request value, policy value) -> does it match.
_POSITIVE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda r, p: r == p,
    "StringEqualsIgnoreCase": lambda r, p: r.casefold() == p.casefold(),
    "StringLike": lambda r, p: glob_match(p, r),
    "ArnEquals": lambda r, p: arn_match(p, r),
    "ArnLike": lambda r, p: arn_match(p, r),
    "NumericEquals": _numeric(lambda a, b: a == b),
    "NumericLessThan": _numeric(lambda a, b: a < b),
    "NumericLessThanEquals": _numeric(lambda a, b: a <= b),
    "NumericGreaterThan": _numeric(lambda a, b: a > b),
    "NumericGreaterThanEquals": _numeric(lambda a, b: a >= b),
    "DateEquals": _dated(lambda a, b: a == b),
    "DateLessThan": _dated(lambda a, b: a < b),
    "DateLessThanEquals": _dated(lambda a, b: a <= b),
    "DateGreaterThan": _dated(lambda a, b: a > b),
    "DateGreaterThanEquals": _dated(lambda a, b: a >= b),
    "Bool": lambda r, p: r.lower() == p.lower(),
    "BinaryEquals": _binary_equals,
    "IpAddress": _ip_in,
}
# Negated operators and the positive operator each negates.
_NEGATED: dict[str, str] = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
}
NULL = "Null"
BASE_OPERATORS = frozenset({*_POSITIVE, *_NEGATED, NULL})


@dataclass(frozen=True)
class Condition:
    """One ``operator: {key: values}`` test of a statement."""

    operator: str  # as written, e.g. "ForAllValues:StringLikeIfExists"
    base: str  # "StringLike"
    qualifier: str  # "", "ForAnyValue" or "ForAllValues"
    if_exists: bool
    key: str  # lower-cased context key
    values: tuple[str, ...]

    def describe(self) -> str:
        shown = self.values[0] if len(self.values) == 1 else list(self.values)
        return f"{self.operator} {self.key} {shown!r}"


def parse_operator(operator: str) -> tuple[str, str, bool] | None:
    """(base, qualifier, if_exists) for a valid operator name, else None."""
    qualifier = ""
    name = operator
    if ":" in name:
        qualifier, _, name = name.partition(":")
        if qualifier not in QUALIFIERS:
            return None
    if_exists = name.endswith(IF_EXISTS) and name != IF_EXISTS
    if if_exists:
        name = name[: -len(IF_EXISTS)]
        if name == NULL:
            return None  # NullIfExists is not an operator
    if name not in BASE_OPERATORS:
        return None
    return name, qualifier, if_exists


def condition_value_text(value: object) -> str | None:
    """A condition value as the string IAM compares; None when the JSON type is not allowed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def condition_holds(condition: Condition, context: RequestContext) -> bool:
    """Does the request context satisfy this condition?"""
    found = context.get(condition.key)
    present = bool(found)
    if condition.base == NULL:
        # "true" means the key must be absent; "false" that it must be present.
        return any((v.lower() == "true") != present for v in condition.values)
    if not present:
        if condition.if_exists or condition.qualifier == "ForAllValues":
            return True
        if condition.qualifier == "ForAnyValue":
            return False
        return condition.base in _NEGATED
    assert found is not None
    negated = condition.base in _NEGATED
    positive = _POSITIVE[_NEGATED.get(condition.base, condition.base)]
    policy_values = condition.values

    def matches(request_value: str) -> bool:
        hit = any(positive(request_value, p) for p in policy_values)
        return not hit if negated else hit

    if condition.qualifier == "ForAllValues":
        return all(matches(v) for v in found)
    if condition.qualifier == "ForAnyValue":
        return any(matches(v) for v in found)
    # No qualifier: a negated operator holds only when no value matches.
    return all(matches(v) for v in found) if negated else any(matches(v) for v in found)
