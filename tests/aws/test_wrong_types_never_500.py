"""No JSON value of the wrong type, anywhere in a request, answers a 5xx.

For every operation of botocore's KMS model and every position of its input (each
structure member, each list's item, each map's key and value, however deep), a signed
request whose other members are valid carries at that position a JSON value drawn from
null, booleans, numbers, lists, objects and hostile text (lone surrogates, NUL). The
answer is never a 5xx; a refusal has AWS's shape (``__type``, ``message``, a request id);
and where the value cannot be what the model says (a number where a string goes, null as
a list's item or a map's value, a lone surrogate anywhere) it is refused as AWS's JSON
protocol refuses a body it cannot read: 400 ``SerializationException``.

Also the two 500s the chaos harness found (tools/chaos): ``GrantTokens=[null]`` and a lone
surrogate spelled by an escape inside a key policy document (a string member the body's
own parser reads as plain text, parsed again as a policy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore.model import Shape
from botocore.session import get_session
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.entrypoints.aws_json.handler import OPERATIONS
from tests.aws.conftest import JSON_CONTENT_TYPE, RawResponse, RawSender
from tests.conftest import ACCOUNT_ID, REGION, Service
from tests.support.signing import sign_request

MODEL = get_session().get_service_model("kms")
TARGET = "TrentService."
ITEM, MAP_KEY, MAP_VALUE = "[]", "{key}", "{value}"
MAX_DEPTH = 6
# Examples per operation: a handful in the suite; KEYLEDGER_WRONG_TYPES_EXAMPLES for more.
EXAMPLES = int(os.environ.get("KEYLEDGER_WRONG_TYPES_EXAMPLES") or 20)
Path = tuple[str, ...]

KEY_MEMBERS = frozenset({"KeyId", "TargetKeyId", "DestinationKeyId", "SourceKeyId"})
# Valid values cheap to act on (an RSA key pair takes long to generate).
ENUM_CHOICES = {"KeyPairSpec": "ECC_NIST_P256", "KeySpec": "AES_256"}
TEXTS = {
    "AliasName": "alias/wrong-types",
    "GranteePrincipal": f"arn:aws:iam::{ACCOUNT_ID}:root",
    "RetiringPrincipal": f"arn:aws:iam::{ACCOUNT_ID}:root",
    "Policy": json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    ),
}
NUMBERS = {"NumberOfBytes": 32, "PendingWindowInDays": 7, "RotationPeriodInDays": 365}

LONE_SURROGATES = ("\ud800", "a\udfffb", "\udbff", "x\ud83d")  # "\ud83d": half an emoji
HOSTILE_TEXT = st.sampled_from([*LONE_SURROGATES, "\x00", "nul\x00inside", "", " "])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 1e308, -1e308, 0.5])
    | st.floats(allow_nan=False, allow_infinity=False)
    | HOSTILE_TEXT
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(HOSTILE_TEXT | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# What a value must be for each type of the model (JSON types, as the protocol reads them).
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "blob": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "timestamp": (int, float),
    "list": (list,),
    "map": (dict,),
    "structure": (dict,),
}


# --- the positions of a request, and valid requests around one ------------------------------
def positions(shape: Shape, depth: int = 0) -> list[Path]:
    """Every position under ``shape``: structure members, list items, map keys and values."""
    if depth > MAX_DEPTH:
        return []
    kind = shape.type_name
    found: list[Path] = []
    if kind == "structure":
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            found.append((name,))
            found += [(name, *rest) for rest in positions(member, depth + 1)]
    elif kind == "list":
        found.append((ITEM,))
        found += [(ITEM, *rest) for rest in positions(shape.member, depth + 1)]  # type: ignore[attr-defined]
    elif kind == "map":
        found += [(MAP_KEY,), (MAP_VALUE,)]
        found += [(MAP_VALUE, *rest) for rest in positions(shape.value, depth + 1)]  # type: ignore[attr-defined]
    return found


class Requests:
    """Valid-ish requests for one key: required members only, each with a fitting value."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id

    def valid(self, name: str, shape: Shape) -> Any:
        kind = shape.type_name
        low = int(shape.metadata.get("min") or 0)
        if kind == "string":
            enum = getattr(shape, "enum", None)
            if enum:
                return ENUM_CHOICES.get(name, enum[0])
            if name in KEY_MEMBERS:
                return self.key_id
            return TEXTS.get(name, "x" * max(low, 1))
        if kind == "blob":
            return "eA==" * max(low, 1)  # b"x"
        if kind in ("integer", "long"):
            return NUMBERS.get(name, max(low, 1))
        if kind == "boolean":
            return False
        if kind == "timestamp":
            return 4_102_444_800  # 2100-01-01
        if kind == "list":
            member = shape.member  # type: ignore[attr-defined]
            return [self.valid(member.name, member)] * max(low, 1)
        if kind == "map":
            return {"k": self.valid("", shape.value)}  # type: ignore[attr-defined]
        return self.structure(shape)

    def structure(self, shape: Shape) -> dict[str, Any]:
        members = shape.members  # type: ignore[attr-defined]
        return {name: self.valid(name, members[name]) for name in shape.required_members}  # type: ignore[attr-defined]

    def with_value(self, shape: Shape, path: Path, value: Any) -> Any:
        """A valid value of ``shape`` carrying ``value`` at ``path``."""
        if not path:
            return value
        step, rest = path[0], path[1:]
        if step == ITEM:
            return [self.with_value(shape.member, rest, value)]  # type: ignore[attr-defined]
        if step == MAP_KEY:
            return {value: self.valid("", shape.value)}  # type: ignore[attr-defined]
        if step == MAP_VALUE:
            return {"k": self.with_value(shape.value, rest, value)}  # type: ignore[attr-defined]
        request = self.structure(shape)
        request[step] = self.with_value(shape.members[step], rest, value)  # type: ignore[attr-defined]
        return request


def shape_at(shape: Shape, path: Path) -> Shape:
    for step in path:
        if step == ITEM:
            shape = shape.member  # type: ignore[attr-defined]
        elif step == MAP_KEY:
            shape = shape.key  # type: ignore[attr-defined]
        elif step == MAP_VALUE:
            shape = shape.value  # type: ignore[attr-defined]
        else:
            shape = shape.members[step]  # type: ignore[attr-defined]
    return shape


def has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    return False


def cannot_be_read(shape: Shape, path: Path, value: Any) -> bool:
    """Whether the protocol must refuse ``value`` at ``path`` whatever else the request
    holds: a lone surrogate, null where a value must be, or a value of another JSON type.
    (Null as a structure's member is that member left out.)"""
    if has_lone_surrogate(value):
        return True
    if value is None:
        return path[-1] in (ITEM, MAP_VALUE)
    types = JSON_TYPES.get(shape.type_name)
    if types is None:
        return False
    if isinstance(value, bool) and bool not in types:
        return True  # a JSON boolean is no number
    return not isinstance(value, types)


def assert_aws_shaped(response: RawResponse, what: str) -> None:
    assert response.status < 500, f"{what}: {response.status} {response.body}"
    assert response.headers.get("x-amzn-requestid"), what
    if response.status != 200:
        # AWS's shape: a message with text, or none at all (never an empty one).
        message = response.body.get("message", "absent")
        assert response.error_type and isinstance(message, str) and message, (
            f"{what}: {response.status} {response.body}"
        )


@pytest.fixture
def sender(service: Service) -> Iterator[RawSender]:
    """Like ``raw`` (a signed POST /), on one kept-alive connection: hundreds of calls."""
    url = service.endpoint + "/"
    with httpx.Client(timeout=10) as http:

        def send(target: str, body: bytes | dict[str, Any]) -> RawResponse:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = sign_request(
                "POST",
                url,
                {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": target},
                payload,
                access_key_id=service.access_key_id,
                secret_access_key=service.secret_access_key,
                region=REGION,
                service="kms",
                now=datetime.now(UTC),
            )
            response = http.post(url, content=payload, headers=headers)
            try:
                parsed = response.json() if response.content else {}
            except ValueError:  # not JSON: no AWS shape at all
                parsed = {"not JSON": response.text}
            return RawResponse(response.status_code, response.headers, parsed)

        yield send


# --- the property ---------------------------------------------------------------------------
def a_wrong_json_type(shape: Shape) -> Any:
    """A value of another JSON type than ``shape``'s."""
    return {"string": 0, "blob": 0, "list": {}, "map": [], "structure": []}.get(
        shape.type_name, "1"
    )


@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_a_value_of_the_wrong_json_type_anywhere_never_answers_a_5xx(
    sender: RawSender, key_id: str, operation: str
) -> None:
    shape = MODEL.operation_model(operation).input_shape
    paths = positions(shape)
    requests = Requests(key_id)
    if not paths:  # no input members: only a whole body of the wrong type
        assert_aws_shaped(sender(TARGET + operation, b"[null]"), operation)
        return

    def check(path: Path, value: Any) -> None:
        if path[-1] == MAP_KEY and not isinstance(value, str):
            value = json.dumps(value)  # a JSON object's keys are text
        request = requests.with_value(shape, path, value)
        response = sender(TARGET + operation, request)
        what = f"{operation} {'.'.join(path)}={value!r}"
        assert_aws_shaped(response, what)
        if cannot_be_read(shape_at(shape, path), path, value):
            expected = (
                "SerializationException"
                if operation in OPERATIONS
                else ("UnknownOperationException")
            )
            assert (response.status, response.error_type) == (400, expected), (
                f"{what}: {response.body}"
            )

    # Every position gets null and a value of another JSON type; hypothesis draws more.
    for path in paths:
        check = example(path=path, value=None)(check)
        check = example(path=path, value=a_wrong_json_type(shape_at(shape, path)))(check)
    settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(given(path=st.sampled_from(paths), value=JSON_VALUES)(check))()


# --- what the chaos harness found -----------------------------------------------------------
@pytest.mark.parametrize("operation", ["DescribeKey", "GenerateDataKey", "Encrypt"])
def test_null_among_grant_tokens_answers_serialization_exception(
    raw: RawSender, key_id: str, operation: str
) -> None:
    request = {"KeyId": key_id, "GrantTokens": [None], "KeySpec": "AES_256", "Plaintext": "eA=="}
    request = {k: v for k, v in request.items() if k in _members(operation)}

    response = raw(TARGET + operation, request)

    assert (response.status, response.error_type) == (400, "SerializationException")
    assert response.message == "Expected a string at 'grantTokens.1.member'."
    assert response.headers.get("x-amzn-requestid")


def test_null_as_an_encryption_context_value_answers_serialization_exception(
    raw: RawSender, key_id: str
) -> None:
    request = {"KeyId": key_id, "Plaintext": "eA==", "EncryptionContext": {"purpose": None}}

    response = raw(TARGET + "Encrypt", request)

    assert (response.status, response.error_type) == (400, "SerializationException")
    assert response.message == "Expected a string at 'encryptionContext.value'."


def test_null_as_a_tag_answers_serialization_exception(raw: RawSender) -> None:
    response = raw(TARGET + "CreateKey", {"Tags": [None]})

    assert (response.status, response.error_type) == (400, "SerializationException")
    assert response.message == "Expected an object at 'tags.1.member'."


def test_null_as_a_structure_member_is_that_member_left_out(raw: RawSender, key_id: str) -> None:
    response = raw(TARGET + "DescribeKey", {"KeyId": key_id, "GrantTokens": None})

    assert response.status == 200


def _policy_with(text: str) -> str:
    """A key policy whose Sid, action and condition key carry ``text``, written as the
    JSON escapes json.dumps writes (a lone surrogate as "\\ud800")."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": text,
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": ["kms:*", f"kms:{text}"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {f"kms:EncryptionContext:{text}": text}},
                }
            ],
        }
    )


@pytest.mark.parametrize("text", ["\ud800", "lone \ud800 and \udfff surrogates", "\udbff"])
@pytest.mark.parametrize("operation", ["CreateKey", "PutKeyPolicy"])
def test_a_lone_surrogate_inside_a_key_policy_answers_malformed_policy_document(
    raw: RawSender, key_id: str, operation: str, text: str
) -> None:
    request: dict[str, Any] = {"Policy": _policy_with(text)}
    if operation == "PutKeyPolicy":
        request["KeyId"] = key_id

    response = raw(TARGET + operation, request)

    assert (response.status, response.error_type) == (400, "MalformedPolicyDocumentException")
    assert response.message == (
        "The policy contains a string that is not valid Unicode (a lone surrogate)."
    )
    assert response.headers.get("x-amzn-requestid")


def test_a_lone_surrogate_only_as_a_statement_id_is_refused_too(
    raw: RawSender, key_id: str
) -> None:
    policy = json.loads(TEXTS["Policy"])
    policy["Statement"][0]["Sid"] = "\ud800"

    response = raw(TARGET + "PutKeyPolicy", {"KeyId": key_id, "Policy": json.dumps(policy)})

    assert (response.status, response.error_type) == (400, "MalformedPolicyDocumentException")


def test_a_surrogate_pair_inside_a_key_policy_is_an_emoji_and_accepted(
    raw: RawSender, key_id: str
) -> None:
    policy = json.loads(TEXTS["Policy"])
    policy["Statement"][0]["Sid"] = "Allow \U0001f600"  # json.dumps writes "\ud83d\ude00"

    response = raw(TARGET + "PutKeyPolicy", {"KeyId": key_id, "Policy": json.dumps(policy)})

    assert response.status == 200, response.body


def test_a_key_policy_nested_deeper_than_json_can_be_read_is_malformed(
    raw: RawSender, key_id: str
) -> None:
    policy = "[" * 5_000 + "]" * 5_000

    response = raw(TARGET + "PutKeyPolicy", {"KeyId": key_id, "Policy": policy})

    assert (response.status, response.error_type) == (400, "MalformedPolicyDocumentException")


def _members(operation: str) -> set[str]:
    return set(MODEL.operation_model(operation).input_shape.members)
